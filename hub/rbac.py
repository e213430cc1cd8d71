"""Permissions: the platform's custom JupyterHub scopes and the roles that group them."""

from __future__ import annotations

import logging

from sqlalchemy.orm import object_session

log = logging.getLogger("workbench.rbac")

PREFIX = "custom:workbench:"

# the kit's own actions; each feature declares its own (hub/features.py)
CORE_SCOPES = {"audit:read": "Query and export the audit log (everyone's actions)."}
CORE_ADMIN_ONLY = ("audit:read",)

# the roles mirror ModelArts' system policies
ROLES = {
    "workbench-full-access": (
        "FullAccess: every platform action, the audit log, usage of all, quotas."
    ),
    "workbench-common-operations": (
        "CommonOperations: use instances, images and keys; no administration."
    ),
    "workbench-viewer": "Viewer: see instances, images and usage; change nothing.",
}

# each role is granted through a JupyterHub group of the same purpose
GROUPS = {
    "workbench-admins": "workbench-full-access",
    "workbench-users": "workbench-common-operations",
    "workbench-viewers": "workbench-viewer",
}
DEFAULT_GROUP = "workbench-users"


def _features(features=None):
    if features is None:
        from .features import load_features

        features = load_features()
    return features


def all_scopes(features=None) -> dict[str, str]:
    """Every platform action (the kit's and each feature's), with what it allows."""
    scopes = dict(CORE_SCOPES)
    for feature in _features(features):
        scopes.update(feature.scopes)
    return scopes


def admin_only(features=None) -> set[str]:
    """The actions only the full-access role holds."""
    only = set(CORE_ADMIN_ONLY)
    for feature in _features(features):
        only.update(feature.admin_only)
    return only


def granted(role: str, features=None) -> list[str]:
    """The actions a feature-granted role ("viewer", "server") holds."""
    return [a for f in _features(features) for a in f.grants.get(role, ())]


def scope_description(name: str) -> str:
    """What a platform action allows."""
    return all_scopes().get(name, name)


def scope(name: str) -> str:
    """The full JupyterHub scope of a platform action ("images:save")."""
    if name not in all_scopes():
        raise KeyError(f"unknown platform scope {name!r}")
    return PREFIX + name


def custom_scopes(features=None) -> dict:
    """c.JupyterHub.custom_scopes."""
    return {PREFIX + name: {"description": text} for name, text in all_scopes(features).items()}


def role_scopes(features=None) -> dict[str, list[str]]:
    """The platform actions of each platform role."""
    everything = list(all_scopes(features))
    only = admin_only(features)
    return {
        "workbench-full-access": everything,
        "workbench-common-operations": [s for s in everything if s not in only],
        "workbench-viewer": granted("viewer", features),
    }


def load_roles(admin_users=(), features=None) -> list[dict]:
    """The platform's roles for c.JupyterHub.load_roles."""
    roles = []
    for name, scopes in role_scopes(features).items():
        groups = [g for g, role in GROUPS.items() if role == name]
        role = {
            "name": name,
            "description": ROLES[name],
            "scopes": [PREFIX + s for s in scopes],
            "groups": groups,
        }
        if name == "workbench-full-access":
            role["users"] = list(admin_users)
        roles.append(role)
    return roles


def server_scopes(features=None) -> list[str]:
    """Platform scopes of every instance's own server token (its panel and its SDK)."""
    return [PREFIX + s for s in granted("server", features)]


def load_groups() -> dict:
    """c.JupyterHub.load_groups: the role groups exist, members are kept as they are."""
    return {group: {"users": []} for group in GROUPS}


def has_scope(user_model: dict | None, name: str) -> bool:
    """Whether a hub user model (with its token's scopes) allows a platform action."""
    if not user_model:
        return False
    return scope(name) in set(user_model.get("scopes") or ())


def add_to_default_group(user) -> bool:
    """Put a user who is in none of the platform's groups into the default one.

    Called from the authenticator's add_user hook: at first sign-in, when an admin adds a
    user, and for every user at each hub start; a user an admin moved to another platform
    group stays there. Returns whether the user was added.
    """
    from jupyterhub import orm

    orm_user = getattr(user, "orm_user", user)
    session = object_session(orm_user)
    if session is None:
        return False
    if {g.name for g in orm_user.groups} & set(GROUPS):
        return False
    group = orm.Group.find(session, DEFAULT_GROUP)
    if group is None:
        group = orm.Group(name=DEFAULT_GROUP)
        session.add(group)
    orm_user.groups.append(group)
    session.commit()
    log.info("user %s joined group %s", orm_user.name, DEFAULT_GROUP)
    return True
