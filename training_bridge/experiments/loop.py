"""The search loop: each pass follows the trials of every active search through their job
versions, prunes, asks for new trials, and ends searches (SearchService's other half)."""

from __future__ import annotations

import asyncio
import json
import logging

from sqlalchemy import select
from workbench.times import utcnow

from hub.service.api import APIError

from .. import store as job_store
from . import study
from .store import (
    COMPLETE,
    COMPLETED,
    FAILED,
    PRUNED,
    RUNNING,
    SEARCH_ACTIVE,
    SEARCHING,
    STOPPED,
    STOPPING,
    TRIAL_ACTIVE,
    TRIAL_FAILED,
    TRIAL_STOPPED,
    WAITING,
    Search,
    Trial,
    trials_of,
)

log = logging.getLogger("workbench.experiments")

MISSING = "did not report metric"
# trials that finished without the objective metric, in a row from the first, fail the search
MISSING_LIMIT = 3


class SearchLoop:
    """The loop of SearchService (which sets db, jobs and settings)."""

    def __init__(self):
        self.wakeup = asyncio.Event()
        # one change of searches at a time: the loop's pass over a search, a create, a stop
        self._lock = asyncio.Lock()
        self._loop_task: asyncio.Task | None = None
        self._taken_up = False  # the searches found active at start were logged

    # --- rows ----------------------------------------------------------------------------
    async def _set_search(self, search: Search, state: str, reason: str | None = None, **fields):
        if state not in SEARCH_ACTIVE:
            fields.setdefault("finished", utcnow())
        fields["state"] = state
        if reason is not None:
            fields["reason"] = reason
        await self._write(Search, search, fields)

    async def _set_trial(self, row: Trial, **fields) -> None:
        await self._write(Trial, row, fields)

    async def _write(self, model, row, fields: dict) -> None:
        def write(session):
            current = session.get(model, row.id)
            if current is not None:
                for key, value in fields.items():
                    setattr(current, key, value)

        await self.db.run(write)
        for key, value in fields.items():
            setattr(row, key, value)

    # --- the loop ------------------------------------------------------------------------
    def start(self) -> None:
        """Start the loop (it takes up the searches a restart left active)."""
        self._loop_task = asyncio.ensure_future(self._loop())

    async def close(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            try:
                await self._loop_task
            except asyncio.CancelledError:
                pass
            self._loop_task = None

    async def _loop(self) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("search loop pass failed")
            try:
                await asyncio.wait_for(self.wakeup.wait(), self.settings.poll_seconds)
            except TimeoutError:
                pass
            self.wakeup.clear()

    async def tick(self) -> None:
        """One pass over every active search."""

        def read(session):
            q = select(Search.id).where(Search.state.in_(SEARCH_ACTIVE)).order_by(Search.id)
            return list(session.scalars(q))

        ids = await self.db.run(read)
        if not self._taken_up:
            self._taken_up = True
            for search_id in ids:
                log.info("taking up search %s", search_id)
        for search_id in ids:
            async with self._lock:
                search = await self.db.run(lambda s, i=search_id: s.get(Search, i))
                if search is None or search.state not in SEARCH_ACTIVE:
                    continue
                try:
                    await self._pass(search)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("search %s: pass failed", search_id)

    async def _pass(self, search: Search) -> None:
        spec = json.loads(search.spec)
        rows = await self.db.run(lambda s: trials_of(s, search.id))
        if await self._job_gone(search):
            await self._end(search, FAILED, f"its job {search.job!r} was deleted")
            return
        for row in rows:
            if row.state in TRIAL_ACTIVE:
                await self._follow(search, spec, rows, row)
        await self._update_best(search, spec, rows)
        reason = _missing_reason(rows)
        if reason and search.state == SEARCHING:
            await self._end(search, FAILED, reason)
            return
        if search.state == STOPPING:
            if any(r.state in TRIAL_ACTIVE for r in rows):
                await self._stop_trials(search, "stopped with its search")
            else:
                await self._set_search(search, STOPPED)
            return
        active = [r for r in rows if r.state in TRIAL_ACTIVE]
        for row in active:
            if row.version is None and not await self._submit(search, spec, row):
                return
        while len(active) < spec["parallel"] and len(rows) < spec["trials"]:
            row = await self._new_trial(search, spec, rows)
            if row is None:
                return
            active.append(row)
        if len(rows) >= spec["trials"] and not active and await self._versions_ended(search, rows):
            await self._set_search(search, COMPLETED)
            log.info("search %s completed (best trial %s)", search.id, search.best_trial)

    async def _versions_ended(self, search: Search, rows: list[Trial]) -> bool:
        """Whether the job versions of pruned trials have stopped (a search completes once
        none of its versions holds resources)."""
        caller = {"name": search.owner}
        for row in rows:
            if row.state != PRUNED or row.version is None:
                continue
            try:
                version = await self.jobs.get_version(caller, search.owner, search.job, row.version)
            except APIError:
                continue
            if version["state"] in job_store.ACTIVE:
                return False
        return True

    async def _job_gone(self, search: Search) -> bool:
        job = await self.db.run(lambda s: job_store.find_job(s, search.owner, search.job))
        return job is None

    async def _end(self, search: Search, state: str, reason: str) -> None:
        """End a search that cannot go on: its active trials are stopped with it."""
        log.info("search %s %s: %s", search.id, state, reason)
        why = f"stopped: the search {state}"
        if not await self._job_gone(search):
            await self._stop_trials(search, why)
        for row in await self.db.run(lambda s: trials_of(s, search.id)):
            if row.state in TRIAL_ACTIVE:
                await self._set_trial(row, state=TRIAL_STOPPED, reason=why, finished=utcnow())
        await self._set_search(search, state, reason)

    async def _update_best(self, search: Search, spec: dict, rows: list[Trial]) -> None:
        best = study.best(spec["objective"]["direction"], rows)
        number = best.number if best is not None else None
        if number != search.best_trial:
            await self._write(Search, search, {"best_trial": number})

    # --- trials --------------------------------------------------------------------------
    async def _new_trial(
        self, search: Search, spec: dict, rows: list[Trial], caller=None, first=None
    ) -> Trial | None:
        """Ask the sampler for the next trial, save it, and submit its job version (first:
        (job or None, the request's job body) for the search's first trial). None when the
        submission failed and the search with it (raised for the first trial)."""
        number = max((r.number for r in rows), default=-1) + 1
        params, attrs = await asyncio.to_thread(study.ask, spec, rows, number)

        def insert(session):
            row = Trial(
                search_id=search.id,
                number=number,
                params=json.dumps(params),
                system_attrs=json.dumps(attrs),
                state=WAITING,
            )
            session.add(row)
            session.flush()
            return row

        row = await self.db.run(insert)
        rows.append(row)
        if first is not None:
            job, body = first
            await self._submit_first(search, spec, row, caller, job, body)
            return row
        return row if await self._submit(search, spec, row) else None

    def _version_body(self, spec: dict, row: Trial) -> tuple[dict, dict]:
        """(hyperparameters, platform fields) of a trial's job version."""
        hyperparameters = {**spec.get("hyperparameters", {}), **json.loads(row.params)}
        return hyperparameters, {"origin": {"search": row.search_id, "trial": row.number}}

    async def _submit_first(self, search, spec, row, caller, job, body) -> None:
        hyperparameters, platform = self._version_body(spec, row)
        body = {**body, "hyperparameters": hyperparameters}
        if job is None:
            made = await self.jobs.create(caller, body, platform=platform)
        else:
            made = await self.jobs.rerun(caller, job.owner, job.name, body, platform=platform)
        await self._set_trial(row, version=made["version"], **_trial_state(made))

    async def _submit(self, search: Search, spec: dict, row: Trial) -> bool:
        """Make the job version of a trial that has none (after a restart, the one made
        before it, if any); False when that failed, and the search with it."""
        version = await self._made_version(search, row.number)
        if version is None:
            hyperparameters, platform = self._version_body(spec, row)
            try:
                made = await self.jobs.rerun(
                    {"name": search.owner},
                    search.owner,
                    search.job,
                    {"hyperparameters": hyperparameters},
                    platform=platform,
                )
            except APIError as e:
                reason = f"could not submit trial {row.number}: {e}"
                await self._set_trial(
                    row, state=TRIAL_FAILED, reason=reason[:2000], finished=utcnow()
                )
                await self._end(search, FAILED, reason[:2000])
                return False
        else:
            made = version
        log.info("search %s trial %s: version %s", search.id, row.number, made["version"])
        await self._set_trial(row, version=made["version"], **_trial_state(made))
        return True

    async def _made_version(self, search: Search, number: int) -> dict | None:
        """The job version already made for trial `number` (its spec's origin), if any."""
        try:
            job = await self.jobs.get({"name": search.owner}, search.owner, search.job)
        except APIError:
            return None
        for version in job.get("versions", []):
            origin = version["spec"].get("origin") or {}
            if origin.get("search") == search.id and origin.get("trial") == number:
                return version
        return None

    async def _follow(self, search: Search, spec: dict, rows: list[Trial], row: Trial) -> None:
        """Bring a trial up to date with its job version: state, intermediate values,
        pruning, its value when it ends."""
        if row.version is None:
            return
        caller = {"name": search.owner}
        try:
            version = await self.jobs.get_version(caller, search.owner, search.job, row.version)
        except APIError:
            reason = f"its job version {row.version} was deleted"
            await self._set_trial(row, state=TRIAL_STOPPED, reason=reason, finished=utcnow())
            return
        state = version["state"]
        if state == job_store.QUEUED:
            if row.state != WAITING or row.reason != version["reason"]:
                await self._set_trial(row, state=WAITING, reason=version["reason"])
            return
        metric = spec["objective"]["metric"]
        metrics = await self.jobs.metrics(caller, search.owner, search.job, row.version)
        intermediate = {p["step"]: p["value"] for p in metrics.get(metric, [])}
        changed = intermediate != study.intermediate_of(row)
        if state in job_store.ACTIVE:
            fields = {"state": RUNNING, "reason": ""}
            if changed:
                fields.update(intermediate=json.dumps(intermediate), steps=len(intermediate))
            if row.state != RUNNING or row.reason or changed:
                await self._set_trial(row, **fields)
            if changed and search.state == SEARCHING and state != job_store.STOPPING:
                await self._judge(search, spec, rows, row, intermediate)
            return
        fields = {
            "intermediate": json.dumps(intermediate),
            "steps": len(intermediate),
            "finished": utcnow(),
        }
        if state == job_store.SUCCEEDED and intermediate:
            fields.update(state=COMPLETE, value=intermediate[max(intermediate)], reason="")
        elif state == job_store.SUCCEEDED:
            reported = ", ".join(sorted(metrics)) or "no metric"
            reason = f"{MISSING} {metric!r} (it reported: {reported})"
            fields.update(state=TRIAL_FAILED, reason=reason)
        elif state == job_store.FAILED:
            fields.update(state=TRIAL_FAILED, reason=version["reason"])
        elif search.state == STOPPING:
            fields.update(state=TRIAL_STOPPED, reason="stopped with its search")
        else:
            fields.update(state=TRIAL_STOPPED, reason=version["reason"])
        await self._set_trial(row, **fields)
        log.info("search %s trial %s %s %s", search.id, row.number, row.state, row.reason)

    async def _judge(self, search, spec, rows, row: Trial, intermediate: dict) -> None:
        prune = await asyncio.to_thread(study.should_prune, spec, rows, row, intermediate)
        if not prune:
            return
        caller = {"name": search.owner}
        step = max(intermediate)
        model = await self.jobs.stop(
            caller,
            search.owner,
            search.job,
            row.version,
            by=f"search {search.id}, which pruned trial {row.number} at step {step}",
        )
        if model["state"] == job_store.SUCCEEDED:
            return  # it ended first: the next pass completes it
        value = intermediate[step]
        metric = spec["objective"]["metric"]
        await self._set_trial(
            row,
            state=PRUNED,
            value=value,
            reason=f"pruned at step {step}: {metric} {value:g} is worse than the median of "
            "the completed trials there",
            finished=utcnow(),
        )
        log.info("search %s trial %s pruned at step %s", search.id, row.number, step)


def _trial_state(version: dict) -> dict:
    if version["state"] == job_store.QUEUED:
        return {"state": WAITING, "reason": version["reason"]}
    return {"state": RUNNING, "reason": ""}


def _missing_reason(rows: list[Trial]) -> str:
    """The search's failure when its first trials to end with or without the objective
    all ended without it ("" otherwise)."""
    judged = [
        r
        for r in rows
        if r.state in (COMPLETE, PRUNED)
        or (r.state == TRIAL_FAILED and r.reason.startswith(MISSING))
    ]
    judged.sort(key=lambda r: (r.finished or utcnow(), r.number))
    first = judged[:MISSING_LIMIT]
    if len(first) == MISSING_LIMIT and all(r.state == TRIAL_FAILED for r in first):
        return f"the first {MISSING_LIMIT} trials {first[-1].reason}"
    return ""
