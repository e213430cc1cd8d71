"""Usage metering: each running period of an instance, priced by flavor."""

from hub.features import Feature

feature = Feature(
    name="usage",
    description="Usage and cost of instances, per user and workspace.",
    scopes={
        "usage:read": "See your own usage and cost.",
        "usage:admin": "See everyone's usage and cost.",
    },
    grants={"viewer": ["usage:read"]},
    admin_only=["usage:admin"],
    tables=["features.usage.store"],
    migrations="features.usage.migrations",
    openapi="features.usage:openapi.yaml",
    handlers=["features.usage.api"],
    hub_config="features.usage.hub_config:hub_config",
)
