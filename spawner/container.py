"""Pure builders of container specs for the Docker Engine API (Docker or Podman)."""

from __future__ import annotations

import re
import string

import docker
from escapism import escape

from images.catalog import ImageEntry

from .flavors import Flavor
from .options import InstanceSpec

LABEL_PREFIX = "ai-workbench"
# jupyter_server's runtime files (its token in jpserver-*.json, the cookie secret, kernels'
# connection files) live on a tmpfs outside home: never in the work volume, never in a save
# (a sticky, world-writable tmpfs, as /tmp is: Podman and Docker differ in how a tmpfs is
# given an owner; jupyter_server makes its runtime folder inside it private, 0700)
RUNTIME_TMPFS = "/run/jupyter"
RUNTIME_DIR = f"{RUNTIME_TMPFS}/runtime"


SAFE_FOLDER = re.compile(r"^[a-z0-9][a-z0-9._@+-]{0,127}$")


def user_folder_name(user: str) -> str:
    """A host folder name for a user: the name where it is plain, else an escaped form."""
    if SAFE_FOLDER.match(user) and ".." not in user:
        return user
    return "_" + user.encode().hex()[:200]


def labels_match(labels: dict | None, wanted: dict[str, str]) -> bool:
    """Whether an engine object's labels hold every wanted one. Filter on them after
    listing: given several label filters, Podman's Docker-compatible API returns what
    matches any one of them (Docker: all of them)."""
    labels = labels or {}
    return all(labels.get(key) == value for key, value in wanted.items())


def make_volume_name(object_name: str) -> str:
    """The engine volume holding an instance's work directory."""
    return f"{object_name}-work"


def escape_name_part(text: str) -> str:
    """A user or instance name as DockerSpawner puts it in container names (its escaping)."""
    return escape(text, set(string.ascii_lowercase + string.digits), escape_char="-").lower()


def instance_object_name(prefix: str, owner: str, instance: str) -> str:
    """The container name the spawner gives an instance (DockerSpawner's named-server template)."""
    return f"{prefix}-{escape_name_part(owner)}--{escape_name_part(instance)}"


def find_instance_volume(api: docker.APIClient, prefix: str, owner: str, instance: str):
    """The name of the engine volume of one platform's instance, or None if it has none.

    Found by its exact name (the platform's container prefix, the owner and the instance),
    and checked against the labels it was made with: another platform on the same engine, or
    a volume left by an earlier one, may carry the same user and instance labels.
    """
    name = make_volume_name(instance_object_name(prefix, owner, instance))
    try:
        volume = api.inspect_volume(name)
    except docker.errors.NotFound:
        return None
    wanted = {f"{LABEL_PREFIX}.user": owner, f"{LABEL_PREFIX}.instance": instance}
    return name if labels_match(volume.get("Labels"), wanted) else None


def make_network_name(object_name: str) -> str:
    """The engine network of one instance: it shares it with nobody."""
    return f"{object_name}-net"


def make_labels(owner: str, instance: str, spec: InstanceSpec) -> dict[str, str]:
    """Labels that tie a container or volume to its user and instance."""
    return {
        f"{LABEL_PREFIX}.user": owner,
        f"{LABEL_PREFIX}.instance": instance,
        f"{LABEL_PREFIX}.image": spec.image,
        f"{LABEL_PREFIX}.flavor": spec.flavor,
        f"{LABEL_PREFIX}.storage-gib": str(spec.storage_gib),
    }


def make_device_requests(flavor: Flavor) -> list[dict]:
    """GPU device requests for a flavor (docker-py DeviceRequest fields); none for CPU flavors."""
    if not flavor.gpu:
        return []
    return [{"driver": "nvidia", "count": flavor.gpu, "capabilities": [["gpu"]]}]


def make_container_spec(
    *,
    owner: str,
    instance: str,
    object_name: str,
    spec: InstanceSpec,
    image: ImageEntry,
    flavor: Flavor,
    work_dir: str,
    run_as: str,
    pids_limit: int = 0,
    network: str = "",
) -> dict:
    """Everything the Docker spawner sets for one start of an instance.

    Memory swap is capped at the memory limit so that exceeding the flavor
    kills the instance (out of memory) instead of swapping it to a crawl.
    The instance gets no capabilities and cannot gain privileges (setuid binaries stay
    unprivileged), at most `pids_limit` processes (0: the engine's default), its own network
    when `network` is given, and a private tmpfs for jupyter_server's runtime files.
    """
    host_config: dict = {
        "memswap_limit": flavor.memory,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "tmpfs": {RUNTIME_TMPFS: "rw,nosuid,nodev,noexec,size=64m,mode=1777"},
    }
    if pids_limit:
        host_config["pids_limit"] = pids_limit
    if network:
        host_config["network_mode"] = network
    devices = make_device_requests(flavor)
    if devices:
        host_config["device_requests"] = devices
    return {
        "image": image.ref,
        "mem_limit": flavor.memory,
        "cpu_limit": flavor.cpu,
        "volume": make_volume_name(object_name),
        "network": network,
        "environment": {"JUPYTER_RUNTIME_DIR": RUNTIME_DIR},
        "volumes": {make_volume_name(object_name): {"bind": work_dir, "mode": "rw"}},
        "extra_host_config": host_config,
        "extra_create_kwargs": {
            "labels": make_labels(owner, instance, spec),
            "user": run_as,
            "working_dir": work_dir,
        },
    }
