"""Jobs live apart from the instance they came from and from the platform's own processes:
outputs show in the owner's instances, deleting the instance or restarting the hub leaves a
running job running (real containers)."""

from __future__ import annotations

import time

import pytest

from tests.platform import running_hub

from .jobs_helpers import archive, logs, submit, version, wait_for

WRITE_LATER = """\
import os, time
for i in range({n}):
    print(f"tick {{i}}", flush=True)
    time.sleep(1)
with open(os.path.join(os.environ["WORKBENCH_OUTPUT_DIR"], "model.txt"), "w") as f:
    f.write("weights\\n")
print("saved", flush=True)
"""


def _source(n):
    return {"kind": "file", "entry": "w.py", "archive": archive({"w.py": WRITE_LATER.format(n=n)})}


def _running(client, user, name, timeout=120):
    deadline = time.monotonic() + timeout
    while client.instance(name, user)["state"] != "running":
        assert time.monotonic() < deadline, client.instance(name, user)
        time.sleep(1)


@pytest.fixture(scope="module")
def olga(hub):
    return hub.add_user("olga")


def test_a_job_outlives_its_instance_and_its_outputs_show_in_the_owners_instances(hub, olga):
    body = {"name": "nb", "image": "python", "flavor": "cpu.tiny", "storage_gib": 1}
    olga.api("POST", "users/olga/instances", body)
    _running(olga, "olga", "nb")
    made = olga.api(
        "POST",
        "jobs",
        {"name": "outlive", "source": _source(6), "instance": "nb"},
    )
    # image and flavor default to the submitting instance's
    assert (made["spec"]["image"], made["spec"]["flavor"]) == ("python", "cpu.tiny")
    wait_for(olga, "olga", "outlive", states=("running",))
    olga.stop_instance("nb")
    olga.delete_instance("nb")
    done = wait_for(olga, "olga", "outlive")
    assert done["state"] == "succeeded", logs(olga, "olga", "outlive")
    olga.api("POST", "users/olga/instances", {**body, "name": "nb2"})
    _running(olga, "olga", "nb2")
    url = f"{hub.url}/user/olga/nb2/api/contents/jobs/outlive/1/output/model.txt"
    r = olga.session.get(url, params={"content": "1"}, timeout=30)
    assert r.status_code == 200, r.text[:300]
    assert r.json()["content"] == "weights\n"
    # read-only: the job's files are the platform's record of the run
    r = olga.session.put(url, json={"type": "file", "format": "text", "content": "x"})
    assert r.status_code >= 400
    olga.stop_instance("nb2")
    olga.delete_instance("nb2")


@pytest.fixture(scope="module")
def own_hub(tmp_path_factory, engine, test_catalog):
    """A hub of its own: restarting it does not disturb the other tests' hub."""
    with running_hub(
        tmp_path_factory.mktemp("jobs-hub"), engine.url, "jobs", catalog=test_catalog
    ) as h:
        yield h


def test_a_hub_restart_leaves_running_jobs_running_and_takes_them_up(own_hub):
    hub = own_hub
    olga = hub.add_user("olga")
    submit(olga, "survivor", _source(12))
    wait_for(olga, "olga", "survivor", states=("running",))
    hub.restart()
    olga = hub.client("olga", hub.passwords["olga"])
    done = wait_for(olga, "olga", "survivor", timeout=120)
    text = logs(olga, "olga", "survivor")
    assert done["state"] == "succeeded", text
    assert "tick 11" in text and "saved" in text
    assert version(olga, "olga", "survivor")["restarts"] == 0
