"""The serving runtime (workbench.serving) in real serving containers, one per model format.

Each format's model is made here: the ONNX graph, the scikit-learn estimator and the custom
predictor with what .venv has; the TorchScript, SavedModel and MindIR files inside the engine
images, which hold those frameworks. Each is served as the platform serves it: its engine image,
the model folder mounted read-only at /mnt/models, WORKBENCH_MODEL in the environment and
`python -m workbench.serving`. Calls go over v2 with kserve's own REST client and with plain
httpx, and over v1; bad requests must answer 400 with the reason. The batch runner goes over
1,000 input files. The containers start together, once for the module, and are always removed.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pytest

from images.catalog import load_catalog
from spawner.engine import podman_env
from tests.platform import REPO

pytestmark = pytest.mark.integration

PREFIX = f"wbtest-serving-{secrets.token_hex(3)}"
ENGINES = ["pytorch", "tensorflow", "mindspore"]
READY_TIMEOUT = 240  # seconds: six servers start at once on two cores

# every model but scikit-learn's computes y = x @ W + B
W = np.arange(12, dtype=np.float32).reshape(4, 3) / 10
B = np.array([0.5, -0.5, 1.0], np.float32)
X = np.array([[1, 2, 3, 4], [5, 6, 7, 8], [0.5, 0, -1, 2]], np.float32)
XY = {
    "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
    "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 3]}],
}

# the files made inside the engine images; /out is the model folder
MAKERS = {
    "pytorch": """
import torch
class Linear(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor({W}))
        self.b = torch.nn.Parameter(torch.tensor({B}))
    def forward(self, x):
        return x @ self.w + self.b
torch.jit.script(Linear()).save("/out/model.pt")
""",
    "tensorflow": """
import tensorflow as tf
w, b = tf.constant({W}), tf.constant({B})
class Linear(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
    def serve(self, x):
        return {{"y": tf.matmul(x, w) + b}}
model = Linear()
tf.saved_model.save(model, "/out/linear", signatures={{"serving_default": model.serve}})
""",
    "mindspore": """
import mindspore as ms
import numpy as np
class Linear(ms.nn.Cell):
    def __init__(self):
        super().__init__()
        self.w = ms.Parameter(ms.Tensor(np.array({W}, np.float32)), name="w")
        self.b = ms.Parameter(ms.Tensor(np.array({B}, np.float32)), name="b")
    def construct(self, x):
        return ms.ops.matmul(x, self.w) + self.b
x = ms.Tensor(shape=[None, 4], dtype=ms.float32)
ms.export(Linear(), x, file_name="/out/model", file_format="MINDIR")
""",
}

# a custom predictor in the style of kserve.Model, with its own files
PREDICTOR = """
import json
import os

import numpy as np


class Linear:
    def load(self):
        with open(os.path.join(self.model_dir, "weights.json")) as f:
            weights = json.load(f)
        self.w = np.array(weights["w"], np.float32)
        self.b = np.array(weights["b"], np.float32)

    def preprocess(self, payload, headers=None):
        if isinstance(payload, dict):
            return np.asarray(payload["instances"], np.float32)
        return payload.inputs[0].as_numpy()

    def predict(self, x):  # the headers are optional
        return x @ self.w + self.b
"""


@dataclass
class Case:
    """One format: its image, WORKBENCH_MODEL, and a request with what it must answer."""

    format: str
    image: str
    model: dict
    input: str = "x"
    datatype: str = "FP32"
    x: np.ndarray = field(default_factory=lambda: X)
    expected: dict = field(default_factory=lambda: {"y": X @ W + B})
    metadata: dict = field(default_factory=lambda: XY)

    @property
    def name(self) -> str:
        return self.model["name"]


def _iris():
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    features, labels = load_iris(return_X_y=True)
    return LogisticRegression(max_iter=1000).fit(features, labels), features[::50]


IRIS, IRIS_X = _iris()

CASES = {
    # ONNX, TensorFlow and scikit-learn signatures come from the model itself
    "onnx": Case("onnx", "pytorch", {"name": "lin-onnx", "format": "onnx"}),
    "pytorch": Case(
        "pytorch", "pytorch", {"name": "lin-torch", "format": "pytorch", "signature": XY}
    ),
    "tensorflow": Case("tensorflow", "tensorflow", {"name": "lin-tf", "format": "tensorflow"}),
    "mindspore": Case(
        "mindspore", "mindspore", {"name": "lin-ms", "format": "mindspore", "signature": XY}
    ),
    "sklearn": Case(
        "sklearn",
        "pytorch",
        {"name": "iris", "format": "sklearn"},
        input="input",
        datatype="FP64",
        x=IRIS_X,
        expected={"predict": IRIS.predict(IRIS_X), "predict_proba": IRIS.predict_proba(IRIS_X)},
        metadata={
            "inputs": [{"name": "input", "datatype": "FP64", "shape": [-1, 4]}],
            "outputs": [
                {"name": "predict", "datatype": "INT64", "shape": [-1]},
                {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 3]},
            ],
        },
    ),
    "custom": Case(
        "custom",
        "pytorch",
        {
            "name": "lin-custom",
            "format": "custom",
            "predictor": "predictor.py:Linear",
            "signature": XY,
        },
    ),
}


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["podman", *args],
        env=podman_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=check,
    )


def readable(folder: Path) -> Path:
    """Let the containers' user (uid 1000) read folder: pytest's folders are 0700, and
    MindSpore writes its files 0400."""
    for root, _dirs, files in os.walk(folder):
        os.chmod(root, 0o755)
        for name in files:
            os.chmod(Path(root) / name, 0o644)
    return folder


def make_model(case: Case, folder: Path, scripts: Path, images: dict) -> Path:
    """Write case's model files into folder (a container makes the framework's own)."""
    folder.mkdir()
    if case.format == "onnx":
        import onnx
        from onnx import TensorProto, helper, numpy_helper

        graph = helper.make_graph(
            [
                helper.make_node("MatMul", ["x", "W"], ["xw"]),
                helper.make_node("Add", ["xw", "B"], ["y"]),
            ],
            "linear",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
            [numpy_helper.from_array(W, "W"), numpy_helper.from_array(B, "B")],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 9  # what onnxruntime 1.31 reads
        onnx.checker.check_model(model)
        onnx.save(model, folder / "model.onnx")
    elif case.format == "sklearn":
        import joblib

        joblib.dump(IRIS, folder / "model.joblib")
    elif case.format == "custom":
        (folder / "predictor.py").write_text(PREDICTOR)
        (folder / "weights.json").write_text(json.dumps({"w": W.tolist(), "b": B.tolist()}))
    else:
        script = scripts / f"make_{case.format}.py"
        script.write_text(MAKERS[case.format].format(W=W.tolist(), B=B.tolist()))
        readable(scripts)
        made = podman(
            "run", "--rm", "--user", "0:0", "--name", f"{PREFIX}-make-{case.format}",
            "-v", f"{scripts}:/scripts:ro,Z", "-v", f"{folder}:/out:Z",
            images[case.image], "python", f"/scripts/{script.name}",
            timeout=300, check=False,
        )  # fmt: skip
        assert made.returncode == 0, (
            f"making the {case.format} model failed:\n{made.stderr[-3000:]}"
        )
    return readable(folder)


@dataclass
class Server:
    """A started serving container; `error` says why there is none."""

    case: Case
    container: str = ""
    url: str = ""
    error: str = ""


def start(case: Case, folder: Path, image: str) -> Server:
    name = f"{PREFIX}-{case.format}"
    podman(
        "run", "-d", "--name", name, "-v", f"{folder}:/mnt/models:ro,Z",
        "-e", f"WORKBENCH_MODEL={json.dumps(case.model)}", "-p", "127.0.0.1::8080",
        image, "python", "-m", "workbench.serving",
    )  # fmt: skip
    port = podman("port", name, "8080").stdout.strip().rsplit(":", 1)[1]
    return Server(case, container=name, url=f"http://127.0.0.1:{port}")


def wait_ready(server: Server, deadline: float):
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{server.url}/v2/health/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        state = podman("inspect", "-f", "{{.State.Status}}", server.container, check=False)
        if state.stdout.strip() != "running":
            break
        time.sleep(0.5)
    logs = podman("logs", server.container, check=False)
    server.error = f"{server.case.format} server not ready:\n{(logs.stdout + logs.stderr)[-3000:]}"


@pytest.fixture(scope="module")
def images(engine):
    """The engine images' refs, built if missing or older than the platform client's sources."""
    from images.build import ImageBuilder

    catalog = load_catalog()
    builder = ImageBuilder(
        catalog, cli=engine.cli, engine_url=engine.url, cache_dir=REPO / ".run" / "cache",
        env=podman_env(),
    )  # fmt: skip
    builder.build(ENGINES)
    return {name: catalog.get(name).ref for name in ENGINES}


@pytest.fixture(scope="module")
def servers(images, tmp_path_factory):
    """Every format's server, started together; removed after the module's tests."""
    root = tmp_path_factory.mktemp("serving")
    scripts = root / "scripts"
    scripts.mkdir()
    started: dict[str, Server] = {}
    try:
        for fmt, case in CASES.items():
            try:
                folder = make_model(case, root / fmt, scripts, images)
                started[fmt] = start(case, folder, images[case.image])
            except (AssertionError, subprocess.SubprocessError) as e:
                started[fmt] = Server(case, error=str(e))
        deadline = time.monotonic() + READY_TIMEOUT
        for server in started.values():
            if not server.error:
                wait_ready(server, deadline)
        yield started
    finally:
        for server in started.values():
            if server.container:
                podman("rm", "-f", "-t", "0", server.container, check=False)


@pytest.fixture(params=list(CASES))
def server(request, servers) -> Server:
    server = servers[request.param]
    assert not server.error, server.error
    return server


def v2_body(case: Case, x=None, **change) -> dict:
    x = case.x if x is None else x
    tensor = {"name": case.input, "datatype": case.datatype, "shape": list(x.shape)}
    tensor["data"] = x.ravel().tolist()
    tensor.update(change)
    return {"inputs": [tensor]}


def assert_outputs(case: Case, outputs: dict):
    assert set(outputs) == set(case.expected), outputs
    for name, expected in case.expected.items():
        np.testing.assert_allclose(np.asarray(outputs[name]), expected, rtol=1e-5, atol=1e-6)


# --- the runtime without containers ------------------------------------------------------


def test_client_imports_without_kserve():
    """`import workbench` and the spec module work where kserve is not installed."""
    code = (
        "import sys; sys.modules['kserve'] = None; import workbench, workbench.serving; "
        "from workbench.serving.spec import ModelSpec; "
        'print(ModelSpec.from_json(\'{"name": "m", "format": "onnx"}\').format)'
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "onnx", out.stderr


def test_spec_errors_say_what_is_wrong():
    from workbench.serving.spec import ModelLoadError, ModelSpec

    for text, reason in [
        ("{", "not JSON"),
        ('{"format": "onnx"}', '"name"'),
        ('{"name": "m", "format": "caffe"}', "'caffe' is not one of"),
        ('{"name": "m", "signature": {"inputs": [{"name": "x"}]}}', "needs a name, a datatype"),
        (
            '{"name": "m", "signature": {"inputs": [{"name": "x", "datatype": "FLOAT", '
            '"shape": [1]}]}}',
            "datatype FLOAT is not one of",
        ),
    ]:
        with pytest.raises(ModelLoadError, match=reason):
            ModelSpec.from_json(text)
    spec = ModelSpec.from_json(json.dumps({"name": "m", "format": "onnx", "signature": XY}))
    assert [t.to_dict() for t in spec.inputs] == XY["inputs"]


# --- serving containers ------------------------------------------------------------------


def test_health_readiness_and_metadata(server):
    case, url = server.case, server.url
    assert httpx.get(f"{url}/v2/health/live").json() == {"live": True}
    assert httpx.get(f"{url}/v2/health/ready").json() == {"ready": True}
    ready = httpx.get(f"{url}/v2/models/{case.name}/ready")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    metadata = httpx.get(f"{url}/v2/models/{case.name}").json()
    assert metadata["name"] == case.name
    assert {"inputs": metadata["inputs"], "outputs": metadata["outputs"]} == case.metadata
    assert httpx.get(f"{url}/v2/models/nope").status_code == 404
    assert "request_predict_seconds" in httpx.get(f"{url}/metrics").text


async def test_v2_with_kserve_client(server):
    from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig

    case = server.case
    tensor = InferInput(name=case.input, shape=list(case.x.shape), datatype=case.datatype)
    tensor.set_data_from_numpy(case.x.astype(np.float32 if case.datatype == "FP32" else np.float64))
    client = InferenceRESTClient(RESTConfig(protocol="v2", retries=1, timeout=60))
    try:
        assert await client.is_server_ready(server.url)
        assert await client.is_model_ready(server.url, case.name)
        request = InferRequest(model_name=case.name, infer_inputs=[tensor], request_id="r-1")
        response = await client.infer(server.url, request, model_name=case.name)
    finally:
        await client.close()
    assert response.id == "r-1" and response.model_name == case.name
    assert_outputs(case, {o.name: o.as_numpy() for o in response.outputs})


def test_v2_with_httpx(server):
    case = server.case
    response = httpx.post(
        f"{server.url}/v2/models/{case.name}/infer", json=v2_body(case), timeout=60
    )
    assert response.status_code == 200, response.text
    outputs = {o["name"]: np.reshape(o["data"], o["shape"]) for o in response.json()["outputs"]}
    assert_outputs(case, outputs)
    # a request may ask for some of the outputs
    first = next(iter(case.expected))
    body = v2_body(case) | {"outputs": [{"name": first}]}
    response = httpx.post(f"{server.url}/v2/models/{case.name}/infer", json=body, timeout=60)
    assert [o["name"] for o in response.json()["outputs"]] == [first]


def test_v1_predict(server):
    case = server.case
    response = httpx.post(
        f"{server.url}/v1/models/{case.name}:predict",
        json={"instances": case.x.tolist()},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert len(predictions) == len(case.x)
    if len(case.expected) == 1:  # one output: one value per instance
        assert_outputs(case, {next(iter(case.expected)): predictions})
    else:  # several: an object per instance
        assert_outputs(case, {name: [p[name] for p in predictions] for name in case.expected})


def test_bad_requests_answer_400_with_the_reason(server):
    case = server.case
    infer = f"{server.url}/v2/models/{case.name}/infer"
    wrong = {
        "shape": v2_body(case, x=case.x[:, :3]),
        "datatype": v2_body(case, datatype="INT32", data=[1] * case.x.size),
        "unknown input": v2_body(case, name="nope"),
        "do not fill": v2_body(case, data=[1.0, 2.0]),
    }
    for reason, body in wrong.items():
        response = httpx.post(infer, json=body, timeout=60)
        assert response.status_code == 400, (reason, response.text)
        assert reason in response.json()["error"], (reason, response.text)
    response = httpx.post(
        f"{server.url}/v1/models/{case.name}:predict", json={"instances": [[1.0, 2.0]]}, timeout=60
    )
    assert response.status_code == 400 and "shape [1, 2]" in response.json()["error"]


def test_missing_model_files_stop_the_container_with_the_reason(images, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    readable(empty)
    out = podman(
        "run", "--rm", "--name", f"{PREFIX}-empty", "-v", f"{empty}:/mnt/models:ro,Z",
        "-e", 'WORKBENCH_MODEL={"name": "m", "format": "onnx"}', images["pytorch"],
        "python", "-m", "workbench.serving", check=False,
    )  # fmt: skip
    assert out.returncode == 2
    assert "no ONNX model (*.onnx) in /mnt/models" in out.stdout + out.stderr


def test_batch_over_a_thousand_files(images, tmp_path):
    """1,000 inputs (one of them bad) -> 1,000 lines in input order, progress to the end."""
    case = CASES["onnx"]
    model = tmp_path / "model"
    make_model(case, model, tmp_path, images)
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    out.mkdir()
    os.chmod(out, 0o777)  # the container writes as uid 1000
    rows = np.random.default_rng(0).normal(size=(1000, 4)).astype(np.float32)
    for i, row in enumerate(rows):
        body = {"instances": [row.tolist()] if i != 500 else [[1.0, 2.0]]}
        (inputs / f"in-{i:04d}.json").write_text(json.dumps(body))
    readable(inputs)
    started = time.monotonic()
    run = podman(
        "run", "--rm", "--name", f"{PREFIX}-batch", "-v", f"{model}:/mnt/models:ro,Z",
        "-v", f"{inputs}:/data/in:ro,Z", "-v", f"{out}:/data/out:Z",
        "-e", f"WORKBENCH_MODEL={json.dumps(case.model)}", images["pytorch"],
        "python", "-m", "workbench.serving.batch", "--inputs", "/data/in",
        "--output", "/data/out/results.jsonl", timeout=300, check=False,
    )  # fmt: skip
    seconds = time.monotonic() - started
    assert run.returncode == 0, run.stderr[-3000:]
    progress = [
        float(line.split("=")[1]) for line in run.stdout.split() if line.startswith("progress=")
    ]
    assert progress == sorted(progress) and progress[-1] == 1 and len(progress) >= 90
    lines = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [line["input"] for line in lines] == [f"in-{i:04d}.json" for i in range(1000)]
    assert "shape [1, 2]" in lines[500]["error"] and lines[500]["output"] is None
    good = [i for i in range(1000) if i != 500]
    assert all(lines[i]["error"] is None for i in good)
    got = np.array([lines[i]["output"][0] for i in good], np.float32)
    np.testing.assert_allclose(got, rows[good] @ W + B, rtol=1e-5, atol=1e-5)
    print(f"batch: 1,000 inputs in {seconds:.1f} s (container start included)")


def test_a_datasets_images_and_texts_are_batch_inputs(tmp_path):
    """A published dataset version's data/ folder: each image goes as base64 and each text
    file as text, keyed by its path (what auto-labelling sends a service); other files are
    an error line of their own."""
    import base64

    from workbench.serving.batch import input_files, read_items

    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "cat.png").write_bytes(b"\x89PNG-bytes")
    (tmp_path / "note.txt").write_text("great phone", encoding="utf-8")
    (tmp_path / "notes.doc").write_bytes(b"?")
    items = list(read_items(tmp_path, input_files(tmp_path), model=None))
    assert [i.key for i in items] == ["img/cat.png", "note.txt", "notes.doc"]
    png, text, other = items
    [instance] = png.body["instances"]
    assert base64.b64decode(instance["b64"]) == b"\x89PNG-bytes"
    assert instance["key"] == "img/cat.png" and png.batchable
    assert text.body == {"instances": [{"text": "great phone", "key": "note.txt"}]}
    assert other.body is None and "not an input file" in other.error
