"""Auto-labelling against a real hub with a real deployed service: a custom predictor (a model
registered from a job's output) served by kserve in a container labels unlabelled images.
Predictions at or above the threshold become labels, the others pre-labels with their
confidence, labels outside the label set are skipped and counted, a person confirms a
pre-label, a run stops when asked, and services the caller may not call are refused."""

from __future__ import annotations

import json
import time

import pytest
from workbench import WorkbenchError

from tests.training_bridge.datasets.data_helpers import image, zip_of
from tests.training_bridge.jobs_helpers import archive, submit, wait_for

OWNER, OTHER, STRANGER = "al-owner", "al-other", "al-stranger"
BY = f"model:{OWNER}/al-svc"

# the predictor: the label and confidence a file's name says (cat-0.95.png), after checking
# that the image itself came (base64 of a PNG); "slow" names make the request take a while
PREDICTOR = """\
import base64
import json
import time

PNG = b"\\x89PNG\\r\\n\\x1a\\n"


class Model:
    def predict(self, payload):
        out = []
        instances = payload["instances"]
        if any("slow" in i["key"] for i in instances):
            time.sleep(3)
        for instance in instances:
            if not base64.b64decode(instance["b64"]).startswith(PNG):
                raise ValueError("the image did not come")
            name = instance["key"].rsplit("/", 1)[-1].rsplit(".", 1)[0]
            label, confidence = name.rsplit("-", 1)
            confidence = float(confidence)
            if label == "multi":
                out.append({"labels": [{"label": "cat", "confidence": 0.1},
                                       {"label": "dog", "confidence": confidence}]})
            else:
                out.append({"label": "cat" if label.startswith("slow") else label,
                            "confidence": confidence})
        return {"predictions": out}
"""

TRAIN = f"""\
import os
out = os.path.join(os.environ["WORKBENCH_OUTPUT_DIR"], "model")
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, "predictor.py"), "w") as f:
    f.write({PREDICTOR!r})
"""


@pytest.fixture(scope="module")
def al(hub):
    """The owner of service "al-svc" (the predictor, deployed in workspace al-ws, not public,
    on the serving image custom models default to) and the other users: a member of al-ws
    and a stranger."""
    owner = hub.add_user(OWNER)
    others = {name: hub.add_user(name) for name in (OTHER, STRANGER)}
    hub.client().api("POST", "workspaces", {"name": "al-ws", "members": [OWNER, OTHER]})
    source = {"kind": "file", "entry": "train.py", "archive": archive({"train.py": TRAIN})}
    submit(owner, "al-train", source)
    assert wait_for(owner, OWNER, "al-train")["state"] == "succeeded"
    owner.api(
        "POST",
        "models",
        {
            "name": "labeller",
            "format": "custom",
            "predictor": "predictor.py:Model",
            "workspace": "al-ws",
            "source": {"kind": "job", "job": "al-train", "path": "output/model"},
        },
    )
    owner.api(
        "POST",
        "services",
        {
            "name": "al-svc",
            "workspace": "al-ws",
            "predictors": [
                {"model": "labeller", "version": 1, "weight": 100, "flavor": "cpu.tiny"}
            ],
        },
    )
    deadline = time.monotonic() + 300
    while True:
        service = owner.api("GET", f"services/{OWNER}/al-svc")
        replicas = service["predictors"][0]["replicas"]
        if any(r["state"] == "ready" for r in replicas):
            break
        assert time.monotonic() < deadline, (service["state"], service["reason"], replicas)
        time.sleep(1)
    return {OWNER: owner, **others}


def dataset(client, owner: str, name: str, files: list[str]) -> None:
    client.api(
        "POST", "datasets", {"name": name, "type": "image_classification", "labels": ["cat", "dog"]}
    )
    data = zip_of({k: image(color=(7 * i % 256, 90, 3 * i % 256)) for i, k in enumerate(files)})
    r = client.session.post(
        f"{client.api_url}/datasets/{owner}/{name}/samples",
        data=data,
        headers={"Content-Type": "application/zip"},
        timeout=120,
    )
    assert r.status_code == 200, r.text


def by_key(client, owner: str, name: str, query: str = "") -> dict[str, dict]:
    page = client.api("GET", f"datasets/{owner}/{name}/samples?limit=500&{query}")
    return {s["key"]: s for s in page["samples"]}


def wait_run(client, owner: str, name: str, run: dict, timeout=180) -> dict:
    deadline = time.monotonic() + timeout
    while run["state"] in ("pending", "running"):
        assert time.monotonic() < deadline, run
        time.sleep(0.5)
        run = client.api("GET", f"datasets/{owner}/{name}/autolabel/{run['id']}")
    return run


def test_predictions_become_labels_or_pre_labels_by_confidence(al):
    owner = al[OWNER]
    files = [
        "a/cat-0.99.png",
        "a/dog-0.95.png",
        "a/multi-0.97.png",
        "a/cat-0.5.png",
        "a/dog-0.3.png",
        "a/zebra-0.99.png",
        "a/cat-1.5.png",
        "a/person.png",
    ]
    dataset(owner, OWNER, "animals", files)
    D = f"datasets/{OWNER}/animals"
    person = by_key(owner, OWNER, "animals")["a/person.png"]
    owner.api("PUT", f"{D}/samples/{person['id']}/annotations", {"annotations": [{"label": "dog"}]})
    for body, status in (
        ({"service": "al-svc", "threshold": 2}, 400),
        ({"service": "al-svc", "limit": 0}, 400),
        ({"service": "nope"}, 404),
        ({"service": "al-svc", "model": "x"}, 400),
    ):
        with pytest.raises(WorkbenchError) as e:
            owner.api("POST", f"{D}/autolabel", body)
        assert e.value.status == status, (body, e.value.message)

    run = owner.api("POST", f"{D}/autolabel", {"service": "al-svc", "threshold": 0.9})
    assert run["service"] == f"{OWNER}/al-svc" and run["total"] == 7 and run["threshold"] == 0.9
    run = wait_run(owner, OWNER, "animals", run)
    assert run["state"] == "done", run
    assert run["done"] == 7 and run["accepted"] == 3
    assert "1 predicted label not in the label set skipped ('zebra')" in run["reason"]
    assert "1 prediction unusable (first: a/cat-1.5.png: " in run["reason"]
    assert "no confidence between 0 and 1" in run["reason"]
    assert owner.api("GET", f"{D}/autolabel")[0]["id"] == run["id"]

    samples = by_key(owner, OWNER, "animals")
    for key, label, confidence, status in (
        ("a/cat-0.99.png", "cat", 0.99, "labelled"),
        ("a/dog-0.95.png", "dog", 0.95, "labelled"),
        ("a/multi-0.97.png", "dog", 0.97, "labelled"),
        ("a/cat-0.5.png", "cat", 0.5, "prelabelled"),
        ("a/dog-0.3.png", "dog", 0.3, "prelabelled"),
    ):
        s = samples[key]
        assert (s["status"], s["annotated_by"], s["confidence"]) == (status, BY, confidence), s
        ((a),) = s["annotations"]
        assert (a["label"], a["annotated_by"], a["confidence"]) == (label, BY, confidence)
    for key in ("a/zebra-0.99.png", "a/cat-1.5.png"):
        assert (samples[key]["status"], samples[key]["annotations"]) == ("unlabelled", [])
    # a person's label is left alone
    assert samples["a/person.png"]["annotated_by"] == OWNER
    assert samples["a/person.png"]["annotations"][0]["label"] == "dog"
    assert set(by_key(owner, OWNER, "animals", "annotated_by=model")) == {
        "a/cat-0.99.png",
        "a/dog-0.95.png",
        "a/multi-0.97.png",
        "a/cat-0.5.png",
        "a/dog-0.3.png",
    }
    stats = owner.api("GET", f"{D}/stats")
    assert (stats["labelled"], stats["prelabelled"], stats["unlabelled"]) == (4, 2, 2)

    # a person confirms one pre-label: a label, the model's annotation kept
    sample = samples["a/cat-0.5.png"]
    assert owner.api("POST", f"{D}/samples/accept", {"ids": [sample["id"]]}) == {"accepted": 1}
    confirmed = owner.api("GET", f"{D}/samples/{sample['id']}")
    assert confirmed["status"] == "labelled"
    assert confirmed["annotations"][0]["annotated_by"] == BY
    assert set(by_key(owner, OWNER, "animals", "status=prelabelled")) == {"a/dog-0.3.png"}

    # a second run, limited to one sample, takes the first (by id) of the two left
    again = owner.api("POST", f"{D}/autolabel", {"service": "al-svc", "limit": 1})
    again = wait_run(owner, OWNER, "animals", again)
    assert (again["state"], again["total"], again["done"], again["accepted"]) == ("done", 1, 1, 0)
    first = min(("a/zebra-0.99.png", "a/cat-1.5.png"), key=lambda k: samples[k]["id"])
    words = {"a/zebra-0.99.png": "'zebra'", "a/cat-1.5.png": "1 prediction unusable"}
    assert [w for w in words.values() if w in again["reason"]] == [words[first]]


def test_a_run_stops_when_asked(al):
    owner = al[OWNER]
    dataset(owner, OWNER, "slow", [f"s/slow-{i}-0.5.png" for i in range(40)])
    D = f"datasets/{OWNER}/slow"
    run = owner.api("POST", f"{D}/autolabel", {"service": f"{OWNER}/al-svc"})
    with pytest.raises(WorkbenchError) as e:
        owner.api("POST", f"{D}/autolabel", {"service": "al-svc"})
    assert e.value.status == 409 and "already" in e.value.message
    stopped = owner.api("POST", f"{D}/autolabel/{run['id']}/stop")
    stopped = wait_run(owner, OWNER, "slow", stopped)
    assert stopped["state"] == "stopped" and stopped["done"] < stopped["total"] == 40
    prelabelled = by_key(owner, OWNER, "slow", "status=prelabelled")
    assert len(prelabelled) == stopped["done"]
    assert {s["annotations"][0]["label"] for s in prelabelled.values()} == {"cat"}


def test_only_those_who_may_call_the_service_can_run_it(al):
    owner, other, stranger = al[OWNER], al[OTHER], al[STRANGER]
    dataset(other, OTHER, "theirs", ["t/cat-0.99.png"])
    D = f"datasets/{OTHER}/theirs"
    # a workspace member sees the service, but it is not public: refused
    with pytest.raises(WorkbenchError) as e:
        other.api("POST", f"{D}/autolabel", {"service": f"{OWNER}/al-svc"})
    assert e.value.status == 403 and f"may not call service {OWNER}/al-svc" in e.value.message
    dataset(stranger, STRANGER, "mine", ["m/cat-0.99.png"])
    with pytest.raises(WorkbenchError) as e:
        stranger.api("POST", f"datasets/{STRANGER}/mine/autolabel", {"service": f"{OWNER}/al-svc"})
    assert e.value.status == 404
    # nor can anyone but the dataset's owner start a run on it
    with pytest.raises(WorkbenchError) as e:
        owner.api("POST", f"{D}/autolabel", {"service": "al-svc"})
    assert e.value.status == 404
    assert other.api("GET", f"{D}/autolabel") == []

    # shared with the workspace: the member's run labels their dataset
    owner.api("PATCH", f"services/{OWNER}/al-svc", {"public": True})
    run = other.api("POST", f"{D}/autolabel", {"service": f"{OWNER}/al-svc", "threshold": 0.9})
    run = wait_run(other, OTHER, "theirs", run)
    assert (run["state"], run["accepted"]) == ("done", 1)
    (sample,) = by_key(other, OTHER, "theirs").values()
    assert sample["status"] == "labelled" and sample["annotated_by"] == BY
    # a stranger is still refused
    with pytest.raises(WorkbenchError) as e:
        stranger.api("POST", f"datasets/{STRANGER}/mine/autolabel", {"service": f"{OWNER}/al-svc"})
    assert e.value.status == 404


def test_a_published_version_is_a_batch_runs_input(al):
    """The labeller model over a published version's images as a batch run: one line per
    sample (its path below the version's data/ folder), with the model's answer."""
    owner = al[OWNER]
    files = ["cat-0.91.png", "dog-0.42.png", "img/cat-0.7.png"]
    dataset(owner, OWNER, "al-batch", files)
    version = owner.api("POST", f"datasets/{OWNER}/al-batch/versions", {"train_ratio": 1})
    assert version["state"] == "ready", version
    body = {"name": "al-score", "model": "labeller", "version": 1, "flavor": "cpu.tiny"}
    run = owner.api("POST", "batch", body | {"inputs": {"dataset": "al-batch", "version": 1}})
    assert run["spec"]["inputs"]["data"]["dataset"] == f"{OWNER}/al-batch"
    deadline = time.monotonic() + 300
    while (state := owner.api("GET", f"batch/{OWNER}/al-score")["versions"][0])["state"] not in (
        "succeeded",
        "failed",
        "stopped",
    ):
        assert time.monotonic() < deadline, state
        time.sleep(1)
    assert state["state"] == "succeeded", state
    url = f"{owner.api_url}/jobs/{OWNER}/al-score/versions/1/files/output/predictions.jsonl"
    r = owner.session.get(url, timeout=60)
    assert r.status_code == 200, r.text[:300]
    lines = [json.loads(line) for line in r.text.splitlines()]
    assert [line["input"] for line in lines] == sorted(files)
    assert all(line["error"] is None for line in lines), lines
    answers = {line["input"]: line["output"] for line in lines}
    assert answers["cat-0.91.png"] == [{"label": "cat", "confidence": 0.91}]
    assert answers["img/cat-0.7.png"] == [{"label": "cat", "confidence": 0.7}]
    # another user cannot score a dataset they cannot see
    with pytest.raises(WorkbenchError) as e:
        al[STRANGER].api(
            "POST",
            "batch",
            body
            | {
                "model": f"{OWNER}/labeller",
                "inputs": {"dataset": f"{OWNER}/al-batch", "version": 1},
            },
        )
    assert e.value.status in (400, 403, 404), e.value.message
    owner.api("DELETE", f"jobs/{OWNER}/al-score")
