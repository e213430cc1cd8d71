"""Audit of what users do through JupyterHub's own pages and API (not the platform API).

The hub's request log function sees every request with its user, source address and answer;
the instance operations among them become audit events: starting and stopping from the home
page or JupyterHub's REST API, deleting a server, submitting the spawn form, and opening an
instance (the OAuth authorization of the browser for that instance's JupyterLab).
Requests made by the platform API service are skipped: it audits those itself, with the
user on whose behalf it acted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from urllib.parse import parse_qs, urlparse

from jupyterhub.log import log_request

log = logging.getLogger("workbench.audit")

SERVER_API = re.compile(r"/hub/api/users/(?P<user>[^/]+)/servers/(?P<name>[^/]+)/?$")
SPAWN_FORM = re.compile(r"/hub/spawn/(?P<user>[^/]+)/(?P<name>[^/]+)/?$")
AUTHORIZE = re.compile(r"/hub/api/oauth2/authorize/?$")
SERVER_CLIENT = re.compile(r"^jupyterhub-user-(?P<user>.+?)-(?P<name>[^-]*)$")


def classify(method: str, path: str, query: str, body: bytes) -> tuple[str, str] | None:
    """(event name, resource id) of a hub request that is an instance operation, or None."""
    match = SERVER_API.search(path)
    if match:
        resource = f"{match['user']}/{match['name']}"
        if method == "POST":
            return "startNotebook", resource
        if method == "DELETE":
            try:
                remove = bool(json.loads(body or b"{}").get("remove"))
            except (ValueError, AttributeError):
                remove = False
            return ("deleteNotebook" if remove else "stopNotebook"), resource
        return None
    match = SPAWN_FORM.search(path)
    if match and method == "POST":
        return "startNotebook", f"{match['user']}/{match['name']}"
    if AUTHORIZE.search(path) and method == "GET":
        client = parse_qs(query).get("client_id", [""])[0]
        found = SERVER_CLIENT.match(client)
        if found:
            return "openNotebook", f"{found['user']}/{found['name']}"
    return None


def audit_log_function(audit_factory):
    """A tornado log_function: JupyterHub's request log, plus audit events.

    audit_factory() returns the AuditLog, made on first use (the database is migrated by
    the platform service as it starts).
    """
    state = {}

    def log_function(handler):
        log_request(handler)
        request = handler.request
        try:
            found = classify(
                request.method, urlparse(request.uri).path, request.query, request.body
            )
        except Exception:  # noqa: BLE001 - never break a request over its audit
            log.exception("audit: cannot classify %s %s", request.method, request.uri)
            return
        if found is None:
            return
        user = getattr(handler, "_jupyterhub_user", None)
        kind = type(user).__name__ if user is not None else ""
        if kind == "Service" or (user is not None and getattr(user, "kind", "") == "service"):
            return  # the platform API audits its own calls
        status = handler.get_status()
        if status in (302, 303) and found[0] == "openNotebook":
            status = 200  # the authorization redirects back to the instance
        outcome = (
            "success" if status < 400 else "denied" if status in (401, 403, 404) else "failure"
        )
        event, resource = found
        if "audit" not in state:
            state["audit"] = audit_factory()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        task = loop.create_task(
            state["audit"].emit(
                event,
                actor=getattr(user, "name", None) or "anonymous",
                source=request.remote_ip or "",
                resource_type="notebook",
                resource_id=resource,
                outcome=outcome,
                reason="" if status < 400 else f"HTTP {status} {handler._reason}",
                details={"via": "hub"},
            )
        )
        state.setdefault("tasks", set()).add(task)
        task.add_done_callback(state["tasks"].discard)

    return log_function
