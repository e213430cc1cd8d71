"""`import workbench` in every kernel of every catalog image, with nothing set up.

One real hub for the module and one running instance of each catalog image (python, pytorch,
tensorflow, mindspore), started concurrently, all owned by the same user. In each kernel the
image offers, the platform's client configures itself from the instance's environment
($WORKBENCH_API_URL, $JUPYTERHUB_API_TOKEN, ...) and lists its owner's instances: the
instance itself and the others. The server's own environment (/opt/jupyter, where the
panel's server extension runs) has it too. Last, a notebook saves its own instance through
the client, and an instance of that saved image still has the client in every kernel.
"""

from __future__ import annotations

import ast
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from images.build import ImageBuilder
from images.catalog import load_catalog
from spawner.engine import podman_env
from tests.platform import REPO, run_code, running_hub

pytestmark = pytest.mark.integration

CATALOG = load_catalog()
IMAGES = [entry.name for entry in CATALOG]
SAVED = "saved:ada/with-sdk:v1"  # ada's save of her pytorch instance, made from a notebook

# what a user types in a cell; the second line says which environment's copy was imported
LIST = """
import workbench
print([i["name"] for i in workbench.instances.list()])
print(workbench.__file__)
"""

# the server's environment is no kernel: run its Python from a kernel, with the kernel's
# environment (the instance's variables)
SERVER = """
import subprocess
code = "import workbench; print(sorted(i['name'] for i in workbench.instances.list()))"
out = subprocess.run(["/opt/jupyter/bin/python", "-c", code], capture_output=True, text=True)
print(out.stdout.strip() or out.stderr[-2000:])
"""

# the README's notebook example: save this instance as an image and wait for the save
SAVE = """
import os
import workbench

me = os.environ["JUPYTERHUB_SERVER_NAME"]
workbench.images.save(me, "with-sdk", "v1", description="saved from a notebook")
status = workbench.images.wait_saved(me)
print(status["state"], status["image"]["name"])
"""


def instance_name(image: str) -> str:
    return f"sdk-{image.replace(':', '-').replace('/', '-')}"


@pytest.fixture(scope="module")
def images(engine, base_image):
    """Every catalog image, built if missing or out of date (up to date after `make images`)."""
    ImageBuilder(
        CATALOG,
        cli=engine.cli,
        engine_url=engine.url,
        cache_dir=REPO / ".run" / "cache",
        env=podman_env(),
    ).build(IMAGES)
    return CATALOG


@pytest.fixture(scope="module")
def sdk_hub(tmp_path_factory, engine, images):
    with running_hub(tmp_path_factory.mktemp("sdk-hub"), engine.url, "sdk") as h:
        yield h


@pytest.fixture(scope="module")
def ada(sdk_hub):
    return sdk_hub.add_user("ada")


@pytest.fixture(scope="module")
def instances(ada) -> dict[str, dict]:
    """A running instance of each catalog image, started at the same time: {image: model}."""

    def create(image: str) -> dict:
        return ada.instances.create(
            instance_name(image), image=image, flavor="cpu.small", storage_gib=1
        )

    with ThreadPoolExecutor(len(IMAGES)) as pool:
        models = dict(zip(IMAGES, pool.map(create, IMAGES), strict=True))
    assert all(m["state"] == "running" for m in models.values()), models
    return models


def kernels_of(hub, client, model: dict) -> dict[str, str]:
    """The running instance's kernels: {kernel name: environment path}."""
    specs = requests.get(
        f"{hub.url}{model['url']}api/kernelspecs",
        headers={"Authorization": f"token {client.token}"},
        timeout=30,
    ).json()["kernelspecs"]
    # kernel.json runs <env>/bin/python
    return {name: spec["spec"]["argv"][0].rsplit("/bin/", 1)[0] for name, spec in specs.items()}


def assert_every_kernel_lists(hub, client, model: dict, image: str):
    """In each kernel of model's instance, `import workbench` (the kernel environment's own
    copy) lists the owner's instances, this one among them."""
    kernels = kernels_of(hub, client, model)
    entry = CATALOG.get(image)
    assert kernels == {e.kernel_name: e.path for e in entry.environments}, kernels
    for kernel, env in kernels.items():
        out = run_code(client, model["url"], LIST, kernel=kernel, timeout=180)
        assert out["error"] is None, (image, kernel, out)
        listed, path = out["stdout"].splitlines()[:2]
        listed = ast.literal_eval(listed)
        assert sorted(listed) == sorted(i["name"] for i in client.instances.list()), kernel
        assert model["name"] in listed and len(listed) > 1, (kernel, listed)
        assert path.startswith(f"{env}/lib/"), (kernel, path)


@pytest.mark.parametrize("image", IMAGES)
def test_every_kernel_lists_its_owners_instances(sdk_hub, ada, instances, image):
    assert_every_kernel_lists(sdk_hub, ada, instances[image], image)


@pytest.mark.parametrize("image", IMAGES)
def test_the_servers_environment_has_it(ada, instances, image):
    out = run_code(ada, instances[image]["url"], SERVER, timeout=180)
    assert out["error"] is None, out
    assert ast.literal_eval(out["stdout"].strip()) == sorted(
        i["name"] for i in ada.instances.list()
    )


def test_a_saved_image_keeps_it(sdk_hub, ada, instances, engine):
    """A notebook saves its own (pytorch) instance with the client; an instance of the saved
    image has the client in every kernel, and the image holds it in its filesystem."""
    source = instances["pytorch"]
    out = run_code(ada, source["url"], SAVE, kernel="pytorch", timeout=300)
    assert out["error"] is None, out
    assert out["stdout"].split() == ["done", SAVED], out
    saved = next(i for i in ada.images.list() if i["name"] == SAVED)
    assert saved["base_image"] == "pytorch"

    model = ada.instances.create("sdk-from-saved", image=SAVED, flavor="cpu.small")
    try:
        assert model["state"] == "running" and model["image"] == SAVED
        assert_every_kernel_lists(sdk_hub, ada, model, "pytorch")
    finally:
        # the other tests' instances only, after
        ada.instances.stop("sdk-from-saved")
        ada.instances.delete("sdk-from-saved")

    # in the image's files, not only in the running container: each environment imports it
    ref = ada.images.save_status("sdk-pytorch")["image"]["ref"]
    script = (
        "for env in /opt/jupyter /opt/envs/*; do "
        "$env/bin/python -c 'import workbench' || exit 1; done"
    )
    ran = subprocess.run(
        [engine.cli, "run", "--rm", "--entrypoint", "bash", ref, "-c", script],
        capture_output=True,
        text=True,
        env=podman_env(),
        timeout=300,
    )
    assert ran.returncode == 0, ran.stderr[-2000:]
