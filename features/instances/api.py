"""HTTP handlers of instances: list, create, read, change, delete, start and stop; flavors."""

from __future__ import annotations

from urllib.parse import quote

from jupyterhub.utils import url_path_join
from tornado import web

from hub.service.api import APIHandler, needs_scope


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
    @needs_scope("instances:read")
    async def get(self, user):
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
    @needs_scope("instances:read")
    async def get(self, user, name):
        self.write_json(await self.run(self.manager.get(user, name)))

    @web.authenticated
    @needs_scope("instances:update")
    async def patch(self, user, name):
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
    @needs_scope("instances:delete")
    async def delete(self, user, name):
        await self.run(self.manager.delete(user, name))
        self.no_content()


class InstanceActionHandler(APIHandler):
    def audit_event(self):
        if self.request.method != "POST":
            return None
        action = self.path_kwargs.get("action")
        return ("startNotebook" if action == "start" else "stopNotebook", "notebook")

    @web.authenticated
    @needs_scope("instances:{action}")
    async def post(self, user, name, action):
        if action == "start":
            await self.settings["engine_check"]()
            self.write_json(await self.run(self.manager.start(user, name)))
        else:
            self.write_json(await self.run(self.manager.stop(user, name)))


_instance = r"/users/(?P<user>[^/]+)/instances/(?P<name>[^/]+)"
default_handlers = [
    (r"/flavors", FlavorsHandler),
    (r"/users/(?P<user>[^/]+)/instances", InstancesHandler),
    (_instance, InstanceHandler),
    (_instance + r"/(?P<action>start|stop)", InstanceActionHandler),
]
