"""The engine images (PyTorch, TensorFlow, MindSpore): each engine is a kernel that computes.

Every engine image is the base image plus /opt/envs/<engine>: the engine's kernel (its default
one), the plain "Python 3 (no engine)" kernel, and the engine's environment first on PATH for
terminals. Instances are made through the platform API and run real code in their kernels;
the catalog is checked against what the built images hold. The images are large (2-4 GB):
the session fixture builds them once, and later runs find them up to date.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import requests

from images.catalog import TAG_RE, load_catalog
from spawner.engine import podman_env
from tests.platform import REPO, run_code

pytestmark = pytest.mark.integration

GPU_CATALOG = REPO / "images" / "catalog-gpu.yaml"

# the distribution whose version is an engine's version
DISTRIBUTIONS = {"pytorch": "torch", "tensorflow": "tensorflow-cpu", "mindspore": "mindspore"}

# per engine: a tensor sum and one gradient, printed as two lines of Python lists
COMPUTE = {
    "pytorch": """
import torch
x = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
print(torch.tensor([[1.0, 2.0], [3.0, 4.0]]).sum().item())
(x**2).sum().backward()
print(x.grad.tolist())
""",
    "tensorflow": """
import tensorflow as tf
x = tf.Variable([1.0, 2.0, 3.0])
print(float(tf.reduce_sum(tf.constant([[1.0, 2.0], [3.0, 4.0]]))))
with tf.GradientTape() as tape:
    y = tf.reduce_sum(x**2)
print(tape.gradient(y, x).numpy().tolist())
""",
    "mindspore": """
import numpy as np
import mindspore as ms
ms.set_context(mode=ms.PYNATIVE_MODE)
x = ms.Tensor(np.array([1.0, 2.0, 3.0], np.float32))
print(float(ms.Tensor(np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)).sum()))
print(ms.grad(lambda t: (t**2).sum())(x).asnumpy().tolist())
""",
}

# one training step of a linear model: the loss goes down
TRAIN_STEP = {
    "pytorch": """
import torch
torch.manual_seed(0)
X = torch.randn(64, 3); y = X @ torch.tensor([1.0, -2.0, 0.5])
model = torch.nn.Linear(3, 1); opt = torch.optim.SGD(model.parameters(), lr=0.1)
loss = lambda: ((model(X).squeeze(1) - y) ** 2).mean()
before = loss(); opt.zero_grad(); before.backward(); opt.step()
print(before.item() > loss().item())
""",
    "tensorflow": """
import tensorflow as tf
tf.random.set_seed(0)
X = tf.random.normal((64, 3)); y = tf.linalg.matvec(X, tf.constant([1.0, -2.0, 0.5]))
w = tf.Variable(tf.zeros(3))
loss = lambda: tf.reduce_mean((tf.linalg.matvec(X, w) - y) ** 2)
with tf.GradientTape() as tape:
    before = loss()
w.assign_sub(0.1 * tape.gradient(before, w))
print(float(before) > float(loss()))
""",
    "mindspore": """
import numpy as np
import mindspore as ms
from mindspore import nn
ms.set_context(mode=ms.PYNATIVE_MODE)
rng = np.random.default_rng(0)
X = rng.normal(size=(64, 3)).astype(np.float32)
X, y = ms.Tensor(X), ms.Tensor(X @ np.array([1.0, -2.0, 0.5], np.float32))
model = nn.Dense(3, 1); opt = nn.SGD(model.trainable_params(), learning_rate=0.1)
loss = lambda: ((model(X).squeeze(1) - y) ** 2).mean()
before, grads = ms.value_and_grad(loss, None, opt.parameters)()
opt(grads)
print(float(before) > float(loss()))
""",
}

DATA_STACK = """
import numpy, pandas, matplotlib, sklearn, ipywidgets
matplotlib.use("Agg")
import matplotlib.pyplot as plt
from sklearn.linear_model import LinearRegression
frame = pandas.DataFrame({"x": [0.0, 1.0, 2.0], "y": [1.0, 3.0, 5.0]})
fit = LinearRegression().fit(frame[["x"]], frame["y"])
plt.plot(frame.x, frame.y)
print(round(float(fit.coef_[0]), 6), int(numpy.arange(4).sum()))
"""

# what a terminal gets: a login shell, as the instance's terminals start (bash -l)
SHELL = """
import subprocess
env = dict(p.split("=", 1) for p in open("/proc/1/environ").read().split("\\0") if "=" in p)
print(env["PATH"].split(":")[0], env["WORKBENCH_DEFAULT_ENV"])
script = "which python; python -c 'import {module}'; workbench-env python; which python"
out = subprocess.run(
    ["bash", "-lc", script],
    capture_output=True, text=True, env={{"HOME": "/home/jovyan", **env}},
)
print(out.stdout.strip().replace("\\n", " "), out.returncode)
"""

MODULES = {"pytorch": "torch", "tensorflow": "tensorflow", "mindspore": "mindspore"}
DISPLAY_NAMES = {
    "pytorch": "PyTorch 2.13",
    "tensorflow": "TensorFlow 2.21",
    "mindspore": "MindSpore 2.10",
}


def _builder(engine, catalog):
    from images.build import ImageBuilder

    return ImageBuilder(
        catalog,
        cli=engine.cli,
        engine_url=engine.url,
        cache_dir=REPO / ".run" / "cache",
        env=podman_env(),
    )


@pytest.fixture(scope="session")
def engine_images(engine, base_image):
    """The catalog's engine images, built if missing or out of date (minutes the first time)."""
    catalog = load_catalog()
    _builder(engine, catalog).build(list(DISTRIBUTIONS))
    return catalog


@pytest.fixture(scope="module")
def erin(hub):
    return hub.add_user("erin")


@pytest.fixture(scope="module", params=list(DISTRIBUTIONS))
def instance(request, hub, erin, engine_images):
    """A running instance of one engine image; stopped and deleted after its tests."""
    name = request.param
    model = erin.create_instance(name, image=name, flavor="cpu.small", storage_gib=1)
    assert model["state"] == "running", model
    yield name, model["url"]
    erin.stop_instance(name)
    erin.delete_instance(name)
    assert name not in [i["name"] for i in erin.instances()]


def _run(client, url, code, kernel):
    result = run_code(client, url, code, kernel=kernel, timeout=180)
    assert result["error"] is None, result
    return result["stdout"].split("\n")[:-1]


def test_kernels_are_the_engine_and_plain_python(hub, erin, instance):
    name, url = instance
    specs = requests.get(
        f"{hub.url}{url}api/kernelspecs",
        headers={"Authorization": f"token {erin.token}"},
        timeout=30,
    ).json()
    display = {k: v["spec"]["display_name"] for k, v in specs["kernelspecs"].items()}
    assert display == {name: DISPLAY_NAMES[name], "python3": "Python 3 (no engine)"}
    assert specs["default"] == name
    metadata = specs["kernelspecs"][name]["spec"]["metadata"]["ai_workbench"]
    assert metadata == {"environment": name, "engine": name}


def test_engine_kernel_sums_and_differentiates(erin, instance):
    name, url = instance
    assert _run(erin, url, COMPUTE[name], name) == ["10.0", "[2.0, 4.0, 6.0]"]
    assert _run(erin, url, TRAIN_STEP[name], name) == ["True"]


def test_engine_kernel_has_the_data_stack(erin, instance):
    name, url = instance
    assert _run(erin, url, DATA_STACK, name) == ["2.0 6"]


def test_plain_python_kernel_has_no_engine(erin, instance):
    name, url = instance
    code = (
        "import importlib.util as u\n"
        "print([m for m in ('torch', 'tensorflow', 'mindspore') if u.find_spec(m)])"
    )
    assert _run(erin, url, code, "python3") == ["[]"]


def test_plain_python_kernel_runs_in_its_environment(erin, instance):
    name, url = instance
    assert _run(erin, url, "import sys; print(sys.prefix)", "python3") == ["/opt/envs/python"]


def test_terminals_default_to_the_engine_environment(erin, instance):
    name, url = instance
    lines = _run(erin, url, SHELL.format(module=MODULES[name]), name)
    assert lines == [
        f"/opt/envs/{name}/bin {name}",
        f"/opt/envs/{name}/bin/python /opt/envs/python/bin/python 0",
    ]


INSPECT = """
import glob, json, os, subprocess
kernels = {}
for path in sorted(glob.glob("/usr/local/share/jupyter/kernels/*/kernel.json")):
    spec = json.load(open(path))
    meta = spec["metadata"]["ai_workbench"]
    version = subprocess.run(
        [spec["argv"][0], "-c", "import importlib.metadata as m, sys; "
         "d = sys.argv[1]; print(m.version(d) if d else '%d.%d' % sys.version_info[:2])",
         DISTRIBUTIONS.get(meta["engine"], "")],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    kernels[os.path.basename(os.path.dirname(path))] = {
        "display_name": spec["display_name"],
        "path": os.path.dirname(os.path.dirname(spec["argv"][0])),
        "engine": meta["engine"],
        "version": version,
    }
print(json.dumps({"kernels": kernels, "default": os.environ["WORKBENCH_DEFAULT_ENV"]}))
"""


def test_catalog_and_built_images_agree(engine, engine_images):
    """Every catalog entry's environments and engine version are what its built image holds."""
    for entry in engine_images:
        script = f"DISTRIBUTIONS = {DISTRIBUTIONS!r}\n{INSPECT}"
        out = subprocess.run(
            [engine.cli, "run", "--rm", entry.ref, "python3", "-c", script],
            capture_output=True,
            text=True,
            env=podman_env(),
            timeout=300,
        )
        assert out.returncode == 0, out.stderr[-2000:]
        found = json.loads(out.stdout.strip().splitlines()[-1])
        kernels = found["kernels"]
        assert {
            name: (k["display_name"], k["path"], k["engine"]) for name, k in kernels.items()
        } == {e.kernel_name: (e.display_name, e.path, e.engine) for e in entry.environments}, (
            entry.name
        )
        # the first environment listed is the image's default one
        assert found["default"] == entry.environments[0].name
        engine_env = next((e for e in entry.environments if e.engine == entry.engine), None)
        version = kernels[(engine_env or entry.environments[0]).kernel_name]["version"]
        assert version.split("+")[0] == entry.engine_version, entry.name


def test_gpu_catalog_loads_and_follows_the_tag_format():
    """The CUDA variants (built only where Docker Hub and a GPU are) are a valid catalog."""
    catalog = load_catalog(GPU_CATALOG)
    assert set(catalog.names) == {f"{e}-cuda" for e in DISTRIBUTIONS}
    for entry in catalog:
        match = TAG_RE.match(entry.tag)
        assert match, entry.tag
        assert entry.processor == match["processor"] and entry.processor.startswith("cuda_")
        assert (entry.engine, entry.engine_version) == (match["engine"], match["version"])
        assert (entry.python, entry.os, entry.arch) == (
            match["python"],
            match["os"],
            match["arch"],
        )
        assert [e.name for e in entry.environments] == [entry.engine, "python"]
        folder = Path(REPO / "images" / entry.dockerfile)
        assert (folder / "Dockerfile").resolve() == REPO / "images" / "engine-cuda" / "Dockerfile"
        assert dict(entry.build_args)["CUDA_IMAGE"].startswith("nvidia/cuda:")
        assert list(folder.glob("requirements-*.txt")), folder
