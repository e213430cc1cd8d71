"""Models and inference: versioned models, online services on kserve's server, batch runs."""

from hub.features import Feature

feature = Feature(
    name="inference",
    description="Models with versions, online services with canary, keys and metrics, batch runs.",
    requires=("instances", "quotas", "usage", "workspaces", "jobs"),
    scopes={
        "models:read": "See your models and your workspaces' models, their versions and files.",
        "models:write": "Register, update and delete your models and their versions.",
        "services:read": "See your services, their metrics and logs.",
        "services:write": "Deploy, change, start, stop and delete services; manage their keys.",
        "services:call": "Call the services you own and those shared with your workspaces.",
    },
    grants={
        "viewer": ["models:read", "services:read", "services:call"],
        "server": [
            "models:read",
            "models:write",
            "services:read",
            "services:write",
            "services:call",
        ],
    },
    audit_events={
        "addModel": "A model or a new version of it was registered.",
        "updateModel": "A model's description changed.",
        "deleteModel": "A model or one of its versions was deleted.",
        "addService": "A model was deployed as an online service.",
        "updateService": "A service's predictors, traffic split or settings changed.",
        "deleteService": "A service was deleted.",
        "startOrStopService": "A service was started or stopped.",
        "addAkSk": "An access key of a service was created.",
        "deleteAkSk": "An access key of a service was deleted.",
    },
    tables=["inference_bridge.store"],
    migrations="inference_bridge.migrations",
    openapi="inference_bridge:openapi.yaml",
    handlers=[
        "inference_bridge.models_api",
        "inference_bridge.services_api",
        "inference_bridge.batch_api",
        "inference_bridge.pages",
    ],
    setup="inference_bridge.setup:setup",
    settings="inference_bridge.settings:InferenceSettings",
    forget_user="inference_bridge.store:forget_user",
)
