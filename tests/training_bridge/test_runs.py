"""How runs behave: restarts that resume from a checkpoint, out of memory, stop, the queue,
and logs followed from submission (real containers)."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from spawner.engine import podman_env

from .jobs_helpers import archive, logs, script_source, submit, version, wait_for

SLOW = """\
import time
for i in range({n}):
    print(f"line {{i}}", flush=True)
    time.sleep({sleep})
"""


@pytest.fixture(scope="module")
def rex(hub):
    return hub.add_user("rex")


def _slow(n=5, sleep=1.0):
    code = SLOW.format(n=n, sleep=sleep)
    return {"kind": "file", "entry": "slow.py", "archive": archive({"slow.py": code})}


def _node_container(engine, prefix, job, rank):
    out = subprocess.run(
        [
            engine.cli,
            "ps",
            "-q",
            "--filter",
            f"label=ai-workbench.job={job}",
            "--filter",
            f"label=ai-workbench.job-node={rank}",
            "--filter",
            "label=ai-workbench.user=rex",
        ],
        capture_output=True,
        text=True,
        env=podman_env(),
        check=True,
    )
    return out.stdout.split()


def _wait_log(client, name, text, timeout=120, v=1):
    deadline = time.monotonic() + timeout
    while text not in logs(client, "rex", name, v):
        assert time.monotonic() < deadline, logs(client, "rex", name, v)
        time.sleep(0.3)


def test_a_killed_node_restarts_the_run_which_resumes_from_its_checkpoint(hub, engine, rex):
    submit(
        rex,
        "resume",
        script_source("resume.py"),
        hyperparameters={"epochs": 8, "sleep": 1},
        max_restarts=2,
    )
    _wait_log(rex, "resume", "epoch=2")
    (container,) = _node_container(engine, hub.prefix, "resume", 0)
    subprocess.run([engine.cli, "kill", container], check=True, env=podman_env())
    done = wait_for(rex, "rex", "resume", timeout=180)
    text = logs(rex, "rex", "resume")
    assert done["state"] == "succeeded", (done, text)
    assert done["restarts"] == 1
    assert "restarting all nodes (1 of 2) after exit code 137 on node 0" in text
    after = text.split("restarting all nodes")[1]
    resumed = int(after.split("resumed from epoch ")[1].split()[0])
    assert resumed >= 3  # it went on from its checkpoint instead of starting over
    assert "epoch=0" not in after and "epoch=7" in after and "restart=1" in after
    state = rex.session.get(
        f"{rex.api_url}/jobs/rex/resume/versions/1/files/checkpoints/state.json"
    ).json()
    assert state["next_epoch"] == 8


def test_a_node_out_of_memory_fails_the_run_with_that_reason(hub, rex):
    submit(rex, "oom", script_source("oom.py"))
    done = wait_for(rex, "rex", "oom", timeout=180)
    assert done["state"] == "failed"
    assert done["reason"] == "out of memory at 1 GiB on node 0", done


def test_a_failing_script_fails_with_its_exit_code(hub, rex):
    code = "import sys\nprint('bad input', flush=True)\nsys.exit(3)\n"
    source = {"kind": "file", "entry": "bad.py", "archive": archive({"bad.py": code})}
    submit(rex, "exit3", source)
    done = wait_for(rex, "rex", "exit3")
    assert (done["state"], done["reason"]) == ("failed", "exit code 3 on node 0")


def test_stop_ends_a_running_job_and_removes_its_container(hub, engine, rex):
    submit(rex, "long", _slow(n=600))
    wait_for(rex, "rex", "long", states=("running",))
    _wait_log(rex, "long", "line 1")
    stopped = rex.api("POST", "jobs/rex/long/versions/1/stop")
    assert stopped["state"] in ("stopping", "stopped")
    done = wait_for(rex, "rex", "long", timeout=60)
    assert (done["state"], done["reason"]) == ("stopped", "stopped by the user")
    assert _node_container(engine, hub.prefix, "long", 0) == []
    assert "line 600" not in logs(rex, "rex", "long")


def test_jobs_wait_in_the_queue_for_the_running_jobs_quota_and_start_when_a_slot_frees(hub, rex):
    admin = hub.client()
    admin.api("PUT", "quotas/users/rex", {"limits": {"running_jobs": 1}})
    try:
        submit(rex, "first", _slow(n=15))
        wait_for(rex, "rex", "first", states=("running",))
        submit(rex, "second", _slow(n=1, sleep=0))
        time.sleep(2.5)
        waiting = version(rex, "rex", "second")
        assert waiting["state"] == "queued"
        assert waiting["reason"] == "waiting: running-jobs quota 1 of 1"
        assert waiting["queue_position"] == 1
        listed = {j["name"]: j for j in rex.api("GET", "jobs")}
        assert listed["second"]["queue_position"] == 1
        assert wait_for(rex, "rex", "first")["state"] == "succeeded"
        assert wait_for(rex, "rex", "second")["state"] == "succeeded"
        assert "queued: position 1 (waiting: running-jobs quota 1 of 1)" in logs(
            rex, "rex", "second"
        )
    finally:
        admin.api("PUT", "quotas/users/rex", {"limits": {"running_jobs": 0}})


def test_logs_follow_from_submission_while_the_job_runs(hub, rex):
    made = submit(rex, "follow", _slow(n=4, sleep=1.5))
    assert made["state"] in ("queued", "starting")
    url = f"{rex.api_url}/jobs/rex/follow/versions/1/logs?follow=1"
    arrivals = []
    with rex.session.get(url, stream=True, timeout=120) as r:
        assert r.status_code == 200
        for line in r.iter_lines(decode_unicode=True):
            arrivals.append((time.monotonic(), line))
    ended = time.monotonic()
    lines = [line for _, line in arrivals]
    assert any("queued" in line for line in lines if line.startswith("[workbench]"))
    first = next(t for t, line in arrivals if line == "line 0")
    last = next(t for t, line in arrivals if line == "line 3")
    # each line came as it was printed, not all at the end
    assert last - first > 3.0 and ended - first > 3.0
    assert lines[-1].startswith("[workbench]") and "succeeded" in lines[-1]


def test_a_metric_regex_and_the_sdk_metric_line_make_time_series(hub, rex):
    code = (
        "for i in range(4):\n"
        "    print(f'epoch {i}: val_acc={0.5 + i / 10:.2f}', flush=True)\n"
        "    print(f'workbench-metric name=lr value={0.1 / (i + 1)} step={i * 10}', flush=True)\n"
    )
    source = {"kind": "file", "entry": "m.py", "archive": archive({"m.py": code})}
    submit(rex, "metrics", source, metrics=[{"name": "val_acc", "regex": r"val_acc=([0-9.]+)"}])
    assert wait_for(rex, "rex", "metrics")["state"] == "succeeded"
    metrics = rex.api("GET", "jobs/rex/metrics/versions/1/metrics")
    assert [p["value"] for p in metrics["val_acc"]] == [0.5, 0.6, 0.7, 0.8]
    assert [p["step"] for p in metrics["lr"]] == [0, 10, 20, 30]
    assert {p["source"] for p in metrics["lr"]} == {"log"}
    assert json.dumps(metrics)  # plain JSON


def test_scalars_written_with_torch_tensorboard_become_metrics(hub, rex):
    code = (
        "import os\n"
        "from torch.utils.tensorboard import SummaryWriter\n"
        "w = SummaryWriter(os.environ['WORKBENCH_TENSORBOARD_DIR'])\n"
        "for step in range(5):\n"
        "    w.add_scalar('train/loss', 1.0 / (step + 1), step)\n"
        "w.close()\n"
        "print('written', flush=True)\n"
    )
    source = {"kind": "file", "entry": "tb.py", "archive": archive({"tb.py": code})}
    submit(rex, "tb", source, image="pytorch", runtime="pytorch")
    done = wait_for(rex, "rex", "tb", timeout=240)
    assert done["state"] == "succeeded", logs(rex, "rex", "tb")
    metrics = rex.api("GET", "jobs/rex/tb/versions/1/metrics")
    points = metrics["train/loss"]
    assert [p["step"] for p in points] == [0, 1, 2, 3, 4]
    assert [round(p["value"], 4) for p in points] == [1.0, 0.5, 0.3333, 0.25, 0.2]
    assert {p["source"] for p in points} == {"tensorboard"}


NOTEBOOK = {
    "cells": [
        {
            "cell_type": "code",
            "metadata": {"tags": ["parameters"]},
            "source": "epochs = 1\nlr = 0.5\n",
            "outputs": [],
            "execution_count": None,
        },
        {
            "cell_type": "code",
            "metadata": {},
            "source": "for e in range(epochs):\n    print(f'epoch={e} lr={lr}')\n",
            "outputs": [],
            "execution_count": None,
        },
    ],
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3"}},
    "nbformat": 4,
    "nbformat_minor": 5,
}


def test_a_notebook_runs_top_to_bottom_with_injected_parameters(hub, rex):
    nb = json.dumps(NOTEBOOK)
    source = {"kind": "notebook", "entry": "train.ipynb", "archive": archive({"train.ipynb": nb})}
    submit(rex, "nb", source, hyperparameters={"epochs": 3, "lr": 0.01})
    done = wait_for(rex, "rex", "nb", timeout=180)
    text = logs(rex, "rex", "nb")
    assert done["state"] == "succeeded", text
    assert "epoch=2 lr=0.01" in text and "epoch=3" not in text
    files = [f["path"] for f in rex.api("GET", "jobs/rex/nb/versions/1/files?path=output")]
    assert "output/train.ipynb" in files  # the executed notebook, with its outputs


def test_a_job_past_its_maximum_run_time_is_stopped_and_failed_with_that_reason(hub, rex):
    submit(rex, "overtime", _slow(n=600), max_run_seconds=3)
    done = wait_for(rex, "rex", "overtime", timeout=90)
    assert (done["state"], done["reason"]) == (
        "failed",
        "stopped at the maximum run time of 3 s",
    )
