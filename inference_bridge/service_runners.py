"""The service runner interface: one per backend (containers on the engine, pods on Kubernetes)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

# states of one replica, as a runner sees it
STARTING = "starting"  # created, its process not yet running (pulling, unschedulable: reason)
RUNNING = "running"  # its process runs (whether it answers is the manager's health check)
EXITED = "exited"
MISSING = "missing"  # no container / pod (removed behind the platform's back)

# where the model's files are mounted in every replica, and the port it serves on
MODEL_DIR = "/mnt/models"
PORT = 8080

# labels every replica carries: a restarted platform finds a service's replicas by them
LABEL_SERVICE = "ai-workbench.service"  # the service's object name (unique, never reused)
LABEL_OWNER = "ai-workbench.user"
LABEL_NAME = "ai-workbench.service-name"
LABEL_PREDICTOR = "ai-workbench.predictor"  # "<model>:<version>"


@dataclass(frozen=True)
class ReplicaPlan:
    """Everything a runner needs to start one replica of one predictor of a service."""

    owner: str
    service: str  # the service's name
    service_object: str  # the service's object name: "<prefix>-svc-<uid>", unique
    predictor: str  # "<model>:<version>"
    replica: str  # this replica's name (its id), unique: "<service_object>-<suffix>"
    image_ref: str
    model_dir: str  # host folder of the model version's files ("" for an image model)
    model_env: str  # WORKBENCH_MODEL: JSON of the model's name, version, format, signature
    cpu: float
    memory: int  # bytes
    gpu: int = 0
    gpu_type: str = ""
    command: tuple[str, ...] = ()  # empty: the image's own command
    environment: dict = field(default_factory=dict)  # more variables (proxies, CAs)
    run_as: str = "1000:100"
    workspace: str = "default"

    def labels(self) -> dict[str, str]:
        """Labels of the replica (and of its service's network)."""
        return {
            LABEL_SERVICE: self.service_object,
            LABEL_OWNER: self.owner,
            LABEL_NAME: self.service,
            LABEL_PREDICTOR: self.predictor,
        }

    def env(self) -> dict[str, str]:
        """The replica's environment: what `python -m workbench.serving` reads."""
        return {
            **self.environment,
            "WORKBENCH_MODEL": self.model_env,
            "WORKBENCH_MODEL_DIR": MODEL_DIR,
            "PORT": str(PORT),
        }


@dataclass(frozen=True)
class ReplicaStatus:
    """What a runner knows of one replica."""

    id: str
    state: str
    # where the platform's host reaches its HTTP port: "host:port" ("" until known)
    address: str = ""
    exit_code: int | None = None
    oom: bool = False
    reason: str = ""  # why it waits or ended, in words


@dataclass(frozen=True)
class ReplicaInfo:
    """A replica found on the backend (after a restart of the platform)."""

    id: str
    predictor: str
    state: str
    address: str = ""


@dataclass(frozen=True)
class ReplicaStats:
    """A replica's use of resources, sampled now."""

    cpu_percent: float  # of one vCPU (200: two vCPUs busy)
    memory_bytes: int


class ServiceRunner(ABC):
    """Starts, watches and removes the replicas of online services.

    The service manager (inference_bridge/manager.py) decides how many replicas each
    predictor has, checks their health over HTTP at `address`, routes requests to them and
    restarts the ones that end; a runner only does what it is told on its backend. Every
    method is async and never blocks the event loop. Code above this interface never asks
    which backend it has.

    Replicas must be reachable from the platform API's host at their `address`, and from
    nowhere else (not from instances, jobs or other services' replicas).
    """

    @abstractmethod
    async def start_replica(self, plan: ReplicaPlan) -> str:
        """Create and start one replica (its service's network is made at its first replica);
        return its id (`plan.replica` or the backend's own). On failure, remove what was
        made for it and raise."""

    @abstractmethod
    async def stop_replica(self, replica: str, grace: float = 10) -> None:
        """Stop (SIGTERM, SIGKILL after `grace` seconds) and remove one replica; idempotent."""

    @abstractmethod
    async def replica_status(self, replica: str) -> ReplicaStatus:
        """One replica's state and address (MISSING when it is gone)."""

    @abstractmethod
    async def replica_logs(self, replica: str, tail: int = 1000) -> str:
        """The last `tail` lines of a replica's output ("" when it is gone)."""

    @abstractmethod
    async def replica_stats(self, replica: str) -> ReplicaStats | None:
        """A replica's CPU and memory use now; None when unknown or gone."""

    @abstractmethod
    async def list_replicas(self, service_object: str) -> list[ReplicaInfo]:
        """Every replica of a service on the backend, running or not (found by its labels)."""

    async def remove_service(self, service_object: str) -> None:  # noqa: B027 - optional
        """Remove what a service's replicas shared (its network); called after its last
        replica is removed, when the service is deleted."""

    async def image_present(self, ref: str) -> bool | None:
        """Whether the backend holds the image (None: it cannot tell; a cluster pulls)."""
        return None

    async def capacity(self) -> tuple[float, int] | None:
        """(vCPUs, memory bytes) of the largest machine a replica can run on; None: unknown."""
        return None

    async def close(self) -> None:  # noqa: B027 - most runners hold nothing
        """Release clients and threads (replicas go on running)."""
