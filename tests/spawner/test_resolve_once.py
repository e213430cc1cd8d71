"""An instance's image and flavor are resolved once per request in each process.

The platform API service resolves the options once per create, start or update; the hub
resolves them once per start (the spawn form, apply_user_options, the quota admission,
start() with its container or pod spec, and metering all share that one resolution).
Counted here by wrapping spawner.options.resolve_options and the policy's flavor and image
lookups. The spawners run against in-process doubles: the Kubernetes API double of
tests/spawner/test_kubernetes.py (conftest.py), and for the Docker spawner a stand-in for its engine
calls; the manager runs against a stand-in for JupyterHub's REST API.
"""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest
from jupyterhub import orm

from features.instances.manager import InstanceManager
from features.quotas.store import QuotaChecker
from spawner import base as spawner_base
from spawner import options as spawner_options
from spawner.docker import WorkbenchDockerSpawner
from spawner.options import InstancePolicy, make_policy

OPTIONS = {"image": "python", "flavor": "cpu.small", "storage_gib": 5}


@pytest.fixture
def counts(monkeypatch):
    """{"resolve", "flavor", "image"}: calls of resolve_options, policy.flavor, policy.image."""
    found = {"resolve": 0, "flavor": 0, "image": 0}
    resolve = spawner_options.resolve_options

    def counted_resolve(*args, **kwargs):
        found["resolve"] += 1
        return resolve(*args, **kwargs)

    # wherever a module imported it by name
    for module in list(sys.modules.values()):
        if getattr(module, "resolve_options", None) is resolve:
            monkeypatch.setattr(module, "resolve_options", counted_resolve)
    for lookup in ("flavor", "image"):
        original = getattr(InstancePolicy, lookup)

        def counted(self, *args, _original=original, _lookup=lookup, **kwargs):
            found[_lookup] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(InstancePolicy, lookup, counted)
    return found


class Recorder:
    """A usage recorder that keeps what it is told."""

    def __init__(self):
        self.opened = []

    def open(self, user, name, resources, when):
        self.opened.append(resources)

    def close(self, user, name, when):
        pass


class Quotas:
    """Quota limits high enough to admit the start (so admission counts its flavor)."""

    def limits(self, user):
        return {"vcpus": 100, "memory_gib": 1000}

    def workspace_limits(self, workspace):
        return {"vcpus": 100}


def with_quotas_and_metering(spawner, recorder):
    """The spawner admits each start against quotas and meters it, as the hub's are."""
    spawner.quota_limits = Quotas
    spawner.usage_recorder = lambda: recorder
    spawner.user.orm_user = SimpleNamespace(orm_spawners={spawner.name: spawner.orm_spawner})
    spawner.user.spawners = {}
    spawner.user.settings = {}
    spawner.user.db = SimpleNamespace(query=lambda cls: [spawner.orm_spawner])


async def spawn(spawner):
    """What JupyterHub's User.spawn does with the spawner: apply the options, then start."""
    await spawner._run_apply_user_options(spawner.user_options)
    return await spawner.start()


async def test_kubernetes_start_resolves_once(make_spawner, kube, counts):
    spawner = make_spawner(options=dict(OPTIONS))
    recorder = Recorder()
    with_quotas_and_metering(spawner, recorder)

    await spawn(spawner)

    assert counts == {"resolve": 1, "flavor": 1, "image": 1}
    # what was resolved reached the pod and the meter
    (pod,) = kube.created["pod"]
    assert pod["metadata"]["labels"]["ai-workbench/flavor"] == "cpu.small"
    assert [r["flavor"] for r in recorder.opened] == ["cpu.small"]

    # the next start resolves afresh (settings or saved images may have changed)
    await spawner.stop()
    await spawn(spawner)
    assert counts["resolve"] == 2


async def test_spawn_form_resolution_serves_the_start_it_submits(make_spawner, kube, counts):
    spawner = make_spawner(options={})
    form = {"image": ["python"], "flavor": ["cpu.small"], "storage_gib": ["5"]}

    options = await spawner.run_options_from_form(form)
    # as the spawn page's POST does: the form's options become the instance's, then it spawns
    spawner.orm_spawner.user_options = spawner.user_options = options
    await spawn(spawner)

    assert counts == {"resolve": 1, "flavor": 1, "image": 1}


async def test_an_old_form_resolution_is_not_reused(make_spawner, kube, counts, monkeypatch):
    spawner = make_spawner(options={})
    form = {"image": ["python"], "flavor": ["cpu.small"]}
    monkeypatch.setattr(spawner_base, "FORM_RESOLUTION_SECONDS", -1)

    options = await spawner.run_options_from_form(form)
    # as the spawn page's POST does: the form's options become the instance's, then it spawns
    spawner.orm_spawner.user_options = spawner.user_options = options
    await spawn(spawner)

    assert counts["resolve"] == 2


async def test_docker_start_resolves_once(counts, monkeypatch):
    spawner = WorkbenchDockerSpawner(
        user=SimpleNamespace(name="alice", id=1, url="/user/alice/"),
        orm_spawner=orm.Spawner(name="nb", user_options=dict(OPTIONS)),
    )
    spawner.user_options = dict(OPTIONS)
    recorder = Recorder()
    with_quotas_and_metering(spawner, recorder)
    engine_calls = []

    async def engine(method, *args, **kwargs):
        engine_calls.append((method, args))
        return {
            "inspect_image": {"Config": {"Cmd": ["jupyterhub-singleuser"]}},
            "info": {"NCPU": 64, "MemTotal": 1 << 40},
            "inspect_volume": {},
            "inspect_network": {},
            "version": {"Components": [{"Name": "Engine"}]},
        }[method]

    async def nothing(*args, **kwargs):
        return None

    async def created(*args, **kwargs):
        return {"Id": "c0ffee0123456789"}

    async def address(*args, **kwargs):
        return "127.0.0.1", 8888

    # the engine's side of a start; DockerSpawner.start() and ours run as they are
    monkeypatch.setattr(WorkbenchDockerSpawner, "_engine_is_podman", None)  # asked, not cached
    monkeypatch.setattr(spawner, "docker", engine)
    monkeypatch.setattr(spawner, "get_object", nothing)
    monkeypatch.setattr(spawner, "create_object", created)
    monkeypatch.setattr(spawner, "start_object", nothing)
    monkeypatch.setattr(spawner, "get_ip_and_port", address)
    monkeypatch.setattr(spawner, "_wait_ready", nothing)

    assert await spawn(spawner) == ("127.0.0.1", 8888)

    assert counts == {"resolve": 1, "flavor": 1, "image": 1}
    ref = spawner.policy.catalog.get("python").ref
    assert ("inspect_image", (ref,)) in engine_calls and spawner.image == ref
    assert spawner.mem_limit == spawner.policy.flavors["cpu.small"].memory
    assert [r["flavor"] for r in recorder.opened] == ["cpu.small"]


class FakeHub:
    """JupyterHub's REST API as the manager uses it: servers stored in memory, a start
    answers 201 (ready within the hub's slow_spawn_timeout)."""

    live = None

    def __init__(self):
        self.servers_ = {}

    async def servers(self, user):
        return {name: dict(server) for name, server in self.servers_.items()}

    async def server(self, user, name):
        server = self.servers_.get(name)
        return None if server is None else dict(server)

    async def request(self, method, path, body=None, **kwargs):
        name = path.rsplit("/", 1)[1]
        if method in ("PUT", "PATCH"):
            server = self.servers_.setdefault(name, {"name": name, "stopped": True})
            server["user_options"] = body["user_options"]
        elif method == "DELETE":
            self.servers_[name].update(ready=False, stopped=True)

    async def request_status(self, method, path, body=None, **kwargs):
        name = path.rsplit("/", 1)[1]
        self.servers_[name].update(ready=True, stopped=False, started="2030-01-01T00:00:00Z")
        return 201, None


class NoStoredQuotas:
    """The platform database's quota rows: none, so the defaults apply."""

    async def run(self, fn):
        return {}


async def test_manager_resolves_once_per_request(counts):
    policy = make_policy(
        default_image="python",
        default_flavor="cpu.small",
        storage_min_gib=1,
        storage_max_gib=100,
        storage_default_gib=10,
    )
    hub = FakeHub()
    manager = InstanceManager(hub, policy)
    manager.quotas = QuotaChecker(NoStoredQuotas(), policy, {"vcpus": 100})

    created = await manager.create("alice", {"name": "nb", **OPTIONS})
    assert created["state"] == "running" and created["flavor"] == "cpu.small"
    assert counts == {"resolve": 1, "flavor": 1, "image": 1}

    await manager.stop("alice", "nb")
    for key in counts:
        counts[key] = 0
    await manager.start("alice", "nb")
    assert counts == {"resolve": 1, "flavor": 1, "image": 1}

    for key in counts:
        counts[key] = 0
    updated = await manager.update("alice", "nb", {"flavor": "cpu.medium"})
    assert updated["flavor"] == "cpu.medium"
    assert hub.servers_["nb"]["user_options"]["flavor"] == "cpu.medium"
    assert counts == {"resolve": 1, "flavor": 1, "image": 1}
