"""The browser API frame: a frame through which the hub's own pages call the platform API.

A hub page (e.g. /hub/home) cannot call the platform API with the hub's cookie: the service
accepts its own OAuth cookie, and with a cookie every request needs the service's XSRF
token. The home page loads this page in a hidden frame; loading it signs the browser
in to the service (OAuth through the hub, no consent page). The page then answers API calls
its parent posts to it (`{type: "workbench-api", id, method, path, body}`) by calling the
API itself and posting back the status and body. The XSRF token stays inside the API frame
frame: it is never posted to another window.

Who may use it. The API frame answers only a parent on the hub's own origin whose page is one
of the hub's (path under the hub's prefix, /hub/), and posts only to that origin; the frame
may be embedded only by its own origin (frame-ancestors), and only as a frame (a fetch() or
a top-level load of the API frame is refused, so its token cannot be read that way).

What makes that a boundary is the origin. Browsers isolate origins from each other, not
paths: any page on the hub's origin can frame the hub's pages, read them, register a service
worker or read cookies, and so act as whoever views it. With `subdomain_host` set, each
user's instances are served on their own host (alice.hub.example.com) and the hub's origin
holds only the hub's pages and this service (services stay on the hub's host, see
subdomain_hook below): a page an attacker serves from their instance is cross-origin, and
can neither script the API frame nor read its answers nor send the API an XSRF token. Without
`subdomain_host` (one origin, JupyterHub's default) the checks above stop a naive page, but
a user who serves script from their instance can act as anyone who opens it, on this API as
on JupyterHub's own (JupyterHub's security overview says the same): set subdomain_host
wherever users do not trust each other.
"""

from __future__ import annotations

import json

from jupyterhub.services.auth import HubOAuthenticated
from tornado import web

from spawner.templating import render_template


class APIFrameHandler(HubOAuthenticated, web.RequestHandler):
    """GET: the API frame, for a hub page's frame only."""

    @web.authenticated
    def get(self):
        # browsers say what a request is for; a frame is the only use of this page
        # (older browsers send no Sec-Fetch-Dest)
        dest = self.request.headers.get("Sec-Fetch-Dest", "iframe")
        if dest != "iframe":
            self.set_status(403)
            self.set_header("Content-Type", "application/json")
            self.finish(
                json.dumps(
                    {
                        "status": 403,
                        "message": "The API frame is loaded by the hub's pages in a frame. "
                        "Call the API with a token instead (see /hub/token).",
                    }
                )
            )
            return
        config = {
            "user": self.current_user["name"],
            "api": self.settings["api_prefix"],
            "xsrf": self.xsrf_token.decode(),
            "hub_prefix": self.hub_auth.hub_prefix,
        }
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "no-referrer")
        # only pages of this origin may frame it
        self.set_header("Content-Security-Policy", "frame-ancestors 'self'")
        # tojson escapes "<", ">", "&" and "'": nothing in the config ends the script early
        self.finish(render_template(__file__, "api_frame.html", config=config))


default_pages = [(r"/api-frame", APIFrameHandler)]


def subdomain_hook(name: str, domain: str, kind: str) -> str:
    """JupyterHub.subdomain_hook: users' servers on their own hosts, services on the hub's.

    JupyterHub's default ('idna') gives services hosts of their own too; the platform API
    stays on the hub's host instead, so the hub's pages reach it (and its API frame) on their
    own origin and API clients use one URL. Services are the platform's own code, as
    trusted as the hub.
    """
    from jupyterhub.utils import subdomain_hook_idna

    if kind == "service":
        return domain
    return subdomain_hook_idna(name, domain, kind)
