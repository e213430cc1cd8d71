"""The SSH gateway with real clients (OpenSSH ssh, scp, sftp, rsync; paramiko) against real
instances started by the test hub."""

from __future__ import annotations

import hashlib
import os
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

import paramiko
import pytest
from workbench import WorkbenchError

from ssh_gateway.keys import generate_key_pair, parse_public_key
from tests.platform import free_port, running_hub

INSTANCE = "sshbox"


def keygen(path: Path) -> str:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return (path.parent / (path.name + ".pub")).read_text().strip()


class Box:
    """A user with a key and a running instance with SSH on."""

    def __init__(self, hub, root: Path, user: str, instance: str):
        self.hub = hub
        self.root = root
        self.user = user
        self.instance = instance
        self.key = root / f"{user}_ed25519"
        self.known_hosts = root / "known_hosts"

    def ssh_args(self, login: str | None = None, key: Path | None = None) -> list[str]:
        return [
            "-i",
            str(key or self.key),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=accept-new",
            "-o",
            f"UserKnownHostsFile={self.known_hosts}",
            "-o",
            "ConnectTimeout=30",
            "-o",
            "LogLevel=ERROR",
        ]

    @property
    def login(self) -> str:
        return f"{self.user}.{self.instance}"

    def ssh(self, *command, login=None, key=None, extra=(), timeout=120, **kwargs):
        args = ["ssh", *self.ssh_args(key=key), "-p", str(self.hub.ssh_port), *extra]
        args += [f"{login or self.login}@127.0.0.1", *command]
        return subprocess.run(args, capture_output=True, timeout=timeout, **kwargs)


@pytest.fixture(scope="module")
def box(hub, tmp_path_factory):
    root = tmp_path_factory.mktemp("ssh")
    client = hub.add_user("sshuser")
    b = Box(hub, root, "sshuser", INSTANCE)
    b.client = client
    client.add_key("laptop", keygen(b.key))
    create(client, INSTANCE, {"enabled": True, "allowlist": []})
    yield b
    client.stop_instance(INSTANCE)
    client.delete_instance(INSTANCE)


def create(client, name: str, ssh: dict, start: bool = True) -> dict:
    """An instance with SSH settings from its creation (POST .../instances)."""
    body = {"name": name, "ssh": ssh, "start": start}
    return client.api("POST", f"users/{client.whoami()['name']}/instances", body)


def test_exec_exit_status_and_stderr(box):
    r = box.ssh("pwd; echo $PATH; echo to-stderr >&2; exit 7")
    assert r.returncode == 7, r.stderr
    out = r.stdout.decode().splitlines()
    assert out[0] == "/home/jovyan/work"
    # the terminal's environment: the engine's environment first on PATH
    assert out[1].startswith("/opt/envs/python/bin:"), out[1]
    assert r.stderr.decode().strip() == "to-stderr"
    r = box.ssh("whoami; python -c 'import sys; print(sys.prefix)'")
    assert r.stdout.decode().split() == ["jovyan", "/opt/envs/python"], r.stderr


def test_shell_with_pty_and_window_size(box):
    r = box.ssh(
        extra=("-tt",),
        input=b"stty size; tty; echo $TERM; exit 3\n",
        env={**os.environ, "TERM": "xterm-256color"},
    )
    out = r.stdout.decode(errors="replace")
    assert r.returncode == 3, out
    assert "/dev/pts/" in out
    assert "xterm-256color" in out
    # the window size of the client's pty request reaches the instance: paramiko sets one
    client = paramiko_client(box)
    try:
        chan = client.get_transport().open_session()
        chan.get_pty("xterm", width=101, height=33)
        chan.exec_command("sleep 1; stty size")
        chan.resize_pty(width=120, height=40)
        assert read_all(chan).decode().strip() == "40 120"
    finally:
        client.close()


def read_all(chan) -> bytes:
    data = b""
    while True:
        chunk = chan.recv(65536)
        if not chunk:
            return data
        data += chunk


def paramiko_client(box) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    client.connect(
        "127.0.0.1",
        port=box.hub.ssh_port,
        username=box.login,
        key_filename=str(box.key),
        look_for_keys=False,
        allow_agent=False,
        timeout=30,
    )
    return client


def test_paramiko_exec_and_sftp(box):
    client = paramiko_client(box)
    try:
        _, stdout, stderr = client.exec_command("echo out; echo err >&2; exit 4")
        assert stdout.read() == b"out\n"
        assert stderr.read() == b"err\n"
        assert stdout.channel.recv_exit_status() == 4
        sftp = client.open_sftp()
        assert sftp.normalize(".") == "/home/jovyan/work"
        with sftp.open("from-paramiko.txt", "w") as f:
            f.write("hello over sftp\n")
        assert sftp.stat("from-paramiko.txt").st_size == 16
        sftp.close()
    finally:
        client.close()
    assert box.ssh("cat from-paramiko.txt").stdout == b"hello over sftp\n"


def test_scp_sftp_rsync(box, tmp_path):
    payload = os.urandom(3 * 1024 * 1024)
    src = tmp_path / "data.bin"
    src.write_bytes(payload)
    digest = hashlib.sha256(payload).hexdigest()
    port = str(box.hub.ssh_port)
    target = f"{box.login}@127.0.0.1"
    r = subprocess.run(
        ["scp", *box.ssh_args(), "-P", port, str(src), f"{target}:scp.bin"],
        capture_output=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    batch = tmp_path / "batch"
    batch.write_text(f"put {src} sftp.bin\nget sftp.bin {tmp_path / 'back.bin'}\n")
    r = subprocess.run(
        ["sftp", *box.ssh_args(), "-P", port, "-b", str(batch), target],
        capture_output=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "back.bin").read_bytes() == payload
    rsh = " ".join(["ssh", *box.ssh_args(), "-p", port])
    r = subprocess.run(
        ["rsync", "-a", "-e", rsh, str(src), f"{target}:rsync.bin"],
        capture_output=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    r = box.ssh("sha256sum scp.bin sftp.bin rsync.bin")
    sums = [line.split()[0] for line in r.stdout.decode().splitlines()]
    assert sums == [digest] * 3, r.stdout


def wait_for_port(port: int, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"nothing listens on {port}")


@pytest.fixture
def web_server(box):
    """An HTTP server inside the instance on port 8765 (IPv4 and IPv6), for the forwarding
    tests. It runs in the background and logs to a file: a server tied to an ssh session
    would outlive it and die at its next log line, holding the port until then."""
    start = (
        "echo forwarded-ok > fwd.txt; "
        "nohup python -m http.server 8765 --bind :: > web.log 2>&1 < /dev/null & echo $! > web.pid"
    )
    assert box.ssh(start).returncode == 0
    probe = "import socket; socket.create_connection(('{}', 8765), 1)"
    deadline = time.monotonic() + 30
    while box.ssh(f'python -c "{probe.format("127.0.0.1")}"').returncode != 0:
        assert time.monotonic() < deadline, "the instance's web server did not start"
        time.sleep(0.5)
    yield
    r = box.ssh(
        'kill $(cat web.pid); while python -c "' + probe.format("127.0.0.1") + '" '
        "2>/dev/null; do sleep 0.2; done"
    )
    assert r.returncode == 0, r.stderr


def test_local_forwarding(box, web_server):
    port = free_port()
    proc = subprocess.Popen(
        [
            "ssh",
            *box.ssh_args(),
            "-p",
            str(box.hub.ssh_port),
            "-N",
            "-L",
            f"{port}:127.0.0.1:8765",
            f"{box.login}@127.0.0.1",
        ],
    )
    try:
        wait_for_port(port)
        r = subprocess.run(
            [
                "curl",
                "-sf",
                "--retry",
                "5",
                "--retry-connrefused",
                f"http://127.0.0.1:{port}/fwd.txt",
            ],
            capture_output=True,
            timeout=60,
        )
        assert r.stdout == b"forwarded-ok\n", r.stderr
    finally:
        proc.terminate()
        proc.wait(10)


BANNER_SERVER = """
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 8766))
s.listen()
for _ in range(20):
    c, _ = s.accept()
    c.sendall(b"banner-" * 10000 + b"end\\n")
    c.close()
"""


def test_server_speaks_first_through_forwarding(box, tmp_path):
    """A server that writes as soon as it accepts (as SSH, SMTP and MySQL servers do): its
    first bytes reach the client, however fast they follow the channel's opening."""
    (tmp_path / "banner.py").write_text(BANNER_SERVER)
    r = box.ssh("cat > banner.py", stdin=open(tmp_path / "banner.py", "rb"))
    assert r.returncode == 0, r.stderr
    box.ssh("nohup python banner.py > /dev/null 2>&1 < /dev/null & echo $! > banner.pid")
    port = free_port()
    proc = subprocess.Popen(
        ["ssh", *box.ssh_args(), "-p", str(box.hub.ssh_port), "-N", "-L"]
        + [f"{port}:127.0.0.1:8766", f"{box.login}@127.0.0.1"]
    )
    try:
        wait_for_port(port)
        expected = b"banner-" * 10000 + b"end\n"
        for _ in range(5):
            with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
            assert data == expected, data[:100]
    finally:
        proc.terminate()
        proc.wait(10)
        box.ssh("kill $(cat banner.pid)")


def socks5_get(port: int, host: str, dest_port: int, path: str) -> bytes:
    """An HTTP GET through a SOCKS5 proxy, spoken by hand."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(b"\x05\x01\x00")
        assert s.recv(2) == b"\x05\x00"
        name = host.encode()
        s.sendall(b"\x05\x01\x00\x03" + bytes([len(name)]) + name + struct.pack(">H", dest_port))
        reply = s.recv(10)
        assert reply[1] == 0, f"SOCKS5 refused: {reply!r}"
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        return data


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1"])
def test_dynamic_forwarding(box, web_server, host):
    port = free_port()
    proc = subprocess.Popen(
        [
            "ssh",
            *box.ssh_args(),
            "-p",
            str(box.hub.ssh_port),
            "-N",
            "-D",
            str(port),
            f"{box.login}@127.0.0.1",
        ],
    )
    try:
        wait_for_port(port)
        data = socks5_get(port, host, 8765, "/fwd.txt")
        assert data.endswith(b"forwarded-ok\n"), data[:300]
    finally:
        proc.terminate()
        proc.wait(10)


def test_activity_moves_while_connected(box):
    before = box.client.instance(INSTANCE)["last_activity"]
    proc = subprocess.Popen(
        ["ssh", *box.ssh_args(), "-p", str(box.hub.ssh_port), f"{box.login}@127.0.0.1", "sleep 8"]
    )
    try:
        seen = []
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            seen.append(box.client.instance(INSTANCE)["last_activity"])
            time.sleep(1)
        # reported at sign-in and again every ssh_activity_seconds (2 s in the test hub)
        moved = sorted(set(seen) - {before})
        assert len(moved) >= 2, (before, seen)
    finally:
        proc.wait(30)


def refused(r) -> bool:
    return r.returncode == 255 and b"Permission denied" in r.stderr


def test_refusals_look_alike(box, hub, tmp_path):
    other_key = tmp_path / "other"
    keygen(other_key)
    stranger = hub.add_user("sshother")
    stranger.add_key("k", (tmp_path / "other.pub").read_text())
    create(stranger, "theirs", {"enabled": True}, start=False)
    cases = {
        "unknown user": dict(login="nobody.sshbox"),
        "unknown instance": dict(login="sshuser.nothere"),
        "no dot": dict(login="sshuser"),
        "wrong key": dict(key=other_key),
        "another user's instance": dict(login="sshother.theirs"),
    }
    for case, kwargs in cases.items():
        r = box.ssh("true", **kwargs)
        assert refused(r), (case, r.returncode, r.stderr)
        assert r.stderr.count(b"Permission denied") == 1
    # SSH off, then an allowlist without this address: refused the same way (checked before
    # whether the instance runs, so stopped instances show it)
    create(box.client, "gated", {"enabled": False}, start=False)
    assert refused(box.ssh("true", login=f"{box.user}.gated"))
    box.client.set_ssh("gated", True, ["203.0.113.0/24"])
    assert refused(box.ssh("true", login=f"{box.user}.gated"))
    box.client.set_ssh("gated", True, ["203.0.113.0/24", "127.0.0.0/8"])
    r = box.ssh("true", login=f"{box.user}.gated")
    assert r.returncode == 1 and b"'gated' is stopped" in r.stderr
    box.client.delete_instance("gated")
    stranger.delete_instance("theirs")
    log = hub.log_path.read_text()
    assert "ssh: refused user=nobody instance=sshbox source=127.0.0.1" in log
    assert "ssh: accepted user=sshuser instance=sshbox source=127.0.0.1" in log


def test_repeated_failures_are_slowed(box, tmp_path):
    bad = tmp_path / "bad"
    keygen(bad)
    times = []
    for _ in range(6):
        start = time.monotonic()
        assert refused(box.ssh("true", key=bad))
        times.append(time.monotonic() - start)
    assert times[-1] > times[0] + 1.5, times
    # a successful sign-in clears the address's record
    assert box.ssh("true").returncode == 0
    start = time.monotonic()
    box.ssh("true")
    assert time.monotonic() - start < times[-1]


def test_stopped_instance_says_how_to_start(box, hub, tmp_path):
    create(box.client, "asleep", {"enabled": True}, start=False)
    r = box.ssh("true", login=f"{box.user}.asleep")
    assert r.returncode == 1
    message = r.stderr.decode()
    assert "'asleep' is stopped" in message
    assert "workbench instances start asleep" in message
    box.client.delete_instance("asleep")


def test_host_key_stable_across_restart(engine, base_image, tmp_path):
    """On a hub of its own: a restart of the session hub would hold every later test."""
    (tmp_path / "hub").mkdir()
    with running_hub(tmp_path / "hub", engine.url, "ssh restart") as h:
        client = h.add_user("sshrestart")
        box = Box(h, tmp_path, "sshrestart", INSTANCE)
        client.add_key("laptop", keygen(box.key))
        create(client, INSTANCE, {"enabled": True, "allowlist": []})
        # the first connection records the host key in known_hosts
        assert box.ssh("true").returncode == 0

        def host_key():
            r = subprocess.run(
                ["ssh-keyscan", "-t", "ed25519", "-p", str(h.ssh_port), "127.0.0.1"],
                capture_output=True,
                timeout=30,
            )
            return r.stdout.split()[-1]

        first = host_key()
        key_file = Path(h.root) / "data" / "ssh_host_ed25519_key"
        assert key_file.stat().st_mode & 0o777 == 0o600
        h.restart()
        wait_for_port(h.ssh_port)
        assert host_key() == first
        # the known_hosts entry still matches: no warning, no refusal
        r = box.ssh("true")
        assert r.returncode == 0, r.stderr


# --- the key API ----------------------------------------------------------------------------


def test_key_api_validation(hub, tmp_path):
    client = hub.add_user("keyuser")
    ed = keygen(tmp_path / "ed")
    model = client.add_key("first", ed + " extra comment")
    assert model["type"] == "ed25519" and model["fingerprint"].startswith("SHA256:")
    assert model["last_used"] is None
    fp = subprocess.run(
        ["ssh-keygen", "-lf", str(tmp_path / "ed.pub")], capture_output=True, text=True
    ).stdout.split()[1]
    assert model["fingerprint"] == fp
    rsa_small = tmp_path / "rsa1024"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "rsa", "-b", "1024", "-N", "", "-f", str(rsa_small)], check=True
    )
    bad = {
        "duplicate key": ("again", ed),
        "duplicate name": ("first", keygen(tmp_path / "ed2")),
        "weak rsa": ("rsa", (tmp_path / "rsa1024.pub").read_text()),
        "dsa": ("dsa", "ssh-dss AAAAB3NzaC1kc3MAAACBAP"),
        "garbage": ("g", "ssh-ed25519 not-base64!"),
        "truncated": ("t", ed.split()[0] + " " + ed.split()[1][:20]),
        "private key": ("p", (tmp_path / "ed").read_text()),
        "empty": ("e", ""),
        "bad name": ("", ed),
    }
    for case, (name, key) in bad.items():
        with pytest.raises(WorkbenchError) as e:
            client.add_key(name, key)
        assert e.value.status == 400, case
        assert e.value.message, case
    ecdsa = keygen_type(tmp_path / "ec", "ecdsa")
    rsa = keygen_type(tmp_path / "rsa", "rsa", "3072")
    assert client.add_key("ec", ecdsa)["type"] == "ecdsa"
    assert client.add_key("rsa", rsa)["type"] == "rsa"
    generated = client.generate_key("made-here")
    assert generated["private_key"].startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    keys = client.keys()
    assert [k["name"] for k in keys] == ["first", "ec", "rsa", "made-here"]
    assert all("private_key" not in k for k in keys)
    renamed = client.rename_key(keys[0]["id"], "renamed")
    assert renamed["name"] == "renamed"
    with pytest.raises(WorkbenchError) as e:
        client.rename_key(keys[0]["id"], "ec")
    assert e.value.status == 400
    client.delete_key(keys[1]["id"])
    with pytest.raises(WorkbenchError) as e:
        client.delete_key(keys[1]["id"])
    assert e.value.status == 404
    assert [k["name"] for k in client.keys()] == ["renamed", "rsa", "made-here"]
    # another user's keys are not visible
    other = hub.add_user("keyother")
    with pytest.raises(WorkbenchError) as e:
        other.keys(user="keyuser")
    assert e.value.status == 404


def test_an_admin_cannot_keep_keys_for_a_user_who_does_not_exist(hub, tmp_path):
    """Keys kept under a name nobody has would be inherited by whoever signs up with it."""
    admin = hub.client()
    ed = keygen(tmp_path / "ed")
    for call in (
        lambda: admin.add_key("k", ed, user="nobody-yet"),
        lambda: admin.generate_key("k", user="nobody-yet"),
        # a name a URL can carry that no account can have (the fuzzer's find: a 500 before)
        lambda: admin.generate_key("k", user="x\n\u00a4 y"),
    ):
        with pytest.raises(WorkbenchError) as e:
            call()
        assert e.value.status == 404 and "No user" in e.value.message, e.value.message
    hub.add_user("nobody-yet")
    assert admin.keys(user="nobody-yet") == []
    # an admin may still manage the keys of a user who exists
    assert admin.add_key("k", ed, user="nobody-yet")["name"] == "k"


def test_a_generated_keys_comment_stays_on_its_line():
    _, public = generate_key_pair("x\n\u00a4 y\t@ai-workbench")
    assert public.count("\n") == 0 and public.endswith(" x_\u00a4_y_@ai-workbench")
    assert parse_public_key(public).key_type == "ed25519"


def keygen_type(path: Path, kind: str, bits: str | None = None) -> str:
    args = ["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(path)]
    if bits:
        args += ["-b", bits]
    subprocess.run(args, check=True, capture_output=True)
    return (path.parent / (path.name + ".pub")).read_text().strip()


def test_ssh_access_endpoint(box, hub):
    access = box.client.instance_ssh(INSTANCE)
    assert access["enabled"] is True
    assert access["username"] == "sshuser.sshbox"
    assert access["port"] == hub.ssh_port
    assert access["host"] == "127.0.0.1"
    assert access["command"] == f"ssh -p {hub.ssh_port} sshuser.sshbox@127.0.0.1"
    assert "User sshuser.sshbox" in access["config"]
    assert f"Port {hub.ssh_port}" in access["config"]
    # the config block works as printed
    config = box.root / "config"
    config.write_text(access["config"] + f"    IdentityFile {box.key}\n    IdentitiesOnly yes\n")
    r = subprocess.run(
        [
            "ssh",
            "-F",
            str(config),
            "-o",
            "BatchMode=yes",
            "-o",
            f"UserKnownHostsFile={box.known_hosts}",
            "-o",
            "StrictHostKeyChecking=accept-new",
            access["alias"],
            "echo via-config",
        ],
        capture_output=True,
        timeout=60,
    )
    assert r.stdout == b"via-config\n", r.stderr
    with pytest.raises(WorkbenchError) as e:
        box.client.instance_ssh("nosuch")
    assert e.value.status == 404


def test_long_output_keeps_order_before_exit(box):
    """Exit status arrives after all output (flow control across both hops)."""
    r = box.ssh("head -c 20000000 /dev/zero; exit 5")
    assert r.returncode == 5
    assert len(r.stdout) == 20_000_000


def test_parallel_sessions(box):
    results = []

    def run(i):
        results.append(box.ssh(f"echo {i}").stdout.strip())

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [b"0", b"1", b"2", b"3"]


def test_ssh_settings_change_on_a_running_instance_without_restart(box):
    """The hub refuses to change a running server's options; the platform keeps the change
    beside them, and the gateway and the API see it at once."""
    client = box.client
    before = client.instance(INSTANCE)
    assert before["state"] == "running"
    mine = "127.0.0.1/32"
    model = client.update_instance(INSTANCE, ssh={"enabled": True, "allowlist": ["10.9.9.0/24"]})
    assert model["ssh"]["allowlist"] == ["10.9.9.0/24"]
    assert model["started"] == before["started"]  # not restarted
    # 127.0.0.1 is not in the allowlist now: the gateway refuses, and its audit says why
    admin, resource = box.hub.client(), f"{box.user}/{INSTANCE}"

    def allowlist_denials(events):
        reason = "127.0.0.1 is not in the instance's allowlist"
        return [e for e in events if e["reason"] == reason]

    denied = {"event": "connectSSH", "outcome": "denied"}
    before_events = admin.audit_events(resource=resource, **denied)
    r = box.ssh("true")
    assert refused(r), (r.returncode, r.stderr)
    events = events_for(admin, resource, expect=len(before_events) + 1, **denied)
    assert len(allowlist_denials(events)) == len(allowlist_denials(before_events)) + 1, events
    model = client.update_instance(INSTANCE, ssh={"enabled": True, "allowlist": [mine]})
    assert box.ssh("echo reachable").stdout.decode().strip() == "reachable"
    model = client.update_instance(INSTANCE, auto_stop={"idle_minutes": 30, "max_hours": 2})
    assert model["auto_stop"] == {"idle_minutes": 30, "max_hours": 2.0}
    assert model["ssh"]["allowlist"] == [mine]  # earlier live changes are kept
    assert client.instance(INSTANCE)["started"] == before["started"]


def test_connections_are_audited(box, hub, tmp_path):
    """One connectSSH event per attempt: success, denied (with the reason the client is not
    told) and failure (instance stopped), read back through the admin's audit API."""
    admin = hub.client()
    resource = f"{box.user}/{INSTANCE}"
    earlier = admin.audit_events(resource=resource, event="connectSSH")
    assert box.ssh("true").returncode == 0
    wrong = tmp_path / "wrong"
    keygen(wrong)
    assert refused(box.ssh("true", key=wrong))
    events = events_for(admin, resource, expect=len(earlier) + 2, event="connectSSH")
    assert len(events) == len(earlier) + 2, events
    # only this test's two attempts: other tests of the module may have connected before
    new = [e for e in events if e not in earlier]
    assert len(new) == 2, new
    by_outcome = {e["outcome"]: e for e in new}
    ok = by_outcome["success"]
    assert ok["actor"] == box.user and ok["resource_type"] == "ssh"
    assert ok["source"] == "127.0.0.1" and ok["details"]["key"] == "laptop"
    denied = by_outcome["denied"]
    assert denied["actor"] == box.user and "no such key" in denied["reason"]
    # an instance that does not exist: the client hears "Permission denied" as for a wrong
    # key, the log says why
    assert refused(box.ssh("true", login=f"{box.user}.ghost"))
    (ghost,) = events_for(admin, f"{box.user}/ghost", event="connectSSH")
    assert ghost["outcome"] == "denied" and ghost["reason"] == "no such instance"
    # a login that names no instance: the actor is the login as given
    assert refused(box.ssh("true", login="no-dot-here"))
    (odd,) = events_for(admin, "no-dot-here", event="connectSSH")
    assert odd["actor"] == "no-dot-here" and odd["outcome"] == "denied"
    # signed in, but the instance is stopped
    create(box.client, "dozing", {"enabled": True}, start=False)
    try:
        assert box.ssh("true", login=f"{box.user}.dozing").returncode == 1
        (failed,) = events_for(admin, f"{box.user}/dozing", event="connectSSH")
        assert failed["outcome"] == "failure" and "'dozing' is stopped" in failed["reason"]
    finally:
        box.client.delete_instance("dozing")


def events_for(admin, resource, expect=1, timeout=10, **filters):
    """The audit events of a resource, waiting until at least `expect` are stored."""
    deadline = time.monotonic() + timeout
    while True:
        events = admin.audit_events(resource=resource, **filters)
        if len(events) >= expect or time.monotonic() > deadline:
            return events
        time.sleep(0.2)
