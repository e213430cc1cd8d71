"""The hub's training job pages: the list of jobs with a submit form, and one job's page."""

from __future__ import annotations

from jupyterhub.services.auth import HubOAuthenticated
from tornado import web

from spawner.templating import render_template


class JobsPageBase(HubOAuthenticated, web.RequestHandler):
    """A page of the jobs feature; its script calls the platform API with the service's
    cookie and XSRF token."""

    def page_config(self, **extra) -> dict:
        """What the page's script needs: who is signed in, where the API and pages are."""
        return {
            "user": self.current_user["name"],
            "api": self.settings["api_prefix"],
            "xsrf": self.xsrf_token.decode(),
            "pages": self.hub_auth.base_url.rstrip("/") + "/jobs",
            "hub_home": self.hub_auth.hub_prefix + "home",
            **extra,
        }

    def render_page(self, name: str, config: dict) -> None:
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "same-origin")
        self.set_header("Content-Security-Policy", "frame-ancestors 'self'")
        # tojson escapes "<", ">", "&" and "'": nothing in the config ends the script early
        self.finish(render_template(__file__, name, config=config))


class JobsPageHandler(JobsPageBase):
    """GET /jobs: the user's jobs and those of their workspaces, and a form to submit one."""

    @web.authenticated
    def get(self):
        self.render_page("jobs.html", self.page_config(state=self.get_argument("state", "")))


class JobPageHandler(JobsPageBase):
    """GET /jobs/{owner}/{name}: one job's versions, logs, metrics and output files."""

    @web.authenticated
    def get(self, owner: str, name: str):
        self.render_page("job.html", self.page_config(owner=owner, name=name))


default_pages = [(r"/jobs", JobsPageHandler), (r"/jobs/([^/]+)/([^/]+)", JobPageHandler)]
