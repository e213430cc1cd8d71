"""The JupyterLab panel's server extension (workbench_lab) through jp_fetch.

Most tests point the extension at the real platform API of the session hub (conftest.py),
with a real user and a stopped instance, so flavor switches and stops take the platform's
own path without restarting the server under test. Unreachable platforms are real closed
ports. Only the "older platform version" tests use a small tornado app standing in for the
platform (it lacks the save and SSH routes), which a current hub cannot be made to do.
"""

from __future__ import annotations

import json
import socket
import time

import pytest
import tornado.httpserver
import tornado.web
from tornado.httpclient import HTTPClientError
from workbench_lab.usage import read_cgroup, usage_model

from tests.labextensions.jupyter_fixtures import fetch_on_loop, use_jupyter_fixtures
from tests.platform import free_port

# pytest-jupyter's fixtures behind jp_fetch and jp_serverapp, for this module's tests only
use_jupyter_fixtures(globals())

pytestmark = pytest.mark.integration

USER = "dana"
NAME = "lab-nb"


@pytest.fixture(scope="module")
def dana(hub):
    """dana with a stopped instance on cpu.tiny; deleted after."""
    client = hub.add_user(USER)
    client.create_instance(NAME, flavor="cpu.tiny", storage_gib=1, start=False, user=USER)
    yield client
    client.delete_instance(NAME, USER)


@pytest.fixture
def platform(request, hub, dana, tmp_path):
    """Where the extension finds the platform API: the real hub unless parametrized."""
    kind = getattr(request, "param", "hub")
    if kind == "hub":
        return {"platform_url": f"{hub.url}/services/workbench/api", "api_token": dana.token}
    if kind == "closed-port":
        return {"platform_url": f"http://127.0.0.1:{free_port()}/services/workbench/api"}
    if kind == "silent":  # accepts connections, never answers
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        request.addfinalizer(sock.close)
        port = sock.getsockname()[1]
        return {"platform_url": f"http://127.0.0.1:{port}/api", "request_timeout": 2.0}
    if kind == "bad-token":
        return {"platform_url": f"{hub.url}/services/workbench/api", "api_token": "not-a-token"}
    raise ValueError(kind)


@pytest.fixture
def jp_server_config(platform, tmp_path):
    lab = {
        "api_token": "unused",
        "user": USER,
        "instance": NAME,
        "request_timeout": 5.0,
        "storage_path": str(tmp_path),
        **platform,
    }
    return {
        "ServerApp": {"jpserver_extensions": {"workbench_lab": True}},
        "WorkbenchLabApp": lab,
    }


@pytest.fixture
def call(jp_fetch, jp_asyncio_loop):
    """Call the extension through jp_fetch, on pytest-jupyter's loop, where its server runs
    (the tests are plain functions: pytest-asyncio would run them on its own loop)."""

    def fetch(path, *, method="GET", body=None):
        kwargs = {"method": method}
        if body is not None:
            kwargs["body"] = body if isinstance(body, str) else json.dumps(body)
        elif method == "POST":
            kwargs["body"] = ""
        resp = fetch_on_loop(jp_fetch, jp_asyncio_loop, "workbench", path, **kwargs)
        return resp.code, json.loads(resp.body) if resp.body else None

    return fetch


def refused(call, path, *, method="GET", body=None):
    """The status and message of a refused call."""
    with pytest.raises(HTTPClientError) as info:
        call(path, method=method, body=body)
    return info.value.code, json.loads(info.value.response.body)["message"]


def test_instance_model_from_the_platform(call, tmp_path):
    code, model = call("instance")
    assert code == 200
    assert (model["name"], model["image"], model["flavor"]) == (NAME, "python", "cpu.tiny")
    assert model["state"] == "stopped"
    assert model["uptime_seconds"] is None
    assert model["flavor_details"]["name"] == "cpu.tiny"
    storage = model["storage"]
    assert storage["path"] == str(tmp_path)
    assert 0 < storage["used"] <= storage["total"] and storage["free"] > 0
    # the platform holds the instance to its size (Podman): the panel says so in a tooltip
    assert storage["enforced"] is True and "No space left on device" in storage["note"]


def test_flavors(call):
    code, flavors = call("flavors")
    assert code == 200
    assert "cpu.tiny" in [f["name"] for f in flavors]


def test_usage_from_the_cgroup(call):
    code, usage = call("usage")
    assert code == 200
    assert usage["cpu"]["limit"] > 0 and usage["cpu"]["used"] is not None
    assert 0 <= usage["cpu"]["percent"] <= 100
    assert usage["memory"]["used"] > 0 and usage["memory"]["limit"] >= usage["memory"]["used"]
    # polled again at once: the same reading serves it
    _, again = call("usage")
    assert again == usage


def test_cgroup_v2_files(tmp_path):
    (tmp_path / "cgroup.controllers").write_text("cpu memory\n")
    (tmp_path / "cpu.stat").write_text("usage_usec 1000000\nuser_usec 800000\n")
    (tmp_path / "cpu.max").write_text("200000 100000\n")
    (tmp_path / "memory.current").write_text(str(256 << 20))
    (tmp_path / "memory.max").write_text(str(1 << 30))
    before = read_cgroup(tmp_path)
    (tmp_path / "cpu.stat").write_text("usage_usec 2000000\n")
    after = read_cgroup(tmp_path)
    after.at = before.at + 2.0  # one CPU second in two seconds: half a core
    model = usage_model(before, after)
    assert model["cgroup"] == 2
    assert model["cpu"] == {"used": 0.5, "limit": 2.0, "percent": 25.0, "interval": 2.0}
    assert model["memory"] == {"used": 256 << 20, "limit": 1 << 30, "percent": 25.0}
    (tmp_path / "cpu.max").write_text("max 100000\n")
    (tmp_path / "memory.max").write_text("max\n")
    unlimited = read_cgroup(tmp_path)
    assert unlimited.cpu_limit >= 1 and unlimited.memory_limit > 1 << 30


def test_switch_flavor_of_the_instance(call, dana):
    # the instance is stopped: the platform switches it without a start and answers at once
    code, model = call("flavor", method="POST", body={"flavor": "cpu.small"})
    assert code == 200, model
    assert dana.instance(NAME, USER)["flavor"] == "cpu.small"
    code, model = call("flavor", method="POST", body={"flavor": "cpu.tiny"})
    assert code == 200 and model["flavor"] == "cpu.tiny"


@pytest.mark.parametrize(
    "body, message",
    [
        ({}, 'Send {"flavor": NAME}'),
        ({"flavor": 3}, 'Send {"flavor": NAME}'),
        ({"flavor": "cpu.huge"}, "Unknown flavor 'cpu.huge': pick one of"),
        ({"flavor": "cpu.tiny"}, "already has flavor 'cpu.tiny'"),
        ("{not json", "not valid JSON"),
    ],
)
def test_switch_flavor_refusals(call, dana, body, message):
    code, text = refused(call, "flavor", method="POST", body=body)
    assert code == 400 and message in text, text
    assert dana.instance(NAME, USER)["flavor"] == "cpu.tiny"


def test_stop_a_stopped_instance(call):
    code, model = call("stop", method="POST")
    assert code == 200 and model["state"] == "stopped"


@pytest.mark.parametrize(
    "body, message",
    [
        ({}, "Give the image a name"),
        ({"name": "Bad Name"}, "Invalid image name 'Bad Name'"),
        ({"name": "myimg", "tag": "-x"}, "Invalid tag '-x'"),
        ({"name": "myimg", "description": 5}, "description must be text"),
    ],
)
def test_save_refusals(call, body, message):
    code, text = refused(call, "save", method="POST", body=body)
    assert code == 400 and message in text, text


@pytest.mark.parametrize("platform", ["closed-port"], indirect=True)
@pytest.mark.parametrize(
    "method, path, body",
    [
        ("GET", "instance", None),
        ("GET", "flavors", None),
        ("POST", "flavor", {"flavor": "cpu.small"}),
        ("POST", "stop", None),
        ("GET", "save", None),
        ("POST", "save", {"name": "myimg"}),
        ("GET", "ssh", None),
    ],
)
def test_platform_unreachable(call, method, path, body):
    code, text = refused(call, path, method=method, body=body)
    assert code == 502
    assert "does not answer" in text and "try again in a minute" in text, text


@pytest.mark.parametrize("platform", ["silent"], indirect=True)
def test_platform_that_never_answers(call):
    code, text = refused(call, "flavors")
    assert code == 502 and "does not answer" in text, text


@pytest.mark.parametrize("platform", ["bad-token"], indirect=True)
def test_platform_refuses_the_token(call):
    code, text = refused(call, "instance")
    assert code == 502 and "access:services!service=workbench" in text, text


@pytest.mark.parametrize("platform", ["closed-port"], indirect=True)
def test_usage_needs_no_platform(call):
    # the platform is unreachable: what needs it is refused
    code, text = refused(call, "instance")
    assert code == 502 and "does not answer" in text, text
    # the cgroup is local: usage answers anyway, with this server's own limits and use
    code, usage = call("usage")
    assert code == 200
    local = read_cgroup()
    assert usage["cpu"]["limit"] == round(local.cpu_limit, 3)
    assert usage["memory"]["limit"] == local.memory_limit
    assert 0 < usage["memory"]["used"] <= usage["memory"]["limit"]
    assert usage["cpu"]["used"] is not None and 0 <= usage["cpu"]["percent"] <= 100


class _Instance(tornado.web.RequestHandler):
    def get(self, user, name):
        self.finish({"name": name, "owner": user, "image": "python", "flavor": "cpu.tiny"})


class _Flavors(tornado.web.RequestHandler):
    def get(self):
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps([{"name": "cpu.tiny"}, {"name": "cpu.small"}]))


@pytest.fixture
def old_platform(jp_asyncio_loop):
    """A stand-in for an older platform version: instances and flavors, no save or SSH
    routes (tornado's plain 404 for them)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.setblocking(False)
    app = tornado.web.Application(
        [
            (r"/api/flavors", _Flavors),
            (r"/api/users/([^/]+)/instances/([^/]+)", _Instance),
        ]
    )

    async def serve():
        server = tornado.httpserver.HTTPServer(app)
        server.add_sockets([sock])
        return server

    server = jp_asyncio_loop.run_until_complete(serve())
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/api"
    server.stop()


@pytest.mark.parametrize("path", ["save", "ssh"])
def test_older_platform_without_save_and_ssh(jp_serverapp, call, old_platform, path):
    app = next(iter(jp_serverapp.extension_manager.extension_apps["workbench_lab"]))
    app.platform.url = old_platform
    code, model = call(path)
    assert code == 200
    assert model["available"] is False
    assert "not available on this platform version" in model["reason"]
    if path == "save":
        code, text = refused(call, "save", method="POST", body={"name": "myimg"})
        assert code == 501 and "not available on this platform version" in text


def test_ssh_details_from_the_platform(call, dana):
    code, details = call("ssh")
    assert code == 200 and details["available"] is True
    assert details["enabled"] is False
    assert f"workbench instances update {NAME} --ssh on" in details["reason"]
    dana.update_instance(NAME, USER, ssh={"enabled": True, "allowlist": ["10.0.0.0/8"]})
    try:
        code, details = call("ssh")
        assert details["enabled"] is True and details["allowlist"] == ["10.0.0.0/8"]
        assert "reason" not in details
        assert f"{USER}.{NAME}@" in details["command"]
        assert details["config"].startswith("Host ") and f"User {USER}.{NAME}" in details["config"]
    finally:
        dana.update_instance(NAME, USER, ssh={"enabled": False, "allowlist": []})


def test_save_a_running_instance_through_the_panel(call, dana):
    dana.start_instance(NAME, USER)
    try:
        code, status = call(
            "save", method="POST", body={"name": "lab-img", "tag": "v1", "description": "panel"}
        )
        assert code == 202 and status["available"] is True
        assert status["state"] in ("saving", "done"), status
        deadline = time.monotonic() + 120
        while status["state"] == "saving":
            assert time.monotonic() < deadline, status
            time.sleep(0.5)
            code, status = call("save")
        assert status["state"] == "done", status
        assert (status["step"], status["progress"]) == ("done", 100)
        assert status["image"]["state"] == "ready" and status["image"]["tag"] == "v1"
        assert status["message"].startswith(f"Saved as {status['image']['name']}")
        saved = [i for i in dana.images() if i.get("kind") == "saved"]
        assert [(i["image_name"], i["tag"], i["description"]) for i in saved] == [
            ("lab-img", "v1", "panel")
        ]
        assert saved[0]["source_instance"] == NAME
    finally:
        dana.stop_instance(NAME, USER)
        try:
            dana.delete_image("lab-img", "v1", USER)
        except Exception:  # noqa: BLE001 - nothing saved when the save itself failed
            pass
