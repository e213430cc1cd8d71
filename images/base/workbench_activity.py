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
kernel usually: the container keeps running) and serves all this at /api/workbench/status
for the platform.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

from jupyter_server.base.handlers import APIHandler
from tornado import web
from tornado.ioloop import PeriodicCallback

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
    PeriodicCallback(watcher.check, interval * 1000).start()
    serverapp.log.info("workbench activity rules loaded (checks every %ss)", interval)
