"""A search request is checked whole: each mistake is named with what to do, and a good
request is normalised with its defaults (no hub needed)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from training_bridge.experiments.space import (
    SearchError,
    check_search,
    distributions,
    grid_points,
)

SETTINGS = SimpleNamespace(max_trials=50, max_parallel=4)
SPACE = {
    "x": {"type": "float", "low": -1, "high": 1},
    "lr": {"type": "float", "low": 1e-4, "high": 1, "log": True},
    "n": {"type": "int", "low": 1, "high": 8},
    "opt": {"type": "categorical", "choices": ["sgd", "adam"]},
}


def request(**changes):
    body = {"job": "tune", "space": SPACE, "objective": "loss", "trials": 8}
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


def problems(**changes) -> str:
    with pytest.raises(SearchError) as e:
        check_search(request(**changes), SETTINGS)
    return str(e.value)


def test_a_request_is_normalised_with_its_defaults():
    spec = check_search(request(hyperparameters={"steps": 10}), SETTINGS)
    assert spec["space"]["x"] == {
        "type": "float",
        "low": -1.0,
        "high": 1.0,
        "step": None,
        "log": False,
    }
    assert spec["space"]["n"] == {"type": "int", "low": 1, "high": 8, "step": 1, "log": False}
    assert spec["space"]["opt"] == {"type": "categorical", "choices": ["sgd", "adam"]}
    assert spec["objective"] == {"metric": "loss", "direction": "minimize"}
    assert (spec["trials"], spec["parallel"]) == (8, 1)
    # tpe with a random seed that is stored, startup min(10, max(2, trials // 3))
    assert spec["sampler"]["type"] == "tpe" and spec["sampler"]["startup_trials"] == 2
    assert spec["seed"] == spec["sampler"]["seed"] and 0 <= spec["seed"] < 2**31
    assert spec["pruner"] == {"type": "median", "startup_trials": 3, "warmup_steps": 2}
    assert spec["hyperparameters"] == {"steps": 10}


def test_objective_sampler_and_pruner_as_objects():
    spec = check_search(
        request(
            objective={"metric": "acc", "direction": "maximize"},
            sampler={"type": "tpe", "seed": 7, "startup_trials": 4},
            pruner={"type": "median", "startup_trials": 1, "warmup_steps": 0},
            parallel=2,
        ),
        SETTINGS,
    )
    assert spec["objective"] == {"metric": "acc", "direction": "maximize"}
    assert spec["sampler"] == {"type": "tpe", "seed": 7, "startup_trials": 4}
    assert spec["pruner"] == {"type": "median", "startup_trials": 1, "warmup_steps": 0}
    assert spec["parallel"] == 2
    assert check_search(request(pruner="none", sampler="random"), SETTINGS)["pruner"] == {
        "type": "none"
    }


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({"space": {}}, "space is empty"),
        ({"space": None}, "space is empty"),
        ({"space": {"x": {"type": "uniform", "low": 0, "high": 1}}}, "space.x.type must be one of"),
        ({"space": {"x": {"type": "float", "low": 0, "high": 1, "q": 2}}}, "not q"),
        (
            {"space": {"x": {"type": "float", "low": 1, "high": 1}}},
            "low (1) must be below high (1)",
        ),
        ({"space": {"x": {"type": "float", "low": 2, "high": 1}}}, "must be below high"),
        (
            {"space": {"x": {"type": "float", "low": "a", "high": 1}}},
            "low and high must be numbers",
        ),
        (
            {"space": {"x": {"type": "float", "low": 0, "high": 1, "log": True}}},
            "log scale needs low above 0",
        ),
        ({"space": {"n": {"type": "int", "low": 0.5, "high": 4}}}, "must be whole numbers"),
        (
            {"space": {"n": {"type": "int", "low": 0, "high": 10, "step": 3}}},
            "step 3 does not divide",
        ),
        (
            {"space": {"n": {"type": "int", "low": 1, "high": 9, "step": 2, "log": True}}},
            "log scale takes no step",
        ),
        (
            {"space": {"x": {"type": "float", "low": 0, "high": 1, "step": 0.3}}},
            "does not divide the range",
        ),
        (
            {"space": {"x": {"type": "float", "low": 0.1, "high": 1, "step": 0.1, "log": True}}},
            "log scale takes no step",
        ),
        (
            {"space": {"x": {"type": "float", "low": 0, "high": 1, "step": -1}}},
            "step must be a number above 0",
        ),
        (
            {"space": {"o": {"type": "categorical", "choices": []}}},
            "choices must be a non-empty list",
        ),
        ({"space": {"o": {"type": "categorical", "choices": ["a", "a"]}}}, "holds 'a' twice"),
        ({"space": {"o": {"type": "categorical", "choices": [1, True]}}}, "twice"),
        (
            {"space": {"o": {"type": "categorical", "choices": [{"a": 1}]}}},
            "numbers, text or true/false",
        ),
        (
            {"space": {"o": {"type": "categorical", "choices": [None]}}},
            "numbers, text or true/false",
        ),
        (
            {"space": {"bad name": {"type": "float", "low": 0, "high": 1}}},
            "space.bad name: use letters",
        ),
        ({"space": {"x": [0, 1]}}, "space.x must be an object"),
        (
            {"hyperparameters": {"x": 0.5}},
            "'x' is both in space and in the fixed hyperparameters: remove it from hyperparameters",
        ),
        ({"hyperparameters": "x=1"}, "hyperparameters must be an object"),
        ({"objective": None}, "objective is required"),
        ({"objective": {"metric": ""}}, "objective.metric ''"),
        ({"objective": {"metric": "loss", "direction": "down"}}, "minimize or maximize"),
        ({"objective": {"metric": "loss", "goal": 1}}, "not goal"),
        ({"trials": 0}, "trials must be from 1 to 50"),
        ({"trials": 51}, "trials must be from 1 to 50"),
        ({"trials": 2.5}, "trials must be a whole number"),
        ({"parallel": 0}, "parallel must be from 1 to 4"),
        ({"parallel": 9, "trials": 8}, "parallel 9 is more than trials 8"),
        ({"parallel": 5, "trials": 20}, "parallel must be from 1 to 4"),
        ({"parallel": True}, "parallel must be a whole number"),
        ({"sampler": "cmaes"}, "sampler.type must be one of tpe, random, grid"),
        (
            {"sampler": {"type": "random", "startup_trials": 3}},
            "a random sampler has seed; not startup_trials",
        ),
        ({"sampler": {"type": "tpe", "seed": -1}}, "sampler.seed must be from 0"),
        ({"sampler": "grid"}, "a grid needs a step for each float parameter: give x, lr a step"),
        (
            {
                "sampler": "grid",
                "space": {"opt": SPACE["opt"], "n": {"type": "int", "low": 1, "high": 3}},
            },
            "trials 8 is more than the grid's 6 points: use trials 6 or less",
        ),
        (
            {"space": {"n": {"type": "int", "low": 0, "high": 10**400}}},
            "low and high must be whole numbers",
        ),
        (
            {"space": {"x": {"type": "float", "low": 0, "high": 1, "step": 1e-13}}},
            "step 1e-13 is too small for the range",
        ),
        (
            {
                "sampler": "grid",
                "space": {
                    "a": {"type": "int", "low": 1, "high": 1000},
                    "b": {"type": "int", "low": 1, "high": 1000},
                },
            },
            "the grid has 1000000 points; at most 100000",
        ),
        ({"pruner": "hyperband"}, "pruner.type must be one of median, none"),
        ({"pruner": {"type": "median", "warmup_steps": -1}}, "pruner.warmup_steps must be from 0"),
        ({"pruner": {"type": "none", "warmup_steps": 1}}, "the none pruner has no warmup_steps"),
    ],
)
def test_each_bad_request_is_refused_with_what_to_do(changes, expected):
    assert expected in problems(**changes)


def test_every_problem_is_said_at_once():
    text = problems(space={}, trials=0, pruner="x")
    assert "space is empty" in text and "trials must be" in text and "pruner.type" in text


def test_grid_points_and_default_trials_of_a_grid():
    space = {
        "x": {"type": "float", "low": 0, "high": 1, "step": 0.25},
        "n": {"type": "int", "low": 2, "high": 6, "step": 2},
        "opt": {"type": "categorical", "choices": ["sgd", "adam"]},
    }
    spec = check_search(request(space=space, sampler="grid", trials=None), SETTINGS)
    assert spec["trials"] == 5 * 3 * 2  # the whole grid
    assert grid_points(spec["space"]) == {
        "x": [0.0, 0.25, 0.5, 0.75, 1.0],
        "n": [2, 4, 6],
        "opt": ["sgd", "adam"],
    }


def test_distributions_are_optunas():
    spec = check_search(request(), SETTINGS)
    dists = distributions(spec["space"])
    assert dists["x"] == FloatDistribution(-1.0, 1.0)
    assert dists["lr"] == FloatDistribution(1e-4, 1.0, log=True)
    assert dists["n"] == IntDistribution(1, 8)
    assert dists["opt"] == CategoricalDistribution(["sgd", "adam"])
