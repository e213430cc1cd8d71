"""An async client of the platform API, called with the instance's own JupyterHub token."""

from __future__ import annotations

import json
from urllib.parse import quote

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest


class PlatformError(Exception):
    """The platform answered with an error, or did not answer (code 502/504).

    `missing_route` is true when the platform has no such route at all (an older platform
    version), as opposed to a JSON 404 about a missing instance or resource.
    """

    def __init__(self, code: int, message: str, *, missing_route: bool = False):
        self.code = code
        self.message = message
        self.missing_route = missing_route
        super().__init__(f"{code}: {message}")


class PlatformClient:
    """The platform API at `url` (…/services/workbench/api) for one instance."""

    def __init__(self, url: str, token: str, user: str, instance: str, timeout: float = 10):
        self.url = url.rstrip("/")
        self.token = token
        self.user = user
        self.instance = instance
        self.timeout = timeout

    @property
    def instance_path(self) -> str:
        return f"/users/{quote(self.user, safe='')}/instances/{quote(self.instance, safe='')}"

    async def request(self, method: str, path: str, body=None, *, limit: float | None = None):
        """JSON of the answer (None if empty); PlatformError on errors and no answer."""
        if not self.url or not self.token:
            raise PlatformError(
                503,
                "This server does not know the platform API's address or has no token "
                "(it runs outside an ai-workbench instance). Open JupyterLab from the "
                "ai-workbench hub.",
            )
        req = HTTPRequest(
            self.url + path,
            method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
            body=None if body is None else json.dumps(body),
            allow_nonstandard_methods=True,
            connect_timeout=min(5.0, limit or self.timeout),
            request_timeout=limit or self.timeout,
            follow_redirects=False,
        )
        try:
            resp = await AsyncHTTPClient().fetch(req)
        except HTTPClientError as e:
            if e.code == 599 or e.response is None:
                raise self._unreachable(str(e.message or e)) from None
            raise self._error(e.code, e.response.body) from None
        except OSError as e:  # refused, unreachable, name not resolved
            raise self._unreachable(str(e)) from None
        if not resp.body:
            return None
        try:
            return json.loads(resp.body)
        except ValueError:
            raise PlatformError(
                502, f"The platform API at {self.url} answered with something other than JSON."
            ) from None

    def _unreachable(self, why: str) -> PlatformError:
        return PlatformError(
            502,
            f"The platform API at {self.url} does not answer ({why}). The hub may be "
            "restarting: try again in a minute; if it persists, tell your administrator.",
        )

    def _error(self, code: int, body: bytes) -> PlatformError:
        try:
            data = json.loads(body)
            message = data.get("message") if isinstance(data, dict) else None
        except ValueError:
            message = None
        if message is None:
            if code == 404:
                return PlatformError(404, "No such route on the platform API.", missing_route=True)
            message = body.decode(errors="replace")[:300] or f"HTTP {code}"
        if code in (401, 403):
            message = (
                f"The platform API refused this instance's token ({message}). The hub's "
                "'server' role needs the scope access:services!service=workbench: tell your "
                "administrator."
            )
            return PlatformError(502, message)
        return PlatformError(code if code < 500 else 502, message)

    # the calls

    async def instance_model(self) -> dict:
        return await self.request("GET", self.instance_path)

    async def flavors(self) -> list[dict]:
        return await self.request("GET", "/flavors")

    async def switch_flavor(self, flavor: str) -> dict:
        # the platform stops, changes and starts the instance: it answers when running again
        return await self.request("PATCH", self.instance_path, {"flavor": flavor}, limit=600)

    async def stop(self) -> dict:
        return await self.request("POST", self.instance_path + "/stop", limit=600)

    async def save_status(self) -> dict:
        return await self.request("GET", self.instance_path + "/save")

    async def save(self, body: dict) -> dict:
        return await self.request("POST", self.instance_path + "/save", body, limit=60)

    async def ssh(self) -> dict:
        return await self.request("GET", self.instance_path + "/ssh")
