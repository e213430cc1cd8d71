"""Auto-stop of idle and overdue instances, and automatic restarts of crashed ones.

Every `lifecycle_interval_seconds` the platform service reads all instances from the hub's
API (with their spawner state: how the last run ended, restarts) and:

- uses each running instance's own report of its activity (busy kernels, terminal commands,
  OOM kills), which the images' server extension posts to `.../instances/{name}/status` with
  the instance's own token. The service never calls into an instance: anything sent there
  (a token above all) is readable by the instance's owner;
- stops a running instance past its idle deadline (the latest of the hub's last_activity,
  which the instance and the SSH gateway report, and the instance's own answer) or past its
  fixed run time;
- restarts a stopped instance whose container died unexpectedly, with exponential backoff,
  at most `restart_max_attempts` times.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

from tornado import web
from workbench import WorkbenchError
from workbench.times import aware_utcnow, isoformat, parse_time

from hub.service.api import APIError, APIHandler
from spawner.flavors import format_bytes
from spawner.lifecycle import IDLE, auto_stop_deadline, duration
from spawner.options import InvalidOptions, parse_auto_stop, validate_instance_name

log = logging.getLogger(__name__)


def effective_auto_stop(server: dict, policy) -> dict:
    """The instance's auto-stop settings with the platform's defaults filled in."""
    raw = (server.get("user_options") or {}).get("auto_stop")
    try:
        return parse_auto_stop(raw, policy)
    except InvalidOptions:
        # bounds changed since it was set: honour what the user chose, as far as it is a
        # duration at all (options stored by an older version may hold NaN or text)
        raw = raw if isinstance(raw, dict) else {}
        return {key: duration(raw.get(key)) for key in ("idle_minutes", "max_hours")}


def lifecycle_fields(server: dict, policy, status: dict | None, max_attempts: int) -> dict:
    """The auto-stop and crash fields of an instance's API model."""
    state = server.get("state") or {}
    last_stop = state.get("last_stop") or {}
    running = bool(server.get("ready"))
    fields = {
        "stops_at": None,
        "stop_reason": None,
        "stopped_reason": None if running else last_stop.get("reason"),
        "stopped_at": last_stop.get("at"),
        "restarts": state.get("restarts", 0),
        "restart_pending": bool(state.get("restart_pending")) and not running,
        "last_crash": last_stop.get("reason") if last_stop.get("crash") else None,
        "out_of_memory": None,
    }
    if running:
        activity = latest(server.get("last_activity"), (status or {}).get("last_activity"))
        deadline, why = auto_stop_deadline(
            effective_auto_stop(server, policy), server.get("started"), activity
        )
        fields["stops_at"] = isoformat(deadline)
        fields["stop_reason"] = why or None
        if status and status.get("oom_kills"):
            limit = status.get("memory_limit")
            at = f" at {format_bytes(limit)}" if limit else ""
            fields["out_of_memory"] = {
                "kills": status["oom_kills"],
                "last_at": status.get("last_oom_kill"),
                "message": (
                    f"out of memory{at}: a process (usually a kernel) was killed; the "
                    "instance keeps running. Free memory or switch to a larger flavor."
                ),
            }
    elif fields["restart_pending"] and fields["restarts"] >= max_attempts:
        fields["restart_pending"] = False
    return fields


def latest(*times) -> str | None:
    """The latest of some ISO times (None ignored)."""
    parsed = [t for t in (parse_time(x) for x in times) if t is not None]
    return isoformat(max(parsed)) if parsed else None


# a report older than this many report intervals no longer counts (the instance stopped
# reporting: it is busy, restarting, or its image lacks the extension)
STATUS_STALE_REPORTS = 3
STATUS_COUNTS = ("busy_kernels", "running_terminals", "oom_kills")


def clean_status(report) -> dict:
    """An instance's report of itself, checked: the instance is its owner's to change, so
    nothing in it is trusted beyond its owner's own instance (times in the future are
    clamped to now: activity cannot be reported ahead)."""
    if not isinstance(report, dict):
        raise APIError(400, "Send the instance's status as a JSON object.")
    now = aware_utcnow()
    status: dict = {}
    for key in ("last_activity", "last_oom_kill"):
        value = report.get(key)
        if value is None:
            status[key] = None
            continue
        try:
            at = parse_time(value) if isinstance(value, str) else None
        except ValueError:
            at = None
        if at is None:
            raise APIError(400, f"{key} must be an ISO 8601 time or null, not {value!r}.")
        status[key] = isoformat(min(at, now))
    for key in STATUS_COUNTS:
        value = report.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**31:
            raise APIError(400, f"{key} must be a count (0 or more), not {value!r}.")
        status[key] = value
    limit = report.get("memory_limit")
    if limit is not None and (
        isinstance(limit, bool) or not isinstance(limit, int) or not 0 < limit < 2**63
    ):
        raise APIError(400, f"memory_limit must be bytes or null, not {limit!r}.")
    status["memory_limit"] = limit
    return status


class Lifecycle:
    """The periodic check that stops and restarts instances."""

    def __init__(self, manager, settings):
        self.manager = manager
        self.hub = manager.hub
        self.policy = manager.policy
        self.settings = settings
        # (user, instance) -> (monotonic time received, the instance's last report)
        self.status: dict[tuple[str, str], tuple[float, dict]] = {}
        self._busy: set[tuple[str, str]] = set()
        self._task: asyncio.Task | None = None

    def start(self):
        self._task = asyncio.ensure_future(self.run())

    async def stop(self):
        if self._task:
            self._task.cancel()

    async def run(self):
        interval = self.settings.lifecycle_interval_seconds
        log.info("instance lifecycle: checking every %ss", interval)
        while True:
            try:
                await self.check()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("instance lifecycle check failed")
            await asyncio.sleep(interval)

    def servers(self):
        """(user, name, server model) of every instance, stopped ones included."""
        return self.manager.all_servers()

    async def check(self):
        seen = set()
        tasks = []
        async for user, name, server in self.servers():
            key = (user, name)
            seen.add(key)
            if key in self._busy:
                continue  # a stop or restart of it is under way
            if server.get("ready") and not server.get("pending"):
                tasks.append(self.check_running(user, name, server))
            elif server.get("stopped") and not server.get("pending"):
                self.status.pop(key, None)
                tasks.append(self.check_stopped(user, name, server))
        for key in set(self.status) - seen:
            self.status.pop(key, None)
        if tasks:
            await asyncio.gather(*tasks)

    def record_status(self, user: str, name: str, report: dict) -> dict:
        """Keep a running instance's report of itself (checked and normalised)."""
        status = clean_status(report)
        self.status[(user, name)] = (time.monotonic(), status)
        return status

    def instance_status(self, user: str, name: str) -> dict | None:
        """The instance's latest report, if recent enough; None if it has not reported."""
        entry = self.status.get((user, name))
        if entry is None:
            return None
        received, status = entry
        stale_after = STATUS_STALE_REPORTS * self.settings.activity_report_seconds
        if time.monotonic() - received > stale_after:
            return None
        return status

    async def check_running(self, user: str, name: str, server: dict):
        status = self.instance_status(user, name)
        auto_stop = effective_auto_stop(server, self.policy)
        activity = latest(server.get("last_activity"), (status or {}).get("last_activity"))
        deadline, why = auto_stop_deadline(auto_stop, server.get("started"), activity)
        if deadline is None:
            return
        if why == IDLE and status is None and deadline < datetime.max.replace(tzinfo=UTC):
            # without the instance's own answer, give its next report to the hub time
            deadline += timedelta(seconds=1.2 * self.settings.activity_report_seconds)
        if aware_utcnow() < deadline:
            return
        log.info("instance %s/%s: stopping (%s; last activity %s)", user, name, why, activity)
        await self._act(user, name, self.manager.stop(user, name))

    async def check_stopped(self, user: str, name: str, server: dict):
        state = server.get("state") or {}
        if not state.get("restart_pending"):
            return
        restarts = int(state.get("restarts") or 0)
        if restarts >= self.settings.restart_max_attempts:
            return
        crashed_at = parse_time((state.get("last_stop") or {}).get("at")) or aware_utcnow()
        delay = self.settings.restart_backoff_seconds * 2**restarts
        if aware_utcnow() < crashed_at + timedelta(seconds=delay):
            return
        log.warning(
            "instance %s/%s: restarting after a crash (%s), attempt %s of %s",
            user,
            name,
            (state.get("last_stop") or {}).get("reason"),
            restarts + 1,
            self.settings.restart_max_attempts,
        )
        await self._act(user, name, self.manager.start(user, name))

    async def _act(self, user: str, name: str, coro):
        key = (user, name)
        self._busy.add(key)
        started = time.monotonic()
        try:
            await coro
        except Exception as e:  # noqa: BLE001 - logged; the next check tries again
            log.warning("instance %s/%s: %s", user, name, getattr(e, "message", e))
        finally:
            self._busy.discard(key)
            log.debug("instance %s/%s: done in %.1fs", user, name, time.monotonic() - started)

    def update_model(self, user: str, server: dict, model: dict):
        """Add the auto-stop and crash fields to an instance's API model."""
        fields = lifecycle_fields(
            server,
            self.policy,
            self.instance_status(user, server["name"]),
            self.settings.restart_max_attempts,
        )
        model.update(fields)
        exhausted = (
            model["state"] == "stopped"
            and fields["last_crash"]
            and (server.get("state") or {}).get("restart_pending")
            and not fields["restart_pending"]
        )
        if exhausted:
            model["state"] = "failed"
            model["error"] = (
                f"The instance stopped unexpectedly ({fields['last_crash']}) and was restarted "
                f"{fields['restarts']} times. Start it again yourself; if it keeps stopping, "
                "pick a larger flavor."
            )

    async def extend(self, user: str, name: str, minutes) -> dict:
        """Keep a running instance longer: counts as activity now (the idle deadline moves)
        and adds minutes to its fixed run time, if it has one."""
        if (
            isinstance(minutes, bool)
            or not isinstance(minutes, (int, float))
            or not math.isfinite(minutes)
        ):
            raise APIError(400, 'Say how long to extend by: {"minutes": 60}.')
        most = self.policy.max_runtime_max_hours * 60
        if not 0 < minutes <= most:
            raise APIError(
                400, f"Extend by more than 0 and at most {most:g} minutes, not {minutes!r}."
            )
        server = await self.manager.get_server(user, name)
        if not server.get("ready"):
            raise APIError(
                409, f"Instance {name!r} is not running: start it instead of extending it."
            )
        auto_stop = effective_auto_stop(server, self.policy)
        hours = auto_stop.get("max_hours") or 0
        if hours:
            new_hours = round(hours + minutes / 60, 6)
            if new_hours > self.policy.max_runtime_max_hours:
                left = (self.policy.max_runtime_max_hours - hours) * 60
                raise APIError(
                    400,
                    f"Instance {name!r} already runs for up to {hours:g} hours; the most "
                    f"allowed is {self.policy.max_runtime_max_hours:g}, so extend by at most "
                    f"{max(left, 0):.0f} minutes.",
                )
            await self.manager.update(
                user, name, {"auto_stop": {**auto_stop, "max_hours": new_hours}}
            )
        await self.report_activity(user, name)
        log.info("instance %s/%s: extended by %s minutes", user, name, minutes)
        return await self.manager.get(user, name)

    async def report_activity(self, user: str, name: str):
        """Tell the hub the instance is in use now (an extend counts as activity)."""
        body = {"servers": {name: {"last_activity": isoformat(aware_utcnow())}}}
        try:
            await self.hub.request("POST", f"/users/{quote(user, safe='')}/activity", body)
        except WorkbenchError as e:
            log.warning("instance %s/%s: activity not recorded: %s", user, name, e.message)


class ExtendHandler(APIHandler):
    """POST .../instances/{name}/extend {"minutes": N}: keep a running instance longer."""

    @web.authenticated
    async def post(self, user, name):
        self.check_user(user)
        # keeping an instance running longer changes its auto-stop settings
        self.require_scope("instances:update")
        body = self.get_json_body()
        unknown = sorted(set(body) - {"minutes"})
        if unknown:
            raise web.HTTPError(400, f"Unknown field(s) {', '.join(unknown)}; send minutes.")
        lifecycle = self.manager.lifecycle
        self.write_json(await self.run(lifecycle.extend(user, name, body.get("minutes"))))


class InstanceStatusHandler(APIHandler):
    """POST .../instances/{name}/status: a running instance reports its own activity.

    Called by the images' server extension with the instance's own token: a server's token
    may report only for its own instance, a user's token for that user's instances.
    """

    @web.authenticated
    async def post(self, user, name):
        self.check_user(user)
        scopes = set(self.current_user.get("scopes") or ())
        servers = {s.partition("=")[2] for s in scopes if s.startswith("access:servers!server=")}
        if servers and f"{user}/{name}" not in servers:
            self.denied = True
            raise web.HTTPError(403, "An instance reports only its own status.")
        if not servers:
            self.require_scope("instances:update")
        try:
            validate_instance_name(name)
            status = self.manager.lifecycle.record_status(user, name, self.get_json_body())
        except InvalidOptions as e:
            raise web.HTTPError(400, str(e)) from None
        except APIError as e:
            raise web.HTTPError(e.code, e.message) from None
        self.write_json(status)


_instance = r"/users/(?P<user>[^/]+)/instances/(?P<name>[^/]+)"
default_handlers = [
    (_instance + "/extend", ExtendHandler),
    (_instance + "/status", InstanceStatusHandler),
]
