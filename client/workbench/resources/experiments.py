"""Experiments: hyperparameter searches whose trials are versions of a job, and runs compared.

    search = await client.experiments.search(
        "train.py", image="pytorch", hyperparameters={"epochs": 10},
        space={"lr": "float:1e-4:1:log", "x": {"type": "float", "low": -1, "high": 1},
               "opt": ["sgd", "adam"]},
        objective="loss", direction="minimize", trials=8, parallel=2)
    await search.wait(progress=True)
    best = search.best_trial                  # .number, .params, .value, .version
    job = await search.rerun_best()           # a new version of the job with those parameters
    comparison = await client.experiments.compare(search)
    comparison.table()                        # one row per run: parameters and final metrics

With the sync client (and `import workbench`: workbench.search(...), workbench.compare(...))
the same calls block.
"""

from __future__ import annotations

import asyncio
import base64
import html
import math
import os
import sys
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from .. import names
from ..errors import WorkbenchError
from . import Namespace, drop_none, segment
from .jobs import Job, JobSourceError, build_archive, default_job_name, parse_value

if TYPE_CHECKING:
    from ..client import AsyncWorkbenchClient

# a search in one of these states has ended: it changes no more
FINAL_STATES = frozenset({"completed", "stopped", "failed"})
# a trial in one of these states has ended
TRIAL_FINAL_STATES = frozenset({"complete", "pruned", "failed", "stopped"})

PARAM_FORMS = (
    "NAME=float:LOW:HIGH[:log], NAME=int:LOW:HIGH[:STEP|:log] or NAME=choice:A,B,C "
    "(for example lr=float:1e-4:1:log, layers=int:1:8, opt=choice:sgd,adam)"
)


class SearchInputError(WorkbenchError, ValueError):
    """A search's parameters or code that cannot be sent as given (a malformed parameter
    range, code that does not fit). Raised before any request."""

    def __init__(self, message: str):
        super().__init__(400, message)


class SearchFailed(WorkbenchError):
    """wait(check=True) saw the search fail or be stopped; .data is its final JSON."""

    def __init__(self, data: dict):
        self.data = data
        reason = f": {data['reason']}" if data.get("reason") else ""
        super().__init__(409, f"Search {data.get('id')} {data.get('state')}{reason}")


# --- parameter ranges ---------------------------------------------------------------------


def _number(text: str, what: str, whole: bool = False) -> float | int:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{what} {text!r} is not a number") from None
    if whole:
        if not value.is_integer():
            raise ValueError(f"{what} {text!r} is not a whole number")
        return int(value)
    return value


def parse_range(text: str, name: str = "parameter") -> dict:
    """A search space entry from its short form: "float:1e-4:1:log", "int:1:8[:2|:log]",
    "choice:sgd,adam" (choices as JSON when they parse: 1, 0.5, true; else text).
    ValueError saying which forms there are."""
    kind, _, rest = text.partition(":")
    parts = rest.split(":") if rest else []
    what = f"{name}={text!r}"
    if kind in ("choice", "categorical"):
        if not rest:
            raise ValueError(f"{what} gives no choices: {PARAM_FORMS}")
        return {"type": "categorical", "choices": [parse_value(c) for c in rest.split(",")]}
    if kind not in ("float", "int") or len(parts) not in (2, 3):
        raise ValueError(f"{what} is not one of {PARAM_FORMS}")
    whole = kind == "int"
    entry: dict[str, Any] = {
        "type": kind,
        "low": _number(parts[0], f"{what}: low", whole),
        "high": _number(parts[1], f"{what}: high", whole),
    }
    if len(parts) == 3:
        if parts[2] == "log":
            entry["log"] = True
        elif whole:
            entry["step"] = _number(parts[2], f"{what}: step", whole=True)
        else:
            raise ValueError(f"{what}: a float range ends with ':log' or nothing ({PARAM_FORMS})")
    return entry


def parse_params(items: Iterable[str]) -> dict[str, dict]:
    """A search space from command-line items ["lr=float:1e-4:1:log", "opt=choice:a,b"];
    ValueError naming a malformed item."""
    space: dict[str, dict] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--param {item!r} is not {PARAM_FORMS}")
        space[name.strip()] = parse_range(text, name.strip())
    return space


def space_body(space: dict) -> dict:
    """The API's space from the SDK's: each entry a dict as the API takes it, a short form
    ("float:0:1", see parse_range) or a list of choices. SearchInputError on a malformed
    short form or an entry of another kind."""
    if not isinstance(space, dict):
        raise SearchInputError(
            'space must be a dict of parameter name -> range, e.g. {"lr": "float:1e-4:1:log"}'
        )
    body: dict[str, Any] = {}
    for name, entry in space.items():
        if isinstance(entry, str):
            try:
                body[name] = parse_range(entry, name)
            except ValueError as e:
                raise SearchInputError(str(e)) from None
        elif isinstance(entry, list | tuple):
            body[name] = {"type": "categorical", "choices": list(entry)}
        elif isinstance(entry, dict):
            body[name] = dict(entry)
        else:
            raise SearchInputError(
                f"space[{name!r}] is a {type(entry).__name__}: give a dict "
                '({"type": "float", "low": 0, "high": 1}), a short form ("float:0:1") or a '
                "list of choices."
            )
    return body


# --- searches and trials ------------------------------------------------------------------


def _search_path(search_id) -> str:
    return f"searches/{segment(search_id)}"


def format_value(value) -> str:
    """A number as tables show it: 4 significant digits; anything else as it is."""
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value).lower()
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return str(value)


class Trial:
    """One trial of a search as last seen: .number, .params, .state, .value (the objective's
    final value; for a pruned trial its last one), .version (the job version that ran it),
    .steps, .intermediate ({step: value}), .reason, .best, .data (its JSON).

    .run is "owner/job/version", what compare() takes."""

    def __init__(self, data: dict, owner: str, job: str, search: int | None = None):
        self.data = data
        self.owner = owner
        self.job = job
        self.search = search

    def __repr__(self) -> str:
        value = "" if self.value is None else f" value {format_value(self.value)}"
        params = ", ".join(f"{k}={format_value(v)}" for k, v in self.params.items())
        return f"<Trial {self.number} {self.state}{value} ({params})>"

    number = property(lambda self: int(self.data["number"]))
    params = property(lambda self: dict(self.data.get("params") or {}))
    state = property(lambda self: self.data.get("state", ""))
    value = property(lambda self: self.data.get("value"))
    version = property(lambda self: self.data.get("version"))
    steps = property(lambda self: int(self.data.get("steps") or 0))
    reason = property(lambda self: self.data.get("reason") or "")
    best = property(lambda self: bool(self.data.get("best")))

    @property
    def intermediate(self) -> dict[int, float]:
        return {int(k): v for k, v in (self.data.get("intermediate") or {}).items()}

    @property
    def done(self) -> bool:
        return self.state in TRIAL_FINAL_STATES

    @property
    def run(self) -> str | None:
        """ "owner/job/version" of the trial's job version (None before it has one)."""
        if self.version is None:
            return None
        return f"{self.owner}/{self.job}/{self.version}"


class Search:
    """A hyperparameter search as last seen: .id, .owner, .job (the job whose versions are its
    trials), .state, .reason, .counts (trials by state), .best_trial, .data (its JSON).

    Its calls: refresh(), trials(), wait(), stop(), rerun_best(), compare(), delete()."""

    def __init__(self, client: AsyncWorkbenchClient, data: dict):
        self._client = client
        self.data = data
        self.id: int = int(data["id"])
        self.owner: str = data["owner"]
        self.job: str = data["job"]

    def __repr__(self) -> str:
        best = self.best_trial
        best = f", best trial {best.number} ({format_value(best.value)})" if best else ""
        return f"<Search {self.id} of {self.owner}/{self.job} {self.state}{best}>"

    @property
    def _path(self) -> str:
        return _search_path(self.id)

    @property
    def state(self) -> str:
        """running, stopping, completed, stopped or failed (as last seen)."""
        return self.data.get("state", "")

    @property
    def reason(self) -> str:
        return self.data.get("reason") or ""

    @property
    def done(self) -> bool:
        """Whether the search had ended when last seen."""
        return self.state in FINAL_STATES

    @property
    def objective(self) -> dict:
        """{"metric", "direction"}."""
        return dict(self.data.get("objective") or {})

    @property
    def trials_planned(self) -> int:
        return int(self.data.get("trials_planned") or 0)

    @property
    def counts(self) -> dict[str, int]:
        """How many trials are in each state (as last seen)."""
        counts = self.data.get("counts")
        if counts is None:
            counts = {}
            for trial in self.data.get("trials") or []:
                counts[trial["state"]] = counts.get(trial["state"], 0) + 1
        return {state: n for state, n in counts.items() if n}

    @property
    def best_trial(self) -> Trial | None:
        """The best complete trial so far (as last seen), None before one completed."""
        best = self.data.get("best")
        if best is None and self.data.get("best_trial") is not None:
            number = self.data["best_trial"]
            best = next((t for t in self.data.get("trials") or [] if t["number"] == number), None)
        return None if best is None else self._trial(best)

    def _trial(self, data: dict) -> Trial:
        return Trial(data, self.owner, self.job, self.id)

    async def refresh(self) -> Search:
        """Read the search again (with its trials); returns the search itself."""
        self.data = await self._client.api("GET", self._path)
        return self

    async def trials(self) -> list[Trial]:
        """Every trial so far, the first first."""
        trials = await self._client.api("GET", f"{self._path}/trials")
        self.data["trials"] = trials
        return [self._trial(t) for t in sorted(trials, key=lambda t: t["number"])]

    def progress_line(self) -> str:
        """What the search has done, in one line: trials ended of planned, by state, best."""
        counts = self.counts
        ended = sum(n for state, n in counts.items() if state in TRIAL_FINAL_STATES)
        states = ", ".join(f"{n} {state}" for state, n in counts.items())
        line = f"Search {self.id} ({self.job}) {self.state}: {ended} of {self.trials_planned} "
        line += f"trials ended ({states or 'none yet'})"
        best = self.best_trial
        if best is not None:
            metric = self.objective.get("metric", "value")
            line += f"; best trial {best.number}: {metric} {format_value(best.value)}"
        if self.reason:
            line += f"; {self.reason}"
        return line

    async def wait(
        self,
        timeout: float | None = None,  # noqa: ASYNC109 - seconds, as Job.wait(timeout)
        poll: float = 2.0,
        *,
        progress: bool | Callable[[Search], object] = False,
        check: bool = False,
    ) -> Search:
        """Wait until the search has ended (completed, stopped or failed); the search itself.

        progress=True prints a line each time its trials change (see progress_line());
        a callable is called with the search after each look instead. check=True raises
        SearchFailed (a WorkbenchError) unless it completed. TimeoutError after `timeout`
        seconds (None: no limit).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        shown = None
        while True:
            await self.refresh()
            if callable(progress):
                progress(self)
            elif progress:
                line = self.progress_line()
                if line != shown:
                    print(line, file=sys.stdout, flush=True)
                    shown = line
            if self.done:
                if check and self.state != "completed":
                    raise SearchFailed(self.data)
                return self
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(
                    f"Search {self.id} is still {self.state} after {timeout:g} s "
                    f"({self.progress_line()})."
                )
            delay = poll if deadline is None else min(poll, max(deadline - time.monotonic(), 0))
            await asyncio.sleep(delay)

    async def stop(self) -> Search:
        """Stop the search and its waiting and running trials; the search itself."""
        self.data = await self._client.api("POST", f"{self._path}/stop")
        return self

    async def rerun_best(self, **changes) -> Job:
        """A new version of the job with the best trial's parameters (and any of
        Job.rerun()'s changes: flavor=, hyperparameters= merged over them, ...); a 409
        WorkbenchError when no trial completed."""
        body = {key: value for key, value in changes.items() if value is not None}
        data = await self._client.api("POST", f"{self._path}/rerun-best", body)
        return Job(self._client, data)

    async def compare(self) -> Comparison:
        """The search's trials' runs side by side."""
        return await _compare(self._client, search=self.id)

    async def delete(self) -> None:
        """Delete the search (stop it first); its job versions stay."""
        await self._client.api("DELETE", self._path)


# --- comparisons --------------------------------------------------------------------------


def _unwrap(value):
    """The object under a sync client's wrapper (a Search or Job from the sync client)."""
    try:
        return object.__getattribute__(value, "_namespace")
    except AttributeError:
        return value


def run_ref(run, user: str = "") -> str:
    """ "owner/name/version" of a run: a Job, a Trial, that text, "name/version" (the user's
    own: "/name/version" when user is ""), or a (name, version) or (owner, name, version)
    tuple. TypeError/ValueError else."""
    run = _unwrap(run)
    if isinstance(run, Trial):
        if run.run is None:
            raise ValueError(f"Trial {run.number} has no job version yet.")
        return run.run
    if isinstance(run, Job) or all(hasattr(run, a) for a in ("owner", "name", "version")):
        return f"{run.owner}/{run.name}/{run.version}"
    if isinstance(run, tuple | list) and len(run) in (2, 3):
        parts = [str(p) for p in run]
    elif isinstance(run, str):
        parts = run.strip("/").split("/")
    else:
        raise TypeError(
            "a run is a Job, a Trial, 'owner/name/version', 'name/version' or a "
            f"(name, version) tuple; got {type(run).__name__}"
        )
    if len(parts) not in (2, 3) or not all(parts) or not parts[-1].isdigit():
        raise ValueError(
            f"run {run!r} is not owner/name/version or name/version (for example tune/3)"
        )
    if len(parts) == 2:
        parts = [user, *parts]
    return "/".join(parts)


class Comparison:
    """Runs side by side: .runs (each with "label", "state", "hyperparameters", "final":
    {metric: value at the highest step}, "trial"), .parameters and .metrics (their names),
    .differs ({name: whether the runs' values differ}), .curves ({metric: [{"run": index,
    "points": [[step, value], ...]}]}). table() gives one row per run; in a notebook it
    shows as a table with the columns that differ marked."""

    def __init__(self, data: dict):
        self.data = data

    def __repr__(self) -> str:
        return f"<Comparison of {len(self.runs)} runs: {', '.join(self.labels)}>"

    runs = property(lambda self: list(self.data.get("runs") or []))
    parameters = property(lambda self: list(self.data.get("parameters") or []))
    metrics = property(lambda self: list(self.data.get("metrics") or []))
    differs = property(lambda self: dict(self.data.get("differs") or {}))
    curves = property(lambda self: dict(self.data.get("curves") or {}))

    @property
    def labels(self) -> list[str]:
        return [r.get("label") or f"{r['name']} v{r['version']}" for r in self.runs]

    def curve(self, metric: str, run: int) -> list[tuple[int, float]]:
        """The points (step, value) of one run's metric (run: its index in .runs)."""
        for line in self.curves.get(metric) or []:
            if line["run"] == run:
                return [(int(s), v) for s, v in line["points"]]
        return []

    def columns(self) -> list[str]:
        """The table's columns: run, state, each parameter, each metric."""
        return ["run", "state", *self.parameters, *self.metrics]

    def table(self) -> list[dict]:
        """One row per run: {"run": label, "state", parameter: value..., metric: final...}
        (None where a run has no such parameter or metric)."""
        rows = []
        for label, run in zip(self.labels, self.runs, strict=True):
            row: dict[str, Any] = {"run": label, "state": run.get("state", "")}
            params = run.get("hyperparameters") or {}
            final = run.get("final") or {}
            for name in self.parameters:
                row[name] = params.get(name)
            for name in self.metrics:
                row.setdefault(name, final.get(name))
            rows.append(row)
        return rows

    def _repr_html_(self) -> str:
        differs = self.differs
        columns = self.columns()
        kinds = {n: "parameter" for n in self.parameters} | {n: "metric" for n in self.metrics}
        style = ' style="background: #fff3cd"'
        head = []
        for name in columns:
            marked = differs.get(name, False)
            title = f"{kinds.get(name, '')}{', differs between the runs' if marked else ''}"
            head.append(
                f'<th class="{"differs" if marked else "same"}" title="{html.escape(title)}"'
                f"{style if marked else ''}>{html.escape(name)}{' ≠' if marked else ''}</th>"
            )
        body = []
        for row in self.table():
            cells = []
            for name in columns:
                marked = differs.get(name, False)
                cells.append(
                    f'<td class="{"differs" if marked else "same"}"{style if marked else ""}>'
                    f"{html.escape(format_value(row.get(name)))}</td>"
                )
            body.append(f"<tr>{''.join(cells)}</tr>")
        return (
            '<table class="workbench-comparison">'
            "<caption>Columns marked ≠ differ between the runs.</caption>"
            f"<thead><tr>{''.join(head)}</tr></thead><tbody>{''.join(body)}</tbody></table>"
        )


async def _compare(client: AsyncWorkbenchClient, runs=None, search=None) -> Comparison:
    """GET /experiments/compare for runs and/or a search's trials."""
    runs = _unwrap(runs)
    if isinstance(runs, Search):
        runs, search = None, runs.id
    search = _unwrap(search)
    if isinstance(search, Search):
        search = search.id
    params: list[tuple[str, Any]] = []
    if runs is not None:
        one = isinstance(runs, tuple) and all(isinstance(p, str | int) for p in runs)
        if one or isinstance(runs, str) or not isinstance(runs, Iterable):
            runs = [runs]
        try:
            refs = [run_ref(run) for run in runs]
        except (TypeError, ValueError) as e:
            raise SearchInputError(str(e)) from None
        if any(ref.startswith("/") for ref in refs):  # the user's own "name/version"
            user = await client.user_name()
            refs = [f"{user}{ref}" if ref.startswith("/") else ref for ref in refs]
        params += [("run", ref) for ref in refs]
    if search is not None:
        params.append(("search", str(search)))
    if not params:
        raise SearchInputError("compare() needs runs or a search.")
    # repeated ?run= parameters: httpx takes them as a list of pairs
    return Comparison(await client.api("GET", "experiments/compare", params=params))


# --- the namespace ------------------------------------------------------------------------


class Experiments(Namespace):
    """Hyperparameter searches (their trials are versions of one of your jobs) and
    comparisons of runs."""

    async def search(
        self,
        source: str | os.PathLike | None = None,
        *,
        space: dict,
        objective: str | dict = "loss",
        direction: str = "minimize",
        trials: int = 8,
        parallel: int = 1,
        job: str | None = None,
        sampler: str | dict = "tpe",
        pruner: str | dict = "median",
        seed: int | None = None,
        hyperparameters: dict | None = None,
        command: str | None = None,
        runtime: str | None = None,
        image: str | None = None,
        flavor: str | None = None,
        nodes: int | None = None,
        processes_per_node: int | None = None,
        inputs: dict | None = None,
        metrics: list[dict] | None = None,
        max_run_seconds: float | None = None,
        max_restarts: int | None = None,
        description: str | None = None,
        workspace: str | None = None,
        kind: str | None = None,
    ) -> Search:
        """Start a hyperparameter search; the Search (its first trials usually queued).

        source: local code as jobs.submit() takes it (a .py file, a notebook, a folder with
        `command`), run as a new job named `job` (default: from the file's name); or None
        and `job` the name of one of your jobs, whose latest version is the base (the other
        settings given change it). space: {name: range}, each range a dict as the API takes
        it ({"type": "float", "low": 1e-4, "high": 1, "log": True}; "int" with "step";
        "categorical" with "choices"), a short form ("float:1e-4:1:log", "int:1:8",
        "choice:sgd,adam") or a list of choices. objective: the metric to optimise (the
        scripts report it with workbench.training.report_metric), or {"metric",
        "direction"}. sampler: tpe, random or grid (or a dict with "seed",
        "startup_trials"); seed: the sampler's. pruner: median or none (or a dict with
        "startup_trials", "warmup_steps"). hyperparameters: the same in every trial.
        A WorkbenchError with status 400 says what is wrong with the request.
        """
        body: dict[str, Any] = {}
        if source is not None:
            kind, entry, archive = await asyncio.to_thread(build_archive, source, kind)
            if kind == "folder" and not command:
                raise JobSourceError(
                    "A folder runs with a command: give command= (for example 'python "
                    f"train.py' for {os.path.join(os.fspath(source), 'train.py')})."
                )
            job = job or default_job_name(source)
            body["source"] = {"kind": kind, "archive": base64.b64encode(archive).decode()}
            if entry is not None:
                body["source"]["entry"] = entry
            # inside an instance, trials run on its image and flavor unless told otherwise
            instance = os.environ.get("JUPYTERHUB_SERVER_NAME")
            if instance and (image is None or flavor is None):
                body["instance"] = instance
        elif not job:
            raise SearchInputError(
                "Give the code to search with (a .py file, notebook or folder) or job= the "
                "name of one of your jobs."
            )
        problem = names.job_name_problem(job)
        if problem:
            raise SearchInputError(problem)
        if isinstance(objective, str):
            objective = {"metric": objective, "direction": direction}
        if seed is not None:
            sampler = {**(sampler if isinstance(sampler, dict) else {"type": sampler})}
            sampler["seed"] = seed
        body.update(
            job=job,
            space=space_body(space),
            objective=dict(objective),
            trials=trials,
            parallel=parallel,
            sampler=sampler,
            pruner=pruner,
        )
        body.update(
            drop_none(
                hyperparameters=hyperparameters,
                command=command,
                runtime=runtime,
                image=image,
                flavor=flavor,
                nodes=nodes,
                processes_per_node=processes_per_node,
                inputs=inputs,
                metrics=metrics,
                max_run_seconds=max_run_seconds,
                max_restarts=max_restarts,
                description=description,
                workspace=workspace,
            )
        )
        return Search(self._client, await self._client.api("POST", "searches", body))

    async def searches(
        self,
        workspace: str | None = None,
        *,
        job: str | None = None,
        all: bool = False,  # noqa: A002 - the API's word
    ) -> list[dict]:
        """The searches you see (yours and your workspaces'), newest first, each with its
        trial counts and best trial; only `workspace`'s or `job`'s if given; all=True:
        everyone's (administrators)."""
        params = drop_none(workspace=workspace or None, job=job or None)
        if all:
            params["all"] = "1"
        return await self._client.api("GET", "searches", params=params or None)

    list = searches  # calling the namespace lists: client.experiments()

    async def get(self, search_id: int) -> Search:
        """A search with its trials."""
        return Search(self._client, await self._client.api("GET", _search_path(search_id)))

    async def trials(self, search_id: int) -> list[Trial]:
        """A search's trials, the first first."""
        return await (await self.get(search_id)).trials()

    async def stop(self, search_id: int) -> Search:
        """Stop a search and its waiting and running trials."""
        data = await self._client.api("POST", f"{_search_path(search_id)}/stop")
        return Search(self._client, data)

    async def rerun_best(self, search_id: int, **changes) -> Job:
        """A new version of the search's job with its best trial's parameters."""
        return await (await self.get(search_id)).rerun_best(**changes)

    async def delete(self, search_id: int) -> None:
        """Delete a search that has ended; its job versions stay."""
        await self._client.api("DELETE", _search_path(search_id))

    async def compare(self, runs=None, *, search: int | Search | None = None) -> Comparison:
        """Runs side by side: their parameters, final metrics, what differs, the curves.

        runs: a list of Jobs, Trials, "owner/name/version" or "name/version" texts,
        (name, version) tuples; or a Search (its trials' runs). search: a search (or its
        id) whose trials' runs are added."""
        return await _compare(self._client, runs, search)
