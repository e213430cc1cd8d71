"""The first start of a new platform: the admin account, its password printed once, and
`workbench admin-password` for a forgotten one. A real hub of its own, from an empty data
folder, with no admin password in its settings."""

from __future__ import annotations

import re
import secrets
import subprocess
import sys

import pytest
import requests

from tests.platform import ADMIN_PASSWORD, Hub, remove_engine_objects

pytestmark = pytest.mark.integration

BANNER = re.compile(
    r"First start: created the admin account\.\n    user:     admin\n    password: (\S+)\n"
)


def signs_in(hub: Hub, user: str, password: str) -> bool:
    """Whether the login page takes this user and password (it redirects on success)."""
    s = requests.Session()
    s.get(f"{hub.url}/hub/login")
    r = s.post(
        f"{hub.url}/hub/login",
        data={"username": user, "password": password, "_xsrf": s.cookies.get("_xsrf")},
        allow_redirects=False,
    )
    return r.status_code == 302


def admin_password(hub: Hub, *args: str) -> subprocess.CompletedProcess:
    """`workbench admin-password ARGS` with the hub's settings."""
    return subprocess.run(
        [sys.executable, "-m", "hub.cli", "admin-password", *args],
        env={**hub.env, "WORKBENCH_CONFIG": str(hub.config)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_first_start_prints_the_admin_password_once_and_it_can_be_reset(
    engine, base_image, tmp_path, monkeypatch
):
    monkeypatch.delenv("WORKBENCH_ADMIN_PASSWORD", raising=False)
    hub = Hub(tmp_path, engine_url=engine.url)
    settings = hub.config.read_text()
    hub.config.write_text(settings.replace(f'admin_password = "{ADMIN_PASSWORD}"\n', ""))
    hub.start()
    try:
        [password] = BANNER.findall(hub.log_path.read_text())
        assert signs_in(hub, "admin", password)
        assert not signs_in(hub, "admin", password + "x")
        # the next start keeps the account and prints no password
        hub.restart()
        assert BANNER.findall(hub.log_path.read_text()) == [password]
        assert signs_in(hub, "admin", password)

        # forgotten: a new one, set while the platform runs
        new = "new-" + secrets.token_hex(8)
        done = admin_password(hub, "--password", new)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "Password of 'admin' set." in done.stdout
        assert signs_in(hub, "admin", new)
        assert not signs_in(hub, "admin", password)
        # a short one is refused, and the password stays as it was
        refused = admin_password(hub, "--password", "short")
        assert refused.returncode == 1
        assert "at least 8 characters" in refused.stderr
        assert signs_in(hub, "admin", new)
    finally:
        hub.stop()
        remove_engine_objects(engine.url, hub.prefix)
        print(f"\n--- first start hub log tail ---\n{hub.log_tail(40)}")
