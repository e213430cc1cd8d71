"""Permissions: the platform's custom JupyterHub scopes and the roles that group them."""

from __future__ import annotations

import logging

from sqlalchemy.orm import object_session

log = logging.getLogger("workbench.rbac")

PREFIX = "custom:workbench:"

# every action of the platform, by the scope that allows it
SCOPES = {
    "instances:read": "See your instances and their settings.",
    "instances:create": "Create instances.",
    "instances:update": "Change an instance: image, flavor, SSH and auto-stop settings.",
    "instances:start": "Start instances.",
    "instances:stop": "Stop instances.",
    "instances:delete": "Delete instances with their storage.",
    "images:read": "See preset, own and shared images.",
    "images:save": "Save a running instance as an image.",
    "images:manage": "Share, push, pull and delete own saved images.",
    "keys:manage": "Register, generate and delete SSH keys.",
    "usage:read": "See your own usage and cost.",
    "audit:read": "Query and export the audit log (everyone's actions).",
    "usage:admin": "See everyone's usage and cost.",
    "quotas:manage": "Set quotas of users and workspaces.",
    "workspaces:manage": "Create workspaces and set their members.",
}

READ_ONLY = ["instances:read", "images:read", "usage:read"]
ADMIN_ONLY = ["audit:read", "usage:admin", "quotas:manage", "workspaces:manage"]

# the roles mirror ModelArts' system policies
ROLES = {
    "workbench-full-access": (
        "FullAccess: every platform action, the audit log, usage of all, quotas.",
        list(SCOPES),
    ),
    "workbench-common-operations": (
        "CommonOperations: use instances, images and keys; no administration.",
        [s for s in SCOPES if s not in ADMIN_ONLY],
    ),
    "workbench-viewer": ("Viewer: see instances, images and usage; change nothing.", READ_ONLY),
}

# each role is granted through a JupyterHub group of the same purpose
GROUPS = {
    "workbench-admins": "workbench-full-access",
    "workbench-users": "workbench-common-operations",
    "workbench-viewers": "workbench-viewer",
}
DEFAULT_GROUP = "workbench-users"


def scope(name: str) -> str:
    """The full JupyterHub scope of a platform action ("images:save")."""
    if name not in SCOPES:
        raise KeyError(f"unknown platform scope {name!r}")
    return PREFIX + name


def custom_scopes() -> dict:
    """c.JupyterHub.custom_scopes."""
    return {PREFIX + name: {"description": text} for name, text in SCOPES.items()}


def load_roles(admin_users=()) -> list[dict]:
    """The platform's roles for c.JupyterHub.load_roles."""
    roles = []
    for name, (description, scopes) in ROLES.items():
        groups = [g for g, role in GROUPS.items() if role == name]
        role = {
            "name": name,
            "description": description,
            "scopes": [PREFIX + s for s in scopes],
            "groups": groups,
        }
        if name == "workbench-full-access":
            role["users"] = list(admin_users)
        roles.append(role)
    return roles


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
