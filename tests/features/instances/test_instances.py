"""Instances end to end: the real hub, the platform API and real containers on the engine.

Each test stands alone: alice's "nb1" is a fixture (created once, with a file in its
storage), and what a test makes it removes; the hub restart runs on a hub of its own.
"""

from __future__ import annotations

import re
import threading
import time

import docker
import pytest
import requests
import yaml
from workbench import WorkbenchError

from spawner.flavors import DEFAULT_FLAVORS, load_flavors
from tests.platform import Hub, engine_names, run_code, running_hub

pytestmark = pytest.mark.integration

CGROUP_LIMITS = """
import os
def read(*paths):
    for p in paths:
        if os.path.exists(p):
            return open(p).read().split()[0]
print(read('/sys/fs/cgroup/memory.max', '/sys/fs/cgroup/memory/memory.limit_in_bytes'))
print(read('/sys/fs/cgroup/cpu.max', '/sys/fs/cgroup/cpu/cpu.cfs_quota_us'))
"""


@pytest.fixture(scope="module")
def alice(hub):
    return hub.add_user("alice")


@pytest.fixture(scope="module")
def bob(hub):
    return hub.add_user("bob")


@pytest.fixture(scope="module")
def nb1(alice):
    """alice's instance nb1 on cpu.tiny, with notes.txt ("kept") in its storage; the tests
    that use it start it if they need it running."""
    model = alice.create_instance("nb1", image="python", flavor="cpu.tiny", storage_gib=2)
    out = run_code(alice, model["url"], "open('notes.txt', 'w').write('kept')")
    assert out["error"] is None, out
    yield model
    if alice.instance("nb1")["state"] != "stopped":
        alice.stop_instance("nb1")
    alice.delete_instance("nb1")


def test_lifecycle_keeps_files_across_stop_and_start(hub, alice):
    model = alice.create_instance(
        "life1", image="python", flavor="cpu.tiny", storage_gib=2, description="first one"
    )
    assert model["state"] == "running"
    assert (model["image"], model["flavor"], model["storage_gib"]) == ("python", "cpu.tiny", 2)
    assert model["description"] == "first one"
    assert model["url"] == "/user/alice/life1/"

    # JupyterLab answers through the proxy for its owner
    status = requests.get(
        f"{hub.url}{model['url']}api/status", headers={"Authorization": f"token {alice.token}"}
    )
    assert status.status_code == 200

    result = run_code(
        alice,
        model["url"],
        "import os, getpass\n"
        "open('notes.txt', 'w').write('kept')\n"
        "print(os.getcwd(), getpass.getuser(), os.getuid())",
    )
    assert result["error"] is None, result
    assert result["stdout"].split() == ["/home/jovyan/work", "jovyan", "1000"]

    assert alice.stop_instance("life1")["state"] == "stopped"
    assert {i["name"]: i["state"] for i in alice.instances()}["life1"] == "stopped"
    assert alice.start_instance("life1")["state"] == "running"
    result = run_code(alice, model["url"], "print(open('notes.txt').read())")
    assert result["stdout"].strip() == "kept"
    alice.stop_instance("life1")
    alice.delete_instance("life1")


def test_plain_python_kernel_has_no_engine(hub, alice, nb1):
    alice.start_instance("nb1")
    base = f"{hub.url}/user/alice/nb1"
    specs = requests.get(
        f"{base}/api/kernelspecs", headers={"Authorization": f"token {alice.token}"}
    ).json()
    assert specs["default"] == "python3"
    # the server's own environment offers no kernel
    assert set(specs["kernelspecs"]) == {"python3"}
    assert specs["kernelspecs"]["python3"]["spec"]["display_name"] == "Python 3 (no engine)"
    code = (
        "import importlib.util as u\n"
        "print([m for m in ('torch', 'tensorflow', 'mindspore') if u.find_spec(m)])"
    )
    assert run_code(alice, "/user/alice/nb1/", code)["stdout"].strip() == "[]"
    # it runs in the plain environment, not in the Jupyter server's own
    where = run_code(alice, "/user/alice/nb1/", "import sys; print(sys.prefix)")["stdout"]
    assert where.strip() == "/opt/envs/python"


def test_flavor_switch_restarts_with_new_limits_and_keeps_files(hub, alice, nb1):
    alice.start_instance("nb1")
    before = run_code(alice, "/user/alice/nb1/", CGROUP_LIMITS)["stdout"].split()
    assert before[0] == str(1024**3)  # cpu.tiny: 1 GiB
    assert before[1] in ("50000", "50000 100000")  # 0.5 vCPU

    model = alice.update_instance("nb1", flavor="cpu.small")
    assert (model["flavor"], model["state"]) == ("cpu.small", "running")
    assert alice.instance("nb1")["flavor"] == "cpu.small"
    after = run_code(alice, "/user/alice/nb1/", CGROUP_LIMITS + "print(open('notes.txt').read())")
    lines = after["stdout"].split()
    assert lines[0] == str(2 * 1024**3)
    assert lines[1] == "100000"
    assert lines[-1] == "kept"

    # a stopped instance switches without starting; the next start applies it
    alice.stop_instance("nb1")
    model = alice.update_instance("nb1", flavor="cpu.tiny")
    assert (model["flavor"], model["state"]) == ("cpu.tiny", "stopped")
    alice.start_instance("nb1")
    assert run_code(alice, "/user/alice/nb1/", CGROUP_LIMITS)["stdout"].split()[0] == str(1024**3)


@pytest.mark.parametrize(
    "body,status,message",
    [
        ({"name": "Bad Name"}, 400, "Invalid instance name"),
        ({"name": "x" * 40}, 400, "Invalid instance name"),
        ({}, 400, "needs a name"),
        ({"name": "ok1", "image": "no-such-image"}, 400, "Unknown image 'no-such-image'"),
        ({"name": "ok1", "flavor": "cpu.giant"}, 400, "Unknown flavor 'cpu.giant'"),
        ({"name": "ok1", "storage_gib": 500}, 400, "between 1 and 50 GiB"),
        ({"name": "ok1", "storage_gib": 0}, 400, "between 1 and 50 GiB"),
        ({"name": "ok1", "gpus": 8}, 400, "Unknown instance option"),
        ({"name": "ok1", "start": "yes"}, 400, "'start' must be"),
        ({"name": "ok1", "image": "missing"}, 400, "not built on this machine"),
        ({"name": "ok1", "image": "broken"}, 400, "failed to start.*exit code 3"),
    ],
)
def test_bad_create_requests_leave_nothing_behind(hub, engine, bob, body, status, message):
    before = bob.instances()
    with pytest.raises(WorkbenchError) as e:
        bob.api("POST", "users/bob/instances", body)
    assert e.value.status == status
    assert re.search(message, e.value.message), e.value.message
    assert bob.instances() == before
    assert engine_names(engine.url, "container", f"{hub.prefix}-bob--ok1") == []
    assert engine_names(engine.url, "volume", f"{hub.prefix}-bob--ok1") == []


def test_a_flavor_larger_than_the_machine_is_refused(hub, engine, bob, tmp_path):
    """The smallest shipped flavor with more vCPUs or memory than the engine's machine has is
    refused, with nothing left behind. Where every shipped flavor fits, a hub of its own
    offers one more that does not."""
    info = docker.APIClient(base_url=engine.url, timeout=60).info()
    ncpu, memory = int(info["NCPU"]), int(info["MemTotal"])
    shipped = load_flavors()
    too_big = [f for f in shipped.values() if f.cpu > ncpu or f.memory > memory]

    def refused(h, user, client, flavor):
        before = client.instances()
        with pytest.raises(WorkbenchError) as e:
            client.create_instance("big1", flavor=flavor)
        assert e.value.status == 400, e.value.message
        assert f"Flavor '{flavor}' needs" in e.value.message
        assert f"this machine has {ncpu} vCPUs" in e.value.message
        assert "Pick a smaller flavor" in e.value.message
        assert client.instances() == before
        for kind in ("container", "volume"):
            assert engine_names(engine.url, kind, f"{h.prefix}-{user}--big1") == []

    if too_big:
        refused(hub, "bob", bob, min(too_big, key=lambda f: (f.cpu, f.memory)).name)
        return
    flavors = tmp_path / "flavors.yaml"
    raw = yaml.safe_load(DEFAULT_FLAVORS.read_text())
    raw["flavors"].append({"name": "cpu.huge", "cpu": ncpu + 1, "memory": "1Gi"})
    flavors.write_text(yaml.safe_dump(raw))
    settings = f'flavors_path = "{flavors}"'
    (tmp_path / "hub").mkdir()
    with running_hub(tmp_path / "hub", engine.url, "flavors", extra_settings=settings) as h:
        refused(h, "carol", h.add_user("carol"), "cpu.huge")


def test_duplicate_names_and_malformed_bodies(hub, alice, nb1):
    with pytest.raises(WorkbenchError) as e:
        alice.create_instance("nb1")
    assert e.value.status == 409 and "already exists" in e.value.message
    r = requests.post(
        f"{alice.api_url}/users/alice/instances",
        data="{not json",
        headers={"Authorization": f"token {alice.token}"},
    )
    assert r.status_code == 400 and "not valid JSON" in r.json()["message"]


def test_running_instances_cannot_be_deleted_nor_their_storage_grown(hub, alice, nb1):
    alice.start_instance("nb1")
    with pytest.raises(WorkbenchError) as e:
        alice.delete_instance("nb1")
    assert e.value.status == 409 and "Stop it first" in e.value.message
    with pytest.raises(WorkbenchError) as e:
        alice.update_instance("nb1", storage_gib=40)
    assert e.value.status == 409 and "stop it first" in e.value.message
    assert alice.instance("nb1")["storage_gib"] == 2
    before = alice.instance("nb1")
    with pytest.raises(WorkbenchError) as e:
        alice.update_instance("nb1", flavor="nope")
    assert e.value.status == 400 and "Unknown flavor 'nope'" in e.value.message
    # a refused switch changes nothing: same flavor, still running, not restarted
    after = alice.instance("nb1")
    assert (after["flavor"], after["state"], after["started"]) == (
        before["flavor"],
        "running",
        before["started"],
    )


def test_users_cannot_see_or_touch_each_others_instances(hub, alice, bob, nb1):
    for call in (
        lambda: bob.instances("alice"),
        lambda: bob.instance("nb1", user="alice"),
        lambda: bob.stop_instance("nb1", user="alice"),
        lambda: bob.delete_instance("nb1", user="alice"),
        lambda: bob.instances("nobody"),
    ):
        with pytest.raises(WorkbenchError) as e:
            call()
        assert e.value.status == 404
    # an admin may act on anyone's instances
    assert "nb1" in [i["name"] for i in hub.client().instances("alice")]


def test_api_needs_a_token(hub):
    r = requests.get(f"{hub.url}/services/workbench/api/users/alice/instances")
    assert r.status_code == 403
    assert "token" in r.json()["message"]


def test_catalog_and_flavors_through_the_api(hub, alice):
    images = {i["name"]: i for i in alice.images()}
    assert images["python"]["status"] == "ready"
    assert images["missing"]["status"] == "not built"
    assert images["python"]["environments"][0]["display_name"] == "Python 3 (no engine)"
    flavors = {f["name"]: f for f in alice.flavors()}
    assert flavors["cpu.tiny"]["memory"] == 1024**3 and flavors["gpu.t4"]["gpu"] == 1


def test_spawn_progress_is_reported(hub, alice, nb1):
    if alice.instance("nb1")["state"] != "stopped":
        alice.stop_instance("nb1")
    starter = threading.Thread(target=alice.hub, args=("POST", "users/alice/servers/nb1"))
    starter.start()
    deadline = time.monotonic() + 30
    while alice.hub("GET", "users/alice/servers/nb1")["pending"] != "spawn":
        assert time.monotonic() < deadline, "the start never became pending"
        time.sleep(0.02)
    events = list(alice.progress("nb1"))
    starter.join()
    messages = [e.get("message", "") for e in events]
    assert any("Checking image python" in m for m in messages), messages
    assert any("Flavor cpu." in m for m in messages), messages
    assert events[-1].get("ready") is True
    percents = [e["progress"] for e in events if "progress" in e]
    assert percents == sorted(percents)


def test_delete_removes_the_instance_and_its_storage(hub, engine, alice):
    alice.create_instance("scratch", flavor="cpu.tiny", storage_gib=1)
    assert engine_names(engine.url, "volume", f"{hub.prefix}-alice--scratch")
    alice.stop_instance("scratch")
    alice.delete_instance("scratch")
    assert "scratch" not in [i["name"] for i in alice.instances()]
    assert engine_names(engine.url, "volume", f"{hub.prefix}-alice--scratch") == []
    assert engine_names(engine.url, "container", f"{hub.prefix}-alice--scratch") == []
    with pytest.raises(WorkbenchError) as e:
        alice.instance("scratch")
    assert e.value.status == 404


def test_instances_survive_a_hub_restart(engine, base_image, tmp_path):
    """On a hub of its own: a restart of the session hub would hold every later test."""
    (tmp_path / "hub").mkdir()
    with running_hub(tmp_path / "hub", engine.url, "restart") as h:
        rhea, remy = h.add_user("rhea"), h.add_user("remy")
        started = {}
        for client, name in ((rhea, "keep1"), (remy, "keep2")):
            model = client.create_instance(name, flavor="cpu.tiny", storage_gib=1)
            run_code(client, model["url"], "open('notes.txt', 'w').write('kept')")
            started[name] = model["started"]
        h.restart()
        for client, name in ((rhea, "keep1"), (remy, "keep2")):
            model = client.instance(name)
            # the same run: not started again by the restarted hub
            assert (model["state"], model["started"]) == ("running", started[name]), model
            r = requests.get(
                f"{h.url}/user/{client.whoami()['name']}/{name}/api/status",
                headers={"Authorization": f"token {client.token}"},
            )
            assert r.status_code == 200
            out = run_code(client, model["url"], "print(open('notes.txt').read())")
            assert out["stdout"].strip() == "kept", out


def test_hub_refuses_to_start_without_a_container_engine(tmp_path):
    h = Hub(tmp_path, extra_settings='docker_host = "unix:///nonexistent/engine.sock"')
    with pytest.raises(RuntimeError) as e:
        h.start(timeout=30)
    assert "No container engine answers" in str(e.value)


def test_a_draft_from_an_abandoned_spawn_page_can_be_created(hub, alice):
    """Opening /hub/spawn/<user>/<name> registers the name; creating it later must work."""
    session = hub.browser_session("alice", hub.passwords["alice"])
    page = session.get(f"{hub.url}/hub/spawn/alice/draft1")
    assert page.status_code == 200 and "Instance draft1" in page.text
    drafts = [i for i in alice.instances() if i["name"] == "draft1"]
    assert [i["state"] for i in drafts] == ["creating"]
    model = alice.create_instance("draft1", flavor="cpu.tiny", storage_gib=1)
    assert (model["state"], model["flavor"]) == ("running", "cpu.tiny")
    alice.stop_instance("draft1")
    alice.delete_instance("draft1")
