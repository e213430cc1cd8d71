"""HTTP handlers of online services: deploy, change, canary, start, stop, keys, metrics, logs."""

from __future__ import annotations

from urllib.parse import quote

from tornado import web

from hub.service.api import APIError, APIHandler, OwnedCollection, needs_scope

from .manager import ServiceManager
from .router import default_pages  # noqa: F401 - the calling path, below the service's prefix

SERVICE = r"/services/(?P<owner>[^/]+)/(?P<name>[^/]+)"


class ServicesAPIHandler(APIHandler):
    """Base of the service handlers: the service manager."""

    @property
    def services(self) -> ServiceManager:
        return self.settings["service_manager"]

    def audit_resource_id(self):
        kwargs = self.path_kwargs
        return "/".join(p for p in (kwargs.get("owner"), kwargs.get("name")) if p)


class ServicesHandler(OwnedCollection, ServicesAPIHandler):
    """GET /services lists visible services; POST /services deploys one."""

    audit_events = {"POST": ("addService", "service")}

    @web.authenticated
    @needs_scope("services:read")
    async def get(self):
        workspace, all_users = self.listing_query()
        self.write_json(await self.services.list(self.current_user, workspace, all_users))

    @web.authenticated
    async def post(self):
        body = self.get_json_body()
        self.audit_details = {"name": str(body.get("name", ""))[:64]}
        self.require_scope("services:write")
        model = await self.services.create(self.current_user, body)
        self.audit_details["predictors"] = [
            f"{p['owner']}/{p['model']}:{p['version']}" for p in model["predictors"]
        ]
        self.set_header(
            "Location",
            f"{self.settings['api_prefix']}/services/{quote(model['owner'])}/{model['name']}",
        )
        self.write_json(model, status=201)


class ServiceHandler(ServicesAPIHandler):
    """GET a service; PATCH its predictors (a canary, weights), description or sharing;
    DELETE it with its replicas and keys."""

    audit_events = {
        "PATCH": ("updateService", "service"),
        "DELETE": ("deleteService", "service"),
    }

    @web.authenticated
    @needs_scope("services:read")
    async def get(self, owner, name):
        self.write_json(await self.services.get(self.current_user, owner, name))

    @web.authenticated
    @needs_scope("services:write")
    async def patch(self, owner, name):
        body = self.get_json_body()
        self.audit_details = {"fields": sorted(str(k)[:64] for k in body)[:10]}
        self.write_json(await self.services.update(self.current_user, owner, name, body))

    @web.authenticated
    @needs_scope("services:write")
    async def delete(self, owner, name):
        await self.services.delete(self.current_user, owner, name)
        self.no_content()


class PromoteHandler(ServicesAPIHandler):
    """POST .../promote: the canary takes every request; POST .../rollback: the canary goes."""

    audit_events = {"POST": ("updateService", "service")}

    def initialize(self, rollback: bool = False):
        self.rollback = rollback

    @web.authenticated
    @needs_scope("services:write")
    async def post(self, owner, name):
        self.audit_details = {"action": "rollback" if self.rollback else "promote"}
        model = await self.services.promote(self.current_user, owner, name, self.rollback)
        self.write_json(model)


class StartStopHandler(ServicesAPIHandler):
    """POST .../start starts a stopped (or failed) service; POST .../stop stops its replicas."""

    audit_events = {"POST": ("startOrStopService", "service")}

    @web.authenticated
    @needs_scope("services:write")
    async def post(self, owner, name, action):
        self.audit_details = {"action": action}
        if action == "start":
            model = await self.services.start(self.current_user, owner, name)
        else:
            model = await self.services.stop(self.current_user, owner, name)
        self.write_json(model)


class KeysHandler(ServicesAPIHandler):
    """GET .../keys lists a service's access keys (no secrets); POST makes one, shown once."""

    audit_events = {"POST": ("addAkSk", "service")}

    @web.authenticated
    @needs_scope("services:read")
    async def get(self, owner, name):
        self.write_json(await self.services.keys(self.current_user, owner, name))

    @web.authenticated
    @needs_scope("services:write")
    async def post(self, owner, name):
        body = self.get_json_body()
        self.audit_details = {"key": str(body.get("name", ""))[:64]}
        made = await self.services.create_key(self.current_user, owner, name, body)
        # the secret goes to the caller only, never to the audit log
        self.audit_details = {"key": made["name"], "prefix": made["prefix"]}
        self.write_json(made, status=201)


class KeyHandler(ServicesAPIHandler):
    """DELETE .../keys/{key_name}: the key stops working at once."""

    audit_events = {"DELETE": ("deleteAkSk", "service")}

    @web.authenticated
    @needs_scope("services:write")
    async def delete(self, owner, name, key_name):
        self.audit_details = {"key": key_name[:64]}
        await self.services.delete_key(self.current_user, owner, name, key_name)
        self.no_content()


class MetricsHandler(ServicesAPIHandler):
    """GET .../metrics: requests, errors, latency percentiles, replicas' use; ?format=prometheus
    for the Prometheus text format."""

    @web.authenticated
    @needs_scope("services:read")
    async def get(self, owner, name):
        fmt = self.get_query_argument("format", "json")
        if fmt not in ("json", "prometheus"):
            raise APIError(400, "format must be json or prometheus.")
        result = await self.services.metrics(self.current_user, owner, name, fmt)
        if fmt == "prometheus":
            self.set_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.finish(result)
            return
        self.write_json(result)


class LogsHandler(ServicesAPIHandler):
    """GET .../logs?replica=<id>: the output of one replica (the first one by default)."""

    @web.authenticated
    @needs_scope("services:read")
    async def get(self, owner, name):
        replica = self.get_query_argument("replica", "").strip()
        text = await self.services.logs(self.current_user, owner, name, replica)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.finish(text)


default_handlers = [
    (r"/services", ServicesHandler),
    (SERVICE, ServiceHandler),
    (SERVICE + r"/promote", PromoteHandler),
    (SERVICE + r"/rollback", PromoteHandler, {"rollback": True}),
    (SERVICE + r"/(?P<action>start|stop)", StartStopHandler),
    (SERVICE + r"/keys", KeysHandler),
    (SERVICE + r"/keys/(?P<key_name>[^/]+)", KeyHandler),
    (SERVICE + r"/metrics", MetricsHandler),
    (SERVICE + r"/logs", LogsHandler),
]
