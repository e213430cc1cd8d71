"""Saving running instances as images, end to end: the real hub, real containers on the
engine, a real OCI registry (Debian's docker-registry) on loopback.

Each test stands alone: saver's "src" saved as env1:v1 is a fixture, which no test changes;
what a test saves or creates besides it, it removes.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import shutil
import subprocess
import sys
import time
import zipfile

import bcrypt
import docker
import pytest
import requests
from workbench import WorkbenchError

from images.registry import EngineImages, ImageEngineError, RegistryError
from images.saved import InvalidImage, make_commit_changes, owner_slug, parse_saved_name
from tests.platform import (
    PORT_ATTEMPTS,
    PORT_TAKEN,
    Hub,
    execute,
    free_port,
    remove_engine_objects,
    run_code,
    start_kernel,
)

REGISTRY_USER, REGISTRY_PASSWORD = "pusher", "registry-secret-1"
# saver's images may add this much together: the fixture's is a few MB, a 120 MiB file is more
SAVED_MAX_GIB = 0.1


# --- pure parts -------------------------------------------------------------------------------


def test_commit_changes_restore_the_base_configuration():
    base = {
        "Env": ["PATH=/opt/envs/python/bin:/usr/bin", "LANG=C.UTF-8"],
        "Cmd": ["/opt/jupyter/bin/jupyterhub-singleuser"],
        "Entrypoint": ["/usr/bin/tini", "--"],
        "User": "1000:100",
        "WorkingDir": "/home/jovyan/work",
        "Labels": {"ai-workbench.build-hash": "x"},
    }
    container = {
        "Env": base["Env"] + ["JUPYTERHUB_API_TOKEN=secret", "LANG=C"],
        "Labels": {"ai-workbench.user": "alice", "ai-workbench.build-hash": "x"},
    }
    changes = make_commit_changes(base, container, {"ai-workbench.saved.owner": "alice"})
    assert "ENV JUPYTERHUB_API_TOKEN=" in changes
    assert 'ENV LANG="C.UTF-8"' in changes
    assert 'CMD ["/opt/jupyter/bin/jupyterhub-singleuser"]' in changes
    assert 'ENTRYPOINT ["/usr/bin/tini", "--"]' in changes
    assert "USER 1000:100" in changes and "WORKDIR /home/jovyan/work" in changes
    assert "LABEL ai-workbench.user=" in changes
    assert 'LABEL ai-workbench.saved.owner="alice"' in changes
    assert not any("secret" in c for c in changes)


def test_saved_names():
    assert parse_saved_name("saved:alice/bert-env:v1") == ("alice", "bert-env", "v1")
    assert parse_saved_name("saved:a@b.c/x:1") == ("a@b.c", "x", "1")
    with pytest.raises(InvalidImage):
        parse_saved_name("saved:bert-env")
    assert owner_slug("alice") == "alice"
    assert owner_slug("Alice@Example.com").startswith("alice-example.com-")


# --- a registry on loopback, and a hub that uses it -------------------------------------------


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """Debian's docker-registry on a free loopback port with htpasswd authentication (on
    another port if another process takes that one first)."""
    exe = shutil.which("docker-registry")
    assert exe, "docker-registry is not installed: `make test-system` installs it"
    root = tmp_path_factory.mktemp("registry")
    hashed = bcrypt.hashpw(REGISTRY_PASSWORD.encode(), bcrypt.gensalt(rounds=5)).decode()
    (root / "htpasswd").write_text(f"{REGISTRY_USER}:{hashed}\n")
    serve = [exe, "serve", str(root / "config.yml")]
    for attempt in range(1, PORT_ATTEMPTS + 1):
        port = free_port()
        log_path = root / f"registry-{attempt}.log"
        (root / "config.yml").write_text(REGISTRY_CONFIG.format(root=root, port=port))
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(serve, stdout=log, stderr=log)
        if wait_registry(proc, port):
            break
        text = log_path.read_text(errors="replace")
        if attempt == PORT_ATTEMPTS or not PORT_TAKEN.search(text):
            pytest.fail(
                f"the registry did not come up on 127.0.0.1:{port} (exit code {proc.poll()}); "
                f"its log:\n{text}",
                pytrace=False,
            )
    try:
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


REGISTRY_CONFIG = """version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {root}/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
auth:
  htpasswd:
    realm: workbench-test
    path: {root}/htpasswd
"""


def wait_registry(proc: subprocess.Popen, port: int, timeout: float = 20) -> bool:
    """Whether the registry answers on port, asking for credentials; ended if it does not."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/v2/", timeout=1).status_code == 401:
                return True
        except requests.RequestException:
            pass
        time.sleep(0.2)
    if proc.poll() is None:
        proc.terminate()
        proc.wait(10)
    return False


@pytest.fixture(scope="module")
def image_hub(tmp_path_factory, engine, base_image, registry):
    """A hub with a registry and small saved-image quotas (settings the session hub lacks)."""
    h = Hub(
        tmp_path_factory.mktemp("image-hub"),
        extra_settings=f"""
saved_images_max_count = 3
saved_images_max_gib = {SAVED_MAX_GIB}
registry_url = "{registry}"
registry_username = "{REGISTRY_USER}"
registry_password = "{REGISTRY_PASSWORD}"
registry_insecure = true
""",
        engine_url=engine.url,
    )
    h.start()
    yield h
    h.stop()
    remove_engine_objects(engine.url, h.prefix)
    client = docker.DockerClient(base_url=engine.url)
    for image in client.images.list():
        for tag in image.tags:
            if f"/{h.prefix}-saved/" in tag:
                client.images.remove(tag, force=True)
    print(f"\n--- image hub log tail ---\n{h.log_tail(40)}")


@pytest.fixture(scope="module")
def saver(image_hub):
    return image_hub.add_user("saver")


@pytest.fixture(scope="module")
def other(image_hub):
    return image_hub.add_user("other")


def tiny_wheel() -> bytes:
    """A pure-Python wheel of a package no image has (pip installs it from a file)."""
    files = {
        "wbtinypkg/__init__.py": b"VALUE = 42\n",
        "wbtinypkg-0.1.dist-info/METADATA": b"Metadata-Version: 2.1\nName: wbtinypkg\n"
        b"Version: 0.1\n",
        "wbtinypkg-0.1.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\n"
        b"Root-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append("wbtinypkg-0.1.dist-info/RECORD,,")
    files["wbtinypkg-0.1.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for path, data in files.items():
            z.writestr(path, data)
    return buf.getvalue()


SETUP = """
import base64, os, subprocess, sys
wheel = '/tmp/wbtinypkg-0.1-py3-none-any.whl'
open(wheel, 'wb').write(base64.b64decode({wheel!r}))
r = subprocess.run([sys.executable, '-m', 'pip', 'install', '--no-index', '--no-deps', wheel],
                   capture_output=True, text=True)
print(r.returncode, r.stderr[-500:])
ext = os.path.expanduser('~/.vscode-server/extensions/wb-test-ext')
os.makedirs(ext, exist_ok=True)
open(ext + '/package.json', 'w').write('{{"name": "wb-test-ext"}}')
open('/home/jovyan/work/only-in-work.txt', 'w').write('volume')
"""

CHECK = """
import os
try:
    import wbtinypkg
    print('pkg', wbtinypkg.VALUE)
except ImportError:
    print('pkg missing')
ext = '~/.vscode-server/extensions/wb-test-ext/package.json'
print('ext', os.path.exists(os.path.expanduser(ext)))
print('work', os.path.exists('/home/jovyan/work/only-in-work.txt'))
print('token', bool(os.environ.get('JUPYTERHUB_API_TOKEN')))
"""


def wait_saved(client, instance):
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        status = client.save_status(instance)
        if status["state"] != "saving":
            return status
        time.sleep(0.3)
    raise TimeoutError(f"save of {instance} did not end: {status}")


@pytest.fixture(scope="module")
def saved(image_hub, saver, engine):
    """saver's instance 'src' with a pip install, an extension and a work file, saved as
    'env1:v1'."""
    model = saver.create_instance("src", image="python", flavor="cpu.tiny", storage_gib=1)
    wheel = base64.b64encode(tiny_wheel()).decode()
    out = run_code(saver, model["url"], SETUP.format(wheel=wheel))
    assert out["error"] is None and out["stdout"].startswith("0 "), out
    status = saver.save_instance("src", "env1", "v1", description="with wbtinypkg")
    assert status["state"] == "saving" and status["image"]["name"] == "saved:saver/env1:v1"
    # one save at a time per instance
    with pytest.raises(WorkbenchError) as e:
        saver.save_instance("src", "env1", "v2")
    assert e.value.status == 409 and "already saving" in e.value.message
    status = wait_saved(saver, "src")
    assert status["state"] == "done", status
    assert status["progress"] == 100
    return status["image"]


# --- saving and using ---------------------------------------------------------------------------


@pytest.mark.integration
def test_saved_image_keeps_installs_and_extensions_not_work_files(image_hub, saver, saved, engine):
    assert saved["state"] == "ready" and saved["base_image"] == "python"
    assert saved["source_instance"] == "src" and saved["description"] == "with wbtinypkg"
    assert saved["ref"] == f"localhost/{image_hub.prefix}-saved/saver/env1:v1"
    assert 0 < saved["added_size"] < 50e6
    # the image keeps the preset's command, user and environment, not the instance's secrets
    config = docker.APIClient(base_url=engine.url).inspect_image(saved["ref"])["Config"]
    base = docker.APIClient(base_url=engine.url).inspect_image(
        "localhost/ai-workbench/python:python_3.11-cpu-py_3.11-debian_12-x86_64"
    )["Config"]
    assert config["Cmd"] == base["Cmd"] and config["Entrypoint"] == base["Entrypoint"]
    assert config["User"] == base["User"] and config["WorkingDir"] == base["WorkingDir"]
    env = dict(e.split("=", 1) for e in config["Env"])
    assert all(env[k] == v for k, v in (e.split("=", 1) for e in base["Env"]))
    assert all(not v for k, v in env.items() if k.startswith("JUPYTERHUB_"))
    assert config["Labels"]["ai-workbench.saved.owner"] == "saver"
    assert config["Labels"]["ai-workbench.saved.source-instance"] == "src"
    assert config["Labels"]["ai-workbench.saved.base-image"] == "python"

    # it is in the owner's image list at once
    names = [i["name"] for i in saver.images()]
    assert "python" in names and "saved:saver/env1:v1" in names

    model = saver.create_instance("copy", image="saved:saver/env1:v1", flavor="cpu.tiny")
    assert model["state"] == "running" and model["image"] == "saved:saver/env1:v1"
    out = run_code(saver, model["url"], CHECK)
    assert out["error"] is None, out
    assert out["stdout"].split("\n")[:4] == ["pkg 42", "ext True", "work False", "token True"]
    # the source instance kept running through the save
    assert saver.instance("src")["state"] == "running"
    saver.stop_instance("copy")
    saver.delete_instance("copy")


@pytest.mark.integration
def test_switching_an_instance_to_a_saved_image(image_hub, saver, saved):
    before = saver.create_instance("switcher", image="python", flavor="cpu.tiny")
    try:
        out = run_code(saver, before["url"], "open('mine.txt', 'w').write('stays')")
        assert out["error"] is None, out
        # a running instance: started again in the new image, its work files kept
        model = saver.update_instance("switcher", image="saved:saver/env1:v1")
        assert (model["image"], model["state"]) == ("saved:saver/env1:v1", "running"), model
        assert model["started"] != before["started"]
        out = run_code(saver, model["url"], CHECK + "print(open('mine.txt').read())")
        assert out["stdout"].split("\n")[0] == "pkg 42", out
        assert out["stdout"].split()[-1] == "stays", out
        # a stopped instance: switched without a start; the next start runs the new image
        saver.stop_instance("switcher")
        model = saver.update_instance("switcher", image="python")
        assert (model["image"], model["state"]) == ("python", "stopped"), model
        model = saver.start_instance("switcher")
        out = run_code(saver, model["url"], CHECK)
        assert out["stdout"].split("\n")[0] == "pkg missing", out
    finally:
        if saver.instance("switcher")["state"] != "stopped":
            saver.stop_instance("switcher")
        saver.delete_instance("switcher")


@pytest.mark.integration
def test_a_kernel_keeps_its_variables_through_a_save(image_hub, saver, saved):
    """The engine pauses the container while it commits: kernels sleep through it."""
    url = saver.instance("src")["url"]
    kernel = start_kernel(saver, url)
    try:
        out = execute(saver, url, kernel, "import os\nx = 6 * 7\npid = os.getpid()")
        assert out["error"] is None, out
        status = saver.save_instance("src", "env1", "paused", wait=True)
        assert status["state"] == "done", status
        out = execute(saver, url, kernel, "print(x, pid == os.getpid())")
        assert out["stdout"].split() == ["42", "True"], out
    finally:
        requests.delete(
            f"{saver.url}{url}api/kernels/{kernel}",
            headers={"Authorization": f"token {saver.token}"},
            timeout=30,
        )
        if "saved:saver/env1:paused" in [i["name"] for i in saver.images()]:
            saver.delete_image("env1", "paused")


@pytest.mark.integration
def test_spawn_form_offers_saved_images(image_hub, saver, saved):
    s = image_hub.browser_session("saver", image_hub.passwords["saver"])
    page = s.get(f"{image_hub.url}/hub/spawn/saver/formcheck").text
    assert 'value="saved:saver/env1:v1"' in page


@pytest.mark.integration
def test_refusals(image_hub, saver, saved):
    cases = [
        ({"name": "Bad Name", "tag": "v1"}, 400, "Invalid image name"),
        ({"name": "ok", "tag": "-bad"}, 400, "Invalid tag"),
        ({"name": "ok", "tag": "v1", "size": 3}, 400, "Unknown field"),
        ({"name": "env1", "tag": "v1"}, 409, "already have an image env1:v1"),
    ]
    for body, code, words in cases:
        with pytest.raises(WorkbenchError) as e:
            saver.api("POST", "users/saver/instances/src/save", body)
        assert e.value.status == code and words in e.value.message, (body, e.value)
    with pytest.raises(WorkbenchError) as e:
        saver.save_instance("nosuch", "x", "v1")
    assert e.value.status == 404
    saver.create_instance("stopped", image="python", flavor="cpu.tiny", start=False)
    with pytest.raises(WorkbenchError) as e:
        saver.save_instance("stopped", "x", "v1")
    assert e.value.status == 409 and "workbench instances start stopped" in e.value.message
    saver.delete_instance("stopped")
    # nothing half-made: the refused saves registered nothing
    names = [i["name"] for i in saver.images() if i["kind"] == "saved"]
    assert names == ["saved:saver/env1:v1"]
    with pytest.raises(WorkbenchError) as e:
        saver.create_instance("bad", image="saved:saver/nosuch:v1")
    assert e.value.status == 400 and "Unknown saved image" in e.value.message


@pytest.mark.integration
def test_sharing(image_hub, saver, other, saved):
    assert "saved:saver/env1:v1" not in [i["name"] for i in other.images()]
    with pytest.raises(WorkbenchError) as e:
        other.create_instance("borrow", image="saved:saver/env1:v1", flavor="cpu.tiny")
    assert e.value.status == 400 and "not shared with you" in e.value.message
    with pytest.raises(WorkbenchError) as e:
        other.share_image("env1", "v1", users=["other"], user="saver")
    assert e.value.status == 404  # another user's images are not theirs to share
    with pytest.raises(WorkbenchError) as e:
        saver.share_image("env1", "v1", users=["nobody-here"])
    assert e.value.status == 400 and "No user 'nobody-here'" in e.value.message
    assert saver.share_image("env1", "v1", users=["other"])["shares"] == ["other"]
    assert "saved:saver/env1:v1" in [i["name"] for i in other.images()]
    model = other.create_instance("borrow", image="saved:saver/env1:v1", flavor="cpu.tiny")
    assert run_code(other, model["url"], CHECK)["stdout"].startswith("pkg 42")
    # in use: the owner cannot delete it, and is told by whom
    with pytest.raises(WorkbenchError) as e:
        saver.delete_image("env1", "v1")
    assert e.value.status == 409 and "other/borrow" in e.value.message
    other.stop_instance("borrow")
    other.delete_instance("borrow")
    assert saver.share_image("env1", "v1", users=[])["shares"] == []
    time.sleep(5.5)  # the hub's lookups are cached for 5 s
    with pytest.raises(WorkbenchError) as e:
        other.create_instance("borrow2", image="saved:saver/env1:v1", flavor="cpu.tiny")
    assert e.value.status == 400 and "not shared with you" in e.value.message
    assert "borrow2" not in [i["name"] for i in other.instances()]
    assert saver.share_image("env1", "v1", everyone=True)["shares"] == ["*"]
    assert "saved:saver/env1:v1" in [i["name"] for i in other.images()]
    saver.share_image("env1", "v1", everyone=False)


@pytest.mark.integration
def test_push_delete_pull_and_start(image_hub, saver, saved, engine, registry):
    """On an image of its own (another tag of src): env1:v1 stays for the other tests."""
    status = saver.save_instance("src", "env1", "p1", wait=True)
    assert status["state"] == "done", status
    try:
        pushed = saver.push_image("env1", "p1")
        assert pushed["pushed_ref"] == f"{registry}/{image_hub.prefix}-saved/saver/env1:p1"
        saver.delete_image("env1", "p1")
        images = EngineImages(engine.url)
        assert images.inspect(status["image"]["ref"]) is None
        assert "saved:saver/env1:p1" not in [i["name"] for i in saver.images()]
        pulled = saver.pull_image(pushed["pushed_ref"])
        assert pulled["name"] == "saved:saver/env1:p1" and pulled["base_image"] == "python"
        assert pulled["source_instance"] == "src" and pulled["state"] == "ready"
        assert images.inspect(pushed["pushed_ref"]) is None  # only the platform's name stays
        model = saver.create_instance("frompull", image="saved:saver/env1:p1", flavor="cpu.tiny")
        assert run_code(saver, model["url"], CHECK)["stdout"].startswith("pkg 42")
        saver.stop_instance("frompull")
        saver.delete_instance("frompull")
        with pytest.raises(WorkbenchError) as e:
            saver.pull_image(pushed["pushed_ref"])
        assert e.value.status == 409 and "already" in e.value.message, e.value.message
        with pytest.raises(WorkbenchError) as e:
            saver.pull_image("no-slash")
        assert e.value.status == 400
    finally:
        if "saved:saver/env1:p1" in [i["name"] for i in saver.images()]:
            saver.delete_image("env1", "p1")


def saver_cli(image_hub, home):
    """Run `workbench ...` as saver, signed in, with a HOME of its own (where the token is)."""

    def run(*args, password=None, expect=0):
        env = {**os.environ, "HOME": str(home), "WORKBENCH_CONFIG": str(image_hub.config)}
        env.pop("WORKBENCH_TOKEN", None)
        if password:
            env["WORKBENCH_PASSWORD"] = password
        proc = subprocess.run(
            [sys.executable, "-m", "hub.cli", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )
        assert proc.returncode == expect, proc.stdout + proc.stderr
        return proc.stdout + proc.stderr

    password = image_hub.passwords["saver"]
    run("login", "--user", "saver", "--url", image_hub.url, password=password)
    return run


@pytest.mark.integration
def test_saving_sharing_pushing_and_pulling_from_the_command_line(
    image_hub, saver, other, saved, registry, tmp_path
):
    cli = saver_cli(image_hub, tmp_path)
    out = cli("instances", "save", "src", "--image", "cli-env", "--tag", "v1")
    assert "Saved saved:saver/cli-env:v1" in out, out
    try:
        out = cli("images", "share", "cli-env:v1", "--users", "other")
        assert "saved:saver/cli-env:v1 is shared with: other" in out, out
        assert "saved:saver/cli-env:v1" in [i["name"] for i in other.images()]
        out = cli("images", "push", "cli-env:v1")
        pushed = f"{registry}/{image_hub.prefix}-saved/saver/cli-env:v1"
        assert f"Pushed to {pushed}." in out, out
        assert "Deleted saved image cli-env:v1." in cli("images", "delete", "cli-env:v1")
        assert "saved:saver/cli-env:v1" not in [i["name"] for i in saver.images()]
        out = cli("images", "pull", pushed)
        assert "Registered saved:saver/cli-env:v1" in out, out
        [image] = [i for i in saver.images() if i["name"] == "saved:saver/cli-env:v1"]
        assert (image["state"], image["source_instance"]) == ("ready", "src"), image
        # what the platform refuses, the command says, with a non-zero exit
        out = cli("images", "delete", "nosuch:v1", expect=1)
        assert "error: You have no saved image nosuch:v1." in out, out
    finally:
        if "saved:saver/cli-env:v1" in [i["name"] for i in saver.images()]:
            saver.delete_image("cli-env", "v1")


@pytest.mark.integration
def test_registry_faults_leave_nothing(engine, base_image, registry):
    """Unreachable registry and refused credentials, on the engine the platform uses."""
    images = EngineImages(engine.url)
    target = f"{registry}/faults/python:t1"
    images.tag(base_image.ref, f"{registry}/faults/python", "t1")
    try:
        with pytest.raises(RegistryError, match="refused the credentials"):
            images.push(target, auth={"username": REGISTRY_USER, "password": "x"}, insecure=True)
        dead = f"127.0.0.1:{free_port()}/faults/python:t1"
        images.tag(base_image.ref, dead.rsplit(":", 1)[0], "t1")
        with pytest.raises(RegistryError, match="unreachable"):
            images.push(dead, auth=None, insecure=True)
        images.remove(dead)
        with pytest.raises(RegistryError, match="unreachable"):
            images.pull(dead, auth=None, insecure=True)
        with pytest.raises(RegistryError, match="refused the credentials"):
            images.pull(target, auth={"username": REGISTRY_USER, "password": "x"}, insecure=True)
    finally:
        images.remove(target)
    with pytest.raises(ImageEngineError, match="failed to commit"):
        images.commit("no-such-container", "localhost/faults/x", "t1", changes=[], message="")


@pytest.mark.integration
def test_quota_count(image_hub, saver, saved):
    for tag in ("q1", "q2"):
        saver.save_instance("src", "env1", tag)
        assert wait_saved(saver, "src")["state"] == "done"
    with pytest.raises(WorkbenchError) as e:
        saver.save_instance("src", "env1", "q3")
    assert e.value.status == 403 and "the most allowed (3)" in e.value.message
    for tag in ("q1", "q2"):
        saver.delete_image("env1", tag)


BIG_FILE = """
import os
path = os.path.expanduser({path!r})
with open(path, 'wb') as f:
    for _ in range({mib}):
        f.write(os.urandom(1024 * 1024))
print(os.path.getsize(path))
"""


@pytest.mark.integration
def test_quota_size(image_hub, saver, saved):
    """Saved images may add SAVED_MAX_GIB together: one that takes more than the room left
    is saved, and then no other save is taken until one is deleted."""
    model = saver.create_instance("bigsrc", image="python", flavor="cpu.tiny", storage_gib=1)
    try:
        # outside the work folder (the volume), so the image keeps it
        out = run_code(saver, model["url"], BIG_FILE.format(path="~/blob", mib=120))
        assert out["error"] is None, out
        assert saver.save_instance("bigsrc", "big", "v1", wait=True)["state"] == "done"
        with pytest.raises(WorkbenchError) as e:
            saver.save_instance("src", "env1", "over")
        assert e.value.status == 403, e.value.message
        assert f"the most allowed is {SAVED_MAX_GIB:g} GiB" in e.value.message
        assert "Delete one" in e.value.message
        names = [i["name"] for i in saver.images()]
        assert "saved:saver/env1:over" not in names and "saved:saver/big:v1" in names
    finally:
        if saver.instance("bigsrc")["state"] != "stopped":
            saver.stop_instance("bigsrc")
        saver.delete_instance("bigsrc")
        if "saved:saver/big:v1" in [i["name"] for i in saver.images()]:
            saver.delete_image("big", "v1")


@pytest.mark.integration
def test_restart_mid_save_is_cleaned_and_retry_works(image_hub, saver, engine):
    """The platform restarted while the engine copies an instance's files: the save is marked
    failed, nothing it made is left, the instance runs on and the same save works again."""
    model = saver.create_instance("midsave", image="python", flavor="cpu.tiny", storage_gib=1)
    try:
        # a large file makes the commit take seconds, long enough to restart in the middle
        out = run_code(saver, model["url"], BIG_FILE.format(path="~/big.bin", mib=1024))
        assert out["error"] is None and out["stdout"].strip() == str(1024**3), out
        status = saver.save_instance("midsave", "interrupted", "v1")
        ref = status["image"]["ref"]
        deadline = time.monotonic() + 120
        while status["state"] == "saving" and status["step"] != "commit":
            assert time.monotonic() < deadline, status
            time.sleep(0.1)
            status = saver.save_status("midsave")
        assert (status["state"], status["step"]) == ("saving", "commit"), status
        image_hub.restart()

        status = saver.save_status("midsave")
        assert status["state"] == "failed", status
        assert "Save the instance again" in status["message"], status
        assert status["image"]["name"] == "saved:saver/interrupted:v1"
        assert "saved:saver/interrupted:v1" not in [i["name"] for i in saver.images()]
        assert EngineImages(engine.url).inspect(ref) is None
        # the instance runs on; the same name and tag can be saved again
        model = saver.instance("midsave")
        assert model["state"] == "running"
        out = run_code(saver, model["url"], "import os; os.remove(os.path.expanduser('~/big.bin'))")
        assert out["error"] is None, out
        saver.save_instance("midsave", "interrupted", "v1")
        assert wait_saved(saver, "midsave")["state"] == "done"
        assert EngineImages(engine.url).inspect(ref) is not None
        saver.delete_image("interrupted", "v1")
    finally:
        if saver.instance("midsave")["state"] != "stopped":
            saver.stop_instance("midsave")
        saver.delete_instance("midsave")
