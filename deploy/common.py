"""What every component of the bundle shares: names, labels, the hub pod's paths, small helpers."""

from __future__ import annotations

import base64
import hashlib
import json
import math

PART_OF = "ai-workbench"
MANAGED_BY = "workbench-kubernetes-render"
# names as zero-to-jupyterhub gives them (the hub's Service "hub" is in JupyterHub's and
# KubeSpawner's defaults, the instances' NetworkPolicy admits component: hub / proxy)
HUB = "hub"
PROXY = "proxy"
PROXY_API = "proxy-api"
PROXY_PUBLIC = "proxy-public"
API_SERVICE = "workbench-api"
SSH_SERVICE = "workbench-ssh"
HUB_DATA_PVC = "workbench-hub-data"
REGISTRY_SECRET = "workbench-registry"
# the jobs runner's claim (training_bridge.kubernetes) and each store's "workbench-<store>"
# (JobRunner.store_claim; the models store is inference's kubernetes_models_pvc)
STORE_PVCS = {
    "jobs": "workbench-jobs",
    "models": "workbench-models",
    "datasets": "workbench-datasets",
}
PROXY_PORT = 8000  # configurable-http-proxy's public port (zero-to-jupyterhub's)
# the hub image (images/hub/Dockerfile): its user and group workbench (1000:1000), its
# configuration and data folders
HUB_UID = 1000
HUB_GID = 1000
CONFIG_DIR = "/etc/workbench"
SETTINGS_FILE = f"{CONFIG_DIR}/workbench.toml"
IMAGE_HUB_CONFIG = f"{CONFIG_DIR}/jupyterhub_config.py"
CLUSTER_DIR = f"{CONFIG_DIR}/kubernetes"  # the hub's ConfigMap
SECRETS_DIR = f"{CONFIG_DIR}/secrets"  # the hub's Secret (the parts files read)
DATA_MOUNT = "/srv/workbench"
# the platform's data folder: a folder of the volume, made by the hub's own user, so that
# the hub may make it 0700 (a volume's root belongs to root)
DATA_DIR = f"{DATA_MOUNT}/data"


def labels(component: str, release: str = PART_OF) -> dict[str, str]:
    """Every object's labels: the recommended app.kubernetes.io ones and zero-to-jupyterhub's
    `component` (what the platform's NetworkPolicies select)."""
    return {
        "app.kubernetes.io/name": PART_OF,
        "app.kubernetes.io/instance": release,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "component": component,
    }


def selector(component: str) -> dict[str, str]:
    """The labels a component's pods are selected by (a Deployment's selector never changes)."""
    return {"app.kubernetes.io/name": PART_OF, "component": component}


def metadata(name: str, namespace: str, component: str, **more) -> dict:
    meta = {"name": name, "namespace": namespace, "labels": labels(component)}
    meta.update({k: v for k, v in more.items() if v})
    return meta


def deployment(component: str, namespace: str, pod_spec: dict, annotations: dict) -> dict:
    """A Deployment of one replica of the component's pod, replaced (never two at once)."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(component, namespace, component),
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": selector(component)},
            "template": {
                "metadata": {"labels": labels(component), "annotations": annotations},
                "spec": pod_spec,
            },
        },
    }


def place_on_hub_nodes(pod_spec: dict, values: dict) -> None:
    """Put a platform pod where the hub goes (its node selector and tolerations) and give it
    the registry's pull secret when the registry needs credentials."""
    hub = values["hub"]
    if hub["nodeSelector"]:
        pod_spec["nodeSelector"] = hub["nodeSelector"]
    if hub["tolerations"]:
        pod_spec["tolerations"] = hub["tolerations"]
    if values["registry"]["username"]:
        pod_spec["imagePullSecrets"] = [{"name": REGISTRY_SECRET}]


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def checksum(data: dict) -> str:
    """A digest of an object's data: in a pod template's annotations, a change restarts it."""
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def toml_value(value) -> str:
    """One TOML value: strings (as JSON writes them, which TOML reads), numbers, booleans,
    arrays and inline tables."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return ("-" if value < 0 else "") + ("nan" if math.isnan(value) else "inf")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        items = ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items())
        return "{" + (" " + items + " " if items else "") + "}"
    raise TypeError(f"no TOML form for {value!r}")


def toml_key(key: str) -> str:
    key = str(key)
    if key and all(ch.isalnum() or ch in "-_" for ch in key) and key.isascii():
        return key
    return json.dumps(key, ensure_ascii=False)


def toml_table(name: str, values: dict) -> list[str]:
    return [f"[{name}]", *(f"{toml_key(k)} = {toml_value(v)}" for k, v in values.items())]


def container_security_context() -> dict:
    """Non-root, no privilege gain, no capabilities, the default seccomp profile."""
    return {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
