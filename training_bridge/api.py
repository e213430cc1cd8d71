"""HTTP handlers of training jobs: submit, list, versions, stop, logs, metrics and files."""

from __future__ import annotations

import asyncio
from urllib.parse import quote

from tornado import web
from tornado.iostream import StreamClosedError

from hub.service.api import APIError, APIHandler, OwnedCollection, download_type, needs_scope

from .service import JobService

JOB = r"/jobs/(?P<owner>[^/]+)/(?P<name>[^/]+)"
VERSION = JOB + r"/versions/(?P<version>[0-9]{1,9})"


class JobsAPIHandler(APIHandler):
    """Base of the job handlers: the job service."""

    @property
    def jobs(self) -> JobService:
        return self.settings["job_service"]

    def audit_resource_id(self):
        kwargs = self.path_kwargs
        parts = [kwargs.get("owner"), kwargs.get("name"), kwargs.get("version")]
        return "/".join(p for p in parts if p)


class JobsHandler(OwnedCollection, JobsAPIHandler):
    """GET /jobs lists visible jobs; POST /jobs submits a new one (its version 1)."""

    audit_events = {"POST": ("createModelArtsTrainJob", "job")}

    @web.authenticated
    @needs_scope("jobs:read")
    async def get(self):
        workspace, all_users = self.listing_query()
        self.write_json(await self.jobs.list(self.current_user, workspace, all_users))

    @web.authenticated
    async def post(self):
        body = self.get_json_body()
        self.audit_details = {"name": str(body.get("name", ""))[:64]}
        self.require_scope("jobs:submit")
        model = await self.jobs.create(self.current_user, body)
        self.audit_details.update(version=1, image=model["spec"]["image"])
        self.set_header(
            "Location",
            f"{self.settings['api_prefix']}/jobs/{quote(model['owner'])}/{model['name']}",
        )
        self.write_json(model, status=201)


class JobHandler(JobsAPIHandler):
    """GET a job with its versions; PATCH its description; DELETE it and everything it made."""

    audit_events = {
        "PATCH": ("updateModelArtsTrainDesc", "job"),
        "DELETE": ("deleteModelArtsTrainJob", "job"),
    }

    @web.authenticated
    @needs_scope("jobs:read")
    async def get(self, owner, name):
        self.write_json(await self.jobs.get(self.current_user, owner, name))

    @web.authenticated
    @needs_scope("jobs:manage")
    async def patch(self, owner, name):
        body = self.get_json_body()
        self.write_json(await self.jobs.update(self.current_user, owner, name, body))

    @web.authenticated
    @needs_scope("jobs:manage")
    async def delete(self, owner, name):
        await self.jobs.delete(self.current_user, owner, name)
        self.no_content()


class VersionsHandler(JobsAPIHandler):
    """POST a new version of a job: a re-run, with changes over its latest version."""

    audit_events = {"POST": ("createModelArtsTrainVersion", "job")}

    @web.authenticated
    @needs_scope("jobs:submit")
    async def post(self, owner, name):
        body = self.get_json_body()
        model = await self.jobs.rerun(self.current_user, owner, name, body)
        self.audit_details = {"version": model["version"]}
        self.set_header(
            "Location",
            f"{self.settings['api_prefix']}/jobs/{quote(owner)}/{name}/versions/{model['version']}",
        )
        self.write_json(model, status=201)


class VersionHandler(JobsAPIHandler):
    """GET a version; DELETE it (stopping it first)."""

    audit_events = {"DELETE": ("deleteModelArtsTrainVersion", "job")}

    @web.authenticated
    @needs_scope("jobs:read")
    async def get(self, owner, name, version):
        self.write_json(await self.jobs.get_version(self.current_user, owner, name, int(version)))

    @web.authenticated
    @needs_scope("jobs:manage")
    async def delete(self, owner, name, version):
        await self.jobs.delete_version(self.current_user, owner, name, int(version))
        self.no_content()


class StopHandler(JobsAPIHandler):
    """POST .../versions/{v}/stop: stop a queued or running version."""

    audit_events = {"POST": ("stopModelArtsTrainVersion", "job")}

    @web.authenticated
    @needs_scope("jobs:manage")
    async def post(self, owner, name, version):
        self.write_json(await self.jobs.stop(self.current_user, owner, name, int(version)))


class MetricsHandler(JobsAPIHandler):
    """GET .../metrics: each metric's points, from log lines and TensorBoard event files."""

    @web.authenticated
    @needs_scope("jobs:read")
    async def get(self, owner, name, version):
        self.write_json(await self.jobs.metrics(self.current_user, owner, name, int(version)))


class LogsHandler(JobsAPIHandler):
    """GET .../logs?node=0&follow=1: one node's log as text; follow streams it until the
    version ends (from submission on: queued and starting runs stay open)."""

    def set_default_headers(self):
        self.set_header("Content-Type", "text/plain; charset=utf-8")

    @web.authenticated
    @needs_scope("jobs:read")
    async def get(self, owner, name, version):
        try:
            node = int(self.get_query_argument("node", "0"))
        except ValueError:
            raise APIError(400, "node must be a node's rank, 0 for the first.") from None
        follow = self.get_query_argument("follow", "0")
        if follow not in ("0", "1", "true", "false"):
            raise APIError(400, "follow must be 1 or 0.")
        follow = follow in ("1", "true")
        path, version_id = await self.jobs.log_source(
            self.current_user, owner, name, int(version), node
        )
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Cache-Control", "no-cache")
        offset = 0
        ended = False
        try:
            while True:
                waiter = None
                log_file = self.jobs.log_file(version_id, node)
                if log_file is not None:
                    waiter = log_file.changed
                data = await asyncio.to_thread(_read_from, path, offset)
                if data:
                    offset += len(data)
                    self.write(data)
                    await self.flush()
                if not follow or ended:
                    break
                if not data and log_file is None and not await self.jobs.is_active(version_id):
                    ended = True  # one more read catches the last lines
                    continue
                if waiter is not None:
                    try:
                        await asyncio.wait_for(waiter.wait(), 1.0)
                    except TimeoutError:
                        pass
                else:
                    await asyncio.sleep(0.5)
        except StreamClosedError:
            return
        self.finish()


def _read_from(path, offset: int, limit: int = 1024**2) -> bytes:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read(limit)
    except FileNotFoundError:
        return b""


class FilesHandler(JobsAPIHandler):
    """GET .../files?path=output: the files below one of a version's folders."""

    @web.authenticated
    @needs_scope("jobs:read")
    async def get(self, owner, name, version):
        path = self.get_query_argument("path", "output")
        self.write_json(await self.jobs.files(self.current_user, owner, name, int(version), path))


class FileHandler(JobsAPIHandler):
    """GET .../files/<path>: download one file of a version (output, checkpoints, code, logs)."""

    def set_default_headers(self):
        pass

    @web.authenticated
    @needs_scope("jobs:read")
    async def get(self, owner, name, version, path):
        f = await self.jobs.open_file(self.current_user, owner, name, int(version), path)
        await self.send_file(f, download_type(path), path.rsplit("/", 1)[-1])


default_handlers = [
    (r"/jobs", JobsHandler),
    (JOB, JobHandler),
    (JOB + r"/versions", VersionsHandler),
    (VERSION, VersionHandler),
    (VERSION + r"/stop", StopHandler),
    (VERSION + r"/metrics", MetricsHandler),
    (VERSION + r"/logs", LogsHandler),
    (VERSION + r"/files", FilesHandler),
    (VERSION + r"/files/(?P<path>.+)", FileHandler),
]
