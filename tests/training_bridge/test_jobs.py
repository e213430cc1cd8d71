"""Training jobs against the real hub: runs, outputs, bad input, another user's job."""

from __future__ import annotations

import pytest
from workbench import WorkbenchError

from .jobs_helpers import archive, logs, submit, version, wait_for

HELLO = """\
import json, os, sys
print("argv", sys.argv[1:])
print("hyperparameters", os.environ["WORKBENCH_HYPERPARAMETERS"])
print("node", os.environ["WORKBENCH_NODE_RANK"], "of", os.environ["WORKBENCH_NUM_NODES"])
for step in range(3):
    print(f"step={step} loss={1.0 / (step + 1):.4f}", flush=True)
    print(f"workbench-metric name=accuracy value={0.5 + step / 10} step={step}", flush=True)
with open(os.path.join(os.environ["WORKBENCH_OUTPUT_DIR"], "result.txt"), "w") as f:
    f.write("trained\\n")
"""


@pytest.fixture(scope="module")
def jo(hub):
    return hub.add_user("jo")


def test_a_plain_job_runs_to_success_with_its_parameters_logs_metrics_and_outputs(hub, jo):
    source = {"kind": "file", "entry": "hello.py", "archive": archive({"hello.py": HELLO})}
    made = submit(
        jo,
        "hello",
        source,
        hyperparameters={"lr": 0.5, "tag": "a b"},
        metrics=[{"name": "loss", "regex": r"loss=([0-9.]+)"}],
    )
    assert made["version"] == 1 and made["state"] in ("queued", "starting", "running")
    done = wait_for(jo, "jo", "hello")
    assert done["state"] == "succeeded", done
    text = logs(jo, "jo", "hello")
    assert "argv ['--lr', '0.5', '--tag', 'a b']" in text
    assert '"lr": 0.5' in text and "node 0 of 1" in text
    assert "[workbench] " in text  # the platform's own events: queued, starting, running
    metrics = jo.api("GET", "jobs/jo/hello/versions/1/metrics")
    assert [p["value"] for p in metrics["loss"]] == [1.0, 0.5, 0.3333]
    assert [p["step"] for p in metrics["accuracy"]] == [0, 1, 2]
    files = jo.api("GET", "jobs/jo/hello/versions/1/files?path=output")
    assert {"path": "output/result.txt", "size": 8, "type": "file"} in files
    r = jo.session.get(f"{jo.api_url}/jobs/jo/hello/versions/1/files/output/result.txt")
    assert r.status_code == 200 and r.content == b"trained\n"
    job = jo.api("GET", "jobs/jo/hello")
    assert job["state"] == "succeeded" and [v["version"] for v in job["versions"]] == [1]
    assert "jo" in [j["owner"] for j in jo.api("GET", "jobs")]


def _refused(client, body_changes, status, words):
    body = {
        "name": "bad",
        "source": {"kind": "file", "entry": "t.py", "archive": archive({"t.py": "print(1)"})},
        "image": "python",
        "flavor": "cpu.tiny",
        **body_changes,
    }
    with pytest.raises(WorkbenchError) as e:
        client.api("POST", "jobs", body)
    assert e.value.status == status, e.value.message
    for word in words:
        assert word in e.value.message, e.value.message


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"image": "nope"}, ["nope"]),
        ({"flavor": "cpu.huge"}, ["Unknown flavor", "cpu.tiny"]),
        ({"nodes": 99, "runtime": "pytorch"}, ["nodes"]),
        ({"flavor": "gpu.a100"}, ["this machine has"]),
        ({"source": {"kind": "folder", "archive": archive({"a.py": ""})}}, ["needs a command"]),
        ({"command": "   "}, ["command is empty"]),
        (
            {"source": {"kind": "file", "entry": "missing.py", "archive": archive({"t.py": ""})}},
            ["no file 'missing.py'"],
        ),
        ({"source": {"kind": "file", "entry": "t.py", "archive": "not base64!"}}, ["base64"]),
        ({"hyperparameters": {"lr": [1, 2]}}, ["Hyperparameter 'lr'"]),
        ({"hyperparameters": "lr=1"}, ["hyperparameters must be an object"]),
        ({"metrics": [{"name": "loss", "regex": "loss=(["}]}, ["regex"]),
        ({"name": "Bad Name"}, ["Invalid job name"]),
        ({"nodes": 2}, ["runs on one node"]),
        ({"inputs": {"data": {"instance": "nope", "path": "x"}}}, ["no instance 'nope'"]),
        ({"inputs": {"data": {"instance": "nb", "path": "../etc"}}}, ["no instance"]),
    ],
)
def test_bad_submissions_are_refused_with_the_reason_and_leave_nothing(hub, jo, changes, words):
    _refused(jo, changes, 400, words)
    assert "bad" not in [j["name"] for j in jo.api("GET", "jobs")]
    assert not (hub.root / "data" / "jobs" / "jo" / "bad").exists()


def test_another_users_job_is_hidden_and_cannot_be_stopped(hub, jo):
    other = hub.add_user("jo-other")
    source = {"kind": "file", "entry": "t.py", "archive": archive({"t.py": "print('mine')"})}
    submit(jo, "private", source)
    for method, path in (
        ("GET", "jobs/jo/private"),
        ("GET", "jobs/jo/private/versions/1"),
        ("POST", "jobs/jo/private/versions/1/stop"),
        ("DELETE", "jobs/jo/private"),
        ("GET", "jobs/jo/private/versions/1/logs"),
    ):
        with pytest.raises(WorkbenchError) as e:
            other.api(method, path)
        assert e.value.status == 404, (method, path, e.value.message)
    assert "private" not in [j["name"] for j in other.api("GET", "jobs")]
    assert wait_for(jo, "jo", "private")["state"] == "succeeded"
    assert version(jo, "jo", "private")["owner"] == "jo"


def test_a_rerun_with_changed_parameters_is_a_new_version_beside_the_first(hub, jo):
    code = "import sys\nprint('args', sys.argv[1:])\n"
    source = {"kind": "file", "entry": "r.py", "archive": archive({"r.py": code})}
    submit(jo, "rerun", source, hyperparameters={"lr": 0.1})
    assert wait_for(jo, "jo", "rerun")["state"] == "succeeded"
    second = jo.api("POST", "jobs/jo/rerun/versions", {"hyperparameters": {"lr": 0.2}})
    assert second["version"] == 2 and second["spec"]["hyperparameters"] == {"lr": 0.2}
    assert second["spec"]["image"] == "python" and second["spec"]["flavor"] == "cpu.tiny"
    assert wait_for(jo, "jo", "rerun", 2)["state"] == "succeeded"
    assert "args ['--lr', '0.1']" in logs(jo, "jo", "rerun", 1)
    assert "args ['--lr', '0.2']" in logs(jo, "jo", "rerun", 2)
    # each version keeps the code it ran
    r = jo.session.get(f"{jo.api_url}/jobs/jo/rerun/versions/2/files/code/r.py")
    assert r.text == code
    with pytest.raises(WorkbenchError) as e:
        jo.api("POST", "jobs/jo/rerun/versions", {"nodes": "two"})
    assert e.value.status == 400 and "nodes must be a whole number" in e.value.message
    with pytest.raises(WorkbenchError) as e:
        jo.api("POST", "jobs/jo/rerun/versions", {"name": "other"})
    assert e.value.status == 400 and "A re-run can change" in e.value.message
    assert [v["version"] for v in jo.api("GET", "jobs/jo/rerun")["versions"]] == [1, 2]
    updated = jo.api("PATCH", "jobs/jo/rerun", {"description": "learning rates"})
    assert updated["description"] == "learning rates"
    jo.api("DELETE", "jobs/jo/rerun/versions/1")
    assert [v["version"] for v in jo.api("GET", "jobs/jo/rerun")["versions"]] == [2]
    assert not (hub.root / "data" / "jobs" / "jo" / "rerun" / "1").exists()
    jo.api("DELETE", "jobs/jo/rerun")
    with pytest.raises(WorkbenchError) as e:
        jo.api("GET", "jobs/jo/rerun")
    assert e.value.status == 404
    assert not (hub.root / "data" / "jobs" / "jo" / "rerun").exists()
    events = {
        e["event"]
        for e in hub.client().api("GET", "audit?resource_type=job&limit=200")
        if e["resource_id"].startswith("jo/rerun")
    }
    assert {
        "createModelArtsTrainJob",
        "createModelArtsTrainVersion",
        "updateModelArtsTrainDesc",
        "deleteModelArtsTrainVersion",
        "deleteModelArtsTrainJob",
    } <= events


def test_workspace_members_see_its_jobs_but_only_the_owner_changes_them(hub, jo):
    admin = hub.client()
    mate = hub.add_user("jo-mate")
    admin.api("POST", "workspaces", {"name": "lab", "members": ["jo", "jo-mate"]})
    source = {"kind": "file", "entry": "t.py", "archive": archive({"t.py": "print('shared')"})}
    submit(jo, "shared", source, workspace="lab")
    assert wait_for(mate, "jo", "shared")["state"] == "succeeded"
    assert "shared" in [j["name"] for j in mate.api("GET", "jobs?workspace=lab")]
    assert "shared" in logs(mate, "jo", "shared")
    with pytest.raises(WorkbenchError) as e:
        mate.api("DELETE", "jobs/jo/shared")
    assert e.value.status == 403 and "only they and administrators" in e.value.message
    with pytest.raises(WorkbenchError) as e:
        submit(mate, "elsewhere", source, workspace="nowhere")
    assert e.value.status == 400 and "not a member of workspace 'nowhere'" in e.value.message


def test_job_node_time_is_metered_by_flavor(hub, jo):
    source = {
        "kind": "file",
        "entry": "t.py",
        "archive": archive({"t.py": "import time; time.sleep(2)"}),
    }
    submit(jo, "metered", source, flavor="cpu.small")
    assert wait_for(jo, "jo", "metered")["state"] == "succeeded"
    rows = jo.api("GET", "usage?since=-1h")["rows"]
    jobs = [r for r in rows if r["kind"] == "job" and "metered/1/node-0" in r["instances"]]
    assert len(jobs) == 1 and jobs[0]["flavor"] == "cpu.small"
    assert jobs[0]["seconds"] >= 2 and jobs[0]["vcpu_seconds"] == pytest.approx(
        jobs[0]["seconds"], rel=0.01
    )
