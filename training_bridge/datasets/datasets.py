"""Datasets in the platform API: datasets and label sets, samples and their annotations,
uploads and imports, statistics and the storage quota.

An upload or an import is all or nothing: the body goes to a staging folder, archives are
unpacked there member by member, every file is checked (images opened with Pillow, texts
decoded) and its annotations checked against the label set, then hashed into the blob store;
the samples are written in one transaction that also checks the limits. A refusal on the way
leaves no row behind, and the blobs it stored are removed again unless a sample uses them.
Blobs are pinned while an upload holds them and not yet in the database, so that a clean-up
running meanwhile never removes them.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import os
import re
import secrets
import shutil
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from sqlalchemy import delete, func, insert, or_, select, text
from sqlalchemy.exc import IntegrityError
from workbench.times import isoformat, utcnow

from hub.service.api import APIError
from inference_bridge.storage_copy import copy_image

from . import store
from .access import LABELLER, MEMBER, OWNER, DatasetAccess, like_pattern, task_datasets
from .annotations import AnnotationError, check_annotations, check_labels
from .blobs import BlobError, BlobStore
from .settings import DatasetSettings
from .store import (
    DATASET_TYPES,
    IMAGE_CLASSIFICATION,
    IMAGE_TYPES,
    LABELLED,
    PRELABELLED,
    REVIEW_STATES,
    SAMPLE_STATUSES,
    TEXT_CLASSIFICATION,
    TO_REVIEW,
    UNLABELLED,
    Dataset,
    DatasetVersion,
    LabellingTask,
    Sample,
)
from .uploads import (
    UploadError,
    accepted_suffixes,
    archive_kind,
    check_key,
    check_tree,
    decode_text,
    inspect_image,
    open_below,
    unpack,
)

log = logging.getLogger("workbench.datasets")

NAME = re.compile(r"^[a-z0-9](?:[a-z0-9_-]{0,62}[a-z0-9])?$")
MAX_DESCRIPTION = 1024
CREATE_KEYS = ("name", "type", "description", "workspace", "multi_label", "labels")
UPDATE_KEYS = ("description", "workspace", "multi_label")
LABEL_KEYS = ("name", "color", "key")
CLASSIFICATION = (IMAGE_CLASSIFICATION, TEXT_CLASSIFICATION)
DEFAULT_PAGE, MAX_PAGE = 100, 500
MAX_BULK = 1000  # samples one PATCH .../samples annotates
MAX_IDS = 100_000  # ids one delete or accept names
CHUNK = 500  # ids or keys per IN (...) of a query
STAGING = ".staging"


# --- the API's JSON ------------------------------------------------------------------------
def dataset_model(
    row: Dataset,
    samples: int = 0,
    stats: dict | None = None,
    versions: list[dict] | None = None,
) -> dict:
    """The API's JSON of a dataset (with its statistics and versions where given)."""
    model = {
        "owner": row.owner,
        "name": row.name,
        "description": row.description,
        "workspace": row.workspace,
        "type": row.type,
        "multi_label": bool(row.multi_label),
        "labels": store.loads(row.labels, []),
        "samples": samples,
        "size": row.size,
        "created": isoformat(row.created),
        "updated": isoformat(row.updated),
    }
    if stats is not None:
        model["stats"] = stats
        model["samples"] = stats["samples"]
    if versions is not None:
        model["versions"] = versions
    return model


def version_summary(row: DatasetVersion) -> dict:
    """A version as its dataset lists it (GET .../versions/N has its label set too)."""
    return {
        "version": row.version,
        "description": row.description,
        "state": row.state,
        "reason": row.reason,
        "samples": row.samples,
        "labelled": row.labelled,
        "train_ratio": row.train_ratio,
        "size": row.size,
        "manifest_sha256": row.manifest_sha256,
        "created_by": row.created_by,
        "created": isoformat(row.created),
    }


def sample_model(ds: Dataset, row: Sample, text: str | None = None) -> dict:
    """The API's JSON of a sample; text: a text sample's text (text datasets carry "text")."""
    model = {
        "id": row.id,
        "key": row.key,
        "sha256": row.sha256,
        "size": row.size,
        "media_type": row.media_type,
        "width": row.width,
        "height": row.height,
        "annotations": store.loads(row.annotations, []),
        "status": row.status,
        "annotated_by": row.annotated_by,
        "confidence": row.confidence,
        "review": row.review,
        "review_comment": row.review_comment,
        "reviewed_by": row.reviewed_by,
        "task": row.task_id,
        "assignee": row.assignee,
        "updated": isoformat(row.updated),
    }
    if ds.type not in IMAGE_TYPES:
        model["text"] = text
    return model


def dumps(annotations: list) -> str:
    """A sample's annotations as stored (json's default separators: label_filter relies on
    them)."""
    return json.dumps(annotations)


def label_filter(name: str):
    """WHERE clause: the sample has an annotation with this label."""
    return Sample.annotations.like(like_pattern(f'"label": {json.dumps(name)}'), escape="!")


def lowest_confidence(annotations: list[dict]) -> float | None:
    values = [a["confidence"] for a in annotations if a.get("confidence") is not None]
    return min(values) if values else None


def _chunks(items: list, size: int = CHUNK):
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _keys(body: dict, allowed: tuple[str, ...], what: str) -> None:
    unknown = sorted(str(k) for k in set(body) - set(allowed))
    if unknown:
        raise APIError(400, f"{what} takes {', '.join(allowed)}; not {', '.join(unknown)}.")


def _ids(value, what: str = "ids") -> list[int]:
    if (
        not isinstance(value, list)
        or not value
        or len(value) > MAX_IDS
        or not all(isinstance(i, int) and not isinstance(i, bool) and i > 0 for i in value)
    ):
        raise APIError(
            400, f"{what} must be a list of 1 to {MAX_IDS} sample ids, for example [3, 4]."
        )
    return list(dict.fromkeys(value))


def check_name(name) -> str:
    if not isinstance(name, str) or not NAME.match(name):
        raise APIError(
            400,
            f"Invalid dataset name {name!r}: use 1 to 64 lower-case letters, digits, '-' and "
            "'_', starting and ending with a letter or digit (for example 'flowers-2026').",
        )
    return name


def check_description(value) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > MAX_DESCRIPTION:
        raise APIError(400, f"description must be text of at most {MAX_DESCRIPTION} characters.")
    return value


def _labels(value) -> list[dict]:
    try:
        return check_labels(value if value is not None else [])
    except AnnotationError as e:
        raise APIError(400, str(e)) from None


def dataset_size(session, dataset_id: int) -> int:
    """Bytes of the dataset's distinct files."""
    files = (
        select(Sample.sha256, Sample.size).where(Sample.dataset_id == dataset_id).distinct()
    ).subquery()
    return int(session.scalar(select(func.coalesce(func.sum(files.c.size), 0))) or 0)


def sample_counts(session, ids: Iterable[int], status: str | None = None) -> dict[int, int]:
    """Samples per dataset (of one status where given)."""
    ids = list(ids)
    counts: dict[int, int] = {}
    for chunk in _chunks(ids):
        q = select(Sample.dataset_id, func.count()).where(Sample.dataset_id.in_(chunk))
        if status is not None:
            q = q.where(Sample.status == status)
        counts.update({d: n for d, n in session.execute(q.group_by(Sample.dataset_id))})
    return counts


def label_counts(session, dataset_id: int) -> dict[str, int]:
    """Annotations per label (boxes and spans each count), counted by the database."""
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        q = text(
            "SELECT json_extract(a.value, '$.label'), count(*) "
            "FROM dataset_samples AS s, json_each(s.annotations) AS a "
            "WHERE s.dataset_id = :id AND s.annotations != '[]' GROUP BY 1"
        )
    elif dialect == "postgresql":
        q = text(
            "SELECT a.value ->> 'label', count(*) "
            "FROM dataset_samples AS s, jsonb_array_elements(s.annotations::jsonb) AS a "
            "WHERE s.dataset_id = :id AND s.annotations != '[]' GROUP BY 1"
        )
    else:
        counts: collections.Counter = collections.Counter()
        rows = session.scalars(
            select(Sample.annotations).where(
                Sample.dataset_id == dataset_id, Sample.annotations != "[]"
            )
        )
        for annotations in rows:
            counts.update(a["label"] for a in store.loads(annotations, []))
        return dict(counts)
    return {label: n for label, n in session.execute(q, {"id": dataset_id}) if label}


def stats_of(session, ds: Dataset) -> dict:
    """Samples by status and by review, and annotations per label (every label listed)."""
    q = (
        select(Sample.status, Sample.review, func.count())
        .where(Sample.dataset_id == ds.id)
        .group_by(Sample.status, Sample.review)
    )
    stats = dict.fromkeys(("samples", *SAMPLE_STATUSES, *REVIEW_STATES[1:]), 0)
    for status, review, n in session.execute(q):
        stats["samples"] += n
        if status in SAMPLE_STATUSES:
            stats[status] += n
        if review:
            stats[review] = stats.get(review, 0) + n
    per_label = dict.fromkeys((label["name"] for label in store.loads(ds.labels, [])), 0)
    per_label.update(label_counts(session, ds.id))
    stats["per_label"] = per_label
    return stats


def _remove_tree(path: Path) -> None:
    """Remove a folder, read-only parts too."""
    if not path.exists() and not path.is_symlink():
        return
    for top, dirs, _ in os.walk(path, followlinks=False):
        for name in dirs:
            p = os.path.join(top, name)
            if not os.path.islink(p):
                os.chmod(p, 0o700)
    if path.is_dir() and not path.is_symlink():
        os.chmod(path, 0o700)
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _after_annotate(ds: Dataset, row: Sample, session) -> None:
    """What a person's annotation means for the sample's review (the tasks' rule)."""
    try:
        from .tasks import after_annotate
    except ImportError:  # without tasks: a sample of a task goes to review once labelled
        if row.task_id is not None:
            row.review = TO_REVIEW if row.status == LABELLED else ""
        return
    after_annotate(ds, row, session)


class DatasetService:
    """Datasets, their labels, samples and statistics: the API's operations.

    data_root: <data>/datasets (staging folders, and the versions' folders); blobs: the
    samples' files; workspaces: the workspaces feature's object; hub, policy, copier and
    image_checker: what copies from instances' storage (copier None: not on this backend);
    versions: () -> the version service (asked whether jobs use a dataset's versions).
    """

    def __init__(
        self,
        *,
        db,
        settings: DatasetSettings,
        data_root: Path,
        blobs: BlobStore,
        workspaces=None,
        hub=None,
        policy=None,
        copier=None,
        image_checker=None,
        versions: Callable[[], object] | None = None,
    ):
        self.db = db
        self.settings = settings
        self.data_root = Path(data_root)
        self.blobs = blobs
        self.access = DatasetAccess(db, workspaces)
        self.hub = hub
        self.policy = policy
        self.copier = copier
        self.image_checker = image_checker
        self.versions = versions or (lambda: None)
        self._write_locks: dict[int, asyncio.Lock] = {}
        self._owner_locks: dict[str, asyncio.Lock] = {}
        # blobs stored by uploads in progress, not yet in the database
        self._pins: collections.Counter = collections.Counter()
        self._pin_lock = threading.Lock()
        self._cleaning: asyncio.Task | None = None

    # --- limits ----------------------------------------------------------------------------
    @property
    def max_dataset_bytes(self) -> int:
        return int(self.settings.max_dataset_gib * 1024**3)

    @property
    def max_user_bytes(self) -> int:
        return int(self.settings.max_user_gib * 1024**3)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.settings.max_upload_mib) * 1024**2

    def _write_lock(self, dataset_id: int) -> asyncio.Lock:
        """Writes of one dataset's samples and labels, one at a time (short: the database)."""
        return self._write_locks.setdefault(dataset_id, asyncio.Lock())

    # --- visibility --------------------------------------------------------------------------
    async def dataset(self, caller: dict, owner: str, name: str, *, change=False) -> Dataset:
        """The dataset, if the caller may see it (404 otherwise); change: only its owner and
        administrators (403 for those who see it)."""
        ds = await self.db.run(lambda s: store.find_dataset(s, owner, name))
        roles = await self.access.roles(caller, ds) if ds is not None else set()
        if not roles:
            raise APIError(404, f"No dataset {name!r} of user {owner!r}.")
        if change and OWNER not in roles:
            raise APIError(
                403,
                f"Dataset {owner}/{name} belongs to {owner}: only they and administrators may "
                "change it.",
            )
        return ds

    async def roles(self, caller: dict, ds: Dataset) -> set[str]:
        return await self.access.roles(caller, ds)

    @staticmethod
    def _label_check(roles: set[str], caller: dict, sample) -> None:
        sample_id = _field(sample, "id")
        assignee = _field(sample, "assignee") or ""
        if OWNER in roles:
            return
        if assignee and assignee != caller["name"]:
            raise APIError(403, f"Sample {sample_id} is assigned to {assignee}.")
        if MEMBER in roles or (LABELLER in roles and assignee == caller["name"]):
            return
        raise APIError(
            403,
            f"Sample {sample_id} is not assigned to you: labellers of a task annotate the "
            "samples dealt to them.",
        )

    async def can_label(self, caller: dict, ds: Dataset, sample) -> bool:
        """True if the caller may annotate the sample (a row or its JSON); APIError 403 with
        the reason otherwise (404 where the dataset is hidden from them)."""
        roles = await self.access.roles(caller, ds)
        if not roles:
            raise APIError(404, f"No dataset {ds.name!r} of user {ds.owner!r}.")
        self._label_check(roles, caller, sample)
        return True

    async def _labeller_roles(self, caller: dict, ds: Dataset) -> set[str]:
        roles = await self.access.roles(caller, ds)
        if not roles & {OWNER, MEMBER, LABELLER}:
            raise APIError(
                403,
                f"You may read dataset {ds.owner}/{ds.name} but not label it: its owner, the "
                "members of its workspace and the labellers of its tasks may.",
            )
        return roles

    # --- datasets ----------------------------------------------------------------------------
    async def list(self, caller: dict, workspace: str | None = None, all_users=False) -> list:
        """The datasets the caller sees (all_users: everyone's, for administrators), newest
        first."""
        user = caller["name"]
        member_of = {w for w in await self.access.member_of(user) if w != "default"}
        everyone = bool(all_users and caller.get("admin"))

        def read(session):
            q = select(Dataset).order_by(Dataset.created.desc(), Dataset.id.desc())
            if workspace is not None:
                q = q.where(Dataset.workspace == workspace)
            if not everyone:
                tasks = task_datasets(session, user)
                q = q.where(
                    or_(
                        Dataset.owner == user,
                        Dataset.workspace.in_(member_of),
                        Dataset.id.in_(tasks),
                    )
                )
            rows = list(session.scalars(q))
            ids = [r.id for r in rows]
            counts = sample_counts(session, ids)
            labelled = sample_counts(session, ids, LABELLED)
            return [
                dataset_model(r, counts.get(r.id, 0)) | {"labelled": labelled.get(r.id, 0)}
                for r in rows
            ]

        return await self.db.run(read)

    async def get(self, caller: dict, owner: str, name: str) -> dict:
        """A dataset with its statistics and its versions."""
        ds = await self.dataset(caller, owner, name)
        return await self.db.run(lambda s: self._full_model(s, ds.id))

    @staticmethod
    def _full_model(session, dataset_id: int) -> dict:
        row = session.get(Dataset, dataset_id)
        if row is None:
            raise APIError(404, "The dataset was deleted meanwhile.")
        versions = session.scalars(
            select(DatasetVersion)
            .where(DatasetVersion.dataset_id == dataset_id)
            .order_by(DatasetVersion.version)
        )
        return dataset_model(
            row, stats=stats_of(session, row), versions=[version_summary(v) for v in versions]
        )

    async def create(self, caller: dict, body: dict) -> dict:
        owner = caller["name"]
        _keys(body, CREATE_KEYS, "A new dataset")
        name = check_name(body.get("name"))
        kind = body.get("type")
        if kind not in DATASET_TYPES:
            raise APIError(
                400, f"Unknown dataset type {kind!r}: use one of {', '.join(DATASET_TYPES)}."
            )
        description = check_description(body.get("description"))
        multi_label = self._multi_label(kind, body.get("multi_label", False))
        labels = _labels(body.get("labels"))
        workspace = await self._workspace(owner, body.get("workspace"))

        def insert_row(session):
            if store.find_dataset(session, owner, name) is not None:
                return None
            now = utcnow()
            row = Dataset(
                owner=owner,
                name=name,
                description=description,
                workspace=workspace,
                type=kind,
                multi_label=multi_label,
                labels=json.dumps(labels),
                size=0,
                created=now,
                updated=now,
            )
            session.add(row)
            session.flush()
            return row.id

        lock = self._owner_locks.setdefault(owner, asyncio.Lock())
        async with lock:
            try:
                made = await self.db.run(insert_row)
            except IntegrityError:
                made = None
        if made is None:
            raise APIError(409, f"You already have a dataset named {name!r}: pick another name.")
        log.info("%s created dataset %s/%s (%s)", owner, owner, name, kind)
        return await self.db.run(lambda s: self._full_model(s, made))

    @staticmethod
    def _multi_label(kind: str, value) -> bool:
        if not isinstance(value, bool):
            raise APIError(400, "multi_label must be true or false.")
        if value and kind not in CLASSIFICATION:
            raise APIError(
                400, f"multi_label is for classification datasets; a {kind} dataset has none."
            )
        return value

    async def _workspace(self, owner: str, value) -> str:
        workspace = value or "default"
        if not isinstance(workspace, str):
            raise APIError(400, "workspace must be a workspace's name.")
        if workspace != "default" and workspace not in await self.access.member_of(owner):
            raise APIError(400, f"You are not a member of workspace {workspace!r}.")
        return workspace

    async def update(self, caller: dict, owner: str, name: str, body: dict) -> dict:
        ds = await self.dataset(caller, owner, name, change=True)
        _keys(body, UPDATE_KEYS, "A dataset's change")
        changes = {}
        if "description" in body:
            changes["description"] = check_description(body["description"])
        if "workspace" in body:
            changes["workspace"] = await self._workspace(ds.owner, body["workspace"])
        if "multi_label" in body:
            changes["multi_label"] = self._multi_label(ds.type, body["multi_label"])

        def write(session):
            row = session.get(Dataset, ds.id)
            if row is None:
                raise APIError(404, f"No dataset {name!r} of user {owner!r}.")
            if row.multi_label and changes.get("multi_label") is False:
                several = session.scalar(
                    select(func.count()).where(
                        Sample.dataset_id == ds.id,
                        Sample.annotations.like('%"label"%"label"%'),
                    )
                )
                if several:
                    raise APIError(
                        409,
                        f"{several} samples have several labels: leave them one each before "
                        "turning multi_label off.",
                    )
            for key, value in changes.items():
                setattr(row, key, value)
            row.updated = utcnow()

        async with self._write_lock(ds.id):
            await self.db.run(write)
        return await self.db.run(lambda s: self._full_model(s, ds.id))

    async def delete(self, caller: dict, owner: str, name: str) -> None:
        """Delete a dataset with its samples, versions, tasks and runs (409 while a job
        uses one of its versions); its files go unless other datasets hold them."""
        ds = await self.dataset(caller, owner, name, change=True)
        versions = self.versions()
        if versions is not None:
            users = await versions.in_use(ds.id)
            if users:
                raise APIError(
                    409,
                    f"Dataset {owner}/{name} has versions that are inputs of "
                    f"{', '.join(users)}: stop those jobs first, or wait until they end.",
                )

        def remove(session):
            shas = set(session.scalars(select(Sample.sha256).where(Sample.dataset_id == ds.id)))
            for table in (Sample, DatasetVersion, LabellingTask, store.AutoLabelRun):
                session.execute(delete(table).where(table.dataset_id == ds.id))
            session.execute(delete(Dataset).where(Dataset.id == ds.id))
            return shas

        async with self._write_lock(ds.id):
            shas = await self.db.run(remove)
        self._write_locks.pop(ds.id, None)
        if versions is not None:
            await versions.remove_dataset(ds.id)
        else:
            await asyncio.to_thread(_remove_tree, self.data_root / "versions" / str(ds.id))
        removed = await asyncio.to_thread(self._collect, shas)
        log.info(
            "%s deleted dataset %s/%s (%d files removed)", caller["name"], owner, name, removed
        )

    # --- labels ------------------------------------------------------------------------------
    async def add_label(self, caller: dict, owner: str, name: str, body: dict) -> list[dict]:
        ds = await self.dataset(caller, owner, name, change=True)
        _keys(body, LABEL_KEYS, "A label")

        def write(session):
            row = session.get(Dataset, ds.id)
            labels = store.loads(row.labels, [])
            if any(label["name"] == body.get("name") for label in labels):
                raise APIError(409, f"Dataset {owner}/{name} has a label {body['name']!r} already.")
            labels = _labels([*labels, dict(body)])
            row.labels = json.dumps(labels)
            row.updated = utcnow()
            return labels

        async with self._write_lock(ds.id):
            return await self.db.run(write)

    @staticmethod
    def _find_label(labels: list[dict], label: str, ds: Dataset) -> int:
        for i, item in enumerate(labels):
            if item["name"] == label:
                return i
        raise APIError(404, f"Dataset {ds.owner}/{ds.name} has no label {label!r}.")

    async def update_label(
        self, caller: dict, owner: str, name: str, label: str, body: dict
    ) -> list[dict]:
        """Change a label's name, color or key; a new name is written into every annotation
        that has the old one."""
        ds = await self.dataset(caller, owner, name, change=True)
        _keys(body, LABEL_KEYS, "A label's change")

        def write(session):
            row = session.get(Dataset, ds.id)
            labels = store.loads(row.labels, [])
            i = self._find_label(labels, label, ds)
            changed = dict(labels[i])
            changed.update({k: v for k, v in body.items() if v is not None})
            new_name = changed["name"]
            if new_name != label and any(item["name"] == new_name for item in labels):
                raise APIError(409, f"Dataset {owner}/{name} has a label {new_name!r} already.")
            labels[i] = changed
            labels = _labels(labels)
            renamed = 0
            if new_name != label:
                rows = session.scalars(
                    select(Sample).where(Sample.dataset_id == ds.id, label_filter(label))
                )
                for sample in rows:
                    annotations = store.loads(sample.annotations, [])
                    for a in annotations:
                        if a.get("label") == label:
                            a["label"] = new_name
                    sample.annotations = dumps(annotations)
                    renamed += 1
            row.labels = json.dumps(labels)
            row.updated = utcnow()
            return labels, renamed

        async with self._write_lock(ds.id):
            labels, renamed = await self.db.run(write)
        if renamed:
            log.info("%s/%s: label %r renamed in %d samples", owner, name, label, renamed)
        return labels

    async def delete_label(
        self, caller: dict, owner: str, name: str, label: str, force: bool = False
    ) -> list[dict]:
        """Remove a label from the set; 409 while annotations use it, unless force (then
        those annotations go, and samples left with none are unlabelled again)."""
        ds = await self.dataset(caller, owner, name, change=True)

        def write(session):
            row = session.get(Dataset, ds.id)
            labels = store.loads(row.labels, [])
            i = self._find_label(labels, label, ds)
            q = select(Sample).where(Sample.dataset_id == ds.id, label_filter(label))
            if not force:
                used = session.scalar(select(func.count()).select_from(q.subquery()))
                if used:
                    raise APIError(
                        409,
                        f"Label {label!r} is used by {used} samples: relabel them, or delete "
                        "it with ?force=1 to remove those annotations too.",
                    )
            now = utcnow()
            for sample in session.scalars(q):
                annotations = [
                    a for a in store.loads(sample.annotations, []) if a.get("label") != label
                ]
                sample.annotations = dumps(annotations)
                sample.confidence = lowest_confidence(annotations)
                if not annotations:
                    sample.status = UNLABELLED
                    sample.confidence = None
                sample.updated = now
            del labels[i]
            row.labels = json.dumps(labels)
            row.updated = now
            return labels

        async with self._write_lock(ds.id):
            return await self.db.run(write)

    # --- reading samples ---------------------------------------------------------------------
    async def samples(self, caller: dict, owner: str, name: str, query: dict) -> dict:
        """A page of samples in id order: {"samples", "next" (the `after` of the next page,
        None at the end), "total" (with_total only)}."""
        ds = await self.dataset(caller, owner, name)
        where = [Sample.dataset_id == ds.id]
        status = query.get("status") or ""
        if status:
            if status not in SAMPLE_STATUSES:
                raise APIError(400, f"status must be one of {', '.join(SAMPLE_STATUSES)}.")
            where.append(Sample.status == status)
        review = query.get("review") or ""
        if review:
            if review not in (*REVIEW_STATES[1:], "none"):
                states = ", ".join((*REVIEW_STATES[1:], "none"))
                raise APIError(400, f"review must be one of {states}.")
            where.append(Sample.review == ("" if review == "none" else review))
        if query.get("label"):
            where.append(label_filter(query["label"]))
        if query.get("assignee"):
            where.append(Sample.assignee == query["assignee"])
        if query.get("task"):
            where.append(Sample.task_id == await self._task_id(ds, query["task"]))
        by = query.get("annotated_by") or ""
        if by == "model":
            where.append(Sample.annotated_by.like("model:%"))
        elif by:
            where.append(Sample.annotated_by == by)
        after = _integer(query.get("after"), "after", 0, 2**62, 0)
        limit = _integer(query.get("limit"), "limit", 1, MAX_PAGE, DEFAULT_PAGE)
        with_total = query.get("with_total") in ("1", "true")

        def read(session):
            q = select(Sample).where(*where, Sample.id > after).order_by(Sample.id)
            rows = list(session.scalars(q.limit(limit + 1)))
            total = None
            if with_total:
                total = session.scalar(select(func.count()).select_from(Sample).where(*where))
            return rows, total

        rows, total = await self.db.run(read)
        more = len(rows) > limit
        rows = rows[:limit]
        page = {
            "samples": await self.sample_models(ds, rows),
            "next": rows[-1].id if more else None,
        }
        if with_total:
            page["total"] = total
        return page

    async def _task_id(self, ds: Dataset, ref: str) -> int:
        def read(session):
            q = select(LabellingTask.id).where(LabellingTask.dataset_id == ds.id)
            found = session.scalar(q.where(LabellingTask.name == ref))
            if found is None and ref.isascii() and ref.isdigit() and len(ref) < 10:
                found = session.scalar(q.where(LabellingTask.id == int(ref)))
            return found

        found = await self.db.run(read)
        if found is None:
            raise APIError(404, f"Dataset {ds.owner}/{ds.name} has no labelling task {ref!r}.")
        return found

    async def sample_models(self, ds: Dataset, rows: list[Sample]) -> list[dict]:
        """The samples' JSON, text samples with their texts."""
        if ds.type in IMAGE_TYPES or not rows:
            return [sample_model(ds, r) for r in rows]
        texts = await asyncio.to_thread(self._texts, [r.sha256 for r in rows])
        return [sample_model(ds, r, texts.get(r.sha256)) for r in rows]

    def _texts(self, shas: list[str]) -> dict[str, str | None]:
        limit = int(self.settings.max_text_kib) * 1024
        out: dict[str, str | None] = {}
        for sha in shas:
            if sha in out:
                continue
            try:
                out[sha] = self.blobs.read_blocking(sha, limit).decode("utf-8", "replace")
            except (BlobError, OSError):
                out[sha] = None
        return out

    async def _sample(self, ds: Dataset, sample_id: int) -> Sample:
        row = await self.db.run(lambda s: s.get(Sample, sample_id))
        if row is None or row.dataset_id != ds.id:
            raise APIError(404, f"Dataset {ds.owner}/{ds.name} has no sample {sample_id}.")
        return row

    async def sample(self, caller: dict, owner: str, name: str, sample_id: int) -> dict:
        ds = await self.dataset(caller, owner, name)
        (model,) = await self.sample_models(ds, [await self._sample(ds, sample_id)])
        return model

    async def content(self, caller: dict, owner: str, name: str, sample_id: int):
        """(the sample's row, its file opened for reading)."""
        ds = await self.dataset(caller, owner, name)
        row = await self._sample(ds, sample_id)
        try:
            return row, await self.blobs.open(row.sha256)
        except (BlobError, OSError):
            raise APIError(
                409, f"The file of sample {sample_id} is missing from the store: upload it again."
            ) from None

    async def stats(self, caller: dict, owner: str, name: str) -> dict:
        ds = await self.dataset(caller, owner, name)

        def read(session):
            row = session.get(Dataset, ds.id)
            if row is None:
                raise APIError(404, f"No dataset {name!r} of user {owner!r}.")
            return stats_of(session, row)

        return await self.db.run(read)

    # --- annotating ---------------------------------------------------------------------------
    def _check(self, ds: Dataset, labels, row: Sample, annotations, by: str, now) -> list[dict]:
        """Annotations checked against the sample (blocking: a text is read from the store)."""
        sample_text = None
        if ds.type not in IMAGE_TYPES:
            try:
                sample_text = self.blobs.read_blocking(row.sha256).decode("utf-8")
            except (BlobError, OSError, UnicodeDecodeError):
                sample_text = None
        try:
            return check_annotations(
                ds.type,
                labels,
                annotations,
                width=row.width,
                height=row.height,
                text=sample_text,
                multi_label=bool(ds.multi_label),
                annotated_by=by,
                now=now,
            )
        except AnnotationError as e:
            raise APIError(400, f"Sample {row.id}: {e}") from None

    async def annotate(self, caller: dict, ds: Dataset, sample_id: int, annotations) -> dict:
        """Set a sample's annotations as the caller's: the sample (labelled; [] unlabelled)."""
        (model,) = await self._annotate(caller, ds, [(sample_id, annotations)])
        return model

    async def annotate_one(
        self, caller: dict, owner: str, name: str, sample_id: int, body: dict
    ) -> dict:
        ds = await self.dataset(caller, owner, name)
        _keys(body, ("annotations",), "Annotating a sample")
        if not isinstance(body.get("annotations"), list):
            raise APIError(400, 'Send {"annotations": [{"label": ...}, ...]} ([] for none).')
        return await self.annotate(caller, ds, sample_id, body["annotations"])

    async def annotate_many(self, caller: dict, owner: str, name: str, body: dict) -> dict:
        ds = await self.dataset(caller, owner, name)
        _keys(body, ("samples",), "Annotating samples")
        items = body.get("samples")
        if not isinstance(items, list) or not 0 < len(items) <= MAX_BULK:
            raise APIError(
                400,
                f'Send {{"samples": [{{"id": 3, "annotations": [...]}}, ...]}} with 1 to '
                f"{MAX_BULK} samples.",
            )
        pairs = []
        for item in items:
            if (
                not isinstance(item, dict)
                or set(item) - {"id", "annotations"}
                or not isinstance(item.get("id"), int)
                or isinstance(item.get("id"), bool)
                or not isinstance(item.get("annotations"), list)
            ):
                raise APIError(400, 'Each sample is {"id": <sample id>, "annotations": [...]}.')
            pairs.append((item["id"], item["annotations"]))
        if len({i for i, _ in pairs}) != len(pairs):
            raise APIError(400, "A sample is given twice: give each sample once.")
        return {"samples": await self._annotate(caller, ds, pairs)}

    async def _annotate(self, caller: dict, ds: Dataset, pairs: list[tuple[int, list]]) -> list:
        """Write (sample id, annotations) pairs as the caller's, all or none."""
        roles = await self._labeller_roles(caller, ds)
        by = caller["name"]
        ids = [i for i, _ in pairs]

        def read(session):
            current = session.get(Dataset, ds.id)
            rows = {}
            for chunk in _chunks(ids):
                rows.update(
                    {r.id: r for r in session.scalars(select(Sample).where(Sample.id.in_(chunk)))}
                )
            return current, rows

        async with self._write_lock(ds.id):
            current, rows = await self.db.run(read)
            if current is None:
                raise APIError(404, f"No dataset {ds.name!r} of user {ds.owner!r}.")
            labels = store.loads(current.labels, [])
            now = utcnow()
            for sample_id, _ in pairs:
                row = rows.get(sample_id)
                if row is None or row.dataset_id != ds.id:
                    raise APIError(404, f"Dataset {ds.owner}/{ds.name} has no sample {sample_id}.")
                self._label_check(roles, caller, row)

            def check_all():
                return [
                    (i, self._check(current, labels, rows[i], annotations, by, now))
                    for i, annotations in pairs
                ]

            checked = await asyncio.to_thread(check_all)

            def write(session):
                out = []
                for sample_id, annotations in checked:
                    row = session.get(Sample, sample_id)
                    if row is None:
                        raise APIError(409, f"Sample {sample_id} was deleted meanwhile.")
                    row.annotations = dumps(annotations)
                    row.status = LABELLED if annotations else UNLABELLED
                    row.annotated_by = by if annotations else ""
                    row.confidence = None
                    row.updated = now
                    _after_annotate(current, row, session)
                    out.append(row)
                session.flush()
                return out

            written = await self.db.run(write)
        return await self.sample_models(current, written)

    async def accept(self, caller: dict, owner: str, name: str, body: dict) -> dict:
        """Pre-labels become labels: those of the samples named, or all at or above a
        confidence (a labeller's: those assigned to them). {"accepted": n}."""
        ds = await self.dataset(caller, owner, name)
        _keys(body, ("ids", "min_confidence"), "Accepting pre-labels")
        roles = await self._labeller_roles(caller, ds)
        if ("ids" in body) == ("min_confidence" in body):
            raise APIError(
                400, 'Send {"ids": [3, 4]} or {"min_confidence": 0.9}: which pre-labels to accept.'
            )
        where = [Sample.dataset_id == ds.id, Sample.status == PRELABELLED]
        ids = None
        if "ids" in body:
            ids = _ids(body["ids"])
        else:
            value = body["min_confidence"]
            if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= 1:
                raise APIError(400, "min_confidence must be a number from 0 to 1.")
            where.append(Sample.confidence >= value)
            if MEMBER in roles and OWNER not in roles:
                where.append(or_(Sample.assignee == "", Sample.assignee == caller["name"]))
            elif OWNER not in roles:
                where.append(Sample.assignee == caller["name"])

        def write(session):
            current = session.get(Dataset, ds.id)
            if ids is None:
                rows = list(session.scalars(select(Sample).where(*where)))
            else:
                rows = []
                for chunk in _chunks(ids):
                    rows += session.scalars(select(Sample).where(*where, Sample.id.in_(chunk)))
            now = utcnow()
            for row in rows:
                self._label_check(roles, caller, row)
                row.status = LABELLED
                row.annotated_by = caller["name"]
                row.updated = now
                _after_annotate(current, row, session)
            return len(rows)

        async with self._write_lock(ds.id):
            return {"accepted": await self.db.run(write)}

    async def write_prelabels(
        self, ds: Dataset, items: list[tuple[int, list, float | None, str]], threshold: float
    ) -> int:
        """A model's annotations of samples (sample id, annotations, lowest confidence,
        "model:..."): pre-labels, or labels where the confidence is at least threshold.
        Samples a person labelled meanwhile, or deleted, are left alone. The number that
        became labels."""
        if not items:
            return 0

        def read(session):
            current = session.get(Dataset, ds.id)
            rows = {}
            for chunk in _chunks([i[0] for i in items]):
                rows.update(
                    {r.id: r for r in session.scalars(select(Sample).where(Sample.id.in_(chunk)))}
                )
            return current, rows

        async with self._write_lock(ds.id):
            current, rows = await self.db.run(read)
            if current is None:
                return 0
            labels = store.loads(current.labels, [])
            now = utcnow()

            def check_all():
                out = []
                for sample_id, annotations, confidence, by in items:
                    row = rows.get(sample_id)
                    if row is None or row.dataset_id != ds.id or row.status == LABELLED:
                        continue
                    try:
                        checked = self._check(current, labels, row, annotations, by, now)
                    except APIError as e:
                        log.info("pre-labels of %s dropped: %s", row.key, e.message)
                        continue
                    if checked:
                        out.append((sample_id, checked, confidence, by))
                return out

            checked = await asyncio.to_thread(check_all)

            def write(session):
                accepted = 0
                for sample_id, annotations, confidence, by in checked:
                    row = session.get(Sample, sample_id)
                    if row is None or row.status == LABELLED:
                        continue
                    confident = confidence is not None and confidence >= threshold
                    row.annotations = dumps(annotations)
                    row.status = LABELLED if confident else PRELABELLED
                    row.annotated_by = by
                    row.confidence = confidence
                    row.updated = now
                    accepted += confident
                return accepted

            return await self.db.run(write)

    async def delete_samples(self, caller: dict, owner: str, name: str, body: dict) -> dict:
        ds = await self.dataset(caller, owner, name, change=True)
        _keys(body, ("ids",), "Deleting samples")
        ids = _ids(body.get("ids"))

        def remove(session):
            shas = set()
            deleted = 0
            for chunk in _chunks(ids):
                where = [Sample.dataset_id == ds.id, Sample.id.in_(chunk)]
                shas |= set(session.scalars(select(Sample.sha256).where(*where)))
                deleted += session.execute(delete(Sample).where(*where)).rowcount or 0
            row = session.get(Dataset, ds.id)
            row.size = dataset_size(session, ds.id)
            row.updated = utcnow()
            left = session.scalar(select(func.count()).where(Sample.dataset_id == ds.id))
            return deleted, left, shas

        async with self._write_lock(ds.id):
            deleted, left, shas = await self.db.run(remove)
        await asyncio.to_thread(self._collect, shas)
        return {"deleted": deleted, "samples": left}

    # --- uploads and imports ------------------------------------------------------------------
    def staging(self, writable_by_containers: bool = False) -> Path:
        """A new empty folder for what a request brings (blocking)."""
        base = self.data_root / STAGING
        base.mkdir(parents=True, exist_ok=True)
        os.chmod(base, 0o711)
        path = base / secrets.token_hex(8)
        path.mkdir(mode=0o700)
        if writable_by_containers:
            os.chmod(path, 0o777)
        return path

    @staticmethod
    def discard(path: Path | None) -> None:
        if path is not None:
            _remove_tree(path)

    async def upload(
        self,
        caller: dict,
        owner: str,
        name: str,
        body: Path,
        content_type: str | None,
        key: str | None,
    ) -> dict:
        """Add the file at `body` (under `key`) or the files of an archive (under their paths,
        below `key` when given): {"added", "replaced", "unchanged", "samples"}. A key that is
        there already with other content gets the new file, and loses its annotations."""
        ds = await self.dataset(caller, owner, name, change=True)
        kind = archive_kind(content_type)
        try:
            if kind is not None:
                prefix = check_key(key, "key") if key else ""
                folder = body.parent / "files"
                digests = await asyncio.to_thread(
                    unpack,
                    body,
                    kind,
                    folder,
                    max_bytes=self.max_dataset_bytes,
                    max_files=int(self.settings.max_samples),
                )
                entries = [
                    {
                        "key": f"{prefix}/{k}" if prefix else k,
                        "path": folder / k,
                        "move": True,
                        "digest": digest,
                    }
                    for k, digest in digests.items()
                ]
            elif not key:
                raise UploadError(
                    "Name the file with ?key=<its path in the dataset> (for example "
                    "?key=images/cat-1.jpg), or send a zip or tar archive with Content-Type "
                    "application/zip, application/x-tar or application/gzip."
                )
            else:
                entries = [{"key": check_key(key), "path": body, "move": True}]
            suffixes = accepted_suffixes(ds.type)
            for entry in entries:
                if not entry["key"].lower().endswith(suffixes):
                    raise UploadError(
                        f"Sample {entry['key']!r}: a {ds.type} dataset takes "
                        f"{', '.join(suffixes)} files. Files with annotations are imported with "
                        "POST .../import?format=<modelarts, coco, voc, yolo, csv or jsonl>."
                    )
        except UploadError as e:
            raise APIError(400, str(e)) from None
        result = await self._add(caller, ds, entries, [], replace_annotations=False)
        log.info(
            "%s uploaded to %s/%s: %d added, %d replaced, %d unchanged",
            caller["name"],
            owner,
            name,
            result["added"],
            result["replaced"],
            result["unchanged"],
        )
        return result

    async def import_samples(
        self,
        caller: dict,
        owner: str,
        name: str,
        fmt: str | None,
        *,
        body: Path | None = None,
        content_type: str | None = None,
        source: dict | None = None,
    ) -> dict:
        """Add samples with their annotations in format fmt, from an archive (body) or from
        an instance's storage (source {"instance", "path"}): {"added", "annotated",
        "samples"} (and "replaced", "unchanged", "labels": the labels added)."""
        from .formats import FORMATS, FormatError, read

        ds = await self.dataset(caller, owner, name, change=True)
        if fmt not in FORMATS:
            raise APIError(400, f"Unknown format {fmt!r}: use one of {', '.join(FORMATS)}.")
        staging = None
        try:
            if source is not None:
                staging = await asyncio.to_thread(self.staging, True)
                folder = staging / "files"
                await self._copy_from_instance(caller["name"], source, staging, folder)
            else:
                kind = archive_kind(content_type)
                if kind is None:
                    raise UploadError(
                        "Send the files and annotations as a zip or tar archive (Content-Type "
                        "application/zip, application/x-tar or application/gzip), or JSON "
                        '{"format": ..., "source": {"instance": "nb", "path": "data/coco"}}.'
                    )
                folder = body.parent / "files"
                await asyncio.to_thread(
                    unpack,
                    body,
                    kind,
                    folder,
                    max_bytes=self.max_dataset_bytes,
                    max_files=int(self.settings.max_samples) + 10_000,
                )
            imported = await asyncio.to_thread(read, fmt, folder, ds.type)
            if not imported.samples:
                raise UploadError(f"The files hold no samples in the {fmt} format.")
            entries = []
            for sample in imported.samples:
                entry = {
                    "key": check_key(sample.get("key")),
                    "annotations": sample.get("annotations") or [],
                }
                if sample.get("text") is not None:
                    entry["text"] = sample["text"]
                else:
                    entry["path"] = folder
                    entry["below"] = True
                entries.append(entry)
            names = [n if isinstance(n, str) else n.get("name") for n in imported.labels]
            return await self._add(caller, ds, entries, names, replace_annotations=True)
        except (UploadError, FormatError) as e:
            raise APIError(400, str(e)) from None
        finally:
            if staging is not None:
                await asyncio.to_thread(self.discard, staging)

    async def _copy_from_instance(self, owner: str, source: dict, staging: Path, folder: Path):
        """Copy a folder of one of the owner's instances' storage into folder (checked: no
        links, devices, pipes)."""
        from inference_bridge.storage_copy import StorageCopyError
        from training_bridge.files import FilesError, relative_path

        if not isinstance(source, dict) or set(source) - {"instance", "path"}:
            raise UploadError('source must be {"instance": "nb", "path": "data/coco"}.')
        instance, path = source.get("instance"), source.get("path")
        if not isinstance(instance, str) or not instance:
            raise UploadError("source.instance must name one of your instances.")
        try:
            rel = str(relative_path(path, "source.path"))
        except FilesError as e:
            raise UploadError(str(e)) from None
        if self.copier is None:
            raise UploadError(
                "This platform's backend cannot copy from instances' storage: send the files "
                "as an archive instead."
            )
        servers = await self.hub.servers(owner) or {}
        if instance not in servers:
            raise UploadError(f"You have no instance {instance!r} (source.instance).")
        image = await copy_image(self.policy, self.image_checker, owner, servers[instance])
        await asyncio.to_thread(folder.mkdir, 0o777)
        await asyncio.to_thread(os.chmod, folder, 0o777)
        try:
            await self.copier.copy(
                owner,
                instance,
                image,
                rel,
                folder,
                self.max_dataset_bytes,
                too_big="a dataset may hold.",
            )
        except StorageCopyError as e:
            raise UploadError(str(e)) from None

        def own():
            from inference_bridge.model_files import seal

            check_tree(folder)
            seal(folder)

        await asyncio.to_thread(own)

    # the pins of blobs an upload stored and has not written to the database yet
    def _pin(self, sha: str) -> None:
        with self._pin_lock:
            self._pins[sha] += 1

    def _unpin(self, shas: list[str]) -> None:
        with self._pin_lock:
            for sha in shas:
                self._pins[sha] -= 1
                if self._pins[sha] <= 0:
                    del self._pins[sha]

    def _collect(self, shas: Iterable[str]) -> int:
        """Remove the blobs no sample uses and no upload holds (blocking); how many."""
        removed = 0
        for chunk in _chunks(sorted(set(shas))):
            with self._pin_lock:
                free = [s for s in chunk if not self._pins.get(s)]
                if not free:
                    continue
                used = self.db.call(
                    lambda s, free=free: set(
                        s.scalars(select(Sample.sha256).where(Sample.sha256.in_(free)).distinct())
                    )
                )
                for sha in free:
                    if sha not in used and self.blobs.remove_blocking(sha):
                        removed += 1
        return removed

    def _prepare(self, ds: Dataset, labels: list[dict], entries: list[dict], by: str, now, pinned):
        """Check and store the entries' files (blocking): the samples' columns. pinned gets
        each stored blob's SHA-256 as soon as it is known."""

        def pin(sha):
            self._pin(sha)
            pinned.append(sha)

        images = ds.type in IMAGE_TYPES
        max_text = int(self.settings.max_text_kib) * 1024
        max_pixels = int(self.settings.max_image_pixels)
        seen = set()
        out = []
        for entry in entries:
            key = entry["key"]
            if key in seen:
                raise UploadError(f"Sample {key!r} is given twice.")
            seen.add(key)
            width = height = 0
            try:
                if "text" in entry:
                    data = entry["text"].encode("utf-8")
                    sample_text = decode_text(data, max_text)
                    media_type = "text/plain"
                else:
                    path = entry["path"]
                    if entry.get("below"):
                        with open_below(path, key):
                            pass
                        path = path / key
                    if images:
                        media_type, width, height = inspect_image(path, max_pixels)
                        sample_text = None
                    else:
                        with open(path, "rb") as f:
                            sample_text = decode_text(f.read(max_text + 1), max_text)
                        media_type = "text/plain"
                annotations = self._entry_annotations(
                    ds, labels, entry, width, height, sample_text, by, now
                )
                if "text" in entry:
                    sha, size = self.blobs.put_bytes_blocking(data, on_hashed=pin)
                else:
                    sha, size = self.blobs.put_file_blocking(
                        path,
                        move=bool(entry.get("move")),
                        on_hashed=pin,
                        digest=entry.get("digest"),
                    )
            except UploadError as e:
                raise UploadError(f"Sample {key!r} {e}") from None
            out.append(
                {
                    "key": key,
                    "sha256": sha,
                    "size": size,
                    "media_type": media_type,
                    "width": width,
                    "height": height,
                    "annotations": annotations,
                }
            )
        return out

    @staticmethod
    def _entry_annotations(ds, labels, entry, width, height, sample_text, by, now):
        if "annotations" not in entry:
            return None
        try:
            return check_annotations(
                ds.type,
                labels,
                entry["annotations"],
                width=width,
                height=height,
                text=sample_text,
                multi_label=bool(ds.multi_label),
                annotated_by=by,
                now=now,
            )
        except AnnotationError as e:
            raise UploadError(f"has annotations the dataset cannot take: {e}") from None

    async def _add(
        self,
        caller: dict,
        ds: Dataset,
        entries: list[dict],
        new_labels: list[str],
        *,
        replace_annotations: bool,
    ) -> dict:
        """Store the entries' files and write their samples in one transaction (labels the
        import brings added to the set); nothing is kept when anything is refused."""
        by = caller["name"]
        now = utcnow()
        current = await self.db.run(lambda s: s.get(Dataset, ds.id))
        if current is None:
            raise APIError(404, f"No dataset {ds.name!r} of user {ds.owner!r}.")
        labels = store.loads(current.labels, [])
        known = {label["name"] for label in labels}
        missing = [n for n in dict.fromkeys(new_labels) if n and n not in known]
        if missing:
            labels = _labels([*labels, *({"name": n} for n in missing)])
        pinned: list[str] = []
        ok = False
        try:
            try:
                prepared = await asyncio.to_thread(
                    self._prepare, current, labels, entries, by, now, pinned
                )
            except (UploadError, AnnotationError) as e:
                raise APIError(400, str(e)) from None
            async with self._write_lock(ds.id):
                result, released = await self.db.run(
                    lambda s: self._commit(s, ds, prepared, missing, by, now, replace_annotations)
                )
            ok = True
        finally:
            await asyncio.shield(asyncio.to_thread(self._release, pinned, ok))
        if released:
            await asyncio.to_thread(self._collect, released)
        if replace_annotations:
            result["labels"] = missing
        return result

    def _release(self, pinned: list[str], kept: bool) -> None:
        self._unpin(pinned)
        if not kept:
            self._collect(pinned)

    def _commit(self, session, ds, prepared, missing, by, now, replace_annotations):
        """Write the prepared samples, within the limits: (the counts, the files that
        replaced samples held)."""
        row = session.get(Dataset, ds.id)
        if row is None:
            raise APIError(404, f"No dataset {ds.name!r} of user {ds.owner!r}.")
        labels = store.loads(row.labels, [])
        if missing:
            known = {label["name"] for label in labels}
            labels = _labels([*labels, *({"name": n} for n in missing if n not in known)])
            row.labels = json.dumps(labels)
        names = {label["name"] for label in labels}
        for p in prepared:
            for a in p["annotations"] or ():
                if a["label"] not in names:
                    raise APIError(
                        409,
                        f"Label {a['label']!r} was removed while the samples were being "
                        "imported: import them again.",
                    )
        existing: dict[str, Sample] = {}
        keys = [p["key"] for p in prepared]
        for chunk in _chunks(keys):
            q = select(Sample).where(Sample.dataset_id == ds.id, Sample.key.in_(chunk))
            existing.update({s.key: s for s in session.scalars(q)})
        added = replaced = unchanged = annotated = 0
        released = set()  # files replaced samples held
        new_rows = []
        for p in prepared:
            annotations = p["annotations"] or []
            if annotations:
                annotated += 1
            sample = existing.get(p["key"])
            if sample is None:
                added += 1
                new_rows.append(
                    {
                        "dataset_id": ds.id,
                        "key": p["key"],
                        "sha256": p["sha256"],
                        "size": p["size"],
                        "media_type": p["media_type"],
                        "width": p["width"],
                        "height": p["height"],
                        "annotations": dumps(annotations),
                        "status": LABELLED if annotations else UNLABELLED,
                        "annotated_by": by if annotations else "",
                        "confidence": None,
                        "review": "",
                        "review_comment": "",
                        "reviewed_by": "",
                        "task_id": None,
                        "assignee": "",
                        "created": now,
                        "updated": now,
                    }
                )
                continue
            changed = sample.sha256 != p["sha256"]
            if changed:
                replaced += 1
                released.add(sample.sha256)
                for column in ("sha256", "size", "media_type", "width", "height"):
                    setattr(sample, column, p[column])
                sample.annotations = "[]"
                sample.status = UNLABELLED
                sample.annotated_by = ""
                sample.confidence = None
            if replace_annotations and annotations:
                sample.annotations = dumps(annotations)
                sample.status = LABELLED
                sample.annotated_by = by
                sample.confidence = None
            elif not changed:
                unchanged += 1
            sample.updated = now
        if new_rows:
            session.execute(insert(Sample), new_rows)
        session.flush()
        count = session.scalar(select(func.count()).where(Sample.dataset_id == ds.id))
        if count > self.settings.max_samples:
            raise APIError(
                403,
                f"Dataset {ds.owner}/{ds.name} would hold {count} samples, more than the "
                f"{self.settings.max_samples} a dataset may: split the data into several "
                "datasets.",
            )
        size = dataset_size(session, ds.id)
        if size > self.max_dataset_bytes:
            raise APIError(
                403,
                f"Dataset {ds.owner}/{ds.name} would hold {_gib(size)} GiB, over the "
                f"{self.settings.max_dataset_gib:g} GiB a dataset may: delete samples or split "
                "the data into several datasets.",
            )
        others = session.scalar(
            select(func.coalesce(func.sum(Dataset.size), 0)).where(
                Dataset.owner == ds.owner, Dataset.id != ds.id
            )
        )
        if int(others or 0) + size > self.max_user_bytes:
            raise APIError(
                403,
                f"The datasets of {ds.owner} would hold {_gib(int(others or 0) + size)} GiB, "
                f"over the {self.settings.max_user_gib:g} GiB a user's datasets may: delete "
                "datasets or samples you no longer need.",
            )
        row.size = size
        row.updated = now
        return {
            "added": added,
            "replaced": replaced,
            "unchanged": unchanged,
            "annotated": annotated,
            "samples": count,
        }, released

    # --- the service's start and stop ------------------------------------------------------------
    async def start(self) -> None:
        """Staging folders a stop left go; the blob store is cleaned in the background
        (files no sample uses any more: a deleted user's, an interrupted upload's)."""
        await asyncio.to_thread(_remove_tree, self.data_root / STAGING)
        self._cleaning = asyncio.create_task(self._clean())

    async def _clean(self) -> None:
        try:
            removed = await asyncio.to_thread(self.clean_blocking)
            if removed:
                log.info("datasets: %d unused file(s) removed from the store", removed)
        except Exception:  # noqa: BLE001 - the next start tries again
            log.warning("datasets: cleaning the store failed", exc_info=True)

    def clean_blocking(self) -> int:
        """Remove every blob no sample uses (and unfinished copies); how many."""
        self.blobs.clear_temporary_blocking()
        stored = self.blobs.addresses_blocking()
        used = self.db.call(lambda s: set(s.scalars(select(Sample.sha256).distinct())))
        return self._collect(stored - used)

    async def close(self) -> None:
        if self._cleaning is not None and not self._cleaning.done():
            self._cleaning.cancel()
            await asyncio.gather(self._cleaning, return_exceptions=True)
        if self.copier is not None:
            await self.copier.close()


def _field(sample, name: str):
    return sample.get(name) if isinstance(sample, dict) else getattr(sample, name, None)


def _integer(value, what: str, low: int, high: int, default: int) -> int:
    if value in (None, ""):
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = None
    if number is None or not low <= number <= high:
        raise APIError(400, f"{what} must be a whole number from {low} to {high}.")
    return number


def _gib(size: int) -> str:
    return f"{size / 1024**3:.2f}"
