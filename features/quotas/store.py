"""Quotas: limits on what one user may hold and run, checked before instances are admitted."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime

from sqlalchemy import DateTime, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column
from workbench.times import utcnow

from hub.db.core import Base

# the arithmetic lives with the spawners, which admit every start against these limits
from spawner.quotas import GIB, KEYS, QuotaExceeded, Usage, check_limits

__all__ = [
    "GIB",
    "KEYS",
    "Quota",
    "QuotaChecker",
    "QuotaError",
    "QuotaExceeded",
    "QuotaStore",
    "Usage",
    "stored_limits",
    "validate_limits",
]


class QuotaError(ValueError):
    """A quota definition is malformed."""


class Quota(Base):
    """Limits set by an administrator for one user (over the settings' defaults) or for one
    workspace (all its instances together)."""

    __tablename__ = "quotas"
    __table_args__ = (UniqueConstraint("kind", "subject"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # "user" or "workspace"
    subject: Mapped[str] = mapped_column(String(255))
    limits: Mapped[str] = mapped_column(Text, default="{}")
    updated: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


# quotas that count whole things (instances, GPUs), not amounts
COUNTS = ("instances", "running_instances", "running_jobs", "gpus")


def validate_limits(limits) -> dict:
    """Limits {key: non-negative number}; unknown keys and negative values are refused."""
    if not isinstance(limits, dict):
        raise QuotaError('Quota limits must be an object such as {"instances": 5}.')
    unknown = sorted(set(limits) - set(KEYS))
    if unknown:
        raise QuotaError(f"Unknown quota(s): {', '.join(unknown)}. Known: {', '.join(KEYS)}.")
    clean = {}
    for key, value in limits.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise QuotaError(f"Quota {key} must be a number (0 for no limit).")
        if value < 0:
            raise QuotaError(f"Quota {key} cannot be negative; use 0 for no limit.")
        if key in COUNTS and value != int(value):
            raise QuotaError(f"Quota {key} counts whole things: use a whole number such as 3.")
        clean[key] = int(value) if key in COUNTS else value
    return clean


def stored_limits(session, kind: str, subject: str) -> dict:
    """The limits an administrator set for a user or a workspace ({} if none)."""
    row = session.query(Quota).filter_by(kind=kind, subject=subject).one_or_none()
    return json.loads(row.limits) if row else {}


class QuotaStore:
    """Each user's and workspace's limits, for the spawners (blocking; called in worker
    threads): the spawners admit every start against them, whichever path started it."""

    def __init__(self, db, defaults: dict):
        self.db = db
        self.defaults = validate_limits(defaults)

    def limits(self, user: str) -> dict:
        return {**self.defaults, **self.db.call(lambda s: stored_limits(s, "user", user))}

    def workspace_limits(self, workspace: str) -> dict:
        """A workspace's limits (none unless an administrator sets them)."""
        return self.db.call(lambda s: stored_limits(s, "workspace", workspace))


class QuotaChecker:
    """Admission of instance creates and starts against each user's quota.

    Checks and the registration they admit run under one lock per user, and instances being
    started count as running until their start returns, so concurrent requests cannot pass
    the same check together.
    """

    def __init__(self, db, policy, defaults: dict):
        self.db = db
        self.policy = policy
        self.defaults = validate_limits(defaults)
        self._locks: dict[str, asyncio.Lock] = {}
        self._starting: dict[str, set[str]] = {}
        # async fn(workspace) -> {(user, name): server} of the instances in a workspace
        self.workspace_servers = None

    def lock(self, user: str) -> asyncio.Lock:
        return self._locks.setdefault(user, asyncio.Lock())

    def workspace_lock(self, workspace: str) -> asyncio.Lock:
        return self._locks.setdefault("workspace:" + workspace, asyncio.Lock())

    async def _stored(self, kind: str, subject: str) -> dict:
        return await self.db.run(lambda session: stored_limits(session, kind, subject))

    async def limits(self, user: str) -> dict:
        return {**self.defaults, **await self._stored("user", user)}

    async def workspace_limits(self, workspace: str) -> dict:
        """A workspace's limits (none unless an administrator sets them)."""
        return await self._stored("workspace", workspace)

    async def set_limits(self, subject: str, limits: dict, kind: str = "user") -> dict:
        limits = validate_limits(limits)

        def write(session):
            row = session.query(Quota).filter_by(kind=kind, subject=subject).one_or_none()
            if row is None:
                row = Quota(kind=kind, subject=subject)
                session.add(row)
            row.limits = json.dumps(limits)
            row.updated = utcnow()

        await self.db.run(write)
        if kind == "user":
            return await self.limits(subject)
        return await self.workspace_limits(subject)

    def usage(self, user: str, servers: dict) -> Usage:
        """Usage of a user's {name: server}."""
        return self._count(Usage(), servers, self._starting.get(user, set()))

    def workspace_usage(self, servers: dict) -> Usage:
        """Usage of a workspace's {(user, name): server}."""
        usage = Usage()
        for (user, name), server in servers.items():
            self._count(usage, {name: server}, self._starting.get(user, set()))
        return usage

    def _count(self, usage: Usage, servers: dict, starting: set) -> Usage:
        for name, server in servers.items():
            options = server.get("user_options") or {}
            if not options and not server.get("started") and name not in starting:
                continue  # a draft from an opened spawn page
            starts = server.get("pending") == "spawn" or name in starting
            running = bool(server.get("ready")) or starts
            usage.add(options, self.policy, held=True, running=running)
        return usage

    async def admit(
        self,
        user: str,
        name: str,
        options: dict,
        servers: dict,
        *,
        create: bool,
        start: bool,
        flavor=None,
    ):
        """Raise QuotaExceeded unless creating and/or starting `name` fits its owner's quota
        and its workspace's; an admitted start counts as running until finished_start().
        `flavor`: the options' flavor, if the caller has already resolved it."""
        workspace = options.get("workspace") or "default"
        ws_limits = await self.workspace_limits(workspace)
        if self.workspace_servers is None or not any(ws_limits.values()):
            return await self._admit_user(user, name, options, servers, create, start, flavor)
        async with self.workspace_lock(workspace):
            in_workspace = await self.workspace_servers(workspace)
            in_workspace.pop((user, name), None)
            after = self.workspace_usage(in_workspace)
            self._add(after, options, create, start, flavor)
            self._check(ws_limits, after, create, start, f"workspace {workspace}")
            await self._admit_user(user, name, options, servers, create, start, flavor)

    async def _admit_user(self, user, name, options, servers, create, start, flavor=None):
        limits = await self.limits(user)
        after = self.usage(user, {k: v for k, v in servers.items() if k != name})
        self._add(after, options, create, start, flavor)
        self._check(limits, after, create, start, user)
        if start:
            self._starting.setdefault(user, set()).add(name)

    def _add(self, after: Usage, options: dict, create: bool, start: bool, flavor=None):
        after.add(options, self.policy, held=create, running=start, flavor=flavor)

    def _check(self, limits: dict, after: Usage, create: bool, start: bool, whose: str):
        checked = ["instances", "storage_gib"] if create else []
        if start:
            checked += ["running_instances", "vcpus", "memory_gib", "gpus"]
        check_limits(limits, after, whose, checked)

    def finished_start(self, user: str, name: str):
        self._starting.get(user, set()).discard(name)


def forget_user(session, user: str) -> dict[str, int]:
    """A deleted user's own quota goes (a new account of the same name starts at defaults)."""
    from sqlalchemy import delete

    removed = session.execute(delete(Quota).where(Quota.kind == "user", Quota.subject == user))
    return {"quotas": removed.rowcount}
