"""The hub's models and services pages: models with versions, lineage and files; services with
their traffic split, replicas, access keys and metrics."""

from __future__ import annotations

from jupyterhub.services.auth import HubOAuthenticated
from tornado import web

from spawner.templating import render_template


class InferencePageBase(HubOAuthenticated, web.RequestHandler):
    """A page of the inference feature; its script calls the platform API with the service's
    cookie and XSRF token."""

    def page_config(self, **extra) -> dict:
        """What the page's script needs: who is signed in, where the API and pages are."""
        base = self.hub_auth.base_url.rstrip("/")
        return {
            "user": self.current_user["name"],
            "api": self.settings["api_prefix"],
            "xsrf": self.xsrf_token.decode(),
            "models_page": base + "/models",
            "services_page": base + "/services",
            "jobs_page": base + "/jobs",
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


class ModelsPageHandler(InferencePageBase):
    """GET /models: the user's models and their workspaces' models, each model's versions
    with their lineage and files (SHA-256s)."""

    @web.authenticated
    def get(self):
        self.render_page("models.html", self.page_config())


class ServicesPageHandler(InferencePageBase):
    """GET /services: the user's services and their workspaces' services, each with its
    traffic split, replicas, access keys and metrics."""

    @web.authenticated
    def get(self):
        self.render_page("services.html", self.page_config())


default_pages = [(r"/models", ModelsPageHandler), (r"/services", ServicesPageHandler)]
