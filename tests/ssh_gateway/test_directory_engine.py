"""Where the gateway finds an instance's sshd on the engine (real Podman containers): only in
that user's instance of that name, on this platform."""

from __future__ import annotations

import uuid

from ssh_gateway.directory import Directory


def test_another_users_instance_of_the_same_name_is_never_the_target(engine, labelled_containers):
    """bob's "nb" runs, alice's "nb" does not: alice's login finds no address (Podman lists
    containers with any one of several labels, so a label filter alone would give bob's).
    Once alice's runs, hers is found; another platform's on the same engine never is."""
    prefix = f"gw{uuid.uuid4().hex[:6]}"
    directory = Directory(None, None, backend="docker", engine_url=engine.url, prefix=prefix)
    labelled_containers(f"{prefix}-bob--nb", "bob", "nb")
    labelled_containers(f"{prefix}-alice--other", "alice", "other")
    labelled_containers(f"x{prefix}-alice--nb", "alice", "nb")  # another platform's
    assert directory._container_ip("alice", "nb") is None
    mine = labelled_containers(f"{prefix}-alice--nb", "alice", "nb")
    assert directory._container_ip("alice", "nb") == mine
