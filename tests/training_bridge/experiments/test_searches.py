"""Hyperparameter searches on the real hub with real containers: trials are versions of one
job that run, report, get pruned, fail, and a search finds the known optimum; bad requests
are refused whole and leave nothing behind."""

from __future__ import annotations

import math
import time

import pytest
from workbench import WorkbenchError

from ..jobs_helpers import logs, wait_for
from .search_helpers import (
    QUADRATIC_SPACE,
    quadratic_search,
    quadratic_source,
    source_of,
    versions_by_trial,
    wait_search,
)

OWNER = "srch-a"


@pytest.fixture(scope="module")
def alice(hub):
    return hub.add_user(OWNER)


def test_a_search_finds_the_optimum_prunes_poor_trials_and_keeps_each_trial_as_a_version(
    hub, alice
):
    """8 trials, 2 at a time, of the quadratic script (PyTorch image): trials 0-3 are drawn
    at random with seed 88 + n (trial 0 lands near the optimum, 2 and 3 far worse than the
    median of 0 and 1), then TPE."""
    body = {
        "job": "tune",
        "source": quadratic_source(),
        "image": "pytorch",
        "flavor": "cpu.tiny",
        "hyperparameters": {"steps": 10, "sleep": 0.5},
        "space": QUADRATIC_SPACE,
        "objective": {"metric": "loss", "direction": "minimize"},
        "trials": 8,
        "parallel": 2,
        "sampler": {"type": "tpe", "seed": 88, "startup_trials": 4},
        "pruner": {"type": "median", "startup_trials": 2, "warmup_steps": 2},
        "description": "find the bottom of the bowl",
    }
    made = alice.api("POST", "searches", body)
    search_id = made["id"]
    assert made["state"] == "running" and made["owner"] == OWNER and made["job"] == "tune"
    assert (made["trials_planned"], made["parallel"]) == (8, 2)
    assert made["sampler"] == {"type": "tpe", "seed": 88, "startup_trials": 4}
    assert made["hyperparameters"] == {"steps": 10, "sleep": 0.5}
    assert [t["number"] for t in made["trials"]] == [0]
    assert made["trials"][0]["version"] == 1
    # a running search cannot be deleted
    with pytest.raises(WorkbenchError) as e:
        alice.api("DELETE", f"searches/{search_id}")
    assert e.value.status == 409 and "stop it first" in e.value.message

    done = wait_search(alice, search_id, timeout=900)
    trials = done["trials"]
    assert done["state"] == "completed", done
    assert [t["number"] for t in trials] == list(range(8))
    assert sum(done["counts"].values()) == 8
    by_state = {s: [t for t in trials if t["state"] == s] for s in done["counts"]}
    complete, pruned = by_state["complete"], by_state["pruned"]
    assert complete and pruned, [(t["state"], t["reason"]) for t in trials]
    assert not by_state["failed"], by_state["failed"]
    # pruned trials stopped early: fewer steps than any completed one
    full = min(t["steps"] for t in complete)
    assert full == 10
    assert all(t["steps"] < full for t in pruned), pruned
    for t in pruned:
        assert t["reason"].startswith("pruned at step"), t
        assert t["value"] == t["intermediate"][max(t["intermediate"], key=int)]
    # the best: the lowest value of the completed trials, near the optimum
    best = done["best"]
    assert best["number"] == done["best_trial"] and best["best"] is True
    assert best["value"] == min(t["value"] for t in complete)
    assert abs(best["params"]["x"] - 0.3) < 0.4, best
    assert 1e-3 <= best["params"]["lr"] <= 1e-1, best
    # each trial is one version of the job, with its parameters and its origin
    versions = versions_by_trial(alice, OWNER, "tune", search_id)
    assert sorted(versions) == list(range(8))
    assert [v["version"] for v in alice.api("GET", f"jobs/{OWNER}/tune")["versions"]] == list(
        range(1, 9)
    )
    for t in trials:
        v = versions[t["number"]]
        assert v["version"] == t["version"]
        assert v["spec"]["hyperparameters"] == {"steps": 10, "sleep": 0.5, **t["params"]}
        assert v["spec"]["image"] == "pytorch"
        expected = {"complete": "succeeded", "pruned": "stopped"}[t["state"]]
        assert v["state"] == expected, (t, v)
        if t["state"] == "pruned":  # the run says why it stopped
            assert v["reason"].startswith(f"stopped by search {search_id}, which pruned"), v
        metrics = alice.api("GET", f"jobs/{OWNER}/tune/versions/{t['version']}/metrics")
        points = {str(p["step"]): p["value"] for p in metrics["loss"]}
        if t["state"] == "complete":
            assert t["intermediate"] == points
        else:  # what the pruner judged; the script may have gone on until it was stopped
            assert t["intermediate"].items() <= points.items()
    # the script got its parameters as arguments: its final loss is the known function
    p = best["params"]
    final = (p["x"] - 0.3) ** 2 + (math.log10(p["lr"]) + 2) ** 2 + (p["opt"] != "adam") * 0.5
    printed = logs(alice, OWNER, "tune", best["version"]).split("final loss ")[1].split()[0]
    assert math.isclose(float(printed), final, abs_tol=2e-6)
    assert math.isclose(best["value"], final * 1.2, rel_tol=1e-9)

    # listings: counts and best, not the trials
    (listed,) = [s for s in alice.api("GET", "searches") if s["id"] == search_id]
    assert "trials" not in listed and listed["counts"] == done["counts"]
    assert listed["best"]["number"] == best["number"]
    assert [s["id"] for s in alice.api("GET", "searches", params={"job": "nope"})] == []
    assert alice.api("GET", f"searches/{search_id}/trials") == trials

    # the best trial again: a new version with its parameters
    again = alice.api("POST", f"searches/{search_id}/rerun-best", {"max_run_seconds": 120})
    assert again["version"] == 9
    assert again["spec"]["hyperparameters"] == {"steps": 10, "sleep": 0.5, **best["params"]}
    assert again["spec"]["origin"] == {"search": search_id, "rerun_of_trial": best["number"]}
    assert again["spec"]["max_run_seconds"] == 120
    assert wait_for(alice, OWNER, "tune", 9, timeout=300)["state"] == "succeeded"

    # another user sees none of it
    other = hub.add_user("srch-eve")
    for method, path in (
        ("GET", f"searches/{search_id}"),
        ("GET", f"searches/{search_id}/trials"),
        ("POST", f"searches/{search_id}/stop"),
        ("DELETE", f"searches/{search_id}"),
        ("POST", f"searches/{search_id}/rerun-best"),
    ):
        with pytest.raises(WorkbenchError) as e:
            other.api(method, path)
        assert e.value.status == 404, (method, path, e.value.message)
    assert other.api("GET", "searches") == []
    # an ended search is deleted; its job versions stay
    alice.api("DELETE", f"searches/{search_id}")
    with pytest.raises(WorkbenchError) as e:
        alice.api("GET", f"searches/{search_id}")
    assert e.value.status == 404
    assert len(alice.api("GET", f"jobs/{OWNER}/tune")["versions"]) == 9


MODES = """\
import argparse, sys
from workbench.training import report_metric

parser = argparse.ArgumentParser()
parser.add_argument("--mode")
args, _ = parser.parse_known_args()
if args.mode == "crash":
    print("bad input", flush=True)
    sys.exit(3)
if args.mode == "acc":
    report_metric("acc", 0.5, step=0)
else:
    for step in range(3):
        report_metric("loss", 1.0 / (step + 1), step=step)
"""


def test_a_failing_trial_and_one_without_the_metric_fail_and_the_search_goes_on(hub, alice):
    """A grid in the order crash, acc, ok (its seed 5 shuffles it so), one at a time."""
    made = alice.api(
        "POST",
        "searches",
        {
            "job": "modes",
            "source": source_of(MODES),
            "image": "python",
            "flavor": "cpu.tiny",
            "space": {"mode": {"type": "categorical", "choices": ["crash", "acc", "ok"]}},
            "objective": "loss",
            "sampler": {"type": "grid", "seed": 5},
            "pruner": "none",
            "parallel": 1,
        },
    )
    assert made["trials_planned"] == 3  # a grid's default: all its points
    done = wait_search(alice, made["id"], timeout=300)
    trials = done["trials"]
    assert done["state"] == "completed", done
    assert [t["params"]["mode"] for t in trials] == ["crash", "acc", "ok"]
    assert [t["state"] for t in trials] == ["failed", "failed", "complete"]
    assert trials[0]["reason"] == "exit code 3 on node 0"
    assert trials[1]["reason"] == "did not report metric 'loss' (it reported: acc)"
    assert trials[2]["value"] == pytest.approx(1 / 3)
    assert done["best_trial"] == 2
    assert done["counts"]["failed"] == 2 and done["counts"]["complete"] == 1
    versions = versions_by_trial(alice, OWNER, "modes", made["id"])
    assert [versions[n]["state"] for n in range(3)] == ["failed", "succeeded", "succeeded"]


def test_stop_ends_the_running_trials_and_the_search(hub, alice):
    made = alice.api(
        "POST",
        "searches",
        quadratic_search("stopme", hyperparameters={"steps": 200, "sleep": 0.5}, trials=6),
    )
    search_id = made["id"]
    deadline = time.monotonic() + 300
    while (
        sum(t["state"] == "running" for t in alice.api("GET", f"searches/{search_id}/trials")) < 2
    ):
        assert time.monotonic() < deadline
        time.sleep(0.5)
    stopped = alice.api("POST", f"searches/{search_id}/stop")
    assert stopped["state"] in ("stopping", "stopped")
    done = wait_search(alice, search_id, timeout=120)
    assert done["state"] == "stopped" and done["reason"] == f"stopped by {OWNER}"
    assert len(done["trials"]) == 2
    assert {t["state"] for t in done["trials"]} == {"stopped"}
    assert {t["reason"] for t in done["trials"]} == {"stopped with its search"}
    versions = versions_by_trial(alice, OWNER, "stopme", search_id)
    assert {v["state"] for v in versions.values()} == {"stopped"}
    alice.api("DELETE", f"searches/{search_id}")


BAD = [
    ({"space": {}}, ["space is empty"]),
    ({"hyperparameters": {"x": 0.5, "steps": 4}}, ["'x' is both in space and in the fixed"]),
    (
        {"space": {**QUADRATIC_SPACE, "x": {"type": "float", "low": 1, "high": -1}}},
        ["space.x: low (1) must be below high (-1)"],
    ),
    (
        {"objective": {"metric": "acc", "direction": "maximize"}},
        ["objective metric 'acc' is reported by no trial", "report_metric('acc', value, step)"],
    ),
    ({"image": "nope"}, ["nope"]),
    ({"space": {}, "trials": 0}, ["space is empty", "trials must be from 1"]),
]


@pytest.mark.parametrize("changes, words", BAD)
def test_a_bad_request_is_refused_with_its_reasons_and_makes_nothing(hub, alice, changes, words):
    with pytest.raises(WorkbenchError) as e:
        alice.api("POST", "searches", quadratic_search("bad", **changes))
    assert e.value.status == 400, e.value.message
    for word in words:
        assert word in e.value.message, e.value.message
    assert "bad" not in [j["name"] for j in alice.api("GET", "jobs")]
    assert not [s for s in alice.api("GET", "searches") if s["job"] == "bad"]
    assert not (hub.root / "data" / "jobs" / OWNER / "bad").exists()


def test_a_metrics_rule_names_an_objective_the_code_does_not(hub, alice):
    """The code never names "score", but a metrics rule does: accepted (then stopped)."""
    body = quadratic_search(
        "ruled",
        objective="score",
        metrics=[{"name": "score", "regex": r"final loss ([0-9.]+)"}],
        trials=1,
        parallel=1,
    )
    made = alice.api("POST", "searches", body)
    assert made["objective"] == {"metric": "score", "direction": "minimize"}
    alice.api("POST", f"searches/{made['id']}/stop")
    assert wait_search(alice, made["id"], timeout=120)["state"] == "stopped"


def test_parallel_beyond_the_quota_is_refused_with_what_fits(hub, alice):
    admin = hub.client()
    admin.api("PUT", f"quotas/users/{OWNER}", {"limits": {"vcpus": 1, "running_jobs": 3}})
    try:
        with pytest.raises(WorkbenchError) as e:
            alice.api("POST", "searches", quadratic_search("greedy", parallel=4))
        assert e.value.status == 400
        # cpu.tiny has 0.5 vCPU
        assert (
            "parallel 4 needs 2 vCPUs at once but your quota is 1: use parallel 2 or less"
            in e.value.message
        ), e.value.message
        assert (
            "parallel 4 needs 4 running jobs at once but your quota is 3: use parallel 3 or less"
            in (e.value.message)
        )
        assert "greedy" not in [j["name"] for j in alice.api("GET", "jobs")]
        assert not [s for s in alice.api("GET", "searches") if s["job"] == "greedy"]
    finally:
        admin.api("PUT", f"quotas/users/{OWNER}", {"limits": {"vcpus": 0, "running_jobs": 0}})


def test_a_search_over_an_existing_job_reruns_its_latest_version(hub, alice):
    """The job's latest version is the base: its image, flavor and code; its
    hyperparameters stay fixed but for those the search sets."""
    alice.api(
        "POST",
        "jobs",
        {
            "name": "base",
            "source": quadratic_source(),
            "image": "python",
            "flavor": "cpu.tiny",
            "hyperparameters": {"steps": 2, "sleep": 0, "x": 0.0, "opt": "adam"},
        },
    )
    assert wait_for(alice, OWNER, "base")["state"] == "succeeded"
    # the code names "loss" and version 1 reported it; nothing ever reports "acc"
    with pytest.raises(WorkbenchError) as e:
        alice.api("POST", "searches", {"job": "base", "space": QUADRATIC_SPACE, "objective": "acc"})
    assert e.value.status == 400 and "'acc' is reported by no trial" in e.value.message
    made = alice.api(
        "POST",
        "searches",
        {
            "job": "base",
            "space": {"x": QUADRATIC_SPACE["x"], "lr": QUADRATIC_SPACE["lr"]},
            "objective": "loss",
            "trials": 2,
            "parallel": 2,
            "pruner": "none",
        },
    )
    assert made["hyperparameters"] == {"steps": 2, "sleep": 0, "opt": "adam"}
    assert made["workspace"] == "default"
    done = wait_search(alice, made["id"], timeout=300)
    assert done["state"] == "completed", done
    versions = versions_by_trial(alice, OWNER, "base", made["id"])
    assert sorted(v["version"] for v in versions.values()) == [2, 3]
    for t in done["trials"]:
        spec = versions[t["number"]]["spec"]
        assert spec["image"] == "python" and spec["flavor"] == "cpu.tiny"
        assert spec["hyperparameters"] == {"steps": 2, "sleep": 0, "opt": "adam", **t["params"]}
        assert t["state"] == "complete" and t["steps"] == 2
