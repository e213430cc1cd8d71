"""The gateway's warm connections to instances and what it keeps of the hub's answers: reused
only for the instance they were made for, and never past a withdrawn access.

The pool and the directory's keeping of the hub's answers are first exercised with doubles
of the instance's sshd and of the hub (no network); then on the real hub with real instances
and OpenSSH's ssh, on a warm gateway.
"""

from __future__ import annotations

import asyncio
import subprocess
import time

import pytest

from ssh_gateway.directory import Directory, InstanceUnavailable, Target
from ssh_gateway.server import Gateway
from ssh_gateway.upstream import UpstreamPool
from tests.ssh_gateway.test_ssh_gateway import Box, create, keygen, refused

# --- doubles ----------------------------------------------------------------------------------


class FakeConnection:
    """Stands in for asyncssh's client connection to an instance's sshd."""

    def __init__(self, client):
        self.client = client
        self.closed = False
        client.connection_made(self)

    def close(self):
        if not self.closed:
            self.closed = True
            self.client.connection_lost(None)


class Connector:
    """Opens fake connections, recording for which instance."""

    def __init__(self, delay: float = 0.01, fail: bool = False):
        self.delay = delay
        self.fail = fail
        self.opened: list[tuple[str, str]] = []
        self.connections: list[FakeConnection] = []

    async def __call__(self, target: Target, upstream):
        await asyncio.sleep(self.delay)
        if self.fail:
            raise InstanceUnavailable("Instance is stopped.")
        self.opened.append((target.user, target.instance))
        conn = FakeConnection(upstream)
        self.connections.append(conn)
        return conn


def target(user: str, instance: str) -> Target:
    return Target(user=user, instance=instance, key_name="k")


async def test_pool_keeps_one_connection_per_instance_and_never_mixes_them():
    connect = Connector()
    pool = UpstreamPool(connect, idle_seconds=60)
    # channels that ask at once for a cold instance wait for one connection
    ups = await asyncio.gather(*(pool.acquire(target("ann", "box")) for _ in range(4)))
    assert connect.opened == [("ann", "box")]
    assert len({id(up) for up in ups}) == 1 and ups[0].sessions == 4
    # another user's instance of the same name, and another instance of the same user
    bob = await pool.acquire(target("bob", "box"))
    other = await pool.acquire(target("ann", "other"))
    assert connect.opened == [("ann", "box"), ("bob", "box"), ("ann", "other")]
    assert bob is not ups[0] and other is not ups[0] and bob is not other
    assert bob.key == ("bob", "box") and other.key == ("ann", "other")
    # a user's name with a dot cannot alias another's login: keys are (user, instance)
    dotted = await pool.acquire(target("ann.box", "x"))
    assert dotted.key == ("ann.box", "x") and dotted is not ups[0]
    pool.close_all()


async def test_pool_opens_another_connection_past_the_session_limit():
    connect = Connector()
    pool = UpstreamPool(connect, idle_seconds=60, sessions_per_connection=3)
    ups = [await pool.acquire(target("ann", "box")) for _ in range(4)]
    assert len(connect.opened) == 2
    assert ups[0] is ups[1] is ups[2] and ups[3] is not ups[0]
    # forwarded connections do not count against MaxSessions
    forward = await pool.acquire(target("ann", "box"), session=False)
    assert len(connect.opened) == 2 and forward.channels >= 1
    pool.close_all()


async def test_pool_closes_idle_connections_and_forgets_lost_ones():
    connect = Connector()
    pool = UpstreamPool(connect, idle_seconds=0.1)
    up = await pool.acquire(target("ann", "box"))
    assert pool.running_since("ann", "box") == up.opened
    await asyncio.sleep(0.2)
    assert not up.closed  # a channel is open on it
    up.release(session=True)
    await asyncio.sleep(0.3)
    assert up.closed and pool.running_since("ann", "box") is None
    # the instance stops: its sshd closes the connection, and nothing vouches for it any more
    up = await pool.acquire(target("ann", "box"))
    connect.connections[-1].close()
    assert pool.running_since("ann", "box") is None
    fresh = await pool.acquire(target("ann", "box"))
    assert fresh is not up and len(connect.opened) == 3
    pool.close_all()


async def test_pool_passes_on_an_unavailable_instance():
    pool = UpstreamPool(Connector(fail=True), idle_seconds=60)
    for _ in range(2):
        with pytest.raises(InstanceUnavailable):
            await pool.acquire(target("ann", "box"))
    assert pool.running_since("ann", "box") is None


async def test_pool_closes_idle_connections_when_access_is_withdrawn():
    connect = Connector()
    pool = UpstreamPool(connect, idle_seconds=60)
    busy = await pool.acquire(target("ann", "box"))
    pool.close_idle("ann", "box")
    assert not busy.closed  # its channel belongs to a connection the re-check decides on
    busy.release(session=True)
    pool.close_idle("ann", "box")
    assert busy.closed


class FakeHub:
    """The hub's servers() answers, counted."""

    def __init__(self):
        self.calls = 0
        self.model = {"box": {"ready": True, "user_options": {"ssh": {"enabled": True}}}}

    async def servers(self, user):
        self.calls += 1
        await asyncio.sleep(0.01)
        return dict(self.model)


def directory(hub) -> Directory:
    return Directory(hub, db=None, backend="docker", engine_url="", prefix="wb")


async def test_directory_reuses_the_hub_answer_only_when_vouched_for():
    hub = FakeHub()
    d = directory(hub)
    await d.servers("ann")
    await d.servers("ann")
    assert hub.calls == 2  # without `since`, always afresh
    before = time.monotonic()
    await d.servers("ann")
    await d.servers("ann", since=before)
    assert hub.calls == 3  # an answer given after `since` is reused
    await d.servers("ann", since=time.monotonic())
    assert hub.calls == 4  # one given before is not
    # callers that ask at once with the same `since` share one request
    now = time.monotonic()
    await asyncio.gather(*(d.servers("ann", since=now) for _ in range(5)))
    assert hub.calls == 5
    d.forget("ann")
    await d.servers("ann", since=0)
    assert hub.calls == 6


class NoLiveOptions:
    """The database double: no options changed on running instances."""

    async def run(self, fn):
        return {}


async def test_directory_keeps_an_address_for_one_run_of_the_instance():
    hub = FakeHub()
    hub.model["box"]["started"] = "2026-01-01T00:00:00Z"
    d = Directory(hub, db=NoLiveOptions(), backend="docker", engine_url="", prefix="wb")
    lookups = []

    def container_ip(user, instance):
        lookups.append((user, instance))
        return f"10.0.0.{len(lookups)}"

    d._container_ip = container_ip
    assert await d.address("ann", "box") == ("10.0.0.1", 2222)
    assert await d.address("ann", "box") == ("10.0.0.1", 2222)  # the same run: kept
    assert len(lookups) == 1
    assert await d.address("ann", "box", known=False) == ("10.0.0.2", 2222)
    hub.model["box"] = {**hub.model["box"], "started": "2026-01-01T00:05:00Z"}  # restarted
    assert await d.address("ann", "box") == ("10.0.0.3", 2222)
    d.forget_address("ann", "box")
    assert d.kept_address("ann", "box") is None
    hub.model["box"] = {**hub.model["box"], "ready": False}  # stopped: nothing kept is used
    with pytest.raises(InstanceUnavailable):
        await d.address("ann", "box")
    assert len(lookups) == 3


async def test_gateway_vouches_only_while_a_connection_to_the_instance_is_open():
    hub = FakeHub()
    gateway = Gateway(directory(hub), b"secret", hub_cache_seconds=30)
    connect = Connector()
    gateway.upstreams = UpstreamPool(connect, idle_seconds=60)
    assert gateway.vouched_since("ann.box") is None  # cold: ask the hub
    up = await gateway.upstreams.acquire(target("ann", "box"))
    assert gateway.vouched_since("ann.box") == up.opened
    assert gateway.vouched_since("bob.box") is None  # another user's instance
    assert gateway.vouched_since("ann.other") is None
    assert gateway.vouched_since("no-dot") is None
    connect.connections[-1].close()  # the instance stopped
    assert gateway.vouched_since("ann.box") is None
    gateway.hub_cache_seconds = 0
    await gateway.upstreams.acquire(target("ann", "box"))
    assert gateway.vouched_since("ann.box") is None  # keeping turned off
    gateway.hub_cache_seconds = 1
    await asyncio.sleep(0)
    assert gateway.vouched_since("ann.box") >= time.monotonic() - 1
    gateway.close()


# --- the real gateway, warm ---------------------------------------------------------------------

INSTANCE = "warmbox"
OPEN = ["127.0.0.0/8"]


@pytest.fixture(scope="module")
def warm(hub, tmp_path_factory):
    root = tmp_path_factory.mktemp("ssh-warm")
    client = hub.add_user("sshwarm")
    b = Box(hub, root, "sshwarm", INSTANCE)
    b.client = client
    b.public_key = keygen(b.key)
    client.add_key("laptop", b.public_key)
    create(client, INSTANCE, {"enabled": True, "allowlist": OPEN})
    yield b
    client.stop_instance(INSTANCE)
    client.delete_instance(INSTANCE)


def grant(box):
    if not box.client.keys():
        box.client.add_key("laptop", box.public_key)
    if box.client.instance(INSTANCE)["state"] != "running":
        box.client.start_instance(INSTANCE)
    box.client.set_ssh(INSTANCE, True, OPEN)


def warm_up(box):
    """Two sign-ins: the gateway holds a connection to the instance and the hub's answer."""
    for _ in range(2):
        r = box.ssh("true")
        assert r.returncode == 0, r.stderr


def sshd_sign_ins(box) -> int:
    """Sign-ins the instance's sshd has accepted (its log, read by the engine)."""
    r = box.ssh("grep -c 'Accepted publickey' /tmp/workbench-sshd/sshd.log || true")
    assert r.returncode == 0, r.stderr
    return int(r.stdout.strip() or 0)


def delete_key(box):
    for key in box.client.keys():
        box.client.delete_key(key["id"])


WITHDRAWALS = {
    "key deleted": delete_key,
    "SSH turned off": lambda box: box.client.set_ssh(INSTANCE, False),
    "allowlist narrowed": lambda box: box.client.set_ssh(INSTANCE, True, ["203.0.113.0/24"]),
}


def test_warm_gateway_opens_channels_on_one_connection(warm):
    """Many `ssh host cmd` in a row sign in to the instance's sshd once, not each time."""
    grant(warm)
    warm_up(warm)
    before = sshd_sign_ins(warm)
    for i in range(5):
        assert warm.ssh(f"echo {i}").stdout == f"{i}\n".encode()
    assert sshd_sign_ins(warm) == before


@pytest.mark.parametrize("withdrawal", list(WITHDRAWALS))
def test_warm_gateway_refuses_at_once_after_a_withdrawal(warm, withdrawal):
    """With a warm connection to the instance and the hub's answer kept, access withdrawn
    (key deleted, SSH off, allowlist narrowed) refuses the very next sign-in."""
    grant(warm)
    warm_up(warm)
    WITHDRAWALS[withdrawal](warm)
    try:
        r = warm.ssh("echo", "in")
        assert refused(r), (withdrawal, r.returncode, r.stdout, r.stderr)
    finally:
        grant(warm)
    assert warm.ssh("echo", "back").stdout == b"back\n"


def test_warm_gateway_refuses_a_stopped_instance_within_seconds(warm):
    """The instance stops: its sshd, and with it the gateway's warm connection, goes; the
    next sign-in asks the hub afresh and hears that the instance is stopped."""
    grant(warm)
    warm_up(warm)
    warm.client.stop_instance(INSTANCE)
    deadline = time.monotonic() + 5
    while True:
        r = warm.ssh("echo", "in", timeout=30)
        if r.returncode == 1 and b"is stopped" in r.stderr:
            break
        assert time.monotonic() < deadline, (r.returncode, r.stdout, r.stderr)
        time.sleep(0.2)
    assert b"in" not in r.stdout
    grant(warm)
    assert warm.ssh("echo", "back").stdout == b"back\n"


def test_restart_with_ssh_turned_off_is_refused(warm):
    """SSH turned off while the instance was stopped (the hub's own options), then started:
    what the gateway kept from before the stop must not let anyone in."""
    grant(warm)
    warm_up(warm)
    warm.client.stop_instance(INSTANCE)
    warm.client.set_ssh(INSTANCE, False)
    warm.client.start_instance(INSTANCE)
    try:
        r = warm.ssh("echo", "in")
        assert refused(r), (r.returncode, r.stdout, r.stderr)
    finally:
        grant(warm)
    assert warm.ssh("echo", "back").stdout == b"back\n"


def test_warm_connections_never_cross_instances(warm, hub, tmp_path):
    """Two users' instances on a warm gateway: each user's channels land in their own
    instance only, whatever the order of their connections."""
    grant(warm)
    other = Box(hub, tmp_path, "sshwarm2", INSTANCE)  # the same instance name
    other.client = hub.add_user("sshwarm2")
    other.client.add_key("laptop", keygen(other.key))
    create(other.client, INSTANCE, {"enabled": True, "allowlist": OPEN})
    try:
        assert warm.ssh("echo mine-sshwarm > owner.txt").returncode == 0
        assert other.ssh("echo mine-sshwarm2 > owner.txt").returncode == 0
        for _ in range(3):
            for box in (warm, other, other, warm):
                r = box.ssh("cat owner.txt")
                assert r.stdout == f"mine-{box.user}\n".encode(), (box.user, r.stdout, r.stderr)
        # another user's key opens nothing on this user's warm connection
        r = warm.ssh("true", login=f"{other.user}.{INSTANCE}")
        assert refused(r), r.stderr
    finally:
        other.client.stop_instance(INSTANCE)
        other.client.delete_instance(INSTANCE)


def test_open_session_closes_within_seconds_on_a_warm_gateway(warm):
    """A shell opened before SSH was turned off is closed by the periodic re-check, while
    the warm connection to the instance stays for nobody."""
    grant(warm)
    warm_up(warm)
    args = ["ssh", *warm.ssh_args(), "-p", str(warm.hub.ssh_port), f"{warm.login}@127.0.0.1"]
    proc = subprocess.Popen([*args, "sleep 60"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(1.5)
        assert proc.poll() is None
        warm.client.set_ssh(INSTANCE, False)
        withdrawn = time.monotonic()
        proc.wait(15)
        assert time.monotonic() - withdrawn < 12
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        grant(warm)
