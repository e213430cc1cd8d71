"""`workbench models|services|batch ...`: usage errors before any request (exit 2), the server's
refusals as exit 1 with its message, and the whole path on the real hub: register versions,
deploy, predict, a canary by --traffic, promote, keys, metrics, stop and start, a batch run
followed to its end, its list and results."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time

import pytest

from tests.platform import REPO, free_port, run_code


def run_cli(*args, home, url=None, expect=0, timeout=300):
    env = {**os.environ, "HOME": str(home)}
    env.pop("WORKBENCH_TOKEN", None)
    env.pop("JUPYTERHUB_SERVER_NAME", None)
    proc = subprocess.run(
        [sys.executable, "-m", "hub.cli", *args, *(["--url", url] if url else [])],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=timeout,
    )
    assert proc.returncode == expect, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["models", "create", "m", "--format", "onnx"], "give one source"),
        (
            ["models", "create", "m", "--format", "onnx", "--job", "j", "--instance", "nb"],
            "give one source",
        ),
        (["models", "create", "m", "--format", "onnx", "--instance", "nb"], "needs --path"),
        (["models", "create", "m", "--format", "keras", "--job", "j"], "invalid choice: 'keras'"),
        (
            ["models", "create", "m", "--format", "onnx", "--job", "j", "--signature", "{x"],
            "--signature is not JSON",
        ),
        (["services", "update", "s", "--traffic", "1=90,2=20"], "add up to 110, not 100"),
        (["services", "update", "s", "--traffic", "1=ninety"], "'ninety' is not a whole percent"),
        (["services", "update", "s", "--traffic", "90"], "is not NAME=VALUE"),
        (["services", "deploy", "s", "--model", "m", "--version", "1", "--replicas", "3-1"], "MIN"),
        (["services", "deploy", "s", "--model", "m", "--version", "1", "--replicas", "a"], "N or"),
        (["services", "deploy", "s", "--model", "m"], "required: --version"),
        (["services", "predict", "s", "--data", "[1, 2"], "--data is not JSON"),
        (["services", "predict", "s", "--data", "@/nonexistent/x.json"], "cannot read"),
        (["services", "keys", "create", "s"], "required: name"),
        (["batch", "run", "--model", "m", "--inputs", "nb"], "not INSTANCE:PATH"),
        (["batch", "run", "--inputs", "nb:x"], "required: --model"),
    ],
)
def test_usage_errors_exit_2_before_any_request(tmp_path, args, message):
    """The platform's address answers nothing: a request would fail with exit 1."""
    url = f"http://127.0.0.1:{free_port()}"
    out = run_cli(*args, home=tmp_path, url=url, expect=2)
    assert message in out
    assert "not reachable" not in out


def test_no_platform_is_exit_1(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    out = run_cli("services", "list", home=tmp_path, url=url, expect=1)
    assert "error: The platform API" in out and "not reachable" in out


# --- on the real hub ----------------------------------------------------------------------


def onnx_file(bias: float) -> bytes:
    """y = (x0 + x1, x2, x3) + bias for x of shape [N, 4]."""
    from onnx import TensorProto, helper

    weights = [1, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1]
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["xw"]),
            helper.make_node("Add", ["xw", "B"], ["y"]),
        ],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
        [
            helper.make_tensor("W", TensorProto.FLOAT, [4, 3], [float(w) for w in weights]),
            helper.make_tensor("B", TensorProto.FLOAT, [3], [bias] * 3),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


WRITE = """\
import base64, json, os
for path, data in {files!r}.items():
    os.makedirs(os.path.dirname(path), exist_ok=True)
    open(path, "wb").write(base64.b64decode(data))
os.makedirs("rows", exist_ok=True)
with open("rows/r.jsonl", "w") as f:
    for i in range(20):
        f.write(json.dumps([[i, 0, 0, 0]]) + "\\n")
print("written")
"""


@pytest.fixture(scope="module")
def cli(hub, tmp_path_factory):
    """Run `workbench ...` as the signed-in user clii, whose instance "nb" holds two model
    versions' files and 20 batch inputs."""
    home = tmp_path_factory.mktemp("clii-home")
    client = hub.add_user("clii")

    def run(*args, expect=0, password=None, timeout=400):
        env = {**os.environ, "HOME": str(home), "WORKBENCH_CONFIG": str(hub.config)}
        env.pop("WORKBENCH_TOKEN", None)
        env.pop("JUPYTERHUB_SERVER_NAME", None)
        if password:
            env["WORKBENCH_PASSWORD"] = password
        proc = subprocess.run(
            [sys.executable, "-m", "hub.cli", *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=REPO,
            timeout=timeout,
        )
        assert proc.returncode == expect, proc.stdout + proc.stderr
        return proc.stdout + proc.stderr

    run("login", "--user", "clii", "--url", hub.url, password=hub.passwords["clii"])
    client.instances.create("nb", image="python", flavor="cpu.tiny", storage_gib=1)
    deadline = time.monotonic() + 120
    while (instance := client.instances.get("nb"))["state"] != "running":
        assert time.monotonic() < deadline, instance
        time.sleep(1)
    files = {
        "m1/lin.onnx": base64.b64encode(onnx_file(0)).decode(),
        "m2/lin.onnx": base64.b64encode(onnx_file(100)).decode(),
    }
    out = run_code(client, instance["url"], WRITE.format(files=files))
    assert out["error"] is None and "written" in out["stdout"], out
    yield run
    for service in client.services.list():
        client.services.delete(service["name"])
    for job in client.jobs.list():
        client.jobs.delete(job["name"])
    for model in client.models.list():
        client.models.delete(model["name"])
    client.instances.stop("nb")
    client.instances.delete("nb")


def wait_state(cli, state: str, timeout: float = 300):
    deadline = time.monotonic() + timeout
    while f"state:   {state}" not in (out := cli("services", "show", "lin")):
        assert time.monotonic() < deadline, out
        time.sleep(2)


def predicted(out: str) -> list:
    return json.loads(out[out.index("[") :])


@pytest.mark.integration
def test_models_services_and_batch_from_the_command_line(cli, tmp_path):
    signature = tmp_path / "signature.json"
    signature.write_text(
        json.dumps(
            {
                "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
                "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 3]}],
            }
        )
    )
    out = cli(
        *("models", "create", "lin", "--format", "onnx", "--instance", "nb", "--path", "m1"),
        *("--signature", f"@{signature}", "--description", "adds up"),
    )
    assert "Registered model lin version 1 (ready)" in out
    out = cli(
        "models", "add-version", "lin", "--format", "onnx", "--instance", "nb", "--path", "m2"
    )
    assert "Registered model lin version 2 (ready)" in out
    out = cli("models", "list")
    assert "lin" in out and "adds up" in out and "LATEST" in out
    out = cli("models", "show", "lin", "--version", "1")
    assert "lin.onnx" in out and '"instance": "nb"' in out and "Version 1:" in out
    assert "Version 2:" not in out
    # the server's refusal: exit 1 with its message
    out = cli("models", "show", "nolin", expect=1)
    assert "error: No model 'nolin'" in out

    out = cli(
        *("services", "deploy", "lin", "--model", "lin", "--version", "1"),
        *("--flavor", "cpu.small", "--replicas", "1", "--wait"),
    )
    assert "Deploying service lin" in out and "/inference/clii/lin" in out
    assert "Service lin is running." in out
    out = cli("services", "predict", "lin", "--data", "[[1, 2, 3, 4]]")
    assert predicted(out) == [[3.0, 3.0, 4.0]]
    v2 = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 1, 1, 1]}]}
    out = cli("services", "predict", "lin", "--data", json.dumps(v2))
    assert json.loads(out)["outputs"][0]["data"] == [2.0, 1.0, 1.0]
    out = cli("services", "predict", "lin", "--data", "[[1, 2]]", expect=1)
    assert out.startswith("error:")
    out = cli("services", "list")
    assert "lin" in out and "lin:1 100%" in out

    # a canary of version 2, then promoted
    out = cli("services", "update", "lin", "--traffic", "1=90,2=10")
    assert "lin:1: 90% of traffic" in out and "lin:2: 10% of traffic" in out
    out = cli("services", "promote", "lin")
    assert "Service lin promoted" in out
    out = cli("services", "show", "lin")
    assert "lin:2: 100% of traffic" in out and "lin:1" not in out
    deadline = time.monotonic() + 180
    while True:
        out = cli(
            "services",
            "predict",
            "lin",
            "--data",
            "[[1, 2, 3, 4]]",
        )
        if predicted(out) == [[103.0, 103.0, 104.0]]:
            break
        assert time.monotonic() < deadline, out
        time.sleep(2)

    # keys: printed once, listed by prefix, revoked
    out = cli("services", "keys", "create", "lin", "ci")
    key = out.splitlines()[0]
    assert key.startswith("wbk_") and "shown this once" in out
    out = cli("services", "keys", "list", "lin")
    assert "ci" in out and key[:8] in out and key not in out
    out = cli("services", "predict", "lin", "--data", "[[0, 0, 0, 0]]", "--key", key)
    assert predicted(out) == [[100.0, 100.0, 100.0]]
    cli("services", "keys", "delete", "lin", "ci")
    out = cli("services", "predict", "lin", "--data", "[[0, 0, 0, 0]]", "--key", key, expect=1)
    assert "error:" in out

    out = cli("services", "metrics", "lin")
    assert "lin:2" in out and "REQUESTS" in out
    assert "lin:2" in cli("services", "metrics", "lin", "--prometheus")
    assert "Service lin stopping" in cli("services", "stop", "lin")
    wait_state(cli, "stopped")
    assert "Service lin starting" in cli("services", "start", "lin")
    wait_state(cli, "running")

    # a batch run of version 1, followed to its end
    out = cli(
        *("batch", "run", "rows", "--model", "lin", "--version", "1", "--inputs", "nb:rows"),
        *("--flavor", "cpu.small", "--follow"),
    )
    assert "Started batch run rows version 1" in out
    assert "progress=1" in out and "(succeeded)" in out
    assert "jobs/rows/1/output/predictions.jsonl (100% of the inputs)" in out
    out = cli("batch", "list")
    assert "rows" in out and "lin:1" in out and "100%" in out
    out = cli("batch", "show", "rows")
    assert "model:    lin version 1" in out and "progress: 100%" in out
    lines = [json.loads(line) for line in cli("batch", "results", "rows").splitlines()]
    assert [line["input"] for line in lines] == [f"r.jsonl#{n}" for n in range(1, 21)]
    assert lines[5]["output"] == [[5.0, 0.0, 0.0]]
    out = cli("batch", "run", "--model", "nolin", "--version", "1", "--inputs", "nb:rows", expect=1)
    assert "error: No model 'nolin'" in out

    out = cli("models", "delete", "lin", expect=1)
    assert "error:" in out  # a service uses it
    assert "Deleted service lin" in cli("services", "delete", "lin")
    out = cli("services", "show", "lin", expect=1)
    assert "error:" in out
    assert "Deleted model lin" in cli("models", "delete", "lin")
