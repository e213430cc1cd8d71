"""Pure builders of the KubeSpawner settings (resources, storage, labels) for one instance start."""

from __future__ import annotations

from urllib.parse import urlsplit

from kubespawner.slugs import is_valid_label, safe_slug

from images.catalog import ImageEntry

from .flavors import Flavor
from .options import InstanceSpec

LABEL_PREFIX = "ai-workbench/"
GPU_RESOURCE = "nvidia.com/gpu"
WORK_VOLUME = "ai-workbench-work"
RUNTIME_VOLUME = "ai-workbench-runtime"
RUNTIME_DIR = "/run/jupyter"  # jupyter_server's runtime files: memory only, never saved
RUN_AS_UID = 1000  # the images' jovyan user
RUN_AS_GID = 100  # its group, users


def label_value(value: str) -> str:
    """A valid Kubernetes label value for any string.

    The value itself where it is valid (at most 63 letters, digits, '-', '_' or '.',
    starting and ending with a letter or digit), else a lower-case slug of it with
    a hash suffix, so that different values keep different labels.
    """
    return safe_slug(str(value), is_valid=is_valid_label)


def make_labels(owner: str, instance: str, spec: InstanceSpec) -> dict[str, str]:
    """Pod labels that tie an instance's pod to its user, instance, image and flavor."""
    return {
        f"{LABEL_PREFIX}user": label_value(owner),
        f"{LABEL_PREFIX}instance": label_value(instance),
        f"{LABEL_PREFIX}image": label_value(spec.image),
        f"{LABEL_PREFIX}flavor": label_value(spec.flavor),
        f"{LABEL_PREFIX}storage-gib": str(spec.storage_gib),
    }


def make_storage_labels(owner: str, instance: str, spec: InstanceSpec) -> dict[str, str]:
    """PVC labels: the user and instance the claim belongs to, and the size it was made with."""
    return {
        f"{LABEL_PREFIX}user": label_value(owner),
        f"{LABEL_PREFIX}instance": label_value(instance),
        f"{LABEL_PREFIX}storage-gib": str(spec.storage_gib),
    }


def make_cpu_guarantee(cpu: float, fraction: float) -> float:
    """The vCPUs a pod requests: `fraction` of its flavor's limit, in whole millicores (>= 1m)."""
    return max(round(cpu * fraction, 3), 0.001)


def make_platform_api_url(template: str, hub_api_url: str) -> str:
    """The platform API's URL for an instance pod: `template` with "{hub_host}" replaced by
    the host of the hub's API URL as the pod sees it ("hub" where that URL names none)."""
    host = urlsplit(hub_api_url).hostname or "hub"
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    return template.replace("{hub_host}", host)


def make_container_security_context() -> dict:
    """The notebook container's securityContext: non-root, no privilege gain, no capabilities.

    Meets the "restricted" Pod Security Standard; the uid and gid themselves come from
    KubeSpawner's uid/gid traits (RUN_AS_UID, RUN_AS_GID by default).
    """
    return {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _literal(value: str) -> str:
    """A string KubeSpawner's template expansion (str.format) leaves as it is."""
    return value.replace("{", "{{").replace("}", "}}")


def make_kube_overrides(
    *,
    owner: str,
    instance: str,
    spec: InstanceSpec,
    image: ImageEntry,
    flavor: Flavor,
    work_dir: str,
    pvc_name: str,
    gpu_node_label: str,
    cpu_guarantee_fraction: float = 1.0,
) -> dict:
    """The KubeSpawner trait values for one start of an instance.

    - cpu_limit is the flavor's vCPUs; cpu_guarantee (the request the scheduler
      reserves) is `cpu_guarantee_fraction` of it. At 1.0 (the default) requests equal
      limits, so the pod gets the Guaranteed QoS class: the flavor is reserved for it.
    - mem_limit and mem_guarantee are both the flavor's memory: beyond it the pod is
      killed (out of memory), and it is never scheduled where that memory is not free.
    - a GPU flavor asks for `nvidia.com/gpu` (limit and request) and, when the flavor
      names a gpu_type and `gpu_node_label` is set, selects nodes with
      `gpu_node_label: gpu_type`; a CPU flavor asks for neither.
    - the PVC `pvc_name` (storage_capacity "<storage_gib>Gi") is mounted at work_dir,
      which is also the container's working directory (where JupyterLab opens).

    volumes and volume_mounts are dicts keyed by WORK_VOLUME (KubeSpawner accepts lists
    or dicts); values that pass through KubeSpawner's template expansion are escaped.
    """
    gpu_limits: dict[str, str] = {}
    node_selector: dict[str, str] = {}
    if flavor.gpu:
        gpu_limits[GPU_RESOURCE] = str(flavor.gpu)
        if flavor.gpu_type and gpu_node_label:
            node_selector[gpu_node_label] = flavor.gpu_type
    return {
        "image": image.ref,
        "cpu_limit": flavor.cpu,
        "cpu_guarantee": make_cpu_guarantee(flavor.cpu, cpu_guarantee_fraction),
        "mem_limit": flavor.memory,
        "mem_guarantee": flavor.memory,
        "extra_resource_limits": dict(gpu_limits),
        "extra_resource_guarantees": dict(gpu_limits),
        "node_selector": node_selector,
        "storage_capacity": f"{spec.storage_gib}Gi",
        "volumes": {
            WORK_VOLUME: {
                "name": WORK_VOLUME,
                "persistentVolumeClaim": {"claimName": _literal(pvc_name)},
            },
            RUNTIME_VOLUME: {
                "name": RUNTIME_VOLUME,
                "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"},
            },
        },
        "volume_mounts": {
            WORK_VOLUME: {"name": WORK_VOLUME, "mountPath": _literal(work_dir)},
            RUNTIME_VOLUME: {"name": RUNTIME_VOLUME, "mountPath": RUNTIME_DIR},
        },
        "working_dir": work_dir,
        "extra_labels": make_labels(owner, instance, spec),
        "storage_extra_labels": make_storage_labels(owner, instance, spec),
    }


def make_instance_network_policy(namespace: str, allowed_from: dict[str, dict]) -> dict:
    """A NetworkPolicy that lets only the platform's own pods reach instance pods.

    Instances (pods labelled with the platform's user label) accept connections only from
    the pods matched by `allowed_from` (name: podSelector matchLabels: the hub, the proxy,
    the SSH gateway), so no instance reaches another's ports; their egress is left open,
    so they still reach the hub API and package mirrors.
    """
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "ai-workbench-instances", "namespace": namespace},
        "spec": {
            "podSelector": {
                "matchExpressions": [{"key": f"{LABEL_PREFIX}user", "operator": "Exists"}]
            },
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [
                        {"podSelector": {"matchLabels": labels}}
                        for _, labels in sorted(allowed_from.items())
                    ]
                }
            ],
        },
    }


# the pods that reach instances: JupyterHub's hub (with its services: the platform API and
# the SSH gateway) and proxy, labelled as zero-to-jupyterhub labels them
PLATFORM_PODS = {"hub": {"component": "hub"}, "proxy": {"component": "proxy"}}


def main(argv=None):
    """Print the instances' NetworkPolicy: `python -m spawner.kube_manifests --namespace NS`."""
    import argparse
    import json

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--namespace", default="default", help="the instances' namespace")
    args = parser.parse_args(argv)
    print(json.dumps(make_instance_network_policy(args.namespace, PLATFORM_PODS), indent=2))


if __name__ == "__main__":
    main()
