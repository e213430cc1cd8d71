"""Checks of what a service request asks for: names, predictors, weights and replica counts."""

from __future__ import annotations

import math
import re

# a service's name is part of its URL, container names and Kubernetes objects
NAME = re.compile(r"^[a-z][a-z0-9-]{0,38}$")
KEY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MAX_PREDICTORS = 2  # a stable one and a canary
MAX_VERSION = 10**9
MAX_DESCRIPTION = 1024
MAX_TARGET_IN_FLIGHT = 1000
MAX_SCALE_TO_ZERO_SECONDS = 7 * 24 * 3600

CREATE_FIELDS = {
    "name",
    "description",
    "workspace",
    "public",
    "predictors",
    "scale_to_zero_seconds",
}
UPDATE_FIELDS = {"description", "public", "predictors", "scale_to_zero_seconds"}
PREDICTOR_FIELDS = {
    "model",
    "version",
    "owner",
    "weight",
    "flavor",
    "min_replicas",
    "max_replicas",
    "target_in_flight",
}


class SpecError(ValueError):
    """A request a service cannot be made of; the message says what to send instead."""


def check_fields(body: dict, allowed: set[str], what: str) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        known = ", ".join(sorted(allowed))
        raise SpecError(f"Unknown field(s) of {what}: {', '.join(unknown)}. Known: {known}.")


def check_name(name) -> str:
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise SpecError(
            f"Invalid service name {name!r}: use 1 to 39 lowercase letters, digits and '-', "
            "starting with a letter (it becomes part of the service's URL)."
        )
    return name


def check_key_name(name) -> str:
    if not isinstance(name, str) or not KEY_NAME.fullmatch(name):
        raise SpecError(
            f"Invalid key name {name!r}: use 1 to 64 letters, digits, '.', '_' and '-'."
        )
    return name


def check_description(value) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > MAX_DESCRIPTION:
        raise SpecError(f"description must be text of at most {MAX_DESCRIPTION} characters.")
    return value


def check_public(value) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise SpecError("public must be true or false.")
    return value


def whole(value, field: str, low: int, high: int | None = None) -> int:
    """An integer field in [low, high]; floats, booleans and text are refused."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"{field} must be a whole number, not {value!r}.")
    if value < low or (high is not None and value > high):
        upper = f" and at most {high}" if high is not None else ""
        raise SpecError(f"{field} must be at least {low}{upper}; got {value}.")
    return value


def check_scale_to_zero(value) -> float:
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SpecError("scale_to_zero_seconds must be a number of seconds (0: never).")
    if value < 0 or value > MAX_SCALE_TO_ZERO_SECONDS:
        raise SpecError(
            f"scale_to_zero_seconds must be from 0 (never) to {MAX_SCALE_TO_ZERO_SECONDS}."
        )
    return float(value)


def predictor_key(predictor: dict) -> str:
    """A predictor's name in metrics and labels: "<model>:<version>"."""
    return f"{predictor['model']}:{predictor['version']}"


def check_predictor(raw, owner: str, max_replicas: int, default_flavor: str, index: int) -> dict:
    """One predictor with its defaults filled in (flavor and model checked by the caller)."""
    where = f"predictors[{index}]"
    if not isinstance(raw, dict):
        raise SpecError(
            f'{where} must be an object such as {{"model": "mnist", "version": 1, '
            '"weight": 100, "flavor": "cpu.small"}.'
        )
    check_fields(raw, PREDICTOR_FIELDS, where)
    model = raw.get("model")
    if not isinstance(model, str) or not MODEL_NAME.fullmatch(model):
        raise SpecError(f"{where}.model must be the name of a registered model; got {model!r}.")
    version = whole(raw.get("version"), f"{where}.version", 1, MAX_VERSION)
    model_owner = raw.get("owner", owner)
    if not isinstance(model_owner, str) or not model_owner:
        raise SpecError(f"{where}.owner must be the model's owner (default: you).")
    flavor = raw.get("flavor", default_flavor)
    if not isinstance(flavor, str) or not flavor:
        raise SpecError(f"{where}.flavor must be a flavor's name (see GET /flavors).")
    minimum = whole(raw.get("min_replicas", 1), f"{where}.min_replicas", 0, max_replicas)
    maximum = whole(
        raw.get("max_replicas", max(minimum, 1)), f"{where}.max_replicas", 1, max_replicas
    )
    if maximum < minimum:
        raise SpecError(
            f"{where}: max_replicas ({maximum}) must be at least min_replicas ({minimum})."
        )
    target = whole(
        raw.get("target_in_flight", 4), f"{where}.target_in_flight", 1, MAX_TARGET_IN_FLIGHT
    )
    weight = raw.get("weight")
    if weight is not None:
        weight = whole(weight, f"{where}.weight", 0, 100)
    return {
        "model": model,
        "version": version,
        "owner": model_owner,
        "weight": weight,
        "flavor": flavor,
        "min_replicas": minimum,
        "max_replicas": maximum,
        "target_in_flight": target,
    }


def check_predictors(raw, owner: str, max_replicas: int, default_flavor: str) -> list[dict]:
    """The predictors of a request: one or two, distinct, weights whole numbers adding to 100."""
    if not isinstance(raw, list) or not raw:
        raise SpecError(
            'predictors is required: a list of one or two predictors, such as [{"model": '
            '"mnist", "version": 1, "weight": 100, "flavor": "cpu.small"}].'
        )
    if len(raw) > MAX_PREDICTORS:
        raise SpecError(
            f"A service has at most {MAX_PREDICTORS} predictors (a stable one and a canary); "
            f"got {len(raw)}."
        )
    predictors = [
        check_predictor(p, owner, max_replicas, default_flavor, i) for i, p in enumerate(raw)
    ]
    keys = [predictor_key(p) for p in predictors]
    if len(set(keys)) != len(keys):
        raise SpecError(f"Two predictors deploy the same model version ({keys[0]}).")
    if len(predictors) == 1 and predictors[0]["weight"] is None:
        predictors[0]["weight"] = 100
    missing = [i for i, p in enumerate(predictors) if p["weight"] is None]
    if missing:
        raise SpecError(
            f"predictors[{missing[0]}].weight is required: give each predictor a whole "
            "percentage of the requests, adding to 100 (for example 90 and 10)."
        )
    total = sum(p["weight"] for p in predictors)
    if total != 100:
        weights = " + ".join(str(p["weight"]) for p in predictors)
        raise SpecError(f"The predictors' weights must add to 100; {weights} = {total}.")
    return predictors
