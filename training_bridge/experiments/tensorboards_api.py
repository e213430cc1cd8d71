"""HTTP handlers of TensorBoards: open one over runs in an instance, list, stop, delete."""

from __future__ import annotations

from tornado import web

from hub.service.api import APIHandler, needs_scope

from .tensorboards import TensorBoardService

TENSORBOARD = r"/tensorboards/(?P<tensorboard_id>[0-9]{1,9})"


class TensorBoardsAPIHandler(APIHandler):
    """Base of the TensorBoard handlers: the service; audited as owner/id."""

    @property
    def tensorboards(self) -> TensorBoardService:
        return self.settings["tensorboard_service"]

    owner = ""

    def audit_resource_id(self):
        tensorboard_id = self.path_kwargs.get("tensorboard_id") or (self.audit_details or {}).get(
            "id", ""
        )
        return f"{self.owner or self.actor()}/{tensorboard_id}"


class TensorBoardsHandler(TensorBoardsAPIHandler):
    """GET: your TensorBoards, newest first (?all=1: everyone's, for admins). POST: open one
    in an instance over your runs or a search's trials."""

    audit_events = {"POST": ("createModelArtsTensorboardJob", "tensorboard")}

    @web.authenticated
    @needs_scope("experiments:read")
    async def get(self):
        all_users = self.get_query_argument("all", "0") in ("1", "true")
        self.write_json(await self.tensorboards.list(self.current_user, all_users))

    @web.authenticated
    @needs_scope("experiments:write")
    async def post(self):
        body = self.get_json_body()
        self.audit_details = {"instance": str(body.get("instance", ""))[:255]}
        model = await self.tensorboards.create(self.current_user, body)
        self.audit_details.update(
            id=model["id"], runs=[f"{r['name']}/{r['version']}" for r in model["runs"]]
        )
        self.set_header("Location", f"{self.settings['api_prefix']}/tensorboards/{model['id']}")
        self.write_json(model, status=201)


class TensorBoardHandler(TensorBoardsAPIHandler):
    """GET a TensorBoard; DELETE it (stopped first)."""

    audit_events = {"DELETE": ("deleteModelArtsTensorboardJob", "tensorboard")}

    @web.authenticated
    @needs_scope("experiments:read")
    async def get(self, tensorboard_id):
        self.write_json(await self.tensorboards.get(self.current_user, int(tensorboard_id)))

    @web.authenticated
    @needs_scope("experiments:write")
    async def delete(self, tensorboard_id):
        model = await self.tensorboards.get(self.current_user, int(tensorboard_id))
        self.owner = model["owner"]
        await self.tensorboards.delete(self.current_user, int(tensorboard_id))
        self.no_content()


class StopHandler(TensorBoardsAPIHandler):
    """POST .../stop: the TensorBoard is stopped (its process in the instance is stopped by
    whoever started it: the lab extension or the SDK)."""

    audit_events = {"POST": ("stopModelArtsTensorboardJob", "tensorboard")}

    @web.authenticated
    @needs_scope("experiments:write")
    async def post(self, tensorboard_id):
        model = await self.tensorboards.stop(self.current_user, int(tensorboard_id))
        self.owner = model["owner"]
        self.write_json(model)


default_handlers = [
    (r"/tensorboards", TensorBoardsHandler),
    (TENSORBOARD, TensorBoardHandler),
    (TENSORBOARD + r"/stop", StopHandler),
]
