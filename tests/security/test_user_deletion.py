"""A deleted user leaves nothing behind: an attacker who signs up with the name of a deleted
account must inherit none of its keys, images, shares, memberships, quota or instances, and
the deleted user's own open SSH sessions end with the account.

Real hub, real instances and saves, OpenSSH's ssh, the hub's REST API as an admin uses it.
"""

from __future__ import annotations

import subprocess
import time

import pytest
from workbench import WorkbenchError

from tests.ssh_gateway.test_ssh_gateway import Box, create, keygen

HEIR = "heir"
DONOR = "donor"


def saved(client, name: str, tag: str, share_with: list[str]) -> str:
    """Save the running instance "src" as name:tag, shared with some users; its image name."""
    status = client.save_instance("src", name, tag, wait=True)
    client.share_image(name, tag, users=share_with)
    return status["image"]["name"]


def image_names(client) -> set[str]:
    return {i["name"] for i in client.images()}


def test_new_account_with_a_deleted_name_inherits_nothing(hub, tmp_path):
    """An admin deletes a user who had an SSH key, a saved image shared with another user,
    an image shared with them, a workspace membership, a quota and a running instance with
    an open SSH session. The session must end, and an attacker who signs up with the same
    name must see and use none of it: the old key cannot reach the new account's instance."""
    admin = hub.client()
    heir, donor = hub.add_user(HEIR), hub.add_user(DONOR)
    admin.api("POST", "workspaces", {"name": "heirloom", "members": [HEIR]})
    admin.api("PUT", f"quotas/users/{HEIR}", {"limits": {"instances": 4}})
    box = Box(hub, tmp_path, HEIR, "src")
    heir.add_key("laptop", keygen(box.key))
    create(heir, "src", {"enabled": True, "allowlist": []})
    donor.api("POST", f"users/{DONOR}/instances", {"name": "src", "flavor": "cpu.tiny"})
    # one after the other: two engine commits at once can fail to pause a container
    images = {
        "heirloom-img": saved(heir, "heirloom-img", "v1", [DONOR]),
        "gift": saved(donor, "gift", "v1", [HEIR]),
    }
    donor.stop_instance("src")
    assert images["gift"] in image_names(heir)
    assert images["heirloom-img"] in image_names(donor)
    assert "heirloom" in [w["name"] for w in heir.api("GET", "workspaces")]

    # the deleted user's shell over SSH, open while the admin deletes the account
    args = ["ssh", *box.ssh_args(), "-p", str(hub.ssh_port), "-tt", f"{box.login}@127.0.0.1"]
    shell = subprocess.Popen(
        args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        shell.stdin.write(b"echo READY-$((40+2))\n")
        shell.stdin.flush()
        out = b""
        deadline = time.monotonic() + 60
        while b"READY-42" not in out and time.monotonic() < deadline:
            out += shell.stdout.read1(4096)
        assert b"READY-42" in out, out
        admin.hub("DELETE", f"users/{HEIR}")
        deleted = time.monotonic()
        shell.wait(15)
        assert time.monotonic() - deleted < 12
    finally:
        if shell.poll() is None:
            shell.kill()
        shell.wait(10)

    # the attacker signs up with the freed name
    heir2 = hub.add_user(HEIR)
    assert heir2.keys() == []
    assert heir2.instances() == []
    mine = {i["name"] for i in heir2.images() if i.get("owner") == HEIR}
    assert mine == set(), mine
    assert images["gift"] not in image_names(heir2)
    assert images["heirloom-img"] not in image_names(donor)
    with pytest.raises(WorkbenchError) as e:
        heir2.api("POST", f"users/{HEIR}/instances", {"name": "x", "image": images["gift"]})
    assert e.value.status == 400 and "not shared with you" in e.value.message, e.value.message
    assert [w["name"] for w in heir2.api("GET", "workspaces")] == ["default"]
    assert HEIR not in admin.api("GET", "workspaces/heirloom")["members"]
    fresh = admin.api("GET", f"quotas/users/{DONOR}")["limits"]
    assert admin.api("GET", f"quotas/users/{HEIR}")["limits"] == fresh
    # the old key cannot reach the new account's instance of the same name
    create(heir2, "src", {"enabled": True, "allowlist": []})
    try:
        r = box.ssh("echo", "inherited")
        assert r.returncode == 255 and b"Permission denied" in r.stderr, (r.stdout, r.stderr)
    finally:
        heir2.stop_instance("src")
        heir2.delete_instance("src")
        donor.delete_instance("src")
        donor.delete_image("gift", "v1")
