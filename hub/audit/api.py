"""Audit API and admin page: query events, export them as JSON lines, verify the chain."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from jupyterhub.services.auth import HubOAuthenticated
from tornado import web
from workbench.times import utcnow

from spawner.templating import render_template

from ..service.api import APIHandler, needs_scope
from . import AuditQuery
from .log import OUTCOMES

MAX_LIMIT = 10000


def parse_time(value: str, name: str) -> datetime:
    """Naive UTC time from ISO 8601 ("2026-11-30", "2026-11-30T10:00:00Z") or "-24h"/"-7d"."""
    text = value.strip()
    try:
        if text.startswith("-") and text[-1:] in ("h", "d", "m") and text[1:-1].isdigit():
            unit = {"h": "hours", "d": "days", "m": "minutes"}[text[-1]]
            return utcnow() - timedelta(**{unit: int(text[1:-1])})
        when = datetime.fromisoformat(text.removesuffix("Z"))
        if when.tzinfo is not None:
            when = when.astimezone(UTC).replace(tzinfo=None)
        return when
    except (ValueError, OverflowError):
        # not a time, or one outside the years 1 to 9999
        raise web.HTTPError(
            400,
            f"{name}={value!r} is not a time: use ISO 8601 (2026-11-30T10:00:00Z) "
            "or a relative time such as -24h or -7d.",
        ) from None


def query_from_args(handler: web.RequestHandler) -> AuditQuery:
    """An AuditQuery from ?since=&until=&user=&resource_type=&resource=&event=&outcome=&limit="""
    known = {
        "since",
        "until",
        "user",
        "resource_type",
        "resource",
        "event",
        "outcome",
        "limit",
        "offset",
        "format",
    }
    unknown = sorted(set(handler.request.arguments) - known)
    if unknown:
        raise web.HTTPError(
            400, f"Unknown filter(s): {', '.join(unknown)}. Known: {', '.join(sorted(known))}."
        )

    def arg(name):
        value = handler.get_argument(name, "")
        return value.strip() or None

    q = AuditQuery()
    if arg("since"):
        q.since = parse_time(arg("since"), "since")
    if arg("until"):
        q.until = parse_time(arg("until"), "until")
    if q.since and q.until and q.since >= q.until:
        raise web.HTTPError(400, "'since' must be before 'until'.")
    q.actor, q.resource_type, q.resource_id, q.event = (
        arg("user"),
        arg("resource_type"),
        arg("resource"),
        arg("event"),
    )
    q.outcome = arg("outcome")
    if q.outcome and q.outcome not in OUTCOMES:
        raise web.HTTPError(400, f"outcome must be one of {', '.join(OUTCOMES)}.")
    for name, low, high in (("limit", 1, MAX_LIMIT), ("offset", 0, 10**9)):
        if arg(name) is None:
            continue
        try:
            value = int(arg(name))
        except ValueError:
            raise web.HTTPError(400, f"{name} must be a whole number.") from None
        if not low <= value <= high:
            raise web.HTTPError(400, f"{name} must be between {low} and {high}.")
        setattr(q, name, value)
    return q


class AuditEventsHandler(APIHandler):
    """GET /api/audit: events, newest first; ?format=jsonl exports JSON lines."""

    @web.authenticated
    @needs_scope("audit:read")
    async def get(self):
        query = query_from_args(self)
        fmt = self.get_argument("format", "json")
        if fmt not in ("json", "jsonl"):
            raise web.HTTPError(400, "format must be json or jsonl.")
        events = await asyncio.to_thread(self.settings["audit"].query, query)
        if fmt == "jsonl":
            self.set_header("Content-Type", "application/x-ndjson")
            self.set_header("Content-Disposition", 'attachment; filename="audit.jsonl"')
            self.finish("".join(json.dumps(e) + "\n" for e in events))
            return
        self.write_json(events)


class AuditVerifyHandler(APIHandler):
    """GET /api/audit/verify: whether the stored chain is intact."""

    @web.authenticated
    @needs_scope("audit:read")
    async def get(self):
        checked, problems = await asyncio.to_thread(self.settings["audit"].verify)
        self.write_json({"ok": not problems, "checked": checked, "problems": problems})


class AuditPageHandler(HubOAuthenticated, web.RequestHandler):
    """The admin page of the audit log (filters as in the API)."""

    @web.authenticated
    async def get(self):
        from ..rbac import has_scope

        if not has_scope(self.current_user, "audit:read"):
            raise web.HTTPError(403, "The audit log is for administrators.")
        query = query_from_args(self)
        query.limit = min(query.limit, 500)
        events = await asyncio.to_thread(self.settings["audit"].query, query)
        # the export: the same filters, as JSON lines
        filters = [(k, v[0].decode()) for k, v in self.request.arguments.items() if k != "format"]
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(
            render_template(
                __file__,
                "audit.html",
                events=events,
                columns=("time", "actor", "source", "event", "resource_type", "resource_id"),
                export_url=f"{self.settings['api_prefix']}/audit?"
                + urlencode([("format", "jsonl"), *filters]),
                values={k: self.get_argument(k, "") for k in FILTERS},
            )
        )


FILTERS = ("since", "until", "user", "resource", "event", "outcome")


default_handlers = [(r"/audit", AuditEventsHandler), (r"/audit/verify", AuditVerifyHandler)]
default_pages = [(r"/admin/audit", AuditPageHandler)]
