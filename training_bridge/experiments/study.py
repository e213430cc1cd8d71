"""The optuna side of a search: a study rebuilt in memory from the trials' rows, asked with
fixed distributions, a running trial judged by the pruner, the best trial picked.

The rows are the study's only state (a restart loses nothing); everything here is blocking
CPU work, run in a worker thread (asyncio.to_thread) by the search service.
"""

from __future__ import annotations

import json
import warnings

import optuna
from optuna.exceptions import ExperimentalWarning
from optuna.trial import FrozenTrial, TrialState, create_trial

from .space import distributions, grid_points
from .store import COMPLETE, PRUNED, TRIAL_ACTIVE, TRIAL_FAILED, TRIAL_STOPPED, Trial

optuna.logging.set_verbosity(optuna.logging.WARNING)
warnings.filterwarnings("ignore", category=ExperimentalWarning)

# a trial row's state as the sampler sees it; a stopped trial says nothing about its
# parameters, so it is told as failed (which samplers and pruners leave out), keeping the
# study's trial numbers the rows' (the grid sampler gives trial n grid point n)
STATES = {
    COMPLETE: TrialState.COMPLETE,
    PRUNED: TrialState.PRUNED,
    TRIAL_FAILED: TrialState.FAIL,
    TRIAL_STOPPED: TrialState.FAIL,
}


def make_sampler(spec: dict, number: int) -> optuna.samplers.BaseSampler:
    """The search's sampler for the ask of trial `number`: seeded seed + number, so a search
    is reproducible and no two asks draw alike (a grid: its order is shuffled with the seed
    itself, and trial n takes the grid's point n)."""
    sampler = spec["sampler"]
    seed = sampler["seed"] + number
    if sampler["type"] == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if sampler["type"] == "grid":
        return optuna.samplers.GridSampler(grid_points(spec["space"]), seed=sampler["seed"])
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=sampler["startup_trials"])


def make_pruner(spec: dict) -> optuna.pruners.BasePruner:
    pruner = spec["pruner"]
    if pruner["type"] == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(
        n_startup_trials=pruner["startup_trials"], n_warmup_steps=pruner["warmup_steps"]
    )


def intermediate_of(row: Trial) -> dict[int, float]:
    return {int(k): float(v) for k, v in json.loads(row.intermediate or "{}").items()}


def frozen(row: Trial, dists: dict, intermediate: dict[int, float] | None = None) -> FrozenTrial:
    """A row as optuna's FrozenTrial (an active one as RUNNING)."""
    params = json.loads(row.params or "{}")
    state = TrialState.RUNNING if row.state in TRIAL_ACTIVE else STATES[row.state]
    value = row.value if state == TrialState.COMPLETE else None
    return create_trial(
        state=state,
        value=value,
        params=params,
        distributions={k: dists[k] for k in params if k in dists},
        system_attrs=json.loads(row.system_attrs or "{}"),
        intermediate_values=intermediate if intermediate is not None else intermediate_of(row),
    )


def rebuild(spec: dict, rows: list[Trial], sampler=None, judged: tuple | None = None):
    """An in-memory study holding the rows' trials (numbered as the rows, from 0); judged:
    (row, its intermediate values) to add with these values instead of its stored ones.
    Returns (study, the judged trial's FrozenTrial or None)."""
    study = optuna.create_study(
        direction=spec["objective"]["direction"],
        sampler=sampler or optuna.samplers.RandomSampler(seed=0),
        pruner=make_pruner(spec),
    )
    dists = distributions(spec["space"])
    judged_number = judged[0].number if judged else None
    found = None
    for row in sorted(rows, key=lambda r: r.number):
        if row.number == judged_number:
            study.add_trial(frozen(row, dists, judged[1]))
            found = study.get_trials(deepcopy=False)[-1]
        else:
            study.add_trial(frozen(row, dists))
    return study, found


def ask(spec: dict, rows: list[Trial], number: int) -> tuple[dict, dict]:
    """(params, system_attrs) of trial `number`, asked of the study the rows make."""
    study, _ = rebuild(spec, rows, sampler=make_sampler(spec, number))
    trial = study.ask(fixed_distributions=distributions(spec["space"]))
    asked = study.get_trials(deepcopy=False)[-1]
    attrs = {k: v for k, v in asked.system_attrs.items() if _json_safe(v)}
    return dict(trial.params), attrs


def should_prune(spec: dict, rows: list[Trial], row: Trial, intermediate: dict) -> bool:
    """Whether the pruner stops the running trial `row` at these intermediate values."""
    if spec["pruner"]["type"] == "none" or not intermediate:
        return False
    study, trial = rebuild(spec, rows, judged=(row, intermediate))
    if trial is None:
        return False
    return bool(make_pruner(spec).prune(study, trial))


def best(direction: str, rows: list[Trial]) -> Trial | None:
    """The best complete trial (the first of equals), or None."""
    done = [r for r in rows if r.state == COMPLETE and r.value is not None]
    if not done:
        return None
    sign = 1 if direction == "minimize" else -1
    return min(done, key=lambda r: (sign * r.value, r.number))


def _json_safe(value) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True
