"""An async client of JupyterHub's REST API, used by the platform service with its token."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from urllib.parse import quote

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

log = logging.getLogger(__name__)


class HubAPIError(Exception):
    """JupyterHub answered with an error status."""

    def __init__(self, code: int, message: str):
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")


def server_path(user: str, name: str) -> str:
    return f"/users/{quote(user, safe='')}/servers/{quote(name, safe='')}"


class HubAPI:
    """JupyterHub's API at api_url, called with a service token."""

    def __init__(self, api_url: str, token: str, timeout: float = 30):
        self.api_url = api_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.client = AsyncHTTPClient()
        # features.instances.live_options.LiveOptionsStore: options changed while instances run
        self.live = None

    async def request(self, method: str, path: str, body=None, *, ok_404: bool = False):
        """JSON of the response (None if empty); HubAPIError on error statuses."""
        _, data = await self.request_status(method, path, body, ok_404=ok_404)
        return data

    async def request_status(self, method: str, path: str, body=None, *, ok_404: bool = False):
        """The status code and JSON of the response; HubAPIError on error statuses."""
        req = HTTPRequest(
            self.api_url + path,
            method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
            body=None if body is None else json.dumps(body),
            allow_nonstandard_methods=True,
            request_timeout=self.timeout,
        )
        try:
            resp = await self.client.fetch(req)
        except HTTPClientError as e:
            if ok_404 and e.code == 404:
                return 404, None
            message = e.message or ""
            if e.response is not None and e.response.body:
                try:
                    message = json.loads(e.response.body).get("message", message)
                except (ValueError, AttributeError):
                    message = e.response.body.decode(errors="replace")[:500]
            raise HubAPIError(e.code, message) from None
        try:
            return resp.code, json.loads(resp.body) if resp.body else None
        except ValueError:  # e.g. the hub's text/plain answers to start requests
            return resp.code, None

    async def user(self, name: str):
        return await self.request("GET", f"/users/{quote(name, safe='')}", ok_404=True)

    async def servers(self, user: str) -> dict:
        """All instances (running or not) of a user, by name; None if no such user."""
        model = await self.request(
            "GET", f"/users/{quote(user, safe='')}?include_stopped_servers=1", ok_404=True
        )
        if model is None:
            return None
        servers = {name: s for name, s in model.get("servers", {}).items() if name}
        if self.live is not None:
            await self.live.overlay(user, servers)
        return servers

    async def server(self, user: str, name: str):
        server = await self.request("GET", server_path(user, name), ok_404=True)
        if server is not None and self.live is not None:
            await self.live.overlay(user, {name: server})
        return server

    async def progress(self, user: str, name: str, limit: float) -> AsyncIterator[dict]:
        """The spawn progress events of a server (the hub's event stream) until it ends."""
        queue: asyncio.Queue = asyncio.Queue()
        buf = bytearray()

        def on_chunk(chunk: bytes):
            buf.extend(chunk)
            while b"\n\n" in buf:
                raw, _, rest = bytes(buf).partition(b"\n\n")
                buf[:] = rest
                for line in raw.decode(errors="replace").splitlines():
                    if line.startswith("data:"):
                        try:
                            queue.put_nowait(json.loads(line[5:].strip()))
                        except ValueError:
                            pass

        req = HTTPRequest(
            self.api_url + server_path(user, name) + "/progress",
            headers={"Authorization": f"token {self.token}", "Accept": "text/event-stream"},
            streaming_callback=on_chunk,
            request_timeout=limit,
        )
        fetch = asyncio.ensure_future(self.client.fetch(req, raise_error=False))
        deadline = time.monotonic() + limit
        try:
            while True:
                getter = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait(
                    {getter, fetch},
                    timeout=max(0.1, deadline - time.monotonic()),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if getter in done:
                    yield getter.result()
                    continue
                getter.cancel()
                if fetch in done:
                    while not queue.empty():
                        yield queue.get_nowait()
                    return
                if time.monotonic() >= deadline:
                    return
        finally:
            if not fetch.done():
                fetch.cancel()
