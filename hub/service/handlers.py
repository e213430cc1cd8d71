"""HTTP handlers of the platform API (JSON in, JSON out, errors as {"message": ...})."""

from __future__ import annotations

import json
import traceback
from urllib.parse import quote

from jupyterhub.services.auth import HubOAuthenticated
from jupyterhub.utils import url_path_join
from tornado import web

from .instances import InstanceError


class APIHandler(HubOAuthenticated, web.RequestHandler):
    """Base handler: hub-authenticated, JSON bodies and JSON errors."""

    @property
    def manager(self):
        return self.settings["instance_manager"]

    @property
    def policy(self):
        return self.settings["policy"]

    @property
    def db(self):
        """The platform database (hub.db.Database): `await self.db.run(fn)`."""
        return self.settings["db"]

    def set_default_headers(self):
        self.set_header("Content-Type", "application/json")

    def get_login_url(self):
        # an API answers 403 instead of redirecting to the login page
        raise web.HTTPError(
            403,
            "Not signed in: send 'Authorization: token <token>' with a token from "
            "/hub/token, or sign in at /hub/login.",
        )

    def get_json_body(self) -> dict:
        if not self.request.body:
            return {}
        try:
            body = json.loads(self.request.body)
        except ValueError:
            raise web.HTTPError(400, "The request body is not valid JSON.") from None
        if not isinstance(body, dict):
            raise web.HTTPError(400, "The request body must be a JSON object.")
        return body

    def write_json(self, data, status: int = 200):
        self.set_status(status)
        self.finish(json.dumps(data))

    def write_error(self, status_code, **kwargs):
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, InstanceError):
            message = exc.message
        elif isinstance(exc, web.HTTPError):
            message = exc.log_message or exc.reason or self._reason
        else:
            message = "Internal error; see the platform service's log."
            if exc is not None:
                self.log.error("".join(traceback.format_exception(exc)))
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"status": status_code, "message": message}))

    def log_exception(self, typ, value, tb):
        if isinstance(value, InstanceError):
            self.log.info(
                "%s %s -> %s %s", self.request.method, self.request.uri, value.code, value
            )
            return
        super().log_exception(typ, value, tb)

    def check_user(self, user: str):
        """Allow acting on `user`'s instances only to that user and admins."""
        current = self.current_user
        if current["name"] == user or current.get("admin"):
            return
        # no hint of whether that user or their instances exist
        raise web.HTTPError(404, f"No user {user!r}.")

    async def run(self, coro):
        try:
            return await coro
        except InstanceError as e:
            self.set_status(e.code)
            raise web.HTTPError(e.code, e.message) from None


class FlavorsHandler(APIHandler):
    @web.authenticated
    def get(self):
        self.write_json([f.to_dict() for f in self.policy.visible_flavors()])


class ImagesHandler(APIHandler):
    @web.authenticated
    async def get(self):
        available = await self.settings["image_checker"]()
        images = []
        for entry in self.policy.catalog:
            model = entry.to_dict()
            model["status"] = (
                "unknown"
                if available is None
                else "ready"
                if entry.ref in available
                else "not built"
            )
            images.append(model)
        self.write_json(images)


class InstancesHandler(APIHandler):
    @web.authenticated
    async def get(self, user):
        self.check_user(user)
        self.write_json(await self.run(self.manager.list(user)))

    @web.authenticated
    async def post(self, user):
        self.check_user(user)
        body = self.get_json_body()
        await self.settings["engine_check"]()
        model = await self.run(self.manager.create(user, body))
        prefix = self.settings["api_prefix"]
        self.set_header(
            "Location",
            url_path_join(prefix, "users", quote(user, safe=""), "instances", model["name"]),
        )
        self.write_json(model, status=201)


class InstanceHandler(APIHandler):
    @web.authenticated
    async def get(self, user, name):
        self.check_user(user)
        self.write_json(await self.run(self.manager.get(user, name)))

    @web.authenticated
    async def patch(self, user, name):
        self.check_user(user)
        body = self.get_json_body()
        if not body:
            raise web.HTTPError(400, "Nothing to change: send flavor, image or description.")
        await self.settings["engine_check"]()
        self.write_json(await self.run(self.manager.update(user, name, body)))

    @web.authenticated
    async def delete(self, user, name):
        self.check_user(user)
        await self.run(self.manager.delete(user, name))
        self.set_status(204)
        self.finish()


class InstanceActionHandler(APIHandler):
    @web.authenticated
    async def post(self, user, name, action):
        self.check_user(user)
        if action == "start":
            await self.settings["engine_check"]()
            self.write_json(await self.run(self.manager.start(user, name)))
        else:
            self.write_json(await self.run(self.manager.stop(user, name)))


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
