"""The platform's Python client (`import workbench`) against the session hub: the async client,
the sync one (in a running event loop too), errors, the environment's configuration, JupyterHub's
API for services, and the client inside a real instance's kernel."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time

import pytest
import workbench
from workbench import AsyncWorkbenchClient, WorkbenchClient, WorkbenchError

from tests.platform import free_port, run_code

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def kira(hub):
    """A user for the async client's tests; her instances are deleted after."""
    client = hub.add_user("kira")
    yield client
    for instance in client.instances():
        client.delete_instance(instance["name"])


@pytest.fixture(scope="module")
def kofi(hub):
    """A user for the sync client's tests; his instances and keys are deleted after."""
    client = hub.add_user("kofi")
    yield client
    for instance in client.instances():
        client.delete_instance(instance["name"])
    for key in client.keys():
        client.delete_key(key["id"])


@pytest.fixture(scope="module")
def admin(hub):
    return hub.client()


async def test_async_client_instance_lifecycle(hub, kira):
    async with AsyncWorkbenchClient(hub.url, kira.token) as client:
        assert (await client.whoami())["name"] == "kira"
        flavors = [f["name"] for f in await client.flavors.list()]
        assert "cpu.tiny" in flavors
        model = await client.instances.create(
            "anb", flavor="cpu.tiny", storage_gib=1, description="async", start=False
        )
        assert (model["name"], model["state"], model["description"]) == ("anb", "stopped", "async")
        # calling a namespace lists it
        assert [i["name"] for i in await client.instances()] == ["anb"]
        assert [i["name"] for i in await client.instances.list()] == ["anb"]
        model = await client.instances.start("anb")
        assert model["state"] == "running" and model["url"] == "/user/kira/anb/"
        model = await client.instances.update("anb", description="changed")
        assert (await client.instances.get("anb"))["description"] == "changed"
        model = await client.instances.stop("anb")
        assert model["state"] == "stopped"
        await client.instances.delete("anb")
        assert await client.instances.list() == []


async def test_async_calls_run_together(hub, kira):
    """Calls on one client overlap on one connection pool (no call waits for another)."""
    async with AsyncWorkbenchClient(hub.url, kira.token) as client:
        results = await asyncio.gather(
            client.flavors.list(),
            client.images.list(),
            client.instances.list(),
            client.keys.list(),
            client.quotas.get(),
        )
    flavors, images, instances, keys, quota = results
    assert "cpu.tiny" in [f["name"] for f in flavors]
    assert "python" in [i["name"] for i in images]
    assert instances == [] and keys == []
    assert quota["user"] == "kira" and "instances" in quota["usage"]


def test_sync_client_instance_lifecycle(hub, kofi):
    client = WorkbenchClient(hub.url, kofi.token)
    created = client.create_instance("snb", flavor="cpu.tiny", storage_gib=1, start=False)
    assert created["state"] == "stopped"
    # the flat names and the namespaces are the same calls
    assert client.instances() == client.instances.list()
    assert client.instance("snb") == client.instances.get("snb")
    assert client.start_instance("snb")["state"] == "running"
    assert client.instances.stop("snb")["state"] == "stopped"
    assert client.set_auto_stop("snb", idle_minutes=30)["auto_stop"]["idle_minutes"] == 30
    client.delete_instance("snb")
    assert "snb" not in [i["name"] for i in client.instances.list()]


def test_sync_client_reaches_every_resource(hub, kofi, admin):
    """One call or more per namespace, with the paths and bodies the platform expects."""
    key = kofi.keys.generate("laptop")
    assert "PRIVATE KEY" in key["private_key"] and key["name"] == "laptop"
    assert kofi.keys.rename(key["id"], "desk")["name"] == "desk"
    assert [k["name"] for k in kofi.keys()] == ["desk"]
    kofi.keys.delete(key["id"])
    assert kofi.keys.list() == []
    assert "python" in [i["name"] for i in kofi.images.list()]
    usage = kofi.usage.get(since="-1h")
    assert "rows" in usage and "total_cost" in usage
    assert kofi.usage.csv(since="-1h").startswith("user,workspace,day,flavor")
    assert kofi.quotas.get()["user"] == "kofi"
    assert admin.quotas.set("kofi", {"instances": 4})["limits"]["instances"] == 4
    admin.quotas.set("kofi", {})
    assert "default" in [w["name"] for w in kofi.workspaces.list()]
    admin.workspaces.create("clientws", description="from the client", members=["kofi"])
    try:
        assert admin.workspaces.get("clientws")["description"] == "from the client"
        assert "clientws" in [w["name"] for w in kofi.workspaces()]
        assert kofi.workspaces.instances("clientws") == []
        admin.workspaces.set_members("clientws", [])
        assert "clientws" not in [w["name"] for w in kofi.workspaces()]
    finally:
        admin.workspaces.delete("clientws")
    assert "clientws" not in [w["name"] for w in admin.workspaces.list(all=True)]
    events = admin.audit.events(event="addKey", user="kofi", limit=5)
    assert events and all(e["actor"] == "kofi" for e in events)
    lines = admin.audit.export(user="kofi", limit=3).strip().splitlines()
    assert 1 <= len(lines) <= 3 and all(json.loads(line)["actor"] == "kofi" for line in lines)
    assert admin.audit.verify()["ok"] is True


def test_errors_carry_status_and_message(hub, kofi):
    with pytest.raises(WorkbenchError) as e:
        kofi.instances.get("nope")
    assert e.value.status == 404 and "No instance 'nope'" in e.value.message
    assert not e.value.missing_route
    with pytest.raises(WorkbenchError) as e:
        kofi.instances.create("Bad Name")
    assert e.value.status == 400 and "Invalid instance name 'Bad Name'" in e.value.message
    with pytest.raises(WorkbenchError) as e:
        kofi.audit.events()
    assert e.value.status == 403 and "custom:workbench:audit:read" in e.value.message
    assert str(e.value).endswith("(HTTP 403)")
    with pytest.raises(WorkbenchError) as e:
        WorkbenchClient(hub.url, "not-a-token").instances.list("kofi")
    assert e.value.status == 403
    # a route the server does not have (a static file server's HTML 404, not an API's JSON)
    with pytest.raises(WorkbenchError) as e:
        WorkbenchClient(api_url=f"{hub.url}/hub/static", token=kofi.token).api("GET", "nothing")
    assert e.value.status == 404 and e.value.missing_route


def test_sign_in_errors(hub):
    client = WorkbenchClient(hub.url)
    with pytest.raises(WorkbenchError) as e:
        client.login("kofi", "wrong-password")
    assert e.value.status == 403 and "wrong user name or password" in e.value.message
    assert client.token == ""
    token = client.login("kofi", hub.passwords["kofi"])
    assert client.token == token and client.whoami()["name"] == "kofi"


def test_no_answer_is_status_0(hub):
    port = free_port()
    with pytest.raises(WorkbenchError) as e:
        WorkbenchClient(f"http://127.0.0.1:{port}", "t").instances.list("kofi")
    assert e.value.status == 0
    assert f"127.0.0.1:{port}" in e.value.message
    assert "Is it running (`make up`)?" in e.value.message
    # a server that accepts connections and never answers: the client's time limit
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        client = WorkbenchClient(url, "t", timeout=1.5)
        started = time.monotonic()
        with pytest.raises(WorkbenchError) as e:
            client.flavors.list()
        assert time.monotonic() - started < 10
    assert e.value.status == 0 and "did not answer (no answer within 1.5 s)" in e.value.message


async def test_sync_client_inside_a_running_event_loop(hub, kofi):
    """A Jupyter kernel runs cells inside an event loop, where asyncio.run() refuses to run:
    the sync client runs its calls on its own loop and answers there too."""
    assert asyncio.get_running_loop().is_running()
    client = WorkbenchClient(hub.url, kofi.token)
    call = client.aio.flavors.list()
    with pytest.raises(RuntimeError):
        asyncio.run(call)
    call.close()
    assert "cpu.tiny" in [f["name"] for f in client.flavors()]
    assert client.whoami()["name"] == "kofi"
    # errors come through as they are
    with pytest.raises(WorkbenchError) as e:
        client.instances.get("nope")
    assert e.value.status == 404


def test_sync_client_from_many_threads(hub, kofi):
    client = WorkbenchClient(hub.url, kofi.token)
    results, errors = [], []

    def call():
        try:
            results.append([f["name"] for f in client.flavors.list()])
        except Exception as e:  # noqa: BLE001 - the assertion below reports it
            errors.append(e)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and len(results) == 8 and all("cpu.tiny" in r for r in results)


def test_configured_from_an_instances_environment(hub, kofi, monkeypatch):
    """The variables the spawner sets in an instance are enough: `import workbench` and call."""
    for name in ("WORKBENCH_URL", "WORKBENCH_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WORKBENCH_API_URL", f"{hub.url}/services/workbench/api")
    monkeypatch.setenv("JUPYTERHUB_API_URL", f"{hub.url}/hub/api")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", kofi.token)
    monkeypatch.setenv("JUPYTERHUB_USER", "kofi")
    workbench.set_default_client(None)
    try:
        kofi.create_instance("envnb", flavor="cpu.tiny", storage_gib=1, start=False)
        assert [i["name"] for i in workbench.instances.list()] == ["envnb"]
        assert workbench.instances() == workbench.instances.list()
        assert "python" in [i["name"] for i in workbench.images.list()]
        assert workbench.whoami()["name"] == "kofi"
        assert workbench.default_client().user == "kofi"
    finally:
        workbench.set_default_client(None)
        kofi.delete_instance("envnb")


async def test_progress_of_a_start(hub, kira):
    """The hub's spawn progress stream, through the user's client: events until ready."""
    async with AsyncWorkbenchClient(hub.url, kira.token) as client:
        await client.instances.create("pnb", flavor="cpu.tiny", storage_gib=1, start=False)
        try:
            # a stopped instance has no progress to follow: the hub says so
            with pytest.raises(WorkbenchError) as e:
                async for _ in client.instances.progress("pnb", limit=10):
                    pass
            assert e.value.status == 400
            status, _ = await client.hub_api.request_status("POST", "/users/kira/servers/pnb")
            assert status in (201, 202)
            events = [e async for e in client.instances.progress("pnb", limit=90)]
            assert events and events[-1].get("ready") is True, events
            assert all("message" in e for e in events)
        finally:
            await client.instances.stop("pnb")
            await client.instances.delete("pnb")


def test_sync_progress_is_an_iterator(hub, kofi):
    kofi.create_instance("spnb", flavor="cpu.tiny", storage_gib=1, start=False)
    try:
        url = f"{kofi.hub_api_url}/users/kofi/servers/spnb"
        status, _ = kofi.request("POST", url, expect="lenient")
        assert status in (201, 202)
        events = list(kofi.progress("spnb", limit=90))
        assert events and events[-1]["ready"] is True, events
        kofi.stop_instance("spnb")
    finally:
        kofi.delete_instance("spnb")


class Overlay:
    """Changes laid over server models, as the platform's live options are."""

    async def overlay(self, user, servers):
        for server in servers.values():
            server["user_options"] = {**server.get("user_options", {}), "overlaid": user}
        return servers


async def test_hub_api_for_services(hub, admin, kira):
    """What the platform service and the SSH gateway ask the hub, with an admin's token
    standing in for their service token."""
    async with AsyncWorkbenchClient(hub_api_url=f"{hub.url}/hub/api", token=admin.token) as c:
        api = c.hub_api
        assert await api.user("nobody") is None
        assert await api.servers("nobody") is None
        assert await api.server("kira", "nope") is None
        with pytest.raises(WorkbenchError) as e:
            await api.request("GET", "/users/nobody")
        assert e.value.status == 404 and e.value.code == 404 and e.value.message
        kira.create_instance("hnb", flavor="cpu.tiny", storage_gib=1, start=False)
        try:
            assert (await api.user("kira"))["name"] == "kira"
            servers = await api.servers("kira")
            assert list(servers) == ["hnb"]
            assert servers["hnb"]["user_options"]["flavor"] == "cpu.tiny"
            api.live = Overlay()
            assert (await api.servers("kira"))["hnb"]["user_options"]["overlaid"] == "kira"
            assert (await api.server("kira", "hnb"))["user_options"]["overlaid"] == "kira"
            api.live = None
            # a start: its status tells whether the hub waited for it (201) or not (202)
            status, _ = await api.request_status("POST", workbench.server_path("kira", "hnb"))
            assert status in (201, 202)
            events = [e async for e in api.progress("kira", "hnb", limit=90)]
            assert events[-1].get("ready") is True, events
            # quiet by default: a refusal (the server is not starting) just ends the events
            kira.stop_instance("hnb")
            assert [e async for e in api.progress("kira", "hnb", limit=5)] == []
        finally:
            kira.delete_instance("hnb")
    unreachable = AsyncWorkbenchClient(hub_api_url=f"http://127.0.0.1:{free_port()}/hub/api")
    async with unreachable:
        with pytest.raises(WorkbenchError) as e:
            await unreachable.hub_api.servers("kira")
        assert e.value.status == 0 and "JupyterHub's API" in e.value.message
        assert [e async for e in unreachable.hub_api.progress("kira", "x", limit=5)] == []


def test_the_client_in_an_instance_kernel(hub, kofi):
    """In a notebook on the platform, `import workbench` reaches the owner's instances with no
    set-up (the instance's own token and addresses), from inside the kernel's event loop."""
    kofi.create_instance("knb", flavor="cpu.tiny", storage_gib=1)
    try:
        model = kofi.instance("knb")
        result = run_code(
            kofi,
            model["url"],
            "import asyncio, json, workbench\n"
            "loop_running = asyncio.get_event_loop().is_running()\n"
            "names = [i['name'] for i in workbench.instances.list()]\n"
            "flavor = workbench.instances.get('knb')['flavor']\n"
            "print(json.dumps({'loop': loop_running, 'names': names, 'flavor': flavor}))\n",
        )
        assert result["error"] is None, result
        seen = json.loads(result["stdout"].strip().splitlines()[-1])
        assert seen["names"] == ["knb"] and seen["flavor"] == "cpu.tiny", seen
        assert seen["loop"] is True, "cells run inside the kernel's event loop"
    finally:
        kofi.stop_instance("knb")
        kofi.delete_instance("knb")
