"""client.models, client.services and client.batch: what they send (checked against a recorded
transport: tensors, traffic splits, the router's paths and credentials, the model server's
refusals), the sync wrapping of the objects they return, and the whole path on the real hub:
register versions from an instance's storage, deploy, predict (v1) and infer (v2) through the
stable URL, keys, a canary, promote and rollback, stop and start, metrics, a batch run and its
results, from the sync client and the async one."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from collections import Counter

import httpx
import pytest
from workbench import AsyncWorkbenchClient, WorkbenchClient, WorkbenchError
from workbench.resources.batch import BatchRun
from workbench.resources.models import Model, image_source, job_source, storage_source
from workbench.resources.services import Service, predictor, tensor

from tests.platform import run_code

SIGNATURE = {
    "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
    "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 3]}],
}
SERVICE = {
    "owner": "sdk",
    "name": "lin",
    "state": "running",
    "model_name": "lin",
    "url": "http://elsewhere/services/workbench/inference/sdk/lin",
    "predictors": [
        {
            "model": "lin",
            "version": 1,
            "owner": "sdk",
            "weight": 100,
            "flavor": "cpu.small",
            "min_replicas": 1,
            "max_replicas": 2,
            "target_in_flight": 4,
            "replicas": [{"id": "r1", "state": "ready", "restarts": 0}],
        }
    ],
}


# --- what the calls send (no hub) -----------------------------------------------------------


def recorded(handler) -> tuple[AsyncWorkbenchClient, list[httpx.Request]]:
    """An async client whose requests go to handler(request) -> httpx.Response, recorded."""
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    client = AsyncWorkbenchClient("http://platform.test", "tok-123", user="sdk")
    client._http = httpx.AsyncClient(transport=httpx.MockTransport(record))
    client._http_pid = os.getpid()
    return client, seen


def test_tensors_and_predictors_are_built_from_plain_values():
    import numpy as np

    assert tensor("x", [[1.0, 2.0], [3.0, 4.0]]) == {
        "name": "x",
        "shape": [2, 2],
        "datatype": "FP32",
        "data": [1.0, 2.0, 3.0, 4.0],
    }
    assert tensor("ids", [[1, 2, 3]])["datatype"] == "INT64"
    assert tensor("t", ["a", "b"])["datatype"] == "BYTES"
    array = tensor("a", np.arange(6, dtype=np.int32).reshape(2, 3))
    assert (array["shape"], array["datatype"], array["data"]) == (
        [2, 3],
        "INT32",
        [0, 1, 2, 3, 4, 5],
    )
    assert predictor("lin", 2, replicas=(0, 3), flavor="cpu.tiny", weight=10) == {
        "model": "lin",
        "version": 2,
        "weight": 10,
        "min_replicas": 0,
        "max_replicas": 3,
        "flavor": "cpu.tiny",
    }
    assert predictor("lin", 1, replicas=2)["min_replicas"] == 2
    assert job_source("train", 3, "output/model") == {
        "kind": "job",
        "job": "train",
        "version": 3,
        "path": "output/model",
    }
    assert storage_source("nb", "m") == {"kind": "storage", "instance": "nb", "path": "m"}
    assert image_source("saved:a/s:v1", "serve")["kind"] == "image"


def test_a_traffic_split_keeps_the_predictors_and_adds_a_canary():
    service = Service(
        AsyncWorkbenchClient("http://platform.test", "t"), json.loads(json.dumps(SERVICE))
    )
    split = service._traffic({"1": 90, "2": 10})
    assert [(p["model"], p["version"], p["weight"]) for p in split] == [
        ("lin", 1, 90),
        ("lin", 2, 10),
    ]
    # the canary takes the stable predictor's settings, without its live replicas
    assert split[1]["flavor"] == "cpu.small" and split[1]["max_replicas"] == 2
    assert "replicas" not in split[0]
    other = service._traffic({"lin:1": 50, "other:4": 50})
    assert other[1]["model"] == "other" and other[1]["version"] == 4
    with pytest.raises(WorkbenchError, match="not a version"):
        service._traffic({"latest": 100})


async def test_calls_go_through_the_stable_url_with_a_bearer_credential():
    def answer(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith(":predict"):
            body = json.loads(request.content)
            if body["instances"] == [[0]]:
                return httpx.Response(400, json={"error": "x: expected shape [-1, 4], got [1, 1]"})
            return httpx.Response(200, json={"predictions": [[1.0, 2.0, 3.0]]})
        if path.endswith("/infer"):
            return httpx.Response(200, json={"model_name": "lin", "outputs": []})
        return httpx.Response(404, json={"status": 404, "message": "No service 'x'."})

    client, seen = recorded(answer)
    service = Service(client, SERVICE)
    # the client's own platform address, not the hub's public one (instances reach the API
    # at another address)
    assert service.url == "http://platform.test/services/workbench/inference/sdk/lin"
    assert await service.predict([[1, 2, 3, 4]]) == [[1.0, 2.0, 3.0]]
    request = seen[-1]
    assert request.url.path == "/services/workbench/inference/sdk/lin/v1/models/lin:predict"
    assert request.headers["authorization"] == "Bearer tok-123"
    assert json.loads(request.content) == {"instances": [[1, 2, 3, 4]]}
    await service.predict({"instances": [[1, 2, 3, 4]]}, key="wbk_secret")
    assert seen[-1].headers["authorization"] == "Bearer wbk_secret"
    v2 = {"inputs": [tensor("x", [[1.0, 2.0, 3.0, 4.0]])]}
    assert (await service.predict(v2))["model_name"] == "lin"
    assert seen[-1].url.path.endswith("/v2/models/lin/infer")
    await service.infer({"x": [[1.0, 2.0, 3.0, 4.0]]}, outputs=["y"], request_id="r-1")
    body = json.loads(seen[-1].content)
    assert body == {**v2, "outputs": [{"name": "y"}], "id": "r-1"}
    # the model server's refusal keeps its reason
    with pytest.raises(WorkbenchError) as e:
        await service.predict([[0]])
    assert e.value.status == 400 and "expected shape" in e.value.message
    await client.aclose()


def test_sync_objects_block_including_a_services_keys():
    client = WorkbenchClient("http://127.0.0.1:9", "t", user="sdk")
    from workbench.sync import SyncNamespace, _synced

    service = _synced(Service(client.aio, SERVICE))
    assert isinstance(service, SyncNamespace) and isinstance(service.keys, SyncNamespace)
    assert service.url.endswith("/inference/sdk/lin") and service.state == "running"
    with pytest.raises(WorkbenchError) as e:  # a blocking call: the error, not a coroutine
        service.keys.list()
    assert e.value.status == 0
    model = _synced(Model(client.aio, {"owner": "sdk", "name": "lin", "latest": 2}))
    assert model.latest == 2 and model.versions == []
    run = _synced(BatchRun(client.aio, {"owner": "sdk", "name": "b", "version": 1}))
    assert run.progress == 0.0 and run.output == "jobs/b/1/output/predictions.jsonl"


# --- on the real hub ------------------------------------------------------------------------


def onnx_bytes(weights, bias) -> bytes:
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
            helper.make_tensor(
                "W", TensorProto.FLOAT, [4, 3], [float(v) for r in weights for v in r]
            ),
            helper.make_tensor("B", TensorProto.FLOAT, [3], [float(v) for v in bias]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


# version 1: y = (x0 + x1, x2, x3); version 2: y = the same + 100, told apart by its outputs
W = [[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]]
V1, V2 = onnx_bytes(W, [0, 0, 0]), onnx_bytes(W, [100, 100, 100])
X = [1.0, 2.0, 3.0, 4.0]
Y1, Y2 = [3.0, 3.0, 4.0], [103.0, 103.0, 104.0]
WRITE = """\
import base64, json, os
for path, data in {files!r}.items():
    os.makedirs(os.path.dirname(path), exist_ok=True)
    open(path, "wb").write(base64.b64decode(data))
os.makedirs("inputs", exist_ok=True)
with open("inputs/rows.jsonl", "w") as f:
    for i in range(50):
        f.write(json.dumps([[i, 1, 2, 3]]) + "\\n")
print("written")
"""


@pytest.fixture(scope="module")
def sdk(hub):
    return hub.add_user("sdk")


@pytest.fixture(scope="module")
def storage(sdk):
    """sdk's running instance "nb": two model versions' files and 50 batch inputs."""
    sdk.instances.create("nb", image="python", flavor="cpu.tiny", storage_gib=1)
    deadline = time.monotonic() + 120
    while (instance := sdk.instances.get("nb"))["state"] != "running":
        assert time.monotonic() < deadline, instance
        time.sleep(1)
    files = {
        "v1/lin.onnx": base64.b64encode(V1).decode(),
        "v2/lin.onnx": base64.b64encode(V2).decode(),
    }
    out = run_code(sdk, instance["url"], WRITE.format(files=files))
    assert out["error"] is None and "written" in out["stdout"], out
    yield instance
    for service in sdk.services.list():
        sdk.services.delete(service["name"])
    for run in sdk.batch.list():
        sdk.jobs.delete(run["name"])
    for model in sdk.models.list():
        sdk.models.delete(model["name"])
    sdk.instances.stop("nb")
    sdk.instances.delete("nb")


def outputs(service, n: int) -> Counter:
    """Which version answered each of n predictions (by its outputs)."""
    seen = Counter()
    for _ in range(n):
        (y,) = service.predict([X])
        seen["v2" if y == pytest.approx(Y2) else "v1" if y == pytest.approx(Y1) else str(y)] += 1
    return seen


def wait_for(what, condition, timeout=180):
    deadline = time.monotonic() + timeout
    while not (value := what()) or not condition(value):
        assert time.monotonic() < deadline, value
        time.sleep(1)
    return value


@pytest.mark.integration
def test_models_services_and_batch_from_the_sdk(sdk, storage):
    model = sdk.models.create(
        "lin",
        format="onnx",
        source=storage_source("nb", "v1"),
        signature=SIGNATURE,
        description="x to y",
    )
    assert (model.name, model.latest, model.description) == ("lin", 1, "x to y")
    (v1,) = model.versions
    assert v1["state"] == "ready" and [f["path"] for f in v1["files"]] == ["lin.onnx"]
    v2 = model.add_version(format="onnx", source=storage_source("nb", "v2"))
    assert (v2["version"], v2["state"]) == (2, "ready")
    assert [v["version"] for v in model.versions] == [1, 2]
    assert [m["name"] for m in sdk.models.list()] == ["lin"]
    assert sdk.models.get("lin").latest == 2
    with pytest.raises(WorkbenchError) as e:
        sdk.models.create("lin", format="onnx", source=storage_source("nb", "v1"))
    assert e.value.status == 409

    # deploy version 1 and call it through the stable URL
    service = model.deploy("lin", version=1, flavor="cpu.small", replicas=1, wait=300)
    assert service.state == "running"
    assert service.predict([X]) == [pytest.approx(Y1)]
    answer = service.infer({"x": [X, X]})
    (y,) = answer["outputs"]
    assert y["shape"] == [2, 3] and y["data"] == pytest.approx(Y1 + Y1)
    with pytest.raises(WorkbenchError) as e:
        service.predict([[1.0, 2.0]])
    assert e.value.status == 400
    with pytest.raises(WorkbenchError) as e:  # a model a service uses stays
        model.delete()
    assert e.value.status == 409

    # keys: shown once, listed by prefix, revoked at once
    key = service.keys.create("ci")
    assert key["key"].startswith("wbk_") and key["prefix"] == key["key"][:8]
    listed = service.keys.list()
    assert [k["name"] for k in listed] == ["ci"] and "key" not in listed[0]
    assert service.predict([X], key=key["key"]) == [pytest.approx(Y1)]
    service.keys.delete("ci")
    with pytest.raises(WorkbenchError) as e:
        service.predict([X], key=key["key"])
    assert e.value.status == 401

    # a canary of version 2, promoted; then version 1 as a canary, rolled back
    service.update(traffic={"1": 50, "2": 50})
    assert [(p["version"], p["weight"]) for p in service.predictors] == [(1, 50), (2, 50)]
    service.wait_ready(300)
    wait_for(lambda: outputs(service, 6), lambda seen: seen["v2"] > 0)
    seen = outputs(service, 30)
    assert seen["v1"] > 0 and seen["v2"] > 0 and sum(seen.values()) == 30, seen
    service.promote()
    assert [(p["version"], p["weight"]) for p in service.predictors] == [(2, 100)]
    assert outputs(service, 10) == Counter(v2=10)
    service.update(traffic={"2": 90, "1": 10})
    assert [p["version"] for p in service.predictors] == [2, 1]
    service.rollback()
    assert [(p["version"], p["weight"]) for p in service.predictors] == [(2, 100)]
    assert outputs(service, 5) == Counter(v2=5)

    metrics = service.metrics()
    assert metrics["predictors"]["lin:2"]["requests"] >= 15
    assert "lin:2" in service.metrics(format="prometheus")

    service.stop()
    wait_for(lambda: sdk.services.get("lin").state, lambda state: state == "stopped")
    with pytest.raises(WorkbenchError) as e:
        service.predict([X])
    assert e.value.status == 503
    assert e.value.message == (
        "Service sdk/lin is stopped (stopped by the user); start it with POST .../start."
    )
    service.start()
    service.wait_ready(300)
    assert service.predict([X]) == [pytest.approx(Y2)]

    # a batch run of version 1 over 50 inputs
    run = sdk.batch.run(model, 1, inputs="nb:inputs", name="lin-rows", flavor="cpu.small")
    assert (run.name, run.version, run.model, run.model_version) == ("lin-rows", 1, "lin", 1)
    final = run.wait(timeout=300)
    assert final["state"] == "succeeded", run.read_logs()
    assert run.progress == 1.0
    results = run.results()
    assert [r["input"] for r in results] == [f"rows.jsonl#{n}" for n in range(1, 51)]
    assert results[7]["output"] == [pytest.approx([8.0, 2.0, 3.0])]
    assert [r["name"] for r in sdk.batch.list()] == ["lin-rows"]
    assert sdk.batch.get("lin-rows").progress == 1.0
    assert run.output == "jobs/lin-rows/1/output/predictions.jsonl"
    assert "output/predictions.jsonl" in [f["path"] for f in run.files()]

    # the async client sees the same
    async def look():
        async with AsyncWorkbenchClient(sdk.url, sdk.token) as aclient:
            found = await aclient.services.get("lin")
            runs = await aclient.batch.list()
            return found.state, await found.predict([X]), runs[0]["progress"]

    state, predictions, progress = asyncio.run(look())
    assert (state, predictions, progress) == ("running", [pytest.approx(Y2)], 1.0)

    service.delete()
    with pytest.raises(WorkbenchError) as e:
        sdk.services.get("lin")
    assert e.value.status == 404
    model.delete()
    assert sdk.models.list() == []
