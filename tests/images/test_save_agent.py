"""Saving instances on Kubernetes: the node agent's DaemonSet, its HTTP protocol, and how the
platform finds the agent on an instance's node.

No Kubernetes cluster, containerd or nerdctl exists here. The DaemonSet and NetworkPolicy are
validated against the official schemas (kubernetes-validate, strict). The agent runs
in-process with its real handlers on a loopback port; its commit, push, inspect and remove
commands point at a stand-in script (FAKE_NERDCTL below) that records its arguments and can
fail or be slow on request. The cluster lookups (the instance's pod, the agent pod on its
node) go to an in-process double of kubernetes_asyncio's CoreV1Api.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from types import SimpleNamespace

import kubernetes_validate
import kubernetes_validate.utils
import pytest
import requests
import yaml
from tornado.httpclient import AsyncHTTPClient, HTTPClientError
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from images.node_agent import AGENT_LABELS
from images.node_agent.agent import Saves, make_agent_app
from images.node_agent.client import AgentClient, AgentError, NodeAgentSaver
from images.node_agent.manifests import make_agent_manifests
from tests.platform import REPO, free_port

K8S_VERSION = kubernetes_validate.utils.latest_version()
TOKEN = "agent-token-0123456789abcdef"
CONTAINER = "a" * 64
REF = "registry.example.com:5000/workbench-saved/alice/bert-env:v1"

FAKE_NERDCTL = r"""
import json, os, sys, time
args = sys.argv[1:]
with open(os.environ["FAKE_LOG"], "a") as f:
    f.write(json.dumps(args) + "\n")
step = args[0]
if os.environ.get("FAKE_SLOW") == step:
    time.sleep(1.5)
if os.environ.get("FAKE_FAIL") == step:
    sys.stderr.write("unauthorized: authentication required\n")
    sys.exit(1)
if step == "inspect":
    print(json.dumps([{"Id": "sha256:" + "b" * 64, "Size": 123456789,
                       "RepoDigests": [args[-1].rsplit(":", 1)[0] + "@sha256:" + "c" * 64]}]))
"""


# --- the DaemonSet --------------------------------------------------------------------------


def test_manifests_are_valid_and_mount_the_containerd_socket():
    manifests = make_agent_manifests(
        namespace="workbench", image="registry.example.com/workbench/agent:1", port=9000
    )
    for manifest in manifests:
        assert kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
    daemonset, policy = manifests
    assert daemonset["kind"] == "DaemonSet" and policy["kind"] == "NetworkPolicy"
    pod = daemonset["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["containerd"]["hostPath"] == {
        "path": "/run/containerd/containerd.sock",
        "type": "Socket",
    }
    assert volumes["registry"]["secret"]["items"] == [
        {"key": ".dockerconfigjson", "path": "config.json"}
    ]
    container = pod["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["AGENT_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "workbench-save-agent"
    assert env["DOCKER_CONFIG"]["value"] == "/etc/workbench/registry"
    assert container["ports"][0]["containerPort"] == 9000
    assert pod["tolerations"] == [{"operator": "Exists"}]  # every node
    assert daemonset["spec"]["selector"]["matchLabels"] == AGENT_LABELS
    assert policy["spec"]["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 9000}]


def test_the_manifests_command_prints_them_and_their_command_starts_the_agent(tmp_path):
    """`python -m images.node_agent manifests` prints the DaemonSet; the command it gives the
    agent's container, run with the environment the DaemonSet sets, serves /healthz."""
    out = subprocess.run(
        [sys.executable, "-m", "images.node_agent", "manifests", "--namespace", "wb"]
        + ["--image", "registry.example.com/workbench/agent:1", "--port", "9001"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    daemonset, policy = yaml.safe_load_all(out.stdout)
    container = daemonset["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["python", "-m", "images.node_agent"]
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "NODE_NAME": "node-7"}
    env |= {"AGENT_TOKEN": TOKEN, "AGENT_PORT": str(port)}
    with open(tmp_path / "agent.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, *container["command"][1:]], env=env, stdout=log, stderr=log
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (tmp_path / "agent.log").read_text()
            try:
                health = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, (tmp_path / "agent.log").read_text()
                time.sleep(0.2)
        assert health.json() == {"status": "ok", "node": "node-7"}
        refused = requests.post(f"http://127.0.0.1:{port}/v1/saves", json={}, timeout=5)
        assert refused.status_code == 401
    finally:
        proc.terminate()
        proc.wait(10)


# --- the agent's protocol -------------------------------------------------------------------


@pytest.fixture
async def agent(tmp_path, monkeypatch):
    """The agent on a loopback port, its commands the stand-in script; (url, log, saves)."""
    script = tmp_path / "fake_nerdctl.py"
    script.write_text(FAKE_NERDCTL)
    log = tmp_path / "commands.log"
    monkeypatch.setenv("FAKE_LOG", str(log))
    monkeypatch.delenv("FAKE_FAIL", raising=False)
    monkeypatch.delenv("FAKE_SLOW", raising=False)
    fake = [sys.executable, str(script)]
    saves = Saves(
        {
            "commit": [
                *fake,
                "commit",
                "--pause=true",
                "--message",
                "{message}",
                "{container}",
                "{ref}",
            ],
            "push": [*fake, "push", "{ref}"],
            "inspect": [*fake, "inspect", "{ref}"],
            "remove": [*fake, "remove", "{ref}"],
        },
        insecure=True,
    )
    sockets = bind_sockets(0, "127.0.0.1")
    server = HTTPServer(make_agent_app(TOKEN, saves))
    server.add_sockets(sockets)
    port = sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}", log, saves
    server.stop()


def commands(log) -> list[list[str]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


async def call(url, method="GET", body=None, token=TOKEN):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = await AsyncHTTPClient().fetch(
            url, method=method, headers=headers, body=body, allow_nonstandard_methods=True
        )
        return response.code, json.loads(response.body)
    except HTTPClientError as e:
        return e.code, json.loads(e.response.body)


async def test_save_commits_pushes_and_reports_digest_and_size(agent, monkeypatch):
    url, log, _ = agent
    monkeypatch.setenv("FAKE_SLOW", "commit")  # the poll sees the commit step
    steps = []
    status = await AgentClient(url, TOKEN, poll=0.05).save(
        "containerd://" + CONTAINER,
        REF,
        message="saved from instance nb of alice",
        progress=lambda step, pct, msg: steps.append(step),
    )
    assert status["state"] == "done" and status["progress"] == 100
    assert status["digest"] == "sha256:" + "c" * 64
    assert status["size"] == 123456789
    ran = commands(log)
    assert ran[0] == [
        "commit",
        "--pause=true",
        "--message",
        "saved from instance nb of alice",
        CONTAINER,
        REF,
    ]
    assert ran[1] == ["push", "--insecure-registry", REF]  # registry_insecure
    assert ran[2] == ["inspect", REF]
    assert len(ran) == 3
    assert "commit" in steps


async def test_failed_push_reports_the_reason_and_removes_the_image(agent, monkeypatch):
    url, log, saves = agent
    monkeypatch.setenv("FAKE_FAIL", "push")
    with pytest.raises(AgentError, match="push failed: unauthorized: authentication required"):
        await AgentClient(url, TOKEN, poll=0.05).save(CONTAINER, REF)
    assert [c[0] for c in commands(log)] == ["commit", "push", "remove"]
    assert commands(log)[-1] == ["remove", REF]
    assert not saves.running  # the container may be saved again


async def test_one_save_per_container_and_unknown_saves(agent, monkeypatch):
    url, _, _ = agent
    monkeypatch.setenv("FAKE_SLOW", "commit")
    body = json.dumps({"container_id": CONTAINER, "ref": REF})
    code, first = await call(f"{url}/v1/saves", "POST", body)
    assert code == 202 and first["state"] == "running"
    code, second = await call(f"{url}/v1/saves", "POST", body)
    assert code == 409 and "already being saved" in second["message"]
    code, missing = await call(f"{url}/v1/saves/0123abcd")
    assert code == 404 and "No save" in missing["message"]
    for _ in range(100):
        code, status = await call(f"{url}/v1/saves/{first['id']}")
        if status["state"] != "running":
            break
        await asyncio.sleep(0.05)
    assert status["state"] == "done"


@pytest.mark.parametrize(
    "body, message",
    [
        ("not json", "not valid JSON"),
        ("[]", "must be a JSON object"),
        (json.dumps({"container_id": CONTAINER, "ref": REF, "x": 1}), "Unknown field(s): x"),
        (json.dumps({"container_id": "abc", "ref": REF}), "'container_id' must be"),
        (json.dumps({"container_id": CONTAINER, "ref": "no tag"}), "'ref' must be"),
        (json.dumps({"container_id": CONTAINER, "ref": REF, "message": 3}), "'message' must"),
    ],
)
async def test_bad_requests_are_refused_with_what_to_send(agent, body, message):
    url, log, _ = agent
    code, answer = await call(f"{url}/v1/saves", "POST", body)
    assert code == 400 and message in answer["message"]
    assert commands(log) == []  # nothing ran


async def test_token_is_required_except_for_health(agent):
    url, log, _ = agent
    body = json.dumps({"container_id": CONTAINER, "ref": REF})
    for token in (None, "wrong-token-0123456789"):
        code, answer = await call(f"{url}/v1/saves", "POST", body, token=token)
        assert code == 401 and "Bearer" in answer["message"]
    code, health = await call(f"{url}/healthz", token=None)
    assert code == 200 and health["status"] == "ok"
    assert commands(log) == []
    with pytest.raises(ValueError):
        make_agent_app("short", Saves({}))


# --- finding the agent on the instance's node -----------------------------------------------


class FakeCore:
    """In-process double of CoreV1Api's two calls the platform makes."""

    def __init__(self, node="node-1", running=True, agents=("10.1.2.3",)):
        self.node, self.running, self.agents = node, running, agents
        self.calls = []

    async def read_namespaced_pod(self, name, namespace):
        self.calls.append(("read", name, namespace))
        state = SimpleNamespace(running=SimpleNamespace() if self.running else None)
        statuses = [
            SimpleNamespace(name="notebook", state=state, container_id="containerd://" + CONTAINER)
        ]
        return SimpleNamespace(
            spec=SimpleNamespace(node_name=self.node),
            status=SimpleNamespace(container_statuses=statuses),
        )

    async def list_namespaced_pod(self, namespace, label_selector, field_selector):
        self.calls.append(("list", namespace, label_selector, field_selector))
        items = [SimpleNamespace(status=SimpleNamespace(pod_ip=ip)) for ip in self.agents]
        return SimpleNamespace(items=items)


STATE = {"pod_name": "jupyter-alice--nb", "namespace": "users"}


async def test_locate_finds_the_agent_on_the_pods_node():
    core = FakeCore()
    saver = NodeAgentSaver(core, token=TOKEN, namespace="workbench", port=9000)
    url, container = await saver.locate(STATE, "nb")
    assert (url, container) == ("http://10.1.2.3:9000", "containerd://" + CONTAINER)
    assert core.calls[0] == ("read", "jupyter-alice--nb", "users")
    _, namespace, selector, fields = core.calls[1]
    assert namespace == "workbench"
    assert selector == ",".join(f"{k}={v}" for k, v in AGENT_LABELS.items())
    assert fields == "spec.nodeName=node-1,status.phase=Running"


async def test_locate_explains_what_is_missing():
    with pytest.raises(AgentError, match="has no pod"):
        await NodeAgentSaver(FakeCore(), token=TOKEN, namespace="w").locate({}, "nb")
    with pytest.raises(AgentError, match="is not running"):
        await NodeAgentSaver(FakeCore(running=False), token=TOKEN, namespace="w").locate(
            STATE, "nb"
        )
    with pytest.raises(AgentError, match="No save agent runs on node node-1: deploy"):
        await NodeAgentSaver(FakeCore(agents=()), token=TOKEN, namespace="w").locate(STATE, "nb")


async def test_save_through_the_located_agent(agent):
    """The platform's side end to end: locate (cluster double), then the real agent."""
    url, log, _ = agent
    host, port = url.rsplit(":", 1)
    saver = NodeAgentSaver(
        FakeCore(agents=(host.removeprefix("http://"),)),
        token=TOKEN,
        namespace="workbench",
        port=int(port),
    )
    steps = []
    result = await saver.save(
        STATE,
        REF,
        labels={},
        user="alice",
        instance="nb",
        progress=lambda step, pct, msg: steps.append((step, pct)),
    )
    assert result["state"] == "done" and result["size"] == 123456789
    assert steps[0] == ("container", 5)
    assert commands(log)[0][-2:] == [CONTAINER, REF]
