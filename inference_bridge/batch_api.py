"""HTTP handlers of batch inference runs: start one, list them, show one (the rest: /jobs)."""

from __future__ import annotations

from urllib.parse import quote

from tornado import web

from hub.service.api import APIHandler, OwnedCollection, needs_scope

from .batch import BatchRuns

RUN = r"/batch/(?P<owner>[^/]+)/(?P<name>[^/]+)"


class BatchAPIHandler(APIHandler):
    """Base of the batch handlers: the batch runs, over the job service and model registry."""

    @property
    def batch(self) -> BatchRuns:
        runs = self.settings.get("batch_runs")
        if runs is None:
            platform = self.settings["platform"]
            runs = BatchRuns(platform["job_service"], platform.get("model_registry"))
            self.settings["batch_runs"] = runs
        return runs


class BatchRunsHandler(OwnedCollection, BatchAPIHandler):
    """GET /batch lists the caller's (and their workspaces') batch runs; POST /batch starts
    one (a job version; stop, logs and files through /jobs/{owner}/{name}/versions/{v})."""

    # a batch run is a training job's version: the jobs' audit events
    audit_events = {"POST": ("createModelArtsTrainJob", "job")}

    def audit_event(self):
        # the same name again is the run's next version
        if self.request.method == "POST" and (self.audit_details or {}).get("version", 1) > 1:
            return ("createModelArtsTrainVersion", "job")
        return super().audit_event()

    @web.authenticated
    @needs_scope("jobs:read")
    async def get(self):
        workspace, all_users = self.listing_query()
        self.write_json(await self.batch.list(self.current_user, workspace, all_users))

    @web.authenticated
    async def post(self):
        body = self.get_json_body()
        self.audit_details = {
            "name": str(body.get("name", ""))[:64],
            "kind": "batch",
            "model": str(body.get("model", ""))[:128],
            "model_version": body.get("version") if isinstance(body.get("version"), int) else None,
        }
        self.require_scope("jobs:submit")
        self.require_scope("models:read")
        model = await self.batch.create(self.current_user, body)
        self.audit_details["version"] = model["version"]
        self.set_header(
            "Location",
            f"{self.settings['api_prefix']}/batch/{quote(model['owner'])}/{model['name']}",
        )
        self.write_json(model, status=201)


class BatchRunHandler(BatchAPIHandler):
    """GET a batch run with its versions, their model, output file and progress."""

    @web.authenticated
    @needs_scope("jobs:read")
    async def get(self, owner, name):
        self.write_json(await self.batch.get(self.current_user, owner, name))


default_handlers = [
    (r"/batch", BatchRunsHandler),
    (RUN, BatchRunHandler),
]
