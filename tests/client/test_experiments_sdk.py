"""workbench.search() and workbench.compare(): parameter ranges, run references and a
comparison's table without a hub; then a small search of the quadratic script on the real hub
(4 trials, 2 at once) through the default client: its best trial, a comparison of two of its
runs, the best re-run, and requests the platform refuses."""

from __future__ import annotations

import math

import pytest
import workbench
from workbench import AsyncWorkbenchClient, WorkbenchError
from workbench.resources.experiments import (
    Comparison,
    SearchInputError,
    Trial,
    parse_params,
    run_ref,
    space_body,
)

from tests.platform import REPO

QUADRATIC = REPO / "tests" / "training_bridge" / "experiments" / "job_quadratic.py"
FIXED = {"steps": 4, "sleep": 0.2}
SPACE = {
    "x": "float:-1:1",
    "lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True},
    "opt": ["sgd", "adam"],
}


def quadratic(params: dict, steps: int = FIXED["steps"]) -> float:
    """The loss job_quadratic.py reports at its last step for these parameters."""
    final = (params["x"] - 0.3) ** 2 + (math.log10(params["lr"]) + 2) ** 2
    final += 0.0 if params["opt"] == "adam" else 0.5
    return final * (1 + 2.0 / steps)


# --- without a hub ------------------------------------------------------------------------


def test_parameter_ranges_from_their_short_forms():
    assert parse_params(["lr=float:1e-4:1:log", "n=int:1:8:2", "opt=choice:sgd,adam,1"]) == {
        "lr": {"type": "float", "low": 1e-4, "high": 1.0, "log": True},
        "n": {"type": "int", "low": 1, "high": 8, "step": 2},
        "opt": {"type": "categorical", "choices": ["sgd", "adam", 1]},
    }
    for bad, message in (
        ("lr", "is not NAME=float:LOW:HIGH"),
        ("lr=float:1", "is not one of NAME=float:LOW:HIGH"),
        ("lr=normal:0:1", "is not one of NAME=float:LOW:HIGH"),
        ("n=int:1.5:4", "low '1.5' is not a whole number"),
        ("x=float:0:one", "high 'one' is not a number"),
        ("x=float:0:1:2", "a float range ends with ':log'"),
        ("opt=choice:", "gives no choices"),
    ):
        with pytest.raises(ValueError, match=message):
            parse_params([bad])
    # the SDK takes API dicts, short forms and lists of choices in one space
    assert space_body(SPACE) == {
        "x": {"type": "float", "low": -1.0, "high": 1.0},
        "lr": SPACE["lr"],
        "opt": {"type": "categorical", "choices": ["sgd", "adam"]},
    }
    with pytest.raises(SearchInputError, match="short form") as e:
        space_body({"x": 3})
    assert e.value.status == 400


def test_run_references():
    trial = Trial({"number": 2, "version": 3}, "ana", "tune", 4)
    assert run_ref(trial) == "ana/tune/3"
    assert run_ref("bo/tune/3") == "bo/tune/3"
    assert run_ref("tune/3", "ana") == run_ref(("tune", 3), "ana") == "ana/tune/3"
    for bad in ("tune", "a/b/c/d", "tune/v3", Trial({"number": 0}, "ana", "tune")):
        with pytest.raises(ValueError):
            run_ref(bad)
    with pytest.raises(TypeError):
        run_ref(3)


async def test_compare_refuses_malformed_runs_before_any_request():
    """The platform's address answers nothing: a request would raise status 0."""
    async with AsyncWorkbenchClient("http://127.0.0.1:9", "token", user="u") as client:
        with pytest.raises(SearchInputError, match="is not owner/name/version"):
            await client.compare(["tune/1", "a/b/c/d"])
        with pytest.raises(SearchInputError, match="needs runs or a search"):
            await client.compare([])
        with pytest.raises(SearchInputError, match="is not NAME=float|is not one of"):
            await client.search(job="tune", space={"x": "float:1"})


def test_a_comparison_table_marks_what_differs():
    comparison = Comparison(
        {
            "runs": [
                {"owner": "a", "name": "t", "version": 1, "label": "t trial 0", "state": "s",
                 "hyperparameters": {"lr": 0.1, "n": 2}, "final": {"loss": 0.5}},
                {"owner": "a", "name": "t", "version": 2, "label": "t v2", "state": "s",
                 "hyperparameters": {"lr": 0.1, "n": 3}, "final": {}},
            ],
            "parameters": ["lr", "n"],
            "metrics": ["loss"],
            "differs": {"lr": False, "n": True, "loss": True},
            "curves": {"loss": [{"run": 0, "points": [[0, 1.0], [1, 0.5]]}]},
        }
    )  # fmt: skip
    assert comparison.table() == [
        {"run": "t trial 0", "state": "s", "lr": 0.1, "n": 2, "loss": 0.5},
        {"run": "t v2", "state": "s", "lr": 0.1, "n": 3, "loss": None},
    ]
    assert comparison.curve("loss", 0) == [(0, 1.0), (1, 0.5)] and comparison.curve("loss", 1) == []
    html = comparison._repr_html_()
    assert '<th class="same" title="parameter">lr</th>' in html
    assert '<th class="differs" title="parameter, differs between the runs"' in html
    assert html.count('<td class="differs"') == 4 and html.count('<td class="same"') == 6


# --- on the real hub ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def ana(hub):
    """The default client (`workbench.<name>`) signed in as a user of this module; her
    searches and jobs are deleted after."""
    client = hub.add_user("exsdk-ana")
    workbench.set_default_client(client)
    yield client
    workbench.set_default_client(None)
    for search in client.experiments.searches():
        if search["state"] in ("running", "stopping"):
            client.experiments.stop(search["id"])
        client.experiments.delete(search["id"])
    for job in client.jobs.list():
        client.jobs.delete(job["name"])


@pytest.mark.integration
def test_a_search_its_best_trial_a_comparison_and_the_best_rerun(ana, capsys):
    search = workbench.search(
        QUADRATIC,
        job="exsdk-quad",
        image="python",
        flavor="cpu.tiny",
        hyperparameters=FIXED,
        space=SPACE,
        objective="loss",
        trials=4,
        parallel=2,
        sampler="random",
        seed=7,
        pruner="none",
    )
    assert (search.owner, search.job, search.state) == ("exsdk-ana", "exsdk-quad", "running")
    search.wait(timeout=400, poll=1, progress=True)
    assert search.state == "completed", search.data
    progress = capsys.readouterr().out
    head = f"Search {search.id} (exsdk-quad)"
    assert f"{head} running: 0 of 4 trials ended" in progress
    assert f"{head} completed: 4 of 4 trials ended (4 complete); best trial" in progress

    trials = search.trials()
    assert [t.number for t in trials] == [0, 1, 2, 3]
    assert all(t.state == "complete" and t.steps == 4 for t in trials), trials
    # each trial ran its own parameters: its value is the script's loss for them
    for trial in trials:
        assert set(trial.params) == {"x", "lr", "opt"}
        assert trial.value == pytest.approx(quadratic(trial.params), rel=1e-9)
    assert len({t.version for t in trials}) == 4

    # the best trial is the API's, and the lowest
    api = ana.api("GET", f"searches/{search.id}")
    best = search.best_trial
    assert best.number == api["best_trial"] == api["best"]["number"]
    assert (best.params, best.value, best.version) == (
        api["best"]["params"],
        api["best"]["value"],
        api["best"]["version"],
    )
    assert best.value == min(t.value for t in trials) and best.best
    assert ana.jobs.get("exsdk-quad", version=best.version).spec["hyperparameters"] == {
        **FIXED,
        **best.params,
    }

    # two runs compared: the numbers are each run's own metrics
    other = next(t for t in trials if t.number != best.number)
    comparison = workbench.compare([best, f"exsdk-quad/{other.version}"])
    assert [r["version"] for r in comparison.runs] == [best.version, other.version]
    for index, trial in enumerate((best, other)):
        run = comparison.runs[index]
        points = ana.jobs.get("exsdk-quad", version=trial.version).metrics()["loss"]
        last = max(points, key=lambda p: p["step"])
        assert run["final"]["loss"] == last["value"] == trial.value
        assert run["hyperparameters"] == {**FIXED, **trial.params}
        assert (run["trial"]["search"], run["trial"]["number"]) == (search.id, trial.number)
        assert comparison.curve("loss", index) == [(p["step"], p["value"]) for p in points]
    assert comparison.differs["x"] and comparison.differs["loss"]
    assert not comparison.differs["steps"] and not comparison.differs["sleep"]
    rows = comparison.table()
    assert [(r["x"], r["loss"]) for r in rows] == [
        (best.params["x"], best.value),
        (other.params["x"], other.value),
    ]
    html = comparison._repr_html_()
    assert 'title="parameter, differs between the runs" style="background: #fff3cd">x ≠' in html
    assert '<th class="same" title="parameter">steps</th>' in html
    # the whole search compared: its four runs
    whole = workbench.compare(search)
    assert sorted(r["version"] for r in whole.runs) == sorted(t.version for t in trials)

    # the best re-run: a new version with the best parameters, reaching the same loss
    job = search.rerun_best()
    assert job.name == "exsdk-quad" and job.version > max(t.version for t in trials)
    assert job.spec["hyperparameters"] == {**FIXED, **best.params}
    assert job.wait(timeout=240)["state"] == "succeeded", job.read_logs()
    points = job.metrics()["loss"]
    assert max(points, key=lambda p: p["step"])["value"] == pytest.approx(best.value)


@pytest.mark.integration
def test_bad_searches_are_refused_with_the_reason(ana):
    before = [s["id"] for s in workbench.experiments.searches()]
    request = dict(
        job="exsdk-bad",
        image="python",
        flavor="cpu.tiny",
        hyperparameters=FIXED,
        trials=4,
        parallel=2,
    )
    cases = [
        ({"space": {"x": "float:1:0"}}, "space.x: low (1) must be below high (0)."),
        ({"space": SPACE, "objective": "acc"}, "objective metric 'acc' is reported by no trial"),
        ({"space": {"steps": "int:1:8"}}, "'steps' is both in space and in the fixed"),
        ({"space": SPACE, "parallel": 5}, "parallel 5 is more than trials 4"),
    ]
    for changes, reason in cases:
        with pytest.raises(WorkbenchError) as e:
            workbench.search(QUADRATIC, **{**request, **changes})
        assert e.value.status == 400, e.value
        assert reason in e.value.message
    # nothing was made
    assert [s["id"] for s in workbench.experiments.searches()] == before
    assert "exsdk-bad" not in [j["name"] for j in workbench.jobs.list()]
    with pytest.raises(WorkbenchError) as e:
        workbench.experiments.get(999999)
    assert e.value.status == 404
