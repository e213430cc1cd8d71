"""Warm client connections to instances' sshd, each shared by the channels of one instance."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable

import asyncssh

from .directory import InstanceUnavailable, Target
from .wire import tune

log = logging.getLogger("workbench.ssh")

Key = tuple[str, str]  # (user, instance)


class Upstream(asyncssh.SSHClient):
    """One signed-in client connection to an instance's sshd, and the channels open on it.

    Only channels of connections signed in for this very instance (its user, its name) are
    opened on it: the pool is keyed by both, and the instance's sshd accepts no other key
    than the gateway's key for this instance.
    """

    def __init__(self, pool: UpstreamPool, key: Key):
        self.pool = pool
        self.key = key
        self.conn: asyncssh.SSHClientConnection | None = None
        self.opened = 0.0  # time.monotonic() once signed in to the instance's sshd
        self.sessions = 0  # session channels open: the sshd allows MaxSessions (10) at once
        self.channels = 0  # every channel open (sessions and forwarded connections)
        self.max_sessions = pool.sessions_per_connection
        self.closed = False
        self._idle: asyncio.TimerHandle | None = None

    def connection_made(self, conn):
        self.conn = conn
        tune(conn)

    def connection_lost(self, exc):
        self.closed = True
        if self._idle is not None:
            self._idle.cancel()
        self.pool._lost(self, exc)

    def usable(self, session: bool) -> bool:
        return not self.closed and (not session or self.sessions < self.max_sessions)

    def take(self, session: bool):
        self.channels += 1
        self.sessions += session
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None

    def release(self, session: bool):
        self.channels -= 1
        self.sessions -= session
        if self.channels <= 0 and not self.closed:
            self._idle = asyncio.get_running_loop().call_later(self.pool.idle_seconds, self.close)

    def close(self):
        if not self.closed and self.conn is not None:
            self.conn.close()


class UpstreamPool:
    """The open connections to each running instance's sshd, kept warm between users'
    connections so that a new `ssh host cmd` opens a channel instead of a whole connection.

    A connection closes after idle_seconds without channels, when the instance stops (its
    sshd goes with the container), or when access to the instance is withdrawn.
    """

    def __init__(
        self,
        connect: Callable[[Target, Upstream], Awaitable[asyncssh.SSHClientConnection]],
        idle_seconds: float = 120,
        sessions_per_connection: int = 8,
    ):
        self._connect = connect
        self.idle_seconds = idle_seconds
        self.sessions_per_connection = sessions_per_connection
        self._open: dict[Key, list[Upstream]] = defaultdict(list)
        self._opening: dict[Key, asyncio.Future] = {}

    def running_since(self, user: str, instance: str) -> float | None:
        """time.monotonic() since when the instance has surely been running without a break:
        when the newest open connection to its sshd was made (it would have closed with the
        container). None if none is open."""
        opened = [up.opened for up in self._open.get((user, instance), ()) if not up.closed]
        return max(opened) if opened else None

    async def acquire(self, target: Target, session: bool = True) -> Upstream:
        """A connection to the target's sshd with room for one more channel, counted as taken
        until release(); opened if none has room. Raises InstanceUnavailable."""
        key = (target.user, target.instance)
        while True:
            for up in self._open.get(key, ()):
                if up.usable(session):
                    up.take(session)
                    return up
            opening = self._opening.get(key)
            if opening is None:
                opening = asyncio.ensure_future(self._open_one(target, key))
                self._opening[key] = opening
                opening.add_done_callback(lambda f, key=key: self._opened(key, f))
            # channels that ask at once wait for one new connection, not one each
            await asyncio.shield(opening)

    async def warm(self, target: Target) -> Upstream:
        """An open connection to the target's sshd (opened if none is). Raises
        InstanceUnavailable."""
        up = await self.acquire(target, session=False)
        up.release(session=False)
        return up

    async def _open_one(self, target: Target, key: Key) -> Upstream:
        up = Upstream(self, key)
        await self._connect(target, up)
        up.opened = time.monotonic()
        if up.closed:
            raise InstanceUnavailable(
                f"The SSH server of instance {target.instance!r} closed the connection at once; "
                "connect again."
            )
        self._open[key].append(up)
        up.take(False)
        up.release(False)  # idle until a channel takes it
        return up

    def _opened(self, key: Key, future: asyncio.Future):
        if self._opening.get(key) is future:
            del self._opening[key]
        if not future.cancelled():
            future.exception()  # retrieved here: every waiter may have left

    def _lost(self, up: Upstream, exc):
        ups = self._open.get(up.key)
        if ups and up in ups:
            ups.remove(up)
            if not ups:
                del self._open[up.key]
            log.info(
                "ssh: connection to the SSH server of %s/%s closed%s",
                up.key[0],
                up.key[1],
                f" ({exc})" if exc else "",
            )

    def close_idle(self, user: str, instance: str):
        """Close the instance's connections that carry no channel (access was withdrawn)."""
        for up in list(self._open.get((user, instance), ())):
            if up.channels <= 0:
                up.close()

    def close_all(self):
        for ups in list(self._open.values()):
            for up in list(ups):
                up.close()
        for opening in list(self._opening.values()):
            opening.cancel()
