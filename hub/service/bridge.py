"""The browser bridge: a page hub pages load in a hidden frame to call the platform API.

A hub page (e.g. /hub/home) cannot call the platform API with the hub's own cookie: the
service accepts its own OAuth cookie, and with a cookie every fetch needs the service's
XSRF token. Loading this page as a frame does the OAuth sign-in (redirects through the hub,
no consent page for this service), sets the service's cookies and posts the XSRF token to the
parent page (same origin only), which then calls the API with fetch and X-XSRFToken.
"""

from __future__ import annotations

import json

from jupyterhub.services.auth import HubOAuthenticated
from jupyterhub.utils import url_path_join
from tornado import web

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>ai-workbench API bridge</title></head>
<body><script>
(function () {
  var message = %s;
  if (window.parent !== window) {
    window.parent.postMessage(message, window.location.origin);
  }
})();
</script></body></html>
"""


class BridgeHandler(HubOAuthenticated, web.RequestHandler):
    """GET: post {type, user, api, xsrf} to the parent page (the signed-in user's)."""

    @web.authenticated
    def get(self):
        message = {
            "type": "workbench-bridge",
            "user": self.current_user["name"],
            "api": self.settings["api_prefix"],
            "xsrf": self.xsrf_token.decode(),
        }
        self.set_header("Cache-Control", "no-store")
        # only pages of this origin may frame it
        self.set_header("Content-Security-Policy", "frame-ancestors 'self'")
        # "</" cannot end the script element early
        self.finish(PAGE % json.dumps(message).replace("</", "<\\/"))


def bridge_routes(prefix: str) -> list[tuple]:
    """The bridge page's route (for app.make_app)."""
    return [(url_path_join(prefix, "bridge"), BridgeHandler)]
