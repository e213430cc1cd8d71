"""Platform features and how the platform collects them: each declares what it adds in one place.

A feature (instances, images, SSH keys, workspaces, and next jobs, models, services and
datasets) lives in a folder of its own and declares there a `Feature`: its API routes, its
tables and their migrations, its custom scopes and which roles grant them, its audit event
names, its settings table, the hub-managed services it runs and what it sets in the hub's
configuration. The platform finds features through the `ai_workbench.features` entry point
group (one line each in setup.cfg, or in any installed distribution), so nothing in hub/
names a feature.

Everything a feature points to is a module or "module:attribute" string, loaded only where
it is used: the hub's configuration reads scopes and services without importing any
feature's handlers.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import import_module
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

log = logging.getLogger("workbench.features")

ENTRY_POINT_GROUP = "ai_workbench.features"

# the roles a feature grants chosen scopes to (hub/rbac.py): read-only users, and the
# token of each instance's own server (what the panel and the SDK inside it may do); the
# full-access role holds every scope, and common-operations every one not admin_only
ROLES = ("viewer", "server")

NAME = re.compile(r"^[a-z][a-z0-9_]*$")
ACTION = re.compile(r"^[a-z][a-z0-9_-]*:[a-z][a-z0-9_-]*$")
# ModelArts' event names: camelCase ("createModelArtsTrainVersion"), and snake_case for the
# AI Gallery's ("create_content", "cancel_like_content")
EVENT = re.compile(r"^[a-z][A-Za-z]*(_[a-z][A-Za-z]*)*$")


class FeatureError(ValueError):
    """A feature declares something the platform cannot take (a clash, a bad name)."""


@dataclass(frozen=True)
class Service:
    """A hub-managed service process a feature runs (`python -m <module>`)."""

    name: str
    module: str
    description: str
    # JupyterHub scopes of the service's own token
    scopes: Sequence[str] = ()
    # the service's URL and port, where it serves HTTP: "module:function"(settings) -> url
    url: str | None = None


@dataclass(frozen=True)
class Feature:
    """What one platform feature adds; every reference is a "module:attribute" string."""

    name: str
    description: str
    # other features this one uses (set up before it in the API service)
    requires: Sequence[str] = ()
    # platform scopes, by action ("instances:read" -> what it allows)
    scopes: Mapping[str, str] = field(default_factory=dict)
    # role ("viewer", "server") -> the actions of `scopes` it grants
    grants: Mapping[str, Sequence[str]] = field(default_factory=dict)
    # actions only administrators hold (the full-access role); the rest go to common-operations
    admin_only: Sequence[str] = ()
    # audit event names this feature records (ModelArts' names where they apply) -> meaning
    audit_events: Mapping[str, str] = field(default_factory=dict)
    # modules that define the feature's tables (SQLAlchemy models on hub.db.Base)
    tables: Sequence[str] = ()
    # the folder of the feature's alembic revisions (a branch off the platform's first one)
    migrations: str | None = None
    # modules of the platform API service's handlers: each has `default_handlers`, routes
    # relative to the API's prefix (/services/workbench/api), and may have `default_pages`,
    # routes relative to the service's prefix (HTML pages), as JupyterHub's handler modules do
    handlers: Sequence[str] = ()
    # "package:file": the feature's part of the API's OpenAPI description (its paths, tags
    # and components), a YAML file in the package's folder
    openapi: str | None = None
    # "module:function"(platform) -> None: builds the feature's objects in the API service
    setup: str | None = None
    # "module:function"(c, hub) -> None: what the feature sets in JupyterHub's configuration
    hub_config: str | None = None
    # "module:Class": a Configurable whose traits are the [workbench.<name>] settings table
    settings: str | None = None
    # "module:function"(session, user) -> {kind: count}: remove a deleted user's rows
    forget_user: str | None = None
    # hub-managed services the feature runs
    services: Sequence[Service] = ()

    def load(self, attribute: str) -> Any:
        """The object a reference of this feature names ("routes", "setup", ...)."""
        return load_reference(getattr(self, attribute))

    def openapi_path(self) -> Path | None:
        """The feature's OpenAPI part, a file next to the package it names."""
        if not self.openapi:
            return None
        package, _, name = self.openapi.partition(":")
        return Path(import_module(package).__file__).parent / name

    def migrations_path(self) -> Path | None:
        """The feature's migrations folder, resolved from the module it is declared in."""
        if not self.migrations:
            return None
        module = import_module(self.migrations)
        return Path(module.__file__).parent


def load_reference(reference: str | None) -> Any:
    """Import "package.module:attribute" (None stays None)."""
    if not reference:
        return None
    module, _, attribute = reference.partition(":")
    obj = import_module(module)
    for part in attribute.split(".") if attribute else ():
        obj = getattr(obj, part)
    return obj


def check(features: Sequence[Feature]) -> None:
    """FeatureError unless the features' names, scopes and events are valid and distinct."""
    names: set[str] = set()
    scopes: dict[str, str] = {}
    events: dict[str, str] = {}
    for feature in features:
        if not NAME.match(feature.name):
            raise FeatureError(f"feature name {feature.name!r}: use lowercase letters and _")
        if feature.name in names:
            raise FeatureError(f"two features are named {feature.name!r}")
        names.add(feature.name)
        for action in feature.scopes:
            if not ACTION.match(action):
                raise FeatureError(f"{feature.name}: scope {action!r} is not <things>:<verb>")
            if action in scopes:
                raise FeatureError(
                    f"{feature.name}: scope {action!r} is declared by {scopes[action]} too"
                )
            scopes[action] = feature.name
        for role, actions in feature.grants.items():
            if role not in ROLES:
                raise FeatureError(f"{feature.name}: unknown role {role!r} (one of {ROLES})")
            unknown = set(actions) - set(feature.scopes)
            if unknown:
                raise FeatureError(f"{feature.name}: grants scopes it does not declare: {unknown}")
        for event in feature.audit_events:
            if not EVENT.match(event):
                raise FeatureError(
                    f"{feature.name}: audit event {event!r} is not camelCase or snake_case"
                )
            if event in events and events[event] != feature.name:
                raise FeatureError(
                    f"{feature.name}: audit event {event!r} is declared by {events[event]} too"
                )
            events[event] = feature.name
    for feature in features:
        missing = set(feature.requires) - names
        if missing:
            raise FeatureError(f"{feature.name} needs feature(s) not installed: {missing}")


def ordered(features: Sequence[Feature]) -> list[Feature]:
    """The features, each after those it requires (stable otherwise)."""
    by_name = {f.name: f for f in features}
    done: list[Feature] = []
    visiting: set[str] = set()

    def visit(feature: Feature):
        if feature in done:
            return
        if feature.name in visiting:
            raise FeatureError(f"features require each other in a cycle: {feature.name}")
        visiting.add(feature.name)
        for name in feature.requires:
            visit(by_name[name])
        visiting.discard(feature.name)
        done.append(feature)

    for feature in features:
        visit(feature)
    return done


@functools.cache
def load_features() -> tuple[Feature, ...]:
    """Every installed feature (entry point group ai_workbench.features), checked and ordered."""
    found = []
    for point in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda p: p.name):
        feature = point.load()
        if not isinstance(feature, Feature):
            raise FeatureError(f"entry point {point.value} is not a hub.features.Feature")
        if feature.name != point.name:
            raise FeatureError(f"entry point {point.name!r} declares feature {feature.name!r}")
        found.append(feature)
    check(found)
    return tuple(ordered(found))


def collect(features: Sequence[Feature], attribute: str) -> list[tuple[Feature, Callable]]:
    """(feature, loaded reference) of every feature that sets `attribute`, in order."""
    return [(f, f.load(attribute)) for f in features if getattr(f, attribute)]
