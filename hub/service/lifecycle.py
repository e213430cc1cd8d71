"""Auto-stop of idle and overdue instances, and automatic restarts of crashed ones.

Every `lifecycle_interval_seconds` the platform service reads all instances from the hub's
API (with their spawner state: how the last run ended, restarts) and:

- asks each running instance for its own activity (/api/workbench/status, served by the
  images' server extension: busy kernels, terminal commands, OOM kills);
- stops a running instance past its idle deadline (the latest of the hub's last_activity,
  which the instance and the SSH gateway report, and the instance's own answer) or past its
  fixed run time;
- restarts a stopped instance whose container died unexpectedly, with exponential backoff,
  at most `restart_max_attempts` times.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import timedelta
from urllib.parse import quote, urlparse

from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from spawner.flavors import format_bytes
from spawner.lifecycle import (
    IDLE,
    auto_stop_deadline,
    isoformat,
    parse_time,
    utcnow,
)
from spawner.options import InvalidOptions, parse_auto_stop

from .handlers import APIHandler
from .hubapi import HubAPIError
from .instances import InstanceError

log = logging.getLogger(__name__)


def effective_auto_stop(server: dict, policy) -> dict:
    """The instance's auto-stop settings with the platform's defaults filled in."""
    raw = (server.get("user_options") or {}).get("auto_stop")
    try:
        return parse_auto_stop(raw, policy)
    except InvalidOptions:
        # bounds changed since it was set: honour what the user chose
        return dict(raw or {})


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


class Lifecycle:
    """The periodic check that stops and restarts instances."""

    def __init__(self, manager, settings, public_url: str):
        self.manager = manager
        self.hub = manager.hub
        self.policy = manager.policy
        self.settings = settings
        url = urlparse(public_url)
        host = url.hostname if url.hostname not in (None, "", "0.0.0.0", "::") else "127.0.0.1"
        self.public_url = f"{url.scheme}://{host}:{url.port or 80}"
        self.client = AsyncHTTPClient()
        self.status: dict[tuple[str, str], dict] = {}
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

    async def servers(self):
        """(user, name, server model) of every instance, stopped ones included."""
        offset, limit = 0, 200
        while True:
            users = await self.hub.request(
                "GET", f"/users?include_stopped_servers=1&offset={offset}&limit={limit}"
            )
            if isinstance(users, dict):  # paginated form
                users = users.get("items", [])
            for user in users or []:
                servers = {n: s for n, s in (user.get("servers") or {}).items() if n}
                if self.hub.live is not None:
                    await self.hub.live.overlay(user["name"], servers)
                for name, server in servers.items():
                    yield user["name"], name, server
            if not users or len(users) < limit:
                return
            offset += limit

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

    async def instance_status(self, user: str, name: str, server: dict) -> dict | None:
        """The instance's own report (activity, OOM kills); None if it does not answer."""
        url = self.public_url + server["url"].rstrip("/") + "/api/workbench/status"
        req = HTTPRequest(
            url,
            headers={"Authorization": f"token {self.hub.token}"},
            request_timeout=5,
            follow_redirects=False,
        )
        try:
            resp = await self.client.fetch(req)
            status = json.loads(resp.body)
        except Exception as e:  # noqa: BLE001 - an image without the extension, or busy
            log.debug("instance %s/%s status not available: %s", user, name, e)
            return None
        self.status[(user, name)] = status
        return status

    async def check_running(self, user: str, name: str, server: dict):
        status = await self.instance_status(user, name, server)
        auto_stop = effective_auto_stop(server, self.policy)
        activity = latest(server.get("last_activity"), (status or {}).get("last_activity"))
        deadline, why = auto_stop_deadline(auto_stop, server.get("started"), activity)
        if deadline is None:
            return
        if why == IDLE and status is None:
            # without the instance's own answer, give its next report to the hub time
            deadline += timedelta(seconds=1.2 * self.settings.activity_report_seconds)
        if utcnow() < deadline:
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
        crashed_at = parse_time((state.get("last_stop") or {}).get("at")) or utcnow()
        delay = self.settings.restart_backoff_seconds * 2**restarts
        if utcnow() < crashed_at + timedelta(seconds=delay):
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
            self.status.get((user, server["name"])),
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
        if isinstance(minutes, bool) or not isinstance(minutes, (int, float)):
            raise InstanceError(400, 'Say how long to extend by: {"minutes": 60}.')
        most = self.policy.max_runtime_max_hours * 60
        if not 0 < minutes <= most:
            raise InstanceError(
                400, f"Extend by more than 0 and at most {most:g} minutes, not {minutes!r}."
            )
        server = await self.manager.get_server(user, name)
        if not server.get("ready"):
            raise InstanceError(
                409, f"Instance {name!r} is not running: start it instead of extending it."
            )
        auto_stop = effective_auto_stop(server, self.policy)
        hours = auto_stop.get("max_hours") or 0
        if hours:
            new_hours = round(hours + minutes / 60, 6)
            if new_hours > self.policy.max_runtime_max_hours:
                left = (self.policy.max_runtime_max_hours - hours) * 60
                raise InstanceError(
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
        body = {"servers": {name: {"last_activity": isoformat(utcnow())}}}
        try:
            await self.hub.request("POST", f"/users/{quote(user, safe='')}/activity", body)
        except HubAPIError as e:
            log.warning("instance %s/%s: activity not recorded: %s", user, name, e.message)


class ExtendHandler(APIHandler):
    """POST .../instances/{name}/extend {"minutes": N}: keep a running instance longer."""

    @web.authenticated
    async def post(self, user, name):
        self.check_user(user)
        body = self.get_json_body()
        unknown = sorted(set(body) - {"minutes"})
        if unknown:
            raise web.HTTPError(400, f"Unknown field(s) {', '.join(unknown)}; send minutes.")
        lifecycle = self.manager.lifecycle
        self.write_json(await self.run(lifecycle.extend(user, name, body.get("minutes"))))
