"""What the jobs feature sets in the hub's configuration (read at every hub start)."""

from __future__ import annotations


def hub_config(c, hub) -> None:
    """Each instance shows its owner's jobs (code, outputs, checkpoints, logs) read-only at
    <work folder>/jobs."""
    if hub.settings.backend == "docker":
        # (a lazy value of the configuration: update() merges with what others set)
        hub.spawner.user_folders.update({"jobs": str(hub.data / "jobs" / "{user}")})
