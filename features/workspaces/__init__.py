"""Workspaces: teams that share instances and quotas."""

from hub.features import Feature

feature = Feature(
    name="workspaces",
    description="Workspaces: members, their instances and the workspace's quota.",
    requires=("instances", "quotas"),
    scopes={"workspaces:manage": "Create workspaces and set their members."},
    admin_only=["workspaces:manage"],
    audit_events={
        "createWorkspace": "A workspace was created.",
        "updateWorkspace": "A workspace's members changed.",
        "deleteWorkspace": "A workspace was deleted.",
    },
    tables=["features.workspaces.store"],
    migrations="features.workspaces.migrations",
    openapi="features.workspaces:openapi.yaml",
    handlers=["features.workspaces.api"],
    setup="features.workspaces.api:setup",
    hub_config="features.workspaces.hub_config:hub_config",
    forget_user="features.workspaces.store:forget_user",
)
