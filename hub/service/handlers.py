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


def load_openapi(prefix: str) -> dict:
    """The OpenAPI description of the platform API, its server the service's prefix."""
    description = yaml.safe_load(OPENAPI_PATH.read_text())
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
