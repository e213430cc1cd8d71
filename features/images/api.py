"""HTTP handlers of saved images: list, save, delete, share, push and pull."""

from __future__ import annotations

from urllib.parse import quote

from tornado import web

from hub.service.api import APIHandler, needs_scope

from .service import ImageService


class ImageAPIHandler(APIHandler):
    """Base of the saved-image handlers: the image service."""

    @property
    def images(self) -> ImageService:
        return self.settings["image_service"]


class ImagesHandler(ImageAPIHandler):
    """GET /images: preset images, the user's own saved images and those shared with them."""

    @web.authenticated
    @needs_scope("images:read")
    async def get(self):
        available = await self.settings["image_checker"]([e.ref for e in self.policy.catalog])
        presets = []
        for entry in self.policy.catalog:
            model = entry.to_dict()
            model["status"] = (
                "unknown"
                if available is None
                else "ready"
                if entry.ref in available
                else "not built"
            )
            presets.append(model)
        workspace = self.get_argument("workspace", "").strip() or None
        images = await self.run(self.images.list(self.current_user["name"], presets, workspace))
        self.write_json(images)


class SaveHandler(ImageAPIHandler):
    """POST /users/{user}/instances/{name}/save starts a save; GET shows its progress."""

    audit_events = {"POST": ("saveImage", "image")}

    def audit_resource_id(self):
        body = self.audit_details or {}
        image = f"{body.get('name', '')}:{body.get('tag', '')}"
        return f"{self.path_kwargs['user']}/{image}"

    @web.authenticated
    async def get(self, user, name):
        self.check_user(user)
        self.write_json(await self.run(self.images.save_status(user, name)))

    @web.authenticated
    async def post(self, user, name):
        self.check_user(user)
        body = self.get_json_body()
        self.audit_details = {
            "name": str(body.get("name", ""))[:64],
            "tag": str(body.get("tag", ""))[:128],
            "instance": f"{user}/{name}",
        }
        self.require_scope("images:save")
        wait = self.get_query_argument("wait", "false")
        if wait not in ("true", "false", "1", "0"):
            raise web.HTTPError(400, "'wait' must be true or false.")
        status = await self.run(self.images.start_save(user, name, body))
        self.set_header("Location", self.request.path)
        if wait in ("true", "1"):
            # answer when the save has ended: 200 with its final status (done or failed)
            self.write_json(await self.run(self.images.wait(user, name)))
            return
        self.write_json(status, status=202)


class SavedImageHandler(ImageAPIHandler):
    """DELETE /users/{user}/images/{name}/{tag}."""

    audit_events = {"DELETE": ("deleteImage", "image")}

    @web.authenticated
    @needs_scope("images:manage")
    async def delete(self, user, name, tag):
        await self.run(self.images.delete(user, name, tag))
        self.no_content()


class SharesHandler(ImageAPIHandler):
    """PUT (replace) or PATCH (add, remove) /users/{user}/images/{name}/{tag}/shares."""

    audit_events = {"PUT": ("shareImage", "image"), "PATCH": ("shareImage", "image")}

    @web.authenticated
    @needs_scope("images:manage")
    async def put(self, user, name, tag):
        body = self.audit_details = self.get_json_body()
        self.write_json(await self.run(self.images.share(user, name, tag, body, replace=True)))

    @web.authenticated
    @needs_scope("images:manage")
    async def patch(self, user, name, tag):
        body = self.audit_details = self.get_json_body()
        self.write_json(await self.run(self.images.share(user, name, tag, body, replace=False)))


class PushHandler(ImageAPIHandler):
    """POST /users/{user}/images/{name}/{tag}/push: push to the configured registry."""

    audit_events = {"POST": ("pushImage", "image")}

    @web.authenticated
    @needs_scope("images:manage")
    async def post(self, user, name, tag):
        self.write_json(await self.run(self.images.push(user, name, tag)))


class PullHandler(ImageAPIHandler):
    """POST /users/{user}/images/pull {ref, name?, tag?}: pull and register for the user."""

    audit_events = {"POST": ("pullImage", "image")}

    def audit_resource_id(self):
        return f"{self.path_kwargs['user']}/{(self.audit_details or {}).get('ref', '')}"

    @web.authenticated
    async def post(self, user):
        self.check_user(user)
        body = self.get_json_body()
        self.audit_details = {"ref": str(body.get("ref", ""))[:512]}
        self.require_scope("images:manage")
        model = await self.run(self.images.pull(user, body))
        prefix = self.settings["api_prefix"]
        self.set_header(
            "Location",
            f"{prefix}/users/{quote(user, safe='')}/images/{model['image_name']}/{model['tag']}",
        )
        self.write_json(model, status=201)


_image = r"(?P<name>[a-z0-9][a-z0-9._-]*)/(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]*)"
default_handlers = [
    (r"/images", ImagesHandler),
    (r"/users/(?P<user>[^/]+)/instances/(?P<name>[^/]+)/save", SaveHandler),
    (r"/users/(?P<user>[^/]+)/images/pull", PullHandler),
    (r"/users/(?P<user>[^/]+)/images/" + _image, SavedImageHandler),
    (r"/users/(?P<user>[^/]+)/images/" + _image + "/shares", SharesHandler),
    (r"/users/(?P<user>[^/]+)/images/" + _image + "/push", PushHandler),
]
