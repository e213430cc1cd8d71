"""What the images feature sets in the hub's configuration (read at every hub start)."""

from __future__ import annotations


def hub_config(c, hub) -> None:
    """Spawners resolve saved images (and their owners' shares) from the platform database."""
    hub.spawner.saved_images = hub.shared("features.images.store:SavedImageStore")
