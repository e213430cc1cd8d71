"""HTTP handler of run comparisons: GET /experiments/compare?run=owner/name/version&search=ID."""

from __future__ import annotations

from tornado import web

from hub.service.api import APIHandler, needs_scope

from .compare import Comparer


class CompareHandler(APIHandler):
    """GET: runs side by side (repeated run=owner/name/version, or a search's trials with
    search=ID): hyperparameters, final metric values, what differs, the curves."""

    @property
    def comparer(self) -> Comparer:
        return Comparer(
            db=self.db,
            jobs=self.settings["job_service"],
            settings=self.settings["workbench_settings"].feature("experiments"),
        )

    @web.authenticated
    @needs_scope("experiments:read")
    async def get(self):
        runs = self.get_query_arguments("run")
        search = self.get_query_argument("search", None)
        self.write_json(await self.comparer.compare(self.current_user, runs, search))


default_handlers = [
    (r"/experiments/compare", CompareHandler),
]
