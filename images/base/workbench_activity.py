"""Jupyter server extension: what counts as activity in an instance, and its kernels' OOM kills.

jupyter_server's last activity (which jupyterhub-singleuser reports to the hub) is the latest
of: API requests, kernel messages of executions, terminal I/O. This extension changes it so:

- reads (GET, HEAD) do not count: an open JupyterLab tab polls kernels, sessions, terminals
  and the file browser on its own; requests that change something (run, save, open a
  kernel or terminal) still count;
- a kernel that is busy counts, though a long cell may print nothing for hours;
- a terminal running a command counts (a shell waiting at its prompt does not), though
  nobody watches its output.

It also watches the container's memory cgroup for processes killed for lack of memory (a
kernel usually: the container keeps running). It reports all this to the platform API
(`POST .../users/{user}/instances/{name}/status`) with this server's own token, every activity
report interval, and serves it at /api/workbench/status for the user. The platform never
calls into the instance: a user controls this server, so nothing privileged may be sent to it.
"""

from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, datetime
from urllib.parse import quote

from jupyter_server.base.handlers import APIHandler
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
OOM_COUNTERS = (
    "/sys/fs/cgroup/memory.events",  # cgroup v2
    "/sys/fs/cgroup/memory/memory.oom_control",  # cgroup v1
)
MEMORY_LIMITS = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")


def utcnow() -> datetime:
    return datetime.now(UTC)


def isoformat(dt: datetime | None) -> str | None:
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z") if dt else None


def _update_api_activity(self):
    # only requests that change something are the user's activity
    if self.request.method in READ_METHODS:
        return
    _original_update_api_activity(self)


_original_update_api_activity = APIHandler.update_api_activity


def oom_kills() -> int | None:
    """Processes the kernel killed in this container's memory cgroup for lack of memory."""
    for path in OOM_COUNTERS:
        try:
            with open(path) as f:
                for line in f:
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        return int(value)
        except (OSError, ValueError):
            continue
    return None


def memory_limit() -> int | None:
    for path in MEMORY_LIMITS:
        try:
            with open(path) as f:
                value = f.read().strip()
        except OSError:
            continue
        if value.isdigit() and int(value) < 2**60:
            return int(value)
    return None


def has_children(pid: int) -> bool:
    """Whether process pid has child processes (a command running in a terminal's shell)."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return False
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # the command name may hold spaces: fields after its closing parenthesis
        fields = stat.rpartition(")")[2].split()
        if len(fields) > 1 and fields[1] == str(pid):
            return True
    return False


class ActivityWatcher:
    """Marks busy kernels and running terminal commands as activity; counts OOM kills."""

    def __init__(self, serverapp):
        self.serverapp = serverapp
        self.settings = serverapp.web_app.settings
        self.oom_baseline = oom_kills()
        self.oom_count = 0
        self.last_oom = None
        self.busy_kernels = 0
        self.running_terminals = 0

    def check(self):
        now = utcnow()
        kernels = self.serverapp.kernel_manager
        self.busy_kernels = 0
        for kernel_id in list(kernels.list_kernel_ids()):
            try:
                kernel = kernels.get_kernel(kernel_id)
            except KeyError:
                continue
            if getattr(kernel, "execution_state", None) == "busy":
                self.busy_kernels += 1
        if self.busy_kernels:
            # any setting ending in _last_activity counts in the server's last activity
            self.settings["busy_kernel_last_activity"] = now
        terminals = getattr(self.settings.get("terminal_manager"), "terminals", {}) or {}
        self.running_terminals = 0
        for term in list(terminals.values()):
            pid = getattr(getattr(term, "ptyproc", None), "pid", None)
            if pid and has_children(pid):
                self.running_terminals += 1
        if self.running_terminals:
            self.settings["terminal_command_last_activity"] = now
        count = oom_kills()
        if count is not None and self.oom_baseline is not None:
            if count - self.oom_baseline > self.oom_count:
                self.oom_count = count - self.oom_baseline
                self.last_oom = now
                self.serverapp.log.warning(
                    "A process (usually a kernel) was killed for lack of memory (%s so far)",
                    self.oom_count,
                )

    def status(self) -> dict:
        return {
            "last_activity": isoformat(self.serverapp.web_app.last_activity()),
            "busy_kernels": self.busy_kernels,
            "running_terminals": self.running_terminals,
            "oom_kills": self.oom_count,
            "last_oom_kill": isoformat(self.last_oom),
            "memory_limit": memory_limit(),
        }


def platform_status_url() -> str:
    """Where this instance reports its status; empty outside the platform."""
    api = (os.environ.get("WORKBENCH_API_URL") or "").rstrip("/")
    if not api:
        hub_api = (os.environ.get("JUPYTERHUB_API_URL") or "").rstrip("/")
        if hub_api.endswith("/hub/api"):
            api = hub_api[: -len("/hub/api")] + "/services/workbench/api"
    user = os.environ.get("JUPYTERHUB_USER")
    name = os.environ.get("JUPYTERHUB_SERVER_NAME")
    if not (api and user and name):
        return ""
    return f"{api}/users/{quote(user, safe='')}/instances/{quote(name, safe='')}/status"


class StatusReporter:
    """Posts the watcher's status to the platform with this server's own token."""

    def __init__(self, watcher: ActivityWatcher, url: str, token: str, log):
        self.watcher = watcher
        self.url = url
        self.token = token
        self.log = log
        self.failures = 0

    async def report(self):
        self.watcher.check()
        request = HTTPRequest(
            self.url,
            method="POST",
            body=json.dumps(self.watcher.status()),
            headers={
                "Authorization": f"token {self.token}",
                "Content-Type": "application/json",
            },
            request_timeout=10,
            follow_redirects=False,
        )
        try:
            await AsyncHTTPClient().fetch(request)
        except Exception as e:  # noqa: BLE001 - the platform restarting: report again later
            self.failures += 1
            if self.failures in (1, 10) or self.failures % 100 == 0:
                self.log.warning("workbench status not reported (%s so far): %s", self.failures, e)
        else:
            self.failures = 0


class StatusHandler(APIHandler):
    """GET /api/workbench/status: activity and OOM kills, for the platform's lifecycle."""

    _track_activity = False

    @web.authenticated
    def get(self):
        watcher = self.settings["workbench_activity"]
        watcher.check()
        self.finish(watcher.status())


def _jupyter_server_extension_points():
    return [{"module": "workbench_activity"}]


def _load_jupyter_server_extension(serverapp):
    APIHandler.update_api_activity = _update_api_activity
    watcher = ActivityWatcher(serverapp)
    serverapp.web_app.settings["workbench_activity"] = watcher
    base_url = serverapp.web_app.settings["base_url"].rstrip("/")
    serverapp.web_app.add_handlers(".*$", [(base_url + "/api/workbench/status", StatusHandler)])
    report = int(os.environ.get("JUPYTERHUB_ACTIVITY_INTERVAL") or 300)
    interval = min(max(report / 2, 1), 15)
    url = platform_status_url()
    token = os.environ.get("JUPYTERHUB_API_TOKEN", "")

    reporter = StatusReporter(watcher, url, token, serverapp.log) if url and token else None

    async def run_checks():
        # a task on the server's running loop, started once that loop runs
        while True:
            try:
                if reporter is not None:
                    await reporter.report()
                else:
                    watcher.check()
            except Exception:  # noqa: BLE001 - keep checking; the next round may work
                serverapp.log.exception("workbench activity check failed")
            await asyncio.sleep(interval)

    serverapp.io_loop.add_callback(run_checks)
    serverapp.log.info(
        "workbench activity rules loaded (checks every %ss, reports to %s)",
        interval,
        url or "nobody",
    )
