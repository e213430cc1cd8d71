"""Instances: users' notebook instances (named servers), their lifecycle, auto-stop and status."""

from hub.features import Feature

feature = Feature(
    name="instances",
    description="Notebook instances: create, start, stop, switch flavor or image, delete.",
    requires=("images", "quotas"),
    scopes={
        "instances:read": "See your instances and their settings.",
        "instances:create": "Create instances.",
        "instances:update": "Change an instance: image, flavor, SSH and auto-stop settings.",
        "instances:start": "Start instances.",
        "instances:stop": "Stop instances.",
        "instances:delete": "Delete instances with their storage.",
    },
    grants={
        "viewer": ["instances:read"],
        "server": ["instances:read", "instances:update", "instances:stop"],
    },
    audit_events={
        "createNotebook": "An instance was created.",
        "updateNotebook": "An instance's image, flavor or settings changed.",
        "deleteNotebook": "An instance was deleted with its storage.",
        "startNotebook": "An instance was started.",
        "stopNotebook": "An instance was stopped.",
        "openNotebook": "An instance's JupyterLab was opened.",
    },
    tables=["features.instances.live_options"],
    migrations="features.instances.migrations",
    openapi="features.instances:openapi.yaml",
    handlers=["features.instances.api", "features.instances.lifecycle"],
    setup="features.instances.setup:setup",
    hub_config="features.instances.hub_config:hub_config",
    forget_user="features.instances.live_options:forget_user",
)
