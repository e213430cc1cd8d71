"""A search outlives a restart of the platform: its state is the database's rows, so a new
hub process takes it up, follows the trials that ran on, and completes exactly the planned
trials, each one job version (real hub restart, real containers)."""

from __future__ import annotations

import time

import pytest

from tests.platform import running_hub

from .search_helpers import quadratic_search, versions_by_trial, wait_search

OWNER = "srst-a"


@pytest.fixture(scope="module")
def own_hub(tmp_path_factory, engine, test_catalog):
    """A hub of its own: restarting it does not disturb the other tests' hub."""
    with running_hub(
        tmp_path_factory.mktemp("search-hub"), engine.url, "searches", catalog=test_catalog
    ) as h:
        yield h


def test_a_search_resumes_after_a_hub_restart_and_completes_its_planned_trials(own_hub):
    hub = own_hub
    client = hub.add_user(OWNER)
    body = quadratic_search(
        "survive",
        trials=5,
        parallel=2,
        hyperparameters={"steps": 8, "sleep": 0.5},
        sampler={"type": "tpe", "seed": 21, "startup_trials": 2},
        pruner="none",
    )
    made = client.api("POST", "searches", body)
    search_id = made["id"]
    # mid-search: a trial ended, others run
    deadline = time.monotonic() + 300
    while True:
        trials = client.api("GET", f"searches/{search_id}/trials")
        if any(t["state"] == "complete" for t in trials) and any(
            t["state"] == "running" for t in trials
        ):
            break
        assert time.monotonic() < deadline, trials
        time.sleep(0.5)
    before = {t["number"]: t for t in trials}

    hub.restart()
    client = hub.client(OWNER, hub.passwords[OWNER])
    done = wait_search(client, search_id, timeout=300)
    trials = done["trials"]
    assert done["state"] == "completed", done
    assert [t["number"] for t in trials] == [0, 1, 2, 3, 4]
    assert {t["state"] for t in trials} == {"complete"}, trials
    # what was asked before the restart stayed as it was: its parameters, and its job version
    # where it had one (a trial just asked has none until its version is made, which the new
    # process does, once: see below)
    for number, t in before.items():
        assert trials[number]["params"] == t["params"]
        if t["version"] is not None:
            assert trials[number]["version"] == t["version"]
    # one version per trial, none twice, none left over
    versions = versions_by_trial(client, OWNER, "survive", search_id)
    assert sorted(versions) == [0, 1, 2, 3, 4]
    job = client.api("GET", f"jobs/{OWNER}/survive")
    assert len(job["versions"]) == 5
    for t in trials:
        v = versions[t["number"]]
        assert v["version"] == t["version"] and v["state"] == "succeeded"
        assert v["spec"]["hyperparameters"] == {"steps": 8, "sleep": 0.5, **t["params"]}
    assert done["best"]["value"] == min(t["value"] for t in trials)
    # the new process took the search up; it was made once
    text = hub.log_tail(100000)
    assert f"taking up search {search_id}\n" in text
    assert text.count(f"search {search_id} of {OWNER} over job survive made") == 1
