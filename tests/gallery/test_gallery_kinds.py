"""Saved images, model versions and dataset versions through the gallery, against the real hub:
one user publishes, another takes (an instance started from the image, a model whose files
hash alike, a dataset version a training job reads), and the refusals leave nothing behind.

What the tests share is made once per module: a model trained by a real job, a labelled
dataset with a published version, and an instance saved as two images (one for the test that
deletes its source, one for the test that unpublishes)."""

from __future__ import annotations

import sqlite3
import time

import pytest
from workbench import WorkbenchError

from images.registry import EngineImages
from tests.training_bridge.datasets.data_helpers import image, zip_of
from tests.training_bridge.jobs_helpers import archive, logs, submit, wait_for

PUB, TAKER = "gk-pub", "gk-taker"
ONNX = b"\x08\x07gallery-onnx" * 50
PREDICTOR = "class Model:\n    def predict(self, x):\n        return x\n"
TRAIN = f"""\
import os
out = os.environ["WORKBENCH_OUTPUT_DIR"]
os.makedirs(os.path.join(out, "model", "sub"), exist_ok=True)
open(os.path.join(out, "model", "model.onnx"), "wb").write({ONNX!r})
open(os.path.join(out, "model", "predictor.py"), "w").write({PREDICTOR!r})
open(os.path.join(out, "model", "sub", "vocab.txt"), "w").write("a\\nb\\n")
"""
READ = """\
import os
folder = os.environ["WORKBENCH_INPUT_DATA"]
lines = open(os.path.join(folder, "manifest.jsonl")).read().splitlines()
files = sum(len(f) for _, _, f in os.walk(os.path.join(folder, "data")))
print(f"manifest lines: {len(lines)} files: {files}", flush=True)
"""
COLORS = [(30 * i, 200 - 30 * i, 90) for i in range(5)]
LABELS = {f"img/{i}.png": "cat" if i < 2 else "dog" for i in range(4)}  # 4 of 5 labelled


# --- what the tests share ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def pub(hub):
    return hub.add_user(PUB)


@pytest.fixture(scope="module")
def taker(hub):
    return hub.add_user(TAKER)


@pytest.fixture(scope="module")
def engine_images(engine):
    return EngineImages(engine.url)


@pytest.fixture(scope="module")
def model(pub):
    """Version 1 of PUB's model gk-net, registered from a real job's output."""
    source = {"kind": "file", "entry": "train.py", "archive": archive({"train.py": TRAIN})}
    submit(pub, "gk-train", source)
    done = wait_for(pub, PUB, "gk-train")
    assert done["state"] == "succeeded", done
    made = pub.api(
        "POST",
        "models",
        {
            "name": "gk-net",
            "description": "echoes its input",
            "format": "custom",
            "predictor": "predictor.py:Model",
            "image": "python",
            "source": {"kind": "job", "job": "gk-train", "path": "output/model"},
            "signature": {"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]},
        },
    )
    (version,) = made["versions"]
    assert version["state"] == "ready" and len(version["files"]) == 3, version
    return version


def samples_of(client, owner: str, name: str) -> dict[str, dict]:
    page = client.api("GET", f"datasets/{owner}/{name}/samples?limit=500")
    assert page["next"] is None
    return {s["key"]: s for s in page["samples"]}


def published(client, owner: str, name: str, version: int) -> dict:
    deadline = time.monotonic() + 120
    while (made := client.api("GET", f"datasets/{owner}/{name}/versions/{version}"))[
        "state"
    ] == "pending":
        assert time.monotonic() < deadline, made
        time.sleep(0.3)
    return made


@pytest.fixture(scope="module")
def dataset(pub):
    """PUB's image classification dataset gk-pets: 5 images, 4 labelled, as version 1."""
    pub.api(
        "POST",
        "datasets",
        {"name": "gk-pets", "type": "image_classification", "labels": ["cat", "dog"]},
    )
    r = pub.session.post(
        f"{pub.api_url}/datasets/{PUB}/gk-pets/samples",
        data=zip_of({f"img/{i}.png": image(color=COLORS[i]) for i in range(5)}),
        headers={"Content-Type": "application/zip"},
        timeout=120,
    )
    assert r.status_code == 200, r.text
    ids = {k: s["id"] for k, s in samples_of(pub, PUB, "gk-pets").items()}
    body = {"samples": [{"id": ids[k], "annotations": [{"label": v}]} for k, v in LABELS.items()]}
    pub.api("PATCH", f"datasets/{PUB}/gk-pets/samples", body)
    pub.api("POST", f"datasets/{PUB}/gk-pets/versions", {"train_ratio": 0.5})
    version = published(pub, PUB, "gk-pets", 1)
    assert version["state"] == "ready" and version["samples"] == 5, version
    return version


@pytest.fixture(scope="module")
def saved(hub, pub, engine):
    """PUB's instance saved as gk-env:v1 and gk-env:v2 (the instance removed after)."""
    pub.create_instance("gk-src", image="python", flavor="cpu.tiny", storage_gib=1)
    images = {}
    try:
        for tag in ("v1", "v2"):
            pub.save_instance("gk-src", "gk-env", tag)
            deadline = time.monotonic() + 300
            while (status := pub.save_status("gk-src"))["state"] == "saving":
                assert time.monotonic() < deadline, status
                time.sleep(0.5)
            assert status["state"] == "done", status
            images[tag] = status["image"]
    finally:
        pub.stop_instance("gk-src")
        pub.delete_instance("gk-src")
    return images


def publish(client, kind: str, source: dict, **fields) -> dict:
    body = {"kind": kind, "title": f"A {kind}", "source": source, **fields}
    return client.api("POST", "gallery/assets", body)


def use(client, asset_id: int, **body) -> dict:
    return client.api("POST", f"gallery/assets/{asset_id}/use", body)


def refused(call, status: int, *words: str) -> str:
    with pytest.raises(WorkbenchError) as e:
        call()
    assert e.value.status == status, e.value.message
    for word in words:
        assert word in e.value.message, e.value.message
    return e.value.message


def my_assets(client) -> list[dict]:
    return client.api("GET", "gallery/assets?mine=1&limit=100")["assets"]


def rows(hub, user: str) -> tuple[int, int]:
    """(gallery asset rows, gallery saved image rows) of a user in the platform's database,
    those a publish reserves before its snapshot included (no API lists them)."""
    db = sqlite3.connect(f"file:{hub.root / 'data' / 'workbench.sqlite'}?mode=ro", uri=True)
    try:
        (assets,) = db.execute("SELECT count(*) FROM gallery_assets WHERE owner = ?", (user,))
        (images,) = db.execute(
            "SELECT count(*) FROM saved_images WHERE owner = ? AND name LIKE 'gallery-%'", (user,)
        )
    finally:
        db.close()
    return assets[0], images[0]


def gallery_images(client) -> list[str]:
    return [i["name"] for i in client.images() if i["name"].startswith(f"saved:{PUB}/gallery-")]


# --- images ------------------------------------------------------------------------------------
def test_an_image_taken_from_the_gallery_starts_instances_after_its_source_is_deleted(
    hub, pub, taker, saved, engine_images
):
    source = saved["v1"]
    asset = publish(pub, "image", {"image": "gk-env:v1"}, tags=["env"])
    name = f"saved:{PUB}/gallery-{asset['id']}:v1"
    assert asset["meta"] == {
        "image": name,
        "base_image": "python",
        "size": source["size"],
        "source_image": f"saved:{PUB}/gk-env:v1",
    }
    assert asset["size"] == source["added_size"]
    ref = f"localhost/{hub.prefix}-saved/{PUB}/gallery-{asset['id']}:v1"
    assert engine_images.inspect(ref)["Id"] == source["id"]
    # not the taker's until they take it
    refused(
        lambda: taker.create_instance("gk-early", image=name, flavor="cpu.tiny", start=False),
        400,
        name,
    )
    assert use(taker, asset["id"]) == {"kind": "image", "image": name}
    assert name in [i["name"] for i in taker.images()]
    # the source goes; the gallery's image stays and starts instances
    pub.delete_image("gk-env", "v1")
    assert engine_images.inspect(source["ref"]) is None
    made = taker.create_instance("gk-taken", image=name, flavor="cpu.tiny", storage_gib=1)
    try:
        assert (made["state"], made["image"]) == ("running", name), made
    finally:
        taker.stop_instance("gk-taken")
        taker.delete_instance("gk-taken")
    assert pub.api("GET", f"gallery/assets/{asset['id']}")["uses"] == 1


def test_unpublishing_an_image_removes_its_saved_image_and_engine_tag(
    hub, pub, taker, saved, engine_images
):
    asset = publish(pub, "image", {"image": f"saved:{PUB}/gk-env:v2"})
    name = asset["meta"]["image"]
    ref = f"localhost/{hub.prefix}-saved/{PUB}/gallery-{asset['id']}:v1"
    use(taker, asset["id"])
    assert name in gallery_images(pub) and engine_images.inspect(ref) is not None
    # the snapshot is the gallery's: its owner unpublishes it rather than deleting the image,
    # and it does not count toward their saved images' quota; nobody saves under its names
    refused(
        lambda: pub.api("DELETE", f"users/{PUB}/images/gallery-{asset['id']}/v1"),
        409,
        f"`workbench gallery unpublish {asset['id']}`",
    )
    refused(
        lambda: pub.api("POST", f"users/{PUB}/instances/x/save", {"name": "gallery-x"}),
        400,
        "kept for gallery snapshots",
    )
    pub.api("DELETE", f"gallery/assets/{asset['id']}")
    assert name not in gallery_images(pub)
    assert engine_images.inspect(ref) is None
    assert engine_images.inspect(saved["v2"]["ref"])["Id"] == saved["v2"]["id"]
    refused(
        lambda: taker.create_instance("gk-gone", image=name, flavor="cpu.tiny", start=False),
        400,
        name,
    )
    refused(lambda: use(taker, asset["id"]), 404, f"No gallery asset {asset['id']}")


# --- models ------------------------------------------------------------------------------------
def test_a_model_taken_from_the_gallery_is_a_ready_version_with_the_same_files(
    hub, pub, taker, model
):
    asset = publish(pub, "model", {"model": "gk-net", "version": 1}, title="Echo net")
    assert asset["meta"]["model"] == f"{PUB}/gk-net" and asset["meta"]["version"] == 1
    assert asset["meta"]["format"] == "custom"
    assert asset["meta"]["predictor"] == "predictor.py:Model"
    files = pub.api("GET", f"gallery/assets/{asset['id']}/versions/1/files")["files"]
    assert files == model["files"]
    assert asset["size"] == sum(f["size"] for f in model["files"])

    answer = use(taker, asset["id"])
    assert answer == {"kind": "model", "model": f"{TAKER}/gk-net", "version": 1}
    taken = taker.api("GET", f"models/{TAKER}/gk-net")
    (version,) = taken["versions"]
    assert version["state"] == "ready" and version["files"] == model["files"]
    assert (version["format"], version["predictor"], version["image"]) == (
        "custom",
        "predictor.py:Model",
        "python",
    )
    assert version["signature"] == model["signature"]
    assert version["source"]["kind"] == "gallery" and version["source"]["asset"] == asset["id"]
    # hashed again as before a deployment
    assert taker.api("GET", f"models/{TAKER}/gk-net/versions/1/files?verify=1") == model["files"]
    r = taker.session.get(f"{taker.api_url}/models/{TAKER}/gk-net/versions/1/files/model.onnx")
    assert r.status_code == 200 and r.content == ONNX

    # the name is taken now: 409 until another is sent, and nothing is left of the refusal
    refused(lambda: use(taker, asset["id"]), 409, "already have a model named 'gk-net'", "name")
    refused(lambda: use(taker, asset["id"], name="Bad Name"), 400, "Invalid model name")
    assert [m["name"] for m in taker.api("GET", "models")] == ["gk-net"]
    staging = hub.root / "data" / "models" / ".staging"
    assert not staging.exists() or not list(staging.iterdir())
    assert use(taker, asset["id"], name="gk-net-2")["model"] == f"{TAKER}/gk-net-2"
    assert pub.api("GET", f"gallery/assets/{asset['id']}")["uses"] == 2


# --- datasets ----------------------------------------------------------------------------------
def test_a_dataset_taken_from_the_gallery_has_the_samples_and_trains_a_job(
    hub, pub, taker, dataset
):
    asset = publish(pub, "dataset", {"dataset": f"{PUB}/gk-pets", "version": 1})
    meta = asset["meta"]
    assert (meta["dataset"], meta["version"], meta["type"]) == (
        f"{PUB}/gk-pets",
        1,
        "image_classification",
    )
    assert [label["name"] for label in meta["labels"]] == ["cat", "dog"]
    assert meta["samples"] == 5
    (zipped,) = pub.api("GET", f"gallery/assets/{asset['id']}/versions/1/files")["files"]
    assert zipped["path"] == "dataset.zip" and asset["size"] == zipped["size"]

    answer = use(taker, asset["id"], name="pets")
    assert answer == {
        "kind": "dataset",
        "dataset": f"{TAKER}/pets",
        "version": 1,
        "state": "ready",
    }
    taken = taker.api("GET", f"datasets/{TAKER}/pets")
    assert taken["type"] == "image_classification"
    assert [label["name"] for label in taken["labels"]] == ["cat", "dog"]
    (version,) = taken["versions"]
    assert (version["version"], version["state"], version["samples"]) == (1, "ready", 5)
    assert version["labelled"] == 4
    theirs, mine = samples_of(pub, PUB, "gk-pets"), samples_of(taker, TAKER, "pets")
    assert sorted(mine) == sorted(theirs)
    for key, sample in theirs.items():
        assert mine[key]["sha256"] == sample["sha256"], key
        labels = [a["label"] for a in mine[key]["annotations"]]
        assert labels == [a["label"] for a in sample["annotations"]], key
    # a training input of the taker's
    source = {"kind": "file", "entry": "read.py", "archive": archive({"read.py": READ})}
    submit(taker, "gk-read", source, inputs={"data": {"dataset": "pets", "version": 1}})
    done = wait_for(taker, TAKER, "gk-read")
    assert done["state"] == "succeeded", done
    assert "manifest lines: 5 files: 5" in logs(taker, TAKER, "gk-read")

    # the name is taken now: 409, and the refusal leaves no second dataset
    refused(lambda: use(taker, asset["id"], name="pets"), 409, "already have a dataset", "name")
    refused(lambda: use(taker, asset["id"], colour="red"), 400, "colour")
    assert [d["name"] for d in taker.api("GET", "datasets")] == ["pets"]


# --- refusals ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kind, source, status, words",
    [
        ("model", {"model": f"{PUB}/gk-net", "version": 1}, 403, ["your own models", PUB]),
        ("dataset", {"dataset": f"{PUB}/gk-pets", "version": 1}, 403, ["your own datasets"]),
        ("image", {"image": f"saved:{PUB}/gk-env:v2"}, 403, ["your own saved images"]),
        ("model", {"model": "gk-nope", "version": 1}, 400, ["You have no model 'gk-nope'"]),
        ("image", {"image": "gk-env:v2"}, 400, ["no saved image gk-env:v2"]),
    ],
)
def test_another_users_model_dataset_or_image_cannot_be_published(
    hub, pub, taker, model, dataset, saved, kind, source, status, words
):
    before = rows(hub, TAKER)
    refused(lambda: publish(taker, kind, source), status, *words)
    assert rows(hub, TAKER) == before
    assert len(my_assets(taker)) == before[0]


@pytest.mark.parametrize(
    "kind, source, status, words",
    [
        ("model", {"model": "gk-net", "version": 9}, 400, ["has no version 9"]),
        ("dataset", {"dataset": "gk-pets", "version": 9}, 400, ["has no version 9"]),
        ("model", {"model": "gk-net"}, 400, ["source.version"]),
        ("dataset", {"dataset": "gk-pets", "version": 1, "split": 1}, 400, ["split"]),
        ("image", {"image": "gk-env:v9"}, 400, ["no saved image gk-env:v9"]),
        ("image", {"image": "Not A Name"}, 400, ["source.image"]),
    ],
)
def test_a_missing_version_is_refused_and_leaves_nothing(
    hub, pub, model, dataset, saved, kind, source, status, words
):
    before = rows(hub, PUB)
    refused(lambda: publish(pub, kind, source), status, *words)
    assert rows(hub, PUB) == before


def test_a_damaged_snapshot_file_is_refused_at_use_and_leaves_nothing(
    hub, pub, taker, model, dataset
):
    """The stored copies are changed on disk here, as a failing disk would; restored after."""
    blobs = hub.root / "data" / "gallery" / "blobs"
    for kind, source, path in (
        ("model", {"model": "gk-net", "version": 1}, "sub/vocab.txt"),
        ("dataset", {"dataset": "gk-pets", "version": 1}, "dataset.zip"),
    ):
        asset = publish(pub, kind, source)
        files = pub.api("GET", f"gallery/assets/{asset['id']}/versions/1/files")["files"]
        sha = next(f["sha256"] for f in files if f["path"] == path)
        blob = blobs / sha[:2] / sha
        original = blob.read_bytes()
        blob.chmod(0o644)
        blob.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
        try:
            refused(
                lambda asset=asset, kind=kind: use(taker, asset["id"], name=f"gk-damaged-{kind}"),
                409,
                f"File '{path}' of gallery asset {asset['id']} version 1 no longer matches",
            )
        finally:
            blob.write_bytes(original)
            blob.chmod(0o444)
        assert f"gk-damaged-{kind}" not in [m["name"] for m in taker.api("GET", f"{kind}s")]
    assert not (hub.root / "data" / "models" / TAKER / "gk-damaged-model").exists()
    staging = hub.root / "data" / "models" / ".staging"
    assert not staging.exists() or not list(staging.iterdir())
