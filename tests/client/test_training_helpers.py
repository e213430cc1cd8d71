"""What training scripts call inside a job (workbench.training): metric lines, checkpoints,
hyperparameters and the node's place, from the environment a job's node gets."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from workbench import training

from training_bridge.metrics import LogMetricParser, MetricPoint

JOB_VARIABLES = (
    "WORKBENCH_CHECKPOINT_DIR",
    "WORKBENCH_OUTPUT_DIR",
    "WORKBENCH_HYPERPARAMETERS",
    "WORKBENCH_NODE_RANK",
    "WORKBENCH_NUM_NODES",
)


@pytest.fixture
def job(tmp_path, monkeypatch):
    """A node's environment, as training_bridge.plan.base_environment sets it."""
    monkeypatch.setenv("WORKBENCH_CHECKPOINT_DIR", str(tmp_path / "checkpoints"))
    monkeypatch.setenv("WORKBENCH_OUTPUT_DIR", str(tmp_path / "output"))
    monkeypatch.setenv("WORKBENCH_HYPERPARAMETERS", json.dumps({"lr": 0.1, "layers": [2, 3]}))
    monkeypatch.setenv("WORKBENCH_NODE_RANK", "1")
    monkeypatch.setenv("WORKBENCH_NUM_NODES", "2")
    return tmp_path


@pytest.fixture
def outside(tmp_path, monkeypatch):
    """Outside a job: none of its variables, in an empty working folder."""
    for name in JOB_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_report_metric_prints_the_line_the_platform_parses(capsys):
    training.report_metric("loss", 0.25, step=3)
    training.report_metric("eval/acc", 1)
    out = capsys.readouterr().out
    assert out == (
        "workbench-metric name=loss value=0.25 step=3\nworkbench-metric name=eval/acc value=1.0\n"
    )
    parser = LogMetricParser()
    points = [p for line in out.splitlines() for p in parser.feed(line, 9.0)]
    assert points == [MetricPoint("loss", 3, 0.25, 9.0), MetricPoint("eval/acc", 0, 1.0, 9.0)]


def test_report_metric_refuses_what_cannot_be_parsed(capsys):
    for name in ("has space", "1st", "", "x" * 65):
        with pytest.raises(ValueError, match="metric name"):
            training.report_metric(name, 1.0)
    with pytest.raises(ValueError, match="whole number"):
        training.report_metric("loss", 1.0, step=1.5)
    with pytest.raises(ValueError):
        training.report_metric("loss", "not a number")
    assert capsys.readouterr().out == ""
    # a diverged loss is printed, and the platform skips it
    training.report_metric("loss", float("nan"))
    line = capsys.readouterr().out
    assert line == "workbench-metric name=loss value=nan\n"
    assert LogMetricParser().feed(line, 0.0) == []


def test_a_metric_line_reaches_the_output_at_once(tmp_path):
    """Printed with flush: a pipe gets the line while the script still runs."""
    script = (
        "import sys, time\nfrom workbench.training import report_metric\n"
        "report_metric('loss', 1.5, 0)\nsys.stdin.readline()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"},
    )
    try:
        assert proc.stdout.readline() == "workbench-metric name=loss value=1.5 step=0\n"
    finally:
        proc.communicate("\n", timeout=30)


def test_the_job_environment(job):
    assert training.hyperparameters() == {"lr": 0.1, "layers": [2, 3]}
    assert training.output_dir() == job / "output"
    assert training.checkpoint_dir() == job / "checkpoints"
    assert (training.node_rank(), training.num_nodes()) == (1, 2)


def test_outside_a_job(outside):
    assert training.hyperparameters() == {}
    assert training.output_dir().resolve() == outside / "output"
    assert training.checkpoint_dir().resolve() == outside / "checkpoints"
    assert (training.node_rank(), training.num_nodes()) == (0, 1)
    assert training.load_checkpoint() is None
    assert training.latest_checkpoint_path() is None
    training.save_checkpoint({"a": 1}, 0)
    assert (outside / "checkpoints" / "checkpoint-0.json").is_file()


def test_bad_variables_say_which(job, monkeypatch):
    monkeypatch.setenv("WORKBENCH_HYPERPARAMETERS", "{lr: 1}")
    with pytest.raises(ValueError, match=r"\$WORKBENCH_HYPERPARAMETERS is not JSON"):
        training.hyperparameters()
    monkeypatch.setenv("WORKBENCH_HYPERPARAMETERS", "[1]")
    with pytest.raises(ValueError, match="not a JSON object"):
        training.hyperparameters()
    monkeypatch.setenv("WORKBENCH_NODE_RANK", "first")
    with pytest.raises(ValueError, match=r"\$WORKBENCH_NODE_RANK"):
        training.node_rank()


def test_checkpoints_save_load_and_keep_the_newest(job):
    folder = job / "checkpoints"
    assert training.load_checkpoint() is None  # a first run
    for step in (10, 20, 30, 40):
        path = training.save_checkpoint({"step": step, "weights": [step, step + 1]}, step)
        assert path == folder / f"checkpoint-{step}.json"
    assert training.load_checkpoint() == ({"step": 40, "weights": [40, 41]}, 40)
    assert (folder / "latest").read_text().strip() == "checkpoint-40.json"
    # keep=3: the oldest went; no temporary files are left behind
    assert sorted(p.name for p in folder.iterdir()) == [
        "checkpoint-20.json",
        "checkpoint-30.json",
        "checkpoint-40.json",
        "latest",
    ]
    # `latest` is what was saved last, even a lower step (a restart from an older one)
    training.save_checkpoint({"step": 25}, 25, keep=0)
    assert training.load_checkpoint() == ({"step": 25}, 25)
    assert len(list(folder.glob("checkpoint-*.json"))) == 4
    # without the pointer: the highest step
    (folder / "latest").unlink()
    assert training.load_checkpoint() == ({"step": 40, "weights": [40, 41]}, 40)


def test_a_failed_save_leaves_the_last_checkpoint(job):
    training.save_checkpoint({"ok": True}, 1)
    with pytest.raises(TypeError):
        training.save_checkpoint({"model": object()}, 2)
    with pytest.raises(ValueError, match="whole number"):
        training.save_checkpoint({}, -1)
    assert training.load_checkpoint() == ({"ok": True}, 1)
    assert sorted(p.name for p in (job / "checkpoints").iterdir()) == [
        "checkpoint-1.json",
        "latest",
    ]


def test_checkpoint_files_are_readable_by_others(job):
    """Written through a temporary file, but with a new file's usual permissions (the platform
    and the user's instances read them)."""
    old = os.umask(0o022)
    try:
        path = training.save_checkpoint({}, 0)
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def test_latest_checkpoint_path_of_the_users_own_files(job):
    folder = job / "checkpoints"
    folder.mkdir()
    assert training.latest_checkpoint_path() is None
    for i, name in enumerate(["model-1.pt", "model-3.pt", "model-2.pt"]):
        (folder / name).write_bytes(b"x")
        os.utime(folder / name, ns=(10**18 + i * 10**9, 10**18 + i * 10**9))
    (folder / "notes.txt").write_text("x")
    # the most recently written, whatever the names say
    assert training.latest_checkpoint_path() == folder / "model-2.pt"
    assert training.latest_checkpoint_path("model-*.pt") == folder / "model-2.pt"
    assert training.latest_checkpoint_path("*.txt") == folder / "notes.txt"
    assert training.latest_checkpoint_path("*.ckpt") is None
