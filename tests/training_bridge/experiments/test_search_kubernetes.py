"""Searches on the Kubernetes backend: the search service over the real job service whose
runner is the real Kubernetes runner, its trials becoming indexed Jobs whose nodes get the
trial's parameters as arguments.

No cluster runs here: the Kubernetes API is the in-process double of test_kubernetes.py
(FakeKube), which keeps the Jobs it is sent; the test plays the pods the Job controller would
make (exited, with the metric lines a trial prints, computed from the arguments the pod
would get). The platform's database is a real SQLite file. The same setup shows that a
service started after a crash takes up a trial whose job version was made but not yet
recorded, instead of making another.
"""

from __future__ import annotations

import asyncio
import json
import math
from types import SimpleNamespace

import pytest
from kubernetes_asyncio.client import ApiClient
from workbench.training import format_metric_line

from hub.db import Database
from hub.db.core import Base
from hub.service.api import APIError
from images.catalog import UnknownImage, load_catalog
from spawner.flavors import get_flavor, load_flavors
from spawner.options import InvalidOptions
from tests.training_bridge.test_kubernetes import (
    NAMESPACE,
    PVC,
    FakeKube,
    exited_pod,
    job_pod,
    kubelet_environment,
)
from training_bridge import store as job_store
from training_bridge.experiments import store
from training_bridge.experiments.searches import SearchService
from training_bridge.experiments.settings import ExperimentSettings
from training_bridge.files import JobFolders
from training_bridge.kubernetes import KubernetesJobRunner
from training_bridge.service import JobService
from training_bridge.settings import JobSettings

from .search_helpers import quadratic_source

OWNER = "srkb-a"
ME = {"name": OWNER, "admin": False}


class Policy:
    """The instance policy's image and flavor lookups (the shipped catalog and flavors)."""

    default_flavor = "cpu.tiny"
    default_image = "python"

    def __init__(self):
        self.flavors = load_flavors()
        self.catalog = load_catalog()

    def flavor(self, name):
        if name not in self.flavors:
            raise InvalidOptions(f"Unknown flavor {name!r}.")
        return get_flavor(self.flavors, name)

    def image(self, name, user=None):
        try:
            return self.catalog.get(name)
        except UnknownImage as e:
            raise InvalidOptions(str(e)) from None

    async def prefetch(self, user, name):
        pass


class Hub:
    async def servers(self, user):
        return {}


class Quotas:
    async def limits(self, user):
        return {"vcpus": 2, "running_jobs": 0}


@pytest.fixture
async def platform(tmp_path):
    db = Database(f"sqlite:///{tmp_path}/platform.sqlite")
    Base.metadata.create_all(
        db.engine,
        tables=[
            job_store.Job.__table__,
            job_store.JobVersion.__table__,
            job_store.JobMetric.__table__,
            store.Search.__table__,
            store.Trial.__table__,
        ],
    )
    kube = FakeKube()
    async with ApiClient() as api_client:
        runner = KubernetesJobRunner(
            NAMESPACE, pvc_name=PVC, api_client=api_client, poll_interval=0.01, request_timeout=1
        )
        runner.core = runner.batch = runner.custom = kube
        jobs = JobService(
            db=db,
            hub=Hub(),
            policy=Policy(),
            settings=SimpleNamespace(container_prefix="wbk", data_path=tmp_path),
            job_settings=JobSettings(),
            runner=runner,
            folders=JobFolders(tmp_path / "jobs"),
        )
        searches = SearchService(
            db=db, jobs=jobs, settings=ExperimentSettings(), quotas=Quotas(), policy=Policy()
        )
        yield SimpleNamespace(db=db, kube=kube, jobs=jobs, searches=searches)
        for task in list(jobs._tasks):
            task.cancel()
        await runner.close()
    db.dispose()


def loss_of(hyperparameters: dict) -> float:
    """What job_quadratic.py reports last for these hyperparameters."""
    final = (hyperparameters["x"] - 0.3) ** 2 + (math.log10(hyperparameters["lr"]) + 2) ** 2
    return final + (0.0 if hyperparameters["opt"] == "adam" else 0.5)


def play_pods(kube: FakeKube, done: set, seen: list) -> None:
    """Each new Job's pod, as the cluster would run the trial: exited 0 after printing the
    loss the script computes from the arguments the pod gets."""
    for name, job in kube.jobs.items():
        if name in done:
            continue
        done.add(name)
        env, argv = kubelet_environment(job_pod(job, 0))
        # the node wrapper runs the user's command: python quadratic.py --name value ...
        argv = argv[argv.index("quadratic.py") - 1 :]
        seen.append((argv, json.loads(env["WORKBENCH_HYPERPARAMETERS"])))
        args = dict(zip(argv[2::2], argv[3::2], strict=True))
        params = {"x": float(args["--x"]), "lr": float(args["--lr"]), "opt": args["--opt"]}
        final = loss_of(params)
        lines = [format_metric_line("loss", final * (1 + 2 / (s + 1)), s) for s in range(3)]
        pod = kube.add_pod(job, 0, exited_pod(0))
        kube.logs[pod] = ["\n".join(lines).encode() + b"\n"]


async def run_until_ended(p, search_id: int, seen: list, passes: int = 400) -> dict:
    done: set = set()
    for _ in range(passes):
        await p.jobs.tick()
        await asyncio.sleep(0.02)  # the launches and log pumps the pass started
        play_pods(p.kube, done, seen)
        await p.jobs.tick()
        await asyncio.sleep(0.02)
        await p.searches.tick()
        model = await p.searches.get(ME, search_id)
        if model["state"] not in store.SEARCH_ACTIVE:
            return model
    raise AssertionError(f"search {search_id} did not end: {model}")


def request(**changes) -> dict:
    body = {
        "job": "tune",
        "source": quadratic_source(),
        "image": "pytorch",
        "flavor": "cpu.tiny",
        "hyperparameters": {"steps": 3, "sleep": 0},
        "space": {
            "x": {"type": "float", "low": -1, "high": 1},
            "lr": {"type": "float", "low": 1e-4, "high": 1, "log": True},
            "opt": {"type": "categorical", "choices": ["sgd", "adam"]},
        },
        "objective": "loss",
        "trials": 4,
        "parallel": 2,
        "sampler": {"type": "random", "seed": 3},
        "pruner": "none",
    }
    body.update(changes)
    return body


async def test_trials_become_kubernetes_jobs_whose_nodes_get_the_parameters(platform):
    p = platform
    made = await p.searches.create(ME, request())
    seen: list = []
    done = await run_until_ended(p, made["id"], seen)
    trials = done["trials"]
    assert done["state"] == "completed", done
    assert [t["state"] for t in trials] == ["complete"] * 4
    # each trial was one Job, its node's arguments and environment carrying the parameters
    assert len(seen) == 4
    by_hyperparameters = {json.dumps(h, sort_keys=True): argv for argv, h in seen}
    for t in trials:
        hyperparameters = {"steps": 3, "sleep": 0, **t["params"]}
        argv = by_hyperparameters[json.dumps(hyperparameters, sort_keys=True)]
        assert argv[:2] == ["python", "quadratic.py"]
        for name, value in t["params"].items():
            assert argv[argv.index(f"--{name}") + 1] == str(value)
        assert t["value"] == pytest.approx(loss_of(t["params"]) * (1 + 2 / 3))
    best = min(trials, key=lambda t: t["value"])
    assert done["best_trial"] == best["number"]
    # the Jobs are gone once their versions ended; the versions stay with their origin
    assert p.kube.jobs == {}
    job = await p.jobs.get(ME, OWNER, "tune")
    assert [v["spec"]["origin"] for v in job["versions"]] == [
        {"search": made["id"], "trial": n} for n in range(4)
    ]


async def test_parallel_beyond_the_quota_is_refused_before_anything_is_made(platform):
    p = platform
    with pytest.raises(APIError) as e:
        await p.searches.create(ME, request(parallel=3, flavor="cpu.medium"))
    assert e.value.code == 400
    assert "parallel 3 needs 6 vCPUs at once but your quota is 2: use parallel 1 or less" in (
        e.value.message
    )
    assert p.kube.calls == []
    assert await p.searches.list(ME) == []
    assert await p.jobs.list(ME) == []


async def test_a_service_started_after_a_crash_takes_up_a_version_it_made_but_did_not_record(
    platform,
):
    """The crash window: trial 1's job version was made, then the service died before it
    wrote the version's number into the trial's row."""
    p = platform
    made = await p.searches.create(ME, request(trials=3, parallel=1))
    search_id = made["id"]
    await run_until_version_ended(p, 1)
    params = {"x": 0.25, "lr": 0.02, "opt": "adam"}

    def write(session):
        session.add(
            store.Trial(
                search_id=search_id,
                number=1,
                params=json.dumps(params),
                system_attrs="{}",
                state=store.WAITING,
            )
        )

    await p.db.run(write)
    await p.jobs.rerun(
        ME,
        OWNER,
        "tune",
        {"hyperparameters": {"steps": 3, "sleep": 0, **params}},
        platform={"origin": {"search": search_id, "trial": 1}},
    )
    # a new service (the restart) over the same database
    p.searches = SearchService(
        db=p.db, jobs=p.jobs, settings=ExperimentSettings(), quotas=Quotas(), policy=Policy()
    )
    done = await run_until_ended(p, search_id, [])
    assert done["state"] == "completed", done
    assert [(t["number"], t["version"], t["state"]) for t in done["trials"]] == [
        (0, 1, "complete"),
        (1, 2, "complete"),
        (2, 3, "complete"),
    ]
    assert done["trials"][1]["params"] == params
    job = await p.jobs.get(ME, OWNER, "tune")
    assert len(job["versions"]) == 3


async def run_until_version_ended(p, version: int) -> None:
    """Until the job's version ended, the search service not looking (it is down)."""
    done: set = set()
    for _ in range(400):
        await p.jobs.tick()
        await asyncio.sleep(0.02)
        play_pods(p.kube, done, [])
        await p.jobs.tick()
        await asyncio.sleep(0.02)
        model = await p.jobs.get_version(ME, OWNER, "tune", version)
        if model["state"] not in job_store.ACTIVE:
            return
    raise AssertionError(f"version {version} did not end")
