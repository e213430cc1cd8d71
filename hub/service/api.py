"""The base of every platform API handler: JSON in and out, one error type, scope checks, audit."""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import math
import mimetypes
import traceback
from urllib.parse import quote

from jupyterhub.services.auth import HubOAuthenticated
from tornado import web
from tornado.iostream import StreamClosedError
from tornado.log import app_log

from ..audit.hub_requests import client_address
from ..rbac import has_scope, scope, scope_description

# bytes read at a time from a file sent as an answer
FILE_CHUNK = 1024 * 1024


class APIError(web.HTTPError):
    """A request the platform refuses or cannot serve: HTTP `code`, and a message that says
    what to do next (answered as {"status": code, "message": message})."""

    def __init__(self, code: int, message: str):
        # an HTTPError, so that tornado answers it with its code (write_error words it)
        super().__init__(code)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return self.message


class NonFinite(ValueError):
    """A number in a request body that is not finite (NaN, Infinity, 1e999)."""


def _refuse_constant(name: str):
    # Python's json reads NaN, Infinity and -Infinity, which are not JSON: every comparison
    # with NaN is false, so no range check downstream would refuse it
    raise NonFinite(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise NonFinite(f"{text} is too large a number")
    return number


def parse_json_body(body: bytes) -> dict:
    """A request body as a JSON object; HTTP 400 saying why for anything else."""
    if not body:
        return {}
    try:
        data = json.loads(body, parse_constant=_refuse_constant, parse_float=_finite_float)
    except NonFinite as e:
        raise web.HTTPError(
            400, f'{e}: send finite numbers only, for example {{"max_hours": 8}}.'
        ) from None
    except (ValueError, RecursionError):
        raise web.HTTPError(400, "The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise web.HTTPError(400, "The request body must be a JSON object.")
    return data


def finite(data):
    """data with non-finite floats (which JSON cannot carry) as null, for answers built from
    values stored before they were validated."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: finite(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [finite(v) for v in data]
    return data


def dumps(data) -> str:
    """JSON text of an answer; always valid JSON."""
    try:
        return json.dumps(data, allow_nan=False)
    except ValueError:
        return json.dumps(finite(data), allow_nan=False)


class APIHandler(HubOAuthenticated, web.RequestHandler):
    """Base handler: hub-authenticated, JSON bodies and JSON errors."""

    log = app_log  # the service's log (RequestHandler has none of its own)

    @property
    def manager(self):
        return self.settings["instance_manager"]

    @property
    def policy(self):
        return self.settings["policy"]

    @property
    def db(self):
        """The platform database (hub.db.Database): `await self.db.run(fn)`."""
        return self.settings["db"]

    def set_default_headers(self):
        self.set_header("Content-Type", "application/json")

    def get_login_url(self):
        # an API answers 403 instead of redirecting to the login page
        raise web.HTTPError(
            403,
            "Not signed in: send 'Authorization: token <token>' with a token from "
            "/hub/token, or sign in at /hub/login.",
        )

    def get_json_body(self) -> dict:
        return parse_json_body(self.request.body)

    def write_json(self, data, status: int = 200):
        self.set_status(status)
        self.finish(dumps(data))

    # {HTTP method: (event name, resource type)} of the operations this handler audits
    audit_events: dict[str, tuple[str, str]] = {}
    audit_details: dict | None = None
    audit_reason = ""
    denied = False  # refused for lack of permission (answered 403, or 404 to hide it)

    def no_content(self):
        """Answer 204: done, nothing to say (a deletion)."""
        self.set_status(204)
        self.finish()

    async def send_file(
        self, f, content_type: str, filename: str | None = None, headers: dict | None = None
    ) -> None:
        """Answer with an open binary file, read in chunks off the event loop, as
        content_type (never sniffed), an attachment named filename where given, with the
        extra headers; the file is closed after. A client that went away ends it quietly."""
        try:
            self.set_header("Content-Type", content_type)
            self.set_header("X-Content-Type-Options", "nosniff")
            for name, value in (headers or {}).items():
                self.set_header(name, value)
            if filename:
                self.set_header(
                    "Content-Disposition", f"attachment; filename*=UTF-8''{quote(filename)}"
                )
            while chunk := await asyncio.to_thread(f.read, FILE_CHUNK):
                self.write(chunk)
                await self.flush()
        except StreamClosedError:
            return
        finally:
            await asyncio.to_thread(f.close)
        self.finish()

    def audit_event(self) -> tuple[str, str] | None:
        """(event name, resource type) of this request, or None if it is not audited."""
        return self.audit_events.get(self.request.method)

    def audit_resource_id(self) -> str:
        """The resource acted on: the path's user and name, as user/name."""
        return "/".join(
            str(v) for v in self.path_kwargs.values() if v and v not in ("start", "stop")
        )

    def actor(self) -> str:
        try:
            user = self.current_user
        except Exception:  # noqa: BLE001 - a refused token: audited as anonymous
            user = None
        return user["name"] if user else "anonymous"

    _audit_pending = None

    def finish(self, chunk=None):
        """Store the request's audit event, then answer (a crash after answering loses none).

        A second finish() meanwhile (tornado's own, after the handler returns) waits for
        the same.
        """
        if self._audit_pending is not None:
            return self._audit_pending
        spec = self.audit_event()
        if spec is None:
            return super().finish(chunk)
        if chunk is not None:
            self.write(chunk)
        status = self.get_status()
        if status < 400:
            outcome = "success"
        elif status in (401, 403) or self.denied:
            outcome = "denied"
        else:
            outcome = "failure"
        event, resource_type = spec
        record = self.settings["audit"].emit(
            event,
            actor=self.actor(),
            source=client_address(self.request),
            resource_type=resource_type,
            resource_id=self.audit_resource_id(),
            outcome=outcome,
            reason=self.audit_reason,
            details=self.audit_details,
        )

        async def record_then_finish():
            await record
            if not self._finished:
                try:
                    await super(APIHandler, self).finish()
                except StreamClosedError:
                    pass  # the client went away; the event is recorded all the same

        self._audit_pending = asyncio.ensure_future(record_then_finish())
        return self._audit_pending

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
            if exc is not None:
                self.log.error("".join(traceback.format_exception(exc)))
        self.audit_reason = message
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"status": status_code, "message": message}))

    def log_exception(self, typ, value, tb):
        if isinstance(value, APIError):
            self.log.info(
                "%s %s -> %s %s", self.request.method, self.request.uri, value.code, value
            )
            return
        super().log_exception(typ, value, tb)

    def require_scope(self, name: str):
        """HTTP 403 (audited as denied) unless the caller's token grants the platform scope."""
        if has_scope(self.current_user, name):
            return
        self.denied = True
        raise web.HTTPError(
            403,
            f"Permission denied: this needs {scope(name)} ({scope_description(name)}). "
            "Ask an administrator for a role that grants it.",
        )

    def check_user(self, user: str):
        """Allow acting on `user`'s instances only to that user and admins."""
        current = self.current_user
        if current["name"] == user or current.get("admin"):
            return
        # no hint of whether that user or their instances exist
        self.denied = True
        raise web.HTTPError(404, f"No user {user!r}.")

    async def run(self, coro):
        """Await coro (kept for handlers that wrap calls; APIError is answered as it is)."""
        return await coro


def download_type(path: str) -> str:
    """The Content-Type a downloaded file is sent as: guessed from its name, but never one a
    browser would render as a page of the platform's origin (text as text/plain; HTML, XML,
    SVG and scripts as bytes)."""
    kind = mimetypes.guess_type(path)[0] or "application/octet-stream"
    if kind.startswith("text/") or kind in ("application/json", "application/xml"):
        return "text/plain; charset=utf-8"
    if "html" in kind or "xml" in kind or "svg" in kind or "javascript" in kind:
        return "application/octet-stream"
    return kind


class OwnedCollection:
    """Mixin of the handler of a collection of owned, named things (jobs, models, datasets):
    GET lists them, filtered by ?workspace=NAME (and ?all=1 for administrators); POST makes
    one named in its body, audited as <caller>/<name>."""

    def audit_resource_id(self):
        return f"{self.actor()}/{(self.audit_details or {}).get('name', '')}"

    def listing_query(self) -> tuple[str | None, bool]:
        """(workspace or None, all users) of a listing's query."""
        workspace = self.get_query_argument("workspace", "").strip() or None
        return workspace, self.get_query_argument("all", "0") in ("1", "true")


def needs_scope(name: str):
    """Decorate a handler method: it runs only for a caller whose token grants the platform
    scope `name` ("instances:read"; "{action}" is filled from the path, as in
    "instances:{action}") and, where the path names a `user`, only for that user or an admin.

    Like JupyterHub's own `needs_scope`; a refusal is HTTP 403 (or 404 for another user's
    resources, so that their existence is not revealed) and is audited as denied.
    """

    def decorator(method):
        @functools.wraps(method)
        async def checked(self, *args, **kwargs):
            if "user" in kwargs:
                self.check_user(kwargs["user"])
            self.require_scope(name.format(**kwargs))
            result = method(self, *args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
            return result

        return checked

    return decorator
