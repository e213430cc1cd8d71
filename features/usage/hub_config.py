"""What the usage feature sets in the hub's configuration (read at every hub start)."""

from __future__ import annotations


def hub_config(c, hub) -> None:
    """Spawners record each running period of an instance."""
    hub.spawner.usage_recorder = hub.shared("features.usage.store:UsageRecorder")
