"""Audit of what users do through JupyterHub's own pages and API (not the platform API).

Every hub request passes through JupyterHub's handlers' finish(); the instance operations
among them become audit events: starting and stopping from the home page or JupyterHub's
REST API, deleting a server, submitting the spawn form, and opening an instance (the OAuth
authorization of the browser for that instance's JupyterLab). Each event is stored before
the hub sends its answer, so a hub that dies right after answering has recorded it.
Requests made by the platform API service are skipped: it audits those itself, with the
user on whose behalf it acted.

The source address is the one the proxy saw (client_address), never a header the client
wrote.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import re
from collections.abc import Callable
from urllib.parse import parse_qs, quote, unquote, urlparse

from spawner.base import oauth_client_id

log = logging.getLogger("workbench.audit")

SERVER_API = re.compile(r"/hub/api/users/(?P<user>[^/]+)/servers/(?P<name>[^/]+)/?$")
SPAWN_FORM = re.compile(r"/hub/spawn/(?P<user>[^/]+)/(?P<name>[^/]+)/?$")
AUTHORIZE = re.compile(r"/hub/api/oauth2/authorize/?$")
# the redirect URI JupyterHub registers for a server's OAuth client
SERVER_CALLBACK = re.compile(r"/user/(?P<user>[^/]+)/(?:(?P<name>[^/]+)/)?oauth_callback$")

# configurable-http-proxy runs on the hub's machine and connects from loopback
PROXY_NETWORKS = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped  # "::ffff:127.0.0.1", as Node.js reports IPv4 peers
    return address


def client_address(request) -> str:
    """The address of the client of a tornado request, as the platform's proxy saw it.

    configurable-http-proxy appends the address a connection came from to X-Forwarded-For
    (everything left of it, and X-Real-Ip, is whatever the client sent). So for a
    connection from loopback (the proxy, or the platform's own processes) the answer is the
    right-most X-Forwarded-For entry; for any other connection (an instance calling the hub
    or the platform API directly) it is the connection's own address. The peer address is
    read from the connection, since tornado's xheaders replace request.remote_ip with the
    headers' values.
    """
    context = getattr(request.connection, "context", None)
    address = getattr(context, "address", None)
    peer_text = (
        address[0]
        if isinstance(address, tuple) and address
        else getattr(context, "_orig_remote_ip", None) or request.remote_ip or ""
    )
    peer = _ip(peer_text)
    if peer is None:
        return peer_text
    if not any(peer in network for network in PROXY_NETWORKS):
        return str(peer)
    entries = [
        entry.strip()
        for header in request.headers.get_list("X-Forwarded-For")
        for entry in header.split(",")
        if entry.strip()
    ]
    forwarded = _ip(entries[-1]) if entries else None
    return str(forwarded if forwarded is not None else peer)


def server_of_client(client_id: str, redirect_uri: str) -> str | None:
    """user/name of the server whose OAuth client this is, or None.

    JupyterHub names a server's client "jupyterhub-user-<user>-<name>", which is ambiguous
    when names contain "-" (user a-b's c-d and user a's b-c-d are both
    jupyterhub-user-a-b-c-d); the client's redirect URI, /user/<user>/<name>/oauth_callback,
    is not. The two must agree.
    """
    match = SERVER_CALLBACK.search(urlparse(redirect_uri or "").path)
    if not match:
        return None
    user, name = unquote(match["user"]), unquote(match["name"] or "")
    expected = {f"jupyterhub-user-{quote(user)}" + (f"-{quote(name)}" if name else "")}
    if name:
        expected.add(oauth_client_id(user, name))  # the platform's own, unambiguous form
    if client_id not in expected:
        return None
    return f"{user}/{name}"


def classify(
    method: str,
    path: str,
    query: str,
    body: bytes,
    client_redirect_uri: Callable[[str], str | None] | None = None,
) -> tuple[str, str] | None:
    """(event name, resource id) of a hub request that is an instance operation, or None.

    client_redirect_uri(client_id) gives the redirect URI registered for an OAuth client
    (the hub's database); without it, the authorization request's own redirect_uri is used.
    """
    match = SERVER_API.search(path)
    if match:
        resource = f"{unquote(match['user'])}/{unquote(match['name'])}"
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
        return "startNotebook", f"{unquote(match['user'])}/{unquote(match['name'])}"
    if AUTHORIZE.search(path) and method == "GET":
        args = parse_qs(query)
        client = args.get("client_id", [""])[0]
        if not client.startswith("jupyterhub-user-"):
            return None
        registered = client_redirect_uri(client) if client_redirect_uri else None
        resource = server_of_client(client, registered or args.get("redirect_uri", [""])[0])
        if resource:
            return "openNotebook", resource
    return None


def _registered_redirect_uri(handler) -> Callable[[str], str | None]:
    def lookup(client_id: str) -> str | None:
        from jupyterhub import orm

        client = handler.db.query(orm.OAuthClient).filter_by(identifier=client_id).first()
        return client.redirect_uri if client is not None else None

    return lookup


def hub_event(handler) -> dict | None:
    """The audit event of a hub request about to be answered, or None if it is not one."""
    request = handler.request
    found = classify(
        request.method,
        urlparse(request.uri).path,
        request.query,
        request.body,
        _registered_redirect_uri(handler),
    )
    if found is None:
        return None
    user = getattr(handler, "_jupyterhub_user", None)
    kind = type(user).__name__ if user is not None else ""
    if kind == "Service" or (user is not None and getattr(user, "kind", "") == "service"):
        return None  # the platform API audits its own calls
    status = handler.get_status()
    if found[0] == "openNotebook":
        if user is None:
            return None  # sent to the sign-in page; authorized (and audited) after it
        if status in (302, 303):
            status = 200  # the authorization redirects back to the instance
    outcome = "success" if status < 400 else "denied" if status in (401, 403, 404) else "failure"
    event, resource = found
    return {
        "event": event,
        "actor": getattr(user, "name", None) or "anonymous",
        "source": client_address(request),
        "resource_type": "notebook",
        "resource_id": resource,
        "outcome": outcome,
        "reason": "" if status < 400 else f"HTTP {status} {handler._reason}",
        "details": {"via": "hub"},
    }


def audit_hub_requests(audit_factory):
    """Store the audit event of each instance operation before the hub answers it.

    JupyterHub has no hook between a handler's work and its answer, and its request log runs
    after the answer is sent; so its handlers' finish() is wrapped (once per process): for
    an audited request it waits for the event to be stored (off the event loop), then
    finishes. A second finish() meanwhile (tornado's own, after the handler returns) waits
    for the same. audit_factory() returns the AuditLog, made on first use (the platform
    service migrates the database as it starts).
    """
    from jupyterhub.handlers.base import BaseHandler

    if getattr(BaseHandler.finish, "audited", False):
        return
    original = BaseHandler.finish
    state = {}

    def finish(self, *args, **kwargs):
        pending = getattr(self, "_audit_pending", None)
        if pending is not None:
            return pending
        try:
            event = hub_event(self)
        except Exception:  # noqa: BLE001 - never break a request over its audit
            log.exception("audit: cannot classify %s %s", self.request.method, self.request.uri)
            event = None
        if event is None:
            return original(self, *args, **kwargs)
        chunk = args[0] if args else kwargs.get("chunk")
        if chunk is not None:
            self.write(chunk)
        if "audit" not in state:
            state["audit"] = audit_factory()

        async def record_then_finish():
            await state["audit"].emit(**event)
            if not self._finished:
                original(self)

        self._audit_pending = asyncio.ensure_future(record_then_finish())
        return self._audit_pending

    finish.audited = True
    finish.__doc__ = original.__doc__
    BaseHandler.finish = finish
