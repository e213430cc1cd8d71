"""The job service in the platform API: submissions, the queue, and watching each run.

One loop (a task of the API service) admits queued versions in submission order against the
owners' and workspaces' quotas and the machine's size, starts them through the runner,
watches their nodes, restarts all nodes of a run whose node failed (up to max_restarts),
enforces the maximum run time, and ends runs with a state and a reason a person understands.
Node output is streamed into per-node log files as it comes (followers are woken at once);
metric lines are parsed from it, TensorBoard event files are read from the output folder.
Jobs outlive the instance they came from, and the API service itself: at start it takes up
the runs it finds active.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import shlex
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select
from workbench.times import utcnow

from hub.service.api import APIError
from spawner.flavors import format_bytes
from spawner.oom import OOM_LINE
from spawner.options import InvalidOptions
from spawner.quotas import GIB

from . import store
from .files import FilesError, JobFolders, check_archive, decode_archive
from .metrics import EventFileWatcher, LogMetricParser, MetricPoint, compile_metric_rules
from .plan import InputChannel, JobPlan, Mount, channel_env, dataset_target
from .runners import EXITED, MISSING, PENDING, RUNNING, JobRunner, NodeStatus
from .spec import (
    SpecError,
    check_description,
    check_name,
    check_platform_fields,
    check_spec,
    job_command,
    job_kind,
)
from .store import (
    ACTIVE,
    FAILED,
    QUEUED,
    STARTING,
    STOPPED,
    STOPPING,
    SUCCEEDED,
    Job,
    JobMetric,
    JobVersion,
)

log = logging.getLogger("workbench.jobs")

EVENT_PREFIX = "[workbench] "

# the reason of a version that is stopping because someone asked (who follows)
ASKED = "stopping: asked by "


def _now_text() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())


@dataclass
class LogFile:
    """One node's log: appended by its pump and the scheduler's events; followers wait on
    `changed` (replaced after each append, so each waiter sees every change)."""

    path: object
    # most bytes kept: a job printing without end must not fill the platform's disk
    limit: int = 256 * 1024**2
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    size: int = -1

    def append(self, data: bytes) -> None:
        if self.size < 0:
            try:
                self.size = os.path.getsize(self.path)
            except OSError:
                self.size = 0
        if data and self.size < self.limit:
            if self.size + len(data) >= self.limit:
                limit_mib = self.limit // 1024**2
                data = f"{EVENT_PREFIX}the log reached {limit_mib} MiB: later lines are dropped\n"
                data = data.encode()
                self.size = self.limit
            else:
                self.size += len(data)
            with open(self.path, "ab") as f:
                f.write(data)
        event, self.changed = self.changed, asyncio.Event()
        event.set()


@dataclass
class Run:
    """What the service holds for an active version."""

    version_id: int
    plan: JobPlan
    logs: list[LogFile]
    parser: LogMetricParser
    watcher: EventFileWatcher
    pumps: list[asyncio.Task] = field(default_factory=list)
    points: list[MetricPoint] = field(default_factory=list)
    busy: bool = False  # a start, restart or stop is under way
    oom: set = field(default_factory=set)  # ranks whose command the memory cgroup killed
    stop_sent: bool = False
    last_tensorboard: float = 0


class JobService:
    """Submissions, queue, runs, logs and metrics of training jobs."""

    def __init__(
        self,
        *,
        db,
        hub,
        policy,
        settings,
        job_settings,
        runner: JobRunner,
        folders: JobFolders,
        quotas=None,
        workspaces=None,
        usage=None,
        image_checker=None,
        environment: dict | None = None,
    ):
        self.db = db
        self.hub = hub
        self.policy = policy
        self.settings = settings
        self.config = job_settings
        self.runner = runner
        self.folders = folders
        self.quotas = quotas
        self.workspaces = workspaces
        self.usage = usage
        self.image_checker = image_checker
        self.environment = dict(environment or {})
        # the platform's stores versions may mount read-only (spec "mounts"), by name; a name
        # not here is the folder of that name in the platform's data (see store_root)
        self.stores: dict[str, Path] = {}
        # async (user, "name" | "owner/name", version) -> {"dataset": "owner/name", "store",
        # "path"} for dataset inputs: set by the datasets feature (None: not enabled)
        self.dataset_inputs = None
        self.runs: dict[int, Run] = {}
        self.wakeup = asyncio.Event()
        self._loop_task: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()
        self._queue_positions: dict[int, int] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._closing = False

    # --- visibility ----------------------------------------------------------------------
    async def _member_of(self, user: str) -> set[str]:
        if self.workspaces is None:
            return {"default"}

        def names(session):
            from features.workspaces.store import workspaces_of

            return {w["name"] for w in workspaces_of(session, user)}

        try:
            return await self.db.run(names)
        except Exception:  # noqa: BLE001 - no workspaces table: the default one only
            return {"default"}

    async def _can_see(self, caller: dict, job: Job) -> bool:
        if caller.get("admin") or job.owner == caller["name"]:
            return True
        if job.workspace == "default":
            return False
        return job.workspace in await self._member_of(caller["name"])

    def _can_change(self, caller: dict, job: Job) -> bool:
        return bool(caller.get("admin")) or job.owner == caller["name"]

    async def _job(self, caller: dict, owner: str, name: str, *, change: bool = False) -> Job:
        job = await self.db.run(lambda s: store.find_job(s, owner, name))
        if job is None or not await self._can_see(caller, job):
            raise APIError(404, f"No job {name!r} of user {owner!r}.")
        if change and not self._can_change(caller, job):
            raise APIError(
                403,
                f"Job {owner}/{name} belongs to {owner}: only they and administrators "
                "may change it.",
            )
        return job

    async def _version(self, job: Job, version: int) -> JobVersion:
        row = await self.db.run(lambda s: store.find_version(s, job, version))
        if row is None:
            raise APIError(404, f"Job {job.owner}/{job.name} has no version {version}.")
        return row

    def _model(self, job: Job, row: JobVersion) -> dict:
        return store.version_model(job, row, self._queue_positions.get(row.id))

    # --- reading -------------------------------------------------------------------------
    async def list(
        self, caller: dict, workspace: str | None = None, all_users=False, kind: str | None = None
    ) -> list:
        """The jobs the caller sees, newest first; only those whose latest version is of
        `kind` (training, batch) when given."""
        member_of = await self._member_of(caller["name"])

        def read(session):
            q = select(Job).order_by(Job.created.desc(), Job.id.desc())
            out = []
            for job in session.scalars(q):
                if workspace is not None and job.workspace != workspace:
                    continue
                visible = (
                    job.owner == caller["name"]
                    or (all_users and caller.get("admin"))
                    or (job.workspace != "default" and job.workspace in member_of)
                )
                if not visible:
                    continue
                latest = session.scalars(
                    select(JobVersion)
                    .where(JobVersion.job_id == job.id)
                    .order_by(JobVersion.version.desc())
                ).first()
                if kind is not None and (
                    latest is None or job_kind(json.loads(latest.spec)) != kind
                ):
                    continue
                model = store.job_model(job, latest)
                if latest is not None:
                    model["queue_position"] = self._queue_positions.get(latest.id)
                out.append(model)
            return out

        return await self.db.run(read)

    async def get(self, caller: dict, owner: str, name: str) -> dict:
        job = await self._job(caller, owner, name)

        def read(session):
            rows = store.versions_of(session, job)
            return store.job_model(
                job, rows[-1] if rows else None, [self._model(job, r) for r in rows]
            )

        return await self.db.run(read)

    async def get_version(self, caller: dict, owner: str, name: str, version: int) -> dict:
        job = await self._job(caller, owner, name)
        return self._model(job, await self._version(job, version))

    async def metrics(self, caller: dict, owner: str, name: str, version: int) -> dict:
        job = await self._job(caller, owner, name)
        row = await self._version(job, version)
        run = self.runs.get(row.id)
        if run is not None:
            await self._flush_points(run)

        def read(session):
            q = (
                select(JobMetric)
                .where(JobMetric.version_id == row.id)
                .order_by(JobMetric.name, JobMetric.step, JobMetric.id)
            )
            out: dict[str, list] = {}
            for m in session.scalars(q):
                out.setdefault(m.name, []).append(
                    {
                        "step": m.step,
                        "value": m.value,
                        "time": datetime.fromtimestamp(m.time, UTC).isoformat(),
                        "source": m.source,
                    }
                )
            return out

        return await self.db.run(read)

    # --- submitting ----------------------------------------------------------------------
    async def _servers(self, user: str) -> dict:
        servers = await self.hub.servers(user)
        return servers or {}

    async def _resolve(self, user: str, spec: dict, instance_options: dict) -> tuple:
        """The spec's image and flavor (defaults: the submitting instance's), checked."""
        image_name = (
            spec.get("image") or instance_options.get("image") or (self.policy.default_image)
        )
        flavor_name = (
            spec.get("flavor") or instance_options.get("flavor") or (self.policy.default_flavor)
        )
        if not isinstance(image_name, str) or not isinstance(flavor_name, str):
            raise SpecError("image and flavor must be names (see GET /images and /flavors).")
        await self.policy.prefetch(user, image_name)
        try:
            image = self.policy.image(image_name, user)
            flavor = self.policy.flavor(flavor_name)
        except InvalidOptions as e:
            raise SpecError(str(e)) from None
        if self.image_checker is not None:
            present = await self.image_checker(image.ref)
            if present is False:
                raise SpecError(
                    f"Image {image_name!r} ({image.ref}) is not built on this machine. Build it "
                    f"with `workbench images build {image.name}`, or pick another image."
                )
        if spec["nodes"] > self.config.max_nodes:
            raise SpecError(
                f"nodes {spec['nodes']} is more than the {self.config.max_nodes} a job may use."
            )
        capacity = await self.runner.capacity()
        if capacity is not None:
            ncpu, memory = capacity
            need_cpu, need_mem = flavor.cpu * spec["nodes"], flavor.memory * spec["nodes"]
            if (ncpu and need_cpu > ncpu) or (memory and need_mem > memory):
                raise SpecError(
                    f"{spec['nodes']} node(s) of flavor {flavor.name!r} need {need_cpu:g} vCPUs "
                    f"and {format_bytes(need_mem)}; this machine has {ncpu:g} vCPUs and "
                    f"{format_bytes(memory)}. Pick a smaller flavor or fewer nodes."
                )
        spec["image"], spec["flavor"] = image_name, flavor.name
        return image, flavor

    async def _instance_options(self, user: str, body: dict, servers: dict) -> dict:
        instance = body.get("instance")
        if instance in (None, ""):
            return {}
        if not isinstance(instance, str) or instance not in servers:
            raise SpecError(f"You have no instance {instance!r} (the 'instance' field).")
        return servers[instance].get("user_options") or {}

    async def _prepare(self, user: str, body: dict, previous: dict | None = None):
        """(spec, code bytes or None): a submission checked end to end before anything is
        made, so a refusal leaves nothing behind."""
        source = body.get("source")
        raw = names = None
        if previous is None or source is not None:
            if not isinstance(source, dict):
                raise SpecError(
                    'source is required: {"kind": "file", "entry": "train.py", '
                    '"archive": <base64 .tar.gz>}.'
                )
            limit = self.config.max_code_mib * 1024**2
            try:
                raw = decode_archive(source.get("archive"), limit)
                names = check_archive(raw, limit)
            except FilesError as e:
                raise SpecError(str(e)) from None
            body = {**body, "source": {k: v for k, v in source.items() if k != "archive"}}
        servers = await self._servers(user)
        instances = {n for n in servers if n}
        spec = check_spec(body, previous=previous, names=names, instances=instances)
        await self._resolve(user, spec, await self._instance_options(user, body, servers))
        await self._resolve_datasets(user, spec)
        return spec, raw

    async def _resolve_datasets(self, user: str, spec: dict) -> None:
        """Each dataset input, checked against what the submitter may see, with the store
        folder of its published version (mounted read-only in every node)."""
        for name, channel in spec["inputs"].items():
            if "dataset" not in channel:
                continue
            if self.dataset_inputs is None:
                raise SpecError(f"Input {name!r}: datasets are not enabled on this platform.")
            found = await self.dataset_inputs(user, channel["dataset"], channel["version"])
            spec["inputs"][name] = {
                "dataset": found["dataset"],
                "version": channel["version"],
                "store": found["store"],
                "path": found["path"],
            }

    async def create(self, caller: dict, body: dict, *, platform: dict | None = None) -> dict:
        """Version 1 of a new job. `platform`: the spec's platform-only fields (kind, mounts,
        environment, origin; see spec.check_platform_fields), given by a feature's code
        (a batch run), never taken from the request's body."""
        owner = caller["name"]
        try:
            name = check_name(body.get("name"))
            description = check_description(body.get("description"))
            workspace = body.get("workspace") or "default"
            if not isinstance(workspace, str):
                raise SpecError("workspace must be a workspace's name.")
            if workspace != "default" and workspace not in await self._member_of(owner):
                raise SpecError(f"You are not a member of workspace {workspace!r}.")
            spec, raw = await self._prepare(owner, body)
        except SpecError as e:
            raise APIError(400, str(e)) from None
        if platform is not None:
            spec.update(check_platform_fields(platform))

        def insert(session):
            if store.find_job(session, owner, name) is not None:
                return None
            job = Job(owner=owner, name=name, description=description, workspace=workspace)
            session.add(job)
            session.flush()
            row = JobVersion(job_id=job.id, version=1, spec=json.dumps(spec), state=QUEUED)
            session.add(row)
            session.flush()
            # the files before the commit: the scheduler never sees a version without its code
            self._made_folders(owner, name, 1, raw, whole_job=True)
            session.expunge_all()
            return job, row

        async with self._lock(owner):
            made = await self.db.run(insert)
        if made is None:
            raise APIError(
                409,
                f"You already have a job named {name!r}: re-run it (POST "
                f"/jobs/{owner}/{name}/versions) or pick another name.",
            )
        job, row = made
        self._event(job, row, spec, "submitted; queued")
        self.wakeup.set()
        return self._model(job, row)

    async def rerun(
        self, caller: dict, owner: str, name: str, body: dict, *, platform: dict | None = None
    ) -> dict:
        """A new version with changes over the latest; `platform` as in create(). A batch
        run is re-run by its feature (which checks its model again), not through this route
        alone."""
        job = await self._job(caller, owner, name, change=True)
        rows = await self.db.run(lambda s: store.versions_of(s, job))
        last = rows[-1]
        previous = json.loads(last.spec)
        fields = check_platform_fields(platform) if platform is not None else {}
        if job_kind(previous) != job_kind(fields):
            if job_kind(previous) == "batch":
                raise APIError(
                    400,
                    f"{owner}/{name} is a batch run: run it again with POST /batch (the same "
                    "name makes a new version).",
                )
            raise APIError(
                409, f"You have a {job_kind(previous)} job named {name!r}: pick another name."
            )
        try:
            spec, raw = await self._prepare(owner, body, previous=previous)
        except SpecError as e:
            raise APIError(400, str(e)) from None
        spec.update(fields)

        code = raw
        if code is None:
            code = self.folders.version(owner, name, last.version) / "code"

        def insert(session):
            latest = max(r.version for r in store.versions_of(session, job))
            row = JobVersion(job_id=job.id, version=latest + 1, spec=json.dumps(spec), state=QUEUED)
            session.add(row)
            session.flush()
            self._made_folders(owner, name, row.version, code)
            session.expunge(row)
            return row

        async with self._lock(owner):
            row = await self.db.run(insert)
        self._event(job, row, spec, f"submitted as version {row.version}; queued")
        self.wakeup.set()
        return self._model(job, row)

    def _lock(self, owner: str) -> asyncio.Lock:
        """One submission of an owner at a time (names and version numbers are theirs)."""
        return self._locks.setdefault(owner, asyncio.Lock())

    def _made_folders(self, owner, name, version, code, whole_job=False) -> None:
        """A version's folders, made inside its database transaction (a worker thread): if
        they cannot be made the transaction rolls back, and nothing is left behind."""
        try:
            self.folders.create_version(owner, name, version, code)
        except BaseException:
            if whole_job:
                self.folders.remove_job(owner, name)
            else:
                self.folders.remove_version(owner, name, version)
            raise

    async def update(self, caller: dict, owner: str, name: str, body: dict) -> dict:
        job = await self._job(caller, owner, name, change=True)
        unknown = set(body) - {"description"}
        if unknown:
            raise APIError(400, f"Only description can be changed; not {', '.join(unknown)}.")
        try:
            description = check_description(body.get("description"))
        except SpecError as e:
            raise APIError(400, str(e)) from None

        def write(session):
            session.get(Job, job.id).description = description

        await self.db.run(write)
        return await self.get(caller, owner, name)

    # --- stopping and deleting -----------------------------------------------------------
    async def stop(
        self, caller: dict, owner: str, name: str, version: int, *, by: str = "the user"
    ) -> dict:
        """Stop a version; `by` says who asked in its reason (platform code stopping a run,
        e.g. a search pruning a trial, names itself)."""
        job = await self._job(caller, owner, name, change=True)
        row = await self._version(job, version)
        if row.state == QUEUED:
            await self._finish(job, row, STOPPED, f"stopped by {by} before it started")
        elif row.state in (STARTING, store.RUNNING):
            await self._set(row, STOPPING, f"{ASKED}{by}")
            self._event(job, row, None, "stop requested")
            self.wakeup.set()
        return self._model(job, await self._version(job, version))

    async def _stop_and_wait(self, job: Job, row: JobVersion, within: float = 60) -> None:
        if row.state == QUEUED:
            await self._finish(job, row, STOPPED, "stopped before it started (deleted)")
            return
        if row.state in (STARTING, store.RUNNING):
            await self._set(row, STOPPING, "stopping: the job is being deleted")
        self.wakeup.set()
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            current = await self.db.run(lambda s: s.get(JobVersion, row.id))
            if current is None or current.state not in ACTIVE:
                return
            await asyncio.sleep(0.2)
        raise APIError(409, "The job's nodes did not stop within a minute; try again.")

    async def delete_version(self, caller: dict, owner: str, name: str, version: int) -> None:
        job = await self._job(caller, owner, name, change=True)
        row = await self._version(job, version)
        await self._stop_and_wait(job, row)

        def remove(session):
            session.execute(store.delete(JobMetric).where(JobMetric.version_id == row.id))
            session.execute(store.delete(JobVersion).where(JobVersion.id == row.id))
            left = store.versions_of(session, job)
            if not left:
                session.execute(store.delete(Job).where(Job.id == job.id))
            return len(left)

        left = await self.db.run(remove)
        if left:
            await asyncio.to_thread(self.folders.remove_version, owner, name, version)
        else:
            await asyncio.to_thread(self.folders.remove_job, owner, name)

    async def delete(self, caller: dict, owner: str, name: str) -> None:
        job = await self._job(caller, owner, name, change=True)
        for row in await self.db.run(lambda s: store.versions_of(s, job)):
            await self._stop_and_wait(job, row)

        def remove(session):
            ids = [r.id for r in store.versions_of(session, job)]
            if ids:
                session.execute(store.delete(JobMetric).where(JobMetric.version_id.in_(ids)))
            session.execute(store.delete(JobVersion).where(JobVersion.job_id == job.id))
            session.execute(store.delete(Job).where(Job.id == job.id))

        await self.db.run(remove)
        await asyncio.to_thread(self.folders.remove_job, owner, name)

    # --- files and logs ------------------------------------------------------------------
    async def files(self, caller, owner, name, version, path) -> list[dict]:
        job = await self._job(caller, owner, name)
        await self._version(job, version)
        try:
            return await asyncio.to_thread(
                self.folders.list_files, owner, name, version, path or "output"
            )
        except FilesError as e:
            raise APIError(404 if "No file" in str(e) else 400, str(e)) from None

    async def open_file(self, caller, owner, name, version, path):
        job = await self._job(caller, owner, name)
        await self._version(job, version)
        try:
            return await asyncio.to_thread(self.folders.open_file, owner, name, version, path)
        except FilesError as e:
            raise APIError(404 if "No file" in str(e) else 400, str(e)) from None

    async def log_source(self, caller, owner, name, version, node: int):
        """(the node's log file path, the version's row id)."""
        job = await self._job(caller, owner, name)
        row = await self._version(job, version)
        nodes = json.loads(row.spec)["nodes"]
        if not 0 <= node < nodes:
            raise APIError(400, f"node must be from 0 to {nodes - 1}; got {node}.")
        return self.folders.log_path(owner, name, version, node), row.id

    async def is_active(self, version_id: int) -> bool:
        row = await self.db.run(lambda s: s.get(JobVersion, version_id))
        return row is not None and row.state in ACTIVE

    def log_file(self, version_id: int, node: int) -> LogFile | None:
        run = self.runs.get(version_id)
        return run.logs[node] if run is not None and node < len(run.logs) else None

    # --- state changes -------------------------------------------------------------------
    async def _set(self, row: JobVersion, state: str, reason: str, **fields) -> None:
        def write(session):
            current = session.get(JobVersion, row.id)
            if current is None:
                return
            current.state = state
            current.reason = reason
            for key, value in fields.items():
                setattr(current, key, value)

        await self.db.run(write)
        row.state, row.reason = state, reason
        for key, value in fields.items():
            setattr(row, key, value)

    def _event(self, job: Job, row: JobVersion, spec: dict | None, message: str) -> None:
        """A line of the platform's own in every node's log (followers see it at once)."""
        line = f"{EVENT_PREFIX}{_now_text()} {message}\n".encode()
        run = self.runs.get(row.id)
        if run is not None:
            for log_file in run.logs:
                log_file.append(line)
            return
        nodes = (spec or json.loads(row.spec))["nodes"]
        for rank in range(nodes):
            path = self.folders.log_path(job.owner, job.name, row.version, rank)
            try:
                with open(path, "ab") as f:
                    f.write(line)
            except FileNotFoundError:
                pass

    async def _finish(self, job: Job, row: JobVersion, state: str, reason: str) -> None:
        await self._set(row, state, reason, finished=utcnow())
        self._event(job, row, None, f"{state}: {reason}" if reason else state)
        run = self.runs.pop(row.id, None)
        if run is not None:
            # wake followers so they see the end
            for log_file in run.logs:
                log_file.append(b"")
        self._queue_positions.pop(row.id, None)

    # --- the loop ------------------------------------------------------------------------
    def start(self) -> None:
        self._loop_task = asyncio.ensure_future(self._loop())

    async def close(self) -> None:
        """Stop watching (the runs go on; the next start takes them up)."""
        self._closing = True
        if self._loop_task is not None:
            self._loop_task.cancel()
        for run in list(self.runs.values()):
            for pump in run.pumps:
                pump.cancel()
        for task in list(self._tasks):
            task.cancel()
        for run in list(self.runs.values()):
            await self._flush_points(run)
        await self.runner.close()

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _loop(self) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("job scheduler pass failed")
            try:
                await asyncio.wait_for(self.wakeup.wait(), self.config.poll_seconds)
            except TimeoutError:
                pass
            self.wakeup.clear()

    async def _active(self) -> list[tuple[Job, JobVersion]]:
        def read(session):
            q = (
                select(Job, JobVersion)
                .join(JobVersion, JobVersion.job_id == Job.id)
                .where(JobVersion.state.in_(ACTIVE))
                .order_by(JobVersion.created, JobVersion.id)
            )
            rows = list(session.execute(q).all())
            session.expunge_all()
            return [(j, v) for j, v in rows]

        return await self.db.run(read)

    async def tick(self) -> None:
        """One pass: watch what runs, then admit what waits."""
        active = await self._active()
        for job, row in active:
            if row.state in (STARTING, store.RUNNING, STOPPING):
                run = self.runs.get(row.id) or await self._take_up(job, row)
                if not run.busy:
                    await self._watch(job, row, run)
        await self._admit([(j, r) for j, r in active if r.state == QUEUED], active)

    def _plan(self, job: Job, row: JobVersion) -> JobPlan:
        spec = json.loads(row.spec)
        image = self.policy.image(spec["image"], job.owner)
        flavor = self.policy.flavor(spec["flavor"])
        base = self.folders.version(job.owner, job.name, row.version)
        if self.runner.relative_folders:
            base = base.relative_to(self.folders.root)
        command = job_command(spec["source"], _argv(spec["command"]), spec["hyperparameters"])
        prefix = self.settings.container_prefix
        # dataset inputs: their versions' store folders, mounted read-only like a batch
        # run's model
        datasets = {
            n: {"store": c["store"], "path": c["path"], "target": dataset_target(n)}
            for n, c in spec["inputs"].items()
            if "dataset" in c
        }
        return JobPlan(
            owner=job.owner,
            job=job.name,
            version=row.version,
            object_name=f"{prefix}-job-{row.id}",
            image_ref=image.ref,
            runtime=spec["runtime"],
            command=tuple(command),
            nodes=spec["nodes"],
            processes_per_node=spec["processes_per_node"],
            cpu=flavor.cpu,
            memory=flavor.memory,
            gpu=flavor.gpu,
            hyperparameters=spec["hyperparameters"],
            inputs=tuple(
                InputChannel(name=n, instance=c["instance"], path=c["path"])
                for n, c in spec["inputs"].items()
                if "instance" in c
            ),
            max_run_seconds=spec["max_run_seconds"],
            code_source=str(base / "code"),
            output_source=str(base / "output"),
            checkpoint_source=str(base / "checkpoints"),
            environment={
                **self.environment,
                **spec.get("environment", {}),
                **{channel_env(n): dataset_target(n) for n in datasets},
            },
            mounts=tuple(self._mount(m) for m in [*spec.get("mounts", ()), *datasets.values()]),
            workspace=job.workspace,
            flavor=flavor.name,
        )

    def store_root(self, store_name: str) -> Path:
        """The folder of one of the platform's stores on this machine: as registered in
        .stores, else <data>/<name> (the model store: <data>/models)."""
        root = self.stores.get(store_name)
        return Path(root) if root is not None else self.settings.data_path / store_name

    def _mount(self, mount: dict) -> Mount:
        """A spec's mount for the runner: a host folder on the engine, a sub-path of the
        store's claim on Kubernetes."""
        if self.runner.relative_folders:
            claim = self.runner.store_claim(mount["store"])
            return Mount(source=mount["path"], target=mount["target"], claim=claim)
        source = self.store_root(mount["store"]) / mount["path"]
        return Mount(source=str(source), target=mount["target"])

    def _new_run(self, job: Job, row: JobVersion, plan: JobPlan) -> Run:
        spec = json.loads(row.spec)
        limit = self.config.log_max_mib * 1024**2
        logs = [
            LogFile(self.folders.log_path(job.owner, job.name, row.version, r), limit)
            for r in range(plan.nodes)
        ]
        # scalars of the event files under $WORKBENCH_TENSORBOARD_DIR, named by their tags
        output = self.folders.version(job.owner, job.name, row.version) / "output" / "tensorboard"
        run = Run(
            version_id=row.id,
            plan=plan,
            logs=logs,
            parser=LogMetricParser(compile_metric_rules(spec.get("metrics") or [])),
            watcher=EventFileWatcher(output),
        )
        self.runs[row.id] = run
        return run

    async def _take_up(self, job: Job, row: JobVersion) -> Run:
        """An active run found at start (or made by this service): follow its nodes again,
        from the time its log files were last written."""
        await self.policy.prefetch(job.owner, json.loads(row.spec)["image"])
        plan = self._plan(job, row)
        run = self._new_run(job, row, plan)
        for rank, log_file in enumerate(run.logs):
            try:
                since = log_file.path.stat().st_mtime
            except FileNotFoundError:
                since = 0
            run.pumps.append(asyncio.ensure_future(self._pump(run, rank, since)))
        log.info("taking up job %s/%s version %s (%s)", job.owner, job.name, row.version, row.state)
        return run

    # --- admission -----------------------------------------------------------------------
    async def _admit(self, queued, active) -> None:
        positions = {row.id: i + 1 for i, (_, row) in enumerate(queued)}
        self._queue_positions = positions
        if not queued:
            return
        running = [(j, r) for j, r in active if r.state != QUEUED]
        capacity = await self.runner.capacity()
        for job, row in queued:
            reason = await self._blocked(job, row, running, capacity)
            if reason:
                message = f"waiting: {reason}"
                if row.reason != message:
                    await self._set(row, QUEUED, message)
                    self._event(job, row, None, f"queued: position {positions[row.id]} ({message})")
                continue
            running.append((job, row))
            self._queue_positions.pop(row.id, None)
            await self._set(row, STARTING, "starting: creating the nodes", started=utcnow())
            await self.policy.prefetch(job.owner, json.loads(row.spec)["image"])
            run = self._new_run(job, row, self._plan(job, row))
            run.busy = True
            self._spawn(self._launch(job, row, run, restart=0))

    @staticmethod
    def _resources(row: JobVersion, policy) -> tuple[float, float, int]:
        spec = json.loads(row.spec)
        try:
            flavor = policy.flavor(spec["flavor"])
        except InvalidOptions:
            return 0, 0, 0
        n = spec["nodes"]
        return flavor.cpu * n, flavor.memory * n / GIB, flavor.gpu * n

    def _total(self, rows) -> tuple[float, float, int]:
        """vCPUs, memory GiB and GPUs the versions `rows` hold together."""
        held = [self._resources(r, self.policy) for r in rows]
        return tuple(sum(h[i] for h in held) for i in range(3))

    async def _blocked(self, job: Job, row: JobVersion, running, capacity) -> str:
        """Why a queued version cannot start now ("" if it can)."""
        cpu, mem, gpu = self._resources(row, self.policy)
        mine = [r for j, r in running if j.owner == job.owner]
        if self.quotas is not None:
            limits = await self.quotas.limits(job.owner)
            reason = await self._over(limits, job.owner, mine, (cpu, mem, gpu), "quota")
            if reason:
                return reason
            if job.workspace != "default":
                ws_limits = await self.quotas.workspace_limits(job.workspace)
                if any(ws_limits.values()):
                    in_ws = [r for j, r in running if j.workspace == job.workspace]
                    reason = await self._over(
                        ws_limits, None, in_ws, (cpu, mem, gpu), f"workspace {job.workspace}"
                    )
                    if reason:
                        return reason
        if capacity is not None:
            ncpu, memory = capacity
            used_cpu, used_mem, _ = self._total(r for _, r in running)
            if ncpu and used_cpu + cpu > ncpu + 1e-9:
                return (
                    f"the machine's {ncpu:g} vCPUs are in use ({used_cpu:g} by running jobs; "
                    f"this one needs {cpu:g})"
                )
            if memory and (used_mem + mem) * GIB > memory:
                return (
                    f"the machine's {format_bytes(memory)} of memory is in use by running "
                    f"jobs (this one needs {mem:g} GiB)"
                )
        return ""

    async def _over(self, limits: dict, owner: str | None, rows, need, whose: str) -> str:
        cpu, mem, gpu = need
        limit = limits.get("running_jobs") or 0
        if limit and len(rows) + 1 > limit:
            return f"running-jobs {whose} {len(rows)} of {limit:g}"
        jobs_cpu, jobs_mem, jobs_gpu = self._total(rows)
        inst_cpu = inst_mem = inst_gpu = 0.0
        if owner is not None and any(limits.get(k) for k in ("vcpus", "memory_gib", "gpus")):
            usage = self.quotas.usage(owner, await self._servers(owner))
            inst_cpu, inst_mem, inst_gpu = usage.vcpus, usage.memory_gib, usage.gpus
        for key, used, add, unit in (
            ("vcpus", inst_cpu + jobs_cpu, cpu, "vCPUs"),
            ("memory_gib", inst_mem + jobs_mem, mem, "GiB of memory"),
            ("gpus", inst_gpu + jobs_gpu, gpu, "GPUs"),
        ):
            limit = limits.get(key) or 0
            if limit and add and used + add > limit + 1e-9:
                return (
                    f"{key} {whose}: {used:g} of {limit:g} {unit} in use (instances and "
                    f"jobs), this job needs {add:g}"
                )
        return ""

    # --- running -------------------------------------------------------------------------
    async def _launch(self, job: Job, row: JobVersion, run: Run, restart: int) -> None:
        plan = run.plan
        try:
            self._event(job, row, None, f"starting {plan.nodes} node(s) of {plan.flavor}")
            await self.runner.start(plan, restart)
            self._event(job, row, None, "running" + (f" (restart {restart})" if restart else ""))
            # follow the nodes' output first: a script prints at once
            for pump in run.pumps:
                pump.cancel()
            run.pumps = [
                asyncio.ensure_future(self._pump(run, rank, 0)) for rank in range(plan.nodes)
            ]
            fields = {"attempt_started": utcnow()}
            if restart:
                fields["restarts"] = restart
            await self._set(row, store.RUNNING, "", **fields)
            self._meter_open(job, row, plan)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.warning("job %s/%s v%s could not start: %s", job.owner, job.name, row.version, e)
            await self.runner.remove(plan)
            await self._finish(job, row, FAILED, f"could not start: {_short(e)}")
        finally:
            run.busy = False
            self.wakeup.set()

    async def _pump(self, run: Run, rank: int, since: float) -> None:
        """Copy a node's output into its log file, parsing metric lines on the way."""
        log_file = run.logs[rank]
        try:
            async for line in self.runner.logs(run.plan, rank, since):
                log_file.append(line)
                text = line.decode(errors="replace")
                if text.startswith(OOM_LINE):
                    run.oom.add(rank)
                run.points.extend(run.parser.feed(text, time.time()))
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - logged; the run goes on
            log.warning("log of %s node %s: %s", run.plan.object_name, rank, e)
        # a node's output ends when it exits: look at the run now, not at the next poll
        self.wakeup.set()

    async def _watch(self, job: Job, row: JobVersion, run: Run) -> None:
        plan = run.plan
        now = time.monotonic()
        if now - run.last_tensorboard > self.config.tensorboard_poll_seconds:
            run.last_tensorboard = now
            run.points.extend(await asyncio.to_thread(run.watcher.poll))
        await self._flush_points(run)
        if row.state == STOPPING:
            await self._stopping(job, row, run)
            return
        statuses = await self.runner.status(plan)
        failed = [s for s in statuses if _failed(s)]
        if failed or all(s.state == EXITED for s in statuses):
            nodes = json.dumps([_node_model(plan, s) for s in statuses])
            if nodes != row.nodes:
                await self._set(row, row.state, row.reason, nodes=nodes)
        if failed:
            await self._node_failed(job, row, run, failed[0])
            return
        if all(s.state == EXITED and s.exit_code == 0 for s in statuses):
            await self._wind_up(job, row, run, SUCCEEDED, "")
            return
        pending = [s for s in statuses if s.state == PENDING and s.reason]
        reason = f"node {pending[0].rank}: {pending[0].reason}" if pending else ""
        state = store.RUNNING if all(s.state == RUNNING for s in statuses) else row.state
        nodes = json.dumps([_node_model(plan, s) for s in statuses])
        if reason != row.reason or state != row.state or nodes != row.nodes:
            await self._set(row, state, reason, nodes=nodes)
        limit = plan.max_run_seconds
        started = row.started
        if limit and started and (utcnow() - started).total_seconds() > limit:
            run.busy = True
            self._spawn(
                self._end(job, row, run, FAILED, f"stopped at the maximum run time of {limit} s")
            )

    async def _stopping(self, job: Job, row: JobVersion, run: Run) -> None:
        if not run.stop_sent:
            run.stop_sent = True
            run.busy = True
            asked = row.reason.startswith(ASKED)
            by = row.reason[len(ASKED) :] if asked else "the user"
            self._spawn(self._end(job, row, run, STOPPED, f"stopped by {by}"))

    async def _node_failed(self, job, row, run: Run, status: NodeStatus) -> None:
        run.busy = True
        self._spawn(self._after_failure(job, row, run, status))

    async def _after_failure(self, job, row, run: Run, status: NodeStatus) -> None:
        """Restart every node, or end the run, with the failed node's reason."""
        try:
            if status.rank < len(run.pumps):
                # the node's last words (its wrapper says when it ran out of memory)
                await asyncio.wait([run.pumps[status.rank]], timeout=2)
            reason = self._node_reason(run.plan, status, status.rank in run.oom)
            run.oom.clear()
        except BaseException:
            run.busy = False
            raise
        spec = json.loads(row.spec)
        if row.restarts < spec["max_restarts"]:
            await self._restart(job, row, run, row.restarts + 1, reason)
        else:
            more = f" after {row.restarts} restart(s)" if row.restarts else ""
            await self._end(job, row, run, FAILED, reason + more)

    @staticmethod
    def _node_reason(plan: JobPlan, status: NodeStatus, oom: bool = False) -> str:
        if status.state == MISSING:
            return f"node {status.rank} disappeared ({status.reason})"
        if status.oom or oom:
            return f"out of memory at {format_bytes(plan.memory)} on node {status.rank}"
        if status.exit_code is None:
            return f"node {status.rank} ended: {status.reason or 'no exit code'}"
        return f"exit code {status.exit_code} on node {status.rank}"

    async def _collect_logs(self, run: Run, within: float = 5) -> None:
        """Let the log pumps reach the end of what the nodes printed."""
        if run.pumps:
            await asyncio.wait(run.pumps, timeout=within)
        for pump in run.pumps:
            pump.cancel()
        run.pumps = []

    async def _restart(self, job, row, run: Run, restart: int, reason: str) -> None:
        try:
            spec = json.loads(row.spec)
            message = f"restarting all nodes ({restart} of {spec['max_restarts']}) after {reason}"
            await self._set(row, STARTING, message)
            self._event(job, row, None, message)
            await self.runner.stop(run.plan, self.config.stop_timeout_seconds)
            await self._collect_logs(run)
            self._meter_close(job, row, run.plan)
            await self._launch(job, row, run, restart)
        finally:
            run.busy = False

    async def _end(self, job, row, run: Run, state: str, reason: str) -> None:
        try:
            await self.runner.stop(run.plan, self.config.stop_timeout_seconds)
            await self._wind_up(job, row, run, state, reason)
        finally:
            run.busy = False
            self.wakeup.set()

    async def _wind_up(self, job, row, run: Run, state: str, reason: str) -> None:
        await self._collect_logs(run)
        run.points.extend(await asyncio.to_thread(run.watcher.poll))
        await self._flush_points(run)
        self._meter_close(job, row, run.plan)
        # the outcome is stored before the containers go: a platform stopping in between
        # must not leave a run that its next start finds active with its containers gone
        await self._finish(job, row, state, reason)
        log.info("job %s/%s v%s %s %s", job.owner, job.name, row.version, state, reason)
        if not self.config.keep_containers:
            await self.runner.remove(run.plan)

    async def _flush_points(self, run: Run) -> None:
        points, run.points = run.points, []
        if not points:
            return

        def write(session):
            for p in points:
                session.add(
                    JobMetric(
                        version_id=run.version_id,
                        name=p.name[:64],
                        step=int(p.step),
                        value=float(p.value),
                        time=float(p.time),
                        source=p.source,
                    )
                )

        await self.db.run(write)

    # --- metering ------------------------------------------------------------------------
    def _meter_name(self, job: Job, row: JobVersion, rank: int) -> str:
        return f"{job.name}/{row.version}/node-{rank}"

    def _meter_open(self, job: Job, row: JobVersion, plan: JobPlan) -> None:
        if self.usage is None:
            return
        resources = {
            "flavor": plan.flavor,
            "vcpus": plan.cpu,
            "memory_gib": plan.memory / GIB,
            "gpus": plan.gpu,
            "workspace": plan.workspace,
        }
        when = time.time()

        def write():
            for rank in range(plan.nodes):
                self.usage.open(
                    job.owner, self._meter_name(job, row, rank), resources, when, kind="job"
                )

        self._spawn(asyncio.to_thread(write))

    def _meter_close(self, job: Job, row: JobVersion, plan: JobPlan) -> None:
        if self.usage is None:
            return
        when = time.time()

        def write():
            for rank in range(plan.nodes):
                self.usage.close(job.owner, self._meter_name(job, row, rank), when)

        self._spawn(asyncio.to_thread(write))


def _node_model(plan: JobPlan, status: NodeStatus) -> dict:
    """A node's part of the version's JSON."""
    reason = status.reason
    if status.state == EXITED and status.exit_code:
        reason = JobService._node_reason(plan, status)
    return {
        "rank": status.rank,
        "state": status.state,
        "exit_code": status.exit_code,
        "reason": reason,
    }


def _failed(status: NodeStatus) -> bool:
    return status.state == MISSING or (status.state == EXITED and status.exit_code != 0)


def _argv(command: str) -> list[str]:
    return shlex.split(command) if command else []


def _short(e: Exception) -> str:
    text = getattr(e, "explanation", None) or str(e) or type(e).__name__
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return re.sub(r"\s+", " ", str(text))[:300]
