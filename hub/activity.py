"""Instance activity as the hub records it: the instances' own reports, not proxy traffic."""

from __future__ import annotations

from jupyterhub.proxy import ConfigurableHTTPProxy


class InstanceActivityProxy(ConfigurableHTTPProxy):
    """configurable-http-proxy whose instance routes report no last_activity to the hub.

    The proxy counts every request and websocket frame as activity, so an open JupyterLab
    tab that only polls (kernels, sessions, terminals, the file browser) would keep an
    instance busy for ever. The hub then learns an instance's activity from the instance
    itself (jupyterhub-singleuser's reports, which count what the user does) and from other
    reporters on its activity API (the SSH gateway, training jobs).
    """

    async def get_all_routes(self):
        routes = await super().get_all_routes()
        for route in routes.values():
            data = route.get("data") or {}
            if "server_name" in data:
                data.pop("last_activity", None)
        return routes
