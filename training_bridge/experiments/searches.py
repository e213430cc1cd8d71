"""The search service: hyperparameter searches whose trials are versions of one job.

A search is made whole or not at all: the request is checked (space, objective, quota), then
the search's row and its first trial's job version are made together. A loop (a task of the
API service) then makes each search go on: it follows each trial's job version, reads the
objective's intermediate values, stops the trials the pruner judges poor, asks the sampler
for new trials up to `parallel` at once, and ends the search when all planned trials ended.
The study is rebuilt from the database rows for each ask, so a restart of the service loses
nothing: at start the loop takes up the searches it finds active.
"""

from __future__ import annotations

import json
import logging

from sqlalchemy import delete, func, select
from workbench.times import utcnow

from hub.service.api import APIError

from .. import store as job_store
from ..spec import SpecError, check_description, check_name
from .checks import objective_problem, quota_problems
from .loop import SearchLoop
from .space import SEARCH_KEYS, SearchError, check_search
from .store import (
    SEARCH_ACTIVE,
    SEARCHING,
    STOPPING,
    TRIAL_ACTIVE,
    TRIAL_STOPPED,
    WAITING,
    Search,
    Trial,
    search_model,
    trial_model,
    trials_of,
)

log = logging.getLogger("workbench.experiments")


class SearchService(SearchLoop):
    """Searches: made, listed, stopped, deleted, their best trial re-run; and their loop."""

    def __init__(self, *, db, jobs, settings, quotas=None, policy=None):
        super().__init__()
        self.db = db
        self.jobs = jobs
        self.settings = settings
        self.quotas = quotas
        self.policy = policy

    # --- visibility ----------------------------------------------------------------------
    async def _member_of(self, user: str) -> set[str]:
        return await self.jobs._member_of(user)

    async def _search(self, caller: dict, search_id: int, *, change: bool = False) -> Search:
        row = await self.db.run(lambda s: s.get(Search, search_id))
        visible = row is not None and (
            caller.get("admin")
            or row.owner == caller["name"]
            or (
                row.workspace != "default"
                and row.workspace in await self._member_of(caller["name"])
            )
        )
        if not visible:
            raise APIError(404, f"No search {search_id}: see GET /searches for yours.")
        if change and not (caller.get("admin") or row.owner == caller["name"]):
            raise APIError(
                403,
                f"Search {search_id} belongs to {row.owner}: only they and administrators may "
                "change it.",
            )
        return row

    # --- reading -------------------------------------------------------------------------
    async def list(
        self,
        caller: dict,
        workspace: str | None = None,
        all_users: bool = False,
        job: str | None = None,
    ) -> list[dict]:
        """The searches the caller sees, newest first, each with its trials' counts and its
        best trial (not the trials themselves)."""
        member_of = await self._member_of(caller["name"])

        def read(session):
            q = select(Search).order_by(Search.created.desc(), Search.id.desc())
            if workspace is not None:
                q = q.where(Search.workspace == workspace)
            if job is not None:
                q = q.where(Search.job == job)
            out = []
            for row in session.scalars(q):
                visible = (
                    row.owner == caller["name"]
                    or (all_users and caller.get("admin"))
                    or (row.workspace != "default" and row.workspace in member_of)
                )
                if visible:
                    model = search_model(row, trials_of(session, row.id))
                    del model["trials"]
                    out.append(model)
            return out

        return await self.db.run(read)

    async def _model(self, search_id: int) -> dict:
        def read(session):
            row = session.get(Search, search_id)
            return search_model(row, trials_of(session, search_id))

        return await self.db.run(read)

    async def get(self, caller: dict, search_id: int) -> dict:
        await self._search(caller, search_id)
        return await self._model(search_id)

    async def trials(self, caller: dict, search_id: int) -> list[dict]:
        row = await self._search(caller, search_id)
        rows = await self.db.run(lambda s: trials_of(s, search_id))
        return [trial_model(t, row.best_trial) for t in rows]

    # --- making --------------------------------------------------------------------------
    async def _existing(self, owner: str, name: str):
        """(job, its latest version) of the owner's job of that name, or (None, None)."""

        def read(session):
            job = job_store.find_job(session, owner, name)
            if job is None:
                return None, None
            rows = job_store.versions_of(session, job)
            session.expunge_all()
            return job, rows[-1] if rows else None

        return await self.db.run(read)

    def _job_body(self, body: dict, name: str, job, problems: list[str]) -> dict:
        """The job's part of the request: as POST /jobs (new job) or as a re-run's changes."""
        out = {k: v for k, v in body.items() if k not in SEARCH_KEYS}
        given = out.pop("name", name)
        if given != name:
            problems.append(f"name {given!r} differs from job {name!r}: give the job's name once.")
        if job is None:
            out["name"] = name
            return out
        workspace = out.pop("workspace", None)
        if workspace not in (None, "", job.workspace):
            problems.append(
                f"job {name!r} is in workspace {job.workspace!r}: its searches are there too "
                "(leave workspace out)."
            )
        # an existing job's image and flavor are its own: the instance gives no defaults
        out.pop("instance", None)
        return out

    async def _flavor(self, owner: str, body: dict, previous: dict | None):
        """The flavor a trial runs with, as the job service will resolve it."""
        if body.get("flavor") is not None:
            return body["flavor"]
        if previous is not None:
            return previous.get("flavor")
        instance = body.get("instance")
        if isinstance(instance, str) and instance:
            servers = await self.jobs.hub.servers(owner) or {}
            options = (servers.get(instance) or {}).get("user_options") or {}
            if options.get("flavor"):
                return options["flavor"]
        return getattr(self.policy, "default_flavor", None)

    async def _check(self, owner: str, body: dict, job, latest) -> tuple[dict, dict, str]:
        """(search spec, job body, description) of a request checked whole; APIError 400
        with every problem found."""
        previous = json.loads(latest.spec) if latest is not None else None
        fixed = None
        if previous is not None and "hyperparameters" not in body:
            # an existing job's hyperparameters stay fixed, but for those the search sets
            space = body.get("space") if isinstance(body.get("space"), dict) else {}
            fixed = {k: v for k, v in previous["hyperparameters"].items() if k not in space}
        problems: list[str] = []
        try:
            spec = check_search(body, self.settings, fixed)
        except SearchError as e:
            problems.extend(e.problems)
            spec = None
        try:
            description = check_description(body.get("description"))
        except SpecError as e:
            problems.append(str(e))
            description = ""
        job_body = self._job_body(body, job.name if job else body["job"], job, problems)
        workspace = body.get("workspace")
        if job is None and workspace not in (None, "", "default"):
            if not isinstance(workspace, str) or workspace not in await self._member_of(owner):
                problems.append(f"You are not a member of workspace {workspace!r}.")
        if spec is not None:
            problem = await objective_problem(
                self.jobs,
                job,
                latest.version if latest is not None else None,
                previous,
                body,
                spec["objective"]["metric"],
            )
            if problem:
                problems.append(problem)
            nodes = body.get("nodes", (previous or {}).get("nodes", 1))
            flavor = await self._flavor(owner, body, previous)
            problems += await quota_problems(
                self.quotas, self.policy, owner, flavor, nodes, spec["parallel"]
            )
        if problems:
            raise APIError(400, " ".join(problems))
        return spec, job_body, description

    async def create(self, caller: dict, body: dict) -> dict:
        """A search, checked whole, with its first trial's job version; 201's model."""
        owner = caller["name"]
        name = body.get("job")
        try:
            check_name(name)
        except SpecError as e:
            raise APIError(400, f"job: {e}") from None
        job, latest = await self._existing(owner, name)
        if job is not None and latest is not None:
            kind = json.loads(latest.spec).get("kind") or "training"
            if kind != "training":
                raise APIError(
                    409, f"You have a {kind} job named {name!r}: pick another name for the job."
                )
        spec, job_body, description = await self._check(owner, body, job, latest)
        workspace = job.workspace if job is not None else body.get("workspace") or "default"
        async with self._lock:
            await self._check_active(owner)

            def insert(session):
                row = Search(
                    owner=owner,
                    job=name,
                    workspace=workspace if isinstance(workspace, str) else "default",
                    description=description,
                    spec=json.dumps(spec),
                    state=SEARCHING,
                )
                session.add(row)
                session.flush()
                return row

            search = await self.db.run(insert)
            try:
                await self._new_trial(search, spec, [], caller=caller, first=(job, job_body))
            except BaseException:
                await self.db.run(lambda s: _remove(s, search.id))
                raise
        log.info("search %s of %s over job %s made", search.id, owner, name)
        self.wakeup.set()
        return await self._model(search.id)

    async def _check_active(self, owner: str) -> None:
        def count(session):
            q = select(func.count(Search.id)).where(
                Search.owner == owner, Search.state.in_(SEARCH_ACTIVE)
            )
            return session.scalar(q)

        active = await self.db.run(count)
        limit = self.settings.max_active_searches
        if active >= limit:
            raise APIError(
                409,
                f"You have {active} searches running, the most one may have: wait for one to "
                "end, or stop one (POST /searches/<id>/stop).",
            )

    # --- stopping, deleting, the best trial again -------------------------------------------
    async def stop(self, caller: dict, search_id: int) -> dict:
        """Stop a search: its waiting trials at once, its running ones through their job
        versions (the loop ends the search once they ended)."""
        await self._search(caller, search_id, change=True)
        async with self._lock:
            search = await self.db.run(lambda s: s.get(Search, search_id))
            if search is not None and search.state == SEARCHING:
                await self._set_search(search, STOPPING, f"stopped by {caller['name']}")
                await self._stop_trials(search, "stopped with its search")
        self.wakeup.set()
        return await self._model(search_id)

    async def _stop_trials(self, search: Search, reason: str) -> None:
        """Stop the active trials: those without a running version end now, the others'
        versions are asked to stop (the loop sees them end)."""
        caller = {"name": search.owner}
        for row in await self.db.run(lambda s: trials_of(s, search.id)):
            if row.state not in TRIAL_ACTIVE:
                continue
            if row.version is None:
                await self._set_trial(row, state=TRIAL_STOPPED, reason=reason, finished=utcnow())
                continue
            try:
                model = await self.jobs.stop(
                    caller, search.owner, search.job, row.version, by=f"search {search.id}"
                )
            except APIError as e:
                log.info("search %s trial %s: cannot stop: %s", search.id, row.number, e)
                continue
            if model["state"] == job_store.STOPPED or (
                row.state == WAITING and model["state"] not in job_store.ACTIVE
            ):
                await self._set_trial(row, state=TRIAL_STOPPED, reason=reason, finished=utcnow())

    async def delete(self, caller: dict, search_id: int) -> dict:
        """Delete an ended search with its trials (their job versions stay); its model."""
        await self._search(caller, search_id, change=True)
        async with self._lock:
            search = await self.db.run(lambda s: s.get(Search, search_id))
            if search is None:
                raise APIError(404, f"No search {search_id}: see GET /searches for yours.")
            if search.state in SEARCH_ACTIVE:
                raise APIError(
                    409,
                    f"Search {search_id} is {search.state}: stop it first (POST "
                    f"/searches/{search_id}/stop), then delete it.",
                )
            model = search_model(search)
            await self.db.run(lambda s: _remove(s, search_id))
        return model

    async def rerun_best(self, caller: dict, search_id: int, body: dict) -> dict:
        """A new version of the search's job with its best trial's parameters (and the
        re-run changes in body); the version's model."""
        search = await self._search(caller, search_id)
        rows = await self.db.run(lambda s: trials_of(s, search_id))
        best = next((r for r in rows if r.number == search.best_trial), None)
        if best is None:
            raise APIError(
                409,
                f"Search {search_id} has no completed trial yet: wait until one completes.",
            )
        spec = json.loads(search.spec)
        changes = dict(body)
        extra = changes.get("hyperparameters") or {}
        if not isinstance(extra, dict):
            raise APIError(
                400, 'hyperparameters must be an object of name: value, e.g. {"lr": 0.01}.'
            )
        changes["hyperparameters"] = {
            **spec.get("hyperparameters", {}),
            **json.loads(best.params),
            **extra,
        }
        origin = {"search": search_id, "rerun_of_trial": best.number}
        return await self.jobs.rerun(
            caller, search.owner, search.job, changes, platform={"origin": origin}
        )


def _remove(session, search_id: int) -> None:
    session.execute(delete(Trial).where(Trial.search_id == search_id))
    session.execute(delete(Search).where(Search.id == search_id))
