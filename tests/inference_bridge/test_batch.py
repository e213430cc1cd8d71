"""Batch inference runs against a real hub: a registered ONNX model over a folder of an
instance's storage, run as a job version on the model's image with the model's files mounted
read-only; one output line per input in input order, progress as a metric, stop, the next
version under the same name, and refusals that leave nothing behind. The platform-only parts
of a job's spec (kind, mounts, environment) cannot be set through the jobs API.

The Kubernetes part (the model store's claim mounted read-only) is checked without a cluster,
against the official schemas."""

from __future__ import annotations

import base64
import io
import json
import time

import docker
import kubernetes_validate
import kubernetes_validate.utils
import numpy as np
import pytest
from workbench import WorkbenchError

from inference_bridge import batch
from tests.platform import run_code
from tests.training_bridge.jobs_helpers import archive, logs
from training_bridge import kube_manifests as km
from training_bridge.plan import JobPlan, Mount
from training_bridge.spec import check_platform_fields

FINISHED = ("succeeded", "failed", "stopped")
# y = x W + b: small integers, exact in float32
W = [[1, 0, 2], [0, 1, -1], [3, 1, 0], [0, 0, 1]]
B = [0.5, -1, 2]
SIGNATURE = {
    "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
    "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 3]}],
}


def row(i: int) -> list[float]:
    return [float(i % 7), float(i % 5) - 2, float(i % 3), 1.0]


def expected(x: list[float]) -> list[float]:
    return [sum(x[k] * W[k][j] for k in range(4)) + B[j] for j in range(3)]


def onnx_model() -> bytes:
    """An ONNX graph computing y = x W + b for x of shape [N, 4]."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["xw"]),
            helper.make_node("Add", ["xw", "B"], ["y"]),
        ],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
        [
            helper.make_tensor("W", TensorProto.FLOAT, [4, 3], [float(v) for r in W for v in r]),
            helper.make_tensor("B", TensorProto.FLOAT, [3], [float(v) for v in B]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def npy(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array, dtype=np.float32))
    return buffer.getvalue()


# the input folder: 1,000 inputs in 5 files (sorted: a.jsonl, b/c.jsonl, m.json, n.npy, z.json)
INPUTS = {
    "batch/a.jsonl": "".join(json.dumps([row(i)]) + "\n" for i in range(600)).encode(),
    "batch/b/c.jsonl": "".join(json.dumps([row(600 + i)]) + "\n" for i in range(397)).encode(),
    "batch/m.json": json.dumps({"instances": [row(997), row(998)]}).encode(),
    "batch/n.npy": npy(row(999)),
    "batch/z.json": json.dumps([row(1000)]).encode(),
}
EXPECTED_KEYS = (
    [f"a.jsonl#{n}" for n in range(1, 601)]
    + [f"b/c.jsonl#{n}" for n in range(1, 398)]
    + ["m.json", "n.npy", "z.json"]
)
WRITE = """\
import base64, os
files = {files!r}
for path, data in files.items():
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(base64.b64decode(data))
# a long input for the stop test: many lines, each one input
os.makedirs("slow", exist_ok=True)
with open("slow/many.jsonl", "w") as f:
    for i in range(200000):
        f.write("[[%d, 1, 2, 3]]\\n" % (i % 9))
print("written", len(files))
"""


# --- without a hub ----------------------------------------------------------------------


def test_platform_fields_are_checked_and_never_hold_host_paths():
    fields = check_platform_fields(
        {
            "kind": "batch",
            "mounts": [{"store": "models", "path": "./bat/lin/1", "target": "/mnt/models"}],
            "environment": {"WORKBENCH_MODEL_DIR": "/mnt/models"},
            "origin": {"model": "lin"},
        }
    )
    assert fields["mounts"] == [{"store": "models", "path": "bat/lin/1", "target": "/mnt/models"}]
    assert check_platform_fields(None) == {"kind": "training"}
    for bad in (
        {"kind": "serving"},
        {"mounts": [{"store": "models", "path": "/etc", "target": "/mnt/models"}]},
        {"mounts": [{"store": "models", "path": "a/../../etc", "target": "/mnt/models"}]},
        {"mounts": [{"store": "/var/lib", "path": "x", "target": "/mnt/models"}]},
        {"mounts": [{"store": "models", "path": "x", "target": "/job/code"}]},
        {"mounts": [{"store": "models", "path": "x", "target": "mnt"}]},
        {"mounts": [{"store": "models", "path": "x", "target": "/"}]},
        {"environment": {"A=B": "x"}},
        {"environment": {"A": 1}},
        {"host_path": "/"},
    ):
        with pytest.raises(ValueError):
            check_platform_fields(bad)


def test_the_batch_command_reads_the_input_channel_and_writes_the_output_folder():
    assert batch.batch_command("/job/inputs/.storage/nb/batch") == [
        *("python", "-m", "workbench.serving.batch"),
        *("--inputs", "/job/inputs/.storage/nb/batch"),
        *("--output", "/job/output/predictions.jsonl"),
    ]
    assert batch.output_path("run", 2) == "jobs/run/2/output/predictions.jsonl"


def test_on_kubernetes_the_model_is_a_read_only_sub_path_of_the_model_stores_claim():
    plan = JobPlan(
        owner="bat",
        job="run",
        version=1,
        object_name="wb-job-7",
        image_ref="registry.example.com/ai-workbench/pytorch:2.13-cpu",
        runtime="plain",
        command=tuple(batch.batch_command("/job/inputs/.storage/nb/batch")),
        code_source="bat/run/1/code",
        output_source="bat/run/1/output",
        checkpoint_source="bat/run/1/checkpoints",
        environment={"WORKBENCH_MODEL_DIR": "/mnt/models"},
        mounts=(Mount(source="bat/lin/1", target="/mnt/models", claim="workbench-models"),),
    )
    job = km.make_job(plan, namespace="wb", pvc_name="workbench-jobs", restart=0)
    version = kubernetes_validate.utils.latest_version()
    assert kubernetes_validate.validate(job, version, strict=True)
    pod = job["spec"]["template"]["spec"]
    (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["mountPath"] == "/mnt/models"]
    assert mount["subPath"] == "bat/lin/1" and mount["readOnly"] is True
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert volume["persistentVolumeClaim"] == {"claimName": "workbench-models", "readOnly": True}
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["WORKBENCH_MODEL_DIR"] == "/mnt/models"
    # a host path has no place in a cluster's manifest
    host = JobPlan(**{**plan.__dict__, "mounts": (Mount("/srv/models/x", "/mnt/models", "c"),)})
    with pytest.raises(ValueError, match="relative path"):
        km.make_job(host, namespace="wb", pvc_name="workbench-jobs", restart=0)
    from training_bridge.kubernetes import KubernetesJobRunner

    runner = KubernetesJobRunner("wb", store_claims={"models": "shared-models"})
    assert runner.store_claim("models") == "shared-models"
    assert runner.store_claim("other") == "workbench-other"


# --- on the real hub ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def bat(hub):
    return hub.add_user("bat")


@pytest.fixture(scope="module")
def batbob(hub):
    return hub.add_user("batbob")


@pytest.fixture(scope="module")
def model(hub, bat):
    """bat's running instance "nb" holding the inputs, and model "lin" from its storage."""
    bat.api(
        "POST",
        "users/bat/instances",
        {"name": "nb", "image": "python", "flavor": "cpu.tiny", "storage_gib": 1},
    )
    deadline = time.monotonic() + 120
    while (instance := bat.instance("nb"))["state"] != "running":
        assert time.monotonic() < deadline, instance
        time.sleep(1)
    files = {path: base64.b64encode(data).decode() for path, data in INPUTS.items()}
    files["model/lin.onnx"] = base64.b64encode(onnx_model()).decode()
    out = run_code(bat, instance["url"], WRITE.format(files=files), timeout=300)
    assert out["error"] is None and "written" in out["stdout"], out
    made = bat.api(
        "POST",
        "models",
        {
            "name": "lin",
            "format": "onnx",
            "signature": SIGNATURE,
            "source": {"kind": "storage", "instance": "nb", "path": "model"},
        },
    )
    assert made["versions"][0]["state"] == "ready", made
    yield made
    for run in bat.api("GET", "batch"):
        bat.api("DELETE", f"jobs/bat/{run['name']}")
    bat.api("DELETE", "models/bat/lin")
    bat.stop_instance("nb")
    bat.delete_instance("nb")


def start(client, **fields) -> dict:
    body = {
        "name": "score",
        "model": "lin",
        "version": 1,
        "inputs": {"instance": "nb", "path": "batch"},
        "flavor": "cpu.small",
        **fields,
    }
    return client.api("POST", "batch", body)


def wait_run(client, name, version=1, states=FINISHED, timeout=300) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        run = client.api("GET", f"batch/bat/{name}")
        (data,) = [v for v in run["versions"] if v["version"] == version]
        if data["state"] in states:
            return data
        assert time.monotonic() < deadline, data
        time.sleep(1)


def predictions(client, name, version=1) -> list[dict]:
    url = f"{client.api_url}/jobs/bat/{name}/versions/{version}/files/output/predictions.jsonl"
    r = client.session.get(url, timeout=60)
    assert r.status_code == 200, r.text[:300]
    return [json.loads(line) for line in r.text.splitlines()]


@pytest.mark.integration
def test_a_batch_run_gives_one_line_per_input_in_input_order(hub, bat, model):
    made = start(bat)
    assert (made["owner"], made["name"], made["version"]) == ("bat", "score", 1)
    assert (made["model"], made["model_version"], made["progress"]) == ("lin", 1, 0.0)
    assert made["output"] == "jobs/score/1/output/predictions.jsonl"
    assert made["state"] == "queued"
    spec = made["spec"]
    assert spec["kind"] == "batch" and spec["image"] == "pytorch" and spec["flavor"] == "cpu.small"
    assert spec["inputs"] == {"data": {"instance": "nb", "path": "batch"}}
    # the model's store and its place in the node, never a path on the platform's machine
    assert spec["mounts"] == [{"store": "models", "path": "bat/lin/1", "target": "/mnt/models"}]
    assert json.loads(spec["environment"]["WORKBENCH_MODEL"])["format"] == "onnx"
    done = wait_run(bat, "score")
    assert done["state"] == "succeeded", logs(bat, "bat", "score")
    lines = predictions(bat, "score")
    assert [line["input"] for line in lines] == EXPECTED_KEYS
    assert all(line["error"] is None for line in lines), [x for x in lines if x["error"]][:3]
    for i, line in enumerate(lines[:997]):
        assert line["output"] == [pytest.approx(expected(row(i)))], (line, i)
    assert lines[997]["output"] == [
        pytest.approx(expected(row(997))),
        pytest.approx(expected(row(998))),
    ]
    assert lines[998]["output"] == [pytest.approx(expected(row(999)))]
    assert lines[999]["output"] == [pytest.approx(expected(row(1000)))]
    # progress: a metric of the run that reached 1, shown with the run
    assert done["progress"] == 1.0
    points = bat.api("GET", "jobs/bat/score/versions/1/metrics")["progress"]
    assert points[-1]["value"] == 1.0 and len(points) > 10
    assert [p["value"] for p in points] == sorted(p["value"] for p in points)
    (listed,) = [r for r in bat.api("GET", "batch") if r["name"] == "score"]
    assert (listed["model"], listed["model_version"], listed["progress"]) == ("lin", 1, 1.0)
    assert listed["state"] == "succeeded"
    # the predictions are in the owner's instances too, at the run's output path
    instance = bat.instance("nb")
    url = f"{hub.url}{instance['url']}api/contents/{done['output']}"
    r = bat.session.get(url, params={"content": "0"}, timeout=30)
    assert r.status_code == 200, r.text[:300]
    # the same name again: the run's next version (another folder of inputs)
    again = start(bat, inputs={"instance": "nb", "path": "batch/b"})
    assert again["version"] == 2 and again["output"] == "jobs/score/2/output/predictions.jsonl"
    assert wait_run(bat, "score", 2)["state"] == "succeeded"
    assert [x["input"] for x in predictions(bat, "score", 2)] == [
        f"c.jsonl#{n}" for n in range(1, 398)
    ]


@pytest.mark.integration
def test_a_batch_run_stops_when_asked(bat, model):
    start(bat, name="slow", inputs={"instance": "nb", "path": "slow"})
    wait_run(bat, "slow", states=("running", *FINISHED))
    stopped = bat.api("POST", "jobs/bat/slow/versions/1/stop")
    assert stopped["state"] in ("stopping", "stopped"), stopped
    done = wait_run(bat, "slow", timeout=120)
    assert done["state"] == "stopped" and "stopped by the user" in done["reason"], done
    assert done["progress"] < 1


def engine_checks(engine) -> list:
    client = docker.APIClient(base_url=engine.url, timeout=60)
    return client.containers(all=True, filters={"label": "ai-workbench.check=input"})


@pytest.mark.integration
@pytest.mark.parametrize(
    "fields, status, words",
    [
        ({"model": "batbob/lin"}, 403, ["your own models"]),
        ({"model": "nolin"}, 404, ["No model 'nolin'"]),
        ({"version": 9}, 404, ["no version 9"]),
        ({"version": "1"}, 400, ["version must be"]),
        ({"inputs": {"instance": "nb", "path": "nope"}}, 400, ["No folder 'nope'"]),
        ({"inputs": {"instance": "nb", "path": "batch/m.json"}}, 400, ["No folder"]),
        ({"inputs": {"instance": "nb", "path": "../etc"}}, 400, ["'..'"]),
        ({"inputs": {"instance": "nb", "path": "/etc"}}, 400, ["'..'"]),
        ({"inputs": {"instance": "ghost", "path": "batch"}}, 400, ["no instance 'ghost'"]),
        ({"inputs": "nb:batch"}, 400, ["inputs must be"]),
        ({"flavor": "huge"}, 400, ["huge"]),
        ({"name": "Bad_Name"}, 400, ["Invalid job name"]),
        ({"mounts": [{"store": "models", "path": "batbob"}]}, 400, ["Unknown field(s) mounts"]),
    ],
)
def test_bad_batch_requests_are_refused_and_leave_nothing(
    bat, model, engine, fields, status, words
):
    with pytest.raises(WorkbenchError) as e:
        start(bat, **{"name": "bad", **fields})
    assert e.value.status == status, e.value.message
    for word in words:
        assert word.lower() in e.value.message.lower(), e.value.message
    assert "bad" not in [r["name"] for r in bat.api("GET", "batch")]
    assert "bad" not in [j["name"] for j in bat.api("GET", "jobs")]
    assert engine_checks(engine) == []


@pytest.mark.integration
def test_platform_fields_cannot_come_through_the_jobs_api(bat, batbob, model):
    """A submission naming kind, mounts or environment gets none of them; a batch run is not
    re-run through the jobs route; a batch run cannot take a training job's name; another
    user neither sees nor stops a run."""
    source = {"kind": "file", "entry": "t.py", "archive": archive({"t.py": "print(1)\n"})}
    made = bat.api(
        "POST",
        "jobs",
        {
            "name": "sneaky",
            "source": source,
            "image": "python",
            "flavor": "cpu.tiny",
            "kind": "batch",
            "mounts": [{"store": "models", "path": "batbob", "target": "/mnt/models"}],
            "environment": {"LD_PRELOAD": "/tmp/x.so"},
            "origin": {"model": "lin"},
        },
    )
    assert not {"kind", "mounts", "environment", "origin"} & set(made["spec"])
    assert "sneaky" not in [r["name"] for r in bat.api("GET", "batch")]
    with pytest.raises(WorkbenchError) as e:
        bat.api("GET", "batch/bat/sneaky")
    assert e.value.status == 404
    with pytest.raises(WorkbenchError) as e:
        start(bat, name="sneaky")
    assert e.value.status == 409 and "training job named 'sneaky'" in e.value.message
    with pytest.raises(WorkbenchError) as e:
        bat.api("POST", "jobs/bat/sneaky/versions", {"kind": "batch"})
    assert e.value.status == 400
    bat.api("DELETE", "jobs/bat/sneaky")
    run = start(bat, name="mine", inputs={"instance": "nb", "path": "batch/b"})
    with pytest.raises(WorkbenchError) as e:
        bat.api("POST", "jobs/bat/mine/versions", {"command": "python -c 'print(1)'"})
    assert e.value.status == 400 and "POST /batch" in e.value.message
    for path in ("batch/bat/mine", "jobs/bat/mine/versions/1"):
        with pytest.raises(WorkbenchError) as e:
            batbob.api("GET", path)
        assert e.value.status == 404
    with pytest.raises(WorkbenchError) as e:
        batbob.api("POST", "jobs/bat/mine/versions/1/stop")
    assert e.value.status == 404
    assert batbob.api("GET", "batch") == []
    assert wait_run(bat, "mine", run["version"])["state"] == "succeeded"
