"""The optuna bridge: a study rebuilt from trial rows alone asks reproducibly, never asks a
grid point twice, prunes what the median pruner prunes, and picks the best trial (no hub)."""

from __future__ import annotations

import json
from types import SimpleNamespace

from optuna.trial import TrialState

from training_bridge.experiments import study
from training_bridge.experiments.space import check_search
from training_bridge.experiments.store import Trial

SETTINGS = SimpleNamespace(max_trials=100, max_parallel=8)
SPACE = {
    "x": {"type": "float", "low": -1, "high": 1},
    "lr": {"type": "float", "low": 1e-4, "high": 1, "log": True},
    "opt": {"type": "categorical", "choices": ["sgd", "adam"]},
}


def spec_of(**changes):
    body = {
        "space": SPACE,
        "objective": "loss",
        "trials": 20,
        "sampler": {"type": "tpe", "seed": 11, "startup_trials": 3},
        "pruner": {"type": "median", "startup_trials": 2, "warmup_steps": 2},
    }
    body.update(changes)
    return check_search(body, SETTINGS)


def row(number, params, state="complete", value=None, intermediate=None, attrs=None):
    return Trial(
        number=number,
        params=json.dumps(params),
        system_attrs=json.dumps(attrs or {}),
        state=state,
        value=value,
        intermediate=json.dumps(intermediate or {}),
        reason="",
    )


def curve(final, steps=10):
    return {s: final * (1 + 2 / (s + 1)) for s in range(steps)}


def asked_rows(spec, n, value_of=None, rows=None):
    """n trials asked one after the other (after rows), each completed with
    value_of(params)."""
    rows = list(rows or [])
    for number in range(len(rows), len(rows) + n):
        params, attrs = study.ask(spec, rows, number)
        value = value_of(params) if value_of else None
        state = "complete" if value_of else "running"
        rows.append(row(number, params, state, value, attrs=attrs))
    return rows


def test_asks_are_reproducible_from_the_rows_and_differ_by_trial_number():
    spec = spec_of()
    first = [json.loads(r.params) for r in asked_rows(spec, 5)]
    again = [json.loads(r.params) for r in asked_rows(spec, 5)]
    assert first == again  # the same seed and rows: the same trials
    assert len({p["x"] for p in first}) == 5  # seed + number: no two asks alike
    for p in first:
        assert -1 <= p["x"] <= 1 and 1e-4 <= p["lr"] <= 1 and p["opt"] in ("sgd", "adam")
    other = [json.loads(r.params) for r in asked_rows(spec_of(sampler={"seed": 12}), 2)]
    assert other[0] == first[1]  # trial n is asked with seed + n


def test_the_rebuilt_study_holds_the_rows_as_optuna_trials():
    spec = spec_of()
    p = {"x": 0.1, "lr": 0.01, "opt": "adam"}
    rows = [
        row(0, p, "complete", 1.5, curve(1.25)),
        row(1, p, "pruned", 4.0, {0: 9.0, 1: 4.0}),
        row(2, p, "failed"),
        row(3, p, "stopped"),
        row(4, p, "running", None, {0: 3.0}),
        row(5, p, "waiting"),
    ]
    built, _ = study.rebuild(spec, rows)
    states = [t.state for t in built.get_trials(deepcopy=False)]
    # a stopped trial says nothing about its parameters: told as failed, which samplers and
    # pruners leave out
    assert states == [
        TrialState.COMPLETE,
        TrialState.PRUNED,
        TrialState.FAIL,
        TrialState.FAIL,
        TrialState.RUNNING,
        TrialState.RUNNING,
    ]
    trials = built.get_trials(deepcopy=False)
    assert [t.number for t in trials] == [0, 1, 2, 3, 4, 5]
    assert trials[0].value == 1.5 and trials[0].params == p
    assert trials[1].intermediate_values == {0: 9.0, 1: 4.0}
    assert trials[4].intermediate_values == {0: 3.0}


def test_tpe_after_its_startup_trials_proposes_near_the_good_ones():
    def loss(p):
        return (p["x"] - 0.3) ** 2

    spec = spec_of(space={"x": SPACE["x"]}, sampler={"type": "tpe", "seed": 3, "startup_trials": 5})
    rows = asked_rows(spec, 25, loss)
    startup = [json.loads(r.params)["x"] for r in rows[:5]]
    later = [json.loads(r.params)["x"] for r in rows[15:]]
    mean_error = sum(abs(x - 0.3) for x in later) / len(later)
    assert mean_error < sum(abs(x - 0.3) for x in startup) / len(startup)
    assert mean_error < 0.25
    assert study.best("minimize", rows).value < 0.01


def test_a_grid_is_walked_without_asking_a_point_twice():
    space = {
        "n": {"type": "int", "low": 1, "high": 3},
        "opt": {"type": "categorical", "choices": ["sgd", "adam"]},
    }
    spec = spec_of(space=space, sampler="grid", trials=6)
    rows = asked_rows(spec, 3)
    rows[1].state = "stopped"  # a stopped trial in between does not shift the walk
    rows = asked_rows(spec, 3, rows=rows)
    points = [(json.loads(r.params)["n"], json.loads(r.params)["opt"]) for r in rows]
    assert set(points) == {(n, o) for n in (1, 2, 3) for o in ("sgd", "adam")}
    assert len(points) == 6
    # the grid's own bookkeeping is what the rows keep
    assert all("grid_id" in json.loads(r.system_attrs) for r in rows)


def test_the_median_pruner_stops_a_trial_worse_than_the_completed_ones():
    spec = spec_of()
    p = {"x": 0.1, "lr": 0.01, "opt": "adam"}
    done = [row(0, p, "complete", 1.2, curve(1.0)), row(1, p, "complete", 2.4, curve(2.0))]
    worse = row(2, p, "running")
    better = row(3, p, "running")
    rows = [*done, worse, better]
    bad = {s: v for s, v in curve(3.0).items() if s <= 3}
    good = {s: v for s, v in curve(0.5).items() if s <= 3}
    assert study.should_prune(spec, rows, worse, bad)
    assert not study.should_prune(spec, rows, better, good)
    # not within the warm-up steps (0 and 1)
    assert not study.should_prune(spec, rows, worse, {0: 9.0, 1: 4.5})
    # not before startup_trials (2) trials completed
    assert not study.should_prune(spec, [done[0], worse], worse, bad)
    # nor with the pruner "none"
    assert not study.should_prune(spec_of(pruner="none"), rows, worse, bad)


def test_maximize_prunes_the_lower_ones():
    spec = spec_of(objective={"metric": "acc", "direction": "maximize"})
    p = {"x": 0.1, "lr": 0.01, "opt": "adam"}
    rows = [row(0, p, "complete", 0.9, {2: 0.9}), row(1, p, "complete", 0.8, {2: 0.8})]
    low = row(2, p, "running")
    assert study.should_prune(spec, [*rows, low], low, {2: 0.1})
    assert not study.should_prune(spec, [*rows, low], low, {2: 0.95})


def test_the_best_trial_is_the_first_of_the_best_complete_ones():
    p = {"x": 0.1}
    rows = [
        row(0, p, "complete", 2.0),
        row(1, p, "pruned", 0.1),
        row(2, p, "complete", 1.0),
        row(3, p, "complete", 1.0),
        row(4, p, "failed"),
    ]
    assert study.best("minimize", rows).number == 2
    assert study.best("maximize", rows).number == 0
    assert study.best("minimize", [rows[1], rows[4]]) is None
