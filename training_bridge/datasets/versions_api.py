"""HTTP handlers of dataset versions: publish, list, manifest, diff, delete, and exports."""

from __future__ import annotations

import asyncio
from urllib.parse import quote

from tornado import web

from hub.service.api import APIError, APIHandler, needs_scope

from .versions import VersionService

DATASET = r"/datasets/(?P<owner>[^/]+)/(?P<name>[^/]+)"
VERSION = DATASET + r"/versions/(?P<version>[0-9]{1,9})"
CHUNK = 1024 * 1024


class DatasetAPIHandler(APIHandler):
    """Base of the handlers below a dataset: audited as resource "dataset", owner/name/..."""

    def audit_resource_id(self):
        kwargs = self.path_kwargs
        parts = [kwargs.get("owner"), kwargs.get("name")]
        for key in ("version", "task", "run"):
            if kwargs.get(key):
                parts.append(kwargs[key])
        return "/".join(p for p in parts if p)

    def dataset_location(self, owner: str, name: str, *parts) -> str:
        prefix = f"{self.settings['api_prefix']}/datasets/{quote(owner, safe='')}/"
        return prefix + "/".join([quote(name, safe=""), *(quote(str(p), safe="") for p in parts)])


class VersionsAPIHandler(DatasetAPIHandler):
    @property
    def versions(self) -> VersionService:
        return self.settings["dataset_versions"]


class VersionsHandler(VersionsAPIHandler):
    """GET a dataset's versions; POST publishes its samples as the next one."""

    audit_events = {"POST": ("publishDatasetVersion", "dataset")}

    @web.authenticated
    @needs_scope("datasets:read")
    async def get(self, owner, name):
        self.write_json(await self.versions.list(self.current_user, owner, name))

    @web.authenticated
    @needs_scope("datasets:write")
    async def post(self, owner, name):
        body = self.get_json_body()
        version = await self.versions.publish(self.current_user, owner, name, body)
        self.audit_details = {
            "version": version["version"],
            "samples": version["samples"],
            "manifest_sha256": version["manifest_sha256"],
        }
        self.set_header(
            "Location", self.dataset_location(owner, name, "versions", version["version"])
        )
        self.write_json(version, status=201)


class VersionHandler(VersionsAPIHandler):
    """GET a version; DELETE it with its folder (not while a job uses it)."""

    audit_events = {"DELETE": ("deleteDatasetVersion", "dataset")}

    @web.authenticated
    @needs_scope("datasets:read")
    async def get(self, owner, name, version):
        self.write_json(await self.versions.get(self.current_user, owner, name, int(version)))

    @web.authenticated
    @needs_scope("datasets:write")
    async def delete(self, owner, name, version):
        await self.versions.delete(self.current_user, owner, name, int(version))
        self.no_content()


class ManifestHandler(VersionsAPIHandler):
    """GET a version's manifest: JSON lines (ModelArts' manifest, with each sample's split)."""

    def set_default_headers(self):
        pass

    @web.authenticated
    @needs_scope("datasets:read")
    async def get(self, owner, name, version):
        f = await self.versions.manifest(self.current_user, owner, name, int(version))
        await self.send_file(f, "application/x-ndjson")


class DiffHandler(VersionsAPIHandler):
    """GET .../diff?against=<u>: keys added, removed and relabelled from version u."""

    @web.authenticated
    @needs_scope("datasets:read")
    async def get(self, owner, name, version):
        against = self.get_query_argument("against", "")
        if not (against.isascii() and against.isdigit()) or len(against) > 9:
            raise APIError(400, "against must be the number of another version (?against=1).")
        diff = await self.versions.diff(self.current_user, owner, name, int(version), int(against))
        self.write_json(diff)


class ExportHandler(VersionsAPIHandler):
    """POST {"format", "version"?}: the dataset (or a version) as a zip in that format."""

    audit_events = {"POST": ("exportDataFromDataset", "dataset")}

    def set_default_headers(self):
        pass

    @web.authenticated
    @needs_scope("datasets:read")
    async def post(self, owner, name):
        body = self.get_json_body()
        self.audit_details = {"format": body.get("format"), "version": body.get("version")}
        path, filename = await self.versions.export(self.current_user, owner, name, body)
        try:
            f = await asyncio.to_thread(open, path, "rb")
        finally:
            # the open file is read to its end; its name goes now
            await self.versions.discard_export(path)
        await self.send_file(f, "application/zip", filename)


default_handlers = [
    (DATASET + r"/versions", VersionsHandler),
    (VERSION, VersionHandler),
    (VERSION + r"/manifest", ManifestHandler),
    (VERSION + r"/diff", DiffHandler),
    (DATASET + r"/export", ExportHandler),
]
