"""The job runner interface: one per backend (containers on the engine, pods on Kubernetes)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass

from .plan import JobPlan

# states of one node
PENDING = "pending"  # created, not yet running (pulling, unschedulable: see reason)
RUNNING = "running"
EXITED = "exited"
MISSING = "missing"  # no container / pod (removed behind the platform's back)


@dataclass(frozen=True)
class NodeStatus:
    """What a runner knows of one node of a running version."""

    rank: int
    state: str
    exit_code: int | None = None
    oom: bool = False
    # why a node waits or ended, in words ("no node has 8 vCPUs free")
    reason: str = ""
    # when it started, epoch seconds (0: unknown)
    started: float = 0


async def lines_of(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Whole lines (with their newline) of a stream of byte chunks, a last partial line too:
    progress bars write long stretches without a newline."""
    pending = b""
    async for chunk in chunks:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            yield line + b"\n"
    if pending:
        yield pending + b"\n"


class JobRunner(ABC):
    """Runs the nodes of job versions. The scheduler (training_bridge/scheduler.py) decides
    what runs when; a runner only starts, watches, stops and removes nodes, and streams their
    logs. Code above this interface never asks which backend it has."""

    # whether a plan's folders are given relative to the jobs' root (a shared volume the
    # runner mounts: Kubernetes) rather than as host folders (the engine)
    relative_folders = False

    @abstractmethod
    async def start(self, plan: JobPlan, restart: int) -> None:
        """Create and start every node of the plan (attempt `restart`: 0 first, then 1...).
        On failure, remove what was made and raise."""

    @abstractmethod
    async def status(self, plan: JobPlan) -> list[NodeStatus]:
        """The state of each node, by rank."""

    @abstractmethod
    async def stop(self, plan: JobPlan, grace: float = 10) -> None:
        """Ask every node to stop (SIGTERM, then SIGKILL after `grace` seconds)."""

    @abstractmethod
    async def remove(self, plan: JobPlan) -> None:
        """Remove every node and what was made for them (network, service); idempotent."""

    @abstractmethod
    def logs(self, plan: JobPlan, rank: int, since: float = 0) -> AsyncIterator[bytes]:
        """Node `rank`'s output lines (with their newline) from `since` (epoch seconds; 0:
        from the start), following until the node exits."""

    def store_claim(self, store: str) -> str:
        """The PersistentVolumeClaim holding one of the platform's stores (a plan's mounts
        are sub-paths of it), for runners with relative_folders."""
        return f"workbench-{store}"

    async def folder_exists(self, owner: str, instance: str, path: str, image_ref: str):
        """Whether `path` is a folder of the storage of `owner`'s instance (looked at from a
        short container of `image_ref`); None when this backend cannot tell before a run."""
        return None

    async def capacity(self) -> tuple[float, int] | None:
        """(vCPUs, memory bytes) jobs may use at once on this backend; None: unbounded (a
        cluster's scheduler queues what does not fit and says why)."""
        return None

    async def close(self) -> None:  # noqa: B027 - most runners hold nothing
        """Release clients and threads."""
