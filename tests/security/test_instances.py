"""Attacks from inside an instance: on the platform's credentials, on other instances, on the
machine. The attacker is an ordinary user who controls everything their instance runs."""

from __future__ import annotations

import re
import time

import pytest
import requests

from tests.platform import run_code, running_hub

from .test_audit import open_instance

FAST = """
idle_stop_min_minutes = 0.05
lifecycle_interval_seconds = 1
activity_report_seconds = 2
"""

# a jupyter_server configuration that logs every request's headers to the work volume
HEADER_LOGGER = r"""
import json

def log_headers(handler):
    with open("/home/jovyan/work/headers.log", "a") as f:
        f.write(json.dumps(dict(handler.request.headers)) + "\n")

c.ServerApp.tornado_settings = {"log_function": log_headers}
"""


@pytest.fixture(scope="module")
def sec_hub(tmp_path_factory, engine, base_image, test_catalog):
    """A hub of its own whose lifecycle checks every second."""
    with running_hub(
        tmp_path_factory.mktemp("security"), engine.url, "security", FAST, test_catalog
    ) as h:
        yield h


@pytest.fixture(scope="module")
def mallory(sec_hub):
    return sec_hub.add_user("mallory")


@pytest.fixture(scope="module")
def victim(sec_hub):
    client = sec_hub.add_user("victim")
    client.api("POST", "users/victim/instances", {"name": "v1", "ssh": {"enabled": True}})
    return client


@pytest.fixture(scope="module")
def trap_made(mallory):
    """The attacker's instance "trap", made once for the module."""
    mallory.create_instance("trap")


@pytest.fixture
def trap(mallory, trap_made) -> dict:
    """The attacker's instance "trap", running (a test before may have stopped it)."""
    if mallory.instance("trap")["state"] != "running":
        mallory.start_instance("trap")
    return mallory.instance("trap")


def credentials(log: str) -> set[str]:
    """Every token and cookie value found in logged request headers."""
    found = set()
    for match in re.finditer(r"(?:token|bearer)\s+([A-Za-z0-9_\-.]+)", log, re.IGNORECASE):
        found.add(match.group(1))
    for match in re.finditer(r'"Cookie": "([^"]*)"', log):
        for part in match.group(1).split(";"):
            found.add(part.strip())
    return found


def test_instance_never_receives_a_platform_credential(sec_hub, mallory, victim, trap):
    """The attacker makes their server log every request header (a jupyter_server config in
    home, kept by saving the instance as an image and starting a new instance from it), waits
    through several auto-stop checks, and tries every credential it logged against the
    victim. None may open the victim's user or instance: the platform never sends its own
    token to an instance; instances report their status outward with their own token."""
    out = run_code(
        mallory,
        trap["url"],
        "import os\n"
        "os.makedirs(os.path.expanduser('~/.jupyter'), exist_ok=True)\n"
        "path = os.path.expanduser('~/.jupyter/jupyter_server_config.py')\n"
        f"open(path, 'w').write({HEADER_LOGGER!r})\n"
        "print('written')",
    )
    assert out["stdout"].strip() == "written", out
    mallory.save_instance("trap", "trap-img", "v1", wait=True)
    mallory.create_instance("trap2", image="saved:mallory/trap-img:v1")
    trap2 = mallory.instance("trap2")

    # the instance reports its own status: the platform shows it without calling in
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and mallory.instance("trap2").get("stops_at") is None:
        time.sleep(0.5)
    time.sleep(6)  # several lifecycle checks (every second)
    log = run_code(mallory, trap2["url"], "print(open('/home/jovyan/work/headers.log').read())")
    assert log["error"] is None, log
    stolen = credentials(log["stdout"])
    assert stolen, "the logger saw no request at all"
    hub_api = f"{sec_hub.url}/hub/api"
    for credential in stolen:
        headers = {"Authorization": f"token {credential}"}
        r = requests.get(f"{hub_api}/users/victim", headers=headers, timeout=10)
        assert r.status_code in (403, 404), f"{credential[:6]}... reads the victim: {r.status_code}"
        r = requests.get(f"{sec_hub.url}/user/victim/v1/api/status", headers=headers, timeout=10)
        assert r.status_code != 200, f"{credential[:6]}... opens the victim's instance"
        r = requests.delete(f"{hub_api}/users/victim/servers/v1", headers=headers, timeout=10)
        assert r.status_code in (403, 404), f"{credential[:6]}... stops the victim's instance"
    assert victim.instance("v1")["state"] == "running"


def test_instance_reports_only_its_own_status(sec_hub, mallory, victim, trap):
    """With its own token (JUPYTERHUB_API_TOKEN), an instance tries to report activity for
    another instance and for another user's instance, to keep them from stopping: refused."""
    mallory.create_instance("sibling", start=False)
    code = (
        "import os, json, urllib.request\n"
        "api = os.environ['WORKBENCH_API_URL']\n"
        "def post(path):\n"
        "    req = urllib.request.Request(api + path, method='POST', data=b'{}', headers={\n"
        "        'Authorization': 'token ' + os.environ['JUPYTERHUB_API_TOKEN']})\n"
        "    try:\n"
        "        return urllib.request.urlopen(req, timeout=10).status\n"
        "    except urllib.error.HTTPError as e:\n"
        "        return e.code\n"
        "print(json.dumps([post('/users/mallory/instances/trap/status'),\n"
        "                  post('/users/mallory/instances/sibling/status'),\n"
        "                  post('/users/victim/instances/v1/status')]))"
    )
    out = run_code(mallory, trap["url"], code)
    assert out["error"] is None, out
    own, sibling, other = (int(x) for x in out["stdout"].strip("[]\n").split(","))
    assert own == 200
    assert sibling == 403
    assert other in (403, 404)


def reach_victim(mallory, trap: dict, engine) -> str:
    """What the attacker's kernel prints connecting to every address of the victim's
    instance on 8888 and 2222 ("OPEN host port" or "closed ..."), then to the hub's API."""
    import docker

    client = docker.APIClient(base_url=engine.url, timeout=30)
    (container,) = [
        c
        for c in client.containers(filters={"label": "ai-workbench.user=victim"})
        if c["Labels"].get("ai-workbench.instance") == "v1"
    ]
    networks = client.inspect_container(container["Id"])["NetworkSettings"]["Networks"]
    addresses = [n["IPAddress"] for n in networks.values() if n.get("IPAddress")]
    assert addresses
    code = (
        "import os, socket, urllib.request\n"
        f"for host in {addresses!r}:\n"
        "    for port in (8888, 2222):\n"
        "        s = socket.socket(); s.settimeout(3)\n"
        "        try:\n"
        "            s.connect((host, port)); print('OPEN', host, port)\n"
        "        except OSError as e:\n"
        "            print('closed', host, port, e)\n"
        "        finally:\n"
        "            s.close()\n"
        "api = os.environ['JUPYTERHUB_API_URL']\n"
        "print('hub', urllib.request.urlopen(api, timeout=10).status)\n"
    )
    out = run_code(mallory, trap["url"], code, timeout=60)
    assert out["error"] is None, out
    return out["stdout"]


def test_instance_cannot_reach_another_instance(sec_hub, mallory, victim, trap, engine):
    """From a kernel, the attacker connects to the victim's instance's Jupyter port (8888) and
    sshd port (2222) on the container network, and to every address of the victim's
    container. Nothing answers; the attacker's instance still reaches the hub's API."""
    out = reach_victim(mallory, trap, engine)
    assert "OPEN" not in out, out
    assert "hub 200" in out, out


def test_a_restarted_instance_still_cannot_reach_another(sec_hub, mallory, victim, trap, engine):
    """The attacker stops and starts their instance (its network is torn down and set up
    again, which on Podman drops netavark's isolation rules) and tries again: still nothing
    answers."""
    mallory.stop_instance("trap")
    mallory.start_instance("trap")
    out = reach_victim(mallory, mallory.instance("trap"), engine)
    assert "OPEN" not in out, out
    assert "hub 200" in out, out


def test_fork_bomb_leaves_other_instances_and_the_hub_working(sec_hub, mallory, victim, trap):
    """The attacker runs a fork bomb in their instance. The victim's instance still starts a
    kernel and runs code, and the hub and platform API answer: each instance has a pids
    limit, so one cannot take every process slot of the machine."""
    bomb = (
        "import subprocess\n"
        "subprocess.Popen(['bash', '-c', 'b() { b | b & }; b'], start_new_session=True)\n"
        "print('started')"
    )
    out = run_code(mallory, trap["url"], bomb)
    assert "started" in out["stdout"], out
    try:
        time.sleep(5)
        r = requests.get(f"{sec_hub.url}/hub/api", timeout=20)
        assert r.status_code == 200
        assert victim.instance("v1")["state"] == "running"
        out = run_code(victim, victim.instance("v1")["url"], "print(6 * 7)", timeout=90)
        assert out["stdout"].strip() == "42", out
    finally:
        mallory.stop_instance("trap")
    assert mallory.instance("trap")["state"] == "stopped"


def test_instance_name_cannot_take_over_another_users_sign_in(sec_hub):
    """User "a" names an instance "b-c-d" while user "a-b" runs "c-d": under JupyterHub's own
    naming both servers would share the OAuth client jupyterhub-user-a-b-c-d, and starting
    the attacker's would take over the victim's sign-in. Each server has a client of its own:
    both owners open their JupyterLab, each through their own server's callback."""
    victim = sec_hub.add_user("a-b")
    victim.create_instance("c-d")
    attacker = sec_hub.add_user("a")
    attacker.create_instance("b-c-d")
    try:
        for user, name in (("a-b", "c-d"), ("a", "b-c-d")):
            open_instance(sec_hub, user, name)
    finally:
        victim.stop_instance("c-d")
        attacker.stop_instance("b-c-d")
