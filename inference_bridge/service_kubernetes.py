"""The Kubernetes service runner: a KServe InferenceService per service, replicas from its pods."""

from __future__ import annotations

import json
import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence

from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.rest import ApiException

from .kserve_manifests import (
    CONTAINER,
    DEPLOYMENT_MODE_ANNOTATION,
    IMAGE_FORMAT,
    ISVC_PLURAL,
    ISVC_POD_LABEL,
    ISVC_VERSION,
    KNATIVE_NAMESPACES,
    KSERVE_GROUP,
    LABEL_PREDICTOR,
    MODEL_LABEL,
    MODEL_OWNER_LABEL,
    REVISION_POD_LABEL,
    RUNTIME_PLURAL,
    RUNTIME_VERSION,
    SERVERLESS,
    VERSION_LABEL,
    ServicePlan,
    isvc_name,
    make_inference_service,
    make_network_policy,
    make_serving_runtime,
    network_policy_name,
    runtime_name,
)
from .service_runners import (
    EXITED,
    MISSING,
    PORT,
    RUNNING,
    ReplicaInfo,
    ReplicaStats,
    ReplicaStatus,
)
from .service_runners import STARTING as REPLICA_STARTING

log = logging.getLogger("workbench.services.kubernetes")

# replica states, as the service JSON shows them
READY = "ready"
STARTING = "starting"
FAILED = "failed"
STOPPING = "stopping"

# the InferenceService's conditions, most telling first, for the reason it is not ready
_CONDITIONS = (
    "PredictorConfigurationReady",
    "LatestDeploymentReady",
    "PredictorReady",
    "PredictorRouteReady",
    "RoutesReady",
    "IngressReady",
    "Ready",
)
# KServe's modelStatus.transitionStatus values that no waiting will fix
_BLOCKED = ("BlockedByFailedLoad", "InvalidSpec")
# metrics.k8s.io, where the metrics server reports pods' CPU and memory use
METRICS_GROUP = "metrics.k8s.io"
METRICS_VERSION = "v1beta1"
_QUANTITY = re.compile(r"^([0-9.]+)([a-zA-Z]*)$")
_SUFFIXES = {
    "n": 1e-9,
    "u": 1e-6,
    "m": 1e-3,
    "": 1,
    "k": 1e3,
    "K": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


class ServiceBackendError(RuntimeError):
    """The cluster refused or failed a request; the message says what and what to do."""

    def __init__(self, message: str, status: int = 0):
        super().__init__(message)
        self.status = status


def _api_message(e: ApiException) -> str:
    """The API server's own words (its Status object's message), else the HTTP reason."""
    try:
        body = json.loads(e.body or "")
    except (TypeError, ValueError):
        body = None
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    return str(e.reason or "").strip() or f"HTTP {e.status}"


def _selector(labels: Mapping[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


def _pointer(key: str) -> str:
    """A JSON Pointer token (RFC 6901) for a label or annotation key."""
    return key.replace("~", "~0").replace("/", "~1")


def _condition(conditions: list[dict], kind: str) -> dict | None:
    return next((c for c in conditions if c.get("type") == kind), None)


def _words(condition: dict) -> str:
    return str(condition.get("message") or condition.get("reason") or "").strip()


def replica_state(pod: dict) -> tuple[str, str, int]:
    """(state, reason, restarts) of one predictor pod (the API's camelCase JSON).

    Ready pods are "ready"; a pod being deleted "stopping"; a serving container that keeps
    crashing, or a failed pod, "failed" with its last exit; anything else "starting" with
    the scheduler's or kubelet's words (unschedulable, pulling the image, loading the model).
    """
    metadata = pod.get("metadata") or {}
    status = pod.get("status") or {}
    statuses = status.get("containerStatuses") or []
    container = next((c for c in statuses if c.get("name") == CONTAINER), None) or {}
    restarts = int(container.get("restartCount") or 0)
    if metadata.get("deletionTimestamp"):
        return STOPPING, "", restarts
    ready = _condition(status.get("conditions") or [], "Ready")
    if ready and ready.get("status") == "True":
        return READY, "", restarts
    state = container.get("state") or {}
    waiting = state.get("waiting") or {}
    last = (container.get("lastState") or {}).get("terminated") or {}
    ended = state.get("terminated") or (last if waiting.get("reason") == "CrashLoopBackOff" else {})
    if ended or status.get("phase") == "Failed":
        if ended.get("reason") == "OOMKilled":
            reason = "out of memory"
        else:
            code = ended.get("exitCode")
            reason = str(ended.get("message") or status.get("message") or "").strip()
            if code not in (None, 0):
                reason = f"exited with code {code}" + (f": {reason}" if reason else "")
        return FAILED, reason or "failed", restarts
    scheduled = _condition(status.get("conditions") or [], "PodScheduled")
    if scheduled and scheduled.get("status") == "False":
        return STARTING, _words(scheduled) or "not scheduled", restarts
    if waiting:
        return STARTING, str(waiting.get("message") or waiting.get("reason") or ""), restarts
    return STARTING, "starting", restarts


def status_reason(isvc: dict, replicas: list[dict]) -> str:
    """Why the InferenceService is not ready, in words: the controller's conditions first
    (False before Unknown), then KServe's model-load failure, then a replica's reason."""
    status = isvc.get("status") or {}
    conditions = status.get("conditions") or []
    failure = ((status.get("modelStatus") or {}).get("lastFailureInfo") or {}).get("message")
    if failure and (status.get("modelStatus") or {}).get("transitionStatus") in _BLOCKED:
        return str(failure)
    for wanted in ("False", "Unknown"):
        for kind in _CONDITIONS:
            condition = _condition(conditions, kind)
            if condition and condition.get("status") == wanted and _words(condition):
                if wanted == "Unknown":
                    # a replica's own reason says more than "RevisionMissing" or "Deploying"
                    told = next(
                        (r["reason"] for r in replicas if r["state"] != READY and r["reason"]),
                        "",
                    )
                    return told or _words(condition)
                return _words(condition)
    if failure:
        return str(failure)
    told = next((r["reason"] for r in replicas if r["state"] != READY and r["reason"]), "")
    return told or "deploying"


def parse_quantity(text: str) -> float:
    """A Kubernetes quantity ("250m", "123456789n", "1536Ki") as a number."""
    found = _QUANTITY.match(str(text).strip())
    if not found or found.group(2) not in _SUFFIXES:
        raise ValueError(f"not a quantity: {text!r}")
    return float(found.group(1)) * _SUFFIXES[found.group(2)]


class ManagedServiceRunner(ABC):
    """Runs whole services on a backend that scales, splits traffic and restarts replicas
    itself (KServe): the platform says which versions a service runs with what share and
    bounds, not how many replicas; it reads back their state, address and logs."""

    @abstractmethod
    async def apply(self, plan: ServicePlan) -> None:
        """Create the service, or bring it to `plan` (new weights, a canary, promotion,
        rollback). Raises ValueError for a plan the backend cannot run."""

    @abstractmethod
    async def delete(self, owner: str, service: str) -> None:
        """Remove the service and everything made for it; idempotent."""

    @abstractmethod
    async def status(self, owner: str, service: str) -> dict:
        """Readiness, URL, reason and each predictor's replicas (see the implementation)."""

    @abstractmethod
    async def logs(self, owner: str, service: str, replica: str, *, tail_lines: int = 1000) -> str:
        """The last lines of one replica's output; LookupError for an unknown replica."""

    async def replica_stats(self, replica: str) -> ReplicaStats | None:
        """A replica's CPU and memory use now; None when unknown."""
        return None

    async def image_present(self, ref: str) -> bool | None:
        """Whether the backend holds the image (None: it cannot tell; a cluster pulls)."""
        return None

    async def capacity(self) -> tuple[float, int] | None:
        """(vCPUs, memory bytes) of the largest machine a replica can run on; None: unknown."""
        return None

    async def close(self) -> None:  # noqa: B027 - most runners hold nothing
        """Release clients (services go on running)."""


class KubernetesServiceRunner(ManagedServiceRunner):
    """Runs each service as one KServe InferenceService in one namespace of a cluster.

    apply() creates or updates a service's InferenceService (stable, or a canary with its
    share of the traffic), its NetworkPolicy and the platform's ServingRuntimes it uses;
    status() reads the InferenceService's conditions and its pods; delete() removes both
    objects; logs() reads one replica's (pod's) serving container log. The replica methods
    of the engine's ServiceRunner that make sense where KServe makes the replicas
    (replica_status, replica_logs, replica_stats, list_replicas) are here too, by pod name.

    Arguments:
      namespace: where the services' objects are made.
      api: a kubernetes_asyncio ApiClient; None: one is made from the in-cluster service
        account, else from the kubeconfig, on first use (and closed by close()).
      models_pvc: the PersistentVolumeClaim holding the model store
        (<owner>/<model>/<version>/ folders), mounted read-only by KServe. Default
        "workbench-models".
      deployment_mode: "Serverless" (Knative: traffic split, concurrency autoscaling,
        scale to zero) or "RawDeployment" (Deployments and HPAs: no canary, no scale to
        zero). KServe cannot change an existing InferenceService's mode.
      router_namespace, router_pods: where the platform's router runs (the platform API
        service, in the hub's pod): the only pods let in by each service's NetworkPolicy
        besides Knative's. Default: `namespace`, and {"component": "hub"}.
      knative_namespaces: the namespaces of Knative's activator, autoscaler and ingress
        gateway (Serverless only). Default ("knative-serving", "istio-system").
      manage_runtimes: make (and keep up to date) the ServingRuntime `workbench-<format>`
        of each format in `namespace`; False: an administrator installs them (or the
        ClusterServingRuntimes `python -m inference_bridge.kserve_manifests` prints).
      runtime_image: the image of ServingRuntimes this runner makes ("": the image of the
        first version deployed; each InferenceService sets its version's image anyway).
      labels: extra labels for every object.
      cluster_local: keep services off the external ingress (only the router calls them).
      timeout_seconds: how long KServe lets one request run (0: KServe's default).
      gpu_node_label: node label selecting a GPU flavor's gpu_type ("": none; Serverless
        needs Knative's nodeselector feature for it).
      request_timeout: seconds each API call may take.
    """

    def __init__(
        self,
        namespace: str,
        api: client.ApiClient | None = None,
        *,
        models_pvc: str = "workbench-models",
        deployment_mode: str = SERVERLESS,
        router_namespace: str = "",
        router_pods: Mapping[str, str] | None = None,
        knative_namespaces: Sequence[str] = KNATIVE_NAMESPACES,
        manage_runtimes: bool = True,
        runtime_image: str = "",
        labels: Mapping[str, str] | None = None,
        cluster_local: bool = True,
        timeout_seconds: int = 0,
        gpu_node_label: str = "",
        request_timeout: float = 30.0,
    ):
        self.namespace = namespace
        self.models_pvc = models_pvc
        self.deployment_mode = deployment_mode
        self.router_namespace = router_namespace or namespace
        self.router_pods = dict(router_pods) if router_pods is not None else None
        self.knative_namespaces = tuple(knative_namespaces)
        self.manage_runtimes = manage_runtimes
        self.runtime_image = runtime_image
        self.labels = dict(labels or {})
        self.cluster_local = cluster_local
        self.timeout_seconds = timeout_seconds
        self.gpu_node_label = gpu_node_label
        self.request_timeout = request_timeout
        self._api_client = api
        self._own_client = False
        self.core = self.custom = self.networking = None
        if api is not None:
            self._make_apis(api)

    def _make_apis(self, api_client: client.ApiClient):
        self.core = client.CoreV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self.networking = client.NetworkingV1Api(api_client)

    async def _ready(self):
        if self.core is not None:
            return
        try:
            config.load_incluster_config()
        except config.ConfigException:
            await config.load_kube_config()
        self._api_client = client.ApiClient()
        self._own_client = True
        self._make_apis(self._api_client)

    def _as_dict(self, obj) -> dict:
        if obj is None or isinstance(obj, dict):
            return obj
        return self._api_client.sanitize_for_serialization(obj)

    def name(self, owner: str, service: str) -> str:
        """The InferenceService of a service."""
        return isvc_name(owner, service, self.namespace)

    def _error(self, e: ApiException, doing: str, kind: str, name: str) -> ServiceBackendError:
        """A clear error for a failed call: what was done, and the cluster's reason."""
        said = _api_message(e)
        if "admission webhook" in said or e.status in (400, 422):
            # KServe's (or Knative's) validating webhook: denials come back as 403 too
            text = f"the cluster refused {kind} {name}: {said}"
        elif e.status == 403:
            text = (
                f"the platform may not {doing} {kind} objects in namespace {self.namespace}: "
                f"{said} (grant its service account that in a Role)"
            )
        elif e.status == 409:
            text = f"{kind} {name} was changed meanwhile; try again ({said})"
        else:
            text = f"cannot {doing} {kind} {name} (HTTP {e.status}): {said}"
        return ServiceBackendError(text, e.status)

    def _missing_api(self, e: ApiException, kind: str, group_version: str) -> ServiceBackendError:
        return ServiceBackendError(
            f"KServe's {kind} API ({group_version}) is not installed in this cluster, or "
            f"namespace {self.namespace} does not exist: install KServe, or create the "
            f"namespace ({_api_message(e)})",
            e.status,
        )

    # --- objects ----------------------------------------------------------------------------

    async def _get_custom(self, version: str, plural: str, name: str) -> dict | None:
        try:
            found = await self.custom.get_namespaced_custom_object(
                KSERVE_GROUP,
                version,
                self.namespace,
                plural,
                name,
                _request_timeout=self.request_timeout,
            )
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        return self._as_dict(found)

    def _patch_ops(self, current: dict, desired: dict) -> list[dict]:
        """A JSON Patch that makes `current` have desired's spec (all of it: fields the
        platform no longer sets, as canaryTrafficPercent after promotion, go), labels and
        annotations (others' keys stay)."""
        ops = [{"op": "replace", "path": "/spec", "value": desired["spec"]}]
        metadata = current.get("metadata") or {}
        for part in ("labels", "annotations"):
            wanted = desired["metadata"].get(part) or {}
            if not metadata.get(part):
                ops.append({"op": "add", "path": f"/metadata/{part}", "value": wanted})
                continue
            for key, value in wanted.items():
                if metadata[part].get(key) != value:
                    path = f"/metadata/{part}/{_pointer(key)}"
                    ops.append({"op": "add", "path": path, "value": value})
        return ops

    async def _ensure_runtime(self, model_format: str, image: str) -> None:
        """Make the format's ServingRuntime, or bring it up to date (keeping its image
        where this runner has none of its own)."""
        name = runtime_name(model_format)
        try:
            current = await self._get_custom(RUNTIME_VERSION, RUNTIME_PLURAL, name)
        except ApiException as e:
            raise self._error(e, "read", "ServingRuntime", name) from e
        if current is not None and not self.runtime_image:
            containers = (current.get("spec") or {}).get("containers") or [{}]
            image = containers[0].get("image") or image
        desired = make_serving_runtime(
            model_format,
            image=self.runtime_image or image,
            namespace=self.namespace,
            deployment_mode=self.deployment_mode,
            labels=self.labels,
        )
        try:
            if current is None:
                await self.custom.create_namespaced_custom_object(
                    KSERVE_GROUP,
                    RUNTIME_VERSION,
                    self.namespace,
                    RUNTIME_PLURAL,
                    desired,
                    field_validation="Strict",
                    _request_timeout=self.request_timeout,
                )
                log.info("services: made ServingRuntime %s in %s", name, self.namespace)
            elif not _contains(current.get("spec") or {}, desired["spec"]):
                await self.custom.patch_namespaced_custom_object(
                    KSERVE_GROUP,
                    RUNTIME_VERSION,
                    self.namespace,
                    RUNTIME_PLURAL,
                    name,
                    self._patch_ops(current, desired),
                    field_validation="Strict",
                    _request_timeout=self.request_timeout,
                )
                log.info("services: updated ServingRuntime %s in %s", name, self.namespace)
        except ApiException as e:
            if e.status == 404:
                raise self._missing_api(
                    e, "ServingRuntime", f"{KSERVE_GROUP}/{RUNTIME_VERSION}"
                ) from e
            if e.status == 409 and current is None:
                return  # another apply made it just now
            raise self._error(e, "write", "ServingRuntime", name) from e

    async def _apply_policy(self, policy: dict) -> bool:
        """Create or update the NetworkPolicy; True where it was made now."""
        name = policy["metadata"]["name"]
        try:
            try:
                current = await self.networking.read_namespaced_network_policy(
                    name, self.namespace, _request_timeout=self.request_timeout
                )
            except ApiException as e:
                if e.status != 404:
                    raise
                current = None
            if current is None:
                try:
                    await self.networking.create_namespaced_network_policy(
                        self.namespace,
                        policy,
                        field_validation="Strict",
                        _request_timeout=self.request_timeout,
                    )
                    return True
                except ApiException as e:
                    if e.status != 409:
                        raise
                    current = await self.networking.read_namespaced_network_policy(
                        name, self.namespace, _request_timeout=self.request_timeout
                    )
            current = self._as_dict(current)
            if current.get("spec") != policy["spec"] or not _contains(
                current.get("metadata") or {}, {"labels": policy["metadata"]["labels"]}
            ):
                await self.networking.patch_namespaced_network_policy(
                    name,
                    self.namespace,
                    self._patch_ops(current, policy),
                    field_validation="Strict",
                    _request_timeout=self.request_timeout,
                )
            return False
        except ApiException as e:
            raise self._error(e, "write", "NetworkPolicy", name) from e

    async def _apply_isvc(self, isvc: dict) -> None:
        name = isvc["metadata"]["name"]
        try:
            current = await self._get_custom(ISVC_VERSION, ISVC_PLURAL, name)
        except ApiException as e:
            raise self._error(e, "read", "InferenceService", name) from e
        try:
            if current is None:
                try:
                    await self.custom.create_namespaced_custom_object(
                        KSERVE_GROUP,
                        ISVC_VERSION,
                        self.namespace,
                        ISVC_PLURAL,
                        isvc,
                        field_validation="Strict",
                        _request_timeout=self.request_timeout,
                    )
                    return
                except ApiException as e:
                    if e.status != 409:
                        raise
                current = await self._get_custom(ISVC_VERSION, ISVC_PLURAL, name) or {}
            mode = ((current.get("metadata") or {}).get("annotations") or {}).get(
                DEPLOYMENT_MODE_ANNOTATION
            )
            wanted = isvc["metadata"]["annotations"][DEPLOYMENT_MODE_ANNOTATION]
            if mode and mode != wanted:
                raise ServiceBackendError(
                    f"InferenceService {name} runs in KServe's {mode} mode and KServe cannot "
                    f"change it to {wanted}: delete the service and deploy it again",
                    409,
                )
            await self.custom.patch_namespaced_custom_object(
                KSERVE_GROUP,
                ISVC_VERSION,
                self.namespace,
                ISVC_PLURAL,
                name,
                self._patch_ops(current, isvc),
                field_validation="Strict",
                _request_timeout=self.request_timeout,
            )
        except ApiException as e:
            if e.status == 404:
                raise self._missing_api(
                    e, "InferenceService", f"{KSERVE_GROUP}/{ISVC_VERSION}"
                ) from e
            raise self._error(e, "write", "InferenceService", name) from e

    # --- the interface ----------------------------------------------------------------------

    def render(self, plan: ServicePlan) -> tuple[dict, dict]:
        """(InferenceService, NetworkPolicy) of a plan; ValueError where KServe could not
        run it (no API call is made)."""
        isvc = make_inference_service(
            plan,
            namespace=self.namespace,
            models_pvc=self.models_pvc,
            deployment_mode=self.deployment_mode,
            labels=self.labels,
            cluster_local=self.cluster_local,
            timeout_seconds=self.timeout_seconds,
            gpu_node_label=self.gpu_node_label,
        )
        policy = make_network_policy(
            plan,
            namespace=self.namespace,
            router_namespace=self.router_namespace,
            router_pods=self.router_pods,
            deployment_mode=self.deployment_mode,
            knative_namespaces=self.knative_namespaces,
            labels=self.labels,
        )
        return isvc, policy

    async def apply(self, plan: ServicePlan) -> None:
        """Create or update the service's InferenceService to run `plan`.

        The runtimes first, then the NetworkPolicy (so that no replica ever runs
        unprotected), then the InferenceService; where the InferenceService cannot be made,
        a NetworkPolicy made by this call is removed again. Raises ValueError for a plan
        KServe could not run, ServiceBackendError where the cluster refuses.
        """
        isvc, policy = self.render(plan)
        await self._ready()
        if self.manage_runtimes:
            formats = {p.format: p.image_ref for p in reversed(plan.predictors)}
            for model_format, image in sorted(formats.items()):
                if model_format != IMAGE_FORMAT:
                    await self._ensure_runtime(model_format, image)
        made_policy = await self._apply_policy(policy)
        try:
            await self._apply_isvc(isvc)
        except BaseException:
            if made_policy:
                await self._delete_policy(policy["metadata"]["name"], quiet=True)
            raise
        serving = plan.predictors[-1]
        log.info(
            "service %s/%s: InferenceService %s runs %s:%s%s",
            plan.owner,
            plan.name,
            isvc["metadata"]["name"],
            serving.model,
            serving.version,
            f" as a canary ({serving.weight}%)" if len(plan.predictors) > 1 else "",
        )

    async def _delete_policy(self, name: str, quiet: bool = False) -> bool:
        try:
            await self.networking.delete_namespaced_network_policy(
                name, self.namespace, _request_timeout=self.request_timeout
            )
        except ApiException as e:
            if e.status == 404:
                return False
            if quiet:
                log.warning("services: cannot remove NetworkPolicy %s: %s", name, e)
                return False
            raise self._error(e, "delete", "NetworkPolicy", name) from e
        return True

    async def delete(self, owner: str, service: str) -> None:
        """Remove the service's InferenceService (its pods go with it) and NetworkPolicy;
        idempotent."""
        await self._remove(self.name(owner, service), f"{owner}/{service}")

    async def remove_service(self, service_object: str) -> None:
        """delete() by the InferenceService's name (see name())."""
        await self._remove(service_object, service_object)

    async def _remove(self, name: str, what: str) -> None:
        await self._ready()
        removed = []
        try:
            await self.custom.delete_namespaced_custom_object(
                KSERVE_GROUP,
                ISVC_VERSION,
                self.namespace,
                ISVC_PLURAL,
                name,
                propagation_policy="Foreground",
                _request_timeout=self.request_timeout,
            )
            removed.append("InferenceService")
        except ApiException as e:
            if e.status != 404:
                raise self._error(e, "delete", "InferenceService", name) from e
        if await self._delete_policy(network_policy_name(name)):
            removed.append("NetworkPolicy")
        if removed:
            log.info("service %s: removed %s %s", what, " and ".join(removed), name)

    async def _pods(self, name: str) -> list[dict]:
        listed = await self.core.list_namespaced_pod(
            self.namespace,
            label_selector=_selector({ISVC_POD_LABEL: name}),
            _request_timeout=self.request_timeout,
        )
        return self._as_dict(listed).get("items") or []

    async def status(self, owner: str, service: str) -> dict:
        """What the cluster says of a service:

        {"exists", "ready", "failed", "stopped", "reason", "url" (the cluster-local address
        the router calls), "external_url", "traffic": [{"revision", "percent", "latest"}],
        "predictors": [{"owner", "model", "version", "traffic", "ready_replicas",
        "replicas": [{"id", "state", "reason", "restarts"}]}]}

        Predictors are the versions that have pods, and the one the spec names (which may
        have none yet, or be scaled to zero). `traffic` is a version's percentage where the
        cluster reports its revisions' split, else None.
        """
        await self._ready()
        name = self.name(owner, service)
        try:
            isvc = await self._get_custom(ISVC_VERSION, ISVC_PLURAL, name)
            pods = await self._pods(name) if isvc is not None else []
        except ApiException as e:
            raise self._error(e, "read", "InferenceService", name) from e
        if isvc is None:
            return {
                "exists": False,
                "ready": False,
                "failed": False,
                "stopped": False,
                "reason": f"its InferenceService {name} is gone",
                "url": "",
                "external_url": "",
                "traffic": [],
                "predictors": [],
            }
        status = isvc.get("status") or {}
        conditions = status.get("conditions") or []
        component = (status.get("components") or {}).get("predictor") or {}
        traffic = [
            {
                "revision": t.get("revisionName") or "",
                "percent": int(t.get("percent") or 0),
                "latest": bool(t.get("latestRevision")),
            }
            for t in component.get("traffic") or []
        ]
        by_revision = {t["revision"]: t["percent"] for t in traffic if t["revision"]}
        latest = component.get("latestCreatedRevision") or ""

        predictors: dict[tuple, dict] = {}

        def entry(labels: Mapping[str, str], annotations: Mapping[str, str]) -> dict:
            key = (labels.get(MODEL_OWNER_LABEL, ""), labels.get(MODEL_LABEL, ""))
            key += (labels.get(VERSION_LABEL, ""),)
            if key not in predictors:
                # the exact model name is in the annotation (a label value may be a slug)
                model, _, _ = annotations.get(LABEL_PREDICTOR, "").rpartition(":")
                predictors[key] = {
                    "owner": key[0],
                    "model": model or key[1],
                    "version": int(key[2]) if key[2].isdigit() else None,
                    "traffic": None,
                    "ready_replicas": 0,
                    "replicas": [],
                }
            return predictors[key]

        spec_predictor = (isvc.get("spec") or {}).get("predictor") or {}
        entry(spec_predictor.get("labels") or {}, spec_predictor.get("annotations") or {})
        replicas = []
        for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
            labels = pod["metadata"].get("labels") or {}
            annotations = pod["metadata"].get("annotations") or {}
            state, reason, restarts = replica_state(pod)
            replica = {
                "id": pod["metadata"]["name"],
                "state": state,
                "reason": reason,
                "restarts": restarts,
            }
            predictor = entry(labels, annotations)
            predictor["replicas"].append(replica)
            predictor["ready_replicas"] += state == READY
            revision = labels.get(REVISION_POD_LABEL, "")
            if revision in by_revision:
                predictor["traffic"] = by_revision[revision]
            elif revision and revision == latest and any(t["latest"] for t in traffic):
                predictor["traffic"] = next(t["percent"] for t in traffic if t["latest"])
            replicas.append(replica)
        ready_condition = _condition(conditions, "Ready") or {}
        ready = ready_condition.get("status") == "True"
        stopped_condition = _condition(conditions, "Stopped") or {}
        stopped = stopped_condition.get("status") == "True"
        transition = (status.get("modelStatus") or {}).get("transitionStatus")
        failed = not ready and transition in _BLOCKED
        if stopped:
            reason = "stopped"
        elif ready:
            reason = ""
        else:
            reason = status_reason(isvc, replicas)
        return {
            "exists": True,
            "ready": ready,
            "failed": failed,
            "stopped": stopped,
            "reason": reason,
            "url": (status.get("address") or {}).get("url") or status.get("url") or "",
            "external_url": status.get("url") or "",
            "traffic": traffic,
            "predictors": list(predictors.values()),
        }

    async def logs(
        self,
        owner: str,
        service: str,
        replica: str,
        *,
        tail_lines: int = 1000,
        previous: bool = False,
    ) -> str:
        """The last `tail_lines` lines of one replica's serving container (previous: of its
        last crashed run). LookupError where the service has no such replica."""
        await self._ready()
        name = self.name(owner, service)
        pod = await self._read_pod(replica)
        if pod is None:
            raise LookupError(f"service {service} has no replica {replica}")
        labels = (pod.get("metadata") or {}).get("labels") or {}
        if labels.get(ISVC_POD_LABEL) != name:
            raise LookupError(f"service {service} has no replica {replica}")
        return await self._read_log(replica, tail_lines, previous)

    async def _read_pod(self, replica: str) -> dict | None:
        try:
            pod = await self.core.read_namespaced_pod(
                replica, self.namespace, _request_timeout=self.request_timeout
            )
        except ApiException as e:
            if e.status == 404:
                return None
            raise self._error(e, "read", "Pod", replica) from e
        return self._as_dict(pod)

    async def _read_log(self, replica: str, tail_lines: int, previous: bool = False) -> str:
        options = {"tail_lines": tail_lines} if tail_lines else {}
        try:
            # raw bytes: the client would parse a log that happens to be JSON as JSON
            response = await self.core.read_namespaced_pod_log(
                replica,
                self.namespace,
                container=CONTAINER,
                previous=previous,
                _preload_content=False,
                _request_timeout=self.request_timeout,
                **options,
            )
        except ApiException as e:
            raise self._error(e, "read the log of", "Pod", replica) from e
        try:
            body = await response.read()
            if response.status in (400, 404):  # not started yet, no previous run, gone
                return ""
            if response.status >= 300:
                e = ApiException(status=response.status, reason=response.reason)
                e.body = body.decode("utf-8", "replace")
                raise self._error(e, "read the log of", "Pod", replica)
        finally:
            response.release()
        return body.decode("utf-8", "replace")

    # --- the engine's replica methods, by pod name ---------------------------------------------

    @staticmethod
    def _replica_status(pod: dict) -> ReplicaStatus:
        state, reason, _ = replica_state(pod)
        pod_ip = (pod.get("status") or {}).get("podIP") or ""
        address = f"{pod_ip}:{PORT}" if pod_ip else ""
        name = pod["metadata"]["name"]
        if state == READY:
            return ReplicaStatus(id=name, state=RUNNING, address=address)
        if state == STOPPING:
            return ReplicaStatus(id=name, state=RUNNING, address=address, reason="stopping")
        if state == FAILED:
            container = next(
                (
                    c
                    for c in (pod.get("status") or {}).get("containerStatuses") or []
                    if c.get("name") == CONTAINER
                ),
                {},
            )
            ended = (
                (container.get("state") or {}).get("terminated")
                or (container.get("lastState") or {}).get("terminated")
                or {}
            )
            return ReplicaStatus(
                id=name,
                state=EXITED,
                address=address,
                exit_code=ended.get("exitCode"),
                oom=ended.get("reason") == "OOMKilled",
                reason=reason,
            )
        return ReplicaStatus(id=name, state=REPLICA_STARTING, address=address, reason=reason)

    async def replica_status(self, replica: str) -> ReplicaStatus:
        """One pod's state as the engine's runner reports a replica's (MISSING when gone);
        its address is the pod's IP and the serving port."""
        await self._ready()
        pod = await self._read_pod(replica)
        if pod is None:
            return ReplicaStatus(id=replica, state=MISSING, reason="its pod is gone")
        return self._replica_status(pod)

    async def replica_logs(self, replica: str, tail: int = 1000) -> str:
        """The last `tail` lines of a pod's serving container ("" when it is gone)."""
        await self._ready()
        return await self._read_log(replica, tail)

    async def replica_stats(self, replica: str) -> ReplicaStats | None:
        """A pod's serving container's CPU and memory use from the metrics server; None
        where the cluster has none or has not sampled the pod yet."""
        await self._ready()
        try:
            found = await self.custom.get_namespaced_custom_object(
                METRICS_GROUP,
                METRICS_VERSION,
                self.namespace,
                "pods",
                replica,
                _request_timeout=self.request_timeout,
            )
        except ApiException as e:
            if e.status in (403, 404, 503):
                return None
            raise self._error(e, "read the metrics of", "Pod", replica) from e
        for container in self._as_dict(found).get("containers") or []:
            if container.get("name") == CONTAINER:
                usage = container.get("usage") or {}
                try:
                    return ReplicaStats(
                        cpu_percent=parse_quantity(usage.get("cpu", "0")) * 100,
                        memory_bytes=int(parse_quantity(usage.get("memory", "0"))),
                    )
                except ValueError:
                    return None
        return None

    async def list_replicas(self, service_object: str) -> list[ReplicaInfo]:
        """Every pod of the InferenceService `service_object` (see name()), with its
        predictor ("<model>:<version>") and state."""
        await self._ready()
        try:
            pods = await self._pods(service_object)
        except ApiException as e:
            raise self._error(e, "list", "Pod", service_object) from e
        found = []
        for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
            status = self._replica_status(pod)
            annotations = pod["metadata"].get("annotations") or {}
            found.append(
                ReplicaInfo(
                    id=status.id,
                    predictor=annotations.get(LABEL_PREDICTOR, ""),
                    state=status.state,
                    address=status.address,
                )
            )
        return found

    async def image_present(self, ref: str) -> bool | None:
        """None: the cluster's nodes pull images themselves."""
        return None

    async def capacity(self) -> tuple[float, int] | None:
        """None: the cluster's scheduler queues what does not fit, and says why."""
        return None

    async def close(self) -> None:
        if self._own_client and self._api_client is not None:
            await self._api_client.close()
            self._api_client = None
            self.core = self.custom = self.networking = None


def _contains(current, wanted) -> bool:
    """Whether `current` has every field of `wanted` with the same value (fields the API
    server or a controller added to `current` do not count)."""
    if isinstance(wanted, dict):
        return isinstance(current, dict) and all(
            key in current and _contains(current[key], value) for key, value in wanted.items()
        )
    if isinstance(wanted, list):
        return (
            isinstance(current, list)
            and len(current) == len(wanted)
            and all(_contains(c, w) for c, w in zip(current, wanted, strict=True))
        )
    return current == wanted
