"""The gateway's SSH server: sign users in, then bridge their channels to the instance's sshd.

Each user connection gets one client connection to the instance's own OpenSSH server
(signed in with the gateway's key for that instance). Sessions are bridged request by
request (pty, env, shell/exec/subsystem, window changes, signals, exit status, stderr), and
direct-tcpip channels (ssh -L, -D) are forwarded over the same client connection, so what
runs in the instance is plain OpenSSH: SFTP, scp, rsync and editors behave as with any host.

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

from spawner.instance_keys import instance_private_pem
from ssh_gateway.keys import find_key

from .directory import Directory, InstanceUnavailable, Target, split_login

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


class Gateway:
    """What every connection shares: the directory, the throttle, activity, the secret."""

    def __init__(
        self,
        directory: Directory,
        secret: bytes,
        throttle: Throttle | None = None,
        max_auth_attempts: int = 6,
    ):
        self.directory = directory
        self.secret = secret
        self.throttle = throttle or Throttle()
        # keys one connection may offer before it is disconnected (OpenSSH's MaxAuthTries)
        self.max_auth_attempts = max_auth_attempts
        self.activity = Activity()
        self.report_activity = None  # async fn(user, instance), set by the process
        self.audit = None  # hub.audit.AuditLog, set by the process
        self.connections: set[GatewayConnection] = set()  # signed in, still open
        self._tasks: set[asyncio.Task] = set()

    async def recheck(self):
        """Decide again for every open connection, and close those whose access is gone.

        Connections that share a login, key and address are decided once.
        """
        groups: dict[tuple[str, str, str], list[GatewayConnection]] = defaultdict(list)
        for connection in list(self.connections):
            groups[(connection.login, connection.fingerprint, connection.source)].append(connection)
        if not groups:
            return
        reasons = await asyncio.gather(
            *(self.refusal(*key) for key in groups), return_exceptions=True
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

    async def refusal(self, login: str, fingerprint: str, source: str) -> str:
        """Why this key may no longer reach the instance from source; "" if it still may."""
        target, reason = await self.directory.decide(login, fingerprint, source)
        return "" if target is not None else reason

    def audit_connection(self, outcome: str, login: str, source: str, reason: str, **details):
        """One connectSSH event per connection attempt, stored off the event loop."""
        if self.audit is None:
            return
        parts = split_login(login)
        actor = parts[0] if parts else login
        task = asyncio.ensure_future(
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
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def connect_upstream(self, target: Target) -> asyncssh.SSHClientConnection:
        host, port = await self.directory.address(target.user, target.instance)
        key = asyncssh.import_private_key(
            instance_private_pem(self.secret, target.user, target.instance)
        )
        try:
            return await asyncssh.connect(
                host,
                port,
                username="jovyan",
                client_keys=[key],
                known_hosts=None,  # the instance's host key is made at each start
                agent_path=None,
                config=[],
                encryption_algs=UPSTREAM_CIPHERS,
                compression_algs=None,
                window=WINDOW,
                max_pktsize=MAX_PKTSIZE,
                keepalive_interval=30,
                connect_timeout=15,
            )
        except (OSError, asyncssh.Error) as e:
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
        self.upstream: asyncio.Future | None = None
        self.authenticated = False
        self.fingerprint = ""
        self.failed_attempts = 0  # keys refused on this connection
        self.revoked = ""  # why the connection was closed after sign-in

    # --- sign-in ------------------------------------------------------------------------

    def connection_made(self, conn):
        self.conn = conn
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
                target, reason = await self.gateway.directory.decide(
                    username, fingerprint, self.source
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

    async def auth_completed(self):
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
        self.upstream = asyncio.ensure_future(self.gateway.connect_upstream(target))
        asyncio.ensure_future(self._audit_sign_in(target))
        fingerprint = self.fingerprint
        db = self.gateway.directory.db
        await db.run(lambda s: find_key(s, target.user, fingerprint))
        if self.gateway.report_activity is not None:
            asyncio.ensure_future(self.gateway.report_activity(target.user, target.instance))

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
            if self.upstream is not None:
                if self.upstream.done():
                    if not self.upstream.cancelled() and self.upstream.exception() is None:
                        self.upstream.result().close()
                else:
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

    async def upstream_connection(self) -> asyncssh.SSHClientConnection:
        """The client connection to the instance's sshd; InstanceUnavailable if none."""
        return await asyncio.shield(self.upstream)

    async def check_channel(self) -> bool:
        """Decide again before a new channel opens. Where access is gone, the connection
        closes right after the caller has refused the channel."""
        if self.revoked:
            return False
        try:
            reason = await self.gateway.refusal(self.login, self.fingerprint, self.source)
        except Exception:  # noqa: BLE001 - refuse the channel, say why in the log only
            log.exception("ssh: re-checking %s from %s failed", self.login, self.source)
            return False
        if reason:
            asyncio.get_running_loop().call_soon(self.revoke, reason)
            return False
        return True

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
        self.conn.disconnect(
            asyncssh.DISC_BY_APPLICATION,
            "Access to this instance was withdrawn (key removed, SSH turned off, address not "
            "allowed, or account deleted). Check its SSH settings and your keys, then connect "
            "again.",
        )

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
                upstream = await self.upstream_connection()
            except InstanceUnavailable as e:
                self.unavailable(str(e))
                raise asyncssh.ChannelOpenError(asyncssh.OPEN_CONNECT_FAILED, str(e)) from None
            down = TunnelEnd()
            up = TunnelEnd(peer=down)
            await upstream.create_connection(
                lambda: up, dest_host, dest_port, window=WINDOW, max_pktsize=MAX_PKTSIZE
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

    def __init__(self, peer: TunnelEnd | None = None):
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
        self.peer.close()


class BridgedSession(asyncssh.SSHServerSession):
    """A user's session channel, mirrored on a session channel to the instance's sshd."""

    def __init__(self, owner: GatewayConnection):
        self.owner = owner
        self.chan = None
        self.up = None
        self.pty = None
        self.request = ("shell", None)
        self.pending: list[tuple[bytes, int | None]] = []
        self.eof = False
        self.task = None

    def connection_made(self, chan):
        self.chan = chan

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
        self.task = asyncio.ensure_future(self._open())

    async def _open(self):
        if not await self.owner.check_channel():
            # nothing of this channel reaches the instance
            self.chan.write_stderr(b"Permission denied\r\n")
            self.chan.exit(1)
            return
        try:
            upstream = await self.owner.upstream_connection()
        except InstanceUnavailable as e:
            self.owner.unavailable(str(e))
            self.chan.write_stderr((str(e) + "\r\n").encode())
            self.chan.exit(1)  # the client disconnects when its session ends
            return
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
        try:
            self.up, _ = await upstream.create_session(lambda: UpstreamSession(self), **kwargs)
        except (asyncssh.Error, OSError) as e:
            self.chan.write_stderr(f"The instance refused the session: {e}\r\n".encode())
            self.chan.exit(1)
            return
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
        if self.up is not None:
            self.up.close()
        elif self.task is not None:
            self.task.cancel()

    def upstream_closed(self):
        """The instance's side closed: pass on how the command ended, then close."""
        up = self.up
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

    def data_received(self, data, datatype):
        self.down.chan.write(data, datatype)

    def eof_received(self):
        self.down.chan.write_eof()
        return True

    def pause_writing(self):
        self.down.chan.pause_reading()

    def resume_writing(self):
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
