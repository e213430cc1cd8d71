"""Auto-labelling: a deployed service's predictions written as pre-labels of unlabelled samples.

A run sends the dataset's unlabelled samples to the service in batches, the way a caller's
request goes (the router's choice of replica, counted in the service's metrics), on kserve's
v1 protocol: POST `v1/models/<model>:predict` with `{"instances": [{"b64": <the file>, "key"}]}`
for images or `{"instances": [{"text", "key"}]}` for texts. Each prediction is one of
`{"label", "confidence"}`, `{"labels": [{"label", "confidence"}]}`, `{"boxes": [{"label",
"box", "confidence"}]}` or `{"spans": [{"label", "span", "confidence"}]}`. Annotations with a
label outside the dataset's label set are skipped (and counted); what is left is written as the
sample's pre-labels by "model:<owner>/<service>", accepted as labels at once where every
confidence reaches the run's threshold. The run's state, counts and reason are in its row;
a run a restart cut short is marked failed when the platform starts again.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import func, select
from workbench.times import isoformat, utcnow

from hub.service.api import APIError

from . import store
from .annotations import AnnotationError, check_annotations
from .store import (
    DONE,
    FAILED,
    IMAGE_TYPES,
    NAMED_ENTITIES,
    OBJECT_DETECTION,
    PENDING,
    RUNNING,
    STOPPED,
    UNLABELLED,
    AutoLabelRun,
    Dataset,
    Sample,
)

log = logging.getLogger("workbench.datasets")

MAX_LIMIT = 10_000_000
STOP_WAIT_SECONDS = 5.0


@dataclass
class LeftOut:
    """What a run left out: predicted labels outside the label set (by name), and
    predictions it could not use (how many, and why the first one)."""

    labels: Counter = field(default_factory=Counter)
    unusable: int = 0
    first: str = ""

    def reason(self) -> str:
        parts = []
        if self.labels:
            names = ", ".join(repr(n) for n, _ in self.labels.most_common(5))
            count = sum(self.labels.values())
            parts.append(
                f"{count} predicted label{'s' if count > 1 else ''} not in the label set "
                f"skipped ({names}{', ...' if len(self.labels) > 5 else ''})"
            )
        if self.unusable:
            parts.append(
                f"{self.unusable} prediction{'s' if self.unusable > 1 else ''} unusable "
                f"(first: {self.first[:200]})"
            )
        return "; ".join(parts)


class RunError(Exception):
    """A run cannot go on (the service refused, went away, or answers nonsense)."""


def run_model(ds: Dataset, row: AutoLabelRun) -> dict:
    """The API's JSON of an auto-labelling run."""
    source = store.loads(row.source, {})
    return {
        "id": row.id,
        "dataset": f"{ds.owner}/{ds.name}",
        "service": source.get("service"),
        "source": source,
        "threshold": row.threshold,
        "state": row.state,
        "reason": row.reason,
        "total": row.total,
        "done": row.done,
        "accepted": row.accepted,
        "created_by": row.created_by,
        "created": isoformat(row.created),
        "finished": isoformat(row.finished) if row.finished else None,
    }


def predicted(prediction, dataset_type: str, multi_label: bool, names: set[str]):
    """(annotations, labels skipped) of one prediction; RunError where it is none of the
    protocol's shapes."""
    if not isinstance(prediction, dict):
        raise RunError(f"a prediction is not an object: {prediction!r:.80}")
    if "boxes" in prediction:
        items, kind = prediction["boxes"], "boxes"
    elif "spans" in prediction:
        items, kind = prediction["spans"], "spans"
    elif "labels" in prediction:
        items, kind = prediction["labels"], "labels"
    elif "label" in prediction:
        items, kind = [prediction], "label"
    else:
        raise RunError(
            'a prediction has none of "label", "labels", "boxes" or "spans": '
            f"{json.dumps(prediction)[:120]}"
        )
    wanted = {OBJECT_DETECTION: "boxes", NAMED_ENTITIES: "spans"}.get(dataset_type)
    if (wanted and kind != wanted) or (not wanted and kind in ("boxes", "spans")):
        raise RunError(
            f'a prediction gives "{kind}", but a {dataset_type} dataset needs '
            + (f'"{wanted}"' if wanted else '"label" or "labels"')
        )
    if not isinstance(items, list):
        raise RunError(f'"{kind}" of a prediction is not a list')
    out, skipped = [], []
    for item in items:
        if not isinstance(item, dict):
            raise RunError(f"an item of a prediction is not an object: {item!r:.80}")
        label = item.get("label")
        if not isinstance(label, str) or label not in names:
            skipped.append(str(label)[:64])
            continue
        confidence = item.get("confidence")
        if (
            isinstance(confidence, bool)
            or not isinstance(confidence, (int, float))
            or not math.isfinite(confidence)
            or not 0 <= confidence <= 1
        ):
            raise RunError(f"label {label!r} of a prediction has no confidence between 0 and 1")
        a = {"label": label, "confidence": float(confidence)}
        if kind == "boxes":
            a["box"] = item.get("box")
        if kind == "spans":
            a["span"] = item.get("span")
        out.append(a)
    if dataset_type not in (OBJECT_DETECTION, NAMED_ENTITIES):
        best: dict[str, dict] = {}
        for a in out:  # one annotation a label, its highest confidence
            if a["label"] not in best or a["confidence"] > best[a["label"]]["confidence"]:
                best[a["label"]] = a
        out = sorted(best.values(), key=lambda a: -a["confidence"])
        if not multi_label:
            out = out[:1]
    return out, skipped


class AutoLabeller:
    """Auto-labelling runs of datasets with deployed services.

    datasets: the DatasetService; services: () -> the inference feature's ServiceManager
    (None: services are not enabled).
    """

    def __init__(self, datasets, services):
        self.datasets = datasets
        self.db = datasets.db
        self.services = services
        self._tasks: dict[int, asyncio.Task] = {}
        self._stopping: set[int] = set()

    @property
    def batch_size(self) -> int:
        return max(1, int(getattr(self.datasets.settings, "autolabel_batch_size", 16)))

    @property
    def timeout(self) -> float:
        return float(getattr(self.datasets.settings, "autolabel_timeout_seconds", 60.0))

    # --- the service --------------------------------------------------------------------
    async def _service(self, caller: dict, ref) -> tuple[object, str, str]:
        """(the service manager, owner, name) of a service the caller may call; APIError."""
        if not isinstance(ref, str) or not 0 < len(ref) <= 255 or ref.count("/") > 1:
            raise APIError(400, 'service must be a deployed service: "name" or "owner/name".')
        manager = self.services()
        if manager is None:
            raise APIError(
                400, "Online services are not enabled on this platform: nothing can auto-label."
            )
        owner, _, name = ref.rpartition("/")
        owner = owner or caller["name"]
        await manager.get(caller, owner, name)  # 404 where the caller cannot see it
        rt = manager.runtime(owner, name)
        if rt is None:
            raise APIError(
                409, f"Service {owner}/{name} is not running: start it (POST .../start) first."
            )
        if not await manager.may_call(caller, rt):
            raise APIError(
                403,
                f"{caller['name']} may not call service {owner}/{name}: it is {owner}'s"
                + (f", shared with workspace {rt.workspace}" if rt.public else "")
                + ". Ask its owner to make it public to your workspace.",
            )
        return manager, owner, name

    # --- the API's operations -----------------------------------------------------------
    async def create(self, caller: dict, owner: str, name: str, body: dict) -> dict:
        """Start a run over the dataset's unlabelled samples: the run's JSON."""
        ds = await self.datasets.dataset(caller, owner, name, change=True)
        unknown = set(body) - {"service", "threshold", "limit"}
        if unknown:
            raise APIError(
                400,
                "An auto-labelling run takes service, threshold and limit; not "
                f"{', '.join(sorted(map(str, unknown)))}.",
            )
        threshold = body.get("threshold", 1.0)
        if (
            isinstance(threshold, bool)
            or not isinstance(threshold, (int, float))
            or not math.isfinite(threshold)
            or not 0 <= threshold <= 1
        ):
            raise APIError(
                400,
                "threshold must be a number from 0 to 1: predictions whose every confidence "
                "reaches it become labels, the others pre-labels to confirm (1 by default).",
            )
        limit = body.get("limit")
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or not 0 < limit <= MAX_LIMIT
        ):
            raise APIError(400, f"limit must be a number of samples from 1 to {MAX_LIMIT}.")
        _, service_owner, service_name = await self._service(caller, body.get("service"))
        service = f"{service_owner}/{service_name}"

        def insert(session):
            busy = session.scalar(
                select(AutoLabelRun).where(
                    AutoLabelRun.dataset_id == ds.id,
                    AutoLabelRun.state.in_((PENDING, RUNNING)),
                )
            )
            if busy is not None:
                raise APIError(
                    409,
                    f"Run {busy.id} is auto-labelling dataset {ds.owner}/{ds.name} already: "
                    "wait for it or stop it first.",
                )
            unlabelled = session.scalar(
                select(func.count())
                .select_from(Sample)
                .where(Sample.dataset_id == ds.id, Sample.status == UNLABELLED)
            )
            total = min(unlabelled, limit) if limit else unlabelled
            if not total:
                raise APIError(
                    409, f"Dataset {ds.owner}/{ds.name} has no unlabelled samples to auto-label."
                )
            row = AutoLabelRun(
                dataset_id=ds.id,
                created_by=caller["name"],
                source=json.dumps({"service": service}),
                threshold=float(threshold),
                state=RUNNING,
                reason="",
                total=total,
            )
            session.add(row)
            session.flush()
            session.expunge(row)
            return row

        row = await self.db.run(insert)
        task = asyncio.ensure_future(self._run(row.id, ds, dict(caller), service))
        self._tasks[row.id] = task
        task.add_done_callback(lambda _: self._tasks.pop(row.id, None))
        log.info(
            "%s started auto-labelling %s/%s with %s (run %s, %d samples, threshold %s)",
            caller["name"],
            ds.owner,
            ds.name,
            service,
            row.id,
            row.total,
            row.threshold,
        )
        return run_model(ds, row)

    async def _row(self, ds: Dataset, run_id: int) -> AutoLabelRun:
        row = await self.db.run(lambda s: s.get(AutoLabelRun, run_id))
        if row is None or row.dataset_id != ds.id:
            raise APIError(404, f"Dataset {ds.owner}/{ds.name} has no auto-labelling run {run_id}.")
        return row

    async def list(self, caller: dict, owner: str, name: str) -> list[dict]:
        ds = await self.datasets.dataset(caller, owner, name)

        def read(session):
            q = (
                select(AutoLabelRun)
                .where(AutoLabelRun.dataset_id == ds.id)
                .order_by(AutoLabelRun.id.desc())
            )
            return [run_model(ds, r) for r in session.scalars(q)]

        return await self.db.run(read)

    async def get(self, caller: dict, owner: str, name: str, run_id: int) -> dict:
        ds = await self.datasets.dataset(caller, owner, name)
        return run_model(ds, await self._row(ds, run_id))

    async def stop(self, caller: dict, owner: str, name: str, run_id: int) -> dict:
        """Stop a run after the batch it is at (its pre-labels so far are kept)."""
        ds = await self.datasets.dataset(caller, owner, name, change=True)
        row = await self._row(ds, run_id)
        task = self._tasks.get(run_id)
        if row.state in (PENDING, RUNNING):
            self._stopping.add(run_id)
            if task is None:  # not this process's (a restart's leftover)
                await self._finish(run_id, STOPPED, f"stopped by {caller['name']}")
            else:
                await asyncio.wait({task}, timeout=STOP_WAIT_SECONDS)
        return run_model(ds, await self._row(ds, run_id))

    # --- running ------------------------------------------------------------------------
    async def _finish(self, run_id: int, state: str, reason: str) -> None:
        def write(session):
            row = session.get(AutoLabelRun, run_id)
            if row is not None and row.state in (PENDING, RUNNING):
                row.state, row.reason, row.finished = state, reason, utcnow()

        await self.db.run(write)

    async def _run(self, run_id: int, ds: Dataset, caller: dict, service: str) -> None:
        by = f"model:{service}"
        left = LeftOut()
        state, why = DONE, ""
        try:
            row = await self.db.run(lambda s: s.get(AutoLabelRun, run_id))
            total, threshold = row.total, row.threshold
            after, done, accepted = 0, 0, 0
            while done < total:
                if run_id in self._stopping:
                    state, why = STOPPED, f"stopped after {done} of {total} samples"
                    break
                current, batch = await self._next(ds.id, after, min(self.batch_size, total - done))
                if current is None:
                    raise RunError(f"dataset {ds.owner}/{ds.name} was deleted")
                if not batch:
                    break
                after = batch[-1]["id"]
                predictions = await self._predict(caller, service, current, batch)
                items = []
                names = {label["name"] for label in store.loads(current.labels, [])}
                for sample, prediction in zip(batch, predictions, strict=True):
                    try:
                        annotations, unknown = predicted(
                            prediction, current.type, current.multi_label, names
                        )
                        left.labels.update(unknown)
                        if not annotations:
                            continue
                        annotations = check_annotations(
                            current.type,
                            names,
                            annotations,
                            width=sample["width"],
                            height=sample["height"],
                            text=sample.get("text"),
                            multi_label=current.multi_label,
                            annotated_by=by,
                            key=sample["key"],
                        )
                    except (RunError, AnnotationError) as e:
                        left.unusable += 1
                        left.first = left.first or f"{sample['key']}: {e}"
                        continue
                    confidence = min(a["confidence"] for a in annotations)
                    items.append((sample["id"], annotations, confidence, by))
                accepted += await self.datasets.write_prelabels(current, items, threshold)
                done += len(batch)
                await self._progress(run_id, done, accepted, left.reason())
        except asyncio.CancelledError:
            raise  # the platform stops: marked failed at its next start
        except (RunError, APIError) as e:
            state, why = FAILED, str(e)
        except Exception as e:  # noqa: BLE001 - the reason goes to the run
            log.exception("auto-labelling run %s failed", run_id)
            state, why = FAILED, f"unexpected error: {e}"
        finally:
            self._stopping.discard(run_id)
        reason = "; ".join(r for r in (why, left.reason()) if r)
        await self._finish(run_id, state, reason)
        log.info("auto-labelling run %s of %s/%s: %s %s", run_id, ds.owner, ds.name, state, reason)

    async def _next(self, dataset_id: int, after: int, size: int):
        """(the dataset now, its next unlabelled samples after id `after`)."""

        def read(session):
            current = session.get(Dataset, dataset_id)
            if current is None:
                return None, []
            q = (
                select(
                    Sample.id,
                    Sample.key,
                    Sample.sha256,
                    Sample.width,
                    Sample.height,
                    Sample.media_type,
                )
                .where(
                    Sample.dataset_id == dataset_id,
                    Sample.status == UNLABELLED,
                    Sample.id > after,
                )
                .order_by(Sample.id)
                .limit(size)
            )
            session.expunge(current)
            rows = [
                {"id": i, "key": k, "sha256": sha, "width": w, "height": h, "media_type": m}
                for i, k, sha, w, h, m in session.execute(q)
            ]
            return current, rows

        return await self.db.run(read)

    async def _predict(self, caller: dict, service: str, ds: Dataset, batch: list[dict]) -> list:
        """The service's predictions for a batch of samples, one each."""
        from inference_bridge.router import call

        blobs = self.datasets.blobs
        instances = []
        for sample in batch:
            data = await blobs.read(sample["sha256"])
            if ds.type in IMAGE_TYPES:
                instances.append({"b64": base64.b64encode(data).decode(), "key": sample["key"]})
            else:
                sample["text"] = data.decode("utf-8", errors="replace")
                instances.append({"text": sample["text"], "key": sample["key"]})
        try:
            manager, owner, name = await self._service(caller, service)
        except APIError as e:
            raise RunError(f"service {service} cannot be called any more: {e.message}") from None
        rt = manager.runtime(owner, name)
        body = json.dumps({"instances": instances}).encode()
        # the first request may wait for a replica to start
        waiting = (
            0.0
            if any(p.ready() for p in rt.predictors.values())
            else float(getattr(manager.config, "cold_start_timeout_seconds", 0) or 0)
        )
        try:
            status, answer = await asyncio.wait_for(
                call(
                    manager,
                    rt,
                    f"v1/models/{rt.model_name}:predict",
                    body,
                    {"Content-Type": "application/json"},
                ),
                self.timeout + waiting,
            )
        except TimeoutError:
            raise RunError(f"service {service} did not answer within {self.timeout:g} s") from None
        if status >= 400:
            raise RunError(f"service {service} answered {status}: {_message(answer)}")
        try:
            predictions = json.loads(answer)["predictions"]
        except (ValueError, KeyError, TypeError):
            raise RunError(
                f'service {service} answered without "predictions": {answer[:200]!r}'
            ) from None
        if not isinstance(predictions, list) or len(predictions) != len(batch):
            count = len(predictions) if isinstance(predictions, list) else "no"
            raise RunError(
                f"service {service} answered {count} predictions for {len(batch)} samples"
            )
        return predictions

    async def _progress(self, run_id: int, done: int, accepted: int, reason: str) -> None:
        def write(session):
            row = session.get(AutoLabelRun, run_id)
            if row is not None:
                row.done, row.accepted, row.reason = done, accepted, reason

        await self.db.run(write)

    # --- the service's start and stop ---------------------------------------------------
    async def start(self) -> None:
        """Runs a restart cut short are failed."""

        def write(session):
            q = select(AutoLabelRun).where(AutoLabelRun.state.in_((PENDING, RUNNING)))
            rows = list(session.scalars(q))
            for row in rows:
                row.state, row.reason = FAILED, "interrupted by a restart"
                row.finished = utcnow()
            return len(rows)

        count = await self.db.run(write)
        if count:
            log.info("datasets: %d auto-labelling run(s) a restart cut short failed", count)

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


def _message(answer: bytes) -> str:
    try:
        data = json.loads(answer)
        if isinstance(data, dict):
            return str(data.get("message") or data.get("error") or data)[:300]
    except ValueError:
        pass
    return answer[:300].decode("utf-8", errors="replace")
