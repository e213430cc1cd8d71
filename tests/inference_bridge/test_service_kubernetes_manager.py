"""Services on the kubernetes backend: the service manager and the router driving KServe.

No cluster here: the Kubernetes API is an in-process double (FakeCluster and FakeKServe of
test_service_kubernetes.py), which the real KubernetesServiceRunner talks to through the real
client. The model registry is test_service_manager.py's double (deploy_files) with ONNX
models; the platform's database is a real SQLite file; the router is the real handler in a
Tornado server, and the service's address in the cluster (from the InferenceService's
status) is a small local HTTP server.
"""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from aiohttp import web
from tornado.httpserver import HTTPServer
from tornado.web import Application

from features.workspaces import store as _workspace_tables  # noqa: F401 - their tables
from hub.db import Database
from hub.db.core import Base
from hub.service.api import APIError
from inference_bridge import kserve_manifests as km
from inference_bridge import store
from inference_bridge.manager import ServiceManager
from inference_bridge.router import ROUTE, InferenceHandler
from inference_bridge.settings import InferenceSettings
from tests.inference_bridge.test_kserve_manifests import SIGNATURE
from tests.inference_bridge.test_service_kubernetes import (  # noqa: F401 - fixtures
    ISVC,
    NO_GPU,
    PODS,
    POLICIES,
    PVC,
    api,
    cluster,
    expected,
    kserve,
    make_runner,
    pod_status,
    served,
)
from tests.inference_bridge.test_service_manager import Hub, Policy, Quotas
from tests.inference_bridge.test_service_manager import Registry as EngineRegistry
from tests.platform import free_port

OWNER = "alice"
ME = {"name": OWNER, "admin": False}
NOT_READY = [
    {
        "type": "PredictorReady",
        "status": "Unknown",
        "reason": "RevisionMissing",
        "message": "Configuration is waiting for a Revision to become ready.",
    },
    {"type": "Ready", "status": "Unknown", "reason": "RevisionMissing"},
]


class Usage:
    """The usage recorder's interface: the replicas' metered periods, open and closed."""

    def __init__(self):
        self.periods: dict[str, str] = {}  # name -> "open" | "closed"

    def open(self, user, name, resources, when, kind="instance"):
        assert kind == "service" and resources["flavor"] == "cpu.tiny"
        self.periods[name] = "open"

    def close(self, user, name, when):
        self.periods[name] = "closed"


class Registry(EngineRegistry):
    """test_service_manager.py's registry double, with ONNX models (the platform's runtime)."""

    async def deploy_files(self, owner, name, version):
        folder, model = await super().deploy_files(owner, name, version)
        model.update(format="onnx", image="pytorch", command="", signature=SIGNATURE)
        return folder, model


@pytest.fixture
async def upstream():
    """The service's address in the cluster: answers every request with what it received."""
    seen = []

    async def answer(request: web.Request) -> web.Response:
        seen.append(
            {
                "method": request.method,
                "path": request.path_qs,
                "headers": dict(request.headers),
                "body": await request.text(),
            }
        )
        return web.json_response({"model_name": "mnist", "outputs": [{"name": "y"}]})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    server = web.AppRunner(app)
    await server.setup()
    site = web.TCPSite(server, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    yield {"url": f"http://127.0.0.1:{port}", "seen": seen}
    await server.cleanup()


@pytest.fixture
async def k8s(tmp_path, api, cluster, kserve):  # noqa: F811 - the API double's fixtures
    """A service manager on the Kubernetes runner, a router in front of it, three versions
    of an ONNX model."""
    db = Database(f"sqlite:///{tmp_path}/platform.sqlite")
    Base.metadata.create_all(db.engine)

    def register(session):
        model = store.Model(owner=OWNER, name="mnist", description="", workspace="default")
        session.add(model)
        session.flush()
        for version in (1, 2, 3):
            session.add(
                store.ModelVersion(
                    model_id=model.id,
                    version=version,
                    format="onnx",
                    image="pytorch",
                    state="ready",
                )
            )

    db.call(register)
    registry = Registry(tmp_path / "models")
    manager = ServiceManager(
        db=db,
        hub=Hub(),
        policy=Policy(),
        config=InferenceSettings(cold_start_timeout_seconds=1, request_timeout_seconds=10),
        runner=make_runner(api),
        registry=registry,
        quotas=Quotas(),
        usage=Usage(),
        public_url="http://test/services/workbench/inference",
    )
    await manager.tick()  # takes up what the database holds: nothing
    port = free_port()
    server = HTTPServer(Application([(ROUTE, InferenceHandler)], service_manager=manager))
    server.listen(port, "127.0.0.1")
    session = aiohttp.ClientSession()
    yield {
        "manager": manager,
        "registry": registry,
        "api": api,
        "cluster": cluster,
        "kserve": kserve,
        "url": f"http://127.0.0.1:{port}/inference",
        "http": session,
    }
    await session.close()
    server.stop()
    await manager.close()


def body(name, *predictors, **more):
    return {"name": name, "predictors": list(predictors), **more}


def predictor(version, weight=100, **more):
    return {"model": "mnist", "version": version, "weight": weight, "flavor": "cpu.tiny", **more}


def plan_of(name, *versions, **more) -> km.ServicePlan:
    """The ServicePlan the manager should render: (version, weight, fields) per predictor."""
    policy = Policy()
    flavor = policy.flavor("cpu.tiny")
    predictors = tuple(
        km.PredictorPlan(
            model="mnist",
            version=version,
            format="onnx",
            image_ref=policy.image("pytorch").ref,
            owner=OWNER,
            weight=weight,
            cpu=flavor.cpu,
            memory=flavor.memory,
            signature=SIGNATURE,
            **{"target_in_flight": 4, **fields},  # the API's default
        )
        for version, weight, fields in versions
    )
    return km.ServicePlan(owner=OWNER, name=name, predictors=predictors, model_name="mnist", **more)


def isvc(k8s, name) -> dict:
    return k8s["cluster"].objects[ISVC][k8s["manager"].runner.name(OWNER, name)]


def served_version(k8s, name) -> tuple[str, int | None]:
    """(the storage URI the InferenceService serves, its canaryTrafficPercent)."""
    spec = isvc(k8s, name)["spec"]["predictor"]
    return spec["model"]["storageUri"], spec.get("canaryTrafficPercent")


async def look(k8s, name) -> dict:
    """One pass of the manager's loop, then the service's JSON."""
    await k8s["manager"].tick()
    return await k8s["manager"].get(ME, OWNER, name)


async def wait_for(check, within=5.0):
    """Until check() is true (the usage recorder is called on a thread)."""
    for _ in range(int(within / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {within} s")


async def call(k8s, name, key, data='{"inputs": []}', headers=None):
    url = f"{k8s['url']}/{OWNER}/{name}/v2/models/mnist/infer"
    sent = {"Authorization": f"Bearer {key}", **(headers or {})} if key else dict(headers or {})
    async with k8s["http"].post(url, data=data, headers=sent) as answer:
        text = await answer.text()
        return answer.status, (json.loads(text) if text else None)


async def test_a_deploy_makes_the_inference_service_of_its_predictor(k8s):
    manager, apiserver = k8s["manager"], k8s["cluster"]
    # a refused deploy makes nothing in the cluster
    k8s["registry"].changed.add((OWNER, "mnist", 1))
    with pytest.raises(APIError) as e:
        await manager.create(ME, body("digits", predictor(1)))
    assert e.value.code == 409 and "checksum mismatch" in e.value.message
    k8s["registry"].changed.clear()
    with pytest.raises(APIError) as e:
        await manager.create(ME, body("digits", predictor(1, flavor="cpu.large", max_replicas=3)))
    assert e.value.code == 403 and "Quota exceeded" in e.value.message
    assert apiserver.objects[ISVC] == {} and apiserver.objects[POLICIES] == {}

    made = await manager.create(
        ME,
        body(
            "digits",
            predictor(1, min_replicas=0, max_replicas=3, target_in_flight=4),
            scale_to_zero_seconds=30,
        ),
    )

    assert made["state"] == "deploying"
    assert made["url"] == f"http://test/services/workbench/inference/{OWNER}/digits"
    plan = plan_of(
        "digits",
        (1, 100, {"min_replicas": 0, "max_replicas": 3, "target_in_flight": 4}),
        scale_to_zero_seconds=30,
    )
    assert served(isvc(k8s, "digits")) == expected(plan)
    spec = isvc(k8s, "digits")["spec"]["predictor"]
    assert spec["model"]["storageUri"] == f"pvc://{PVC}/{OWNER}/mnist/1"
    assert spec["model"]["modelFormat"] == {"name": "onnx"}
    assert spec["model"]["image"] == Policy().image("pytorch").ref
    assert spec["model"]["resources"]["limits"] == {"cpu": "500m", "memory": str(1024**3)}
    assert (spec["minReplicas"], spec["maxReplicas"], spec["scaleTarget"]) == (0, 3, 4)
    assert spec["annotations"][km.SCALE_TO_ZERO_RETENTION] == "30s"

    # scale to zero changed alone: applied too
    await manager.update(ME, OWNER, "digits", {"scale_to_zero_seconds": 0})
    assert isvc(k8s, "digits")["spec"]["predictor"]["minReplicas"] == 1


async def test_the_clusters_conditions_become_the_services_state_and_reason(k8s):
    manager, controller, apiserver = k8s["manager"], k8s["kserve"], k8s["cluster"]
    await manager.create(ME, body("digits", predictor(1)))
    name = manager.runner.name(OWNER, "digits")

    # Knative deploying, the pod unschedulable: deploying, with the scheduler's words
    revision = controller.reconcile(name, conditions=NOT_READY)
    pod = controller.add_pod(name, revision, "unschedulable")
    service = await look(k8s, "digits")
    assert (service["state"], service["reason"]) == ("deploying", NO_GPU)
    assert service["predictors"][0]["replicas"] == [{"id": pod, "state": "starting", "restarts": 0}]

    # ready
    apiserver.objects[PODS][pod]["status"] = pod_status("ready")
    controller.reconcile(name)
    service = await look(k8s, "digits")
    assert (service["state"], service["reason"]) == ("running", "")
    assert service["predictors"][0]["replicas"] == [{"id": pod, "state": "ready", "restarts": 0}]
    apiserver.logs[pod] = "loading model.onnx\nready\n"
    assert await manager.logs(ME, OWNER, "digits") == "loading model.onnx\nready\n"
    with pytest.raises(APIError) as e:
        await manager.logs(ME, OWNER, "digits", "someone-elses-pod")
    assert e.value.code == 404

    # a new revision on its way after being ready: still running, with the reason
    controller.reconcile(name, conditions=NOT_READY)
    service = await look(k8s, "digits")
    assert service["state"] == "running" and "waiting for a Revision" in service["reason"]

    # the model cannot load: failed, with KServe's reason; the replica crashes
    apiserver.objects[PODS][pod]["status"] = pod_status("crashing")
    controller.reconcile(
        name,
        conditions=[{"type": "Ready", "status": "False", "reason": "ModelLoadFailed"}],
        modelStatus={
            "transitionStatus": "BlockedByFailedLoad",
            "states": {"activeModelState": "FailedToLoad"},
            "lastFailureInfo": {"reason": "ModelLoadFailed", "message": "protobuf parsing failed"},
        },
    )
    service = await look(k8s, "digits")
    assert (service["state"], service["reason"]) == ("failed", "protobuf parsing failed")
    assert service["predictors"][0]["replicas"] == [{"id": pod, "state": "failed", "restarts": 4}]

    # the InferenceService removed behind the platform's back: failed; start makes it again
    del apiserver.objects[ISVC][name]
    service = await look(k8s, "digits")
    assert service["state"] == "failed" and "is gone; start the service" in service["reason"]
    assert service["predictors"][0]["replicas"] == []
    started = await manager.start(ME, OWNER, "digits")
    assert started["state"] == "deploying" and name in apiserver.objects[ISVC]


async def test_weights_canary_promotion_and_rollback_render_the_inference_service(k8s):
    manager, controller = k8s["manager"], k8s["kserve"]
    await manager.create(ME, body("digits", predictor(1)))
    name = manager.runner.name(OWNER, "digits")
    first = controller.reconcile(name)
    controller.add_pod(name, first)
    uri = f"pvc://{PVC}/{OWNER}/mnist"

    # 90/10: the canary's predictor with canaryTrafficPercent 10
    await manager.update(ME, OWNER, "digits", {"predictors": [predictor(1, 90), predictor(2, 10)]})
    plan = plan_of("digits", (1, 90, {}), (2, 10, {}))
    assert served(isvc(k8s, "digits")) == expected(plan)
    assert served_version(k8s, "digits") == (f"{uri}/2", 10)
    second = controller.reconcile(name)
    canary_pod = controller.add_pod(name, second)
    service = await look(k8s, "digits")
    assert [(p["version"], p["weight"], len(p["replicas"])) for p in service["predictors"]] == [
        (1, 90, 1),
        (2, 10, 1),
    ]
    assert service["predictors"][1]["replicas"][0]["id"] == canary_pod

    # new weights: only the split changes, no new revision
    await manager.update(ME, OWNER, "digits", {"predictors": [predictor(1, 50), predictor(2, 50)]})
    assert served_version(k8s, "digits") == (f"{uri}/2", 50)
    assert controller.reconcile(name) == second

    # promotion: the canary alone, all the traffic
    promoted = await manager.promote(ME, OWNER, "digits")
    assert [(p["version"], p["weight"]) for p in promoted["predictors"]] == [(2, 100)]
    assert served(isvc(k8s, "digits")) == expected(plan_of("digits", (2, 100, {})))
    assert served_version(k8s, "digits") == (f"{uri}/2", None)

    # a later canary rolled back: the stable version alone again
    await manager.update(ME, OWNER, "digits", {"predictors": [predictor(2, 80), predictor(3, 20)]})
    assert served_version(k8s, "digits") == (f"{uri}/3", 20)
    rolled = await manager.promote(ME, OWNER, "digits", rollback=True)
    assert [(p["version"], p["weight"]) for p in rolled["predictors"]] == [(2, 100)]
    assert served_version(k8s, "digits") == (f"{uri}/2", None)
    with pytest.raises(APIError) as e:
        await manager.promote(ME, OWNER, "digits")
    assert e.value.code == 409 and "no canary" in e.value.message


async def test_a_plan_the_cluster_cannot_run_is_refused_and_changes_nothing(k8s):
    manager = k8s["manager"]
    manager.runner = make_runner(k8s["api"], deployment_mode=km.RAW_DEPLOYMENT)
    await manager.create(ME, body("raw", predictor(1)))
    before = json.dumps(isvc(k8s, "raw"), sort_keys=True)

    with pytest.raises(APIError) as e:
        await manager.update(ME, OWNER, "raw", {"predictors": [predictor(1, 90), predictor(2, 10)]})

    assert e.value.code == 400 and "Serverless" in e.value.message
    assert json.dumps(isvc(k8s, "raw"), sort_keys=True) == before
    service = await manager.get(ME, OWNER, "raw")
    assert [(p["version"], p["weight"]) for p in service["predictors"]] == [(1, 100)]


async def test_a_call_through_the_router_reaches_the_address_from_the_status(k8s, upstream):
    manager, controller = k8s["manager"], k8s["kserve"]
    await manager.create(ME, body("digits", predictor(1)))
    name = manager.runner.name(OWNER, "digits")
    key = (await manager.create_key(ME, OWNER, "digits", {"name": "ci"}))["key"]

    # no address yet: the request waits for one, then gives up with the reason
    controller.reconcile(name, conditions=NOT_READY)
    await manager.tick()
    status, answer = await call(k8s, "digits", key)
    assert status == 503 and "not ready within 1 s" in answer["message"]
    assert upstream["seen"] == []

    controller.reconcile(name)
    k8s["cluster"].objects[ISVC][name]["status"]["address"]["url"] = upstream["url"] + "/"
    await manager.tick()
    status, answer = await call(
        k8s, "digits", key, headers={"Cookie": "c=1", "X-Workbench-Key": key}
    )

    assert status == 200 and answer == {"model_name": "mnist", "outputs": [{"name": "y"}]}
    (seen,) = upstream["seen"]
    assert (seen["method"], seen["path"], seen["body"]) == (
        "POST",
        "/v2/models/mnist/infer",
        '{"inputs": []}',
    )
    headers = {k.lower() for k in seen["headers"]}
    assert not headers & {"authorization", "cookie", "x-workbench-key"}
    assert seen["headers"]["Host"] == upstream["url"].removeprefix("http://")
    metrics = await manager.metrics(ME, OWNER, "digits")
    assert metrics["predictors"]["mnist:1"]["requests"] == 1
    assert metrics["series"][-1]["requests"] == 1

    # keys are still checked
    assert (await call(k8s, "digits", "wbk_wrong"))[0] == 401
    assert (await call(k8s, "digits", ""))[0] == 401
    await manager.delete_key(ME, OWNER, "digits", "ci")
    assert (await call(k8s, "digits", key))[0] == 401
    assert len(upstream["seen"]) == 1


async def test_stop_deletes_start_applies_again_and_delete_removes_it(k8s, upstream):
    manager, controller, apiserver = k8s["manager"], k8s["kserve"], k8s["cluster"]
    await manager.create(ME, body("digits", predictor(1)))
    name = manager.runner.name(OWNER, "digits")
    pod = controller.add_pod(name, controller.reconcile(name))
    assert (await look(k8s, "digits"))["state"] == "running"
    key = (await manager.create_key(ME, OWNER, "digits", {}))["key"]
    metered = f"digits/{pod.rsplit('-', 1)[-1]}"
    await wait_for(lambda: manager.usage.periods.get(metered) == "open")

    stopped = await manager.stop(ME, OWNER, "digits")

    assert stopped["state"] == "stopped" and stopped["predictors"][0]["replicas"] == []
    assert apiserver.objects[ISVC] == {} and apiserver.objects[POLICIES] == {}
    assert apiserver.objects[PODS] == {}
    await wait_for(lambda: manager.usage.periods[metered] == "closed")
    status, answer = await call(k8s, "digits", key)
    assert status == 503 and "stopped" in answer["message"]
    assert (await look(k8s, "digits"))["state"] == "stopped"  # the loop leaves it alone

    started = await manager.start(ME, OWNER, "digits")
    assert started["state"] == "deploying"
    assert served(isvc(k8s, "digits")) == expected(plan_of("digits", (1, 100, {})))
    controller.reconcile(name)
    apiserver.objects[ISVC][name]["status"]["address"]["url"] = upstream["url"]
    assert (await look(k8s, "digits"))["state"] == "running"
    assert (await call(k8s, "digits", key))[0] == 200

    await manager.delete(ME, OWNER, "digits")
    assert apiserver.objects[ISVC] == {} and apiserver.objects[POLICIES] == {}
    assert await manager.list(ME) == []
    assert (await call(k8s, "digits", key))[0] == 401
