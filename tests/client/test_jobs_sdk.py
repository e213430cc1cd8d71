"""client.jobs: the code archive a submission sends, the command line's parameter parsing, the
sync wrapping of jobs, and jobs on the real hub (submit, logs, follow, metrics, re-run, stop,
delete) from the async and the sync client."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import tarfile
import time

import httpx
import pytest
from workbench import AsyncWorkbenchClient, WorkbenchClient, WorkbenchError
from workbench.resources.jobs import (
    MAX_SOURCE_BYTES,
    Job,
    JobFailed,
    JobSourceError,
    build_archive,
    default_job_name,
    parse_hyperparameters,
    parse_metrics,
)


def members(archive: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        return {m.name: m for m in tar.getmembers()}


def read_member(archive: bytes, name: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        return tar.extractfile(name).read()


# --- the archive (no hub) ---------------------------------------------------------------


def test_a_python_file_is_sent_alone(tmp_path):
    (tmp_path / "train.py").write_text("print('hi')\n")
    (tmp_path / "helper.py").write_text("x = 1\n")
    kind, entry, archive = build_archive(tmp_path / "train.py")
    assert (kind, entry) == ("file", "train.py")
    assert list(members(archive)) == ["train.py"]
    assert read_member(archive, "train.py") == b"print('hi')\n"


def test_a_notebook_is_sent_alone(tmp_path):
    nb = tmp_path / "Explore.ipynb"
    nb.write_text(json.dumps({"cells": [], "nbformat": 4, "nbformat_minor": 5, "metadata": {}}))
    (tmp_path / "data.csv").write_text("a,b\n")
    kind, entry, archive = build_archive(nb)
    assert (kind, entry) == ("notebook", "Explore.ipynb")
    assert list(members(archive)) == ["Explore.ipynb"]


def test_a_folder_is_sent_whole_without_caches_and_links(tmp_path):
    root = tmp_path / "proj"
    (root / "pkg" / "__pycache__").mkdir(parents=True)
    (root / ".git" / "objects").mkdir(parents=True)
    (root / "nb" / ".ipynb_checkpoints").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / "train.py").write_text("import pkg\n")
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (root / "nb" / "a.ipynb").write_text("{}")
    (root / "nb" / ".ipynb_checkpoints" / "a-checkpoint.ipynb").write_text("{}")
    secret = tmp_path / "secret.txt"
    secret.write_text("outside the folder")
    (root / "link.txt").symlink_to(secret)
    (root / "linked-dir").symlink_to(tmp_path)
    kind, entry, archive = build_archive(root)
    assert (kind, entry) == ("folder", None)
    found = members(archive)
    assert sorted(n for n, m in found.items() if m.isfile()) == [
        "nb/a.ipynb",
        "pkg/__init__.py",
        "train.py",
    ]
    assert {"empty", "nb", "pkg"} <= {n for n, m in found.items() if m.isdir()}
    # names are relative, nothing of the skipped folders or behind the links is in it
    assert not any(n.startswith(("/", "..")) or ".git" in n or "pycache" in n for n in found)
    assert not any(m.issym() or m.islnk() for m in found.values())
    assert b"outside the folder" not in gzip_text(archive)


def gzip_text(archive: bytes) -> bytes:
    import gzip

    return gzip.decompress(archive)


def test_a_folder_over_the_limit_is_refused_naming_its_biggest_files(tmp_path):
    root = tmp_path / "big"
    root.mkdir()
    (root / "train.py").write_text("print(1)\n")
    with open(root / "weights.bin", "wb") as f:  # sparse: nothing is written to disk
        f.truncate(MAX_SOURCE_BYTES)
    with pytest.raises(JobSourceError) as e:
        build_archive(root)
    assert "weights.bin" in e.value.message and "64 MiB" in e.value.message
    assert "inputs" in e.value.message
    # a big file inside a skipped folder does not count
    (root / "weights.bin").rename(tmp_path / "weights.bin")
    (root / ".git").mkdir()
    with open(root / ".git" / "pack", "wb") as f:
        f.truncate(MAX_SOURCE_BYTES + 1)
    assert build_archive(root)[0] == "folder"


def test_sources_that_do_not_fit_say_what_to_do(tmp_path):
    with pytest.raises(JobSourceError, match="No such file or folder"):
        build_archive(tmp_path / "nope.py")
    (tmp_path / "run.sh").write_text("echo hi\n")
    with pytest.raises(JobSourceError, match="kind='file'"):
        build_archive(tmp_path / "run.sh")
    kind, entry, _ = build_archive(tmp_path / "run.sh", "file")
    assert (kind, entry) == ("file", "run.sh")
    with pytest.raises(JobSourceError, match="needs a folder"):
        build_archive(tmp_path / "run.sh", "folder")
    with pytest.raises(JobSourceError, match="needs a file"):
        build_archive(tmp_path, "file")
    with pytest.raises(JobSourceError, match="Unknown source kind"):
        build_archive(tmp_path, "zip")


def test_default_names_follow_the_job_name_rule(tmp_path):
    from workbench.names import job_name_problem

    (tmp_path / "Train_MNIST v2.py").write_text("")
    (tmp_path / "My.Project").mkdir()
    cases = {
        tmp_path / "Train_MNIST v2.py": "train-mnist-v2",
        tmp_path / "My.Project": "my-project",
        tmp_path / ("x" * 40 + ".py"): "x" * 32,
        tmp_path / "___.py": "job",
    }
    for path, name in cases.items():
        assert default_job_name(path) == name
        assert job_name_problem(name) is None


def test_parameters_from_the_command_line():
    assert parse_hyperparameters(
        ["lr=0.1", "epochs=3", "amp=true", "opt=adam", "tag=", "expr=a=b", "n=1e-3"]
    ) == {"lr": 0.1, "epochs": 3, "amp": True, "opt": "adam", "tag": "", "expr": "a=b", "n": 1e-3}
    with pytest.raises(ValueError, match="'lr' is not NAME=VALUE"):
        parse_hyperparameters(["lr"])
    with pytest.raises(ValueError, match="not NAME=VALUE"):
        parse_hyperparameters(["=3"])
    assert parse_metrics(["loss=loss=([0-9.]+)"]) == [{"name": "loss", "regex": "loss=([0-9.]+)"}]
    with pytest.raises(ValueError, match="not a regular expression"):
        parse_metrics(["loss=loss=([0-9.]+"])


async def test_submit_refuses_bad_sources_before_any_request(tmp_path):
    """A client whose platform does not answer: every refusal comes before a request (a
    request would raise status 0)."""
    (tmp_path / "proj").mkdir()
    (tmp_path / "nb.ipynb").write_text("{}")
    (tmp_path / "t.py").write_text("")
    async with AsyncWorkbenchClient("http://127.0.0.1:9", "token", user="u") as client:
        with pytest.raises(JobSourceError, match="needs|command="):
            await client.jobs.submit(tmp_path / "proj")
        with pytest.raises(JobSourceError, match="takes no command"):
            await client.jobs.submit(tmp_path / "nb.ipynb", command="python x.py")
        with pytest.raises(JobSourceError, match="Invalid job name"):
            await client.jobs.submit(tmp_path / "t.py", name="Bad Name")
        with pytest.raises(WorkbenchError) as e:
            await client.jobs.submit(tmp_path / "t.py")
        assert e.value.status == 0


# --- the body and the sync wrapping, against an API double (no hub) ----------------------


def version_json(state="running", version=1, **extra) -> dict:
    return {
        "owner": "u",
        "name": "t",
        "version": version,
        "state": state,
        "reason": "",
        "spec": {"hyperparameters": {}},
        **extra,
    }


class StubAPI:
    """An httpx transport answering a few of the jobs API's routes, recording requests. It
    stands in for the platform only where a real hub cannot show the behaviour (the body
    sent from inside an instance, a followed stream breaking off)."""

    def __init__(self):
        self.requests: list[httpx.Request] = []
        self.follows = 0
        self.state = "running"

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path.removeprefix("/services/workbench/api/")
        if request.method == "POST" and path == "jobs":
            return httpx.Response(201, json={**version_json("queued"), "queue_position": 1})
        if path == "jobs/u/t/versions/1/logs" and request.url.params.get("follow") == "1":
            self.follows += 1
            if self.follows == 1:  # breaks off after two lines

                class Broken(httpx.AsyncByteStream):
                    async def __aiter__(self):
                        yield b"one\ntwo\n"
                        raise httpx.ReadError("connection reset")

                return httpx.Response(200, stream=Broken())
            self.state = "succeeded"
            return httpx.Response(200, content=b"one\ntwo\nthree\n")
        if path == "jobs/u/t/versions/1":
            return httpx.Response(200, json=version_json(self.state))
        return httpx.Response(404, json={"status": 404, "message": f"no route {path}"})


def stub_client(api: StubAPI) -> AsyncWorkbenchClient:
    client = AsyncWorkbenchClient("http://wb.test", "token", user="u")
    client._http = httpx.AsyncClient(transport=httpx.MockTransport(api))
    client._http_pid = os.getpid()
    return client


async def test_submit_sends_the_archive_and_the_instance_it_runs_in(tmp_path, monkeypatch):
    (tmp_path / "t.py").write_text("print('hello')\n")
    monkeypatch.setenv("JUPYTERHUB_SERVER_NAME", "nb1")
    api = StubAPI()
    async with stub_client(api) as client:
        job = await client.jobs.submit(tmp_path / "t.py", hyperparameters={"lr": 0.1})
    assert isinstance(job, Job) and (job.name, job.version, job.state) == ("t", 1, "queued")
    body = json.loads(api.requests[0].content)
    assert body["name"] == "t" and body["instance"] == "nb1" and "image" not in body
    assert body["hyperparameters"] == {"lr": 0.1} and body["runtime"] == "plain"
    assert body["source"]["kind"] == "file" and body["source"]["entry"] == "t.py"
    archive = base64.b64decode(body["source"]["archive"])
    assert read_member(archive, "t.py") == b"print('hello')\n"
    # an image and a flavor given: the instance is not needed
    async with stub_client(api) as client:
        await client.jobs.submit(tmp_path / "t.py", image="python", flavor="cpu.tiny")
    assert "instance" not in json.loads(api.requests[-1].content)


async def test_a_followed_log_that_breaks_off_goes_on_without_repeating_lines(monkeypatch):
    monkeypatch.setattr(asyncio, "sleep", _no_sleep)
    api = StubAPI()
    async with stub_client(api) as client:
        job = Job(client, version_json())
        lines = [line async for line in job.logs(follow=True)]
    assert lines == ["one", "two", "three"] and api.follows == 2


async def _no_sleep(*_):
    return None


def test_the_sync_client_wraps_jobs(tmp_path):
    """client.jobs.submit() gives a job whose calls block and whose logs are an iterator."""
    (tmp_path / "t.py").write_text("")
    api = StubAPI()
    client = WorkbenchClient("http://wb.test", "token", user="u")
    client.aio._http = httpx.AsyncClient(transport=httpx.MockTransport(api))
    client.aio._http_pid = os.getpid()
    job = client.jobs.submit(tmp_path / "t.py", image="python", flavor="cpu.tiny")
    assert job.state == "queued" and job.name == "t"
    assert job.refresh().state == "running"
    api.follows = 1  # the stream answers whole at once
    assert list(job.logs(follow=True)) == ["one", "two", "three"]
    assert job.wait(timeout=5)["state"] == "succeeded"


# --- on the real hub ----------------------------------------------------------------------

TRAIN = """\
import argparse, json, os, time
p = argparse.ArgumentParser()
p.add_argument("--lr", type=float, default=0.0)
p.add_argument("--epochs", type=int, default=1)
p.add_argument("--sleep", type=float, default=0.0)
a = p.parse_args()
print("hello from the job", flush=True)
print("params", json.loads(os.environ["WORKBENCH_HYPERPARAMETERS"]), flush=True)
for epoch in range(a.epochs):
    time.sleep(a.sleep)
    print(f"epoch={epoch} loss={1.0 / (epoch + 1) * a.lr:.4f}", flush=True)
    print(f"workbench-metric name=acc value={0.5 + epoch / 10} step={epoch * 10}", flush=True)
with open(os.path.join(os.environ["WORKBENCH_OUTPUT_DIR"], "result.txt"), "w") as f:
    f.write(f"lr={a.lr}\\n")
print("done", flush=True)
"""
LOSS = {"name": "loss", "regex": r"loss=([0-9.]+)"}


@pytest.fixture(scope="module")
def jo(hub):
    """A user for the jobs tests; her jobs are deleted after."""
    client = hub.add_user("sdk-jo")
    yield client
    for job in client.jobs.list():
        client.jobs.delete(job["name"])


@pytest.fixture
def train(tmp_path):
    path = tmp_path / "train.py"
    path.write_text(TRAIN)
    return path


@pytest.mark.integration
async def test_submit_wait_logs_metrics_files(hub, jo, train, tmp_path):
    async with AsyncWorkbenchClient(hub.url, jo.token) as client:
        job = await client.jobs.submit(
            train,
            image="python",
            flavor="cpu.tiny",
            hyperparameters={"lr": 0.5, "epochs": 3},
            metrics=[LOSS],
        )
        assert (job.owner, job.name, job.version) == ("sdk-jo", "train", 1)
        assert job.state in ("queued", "starting", "running")
        final = await job.wait(timeout=240)
        assert final["state"] == "succeeded", (final, await job.read_logs())
        text = await job.read_logs()
        assert "hello from the job" in text and "params {'lr': 0.5, 'epochs': 3}" in text
        assert [line async for line in job.logs()] == text.splitlines()
        metrics = await job.metrics()
        assert [p["value"] for p in metrics["loss"]] == [0.5, 0.25, 0.1667]
        # the lines workbench.training.report_metric() prints count without a rule
        assert [(p["step"], p["value"]) for p in metrics["acc"]] == [(0, 0.5), (10, 0.6), (20, 0.7)]
        listed = {f["path"] for f in await job.files("output")}
        assert "output/result.txt" in listed
        path = await job.download("output/result.txt", tmp_path)
        assert path == tmp_path / "result.txt" and path.read_text() == "lr=0.5\n"
        folder = await job.download("output", tmp_path / "all")
        assert (folder / "result.txt").read_text() == "lr=0.5\n"
        with pytest.raises(WorkbenchError) as e:
            await job.download("output/nope.txt", tmp_path)
        assert e.value.status == 404 and not (tmp_path / "nope.txt").exists()
        # the list holds this job once (the module's other tests add their own)
        assert [j["name"] for j in await client.jobs.list()].count("train") == 1
        again = await client.jobs.get("train")
        assert again.version == 1 and again.state == "succeeded"


@pytest.mark.integration
async def test_follow_yields_lines_as_they_come(hub, jo, tmp_path):
    (tmp_path / "slow.py").write_text(
        "import time\nfor i in range(4):\n    print(f'tick {i}', flush=True)\n    time.sleep(1.5)\n"
    )
    async with AsyncWorkbenchClient(hub.url, jo.token) as client:
        job = await client.jobs.submit(tmp_path / "slow.py", image="python", flavor="cpu.tiny")
        seen: list[tuple[float, str]] = []
        async with asyncio.timeout(240):
            async for line in job.logs(follow=True):
                seen.append((time.monotonic(), line))
        ticks = [(t, line) for t, line in seen if line.startswith("tick")]
        assert [line for _, line in ticks] == [f"tick {i}" for i in range(4)]
        # the ticks came one by one, not all at the end
        assert ticks[-1][0] - ticks[0][0] > 3
        # the platform's own lines came first, from submission on
        assert seen[0][1].startswith("[workbench] ")
        assert (await job.refresh()).state == "succeeded"


@pytest.mark.integration
def test_rerun_stop_and_delete_with_the_sync_client(hub, jo, train):
    job = jo.jobs.submit(
        train,
        name="sync-job",
        image="python",
        flavor="cpu.tiny",
        hyperparameters={"lr": 0.1},
    )
    assert job.wait(timeout=240, check=True)["state"] == "succeeded"
    second = job.rerun(hyperparameters={"lr": 0.2, "epochs": 200, "sleep": 1})
    assert second.version == 2 and second.spec["hyperparameters"]["lr"] == 0.2
    assert [v["version"] for v in second.versions()] == [1, 2]
    # stop it once it runs
    for line in second.logs(follow=True):
        if line.startswith("epoch="):
            break
    stopped = second.stop()
    assert stopped["state"] in ("stopping", "stopped")
    final = second.wait(timeout=120)
    assert final["state"] == "stopped"
    with pytest.raises(JobFailed):
        second.wait(check=True)
    assert "epoch=0" in second.read_logs()
    # version 1 is untouched; deleting the job removes both
    assert jo.jobs.get("sync-job", version=1).state == "succeeded"
    jo.jobs.delete("sync-job")
    with pytest.raises(WorkbenchError) as e:
        jo.jobs.get("sync-job")
    assert e.value.status == 404


@pytest.mark.integration
async def test_inside_an_instance_the_job_names_it(hub, jo, train, monkeypatch):
    """In an instance ($JUPYTERHUB_SERVER_NAME) a submission without an image or flavor
    names the instance, whose image and flavor the platform then uses."""
    monkeypatch.setenv("JUPYTERHUB_SERVER_NAME", "ghost")
    async with AsyncWorkbenchClient(hub.url, jo.token) as client:
        with pytest.raises(WorkbenchError) as e:
            await client.jobs.submit(train, name="in-instance")
        assert e.value.status == 400 and "no instance 'ghost'" in e.value.message
        assert "in-instance" not in [j["name"] for j in await client.jobs.list()]
