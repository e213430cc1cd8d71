"""The container engine: finding a Docker Engine API (Docker or Podman) and starting Podman's."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

CONTAINERS_CONF = str(Path(__file__).parent / "containers.conf")  # runc, workable ulimits
DOCKER_SOCKET = "/var/run/docker.sock"
PODMAN_SOCKET = "/run/podman/podman.sock"


class EngineUnavailable(RuntimeError):
    """No container engine answers; the message says how to get one."""


@dataclass(frozen=True)
class Engine:
    """A reachable Docker Engine API endpoint and the CLI that drives the same engine."""

    url: str
    kind: str  # "docker" or "podman"
    cli: str
    # Podman's API service, where find_engine started it (its caller may stop it)
    process: subprocess.Popen | None = field(default=None, compare=False)

    @property
    def socket_path(self) -> str:
        return self.url.removeprefix("unix://")

    def stop_started(self):
        """Stop the engine's API service if this process started it (containers go on)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()


def ping(url: str, timeout: float = 2.0) -> bool:
    """True if a Docker Engine API answers /_ping on the unix socket url."""
    if not url.startswith("unix://"):
        return True  # tcp endpoints are trusted as configured
    path = url.removeprefix("unix://")
    if not os.path.exists(path):
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(path)
            s.sendall(b"GET /_ping HTTP/1.0\r\nHost: engine\r\n\r\n")
            return b" 200 " in s.recv(256)
    except OSError:
        return False


def podman_env(containers_conf: str | None = CONTAINERS_CONF) -> dict[str, str]:
    """The environment for podman commands, with the project's containers.conf."""
    env = dict(os.environ)
    if containers_conf:
        env["CONTAINERS_CONF"] = containers_conf
    return env


def detect_kind(url: str) -> str:
    """Whether the engine at url is "docker" or "podman" (asked up to three times)."""
    import docker

    for attempt in range(3):
        try:
            version = docker.DockerClient(base_url=url, timeout=20).version()
            break
        except Exception:  # noqa: BLE001 - a busy engine: ask again, then guess by name
            time.sleep(1 + attempt)
    else:
        return "podman" if "podman" in url else "docker"
    names = " ".join(c.get("Name", "") for c in version.get("Components", []))
    return "podman" if "podman" in names.lower() else "docker"


def start_podman_service(
    socket_path: str, containers_conf: str | None, log_file: str
) -> subprocess.Popen:
    """Start `podman system service` on socket_path in the background, detached."""
    if not shutil.which("podman"):
        raise EngineUnavailable(
            "Neither Docker nor Podman is installed. Install one "
            "(`apt-get install -y podman runc`, which `make up` does) and try again."
        )
    Path(socket_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as out:
        proc = subprocess.Popen(
            ["podman", "system", "service", "--time=0", f"unix://{socket_path}"],
            stdout=out,
            stderr=out,
            stdin=subprocess.DEVNULL,
            env=podman_env(containers_conf),
            start_new_session=True,
            # conmon leaves files (an "oom" marker when a container's process is killed for
            # lack of memory) in its working directory: keep them beside the socket
            cwd=os.path.dirname(socket_path) or None,
        )
    url = f"unix://{socket_path}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if ping(url):
            return proc
        time.sleep(0.2)
    raise EngineUnavailable(f"Podman's API service did not come up on {url}; see {log_file}.")


def find_engine(
    docker_host: str = "",
    *,
    podman_socket: str = "",
    containers_conf: str | None = None,
    start: bool = False,
    log_file: str = "/dev/null",
) -> Engine:
    """The engine to use: docker_host if set, else Docker's socket, else Podman's.

    With start=True and only Podman installed, starts its API service on podman_socket.
    """
    candidates = [docker_host] if docker_host else []
    if not docker_host:
        if os.environ.get("DOCKER_HOST"):
            candidates.append(os.environ["DOCKER_HOST"])
        if podman_socket:
            candidates.append(f"unix://{podman_socket}")
        candidates += [f"unix://{DOCKER_SOCKET}", f"unix://{PODMAN_SOCKET}"]
    for url in candidates:
        if ping(url):
            kind = detect_kind(url)
            return Engine(url=url, kind=kind, cli=shutil.which(kind) or kind)
    if start and not docker_host and podman_socket and shutil.which("podman"):
        log.info("starting Podman's Docker-compatible API service on %s", podman_socket)
        proc = start_podman_service(podman_socket, containers_conf, log_file)
        return Engine(
            url=f"unix://{podman_socket}",
            kind="podman",
            cli=shutil.which("podman"),
            process=proc,
        )
    tried = ", ".join(candidates)
    raise EngineUnavailable(
        f"No container engine answers (tried {tried}). Start Docker, or run `make up` "
        "to install Podman and start its service."
    )
