"""Platform API handlers of SSH keys and of an instance's SSH access."""

from __future__ import annotations

import logging
import os
from urllib.parse import quote

from jupyterhub.services.auth import HubOAuthenticated
from jupyterhub.utils import url_path_join
from tornado import web

from hub.service.api import APIHandler, needs_scope
from spawner.ssh_access import public_host, ssh_access

from . import keys

log = logging.getLogger("workbench.service")


class KeyAPIHandler(APIHandler):
    async def check_exists(self, user: str):
        """HTTP 404 unless the user exists: an admin may name anyone, and keys kept for a
        name nobody has would be inherited by whoever signs up with it."""
        if user == self.current_user["name"]:
            return
        if await self.settings["platform"].hub.user(user) is None:
            raise web.HTTPError(404, f"No user {user!r}.")

    async def db_call(self, fn):
        """Run fn(session) off the loop; InvalidKey becomes a 400 with its message."""
        try:
            return await self.db.run(fn)
        except keys.InvalidKey as e:
            raise web.HTTPError(400, str(e)) from None


class KeysHandler(KeyAPIHandler):
    """GET: the user's keys. POST {name, public_key}: register a key."""

    audit_events = {"POST": ("addKey", "key")}

    def audit_resource_id(self):
        return f"{self.path_kwargs['user']}/{(self.audit_details or {}).get('fingerprint', '')}"

    @web.authenticated
    @needs_scope("keys:manage")
    async def get(self, user):
        self.write_json(await self.db.run(lambda s: keys.list_keys(s, user)))

    @web.authenticated
    @needs_scope("keys:manage")
    async def post(self, user):
        await self.check_exists(user)
        body = self.get_json_body()
        unknown = sorted(set(body) - {"name", "public_key"})
        if unknown:
            raise web.HTTPError(
                400, f"Unknown field(s): {', '.join(unknown)}; send name and public_key."
            )
        try:
            name = keys.check_name(body.get("name"))
            parsed = keys.parse_public_key(body.get("public_key"))
        except keys.InvalidKey as e:
            raise web.HTTPError(400, str(e)) from None
        model = await self.db_call(lambda s: keys.add_key(s, user, name, parsed))
        log.info("ssh key %s (%s) added for %s", model["fingerprint"], name, user)
        self.audit_details = {"fingerprint": model["fingerprint"], "name": name}
        self.write_json(model, status=201)


class GenerateKeyHandler(KeyAPIHandler):
    """POST {name}: make an ed25519 key pair, register its public key and return the private
    key, this once (it is not stored)."""

    audit_events = {"POST": ("addKey", "key")}

    def audit_resource_id(self):
        return f"{self.path_kwargs['user']}/{(self.audit_details or {}).get('fingerprint', '')}"

    @web.authenticated
    @needs_scope("keys:manage")
    async def post(self, user):
        await self.check_exists(user)
        body = self.get_json_body()
        unknown = sorted(set(body) - {"name"})
        if unknown:
            raise web.HTTPError(400, f"Unknown field(s): {', '.join(unknown)}; send name.")
        try:
            name = keys.check_name(body.get("name"))
        except keys.InvalidKey as e:
            raise web.HTTPError(400, str(e)) from None
        private_key, public_key = keys.generate_key_pair(f"{user}@ai-workbench")
        parsed = keys.parse_public_key(public_key)
        model = await self.db_call(lambda s: keys.add_key(s, user, name, parsed))
        log.info("ssh key %s (%s) generated for %s", model["fingerprint"], name, user)
        self.audit_details = {"fingerprint": model["fingerprint"], "name": name, "generated": True}
        self.set_header("Cache-Control", "no-store")
        self.write_json({**model, "private_key": private_key}, status=201)


class KeyHandler(KeyAPIHandler):
    """PATCH {name}: rename a key. DELETE: remove it."""

    audit_events = {"DELETE": ("deleteKey", "key")}

    @web.authenticated
    @needs_scope("keys:manage")
    async def patch(self, user, key_id):
        body = self.get_json_body()
        if set(body) != {"name"}:
            raise web.HTTPError(400, 'Send {"name": "new name"} to rename a key.')
        try:
            name = keys.check_name(body["name"])
        except keys.InvalidKey as e:
            raise web.HTTPError(400, str(e)) from None
        model = await self.db_call(lambda s: keys.rename_key(s, user, key_id, name))
        if model is None:
            raise web.HTTPError(404, f"No key {key_id!r}; list keys with GET .../keys.")
        self.write_json(model)

    @web.authenticated
    @needs_scope("keys:manage")
    async def delete(self, user, key_id):
        if not await self.db.run(lambda s: keys.delete_key(s, user, key_id)):
            raise web.HTTPError(404, f"No key {key_id!r}; list keys with GET .../keys.")
        log.info("ssh key %s deleted for %s", key_id, user)
        self.no_content()


class InstanceSSHHandler(APIHandler):
    """GET: an instance's SSH settings, the ssh command and the ~/.ssh/config block."""

    @web.authenticated
    @needs_scope("instances:read")
    async def get(self, user, name):
        model = await self.run(self.manager.get(user, name))
        settings = self.settings["workbench_settings"]
        self.write_json(ssh_access(settings, user, name, model.get("ssh")))


class KeysPageHandler(HubOAuthenticated, web.RequestHandler):
    """The SSH keys page: list, add, generate, rename and delete keys (calls the API above)."""

    def get_template_path(self):
        return os.path.join(os.path.dirname(__file__), "templates")

    @web.authenticated
    def get(self):
        user = self.current_user["name"]
        settings = self.settings["workbench_settings"]
        self.render(
            "keys.html",
            user=user,
            api=url_path_join(self.settings["api_prefix"], "users", quote(user, safe="")),
            xsrf=self.xsrf_token.decode(),
            host=public_host(settings),
            port=settings.ssh_port,
            hub_home=self.hub_auth.hub_prefix + "home",
        )


default_handlers = [
    (r"/users/(?P<user>[^/]+)/keys", KeysHandler),
    (r"/users/(?P<user>[^/]+)/keys/generate", GenerateKeyHandler),
    (r"/users/(?P<user>[^/]+)/keys/(?P<key_id>[^/]+)", KeyHandler),
    (r"/users/(?P<user>[^/]+)/instances/(?P<name>[^/]+)/ssh", InstanceSSHHandler),
]
default_pages = [(r"/keys", KeysPageHandler)]
