"""What the instances feature sets in the hub's configuration (read at every hub start)."""

from __future__ import annotations


def hub_config(c, hub) -> None:
    """Options changed on a running instance are folded into its options at every stop and
    dropped when it is deleted, whichever path (hub pages, hub API, platform API) does it."""
    hub.spawner.live_options = hub.shared("features.instances.live_options:LiveOptionsStore")
