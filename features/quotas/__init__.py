"""Quotas: limits of users and workspaces on instances, resources and saved images."""

from hub.features import Feature

feature = Feature(
    name="quotas",
    description="Quotas of users and workspaces, checked at every create and start.",
    requires=("images",),
    scopes={"quotas:manage": "Set quotas of users and workspaces."},
    admin_only=["quotas:manage"],
    audit_events={"updateQuota": "A user's or workspace's quota changed."},
    tables=["features.quotas.store"],
    migrations="features.quotas.migrations",
    openapi="features.quotas:openapi.yaml",
    handlers=["features.quotas.api"],
    setup="features.quotas.api:setup",
    hub_config="features.quotas.hub_config:hub_config",
    forget_user="features.quotas.store:forget_user",
)
