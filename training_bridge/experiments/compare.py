"""Runs side by side: their hyperparameters, final metric values and curves, differences marked."""

from __future__ import annotations

import asyncio
import re

from sqlalchemy import select

from hub.service.api import APIError

from .store import Search, Trial

# owner/name/version, as the runs of a comparison are written
RUN_REF = re.compile(r"^(?P<owner>[^/\s]+)/(?P<name>[^/\s]+)/(?P<version>[0-9]{1,9})$")


def parse_run(text: str) -> tuple[str, str, int]:
    """(owner, name, version) of a run written owner/name/version; 400 for anything else."""
    match = RUN_REF.match(text.strip()) if isinstance(text, str) else None
    if match is None or int(match["version"]) < 1:
        raise APIError(
            400,
            f"run {text!r} is not owner/name/version: write each run as, for example, "
            "run=alice/train/3.",
        )
    return match["owner"], match["name"], int(match["version"])


def parse_search(text: str) -> int:
    """A search's id from the query; 400 unless it is a whole number."""
    if not isinstance(text, str) or not text.strip().isdigit() or len(text.strip()) > 9:
        raise APIError(400, f"search {text!r} is not a search's id: give its number, search=4.")
    return int(text)


def final_values(metrics: dict) -> dict:
    """Each metric's value at its highest step (the last written at that step)."""
    out = {}
    for name, points in metrics.items():
        if points:
            last = max(range(len(points)), key=lambda i: (points[i]["step"], i))
            out[name] = points[last]["value"]
    return out


def differs(rows: list[dict], names: list[str]) -> dict[str, bool]:
    """For each name, whether the rows do not all hold the same value (missing counts)."""
    return {n: len({_key(row.get(n)) for row in rows}) > 1 for n in names}


def _key(value):
    # 1 and 1.0 are the same value; True is not 1; lists and dicts by their text
    if isinstance(value, bool) or value is None:
        return (type(value).__name__, value)
    if isinstance(value, (int, float)):
        return ("number", float(value))
    return (type(value).__name__, repr(value))


class Comparer:
    """Builds comparisons of job versions the caller may see (through the job service)."""

    def __init__(self, *, db, jobs, settings):
        self.db = db
        self.jobs = jobs
        self.settings = settings

    async def compare(
        self, caller: dict, runs: list[str] | None = None, search: str | None = None
    ) -> dict:
        """The comparison of the runs given (owner/name/version) and of a search's trials
        (those that have a job version; a search with none yet compares nothing)."""
        refs: list[tuple[str, str, int]] = []
        if search not in (None, ""):
            refs += await self._search_runs(caller, parse_search(search))
        explicit = [parse_run(r) for r in runs or []]
        if search in (None, "") and not explicit:
            raise APIError(
                400,
                "Nothing to compare: give runs as run=owner/name/version (repeated), or a "
                "search as search=ID.",
            )
        for ref in explicit:
            if ref not in refs:
                refs.append(ref)
        limit = self.settings.max_compare_runs
        if len(refs) > limit:
            raise APIError(
                400,
                f"{len(refs)} runs are more than the {limit} a comparison may hold: compare "
                "fewer runs (pick them with run=owner/name/version).",
            )
        versions = await asyncio.gather(*(self.jobs.get_version(caller, *ref) for ref in refs))
        metrics = await asyncio.gather(*(self.jobs.metrics(caller, *ref) for ref in refs))
        trials = await self.db.run(lambda s: _trials_of(s, refs))
        return comparison(refs, versions, metrics, trials)

    async def _search_runs(self, caller: dict, search_id: int) -> list[tuple[str, str, int]]:
        def read(session):
            row = session.get(Search, search_id)
            if row is None:
                return None, []
            q = (
                select(Trial.version)
                .where(Trial.search_id == search_id, Trial.version.is_not(None))
                .order_by(Trial.number)
            )
            return (row.owner, row.job, row.workspace), list(session.scalars(q))

        found, versions = await self.db.run(read)
        if found is None or not await self._can_see(caller, found[0], found[2]):
            raise APIError(404, f"No search {search_id}: see GET /searches for yours.")
        owner, job, _ = found
        return [(owner, job, v) for v in dict.fromkeys(versions)]

    async def _can_see(self, caller: dict, owner: str, workspace: str) -> bool:
        # a search is seen by whoever sees its job: its owner, admins, its workspace's members
        if caller.get("admin") or owner == caller["name"]:
            return True
        return workspace != "default" and workspace in await self.jobs._member_of(caller["name"])


def _trials_of(session, refs) -> dict[tuple[str, str, int], dict]:
    """The trial each run ran, by (owner, name, version), where it ran one."""
    out = {}
    for owner, name in {(o, n) for o, n, _ in refs}:
        q = (
            select(Trial, Search.id)
            .join(Search, Trial.search_id == Search.id)
            .where(Search.owner == owner, Search.job == name, Trial.version.is_not(None))
        )
        for trial, search_id in session.execute(q):
            out[(owner, name, trial.version)] = {
                "search": search_id,
                "number": trial.number,
                "state": trial.state,
            }
    return out


def comparison(refs, versions: list[dict], metrics: list[dict], trials: dict) -> dict:
    """The comparison's JSON from each run's version model, metrics and trial (if any)."""
    runs = []
    for ref, version, points in zip(refs, versions, metrics, strict=True):
        trial = trials.get(ref)
        name = ref[1]
        label = f"{name} trial {trial['number']}" if trial else f"{name} v{ref[2]}"
        runs.append(
            {
                "owner": ref[0],
                "name": name,
                "version": ref[2],
                "label": label,
                "state": version["state"],
                "hyperparameters": dict(version["spec"].get("hyperparameters") or {}),
                "final": final_values(points),
                "trial": trial,
            }
        )
    parameters = sorted({p for run in runs for p in run["hyperparameters"]})
    names = sorted({m for points in metrics for m, values in points.items() if values})
    marks = differs([run["hyperparameters"] for run in runs], parameters)
    marks.update(differs([run["final"] for run in runs], names))
    curves = {
        m: [
            {"run": i, "points": [[p["step"], p["value"]] for p in points[m]]}
            for i, points in enumerate(metrics)
            if points.get(m)
        ]
        for m in names
    }
    return {
        "runs": runs,
        "parameters": parameters,
        "metrics": names,
        "differs": marks,
        "curves": curves,
    }
