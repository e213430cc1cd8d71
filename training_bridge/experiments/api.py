"""HTTP handlers of hyperparameter searches: start, list, trials, stop, delete, re-run the best."""

from __future__ import annotations

from urllib.parse import quote

from tornado import web

from hub.service.api import APIHandler, OwnedCollection, needs_scope

from .searches import SearchService

SEARCH = r"/searches/(?P<search_id>[0-9]{1,9})"


class SearchAPIHandler(APIHandler):
    """Base of the search handlers: audited as resource "search", <owner>/<id>."""

    owner: str | None = None

    @property
    def searches(self) -> SearchService:
        return self.settings["search_service"]

    def audit_resource_id(self):
        search_id = self.path_kwargs.get("search_id", "")
        return f"{self.owner or self.actor()}/{search_id}"


class SearchesHandler(OwnedCollection, SearchAPIHandler):
    """GET /searches lists the searches you see; POST /searches starts one."""

    audit_events = {"POST": ("createHyperparameterSearch", "search")}

    def audit_resource_id(self):
        return f"{self.actor()}/{(self.audit_details or {}).get('id', '')}"

    @web.authenticated
    @needs_scope("experiments:read")
    async def get(self):
        workspace, all_users = self.listing_query()
        job = self.get_query_argument("job", "").strip() or None
        self.write_json(await self.searches.list(self.current_user, workspace, all_users, job=job))

    @web.authenticated
    @needs_scope("experiments:write")
    async def post(self):
        body = self.get_json_body()
        self.audit_details = {"job": str(body.get("job", ""))[:64]}
        model = await self.searches.create(self.current_user, body)
        self.audit_details.update(
            id=model["id"], trials=model["trials_planned"], parallel=model["parallel"]
        )
        self.set_header("Location", f"{self.settings['api_prefix']}/searches/{model['id']}")
        self.write_json(model, status=201)


class SearchHandler(SearchAPIHandler):
    """GET a search with its trials; DELETE an ended one (its job versions stay)."""

    audit_events = {"DELETE": ("deleteHyperparameterSearch", "search")}

    @web.authenticated
    @needs_scope("experiments:read")
    async def get(self, search_id):
        self.write_json(await self.searches.get(self.current_user, int(search_id)))

    @web.authenticated
    @needs_scope("experiments:write")
    async def delete(self, search_id):
        model = await self.searches.delete(self.current_user, int(search_id))
        self.owner = model["owner"]
        self.audit_details = {"job": model["job"]}
        self.no_content()


class TrialsHandler(SearchAPIHandler):
    """GET a search's trials."""

    @web.authenticated
    @needs_scope("experiments:read")
    async def get(self, search_id):
        self.write_json(await self.searches.trials(self.current_user, int(search_id)))


class StopHandler(SearchAPIHandler):
    """POST: stop a search and its waiting and running trials."""

    audit_events = {"POST": ("stopHyperparameterSearch", "search")}

    @web.authenticated
    @needs_scope("experiments:write")
    async def post(self, search_id):
        model = await self.searches.stop(self.current_user, int(search_id))
        self.owner = model["owner"]
        self.write_json(model)


class RerunBestHandler(SearchAPIHandler):
    """POST: a new version of the search's job with its best trial's parameters."""

    audit_events = {"POST": ("createModelArtsTrainVersion", "search")}

    @web.authenticated
    @needs_scope("jobs:submit")
    async def post(self, search_id):
        body = self.get_json_body()
        model = await self.searches.rerun_best(self.current_user, int(search_id), body)
        self.owner = model["owner"]
        self.audit_details = {"job": model["name"], "version": model["version"]}
        self.set_header(
            "Location",
            f"{self.settings['api_prefix']}/jobs/{quote(model['owner'])}/{model['name']}/versions/"
            f"{model['version']}",
        )
        self.write_json(model, status=201)


default_handlers = [
    (r"/searches", SearchesHandler),
    (SEARCH, SearchHandler),
    (SEARCH + r"/trials", TrialsHandler),
    (SEARCH + r"/stop", StopHandler),
    (SEARCH + r"/rerun-best", RerunBestHandler),
]
