"""The calling path of services: authenticate, pick a predictor and a replica, forward, count.

The router picks a predictor by weight, then its ready replica with the fewest requests in
flight, forwards the request and streams the answer back. On a managed backend (KServe) it
sends every request to the service's one address there instead: the backend splits the
traffic between the predictors, so the requests are counted under the service's first one.

Programs call it with an access key of the service or a platform token; it takes no cookies
(so it needs no XSRF check), and neither credentials nor cookies reach the replica.

The platform's own requests (auto-labelling a dataset) take the same way through `call()`.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
from urllib.parse import quote

import aiohttp
from jupyterhub.services.auth import HubOAuth
from tornado import web
from tornado.iostream import StreamClosedError
from tornado.log import app_log

from hub.rbac import has_scope
from hub.service.api import APIError

from .manager import KEY_PREFIX, ServiceManager
from .service_control import Predictor, Replica, Runtime
from .store import SERVICE_FAILED, STOPPED

ROUTE = r"/inference/(?P<owner>[^/]+)/(?P<name>[^/]+)/(?P<rest>.*)"
AUTHORIZATION = re.compile(r"^\s*(?:bearer|token)\s+(\S+)\s*$", re.IGNORECASE)
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
}
# never forwarded: the caller's credentials, what the client library sets itself
REQUEST_DROPPED = HOP_BY_HOP | {
    "authorization",
    "cookie",
    "x-workbench-key",
    "x-xsrftoken",
    "host",
    "content-length",
    "expect",
}
# never answered: a replica cannot set cookies on the platform's origin
ANSWER_DROPPED = HOP_BY_HOP | {"content-length", "set-cookie", "server", "date"}
WHOLE_ANSWER_BYTES = 1024**2  # answers up to this size are read whole, larger ones streamed
ATTEMPTS = 3  # replicas tried when one cannot be connected to
PATH_SAFE = "/:@!$&'()*+,;=-._~"


class CannotConnect(Exception):
    """The replica did not accept the connection: nothing was sent, another may be tried."""


class InferenceHandler(web.RequestHandler):
    """GET/POST /inference/{owner}/{name}/<rest>: <rest> (v2/models/..., v1/models/...:predict,
    v2/health/ready) forwarded to a ready replica of the service."""

    @property
    def services(self) -> ServiceManager:
        return self.settings["service_manager"]

    def check_xsrf_cookie(self):
        """No cookies are taken here, so there is nothing to forge."""

    def set_default_headers(self):
        self.set_header("Content-Type", "application/json")
        self.set_header("X-Content-Type-Options", "nosniff")

    def write_error(self, status_code, **kwargs):
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, APIError):
            message = exc.message
        elif isinstance(exc, web.HTTPError):
            message = exc.log_message or exc.reason or self._reason
            if exc.log_message and exc.args:
                message = exc.log_message % exc.args
        else:
            message = "Internal error; see the platform service's log."
        self.clear_header("Content-Security-Policy")
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"status": status_code, "message": message}))

    def _log(self):
        # the calling path's answers are counted in the service's metrics; only refusals
        # and failures go to the log (a line per call would cost more than the forwarding)
        if self.get_status() >= 400:
            super()._log()

    def log_exception(self, typ, value, tb):
        if isinstance(value, APIError):
            app_log.info(
                "%s %s -> %s %s", self.request.method, self.request.path, value.code, value
            )
            return
        super().log_exception(typ, value, tb)

    # --- who calls --------------------------------------------------------------------------
    def _credentials(self) -> tuple[str, str]:
        """(access key, platform token) of the request; either may be ""."""
        key = self.request.headers.get("X-Workbench-Key", "").strip()
        match = AUTHORIZATION.match(self.request.headers.get("Authorization", ""))
        if match:
            secret = match.group(1)
            if secret.startswith(KEY_PREFIX):
                key = key or secret
            else:
                return key, secret
        return key, ""

    async def _authorize(self, owner: str, name: str) -> Runtime:
        key, token = self._credentials()
        if not key and not token:
            raise APIError(
                401,
                "Send 'Authorization: Bearer <key>' with an access key of the service (POST "
                ".../keys makes one), or with your platform token.",
            )
        manager = self.services
        if not manager.taken_up:
            raise APIError(503, "The platform is starting; try again in a few seconds.")
        if key:
            service_id = await manager.service_of_key(key)
            rt = manager.runtime(owner, name)
            if service_id is None or rt is None or rt.id != service_id:
                raise APIError(401, "The access key is wrong, or it was deleted.")
            return rt
        user = await HubOAuth.instance().user_for_token(token, sync=False)
        if not user:
            raise APIError(401, "The token is wrong, expired or revoked.")
        rt = manager.runtime(owner, name)
        if rt is None:
            raise APIError(404, f"No service {name!r} of user {owner!r}.")
        if not has_scope(user, "services:call") or not await manager.may_call(user, rt):
            raise APIError(
                403,
                f"{user['name']} may not call service {owner}/{name}: it is {owner}'s"
                + (f", shared with workspace {rt.workspace}" if rt.public else "")
                + ". Ask its owner for an access key.",
            )
        return rt

    # --- where to ---------------------------------------------------------------------------
    async def _choose(self, rt: Runtime, tried: set[str]) -> tuple[Predictor, Replica]:
        return await choose(self.services, rt, tried)

    async def _upstream(self, rt: Runtime) -> tuple[Predictor, str]:
        return await upstream(self.services, rt)

    # --- forwarding -------------------------------------------------------------------------
    async def get(self, owner: str, name: str, rest: str):
        rt = await self._authorize(owner, name)
        path = "/" + quote(rest, safe=PATH_SAFE)
        if self.request.query:
            path += "?" + self.request.query
        headers = [
            (k, v) for k, v in self.request.headers.get_all() if k.lower() not in REQUEST_DROPPED
        ]
        body = self.request.body if self.request.method not in ("GET", "HEAD") else None
        if self.services.managed:
            p, upstream = await self._upstream(rt)
            try:
                await self._forward(rt, p, None, upstream + path, headers, body)
            except CannotConnect as e:
                raise APIError(
                    503, f"Service {owner}/{name} could not be reached in the cluster: {e}"
                ) from None
            return
        tried: set[str] = set()
        for _ in range(ATTEMPTS):
            p, replica = await self._choose(rt, tried)
            try:
                url = f"http://{replica.address}{path}"
                await self._forward(rt, p, replica, url, headers, body)
                return
            except CannotConnect:
                replica.suspect = True  # not routed until its health check answers
                tried.add(replica.id)
        raise APIError(503, f"No replica of service {owner}/{name} could be reached.")

    post = get

    async def _forward(
        self, rt: Runtime, p: Predictor, replica: Replica | None, url: str, headers, body
    ):
        """Send the request to `url` (a replica's, or the managed backend's address of the
        service) and stream its answer back; counted in the service's metrics."""
        manager = self.services
        metrics = p.metrics
        if replica is not None:
            replica.in_flight += 1
        metrics.in_flight += 1
        if metrics.in_flight > p.peak:
            p.peak = metrics.in_flight
        started = time.perf_counter()
        error = True
        try:
            timeout = aiohttp.ClientTimeout(total=manager.config.request_timeout_seconds)
            async with manager.forwarding.request(
                self.request.method,
                url,
                data=body,
                headers=headers,
                timeout=timeout,
                allow_redirects=False,
            ) as answer:
                error = answer.status >= 500
                self.set_status(answer.status, answer.reason)
                self.clear_header("Content-Type")
                seen = set()
                for key, value in answer.headers.items():
                    lower = key.lower()
                    if lower in ANSWER_DROPPED:
                        continue
                    if lower in seen:
                        self.add_header(key, value)
                    else:
                        self.set_header(key, value)
                        seen.add(lower)
                # served from the platform's origin: never run as a page of it
                self.set_header("Content-Security-Policy", "sandbox")
                length = answer.content_length
                if length is not None and length <= WHOLE_ANSWER_BYTES:
                    self.write(await answer.read())
                else:
                    async for chunk in answer.content.iter_chunked(64 * 1024):
                        self.write(chunk)
                        await self.flush()
        except aiohttp.ClientConnectorError as e:
            raise CannotConnect(str(e)) from None
        except TimeoutError:
            limit = manager.config.request_timeout_seconds
            raise APIError(504, f"The replica did not answer within {limit:g} s.") from None
        except aiohttp.ClientError as e:
            raise APIError(502, f"The replica's answer broke off: {e}") from None
        except StreamClosedError:
            return  # the caller went away
        finally:
            if replica is not None:
                replica.done()
            metrics.in_flight -= 1
            rt.metrics.observe(p.key, time.perf_counter() - started, error)
        try:
            await self.finish()
        except StreamClosedError:
            pass


# --- where to, for the handler and the platform's own calls ------------------------------
async def choose(
    manager: ServiceManager, rt: Runtime, tried: set[str]
) -> tuple[Predictor, Replica]:
    """A predictor by weight (one with a ready replica, if any has), then its ready replica
    with the fewest requests in flight; waits while a predictor scales from zero or its
    replicas start (up to the cold-start timeout)."""
    timeout = manager.config.cold_start_timeout_seconds
    deadline = None
    while True:
        if rt.state == STOPPED:
            raise APIError(
                503,
                f"Service {rt.owner}/{rt.name} is stopped ({rt.reason}); start it with "
                "POST .../start.",
            )
        candidates = [p for p in rt.predictors.values() if p.weight > 0]
        if not candidates:
            raise APIError(
                503,
                f"Service {rt.owner}/{rt.name} has no predictor taking requests"
                + (f": {rt.reason}" if rt.reason else "."),
            )
        ready = [p for p in candidates if any(r.id not in tried for r in p.ready())]
        pool = ready or candidates
        if len(pool) == 1:
            p = pool[0]
        else:
            p = random.choices(pool, [q.weight for q in pool])[0]
        p.last_request = time.monotonic()
        replicas = [r for r in p.ready() if r.id not in tried]
        if replicas:
            return p, min(replicas, key=lambda r: (r.in_flight, random.random()))
        if deadline is None:
            deadline = time.monotonic() + timeout
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            why = f" (last: {p.last_failure})" if p.last_failure else ""
            raise APIError(503, f"No replica of {p.key} became ready within {timeout:g} s{why}.")
        p.waking = True
        p.waiting += 1
        manager.wakeup.set()
        try:
            await asyncio.wait_for(p.changed.wait(), remaining)
        except TimeoutError:
            pass
        finally:
            p.waiting -= 1
            p.last_request = time.monotonic()


async def upstream(manager: ServiceManager, rt: Runtime) -> tuple[Predictor, str]:
    """A managed backend's address of the service (with the predictor its requests are
    counted under); waits while the backend has none yet (up to the cold-start timeout)."""
    timeout = manager.config.cold_start_timeout_seconds
    deadline = time.monotonic() + timeout
    while True:
        if rt.state == STOPPED:
            raise APIError(
                503,
                f"Service {rt.owner}/{rt.name} is stopped ({rt.reason}); start it with "
                "POST .../start.",
            )
        candidates = [p for p in rt.predictors.values() if p.weight > 0]
        if not candidates:
            raise APIError(
                503,
                f"Service {rt.owner}/{rt.name} has no predictor taking requests"
                + (f": {rt.reason}" if rt.reason else "."),
            )
        p = candidates[0]
        p.last_request = time.monotonic()
        if rt.state == SERVICE_FAILED:
            raise APIError(503, f"Service {rt.owner}/{rt.name} failed: {rt.reason}")
        if rt.upstream:
            return p, rt.upstream.rstrip("/")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            why = f" ({rt.reason})" if rt.reason else ""
            raise APIError(
                503, f"Service {rt.owner}/{rt.name} was not ready within {timeout:g} s{why}."
            )
        try:
            await asyncio.wait_for(p.changed.wait(), remaining)
        except TimeoutError:
            pass


async def call(
    manager: ServiceManager,
    rt: Runtime,
    rest: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    method: str = "POST",
) -> tuple[int, bytes]:
    """A request of the platform's own to a service (auto-labelling), sent where a caller's
    would go and counted in the service's metrics: (status, the answer's body). Whether the
    user it acts for may call the service is checked before (manager.may_call)."""
    path = "/" + quote(rest, safe=PATH_SAFE)
    headers = dict(headers or {})
    if manager.managed:
        p, base = await upstream(manager, rt)
        try:
            return await _send(manager, rt, p, None, method, base + path, body, headers)
        except CannotConnect as e:
            raise APIError(
                503, f"Service {rt.owner}/{rt.name} could not be reached in the cluster: {e}"
            ) from None
    tried: set[str] = set()
    for _ in range(ATTEMPTS):
        p, replica = await choose(manager, rt, tried)
        url = f"http://{replica.address}{path}"
        try:
            return await _send(manager, rt, p, replica, method, url, body, headers)
        except CannotConnect:
            replica.suspect = True  # not routed until its health check answers
            tried.add(replica.id)
    raise APIError(503, f"No replica of service {rt.owner}/{rt.name} could be reached.")


async def _send(
    manager: ServiceManager,
    rt: Runtime,
    p: Predictor,
    replica: Replica | None,
    method,
    url,
    body,
    headers,
) -> tuple[int, bytes]:
    metrics = p.metrics
    if replica is not None:
        replica.in_flight += 1
    metrics.in_flight += 1
    if metrics.in_flight > p.peak:
        p.peak = metrics.in_flight
    started = time.perf_counter()
    error = True
    try:
        timeout = aiohttp.ClientTimeout(total=manager.config.request_timeout_seconds)
        async with manager.forwarding.request(
            method, url, data=body, headers=headers, timeout=timeout, allow_redirects=False
        ) as answer:
            data = await answer.read()
            error = answer.status >= 500
            return answer.status, data
    except aiohttp.ClientConnectorError as e:
        raise CannotConnect(str(e)) from None
    except TimeoutError:
        limit = manager.config.request_timeout_seconds
        raise APIError(504, f"The replica did not answer within {limit:g} s.") from None
    except aiohttp.ClientError as e:
        raise APIError(502, f"The replica's answer broke off: {e}") from None
    finally:
        if replica is not None:
            replica.done()
        metrics.in_flight -= 1
        rt.metrics.observe(p.key, time.perf_counter() - started, error)


default_pages = [(ROUTE, InferenceHandler)]
