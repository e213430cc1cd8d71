"""`workbench keys ...` and `workbench instances ssh` against the real hub."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cli(hub, tmp_path_factory):
    """Run `workbench ...` as a user with their own HOME (where the token is kept)."""
    home = tmp_path_factory.mktemp("home")
    sdk = hub.add_user("keycli")

    def run(*args, expect=0):
        env = {**os.environ, "HOME": str(home), "WORKBENCH_CONFIG": str(hub.config)}
        env.pop("WORKBENCH_TOKEN", None)
        env["WORKBENCH_PASSWORD"] = hub.passwords["keycli"]
        proc = subprocess.run(
            [sys.executable, "-m", "hub.cli", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        assert proc.returncode == expect, proc.stdout + proc.stderr
        return proc.stdout + proc.stderr

    run("login", "--user", "keycli", "--url", hub.url)
    run.sdk = sdk
    return run


def test_keys_from_the_command_line(cli, tmp_path):
    out = tmp_path / "wb_key"
    printed = cli("keys", "generate", "made", "--out", str(out))
    assert "Generated key made" in printed
    assert out.stat().st_mode & 0o777 == 0o600
    assert out.read_text().startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    pub = (tmp_path / "wb_key.pub").read_text()
    assert pub.startswith("ssh-ed25519 ")
    # the files match: ssh-keygen derives the same public key from the private one
    derived = subprocess.run(
        ["ssh-keygen", "-y", "-f", str(out)], capture_output=True, text=True, check=True
    ).stdout
    assert derived.split()[:2] == pub.split()[:2]
    # an existing file is never overwritten, and no key is made for it
    assert "exists: choose another --out file" in cli(
        "keys", "generate", "again", "--out", str(out), expect=2
    )
    assert "does not exist" in cli(
        "keys", "generate", "again", "--out", str(tmp_path / "no" / "k"), expect=2
    )
    shown = cli("keys", "generate", "shown")
    assert "-----BEGIN OPENSSH PRIVATE KEY-----" in shown and "not kept" in shown

    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "laptop")],
        check=True,
    )
    assert "Added key laptop" in cli("keys", "add", "laptop", str(tmp_path / "laptop.pub"))
    listing = cli("keys", "list")
    names = [line.split()[1] for line in listing.splitlines()[1:]]
    assert names == ["made", "shown", "laptop"], listing
    assert "never" in listing and "SHA256:" in listing
    # errors say what to do
    assert "cannot read the public key file" in cli(
        "keys", "add", "x", str(tmp_path / "missing.pub"), expect=2
    )
    assert "is a private key" in cli("keys", "add", "x", str(tmp_path / "laptop"), expect=2)
    assert "error: This key is registered already, as 'laptop'." in cli(
        "keys", "add", "dup", str(tmp_path / "laptop.pub"), expect=1
    )
    assert "No key 'nope'" in cli("keys", "delete", "nope", expect=1)
    # delete by name and by id
    assert "Deleted key laptop" in cli("keys", "delete", "laptop")
    made_id = next(k["id"] for k in cli.sdk.keys() if k["name"] == "made")
    assert "Deleted key made" in cli("keys", "delete", str(made_id))
    assert [k["name"] for k in cli.sdk.keys()] == ["shown"]


def test_instance_ssh_command(cli, hub):
    cli.sdk.api(
        "POST",
        "users/keycli/instances",
        {"name": "clissh", "start": False, "ssh": {"enabled": True, "allowlist": ["10.0.0.0/8"]}},
    )
    try:
        out = cli("instances", "ssh", "clissh")
        assert f"ssh -p {hub.ssh_port} keycli.clissh@127.0.0.1" in out
        assert "Host workbench-clissh" in out and "User keycli.clissh" in out
        assert "Allowed from: 10.0.0.0/8" in out
        cli("instances", "update", "clissh", "--allowlist", "192.0.2.0/24, 198.51.100.7")
        assert cli.sdk.instance_ssh("clissh")["allowlist"] == ["192.0.2.0/24", "198.51.100.7/32"]
        cli("instances", "update", "clissh", "--ssh", "off")
        off = cli("instances", "ssh", "clissh")
        assert "SSH is off for clissh" in off
        assert "`workbench instances update clissh --ssh on`" in off
        assert cli.sdk.instance_ssh("clissh")["allowlist"] == ["192.0.2.0/24", "198.51.100.7/32"]
        assert "is not an IP address or CIDR" in cli(
            "instances", "update", "clissh", "--allowlist", "x", expect=1
        )
        assert "No instance 'nosuch'" in cli("instances", "ssh", "nosuch", expect=1)
    finally:
        cli.sdk.delete_instance("clissh")


def test_create_takes_every_option_it_accepts_and_refuses_the_others(cli):
    """`instances create --ssh on --allowlist ... --idle ... --max-hours ...` creates the
    instance with them all; an option create does not take is refused, nothing created."""
    out = cli("instances", "create", "clix", "--minutes", "5", expect=2)
    assert "takes no --minutes (it is for: extend)" in out
    assert "--allowlist needs --ssh on" in cli(
        "instances", "create", "clix", "--allowlist", "10.0.0.0/8", expect=2
    )
    assert [i["name"] for i in cli.sdk.instances()].count("clix") == 0
    cli(
        *("instances", "create", "clicreate", "--flavor", "cpu.tiny"),
        *("--ssh", "on", "--allowlist", "10.0.0.0/8", "--idle", "30", "--max-hours", "2"),
    )
    try:
        access = cli.sdk.instance_ssh("clicreate")
        assert access["enabled"] is True and access["allowlist"] == ["10.0.0.0/8"]
        model = cli.sdk.instance("clicreate")
        assert model["auto_stop"] == {"idle_minutes": 30, "max_hours": 2}
        assert model["state"] == "running"
    finally:
        cli.sdk.stop_instance("clicreate")
        cli.sdk.delete_instance("clicreate")
