"""Pure builders of a service's KServe objects: InferenceService, ServingRuntime, NetworkPolicy.

One InferenceService (serving.kserve.io/v1beta1) per service. Its predictor names the model's
format and the platform's ServingRuntime for it (`workbench-<format>`: the engine's image
running `python -m workbench.serving` with WORKBENCH_MODEL, reading the model from
/mnt/models), the model version's files as `pvc://<models-pvc>/<owner>/<model>/<version>`
(the platform's model store is a PVC on Kubernetes), the version's image, the flavor's
resources and the autoscaling bounds. A custom serving image (format "image") runs as the
predictor's own container instead.

Canary follows KServe's model: an InferenceService carries one predictor spec, the latest
one. With a canary, the canary version's predictor is rendered with canaryTrafficPercent =
its weight, and Knative keeps sending the rest to the previous rolled-out revision (the
stable version's). Promotion renders the canary alone (no canaryTrafficPercent: 100% to
it); rollback renders the stable version alone. Changing only the weights changes only
canaryTrafficPercent, so no new revision starts. That split is a Knative feature: it
exists only in the Serverless deployment mode, as do scaling on requests in flight
(`scaleMetric: concurrency`, which KServe refuses for RawDeployment's HPA) and scaling to
zero. RawDeployment services scale on CPU (KServe's default) with at least one replica.

Knative (Serverless) accepts only some pod fields by default: the predictor sets none of the
feature-flagged ones (pod securityContext, nodeSelector) unless asked to (gpu_node_label),
runs the container as non-root through the container's securityContext, and leaves PORT
to Knative (a reserved variable there); RawDeployment gets PORT=8080 itself.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from spawner.kube_manifests import (
    GPU_RESOURCE,
    PLATFORM_PODS,
    RUN_AS_GID,
    RUN_AS_UID,
    label_value,
    make_container_security_context,
)

from .service_runners import (
    LABEL_NAME,
    LABEL_OWNER,
    LABEL_PREDICTOR,
    LABEL_SERVICE,
    MODEL_DIR,
    PORT,
)

KSERVE_GROUP = "serving.kserve.io"
ISVC_VERSION = "v1beta1"
ISVC_PLURAL = "inferenceservices"
RUNTIME_VERSION = "v1alpha1"
RUNTIME_PLURAL = "servingruntimes"
CLUSTER_RUNTIME_PLURAL = "clusterservingruntimes"

SERVERLESS = "Serverless"
RAW_DEPLOYMENT = "RawDeployment"
DEPLOYMENT_MODES = (SERVERLESS, RAW_DEPLOYMENT)
DEPLOYMENT_MODE_ANNOTATION = f"{KSERVE_GROUP}/deploymentMode"

# formats served by the platform's runtime; "image" is a container of the user's own
RUNTIME_FORMATS = ("onnx", "pytorch", "tensorflow", "mindspore", "sklearn", "custom")
IMAGE_FORMAT = "image"
FORMATS = (*RUNTIME_FORMATS, IMAGE_FORMAT)
RUNTIME_PREFIX = "workbench-"

CONTAINER = "kserve-container"  # the name KServe gives (and requires of) the serving container
SERVING_COMMAND = ("python", "-m", "workbench.serving")
PROTOCOL_VERSIONS = ("v1", "v2")

# labels KServe and Knative put on the predictor's pods
ISVC_POD_LABEL = f"{KSERVE_GROUP}/inferenceservice"
REVISION_POD_LABEL = "serving.knative.dev/revision"
# an InferenceService with these labels gets no external ingress: only the router calls it
# (the first is read in Serverless mode, the second in RawDeployment)
CLUSTER_LOCAL_LABELS = {
    "networking.knative.dev/visibility": "cluster-local",
    "networking.kserve.io/visibility": "cluster-local",
}
# the engine's replica labels (LABEL_SERVICE: the InferenceService's name; LABEL_OWNER and
# LABEL_NAME made valid label values, and exact as annotations), and a version's own: a
# label value cannot hold LABEL_PREDICTOR's "<model>:<version>", an annotation does
WORKSPACE_LABEL = "ai-workbench.workspace"
MODEL_OWNER_LABEL = "ai-workbench.model-owner"
MODEL_LABEL = "ai-workbench.model"
VERSION_LABEL = "ai-workbench.model-version"
COMPONENT_LABEL = "ai-workbench.component"
SCALE_TO_ZERO_RETENTION = "autoscaling.knative.dev/scale-to-zero-pod-retention-period"

# where Knative's activator and autoscaler (knative-serving) and its ingress gateway (Istio's
# knative-local-gateway in istio-system; Kourier's in kourier-system) run: in Serverless mode
# requests reach the pods through them, never from the router directly
KNATIVE_NAMESPACES = ("knative-serving", "istio-system")
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"

# Knative names revision n of the predictor `<isvc>-predictor-<n, 5 digits>`, a label value
# (at most 63 characters); KServe's RawDeployment host is `<isvc>-predictor-<namespace>`
_REVISION_SUFFIX = "-predictor-00001"
_HOST_SUFFIX = "-predictor-"
_DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


# --- what to deploy -----------------------------------------------------------------------


@dataclass(frozen=True)
class PredictorPlan:
    """One model version of a service, with its share of the traffic and its replicas."""

    model: str
    version: int
    format: str
    # the resolved image reference (a catalog image's or a saved image's)
    image_ref: str
    # the model's owner ("": the service's owner)
    owner: str = ""
    weight: int = 100
    cpu: float = 1
    memory: int = 1024**3
    gpu: int = 0
    gpu_type: str = ""
    min_replicas: int = 1
    max_replicas: int = 1
    # requests in flight per replica the autoscaler aims at
    target_in_flight: int = 1
    # file:class of a custom predictor, "" for the format's loader
    predictor: str = ""
    signature: Mapping = field(default_factory=dict)
    # the custom image's command ("": its own entrypoint); format "image" only
    command: str = ""


@dataclass(frozen=True)
class ServicePlan:
    """A service as KServe runs it: one predictor, or a stable and a canary one (in order)."""

    owner: str
    name: str
    predictors: tuple[PredictorPlan, ...]
    # the model name in the protocol paths ("": the stable predictor's model)
    model_name: str = ""
    workspace: str = "default"
    # idle seconds before a predictor with min_replicas 0 goes to zero (0: never)
    scale_to_zero_seconds: float = 0

    @property
    def served_model_name(self) -> str:
        return self.model_name or (self.predictors[0].model if self.predictors else "")


def check_plan(plan: ServicePlan, deployment_mode: str = SERVERLESS) -> None:
    """Raise ValueError, saying what to change, where KServe could not run the plan."""
    if deployment_mode not in DEPLOYMENT_MODES:
        raise ValueError(
            f"deployment mode {deployment_mode!r}: use one of {', '.join(DEPLOYMENT_MODES)}"
        )
    predictors = plan.predictors
    if not 1 <= len(predictors) <= 2:
        raise ValueError("a service has one predictor, or two (stable and canary)")
    if sum(p.weight for p in predictors) != 100:
        raise ValueError("the predictors' weights must add up to 100")
    if len(predictors) == 2:
        stable, canary = predictors
        if (stable.owner, stable.model, stable.version) == (
            canary.owner,
            canary.model,
            canary.version,
        ):
            raise ValueError("the canary must be another model version than the stable one")
        if deployment_mode != SERVERLESS:
            raise ValueError(
                "splitting traffic between two versions needs KServe's Serverless mode "
                "(Knative); in RawDeployment mode a new version replaces the old one: promote "
                "or roll back first"
            )
    for p in predictors:
        what = f"predictor {p.model}:{p.version}"
        if p.format not in FORMATS:
            raise ValueError(f"{what}: unknown format {p.format!r} (one of {', '.join(FORMATS)})")
        if not p.image_ref:
            raise ValueError(f"{what}: no image")
        if not 0 <= p.weight <= 100:
            raise ValueError(f"{what}: a weight is between 0 and 100")
        if p.min_replicas < 0 or p.max_replicas < max(1, p.min_replicas):
            raise ValueError(f"{what}: replicas must satisfy 0 <= min <= max and max >= 1")
        if p.target_in_flight < 1:
            raise ValueError(f"{what}: target_in_flight must be at least 1")
        if p.cpu <= 0 or p.memory <= 0 or p.gpu < 0:
            raise ValueError(f"{what}: the flavor's resources must be positive")
        for part in (p.owner or plan.owner, p.model, str(p.version)):
            if not part or part in (".", "..") or "/" in part:
                raise ValueError(f"{what}: {part!r} cannot be a folder of the model store")


def serving_predictor(plan: ServicePlan) -> tuple[PredictorPlan, int | None]:
    """(the predictor the InferenceService renders, its canaryTrafficPercent or None)."""
    if len(plan.predictors) == 2:
        canary = plan.predictors[1]
        return canary, canary.weight
    return plan.predictors[0], None


def promoted(plan: ServicePlan) -> ServicePlan:
    """The plan after promotion: the canary alone, with all the traffic."""
    return replace(plan, predictors=(replace(plan.predictors[-1], weight=100),))


def rolled_back(plan: ServicePlan) -> ServicePlan:
    """The plan after a rollback: the stable predictor alone, with all the traffic."""
    return replace(plan, predictors=(replace(plan.predictors[0], weight=100),))


# --- names --------------------------------------------------------------------------------


def _slug(text: str) -> str:
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9]", "-", text.lower())).strip("-")


def isvc_name(owner: str, service: str, namespace: str = "") -> str:
    """The InferenceService's name: a DNS-1035 label from owner and service with a hash suffix.

    The hash is always there: joining owner and service is ambiguous ("a-b" + "c" and "a" +
    "b-c") and slugging maps different names to one. The readable part is cut so that
    Knative's revision names (`<name>-predictor-00001`) and KServe's RawDeployment host label
    (`<name>-predictor-<namespace>`) stay within 63 characters.
    """
    limit = min(63 - len(_REVISION_SUFFIX), 63 - len(_HOST_SUFFIX) - len(namespace))
    if limit < 12:
        raise ValueError(f"namespace {namespace!r} is too long to name services in")
    digest = hashlib.sha256(f"{owner}/{service}".encode()).hexdigest()[:8]
    base = _slug(f"{owner}-{service}")
    if not base[:1].isalpha():
        base = f"s-{base}".rstrip("-")
    base = base[: limit - len(digest) - 1].rstrip("-")
    name = f"{base}-{digest}"
    if not _DNS_1035.match(name):  # cannot happen; a guard for the rules above
        raise ValueError(f"cannot name a service {name!r}")
    return name


def network_policy_name(name: str) -> str:
    """The NetworkPolicy of the InferenceService `name`."""
    return f"{name}-ingress"


def runtime_name(model_format: str) -> str:
    """The (Cluster)ServingRuntime that serves `model_format`."""
    return f"{RUNTIME_PREFIX}{model_format}"


def model_storage_uri(pvc: str, owner: str, model: str, version: int) -> str:
    """Where KServe finds a model version's files: the version's folder of the models PVC."""
    return f"pvc://{pvc}/{owner}/{model}/{version}"


# --- parts --------------------------------------------------------------------------------


def escape(text: str) -> str:
    """`text` written so that the kubelet's $(NAME) expansion gives it back unchanged."""
    return text.replace("$", "$$")


def _cpu(cpu: float) -> str:
    if float(cpu).is_integer():
        return str(int(cpu))
    return f"{max(1, math.ceil(cpu * 1000))}m"


def make_resources(p: PredictorPlan) -> dict:
    """Requests equal to limits: each replica gets its flavor reserved, and is killed beyond
    its memory; GPU flavors ask for nvidia.com/gpu."""
    limits = {"cpu": _cpu(p.cpu), "memory": str(int(p.memory))}
    if p.gpu:
        limits[GPU_RESOURCE] = str(p.gpu)
    return {"limits": dict(limits), "requests": dict(limits)}


def make_security_context() -> dict:
    """The serving container's securityContext: the images' non-root user, no privilege gain,
    no capabilities (all container-level fields Knative accepts without feature flags)."""
    return {
        **make_container_security_context(),
        "runAsUser": RUN_AS_UID,
        "runAsGroup": RUN_AS_GID,
    }


def model_settings(plan: ServicePlan, p: PredictorPlan) -> dict:
    """What WORKBENCH_MODEL says to `python -m workbench.serving`."""
    return {
        "name": plan.served_model_name,
        "version": str(p.version),
        "format": p.format,
        "predictor": p.predictor,
        "signature": dict(p.signature or {}),
    }


def make_model_env(plan: ServicePlan, p: PredictorPlan) -> list[dict]:
    """The version's own variables (the runtime's container brings the rest)."""
    settings = json.dumps(model_settings(plan, p), sort_keys=True, separators=(",", ":"))
    return [{"name": "WORKBENCH_MODEL", "value": escape(settings)}]


def _common_env(deployment_mode: str) -> list[dict]:
    env = [{"name": "WORKBENCH_MODEL_DIR", "value": MODEL_DIR}]
    if deployment_mode == RAW_DEPLOYMENT:
        env.append({"name": "PORT", "value": str(PORT)})  # Knative sets it itself
    return env


def _readiness_probe() -> dict:
    return {"httpGet": {"path": "/v2/health/ready", "port": PORT}, "periodSeconds": 5}


def make_service_labels(
    plan: ServicePlan, name: str, extra: Mapping[str, str] | None = None
) -> dict:
    """Labels of the objects of the service whose InferenceService is `name`: the engine's
    replica labels and the workspace (values made valid), and `extra`."""
    labels = {key: label_value(value) for key, value in (extra or {}).items()}
    labels.update(
        {
            LABEL_SERVICE: name,
            LABEL_OWNER: label_value(plan.owner),
            LABEL_NAME: label_value(plan.name),
            WORKSPACE_LABEL: label_value(plan.workspace),
        }
    )
    return labels


def predictor_id(p: PredictorPlan) -> str:
    """The engine's name of a predictor: "<model>:<version>"."""
    return f"{p.model}:{p.version}"


def make_version_labels(plan: ServicePlan, p: PredictorPlan) -> dict:
    """Labels of one version's pods (status() tells the stable and canary replicas apart)."""
    return {
        MODEL_OWNER_LABEL: label_value(p.owner or plan.owner),
        MODEL_LABEL: label_value(p.model),
        VERSION_LABEL: str(p.version),
    }


def _replicas(plan: ServicePlan, p: PredictorPlan, deployment_mode: str) -> tuple[int, bool]:
    """(minReplicas, whether it scales to zero): only Serverless services scale to zero, and
    only predictors with min_replicas 0 of services with scale_to_zero_seconds > 0."""
    to_zero = (
        deployment_mode == SERVERLESS and p.min_replicas == 0 and plan.scale_to_zero_seconds > 0
    )
    return (0 if to_zero else max(1, p.min_replicas)), to_zero


def make_predictor(
    plan: ServicePlan,
    p: PredictorPlan,
    *,
    deployment_mode: str,
    models_pvc: str,
    canary_percent: int | None = None,
    timeout_seconds: int = 0,
    gpu_node_label: str = "",
) -> dict:
    """The predictor spec of version `p` (with canaryTrafficPercent when it is a canary)."""
    min_replicas, to_zero = _replicas(plan, p, deployment_mode)
    spec: dict = {
        "minReplicas": min_replicas,
        "maxReplicas": max(p.max_replicas, min_replicas, 1),
        "labels": make_version_labels(plan, p),
        "annotations": {LABEL_PREDICTOR: predictor_id(p)},
        # serving code has no business with the Kubernetes API
        "automountServiceAccountToken": False,
    }
    if deployment_mode == SERVERLESS:
        spec["scaleMetric"] = "concurrency"
        spec["scaleTarget"] = p.target_in_flight
    if to_zero:
        retention = f"{math.ceil(plan.scale_to_zero_seconds)}s"
        spec["annotations"][SCALE_TO_ZERO_RETENTION] = retention
    if canary_percent is not None:
        spec["canaryTrafficPercent"] = canary_percent
    if timeout_seconds:
        spec["timeout"] = int(timeout_seconds)
    if p.gpu and p.gpu_type and gpu_node_label:
        # Serverless: needs Knative's kubernetes.podspec-nodeselector feature enabled
        spec["nodeSelector"] = {gpu_node_label: p.gpu_type}
    env = make_model_env(plan, p)
    if p.format == IMAGE_FORMAT:
        container = {
            "name": CONTAINER,
            "image": p.image_ref,
            "env": [*env, *_common_env(deployment_mode)],
            "ports": [{"containerPort": PORT, "protocol": "TCP"}],
            "resources": make_resources(p),
            "securityContext": make_security_context(),
        }
        if p.command:
            container["command"] = ["sh", "-c", escape(p.command)]
        spec["containers"] = [container]
    else:
        owner = p.owner or plan.owner
        spec["model"] = {
            "modelFormat": {"name": p.format},
            "runtime": runtime_name(p.format),
            "protocolVersion": "v2",
            "storageUri": model_storage_uri(models_pvc, owner, p.model, p.version),
            # the runtime's container, with this version's image, variables and flavor
            "image": p.image_ref,
            "env": env,
            "resources": make_resources(p),
        }
    return spec


# --- the objects --------------------------------------------------------------------------


def make_inference_service(
    plan: ServicePlan,
    *,
    namespace: str,
    models_pvc: str,
    deployment_mode: str = SERVERLESS,
    labels: Mapping[str, str] | None = None,
    cluster_local: bool = True,
    timeout_seconds: int = 0,
    gpu_node_label: str = "",
) -> dict:
    """The service's InferenceService; raises ValueError where KServe could not run the plan."""
    check_plan(plan, deployment_mode)
    name = isvc_name(plan.owner, plan.name, namespace)
    p, canary_percent = serving_predictor(plan)
    all_labels = make_service_labels(plan, name, labels)
    if cluster_local:
        all_labels.update(CLUSTER_LOCAL_LABELS)
    return {
        "apiVersion": f"{KSERVE_GROUP}/{ISVC_VERSION}",
        "kind": "InferenceService",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": all_labels,
            "annotations": {
                DEPLOYMENT_MODE_ANNOTATION: deployment_mode,
                LABEL_OWNER: plan.owner,
                LABEL_NAME: plan.name,
            },
        },
        "spec": {
            "predictor": make_predictor(
                plan,
                p,
                deployment_mode=deployment_mode,
                models_pvc=models_pvc,
                canary_percent=canary_percent,
                timeout_seconds=timeout_seconds,
                gpu_node_label=gpu_node_label,
            )
        },
    }


def make_serving_runtime(
    model_format: str,
    *,
    image: str,
    namespace: str | None = None,
    deployment_mode: str = SERVERLESS,
    labels: Mapping[str, str] | None = None,
) -> dict:
    """The platform's runtime of one format: a ServingRuntime in `namespace`, or a
    ClusterServingRuntime where namespace is None.

    Its container runs `python -m workbench.serving` on port 8080 with the model in
    /mnt/models; each InferenceService sets its version's image, WORKBENCH_MODEL and
    resources on top (KServe merges the predictor's model fields into this container).
    autoSelect is off: only InferenceServices that name the runtime use it, never another
    user's predictor of the same format.
    """
    if model_format not in RUNTIME_FORMATS:
        raise ValueError(f"no runtime serves format {model_format!r}")
    extra = {key: label_value(value) for key, value in (labels or {}).items()}
    metadata: dict = {
        "name": runtime_name(model_format),
        "labels": {**extra, COMPONENT_LABEL: "serving-runtime"},
    }
    if namespace is not None:
        metadata["namespace"] = namespace
    return {
        "apiVersion": f"{KSERVE_GROUP}/{RUNTIME_VERSION}",
        "kind": "ServingRuntime" if namespace is not None else "ClusterServingRuntime",
        "metadata": metadata,
        "spec": {
            "supportedModelFormats": [{"name": model_format, "autoSelect": False}],
            "protocolVersions": list(PROTOCOL_VERSIONS),
            "multiModel": False,
            "containers": [
                {
                    "name": CONTAINER,
                    "image": image,
                    "command": list(SERVING_COMMAND),
                    "args": [f"--model_dir={MODEL_DIR}", f"--http_port={PORT}"],
                    "env": _common_env(deployment_mode),
                    "ports": [{"containerPort": PORT, "protocol": "TCP"}],
                    "readinessProbe": _readiness_probe(),
                    "securityContext": make_security_context(),
                }
            ],
        },
    }


def make_network_policy(
    plan: ServicePlan,
    *,
    namespace: str,
    router_namespace: str,
    router_pods: Mapping[str, str] | None = None,
    deployment_mode: str = SERVERLESS,
    knative_namespaces: Sequence[str] = KNATIVE_NAMESPACES,
    labels: Mapping[str, str] | None = None,
) -> dict:
    """Who may open connections to the service's pods.

    RawDeployment: only the router (pods `router_pods` in `router_namespace`: the platform
    API runs in the hub's pod), on the serving port. Serverless: requests come through
    Knative's gateway and activator, and its autoscaler scrapes the queue-proxy, so the
    namespaces `knative_namespaces` are let in as well (the router's key check is the
    gate there; cluster-local visibility keeps the service off the external ingress).
    Egress is left open.
    """
    name = isvc_name(plan.owner, plan.name, namespace)
    pods = dict(router_pods if router_pods is not None else PLATFORM_PODS["hub"])
    router = {
        "namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: router_namespace}},
        "podSelector": {"matchLabels": pods},
    }
    if deployment_mode == SERVERLESS:
        ingress = [
            {
                "from": [router]
                + [
                    {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: ns}}}
                    for ns in knative_namespaces
                ]
            }
        ]
    else:
        ingress = [{"from": [router], "ports": [{"protocol": "TCP", "port": PORT}]}]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": network_policy_name(name),
            "namespace": namespace,
            "labels": make_service_labels(plan, name, labels),
        },
        "spec": {
            "podSelector": {"matchLabels": {ISVC_POD_LABEL: name}},
            "policyTypes": ["Ingress"],
            "ingress": ingress,
        },
    }


def main(argv=None):
    """Print the platform's ClusterServingRuntimes (YAML) for a cluster administrator:
    `python -m inference_bridge.kserve_manifests --image REF [--raw]`."""
    import argparse

    import yaml

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--image", required=True, help="the default serving image")
    parser.add_argument("--raw", action="store_true", help="for RawDeployment mode")
    args = parser.parse_args(argv)
    mode = RAW_DEPLOYMENT if args.raw else SERVERLESS
    runtimes = [
        make_serving_runtime(f, image=args.image, deployment_mode=mode) for f in RUNTIME_FORMATS
    ]
    print(yaml.safe_dump_all(runtimes, sort_keys=False), end="")


if __name__ == "__main__":
    main()
