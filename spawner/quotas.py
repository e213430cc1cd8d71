"""Quota arithmetic, and admission of each instance start against the hub's own state."""

from __future__ import annotations

import math
from dataclasses import dataclass

GIB = 1024**3
# what a quota limits; 0 means no limit
KEYS = {
    "instances": "instances, running or not",
    "running_instances": "instances running at once",
    "running_jobs": "training jobs running at once",
    "vcpus": "vCPUs of running instances",
    "memory_gib": "memory of running instances, GiB",
    "gpus": "GPUs of running instances",
    "storage_gib": "storage of all instances, GiB",
}


class QuotaExceeded(Exception):
    """Admitting the request would exceed a quota; the message says which and what to do."""


@dataclass
class Usage:
    """What a user (or a workspace) holds and runs."""

    instances: int = 0
    running_instances: int = 0
    running_jobs: int = 0
    vcpus: float = 0
    memory_gib: float = 0
    gpus: int = 0
    storage_gib: int = 0

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in KEYS}

    def add(self, options: dict, policy, *, held: bool = True, running: bool = False, flavor=None):
        """Count one instance with these options: held (instances, storage) and/or running
        (its flavor's vCPUs, memory and GPUs). `flavor`: the options' flavor, if the caller
        has already resolved it."""
        if held:
            self.instances += 1
            self.storage_gib += stored_storage_gib(options.get("storage_gib"), policy)
        if running:
            try:
                if flavor is None:
                    flavor = policy.flavor(options.get("flavor") or policy.default_flavor)
            except Exception:  # noqa: BLE001 - a flavor removed since: counts as nothing
                return
            self.running_instances += 1
            self.vcpus += flavor.cpu
            self.memory_gib += flavor.memory / GIB
            self.gpus += flavor.gpu


def stored_storage_gib(value, policy) -> int:
    """The storage an instance's stored options hold. Options written through the hub's own
    API are not checked until a start: what is not a finite size counts as the most allowed,
    so junk can neither break a count nor shrink it."""
    if value is None:
        return int(policy.storage_default_gib)
    try:
        gib = float(value)
    except (TypeError, ValueError):
        gib = math.nan
    if isinstance(value, bool) or not math.isfinite(gib) or gib < 0:
        return int(policy.storage_max_gib)
    return int(math.ceil(gib))


def check_limits(limits: dict, usage: Usage, whose: str, keys=tuple(KEYS)):
    """Raise QuotaExceeded, naming the quota and its limit, if usage is over a limit in keys."""
    for key in keys:
        limit = limits.get(key) or 0
        after = getattr(usage, key)
        if limit and after > limit + 1e-9:
            raise QuotaExceeded(
                f"Quota exceeded: {KEYS[key]} would be {after:g}, over {whose}'s limit of "
                f"{limit:g}. Stop or delete an instance, or ask an administrator to raise "
                "the quota."
            )


# --- admission at start, from the hub's in-memory state ------------------------------------
#
# Every start (the spawn page, the hub's REST API, the platform API through it) runs the
# spawner's apply_user_options in the hub's one event loop. Counting and admitting there in
# one synchronous step (no await between them) makes concurrent starts see each other without
# a lock: a start being admitted marks its spawner with the server it is starting, and a
# pending spawner counts as running only with that mark, so starts still waiting for their own
# check do not count, and a refused or failed start stops counting the moment it ends.

ADMITTED = "_quota_admitted_server"


def is_running(orm_spawner, spawner=None) -> bool:
    """Whether an instance holds running resources: ready, or starting or stopping after its
    start was admitted. Without a live spawner (its user has nothing active in the hub), a
    server record means it runs."""
    server = orm_spawner.server
    if spawner is None:
        return server is not None
    if spawner.ready:
        return True
    admitted = getattr(spawner, ADMITTED, None)
    return bool(spawner.pending) and server is not None and admitted is server


def is_instance(orm_spawner, spawner=None) -> bool:
    """Whether a named server is an instance: it has options, runs or is starting (a draft
    from an opened spawn page is none)."""
    return bool(
        orm_spawner.user_options or orm_spawner.started or (spawner is not None and spawner.active)
    )


def start_usage(this, options: dict, others, policy, flavor=None) -> Usage:
    """Usage if the instance of orm spawner `this`, with options (and their resolved
    `flavor`, if the caller has it), starts.

    `others` yields (orm spawner, live spawner or None) of the instances to count with it.
    Instances and storage count the instances created before this one (the spawners table's
    order), so a user over the instances quota can still start their oldest ones, never an
    instance past the limit; running resources count every instance that runs now.
    """
    usage = Usage()
    usage.add(options, policy, held=True, running=True, flavor=flavor)
    for orm_spawner, spawner in others:
        if orm_spawner.id == this.id:
            continue
        held = orm_spawner.id < this.id and is_instance(orm_spawner, spawner)
        running = is_running(orm_spawner, spawner)
        if held or running:
            usage.add(orm_spawner.user_options or {}, policy, held=held, running=running)
    return usage
