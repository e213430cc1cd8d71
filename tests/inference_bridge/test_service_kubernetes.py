"""The Kubernetes service runner against an in-process double of the Kubernetes API, no cluster.

No cluster runs here. FakeCluster is an HTTP server speaking the Kubernetes API's paths,
verbs, content types and Status errors for the objects the runner touches (KServe's
InferenceServices and ServingRuntimes, NetworkPolicies, pods, their logs, the metrics API);
the runner talks to it through the real kubernetes_asyncio client, so requests are built and
answers parsed as with a cluster. Like the API server with fieldValidation=Strict, the double
validates what it is sent: InferenceServices and ServingRuntimes against KServe's CRD schemas
(vendored beside this module), NetworkPolicies and metadata against the official Kubernetes
schemas (kubernetes-validate). FakeKServe plays KServe's controller and Knative in Serverless
mode as far as the tests need them: a new revision whenever the predictor's template changes,
the traffic split of KServe's ksvc reconciler (canaryTrafficPercent to the latest revision,
the rest to the last rolled-out one), the InferenceService's status and the pods of each
revision in the states a test gives them.
"""

from __future__ import annotations

import copy
import json
import re
from itertools import count

import kubernetes_validate
import pytest
from aiohttp import web
from kubernetes_asyncio.client import ApiClient, Configuration

from inference_bridge import kserve_manifests as km
from inference_bridge.service_kubernetes import (
    FAILED,
    READY,
    STARTING,
    KubernetesServiceRunner,
    ServiceBackendError,
    parse_quantity,
)
from inference_bridge.service_runners import EXITED, MISSING, RUNNING
from inference_bridge.service_runners import STARTING as REPLICA_STARTING
from tests.inference_bridge.test_kserve_manifests import (
    K8S_VERSION,
    SCHEMAS,
    VALIDATORS,
    predictor,
    service,
    validate_metadata,
)

NAMESPACE = "workbench-services"
PVC = "workbench-models"
ISVC = "inferenceservices"
RUNTIMES = "servingruntimes"
POLICIES = "networkpolicies"
PODS = "pods"
KINDS = {
    ("serving.kserve.io", "v1beta1", ISVC): "InferenceService",
    ("serving.kserve.io", "v1alpha1", RUNTIMES): "ServingRuntime",
    ("networking.k8s.io", "v1", POLICIES): "NetworkPolicy",
}
STATUS_VALIDATOR = VALIDATORS["InferenceService"].evolve(
    schema=SCHEMAS["InferenceService"]["properties"]["status"]
)
NO_GPU = (
    "0/3 nodes are available: 3 Insufficient nvidia.com/gpu. preemption: 0/3 nodes are "
    "available: 3 No preemption victims found for incoming pod."
)


# --- the Kubernetes API double ----------------------------------------------------------------


def api_status(code: int, reason: str, message: str) -> web.Response:
    """A failure as the API server answers one: a Status object."""
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    return web.json_response(body, status=code)


def json_patch(doc: dict, ops: list[dict]) -> dict:
    """RFC 6902 (add, replace, remove, test) on a copy of `doc`."""
    doc = copy.deepcopy(doc)
    for op in ops:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        parent = doc
        for part in parts[:-1]:
            parent = parent[int(part)] if isinstance(parent, list) else parent[part]
        last = parts[-1]
        if isinstance(parent, list):
            index = len(parent) if last == "-" else int(last)
            if op["op"] == "add":
                parent.insert(index, copy.deepcopy(op["value"]))
            elif op["op"] == "replace":
                parent[index] = copy.deepcopy(op["value"])
            elif op["op"] == "remove":
                del parent[index]
            else:
                assert parent[index] == op["value"]
        elif op["op"] == "add":
            parent[last] = copy.deepcopy(op["value"])
        elif op["op"] == "replace":
            if last not in parent:
                raise KeyError(op["path"])
            parent[last] = copy.deepcopy(op["value"])
        elif op["op"] == "remove":
            del parent[last]
        elif op["op"] == "test":
            if parent.get(last) != op["value"]:
                raise ValueError(op["path"])
        else:
            raise ValueError(op["op"])
    return doc


class FakeCluster:
    """The Kubernetes API for one namespace, over HTTP.

    objects[plural][name] holds what was created (with the server's metadata: uid,
    resourceVersion, generation); `calls` records (verb, plural, name, content type,
    fieldValidation); refuse[(verb, plural)] = (code, reason, message) makes the next such
    request fail; kserve=False answers KServe's paths as a cluster without KServe does.
    Anything the double does not know is recorded in `unexpected` and fails the test.
    """

    def __init__(self):
        self.objects: dict[str, dict[str, dict]] = {ISVC: {}, RUNTIMES: {}, POLICIES: {}, PODS: {}}
        self.logs: dict[str, str] = {}
        self.metrics: dict[str, dict] = {}
        self.calls: list[tuple] = []
        self.refuse: dict[tuple[str, str], tuple[int, str, str]] = {}
        self.unexpected: list[str] = []
        self.kserve = True
        self.metrics_api = True
        self._version = count(100)
        self.url = ""

    def made(self, verb: str | None = None) -> list[tuple]:
        """(verb, plural, name) of the calls, of one verb or all."""
        return [c[:3] for c in self.calls if verb is None or c[0] == verb]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        found = re.fullmatch(
            r"/apis/(?P<group>[^/]+)/(?P<version>[^/]+)/namespaces/(?P<ns>[^/]+)"
            r"/(?P<plural>[^/]+)(?:/(?P<name>[^/]+))?",
            path,
        ) or re.fullmatch(
            r"/api/(?P<version>v1)/namespaces/(?P<ns>[^/]+)/(?P<plural>pods)"
            r"(?:/(?P<name>[^/]+)(?P<log>/log)?)?",
            path,
        )
        if not found or found["ns"] != NAMESPACE:
            self.unexpected.append(f"{request.method} {path}")
            return web.Response(status=404, text="404 page not found")
        parts = found.groupdict()
        plural, name = parts["plural"], parts.get("name")
        group = parts.get("group") or ""
        self.calls.append(
            (
                request.method,
                plural,
                name,
                request.headers.get("Content-Type", ""),
                request.query.get("fieldValidation"),
            )
        )
        if group == "serving.kserve.io" and not self.kserve:
            # no such API group: the aggregator's plain 404
            return web.Response(status=404, text="404 page not found")
        if group == "metrics.k8s.io":
            return self._metrics(name)
        if plural == PODS and not group:
            return await self._pods(request, name, bool(parts.get("log")))
        if (group, parts["version"], plural) not in KINDS:
            self.unexpected.append(f"{request.method} {path}")
            return web.Response(status=404, text="404 page not found")
        refused = self.refuse.pop((request.method, plural), None)
        if refused:
            return api_status(*refused)
        kind = KINDS[(group, parts["version"], plural)]
        store = self.objects[plural]
        resource = f"{plural}.{group}"
        if request.method == "GET" and name:
            if name not in store:
                return api_status(404, "NotFound", f'{resource} "{name}" not found')
            return web.json_response(store[name])
        if request.method == "POST" and not name:
            body = await request.json()
            name = body["metadata"]["name"]
            if name in store:
                return api_status(409, "AlreadyExists", f'{resource} "{name}" already exists')
            invalid = self._invalid(kind, body, request)
            if invalid:
                return api_status(422, "Invalid", f'{kind}.{group} "{name}" is invalid: {invalid}')
            body["metadata"].update(
                uid=f"uid-{name}",
                generation=1,
                resourceVersion=str(next(self._version)),
                creationTimestamp="2030-01-01T00:00:00Z",
            )
            store[name] = body
            return web.json_response(body, status=201)
        if request.method == "PATCH" and name:
            if name not in store:
                return api_status(404, "NotFound", f'{resource} "{name}" not found')
            content_type = request.headers.get("Content-Type", "")
            if content_type != "application/json-patch+json":
                return api_status(
                    415,
                    "UnsupportedMediaType",
                    "the body of the request was in an unknown format - accepted media types "
                    "include: application/json-patch+json, application/merge-patch+json",
                )
            ops = await request.json()
            if not isinstance(ops, list):
                return api_status(400, "BadRequest", "json: cannot unmarshal object into []")
            try:
                patched = json_patch(store[name], ops)
            except (KeyError, IndexError, ValueError) as e:
                return api_status(422, "Invalid", f"the server rejected our request: {e}")
            invalid = self._invalid(kind, patched, request)
            if invalid:
                return api_status(422, "Invalid", f'{kind}.{group} "{name}" is invalid: {invalid}')
            if patched.get("spec") != store[name].get("spec"):
                patched["metadata"]["generation"] = patched["metadata"].get("generation", 1) + 1
            patched["metadata"]["resourceVersion"] = str(next(self._version))
            store[name] = patched
            return web.json_response(patched)
        if request.method == "DELETE" and name:
            if store.pop(name, None) is None:
                return api_status(404, "NotFound", f'{resource} "{name}" not found')
            if plural == ISVC:  # the garbage collector takes its pods
                for pod in list(self.objects[PODS]):
                    labels = self.objects[PODS][pod]["metadata"]["labels"]
                    if labels.get("serving.kserve.io/inferenceservice") == name:
                        del self.objects[PODS][pod]
            self.calls[-1] += (request.query.get("propagationPolicy"),)
            return web.json_response({"kind": "Status", "status": "Success"})
        self.unexpected.append(f"{request.method} {path}")
        return api_status(405, "MethodNotAllowed", "the server does not allow this method")

    def _invalid(self, kind: str, obj: dict, request: web.Request) -> str:
        """What the API server (fieldValidation=Strict) would refuse in `obj`; "" if valid."""
        if request.query.get("fieldValidation") != "Strict":
            self.unexpected.append(f"{request.method} {request.path} without Strict validation")
        if kind == "NetworkPolicy":
            try:
                kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
            except kubernetes_validate.ValidationError as e:
                return str(e)
            return ""
        metadata = obj.get("metadata", {})
        stripped = {
            **obj,
            "metadata": {
                k: metadata[k]
                for k in ("name", "namespace", "labels", "annotations")
                if k in metadata
            },
        }
        validate_metadata(stripped)
        errors = list(VALIDATORS[kind].iter_errors({k: v for k, v in obj.items() if k != "status"}))
        return "; ".join(f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)

    async def _pods(self, request: web.Request, name: str | None, log: bool):
        pods = self.objects[PODS]
        if name is None:
            wanted = dict(
                term.split("=", 1)
                for term in request.query.get("labelSelector", "").split(",")
                if term
            )
            items = [
                pod
                for pod in pods.values()
                if wanted.items() <= pod["metadata"].get("labels", {}).items()
            ]
            return web.json_response(
                {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items}
            )
        if name not in pods:
            return api_status(404, "NotFound", f'pods "{name}" not found')
        if not log:
            return web.json_response(pods[name])
        container = request.query.get("container")
        if container != "kserve-container":
            return api_status(400, "BadRequest", f"container {container} is not valid for pod")
        state = pods[name]["status"]["containerStatuses"][0]["state"]
        if "waiting" in state:
            return api_status(
                400,
                "BadRequest",
                f'container "kserve-container" in pod "{name}" is waiting to start: '
                "ContainerCreating",
            )
        lines = self.logs.get(name, "").splitlines(keepends=True)
        tail = int(request.query.get("tailLines", "0") or 0)
        return web.Response(text="".join(lines[-tail:] if tail else lines))

    def _metrics(self, name: str | None):
        if not self.metrics_api:
            return web.Response(status=404, text="404 page not found")
        if name not in self.metrics:
            return api_status(404, "NotFound", f'podmetrics.metrics.k8s.io "{name}" not found')
        return web.json_response(
            {
                "kind": "PodMetrics",
                "apiVersion": "metrics.k8s.io/v1beta1",
                "metadata": {"name": name, "namespace": NAMESPACE},
                "timestamp": "2030-01-01T00:00:00Z",
                "window": "15s",
                "containers": [
                    {"name": "queue-proxy", "usage": {"cpu": "2m", "memory": "20Mi"}},
                    {"name": "kserve-container", "usage": self.metrics[name]},
                ],
            }
        )


def pod_status(state: str = "ready", ip: str = "10.1.2.3", **more) -> dict:
    """A predictor pod's status: ready, unschedulable, crashing (OOM-killed) or pulling."""
    container = {
        "name": "kserve-container",
        "image": "registry.example.com/ai-workbench/python:3.11-cpu",
        "imageID": "",
        "ready": state == "ready",
        "restartCount": 0,
        "state": {"running": {"startedAt": "2030-01-01T00:01:00Z"}},
    }
    status = {
        "phase": "Running",
        "podIP": ip,
        "conditions": [
            {"type": "PodScheduled", "status": "True"},
            {"type": "Ready", "status": "True" if state == "ready" else "False"},
        ],
        "containerStatuses": [container],
    }
    if state == "unschedulable":
        status = {
            "phase": "Pending",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": NO_GPU,
                }
            ],
        }
    elif state == "crashing":
        container["restartCount"] = 4
        container["state"] = {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}}
        container["lastState"] = {
            "terminated": {
                "exitCode": 137,
                "reason": "OOMKilled",
                "finishedAt": "2030-01-01T00:02:00Z",
            }
        }
    elif state == "pulling":
        status["phase"] = "Pending"
        container["state"] = {"waiting": {"reason": "ContainerCreating"}}
    status.update(more)
    return status


class FakeKServe:
    """KServe's controller with Knative (Serverless), reduced to what the runner reads.

    reconcile() does what they do with an InferenceService's spec: Knative makes a new
    revision whenever the predictor's template (all of it but canaryTrafficPercent) changes;
    KServe's ksvc reconciler sends canaryTrafficPercent to the latest revision and the rest
    to the last rolled-out one (with none rolled out yet, or no canaryTrafficPercent, all to
    the latest, which is then rolled out). The status it writes is validated against the
    CRD's status schema.
    """

    def __init__(self, cluster: FakeCluster):
        self.cluster = cluster
        self.revisions: dict[str, list[tuple[str, dict]]] = {}
        self.rolled_out: dict[str, str] = {}
        self._pods = count(1)

    def reconcile(self, name: str, conditions: list[dict] | None = None, **status) -> str:
        isvc = self.cluster.objects[ISVC][name]
        spec = isvc["spec"]["predictor"]
        template = {k: v for k, v in spec.items() if k != "canaryTrafficPercent"}
        revisions = self.revisions.setdefault(name, [])
        if not revisions or revisions[-1][1] != template:
            revisions.append(
                (f"{name}-predictor-{len(revisions) + 1:05d}", copy.deepcopy(template))
            )
        latest = revisions[-1][0]
        canary = spec.get("canaryTrafficPercent")
        previous = self.rolled_out.get(name, "")
        if canary is not None and previous:
            traffic = [{"revisionName": latest, "latestRevision": True, "percent": canary}]
            if canary < 100:
                traffic.append(
                    {
                        "revisionName": previous,
                        "latestRevision": False,
                        "percent": 100 - canary,
                        "tag": "prev",
                    }
                )
        else:
            traffic = [{"revisionName": latest, "latestRevision": True, "percent": 100}]
            self.rolled_out[name] = latest
        url = f"http://{name}.{NAMESPACE}.svc.cluster.local"
        ready = conditions is None
        conditions = conditions or [
            {"type": kind, "status": "True", "lastTransitionTime": "2030-01-01T00:01:00Z"}
            for kind in (
                "IngressReady",
                "LatestDeploymentReady",
                "PredictorConfigurationReady",
                "PredictorReady",
                "PredictorRouteReady",
                "Ready",
            )
        ]
        isvc["status"] = {
            "observedGeneration": isvc["metadata"]["generation"],
            "conditions": conditions,
            "url": f"http://{name}-{NAMESPACE}.example.com" if ready else "",
            "address": {"url": url} if ready else {},
            "deploymentMode": "Serverless",
            "components": {
                "predictor": {
                    "latestCreatedRevision": latest,
                    "latestReadyRevision": latest if ready else previous,
                    "latestRolledoutRevision": self.rolled_out.get(name, ""),
                    "traffic": traffic,
                }
            },
            "modelStatus": {
                "transitionStatus": "UpToDate" if ready else "InProgress",
                "states": {"activeModelState": "Loaded" if ready else "Pending"},
            },
            **status,
        }
        errors = list(STATUS_VALIDATOR.iter_errors(isvc["status"]))
        assert not errors, [e.message for e in errors]
        return latest

    def add_pod(self, name: str, revision: str, state: str = "ready", **more) -> str:
        """A pod of `revision` of InferenceService `name`, labelled as KServe and Knative
        label them (the InferenceService's labels, the predictor's labels and annotations)."""
        isvc = self.cluster.objects[ISVC][name]
        template = dict(self.revisions[name])[revision]
        pod = f"{revision}-deployment-7d9f8c-{next(self._pods):05d}"
        self.cluster.objects[PODS][pod] = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": pod,
                "namespace": NAMESPACE,
                "creationTimestamp": "2030-01-01T00:00:30Z",
                "labels": {
                    **isvc["metadata"]["labels"],
                    **template.get("labels", {}),
                    "serving.kserve.io/inferenceservice": name,
                    "component": "predictor",
                    "serving.knative.dev/revision": revision,
                    "serving.knative.dev/service": f"{name}-predictor",
                },
                "annotations": dict(template.get("annotations", {})),
            },
            "spec": {"containers": [{"name": "kserve-container", "image": "x"}]},
            "status": pod_status(state, **more),
        }
        return pod


# --- fixtures -----------------------------------------------------------------------------


@pytest.fixture
async def cluster():
    fake = FakeCluster()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    server = web.AppRunner(app)
    await server.setup()
    site = web.TCPSite(server, "127.0.0.1", 0)
    await site.start()
    fake.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
    yield fake
    await server.cleanup()
    assert not fake.unexpected, fake.unexpected


@pytest.fixture
def kserve(cluster):
    return FakeKServe(cluster)


@pytest.fixture
async def api(cluster):
    async with ApiClient(configuration=Configuration(host=cluster.url)) as client:
        yield client


def make_runner(api, **options) -> KubernetesServiceRunner:
    values = dict(router_namespace="workbench", models_pvc=PVC, request_timeout=5)
    values.update(options)
    return KubernetesServiceRunner(NAMESPACE, api, **values)


@pytest.fixture
def runner(api):
    return make_runner(api)


def expected(plan, mode=km.SERVERLESS) -> dict:
    return km.make_inference_service(
        plan, namespace=NAMESPACE, models_pvc=PVC, deployment_mode=mode
    )


def served(isvc: dict) -> dict:
    """What the API server keeps of a sent object (without the server's own metadata)."""
    meta = {
        k: v
        for k, v in isvc["metadata"].items()
        if k not in ("uid", "generation", "resourceVersion", "creationTimestamp")
    }
    return {**{k: v for k, v in isvc.items() if k != "status"}, "metadata": meta}


# --- the runner ---------------------------------------------------------------------------


async def test_apply_makes_the_runtime_the_policy_then_the_inference_service(runner, cluster):
    plan = service(predictor(version=1))
    name = runner.name(plan.owner, plan.name)

    await runner.apply(plan)

    # in that order: no replica ever runs without its NetworkPolicy
    assert cluster.made("POST") == [
        ("POST", RUNTIMES, None),
        ("POST", POLICIES, None),
        ("POST", ISVC, None),
    ]
    assert all(c[4] == "Strict" for c in cluster.calls if c[0] in ("POST", "PATCH"))
    assert served(cluster.objects[ISVC][name]) == expected(plan)
    runtime = cluster.objects[RUNTIMES]["workbench-onnx"]
    assert runtime["spec"]["containers"][0]["image"] == plan.predictors[0].image_ref
    policy = cluster.objects[POLICIES][km.network_policy_name(name)]
    assert policy["spec"]["podSelector"]["matchLabels"] == {
        "serving.kserve.io/inferenceservice": name
    }

    # an update: nothing else is written, the InferenceService is patched (JSON Patch)
    cluster.calls.clear()
    bigger = service(predictor(version=1, max_replicas=5))
    await runner.apply(bigger)
    writes = [c for c in cluster.calls if c[0] != "GET"]
    assert [c[:4] for c in writes] == [("PATCH", ISVC, name, "application/json-patch+json")]
    assert served(cluster.objects[ISVC][name]) == expected(bigger)
    assert cluster.objects[ISVC][name]["metadata"]["generation"] == 2


async def test_canary_then_new_weights_then_promotion_then_rollback(runner, cluster, kserve):
    stable, canary = predictor(version=1, weight=90), predictor(version=2, weight=10)
    plan = service(stable, canary)
    name = runner.name(plan.owner, plan.name)

    # the stable version alone first
    await runner.apply(km.rolled_back(plan))
    first = kserve.reconcile(name)
    v1_pod = kserve.add_pod(name, first)
    status = await runner.status(plan.owner, plan.name)
    assert status["ready"] and status["reason"] == ""
    assert status["url"] == f"http://{name}.{NAMESPACE}.svc.cluster.local"
    assert [(p["version"], p["traffic"], p["ready_replicas"]) for p in status["predictors"]] == [
        (1, 100, 1)
    ]

    # 90/10: the canary's spec with canaryTrafficPercent 10; Knative keeps v1's revision
    await runner.apply(plan)
    assert served(cluster.objects[ISVC][name]) == expected(plan)
    second = kserve.reconcile(name)
    assert second != first
    kserve.add_pod(name, second)
    status = await runner.status(plan.owner, plan.name)
    by_version = {p["version"]: p for p in status["predictors"]}
    assert (by_version[1]["traffic"], by_version[2]["traffic"]) == (90, 10)
    assert by_version[1]["replicas"] == [
        {"id": v1_pod, "state": READY, "reason": "", "restarts": 0}
    ]
    assert by_version[2]["model"] == "mnist" and by_version[2]["ready_replicas"] == 1
    assert [t["percent"] for t in status["traffic"]] == [10, 90]

    # 50/50: the same revisions, only the split changes
    half = service(predictor(version=1, weight=50), predictor(version=2, weight=50))
    await runner.apply(half)
    assert kserve.reconcile(name) == second
    status = await runner.status(plan.owner, plan.name)
    assert {p["version"]: p["traffic"] for p in status["predictors"]} == {1: 50, 2: 50}

    # promotion: all traffic to the canary's revision, still no new revision
    await runner.apply(km.promoted(half))
    isvc = cluster.objects[ISVC][name]
    assert "canaryTrafficPercent" not in isvc["spec"]["predictor"]
    assert kserve.reconcile(name) == second
    del cluster.objects[PODS][v1_pod]  # v1's revision scales away
    status = await runner.status(plan.owner, plan.name)
    assert [(p["version"], p["traffic"]) for p in status["predictors"]] == [(2, 100)]

    # rollback of a later canary: the stable version's spec again, as a new revision
    again = service(predictor(version=2, weight=80), predictor(version=3, weight=20))
    await runner.apply(again)
    third = kserve.reconcile(name)
    await runner.apply(km.rolled_back(again))
    assert served(cluster.objects[ISVC][name]) == expected(service(predictor(version=2)))
    fourth = kserve.reconcile(name)
    assert len({first, second, third, fourth}) == 4
    component = cluster.objects[ISVC][name]["status"]["components"]["predictor"]
    assert component["traffic"] == [
        {"revisionName": fourth, "latestRevision": True, "percent": 100}
    ]
    assert len([c for c in cluster.calls if c[:2] == ("POST", ISVC)]) == 1  # patched after


async def test_status_says_why_a_service_is_not_ready(runner, cluster, kserve):
    plan = service(predictor(gpu=1, cpu=8))
    name = runner.name(plan.owner, plan.name)
    await runner.apply(plan)

    # Knative still deploying: the pod's own reason says more than "RevisionMissing"
    revision = kserve.reconcile(
        name,
        conditions=[
            {
                "type": "PredictorReady",
                "status": "Unknown",
                "reason": "RevisionMissing",
                "message": f'Configuration "{name}-predictor" is waiting for a Revision '
                "to become ready.",
            },
            {"type": "Ready", "status": "Unknown", "reason": "RevisionMissing"},
        ],
    )
    pod = kserve.add_pod(name, revision, "unschedulable")
    status = await runner.status(plan.owner, plan.name)
    assert (status["ready"], status["failed"], status["reason"]) == (False, False, NO_GPU)
    assert status["url"] == ""
    (entry,) = status["predictors"]
    assert entry["replicas"] == [{"id": pod, "state": STARTING, "reason": NO_GPU, "restarts": 0}]

    # a condition that failed: its message
    failed = f'Revision "{revision}" failed with message: Container failed with: exec format error.'
    kserve.reconcile(
        name,
        conditions=[
            {
                "type": "PredictorReady",
                "status": "False",
                "reason": "RevisionFailed",
                "message": failed,
            },
            {"type": "Ready", "status": "False", "reason": "RevisionFailed"},
        ],
    )
    assert (await runner.status(plan.owner, plan.name))["reason"] == failed

    # the model cannot load: failed, with KServe's reason; the crashing replica says OOM
    cluster.objects[PODS][pod]["status"] = pod_status("crashing")
    kserve.reconcile(
        name,
        conditions=[{"type": "Ready", "status": "False", "reason": "ModelLoadFailed"}],
        modelStatus={
            "transitionStatus": "BlockedByFailedLoad",
            "states": {"activeModelState": "FailedToLoad"},
            "lastFailureInfo": {
                "reason": "ModelLoadFailed",
                "message": "model.onnx: protobuf parsing failed",
            },
        },
    )
    status = await runner.status(plan.owner, plan.name)
    assert (status["failed"], status["reason"]) == (True, "model.onnx: protobuf parsing failed")
    (replica,) = status["predictors"][0]["replicas"]
    assert (replica["state"], replica["reason"], replica["restarts"]) == (
        FAILED,
        "out of memory",
        4,
    )

    # stopped (KServe's serving.kserve.io/stop)
    kserve.reconcile(
        name,
        conditions=[
            {"type": "Stopped", "status": "True"},
            {"type": "Ready", "status": "False", "reason": "Stopped"},
        ],
    )
    status = await runner.status(plan.owner, plan.name)
    assert (status["stopped"], status["reason"]) == (True, "stopped")


async def test_status_of_a_service_with_no_inference_service(runner, cluster):
    status = await runner.status("alice", "gone")

    assert status["exists"] is False and status["ready"] is False
    assert "is gone" in status["reason"]
    assert status["predictors"] == []


async def test_delete_removes_the_inference_service_and_its_policy(runner, cluster, kserve):
    plan = service()
    name = runner.name(plan.owner, plan.name)
    await runner.apply(plan)
    kserve.add_pod(name, kserve.reconcile(name))

    await runner.delete(plan.owner, plan.name)

    assert cluster.objects[ISVC] == {} and cluster.objects[POLICIES] == {}
    assert cluster.objects[PODS] == {}
    deletes = [c for c in cluster.calls if c[0] == "DELETE"]
    assert [(c[1], c[2]) for c in deletes] == [
        (ISVC, name),
        (POLICIES, km.network_policy_name(name)),
    ]
    assert deletes[0][-1] == "Foreground"
    assert cluster.objects[RUNTIMES]  # shared by every service: kept

    await runner.delete(plan.owner, plan.name)  # nothing left: fine
    assert (await runner.status(plan.owner, plan.name))["exists"] is False

    # the engine runner's name for it: by the InferenceService's name
    await runner.apply(plan)
    await runner.remove_service(name)
    assert cluster.objects[ISVC] == {} and cluster.objects[POLICIES] == {}
    assert await runner.image_present("any") is None and await runner.capacity() is None


async def test_a_changed_runtime_is_brought_up_to_date_keeping_its_image(runner, cluster):
    outdated = km.make_serving_runtime(
        "onnx", image="registry.example.com/admin-pick:1", namespace=NAMESPACE
    )
    outdated["spec"]["protocolVersions"] = ["v2"]
    outdated["spec"]["containers"][0]["args"] = ["--model_dir=/mnt/other"]
    outdated["metadata"]["resourceVersion"] = "1"
    cluster.objects[RUNTIMES]["workbench-onnx"] = outdated

    await runner.apply(service())

    runtime = cluster.objects[RUNTIMES]["workbench-onnx"]
    assert ("PATCH", RUNTIMES, "workbench-onnx") in cluster.made()
    assert runtime["spec"]["protocolVersions"] == ["v1", "v2"]
    assert runtime["spec"]["containers"][0]["args"][0] == "--model_dir=/mnt/models"
    assert runtime["spec"]["containers"][0]["image"] == "registry.example.com/admin-pick:1"

    # a runner with an image of its own sets it
    cluster.calls.clear()
    own = make_runner(runner._api_client, runtime_image="registry.example.com/serving:2")
    await own.apply(service())
    assert cluster.objects[RUNTIMES]["workbench-onnx"]["spec"]["containers"][0]["image"] == (
        "registry.example.com/serving:2"
    )
    # and no runtime is touched where an administrator installs them
    cluster.calls.clear()
    await make_runner(runner._api_client, manage_runtimes=False).apply(service())
    assert not [c for c in cluster.calls if c[1] == RUNTIMES]


async def test_a_plan_kserve_cannot_run_makes_no_call(api, cluster):
    raw = make_runner(api, deployment_mode=km.RAW_DEPLOYMENT)
    with pytest.raises(ValueError, match="Serverless"):
        await raw.apply(service(predictor(version=1, weight=90), predictor(version=2, weight=10)))
    with pytest.raises(ValueError, match="add up to 100"):
        await raw.apply(service(predictor(weight=20)))
    assert cluster.calls == []


async def test_raw_deployment_lets_only_the_router_in(api, cluster):
    raw = make_runner(api, deployment_mode=km.RAW_DEPLOYMENT)
    plan = service()

    await raw.apply(plan)

    name = raw.name(plan.owner, plan.name)
    assert served(cluster.objects[ISVC][name]) == expected(plan, km.RAW_DEPLOYMENT)
    (rule,) = cluster.objects[POLICIES][km.network_policy_name(name)]["spec"]["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 8080}]
    assert len(rule["from"]) == 1
    env = cluster.objects[RUNTIMES]["workbench-onnx"]["spec"]["containers"][0]["env"]
    assert {"name": "PORT", "value": "8080"} in env


# --- errors -------------------------------------------------------------------------------


async def test_a_cluster_without_kserve_is_said_plainly(runner, api, cluster):
    cluster.kserve = False

    with pytest.raises(ServiceBackendError, match=r"KServe's ServingRuntime API .* not installed"):
        await runner.apply(service())

    without_runtimes = make_runner(api, manage_runtimes=False)
    with pytest.raises(
        ServiceBackendError, match=r"KServe's InferenceService API .* not installed"
    ):
        await without_runtimes.apply(service())
    # the NetworkPolicy made for it is gone again
    assert cluster.objects[POLICIES] == {}
    assert ("DELETE", POLICIES) in [c[:2] for c in cluster.calls]


async def test_refusals_become_clear_messages(runner, cluster):
    plan = service()
    name = runner.name(plan.owner, plan.name)

    cluster.refuse[("POST", ISVC)] = (
        403,
        "Forbidden",
        'inferenceservices.serving.kserve.io is forbidden: User "system:serviceaccount:'
        'workbench:hub" cannot create resource "inferenceservices" in API group '
        f'"serving.kserve.io" in the namespace "{NAMESPACE}"',
    )
    with pytest.raises(ServiceBackendError) as e:
        await runner.apply(plan)
    assert e.value.status == 403
    assert str(e.value).startswith(
        f"the platform may not write InferenceService objects in namespace {NAMESPACE}: "
    )
    assert "grant its service account" in str(e.value)
    assert cluster.objects[POLICIES] == {}  # made for it, removed again

    # KServe's webhook answers a denial with 403 too: that is a refusal of the object
    denial = (
        'admission webhook "inferenceservice.kserve-webhook-server.validator" denied the '
        "request: the target utilization percentage should be a [1-100] integer"
    )
    cluster.refuse[("POST", ISVC)] = (403, "Forbidden", denial)
    with pytest.raises(
        ServiceBackendError,
        match=re.escape(f"the cluster refused InferenceService {name}: {denial}"),
    ):
        await runner.apply(plan)

    await runner.apply(plan)
    cluster.refuse[("PATCH", ISVC)] = (
        422,
        "Invalid",
        f'InferenceService.serving.kserve.io "{name}" is invalid: '
        "spec.predictor.minReplicas: Invalid value: -1",
    )
    with pytest.raises(
        ServiceBackendError, match="the cluster refused InferenceService .* is invalid"
    ):
        await runner.apply(plan)

    cluster.refuse[("GET", ISVC)] = (500, "InternalError", "etcdserver: request timed out")
    with pytest.raises(
        ServiceBackendError,
        match=r"cannot read InferenceService .*\(HTTP 500\): etcdserver: request timed out",
    ):
        await runner.status(plan.owner, plan.name)


async def test_the_deployment_mode_of_a_service_cannot_change(runner, api, cluster):
    plan = service()
    await runner.apply(plan)
    name = runner.name(plan.owner, plan.name)
    before = copy.deepcopy(cluster.objects[ISVC][name])

    with pytest.raises(
        ServiceBackendError, match="Serverless mode .* delete the service and deploy it again"
    ):
        await make_runner(api, deployment_mode=km.RAW_DEPLOYMENT).apply(plan)

    assert cluster.objects[ISVC][name] == before


# --- replicas: logs, state, use ---------------------------------------------------------------


async def test_logs_of_a_replica(runner, cluster, kserve):
    plan = service()
    name = runner.name(plan.owner, plan.name)
    await runner.apply(plan)
    revision = kserve.reconcile(name)
    pod = kserve.add_pod(name, revision)
    # JSON lines stay text (the client would parse a log that looks like JSON)
    cluster.logs[pod] = "".join(f'{{"level": "info", "n": {i}}}\n' for i in range(5))

    text = await runner.logs(plan.owner, plan.name, pod, tail_lines=2)

    assert text == '{"level": "info", "n": 3}\n{"level": "info", "n": 4}\n'
    assert json.loads(text.splitlines()[0]) == {"level": "info", "n": 3}

    # not started yet: no log, no error
    waiting = kserve.add_pod(name, revision, "pulling")
    assert await runner.logs(plan.owner, plan.name, waiting) == ""

    # someone else's pod, or none: not a replica of this service
    other = service(name="other")
    await runner.apply(other)
    other_pod = kserve.add_pod(
        runner.name(other.owner, other.name), kserve.reconcile(runner.name(other.owner, other.name))
    )
    with pytest.raises(LookupError):
        await runner.logs(plan.owner, plan.name, other_pod)
    with pytest.raises(LookupError):
        await runner.logs(plan.owner, plan.name, "no-such-pod")
    assert await runner.replica_logs("no-such-pod") == ""
    assert await runner.replica_logs(pod, tail=1) == '{"level": "info", "n": 4}\n'


async def test_the_engines_replica_methods_by_pod(runner, cluster, kserve):
    plan = service(predictor(version=1, weight=70), predictor(version=2, weight=30))
    name = runner.name(plan.owner, plan.name)
    await runner.apply(km.rolled_back(plan))
    first = kserve.reconcile(name)
    await runner.apply(plan)
    second = kserve.reconcile(name)
    ready = kserve.add_pod(name, first, ip="10.1.2.3")
    crashing = kserve.add_pod(name, second, "crashing", ip="10.1.2.4")
    pending = kserve.add_pod(name, second, "unschedulable")

    status = await runner.replica_status(ready)
    assert (status.state, status.address, status.reason) == (RUNNING, "10.1.2.3:8080", "")
    status = await runner.replica_status(crashing)
    assert (status.state, status.exit_code, status.oom) == (EXITED, 137, True)
    status = await runner.replica_status(pending)
    assert (status.state, status.reason, status.address) == (REPLICA_STARTING, NO_GPU, "")
    assert (await runner.replica_status("gone")).state == MISSING

    replicas = await runner.list_replicas(name)
    assert sorted((r.id, r.predictor, r.state) for r in replicas) == sorted(
        [
            (ready, "mnist:1", RUNNING),
            (crashing, "mnist:2", EXITED),
            (pending, "mnist:2", REPLICA_STARTING),
        ]
    )

    cluster.metrics[ready] = {"cpu": "250m", "memory": "64Mi"}
    stats = await runner.replica_stats(ready)
    assert (stats.cpu_percent, stats.memory_bytes) == (25.0, 64 * 2**20)
    assert await runner.replica_stats(pending) is None  # not sampled yet
    cluster.metrics_api = False
    assert await runner.replica_stats(ready) is None  # no metrics server


def test_quantities():
    assert parse_quantity("123456789n") == pytest.approx(0.123456789)
    assert parse_quantity("1536Ki") == 1536 * 1024
    assert parse_quantity("2") == 2 and parse_quantity("1.5G") == 1.5e9
    with pytest.raises(ValueError):
        parse_quantity("12 cores")
