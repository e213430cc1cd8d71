"""What the workspaces feature sets in the hub's configuration (read at every hub start)."""

from __future__ import annotations


def hub_config(c, hub) -> None:
    """Spawners check that an instance's workspace has its owner as a member."""
    hub.spawner.workspace_members = hub.shared("features.workspaces.store:WorkspaceStore")
