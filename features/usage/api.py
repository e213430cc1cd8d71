"""Usage API and admin page: resource-seconds per user, day and flavor, with cost."""

from __future__ import annotations

from datetime import timedelta

from jupyterhub.services.auth import HubOAuthenticated
from tornado import web
from workbench.times import utcnow

from hub.audit.api import parse_time
from hub.rbac import has_scope
from hub.service.api import APIHandler
from spawner.templating import render_template

from .store import CSV_FIELDS, to_csv, usage_report

MAX_RANGE = timedelta(days=366)


def report_args(handler, current_user: dict) -> dict:
    """since/until/user of a usage query, checked; users see only their own usage."""
    known = {"since", "until", "user", "workspace", "format"}
    unknown = sorted(set(handler.request.arguments) - known)
    if unknown:
        raise web.HTTPError(
            400, f"Unknown parameter(s): {', '.join(unknown)}. Known: {', '.join(sorted(known))}."
        )
    now = utcnow()
    since_arg = handler.get_argument("since", "").strip()
    until_arg = handler.get_argument("until", "").strip()
    since = parse_time(since_arg, "since") if since_arg else now - timedelta(days=7)
    until = parse_time(until_arg, "until") if until_arg else now
    if since >= until:
        raise web.HTTPError(400, "'since' must be before 'until'.")
    if until - since > MAX_RANGE:
        raise web.HTTPError(400, "Ask for at most 366 days at a time.")
    user = handler.get_argument("user", "").strip() or None
    workspace = handler.get_argument("workspace", "").strip() or None
    if not has_scope(current_user, "usage:admin"):
        if not has_scope(current_user, "usage:read"):
            handler.denied = True
            raise web.HTTPError(403, "Permission denied: this needs custom:workbench:usage:read.")
        if user not in (None, current_user["name"]):
            handler.denied = True
            raise web.HTTPError(403, "You can see only your own usage.")
        user = current_user["name"]
    return {"since": since, "until": until, "user": user, "workspace": workspace}


class UsageHandler(APIHandler):
    """GET /api/usage?since=&until=&user=&format=csv"""

    @web.authenticated
    async def get(self):
        args = report_args(self, self.current_user)
        fmt = self.get_argument("format", "json")
        if fmt not in ("json", "csv"):
            raise web.HTTPError(400, "format must be json or csv.")
        settings = self.settings["workbench_settings"]
        rows = await self.db.run(lambda s: usage_report(s, prices=dict(settings.prices), **args))
        if fmt == "csv":
            self.set_header("Content-Type", "text/csv; charset=utf-8")
            self.set_header("Content-Disposition", 'attachment; filename="usage.csv"')
            self.finish(to_csv(rows))
            return
        self.write_json(
            {
                "since": args["since"].isoformat() + "Z",
                "until": args["until"].isoformat() + "Z",
                "currency": settings.currency,
                "rows": rows,
                "total_cost": round(sum(r["cost"] or 0 for r in rows), 6),
            }
        )


class UsagePageHandler(HubOAuthenticated, web.RequestHandler):
    """The usage page: everyone's usage for administrators, one's own for others."""

    @web.authenticated
    async def get(self):
        args = report_args(self, self.current_user)
        settings = self.settings["workbench_settings"]
        db = self.settings["db"]
        rows = await db.run(lambda s: usage_report(s, prices=dict(settings.prices), **args))
        cells = [
            [" ".join(r[k]) if k == "instances" else str(r[k]) for k in CSV_FIELDS] for r in rows
        ]
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(
            render_template(
                __file__,
                "usage.html",
                fields=CSV_FIELDS,
                rows=cells,
                total=sum(r["cost"] or 0 for r in rows),
                currency=settings.currency,
                csv_url=f"{self.settings['api_prefix']}/usage?format=csv",
                values={k: self.get_argument(k, "") for k in ("since", "until", "user")},
            )
        )


default_handlers = [(r"/usage", UsageHandler)]
default_pages = [(r"/admin/usage", UsagePageHandler)]
