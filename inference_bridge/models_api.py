"""HTTP handlers of models: register, list, versions, files, describe and delete."""

from __future__ import annotations

from urllib.parse import quote

from tornado import web

from hub.service.api import APIError, APIHandler, OwnedCollection, download_type, needs_scope

from .models import ModelRegistry

MODEL = r"/models/(?P<owner>[^/]+)/(?P<name>[^/]+)"
VERSION = MODEL + r"/versions/(?P<version>[0-9]{1,9})"


class ModelsAPIHandler(APIHandler):
    """Base of the model handlers: the registry."""

    @property
    def registry(self) -> ModelRegistry:
        return self.settings["model_registry"]

    def audit_resource_id(self):
        kwargs = self.path_kwargs
        parts = [kwargs.get("owner"), kwargs.get("name"), kwargs.get("version")]
        return "/".join(p for p in parts if p)

    def location(self, *parts) -> str:
        return "/".join([f"{self.settings['api_prefix']}/models", *map(str, parts)])


class ModelsHandler(OwnedCollection, ModelsAPIHandler):
    """GET /models lists visible models; POST /models registers one (its version 1)."""

    audit_events = {"POST": ("addModel", "model")}

    @web.authenticated
    @needs_scope("models:read")
    async def get(self):
        workspace, all_users = self.listing_query()
        self.write_json(await self.registry.list(self.current_user, workspace, all_users))

    @web.authenticated
    async def post(self):
        body = self.get_json_body()
        self.audit_details = {"name": str(body.get("name", ""))[:64]}
        self.require_scope("models:write")
        model = await self.registry.create(self.current_user, body)
        first = model["versions"][0]
        self.audit_details.update(version=1, format=first["format"], source=first["source"])
        self.set_header("Location", self.location(quote(model["owner"]), model["name"]))
        self.write_json(model, status=201)


class ModelHandler(ModelsAPIHandler):
    """GET a model with its versions; PATCH its description; DELETE it with its files."""

    audit_events = {"PATCH": ("updateModel", "model"), "DELETE": ("deleteModel", "model")}

    @web.authenticated
    @needs_scope("models:read")
    async def get(self, owner, name):
        self.write_json(await self.registry.get(self.current_user, owner, name))

    @web.authenticated
    @needs_scope("models:write")
    async def patch(self, owner, name):
        body = self.get_json_body()
        self.write_json(await self.registry.update(self.current_user, owner, name, body))

    @web.authenticated
    @needs_scope("models:write")
    async def delete(self, owner, name):
        await self.registry.delete(self.current_user, owner, name)
        self.no_content()


class VersionsHandler(ModelsAPIHandler):
    """POST a new version of a model (what it leaves out is the latest version's)."""

    audit_events = {"POST": ("addModel", "model")}

    @web.authenticated
    @needs_scope("models:write")
    async def post(self, owner, name):
        body = self.get_json_body()
        model = await self.registry.add_version(self.current_user, owner, name, body)
        self.audit_details = {
            "version": model["version"],
            "format": model["format"],
            "source": model["source"],
        }
        self.set_header("Location", self.location(quote(owner), name, "versions", model["version"]))
        self.write_json(model, status=201)


class VersionHandler(ModelsAPIHandler):
    """GET a version; DELETE it with its files (not while a service deploys it)."""

    audit_events = {"DELETE": ("deleteModel", "model")}

    @web.authenticated
    @needs_scope("models:read")
    async def get(self, owner, name, version):
        version = int(version)
        self.write_json(await self.registry.get_version(self.current_user, owner, name, version))

    @web.authenticated
    @needs_scope("models:write")
    async def delete(self, owner, name, version):
        await self.registry.delete_version(self.current_user, owner, name, int(version))
        self.no_content()


class FilesHandler(ModelsAPIHandler):
    """GET .../files: the version's files with their sizes and SHA-256s; verify=1 hashes
    them again first (409 when one changed since registration)."""

    @web.authenticated
    @needs_scope("models:read")
    async def get(self, owner, name, version):
        verify = self.get_query_argument("verify", "0")
        if verify not in ("0", "1", "true", "false"):
            raise APIError(400, "verify must be 1 or 0.")
        files = await self.registry.files(
            self.current_user, owner, name, int(version), verify=verify in ("1", "true")
        )
        self.write_json(files)


class FileHandler(ModelsAPIHandler):
    """GET .../files/<path>: download one file of a version."""

    def set_default_headers(self):
        pass

    @web.authenticated
    @needs_scope("models:read")
    async def get(self, owner, name, version, path):
        f = await self.registry.open_file(self.current_user, owner, name, int(version), path)
        await self.send_file(f, download_type(path), path.rsplit("/", 1)[-1])


default_handlers = [
    (r"/models", ModelsHandler),
    (MODEL, ModelHandler),
    (MODEL + r"/versions", VersionsHandler),
    (VERSION, VersionHandler),
    (VERSION + r"/files", FilesHandler),
    (VERSION + r"/files/(?P<path>.+)", FileHandler),
]
