"""Where the client finds the platform and its token: arguments first, then the environment.

Outside an instance: $WORKBENCH_URL (the address the browser uses, e.g.
http://127.0.0.1:8000) and $WORKBENCH_TOKEN (from the hub's token page or `workbench login`).

Inside an instance, what the spawner puts in the container: $WORKBENCH_API_URL (the platform
API), $JUPYTERHUB_API_URL (JupyterHub's API), $JUPYTERHUB_API_TOKEN (the instance's own token)
and $JUPYTERHUB_USER (its owner, the default user of every call).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

DEFAULT_URL = "http://127.0.0.1:8000"
API_PATH = "/services/workbench/api"
HUB_API_PATH = "/hub/api"


@dataclass(frozen=True)
class ClientConfig:
    """The resolved addresses, token and default user of a client."""

    url: str  # the platform's base URL (what `<url>/hub/login` signs in at)
    api_url: str  # the platform API: <url>/services/workbench/api
    hub_api_url: str  # JupyterHub's API: <url>/hub/api
    token: str
    user: str  # the default user of calls that take one; "" asks the hub (whoami)


def _strip(url: str | None) -> str:
    return (url or "").rstrip("/")


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else url


def _base_of(api_url: str, suffix: str) -> str:
    """The platform's base URL from one of its API URLs."""
    return api_url[: -len(suffix)] if api_url.endswith(suffix) else _origin(api_url)


def resolve(
    url: str | None = None,
    token: str | None = None,
    *,
    api_url: str | None = None,
    hub_api_url: str | None = None,
    user: str | None = None,
    env: Mapping[str, str] | None = None,
) -> ClientConfig:
    """The configuration from the arguments (None: not given) and the environment.

    A URL (the argument or $WORKBENCH_URL) means a platform reached from outside: both API
    URLs derive from it and the token is $WORKBENCH_TOKEN. Without one, an instance's
    variables are used where they are set, then http://127.0.0.1:8000.
    """
    env = os.environ if env is None else env
    base = _strip(url if url is not None else env.get("WORKBENCH_URL"))
    if base:
        return ClientConfig(
            url=base,
            api_url=_strip(api_url) if api_url is not None else base + API_PATH,
            hub_api_url=_strip(hub_api_url) if hub_api_url is not None else base + HUB_API_PATH,
            token=token if token is not None else env.get("WORKBENCH_TOKEN", ""),
            user=user or "",
        )
    api = _strip(api_url if api_url is not None else env.get("WORKBENCH_API_URL"))
    hub = _strip(hub_api_url if hub_api_url is not None else env.get("JUPYTERHUB_API_URL"))
    # one API's URL derives from the other's, unless given (an empty one stays empty)
    if not api and api_url is None and hub.endswith(HUB_API_PATH):
        api = hub[: -len(HUB_API_PATH)] + API_PATH
    if not hub and hub_api_url is None and api.endswith(API_PATH):
        hub = api[: -len(API_PATH)] + HUB_API_PATH
    if api_url is None and hub_api_url is None and not (api or hub):
        api, hub = DEFAULT_URL + API_PATH, DEFAULT_URL + HUB_API_PATH
    if token is None:
        token = env.get("WORKBENCH_TOKEN") or env.get("JUPYTERHUB_API_TOKEN", "")
    return ClientConfig(
        url=_base_of(api, API_PATH) if api else _base_of(hub, HUB_API_PATH),
        api_url=api,
        hub_api_url=hub,
        token=token,
        user=user if user is not None else env.get("JUPYTERHUB_USER", ""),
    )
