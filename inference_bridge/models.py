"""The model registry in the platform API: models, their versions, files and lineage.

A version is registered from a finished job's output, from an instance's storage (copied by
a short container on the engine) or as a serving image of its own; another feature of the
platform (the gallery) registers a model from a folder it fills. Its row is reserved
first ("copying": the name and number are taken), the files are copied and hashed in worker
threads into a staging folder, checked against what the format needs, and moved into place
in one rename; any refusal on the way removes the row and the staging folder, so nothing is
left behind. Before every deployment the files are hashed again against the manifest.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import math
import os
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from sqlalchemy import delete, select

from hub.service.api import APIError
from spawner.options import InvalidOptions
from training_bridge.files import FilesError, relative_path

from . import store
from .model_files import (
    ModelFilesError,
    ModelFolders,
    copy_from_fd,
    differences,
    hash_tree,
    open_below,
    seal,
)
from .model_spec import (
    FORMATS,
    MODEL_KEYS,
    VERSION_KEYS,
    SpecError,
    check_command,
    check_description,
    check_files,
    check_keys,
    check_name,
    check_predictor,
    check_request,
    check_signature,
    default_image,
)
from .storage_copy import StorageCopyError, copy_image
from .store import COPYING, READY, Model, ModelVersion

log = logging.getLogger("workbench.models")

# what a registration from a filled folder takes: a model's fields without its source
FOLDER_KEYS = tuple(k for k in MODEL_KEYS if k != "source")


def check_folder_request(body: dict) -> dict:
    """What a registration from a folder asks for, checked as check_request checks the
    others: format, image name (None: the format's default), command (image models only),
    signature, predictor."""
    fmt = body.get("format")
    if fmt not in FORMATS:
        raise SpecError(f"format must be one of {', '.join(FORMATS)}; got {fmt!r}.")
    image = body.get("image")
    if image is not None and (not isinstance(image, str) or not image.strip()):
        raise SpecError("image must be an image's name (see GET /images).")
    command = ""
    if fmt == "image":
        if image is None:
            raise SpecError("An image model needs image: the image that serves it.")
        command = check_command(body.get("command"))
    elif body.get("command") not in (None, ""):
        raise SpecError("command is for image models only; the others are served by the platform.")
    predictor = check_predictor(body.get("predictor"))
    if fmt == "image" and predictor:
        raise SpecError("An image model serves itself: it takes no predictor.")
    return {
        "format": fmt,
        "image": image.strip() if isinstance(image, str) else None,
        "command": command,
        "signature": check_signature(body.get("signature")),
        "predictor": predictor,
    }


class ModelRegistry:
    """Registering, listing, deleting and deploying model versions.

    job_service: the jobs feature's service (its folders and database rows are the job
    sources); copier: copies from instances' storage (None: the backend has none);
    image_checker: async ref -> whether the engine holds an image (None: not asked);
    services: () -> the service manager, which answers uses_model(owner, name, version).
    """

    def __init__(
        self,
        *,
        db,
        hub,
        policy,
        config,
        folders: ModelFolders,
        job_service=None,
        workspaces=None,
        copier=None,
        image_checker=None,
        services: Callable[[], object] | None = None,
    ):
        self.db = db
        self.hub = hub
        self.policy = policy
        self.config = config
        self.folders = folders
        self.job_service = job_service
        self.workspaces = workspaces
        self.copier = copier
        self.image_checker = image_checker
        self.services = services or (lambda: None)
        self._locks: dict[str, asyncio.Lock] = {}

    @property
    def root(self) -> Path:
        """The folder below which every model's files are (the model store)."""
        return self.folders.root

    @property
    def limit(self) -> int:
        return int(self.config.max_model_mib) * 1024**2

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

    async def _can_see(self, caller: dict, model: Model) -> bool:
        if caller.get("admin") or model.owner == caller["name"]:
            return True
        if model.workspace == "default":
            return False
        return model.workspace in await self._member_of(caller["name"])

    async def _model(self, caller: dict, owner: str, name: str, *, change=False) -> Model:
        model = await self.db.run(lambda s: store.find_model(s, owner, name))
        if model is None or not await self._can_see(caller, model):
            raise APIError(404, f"No model {name!r} of user {owner!r}.")
        if change and not (caller.get("admin") or model.owner == caller["name"]):
            raise APIError(
                403,
                f"Model {owner}/{name} belongs to {owner}: only they and administrators may "
                "change it.",
            )
        return model

    async def _version(self, model: Model, version: int) -> ModelVersion:
        row = await self.db.run(lambda s: store.find_model_version(s, model, version))
        if row is None:
            raise APIError(404, f"Model {model.owner}/{model.name} has no version {version}.")
        return row

    # --- reading -------------------------------------------------------------------------
    async def list(self, caller: dict, workspace: str | None = None, all_users=False) -> list:
        member_of = await self._member_of(caller["name"])

        def read(session):
            q = select(Model).order_by(Model.created.desc(), Model.id.desc())
            out = []
            for model in session.scalars(q):
                if workspace is not None and model.workspace != workspace:
                    continue
                visible = (
                    model.owner == caller["name"]
                    or (all_users and caller.get("admin"))
                    or (model.workspace != "default" and model.workspace in member_of)
                )
                if not visible:
                    continue
                latest = session.scalars(
                    select(ModelVersion)
                    .where(ModelVersion.model_id == model.id)
                    .order_by(ModelVersion.version.desc())
                ).first()
                out.append(store.model_model(model, latest))
            return out

        return await self.db.run(read)

    async def get(self, caller: dict, owner: str, name: str) -> dict:
        model = await self._model(caller, owner, name)

        def read(session):
            rows = store.model_versions_of(session, model)
            return store.model_model(
                model, rows[-1] if rows else None, [store.version_model(model, r) for r in rows]
            )

        return await self.db.run(read)

    async def get_version(self, caller: dict, owner: str, name: str, version: int) -> dict:
        model = await self._model(caller, owner, name)
        return store.version_model(model, await self._version(model, version))

    async def files(
        self, caller: dict, owner: str, name: str, version: int, verify: bool = False
    ) -> list[dict]:
        """The version's files as registered: [{path, size, sha256}]; verify: hashed again
        first, as before a deployment (409 when one changed)."""
        model = await self._model(caller, owner, name)
        row = await self._version(model, version)
        if verify:
            _, described = await self.deploy_files(owner, name, version)
            return described["files"]
        return store.loads(row.files, [])

    async def open_file(self, caller: dict, owner: str, name: str, version: int, path: str):
        """One of the version's files, opened for reading (binary)."""
        model = await self._model(caller, owner, name)
        row = await self._version(model, version)
        try:
            rel = relative_path(path, "file path")
        except FilesError as e:
            raise APIError(400, str(e)) from None
        if str(rel) not in {f["path"] for f in store.loads(row.files, [])}:
            raise APIError(404, f"Model {owner}/{name} version {version} has no file {path!r}.")
        base = self.folders.version(owner, name, version)

        def open_it():
            fd = open_below(base, rel)
            os.set_blocking(fd, True)
            return os.fdopen(fd, "rb")

        try:
            return await asyncio.to_thread(open_it)
        except (OSError, ModelFilesError):
            raise APIError(
                409,
                f"File {path!r} of model {owner}/{name} version {version} cannot be read: it "
                "changed since registration; register a new version.",
            ) from None

    # --- registering ---------------------------------------------------------------------
    def _lock(self, owner: str) -> asyncio.Lock:
        """One reservation of an owner at a time (names and version numbers are theirs)."""
        return self._locks.setdefault(owner, asyncio.Lock())

    async def create(self, caller: dict, body: dict) -> dict:
        """Register a model with its version 1: the model's JSON with that version."""
        owner = caller["name"]
        try:
            name, description, workspace = await self._new_model(
                owner, body, MODEL_KEYS, "A model registration"
            )
            spec = check_request(body)
        except SpecError as e:
            raise APIError(400, str(e)) from None
        prepared = await self._prepare(owner, spec)
        model, row = await self._reserve(
            owner,
            name,
            description,
            workspace,
            prepared,
            f"add a version (POST /models/{owner}/{name}/versions) or pick another name.",
        )
        await self._fill(model, row, prepared, whole_model=True)
        return await self.get(caller, owner, name)

    async def _new_model(self, owner: str, body: dict, keys, what: str) -> tuple[str, str, str]:
        """(name, description, workspace) of a new model's registration; SpecError why not."""
        check_keys(body, keys, what)
        name = check_name(body.get("name"))
        description = check_description(body.get("description"))
        workspace = body.get("workspace") or "default"
        if not isinstance(workspace, str):
            raise SpecError("workspace must be a workspace's name.")
        if workspace != "default" and workspace not in await self._member_of(owner):
            raise SpecError(f"You are not a member of workspace {workspace!r}.")
        return name, description, workspace

    async def _reserve(self, owner, name, description, workspace, prepared, taken: str):
        """(model, its version 1) reserved for filling; 409 "...<taken>" if the name is in use."""

        def insert(session):
            if store.find_model(session, owner, name) is not None:
                return None
            model = Model(owner=owner, name=name, description=description, workspace=workspace)
            session.add(model)
            session.flush()
            row = self._row(model.id, 1, prepared)
            session.add(row)
            session.flush()
            return model, row

        async with self._lock(owner):
            made = await self.db.run(insert)
        if made is None:
            raise APIError(409, f"You already have a model named {name!r}: {taken}")
        return made

    async def register_from_folder(
        self,
        caller: dict,
        body: dict,
        fill: Callable[[Path], None],
        *,
        source: dict | None = None,
    ) -> dict:
        """Register a model of the caller with its version 1 from the files that
        fill(folder) writes into an empty staging folder (blocking: it runs in a worker
        thread; an exception it raises refuses the registration as it is).

        body: a registration without its source (name, description, workspace, format,
        image, signature, predictor, command). The usual checks run: the name, the
        caller's workspace, the format, the image (one the caller may use, built here), the
        files (no links, devices or pipes; within the size limit; what the format and the
        predictor need). source: what the version records as its source ({"kind": ...},
        kept as it is; never one a registration request may send). A refusal leaves no
        model, no version and no folder. The model's JSON with that version."""
        owner = caller["name"]
        try:
            name, description, workspace = await self._new_model(
                owner, body, FOLDER_KEYS, "A model registration from a folder"
            )
            spec = check_folder_request(body)
        except SpecError as e:
            raise APIError(400, str(e)) from None
        spec["source"] = dict(source or {"kind": "folder"})
        prepared = dict(spec, metrics={}, fill=fill)
        prepared["image"] = await self._image(owner, spec["image"] or default_image(spec["format"]))
        model, row = await self._reserve(
            owner, name, description, workspace, prepared, "pick another name."
        )
        await self._fill(model, row, prepared, whole_model=True)
        log.info("model %s/%s registered from a folder (%s)", owner, name, spec["source"])
        return await self.get(caller, owner, name)

    async def add_version(self, caller: dict, owner: str, name: str, body: dict) -> dict:
        """Register a new version of a model: the version's JSON. What the body leaves out
        (format, signature, and for the same format image and predictor) is the latest
        version's."""
        model = await self._model(caller, owner, name, change=True)
        rows = await self.db.run(lambda s: store.model_versions_of(s, model))
        previous = store.version_model(model, rows[-1]) if rows else None
        try:
            check_keys(body, VERSION_KEYS, "A new version")
            spec = check_request(body, previous)
        except SpecError as e:
            raise APIError(400, str(e)) from None
        prepared = await self._prepare(owner, spec)

        def insert(session):
            current = session.get(Model, model.id)
            if current is None:
                return None
            versions = [r.version for r in store.model_versions_of(session, current)]
            row = self._row(model.id, max(versions, default=0) + 1, prepared)
            session.add(row)
            session.flush()
            return row

        async with self._lock(model.owner):
            row = await self.db.run(insert)
        if row is None:
            raise APIError(404, f"No model {name!r} of user {owner!r}.")
        await self._fill(model, row, prepared)
        return store.version_model(model, await self._version(model, row.version))

    @staticmethod
    def _row(model_id: int, version: int, prepared: dict) -> ModelVersion:
        return ModelVersion(
            model_id=model_id,
            version=version,
            source=json.dumps(prepared["source"]),
            format=prepared["format"],
            image=prepared["image"],
            command=prepared["command"],
            predictor=prepared["predictor"],
            signature=json.dumps(prepared["signature"]),
            metrics=json.dumps(prepared["metrics"]),
            files="[]",
            state=COPYING,
            reason="copying the files",
        )

    async def _image(self, owner: str, name: str) -> str:
        """The image's name, checked: a catalog image or a saved one the owner may use."""
        await self.policy.prefetch(owner, name)
        try:
            entry = self.policy.image(name, owner)
        except InvalidOptions as e:
            raise APIError(400, str(e)) from None
        if self.image_checker is not None:
            if await self.image_checker(entry.ref) is False:
                raise APIError(
                    400,
                    f"Image {name!r} ({entry.ref}) is not built on this machine. Build it with "
                    f"`workbench images build {entry.name}`, or pick another image.",
                )
        return name

    async def _prepare(self, owner: str, spec: dict) -> dict:
        """The request with its image and source resolved: for a job source the version
        and its metrics, for a storage source the image that copies. 4xx on refusal."""
        prepared = dict(spec, metrics={})
        prepared["image"] = await self._image(owner, spec["image"] or default_image(spec["format"]))
        source = spec["source"]
        if source["kind"] == "job":
            other = source.pop("owner", None)
            if other is not None and other != owner:
                raise APIError(
                    403, "Models are registered from your own jobs only: source.owner must be you."
                )
            version, metrics = await self._job_version(owner, source)
            source["version"] = version
            prepared["metrics"] = metrics
        elif source["kind"] == "storage":
            if self.copier is None:
                raise APIError(
                    400,
                    "This platform's backend cannot copy from instances' storage yet: run a "
                    "job that writes the model to its output and register that.",
                )
            servers = await self.hub.servers(owner) or {}
            instance = source["instance"]
            if instance not in servers:
                raise APIError(400, f"You have no instance {instance!r} (source.instance).")
            prepared["copy_image"] = await copy_image(
                self.policy, self.image_checker, owner, servers[instance]
            )
        return prepared

    async def _job_version(self, owner: str, source: dict) -> tuple[int, dict]:
        """(the version number, its metrics' last values) of a succeeded version of the
        owner's job named in the source."""
        from training_bridge import store as jobs

        def read(session):
            job = jobs.find_job(session, owner, source["job"])
            if job is None:
                return None
            rows = jobs.versions_of(session, job)
            if source["version"] is not None:
                rows = [r for r in rows if r.version == source["version"]]
            if not rows:
                return job, None, {}
            row = rows[-1]
            q = (
                select(jobs.JobMetric)
                .where(jobs.JobMetric.version_id == row.id)
                .order_by(jobs.JobMetric.step, jobs.JobMetric.time, jobs.JobMetric.id)
            )
            last = {m.name: m.value for m in session.scalars(q)}
            return job, row, {k: v for k, v in last.items() if math.isfinite(v)}

        found = await self.db.run(read)
        if found is None:
            raise APIError(400, f"You have no job {source['job']!r} (source.job).")
        job, row, metrics = found
        if row is None:
            raise APIError(400, f"Job {job.name!r} has no version {source['version']}.")
        if row.state != jobs.SUCCEEDED:
            raise APIError(
                409,
                f"Job {job.name!r} version {row.version} is {row.state}: register its output "
                "once it has succeeded.",
            )
        return row.version, metrics

    async def _copy(self, owner: str, prepared: dict, staging: Path) -> list[dict]:
        """Fill the staging folder from the source; the files' manifest."""
        source = prepared["source"]
        limit = self.limit
        fill = prepared.get("fill")
        if fill is not None:

            def filled():
                fill(staging)
                seal(staging)
                return hash_tree(staging, limit)

            return await asyncio.to_thread(filled)
        if source["kind"] == "job":
            if self.job_service is None:
                raise APIError(400, "Jobs are not enabled on this platform.")
            base = self.job_service.folders.version(owner, source["job"], source["version"])
            rel = PurePosixPath(source["path"])

            def copy_job():
                try:
                    fd = open_below(base, rel)
                except FileNotFoundError:
                    raise ModelFilesError(
                        f"Job {source['job']!r} version {source['version']} has no "
                        f"{source['path']!r}; its files are listed at "
                        f"/jobs/{owner}/{source['job']}/versions/{source['version']}/files."
                    ) from None
                try:
                    files = copy_from_fd(fd, staging, limit, name=rel.name)
                finally:
                    os.close(fd)
                seal(staging)
                return files

            return await asyncio.to_thread(copy_job)
        if source["kind"] == "storage":
            await self.copier.copy(
                owner, source["instance"], prepared["copy_image"], source["path"], staging, limit
            )

            def check():
                seal(staging)
                return hash_tree(staging, limit)

            return await asyncio.to_thread(check)
        return []

    async def _fill(self, model: Model, row: ModelVersion, prepared: dict, whole_model=False):
        """Copy, check and publish a reserved version's files; on any failure remove the
        version (and the model it was the first of) and its files, then raise."""
        owner, name = model.owner, model.name
        staging = None
        try:
            staging = await asyncio.to_thread(
                self.folders.staging, prepared["source"]["kind"] == "storage"
            )
            files = await self._copy(owner, prepared, staging)
            check_files(prepared["format"], prepared["predictor"], files)
            await asyncio.to_thread(self.folders.publish, staging, owner, name, row.version)
            staging = None

            def ready(session):
                current = session.get(ModelVersion, row.id)
                current.files = json.dumps(files)
                current.state = READY
                current.reason = ""

            await self.db.run(ready)
            log.info(
                "model %s/%s version %s registered (%d files)", owner, name, row.version, len(files)
            )
        except BaseException as e:
            await asyncio.shield(self._unreserve(model, row, staging, whole_model))
            if isinstance(e, (SpecError, ModelFilesError, StorageCopyError, FilesError)):
                raise APIError(400, str(e)) from None
            raise

    async def _unreserve(self, model: Model, row: ModelVersion, staging, whole_model: bool):
        def remove(session):
            session.execute(delete(ModelVersion).where(ModelVersion.id == row.id))
            if whole_model and not store.model_versions_of(session, model):
                session.execute(delete(Model).where(Model.id == model.id))

        try:
            await self.db.run(remove)
        finally:
            if staging is not None:
                await asyncio.to_thread(self.folders.discard, staging)
            await asyncio.to_thread(
                self.folders.remove_version, model.owner, model.name, row.version
            )

    # --- changing and deleting -----------------------------------------------------------
    async def update(self, caller: dict, owner: str, name: str, body: dict) -> dict:
        model = await self._model(caller, owner, name, change=True)
        unknown = set(body) - {"description"}
        if unknown:
            raise APIError(
                400, f"Only description can be changed; not {', '.join(sorted(map(str, unknown)))}."
            )
        try:
            description = check_description(body.get("description"))
        except SpecError as e:
            raise APIError(400, str(e)) from None

        def write(session):
            session.get(Model, model.id).description = description

        await self.db.run(write)
        return await self.get(caller, owner, name)

    async def _in_use(self, owner: str, name: str, versions: list[int]) -> dict[int, list]:
        """{version: names of the services that deploy it} of the versions in use."""
        manager = self.services()
        if manager is None or not hasattr(manager, "uses_model"):
            return {}
        out = {}
        for version in versions:
            users = manager.uses_model(owner, name, version)
            if inspect.isawaitable(users):
                users = await users
            if users:
                out[version] = sorted(users)
        return out

    def _refuse_in_use(self, owner: str, name: str, used: dict[int, list]) -> None:
        if used:
            parts = [f"version {v} by {', '.join(names)}" for v, names in sorted(used.items())]
            raise APIError(
                409,
                f"Model {owner}/{name} is deployed ({'; '.join(parts)}): delete those services "
                "or move them to another version first.",
            )

    async def delete_version(self, caller: dict, owner: str, name: str, version: int) -> None:
        """Delete one version and its files (the model too when it was the last)."""
        model = await self._model(caller, owner, name, change=True)
        row = await self._version(model, version)
        if row.state == COPYING:
            raise APIError(409, f"Version {version} is still being copied; try again later.")
        self._refuse_in_use(owner, name, await self._in_use(owner, name, [version]))

        def remove(session):
            session.execute(delete(ModelVersion).where(ModelVersion.id == row.id))
            left = store.model_versions_of(session, model)
            if not left:
                session.execute(delete(Model).where(Model.id == model.id))
            return len(left)

        left = await self.db.run(remove)
        if left:
            await asyncio.to_thread(self.folders.remove_version, owner, name, version)
        else:
            await asyncio.to_thread(self.folders.remove_model, owner, name)

    async def delete(self, caller: dict, owner: str, name: str) -> None:
        """Delete a model with all its versions and files."""
        model = await self._model(caller, owner, name, change=True)
        rows = await self.db.run(lambda s: store.model_versions_of(s, model))
        copying = [r.version for r in rows if r.state == COPYING]
        if copying:
            raise APIError(409, f"Version {copying[0]} is still being copied; try again later.")
        self._refuse_in_use(owner, name, await self._in_use(owner, name, [r.version for r in rows]))

        def remove(session):
            session.execute(delete(ModelVersion).where(ModelVersion.model_id == model.id))
            session.execute(delete(Model).where(Model.id == model.id))

        await self.db.run(remove)
        await asyncio.to_thread(self.folders.remove_model, owner, name)

    # --- deploying -----------------------------------------------------------------------
    async def deploy_files(self, owner: str, name: str, version: int) -> tuple[Path, dict]:
        """(the version's folder on this machine, the version's JSON), after hashing every
        file again: 409 when one changed, went or was added since registration."""
        model = await self.db.run(lambda s: store.find_model(s, owner, name))
        if model is None:
            raise APIError(404, f"No model {name!r} of user {owner!r}.")
        row = await self._version(model, version)
        if row.state != READY:
            raise APIError(
                409, f"Model {owner}/{name} version {version} is {row.state}, not ready."
            )
        folder = self.folders.version(owner, name, version)
        manifest = store.loads(row.files, [])
        if row.format == "image":
            await asyncio.to_thread(folder.mkdir, 0o755, True, True)
        difference = await asyncio.to_thread(differences, folder, manifest)
        if difference:
            raise APIError(
                409,
                f"Model {owner}/{name} version {version}: {difference}: checksum mismatch; "
                "register a new version.",
            )
        return folder, store.version_model(model, row)

    # --- the service's start -------------------------------------------------------------
    async def start(self) -> None:
        """Remove what a stop during a registration left (versions still copying, staging
        folders) and the folders of models the database no longer has (a deleted user's)."""

        def read(session):
            stale = list(session.scalars(select(ModelVersion).where(ModelVersion.state == COPYING)))
            for row in stale:
                session.delete(row)
            session.flush()
            for model in list(session.scalars(select(Model))):
                if not store.model_versions_of(session, model):
                    session.delete(model)
            session.flush()
            return {(m.owner, m.name) for m in session.scalars(select(Model))}, len(stale)

        kept, stale = await self.db.run(read)
        removed = await asyncio.to_thread(self.folders.clean, kept)
        if stale or removed:
            log.info(
                "models: removed %d unfinished version(s) and %d folder(s) of deleted models",
                stale,
                removed,
            )

    async def close(self) -> None:
        if self.copier is not None:
            await self.copier.close()
