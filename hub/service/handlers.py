"""The platform API's own handlers: its root, health, OpenAPI description and JSON 404s."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from tornado import web

from .api import APIHandler


class RootHandler(APIHandler):
    @web.authenticated
    def get(self):
        self.write_json(
            {
                "name": "ai-workbench",
                "user": self.current_user["name"],
                "endpoints": ["flavors", "images", "users/{user}/instances"],
            }
        )


class HealthHandler(web.RequestHandler):
    """Unauthenticated liveness answer at the service's root (the hub checks it)."""

    def get(self):
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"status": "ok", "api": self.settings["api_prefix"]}))


OPENAPI_PATH = Path(__file__).with_name("openapi.yaml")


class OpenAPIConflict(ValueError):
    """Two parts of the OpenAPI description define the same path or component differently."""


def merge_openapi(description: dict, part: dict, source: str) -> None:
    """Add a feature's part (paths, tags, components) to the description."""
    for path, item in (part.get("paths") or {}).items():
        if path in description["paths"]:
            raise OpenAPIConflict(f"{source}: path {path} is described twice")
        description["paths"][path] = item
    known = {tag["name"] for tag in description.get("tags", [])}
    description.setdefault("tags", []).extend(
        tag for tag in part.get("tags") or () if tag["name"] not in known
    )
    components = description.setdefault("components", {})
    for section, items in (part.get("components") or {}).items():
        mine = components.setdefault(section, {})
        for name, value in items.items():
            if name in mine and mine[name] != value:
                raise OpenAPIConflict(f"{source}: component {section}/{name} differs")
            mine[name] = value


def load_openapi(prefix: str, features=None) -> dict:
    """The OpenAPI description of the platform API: the kit's, with every feature's part,
    its server the service's prefix."""
    from ..features import load_features

    description = yaml.safe_load(OPENAPI_PATH.read_text())
    for feature in load_features() if features is None else features:
        path = feature.openapi_path()
        if path is not None:
            merge_openapi(description, yaml.safe_load(path.read_text()), str(path))
    description["servers"] = [{"url": prefix.rstrip("/") or "/"}]
    return description


class OpenAPIHandler(web.RequestHandler):
    """GET .../api/openapi.json: the OpenAPI 3 description of this API (no sign-in needed:
    it describes what every caller may send, nothing about the platform's data)."""

    def initialize(self, description: dict):
        self.description = description

    def get(self):
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(self.description))


class NotFoundHandler(APIHandler):
    """Any other path under the service: a JSON 404 that points at the API's description."""

    def prepare(self):
        raise web.HTTPError(
            404,
            "No such path %r. The API's paths are described in %s/openapi.json.",
            self.request.path,
            self.settings["api_prefix"],
        )
