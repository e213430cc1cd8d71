"""The `workbench` command against the real hub: sign in, manage instances, clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from workbench.times import parse_time

from tests.platform import ADMIN_PASSWORD

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cli(hub, tmp_path_factory):
    """Run `workbench ...` as frank, with his own HOME (where the token is kept)."""
    hub.add_user("frank")
    return signed_in_cli(hub, tmp_path_factory.mktemp("home"), "frank", hub.passwords["frank"])


def signed_in_cli(hub, home, user: str, password: str):
    """`workbench ...` as user, signed in once with `workbench login`."""

    def run(*args, password=None, expect=0):
        env = {**os.environ, "HOME": str(home), "WORKBENCH_CONFIG": str(hub.config)}
        env.pop("WORKBENCH_TOKEN", None)
        if password:
            env["WORKBENCH_PASSWORD"] = password
        proc = subprocess.run(
            [sys.executable, "-m", "hub.cli", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        assert proc.returncode == expect, proc.stdout + proc.stderr
        return proc.stdout + proc.stderr

    run("login", "--user", user, "--url", hub.url, password=password)
    return run


def test_instance_lifecycle_from_the_command_line(cli):
    out = cli("instances", "create", "cli1", "--flavor", "cpu.tiny", "--storage", "1")
    assert "cli1" in out and "running" in out and "Open: http" in out
    assert "cpu.tiny" in cli("instances", "list")
    out = cli("instances", "switch", "cli1", "--flavor", "cpu.small")
    assert "cpu.small" in out and "running" in out
    assert "stopped" in cli("instances", "stop", "cli1")
    assert "Deleted instance cli1" in cli("instances", "delete", "cli1")
    assert "cli1" not in cli("instances", "list")


def test_update_extend_and_audit_export_from_the_command_line(cli, hub, tmp_path):
    out = cli(
        "instances", "create", "cli3", "--flavor", "cpu.tiny", "--storage", "1",
        "--idle", "0", "--max-hours", "1",
    )  # fmt: skip
    assert "(max runtime) unless extended" in out, out
    frank = hub.client("frank", hub.passwords["frank"])
    first = frank.instance("cli3")
    out = cli("instances", "extend", "cli3", "--minutes", "30")
    assert "running" in out and "(max runtime) unless extended" in out, out
    model = frank.instance("cli3")
    assert model["auto_stop"]["max_hours"] == pytest.approx(1.5)
    moved = parse_time(model["stops_at"]) - parse_time(first["stops_at"])
    assert moved.total_seconds() == pytest.approx(30 * 60, abs=1)
    cli("instances", "update", "cli3", "--idle", "45", "--description", "from a shell")
    model = frank.instance("cli3")
    assert model["auto_stop"] == {"idle_minutes": 45, "max_hours": pytest.approx(1.5)}
    assert (model["description"], model["started"]) == ("from a shell", first["started"])
    cli("instances", "stop", "cli3")
    cli("instances", "delete", "cli3")

    # the audit log, as JSON lines, for administrators only
    out = cli("audit", "export", "--resource", "frank/cli3", expect=1)
    assert "error: Permission denied: this needs custom:workbench:audit:read" in out, out
    admin = signed_in_cli(hub, tmp_path, "admin", ADMIN_PASSWORD)
    out = admin("audit", "export", "--resource", "frank/cli3")
    events = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert {e["resource_id"] for e in events} == {"frank/cli3"}
    assert {"createNotebook", "updateNotebook", "stopNotebook", "deleteNotebook"} <= {
        e["event"] for e in events
    }
    assert all(e["actor"] == "frank" and e["outcome"] == "success" for e in events), events


def test_command_line_errors_say_what_to_do(cli, tmp_path):
    out = cli("instances", "create", "cli2", "--flavor", "cpu.giant", expect=1)
    assert "error: Unknown flavor 'cpu.giant'" in out
    out = cli("instances", "switch", "cli2", expect=2)
    assert "--flavor" in out
    out = cli("instances", "stop", "nope", expect=1)
    assert "No instance 'nope'" in out
    bad = tmp_path / "bad.toml"
    bad.write_text("[workbench]\nbind_ulr = 1\n")
    out = cli("--config", str(bad), "images", "list", expect=2)
    assert "Unknown setting(s) in [workbench]" in out


def test_login_with_a_wrong_password_is_refused(cli, hub):
    out = cli("login", "--user", "frank", "--url", hub.url, password="wrong-password", expect=1)
    assert "wrong user name or password" in out


def test_images_list_shows_what_is_built(cli):
    out = cli("images", "list")
    assert "python" in out and "ready" in out
    assert "missing" in out and "not built" in out


def test_images_list_never_starts_an_engine_of_its_own(tmp_path):
    """`workbench images list` with settings whose engine does not run (Podman installed)
    uses an engine that answers or says none does; it starts none, so no Podman service is
    left behind with a data folder of its own."""
    data = tmp_path / "data"
    settings = tmp_path / "workbench.toml"
    settings.write_text(f'[workbench]\ndata_dir = "{data}"\n')
    env = {**os.environ, "WORKBENCH_CONFIG": str(settings)}
    env.pop("DOCKER_HOST", None)
    proc = subprocess.run(
        [sys.executable, "-m", "hub.cli", "images", "list"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    if proc.returncode:
        assert "No container engine answers" in proc.stderr, proc.stdout + proc.stderr
    leftovers = subprocess.run(
        ["pgrep", "-f", f"podman system service.*{data}"], capture_output=True, text=True
    )
    assert leftovers.stdout == "", "the command left a Podman service running"
    assert not (data / "podman.sock").exists()


def test_list_columns_fit_long_saved_image_names():
    """`workbench instances list` (and the image and key lists) size each column to its
    longest cell: a long saved image name does not push the other columns out of line."""
    from hub.cli import format_table

    long_image = "saved:alice/a-very-long-image-name-for-bert-finetuning:v12"
    text = format_table(
        ["NAME", "STATE", "IMAGE", "FLAVOR", "STORAGE"],
        [
            ["nb1", "running", long_image, "cpu.small", "10 GiB"],
            ["x", "stopped", "python", "cpu.large", "1 GiB"],
        ],
    )
    header, first, second = text.splitlines()
    # every row's FLAVOR cell starts where the header's does, after the longest image
    column = header.index("FLAVOR")
    assert first[column:].startswith("cpu.small") and second[column:].startswith("cpu.large")
    assert column > first.index(long_image) + len(long_image)
    # right-aligned sizes end at the same place
    sizes = format_table(
        ["NAME", "SIZE", "OWNER"], [["a", "5 MB", "x"], ["b", "120 MB", "y"]], right=(1,)
    )
    ends = {
        line.index(" x") if " x" in line else line.index(" y") for line in sizes.splitlines()[1:]
    }
    assert len(ends) == 1
