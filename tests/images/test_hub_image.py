"""The hub image (images/hub): built by the catalog's builder, run as Kubernetes runs it."""

# The image runs here with Podman the way the deployment bundle runs it in a pod: the settings
# file mounted at /etc/workbench/workbench.toml with backend "kubernetes", an empty volume at
# /srv/workbench owned by root and group-writable for gid 1000 (what a PersistentVolumeClaim
# with fsGroup 1000 looks like), the image's own command. No Kubernetes cluster can run on
# these machines: the hub must come up without one and say so; starting instances on a real
# cluster is tested against an API double and the manifests' schemas elsewhere.

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import asyncssh
import pytest
import requests
import yaml

from images.build import ImageBuilder
from images.catalog import (
    PLATFORM_CATALOG,
    CatalogError,
    UnknownImage,
    load_catalog,
    load_platform_catalog,
    platform_image_ref,
)
from spawner.engine import podman_env
from tests.platform import REPO, UserClient

TAG = "workbench_0.1.0-py_3.11-debian_12-x86_64"
START_TIMEOUT = 240  # seconds: a first start migrates both databases on two busy cores
PASSWORD = "hub-image-" + secrets.token_hex(6)
SETTINGS = """\
[workbench]
backend = "kubernetes"
data_dir = "/srv/workbench/data"
bind_url = "http://0.0.0.0:8000"
"""
# what no file the image ships may hold: settings that carry secrets, private keys
SECRET = re.compile(
    r"(cookie_secret|api_token|auth_token|password|secret_key)\s*=\s*['\"]\S|PRIVATE KEY-----",
    re.IGNORECASE,
)


def _podman(engine, *args, check=True, timeout=120) -> subprocess.CompletedProcess:
    out = subprocess.run(
        [engine.cli, *args], capture_output=True, text=True, env=podman_env(), timeout=timeout
    )
    if check and out.returncode != 0:
        raise AssertionError(f"{engine.cli} {' '.join(args[:3])} failed: {out.stderr[-2000:]}")
    return out


@pytest.fixture(scope="module")
def hub_image(engine):
    """The hub image, built (or found up to date) through the builder the CLI uses."""
    builder = ImageBuilder(
        load_catalog(),
        cli=engine.cli,
        engine_url=engine.url,
        cache_dir=REPO / ".run" / "cache",
        env=podman_env(),
        progress=lambda line: None,
    )
    (result,) = builder.build(["hub"])
    assert result.name == "hub" and result.status in ("built", "up to date")
    print(f"\nhub image: {result.status} in {result.seconds:.0f} s, {result.size / 1e6:.0f} MB")
    return builder.platform.get("hub")


def _run_in_image(engine, image, *command, user="") -> subprocess.CompletedProcess:
    args = ["run", "--rm", *(["--user", user] if user else []), image.ref, *command]
    return _podman(engine, *args, check=False, timeout=300)


class RunningHub:
    """One container of the hub image, as a pod runs it: settings, volume, default command."""

    def __init__(self, engine, image, root: Path):
        self.engine, self.image, self.root = engine, image, root
        self.name = f"ai-workbench-test-hub-{secrets.token_hex(4)}"
        self.volume = root / "srv"
        self.volume.mkdir()
        # a PVC with fsGroup: the volume's root belongs to root, group-writable for gid 1000
        os.chown(self.volume, 0, 1000)
        self.volume.chmod(0o2770)
        (root / "workbench.toml").write_text(SETTINGS)

    def start(self, settings: Path | None = None, detach=True) -> subprocess.CompletedProcess:
        return _podman(
            self.engine,
            "run",
            *(["-d"] if detach else ["--rm"]),
            "--name",
            self.name if detach else self.name + "-once",
            "-p",
            "127.0.0.1::8000",
            "-p",
            "127.0.0.1::2222",
            "-e",
            f"WORKBENCH_ADMIN_PASSWORD={PASSWORD}",
            "-v",
            f"{settings or self.root / 'workbench.toml'}:/etc/workbench/workbench.toml:ro",
            "-v",
            f"{self.volume}:/srv/workbench",
            self.image.ref,
            check=detach,
            timeout=300,
        )

    def port(self, inside: int) -> int:
        out = _podman(self.engine, "port", self.name, f"{inside}/tcp").stdout.strip()
        return int(out.rsplit(":", 1)[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port(8000)}"

    def logs(self, since: str = "") -> str:
        """What the container wrote (stdout and stderr in order), all or since a time."""
        out = subprocess.run(
            [self.engine.cli, "logs", *(["--since", since] if since else []), self.name],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=podman_env(),
            timeout=120,
        )
        return out.stdout

    def wait_ready(self, since: str = "") -> float:
        """Wait until the hub, the platform API (through the proxy) and the SSH gateway
        answer (in what was logged since `since`); the seconds it took."""
        t0 = time.monotonic()
        deadline = t0 + START_TIMEOUT
        url, ssh = self.url, self.port(2222)
        while time.monotonic() < deadline:
            state = _podman(
                self.engine, "inspect", "-f", "{{.State.Running}}", self.name, check=False
            ).stdout.strip()
            if state != "true":
                raise AssertionError(f"the hub's container stopped:\n{self.logs()[-4000:]}")
            try:
                hub_ok = requests.get(f"{url}/hub/api", timeout=5).ok
                api_ok = requests.get(f"{url}/services/workbench/", timeout=5).ok
                listening = "SSH gateway listening" in self.logs(since)
                if hub_ok and api_ok and listening and _banner(ssh).startswith(b"SSH-2.0-"):
                    return time.monotonic() - t0
            except (requests.RequestException, OSError):
                pass
            time.sleep(1)
        logs = self.logs()[-4000:]
        raise AssertionError(f"the hub did not come up in {START_TIMEOUT} s:\n{logs}")

    def remove(self):
        _podman(self.engine, "rm", "-f", "-t", "5", self.name, check=False)


def _banner(port: int) -> bytes:
    """The first bytes a TCP server on loopback sends (an SSH server's version line)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        return sock.recv(64)


@pytest.fixture(scope="module")
def running(engine, hub_image, tmp_path_factory):
    """The hub image running with backend "kubernetes" and an empty volume (no cluster)."""
    hub = RunningHub(engine, hub_image, tmp_path_factory.mktemp("hub-image"))
    hub.start()
    try:
        hub.first_start_seconds = hub.wait_ready()
        print(f"\nhub image: ready {hub.first_start_seconds:.1f} s after `podman run`")
        yield hub
    finally:
        hub.remove()


# --- the image and its tools ---------------------------------------------------------------


@pytest.mark.integration
def test_the_image_is_described_and_runs_the_hub_by_default(engine, hub_image):
    assert hub_image.ref == f"localhost/ai-workbench/hub:{TAG}"
    config = json.loads(_podman(engine, "image", "inspect", hub_image.ref).stdout)[0]["Config"]
    labels = config["Labels"]
    assert labels["org.opencontainers.image.title"] == "ai-workbench hub"
    assert labels["org.opencontainers.image.version"] == hub_image.engine_version == "0.1.0"
    assert "org.opencontainers.image.source" in labels
    assert config["User"] == "1000:1000"
    assert config["WorkingDir"] == "/srv/workbench"
    assert "WORKBENCH_CONFIG=/etc/workbench/workbench.toml" in config["Env"]
    assert config["Cmd"] == ["jupyterhub", "-f", "/etc/workbench/jupyterhub_config.py"]


@pytest.mark.integration
def test_the_proxy_the_cli_and_jupyterhub_run_in_it_as_a_user(engine, hub_image):
    lock = json.loads((REPO / "package-lock.json").read_text())
    chp = lock["packages"]["node_modules/configurable-http-proxy"]["version"]
    out = _run_in_image(engine, hub_image, "configurable-http-proxy", "--version")
    assert out.returncode == 0 and out.stdout.strip() == chp, out.stderr
    out = _run_in_image(engine, hub_image, "workbench", "--help")
    assert out.returncode == 0 and "images" in out.stdout, out.stderr
    out = _run_in_image(engine, hub_image, "jupyterhub", "--version")
    assert out.returncode == 0 and out.stdout.strip().startswith("6."), out.stderr
    out = _run_in_image(engine, hub_image, "sh", "-c", "id -u; id -g; node --version")
    uid, gid, node = out.stdout.split()
    assert (uid, gid) == ("1000", "1000")
    assert node.startswith("v18."), "Debian 12's Node.js runs the proxy"


@pytest.mark.integration
def test_no_secret_is_baked_in(engine, hub_image):
    listing = "find /etc/workbench /srv/workbench -xdev -mindepth 1 | sort"
    out = _run_in_image(engine, hub_image, "sh", "-c", listing)
    assert out.stdout.split() == ["/etc/workbench/jupyterhub_config.py"], out.stderr
    config = _run_in_image(engine, hub_image, "cat", "/etc/workbench/jupyterhub_config.py")
    assert config.returncode == 0 and not SECRET.search(config.stdout)
    # nothing a running hub or sshd keeps secret, anywhere in the image's file system
    secrets_found = _run_in_image(
        engine,
        hub_image,
        "sh",
        "-c",
        "find / -xdev \\( -name 'ssh_host_*' -o -name 'jupyterhub_cookie_secret' "
        "-o -name '*.sqlite' -o -name 'ssh_instance_key_secret' \\) -print 2>/dev/null; true",
        user="0",
    )
    assert secrets_found.stdout.split() == []


@pytest.mark.integration
def test_the_proxy_alone_carries_http_and_websockets(engine, hub_image):
    """The proxy's own container: `configurable-http-proxy` with the bundle's flags, on the
    image's Node.js, in front of a server with a websocket (what kernels and terminals use),
    answering the health check the proxy's pod is probed with."""
    script = """
import asyncio, os
from tornado import httpclient, web, websocket

class Echo(websocket.WebSocketHandler):
    def on_message(self, message):
        self.write_message("echo " + message)

class Hello(web.RequestHandler):
    def get(self):
        self.write("hello")

async def main():
    web.Application([(r"/ws", Echo), (r"/", Hello)]).listen(9000, "127.0.0.1")
    proxy = await asyncio.create_subprocess_exec(
        "configurable-http-proxy", "--ip", "127.0.0.1", "--port", "8000",
        "--api-ip", "127.0.0.1", "--api-port", "8001",
        "--default-target", "http://127.0.0.1:9000",
        env={**os.environ, "CONFIGPROXY_AUTH_TOKEN": "test"},
    )
    for _ in range(300):
        try:
            page = await httpclient.AsyncHTTPClient().fetch("http://127.0.0.1:8000/")
            break
        except Exception:
            await asyncio.sleep(0.1)
    health = await httpclient.AsyncHTTPClient().fetch("http://127.0.0.1:8000/_chp_healthz")
    ws = await websocket.websocket_connect("ws://127.0.0.1:8000/ws")
    await ws.write_message("ping")
    print(page.body.decode(), await ws.read_message(), health.code)
    proxy.terminate()
    await proxy.wait()

asyncio.run(main())
"""
    out = _run_in_image(engine, hub_image, "python", "-c", script)
    assert out.returncode == 0, out.stderr[-2000:]
    # (the proxy's own log lines go to stdout too)
    assert "hello echo ping 200" in out.stdout.splitlines(), out.stdout


# --- the hub, as a pod runs it ---------------------------------------------------------------


@pytest.mark.integration
def test_the_hub_and_the_platform_api_answer_through_the_proxy(running):
    url = running.url
    hub = requests.get(f"{url}/hub/api", timeout=10)
    assert hub.status_code == 200 and hub.json()["version"].startswith("6.")
    health = requests.get(f"{url}/services/workbench/", timeout=10)
    assert health.status_code == 200 and health.json()["status"] == "ok"
    api = requests.get(f"{url}/services/workbench/api/openapi.json", timeout=10)
    assert api.status_code == 200 and api.json()["info"]["title"] == "ai-workbench platform API"
    # every process of the platform runs as the image's user, not as root
    top = _podman(running.engine, "top", running.name, "user", "args").stdout
    processes = [line for line in top.splitlines()[1:] if line.strip()]
    assert any("configurable-http-proxy" in p for p in processes)
    assert any("ssh_gateway" in p for p in processes)
    assert all(p.split()[0] in ("workbench", "1000") for p in processes), top


@pytest.mark.integration
def test_the_hub_says_it_has_no_cluster(running):
    logs = running.logs()
    assert "Using Spawner: spawner.kubernetes.WorkbenchKubeSpawner" in logs
    assert "backend is kubernetes but no cluster is configured" in logs
    assert "starting instances fails until the hub runs in a pod" in logs


@pytest.mark.integration
def test_the_ssh_gateway_listens_and_refuses_unknown_keys(running):
    port = running.port(2222)

    async def attempt():
        key = asyncssh.generate_private_key("ssh-ed25519")
        with pytest.raises(asyncssh.PermissionDenied):
            async with asyncssh.connect(
                "127.0.0.1",
                port,
                username="admin.nothing",
                client_keys=[key],
                known_hosts=None,
                connect_timeout=30,
            ):
                pass

    asyncio.run(attempt())


@pytest.mark.integration
def test_users_never_see_the_hub_image(running, engine, tmp_path):
    client = UserClient(url=running.url)
    client.login("admin", PASSWORD)
    offered = client.images()
    assert offered, "the catalog's images are offered"
    assert not [i for i in offered if i["name"] == "hub" or "ai-workbench/hub" in i["ref"]]
    # nor does the CLI's list of instance images show it
    settings = tmp_path / "workbench.toml"
    settings.write_text(f'[workbench]\ndata_dir = "{REPO / ".run"}"\n')
    out = subprocess.run(
        [sys.executable, "-m", "hub.cli", "images", "list"],
        capture_output=True,
        text=True,
        env={**os.environ, "WORKBENCH_CONFIG": str(settings)},
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "python" in out.stdout and "ai-workbench/hub" not in out.stdout
    assert not [line for line in out.stdout.splitlines() if line.split()[:1] == ["hub"]]


@pytest.mark.integration
def test_a_restarted_pod_keeps_its_data_and_migrates_nothing(running):
    data = running.volume / "data"
    assert oct(data.stat().st_mode & 0o777) == "0o700" and data.stat().st_uid == 1000
    keep = ["jupyterhub_cookie_secret", "ssh_host_ed25519_key", "ssh_instance_key_secret"]
    for name in keep:
        assert oct((data / name).stat().st_mode & 0o777) == "0o600", name
    before = {name: (data / name).read_bytes() for name in keep}
    # both databases are at their newest revision after the first start
    from alembic.script import ScriptDirectory

    from hub.db.core import VERSION_TABLE, alembic_config

    url = f"sqlite:///{data / 'workbench.sqlite'}"
    heads = set(ScriptDirectory.from_config(alembic_config(url)).get_heads())
    assert _versions(data / "workbench.sqlite", VERSION_TABLE) == heads
    hub_versions = _versions(data / "jupyterhub.sqlite")
    assert len(hub_versions) == 1
    # JupyterHub's database was made once (stamped), not once per process
    assert running.logs().count("Running stamp_revision") == 1

    t0 = time.monotonic()
    _podman(running.engine, "stop", "-t", "30", running.name, timeout=120)
    stopped = time.monotonic() - t0
    assert stopped < 30, f"the hub took {stopped:.0f} s to stop (a pod gets 30 s by default)"
    restart = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    _podman(running.engine, "start", running.name, timeout=120)
    took = running.wait_ready(since=restart)
    print(f"\nhub image: stopped in {stopped:.1f} s, ready again {took:.1f} s after start")
    again = running.logs(since=restart)
    assert "Running stamp_revision" not in again and "Running upgrade" not in again
    assert _versions(data / "workbench.sqlite", VERSION_TABLE) == heads
    assert _versions(data / "jupyterhub.sqlite") == hub_versions
    assert {name: (data / name).read_bytes() for name in keep} == before
    # the admin account made at the first start signs in as before
    UserClient(url=running.url).login("admin", PASSWORD)


def _versions(database: Path, table: str = "alembic_version") -> set[str]:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        return {row[0] for row in db.execute(f"SELECT version_num FROM {table}")}


@pytest.mark.integration
def test_a_data_folder_the_hub_cannot_own_is_named_with_the_fix(engine, hub_image, tmp_path):
    hub = RunningHub(engine, hub_image, tmp_path)
    settings = tmp_path / "no-data-dir.toml"
    settings.write_text('[workbench]\nbackend = "kubernetes"\n')  # data_dir: the default
    out = hub.start(settings, detach=False)
    assert out.returncode != 0
    assert "cannot use its data folder /etc/workbench/.run" in out.stderr
    assert "data_dir in /etc/workbench/workbench.toml" in out.stderr
    assert '"/srv/workbench/data"' in out.stderr


# --- the catalog: the hub image is built by name and offered nowhere -----------------------


def test_the_platform_image_is_named_for_the_bundle():
    assert platform_image_ref("hub") == f"ai-workbench/hub:{TAG}"
    assert platform_image_ref("hub", "registry.example.com") == (
        f"registry.example.com/ai-workbench/hub:{TAG}"
    )
    assert platform_image_ref("hub", "registry.example.com/team/") == (
        f"registry.example.com/team/ai-workbench/hub:{TAG}"
    )
    with pytest.raises(UnknownImage, match="Known images: hub"):
        platform_image_ref("python")
    entry = load_platform_catalog().get("hub")
    assert entry.platform and entry.extras == ("postgres", "oauth", "ldap")
    # the tag's version is the platform's
    setup = (REPO / "setup.cfg").read_text()
    assert f"version = {entry.engine_version}\n" in setup


def test_the_hub_image_is_no_instance_image():
    catalog = load_catalog()
    assert "hub" not in catalog.names
    assert not [e for e in catalog if "ai-workbench/hub" in e.ref]
    with pytest.raises(CatalogError, match="workbench images build hub"):
        load_catalog(PLATFORM_CATALOG)
    raw = yaml.safe_load(PLATFORM_CATALOG.read_text())
    assert raw["kind"] == "platform" and [i["name"] for i in raw["images"]] == ["hub"]


def test_building_without_names_builds_instance_images_only(tmp_path):
    builder = ImageBuilder(load_catalog(), cli="podman", cache_dir=tmp_path)
    everything = [e.name for e in builder.build_order()]
    assert everything == load_catalog().names and "hub" not in everything
    assert [e.name for e in builder.build_order(["hub"])] == ["hub"]
    assert [e.name for e in builder.build_order(["pytorch", "hub"])] == [
        "python",
        "pytorch",
        "hub",
    ]
    with pytest.raises(UnknownImage) as e:
        builder.build_order(["hubb"])
    assert "Unknown image 'hubb'" in str(e.value) and "hub" in e.value.known
