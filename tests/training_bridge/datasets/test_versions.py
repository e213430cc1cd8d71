"""Published dataset versions against a real hub: the version's read-only folder of hard links
(each file stored once, however many versions hold it), its manifest and SHA-256, the split,
diffs between versions, exports in every format imported back, and deleting a version (not
while a real training job in a container reads it)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
import zipfile
from pathlib import Path, PurePosixPath

import pytest
from workbench import WorkbenchError

from tests.training_bridge.datasets.data_helpers import image, zip_of
from tests.training_bridge.jobs_helpers import archive, logs, submit, wait_for

OWNER = "ver-owner"
COLORS = [(20 * i, 255 - 20 * i, 60) for i in range(12)]


@pytest.fixture(scope="module")
def ver(hub):
    return hub.add_user(OWNER)


@pytest.fixture(scope="module")
def ver_other(hub):
    return hub.add_user("ver-other")


def datasets_folder(hub) -> Path:
    return hub.root / "data" / "datasets"


def create(client, name: str, kind: str, labels: list[str]) -> dict:
    return client.api("POST", "datasets", {"name": name, "type": kind, "labels": labels})


def post_archive(client, path: str, files: dict[str, bytes]) -> dict:
    r = client.session.post(
        f"{client.api_url}/{path}",
        data=zip_of(files),
        headers={"Content-Type": "application/zip"},
        timeout=120,
    )
    assert r.status_code == 200, r.text
    return r.json()


def samples_of(client, owner: str, name: str) -> dict[str, dict]:
    """Every sample of a dataset by key."""
    out, after = {}, 0
    while True:
        page = client.api("GET", f"datasets/{owner}/{name}/samples?limit=500&after={after}")
        out.update({s["key"]: s for s in page["samples"]})
        if page["next"] is None:
            return out
        after = page["next"]


def label(client, name: str, labels: dict[str, list[dict]]) -> None:
    """Annotate samples by key."""
    keys = samples_of(client, OWNER, name)
    body = {"samples": [{"id": keys[k]["id"], "annotations": a} for k, a in labels.items()]}
    client.api("PATCH", f"datasets/{OWNER}/{name}/samples", body)


def publish(client, name: str, **body) -> dict:
    version = client.api("POST", f"datasets/{OWNER}/{name}/versions", body)
    deadline = time.monotonic() + 120
    while version["state"] == "pending":
        assert time.monotonic() < deadline, version
        time.sleep(0.3)
        version = client.api("GET", f"datasets/{OWNER}/{name}/versions/{version['version']}")
    assert version["state"] == "ready", version
    return version


def manifest(client, name: str, version: int) -> bytes:
    r = client.session.get(
        f"{client.api_url}/datasets/{OWNER}/{name}/versions/{version}/manifest", timeout=60
    )
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("application/x-ndjson")
    return r.content


def blob(hub, sha: str) -> Path:
    return datasets_folder(hub) / "blobs" / sha[:2] / sha


def cat(n: int) -> str:
    return f"images/cat-{n}.png"


def make_pets(client, name: str) -> str:
    """An image classification dataset of 10 images, 8 of them labelled (5 cats, 3 dogs).
    Each test makes its own, so that what one publishes, changes or deletes is no other's
    starting point."""
    create(client, name, "image_classification", ["cat", "dog"])
    post_archive(
        client,
        f"datasets/{OWNER}/{name}/samples",
        {cat(i): image(color=COLORS[i]) for i in range(10)},
    )
    label(client, name, {cat(i): [{"label": "cat" if i < 5 else "dog"}] for i in range(8)})
    return name


def change(client, name: str, samples: dict[str, dict]) -> None:
    """After a first version: cat-0 relabelled a dog, cat-1 deleted, a new image (a cat)."""
    label(client, name, {cat(0): [{"label": "dog"}]})
    client.api("POST", f"datasets/{OWNER}/{name}/samples/delete", {"ids": [samples[cat(1)]["id"]]})
    post_archive(
        client, f"datasets/{OWNER}/{name}/samples", {"images/new.png": image(color=(1, 2, 3))}
    )
    label(client, name, {"images/new.png": [{"label": "cat"}]})


def test_a_version_is_a_read_only_folder_of_links_to_the_stored_files(hub, ver):
    pets = make_pets(ver, "pets-links")
    create(ver, "empty", "image_classification", ["cat"])
    with pytest.raises(WorkbenchError) as e:
        ver.api("POST", f"datasets/{OWNER}/empty/versions", {})
    assert e.value.status == 409 and "no samples to publish" in e.value.message
    for bad in ({"train_ratio": 0}, {"train_ratio": 1.5}, {"seed": -1}, {"colour": "red"}):
        with pytest.raises(WorkbenchError) as e:
            ver.api("POST", f"datasets/{OWNER}/{pets}/versions", bad)
        assert e.value.status == 400, bad

    v1 = publish(ver, pets, description="first", train_ratio=0.75, seed=7)
    assert v1["version"] == 1 and v1["samples"] == 10 and v1["labelled"] == 8
    assert [label["name"] for label in v1["labels"]] == ["cat", "dog"]
    assert v1["created_by"] == OWNER and v1["description"] == "first"
    samples = samples_of(ver, OWNER, pets)
    assert v1["size"] == sum(s["size"] for s in samples.values())

    # the manifest: one line a sample in key order, its SHA-256 as published
    text = manifest(ver, pets, 1)
    assert hashlib.sha256(text).hexdigest() == v1["manifest_sha256"]
    folder = datasets_folder(hub) / v1["path"]
    assert (folder / "manifest.jsonl").read_bytes() == text
    lines = [json.loads(line) for line in text.decode().splitlines()]
    assert [line["source"] for line in lines] == [f"data/{k}" for k in sorted(samples)]
    splits = {line["source"][len("data/") :]: line["split"] for line in lines}
    labelled = [cat(i) for i in range(8)]
    assert sorted(splits[k] for k in labelled) == ["train"] * 6 + ["validation"] * 2
    assert splits[cat(8)] == splits[cat(9)] == ""
    for line in lines:
        key = line["source"][len("data/") :]
        assert [a["name"] for a in line["annotation"]] == [
            a["label"] for a in samples[key]["annotations"]
        ]
    assert [x["name"] for x in json.loads((folder / "labels.json").read_text())] == ["cat", "dog"]

    # each file is a hard link to the blob store's file: stored once
    for key, sample in samples.items():
        path = folder / "data" / key
        assert path.stat().st_ino == blob(hub, sample["sha256"]).stat().st_ino
        assert hashlib.sha256(path.read_bytes()).hexdigest() == sample["sha256"]
    # read-only, for everyone
    for root, _, files in os.walk(folder):
        assert os.stat(root).st_mode & 0o222 == 0, root
        for f in files:
            assert os.stat(os.path.join(root, f)).st_mode & 0o222 == 0, f
    if os.geteuid() != 0:
        with pytest.raises(PermissionError):
            (folder / "data" / "new.png").write_bytes(b"x")

    # a second publish of the same samples with the same seed gives the same manifest
    again = publish(ver, pets, train_ratio=0.75, seed=7)
    assert again["version"] == 2 and again["manifest_sha256"] == v1["manifest_sha256"]
    other = publish(ver, pets, train_ratio=0.75, seed=8)
    assert other["manifest_sha256"] != v1["manifest_sha256"]
    for version in (again, other):
        ver.api("DELETE", f"datasets/{OWNER}/{pets}/versions/{version['version']}")
        assert not (datasets_folder(hub) / version["path"]).exists()
    assert [v["version"] for v in ver.api("GET", f"datasets/{OWNER}/{pets}/versions")] == [1]
    assert [v["version"] for v in ver.api("GET", f"datasets/{OWNER}/{pets}")["versions"]] == [1]


def test_versions_share_files_and_the_diff_names_what_changed(hub, ver):
    pets = make_pets(ver, "pets-diff")
    assert publish(ver, pets, description="first", train_ratio=0.75, seed=7)["version"] == 1
    samples = samples_of(ver, OWNER, pets)
    change(ver, pets, samples)
    v2 = publish(ver, pets, description="second", train_ratio=0.75, seed=7)
    assert v2["version"] == 2 and v2["samples"] == 10 and v2["labelled"] == 8
    v1 = ver.api("GET", f"datasets/{OWNER}/{pets}/versions/1")
    one, three = datasets_folder(hub) / v1["path"], datasets_folder(hub) / v2["path"]
    for key in set(samples) - {cat(1)}:
        assert (one / "data" / key).stat().st_ino == (three / "data" / key).stat().st_ino, key
    assert (one / "data" / cat(1)).is_file() and not (three / "data" / cat(1)).exists()
    # the deleted sample's file stays in version 1 (a link of its own)
    assert (
        hashlib.sha256((one / "data" / cat(1)).read_bytes()).hexdigest()
        == (samples[cat(1)]["sha256"])
    )

    diff = ver.api("GET", f"datasets/{OWNER}/{pets}/versions/2/diff?against=1")
    assert diff["added"] == ["images/new.png"]
    assert diff["removed"] == [cat(1)]
    assert diff["relabelled"] == [
        {"key": cat(0), "before": [{"label": "cat"}], "after": [{"label": "dog"}]}
    ]
    back = ver.api("GET", f"datasets/{OWNER}/{pets}/versions/1/diff?against=2")
    assert back["added"] == [cat(1)] and back["removed"] == ["images/new.png"]
    same = ver.api("GET", f"datasets/{OWNER}/{pets}/versions/2/diff?against=2")
    assert same["added"] == same["removed"] == same["relabelled"] == []
    for query, status in (("against=7", 404), ("against=x", 400), ("", 400)):
        with pytest.raises(WorkbenchError) as e:
            ver.api("GET", f"datasets/{OWNER}/{pets}/versions/2/diff?{query}")
        assert e.value.status == status, query


def export(client, name: str, fmt: str, version: int | None = None) -> bytes:
    body = {"format": fmt} if version is None else {"format": fmt, "version": version}
    r = client.session.post(
        f"{client.api_url}/datasets/{OWNER}/{name}/export", json=body, timeout=120
    )
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == "application/zip"
    suffix = f"-v{version}-{fmt}.zip" if version else f"-{fmt}.zip"
    assert r.headers["Content-Disposition"].endswith(f"{name}{suffix}")
    return r.content


def import_back(client, name: str, kind: str, fmt: str, data: bytes) -> dict[str, dict]:
    """A new dataset with the export imported: its samples by key."""
    create(client, name, kind, [])
    r = client.session.post(
        f"{client.api_url}/datasets/{OWNER}/{name}/import?format={fmt}",
        data=data,
        headers={"Content-Type": "application/zip"},
        timeout=120,
    )
    assert r.status_code == 200, r.text
    return samples_of(client, OWNER, name)


def labels_by(samples: dict[str, dict], name=lambda s: s["key"]) -> dict:
    """{name: labels} of the labelled samples."""
    return {
        name(s): sorted(a["label"] for a in s["annotations"])
        for s in samples.values()
        if s["annotations"]
    }


def boxes_by_file(samples: dict[str, dict]) -> dict:
    return {
        PurePosixPath(s["key"]).name: sorted(
            (a["label"], [round(v) for v in a["box"]]) for a in s["annotations"]
        )
        for s in samples.values()
    }


def test_exports_in_every_format_import_back_with_the_same_labels(ver):
    # image classification: ModelArts' manifest, of the samples now and of a version published
    # before they changed
    pets = make_pets(ver, "pets-export")
    assert publish(ver, pets, train_ratio=0.75, seed=7)["version"] == 1
    change(ver, pets, samples_of(ver, OWNER, pets))
    data = export(ver, pets, "modelarts")
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert "manifest.jsonl" in names and cat(0) in names
    copy = import_back(ver, "pets-now", "image_classification", "modelarts", data)
    now = labels_by(samples_of(ver, OWNER, pets))
    assert labels_by(copy) == now
    assert now[cat(0)] == ["dog"] and cat(1) not in now and now["images/new.png"] == ["cat"]
    copy = import_back(
        ver, "pets-v1", "image_classification", "modelarts", export(ver, pets, "modelarts", 1)
    )
    v1 = labels_by(copy)
    assert v1[cat(0)] == ["cat"] and v1[cat(1)] == ["cat"] and "images/new.png" not in v1
    assert len(v1) == 8
    with pytest.raises(WorkbenchError) as e:
        ver.api("POST", f"datasets/{OWNER}/{pets}/export", {"format": "coco"})
    assert e.value.status == 400 and "does not hold image_classification" in e.value.message
    for bad in ({"format": "tiff"}, {"format": "modelarts", "version": 99}):
        with pytest.raises(WorkbenchError) as e:
            ver.api("POST", f"datasets/{OWNER}/{pets}/export", bad)
        assert e.value.status in (400, 404), bad

    # object detection: COCO, PASCAL VOC and YOLO
    create(ver, "cars", "object_detection", ["car", "person"])
    post_archive(
        ver,
        f"datasets/{OWNER}/cars/samples",
        {f"street/{i}.png": image(64, 48, COLORS[i]) for i in range(3)},
    )
    label(
        ver,
        "cars",
        {
            "street/0.png": [{"label": "car", "box": [2, 3, 30, 20]}],
            "street/1.png": [
                {"label": "car", "box": [10, 10, 40, 30]},
                {"label": "person", "box": [44, 4, 60, 46]},
            ],
        },
    )
    expected = boxes_by_file(samples_of(ver, OWNER, "cars"))
    for fmt in ("coco", "voc", "yolo"):
        copy = import_back(ver, f"cars-{fmt}", "object_detection", fmt, export(ver, "cars", fmt))
        labelled = {k: v for k, v in expected.items() if v}
        assert {k: v for k, v in boxes_by_file(copy).items() if v} == labelled, fmt

    # text classification: CSV and JSON lines
    create(ver, "notes", "text_classification", ["pos", "neg"])
    texts = {"t/1.txt": "great, thanks", "t/2.txt": "this broke again", "t/3.txt": "fine, I guess"}
    post_archive(ver, f"datasets/{OWNER}/notes/samples", {k: v.encode() for k, v in texts.items()})
    label(ver, "notes", {"t/1.txt": [{"label": "pos"}], "t/2.txt": [{"label": "neg"}]})
    by_text = labels_by(samples_of(ver, OWNER, "notes"), lambda s: s["text"])
    for fmt in ("csv", "jsonl"):
        copy = import_back(
            ver, f"notes-{fmt}", "text_classification", fmt, export(ver, "notes", fmt)
        )
        assert labels_by(copy, lambda s: s["text"]) == by_text, fmt


JOB = """\
import os, time
folder = os.environ["WORKBENCH_INPUT_DATA"]
with open(os.path.join(folder, "manifest.jsonl")) as f:
    lines = f.readlines()
print("manifest lines:", len(lines), flush=True)
data = os.path.join(folder, "data")
print("files:", sum(len(files) for _, _, files in os.walk(data)), flush=True)
try:
    open(os.path.join(folder, "data", "mine.txt"), "w")
    print("written", flush=True)
except OSError as e:
    print("read-only:", e.errno, flush=True)
time.sleep(600)
"""


def test_a_version_a_job_reads_cannot_be_deleted_until_the_job_ends(hub, ver, ver_other):
    # version 1 of the 10 samples, version 2 (the one the job reads) of 10 after a change
    pets = make_pets(ver, "pets-job")
    publish(ver, pets, train_ratio=0.75, seed=7)
    change(ver, pets, samples_of(ver, OWNER, pets))
    assert publish(ver, pets, train_ratio=0.75, seed=7)["version"] == 2
    source = {"kind": "file", "entry": "read.py", "archive": archive({"read.py": JOB})}
    for inputs, words in (
        ({"data": {"dataset": pets, "version": 9}}, "has no version 9"),
        ({"data": {"dataset": f"{OWNER}/nope", "version": 1}}, "No dataset 'nope'"),
    ):
        with pytest.raises(WorkbenchError) as e:
            submit(ver, "ver-bad", source, inputs=inputs)
        assert e.value.status == 400 and words in e.value.message, e.value.message
    # another user cannot train on a dataset they cannot see
    with pytest.raises(WorkbenchError) as e:
        submit(
            ver_other,
            "ver-theirs",
            source,
            inputs={"data": {"dataset": f"{OWNER}/{pets}", "version": 2}},
        )
    assert e.value.status == 400 and f"No dataset '{pets}'" in e.value.message

    submit(ver, "ver-train", source, inputs={"data": {"dataset": pets, "version": 2}})
    with pytest.raises(WorkbenchError) as e:
        ver.api("DELETE", f"datasets/{OWNER}/{pets}/versions/2")
    assert e.value.status == 409 and f"{OWNER}/ver-train v1" in e.value.message
    with pytest.raises(WorkbenchError) as e:
        ver.api("DELETE", f"datasets/{OWNER}/{pets}")
    assert e.value.status == 409 and "ver-train" in e.value.message
    deadline = time.monotonic() + 180
    while "read-only" not in (text := logs(ver, OWNER, "ver-train")):
        assert time.monotonic() < deadline, text
        time.sleep(0.5)
    assert "manifest lines: 10" in text and "files: 10" in text

    ver.api("POST", f"jobs/{OWNER}/ver-train/versions/1/stop")
    assert wait_for(ver, OWNER, "ver-train")["state"] == "stopped"
    folder = datasets_folder(hub) / ver.api("GET", f"datasets/{OWNER}/{pets}/versions/2")["path"]
    ver.api("DELETE", f"datasets/{OWNER}/{pets}/versions/2")
    assert not folder.exists()
    with pytest.raises(WorkbenchError) as e:
        ver.api("GET", f"datasets/{OWNER}/{pets}/versions/2")
    assert e.value.status == 404
    # the samples' files stay in the store (version 1 and the dataset hold them)
    for sample in samples_of(ver, OWNER, pets).values():
        assert blob(hub, sample["sha256"]).is_file()
    assert [v["version"] for v in ver.api("GET", f"datasets/{OWNER}/{pets}/versions")] == [1]


def test_a_version_whose_files_cannot_be_linked_fails_and_leaves_nothing(hub, ver):
    create(ver, "lost", "image_classification", ["cat"])
    post_archive(ver, f"datasets/{OWNER}/lost/samples", {"only.png": image(color=(250, 250, 1))})
    (sample,) = samples_of(ver, OWNER, "lost").values()
    blob(hub, sample["sha256"]).unlink()  # the store lost the file
    version = ver.api("POST", f"datasets/{OWNER}/lost/versions", {})
    deadline = time.monotonic() + 60
    while version["state"] == "pending":
        assert time.monotonic() < deadline, version
        time.sleep(0.3)
        version = ver.api("GET", f"datasets/{OWNER}/lost/versions/{version['version']}")
    assert version["state"] == "failed"
    assert version["reason"] == (
        "its files could not be linked: the file of sample 'only.png' is missing from the "
        "store: upload it again"
    )
    folder = datasets_folder(hub) / version["path"]
    assert not folder.exists() and list(folder.parent.iterdir()) == []
    with pytest.raises(WorkbenchError) as e:
        ver.api("GET", f"datasets/{OWNER}/lost/versions/{version['version']}/manifest")
    assert e.value.status == 409 and "failed" in e.value.message
    ver.api("DELETE", f"datasets/{OWNER}/lost/versions/{version['version']}")
    assert ver.api("GET", f"datasets/{OWNER}/lost/versions") == []
