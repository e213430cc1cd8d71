"""Online services against a real hub, served by the real runtime in real containers.

ONNX models registered from a job's output run in `python -m workbench.serving` (kserve's
ModelServer), called over v2 (kserve's own client and plain HTTP) and v1 through the stable
URL; access keys, canary split, promote and roll back under load, a killed replica, scaling up
and down and from zero, refusals that start nothing, and a hub restart that keeps replicas
serving.

The module runs a hub of its own (its inference settings scale down after 3 s)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import docker
import numpy as np
import onnx
import pytest
import requests
from onnx import TensorProto, helper, numpy_helper
from workbench import WorkbenchError

from tests.platform import engine_names, free_port, running_hub
from tests.training_bridge.jobs_helpers import archive, submit, wait_for

SIGNATURE = {
    "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
    "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 3]}],
}
X = [[1.0, 2.0, 3.0, 4.0]]
# y = x W + b: version 1 answers [2, 4, 6] for X, version 2 [10, 20, 30]
EXPECTED = {1: [2.0, 4.0, 6.0], 2: [10.0, 20.0, 30.0]}


def linear(scale: float, bias) -> bytes:
    """An ONNX graph y = x @ (scale * I[4x3]) + bias, made here with onnx's helpers."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3])
    weights = numpy_helper.from_array(np.eye(4, 3, dtype=np.float32) * scale, "W")
    offset = numpy_helper.from_array(np.array(bias, np.float32), "b")
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["xw"]),
        helper.make_node("Add", ["xw", "b"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "linear", [x], [y], [weights, offset])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


TRAIN = f"""\
import os
out = os.environ["WORKBENCH_OUTPUT_DIR"]
for version, data in (("v1", {linear(1, [1, 2, 3])!r}), ("v2", {linear(10, [0, 0, 0])!r})):
    os.makedirs(os.path.join(out, version), exist_ok=True)
    with open(os.path.join(out, version, "model.onnx"), "wb") as f:
        f.write(data)
print("workbench-metric name=accuracy value=0.97 step=0", flush=True)
"""


@pytest.fixture(scope="module")
def svc_hub(tmp_path_factory, engine, test_catalog):
    settings = (
        f"[workbench.inference]\npoll_seconds = 0.5\nscale_down_seconds = 3\nport = {free_port()}\n"
    )
    with running_hub(
        tmp_path_factory.mktemp("svc-hub"),
        engine.url,
        "services",
        catalog=test_catalog,
        extra_settings=settings,
    ) as h:
        yield h


@pytest.fixture(scope="module")
def svc(svc_hub):
    """A user with a model "lin" of two versions (from a job's output)."""
    client = svc_hub.add_user("svc")
    source = {"kind": "file", "entry": "train.py", "archive": archive({"train.py": TRAIN})}
    submit(client, "svc-train", source)
    assert wait_for(client, "svc", "svc-train")["state"] == "succeeded"
    for version in ("v1", "v2"):
        body = {
            "format": "onnx",
            "source": {"kind": "job", "job": "svc-train", "path": f"output/{version}"},
            "signature": SIGNATURE,
        }
        if version == "v1":
            client.api("POST", "models", {"name": "lin", **body})
        else:
            client.api("POST", "models/svc/lin/versions", body)
    return client


@pytest.fixture(scope="module")
def svc_other(svc_hub):
    return svc_hub.add_user("svc-other")


@pytest.fixture(autouse=True)
def no_services_left(svc):
    """Every test starts with no services of svc: each deploys the ones it needs, and what
    it deployed is deleted after it, so no test depends on another's."""
    yield
    for service in svc.api("GET", "services"):
        if service["owner"] == "svc":
            svc.api("DELETE", f"services/svc/{service['name']}")


def deploy(client, name, *predictors, **more) -> dict:
    body = {"name": name, "predictors": list(predictors), **more}
    return client.api("POST", "services", body)


def deployed(client, name, *predictors, **more) -> dict:
    """A service of the test's own, running with a ready replica of every predictor."""
    deploy(client, name, *predictors, **more)
    wait_service(client, name, lambda s: s["state"] == "running")
    for p in predictors:
        wait_service(client, name, ready(p["version"]))
    return client.api("GET", f"services/svc/{name}")


def predictor(version, weight=100, **more) -> dict:
    return {"model": "lin", "version": version, "weight": weight, "flavor": "cpu.tiny", **more}


def wait_service(client, name, check, timeout=180) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        service = client.api("GET", f"services/svc/{name}")
        if check(service):
            return service
        if time.monotonic() > deadline:
            raise AssertionError(f"service {name} is not there yet: {service}")
        time.sleep(0.5)


def ready(version):
    def check(service):
        for p in service["predictors"]:
            if p["version"] == version and any(r["state"] == "ready" for r in p["replicas"]):
                return True
        return False

    return check


def v2_body(rows=X) -> dict:
    flat = [v for row in rows for v in row]
    return {"inputs": [{"name": "x", "shape": [len(rows), 4], "datatype": "FP32", "data": flat}]}


def infer(session: requests.Session, url: str, key: str, timeout=120) -> requests.Response:
    return session.post(
        f"{url}/v2/models/lin/infer",
        json=v2_body(),
        headers={"Authorization": f"Bearer {key}"},
        timeout=timeout,
    )


def version_of(answer: dict) -> int:
    data = answer["outputs"][0]["data"]
    return next(v for v, expected in EXPECTED.items() if data == expected)


class Load:
    """Callers in threads, each sending requests back to back until stopped."""

    def __init__(self, url, key, callers=3):
        self.url, self.key = url, key
        self.results: list[tuple[int, int | None]] = []
        self.stopped = threading.Event()
        self.threads = [threading.Thread(target=self._run) for _ in range(callers)]
        for thread in self.threads:
            thread.start()

    def _run(self):
        session = requests.Session()
        while not self.stopped.is_set():
            try:
                r = infer(session, self.url, self.key)
                version = version_of(r.json()) if r.status_code == 200 else None
                self.results.append((r.status_code, version))
            except requests.RequestException as e:
                self.results.append((0, str(e)))

    def stop(self) -> list:
        self.stopped.set()
        for thread in self.threads:
            thread.join()
        return self.results


def service_containers(engine_url: str, hub, service: dict | None = None) -> list[str]:
    """The hub's replica containers, or those of one service (named `<its object>-<hex>`)."""
    return sorted(
        engine_names(
            engine_url, "container", object_of(service) if service else f"{hub.prefix}-svc-"
        )
    )


def object_of(service: dict) -> str:
    """The prefix of a service's engine objects, from one of its replicas' names."""
    replica = next(r for p in service["predictors"] for r in p["replicas"])
    return replica["id"].rsplit("-", 1)[0] + "-"


def test_deploy_and_call_over_v2_and_v1_with_keys(svc_hub, svc, svc_other, engine):
    made = deploy(svc, "lin", predictor(1))
    assert made["state"] == "deploying" and made["model_name"] == "lin"
    url = made["url"]
    assert url == f"{svc_hub.url}/services/workbench/inference/svc/lin"
    service = wait_service(svc, "lin", lambda s: s["state"] == "running")
    (replica,) = service["predictors"][0]["replicas"]
    assert replica["state"] == "ready" and replica["restarts"] == 0
    key = svc.api("POST", "services/svc/lin/keys", {"name": "ci"})
    assert key["key"].startswith("wbk_") and key["prefix"] == key["key"][:8]
    assert svc.api("GET", "services/svc/lin/keys")[0].keys() == {
        "name",
        "prefix",
        "created",
        "last_used",
    }
    auth = {"Authorization": f"Bearer {key['key']}"}

    # v2 with kserve's own client, JSON and binary tensors
    from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig

    async def kserve_call(binary: bool):
        client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=60))
        tensor = InferInput("x", [2, 4], "FP32")
        tensor.set_data_from_numpy(np.array(X * 2, np.float32), binary_data=binary)
        try:
            answer = await client.infer(
                url, InferRequest("lin", [tensor]), model_name="lin", headers=dict(auth)
            )
        finally:
            await client.close()
        return answer.outputs[0].as_numpy()

    for binary in (False, True):
        y = asyncio.run(kserve_call(binary))
        assert y.tolist() == [EXPECTED[1], EXPECTED[1]], binary

    # plain HTTP: v2 and v1 through the stable URL
    r = requests.post(f"{url}/v2/models/lin/infer", json=v2_body(), headers=auth, timeout=60)
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/json"
    assert version_of(r.json()) == 1
    r = requests.post(f"{url}/v1/models/lin:predict", json={"instances": X}, headers=auth)
    assert r.status_code == 200 and r.json() == {"predictions": [EXPECTED[1]]}
    r = requests.get(f"{url}/v2/models/lin", headers={"X-Workbench-Key": key["key"]})
    assert r.status_code == 200 and r.json()["name"] == "lin"
    r = requests.post(
        f"{url}/v2/models/lin/infer", json=v2_body([[1.0, 2.0, 3.0]]), headers=auth, timeout=60
    )
    assert r.status_code == 400 and "shape" in r.text.lower(), r.text

    # who may call
    r = requests.post(f"{url}/v2/models/lin/infer", json=v2_body())
    assert r.status_code == 401 and "Bearer" in r.json()["message"]
    bad = {"Authorization": "Bearer wbk_" + "x" * 43}
    assert (
        requests.post(f"{url}/v2/models/lin/infer", json=v2_body(), headers=bad).status_code == 401
    )
    other = {"Authorization": f"Bearer {svc_other.token}"}
    r = requests.post(f"{url}/v2/models/lin/infer", json=v2_body(), headers=other)
    assert r.status_code == 403 and "svc-other may not call" in r.json()["message"]
    # shared with its workspace ("default": everyone) it may be called by others' tokens
    assert svc.api("PATCH", "services/svc/lin", {"public": True})["public"] is True
    r = requests.post(f"{url}/v2/models/lin/infer", json=v2_body(), headers=other)
    assert r.status_code == 200 and version_of(r.json()) == 1
    svc.api("PATCH", "services/svc/lin", {"public": False})
    r = requests.post(f"{url}/v2/models/lin/infer", json=v2_body(), headers=other)
    assert r.status_code == 403
    mine = {"Authorization": f"token {svc.token}"}
    assert (
        requests.post(f"{url}/v2/models/lin/infer", json=v2_body(), headers=mine).status_code == 200
    )
    svc.api("DELETE", "services/svc/lin/keys/ci")
    r = requests.post(f"{url}/v2/models/lin/infer", json=v2_body(), headers=auth)
    assert r.status_code == 401 and "deleted" in r.json()["message"]

    # the key's secret is in no audit event
    admin = svc_hub.client()
    events = admin.api("GET", "audit?event=addAkSk") + admin.api("GET", "audit?event=addService")
    assert events and key["key"] not in str(events)
    assert {e["event"] for e in events} == {"addAkSk", "addService"}

    # the inference port: the same calling path without the proxy, with the same checks;
    # every call through either is counted in the service's metrics (timings: the benchmark)
    key = svc.api("POST", "services/svc/lin/keys", {"name": "port"})["key"]
    direct_url = made["direct_url"]
    assert direct_url.endswith("/services/workbench/inference/svc/lin") and direct_url != url
    assert requests.post(f"{direct_url}/v2/models/lin/infer", json=v2_body()).status_code == 401
    r = requests.post(f"{direct_url}/v2/models/lin/infer", json=v2_body(), headers=other)
    assert r.status_code == 403
    session = requests.Session()
    for _ in range(300):
        for base in (direct_url, url):
            r = infer(session, base, key)
            assert r.status_code == 200 and version_of(r.json()) == 1

    metrics = svc.api("GET", "services/svc/lin/metrics")
    figures = metrics["predictors"]["lin:1"]
    assert figures["requests"] >= 600 and figures["errors"] == 0 and figures["p50_ms"] > 0
    assert metrics["series"][-1]["requests"] > 0
    text = svc.session.get(f"{svc.api_url}/services/svc/lin/metrics?format=prometheus").text
    assert 'workbench_inference_requests_total{service="svc/lin",predictor="lin:1"}' in text
    assert "workbench_inference_request_duration_seconds_bucket" in text
    logs = svc.session.get(f"{svc.api_url}/services/svc/lin/logs?replica={replica['id']}")
    assert logs.status_code == 200 and "lin.infer" in logs.text  # the runtime's own lines


def test_a_canary_gets_its_share(svc):
    url = deployed(svc, "lin-canary", predictor(1, 90), predictor(2, 10))["url"]
    key = svc.api("POST", "services/svc/lin-canary/keys", {"name": "canary"})["key"]

    def calls(n):
        session = requests.Session()
        out = Counter()
        for _ in range(n):
            r = infer(session, url, key)
            assert r.status_code == 200, r.text
            out[version_of(r.json())] += 1
        return out

    with ThreadPoolExecutor(8) as pool:
        counts = sum(pool.map(calls, [250] * 8), Counter())
    share = counts[2] / sum(counts.values()) * 100
    print(f"\ncanary share over 2,000 requests: {share:.1f}% ({dict(counts)})")
    assert sum(counts.values()) == 2000 and 7 <= share <= 13, counts


def test_promote_and_roll_back_under_load_fail_nothing(svc_hub, svc, engine):
    service = deployed(svc, "lin-promote", predictor(1, 90), predictor(2, 10))
    url, path = service["url"], "services/svc/lin-promote"
    key = svc.api("POST", f"{path}/keys", {"name": "load"})["key"]
    load = Load(url, key)
    time.sleep(1)
    promoted = svc.api("POST", f"{path}/promote")
    assert [(p["version"], p["weight"]) for p in promoted["predictors"]] == [(2, 100)]
    time.sleep(1)
    results = load.stop()
    assert results and all(status == 200 for status, _ in results), Counter(results)
    assert results[-1] == (200, 2) and {v for _, v in results} == {1, 2}
    assert len(service_containers(engine.url, svc_hub, service)) == 1

    svc.api("PATCH", path, {"predictors": [predictor(2, 50), predictor(1, 50)]})
    wait_service(svc, "lin-promote", ready(1))
    load = Load(url, key)
    time.sleep(1)
    rolled = svc.api("POST", f"{path}/rollback")
    assert [(p["version"], p["weight"]) for p in rolled["predictors"]] == [(2, 100)]
    time.sleep(1)
    results = load.stop()
    assert results and all(status == 200 for status, _ in results), Counter(results)
    assert results[-1] == (200, 2)
    assert len(service_containers(engine.url, svc_hub, service)) == 1
    with pytest.raises(WorkbenchError) as e:
        svc.api("POST", f"{path}/promote")
    assert e.value.status == 409 and "no canary" in e.value.message


def test_a_killed_replica_is_replaced(svc, engine):
    service = deployed(svc, "lin-kill", predictor(2))
    key = svc.api("POST", "services/svc/lin-kill/keys", {"name": "kill"})["key"]
    (replica,) = service["predictors"][0]["replicas"]
    load = Load(service["url"], key, callers=2)
    time.sleep(0.5)
    docker.APIClient(base_url=engine.url).kill(replica["id"])
    replaced = wait_service(
        svc,
        "lin-kill",
        lambda s: any(
            r["state"] == "ready" and r["id"] != replica["id"]
            for r in s["predictors"][0]["replicas"]
        ),
    )
    assert replaced["predictors"][0]["replicas"][0]["restarts"] == 1
    time.sleep(1)
    results = load.stop()
    assert results[-1] == (200, 2)
    session = requests.Session()
    assert all(infer(session, service["url"], key).status_code == 200 for _ in range(20))


def test_scaling_up_under_load_and_down_when_idle(svc):
    deploy(svc, "lin-scale", predictor(1, min_replicas=1, max_replicas=2, target_in_flight=1))
    service = wait_service(svc, "lin-scale", lambda s: s["state"] == "running")
    key = svc.api("POST", "services/svc/lin-scale/keys", {})["key"]
    assert key.startswith("wbk_")
    load = Load(service["url"], key, callers=4)

    def ready_count(n):
        return lambda s: (
            len([r for r in s["predictors"][0]["replicas"] if r["state"] == "ready"]) == n
        )

    try:
        wait_service(svc, "lin-scale", ready_count(2), timeout=120)
    finally:
        results = load.stop()
    assert all(status == 200 for status, _ in results)
    # idle: back to the minimum after scale_down_seconds
    scaled = wait_service(svc, "lin-scale", lambda s: len(s["predictors"][0]["replicas"]) == 1)
    assert scaled["predictors"][0]["replicas"][0]["state"] == "ready"
    svc.api("DELETE", "services/svc/lin-scale")


def test_scale_to_zero_and_the_first_request_waits(svc):
    made = deploy(svc, "lin-zero", predictor(1, min_replicas=0), scale_to_zero_seconds=2)
    assert made["predictors"][0]["replicas"] == []
    assert wait_service(svc, "lin-zero", lambda s: s["state"] == "running")
    key = svc.api("POST", "services/svc/lin-zero/keys", {})["key"]
    started = time.monotonic()
    r = infer(requests.Session(), made["url"], key)
    assert r.status_code == 200 and version_of(r.json()) == 1
    assert time.monotonic() - started > 1  # it waited for a replica to start
    wait_service(svc, "lin-zero", lambda s: s["predictors"][0]["replicas"] == [], timeout=60)
    svc.api("DELETE", "services/svc/lin-zero")
    # each replica ran as a metered period of kind "service": <service>/<replica>
    rows = [r for r in svc.api("GET", "usage")["rows"] if r["kind"] == "service"]
    names = {name.split("/")[0] for r in rows for name in r["instances"]}
    assert "lin-zero" in names, rows
    assert all(r["seconds"] > 0 and r["flavor"] == "cpu.tiny" for r in rows)


def refused(client, body, status, words):
    with pytest.raises(WorkbenchError) as e:
        client.api("POST", "services", body)
    assert e.value.status == status, e.value.message
    for word in words:
        assert word in e.value.message, e.value.message


def test_bad_deployments_are_refused_with_the_reason_and_start_nothing(
    svc_hub, svc, svc_other, engine
):
    before = service_containers(engine.url, svc_hub)
    bad = "bad"
    refused(
        svc, {"name": bad, "predictors": [predictor(1, 60), predictor(2, 30)]}, 400, ["add to 100"]
    )
    refused(
        svc, {"name": bad, "predictors": [predictor(1, flavor="cpu.huge")]}, 400, ["Unknown flavor"]
    )
    refused(
        svc_other,
        {"name": bad, "predictors": [{**predictor(1), "owner": "svc"}]},
        404,
        ["no model 'lin'"],
    )
    admin = svc_hub.client()
    admin.api("PUT", "quotas/users/svc", {"limits": {"vcpus": 1}})
    try:
        refused(
            svc,
            {"name": bad, "predictors": [predictor(1, max_replicas=3)]},
            403,
            ["1.5 vCPUs", "3 x cpu.tiny", "of your 1"],
        )
    finally:
        admin.api("PUT", "quotas/users/svc", {"limits": {"vcpus": 0}})
    model_file = svc_hub.root / "data" / "models" / "svc" / "lin" / "1" / "model.onnx"
    original = model_file.read_bytes()
    model_file.write_bytes(original + b"\0")
    try:
        refused(svc, {"name": bad, "predictors": [predictor(1)]}, 409, ["checksum mismatch"])
    finally:
        model_file.write_bytes(original)
    assert bad not in [s["name"] for s in svc.api("GET", "services")]
    assert service_containers(engine.url, svc_hub) == before


def test_replicas_keep_serving_across_a_hub_restart_and_go_with_the_service(svc_hub, svc, engine):
    before = deployed(svc, "lin-restart", predictor(2))
    path = "services/svc/lin-restart"
    ids = [r["id"] for p in before["predictors"] for r in p["replicas"]]
    svc_hub.restart()
    client = svc_hub.client("svc", svc_hub.passwords["svc"])
    after = wait_service(client, "lin-restart", ready(2))
    assert [r["id"] for p in after["predictors"] for r in p["replicas"]] == ids
    key = client.api("POST", f"{path}/keys", {"name": "after"})["key"]
    r = infer(requests.Session(), after["url"], key)
    assert r.status_code == 200 and version_of(r.json()) == 2
    with pytest.raises(WorkbenchError) as e:
        client.api("DELETE", "models/svc/lin/versions/2")
    assert e.value.status == 409 and "svc/lin-restart" in e.value.message
    stopped = client.api("POST", f"{path}/stop")
    assert stopped["state"] == "stopped" and service_containers(engine.url, svc_hub, before) == []
    r = infer(requests.Session(), after["url"], key)
    assert r.status_code == 503 and "stopped" in r.json()["message"]
    client.api("DELETE", path)
    assert "lin-restart" not in [s["name"] for s in client.api("GET", "services")]
    network = object_of(before)
    assert not [
        n for n in docker.APIClient(base_url=engine.url).networks() if n["Name"].startswith(network)
    ]
