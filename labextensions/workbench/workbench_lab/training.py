"""Training jobs from this instance: submit its files as a job, and relay the panel's job calls."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from urllib.parse import quote

from jupyter_server.auth.decorator import authorized
from tornado import web
from tornado.iostream import StreamClosedError
from workbench import WorkbenchError
from workbench.resources.jobs import JobSourceError, build_archive, default_job_name

from .handlers import WorkbenchHandler
from .platform import PlatformError

JOBS_UNAVAILABLE = "Training jobs are not available on this platform version."
# what the submit form may set, passed on to the platform as they are
JOB_FIELDS = (
    "description",
    "workspace",
    "command",
    "runtime",
    "image",
    "flavor",
    "nodes",
    "processes_per_node",
    "hyperparameters",
    "inputs",
    "metrics",
    "max_run_seconds",
    "max_restarts",
)
RERUN_FIELDS = tuple(f for f in JOB_FIELDS if f not in ("workspace", "description"))
# seconds to wait for the platform to take a job: it checks the image on the engine first
SUBMIT_LIMIT = 120.0
STOP_LIMIT = 60.0
RUNTIMES = ("plain", "pytorch", "tensorflow", "mindspore")


def job_path(owner: str, name: str, *rest: str) -> str:
    """The platform API path of a job (or below it), the names quoted."""
    parts = ["jobs", quote(owner, safe=""), quote(name, safe=""), *rest]
    return "/".join(parts)


def resolve_source(root_dir: str, path: str) -> Path:
    """The file or folder `path` (relative to the server's root) on disk; HTTPError 400 when it
    lies outside the root (.., absolute paths, links leading out) or does not exist."""
    if not isinstance(path, str) or not path.strip():
        raise web.HTTPError(400, "Give the path of a .py file, a notebook or a folder to submit.")
    root = Path(root_dir).resolve()
    relative = path.strip().lstrip("/")
    local = (root / relative).resolve()
    if local != root and root not in local.parents:
        raise web.HTTPError(
            400, f"{path!r} is outside this server's folder ({root}): submit files inside it."
        )
    if not local.exists():
        raise web.HTTPError(400, f"No such file or folder: {path!r}.")
    return local


def code_source(root_dir: str, path: str) -> tuple[str, str, str | None, bytes]:
    """A default job name for the file or folder to submit, its kind, entry and code archive
    (the client's own: a .py or notebook alone, a folder without caches and links); blocking."""
    local = resolve_source(root_dir, path)
    if local.is_file() and local.suffix not in (".py", ".ipynb"):
        raise web.HTTPError(
            400,
            f"{path.strip()} is neither a .py file nor a notebook: submit one of those, or the "
            "folder holding it with the command that runs it.",
        )
    try:
        kind, entry, archive = build_archive(local)
    except JobSourceError as e:
        raise web.HTTPError(400, e.message.replace(str(local), path.strip())) from None
    except OSError as e:
        raise web.HTTPError(400, f"Cannot read {path!r}: {e.strerror or e}.") from None
    return default_job_name(local), kind, entry, archive


def platform_error(e: WorkbenchError) -> PlatformError | None:
    """A refusal of the jobs API relayed with its own message (the instance's generic mapping
    would call every 403 a token problem: here it is a workspace or quota refusal)."""
    if e.status in (403, 409, 413, 422, 429):
        return PlatformError(e.status, e.message)
    return None


class TrainingHandler(WorkbenchHandler):
    """A relay of the platform's jobs API with this instance's token."""

    async def api(self, method: str, path: str, body=None, *, params=None, limit=None):
        """Call the platform API; its refusals become HTTP errors with its message."""

        async def request():
            try:
                return await self.platform.client.api(
                    method, path, body, params=params, limit=limit
                )
            except WorkbenchError as e:
                relayed = platform_error(e)
                if relayed is None:
                    raise
                raise relayed from None

        try:
            return await self.platform.call(request())
        except PlatformError as e:
            raise self.http_error(e) from None

    def relayed(self, e: WorkbenchError) -> web.HTTPError:
        """The HTTP error for a refusal of the jobs API (or no answer from it)."""
        return self.http_error(platform_error(e) or self.platform._error(e))

    @staticmethod
    def http_error(e: PlatformError) -> web.HTTPError:
        if e.missing_route:
            return web.HTTPError(501, JOBS_UNAVAILABLE)
        return web.HTTPError(e.code, e.message)

    def work_folder(self) -> str | None:
        """The instance's storage relative to this server's root ('' when it is the root),
        where the owner's jobs appear under jobs/; None when it lies outside the root."""
        root = Path(self.contents_manager.root_dir).resolve()
        storage = Path(self.extensionapp.storage_path).resolve()
        if storage == root:
            return ""
        if root in storage.parents:
            return storage.relative_to(root).as_posix()
        return None


class OptionsHandler(TrainingHandler):
    """What the submit form starts from: this instance's image and flavor, the flavors, the
    runtimes, and where job files appear in this instance."""

    @web.authenticated
    @authorized
    async def get(self):
        platform = self.platform
        model, flavors = await asyncio.gather(
            self.call(platform.instance_model()), self.call(platform.flavors())
        )
        self.write_json(
            {
                "instance": platform.instance,
                "owner": model.get("owner") or platform.user,
                "image": model.get("image"),
                "flavor": model.get("flavor"),
                "flavors": flavors,
                "runtimes": list(RUNTIMES),
                "work_folder": self.work_folder(),
            }
        )


class ImagesHandler(TrainingHandler):
    """The names of the images the user may run jobs on (the form's suggestions)."""

    @web.authenticated
    @authorized
    async def get(self):
        images = await self.api("GET", "images")
        self.write_json(
            [
                i["name"]
                for i in images or []
                if isinstance(i, dict) and i.get("name") and i.get("state", "ready") == "ready"
            ]
        )


class JobsHandler(TrainingHandler):
    """GET: the jobs the user may see. POST: submit a file, notebook or folder of this
    instance as a new job."""

    @web.authenticated
    @authorized
    async def get(self):
        params = {k: self.get_argument(k) for k in ("workspace", "all") if self.get_argument(k, "")}
        self.write_json(await self.api("GET", "jobs", params=params or None))

    @web.authenticated
    @authorized
    async def post(self):
        body = self.json_body()
        path = body.get("path")
        default_name, kind, entry, archive = await asyncio.to_thread(
            code_source, self.contents_manager.root_dir, path
        )
        name = body.get("name") or default_name
        if not isinstance(name, str):
            raise web.HTTPError(400, "The job's name must be text.")
        command = body.get("command")
        if kind == "folder" and not (isinstance(command, str) and command.strip()):
            raise web.HTTPError(
                400, "A folder needs the command that runs it, e.g. `python train.py`."
            )
        job = {"name": name}
        for field in JOB_FIELDS:
            value = body.get(field)
            if value is not None and value != "":
                job[field] = value
        if kind == "notebook":
            job.pop("command", None)
        if self.platform.instance:
            job["instance"] = self.platform.instance
        job["source"] = {"kind": kind, "archive": base64.b64encode(archive).decode()}
        if entry is not None:
            job["source"]["entry"] = entry
        self.log.info(
            "workbench_lab: submitting %s %s as job %s (%d bytes of code)",
            kind,
            path,
            name,
            len(archive),
        )
        result = await self.api("POST", "jobs", job, limit=SUBMIT_LIMIT)
        self.write_json(result, status=201)


class JobHandler(TrainingHandler):
    @web.authenticated
    @authorized
    async def get(self, owner, name):
        self.write_json(await self.api("GET", job_path(owner, name)))


class VersionsHandler(TrainingHandler):
    """Re-run a job: a new version with the previous code and the fields sent changed."""

    @web.authenticated
    @authorized
    async def post(self, owner, name):
        body = self.json_body()
        edits = {k: body[k] for k in RERUN_FIELDS if k in body and body[k] is not None}
        path = job_path(owner, name, "versions")
        result = await self.api("POST", path, edits, limit=SUBMIT_LIMIT)
        self.write_json(result, status=201)


class VersionHandler(TrainingHandler):
    @web.authenticated
    @authorized
    async def get(self, owner, name, version):
        self.write_json(await self.api("GET", job_path(owner, name, "versions", version)))


class StopVersionHandler(TrainingHandler):
    @web.authenticated
    @authorized
    async def post(self, owner, name, version):
        path = job_path(owner, name, "versions", version, "stop")
        self.write_json(await self.api("POST", path, limit=STOP_LIMIT))


class MetricsHandler(TrainingHandler):
    @web.authenticated
    @authorized
    async def get(self, owner, name, version):
        path = job_path(owner, name, "versions", version, "metrics")
        self.write_json(await self.api("GET", path))


class LogsHandler(TrainingHandler):
    """A node's log as text; with follow=1 streamed as the platform sends it, until the version
    ends or the browser goes away."""

    _relay: asyncio.Task | None = None

    @web.authenticated
    @authorized
    async def get(self, owner, name, version):
        follow = self.get_argument("follow", "0").lower() in ("1", "true", "yes")
        node = self.get_argument("node", "0")
        if not node.isdigit():
            raise web.HTTPError(400, "node must be a node's rank: 0, 1, ...")
        # no configured platform: the client's own 503 message
        await self.call(self.platform.call(asyncio.sleep(0)))
        self._relay = asyncio.ensure_future(self.relay(owner, name, version, node, follow))
        try:
            await self._relay
        except asyncio.CancelledError:
            # the browser went away: nobody to answer
            return

    def on_connection_close(self):
        super().on_connection_close()
        if self._relay is not None and not self._relay.done():
            self._relay.cancel()

    async def relay(self, owner, name, version, node, follow):
        path = job_path(owner, name, "versions", version, "logs")
        params = {"node": node, "follow": "1" if follow else "0"}
        started = False
        try:
            # no limit while following: a queued job's log stays quiet for a while
            stream = self.platform.client.api_stream(
                "GET", path, params=params, limit=None if follow else self.platform.timeout
            )
            async with stream as resp:
                self.set_header("Content-Type", "text/plain; charset=utf-8")
                self.set_header("Cache-Control", "no-cache")
                self.set_header("X-Accel-Buffering", "no")
                async for chunk in resp.aiter_bytes():
                    if not chunk:
                        continue
                    self.write(chunk)
                    started = True
                    try:
                        await self.flush()
                    except StreamClosedError:
                        return
        except WorkbenchError as e:
            if not started:
                raise self.relayed(e) from None
            # the platform broke off: the log ends here, the panel follows again if it runs
            self.log.info("workbench_lab: log stream of %s/%s broke off: %s", owner, name, e)
        self.finish(set_content_type="text/plain; charset=utf-8")


def routes() -> list[tuple[str, type]]:
    """The extension's training routes under <base_url>/workbench/training/."""
    job = r"/workbench/training/jobs/([^/]+)/([^/]+)"
    version = job + r"/versions/(\d+)"
    return [
        (r"/workbench/training/options", OptionsHandler),
        (r"/workbench/training/images", ImagesHandler),
        (r"/workbench/training/jobs", JobsHandler),
        (job, JobHandler),
        (job + r"/versions", VersionsHandler),
        (version, VersionHandler),
        (version + r"/stop", StopVersionHandler),
        (version + r"/metrics", MetricsHandler),
        (version + r"/logs", LogsHandler),
    ]
