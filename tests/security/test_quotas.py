"""Attacks on quotas: starting instances past a quota through the hub's own paths.

The platform API checks quotas, but the hub starts instances too: its REST API
(POST /hub/api/users/{user}/servers/{name}) and its spawn page (/hub/spawn/{user}/{name}),
which is where the home page's "start" leads. An attacker with a running-instances quota of 1
uses those paths, alone and all at once, to run more.
"""

from __future__ import annotations

import html
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import docker
import pytest
import requests
from workbench import WorkbenchError

from spawner.container import LABEL_PREFIX

USER = "hoarder"
OPTIONS = {"image": "python", "flavor": "cpu.tiny", "storage_gib": 1}
REFUSAL = "Quota exceeded: instances running at once would be 2, over hoarder's limit of 1."


@pytest.fixture(scope="module")
def hoarder(hub):
    client = hub.add_user(USER)
    hub.client().api("PUT", f"quotas/users/{USER}", {"limits": {"running_instances": 1}})
    return client


@pytest.fixture
def cleanup(hub, hoarder):
    """Stop and delete every instance of the attacker after the test."""
    yield
    admin = hub.client()
    for instance in admin.instances(USER):
        try:
            admin.stop_instance(instance["name"], USER)
            admin.delete_instance(instance["name"], USER)
        except WorkbenchError as e:
            print(f"cleanup of {instance['name']}: {e}")


def hub_api_start(client, name: str, **options) -> requests.Response:
    """Start (and create) an instance through JupyterHub's own REST API."""
    user = client.whoami()["name"]
    url = f"{client.hub_api_url}/users/{user}/servers/{name}"
    return client.session.post(url, json={**OPTIONS, **options}, timeout=120)


def spawn_form_start(hub, session: requests.Session, name: str) -> requests.Response:
    """Open an instance's spawn page and submit its form, as the home page's start does."""
    url = f"{hub.url}/hub/spawn/{USER}/{name}"
    session.get(url, timeout=60).raise_for_status()
    form = {key: str(value) for key, value in OPTIONS.items()}
    form["_xsrf"] = session.cookies.get("_xsrf")
    return session.post(url, data=form, allow_redirects=False, timeout=120)


def servers(hoarder) -> dict:
    """The attacker's active servers, as the hub sees them."""
    return hoarder.hub("GET", f"users/{USER}")["servers"]


def wait_settled(hoarder, timeout: float = 150):
    """Wait until none of the attacker's servers is starting or stopping."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(s.get("pending") for s in servers(hoarder).values()):
            return
        time.sleep(0.5)
    raise TimeoutError(f"still pending after {timeout} s: {servers(hoarder)}")


def running_containers(engine, hub) -> list[str]:
    client = docker.APIClient(base_url=engine.url, timeout=30)
    found = client.containers(filters={"label": f"{LABEL_PREFIX}.user={USER}"})
    names = [c["Names"][0].lstrip("/") for c in found if c.get("State") == "running"]
    return [n for n in names if n.startswith(hub.prefix)]


def assert_not_crashed(hoarder, name: str):
    """A refused start ran nothing: no crash to recover from, no restart later."""
    model = hoarder.instance(name)
    assert model["state"] == "stopped", model
    assert not model.get("restart_pending") and not model.get("last_crash"), model


def test_hub_api_cannot_start_a_second_instance_past_the_running_quota(hub, hoarder, cleanup):
    """The attacker starts one instance through the hub's REST API, then a second one the
    same way, skipping the platform API's check. The second start must be refused (403)
    with the quota, its limit and what to do, and nothing of it may run."""
    r = hub_api_start(hoarder, "api1")
    assert r.status_code in (201, 202), r.text
    wait_settled(hoarder)
    assert servers(hoarder)["api1"]["ready"]

    r = hub_api_start(hoarder, "api2")
    assert r.status_code == 403, r.text
    assert REFUSAL in r.json()["message"]
    assert "Stop or delete an instance" in r.json()["message"]
    wait_settled(hoarder)
    assert sorted(servers(hoarder)) == ["api1"]
    assert_not_crashed(hoarder, "api2")


def test_spawn_form_cannot_start_a_second_instance_past_the_running_quota(hub, hoarder, cleanup):
    """The attacker submits the spawn page's form for one instance, then for a second. The
    second must be refused, and the page must show which quota and what to do."""
    browser = hub.browser_session(USER, hub.passwords[USER])
    r = spawn_form_start(hub, browser, "form1")
    assert r.status_code == 302 and "/spawn-pending/" in r.headers["Location"], r.text[:500]
    wait_settled(hoarder)
    assert servers(hoarder)["form1"]["ready"]

    r = spawn_form_start(hub, browser, "form2")
    assert r.status_code == 403, r.text[:500]
    assert REFUSAL in html.unescape(r.text)
    wait_settled(hoarder)
    assert sorted(servers(hoarder)) == ["form1"]
    assert_not_crashed(hoarder, "form2")


def test_twenty_concurrent_starts_through_mixed_paths_never_exceed_the_quota(
    hub, hoarder, engine, cleanup
):
    """The attacker fires 20 starts at once, mixing the hub's REST API, the platform API and
    the spawn form over five stopped instances, hoping two checks pass before either start
    counts. At no moment may more than one of their containers run."""
    names = [f"burst{i}" for i in range(5)]
    for name in names:
        hoarder.create_instance(name, start=False, **OPTIONS)
    browsers = [hub.browser_session(USER, hub.passwords[USER]) for _ in range(7)]
    paths = ["hub-api", "platform-api", "spawn-form"]
    barrier = threading.Barrier(20)

    def start(i):
        name, path = names[i % len(names)], paths[i % len(paths)]
        barrier.wait()
        if path == "hub-api":
            r = hub_api_start(hoarder, name)
            return path, r.status_code, r.text
        if path == "spawn-form":
            r = spawn_form_start(hub, browsers[i // len(paths)], name)
            return path, r.status_code, html.unescape(r.text)
        try:
            hoarder.start_instance(name)
            return path, 200, ""
        except WorkbenchError as e:
            return path, e.status, e.message

    most, done = 0, threading.Event()

    def watch():
        nonlocal most
        while not done.is_set():
            most = max(most, len(running_containers(engine, hub)))
            time.sleep(0.3)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with ThreadPoolExecutor(20) as pool:
            results = list(pool.map(start, range(20)))
        wait_settled(hoarder)
    finally:
        done.set()
        watcher.join()
    summary = [(path, status, message[:120]) for path, status, message in results]
    running = running_containers(engine, hub)
    assert len(running) == 1, (running, summary)
    assert most == 1, (most, summary)
    ready = [name for name, server in servers(hoarder).items() if server["ready"]]
    assert len(ready) == 1 and running[0].endswith(ready[0]), (ready, running, summary)
    refused = [r for r in results if r[1] == 403]
    assert refused and all("Quota exceeded" in message for _, _, message in refused), summary


def test_hub_api_cannot_start_past_a_workspace_quota(hub, hoarder, cleanup):
    """A workspace may run one instance among all its members. A member runs one; the
    attacker, with no quota of their own, starts another in the workspace through the hub's
    REST API. It must be refused with the workspace's quota named."""
    admin = hub.client()
    crew = hub.add_user("crewmate")
    admin.api("POST", "workspaces", {"name": "crew", "members": [USER, "crewmate"]})
    admin.api("PUT", "quotas/workspaces/crew", {"limits": {"running_instances": 1}})
    admin.api("PUT", f"quotas/users/{USER}", {"limits": {}})
    try:
        r = hub_api_start(crew, "shared1", workspace="crew")
        assert r.status_code in (201, 202), r.text
        r = hub_api_start(hoarder, "ws2", workspace="crew")
        assert r.status_code == 403, r.text
        message = r.json()["message"]
        assert "instances running at once would be 2, over workspace crew's limit of 1" in message
        wait_settled(hoarder)
        assert servers(hoarder) == {}
    finally:
        admin.api("PUT", f"quotas/users/{USER}", {"limits": {"running_instances": 1}})
        admin.api("PUT", "quotas/workspaces/crew", {"limits": {}})
        for instance in admin.instances("crewmate"):
            admin.stop_instance(instance["name"], "crewmate")
            admin.delete_instance(instance["name"], "crewmate")
