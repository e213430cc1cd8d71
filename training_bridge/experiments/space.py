"""Checking a search request: its space, objective, sampler, pruner, trials and parallel."""

from __future__ import annotations

import math
import secrets

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from ..metrics import NAME as METRIC_NAME
from ..spec import HYPERPARAMETER_NAME, MAX_HYPERPARAMETERS, SpecError, check_hyperparameters

# the request's own fields; the others are the job's (as in POST /jobs)
SEARCH_KEYS = ("job", "space", "objective", "direction", "trials", "parallel", "sampler", "pruner")
PARAM_TYPES = ("float", "int", "categorical")
PARAM_FIELDS = {
    "float": ("type", "low", "high", "log", "step"),
    "int": ("type", "low", "high", "log", "step"),
    "categorical": ("type", "choices"),
}
SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "none")
DIRECTIONS = ("minimize", "maximize")
MAX_CHOICES = 1000
MAX_CHOICE_TEXT = 1024
# sampler seeds are seed + trial number, and numpy takes seeds below 2**32
MAX_SEED = 2**31 - 1
DEFAULT_TRIALS = 10
MAX_NUMBER = 1e300  # bounds whose range is still a finite number
MAX_WHOLE = 2**53  # whole numbers a float holds exactly (the sampler works in floats)
MAX_GRID_POINTS = 100_000
MAX_STEPS = 10**12  # steps in one float parameter's range
PRUNER_DEFAULTS = {"startup_trials": 3, "warmup_steps": 2}


class SearchError(ValueError):
    """A search request that cannot run; args are its problems, each a sentence (HTTP 400)."""

    @property
    def problems(self) -> list[str]:
        return list(self.args)

    def __str__(self) -> str:
        return " ".join(self.args)


def _number(value) -> bool:
    """A finite JSON number of a sane size (not true/false)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value) and abs(value) <= MAX_NUMBER
    except OverflowError:  # an int too large for a float
        return False


def _whole(value) -> bool:
    return _number(value) and float(value).is_integer() and abs(value) <= MAX_WHOLE


def _check_param(name: str, raw, problems: list[str]) -> dict | None:
    """One parameter of the space, normalised ({"type", ...} with every field), or None
    after adding what is wrong to problems."""
    where = f"space.{name}"
    if not HYPERPARAMETER_NAME.match(name):
        problems.append(
            f"{where}: use letters, digits, '_', '.' and '-' in a parameter's name, starting "
            "with a letter or '_'."
        )
        return None
    if not isinstance(raw, dict):
        problems.append(
            f'{where} must be an object such as {{"type": "float", "low": 0.0001, "high": 1, '
            '"log": true}.'
        )
        return None
    kind = raw.get("type")
    if kind not in PARAM_TYPES:
        problems.append(f"{where}.type must be one of {', '.join(PARAM_TYPES)}; got {kind!r}.")
        return None
    unknown = sorted(set(raw) - set(PARAM_FIELDS[kind]))
    if unknown:
        problems.append(
            f"{where}: a {kind} parameter has {', '.join(PARAM_FIELDS[kind][1:])}; "
            f"not {', '.join(unknown)}."
        )
        return None
    if kind == "categorical":
        return _check_choices(where, raw.get("choices"), problems)
    return _check_range(where, kind, raw, problems)


def _check_choices(where: str, choices, problems: list[str]) -> dict | None:
    if not isinstance(choices, list) or not choices:
        problems.append(f'{where}.choices must be a non-empty list, e.g. ["sgd", "adam"].')
        return None
    if len(choices) > MAX_CHOICES:
        problems.append(f"{where}.choices: at most {MAX_CHOICES} choices.")
        return None
    for choice in choices:
        if isinstance(choice, str):
            if len(choice) > MAX_CHOICE_TEXT or "\x00" in choice:
                problems.append(f"{where}.choices: text longer than {MAX_CHOICE_TEXT} characters.")
                return None
        elif not isinstance(choice, bool) and not _number(choice):
            problems.append(f"{where}.choices must be numbers, text or true/false; got {choice!r}.")
            return None
    # 1 and true (or 1 and 1.0) are one value to the sampler: each choice must differ
    for i, choice in enumerate(choices):
        if any(choice == other for other in choices[:i]):
            problems.append(f"{where}.choices holds {choice!r} twice; list each choice once.")
            return None
    return {"type": "categorical", "choices": list(choices)}


def _check_range(where: str, kind: str, raw: dict, problems: list[str]) -> dict | None:
    low, high, log, step = raw.get("low"), raw.get("high"), raw.get("log", False), raw.get("step")
    check = _whole if kind == "int" else _number
    what = "whole numbers" if kind == "int" else "numbers"
    if not check(low) or not check(high):
        problems.append(f"{where}: low and high must be {what}; got low={low!r}, high={high!r}.")
        return None
    if kind == "int":
        low, high = int(low), int(high)
    else:
        low, high = float(low), float(high)
    if low >= high:
        problems.append(f"{where}: low ({low:g}) must be below high ({high:g}).")
        return None
    if not isinstance(log, bool):
        problems.append(f"{where}.log must be true or false.")
        return None
    if log and low <= 0:
        problems.append(f"{where}: a log scale needs low above 0; got {low:g}.")
        return None
    if kind == "int":
        if step is None:
            step = 1
        if not _whole(step) or step < 1:
            problems.append(f"{where}.step must be a whole number of at least 1; got {step!r}.")
            return None
        step = int(step)
        if log and step != 1:
            problems.append(f"{where}: a log scale takes no step (or step 1); got step {step}.")
            return None
        if (high - low) % step:
            problems.append(
                f"{where}: step {step} does not divide the range {low}..{high}: make "
                f"high - low a multiple of the step (high {low + (high - low) // step * step}?)."
            )
            return None
        return {"type": "int", "low": low, "high": high, "step": step, "log": log}
    if step is not None:
        if not _number(step) or step <= 0:
            problems.append(f"{where}.step must be a number above 0; got {step!r}.")
            return None
        step = float(step)
        if log:
            problems.append(f"{where}: a log scale takes no step; leave one of them out.")
            return None
        count = (high - low) / step
        if count > MAX_STEPS:
            problems.append(f"{where}: step {step:g} is too small for the range: use a larger one.")
            return None
        if abs(count - round(count)) > 1e-8 * max(1.0, count):
            problems.append(
                f"{where}: step {step:g} does not divide the range {low:g}..{high:g}: make "
                "high - low a multiple of the step."
            )
            return None
    return {"type": "float", "low": low, "high": high, "step": step, "log": log}


def _check_space(space, fixed: dict, problems: list[str]) -> dict:
    if not isinstance(space, dict) or not space:
        problems.append(
            'space is empty: give at least one parameter, e.g. {"lr": {"type": "float", '
            '"low": 0.0001, "high": 1, "log": true}}.'
        )
        return {}
    if len(space) + len(fixed) > MAX_HYPERPARAMETERS:
        problems.append(
            f"space and hyperparameters hold {len(space) + len(fixed)} names; at most "
            f"{MAX_HYPERPARAMETERS}."
        )
        return {}
    out = {}
    for name, raw in space.items():
        if name in fixed:
            problems.append(
                f"{name!r} is both in space and in the fixed hyperparameters: remove it from "
                "hyperparameters (the search sets it in each trial)."
            )
            continue
        param = _check_param(name, raw, problems)
        if param is not None:
            out[name] = param
    return out


def _check_objective(body: dict, problems: list[str]) -> dict:
    raw = body.get("objective")
    direction = body.get("direction")
    if isinstance(raw, str):
        metric = raw
    elif isinstance(raw, dict):
        unknown = sorted(set(raw) - {"metric", "direction"})
        if unknown:
            problems.append(f"objective has metric and direction; not {', '.join(unknown)}.")
        metric = raw.get("metric")
        direction = raw.get("direction", direction)
    else:
        problems.append(
            'objective is required: {"metric": "loss", "direction": "minimize"} (the metric '
            "the trials report, and whether lower or higher is better)."
        )
        return {}
    direction = direction or "minimize"
    if not isinstance(metric, str) or not METRIC_NAME.fullmatch(metric):
        problems.append(
            f"objective.metric {metric!r}: give the name of a metric the trials report (1 to 64 "
            "characters, a letter first, then letters, digits and _ . / -)."
        )
    if direction not in DIRECTIONS:
        problems.append(f"objective.direction must be minimize or maximize; got {direction!r}.")
    return {"metric": metric, "direction": direction}


def _int_field(value, what: str, low: int, high: int, problems: list[str]) -> int | None:
    if not _whole(value):
        problems.append(f"{what} must be a whole number from {low} to {high}; got {value!r}.")
        return None
    value = int(value)
    if not low <= value <= high:
        problems.append(f"{what} must be from {low} to {high}; got {value}.")
        return None
    return value


def grid_points(space: dict) -> dict[str, list] | None:
    """Each parameter's values on a grid, or None when a parameter has none (a float
    without step)."""
    grid = {}
    for name, p in space.items():
        if p["type"] == "categorical":
            grid[name] = list(p["choices"])
        elif p["type"] == "int":
            grid[name] = list(range(p["low"], p["high"] + 1, p["step"]))
        elif p["step"] is None:
            return None
        else:
            count = round((p["high"] - p["low"]) / p["step"])
            grid[name] = [min(p["high"], round(p["low"] + i * p["step"], 12)) for i in range(count)]
            grid[name].append(p["high"])
    return grid


def _grid_size(space: dict) -> int:
    size = 1
    for p in space.values():
        if p["type"] == "categorical":
            size *= len(p["choices"])
        else:
            size *= round((p["high"] - p["low"]) / p["step"]) + 1
    return size


def _check_sampler(raw, space: dict, trials: int | None, problems: list[str]) -> dict:
    if raw is None:
        raw = {}
    if isinstance(raw, str):
        raw = {"type": raw}
    if not isinstance(raw, dict):
        problems.append('sampler must be "tpe", "random" or "grid", or {"type", "seed", ...}.')
        return {}
    kind = raw.get("type") or "tpe"
    if kind not in SAMPLERS:
        problems.append(f"sampler.type must be one of {', '.join(SAMPLERS)}; got {kind!r}.")
        return {}
    fields = ("type", "seed", "startup_trials") if kind == "tpe" else ("type", "seed")
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        problems.append(
            f"sampler: a {kind} sampler has {', '.join(fields[1:])}; not {', '.join(unknown)}."
        )
        return {}
    seed = raw.get("seed")
    if seed is None:
        seed = secrets.randbelow(MAX_SEED)
    seed = _int_field(seed, "sampler.seed", 0, MAX_SEED, problems)
    out = {"type": kind, "seed": seed}
    if kind == "tpe":
        default = min(10, max(2, (trials or 0) // 3))
        startup = raw.get("startup_trials", default)
        out["startup_trials"] = _int_field(startup, "sampler.startup_trials", 0, 10000, problems)
    if kind == "grid" and space:
        if any(p["type"] == "float" and p["step"] is None for p in space.values()):
            floats = [n for n, p in space.items() if p["type"] == "float" and p["step"] is None]
            problems.append(
                f"a grid needs a step for each float parameter: give {', '.join(floats)} a step, "
                "or use the tpe or random sampler."
            )
        elif _grid_size(space) > MAX_GRID_POINTS:
            problems.append(
                f"the grid has {_grid_size(space)} points; at most {MAX_GRID_POINTS}: use "
                "larger steps or fewer choices, or the tpe or random sampler."
            )
        elif trials is not None and trials > _grid_size(space):
            problems.append(
                f"trials {trials} is more than the grid's {_grid_size(space)} points: use "
                f"trials {_grid_size(space)} or less."
            )
    return out


def _check_pruner(raw, problems: list[str]) -> dict:
    if raw is None:
        raw = {}
    if isinstance(raw, str):
        raw = {"type": raw}
    if not isinstance(raw, dict):
        problems.append('pruner must be "median" or "none", or {"type": "median", ...}.')
        return {}
    kind = raw.get("type") or "median"
    if kind not in PRUNERS:
        problems.append(f"pruner.type must be one of {', '.join(PRUNERS)}; got {kind!r}.")
        return {}
    if kind == "none":
        unknown = sorted(set(raw) - {"type"})
        if unknown:
            problems.append(f"pruner: the none pruner has no {', '.join(unknown)}.")
        return {"type": "none"}
    unknown = sorted(set(raw) - {"type", *PRUNER_DEFAULTS})
    if unknown:
        problems.append(
            f"pruner: a median pruner has startup_trials and warmup_steps; not "
            f"{', '.join(unknown)}."
        )
        return {}
    out = {"type": "median"}
    for key, default in PRUNER_DEFAULTS.items():
        out[key] = _int_field(raw.get(key, default), f"pruner.{key}", 0, 100000, problems)
    return out


def check_search(body: dict, settings, fixed: dict | None = None) -> dict:
    """The search part of a request, normalised: {space, objective, trials, parallel, sampler,
    pruner, hyperparameters (the fixed ones), seed}; SearchError with every problem found.

    fixed: the fixed hyperparameters when the request gives none (an existing job's)."""
    problems: list[str] = []
    if "hyperparameters" in body or fixed is None:
        try:
            fixed = check_hyperparameters(body.get("hyperparameters"))
        except SpecError as e:
            problems.append(str(e))
            fixed = {}
    space = _check_space(body.get("space"), fixed, problems)
    objective = _check_objective(body, problems)
    sampler_raw = body.get("sampler")
    grid = sampler_raw == "grid" or (
        isinstance(sampler_raw, dict) and sampler_raw.get("type") == "grid"
    )
    trials = body.get("trials")
    if trials is None:
        # a grid's default is the whole grid (when it has one)
        has_grid = (
            grid
            and space
            and all(p["type"] != "float" or p["step"] is not None for p in space.values())
        )
        points = _grid_size(space) if has_grid else DEFAULT_TRIALS
        trials = min(points, settings.max_trials)
    trials = _int_field(trials, "trials", 1, settings.max_trials, problems)
    parallel = body.get("parallel")
    parallel = 1 if parallel is None else parallel
    high = min(trials or settings.max_parallel, settings.max_parallel)
    if _whole(parallel) and trials is not None and parallel > trials:
        problems.append(f"parallel {parallel:g} is more than trials {trials}: use {high} or less.")
        parallel = None
    else:
        parallel = _int_field(parallel, "parallel", 1, settings.max_parallel, problems)
    sampler = _check_sampler(sampler_raw, space, trials, problems)
    pruner = _check_pruner(body.get("pruner"), problems)
    if problems:
        raise SearchError(*problems)
    return {
        "space": space,
        "objective": objective,
        "trials": trials,
        "parallel": parallel,
        "sampler": sampler,
        "pruner": pruner,
        "hyperparameters": fixed,
        "seed": sampler["seed"],
    }


def distributions(space: dict) -> dict[str, BaseDistribution]:
    """optuna's distributions of a normalised space (the same for every ask)."""
    out: dict[str, BaseDistribution] = {}
    for name, p in space.items():
        if p["type"] == "categorical":
            out[name] = CategoricalDistribution(p["choices"])
        elif p["type"] == "int":
            out[name] = IntDistribution(p["low"], p["high"], log=p["log"], step=p["step"])
        else:
            out[name] = FloatDistribution(p["low"], p["high"], log=p["log"], step=p["step"])
    return out
