"""Saving an instance through the one interface: the engine's saver on the real Podman engine
committing a real container, and the node agent's saver against the real agent server.

The engine saver's tests run containers of the built python preset on the local Podman service
(a `sleep` as their command, so no hub is needed) and read the images it commits back from the
engine. The node agent has no cluster or nerdctl here: its real HTTP server runs in-process
with the stand-in command script of tests/images/test_save_agent.py, and the cluster lookups go to
that module's double of the Kubernetes API.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid

import docker
import pytest

from images.savers import (
    EngineSaver,
    ImageSaver,
    NodeAgentImageSaver,
    SaveError,
    SaveSource,
    SaveUnavailable,
    UnavailableSaver,
    make_saver,
)
from tests.images.test_save_agent import (  # noqa: F401 - agent is a fixture
    CONTAINER,
    STATE,
    TOKEN,
    FakeCore,
    agent,
    commands,
)
from tests.platform import remove_engine_objects

HOME = "/home/jovyan"


class Steps(list):
    """A progress callback that keeps (step, percent) in order."""

    def __call__(self, step, percent, message):
        self.append((step, percent))

    @property
    def names(self):
        return [step for step, _ in self]


# --- the factory ----------------------------------------------------------------------------


async def test_the_factory_gives_each_backend_its_saver_or_says_what_to_set_up():
    engine = make_saver("docker", namespace="wb-saved", engine_url="unix:///nowhere.sock")
    assert isinstance(engine, EngineSaver)
    assert engine.repository("Alice@Example.com", "env").startswith("wb-saved/alice-example.com-")

    agent_saver = make_saver(
        "kubernetes", namespace="wb-saved", registry_url="reg.example.com/", agent_token=TOKEN
    )
    assert isinstance(agent_saver, NodeAgentImageSaver)
    assert agent_saver.repository("alice", "env") == "reg.example.com/wb-saved/alice/env"

    cases = [
        (make_saver("docker", namespace="wb-saved"), "set docker_host"),
        (make_saver("kubernetes", namespace="wb-saved", registry_url="r.io"), "save_agent_token"),
        (make_saver("kubernetes", namespace="wb-saved", agent_token=TOKEN), "set registry_url"),
    ]
    for saver, words in cases:
        with pytest.raises(SaveUnavailable, match=words):
            saver.repository("alice", "env")
    unavailable = cases[0][0]
    assert isinstance(unavailable, UnavailableSaver)
    with pytest.raises(SaveUnavailable, match="set docker_host"):
        await unavailable.commit(SaveSource("alice", "nb"), "x/y", "v1", {}, Steps())
    assert await unavailable.discard("x/y:v1") is False

    with pytest.raises(ValueError, match="'docker' or 'kubernetes'"):
        make_saver("nomad", namespace="wb-saved")
    with pytest.raises(TypeError):
        ImageSaver()


# --- the engine: real containers on Podman ----------------------------------------------------


@pytest.fixture(scope="module")
def prefix(engine):
    prefix = "wbsaver" + uuid.uuid4().hex[:6]
    yield prefix
    remove_engine_objects(engine.url, prefix)


@pytest.fixture(scope="module")
def client(engine):
    return docker.DockerClient(base_url=engine.url, timeout=120)


PLATFORM_SECRET = "platform-" + secrets.token_hex(12)


@pytest.fixture
def saver(engine, prefix):
    return make_saver(
        "docker",
        namespace=f"{prefix}-saved",
        engine_url=engine.url,
        image_registry="localhost/",
        container_prefix=prefix,
        work_dir=f"{HOME}/work",
        platform_secrets={PLATFORM_SECRET: "the platform's test secret"},
    )


def instance(client, base_image, prefix: str, name: str):
    """A running container labelled as alice's instance `name`, with a token of its own."""
    token = secrets.token_hex(16)
    container = client.containers.run(
        base_image.ref,
        command=["sleep", "600"],
        name=f"{prefix}-alice-{name}",
        labels={"ai-workbench.user": "alice", "ai-workbench.instance": name},
        environment={"JUPYTERHUB_API_TOKEN": token, "ai_workbench_note": "x"},
        detach=True,
    )
    return container, token


def run(container, script: str) -> str:
    code, out = container.exec_run(["sh", "-c", script])
    assert code == 0, out
    return out.decode()


def labels_for(name: str) -> dict[str, str]:
    return {"ai-workbench.saved.owner": "alice", "ai-workbench.saved.name": name}


@pytest.mark.integration
async def test_engine_saver_commits_the_instance_with_the_presets_configuration(
    saver, client, base_image, prefix
):
    container, token = instance(client, base_image, prefix, "nb")
    run(container, f"mkdir -p {HOME}/.local/lib && echo kept > {HOME}/.local/lib/wbsaver.txt")
    repository = saver.repository("alice", "env")
    assert repository == f"localhost/{prefix}-saved/alice/env"
    steps = Steps()
    result = await saver.commit(
        SaveSource("alice", "nb", {"object_id": container.id}, base_image.ref),
        repository,
        "v1",
        labels_for("env"),
        steps,
    )
    ref = f"{repository}:v1"
    assert steps.names == ["container", "commit", "scan"]
    image = client.api.inspect_image(ref)
    base = client.api.inspect_image(base_image.ref)
    assert result.image_id == image["Id"] and result.size == image["Size"]
    assert result.added_size == image["Size"] - base["Size"] and result.added_size >= 0
    assert result.pushed_ref == ""  # the image stays on the engine
    config = image["Config"]
    assert config["Cmd"] == base["Config"]["Cmd"] and config["User"] == base["Config"]["User"]
    assert config["Labels"]["ai-workbench.saved.owner"] == "alice"
    env = dict(e.split("=", 1) for e in config["Env"])
    assert env.get("JUPYTERHUB_API_TOKEN", "") == "", "the instance's token is in the image"
    # the instance's file is in the image, and the instance runs on
    reader = client.containers.run(
        ref, command=["cat", f"{HOME}/.local/lib/wbsaver.txt"], entrypoint=[], detach=True
    )
    assert reader.wait(timeout=60)["StatusCode"] == 0
    assert reader.logs().decode().strip() == "kept"
    reader.remove(force=True)
    container.reload()
    assert container.status == "running"

    assert await saver.exists(ref) is True
    running = client.containers.run(ref, command=["sleep", "60"], entrypoint=[], detach=True)
    with pytest.raises(SaveError, match=f"The engine cannot remove {ref}: .*in use"):
        await saver.discard(ref)  # delete answers 409 with these words
    running.remove(force=True)
    assert await saver.discard(ref) is True
    assert await saver.exists(ref) is False
    assert await saver.discard(ref) is False
    container.remove(force=True)


@pytest.mark.integration
async def test_engine_saver_refuses_secrets_and_keeps_nothing(saver, client, base_image, prefix):
    """The instance's token and a platform secret written into home: the save is refused,
    naming both files, and no image stays. The container is found by its labels."""
    container, token = instance(client, base_image, prefix, "leaky")
    run(
        container,
        f"mkdir -p {HOME}/notes && echo JUPYTERHUB_API_TOKEN={token} > {HOME}/notes/env.txt "
        f"&& echo {PLATFORM_SECRET} > {HOME}/notes/platform.txt",
    )
    repository = saver.repository("alice", "leaky")
    steps = Steps()
    with pytest.raises(SaveError) as e:
        await saver.commit(
            SaveSource("alice", "leaky", {}, base_image.ref), repository, "v1", {}, steps
        )
    message = str(e.value)
    assert f"{HOME}/notes/env.txt" in message and "API_TOKEN" in message, message
    assert f"{HOME}/notes/platform.txt (holds the platform's test secret)" in message, message
    assert f"{HOME}/work, which is never saved" in message, message
    assert steps.names == ["container", "commit", "scan"]
    assert await saver.exists(f"{repository}:v1") is False
    # the scanning container is gone (names only: others' containers come and go meanwhile)
    names = [n.lstrip("/") for c in client.api.containers(all=True) for n in c["Names"]]
    assert not [n for n in names if n.startswith(f"{prefix}-scan")]
    container.remove(force=True)


@pytest.mark.integration
async def test_engine_saver_without_the_instance_or_its_preset(saver, client, base_image, prefix):
    steps = Steps()
    with pytest.raises(SaveError, match="'gone' has no running container; start it"):
        await saver.commit(
            SaveSource("alice", "gone", {}, base_image.ref),
            f"localhost/{prefix}-x",
            "v1",
            {},
            steps,
        )
    assert steps.names == ["container"]
    container, _ = instance(client, base_image, prefix, "nopreset")
    missing = f"localhost/{prefix}-missing/python:v0"
    with pytest.raises(SaveError, match=f"preset image {missing} is not on this machine"):
        await saver.commit(
            SaveSource("alice", "nopreset", {"object_id": container.id}, missing),
            f"localhost/{prefix}-x",
            "v1",
            {},
            Steps(),
        )
    assert await saver.exists(f"localhost/{prefix}-x:v1") is False
    container.remove(force=True)


@pytest.mark.integration
async def test_engine_saver_removes_a_commit_that_lands_after_a_restart(
    saver, client, base_image, prefix
):
    """After a restart the engine may still finish an interrupted commit: discard_late
    removes the image when it appears, and leaves it once the save is no longer abandoned."""
    late = f"localhost/{prefix}-saved/alice/late"
    watch = asyncio.create_task(
        saver.discard_late(f"{late}:v1", lambda: asyncio.sleep(0, True), 30, interval=0.1)
    )
    await asyncio.sleep(0.5)
    client.api.tag(base_image.ref, late, "v1")  # the engine's commit, landing late
    assert await asyncio.wait_for(watch, 30) is True
    assert await saver.exists(f"{late}:v1") is False

    client.api.tag(base_image.ref, late, "v2")

    async def saved_again():
        return False  # a new save of the name replaced the failed one

    assert await saver.discard_late(f"{late}:v2", saved_again, 30, interval=0.1) is False
    assert await saver.exists(f"{late}:v2") is True
    await saver.discard(f"{late}:v2")


# --- the node agent: the real agent server in-process ---------------------------------------


REGISTRY = "registry.example.com:5000"


def agent_saver(url: str, core: FakeCore | None = None) -> NodeAgentImageSaver:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return make_saver(
        "kubernetes",
        namespace="wb-saved",
        registry_url=REGISTRY,
        agent_token=TOKEN,
        agent_namespace="workbench",
        agent_port=int(port),
        core=core or FakeCore(agents=(host,)),
    )


async def test_agent_saver_saves_and_pushes_through_the_nodes_agent(agent):  # noqa: F811
    url, log, _ = agent
    core = FakeCore(agents=(url.removeprefix("http://").rsplit(":", 1)[0],))
    saver = agent_saver(url, core)
    repository = saver.repository("alice", "bert-env")
    assert repository == f"{REGISTRY}/wb-saved/alice/bert-env"
    steps = Steps()
    result = await saver.commit(
        SaveSource("alice", "nb", STATE, "ignored/preset:1"),
        repository,
        "v1",
        labels_for("bert-env"),
        steps,
    )
    ref = f"{repository}:v1"
    assert result.image_id == "sha256:" + "c" * 64 and result.size == 123456789
    assert result.added_size == 123456789 and result.pushed_ref == ref
    assert steps[0] == ("container", 5)
    ran = commands(log)
    assert [c[0] for c in ran] == ["commit", "push", "inspect"]
    assert ran[0][-3:] == ["saved from instance nb of alice", CONTAINER, ref]
    assert core.calls[0] == ("read", STATE["pod_name"], STATE["namespace"])
    # the image lives in the registry: nothing here to remove or to watch for
    assert await saver.discard(ref) is False
    assert await saver.discard_late(ref, lambda: asyncio.sleep(0, True)) is False


async def test_agent_saver_failures_are_save_errors(agent, monkeypatch):  # noqa: F811
    url, log, saves = agent
    monkeypatch.setenv("FAKE_FAIL", "push")
    saver = agent_saver(url)
    repository = saver.repository("alice", "bert-env")
    with pytest.raises(SaveError, match="push failed: unauthorized: authentication required"):
        await saver.commit(SaveSource("alice", "nb", STATE), repository, "v1", {}, Steps())
    assert [c[0] for c in commands(log)] == ["commit", "push", "remove"]
    assert not saves.running

    nowhere = agent_saver(url, FakeCore(agents=()))
    with pytest.raises(SaveError, match="No save agent runs on node node-1: deploy"):
        await nowhere.commit(SaveSource("alice", "nb", STATE), repository, "v2", {}, Steps())
    with pytest.raises(SaveError, match="has no pod; start it"):
        await nowhere.commit(SaveSource("alice", "nb", {}), repository, "v2", {}, Steps())
