"""JupyterHub's own REST API: users, their servers (instances), the spawn progress stream.

What the platform's services (the platform API service, the SSH gateway) call the hub with,
using their service token; users rarely need it beyond instances.progress().
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any, Protocol

import httpx

from . import Namespace, segment

log = logging.getLogger(__name__)


def server_path(user: str, name: str) -> str:
    """/users/<user>/servers/<name>, quoted, relative to JupyterHub's API."""
    return f"/users/{segment(user)}/servers/{segment(name)}"


class ServerOverlay(Protocol):
    """Changes laid over server models before they are returned (e.g. options changed while
    an instance runs, which the hub's own model does not have yet)."""

    async def overlay(self, user: str, servers: dict) -> dict: ...


class HubAPI(Namespace):
    """JupyterHub's API at the client's hub_api_url, with the client's token.

    Paths are relative to .../hub/api ("/users/alice" and "users/alice" alike). Errors are
    WorkbenchError (.status, .message); `ok_404` turns a 404 into None.
    """

    # set by the platform's services: laid over servers() and server() answers
    live: ServerOverlay | None = None

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        ok_404: bool = False,
        limit: float | None = None,
    ) -> Any:
        """JSON of the answer (None if empty, not JSON, or a 404 with ok_404)."""
        _, data = await self.request_status(method, path, body, ok_404=ok_404, limit=limit)
        return data

    async def request_status(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        ok_404: bool = False,
        limit: float | None = None,
    ) -> tuple[int, Any]:
        """The status and JSON of the answer (201 and 202 tell a start's outcome apart)."""
        url = f"{self._client.hub_api_url}/{path.lstrip('/')}"
        return await self._client.request(
            method, url, body, limit=limit, expect="lenient", ok_404=ok_404
        )

    async def user(self, name: str) -> dict | None:
        """A user's model; None if there is no such user."""
        return await self.request("GET", f"/users/{segment(name)}", ok_404=True)

    async def servers(self, user: str) -> dict | None:
        """All instances (running or not) of a user by name; None if no such user."""
        model = await self.request(
            "GET", f"/users/{segment(user)}?include_stopped_servers=1", ok_404=True
        )
        if model is None:
            return None
        servers = {name: s for name, s in (model.get("servers") or {}).items() if name}
        if self.live is not None:
            await self.live.overlay(user, servers)
        return servers

    async def server(self, user: str, name: str) -> dict | None:
        """One server's model; None if there is no such user or server."""
        server = await self.request("GET", server_path(user, name), ok_404=True)
        if server is not None and self.live is not None:
            await self.live.overlay(user, {name: server})
        return server

    async def progress(
        self, user: str, name: str, limit: float, *, quiet: bool = True
    ) -> AsyncIterator[dict]:
        """The spawn progress events of a server (the hub's event stream) until the stream
        ends (after "ready" or "failed") or `limit` seconds have passed.

        quiet (the default): a refusal or a broken stream just ends the events (callers look
        at the server afterwards); else they raise WorkbenchError.
        """
        client = self._client
        url = f"{client.hub_api_url}{server_path(user, name)}/progress"
        deadline = time.monotonic() + limit
        try:
            async with client.http.stream(
                "GET",
                url,
                headers=client._headers({"Accept": "text/event-stream"}),
                timeout=client._timeout(limit),
            ) as resp:
                if resp.status_code >= 300:
                    await resp.aread()
                    if quiet:
                        log.debug("progress of %s/%s: HTTP %s", user, name, resp.status_code)
                        return
                    raise client.error("GET", url, resp)
                lines = resp.aiter_lines()
                while True:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return
                    try:
                        line = await asyncio.wait_for(anext(lines), remaining)
                    except (StopAsyncIteration, TimeoutError):
                        return
                    if not line.startswith("data:"):
                        continue
                    try:
                        event = json.loads(line[5:].strip())
                    except ValueError:
                        continue
                    yield event
        except httpx.TransportError as e:
            if quiet:
                log.debug("progress of %s/%s: %s", user, name, e)
                return
            raise client.no_answer(url, e, limit) from None
