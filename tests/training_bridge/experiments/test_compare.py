"""Comparing runs against the real hub: three real runs of the quadratic script (python
image, real containers) with different hyperparameters side by side, each run's row and curve
as its own metrics say, what differs marked; a search's trials compared by its id; another
user's runs hidden; malformed requests refused with what to write instead."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest
from workbench import WorkbenchError

from ..jobs_helpers import archive, submit, wait_for

USER = "cmp-ann"
OTHER = "cmp-bo"
JOB = "quad"
SCRIPT = (Path(__file__).parent / "job_quadratic.py").read_text()
SOURCE = {"kind": "file", "entry": "quadratic.py", "archive": archive({"quadratic.py": SCRIPT})}
FIXED = {"steps": 4, "sleep": 0.1}
# the three runs' hyperparameters (versions 1, 2, 3 of one job)
RUNS = [{"x": 0.1, "lr": 0.1}, {"x": 0.5, "lr": 0.1}, {"x": 0.1, "lr": 0.01}]

pytestmark = pytest.mark.integration


def expected_final(x: float, lr: float, steps: int = 4) -> float:
    """What the script reports last: its loss at the last step (sgd: + 0.5)."""
    final = (x - 0.3) ** 2 + (math.log10(lr) + 2) ** 2 + 0.5
    return final * (1 + 2.0 / steps)


@pytest.fixture(scope="module")
def ann(hub):
    """ann with three finished versions of `quad`, one per hyperparameter set."""
    client = hub.add_user(USER)
    submit(client, JOB, SOURCE, hyperparameters={**FIXED, **RUNS[0]})
    for params in RUNS[1:]:
        client.api("POST", f"jobs/{USER}/{JOB}/versions", {"hyperparameters": {**FIXED, **params}})
    for v in (1, 2, 3):
        assert wait_for(client, USER, JOB, v)["state"] == "succeeded"
    return client


@pytest.fixture(scope="module")
def bo(hub):
    """bo with a run of his own."""
    client = hub.add_user(OTHER)
    submit(client, "mine", SOURCE, hyperparameters=FIXED)
    assert wait_for(client, OTHER, "mine")["state"] == "succeeded"
    return client


def compare(client, *runs: str, **params) -> dict:
    query = [("run", r) for r in runs] + list(params.items())
    return client.api("GET", "experiments/compare", params=query)


def refused(client, status: int, *runs: str, **params) -> str:
    with pytest.raises(WorkbenchError) as e:
        compare(client, *runs, **params)
    assert e.value.status == status, e.value.message
    return e.value.message


def test_three_runs_side_by_side_as_each_runs_own_metrics_say(ann):
    refs = [f"{USER}/{JOB}/{v}" for v in (1, 2, 3)]
    result = compare(ann, *refs)
    assert result["parameters"] == ["lr", "sleep", "steps", "x"]
    assert result["metrics"] == ["loss"]
    assert [r["label"] for r in result["runs"]] == ["quad v1", "quad v2", "quad v3"]
    for i, (run, params) in enumerate(zip(result["runs"], RUNS, strict=True)):
        version = ann.api("GET", f"jobs/{USER}/{JOB}/versions/{i + 1}")
        metrics = ann.api("GET", f"jobs/{USER}/{JOB}/versions/{i + 1}/metrics")
        assert (run["owner"], run["name"], run["version"]) == (USER, JOB, i + 1)
        assert run["state"] == "succeeded" and run["trial"] is None
        assert run["hyperparameters"] == version["spec"]["hyperparameters"] == {**FIXED, **params}
        # the final value is the one at the highest step of the run's own metrics
        last = max(metrics["loss"], key=lambda p: p["step"])
        assert last["step"] == 3
        assert run["final"] == {"loss": last["value"]}
        assert run["final"]["loss"] == pytest.approx(expected_final(**params), rel=1e-3)
        # its curve is its metric's points, step by step
        assert result["curves"]["loss"][i] == {
            "run": i,
            "points": [[p["step"], p["value"]] for p in metrics["loss"]],
        }
    assert result["differs"] == {
        "lr": True,
        "sleep": False,
        "steps": False,
        "x": True,
        "loss": True,
    }


def test_what_differs_is_judged_over_the_runs_compared(ann):
    # versions 1 and 2 share lr; 1 and 3 share x
    assert compare(ann, f"{USER}/{JOB}/1", f"{USER}/{JOB}/2")["differs"]["lr"] is False
    pair = compare(ann, f"{USER}/{JOB}/1", f"{USER}/{JOB}/3")
    assert pair["differs"]["x"] is False and pair["differs"]["lr"] is True
    # one run alone differs from nothing; a run given twice counts once
    one = compare(ann, f"{USER}/{JOB}/2", f"{USER}/{JOB}/2")
    assert len(one["runs"]) == 1 and not any(one["differs"].values())


def test_another_users_runs_are_not_found_and_nothing_is_shown(ann, bo):
    message = refused(ann, 404, f"{OTHER}/mine/1")
    assert "No job 'mine'" in message
    # one hidden run refuses the whole comparison
    refused(ann, 404, f"{USER}/{JOB}/1", f"{OTHER}/mine/1")
    refused(bo, 404, f"{USER}/{JOB}/1")
    # runs that are not there: the job's missing version, a missing job
    assert "has no version 9" in refused(ann, 404, f"{USER}/{JOB}/9")
    refused(ann, 404, f"{USER}/nothing/1")
    assert compare(bo, f"{OTHER}/mine/1")["runs"][0]["owner"] == OTHER


@pytest.mark.parametrize(
    "runs, params, words",
    [
        ((), {}, ["Nothing to compare", "run=owner/name/version"]),
        ((f"{JOB}/1",), {}, ["is not owner/name/version", "run=alice/train/3"]),
        ((f"{USER}/{JOB}/one",), {}, ["is not owner/name/version"]),
        ((f"{USER}/{JOB}/0",), {}, ["is not owner/name/version"]),
        ((f"{USER}/{JOB}/1/2",), {}, ["is not owner/name/version"]),
        ((), {"search": "first"}, ["not a search's id", "search=4"]),
        (tuple(f"{USER}/{JOB}/{v}" for v in range(1, 22)), {}, ["21 runs", "the 20"]),
    ],
)
def test_malformed_requests_are_refused_with_what_to_write(ann, runs, params, words):
    message = refused(ann, 400, *runs, **params)
    for word in words:
        assert word in message, message


def test_a_searchs_trials_compare_by_its_id_with_their_trial(hub, ann, bo):
    search = ann.api(
        "POST",
        "searches",
        {
            "job": "quad-search",
            "source": SOURCE,
            "image": "python",
            "flavor": "cpu.tiny",
            "hyperparameters": FIXED,
            "space": {"x": {"type": "float", "low": -1, "high": 1}},
            "objective": {"metric": "loss", "direction": "minimize"},
            "trials": 2,
            "parallel": 2,
            "sampler": {"type": "random", "seed": 3},
            "pruner": "none",
        },
    )
    deadline = time.monotonic() + 240
    while search["state"] == "running":
        assert time.monotonic() < deadline, search
        time.sleep(1)
        search = ann.api("GET", f"searches/{search['id']}")
    assert search["state"] == "completed", search
    result = compare(ann, search=str(search["id"]))
    trials = search["trials"]
    assert [r["label"] for r in result["runs"]] == ["quad-search trial 0", "quad-search trial 1"]
    for run, trial in zip(result["runs"], trials, strict=True):
        assert run["version"] == trial["version"]
        assert run["trial"] == {
            "search": search["id"],
            "number": trial["number"],
            "state": "complete",
        }
        assert run["hyperparameters"] == {**FIXED, **trial["params"]}
        assert run["final"]["loss"] == pytest.approx(trial["value"])
    assert result["differs"]["x"] is True and result["differs"]["steps"] is False
    # a trial's run named by itself carries its trial too
    alone = compare(ann, f"{USER}/quad-search/{trials[1]['version']}")
    assert alone["runs"][0]["trial"]["number"] == 1
    # runs and a search together: the search's first, then the others
    both = compare(ann, f"{USER}/{JOB}/1", search=str(search["id"]))
    assert [r["label"] for r in both["runs"]][-1] == "quad v1"
    # another user's search is not found; an unknown one neither
    assert "No search" in refused(bo, 404, search=str(search["id"]))
    refused(ann, 404, search="999999")
