"""HTTP handlers of the platform API (JSON in, JSON out, errors as {"message": ...})."""

from __future__ import annotations

import asyncio
import json
import math
import traceback
from pathlib import Path
from urllib.parse import quote

import yaml
from jupyterhub.services.auth import HubOAuthenticated
from jupyterhub.utils import url_path_join
from tornado import web

from ..audit.hub_requests import client_address
from ..rbac import SCOPES, has_scope, scope
from .instances import InstanceError


class NonFinite(ValueError):
    """A number in a request body that is not finite (NaN, Infinity, 1e999)."""


def _refuse_constant(name: str):
    # Python's json reads NaN, Infinity and -Infinity, which are not JSON: every comparison
    # with NaN is false, so no range check downstream would refuse it
    raise NonFinite(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise NonFinite(f"{text} is too large a number")
    return number


def parse_json_body(body: bytes) -> dict:
    """A request body as a JSON object; HTTP 400 saying why for anything else."""
    if not body:
        return {}
    try:
        data = json.loads(body, parse_constant=_refuse_constant, parse_float=_finite_float)
    except NonFinite as e:
        raise web.HTTPError(
            400, f'{e}: send finite numbers only, for example {{"max_hours": 8}}.'
        ) from None
    except (ValueError, RecursionError):
        raise web.HTTPError(400, "The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise web.HTTPError(400, "The request body must be a JSON object.")
    return data


def finite(data):
    """data with non-finite floats (which JSON cannot carry) as null, for answers built from
    values stored before they were validated."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: finite(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [finite(v) for v in data]
    return data


def dumps(data) -> str:
    """JSON text of an answer; always valid JSON."""
    try:
        return json.dumps(data, allow_nan=False)
    except ValueError:
        return json.dumps(finite(data), allow_nan=False)


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
        return parse_json_body(self.request.body)

    def write_json(self, data, status: int = 200):
        self.set_status(status)
        self.finish(dumps(data))

    # {HTTP method: (event name, resource type)} of the operations this handler audits
    audit_events: dict[str, tuple[str, str]] = {}
    audit_details: dict | None = None
    audit_reason = ""
    denied = False  # refused for lack of permission (answered 403, or 404 to hide it)

    def audit_event(self) -> tuple[str, str] | None:
        """(event name, resource type) of this request, or None if it is not audited."""
        return self.audit_events.get(self.request.method)

    def audit_resource_id(self) -> str:
        """The resource acted on: the path's user and name, as user/name."""
        return "/".join(
            str(v) for v in self.path_kwargs.values() if v and v not in ("start", "stop")
        )

    def actor(self) -> str:
        try:
            user = self.current_user
        except Exception:  # noqa: BLE001 - a refused token: audited as anonymous
            user = None
        return user["name"] if user else "anonymous"

    _audit_pending = None

    def finish(self, chunk=None):
        """Store the request's audit event, then answer (a crash after answering loses none).

        A second finish() meanwhile (tornado's own, after the handler returns) waits for
        the same.
        """
        if self._audit_pending is not None:
            return self._audit_pending
        spec = self.audit_event()
        if spec is None:
            return super().finish(chunk)
        if chunk is not None:
            self.write(chunk)
        status = self.get_status()
        if status < 400:
            outcome = "success"
        elif status in (401, 403) or self.denied:
            outcome = "denied"
        else:
            outcome = "failure"
        event, resource_type = spec
        record = self.settings["audit"].emit(
            event,
            actor=self.actor(),
            source=client_address(self.request),
            resource_type=resource_type,
            resource_id=self.audit_resource_id(),
            outcome=outcome,
            reason=self.audit_reason,
            details=self.audit_details,
        )

        async def record_then_finish():
            await record
            if not self._finished:
                await super(APIHandler, self).finish()

        self._audit_pending = asyncio.ensure_future(record_then_finish())
        return self._audit_pending

    def write_error(self, status_code, **kwargs):
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, InstanceError):
            message = exc.message
        elif isinstance(exc, web.HTTPError):
            message = exc.log_message or exc.reason or self._reason
            if exc.log_message and exc.args:
                message = exc.log_message % exc.args
        else:
            message = "Internal error; see the platform service's log."
            if exc is not None:
                self.log.error("".join(traceback.format_exception(exc)))
        self.audit_reason = message
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"status": status_code, "message": message}))

    def log_exception(self, typ, value, tb):
        if isinstance(value, InstanceError):
            self.log.info(
                "%s %s -> %s %s", self.request.method, self.request.uri, value.code, value
            )
            return
        super().log_exception(typ, value, tb)

    def require_scope(self, name: str):
        """HTTP 403 (audited as denied) unless the caller's token grants the platform scope."""
        if has_scope(self.current_user, name):
            return
        self.denied = True
        raise web.HTTPError(
            403,
            f"Permission denied: this needs {scope(name)} ({SCOPES[name]}). "
            "Ask an administrator for a role that grants it.",
        )

    def check_user(self, user: str):
        """Allow acting on `user`'s instances only to that user and admins."""
        current = self.current_user
        if current["name"] == user or current.get("admin"):
            return
        # no hint of whether that user or their instances exist
        self.denied = True
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


class InstancesHandler(APIHandler):
    audit_events = {"POST": ("createNotebook", "notebook")}

    def audit_resource_id(self):
        body = self.audit_details or {}
        return f"{self.path_kwargs['user']}/{body.get('name', '')}"

    @web.authenticated
    async def get(self, user):
        self.check_user(user)
        self.require_scope("instances:read")
        workspace = self.get_argument("workspace", "").strip() or None
        self.write_json(await self.run(self.manager.list(user, workspace)))

    @web.authenticated
    async def post(self, user):
        body = self.get_json_body()
        self.audit_details = {"name": str(body.get("name", ""))[:64]}
        self.check_user(user)
        self.require_scope("instances:create")
        await self.settings["engine_check"]()
        model = await self.run(self.manager.create(user, body))
        self.audit_details = {
            "name": model["name"],
            "image": model["image"],
            "flavor": model["flavor"],
            "storage_gib": model["storage_gib"],
        }
        prefix = self.settings["api_prefix"]
        self.set_header(
            "Location",
            url_path_join(prefix, "users", quote(user, safe=""), "instances", model["name"]),
        )
        self.write_json(model, status=201)


class InstanceHandler(APIHandler):
    audit_events = {
        "PATCH": ("updateNotebook", "notebook"),
        "DELETE": ("deleteNotebook", "notebook"),
    }

    @web.authenticated
    async def get(self, user, name):
        self.check_user(user)
        self.require_scope("instances:read")
        self.write_json(await self.run(self.manager.get(user, name)))

    @web.authenticated
    async def patch(self, user, name):
        self.check_user(user)
        self.require_scope("instances:update")
        body = self.get_json_body()
        if not body:
            raise web.HTTPError(400, "Nothing to change: send flavor, image or description.")
        self.audit_details = {"requested": body}
        await self.settings["engine_check"]()
        before = await self.run(self.manager.get(user, name))
        after = await self.run(self.manager.update(user, name, body))
        changed = {
            key: {"from": before.get(key), "to": after.get(key)}
            for key in ("image", "flavor", "description", "ssh", "auto_stop")
            if before.get(key) != after.get(key)
        }
        self.audit_details = {"changed": changed}
        if "flavor" in changed:
            self.audit_reason = f"flavor {changed['flavor']['from']} -> {changed['flavor']['to']}"
        self.write_json(after)

    @web.authenticated
    async def delete(self, user, name):
        self.check_user(user)
        self.require_scope("instances:delete")
        await self.run(self.manager.delete(user, name))
        self.set_status(204)
        self.finish()


class InstanceActionHandler(APIHandler):
    def audit_event(self):
        if self.request.method != "POST":
            return None
        action = self.path_kwargs.get("action")
        return ("startNotebook" if action == "start" else "stopNotebook", "notebook")

    @web.authenticated
    async def post(self, user, name, action):
        self.check_user(user)
        self.require_scope(f"instances:{action}")
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
