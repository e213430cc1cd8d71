"""Where the gateway finds an instance's sshd on the engine (real Podman containers): only in
that user's instance of that name, on this platform."""

from __future__ import annotations

import uuid

import docker
import pytest

from ssh_gateway.directory import Directory


@pytest.fixture
def containers(engine, base_image):
    """Start containers named and labelled like instances; removed after."""
    client = docker.APIClient(base_url=engine.url, timeout=60)
    made = []

    def start(name: str, user: str, instance: str) -> str:
        container = client.create_container(
            base_image.ref,
            command=["sleep", "300"],
            name=name,
            labels={"ai-workbench.user": user, "ai-workbench.instance": instance},
        )
        made.append(container["Id"])
        client.start(container["Id"])
        networks = client.inspect_container(container["Id"])["NetworkSettings"]["Networks"]
        return next(n["IPAddress"] for n in networks.values() if n.get("IPAddress"))

    yield start
    for container in made:
        client.remove_container(container, force=True)


def test_another_users_instance_of_the_same_name_is_never_the_target(engine, containers):
    """bob's "nb" runs, alice's "nb" does not: alice's login finds no address (Podman lists
    containers with any one of several labels, so a label filter alone would give bob's).
    Once alice's runs, hers is found; another platform's on the same engine never is."""
    prefix = f"gw{uuid.uuid4().hex[:6]}"
    directory = Directory(None, None, backend="docker", engine_url=engine.url, prefix=prefix)
    containers(f"{prefix}-bob--nb", "bob", "nb")
    containers(f"{prefix}-alice--other", "alice", "other")
    containers(f"x{prefix}-alice--nb", "alice", "nb")  # another platform's
    assert directory._container_ip("alice", "nb") is None
    mine = containers(f"{prefix}-alice--nb", "alice", "nb")
    assert directory._container_ip("alice", "nb") == mine
