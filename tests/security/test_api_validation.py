"""Attacks with numbers that are not numbers (NaN, infinities) and on the bookkeeping they
break, and an extend by a user allowed only to look."""

from __future__ import annotations

import sqlite3
import time

import pytest
import requests
from workbench import WorkbenchError

from tests.platform import engine_names, running_hub

pytestmark = pytest.mark.integration

NAN_AUTO_STOP = b'{"auto_stop": {"idle_minutes": 60, "max_hours": NaN}}'


@pytest.fixture(scope="module")
def mallory(hub):
    return hub.add_user("mallory")


@pytest.fixture(scope="module")
def running(mallory):
    """mallory's running instance."""
    mallory.create_instance("nan1", flavor="cpu.tiny", storage_gib=1)
    return "nan1"


def raw(client, method: str, url: str, body: bytes, **kwargs) -> requests.Response:
    """A request with a body sent as is (the client library would refuse to encode NaN)."""
    return requests.request(
        method,
        url,
        data=body,
        headers={"Authorization": f"token {client.token}", "Content-Type": "application/json"},
        timeout=120,
        **kwargs,
    )


def container_running(engine, hub, user: str, name: str) -> bool:
    import docker

    client = docker.APIClient(base_url=engine.url, timeout=60)
    for container in engine_names(engine.url, "container", f"{hub.prefix}-{user}--{name}"):
        if client.inspect_container(container)["State"].get("Running"):
            return True
    return False


def test_nan_max_hours_is_refused_and_breaks_nothing(hub, mallory, running):
    """The attacker PATCHes `"max_hours": NaN` (JSON text NaN, which Python's json reads):
    NaN passes every range check, and every later deadline computation fails. It must be
    refused with 400 and a message; the instance list keeps answering and a valid change
    still works."""
    url = f"{mallory.api_url}/users/mallory/instances/{running}"
    r = raw(mallory, "PATCH", url, NAN_AUTO_STOP)
    assert r.status_code == 400, r.text
    assert "NaN" in r.json()["message"]
    for body in (
        b'{"auto_stop": {"max_hours": Infinity}}',
        b'{"auto_stop": {"idle_minutes": -Infinity}}',
        b'{"auto_stop": {"max_hours": 1e999}}',
        b'{"auto_stop": {"max_hours": "nan"}}',
        b'{"auto_stop": {"idle_minutes": "NaN", "max_hours": 1}}',
    ):
        r = raw(mallory, "PATCH", url, body)
        assert r.status_code == 400 and r.json()["message"], (body, r.text)
    listed = requests.get(
        f"{mallory.api_url}/users/mallory/instances",
        headers={"Authorization": f"token {mallory.token}"},
        timeout=60,
    )
    assert listed.status_code == 200, listed.text
    assert {i["name"]: i["state"] for i in listed.json()}[running] == "running"
    changed = mallory.set_auto_stop(running, idle_minutes=60, max_hours=2)
    assert changed["auto_stop"] == {"idle_minutes": 60, "max_hours": 2}
    assert changed["stops_at"]
    # and NaN anywhere else in a body (a quota, an extend) is refused the same way
    r = raw(mallory, "POST", f"{url}/extend", b'{"minutes": NaN}')
    assert r.status_code == 400 and "NaN" in r.json()["message"]


def test_nan_user_options_through_the_hub_api_are_refused(hub, engine, mallory):
    """The attacker skips the platform API and asks the hub's own REST API to start a server
    with `user_options` holding NaN. The spawner's checks refuse it: nothing starts, and the
    platform's list of instances still answers."""
    r = raw(
        mallory,
        "POST",
        f"{mallory.hub_api_url}/users/mallory/servers/nanhub",
        b'{"user_options": {"flavor": "cpu.tiny", "storage_gib": 1, '
        b'"auto_stop": {"idle_minutes": 60, "max_hours": NaN}}}',
    )
    assert r.status_code >= 400, r.text
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        server = mallory.hub("GET", "users/mallory")["servers"].get("nanhub") or {}
        if not server.get("pending"):
            break
        time.sleep(0.2)
    assert not server.get("ready")
    assert not container_running(engine, hub, "mallory", "nanhub")
    listed = requests.get(
        f"{mallory.api_url}/users/mallory/instances",
        headers={"Authorization": f"token {mallory.token}"},
        timeout=60,
    )
    assert listed.status_code == 200, listed.text
    # the stored options are not valid: starting it through the platform says why
    with pytest.raises(WorkbenchError) as e:
        mallory.start_instance("nanhub")
    assert e.value.status == 400 and "finite" in e.value.message


def test_nan_in_the_spawn_form_is_refused(hub, engine, mallory):
    """The attacker types "nan" into the spawn form's "Stop after (hours)" field (the
    browser's number input is bypassed by posting the form directly): the form comes back
    with the reason and nothing starts."""
    s = hub.browser_session("mallory", hub.passwords["mallory"])
    s.get(f"{hub.url}/hub/spawn/mallory/nanform")
    r = s.post(
        f"{hub.url}/hub/spawn/mallory/nanform",
        data={
            "image": "python",
            "flavor": "cpu.tiny",
            "storage_gib": "1",
            "idle_minutes": "60",
            "max_hours": "nan",
            "_xsrf": s.cookies.get("_xsrf"),
        },
    )
    assert "max_hours must be a finite number" in r.text
    server = mallory.hub("GET", "users/mallory")["servers"].get("nanform") or {}
    assert not server.get("ready") and not server.get("pending")
    assert not container_running(engine, hub, "mallory", "nanform")


def test_a_viewer_cannot_extend(hub, mallory):
    """A user an admin moved to the Viewers (see, change nothing) extends their own running
    instance to keep it (and its cost) running: refused with 403 like every other change."""
    viewer = hub.add_user("vera")
    viewer.create_instance("kept", flavor="cpu.tiny", storage_gib=1)
    admin = hub.client()
    admin.hub("DELETE", "groups/workbench-users/users", {"users": ["vera"]})
    admin.hub("POST", "groups/workbench-viewers/users", {"users": ["vera"]})
    viewer.login("vera", hub.passwords["vera"])
    with pytest.raises(WorkbenchError) as e:
        viewer.extend_instance("kept", 60)
    assert e.value.status == 403
    assert "custom:workbench:instances:update" in e.value.message
    admin.stop_instance("kept", user="vera")


def test_stop_removes_the_container_even_when_bookkeeping_fails(engine, base_image, tmp_path):
    """Options stored before they were checked as they are now (here NaN, as an older version
    accepted) make every deadline computation fail. The attacker's instance must still be
    listed, and a stop must remove its container: else the hub counts it stopped while it
    keeps running, unmetered and outside every quota. On a hub of its own: the test stops
    it and writes into its database."""
    (tmp_path / "hub").mkdir()
    with running_hub(tmp_path / "hub", engine.url, "bookkeeping") as hub:
        mallory = hub.add_user("mallory")
        running = mallory.create_instance("nan1", flavor="cpu.tiny", storage_gib=1)["name"]
        assert container_running(engine, hub, "mallory", running)
        hub.stop()  # instances keep running while the hub is down
        db = sqlite3.connect(hub.root / "data" / "jupyterhub.sqlite")
        with db:
            cur = db.execute(
                "UPDATE spawners SET user_options = ? WHERE name = ? AND user_id = "
                "(SELECT id FROM users WHERE name = 'mallory')",
                (
                    '{"image": "python", "flavor": "cpu.tiny", "storage_gib": 1, '
                    '"auto_stop": {"idle_minutes": 60, "max_hours": NaN}}',
                    running,
                ),
            )
            assert cur.rowcount == 1
        db.close()
        hub.start()
        listed = requests.get(
            f"{mallory.api_url}/users/mallory/instances/{running}",
            headers={"Authorization": f"token {mallory.token}"},
            timeout=60,
        )
        assert listed.status_code == 200, listed.text
        assert listed.json()["state"] == "running"
        mallory.stop_instance(running)
        assert not container_running(engine, hub, "mallory", running)
        assert engine_names(engine.url, "container", f"{hub.prefix}-mallory--{running}") == []
        assert mallory.instance(running)["state"] == "stopped"
