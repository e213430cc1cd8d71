"""The base of a feature's pages on the platform service: its template with the page's config."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from jupyterhub.services.auth import HubOAuthenticated
from tornado import web

from spawner.templating import render_template

# templates every feature's pages may include (feature_common.html: style, API call, helpers)
SHARED = (Path(__file__).resolve().parent / "templates",)


class FeaturePage(HubOAuthenticated, web.RequestHandler):
    """A page of a feature; its script calls the platform API with the service's cookie and
    XSRF token. A feature's pages name `module_file` (a module beside the templates/ folder
    of its pages) and `pages` (config key: path below the service of the pages they link to)."""

    module_file: ClassVar[str] = __file__
    pages: ClassVar[dict[str, str]] = {}

    def page_config(self, **extra) -> dict:
        """What the page's script needs: who is signed in, where the API and pages are."""
        base = self.hub_auth.base_url.rstrip("/")
        return {
            "user": self.current_user["name"],
            "api": self.settings["api_prefix"],
            "xsrf": self.xsrf_token.decode(),
            **{key: base + path for key, path in self.pages.items()},
            "hub_home": self.hub_auth.hub_prefix + "home",
            **extra,
        }

    def render_page(self, name: str, config: dict) -> None:
        """The template `name` of the feature's templates/ folder, rendered with `config`."""
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "same-origin")
        self.set_header("Content-Security-Policy", "frame-ancestors 'self'")
        # tojson escapes "<", ">", "&" and "'": nothing in the config ends the script early
        self.finish(render_template(self.module_file, name, shared=SHARED, config=config))
