"""Which running container a save takes when the spawner kept no id (real Podman containers):
only the one with both the user's and the instance's labels, on this platform."""

from __future__ import annotations

import uuid

from images.registry import EngineImages


def test_a_save_never_finds_another_users_container_of_the_same_name(engine, labelled_containers):
    """bob's "nb" and alice's "other" run; alice's "nb" does not: nothing is found for it
    (Podman lists containers with any one of several labels). Once it runs, it is found."""
    prefix = f"sv{uuid.uuid4().hex[:6]}"
    images = EngineImages(engine.url)
    wanted = {"ai-workbench.user": "alice", "ai-workbench.instance": "nb"}
    labelled_containers(f"{prefix}-bob--nb", "bob", "nb")
    labelled_containers(f"{prefix}-alice--other", "alice", "other")
    assert images.find_container(f"{prefix}-", wanted) is None
    labelled_containers(f"{prefix}-alice--nb", "alice", "nb")
    assert images.find_container(f"{prefix}-", wanted).name == f"{prefix}-alice--nb"
