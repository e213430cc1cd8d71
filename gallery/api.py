"""HTTP handlers of the gallery: publish, browse, versions, checked files, preview, stars, uses."""

from __future__ import annotations

from tornado import web

from hub.service.api import APIHandler, download_type, needs_scope

from .service import GalleryService

ASSET = r"/gallery/assets/(?P<asset_id>[0-9]{1,9})"
VERSION = ASSET + r"/versions/(?P<version>[0-9]{1,9})"
# a notebook's rendered HTML runs nothing and reaches nothing: inline styles and data: images
PREVIEW_CSP = (
    "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'; font-src data:"
)


class GalleryAPIHandler(APIHandler):
    """Base of the gallery's handlers: audited as resource "gallery", <owner>/<id>."""

    owner: str | None = None

    @property
    def gallery(self) -> GalleryService:
        return self.settings["gallery_service"]

    def audit_resource_id(self):
        asset_id = self.path_kwargs.get("asset_id") or (self.audit_details or {}).get("id", "")
        return f"{self.owner or self.actor()}/{asset_id}"

    def location(self, asset_id) -> str:
        return f"{self.settings['api_prefix']}/gallery/assets/{asset_id}"

    def answer(self, model: dict, status: int = 200):
        self.owner = model.get("owner") or self.owner
        self.write_json(model, status=status)


class AssetsHandler(GalleryAPIHandler):
    """GET /gallery/assets searches the assets you may see; POST publishes one."""

    audit_events = {"POST": ("create_content", "gallery")}

    @web.authenticated
    @needs_scope("gallery:read")
    async def get(self):
        tags = []
        for value in self.get_query_arguments("tag"):
            tags.extend(t for t in value.split(",") if t.strip())
        query = {
            "q": self.get_query_argument("q", ""),
            "tag": tags,
            "kind": self.get_query_argument("kind", "") or None,
            "owner": self.get_query_argument("owner", "") or None,
            "mine": self.get_query_argument("mine", "0") in ("1", "true"),
            "sort": self.get_query_argument("sort", "") or None,
            "limit": self.get_query_argument("limit", "") or None,
            "offset": self.get_query_argument("offset", "") or None,
        }
        self.write_json(await self.gallery.list(self.current_user, query))

    @web.authenticated
    @needs_scope("gallery:write")
    async def post(self):
        body = self.get_json_body()
        self.audit_details = {
            "kind": str(body.get("kind", ""))[:16],
            "title": str(body.get("title", ""))[:120],
        }
        model = await self.gallery.publish(self.current_user, body)
        self.audit_details.update(id=model["id"], size=model["size"])
        self.set_header("Location", self.location(model["id"]))
        self.answer(model, status=201)


class AssetHandler(GalleryAPIHandler):
    """GET an asset with its versions; PATCH its title, description, tags or visibility;
    DELETE (unpublish) it with all its versions."""

    audit_events = {
        "PATCH": ("modify_content", "gallery"),
        "DELETE": ("delete_content", "gallery"),
    }

    @web.authenticated
    @needs_scope("gallery:read")
    async def get(self, asset_id):
        self.write_json(await self.gallery.get(self.current_user, int(asset_id)))

    @web.authenticated
    @needs_scope("gallery:write")
    async def patch(self, asset_id):
        body = self.get_json_body()
        self.audit_details = {"fields": sorted(str(k) for k in body)[:10]}
        self.answer(await self.gallery.update(self.current_user, int(asset_id), body))

    @web.authenticated
    @needs_scope("gallery:write")
    async def delete(self, asset_id):
        model = await self.gallery.unpublish(self.current_user, int(asset_id))
        self.owner = model["owner"]
        self.audit_details = {"kind": model["kind"], "versions": model["version"]}
        self.no_content()


class VersionsHandler(GalleryAPIHandler):
    """POST: publish a new version of an asset (a snapshot of a source of its kind)."""

    audit_events = {"POST": ("add_version", "gallery")}

    @web.authenticated
    @needs_scope("gallery:write")
    async def post(self, asset_id):
        body = self.get_json_body()
        model = await self.gallery.add_version(self.current_user, int(asset_id), body)
        self.audit_details = {"version": model["version"], "size": model["size"]}
        self.set_header("Location", self.location(asset_id))
        self.answer(model, status=201)


class FilesHandler(GalleryAPIHandler):
    """GET a version's files with their sizes and SHA-256s."""

    @web.authenticated
    @needs_scope("gallery:read")
    async def get(self, asset_id, version):
        files = await self.gallery.files(self.current_user, int(asset_id), int(version))
        self.write_json({"files": files})


class FileHandler(GalleryAPIHandler):
    """GET one file of a version, once its stored copy hashed to its recorded SHA-256 (409
    naming the file otherwise); the SHA-256 in X-Workbench-SHA256, for the writer to check."""

    def set_default_headers(self):
        pass

    @web.authenticated
    @needs_scope("gallery:read")
    async def get(self, asset_id, version, path):
        f, size, sha = await self.gallery.open_file(
            self.current_user, int(asset_id), int(version), path
        )
        await self.send_file(
            f,
            download_type(path),
            path.rsplit("/", 1)[-1],
            {"Content-Length": str(size), "X-Workbench-SHA256": sha},
        )


class PreviewHandler(GalleryAPIHandler):
    """GET a notebook version rendered read-only as HTML, in a sandbox that runs nothing."""

    def set_default_headers(self):
        pass

    @web.authenticated
    @needs_scope("gallery:read")
    async def get(self, asset_id, version):
        html = await self.gallery.preview(self.current_user, int(asset_id), int(version))
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Content-Security-Policy", PREVIEW_CSP)
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "no-referrer")
        self.set_header("Cache-Control", "private, max-age=300")
        self.finish(html)


class StarHandler(GalleryAPIHandler):
    """PUT stars an asset; DELETE takes the star back."""

    audit_events = {
        "PUT": ("like_content", "gallery"),
        "DELETE": ("cancel_like_content", "gallery"),
    }

    @web.authenticated
    @needs_scope("gallery:write")
    async def put(self, asset_id):
        self.answer(await self.gallery.star(self.current_user, int(asset_id)))

    @web.authenticated
    @needs_scope("gallery:write")
    async def delete(self, asset_id):
        self.answer(await self.gallery.unstar(self.current_user, int(asset_id)))


class UseHandler(GalleryAPIHandler):
    """POST: use a version of an asset (default the latest) as its kind does; counted."""

    audit_events = {"POST": ("subscription_content", "gallery")}

    @web.authenticated
    @needs_scope("gallery:write")
    async def post(self, asset_id):
        body = self.get_json_body()
        answer = await self.gallery.use(self.current_user, int(asset_id), body)
        self.owner = await self.gallery.owner_of(int(asset_id))
        details = {k: v for k, v in answer.items() if k != "files" and isinstance(v, (str, int))}
        self.audit_details = dict(list(details.items())[:8])
        self.write_json(answer)


default_handlers = [
    (r"/gallery/assets", AssetsHandler),
    (ASSET, AssetHandler),
    (ASSET + r"/versions", VersionsHandler),
    (VERSION + r"/files", FilesHandler),
    (VERSION + r"/files/(?P<path>.+)", FileHandler),
    (VERSION + r"/preview", PreviewHandler),
    (ASSET + r"/star", StarHandler),
    (ASSET + r"/use", UseHandler),
]
