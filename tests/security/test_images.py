"""Attacks through saved images: secrets carried in a save, pulls that reach other users' images
or other hosts, racing saves, pinning someone else's image, and a push that loses the image.

The real hub, real containers, and a real OCI registry (Debian's docker-registry) on loopback.
"""

from __future__ import annotations

import http.server
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import docker
import pytest
from workbench import WorkbenchError

from images.registry import EngineImages
from tests.features.images.test_save_image import (  # noqa: F401 - registry is a fixture
    REGISTRY_PASSWORD,
    REGISTRY_USER,
    registry,
    wait_saved,
)
from tests.platform import Hub, free_port, remove_engine_objects, run_code

pytestmark = pytest.mark.integration

REGISTRY_SETTINGS = """
saved_images_max_count = 20
registry_url = "{registry}"
registry_username = "{user}"
registry_password = "{password}"
registry_insecure = true
"""

# what the instance knows of its own secrets: its API token and jupyter_server's cookie secret
SECRETS = """
import os
from jupyter_core.paths import jupyter_runtime_dir
print(os.environ['JUPYTERHUB_API_TOKEN'])
print(open(os.path.join(jupyter_runtime_dir(), 'jupyter_cookie_secret')).read().strip())
open(os.path.expanduser('~/marker.txt'), 'w').write({marker!r})
"""


def remove_saved_images(engine_url: str, prefix: str):
    client = docker.DockerClient(base_url=engine_url)
    for image in client.images.list():
        for tag in image.tags:
            if f"/{prefix}-saved/" in tag:
                client.images.remove(tag, force=True)


@pytest.fixture(scope="module")
def sec_hub(tmp_path_factory, engine, base_image, registry):  # noqa: F811
    h = Hub(
        tmp_path_factory.mktemp("sec-image-hub"),
        extra_settings=REGISTRY_SETTINGS.format(
            registry=registry, user=REGISTRY_USER, password=REGISTRY_PASSWORD
        ),
        engine_url=engine.url,
    )
    h.start()
    yield h
    h.stop()
    remove_engine_objects(engine.url, h.prefix)
    remove_saved_images(engine.url, h.prefix)


@pytest.fixture(scope="module")
def alice(sec_hub):
    return sec_hub.add_user("alice")


@pytest.fixture(scope="module")
def bob(sec_hub):
    return sec_hub.add_user("bob")


@pytest.fixture(scope="module")
def src(alice):
    """alice's running instance."""
    return alice.create_instance("src", image="python", flavor="cpu.tiny", storage_gib=1)


@pytest.fixture(scope="module")
def clean_save(alice, src):
    """alice's plain save of 'src' as env:v1, with the secrets the instance held meanwhile."""
    marker = "wb-marker-" + str(time.time_ns())
    out = run_code(alice, src["url"], SECRETS.format(marker=marker))
    assert out["error"] is None, out
    token, cookie = out["stdout"].split()[:2]
    alice.save_instance("src", "env", "v1")
    status = wait_saved(alice, "src")
    assert status["state"] == "done", status
    return status["image"], token, cookie, marker


def exported_holds(engine_url: str, ref: str, needles: list[str]) -> set[str]:
    """Which needles occur anywhere in the image's export (every layer, uncompressed)."""
    api = docker.APIClient(base_url=engine_url, timeout=600)
    wanted = {n.encode(): n for n in needles}
    keep = max(len(n) for n in wanted) - 1
    found, tail = set(), b""
    for chunk in api.get_image(ref):
        data = tail + chunk
        found |= {name for needle, name in wanted.items() if needle in data}
        tail = data[-keep:]
    return found


# --- secrets in saved images ---------------------------------------------------------------------


def test_saved_image_holds_no_token_or_cookie_secret(engine, clean_save):
    """The attacker is anyone alice shares an image with: they search its files for alice's
    instance token or cookie secret (jupyter_server writes both to its runtime folder). Neither
    may be anywhere in the image; the user's own files are."""
    image, token, cookie, marker = clean_save
    assert len(token) >= 16 and len(cookie) >= 16
    found = exported_holds(engine.url, image["ref"], [token, cookie, marker])
    assert marker in found, "the export was not searched: the user's file is missing"
    assert token not in found, "the instance's API token is in the saved image"
    assert cookie not in found, "the instance's cookie secret is in the saved image"


def test_save_with_secrets_in_files_is_refused(sec_hub, alice, src, clean_save, engine):
    """A user dumps the environment (with the instance's token) into a file and copies the
    Jupyter runtime folder into home, then saves. The save must be refused, naming each file,
    and nothing may be kept: no image on the engine, no saved image listed."""
    out = run_code(
        alice,
        src["url"],
        "import os, shutil, subprocess\n"
        "from jupyter_core.paths import jupyter_runtime_dir\n"
        "os.makedirs(os.path.expanduser('~/notes'), exist_ok=True)\n"
        "open(os.path.expanduser('~/notes/env.txt'), 'w').write(subprocess.check_output("
        "['env'], text=True))\n"
        "shutil.copytree(jupyter_runtime_dir(), os.path.expanduser('~/runtime-copy'))\n",
    )
    assert out["error"] is None, out
    try:
        alice.save_instance("src", "leaky", "v1")
        status = wait_saved(alice, "src")
        assert status["state"] == "failed", status
        message = status["message"]
        assert "/home/jovyan/notes/env.txt" in message and "API_TOKEN" in message, message
        assert "/home/jovyan/runtime-copy/jupyter_cookie_secret" in message, message
        assert "jpserver-" in message and "save again" in message, message
        ref = f"localhost/{sec_hub.prefix}-saved/alice/leaky:v1"
        assert EngineImages(engine.url).inspect(ref) is None
        assert "saved:alice/leaky:v1" not in [i["name"] for i in alice.images()]
    finally:
        out = run_code(
            alice,
            src["url"],
            "import os, shutil\n"
            "shutil.rmtree(os.path.expanduser('~/notes'))\n"
            "shutil.rmtree(os.path.expanduser('~/runtime-copy'))\n",
        )
        assert out["error"] is None, out


# --- two saves at once ---------------------------------------------------------------------------


def test_concurrent_saves_of_one_instance(sec_hub, alice, src, clean_save):
    """A user fires five saves of one instance at once (each under another tag), hoping to
    run several commits of it together. Exactly one is accepted (202); the others are told
    it is already saving (409)."""
    clients = [sec_hub.client("alice", sec_hub.passwords["alice"]) for _ in range(5)]

    def save(i):
        try:
            clients[i].api(
                "POST", "users/alice/instances/src/save", {"name": "race", "tag": f"c{i}"}
            )
            return 202, ""
        except WorkbenchError as e:
            return e.status, e.message

    with ThreadPoolExecutor(5) as pool:
        results = list(pool.map(save, range(5)))
    codes = sorted(code for code, _ in results)
    assert codes == [202, 409, 409, 409, 409], results
    assert all("already saving" in m for code, m in results if code == 409), results
    status = wait_saved(alice, "src")
    assert status["state"] == "done", status
    saved = [i["name"] for i in alice.images() if i["name"].startswith("saved:alice/race:")]
    assert len(saved) == 1, saved
    alice.delete_image("race", saved[0].rsplit(":", 1)[1])


# --- pulls ---------------------------------------------------------------------------------------


def test_pull_of_another_users_local_image_leaves_it(sec_hub, alice, bob, clean_save, engine):
    """bob asks to pull the engine name of alice's saved image. The pull must be refused
    (not the configured registry) and alice's image must stay."""
    image = clean_save[0]
    with pytest.raises(WorkbenchError) as e:
        bob.pull_image(image["ref"])
    assert e.value.status == 400 and "configured registry" in e.value.message
    assert EngineImages(engine.url).inspect(image["ref"]) is not None
    assert "saved:alice/env:v1" in [i["name"] for i in alice.images()]


@pytest.fixture(scope="module")
def pushed(alice, clean_save):
    """alice's env:v1, pushed to the registry (and not shared)."""
    return alice.push_image("env", "v1")["pushed_ref"]


def test_pull_of_another_users_private_push_is_refused(bob, alice, pushed, engine):
    """bob pulls alice's pushed (unshared) image by its registry reference. Refused, and
    nothing of it lands on the engine; once alice shares it with bob, he may."""
    images = EngineImages(engine.url)
    with pytest.raises(WorkbenchError) as e:
        bob.pull_image(pushed)
    assert e.value.status == 404 and "ask them to share it" in e.value.message
    assert images.inspect(pushed) is None
    assert [i for i in bob.images() if i["kind"] == "saved"] == []

    alice.share_image("env", "v1", users=["bob"])
    model = bob.pull_image(pushed, image="alices-env")
    assert model["name"] == "saved:bob/alices-env:v1" and model["state"] == "ready"
    assert model["base_image"] == "python" and model["source_instance"] == "src"
    assert images.inspect(pushed) is None  # only the platform's name stays
    bob.delete_image("alices-env", "v1")
    alice.share_image("env", "v1", users=[])


class RecordingRegistry(http.server.BaseHTTPRequestHandler):
    """A registry on another host: asks for credentials and writes down what it is sent."""

    seen: list[dict] = []

    def do_GET(self):
        self.seen.append({"path": self.path, "authorization": self.headers.get("Authorization")})
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="elsewhere"')
        self.send_header("Docker-Distribution-API-Version", "registry/2.0")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_HEAD = do_GET

    def log_message(self, *args):
        pass


def test_pull_from_another_host_sends_nothing_there(sec_hub, bob):
    """bob pulls a reference on a host of his choosing, shaped like a saved image, hoping the
    engine hands that host the platform's registry credentials. Refused before the engine
    contacts it: the host is not the configured registry, and it sees no request at all."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), RecordingRegistry)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        host = f"127.0.0.1:{server.server_address[1]}"
        with pytest.raises(WorkbenchError) as e:
            bob.pull_image(f"{host}/{sec_hub.prefix}-saved/bob/steal:v1")
        assert e.value.status == 400 and "configured registry" in e.value.message
        assert RecordingRegistry.seen == [], RecordingRegistry.seen
    finally:
        server.shutdown()
        server.server_close()


def forge(engine_url: str, base_ref: str, target: str):
    """Outside the platform, with the registry's credentials: push an image whose labels
    claim it is a saved image of the catalog's python preset."""
    client = docker.DockerClient(base_url=engine_url)
    container = client.containers.create(base_ref, command=["true"])
    try:
        repository, _, tag = target.rpartition(":")
        labels = {
            "ai-workbench.saved.base-image": "python",
            "ai-workbench.saved.owner": "alice",
            "ai-workbench.saved.source-instance": "src",
        }
        container.commit(
            repository=repository,
            tag=tag,
            pause=False,
            changes=[f'LABEL {k}="{v}"' for k, v in labels.items()] + ["USER root"],
        )
    finally:
        container.remove(force=True)
    images = EngineImages(engine_url)
    try:
        images.push(
            target,
            auth={"username": REGISTRY_USER, "password": REGISTRY_PASSWORD},
            insecure=True,
        )
    finally:
        images.remove(target)


def test_pull_trusts_no_label(sec_hub, bob, registry, engine, base_image, pushed):  # noqa: F811
    """Someone puts an image in bob's repository of the registry whose labels say it was
    saved by ai-workbench from the python preset. The platform never pushed it: bob's pull
    does not take it as a saved image on the strength of its labels."""
    target = f"{registry}/{sec_hub.prefix}-saved/bob/forged:v1"
    forge(engine.url, base_image.ref, target)
    with pytest.raises(WorkbenchError) as e:
        bob.pull_image(target)
    assert e.value.status == 400 and "no record of pushing" in e.value.message
    assert "saved:bob/forged:v1" not in [i["name"] for i in bob.images()]
    assert EngineImages(engine.url).inspect(target) is None


def test_pull_refuses_an_overwritten_push(
    sec_hub,
    alice,
    bob,
    src,
    registry,  # noqa: F811
    engine,
    base_image,
):
    """Someone overwrites alice's pushed image in the registry with their own. bob, with
    whom alice shares it, pulls it: refused, since it is not the image the platform pushed,
    and nothing of it stays on the engine. (An image of this test's own: the overwrite
    would spoil alice's env:v1 for the other tests.)"""
    alice.save_instance("src", "overwritten-env", "v1")
    assert wait_saved(alice, "src")["state"] == "done"
    pushed = alice.push_image("overwritten-env", "v1")["pushed_ref"]
    forge(engine.url, base_image.ref, pushed)
    alice.share_image("overwritten-env", "v1", users=["bob"])
    try:
        with pytest.raises(WorkbenchError) as e:
            bob.pull_image(pushed, image="overwritten")
        assert e.value.status == 409 and "not the image pushed" in e.value.message
        assert "saved:bob/overwritten:v1" not in [i["name"] for i in bob.images()]
        assert EngineImages(engine.url).inspect(pushed) is None
    finally:
        alice.delete_image("overwritten-env", "v1")


# --- pinning -------------------------------------------------------------------------------------


def test_stopped_instance_of_another_user_does_not_pin_a_public_image(alice, bob, src):
    """alice shares an image with everyone; bob creates a stopped instance from it so that
    alice can never delete it. Her delete succeeds; bob's instance is told at its next start
    that the image is gone, and can be switched to another image."""
    alice.save_instance("src", "public", "v1")
    assert wait_saved(alice, "src")["state"] == "done"
    alice.share_image("public", "v1", everyone=True)
    bob.create_instance("pin", image="saved:alice/public:v1", flavor="cpu.tiny", start=False)
    alice.delete_image("public", "v1")
    assert "saved:alice/public:v1" not in [i["name"] for i in bob.images()]
    with pytest.raises(WorkbenchError) as e:
        bob.start_instance("pin")
    assert e.value.status == 400, e.value
    assert "deleted it" in e.value.message and "instances switch" in e.value.message
    assert bob.update_instance("pin", image="python")["image"] == "python"
    bob.delete_instance("pin")


# --- a registry named like the local images ------------------------------------------------------


def test_push_to_the_registry_the_local_images_are_named_after(
    tmp_path_factory,
    engine,
    base_image,
    registry,  # noqa: F811
):
    """The registry is the one the engine's images are named after (image_registry), so a
    saved image's local name and its registry name are one. Pushing it must not remove that
    name (the image's only one), and another user's pull of it must not take it either."""
    preset = f"{registry}/ai-workbench/python"
    images = EngineImages(engine.url)
    images.tag(base_image.ref, preset, base_image.tag)
    h = Hub(
        tmp_path_factory.mktemp("same-registry-hub"),
        extra_settings=f'image_registry = "{registry}/"\n'
        + REGISTRY_SETTINGS.format(
            registry=registry, user=REGISTRY_USER, password=REGISTRY_PASSWORD
        ),
        engine_url=engine.url,
    )
    h.start()
    try:
        carol, dave = h.add_user("carol"), h.add_user("dave")
        carol.create_instance("nb", image="python", flavor="cpu.tiny", storage_gib=1)
        carol.save_instance("nb", "mine", "v1")
        image = wait_saved(carol, "nb")["image"]
        assert image["ref"] == f"{registry}/{h.prefix}-saved/carol/mine:v1", image
        pushed = carol.push_image("mine", "v1")["pushed_ref"]
        assert pushed == image["ref"]
        assert images.inspect(image["ref"]) is not None, "the push removed the image"

        carol.share_image("mine", "v1", users=["dave"])
        with pytest.raises(WorkbenchError) as e:
            dave.pull_image(pushed)
        assert e.value.status == 409 and "already has an image" in e.value.message
        assert images.inspect(image["ref"]) is not None, "dave's pull removed carol's image"
        assert "saved:carol/mine:v1" in [i["name"] for i in carol.images()]
    finally:
        h.stop()
        remove_engine_objects(engine.url, h.prefix)
        remove_saved_images(engine.url, h.prefix)
        images.remove(f"{preset}:{base_image.tag}")
