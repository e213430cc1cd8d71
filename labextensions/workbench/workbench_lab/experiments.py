"""Experiments from this instance: relay the panel's hyperparameter searches and comparisons
of runs to the platform, the search's code taken from this instance's files like a job's."""

from __future__ import annotations

import asyncio
import base64
import re

from jupyter_server.auth.decorator import authorized
from tornado import web

from .platform import PlatformError
from .training import (
    JOB_FIELDS,
    RERUN_FIELDS,
    STOP_LIMIT,
    SUBMIT_LIMIT,
    TrainingHandler,
    code_source,
    resolve_source,
)

EXPERIMENTS_UNAVAILABLE = "Hyperparameter searches are not available on this platform version."
# what the search form adds to the submit form's fields, passed on as they are
SEARCH_FIELDS = ("space", "objective", "trials", "parallel", "sampler", "pruner")
# a run of a comparison: owner/name/version
RUN = re.compile(r"^[^/\s]+/[^/\s]+/\d+$")


def search_path(search_id: str, *rest: str) -> str:
    """The platform API path of a search (or below it)."""
    return "/".join(["searches", search_id, *rest])


class ExperimentsHandler(TrainingHandler):
    """A relay of the platform's experiments API with this instance's token."""

    @staticmethod
    def http_error(e: PlatformError) -> web.HTTPError:
        if e.missing_route:
            return web.HTTPError(501, EXPERIMENTS_UNAVAILABLE)
        return web.HTTPError(e.code, e.message)


class SearchesHandler(ExperimentsHandler):
    """GET: the searches the user may see. POST: start a search over a file, notebook or
    folder of this instance (a new job, or new versions of the job of that name), or over
    an existing job without `path`."""

    @web.authenticated
    @authorized
    async def get(self):
        params = {
            k: self.get_argument(k) for k in ("workspace", "all", "job") if self.get_argument(k, "")
        }
        self.write_json(await self.api("GET", "searches", params=params or None))

    @web.authenticated
    @authorized
    async def post(self):
        body = self.json_body()
        path = body.get("path")
        name = body.get("job") or body.get("name")
        if name is not None and not isinstance(name, str):
            raise web.HTTPError(400, "The job's name must be text.")
        search = {}
        if path:
            root = self.contents_manager.root_dir
            # a folder without its command is refused before its files are read
            local = await asyncio.to_thread(resolve_source, root, path)
            command = body.get("command")
            if local.is_dir() and not (isinstance(command, str) and command.strip()):
                raise web.HTTPError(
                    400, "A folder needs the command that runs it, e.g. `python train.py`."
                )
            default_name, kind, entry, archive = await asyncio.to_thread(code_source, root, path)
            name = name or default_name
            search["source"] = {"kind": kind, "archive": base64.b64encode(archive).decode()}
            if entry is not None:
                search["source"]["entry"] = entry
        elif not name:
            raise web.HTTPError(
                400,
                "Give the file, notebook or folder to search over, or the name of one of "
                "your jobs.",
            )
        search["job"] = name
        for field in (*JOB_FIELDS, *SEARCH_FIELDS):
            value = body.get(field)
            if value is not None and value != "":
                search[field] = value
        if search.get("source", {}).get("kind") == "notebook":
            search.pop("command", None)
        if path and self.platform.instance:
            search["instance"] = self.platform.instance
        self.log.info(
            "workbench_lab: starting a search over job %s (%s)",
            name,
            f"code {path}" if path else "its latest version's code",
        )
        result = await self.api("POST", "searches", search, limit=SUBMIT_LIMIT)
        self.write_json(result, status=201)


class SearchHandler(ExperimentsHandler):
    @web.authenticated
    @authorized
    async def get(self, search_id):
        self.write_json(await self.api("GET", search_path(search_id)))

    @web.authenticated
    @authorized
    async def delete(self, search_id):
        await self.api("DELETE", search_path(search_id))
        self.set_status(204)
        self.finish()


class StopSearchHandler(ExperimentsHandler):
    @web.authenticated
    @authorized
    async def post(self, search_id):
        self.write_json(await self.api("POST", search_path(search_id, "stop"), limit=STOP_LIMIT))


class RerunBestHandler(ExperimentsHandler):
    """A new version of the search's job with its best trial's parameters (and the re-run
    edits sent)."""

    @web.authenticated
    @authorized
    async def post(self, search_id):
        body = self.json_body()
        edits = {k: body[k] for k in RERUN_FIELDS if k in body and body[k] is not None}
        path = search_path(search_id, "rerun-best")
        result = await self.api("POST", path, edits, limit=SUBMIT_LIMIT)
        self.write_json(result, status=201)


class CompareHandler(ExperimentsHandler):
    """Runs side by side: ?run=owner/name/version (repeated) and/or ?search=ID."""

    @web.authenticated
    @authorized
    async def get(self):
        runs = [r.strip() for r in self.get_arguments("run") if r.strip()]
        search = self.get_argument("search", "").strip()
        if not runs and not search:
            raise web.HTTPError(
                400, "Pick the runs to compare: run=owner/name/version (repeated) or search=ID."
            )
        bad = [r for r in runs if not RUN.match(r)]
        if bad:
            raise web.HTTPError(
                400, f"{bad[0]!r} is not a run: give it as owner/name/version, e.g. me/train/2."
            )
        if search and not search.isdigit():
            raise web.HTTPError(400, f"search must be a search's number (got {search!r}).")
        params: dict = {}
        if runs:
            params["run"] = runs
        if search:
            params["search"] = search
        self.write_json(await self.api("GET", "experiments/compare", params=params))


def routes() -> list[tuple[str, type]]:
    """The extension's experiments routes under <base_url>/workbench/."""
    search = r"/workbench/searches/(\d+)"
    return [
        (r"/workbench/searches", SearchesHandler),
        (search, SearchHandler),
        (search + r"/stop", StopSearchHandler),
        (search + r"/rerun-best", RerunBestHandler),
        (r"/workbench/compare", CompareHandler),
    ]
