"""Tie a hub-managed service's process to the hub that started it, and reclaim orphans.

JupyterHub starts its managed services (the platform API, the SSH gateway) as child
processes and stops them when it stops. A hub killed hard (SIGKILL, OOM killer, a crash) stops
nothing: its services would keep running with old code and settings and keep their ports, so
the next hub's services could not listen. Each service therefore

- asks the kernel to send it SIGTERM when the hub dies (Linux's PR_SET_PDEATHSIG), and also
  watches its parent (any platform): a new parent means the hub is gone;
- at start, records its pid in the data folder and ends a predecessor still running under
  the same pid file (one that missed both signals), before it takes the port.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys
import time
from pathlib import Path

log = logging.getLogger("workbench.lifeline")

PR_SET_PDEATHSIG = 1


def die_with_parent() -> int:
    """Have the kernel send SIGTERM when the parent process ends; the parent's pid."""
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)
    return parent


async def watch_parent(parent: int, on_gone, interval: float = 1.0):
    """Call on_gone() once this process's parent is no longer `parent`."""
    while True:
        if os.getppid() != parent:
            break
        await asyncio.sleep(interval)
    log.warning("the hub (pid %s) is gone: stopping", parent)
    on_gone()


def _alive(pid: int) -> bool:
    """Whether pid runs (a zombie, dead but not reaped by its new parent, does not)."""
    proc = Path("/proc")
    if proc.is_dir():
        try:
            stat = (proc / str(pid) / "stat").read_text()
        except OSError:
            return False
        return stat.rpartition(")")[2].split()[:1] != ["Z"]
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _runs(pid: int, module: str) -> bool:
    """Whether pid is `python -m module` (a pid may have been reused by another program)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return not Path("/proc").is_dir()  # no /proc to ask: trust the pid file
    return module.encode() in cmdline


def reclaim(pid_file: Path, module: str, timeout: float = 10.0) -> int | None:
    """End a predecessor recorded in pid_file that still runs `python -m module`, then record
    this process. Returns the predecessor's pid if one was ended.

    Blocking (it waits for the predecessor to exit): call it before the event loop serves.
    """
    ended = None
    try:
        old = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        old = None
    if old and old != os.getpid() and _alive(old):
        if _runs(old, module):
            log.warning("ending %s left running by a previous hub (pid %s)", module, old)
            with contextlib.suppress(ProcessLookupError):
                os.kill(old, signal.SIGTERM)
                os.kill(old, signal.SIGCONT)  # a stopped process handles SIGTERM once resumed
            deadline = time.monotonic() + timeout
            while _alive(old) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _alive(old):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(old, signal.SIGKILL)
                time.sleep(0.2)
            ended = old
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = pid_file.with_suffix(".tmp")
    tmp.write_text(str(os.getpid()))
    tmp.replace(pid_file)
    return ended


async def hold(pid_file: Path, module: str, stop) -> asyncio.Task:
    """What a service's main() does first: die with the hub, reclaim a predecessor.

    `stop` is called when the hub is gone; returns the task watching the hub.
    """
    parent = die_with_parent()
    await asyncio.to_thread(reclaim, pid_file, module)
    return asyncio.ensure_future(watch_parent(parent, stop))


def release(pid_file: Path):
    """Forget this process's pid file at a clean stop (if it is still ours)."""
    with contextlib.suppress(OSError, ValueError):
        if int(pid_file.read_text().strip()) == os.getpid():
            pid_file.unlink()
