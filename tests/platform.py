"""Test helpers: run the real hub in a subprocess, sign users in, run code in kernels."""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import docker
import requests
import websocket
from workbench import WorkbenchClient

REPO = Path(__file__).resolve().parent.parent
ADMIN_PASSWORD = "admin-" + secrets.token_hex(8)


_handed_out: set[int] = set()


def free_port() -> int:
    """A port no one listens on now and that this test process has not handed out before
    (the kernel may offer a just-released port again: two servers of one hub must not
    both be given it)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


class UserClient(WorkbenchClient):
    """The platform's client, plus a requests session with its token for what the client
    does not wrap (raw calls to JupyterHub's API, answers read as they come)."""

    @property
    def session(self) -> requests.Session:
        session = self.__dict__.get("_session")
        if session is None:
            session = self._session = requests.Session()
        session.headers["Authorization"] = f"token {self.token}"
        return session


# what a server that finds its port taken logs (Python's OSError, Node's EADDRINUSE)
PORT_TAKEN = re.compile(r"address already in use", re.IGNORECASE)
PORT_ATTEMPTS = 3


class Hub:
    """A real ai-workbench hub (JupyterHub + proxy + platform API) on free ports.

    A port is free when it is picked, and another process may take it before the hub's
    servers listen on it: a first start that finds one taken starts again on new ports.
    """

    def __init__(self, root: Path, extra_settings: str = "", engine_url: str = ""):
        self.root = root
        self.prefix = "wbtest" + uuid.uuid4().hex[:6]
        self.port = free_port()
        self.ssh_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = root / "workbench.toml"
        self.config.write_text(
            f"""
[workbench]
data_dir = "{root / "data"}"
bind_url = "{self.url}"
hub_port = {free_port()}
service_port = {free_port()}
proxy_api_port = {free_port()}
admin_users = ["admin"]
admin_password = "{ADMIN_PASSWORD}"
# bcrypt's cheapest cost: test hubs sign in thousands of times (the default is 12)
password_hash_rounds = 4
container_prefix = "{self.prefix}"
max_instances_per_user = 5
storage_max_gib = 50
start_timeout = 120
ssh_port = {self.ssh_port}
ssh_activity_seconds = 2
{f'docker_host = "{engine_url}"' if engine_url else ""}
{extra_settings}
"""
        )
        self.log_path = root / "hub.log"
        self.passwords = {"admin": ADMIN_PASSWORD}
        self.proc: subprocess.Popen | None = None
        self.started_once = False

    @property
    def env(self) -> dict:
        env = dict(os.environ)
        env["WORKBENCH_CONFIG"] = str(self.config)
        env["PATH"] = os.pathsep.join(
            [str(REPO / "node_modules" / ".bin"), str(Path(sys.executable).parent), env["PATH"]]
        )
        env["PYTHONPATH"] = str(REPO)
        return env

    def start(self, timeout: float = 180):
        """Start the hub and wait until the platform API answers. Clients hold the URL from
        the first start, so only a first start moves to new ports when one is taken."""
        for attempt in range(1, PORT_ATTEMPTS + 1):
            log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
            try:
                self._start_once(timeout, log_start)
                self.started_once = True
                return
            except PortTaken:
                self.stop()
                if attempt == PORT_ATTEMPTS:
                    raise RuntimeError(
                        f"a port of the hub was taken (attempt {attempt}); log:\n{self.log_tail()}"
                    ) from None
                self._take_new_ports()

    def _start_once(self, timeout: float, log_start: int):
        config = str(REPO / "hub" / "jupyterhub_config.py")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "jupyterhub", "-f", config],
                cwd=self.root,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        # a first start also waits for the SSH gateway on its port: taken, it fails alone
        gateway = re.compile(rf"SSH gateway listening on \S+:{self.ssh_port}\b")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            exited = self.proc.poll() is not None
            log_text = "" if self.started_once else self._log_since(log_start)
            if PORT_TAKEN.search(log_text):
                raise PortTaken()
            if exited:
                raise RuntimeError(f"hub exited ({self.proc.returncode}); log:\n{self.log_tail()}")
            try:
                r = requests.get(f"{self.url}/services/workbench/", timeout=2)
                if r.status_code == 200 and (self.started_once or gateway.search(log_text)):
                    return
            except (requests.ConnectionError, requests.Timeout):
                pass
            time.sleep(0.3)
        raise RuntimeError(f"hub did not come up in {timeout} s; log:\n{self.log_tail()}")

    def _log_since(self, offset: int) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def _take_new_ports(self):
        """Give every server of this hub a new free port in its settings file."""
        self.port, self.ssh_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        text = self.config.read_text()
        text = re.sub(r"^bind_url = .*$", f'bind_url = "{self.url}"', text, flags=re.M)
        text = re.sub(r"^ssh_port = \d+$", f"ssh_port = {self.ssh_port}", text, flags=re.M)
        for key in ("hub_port", "service_port", "proxy_api_port"):
            text = re.sub(rf"^{key} = \d+$", f"{key} = {free_port()}", text, flags=re.M)
        self.config.write_text(text)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def restart(self):
        self.stop()
        self.start()

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def client(self, user: str = "admin", password: str = ADMIN_PASSWORD) -> UserClient:
        client = UserClient(self.url, timeout=120)
        client.login(user, password)
        return client

    def add_user(self, name: str, password: str | None = None) -> UserClient:
        """Sign a user up through the sign-up page, approve them as admin, sign them in."""
        password = password or "pw-" + secrets.token_hex(8)
        self.passwords[name] = password
        s = requests.Session()
        s.get(f"{self.url}/hub/signup")
        r = s.post(
            f"{self.url}/hub/signup",
            data={
                "username": name,
                "signup_password": password,
                "signup_password_confirmation": password,
                "_xsrf": s.cookies.get("_xsrf"),
            },
        )
        r.raise_for_status()
        admin = self.browser_session()
        r = admin.get(f"{self.url}/hub/authorize/{quote(name)}")
        r.raise_for_status()
        return self.client(name, password)

    def browser_session(
        self, user: str = "admin", password: str = ADMIN_PASSWORD
    ) -> requests.Session:
        """A cookie session signed in through the login form, as a browser is."""
        s = requests.Session()
        s.get(f"{self.url}/hub/login")
        r = s.post(
            f"{self.url}/hub/login",
            data={"username": user, "password": password, "_xsrf": s.cookies.get("_xsrf")},
            allow_redirects=False,
        )
        assert r.status_code == 302, r.text[:500]
        return s


class PortTaken(Exception):
    """A server of the hub found its port taken by another process."""


@contextmanager
def running_hub(
    root: Path,
    engine_url: str,
    label: str,
    extra_settings: str = "",
    catalog: Path | None = None,
    configure=None,
):
    """A hub of its own, started (configure(hub) first, if given); stopped after, with its
    containers, volumes, networks and images removed and its log's tail printed."""
    settings = f'catalog_path = "{catalog}"\n' if catalog else ""
    h = Hub(root, extra_settings=settings + extra_settings, engine_url=engine_url)
    if configure is not None:
        configure(h)
    h.start()
    try:
        yield h
    finally:
        h.stop()
        remove_engine_objects(engine_url, h.prefix)
        print(f"\n--- {label} hub log tail ---\n{h.log_tail(40)}")


def execute_request(code: str) -> tuple[str, dict]:
    """A Jupyter execute_request message for code, and its msg_id."""
    msg_id = uuid.uuid4().hex
    return msg_id, {
        "header": {
            "msg_id": msg_id,
            "username": "test",
            "session": uuid.uuid4().hex,
            "msg_type": "execute_request",
            "version": "5.3",
        },
        "parent_header": {},
        "metadata": {},
        "channel": "shell",
        "content": {
            "code": code,
            "silent": False,
            "store_history": False,
            "user_expressions": {},
            "allow_stdin": False,
        },
    }


def start_kernel(client: WorkbenchClient, instance_url: str, kernel: str = "python3") -> str:
    """Start a kernel in a running instance through the Jupyter server's API; its id."""
    base = client.url + instance_url.rstrip("/")
    headers = {"Authorization": f"token {client.token}"}
    r = requests.post(f"{base}/api/kernels", json={"name": kernel}, headers=headers, timeout=60)
    r.raise_for_status()
    return r.json()["id"]


def execute(
    client: WorkbenchClient, instance_url: str, kernel_id: str, code: str, timeout: float = 120
) -> dict:
    """Run code in a running kernel of an instance over its websocket.

    Returns {"stdout": ..., "stderr": ..., "error": ename or None}; the kernel keeps running.
    """
    base = client.url + instance_url.rstrip("/")
    ws_url = base.replace("http://", "ws://") + f"/api/kernels/{kernel_id}/channels"
    ws = websocket.create_connection(
        ws_url, header=[f"Authorization: token {client.token}"], timeout=timeout
    )
    msg_id, request = execute_request(code)
    ws.send(json.dumps(request))
    out = {"stdout": "", "stderr": "", "error": None}
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            # frame by frame, control frames included: the server's pings would otherwise
            # keep recv() waiting past the deadline when the kernel never answers
            ws.settimeout(max(0.1, min(5, deadline - time.monotonic())))
            try:
                opcode, frame = ws.recv_data_frame(True)
            except websocket.WebSocketTimeoutException:
                continue
            if opcode != websocket.ABNF.OPCODE_TEXT:
                continue
            msg = json.loads(frame.data)
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = msg["msg_type"]
            if kind == "stream":
                out[msg["content"]["name"]] += msg["content"]["text"]
            elif kind == "error":
                out["error"] = msg["content"]["ename"] + ": " + msg["content"]["evalue"]
            elif kind == "status" and msg["content"]["execution_state"] == "idle":
                return out
        raise TimeoutError(f"no result within {timeout} s; so far {out}")
    finally:
        ws.close()


def run_code(
    client: WorkbenchClient,
    instance_url: str,
    code: str,
    kernel: str = "python3",
    timeout: float = 120,
) -> dict:
    """Run code in a new kernel of a running instance through the Jupyter server's API.

    Returns {"stdout": ..., "stderr": ..., "error": ename or None}. The kernel is shut down after.
    """
    kernel_id = start_kernel(client, instance_url, kernel)
    try:
        return execute(client, instance_url, kernel_id, code, timeout)
    finally:
        requests.delete(
            f"{client.url}{instance_url.rstrip('/')}/api/kernels/{kernel_id}",
            headers={"Authorization": f"token {client.token}"},
            timeout=30,
        )


def engine_names(engine_url: str, kind: str, prefix: str) -> list[str]:
    """Names of the engine's containers or volumes that start with prefix."""
    client = docker.APIClient(base_url=engine_url, timeout=60)
    if kind == "container":
        names = [c["Names"][0].lstrip("/") for c in client.containers(all=True)]
    else:
        names = [v["Name"] for v in client.volumes().get("Volumes") or []]
    return [n for n in names if n.startswith(prefix)]


def remove_engine_objects(engine_url: str, prefix: str):
    """Remove the containers, then the volumes and networks, whose names start with prefix."""
    client = docker.APIClient(base_url=engine_url, timeout=60)
    for name in engine_names(engine_url, "container", prefix):
        client.remove_container(name, force=True)
    for name in engine_names(engine_url, "volume", prefix):
        client.remove_volume(name, force=True)
    for network in client.networks():
        if network["Name"].startswith(prefix):
            client.remove_network(network["Name"])
    for image in listed_images(client):
        for tag in image.get("RepoTags") or []:
            if tag.split("/", 1)[-1].startswith(prefix):
                try:
                    client.remove_image(tag, force=True)
                except docker.errors.NotFound:
                    pass


def listed_images(client, attempts: int = 5) -> list[dict]:
    """The engine's images. Podman's list fails (500, "image not known") when another
    process removes an image while it lists: ask again."""
    attempt = 1
    while True:
        try:
            return client.images()
        except docker.errors.APIError as e:
            if e.status_code != 500 or "image not known" not in str(e) or attempt == attempts:
                raise
        time.sleep(0.5 * attempt)
        attempt += 1


async def loop_ticks_during(awaitable, tick: float = 0.01) -> tuple[object, float, int]:
    """Await awaitable while a ticker on the same event loop counts every `tick` seconds:
    (its result, seconds it took, ticks). A call that blocks the loop leaves the count near
    zero; one that waits in a thread lets the ticker run throughout."""
    ticks = 0
    done = asyncio.Event()

    async def ticker():
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(tick)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    started = time.perf_counter()
    try:
        result = await awaitable
    finally:
        took = time.perf_counter() - started
        done.set()
        await task
    return result, took, ticks
