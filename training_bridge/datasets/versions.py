"""Published dataset versions: snapshots of a dataset's samples, materialized for training.

Publishing reads every sample in key order in one transaction, splits the labelled ones into
train and validation (train_ratio, in the order of a seeded hash of each key: see
train_split) and reserves the version's number with the manifest's SHA-256. The version's
folder `<data>/datasets/versions/<dataset id>/<version>/` is made in a staging folder beside
it: `data/<key>` hard links to the blob store's files (so a file is stored once however many
versions hold it; copies where the store is not on this machine), `manifest.jsonl` (ModelArts
manifest lines, `source` = `data/<key>`, plus `split`) and `labels.json`; it is made
read-only and moved into place in one rename. A failure marks the version failed with the
reason and leaves no folder. Training jobs mount the folder read-only (store "datasets", path
`versions/<dataset id>/<version>`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import json
import logging
import math
import mimetypes
import os
import shutil
import zipfile
from pathlib import Path, PurePosixPath

from sqlalchemy import delete, func, select
from workbench.times import isoformat

from hub.service.api import APIError

from . import store
from .blobs import BlobError
from .store import (
    FAILED,
    LABELLED,
    PENDING,
    READY,
    DatasetVersion,
    Sample,
)

log = logging.getLogger("workbench.datasets")

CHUNK = 1024 * 1024
STAGING_PREFIX = ".staging-"
PUBLISH_WAIT_SECONDS = 10.0  # a publish answers once its folder is made, or after this
LINK_BATCH = 500  # files linked per worker-thread call
EXPORTS_AT_ONCE = 2
DESCRIPTION_CHARS = 1024
DATA = "data/"  # where a version's files are, below its folder
# the job states that hold or wait for their inputs (training_bridge.store.ACTIVE)
ACTIVE_JOB_STATES = ("queued", "starting", "running", "stopping")


def version_path(dataset_id: int, version: int) -> str:
    """A version's folder in the "datasets" store (what a job mounts)."""
    return f"versions/{dataset_id}/{version}"


def version_model(row: DatasetVersion) -> dict:
    """The API's JSON of a version."""
    return {
        "version": row.version,
        "description": row.description,
        "train_ratio": row.train_ratio,
        "manifest_sha256": row.manifest_sha256,
        "samples": row.samples,
        "labelled": row.labelled,
        "size": row.size,
        "labels": store.loads(row.labels, []),
        "state": row.state,
        "reason": row.reason,
        "created_by": row.created_by,
        "created": isoformat(row.created),
        "path": version_path(row.dataset_id, row.version),
    }


def train_split(keys: list[str], ratio: float, seed: int) -> dict[str, str]:
    """{key: "train" | "validation"}: the keys ordered by a hash of (seed, key), the first
    round(n * ratio) (at least one) to train. The same keys and seed give the same split, and
    a key added or removed moves at most one other key across, so a version's validation
    samples mostly stay out of the next one's training."""

    def rank(key: str) -> str:
        return hashlib.sha256(f"{seed}\x00{key}".encode()).hexdigest()

    ordered = sorted(keys, key=rank)
    train = max(1, round(len(ordered) * ratio)) if ordered else 0
    return {k: ("train" if i < train else "validation") for i, k in enumerate(ordered)}


def _annotation_core(a: dict) -> dict:
    """What a relabelling changes in an annotation: its label, box and span."""
    return {k: a[k] for k in ("label", "box", "span") if a.get(k) is not None}


def _same(before: list[dict], after: list[dict]) -> bool:
    def norm(items):
        return sorted(json.dumps(_annotation_core(a), sort_keys=True) for a in items)

    return norm(before) == norm(after)


def check_publish(body: dict) -> tuple[str, float, int]:
    """(description, train_ratio, seed) of a publish request; APIError 400 on a mistake."""
    unknown = set(body) - {"description", "train_ratio", "seed"}
    if unknown:
        raise APIError(
            400,
            f"A version takes description, train_ratio and seed; not {', '.join(sorted(unknown))}.",
        )
    description = body.get("description", "")
    if not isinstance(description, str) or len(description) > DESCRIPTION_CHARS:
        raise APIError(400, f"description must be text of at most {DESCRIPTION_CHARS} characters.")
    ratio = body.get("train_ratio", 0.8)
    if (
        isinstance(ratio, bool)
        or not isinstance(ratio, (int, float))
        or not math.isfinite(ratio)
        or not 0 < ratio <= 1
    ):
        raise APIError(
            400,
            "train_ratio must be a number above 0 and at most 1 (the share of labelled samples "
            "to train on; 0.8 by default).",
        )
    seed = body.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise APIError(400, "seed must be a whole number from 0 (the split's seed; 0 by default).")
    return description, float(ratio), seed


def parse_ref(ref: str, default_owner: str) -> tuple[str, str]:
    """("owner", "name") of "name" or "owner/name"."""
    owner, _, name = ref.rpartition("/")
    return owner or default_owner, name


# --- the version's folder (worker threads) --------------------------------------------------
def _writable(path: Path) -> None:
    """Make a read-only tree removable again (its folders writable by us)."""
    if not path.exists() or path.is_symlink():
        return
    for root, dirs, _ in os.walk(path, followlinks=False):
        os.chmod(root, 0o755)
        for d in dirs:
            p = os.path.join(root, d)
            if not os.path.islink(p):
                os.chmod(p, 0o755)


def remove_tree(path: Path) -> None:
    """Remove a (read-only) version folder, if there is one."""
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
        return
    with contextlib.suppress(OSError):
        _writable(path)
    shutil.rmtree(path, ignore_errors=True)


def _seal(path: Path) -> None:
    """Read-only for everyone: folders 0555, files 0444 (a file shares its mode with the
    blob it is linked to: blobs never change either)."""
    for root, dirs, files in os.walk(path, topdown=False, followlinks=False):
        for f in files:
            p = os.path.join(root, f)
            if not os.path.islink(p):
                os.chmod(p, 0o444)
        for d in dirs:
            os.chmod(os.path.join(root, d), 0o555)
    os.chmod(path, 0o555)


def _target(folder: Path, key: str) -> Path:
    rel = PurePosixPath(key)
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise ValueError(f"sample key {key!r} is not a relative path")
    return folder.joinpath(*rel.parts)


class MaterializeError(Exception):
    """A version's folder cannot be made (the message names the sample, no host path)."""


def _link_all(pairs: list[tuple[Path, Path, str]]) -> None:
    """Hard link each blob at its sample's place (a copy where a link cannot be made:
    another file system); pairs: (blob, place, key)."""
    for source, dest, key in pairs:
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(source, dest)
            except OSError as e:
                if e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                    raise
                shutil.copyfile(source, dest)
        except FileNotFoundError:
            if not source.exists():
                raise MaterializeError(
                    f"the file of sample {key!r} is missing from the store: upload it again"
                ) from None
            raise MaterializeError(f"sample {key!r} cannot be placed in the version") from None
        except OSError as e:
            raise MaterializeError(f"sample {key!r}: {e.strerror or e}") from None


def _copy_from(fileobj, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(dest, "wb") as out:
            shutil.copyfileobj(fileobj, out, CHUNK)
    finally:
        fileobj.close()


def _zip(folder: Path, target: Path) -> None:
    """folder's files into a zip at target (images stored as they are, the rest deflated)."""
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as z:
        for root, dirs, files in os.walk(folder, followlinks=False):
            dirs.sort()
            for f in sorted(files):
                p = Path(root, f)
                arcname = p.relative_to(folder).as_posix()
                kind = mimetypes.guess_type(f)[0] or ""
                compress = zipfile.ZIP_STORED if kind.startswith("image/") else None
                z.write(p, arcname, compress_type=compress)


class VersionService:
    """Publishing, reading, comparing, exporting and deleting a dataset's versions.

    datasets: the DatasetService (its database, blob store, data folder and access checks).
    """

    def __init__(self, datasets):
        self.datasets = datasets
        self.db = datasets.db
        self._locks: dict[int, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task] = set()
        self._exports = asyncio.Semaphore(EXPORTS_AT_ONCE)

    @property
    def root(self) -> Path:
        """<data>/datasets/versions: every version's folder below it."""
        return Path(self.datasets.data_root) / "versions"

    def folder(self, dataset_id: int, version: int) -> Path:
        return self.root / str(dataset_id) / str(version)

    def _lock(self, dataset_id: int) -> asyncio.Lock:
        return self._locks.setdefault(dataset_id, asyncio.Lock())

    async def _row(self, ds, version: int) -> DatasetVersion:
        row = await self.db.run(lambda s: store.find_version(s, ds, version))
        if row is None:
            raise APIError(404, f"Dataset {ds.owner}/{ds.name} has no version {version}.")
        return row

    async def _ready(self, ds, version: int) -> DatasetVersion:
        row = await self._row(ds, version)
        if row.state != READY:
            why = f" ({row.reason})" if row.reason else ""
            raise APIError(
                409,
                f"Version {version} of dataset {ds.owner}/{ds.name} is {row.state}{why}, not "
                "ready: wait for it, or publish again.",
            )
        return row

    # --- publishing ---------------------------------------------------------------------
    async def publish(self, caller: dict, owner: str, name: str, body: dict) -> dict:
        """Publish the dataset's samples as its next version: the version's JSON (pending
        while its folder is made, when that takes longer than a few seconds)."""
        ds = await self.datasets.dataset(caller, owner, name, change=True)
        description, ratio, seed = check_publish(body)
        async with self._lock(ds.id):
            entries, labels, number = await self._snapshot(ds)
            try:
                if not entries:
                    raise APIError(
                        409,
                        f"Dataset {ds.owner}/{ds.name} has no samples to publish: upload or "
                        "import some first.",
                    )
                manifest = await asyncio.to_thread(self._manifest, entries, ds.type, ratio, seed)
                sizes = {e["sha256"]: e["size"] for e in entries}

                def reserve(session):
                    row = DatasetVersion(
                        dataset_id=ds.id,
                        version=number,
                        description=description,
                        train_ratio=ratio,
                        manifest_sha256=hashlib.sha256(manifest).hexdigest(),
                        samples=len(entries),
                        labelled=sum(1 for e in entries if e["status"] == LABELLED),
                        size=sum(sizes.values()),
                        labels=json.dumps(labels),
                        state=PENDING,
                        reason="linking the samples' files",
                        created_by=caller["name"],
                    )
                    session.add(row)
                    session.flush()
                    session.expunge(row)
                    return row

                row = await self.db.run(reserve)
            except BaseException:
                self._release(entries)
                raise
        task = asyncio.ensure_future(self._materialize(row, entries, manifest, labels))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        await asyncio.wait({task}, timeout=PUBLISH_WAIT_SECONDS)
        log.info(
            "%s published version %s of dataset %s/%s (%d samples)",
            caller["name"],
            number,
            ds.owner,
            ds.name,
            len(entries),
        )
        return version_model(await self._row(ds, number))

    async def _snapshot(self, ds) -> tuple[list[dict], list[dict], int]:
        """(the dataset's samples in key order, its label set, the next version's number),
        read at once; the samples' files are held in the store (see _hold) until
        _release()."""

        def read(session):
            q = (
                select(
                    Sample.key,
                    Sample.sha256,
                    Sample.size,
                    Sample.width,
                    Sample.height,
                    Sample.annotations,
                    Sample.status,
                )
                .where(Sample.dataset_id == ds.id)
                .order_by(Sample.key)
            )
            entries = [
                {
                    "key": key,
                    "sha256": sha,
                    "size": size,
                    "width": width or 0,
                    "height": height or 0,
                    "annotations": store.loads(annotated, []),
                    "status": status,
                }
                for key, sha, size, width, height, annotated, status in session.execute(q)
            ]
            current = session.get(store.Dataset, ds.id)
            labels = current.labels if current is not None else ds.labels
            last = session.scalar(
                select(func.max(DatasetVersion.version)).where(DatasetVersion.dataset_id == ds.id)
            )
            return entries, store.loads(labels, []), (last or 0) + 1

        return await self._hold(ds, read)

    async def _hold(self, ds, read):
        """read(session)'s answer, whose first item lists samples: read while the dataset's
        samples cannot change, and their files pinned so that a deletion of samples meanwhile
        does not remove them from the store before they are linked or copied."""
        async with self.datasets._write_lock(ds.id):

            def pinned(session):
                answer = read(session)
                for entry in answer[0]:
                    self.datasets._pin(entry["sha256"])
                return answer

            return await self.db.run(pinned)

    def _release(self, entries: list[dict]) -> None:
        self.datasets._unpin([e["sha256"] for e in entries])

    @staticmethod
    def _manifest(entries: list[dict], dataset_type: str, ratio: float, seed: int) -> bytes:
        """The version's manifest: one ModelArts line a sample, in key order, with its split;
        each entry gets its "split" too."""
        from .formats.modelarts import manifest_line

        labelled = [e["key"] for e in entries if e["status"] == LABELLED]
        splits = train_split(labelled, ratio, seed)
        lines = []
        for e in entries:
            e["split"] = splits.get(e["key"], "")
            sample = {
                "key": e["key"],
                "text": None,
                "width": e["width"],
                "height": e["height"],
                "annotations": e["annotations"],
                "split": e["split"],
            }
            line = manifest_line(sample, dataset_type, f"data/{e['key']}")
            lines.append(json.dumps(line, ensure_ascii=False, separators=(",", ":")))
        return ("\n".join(lines) + "\n").encode()

    async def _materialize(self, row: DatasetVersion, entries: list[dict], manifest, labels):
        """Make the version's folder (see the module's docstring); the version ready, or
        failed with the reason and no folder."""
        final = self.folder(row.dataset_id, row.version)
        staging = final.parent / f"{STAGING_PREFIX}{row.version}"
        try:
            await asyncio.to_thread(self._prepare, staging)
            data = staging / "data"
            blobs = self.datasets.blobs
            pairs, copies = [], []
            for e in entries:
                dest = _target(data, e["key"])
                source = blobs.local_path(e["sha256"])
                if source is not None:
                    pairs.append((Path(source), dest, e["key"]))
                else:
                    copies.append((e["sha256"], dest))
                if len(pairs) >= LINK_BATCH:
                    await asyncio.to_thread(_link_all, pairs)
                    pairs = []
            await asyncio.to_thread(_link_all, pairs)
            for sha, dest in copies:
                fileobj = await blobs.open(sha)
                await asyncio.to_thread(_copy_from, fileobj, dest)

            def finish():
                (staging / "manifest.jsonl").write_bytes(manifest)
                (staging / "labels.json").write_text(
                    json.dumps(labels, ensure_ascii=False, indent=1), encoding="utf-8"
                )
                data.mkdir(exist_ok=True)
                _seal(staging)
                remove_tree(final)
                os.rename(staging, final)

            await asyncio.to_thread(finish)
            await self._set(row.id, READY, "")
        except asyncio.CancelledError:
            await asyncio.shield(self._fail(row, staging, final, "interrupted by a stop"))
            raise
        except (MaterializeError, BlobError) as e:
            log.warning("version %s of dataset %s failed: %s", row.version, row.dataset_id, e)
            await self._fail(row, staging, final, f"its files could not be linked: {e}")
        except Exception:  # noqa: BLE001 - the version fails; the details go to the log
            log.exception("version %s of dataset %s failed", row.version, row.dataset_id)
            await self._fail(
                row, staging, final, "its folder could not be made; see the platform's log"
            )
        finally:
            self._release(entries)

    @staticmethod
    def _prepare(staging: Path) -> None:
        remove_tree(staging)
        staging.mkdir(parents=True)

    async def _fail(self, row, staging: Path, final: Path, reason: str) -> None:
        await asyncio.to_thread(remove_tree, staging)
        await asyncio.to_thread(remove_tree, final)
        await self._set(row.id, FAILED, reason)

    async def _set(self, row_id: int, state: str, reason: str) -> None:
        def write(session):
            row = session.get(DatasetVersion, row_id)
            if row is not None:
                row.state, row.reason = state, reason

        await self.db.run(write)

    # --- reading ------------------------------------------------------------------------
    async def list(self, caller: dict, owner: str, name: str) -> list[dict]:
        ds = await self.datasets.dataset(caller, owner, name)

        def read(session):
            q = (
                select(DatasetVersion)
                .where(DatasetVersion.dataset_id == ds.id)
                .order_by(DatasetVersion.version)
            )
            return [version_model(r) for r in session.scalars(q)]

        return await self.db.run(read)

    async def get(self, caller: dict, owner: str, name: str, version: int) -> dict:
        ds = await self.datasets.dataset(caller, owner, name)
        return version_model(await self._row(ds, version))

    async def manifest(self, caller: dict, owner: str, name: str, version: int):
        """The version's manifest file, opened for reading (binary)."""
        ds = await self.datasets.dataset(caller, owner, name)
        row = await self._ready(ds, version)
        path = self.folder(ds.id, row.version) / "manifest.jsonl"
        try:
            return await asyncio.to_thread(open, path, "rb")
        except OSError:
            raise APIError(
                409,
                f"Version {version} of dataset {ds.owner}/{ds.name} has lost its folder; "
                "publish the dataset again.",
            ) from None

    async def _read(self, ds, version: int) -> list[dict]:
        """A ready version's samples (as the formats read and write them), from its folder;
        their keys are the dataset's (data/ left out)."""
        from .formats import FormatError, read

        await self._ready(ds, version)
        folder = self.folder(ds.id, version)

        def load():
            samples = read("modelarts", folder, ds.type).samples
            for sample in samples:
                key = sample["key"]
                sample["key"] = key[len(DATA) :] if key.startswith(DATA) else key
            return samples

        try:
            return await asyncio.to_thread(load)
        except (OSError, FormatError) as e:
            raise APIError(
                409,
                f"Version {version} of dataset {ds.owner}/{ds.name} cannot be read ({e}); "
                "publish the dataset again.",
            ) from None

    async def diff(self, caller: dict, owner: str, name: str, version: int, against: int):
        """What changed from version `against` to `version`: keys added and removed, and the
        samples whose annotations changed (before: in `against`, after: in `version`)."""
        ds = await self.datasets.dataset(caller, owner, name)
        after = {x["key"]: x for x in await self._read(ds, version)}
        before = {x["key"]: x for x in await self._read(ds, against)}

        def compare():
            relabelled = []
            for key in sorted(after.keys() & before.keys()):
                a, b = before[key]["annotations"], after[key]["annotations"]
                if not _same(a, b):
                    relabelled.append(
                        {
                            "key": key,
                            "before": [_annotation_core(x) for x in a],
                            "after": [_annotation_core(x) for x in b],
                        }
                    )
            return {
                "version": version,
                "against": against,
                "added": sorted(after.keys() - before.keys()),
                "removed": sorted(before.keys() - after.keys()),
                "relabelled": relabelled,
            }

        return await asyncio.to_thread(compare)

    # --- in use, deleting ---------------------------------------------------------------
    async def in_use(self, dataset_id: int, version: int | None = None) -> list[str]:
        """The queued or running job versions ("owner/job v2") whose spec mounts a version
        of the dataset (the one given, else any)."""
        from training_bridge.store import Job, JobVersion

        prefix = f"versions/{dataset_id}/"

        def mounted(spec: dict) -> bool:
            channels = [
                *(spec.get("inputs") or {}).values(),
                *(spec.get("mounts") or []),
            ]
            for c in channels:
                if not isinstance(c, dict) or c.get("store") != "datasets":
                    continue
                path = str(c.get("path") or "").strip("/")
                if version is None and path.startswith(prefix):
                    return True
                if version is not None and path == f"{prefix}{version}":
                    return True
            return False

        def read(session):
            q = (
                select(Job.owner, Job.name, JobVersion.version, JobVersion.spec)
                .join(Job, Job.id == JobVersion.job_id)
                .where(JobVersion.state.in_(ACTIVE_JOB_STATES))
            )
            users = []
            for owner, name, v, spec in session.execute(q):
                try:
                    if mounted(json.loads(spec or "{}")):
                        users.append(f"{owner}/{name} v{v}")
                except ValueError:
                    continue
            return users

        try:
            return await self.db.run(read)
        except Exception:  # noqa: BLE001 - no jobs table: no job uses it
            log.debug("cannot read the jobs' specs", exc_info=True)
            return []

    async def delete(self, caller: dict, owner: str, name: str, version: int) -> None:
        """Delete a version and its folder (409 while a job uses it or it is being made)."""
        ds = await self.datasets.dataset(caller, owner, name, change=True)
        row = await self._row(ds, version)
        if row.state == PENDING:
            raise APIError(409, f"Version {version} is still being made; try again shortly.")
        users = await self.in_use(ds.id, version)
        if users:
            raise APIError(
                409,
                f"Version {version} of dataset {ds.owner}/{ds.name} is an input of "
                f"{', '.join(users)}: stop those jobs first, or wait until they end.",
            )
        await self.db.run(
            lambda s: s.execute(delete(DatasetVersion).where(DatasetVersion.id == row.id))
        )
        await asyncio.to_thread(remove_tree, self.folder(ds.id, version))
        log.info("%s deleted version %s of dataset %s/%s", caller["name"], version, owner, name)

    async def remove_dataset(self, dataset_id: int) -> None:
        """Remove every version folder of a deleted dataset."""
        await asyncio.to_thread(remove_tree, self.root / str(dataset_id))

    # --- training inputs ----------------------------------------------------------------
    async def resolve_input(self, caller_name: str, ref: str, version: int) -> dict:
        """A job input {"dataset": ref, "version": N}: the version's folder in the "datasets"
        store, for a dataset the submitter may see; APIError 400 saying why otherwise."""
        owner, name = parse_ref(ref, caller_name)
        try:
            ds = await self.datasets.dataset({"name": caller_name}, owner, name)
        except APIError as e:
            raise APIError(
                400, f"Input dataset {ref!r}: {e.message} (see GET /datasets)."
            ) from None
        row = await self.db.run(lambda s: store.find_version(s, ds, version))
        if row is None:
            raise APIError(
                400,
                f"Input dataset {ds.owner}/{ds.name} has no version {version}: publish one "
                f"(POST /datasets/{ds.owner}/{ds.name}/versions) or pick one of GET .../versions.",
            )
        if row.state != READY:
            why = f" ({row.reason})" if row.reason else ""
            raise APIError(
                400,
                f"Input dataset {ds.owner}/{ds.name} version {version} is {row.state}{why}, "
                "not ready: wait for it, or pick another version.",
            )
        return {
            "dataset": f"{ds.owner}/{ds.name}",
            "store": "datasets",
            "path": version_path(ds.id, version),
        }

    # --- exporting ----------------------------------------------------------------------
    async def export(self, caller: dict, owner: str, name: str, body: dict) -> tuple[Path, str]:
        """A zip of the dataset's samples (or of a version's) in a format: (the zip, in a
        staging folder of its own that discard_export() removes; its download name)."""
        from .formats import FORMATS, FormatError, write

        ds = await self.datasets.dataset(caller, owner, name)
        unknown = set(body) - {"format", "version"}
        if unknown:
            raise APIError(
                400, f"An export takes format and version; not {', '.join(sorted(unknown))}."
            )
        fmt = body.get("format")
        if not isinstance(fmt, str) or fmt not in FORMATS:
            raise APIError(400, f"format must be one of {', '.join(FORMATS)}; got {fmt!r}.")
        version = body.get("version")
        if version is not None and (
            isinstance(version, bool) or not isinstance(version, int) or not 0 < version < 10**9
        ):
            raise APIError(400, "version must be the number of a published version.")
        work = await asyncio.to_thread(self.datasets.staging)
        target = work / "export.zip"
        held: list[dict] = []
        try:
            if version is not None:
                labels = store.loads((await self._ready(ds, version)).labels, [])
                samples, source_of = await self._version_samples(ds, version)
                filename = f"{ds.name}-v{version}-{fmt}.zip"
            else:
                labels = store.loads(ds.labels, [])
                samples, source_of = await self._current_samples(ds, work / "blobs")
                held = samples
                filename = f"{ds.name}-{fmt}.zip"

            def build():
                out = work / "out"
                write(fmt, samples, labels, ds.type, out, source_of)
                _zip(out, target)
                shutil.rmtree(out)

            async with self._exports:
                await asyncio.to_thread(build)
        except BaseException as e:
            await self.discard_export(target)
            if isinstance(e, FormatError):
                raise APIError(400, f"Cannot export as {fmt}: {e}") from None
            raise
        finally:
            self._release(held)
        return target, filename

    @staticmethod
    async def discard_export(path: Path) -> None:
        """Remove an export's zip with its staging folder (an open zip reads on)."""
        await asyncio.to_thread(shutil.rmtree, path.parent, True)

    async def _version_samples(self, ds, version: int):
        """A version's samples, and where each one's file is."""
        folder = self.folder(ds.id, version) / "data"
        samples = await self._read(ds, version)
        return samples, lambda sample: _target(folder, sample["key"])

    async def _current_samples(self, ds, copies: Path):
        """The dataset's samples now (as the formats read and write them) and where each
        one's file is: the blob store's, or a copy made in `copies` where the store is not on
        this machine. Their files are held until _release()."""

        def read(session):
            q = (
                select(Sample.key, Sample.sha256, Sample.width, Sample.height, Sample.annotations)
                .where(Sample.dataset_id == ds.id)
                .order_by(Sample.key)
            )
            return [
                {
                    "key": key,
                    "text": None,  # the formats read it from the file
                    "width": width or 0,
                    "height": height or 0,
                    "annotations": store.loads(annotated, []),
                    "split": "",
                    "sha256": sha,
                }
                for key, sha, width, height, annotated in session.execute(q)
            ]

        (samples,) = await self._hold(ds, lambda session: (read(session),))
        try:
            blobs = self.datasets.blobs
            paths: dict[str, Path] = {}
            for sample in samples:
                sha = sample["sha256"]
                if sha in paths:
                    continue
                local = blobs.local_path(sha)
                if local is None:
                    fileobj = await blobs.open(sha)
                    local = copies / sha
                    await asyncio.to_thread(_copy_from, fileobj, local)
                paths[sha] = Path(local)
        except BaseException:
            self._release(samples)
            raise
        return samples, lambda sample: paths[sample["sha256"]]

    # --- the service's start and stop ---------------------------------------------------
    async def start(self) -> None:
        """Versions a restart interrupted fail (their folders go), and folders the database
        no longer has (deleted datasets' and versions', staging folders) are removed."""

        def read(session):
            stale = list(
                session.scalars(select(DatasetVersion).where(DatasetVersion.state == PENDING))
            )
            for row in stale:
                row.state, row.reason = FAILED, "interrupted by a restart: publish again"
            kept = {
                (d, v)
                for d, v, state in session.execute(
                    select(DatasetVersion.dataset_id, DatasetVersion.version, DatasetVersion.state)
                )
                if state == READY
            }
            return kept, len(stale)

        kept, stale = await self.db.run(read)
        removed = await asyncio.to_thread(self._clean, kept)
        if stale or removed:
            log.info(
                "datasets: %d unfinished version(s) failed, %d folder(s) removed", stale, removed
            )

    def _clean(self, kept: set[tuple[int, int]]) -> int:
        removed = 0
        if not self.root.is_dir():
            return 0
        for dataset in self.root.iterdir():
            if dataset.is_symlink() or not dataset.is_dir():
                continue
            for version in dataset.iterdir():
                name = version.name
                if not (
                    dataset.name.isdigit()
                    and name.isdigit()
                    and (int(dataset.name), int(name)) in kept
                ):
                    remove_tree(version)
                    removed += 1
            with contextlib.suppress(OSError):
                dataset.rmdir()  # only when empty
        return removed

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def setup_versions(platform) -> None:
    """platform["dataset_versions"]: the versions of the datasets service (set up before);
    the jobs service resolves dataset inputs through it."""
    service = VersionService(platform["datasets"])
    platform["dataset_versions"] = service
    jobs = platform.get("job_service")
    if jobs is not None:
        jobs.dataset_inputs = service.resolve_input
    platform.on_start.append(service.start)
    platform.on_stop.append(service.close)
