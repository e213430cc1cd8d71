"""The records of TensorBoards users run in their instances over their runs' event folders.

The TensorBoard process itself runs in the instance (the lab extension or the SDK starts it);
the platform keeps which runs it shows, in which instance, and whether it runs, so that the
panel and the SDK list them and a user's running TensorBoards stay within the limit.
"""

from __future__ import annotations

import json
import logging

from sqlalchemy import func, select
from workbench import WorkbenchError
from workbench.times import utcnow

from hub.service.api import APIError

from . import store
from .compare import parse_search
from .store import TB_RUNNING, TB_STOPPED, Search, TensorBoard, Trial

log = logging.getLogger("workbench.experiments")

BODY_FIELDS = ("instance", "runs", "search")


def run_entry(name: str, version: int, owner: str) -> dict:
    """A run of a TensorBoard: its label and its output folder relative to the work folder
    (where the owner's jobs are mounted in their instances)."""
    return {
        "owner": owner,
        "name": name,
        "version": version,
        "label": f"{name}-v{version}",
        "logdir": f"jobs/{name}/{version}/output",
    }


class TensorBoardService:
    """Opening, listing, stopping and deleting users' TensorBoards (their records)."""

    def __init__(self, *, db, jobs, hub, settings):
        self.db = db
        self.jobs = jobs
        self.hub = hub
        self.settings = settings

    # --- reading -------------------------------------------------------------------------
    async def list(self, caller: dict, all_users: bool = False) -> list[dict]:
        """The caller's TensorBoards (everyone's for an admin with all_users), newest first."""
        everyone = all_users and caller.get("admin")
        if not everyone:
            await self._settle(caller["name"])

        def read(session):
            q = select(TensorBoard).order_by(TensorBoard.created.desc(), TensorBoard.id.desc())
            if not everyone:
                q = q.where(TensorBoard.owner == caller["name"])
            return [store.tensorboard_model(row) for row in session.scalars(q)]

        return await self.db.run(read)

    async def get(self, caller: dict, tensorboard_id: int) -> dict:
        row = await self._find(caller, tensorboard_id)
        if row.state == TB_RUNNING and row.owner == caller["name"]:
            await self._settle(row.owner)
            row = await self._find(caller, tensorboard_id)
        return store.tensorboard_model(row)

    async def _find(self, caller: dict, tensorboard_id: int) -> TensorBoard:
        row = await self.db.run(lambda s: s.get(TensorBoard, tensorboard_id))
        if row is None or not (caller.get("admin") or row.owner == caller["name"]):
            raise APIError(
                404, f"No TensorBoard {tensorboard_id}: see GET /tensorboards for yours."
            )
        return row

    async def _servers(self, user: str) -> dict | None:
        """The user's instances (hub server models); None when the hub does not answer."""
        try:
            return await self.hub.servers(user) or {}
        except WorkbenchError as e:
            log.warning("TensorBoards of %s: cannot read their instances: %s", user, e)
            return None

    async def _settle(self, user: str) -> None:
        """Running TensorBoards whose instance is gone or stopped are stopped: their process
        went with the instance."""
        servers = await self._servers(user)
        if servers is None:
            return
        live = {
            name for name, s in servers.items() if s.get("ready") or s.get("pending") == "spawn"
        }

        def write(session):
            q = select(TensorBoard).where(
                TensorBoard.owner == user, TensorBoard.state == TB_RUNNING
            )
            for row in session.scalars(q):
                if row.instance not in live:
                    row.state, row.stopped = TB_STOPPED, utcnow()
                    log.info(
                        "TensorBoard %s of %s: instance %s is not running: stopped",
                        row.id,
                        user,
                        row.instance,
                    )

        await self.db.run(write)

    # --- changing ------------------------------------------------------------------------
    async def create(self, caller: dict, body: dict) -> dict:
        """A running TensorBoard's record over the caller's own runs (or a search's trials)
        in one of the caller's instances; checked whole before it is made."""
        user = caller["name"]
        unknown = sorted(set(body) - set(BODY_FIELDS))
        if unknown:
            raise APIError(
                400,
                f"Unknown field(s) {', '.join(unknown)}: a TensorBoard takes "
                '{"instance", "runs": [{"name", "version"}]} or {"instance", "search": ID}.',
            )
        instance = body.get("instance")
        if not isinstance(instance, str) or not instance:
            raise APIError(
                400, "instance is required: the name of your instance TensorBoard runs in."
            )
        if ("runs" in body) == ("search" in body):
            raise APIError(
                400,
                'Give either "runs": [{"name", "version"}, ...] or "search": ID (not both).',
            )
        if "search" in body:
            runs = await self._search_runs(caller, body["search"])
        else:
            runs = await self._runs(caller, body["runs"])
        servers = await self._servers(user)
        if servers is None:
            raise APIError(503, "The hub does not answer: try again in a minute.")
        if instance not in servers:
            raise APIError(
                400,
                f"You have no instance {instance!r}: TensorBoard runs in one of your instances "
                "(see GET /users/{you}/instances).",
            )
        await self._settle(user)
        limit = self.settings.max_running_tensorboards

        def write(session):
            running = session.scalar(
                select(func.count())
                .select_from(TensorBoard)
                .where(TensorBoard.owner == user, TensorBoard.state == TB_RUNNING)
            )
            if running >= limit:
                return None
            row = TensorBoard(owner=user, instance=instance, runs=json.dumps(runs))
            session.add(row)
            session.flush()
            return row

        row = await self.db.run(write)
        if row is None:
            raise APIError(
                409,
                f"You have {limit} TensorBoards running, the most allowed: stop one first "
                "(POST /tensorboards/ID/stop).",
            )
        log.info("TensorBoard %s of %s in %s over %d run(s)", row.id, user, instance, len(runs))
        return store.tensorboard_model(row)

    async def _runs(self, caller: dict, raw) -> list[dict]:
        limit = self.settings.max_tensorboard_runs
        if not isinstance(raw, list) or not raw:
            raise APIError(
                400, 'runs must be a list of your job runs: [{"name": "train", "version": 1}].'
            )
        if len(raw) > limit:
            raise APIError(
                400, f"{len(raw)} runs are more than the {limit} one TensorBoard may show."
            )
        runs, seen = [], set()
        for i, run in enumerate(raw):
            if not isinstance(run, dict) or set(run) - {"owner", "name", "version"}:
                raise APIError(
                    400, f'runs[{i}] must be {{"name": "train", "version": 1}} (owner optional).'
                )
            owner = run.get("owner") or caller["name"]
            name, version = run.get("name"), run.get("version")
            if not isinstance(owner, str) or not isinstance(name, str) or not name:
                raise APIError(400, f"runs[{i}]: owner and name must be text.")
            if isinstance(version, bool) or not isinstance(version, int) or version < 1:
                raise APIError(400, f"runs[{i}]: version must be a version number: 1, 2, ...")
            if owner != caller["name"]:
                raise APIError(
                    400,
                    f"runs[{i}] is {owner}'s run {name} v{version}: only your own runs' event "
                    "folders are in your instance. Compare others' runs with "
                    "GET /experiments/compare instead.",
                )
            if (name, version) in seen:
                continue
            seen.add((name, version))
            await self.jobs.get_version(caller, owner, name, version)  # 404 if there is none
            runs.append(run_entry(name, version, owner))
        return runs

    async def _search_runs(self, caller: dict, raw) -> list[dict]:
        ok = isinstance(raw, (int, str)) and not isinstance(raw, bool)
        search_id = parse_search(str(raw) if ok else repr(raw))

        def read(session):
            row = session.get(Search, search_id)
            if row is None:
                return None, []
            q = (
                select(Trial.version)
                .where(Trial.search_id == search_id, Trial.version.is_not(None))
                .order_by(Trial.number)
            )
            return row, list(session.scalars(q))

        row, versions = await self.db.run(read)
        if row is None or not (caller.get("admin") or row.owner == caller["name"]):
            # another's search is theirs to show: not found, as their searches are
            raise APIError(404, f"No search {search_id} of yours: see GET /searches.")
        if row.owner != caller["name"]:
            raise APIError(
                400,
                f"Search {search_id} is {row.owner}'s: only your own runs' event folders are "
                "in your instance.",
            )
        if not versions:
            raise APIError(
                400, f"Search {search_id} has no trial runs yet: open TensorBoard once one runs."
            )
        limit = self.settings.max_tensorboard_runs
        versions = list(dict.fromkeys(versions))
        if len(versions) > limit:
            raise APIError(
                400,
                f"Search {search_id} has {len(versions)} runs, more than the {limit} one "
                "TensorBoard may show: give the runs to show instead.",
            )
        return [run_entry(row.job, v, row.owner) for v in versions]

    async def stop(self, caller: dict, tensorboard_id: int) -> dict:
        """Mark a TensorBoard stopped (its process is stopped in the instance)."""
        row = await self._find(caller, tensorboard_id)

        def write(session):
            current = session.get(TensorBoard, row.id)
            if current.state != TB_STOPPED:
                current.state, current.stopped = TB_STOPPED, utcnow()
            return current

        row = await self.db.run(write)
        log.info("TensorBoard %s of %s stopped", row.id, row.owner)
        return store.tensorboard_model(row)

    async def delete(self, caller: dict, tensorboard_id: int) -> None:
        row = await self._find(caller, tensorboard_id)

        def write(session):
            current = session.get(TensorBoard, row.id)
            if current is not None:
                session.delete(current)

        await self.db.run(write)
        log.info("TensorBoard %s of %s deleted", row.id, row.owner)
