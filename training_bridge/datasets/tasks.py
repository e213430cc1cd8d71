"""Team labelling tasks: samples dealt to labellers, reviewed one by one or by sampling.

A task holds samples of its dataset (each sample is in one task at most), dealt round robin to
its labellers (Sample.task_id and .assignee); a labeller annotates only their own. In a task
with reviewers, a sample a person labels goes to review ("to_review"); a reviewer accepts it
or rejects it with a comment, which sends it back to its labeller, and relabelling puts it up
for review again. Sampling acceptance checks a random share of one labeller's samples waiting
for review and then accepts (or rejects) all of them at once. Deleting a task releases its
samples and keeps their labels.
"""

from __future__ import annotations

import json
import logging
import math
import random
import re

from sqlalchemy import func, select, update
from sqlalchemy.orm import object_session
from workbench.times import isoformat, utcnow

from hub.service.api import APIError

from . import store
from .store import (
    ACCEPTED,
    LABELLED,
    REJECTED,
    RUNNING,
    SAMPLE_STATUSES,
    TO_REVIEW,
    Dataset,
    LabellingTask,
    Sample,
)

log = logging.getLogger("workbench.datasets")

DONE = "done"
TASK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MAX_MEMBERS = 100
MAX_IDS = 100_000
MAX_REVIEWS = 1000
MAX_COMMENT = 2000
DESCRIPTION_CHARS = 1024
CHUNK = 500  # ids per UPDATE ... WHERE id IN (...)
TASK_FIELDS = ("name", "description", "labellers", "reviewers", "samples")


def after_annotate(ds: Dataset, row: Sample, session=None) -> None:
    """A person wrote a sample's annotations (row: in the transaction that writes them, its
    status already set): in a task with reviewers a labelled sample goes (back) to review; a
    cleared one leaves it."""
    if row.task_id is None:
        return
    if row.status != LABELLED:
        if row.review == TO_REVIEW:
            row.review = ""
        return
    session = session or object_session(row)
    task = session.get(LabellingTask, row.task_id) if session is not None else None
    if task is not None and store.loads(task.reviewers, []):
        row.review = TO_REVIEW


def _progress(session, task: LabellingTask) -> tuple[dict, int, bool]:
    """({member: counts}, samples in the task, whether all are done)."""
    members = list(dict.fromkeys(store.loads(task.labellers, []) + store.loads(task.reviewers, [])))
    progress = {
        m: {"assigned": 0, "labelled": 0, "to_review": 0, "accepted": 0, "rejected": 0}
        for m in members
    }
    reviewed = {m: 0 for m in members}
    q = (
        select(Sample.assignee, Sample.status, Sample.review, func.count())
        .where(Sample.task_id == task.id)
        .group_by(Sample.assignee, Sample.status, Sample.review)
    )
    total = finished = 0
    has_reviewers = bool(store.loads(task.reviewers, []))
    for assignee, status, review, count in session.execute(q):
        total += count
        if status == LABELLED and (review == ACCEPTED or not has_reviewers):
            finished += count
        counts = progress.setdefault(
            assignee or "",
            {"assigned": 0, "labelled": 0, "to_review": 0, "accepted": 0, "rejected": 0},
        )
        counts["assigned"] += count
        if status == LABELLED:
            counts["labelled"] += count
        if review in (TO_REVIEW, ACCEPTED, REJECTED):
            counts[review] += count
    q = (
        select(Sample.reviewed_by, func.count())
        .where(Sample.task_id == task.id, Sample.review.in_((ACCEPTED, REJECTED)))
        .group_by(Sample.reviewed_by)
    )
    for who, count in session.execute(q):
        if who in reviewed:
            reviewed[who] += count
    for m in members:
        progress[m]["reviewed"] = reviewed[m]
    progress.pop("", None)
    return progress, total, bool(total) and finished == total


def task_model(ds: Dataset, task: LabellingTask, session) -> dict:
    """The API's JSON of a task, with its progress per member."""
    progress, total, done = _progress(session, task)
    return {
        "id": task.id,
        "name": task.name,
        "dataset": f"{ds.owner}/{ds.name}",
        "description": task.description,
        "labellers": store.loads(task.labellers, []),
        "reviewers": store.loads(task.reviewers, []),
        "state": DONE if done else task.state,
        "samples": total,
        "progress": progress,
        "sampling": store.loads(task.sampling, {}),
        "created_by": task.created_by,
        "created": isoformat(task.created),
        "updated": isoformat(task.updated),
    }


def _sample_id(value) -> bool:
    """Whether value can be a sample's id (a whole number the database can hold)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**62


def _chunks(ids: list[int]):
    for i in range(0, len(ids), CHUNK):
        yield ids[i : i + CHUNK]


def _deal(session, task_id: int, ids: list[int], labellers: list[str]) -> None:
    """Give samples (in id order) to the labellers round robin."""
    shares: dict[str, list[int]] = {m: [] for m in labellers}
    for i, sample_id in enumerate(sorted(ids)):
        shares[labellers[i % len(labellers)]].append(sample_id)
    for member, share in shares.items():
        for chunk in _chunks(share):
            session.execute(
                update(Sample)
                .where(Sample.id.in_(chunk))
                .values(task_id=task_id, assignee=member, updated=utcnow())
            )


class TaskService:
    """Labelling tasks of datasets: the API's operations.

    datasets: the DatasetService (database, access checks, sample JSON); hub: JupyterHub's
    API (whether a user exists: anyone may be a member of a default-workspace dataset's task;
    None: not asked).
    """

    after_annotate = staticmethod(after_annotate)

    def __init__(self, datasets, hub=None):
        self.datasets = datasets
        self.db = datasets.db
        self.hub = hub

    # --- looking up ---------------------------------------------------------------------
    async def _task(self, ds: Dataset, ref: str) -> LabellingTask:
        """A task of the dataset by name (or id)."""

        def read(session):
            q = select(LabellingTask).where(LabellingTask.dataset_id == ds.id)
            found = session.scalar(q.where(LabellingTask.name == ref))
            if found is None and ref.isascii() and ref.isdigit() and len(ref) < 10:
                found = session.scalar(q.where(LabellingTask.id == int(ref)))
            return found

        task = await self.db.run(read)
        if task is None:
            raise APIError(404, f"Dataset {ds.owner}/{ds.name} has no labelling task {ref!r}.")
        return task

    async def _model(self, ds: Dataset, task_id: int) -> dict:
        def read(session):
            task = session.get(LabellingTask, task_id)
            return task_model(ds, task, session)

        return await self.db.run(read)

    @staticmethod
    def _may_review(caller: dict, ds: Dataset, task: LabellingTask) -> None:
        if caller.get("admin") or caller["name"] == ds.owner:
            return
        if caller["name"] in store.loads(task.reviewers, []):
            return
        reviewers = ", ".join(store.loads(task.reviewers, [])) or "none"
        raise APIError(
            403,
            f"Only the reviewers of task {task.name!r} ({reviewers}) and the owner of dataset "
            f"{ds.owner}/{ds.name} may review its samples.",
        )

    async def _is_member(self, ds: Dataset, user: str) -> bool:
        """Whether a user may work on the dataset's tasks: its owner, or a member of its
        workspace (everyone is a member of "default")."""
        if user == ds.owner:
            return True
        if ds.workspace == "default":
            if self.hub is None:
                return True
            try:
                return await self.hub.user(user) is not None
            except Exception:  # noqa: BLE001 - a name JupyterHub refuses is no user of it
                log.info("cannot look up user %r in the hub", user, exc_info=True)
                return False

        def member(session):
            from features.workspaces.store import is_member

            return is_member(session, user, ds.workspace)

        try:
            return await self.db.run(member)
        except Exception:  # noqa: BLE001 - no workspaces table: the default one only
            return False

    async def _members(self, ds: Dataset, value, field: str, required: bool) -> list[str]:
        if value is None:
            value = []
        if (
            not isinstance(value, list)
            or len(value) > MAX_MEMBERS
            or not all(isinstance(v, str) and 0 < len(v) <= 255 for v in value)
        ):
            raise APIError(400, f"{field} must be a list of at most {MAX_MEMBERS} user names.")
        members = list(dict.fromkeys(value))
        if required and not members:
            raise APIError(400, f"A task needs at least one of its {field}.")
        strangers = [m for m in members if not await self._is_member(ds, m)]
        if strangers:
            where = (
                "users of this platform"
                if ds.workspace == "default"
                else f"members of workspace {ds.workspace!r}"
            )
            raise APIError(
                400,
                f"{field}: {', '.join(strangers)} cannot work on dataset {ds.owner}/{ds.name}: "
                f"its tasks' members are its owner and {where}.",
            )
        return members

    @staticmethod
    def _selection(value) -> tuple[str | None, list[int] | None]:
        """(status, ids) of the samples a task takes: {"status": "unlabelled"} (the default)
        or {"ids": [...]}."""
        if value is None:
            return "unlabelled", None
        if not isinstance(value, dict) or len(value) != 1 or not set(value) & {"status", "ids"}:
            raise APIError(
                400,
                'samples must be {"status": "unlabelled"} (or another status) or {"ids": [...]}.',
            )
        if "status" in value:
            status = value["status"]
            if status not in SAMPLE_STATUSES:
                raise APIError(400, f"samples.status must be one of {', '.join(SAMPLE_STATUSES)}.")
            return status, None
        ids = value["ids"]
        if (
            not isinstance(ids, list)
            or not 0 < len(ids) <= MAX_IDS
            or not all(_sample_id(i) for i in ids)
        ):
            raise APIError(400, f"samples.ids must be a list of 1 to {MAX_IDS} sample ids.")
        return None, list(dict.fromkeys(ids))

    @staticmethod
    def _pick(session, ds: Dataset, status, ids, task_id: int | None) -> list[int]:
        """The ids of the samples a selection names, free of other tasks; APIError when ids
        name samples of no such dataset or held by another task."""
        if ids is None:
            q = select(Sample.id).where(
                Sample.dataset_id == ds.id, Sample.task_id.is_(None), Sample.status == status
            )
            return list(session.scalars(q))
        found: dict[int, int | None] = {}
        for chunk in _chunks(ids):
            q = select(Sample.id, Sample.task_id).where(
                Sample.dataset_id == ds.id, Sample.id.in_(chunk)
            )
            found.update(dict(session.execute(q).all()))
        missing = [i for i in ids if i not in found]
        if missing:
            raise APIError(
                404,
                f"Dataset {ds.owner}/{ds.name} has no sample {missing[0]}"
                + (f" (nor {len(missing) - 1} more)" if len(missing) > 1 else "")
                + ".",
            )
        held = [i for i in ids if found[i] is not None and found[i] != task_id]
        if held:
            raise APIError(
                409,
                f"Sample {held[0]}"
                + (f" and {len(held) - 1} more" if len(held) > 1 else "")
                + " already belong to another task: delete that task or leave them out.",
            )
        return [i for i in ids if found[i] is None]

    # --- the API's operations -----------------------------------------------------------
    async def list(self, caller: dict, owner: str, name: str) -> list[dict]:
        ds = await self.datasets.dataset(caller, owner, name)

        def read(session):
            q = (
                select(LabellingTask)
                .where(LabellingTask.dataset_id == ds.id)
                .order_by(LabellingTask.id)
            )
            return [task_model(ds, t, session) for t in session.scalars(q)]

        return await self.db.run(read)

    async def get(self, caller: dict, owner: str, name: str, ref: str) -> dict:
        ds = await self.datasets.dataset(caller, owner, name)
        task = await self._task(ds, ref)
        return await self._model(ds, task.id)

    async def create(self, caller: dict, owner: str, name: str, body: dict) -> dict:
        """A task over samples of the dataset, dealt to its labellers round robin."""
        ds = await self.datasets.dataset(caller, owner, name, change=True)
        unknown = set(body) - set(TASK_FIELDS)
        if unknown:
            raise APIError(
                400,
                f"A task has {', '.join(TASK_FIELDS)}; not {', '.join(sorted(map(str, unknown)))}.",
            )
        task_name = body.get("name")
        if not isinstance(task_name, str) or not TASK_NAME.match(task_name):
            raise APIError(
                400,
                "A task needs a name of 1 to 64 letters, digits, '.', '_' and '-' (starting "
                "with a letter or digit), for example 'batch-1'.",
            )
        description = self._description(body.get("description", ""))
        labellers = await self._members(ds, body.get("labellers"), "labellers", True)
        reviewers = await self._members(ds, body.get("reviewers"), "reviewers", False)
        status, ids = self._selection(body.get("samples"))

        def insert(session):
            q = select(LabellingTask).where(
                LabellingTask.dataset_id == ds.id, LabellingTask.name == task_name
            )
            if session.scalar(q) is not None:
                raise APIError(
                    409,
                    f"Dataset {ds.owner}/{ds.name} already has a task named {task_name!r}; "
                    "pick another name.",
                )
            picked = self._pick(session, ds, status, ids, None)
            if not picked:
                raise APIError(
                    409,
                    f"No {status or 'given'} sample of dataset {ds.owner}/{ds.name} is free of "
                    "other tasks: upload samples, or name others.",
                )
            task = LabellingTask(
                dataset_id=ds.id,
                name=task_name,
                description=description,
                created_by=caller["name"],
                labellers=json.dumps(labellers),
                reviewers=json.dumps(reviewers),
                state=RUNNING,
                sampling="{}",
            )
            session.add(task)
            session.flush()
            _deal(session, task.id, picked, labellers)
            return task.id, len(picked)

        task_id, count = await self.db.run(insert)
        log.info(
            "%s created labelling task %s of dataset %s/%s: %d samples for %s",
            caller["name"],
            task_name,
            ds.owner,
            ds.name,
            count,
            ", ".join(labellers),
        )
        return await self._model(ds, task_id)

    @staticmethod
    def _description(value) -> str:
        if not isinstance(value, str) or len(value) > DESCRIPTION_CHARS:
            raise APIError(
                400, f"description must be text of at most {DESCRIPTION_CHARS} characters."
            )
        return value

    async def update(self, caller: dict, owner: str, name: str, ref: str, body: dict) -> dict:
        """Change a task's description, labellers and reviewers, or add samples to it: the
        samples of labellers who leave, and those added, are dealt to its labellers."""
        ds = await self.datasets.dataset(caller, owner, name, change=True)
        task = await self._task(ds, ref)
        unknown = set(body) - {"description", "labellers", "reviewers", "samples"}
        if unknown:
            raise APIError(
                400,
                "A task's description, labellers, reviewers and samples (added) can change; "
                f"not {', '.join(sorted(map(str, unknown)))}.",
            )
        changes = {}
        if "description" in body:
            changes["description"] = self._description(body["description"])
        labellers = store.loads(task.labellers, [])
        reviewers = store.loads(task.reviewers, [])
        if "labellers" in body:
            labellers = await self._members(ds, body["labellers"], "labellers", True)
        if "reviewers" in body:
            reviewers = await self._members(ds, body["reviewers"], "reviewers", False)
        selection = self._selection(body["samples"]) if "samples" in body else None

        def write(session):
            current = session.get(LabellingTask, task.id)
            gone = [m for m in store.loads(current.labellers, []) if m not in labellers]
            redeal = []
            if gone:
                q = select(Sample.id).where(Sample.task_id == current.id, Sample.assignee.in_(gone))
                redeal = list(session.scalars(q))
            added = []
            if selection is not None:
                added = self._pick(session, ds, *selection, current.id)
            _deal(session, current.id, redeal + added, labellers)
            if not reviewers:  # nobody reviews any more: nothing waits for review
                session.execute(
                    update(Sample)
                    .where(Sample.task_id == current.id, Sample.review == TO_REVIEW)
                    .values(review="")
                )
            sampling = store.loads(current.sampling, {})
            for m in gone:
                sampling.pop(m, None)
            current.sampling = json.dumps(sampling)
            current.labellers = json.dumps(labellers)
            current.reviewers = json.dumps(reviewers)
            for key, value in changes.items():
                setattr(current, key, value)
            current.updated = utcnow()
            return task_model(ds, current, session)

        return await self.db.run(write)

    async def delete(self, caller: dict, owner: str, name: str, ref: str) -> None:
        """Delete a task: its samples are released (no task, no assignee), their labels and
        past reviews kept."""
        ds = await self.datasets.dataset(caller, owner, name, change=True)
        task = await self._task(ds, ref)

        def remove(session):
            session.execute(
                update(Sample)
                .where(Sample.task_id == task.id, Sample.review == TO_REVIEW)
                .values(review="")
            )
            session.execute(
                update(Sample).where(Sample.task_id == task.id).values(task_id=None, assignee="")
            )
            current = session.get(LabellingTask, task.id)
            if current is not None:
                session.delete(current)

        await self.db.run(remove)
        log.info("%s deleted labelling task %s of %s/%s", caller["name"], task.name, owner, name)

    # --- reviewing ----------------------------------------------------------------------
    async def review(self, caller: dict, owner: str, name: str, ref: str, body: dict) -> dict:
        """Accept or reject samples of the task (rejected ones go back to their labeller with
        the comment): {"samples": [the samples' JSON]}."""
        ds = await self.datasets.dataset(caller, owner, name)
        task = await self._task(ds, ref)
        self._may_review(caller, ds, task)
        items = body.get("samples")
        if (
            set(body) - {"samples"}
            or not isinstance(items, list)
            or not 0 < len(items) <= MAX_REVIEWS
        ):
            raise APIError(
                400,
                f'A review is {{"samples": [{{"id", "accepted": true|false, "comment"}}]}}, '
                f"1 to {MAX_REVIEWS} samples.",
            )
        decisions: dict[int, tuple[bool, str]] = {}
        for item in items:
            if (
                not isinstance(item, dict)
                or set(item) - {"id", "accepted", "comment"}
                or not _sample_id(item.get("id"))
                or not isinstance(item.get("accepted"), bool)
            ):
                raise APIError(
                    400,
                    'Each reviewed sample is {"id": <sample id>, "accepted": true|false, '
                    '"comment": "..."}.',
                )
            comment = item.get("comment", "")
            if not isinstance(comment, str) or len(comment) > MAX_COMMENT:
                raise APIError(400, f"A comment is text of at most {MAX_COMMENT} characters.")
            decisions[item["id"]] = (item["accepted"], comment)

        def write(session):
            ids = list(decisions)
            rows = {r.id: r for r in session.scalars(select(Sample).where(Sample.id.in_(ids)))}
            for sample_id in ids:
                row = rows.get(sample_id)
                if row is None or row.dataset_id != ds.id:
                    raise APIError(404, f"Dataset {ds.owner}/{ds.name} has no sample {sample_id}.")
                if row.task_id != task.id:
                    raise APIError(
                        409, f"Sample {sample_id} is not in task {task.name!r}: review it there."
                    )
                if row.status != LABELLED:
                    raise APIError(
                        409,
                        f"Sample {sample_id} is {row.status}, not labelled by its labeller "
                        f"{row.assignee or '(none)'} yet: there is nothing to review.",
                    )
            now = utcnow()
            out = []
            for sample_id in ids:
                row = rows[sample_id]
                accepted, comment = decisions[sample_id]
                row.review = ACCEPTED if accepted else REJECTED
                row.review_comment = comment
                row.reviewed_by = caller["name"]
                row.updated = now
                out.append(row)
            session.flush()
            return out

        rows = await self.db.run(write)
        return {"samples": await self.datasets.sample_models(ds, rows)}

    # --- sampling acceptance ------------------------------------------------------------
    @staticmethod
    def _labeller(task: LabellingTask, value) -> str:
        if not isinstance(value, str) or value not in store.loads(task.labellers, []):
            raise APIError(
                400,
                f"labeller must be one of the labellers of task {task.name!r}: "
                f"{', '.join(store.loads(task.labellers, []))}.",
            )
        return value

    async def start_sampling(
        self, caller: dict, owner: str, name: str, ref: str, body: dict
    ) -> dict:
        """Draw a random share of a labeller's samples waiting for review, for the reviewer
        to check before deciding on all of them."""
        ds = await self.datasets.dataset(caller, owner, name)
        task = await self._task(ds, ref)
        self._may_review(caller, ds, task)
        if set(body) - {"labeller", "ratio"}:
            raise APIError(400, 'A sampling check is {"labeller": <name>, "ratio": 0.1}.')
        labeller = self._labeller(task, body.get("labeller"))
        ratio = body.get("ratio")
        if (
            isinstance(ratio, bool)
            or not isinstance(ratio, (int, float))
            or not math.isfinite(ratio)
            or not 0 < ratio <= 1
        ):
            raise APIError(400, "ratio must be a number above 0 and at most 1 (the share drawn).")

        def write(session):
            q = select(Sample.id).where(
                Sample.task_id == task.id, Sample.assignee == labeller, Sample.review == TO_REVIEW
            )
            waiting = list(session.scalars(q))
            if not waiting:
                raise APIError(
                    409,
                    f"{labeller} has no samples waiting for review in task {task.name!r}.",
                )
            drawn = sorted(random.sample(waiting, max(1, math.ceil(len(waiting) * ratio))))
            current = session.get(LabellingTask, task.id)
            sampling = store.loads(current.sampling, {})
            sampling[labeller] = {
                "ratio": float(ratio),
                "samples": drawn,
                "waiting": len(waiting),
                "state": RUNNING,
                "comment": "",
                "by": caller["name"],
                "started": isoformat(utcnow()),
            }
            current.sampling = json.dumps(sampling)
            current.updated = utcnow()
            return {"labeller": labeller, **sampling[labeller]}

        return await self.db.run(write)

    async def decide_sampling(
        self, caller: dict, owner: str, name: str, ref: str, body: dict
    ) -> dict:
        """Accept (or reject, with a comment) all of a labeller's samples waiting for review
        after a sampling check."""
        ds = await self.datasets.dataset(caller, owner, name)
        task = await self._task(ds, ref)
        self._may_review(caller, ds, task)
        if set(body) - {"labeller", "accepted", "comment"} or not isinstance(
            body.get("accepted"), bool
        ):
            raise APIError(
                400,
                'A sampling decision is {"labeller": <name>, "accepted": true|false, "comment"}.',
            )
        labeller = self._labeller(task, body.get("labeller"))
        comment = body.get("comment", "")
        if not isinstance(comment, str) or len(comment) > MAX_COMMENT:
            raise APIError(400, f"A comment is text of at most {MAX_COMMENT} characters.")
        accepted = body["accepted"]

        def write(session):
            current = session.get(LabellingTask, task.id)
            sampling = store.loads(current.sampling, {})
            check = sampling.get(labeller)
            if not check or check.get("state") != RUNNING:
                raise APIError(
                    409,
                    f"No sampling check of {labeller}'s samples is under way in task "
                    f"{task.name!r}: start one (POST .../sampling) first.",
                )
            result = session.execute(
                update(Sample)
                .where(
                    Sample.task_id == task.id,
                    Sample.assignee == labeller,
                    Sample.review == TO_REVIEW,
                )
                .values(
                    review=ACCEPTED if accepted else REJECTED,
                    review_comment=comment,
                    reviewed_by=caller["name"],
                    updated=utcnow(),
                )
            )
            check.update(
                state=ACCEPTED if accepted else REJECTED,
                comment=comment,
                decided_by=caller["name"],
                decided=isoformat(utcnow()),
                count=result.rowcount,
            )
            sampling[labeller] = check
            current.sampling = json.dumps(sampling)
            current.updated = utcnow()
            return {"labeller": labeller, **check}

        decided = await self.db.run(write)
        log.info(
            "%s %s %d samples of %s in task %s of %s/%s by sampling",
            caller["name"],
            "accepted" if accepted else "rejected",
            decided["count"],
            labeller,
            task.name,
            owner,
            name,
        )
        return decided


def setup_tasks(platform) -> None:
    """platform["dataset_tasks"] (labelling tasks) and platform["autolabeller"] (auto-labelling
    runs with deployed services) of the datasets service (set up before)."""
    from .autolabel import AutoLabeller

    datasets = platform["datasets"]
    platform["dataset_tasks"] = TaskService(datasets, platform.hub)
    labeller = AutoLabeller(datasets, lambda: platform.get("service_manager"))
    platform["autolabeller"] = labeller
    platform.on_start.append(labeller.start)
    platform.on_stop.append(labeller.close)
