"""TensorBoard processes in an instance: started on a free loopback port over runs' event
folders, reached through JupyterLab's proxy (<base_url>/proxy/<port>/), stopped.

The lab extension and the SDK (from a kernel) start them the same way, with the Python of the
JupyterLab server's environment (/opt/jupyter, which has tensorboard) where it exists. A
TensorBoard ends with the process that started it (it watches its parent), so neither a
restarted JupyterLab nor a restarted kernel leaves one behind.
"""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

# the JupyterLab server's environment in the platform's images: it has tensorboard
JUPYTER_PYTHON = "/opt/jupyter/bin/python"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
# a port taken between choosing it and TensorBoard binding it: another port, this many times
PORT_TRIES = 3
# what TensorBoard's child runs: it ends when its parent does, then runs TensorBoard's main
# with the arguments after the parent's pid
BOOT = """\
import os, sys, threading, time
parent = int(sys.argv.pop(1))
def watch():
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(0)
threading.Thread(target=watch, daemon=True).start()
sys.argv[0] = "tensorboard"
from tensorboard.main import run_main
run_main()
"""


class TensorBoardError(RuntimeError):
    """TensorBoard could not be started; the message says why (its own last words)."""


def tensorboard_python() -> str:
    """The Python that runs TensorBoard: the JupyterLab server's where it exists (in the
    platform's images), else this one."""
    return JUPYTER_PYTHON if os.path.exists(JUPYTER_PYTHON) else sys.executable


def free_port(host: str = "127.0.0.1") -> int:
    """A loopback port no one listens on now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def logdir_spec(logdirs: dict[str, str | os.PathLike]) -> str:
    """TensorBoard's --logdir_spec: label:path,... (labels and paths without ',' or ':' in
    labels, which the spec cannot carry)."""
    parts = []
    for label, path in logdirs.items():
        text = str(path)
        if not label or ":" in label or "," in label or "," in text:
            raise ValueError(f"TensorBoard cannot show {label!r} at {text!r}: no ',' or ':'.")
        parts.append(f"{label}:{text}")
    return ",".join(parts)


def proxy_url(port: int, base_url: str | None = None) -> str:
    """Where JupyterLab's proxy serves a port: <base_url>proxy/<port>/ (base_url: the Jupyter
    server's, by default $JUPYTERHUB_SERVICE_PREFIX, e.g. /user/alice/nb/)."""
    base = base_url if base_url is not None else os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/")
    if not base.endswith("/"):
        base += "/"
    return f"{base}proxy/{port}/"


class TensorBoardProcess:
    """One TensorBoard over labelled event folders, on 127.0.0.1.

    start() blocks until it answers (or raises TensorBoardError); stop() ends it and frees its
    port. Started processes are stopped when this Python exits.
    """

    def __init__(
        self,
        logdirs: dict[str, str | os.PathLike],
        *,
        python: str | None = None,
        host: str = "127.0.0.1",
        reload_seconds: int = 5,
    ):
        self.logdirs = {label: Path(path) for label, path in logdirs.items()}
        self.spec = logdir_spec(self.logdirs)
        self.python = python or tensorboard_python()
        self.host = host
        self.reload_seconds = reload_seconds
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None
        self._stderr = None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<TensorBoardProcess {self.spec} on port {self.port} {state}>"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def local_url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def url(self, base_url: str | None = None) -> str:
        """Its address through JupyterLab's proxy."""
        return proxy_url(self.port, base_url)

    def start(self, timeout: float = START_TIMEOUT) -> TensorBoardProcess:
        """Start it on a free port and wait until it answers; TensorBoardError when it
        exits or stays silent for `timeout` seconds."""
        deadline = time.monotonic() + timeout
        for attempt in range(PORT_TRIES):
            self._launch(free_port(self.host))
            try:
                self._wait(deadline)
                _started.add(self)
                return self
            except TensorBoardError as e:
                words = self._last_words()
                self.stop()
                retry = "could not bind" in words.lower() or "address already in use" in words
                if retry and attempt + 1 < PORT_TRIES and time.monotonic() < deadline:
                    continue
                raise TensorBoardError(f"{e}{': ' + words if words else ''}") from None
        raise TensorBoardError("TensorBoard found no free port.")  # not reached

    def _launch(self, port: int) -> None:
        self.port = port
        self._stderr = tempfile.TemporaryFile()
        argv = [
            self.python,
            "-c",
            BOOT,
            str(os.getpid()),
            "--logdir_spec",
            self.spec,
            "--host",
            self.host,
            "--port",
            str(port),
            # the Python reader: no separate data server process
            "--load_fast",
            "false",
            "--reload_interval",
            str(self.reload_seconds),
        ]
        try:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=self._stderr,
                # not in the starter's process group: a kernel interrupt is not meant for it
                start_new_session=True,
            )
        except OSError as e:
            raise TensorBoardError(f"Cannot run {self.python}: {e.strerror or e}.") from None

    def _wait(self, deadline: float) -> None:
        while True:
            code = self.proc.poll()
            if code is not None:
                raise TensorBoardError(f"TensorBoard exited with code {code}")
            if self.answers():
                return
            if time.monotonic() > deadline:
                raise TensorBoardError("TensorBoard did not answer in time")
            time.sleep(0.2)

    def answers(self) -> bool:
        """Whether it serves its pages now."""
        if not self.running:
            return False
        try:
            with urllib.request.urlopen(self.local_url + "data/environment", timeout=2) as r:
                return r.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def _last_words(self, limit: int = 2000) -> str:
        if self._stderr is None:
            return ""
        try:
            self._stderr.seek(0)
            text = self._stderr.read().decode(errors="replace")
        except (OSError, ValueError):
            return ""
        lines = [line for line in text.strip().splitlines() if line.strip()]
        return "\n".join(lines[-8:])[-limit:]

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """End it (SIGTERM, then SIGKILL after `timeout` seconds); its port is free after."""
        _started.discard(self)
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None


class _Started:
    """The TensorBoards this Python started, stopped at its exit."""

    def __init__(self):
        self.lock = threading.Lock()
        self.items: set[TensorBoardProcess] = set()
        atexit.register(self.stop_all)

    def add(self, item):
        with self.lock:
            self.items.add(item)

    def discard(self, item):
        with self.lock:
            self.items.discard(item)

    def stop_all(self):
        with self.lock:
            items = list(self.items)
        for item in items:
            item.stop(timeout=2)


_started = _Started()
