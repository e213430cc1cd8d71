"""The service manager and the router on the real engine, with stand-in replicas and no hub.

Replicas are real containers that run a small stand-in HTTP server (the v2 health and infer
paths) from the model's folder, so scaling, canaries, draining and restarts are checked in
seconds. The model registry is a double with the registry's interface (deploy_files); the
platform's database is a real SQLite file. tests/inference_bridge/test_services.py runs the
same through a real hub with the real serving runtime."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter

import aiohttp
import docker
import pytest
from tornado.httpserver import HTTPServer
from tornado.web import Application

from features.workspaces import store as _workspace_tables  # noqa: F401 - their tables
from hub.db import Database
from hub.db.core import Base
from hub.service.api import APIError
from images.catalog import UnknownImage, load_catalog
from inference_bridge import store
from inference_bridge.manager import ServiceManager
from inference_bridge.router import ROUTE, InferenceHandler
from inference_bridge.service_engine import EngineServiceRunner
from inference_bridge.settings import InferenceSettings
from spawner.flavors import get_flavor, load_flavors
from spawner.options import InvalidOptions
from spawner.quotas import Usage
from tests.platform import free_port, remove_engine_objects

OWNER = "svcm"
STANDIN = """\
import http.server, json, os, time, urllib.parse
MODEL = json.loads(os.environ["WORKBENCH_MODEL"])
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go in two writes
    def log_message(self, *args):
        pass
    def answer(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def do_GET(self):
        if self.path.startswith("/v2/health"):
            self.answer(200, {"ready": True})
        else:
            self.answer(404, {"error": "no " + self.path})
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        query = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
        time.sleep(float(query.get("sleep", ["0"])[0]))
        self.answer(200, {
            "model_name": MODEL["name"], "model_version": MODEL["version"],
            "path": self.path, "body": body.decode(), "host": os.uname().nodename,
            "authorization": self.headers.get("Authorization"),
            "cookie": self.headers.get("Cookie"), "key": self.headers.get("X-Workbench-Key"),
        })
http.server.ThreadingHTTPServer(("0.0.0.0", 8080), Handler).serve_forever()
"""


class Registry:
    """The model registry's interface (deploy_files), over folders of this test."""

    def __init__(self, root):
        self.root = root
        self.changed: set[tuple] = set()
        # model name -> the command its replicas run (default: the stand-in server)
        boom = "import sys; print('boom: no weights'); sys.exit(3)"
        self.commands = {"broken": f'python -c "{boom}"'}

    async def deploy_files(self, owner, name, version):
        if (owner, name, version) in self.changed:
            raise APIError(
                409,
                f"Model {owner}/{name} version {version}: file serve.py changed since "
                "registration: checksum mismatch; register a new version.",
            )
        folder = self.root / owner / name / str(version)
        return folder, {
            "owner": owner,
            "name": name,
            "version": version,
            "format": "image",
            "image": "python",
            "command": self.commands.get(name, "python /mnt/models/serve.py"),
            "signature": {},
            "predictor": "",
        }


class Policy:
    """The instance policy's flavor and image lookups."""

    default_flavor = "cpu.tiny"

    def __init__(self):
        self.flavors = load_flavors()
        self.catalog = load_catalog()

    def flavor(self, name):
        if name not in self.flavors:
            raise InvalidOptions(f"Unknown flavor {name!r}. Known flavors: cpu.tiny, ...")
        return get_flavor(self.flavors, name)

    def image(self, name, user=None):
        try:
            return self.catalog.get(name)
        except UnknownImage as e:
            raise InvalidOptions(str(e)) from None

    async def prefetch(self, user, name):
        pass


class Quotas:
    async def limits(self, user):
        return {"vcpus": 4}

    def usage(self, user, servers):
        return Usage()


class Hub:
    async def servers(self, user):
        return {}


@pytest.fixture(scope="module")
async def platform(tmp_path_factory, engine, base_image):
    """A service manager on the engine, a router in front of it, two versions of a model."""
    root = tmp_path_factory.mktemp("svcm")
    db = Database(f"sqlite:///{root}/platform.sqlite")
    Base.metadata.create_all(db.engine)

    def register(session):
        model = store.Model(owner=OWNER, name="echo", description="", workspace="default")
        other = store.Model(owner="svcm-other", name="theirs", description="", workspace="default")
        broken = store.Model(owner=OWNER, name="broken", description="", workspace="default")
        session.add_all([model, other, broken])
        session.flush()
        for m, version in ((model, 1), (model, 2), (other, 1), (broken, 1)):
            session.add(
                store.ModelVersion(
                    model_id=m.id, version=version, format="image", image="python", state="ready"
                )
            )

    db.call(register)
    for owner, name, version in (
        (OWNER, "echo", 1),
        (OWNER, "echo", 2),
        ("svcm-other", "theirs", 1),
        (OWNER, "broken", 1),
    ):
        folder = root / "models" / owner / name / str(version)
        folder.mkdir(parents=True)
        (folder / "serve.py").write_text(STANDIN)
        folder.chmod(0o755)
        (folder / "serve.py").chmod(0o644)
    prefix = "svcm" + uuid.uuid4().hex[:6]
    config = InferenceSettings(
        poll_seconds=0.3,
        scale_down_seconds=2,
        cold_start_timeout_seconds=60,
        ready_timeout_seconds=60,
        request_timeout_seconds=30,
    )
    registry = Registry(root / "models")
    manager = ServiceManager(
        db=db,
        hub=Hub(),
        policy=Policy(),
        config=config,
        runner=EngineServiceRunner(engine.url),
        registry=registry,
        quotas=Quotas(),
        prefix=prefix,
        public_url="http://test/services/workbench/inference",
    )
    await manager.startup()
    port = free_port()
    app = Application([(ROUTE, InferenceHandler)], service_manager=manager)
    server = HTTPServer(app)
    server.listen(port, "127.0.0.1")
    session = aiohttp.ClientSession()
    yield {
        "manager": manager,
        "registry": registry,
        "url": f"http://127.0.0.1:{port}/inference",
        "http": session,
        "engine": engine.url,
        "prefix": prefix,
        "db": db,
        "root": root,
        "config": config,
        "app": app,
    }
    await session.close()
    server.stop()
    await platform_manager(app).close()
    remove_engine_objects(engine.url, prefix)


ME = {"name": OWNER, "admin": False}


@pytest.fixture(autouse=True)
async def no_services_left(platform):
    """Every test starts with no services: each makes the ones it needs, and what it made
    (running, stopped or failed) is deleted after it, so no test sees another's."""
    yield
    manager = platform_manager(platform["app"])
    for service in await manager.list(ME):
        if service["owner"] == OWNER:
            await manager.delete(ME, OWNER, service["name"])


def platform_manager(app) -> ServiceManager:
    return app.settings["service_manager"]


def body(name, *predictors, **more):
    return {"name": name, "predictors": list(predictors), **more}


def predictor(version, weight=100, **more):
    return {"model": "echo", "version": version, "weight": weight, "flavor": "cpu.tiny", **more}


async def wait_until(check, within=60.0, step=0.2):
    deadline = asyncio.get_running_loop().time() + within
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {within} s")
        await asyncio.sleep(step)


async def deployed(platform, name, *predictors, **more) -> dict:
    """A service of the test's own, made here and running with every predictor ready."""
    manager = platform["manager"]
    await manager.create(ME, body(name, *predictors, **more))
    await running(manager, name)
    for p in predictors:
        await wait_until(lambda p=p: _ready(manager, name, f"{p['model']}:{p['version']}"))
    return await manager.get(ME, OWNER, name)


async def running(manager, name):
    async def check():
        service = await manager.get(ME, OWNER, name)
        return service if service["state"] == "running" else None

    return await check() or await wait_until(check)


async def call(platform, name, key, data="{}", sleep=0.0, headers=None):
    url = f"{platform['url']}/{OWNER}/{name}/v2/models/echo/infer"
    if sleep:
        url += f"?sleep={sleep}"
    sent = {"Authorization": f"Bearer {key}", **(headers or {})}
    async with platform["http"].post(url, data=data, headers=sent) as answer:
        text = await answer.text()
        return answer.status, (json.loads(text) if text else None)


def containers(platform, prefix=None) -> list[str]:
    """The engine's containers of this module's manager, or of one service (its object name)."""
    api = docker.APIClient(base_url=platform["engine"], timeout=30)
    return [
        c["Names"][0].lstrip("/")
        for c in api.containers(all=True)
        if c["Names"][0].lstrip("/").startswith(prefix or platform["prefix"])
    ]


def object_of(platform, name) -> str:
    """The prefix of a service's engine objects (its replicas are `<object>-<hex>`)."""
    return platform["manager"].runtime(OWNER, name).object_name + "-"


class Load:
    """Requests in a steady stream from `concurrency` callers until stopped."""

    def __init__(self, platform, name, key, concurrency=4, sleep=0.02):
        self.results: list[tuple[int, dict | None]] = []
        self._stop = asyncio.Event()
        self._tasks = [
            asyncio.ensure_future(self._run(platform, name, key, sleep)) for _ in range(concurrency)
        ]

    async def _run(self, platform, name, key, sleep):
        while not self._stop.is_set():
            try:
                self.results.append(await call(platform, name, key, sleep=sleep))
            except aiohttp.ClientError as e:
                self.results.append((0, {"error": str(e)}))

    async def stop(self):
        self._stop.set()
        await asyncio.gather(*self._tasks)
        return self.results


async def test_bad_requests_are_refused_with_the_reason_and_start_nothing(platform):
    manager = platform["manager"]
    before = (await manager.list(ME), containers(platform))
    cases = [
        (body("bad", predictor(1, 60), predictor(2, 30)), 400, "add to 100"),
        (body("bad", predictor(1, 50), predictor(2, 50), predictor(1, 0)), 400, "at most 2"),
        (body("bad", predictor(1, flavor="cpu.huge")), 400, "Unknown flavor"),
        (body("bad", predictor(1, max_replicas=99)), 400, "at most 8"),
        (body("bad", predictor(1, min_replicas=2, max_replicas=1)), 400, "at least min"),
        (body("bad", predictor(1, weight=99.5)), 400, "whole number"),
        (body("Bad Name", predictor(1)), 400, "Invalid service name"),
        (body("bad", predictor(1, flavor="cpu.small", max_replicas=5)), 403, "5 x cpu.small"),
        (body("bad", {**predictor(1), "model": "theirs", "owner": "svcm-other"}), 404, "no model"),
        (body("bad", predictor(7)), 404, "no version 7"),
        (body("bad", predictor(1), color="red"), 400, "Unknown field"),
    ]
    for request, status, words in cases:
        with pytest.raises(APIError) as e:
            await manager.create(ME, request)
        assert e.value.code == status and words in e.value.message, (request, e.value.message)
    platform["registry"].changed.add((OWNER, "echo", 1))
    try:
        with pytest.raises(APIError) as e:
            await manager.create(ME, body("bad", predictor(1)))
        assert e.value.code == 409 and "checksum mismatch" in e.value.message
    finally:
        platform["registry"].changed.clear()
    assert (await manager.list(ME), containers(platform)) == before
    assert "bad" not in [s["name"] for s in await manager.list(ME)]


async def test_a_public_service_is_callable_by_its_workspaces_members_only(platform):
    from features.workspaces import store as workspaces

    manager = platform["manager"]
    platform["db"].call(lambda s: workspaces.create(s, "team", "", [OWNER, "mate"], by=OWNER))
    manager.workspaces = object()  # memberships are read from the database
    try:
        made = await manager.create(
            ME, body("shared", predictor(1, min_replicas=0), workspace="team", public=True)
        )
        assert (made["workspace"], made["public"]) == ("team", True)
        rt = manager.runtime(OWNER, "shared")
        assert await manager.may_call({"name": "mate"}, rt)
        assert not await manager.may_call({"name": "stranger"}, rt)
        listed = await manager.list({"name": "mate", "admin": False})
        assert [s["name"] for s in listed] == ["shared"]
        with pytest.raises(APIError) as e:
            await manager.delete({"name": "mate", "admin": False}, OWNER, "shared")
        assert e.value.code == 403
        with pytest.raises(APIError) as e:
            await manager.create(ME, body("elsewhere", predictor(1), workspace="other"))
        assert e.value.code == 400 and "not a member" in e.value.message
        await manager.delete(ME, OWNER, "shared")
    finally:
        manager.workspaces = None


async def test_a_replica_that_keeps_failing_fails_the_service_with_its_reason(platform):
    manager = platform["manager"]
    await manager.create(ME, body("broken", {**predictor(1), "model": "broken"}))
    replicas = object_of(platform, "broken")

    async def failed():
        service = await manager.get(ME, OWNER, "broken")
        return service if service["state"] == "failed" else None

    service = await wait_until(failed, within=60)
    assert "exited with code 3: boom: no weights" in service["reason"], service["reason"]
    assert "3 failures in a row" in service["reason"]
    assert service["predictors"][0]["replicas"] == [] and containers(platform, replicas) == []
    key = (await manager.create_key(ME, OWNER, "broken", {}))["key"]
    status, answer = await call(platform, "broken", key)
    assert status == 503 and "boom" in answer["message"]
    await manager.delete(ME, OWNER, "broken")


async def test_keys_canary_split_and_what_reaches_the_replica(platform):
    manager, name = platform["manager"], "split"
    made = await manager.create(ME, body(name, predictor(1)))
    assert made["state"] == "deploying" and made["url"].endswith(f"/{OWNER}/{name}")
    await running(manager, name)
    key = (await manager.create_key(ME, OWNER, name, {"name": "ci"}))["key"]
    assert key.startswith("wbk_")
    assert [k["name"] for k in await manager.keys(ME, OWNER, name)] == ["ci"]
    status, answer = await call(
        platform, name, key, data='{"x": 1}', headers={"Cookie": "c=1", "X-Workbench-Key": key}
    )
    assert status == 200 and answer["model_version"] == "1" and answer["body"] == '{"x": 1}'
    assert answer["authorization"] is None and answer["cookie"] is None and answer["key"] is None
    assert (await call(platform, name, "wbk_wrong"))[0] == 401
    async with platform["http"].post(f"{platform['url']}/{OWNER}/{name}/v2/x") as r:
        assert r.status == 401 and "Bearer" in (await r.json())["message"]

    await manager.update(ME, OWNER, name, {"predictors": [predictor(1, 90), predictor(2, 10)]})
    await running(manager, name)
    await wait_until(lambda: _ready(manager, name, "echo:2"))
    versions = Counter()

    async def caller():
        for _ in range(250):
            status, answer = await call(platform, name, key)
            assert status == 200
            versions[answer["model_version"]] += 1

    await asyncio.gather(*(caller() for _ in range(8)))
    share = versions["2"] / sum(versions.values()) * 100
    assert 7 <= share <= 13, versions
    metrics = await manager.metrics(ME, OWNER, name)
    assert (
        metrics["predictors"]["echo:1"]["requests"] + metrics["predictors"]["echo:2"]["requests"]
        >= 2000
    )
    assert metrics["predictors"]["echo:1"]["p50_ms"] > 0 and metrics["series"]
    text = await manager.metrics(ME, OWNER, name, "prometheus")
    assert (
        f'workbench_inference_requests_total{{service="{OWNER}/{name}",predictor="echo:2"}}' in text
    )

    await manager.delete_key(ME, OWNER, name, "ci")
    assert (await call(platform, name, key))[0] == 401


async def _ready(manager, name, key):
    service = await manager.get(ME, OWNER, name)
    for p in service["predictors"]:
        if f"{p['model']}:{p['version']}" == key:
            return any(r["state"] == "ready" for r in p["replicas"])
    return False


async def test_promote_and_rollback_under_load_drop_nothing(platform):
    manager, name = platform["manager"], "promote"
    await deployed(platform, name, predictor(1, 90), predictor(2, 10))
    replicas = object_of(platform, name)
    key = (await manager.create_key(ME, OWNER, name, {}))["key"]
    load = Load(platform, name, key)
    await asyncio.sleep(1)
    promoted = await manager.promote(ME, OWNER, name)
    assert [(p["version"], p["weight"]) for p in promoted["predictors"]] == [(2, 100)]
    await asyncio.sleep(1)
    results = await load.stop()
    assert results and all(status == 200 for status, _ in results), Counter(s for s, _ in results)
    after = await asyncio.gather(*(call(platform, name, key) for _ in range(20)))
    assert {a["model_version"] for _, a in after} == {"2"}
    assert len(containers(platform, replicas)) == 1  # the old version's replica is gone

    await manager.update(ME, OWNER, name, {"predictors": [predictor(2, 50), predictor(1, 50)]})
    await wait_until(lambda: _ready(manager, name, "echo:1"))
    load = Load(platform, name, key)
    await asyncio.sleep(1)
    rolled = await manager.promote(ME, OWNER, name, rollback=True)
    assert [(p["version"], p["weight"]) for p in rolled["predictors"]] == [(2, 100)]
    await asyncio.sleep(1)
    results = await load.stop()
    assert {a["model_version"] for s, a in results} == {"1", "2"}
    assert all(status == 200 for status, _ in results)
    rolled_replicas = rolled["predictors"][0]["replicas"]
    assert len(containers(platform, replicas)) == len(rolled_replicas) == 1


async def test_a_killed_replica_is_replaced(platform):
    manager, name = platform["manager"], "killed"
    await deployed(platform, name, predictor(1))
    key = (await manager.create_key(ME, OWNER, name, {}))["key"]
    before = (await manager.get(ME, OWNER, name))["predictors"][0]["replicas"]
    load = Load(platform, name, key, concurrency=2)
    await asyncio.sleep(0.5)
    docker.APIClient(base_url=platform["engine"]).kill(before[0]["id"])

    async def replaced():
        replicas = (await manager.get(ME, OWNER, name))["predictors"][0]["replicas"]
        return [r for r in replicas if r["state"] == "ready" and r["id"] != before[0]["id"]]

    now = await wait_until(replaced)
    assert now[0]["restarts"] == 1
    results = await load.stop()
    later = await asyncio.gather(*(call(platform, name, key) for _ in range(10)))
    assert all(status == 200 for status, _ in later)
    assert results[-1][0] == 200
    assert isinstance(await manager.logs(ME, OWNER, name), str)


async def test_scaling_up_under_load_and_down_when_idle(platform):
    manager, name = platform["manager"], "scaled"
    await manager.create(
        ME, body(name, predictor(1, min_replicas=1, max_replicas=3, target_in_flight=1))
    )
    await running(manager, name)
    key = (await manager.create_key(ME, OWNER, name, {}))["key"]
    load = Load(platform, name, key, concurrency=3, sleep=0.3)

    async def count(n, ready=True):
        replicas = (await manager.get(ME, OWNER, name))["predictors"][0]["replicas"]
        return len([r for r in replicas if r["state"] == "ready" or not ready]) == n

    await wait_until(lambda: count(3), within=60)
    since = len(load.results)
    await asyncio.sleep(2)
    results = await load.stop()
    assert all(status == 200 for status, _ in results)
    hosts = Counter(a["host"] for _, a in results[since:])
    assert len(hosts) == 3, hosts  # the least busy replica gets each request
    await wait_until(lambda: count(1, ready=False), within=30)
    service = await manager.get(ME, OWNER, name)
    assert service["predictors"][0]["replicas"][0]["state"] == "ready"


async def test_scale_to_zero_and_the_first_request_waits(platform):
    manager, name = platform["manager"], "zero"
    made = await manager.create(
        ME, body(name, predictor(1, min_replicas=0), scale_to_zero_seconds=2)
    )
    assert made["predictors"][0]["replicas"] == []
    key = (await manager.create_key(ME, OWNER, name, {}))["key"]
    status, answer = await call(platform, name, key)
    assert status == 200 and answer["model_version"] == "1"
    # the answer came from a replica the request made start: one there now, ready
    replicas = (await manager.get(ME, OWNER, name))["predictors"][0]["replicas"]
    assert [r["state"] for r in replicas] == ["ready"]

    async def at_zero():
        return (await manager.get(ME, OWNER, name))["predictors"][0]["replicas"] == []

    await wait_until(at_zero, within=30)
    status, _ = await call(platform, name, key)
    assert status == 200


async def test_a_restarted_manager_takes_up_running_replicas(platform):
    manager = platform["manager"]
    before = (await deployed(platform, "taken-up", predictor(1)))["predictors"][0]["replicas"]
    await manager.close()
    again = ServiceManager(
        db=platform["db"],
        hub=Hub(),
        policy=Policy(),
        config=platform["config"],
        runner=EngineServiceRunner(platform["engine"]),
        registry=platform["registry"],
        quotas=Quotas(),
        prefix=platform["prefix"],
    )
    await again.startup()
    platform["manager"] = platform["app"].settings["service_manager"] = again
    await wait_until(lambda: _ready(again, "taken-up", "echo:1"))
    after = (await again.get(ME, OWNER, "taken-up"))["predictors"][0]["replicas"]
    assert [r["id"] for r in after] == [r["id"] for r in before]


async def test_stop_start_and_delete(platform):
    manager, name = platform["manager"], "stopped"
    await deployed(platform, name, predictor(1))
    replicas = object_of(platform, name)
    stopped = await manager.stop(ME, OWNER, name)
    assert stopped["state"] == "stopped" and stopped["predictors"][0]["replicas"] == []
    assert containers(platform, replicas) == []
    key = (await manager.create_key(ME, OWNER, name, {}))["key"]
    status, answer = await call(platform, name, key)
    assert status == 503 and "stopped" in answer["message"]
    await manager.start(ME, OWNER, name)
    await running(manager, name)
    assert (await call(platform, name, key))[0] == 200
    assert len(containers(platform, replicas)) == 1
    await manager.delete(ME, OWNER, name)
    assert containers(platform, replicas) == []
    assert name not in [s["name"] for s in await manager.list(ME)]
    with pytest.raises(APIError) as e:
        await manager.get(ME, OWNER, name)
    assert e.value.code == 404
