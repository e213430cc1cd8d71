"""Distributed training jobs on real containers: each node a container on the job's network,
found through the same rendezvous variables as on Kubernetes."""

from __future__ import annotations

import re

import pytest

from .jobs_helpers import logs, script_source, submit, wait_for


@pytest.fixture(scope="module")
def dana(hub):
    return hub.add_user("dani")


def _per_node(client, name, nodes):
    return [logs(client, "dani", name, node=r) for r in range(nodes)]


def test_a_two_node_pytorch_ddp_job_all_reduces_and_agrees_on_the_loss(hub, dana):
    submit(
        dana,
        "ddp",
        script_source("ddp_allreduce.py"),
        image="pytorch",
        runtime="pytorch",
        nodes=2,
        metrics=[{"name": "loss", "regex": r"step=\d+ loss=([0-9.]+) rank=0"}],
    )
    done = wait_for(dana, "dani", "ddp", timeout=300)
    node_logs = _per_node(dana, "ddp", 2)
    assert done["state"] == "succeeded", (done, node_logs)
    for rank, text in enumerate(node_logs):
        assert f"world_size=2 rank={rank}" in text, text
        assert f"allreduce=3 rank={rank}" in text, text  # 1 + 2 summed over both ranks
    losses = [re.findall(r"step=(\d+) loss=([0-9.]+)", text) for text in node_logs]
    assert losses[0] and losses[0] == losses[1]
    metrics = dana.api("GET", "jobs/dani/ddp/versions/1/metrics")
    assert [p["value"] for p in metrics["loss"]] == [float(v) for _, v in losses[0]]
    files = dana.api("GET", "jobs/dani/ddp/versions/1/files?path=output")
    assert "output/result.json" in [f["path"] for f in files]


def test_a_two_worker_tensorflow_job_trains_with_multiworker_mirrored_strategy(hub, dana):
    submit(
        dana,
        "tf",
        script_source("tf_mwms.py"),
        image="tensorflow",
        runtime="tensorflow",
        nodes=2,
        flavor="cpu.small",
    )
    done = wait_for(dana, "dani", "tf", timeout=400)
    node_logs = _per_node(dana, "tf", 2)
    assert done["state"] == "succeeded", (done, node_logs)
    for index, text in enumerate(node_logs):
        assert f"replicas_in_sync=2 worker={index}" in text, text
    epochs = [re.findall(r"epoch=(\d+) loss=([0-9.]+)", text) for text in node_logs]
    assert len(epochs[0]) == 2 and epochs[0] == epochs[1]


def test_a_two_node_mindspore_job_all_reduces_through_msrun(hub, dana):
    submit(
        dana,
        "ms",
        script_source("mindspore_job.py"),
        image="mindspore",
        runtime="mindspore",
        nodes=2,
        flavor="cpu.small",
    )
    done = wait_for(dana, "dani", "ms", timeout=500)
    node_logs = _per_node(dana, "ms", 2)
    assert done["state"] == "succeeded", (done, node_logs)
    files = dana.api("GET", "jobs/dani/ms/versions/1/files?path=output")
    paths = [f["path"] for f in files]
    assert "output/result.json" in paths
    # msrun keeps each worker's own log in the output folder
    workers = [p for p in paths if re.search(r"worker_\d+\.log$", p)]
    assert len(workers) == 2, paths
    texts = [
        dana.session.get(f"{dana.api_url}/jobs/dani/ms/versions/1/files/{p}").text
        for p in sorted(workers)
    ]
    for rank, text in enumerate(texts):
        assert f"allreduce=3 rank={rank}" in text, text[-2000:]
    losses = [re.findall(r"step=(\d+) loss=([0-9.]+)", t) for t in texts]
    assert losses[0] and losses[0] == losses[1]
