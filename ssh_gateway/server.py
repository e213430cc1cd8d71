"""The gateway's SSH server: sign users in, then bridge their channels to the instance's sshd.

Users' channels are opened on a client connection to the instance's own OpenSSH server
(signed in with the gateway's key for that instance), kept warm between users' connections
(ssh_gateway.upstream), so a new `ssh host cmd` costs a channel there, not a second key
exchange. Sessions are bridged request by request (pty, env, shell/exec/subsystem, window
changes, signals, exit status, stderr), and direct-tcpip channels (ssh -L, -D) are forwarded
the same way, so what runs in the instance is plain OpenSSH: SFTP, scp, rsync and editors
behave as with any host.

Access is decided at sign-in and again at every new channel (a multiplexing client such as
OpenSSH's ControlMaster opens many over one connection), and every open connection is
re-checked periodically: a deleted key, SSH turned off, a narrowed allowlist or a deleted
user closes the connection.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict

import asyncssh
from traitlets import Float, Integer
from traitlets.config import LoggingConfigurable

from spawner.instance_keys import instance_private_pem
from ssh_gateway.keys import find_key

from .directory import Directory, InstanceUnavailable, Target, split_login
from .upstream import Upstream, UpstreamPool
from .wire import quiet_packet_logs, tune

log = logging.getLogger("workbench.ssh")

# flow-control window and packet size of both hops
WINDOW = 8 * 1024 * 1024
MAX_PKTSIZE = 32768
# the hop to the instance: AES-GCM is the fastest cipher of asyncssh (one pass, AES-NI)
UPSTREAM_CIPHERS = ["aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr"]
# the users' side: every cipher OpenSSH clients offer, AES-GCM first (the client's order
# decides; OpenSSH prefers chacha20, `-c aes128-gcm@openssh.com` costs the gateway less)
USER_CIPHERS = [
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes128-ctr",
    "aes192-ctr",
    "aes256-ctr",
]


class _StaleAddress(Exception):
    """The instance's sshd did not answer at the address kept for it."""


class Throttle:
    """Slows down addresses with repeated failed sign-ins: each refused key (or connection
    that offered none) past `free` doubles the wait before the next key is checked, up to
    `limit` seconds; forgotten after `forget` seconds without failures, or at a successful
    sign-in."""

    def __init__(self, free: int = 3, base: float = 0.5, limit: float = 16, forget: float = 600):
        self.free = free
        self.base = base
        self.limit = limit
        self.forget = forget
        self.failures: dict[str, tuple[int, float]] = {}

    def delay(self, address: str) -> float:
        count, last = self.failures.get(address, (0, 0.0))
        if time.monotonic() - last > self.forget:
            self.failures.pop(address, None)
            return 0.0
        if count < self.free:
            return 0.0
        return min(self.limit, self.base * 2 ** (count - self.free))

    def failed(self, address: str):
        count, last = self.failures.get(address, (0, 0.0))
        if time.monotonic() - last > self.forget:
            count = 0
        self.failures[address] = (count + 1, time.monotonic())

    def succeeded(self, address: str):
        self.failures.pop(address, None)


class Activity:
    """Counts open connections per instance; the gateway reports those to the hub."""

    def __init__(self):
        self.open: dict[tuple[str, str], int] = defaultdict(int)

    def add(self, user: str, instance: str):
        self.open[(user, instance)] += 1

    def remove(self, user: str, instance: str):
        self.open[(user, instance)] -= 1
        if self.open[(user, instance)] <= 0:
            del self.open[(user, instance)]

    def active(self) -> list[tuple[str, str]]:
        return list(self.open)


class Gateway(LoggingConfigurable):
    """What every connection shares: the directory, the throttle, activity, the secret, and
    the warm connections to instances."""

    hub_cache_seconds = Float(
        30,
        min=0,
        help="""Longest time, in seconds, the gateway reuses the hub's answer about a user's
        instances (running or not, their SSH settings) for new sign-ins and channels. It is
        reused only while a connection to the instance's sshd, made before the answer, is
        still open: the instance has run without a break since, and the hub cannot change a
        running instance's options. Keys and SSH settings changed on a running instance are
        read from the database at every decision. 0 asks the hub every time. Default 30.
        Example: c.Gateway.hub_cache_seconds = 10""",
    ).tag(config=True)
    upstream_idle_seconds = Float(
        120,
        min=0,
        help="""Seconds a connection to an instance's sshd stays open without channels, so
        that the next `ssh`, `scp` or editor's command opens a channel on it instead of a new
        connection. Default 120. Example: c.Gateway.upstream_idle_seconds = 300""",
    ).tag(config=True)
    upstream_sessions = Integer(
        8,
        min=1,
        help="""Session channels (shells, commands, SFTP) the gateway opens at once on one
        connection to an instance's sshd before it opens another; OpenSSH's sshd allows 10
        (MaxSessions). Default 8. Example: c.Gateway.upstream_sessions = 4""",
    ).tag(config=True)
    activity_report_seconds = Float(
        5,
        min=0,
        help="""At most one activity report to the hub per instance within this many seconds
        for new connections (open ones are reported every ssh_activity_seconds anyway), so a
        burst of `ssh host cmd` does not become a burst of hub requests. Default 5.
        Example: c.Gateway.activity_report_seconds = 0""",
    ).tag(config=True)

    def __init__(
        self,
        directory: Directory,
        secret: bytes,
        throttle: Throttle | None = None,
        max_auth_attempts: int = 6,
        **kwargs,
    ):
        kwargs.setdefault("log", log)
        super().__init__(**kwargs)
        self.directory = directory
        self.secret = secret
        self.throttle = throttle or Throttle()
        # keys one connection may offer before it is disconnected (OpenSSH's MaxAuthTries)
        self.max_auth_attempts = max_auth_attempts
        self.activity = Activity()
        self.report_activity = None  # async fn(user, instance), set by the process
        self.audit = None  # hub.audit.AuditLog, set by the process
        self.connections: set[GatewayConnection] = set()  # signed in, still open
        self.upstreams = UpstreamPool(
            self.connect_upstream,
            idle_seconds=self.upstream_idle_seconds,
            sessions_per_connection=self.upstream_sessions,
        )
        self._reported: dict[tuple[str, str], float] = {}  # (user, instance): monotonic
        self._touched: dict[tuple[str, str], float] = {}  # (user, fingerprint): monotonic
        self._tasks: set[asyncio.Task] = set()

    def background(self, coro):
        """Run coro without waiting for it, keeping a reference until it ends."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def vouched_since(self, login: str) -> float | None:
        """From when the hub's answers about the login's instance may be reused: since the
        newest open connection to its sshd was made (and no longer ago than
        hub_cache_seconds); None (ask the hub) when none is open."""
        parts = split_login(login)
        if parts is None or not self.hub_cache_seconds:
            return None
        since = self.upstreams.running_since(*parts)
        if since is None:
            return None
        return max(since, time.monotonic() - self.hub_cache_seconds)

    async def decide(
        self, login: str, fingerprint: str, source: str, since: float | None = None
    ) -> tuple[Target | None, str]:
        return await self.directory.decide(login, fingerprint, source, since)

    async def recheck(self):
        """Decide again for every open connection, and close those whose access is gone.

        Connections that share a login, key and address are decided once, and the hub is
        asked once per user, afresh.
        """
        groups: dict[tuple[str, str, str], list[GatewayConnection]] = defaultdict(list)
        for connection in list(self.connections):
            groups[(connection.login, connection.fingerprint, connection.source)].append(connection)
        if not groups:
            return
        now = time.monotonic()
        reasons = await asyncio.gather(
            *(self.refusal(*key, since=now) for key in groups), return_exceptions=True
        )
        for connections, reason in zip(groups.values(), reasons, strict=True):
            if isinstance(reason, BaseException):
                # the hub or the database did not answer: keep the connections, ask again
                log.warning("ssh: re-checking %s failed: %s", connections[0].login, reason)
                continue
            if reason:
                for connection in connections:
                    connection.revoke(reason)

    async def recheck_loop(self, interval: float):
        """recheck() every `interval` seconds, for as long as the gateway runs."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.recheck()
            except Exception:  # noqa: BLE001 - logged; the next round tries again
                log.exception("ssh: re-checking open connections failed")

    async def refusal(
        self, login: str, fingerprint: str, source: str, since: float | None = None
    ) -> str:
        """Why this key may no longer reach the instance from source; "" if it still may."""
        target, reason = await self.decide(login, fingerprint, source, since)
        return "" if target is not None else reason

    def signed_in(self, target: Target, fingerprint: str):
        """After a sign-in: the key's last use and the instance's activity, in the
        background and at most once per key a minute (per instance every
        activity_report_seconds), so that bursts of connections cost no more."""
        now = time.monotonic()
        key = (target.user, fingerprint)
        if now - self._touched.get(key, -1e9) >= 60:
            self._touched[key] = now
            db = self.directory.db
            self.background(db.run(lambda s: find_key(s, target.user, fingerprint)))
        instance = (target.user, target.instance)
        if self.report_activity is not None and (
            now - self._reported.get(instance, -1e9) >= self.activity_report_seconds
        ):
            self._reported[instance] = now
            self.background(self.report_activity(target.user, target.instance))
        if len(self._touched) > 10000 or len(self._reported) > 10000:
            self._touched.clear()
            self._reported.clear()

    def audit_connection(self, outcome: str, login: str, source: str, reason: str, **details):
        """One connectSSH event per connection attempt, stored off the event loop."""
        if self.audit is None:
            return
        parts = split_login(login)
        actor = parts[0] if parts else login
        self.background(
            self.audit.emit(
                "connectSSH",
                actor=actor,
                source=source,
                resource_type="ssh",
                resource_id="/".join(parts) if parts else login,
                outcome=outcome,
                reason=reason,
                details={"login": login, **details},
            )
        )

    async def connect_upstream(
        self, target: Target, upstream: Upstream
    ) -> asyncssh.SSHClientConnection:
        """Sign in to the target's sshd, as the client `upstream`; InstanceUnavailable if the
        instance is not running or its sshd does not answer.

        A new connection asks the hub afresh whether the instance runs."""
        try:
            return await self._connect_upstream(target, upstream, known=True)
        except _StaleAddress:
            # the address kept for this run of the instance did not answer: ask the engine
            self.directory.forget_address(target.user, target.instance)
            return await self._connect_upstream(target, upstream, known=False)

    async def _connect_upstream(
        self, target: Target, upstream: Upstream, known: bool
    ) -> asyncssh.SSHClientConnection:
        kept = self.directory.kept_address(target.user, target.instance) if known else None
        try:
            host, port = await self.directory.address(target.user, target.instance, known=known)
        except InstanceUnavailable:
            raise
        except Exception:  # noqa: BLE001 - the engine or cluster failed: say so, log why
            log.exception("ssh: finding %s/%s failed", target.user, target.instance)
            raise InstanceUnavailable(
                f"Instance {target.instance!r} cannot be reached now; try again in a moment."
            ) from None
        key = asyncssh.import_private_key(
            instance_private_pem(self.secret, target.user, target.instance)
        )
        try:
            return await asyncssh.connect(
                host,
                port,
                client_factory=lambda: upstream,
                username="jovyan",
                client_keys=[key],
                known_hosts=None,  # the instance's host key is made at each start
                agent_path=None,
                config=[],
                encryption_algs=UPSTREAM_CIPHERS,
                compression_algs=None,
                window=WINDOW,
                max_pktsize=MAX_PKTSIZE,
                keepalive_interval=15,
                keepalive_count_max=3,
                connect_timeout=15,
            )
        except (OSError, asyncssh.Error) as e:
            if kept is not None and host == kept:
                raise _StaleAddress() from None
            log.warning(
                "ssh: cannot reach the SSH server of %s/%s at %s:%s: %s",
                target.user,
                target.instance,
                host,
                port,
                e,
            )
            raise InstanceUnavailable(
                f"Instance {target.instance!r} runs but its SSH server does not answer (its "
                "image may predate SSH support). Restart it with `workbench instances stop "
                f"{target.instance}` and `workbench instances start {target.instance}`."
            ) from None

    def close(self):
        """Close every connection to instances (the gateway stops)."""
        self.upstreams.close_all()

    def connection(self) -> GatewayConnection:
        return GatewayConnection(self)


class GatewayConnection(asyncssh.SSHServer):
    """One user's connection to the gateway."""

    def __init__(self, gateway: Gateway):
        self.gateway = gateway
        self.conn: asyncssh.SSHServerConnection | None = None
        self.source = "?"
        self.login = ""
        self.target: Target | None = None
        self.decisions: dict[tuple[str, str], Target | None] = {}
        self.refusals: dict[str, str] = {}  # fingerprint: why its key was refused
        self.upstream: asyncio.Future | None = None  # the instance's sshd answered (or not)
        self.channels: set = set()  # this connection's channels to the instance
        self.authenticated = False
        self.fingerprint = ""
        self.failed_attempts = 0  # keys refused on this connection
        self.revoked = ""  # why the connection was closed after sign-in
        self.closed = False

    # --- sign-in ------------------------------------------------------------------------

    def connection_made(self, conn):
        self.conn = conn
        tune(conn)
        peer = conn.get_extra_info("peername") or ("?", 0)
        self.source = peer[0]

    def begin_auth(self, username):
        self.login = username
        return True

    def public_key_auth_supported(self):
        return True

    async def validate_public_key(self, username, key):
        fingerprint = key.get_fingerprint("sha256")
        # asyncssh asks twice per key (offer, then signature): decide once
        if (username, fingerprint) not in self.decisions:
            if self.failed_attempts >= self.gateway.max_auth_attempts:
                # as OpenSSH's MaxAuthTries: no more keys on this connection
                self.refusals[fingerprint] = "too many keys offered on one connection"
                raise asyncssh.PermissionDenied("Too many authentication failures")
            delay = self.gateway.throttle.delay(self.source)
            if delay:
                await asyncio.sleep(delay)
            try:
                target, reason = await self.gateway.decide(
                    username, fingerprint, self.source, self.gateway.vouched_since(username)
                )
            except Exception:  # noqa: BLE001 - refuse, and say why in the log only
                log.exception("ssh: checking %s from %s failed", username, self.source)
                target, reason = None, "the check failed (see the gateway's log)"
            self.decisions[(username, fingerprint)] = target
            if target is None:
                self.refusals[fingerprint] = reason
                self.failed_attempts += 1
                self.gateway.throttle.failed(self.source)
        target = self.decisions[(username, fingerprint)]
        if target is not None:
            self.target = target
            self.fingerprint = fingerprint
        return target is not None

    def auth_completed(self):
        target = self.target
        self.authenticated = True
        self.gateway.connections.add(self)
        self.gateway.throttle.succeeded(self.source)
        self.gateway.activity.add(target.user, target.instance)
        log.info(
            "ssh: accepted user=%s instance=%s source=%s key=%s",
            target.user,
            target.instance,
            self.source,
            target.key_name,
        )
        # a warm connection to the instance's sshd, or one opened now, while the client
        # asks for its first channel
        self.upstream = asyncio.ensure_future(self.gateway.upstreams.warm(target))
        self.gateway.background(self._audit_sign_in(target))
        self.gateway.signed_in(target, self.fingerprint)

    async def _audit_sign_in(self, target: Target):
        """Audit the signed-in connection once its hop to the instance is open, or failed."""
        details = {"key": target.key_name, "fingerprint": self.fingerprint}
        try:
            await self.upstream
        except InstanceUnavailable as e:
            outcome, reason = "failure", str(e)
        except asyncio.CancelledError:
            outcome, reason = "failure", "the client left before the instance answered"
        else:
            outcome, reason = "success", ""
        self.gateway.audit_connection(outcome, self.login, self.source, reason, **details)

    def connection_lost(self, exc):
        self.closed = True
        if self.authenticated:
            target = self.target
            self.gateway.connections.discard(self)
            self.gateway.activity.remove(target.user, target.instance)
            log.info(
                "ssh: closed user=%s instance=%s source=%s",
                target.user,
                target.instance,
                self.source,
            )
            # the shared connection to the instance stays; this connection's channels go
            for channel in list(self.channels):
                channel.close()
            self.channels.clear()
            if self.upstream is not None and not self.upstream.done():
                self.upstream.cancel()
        else:
            parts = split_login(self.login) or (self.login, "")
            if not self.failed_attempts:  # no key offered: refused keys count themselves
                self.gateway.throttle.failed(self.source)
            reason = "; ".join(dict.fromkeys(self.refusals.values())) or "no public key offered"
            log.info(
                "ssh: refused user=%s instance=%s source=%s (%s)",
                parts[0],
                parts[1],
                self.source,
                reason if self.login else "no sign-in",
            )
            if self.login:  # not a host key scan
                self.gateway.audit_connection(
                    "denied", self.login, self.source, reason, keys=list(self.refusals)
                )

    async def upstream_connection(self, session: bool) -> Upstream:
        """A connection to the instance's sshd with room for one more channel, taken until
        the channel ends (Upstream.release); InstanceUnavailable if there is none."""
        await asyncio.shield(self.upstream)  # the sign-in's outcome, audited once
        return await self.gateway.upstreams.acquire(self.target, session)

    async def check_channel(self) -> bool:
        """Decide again before a new channel opens. Where access is gone, the connection
        closes right after the caller has refused the channel."""
        if self.revoked:
            return False
        try:
            reason = await self.gateway.refusal(
                self.login, self.fingerprint, self.source, self.gateway.vouched_since(self.login)
            )
        except Exception:  # noqa: BLE001 - refuse the channel, say why in the log only
            log.exception("ssh: re-checking %s from %s failed", self.login, self.source)
            return False
        if reason:
            asyncio.get_running_loop().call_soon(self.revoke, reason)
            return False
        return not self.revoked

    def revoke(self, reason: str):
        """Close a signed-in connection whose access was withdrawn."""
        if self.revoked or self.conn is None:
            return
        self.revoked = reason
        target = self.target
        log.info(
            "ssh: revoked user=%s instance=%s source=%s key=%s (%s)",
            target.user,
            target.instance,
            self.source,
            target.key_name,
            reason,
        )
        self.gateway.audit_connection(
            "denied",
            self.login,
            self.source,
            f"access withdrawn: {reason}",
            key=target.key_name,
            fingerprint=self.fingerprint,
            revoked=True,
        )
        for channel in list(self.channels):
            channel.close()
        self.channels.clear()
        self.conn.disconnect(
            asyncssh.DISC_BY_APPLICATION,
            "Access to this instance was withdrawn (key removed, SSH turned off, address not "
            "allowed, or account deleted). Check its SSH settings and your keys, then connect "
            "again.",
        )
        # nothing else waits on the instance's warm connections when its access is gone
        self.gateway.upstreams.close_idle(target.user, target.instance)

    def unavailable(self, message: str):
        log.info(
            "ssh: unavailable user=%s instance=%s source=%s: %s",
            self.target.user,
            self.target.instance,
            self.source,
            message,
        )

    # --- channels -----------------------------------------------------------------------

    def session_requested(self):
        return BridgedSession(self)

    def connection_requested(self, dest_host, dest_port, orig_host, orig_port):
        async def forward():
            if not await self.check_channel():
                raise asyncssh.ChannelOpenError(
                    asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED, "Permission denied"
                )
            try:
                upstream = await self.upstream_connection(session=False)
            except InstanceUnavailable as e:
                self.unavailable(str(e))
                raise asyncssh.ChannelOpenError(asyncssh.OPEN_CONNECT_FAILED, str(e)) from None
            down = TunnelEnd(self)
            up = TunnelEnd(self, peer=down, upstream=upstream)
            try:
                await upstream.conn.create_connection(
                    lambda: up, dest_host, dest_port, window=WINDOW, max_pktsize=MAX_PKTSIZE
                )
            except BaseException:
                up.release()
                raise
            if self.revoked or self.closed:
                up.chan.close()  # the user's connection went while this channel opened
                raise asyncssh.ChannelOpenError(
                    asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED, "Permission denied"
                )
            return down

        return forward()

    def server_requested(self, listen_host, listen_port):
        return False  # remote forwarding (-R) is not offered


class TunnelEnd(asyncssh.SSHTCPSession):
    """One side of a forwarded TCP connection (ssh -L, -D): data, EOF and close go to the
    other side, held until that side's channel is open.

    The instance's side opens first and its server may speak first (SSH, SMTP, MySQL
    banners): what arrives before the user's channel is confirmed is kept, not dropped.
    """

    def __init__(
        self,
        owner: GatewayConnection,
        peer: TunnelEnd | None = None,
        upstream: Upstream | None = None,
    ):
        self.owner = owner
        self.upstream = upstream  # the instance's side: the connection its channel is on
        self.chan = None
        self.peer = peer
        self.ready = False
        self.held: list[bytes | None] = []  # data, None for EOF
        self.close_held = False
        self.eof = False
        if peer is not None:
            peer.peer = self

    def connection_made(self, chan):
        self.chan = chan
        quiet_packet_logs(chan)
        if self.upstream is not None:
            self.owner.channels.add(chan)

    def release(self):
        """Give the channel's place on the instance's connection back (once)."""
        if self.upstream is not None:
            self.upstream.release(session=False)
            self.upstream = None

    def session_started(self):
        self.ready = True
        for item in self.held:
            self._send(item)
        self.held = []
        if self.close_held:
            self.chan.close()

    def _send(self, data: bytes | None):
        try:
            if data is None:
                self.chan.write_eof()
            else:
                self.chan.write(data)
        except (OSError, asyncssh.Error):
            pass  # closing already

    def send(self, data: bytes | None):
        if self.ready:
            self._send(data)
        else:
            self.held.append(data)

    def close(self):
        if self.ready:
            self.chan.close()
        else:
            self.close_held = True

    def data_received(self, data, datatype):
        self.peer.send(data)

    def eof_received(self):
        self.eof = True
        self.peer.send(None)
        return not self.peer.eof  # half-open until both sides ended

    def pause_writing(self):
        if self.peer.ready:
            self.peer.chan.pause_reading()

    def resume_writing(self):
        if self.peer.ready:
            self.peer.chan.resume_reading()

    def connection_lost(self, exc):
        self.ready = False
        if self.upstream is not None:
            self.owner.channels.discard(self.chan)
            self.release()
        self.peer.close()


class BridgedSession(asyncssh.SSHServerSession):
    """A user's session channel, mirrored on a session channel to the instance's sshd."""

    def __init__(self, owner: GatewayConnection):
        self.owner = owner
        self.chan = None
        self.up = None
        self.upstream: Upstream | None = None  # the connection self.up is on
        self.pty = None
        self.request = ("shell", None)
        self.pending: list[tuple[bytes, int | None]] = []
        self.eof = False
        self.gone = False  # the user's channel closed
        self.task = None

    def connection_made(self, chan):
        self.chan = chan
        quiet_packet_logs(chan)

    def pty_requested(self, term_type, term_size, term_modes):
        self.pty = [term_type, term_size, term_modes]
        return True

    def shell_requested(self):
        self.request = ("shell", None)
        return True

    def exec_requested(self, command):
        self.request = ("exec", command)
        return True

    def subsystem_requested(self, subsystem):
        self.request = ("subsystem", subsystem)
        return True

    def session_started(self):
        self.chan.pause_reading()  # until the instance's side is open
        self.task = self.owner.gateway.background(self._open_or_fail())

    async def _open_or_fail(self):
        try:
            await self._open()
        except Exception:  # noqa: BLE001 - end the user's channel; the log says why
            log.exception("ssh: opening a session of %s failed", self.owner.login)
            if self.up is not None:
                self.up.close()
            self._fail("The gateway could not open the session; try again.")

    def _fail(self, message: str):
        if not self.gone:
            self.chan.write_stderr((message + "\r\n").encode())
            self.chan.exit(1)  # the client disconnects when its session ends

    def _session_options(self) -> dict:
        """What the instance's session is opened with: the user's requests so far."""
        kind, arg = self.request
        kwargs = {
            "env": dict(self.chan.get_environment_bytes()),
            "encoding": None,
            "window": WINDOW,
            "max_pktsize": MAX_PKTSIZE,
        }
        if self.pty:
            term_type, term_size, term_modes = self.pty
            kwargs.update(term_type=term_type, term_size=term_size, term_modes=term_modes)
        if kind == "exec":
            kwargs["command"] = arg
        elif kind == "subsystem":
            kwargs["subsystem"] = arg
        return kwargs

    async def _open(self):
        if not await self.owner.check_channel():
            # nothing of this channel reaches the instance
            self._fail("Permission denied")
            return
        for attempt in range(2):
            if self.gone:
                return
            try:
                upstream = await self.owner.upstream_connection(session=True)
            except InstanceUnavailable as e:
                self.owner.unavailable(str(e))
                self._fail(str(e))
                return
            kwargs = self._session_options()
            try:
                self.up, _ = await upstream.conn.create_session(
                    lambda: UpstreamSession(self), **kwargs
                )
            except asyncssh.ChannelOpenError as e:
                upstream.release(session=True)
                if attempt == 0 and (upstream.closed or upstream.sessions > 0):
                    # closed as the instance stopped, or full: the sshd's MaxSessions is
                    # lower than upstream_sessions; the next try takes another connection
                    if not upstream.closed:
                        upstream.max_sessions = max(1, upstream.sessions)
                    continue
                self._fail(f"The instance refused the session: {e.reason}")
                return
            except (asyncssh.Error, OSError) as e:
                upstream.release(session=True)
                self._fail(f"The instance refused the session: {e}")
                return
            break
        self.upstream = upstream
        if self.gone or self.owner.closed or self.owner.revoked:
            self.up.close()  # the user's side went while the instance's side opened
            return
        self.owner.channels.add(self.up)
        if self.pty and tuple(self.pty[1]) != tuple(kwargs["term_size"]):
            self.up.change_terminal_size(*self.pty[1])  # resized while the channel opened
        for data, datatype in self.pending:
            self.up.write(data, datatype)
        self.pending = []
        if self.eof:
            self.up.write_eof()
        self.chan.resume_reading()

    def data_received(self, data, datatype):
        if self.up is None:
            self.pending.append((data, datatype))
        else:
            self.up.write(data, datatype)

    def eof_received(self):
        if self.up is None:
            self.eof = True
        else:
            self.up.write_eof()
        return True  # the instance's side closes the channel

    def terminal_size_changed(self, width, height, pixwidth, pixheight):
        if self.up is None:
            if self.pty:
                self.pty[1] = (width, height, pixwidth, pixheight)
        else:
            self.up.change_terminal_size(width, height, pixwidth, pixheight)

    def signal_received(self, signal):
        if self.up is not None:
            self.up.send_signal(signal)

    def break_received(self, msec):
        if self.up is not None:
            self.up.send_break(msec)
        return True

    def pause_writing(self):
        if self.up is not None:
            self.up.pause_reading()

    def resume_writing(self):
        if self.up is not None:
            self.up.resume_reading()

    def connection_lost(self, exc):
        self.gone = True
        if self.up is not None:
            self.up.close()

    def upstream_closed(self):
        """The instance's side closed: give its place back, pass on how the command ended,
        then close."""
        up = self.up
        if up is None:
            return  # the channel never opened: _open gave its place back
        self.owner.channels.discard(up)
        if self.upstream is not None:
            self.upstream.release(session=True)
            self.upstream = None
        if self.gone:
            return
        signal = up.get_exit_signal()
        status = up.get_exit_status()
        try:
            if signal:
                name, core_dumped, msg, lang = signal
                self.chan.exit_with_signal(name, core_dumped, msg, lang)
            elif status is not None and status >= 0:
                self.chan.exit(status)
            else:
                self.chan.close()
        except OSError:
            pass


class UpstreamSession(asyncssh.SSHClientSession):
    """The instance's side of a bridged session: everything goes back to the user."""

    def __init__(self, down: BridgedSession):
        self.down = down

    def connection_made(self, chan):
        quiet_packet_logs(chan)

    def data_received(self, data, datatype):
        if not self.down.gone:
            self.down.chan.write(data, datatype)

    def eof_received(self):
        if not self.down.gone:
            self.down.chan.write_eof()
        return True

    def pause_writing(self):
        if not self.down.gone:
            self.down.chan.pause_reading()

    def resume_writing(self):
        if not self.down.gone:
            self.down.chan.resume_reading()

    def connection_lost(self, exc):
        self.down.upstream_closed()


async def start_server(gateway: Gateway, host: str, port: int, host_key: bytes):
    """Listen for users on host:port."""
    return await asyncssh.create_server(
        gateway.connection,
        host,
        port,
        server_host_keys=[asyncssh.import_private_key(host_key)],
        encoding=None,
        line_editor=False,  # bytes pass through untouched, without asyncssh's editor layer
        encryption_algs=USER_CIPHERS,
        compression_algs=None,
        window=WINDOW,
        max_pktsize=MAX_PKTSIZE,
        keepalive_interval=30,
        keepalive_count_max=4,
        login_timeout=60,
        allow_scp=False,
        agent_forwarding=False,
        x11_forwarding=False,
        config=[],
    )
