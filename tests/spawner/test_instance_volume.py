"""Finding an instance's storage volume on a shared engine (real Podman): by the platform's
own name for it, never by labels alone."""

from __future__ import annotations

import uuid

import docker
import pytest
from dockerspawner import DockerSpawner

from spawner.container import (
    find_instance_volume,
    instance_object_name,
    make_labels,
    make_volume_name,
)
from spawner.options import InstanceSpec


def test_the_name_is_the_one_the_spawner_gives():
    """The same escaping and template as DockerSpawner's named servers."""
    for owner, instance in (("alice", "nb"), ("lc-alice", "crash1"), ("A.B@x.org", "My.NB")):
        expected = f"p-{DockerSpawner._escape(owner)}--{DockerSpawner._escape(instance)}"
        assert instance_object_name("p", owner, instance) == expected


@pytest.fixture
def api(engine):
    client = docker.APIClient(base_url=engine.url, timeout=60)
    made = []
    yield client, made
    for name in made:
        try:
            client.remove_volume(name, force=True)
        except docker.errors.NotFound:
            pass


def make_volume(api, made, prefix: str, owner: str, instance: str) -> str:
    name = make_volume_name(instance_object_name(prefix, owner, instance))
    labels = make_labels(
        owner, instance, InstanceSpec(image="python", flavor="cpu.small", storage_gib=1)
    )
    api.create_volume(name, labels=labels)
    made.append(name)
    return name


def test_another_platforms_volume_with_the_same_labels_is_never_taken(api):
    """Two platforms on one engine (or one that ran before) both have alice's "nb": each
    finds its own, and one without it finds none, not the other's."""
    client, made = api
    ours, theirs = f"vt{uuid.uuid4().hex[:6]}", f"vt{uuid.uuid4().hex[:6]}"
    other = make_volume(client, made, theirs, "alice", "nb")
    assert find_instance_volume(client, ours, "alice", "nb") is None
    mine = make_volume(client, made, ours, "alice", "nb")
    assert find_instance_volume(client, ours, "alice", "nb") == mine
    assert find_instance_volume(client, theirs, "alice", "nb") == other
    assert find_instance_volume(client, ours, "alice", "other") is None


def test_a_volume_of_that_name_with_other_labels_is_not_taken(api):
    """A volume named like the instance's but labelled for someone else is not its storage."""
    client, made = api
    prefix = f"vt{uuid.uuid4().hex[:6]}"
    name = make_volume_name(instance_object_name(prefix, "alice", "nb"))
    client.create_volume(name, labels={"ai-workbench.user": "mallory"})
    made.append(name)
    assert find_instance_volume(client, prefix, "alice", "nb") is None
