"""Training jobs: a notebook's code sent off to run on bigger flavors or several nodes."""

from hub.features import Feature

feature = Feature(
    name="jobs",
    description="Training jobs: single-node and distributed, with logs, metrics and restarts.",
    requires=("instances", "quotas", "usage", "workspaces"),
    scopes={
        "jobs:read": "See your jobs and your workspaces' jobs, their logs, metrics and files.",
        "jobs:submit": "Submit training jobs and re-run them.",
        "jobs:manage": "Stop, delete and describe your training jobs.",
    },
    grants={
        "viewer": ["jobs:read"],
        "server": ["jobs:read", "jobs:submit", "jobs:manage"],
    },
    audit_events={
        "createModelArtsTrainJob": "A training job was submitted.",
        "createModelArtsTrainVersion": "A training job was re-run as a new version.",
        "stopModelArtsTrainVersion": "A version of a training job was stopped.",
        "updateModelArtsTrainDesc": "A training job's description changed.",
        "deleteModelArtsTrainVersion": "A version of a training job was deleted.",
        "deleteModelArtsTrainJob": "A training job and all its versions were deleted.",
    },
    tables=["training_bridge.store"],
    migrations="training_bridge.migrations",
    openapi="training_bridge:openapi.yaml",
    handlers=["training_bridge.api", "training_bridge.pages"],
    setup="training_bridge.setup:setup",
    hub_config="training_bridge.hub_config:hub_config",
    settings="training_bridge.settings:JobSettings",
    forget_user="training_bridge.store:forget_user",
)
