"""Attacks on the platform itself: admin accounts, its files on the host, its processes."""

from __future__ import annotations

import os
import signal
import socket
import stat
import time
from pathlib import Path

import pytest
import requests

from tests.platform import running_hub


@pytest.fixture(scope="module")
def plat_hub(tmp_path_factory, engine, base_image, test_catalog):
    """A hub of its own with two configured admins; these tests kill it."""

    def two_admins(h):
        text = h.config.read_text()
        h.config.write_text(text.replace('["admin"]', '["admin", "ops"]'))

    root = tmp_path_factory.mktemp("platform")
    with running_hub(root, engine.url, "platform", catalog=test_catalog, configure=two_admins) as h:
        yield h


@pytest.fixture(scope="module")
def keep(plat_hub) -> str:
    """An instance of admin's, "keep", running through the hub kills of these tests."""
    plat_hub.client().create_instance("keep")
    return "keep"


def test_second_admin_name_cannot_be_claimed_at_sign_up(plat_hub):
    """The attacker signs up as "ops", the second name of admin_users, hoping to be approved
    and made an admin on the spot. Every configured admin has an account from the first
    start, so the sign-up is refused and the attacker's password opens nothing."""
    s = requests.Session()
    s.get(f"{plat_hub.url}/hub/signup")
    password = "attacker-pw-123"
    s.post(
        f"{plat_hub.url}/hub/signup",
        data={
            "username": "ops",
            "signup_password": password,
            "signup_password_confirmation": password,
            "_xsrf": s.cookies.get("_xsrf"),
        },
    )
    login = requests.Session()
    login.get(f"{plat_hub.url}/hub/login")
    r = login.post(
        f"{plat_hub.url}/hub/login",
        data={"username": "ops", "password": password, "_xsrf": login.cookies.get("_xsrf")},
        allow_redirects=False,
    )
    assert r.status_code != 302, "the attacker signed in as the configured admin"
    admin = plat_hub.client()
    ops = admin.hub("GET", "users/ops")
    assert ops["admin"] is True
    # the account exists from the hub's first start, before anyone could sign up
    log = plat_hub.log_path.read_text()
    assert "Created the admin account 'ops'" in log


def test_data_folder_is_private(plat_hub):
    """A local user of the host reads the platform's databases (password and token hashes)
    and secrets from its data folder. The folder is its owner's alone (0700) and the
    databases are 0600."""
    data = plat_hub.root / "data"
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    for name in ("jupyterhub.sqlite", "workbench.sqlite"):
        mode = stat.S_IMODE((data / name).stat().st_mode)
        assert mode & 0o077 == 0, f"{name} is {oct(mode)}"


def service_pids(config: Path) -> dict[str, list[int]]:
    """Pids of the platform API services and SSH gateways run for this hub's settings."""
    found: dict[str, list[int]] = {"api": [], "ssh": []}
    marker = f"WORKBENCH_CONFIG={config}".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            environ = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker not in environ:
            continue
        if b"hub.service.app" in cmdline:
            found["api"].append(int(entry))
        elif b"ssh_gateway" in cmdline:
            found["ssh"].append(int(entry))
    return found


def test_hard_killed_hub_leaves_no_orphaned_services(plat_hub, keep):
    """The hub is killed with SIGKILL (an OOM kill, a crash) while an instance runs. Its
    services must not live on with old code and settings holding their ports: after a new
    start exactly one API service and one SSH gateway run, the new ones, and they answer;
    the instance kept running."""
    before = service_pids(plat_hub.config)
    assert len(before["api"]) == 1 and len(before["ssh"]) == 1, before

    os.kill(plat_hub.proc.pid, signal.SIGKILL)
    plat_hub.proc.wait()
    plat_hub.proc = None
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(service_pids(plat_hub.config).values()):
        time.sleep(0.2)
    assert not any(service_pids(plat_hub.config).values()), "services outlived the hub"

    plat_hub.start()
    after = service_pids(plat_hub.config)
    assert len(after["api"]) == 1 and len(after["ssh"]) == 1, after
    assert not set(after["api"] + after["ssh"]) & set(before["api"] + before["ssh"])
    admin = plat_hub.client()
    model = admin.instance(keep)
    assert model["state"] == "running"
    r = requests.get(
        f"{plat_hub.url}{model['url']}api/status",
        headers={"Authorization": f"token {admin.token}"},
        timeout=30,
    )
    assert r.status_code == 200
    # the new gateway holds the SSH port: it answers with its banner
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", plat_hub.ssh_port), timeout=10) as s:
                assert s.recv(64).startswith(b"SSH-2.0-")
                break
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def test_orphan_left_running_is_reclaimed_at_the_next_start(plat_hub, keep):
    """Where the hub died and its service missed the signal (a service stuck, a platform
    without parent-death signals), the next hub's service ends the predecessor recorded in
    its pid file before taking the port."""
    before = service_pids(plat_hub.config)
    (old_api,) = before["api"]
    # the old service ignores its parent's death: stop it from noticing by freezing it
    os.kill(old_api, signal.SIGSTOP)
    try:
        os.kill(plat_hub.proc.pid, signal.SIGKILL)
        plat_hub.proc.wait()
        plat_hub.proc = None
        plat_hub.start()
    finally:
        try:
            os.kill(old_api, signal.SIGCONT)
        except ProcessLookupError:
            pass
    after = service_pids(plat_hub.config)
    assert old_api not in after["api"]
    assert len(after["api"]) == 1
    assert plat_hub.client().instance(keep)["state"] == "running"
