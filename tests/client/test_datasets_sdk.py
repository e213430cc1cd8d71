"""client.datasets: what it sends (checked against a recorded transport: a folder as tar
archives below the upload limit, a 413 answered by smaller archives, nothing sent for bad local
input, a new dataset deleted again when its upload fails, samples paged by `after`), the sync
wrapping of the objects it returns, and the whole path on the real hub: a dataset from a local
folder of images, paging, annotating, publishing, the read-only local copy of a version (reused
without a second download), diffs, and an export in each format."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import tarfile
import tempfile
import zipfile
from pathlib import Path

import httpx
import pytest
from workbench import AsyncWorkbenchClient, WorkbenchClient, WorkbenchError
from workbench.resources.datasets import (
    Dataset,
    DatasetInputError,
    Datasets,
    DatasetVersion,
    chunk_files,
    local_files,
    tar_size,
    write_tar,
)

# --- test data ------------------------------------------------------------------------------


def image_bytes(size=(64, 48), fmt="PNG") -> bytes:
    """An image of noise (it does not compress: a few KiB each)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3)).save(buffer, format=fmt)
    return buffer.getvalue()


def pets_folder(root: Path) -> dict[str, bytes]:
    """A folder of 6 small images (cats as PNG, dogs as JPEG, one nested), with a hidden file
    and a symbolic link that are not samples; {key: bytes} of the samples."""
    files = {
        "cats/c1.png": image_bytes(),
        "cats/c2.png": image_bytes(),
        "cats/more/c3.png": image_bytes(size=(20, 30)),
        "dogs/d1.jpg": image_bytes(fmt="JPEG"),
        "dogs/d2.jpg": image_bytes(fmt="JPEG"),
        "dogs/d3.jpg": image_bytes(fmt="JPEG"),
    }
    for key, data in files.items():
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (root / ".DS_Store").write_bytes(b"not a sample")
    (root / "cats" / "link.png").symlink_to(root / "cats" / "c1.png")
    return files


def tar_members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


# --- what the calls send (no hub) -----------------------------------------------------------


def recorded(handler) -> tuple[AsyncWorkbenchClient, list[httpx.Request]]:
    """An async client whose requests go to handler(request) -> httpx.Response, recorded."""
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    client = AsyncWorkbenchClient("http://platform.test", "tok-ds", user="dsunit")
    client._http = httpx.AsyncClient(transport=httpx.MockTransport(record))
    client._http_pid = os.getpid()
    return client, seen


DATASET = {
    "owner": "dsunit",
    "name": "pets",
    "type": "image_classification",
    "labels": [{"name": "cat", "color": "#e6194b", "key": "1"}],
    "samples": 0,
}


def test_a_folder_becomes_archives_below_the_limit(tmp_path):
    files = pets_folder(tmp_path)
    found = local_files(tmp_path)
    # hidden files and links are no samples; keys are POSIX paths inside the folder
    assert [key for key, _, _ in found] == sorted(files)
    limit = 3 * max(len(data) for data in files.values()) + 10240
    chunks = chunk_files(found, limit)
    assert len(chunks) > 1
    assert [entry for chunk in chunks for entry in chunk] == found
    for chunk in chunks:
        with tempfile.TemporaryFile() as f:
            assert write_tar(chunk, f) == tar_size(chunk) <= limit
    with pytest.raises(DatasetInputError, match="c1.png has .* over the") as e:
        chunk_files(found, 10240)
    assert e.value.status == 400
    # two files under one key are refused, naming both
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "c1.png").write_bytes(b"x")
    with pytest.raises(DatasetInputError, match="Two files would be sample 'c1.png'"):
        local_files([tmp_path / "cats" / "c1.png", tmp_path / "other" / "c1.png"])
    assert [k for k, _, _ in local_files({"a.png": tmp_path / "other" / "c1.png"})] == ["a.png"]


async def test_create_sends_the_folder_in_parts_and_shows_progress(tmp_path):
    files = pets_folder(tmp_path)
    limit = 3 * max(len(data) for data in files.values()) + 10240
    received: dict[str, bytes] = {}
    sizes = []

    def answer(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "POST" and path.endswith("/api/datasets"):
            body = json.loads(request.content)
            return httpx.Response(201, json={**DATASET, "labels": body["labels"]})
        if path.endswith("/datasets/dsunit/pets/samples"):
            assert request.headers["content-type"] == "application/x-tar"
            assert int(request.headers["content-length"]) == len(request.content)
            sizes.append(len(request.content))
            members = tar_members(request.content)
            added = [k for k in members if k not in received]
            received.update(members)
            return httpx.Response(
                200, json={"added": len(added), "unchanged": 0, "samples": len(received)}
            )
        if request.method == "GET" and path.endswith("/datasets/dsunit/pets"):
            return httpx.Response(200, json={**DATASET, "samples": len(received)})
        return httpx.Response(404, json={"message": f"unexpected {request.method} {path}"})

    client, seen = recorded(answer)
    progress = []
    dataset = await client.datasets.create(
        "pets",
        "image_classification",
        labels=["cat", {"name": "dog", "color": "#3cb44b"}],
        folder=tmp_path,
        chunk_bytes=limit,
        progress=lambda done, total: progress.append((done, total)),
    )
    body = json.loads(seen[0].content)
    assert body["labels"] == [{"name": "cat"}, {"name": "dog", "color": "#3cb44b"}]
    assert body["type"] == "image_classification" and body["name"] == "pets"
    # every file arrived once, byte for byte, in archives each below the limit
    assert received == files
    assert len(sizes) > 1 and max(sizes) <= limit
    assert dataset.data["samples"] == 6
    total = sum(len(data) for data in files.values())
    assert progress[-1] == (total, total)
    assert [done for done, _ in progress] == sorted(done for done, _ in progress)
    await client.aclose()


async def test_an_archive_too_big_for_the_platform_is_sent_again_in_halves(tmp_path):
    files = pets_folder(tmp_path)
    arrived: dict[str, bytes] = {}
    refused = []

    def answer(request: httpx.Request) -> httpx.Response:
        members = tar_members(request.content)
        if len(members) > 2:  # the platform's limit is lower than the client's
            refused.append(len(members))
            return httpx.Response(413, json={"message": "The upload is over 1 MiB."})
        arrived.update(members)
        return httpx.Response(200, json={"added": len(members), "unchanged": 0, "samples": 6})

    client, _ = recorded(answer)
    dataset = Dataset(client, dict(DATASET))
    totals = await dataset.upload(tmp_path, progress=False)
    assert refused and arrived == files
    assert totals == {"added": 6, "replaced": 0, "unchanged": 0, "samples": 6}
    await client.aclose()


async def test_long_uploads_show_their_progress_on_stderr(tmp_path, capsys):
    files = pets_folder(tmp_path)

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"added": 6, "unchanged": 0, "samples": 6})

    client, _ = recorded(answer)
    dataset = Dataset(client, dict(DATASET))
    await dataset.upload(tmp_path, progress=True)
    lines = capsys.readouterr().err.splitlines()
    total = sum(len(data) for data in files.values()) / 1024**2
    assert (
        lines[-1] == f"uploading 6 files to dsunit/pets: 100% ({total:.1f} MiB of {total:.1f} MiB)"
    )
    # small uploads say nothing unless asked
    await dataset.upload(tmp_path)
    assert capsys.readouterr().err == ""
    await client.aclose()


async def test_bad_local_input_sends_nothing(tmp_path):
    client, seen = recorded(lambda request: httpx.Response(500))
    with pytest.raises(DatasetInputError, match="Unknown dataset type 'images'.*object_detection"):
        await client.datasets.create("pets", "images", folder=tmp_path)
    with pytest.raises(DatasetInputError, match="No such folder: .*missing"):
        await client.datasets.create("pets", "image_classification", folder=tmp_path / "missing")
    with pytest.raises(DatasetInputError, match="holds no files"):
        await client.datasets.create("pets", "image_classification", folder=tmp_path)
    dataset = Dataset(client, dict(DATASET))
    with pytest.raises(DatasetInputError, match="No such file or folder"):
        await dataset.upload(tmp_path / "nothing.png")
    with pytest.raises(DatasetInputError, match="Unknown format 'kitti'"):
        await dataset.import_(tmp_path, "kitti")
    with pytest.raises(DatasetInputError, match="Unknown format 'kitti'"):
        await dataset.export("kitti", to=tmp_path)
    assert seen == []
    await client.aclose()


async def test_a_new_dataset_goes_again_when_its_upload_fails(tmp_path):
    pets_folder(tmp_path)

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/samples"):
            return httpx.Response(409, json={"message": "Dataset pets is over its 0 GiB quota."})
        if request.method == "POST":
            return httpx.Response(201, json=DATASET)
        return httpx.Response(204)

    client, seen = recorded(answer)
    with pytest.raises(WorkbenchError, match="over its 0 GiB quota") as e:
        await client.datasets.create("pets", "image_classification", folder=tmp_path / "dogs")
    assert e.value.status == 409
    assert [(r.method, r.url.path.split("/api/")[1]) for r in seen] == [
        ("POST", "datasets"),
        ("POST", "datasets/dsunit/pets/samples"),
        ("DELETE", "datasets/dsunit/pets"),
    ]
    await client.aclose()


async def test_samples_are_paged_by_after():
    pages = {
        None: {"samples": [{"id": 1}, {"id": 2}], "next": 2},
        "2": {"samples": [{"id": 5}, {"id": 7}], "next": 7},
        "7": {"samples": [{"id": 9}], "next": None},
    }

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=pages[request.url.params.get("after")])

    client, seen = recorded(answer)
    dataset = Dataset(client, dict(DATASET))
    ids = [s["id"] async for s in dataset.samples(status="labelled", label="cat", page_size=2)]
    assert ids == [1, 2, 5, 7, 9]
    assert [dict(r.url.params) for r in seen] == [
        {"status": "labelled", "label": "cat", "limit": "2"},
        {"status": "labelled", "label": "cat", "limit": "2", "after": "2"},
        {"status": "labelled", "label": "cat", "limit": "2", "after": "7"},
    ]
    seen.clear()
    assert [s["id"] async for s in dataset.samples(limit=3, page_size=2)] == [1, 2, 5]
    # the last page asks only for what is still wanted
    assert [r.url.params["limit"] for r in seen] == ["2", "1"]
    await client.aclose()


def test_sync_objects_block_and_iterate():
    import workbench

    assert "datasets" in dir(workbench)
    client = WorkbenchClient("http://127.0.0.1:9", "t", user="dsunit")
    assert isinstance(client.aio.datasets, Datasets)
    from workbench.sync import SyncNamespace, _synced

    dataset = _synced(Dataset(client.aio, dict(DATASET)))
    assert isinstance(dataset, SyncNamespace)
    assert dataset.label_names == ["cat"] and dataset.type == "image_classification"
    with pytest.raises(WorkbenchError) as e:  # a blocking call: the error, not a coroutine
        dataset.stats()
    assert e.value.status == 0
    with pytest.raises(WorkbenchError) as e:  # an iterator, run step by step
        next(iter(dataset.samples()))
    assert e.value.status == 0  # no answer: nothing listens on port 9
    version = _synced(DatasetVersion(client.aio, "dsunit", "pets", {"version": 3}))
    assert version.version == 3
    assert version.cache_path("/c") == Path("/c/dsunit/pets/3")


# --- on the real hub ------------------------------------------------------------------------


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def dssdk(hub):
    client = hub.add_user("dssdk")
    yield client
    for dataset in client.datasets.list():
        client.datasets.delete(dataset["name"])


def exports_seen(client) -> list[str]:
    """The export requests the client makes from now on."""
    seen: list[str] = []

    async def record(request: httpx.Request):
        if request.url.path.endswith("/export"):
            seen.append(str(request.url))

    client.aio.http.event_hooks["request"].append(record)
    return seen


@pytest.mark.integration
def test_a_dataset_from_a_folder_labelled_published_and_used_locally(dssdk, tmp_path):
    folder = tmp_path / "pets"
    files = pets_folder(folder)
    limit = 3 * max(len(data) for data in files.values()) + 10240
    dataset = dssdk.datasets.create(
        "pets",
        "image_classification",
        labels=["cat", "dog"],
        folder=folder,
        description="cats and dogs",
        chunk_bytes=limit,  # several archives
    )
    assert dataset.data["samples"] == 6
    # labels got the platform's default colors and keys
    assert [(label["name"], label["key"]) for label in dataset.labels] == [
        ("cat", "1"),
        ("dog", "2"),
    ]
    assert all(label["color"].startswith("#") for label in dataset.labels)
    assert "pets" in [d["name"] for d in dssdk.datasets.list()]
    assert dssdk.datasets.get("dssdk/pets").description == "cats and dogs"

    # paging by `after`: every sample once, in id order, however small the pages
    samples = list(dataset.samples(page_size=2))
    assert sorted(s["key"] for s in samples) == sorted(files)
    assert [s["id"] for s in samples] == sorted(s["id"] for s in samples)
    assert [s["id"] for s in dataset.samples(limit=4, page_size=3)] == [
        s["id"] for s in samples[:4]
    ]
    by_key = {s["key"]: s for s in samples}
    assert {s["status"] for s in samples} == {"unlabelled"}
    assert by_key["cats/more/c3.png"]["width"] == 20 and by_key["cats/more/c3.png"]["height"] == 30
    assert by_key["cats/c1.png"]["sha256"] == sha(files["cats/c1.png"])
    assert dataset.content(by_key["dogs/d1.jpg"]["id"]) == files["dogs/d1.jpg"]

    # annotating: one, then the rest in bulk
    first = dataset.annotate(by_key["cats/c1.png"]["id"], "cat")
    assert first["status"] == "labelled" and first["annotated_by"] == "dssdk"
    assert [a["label"] for a in first["annotations"]] == ["cat"]
    dataset.annotate_many(
        {
            s["id"]: "cat" if key.startswith("cats/") else "dog"
            for key, s in by_key.items()
            if key != "cats/c1.png"
        }
    )
    with pytest.raises(WorkbenchError) as e:
        dataset.annotate(by_key["dogs/d1.jpg"]["id"], "horse")
    assert e.value.status == 400 and "horse" in e.value.message
    assert dataset.sample(by_key["dogs/d1.jpg"]["id"])["annotations"][0]["label"] == "dog"
    stats = dataset.stats()
    assert (stats["samples"], stats["labelled"], stats["unlabelled"]) == (6, 6, 0)
    assert stats["per_label"] == {"cat": 3, "dog": 3}
    assert [s["key"] for s in dataset.samples(label="dog")] == sorted(
        k for k in files if k.startswith("dogs/")
    )

    # a version, and its local copy: the manifest and the files, read-only
    version = dataset.publish(description="first", train_ratio=0.5)
    assert (version.version, version.state, version.data["samples"]) == (1, "ready", 6)
    manifest = version.manifest()
    assert len(manifest) == 6
    assert {line["split"] for line in manifest} == {"train", "validation"}
    exports = exports_seen(dssdk)
    cache = tmp_path / "cache"
    path = version.local_path(cache)
    assert path == cache / "dssdk" / "pets" / "1"
    assert len(exports) == 1
    names = {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()}
    manifests = [n for n in names if n.startswith("manifest")]
    assert manifests, names
    lines = [
        json.loads(line) for line in (path / manifests[0]).read_text().splitlines() if line.strip()
    ]
    assert len(lines) == 6
    for line in lines:
        source = line["source"]
        assert not source.startswith(("/", "s3:")) and ".." not in source.split("/")
        key = source.split("data/", 1)[1] if "data/" in source else source
        assert (path / source).read_bytes() == files[key]
        assert mode(path / source) & 0o222 == 0
    assert mode(path) & 0o222 == 0
    assert all(mode(p) & 0o222 == 0 for p in path.rglob("*"))
    # a second call: the same folder, nothing downloaded again
    assert version.local_path(cache) == path
    assert dataset.local_path(1, cache) == path
    assert len(exports) == 1

    # a relabelled sample shows in the next version's diff
    dataset.annotate(by_key["dogs/d3.jpg"]["id"], "cat")
    second = dataset.publish()
    assert second.version == 2
    diff = second.diff(version)
    assert diff["added"] == [] and diff["removed"] == []
    assert [change["key"] for change in diff["relabelled"]] == ["dogs/d3.jpg"]
    assert [v["version"] for v in dataset.versions()] == [1, 2]
    assert dataset.version().version == 2

    # an export of a version to a file
    (tmp_path / "exports").mkdir()
    target = dataset.export("modelarts", 1, tmp_path / "exports")
    assert target.parent == tmp_path / "exports" and target.suffix == ".zip"
    with zipfile.ZipFile(target) as z:
        assert len([n for n in z.namelist() if n.endswith((".png", ".jpg"))]) == 6

    dataset.delete()
    with pytest.raises(WorkbenchError) as e:
        dssdk.datasets.get("pets")
    assert e.value.status == 404


@pytest.mark.integration
def test_a_task_reviewed_and_a_dataset_imported_from_an_export(dssdk, tmp_path):
    pets_folder(tmp_path / "pets")
    dataset = dssdk.datasets.create(
        "teamwork", "image_classification", labels=["cat", "dog"], folder=tmp_path / "pets"
    )
    task = dataset.create_task("first", ["dssdk"], ["dssdk"], samples="unlabelled")
    assert task["samples"] == 6 and task["progress"]["dssdk"]["assigned"] == 6
    assert [t["name"] for t in dataset.tasks()] == ["first"]
    samples = list(dataset.samples(task="first", assignee="dssdk"))
    assert len(samples) == 6
    cat, dog = samples[0]["id"], samples[-1]["id"]
    assert dataset.annotate(cat, "cat")["review"] == "to_review"
    dataset.annotate(dog, "cat")
    reviewed = dataset.review("first", [(cat, True), (dog, False, "a dog")])
    assert [s["review"] for s in reviewed["samples"]] == ["accepted", "rejected"]
    assert [s["id"] for s in dataset.samples(review="rejected")] == [dog]
    assert dataset.sample(dog)["review_comment"] == "a dog"
    stats = dataset.stats()
    assert (stats["accepted"], stats["rejected"], stats["labelled"]) == (1, 1, 2)
    assert dataset.task("first")["progress"]["dssdk"]["accepted"] == 1
    dataset.delete_task("first")
    assert dataset.tasks() == []

    # an export imported into new datasets: as the zip, and as a folder (tarred)
    archive = dataset.export("modelarts", to=tmp_path / "teamwork.zip")
    copy = dssdk.datasets.create("teamwork-zip", "image_classification", labels=["cat", "dog"])
    answer = copy.import_(archive, "modelarts")
    assert (answer["added"], answer["annotated"], answer["samples"]) == (6, 2, 6)
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(archive) as z:
        z.extractall(unpacked)
    again = dssdk.datasets.create("teamwork-dir", "image_classification", labels=["cat", "dog"])
    answer = again.import_(unpacked, "modelarts")
    assert (answer["added"], answer["annotated"], answer["samples"]) == (6, 2, 6)
    assert again.stats()["per_label"] == {"cat": 2, "dog": 0}
    with pytest.raises(WorkbenchError) as e:
        again.import_(unpacked, "coco")
    assert e.value.status == 400


@pytest.mark.integration
def test_each_format_exports_to_a_file(dssdk, tmp_path):
    boxes = dssdk.datasets.create(
        "boxes",
        "object_detection",
        labels=["car"],
        files={
            "street/a.png": _street(tmp_path / "a.png"),
            "street/b.png": _street(tmp_path / "b.png"),
        },
    )
    for sample in boxes.samples():
        boxes.annotate(sample["id"], [{"label": "car", "box": [2, 3, 20, 15]}])
    texts_folder = tmp_path / "texts"
    texts_folder.mkdir()
    for n, text in enumerate(["great film", "dull plot", "loved it"]):
        (texts_folder / f"{n}.txt").write_text(text)
    texts = dssdk.datasets.create(
        "reviews", "text_classification", labels=["pos", "neg"], folder=texts_folder
    )
    for sample in texts.samples():
        texts.annotate(sample["id"], "neg" if "dull" in sample["text"] else "pos")

    out = tmp_path / "out"
    out.mkdir()
    for dataset, fmt, expect in (
        (boxes, "modelarts", "manifest"),
        (boxes, "coco", ".json"),
        (boxes, "voc", ".xml"),
        (boxes, "yolo", ".txt"),
        (texts, "csv", ".csv"),
        (texts, "jsonl", ".jsonl"),
    ):
        target = dataset.export(fmt, to=out)
        assert target.parent == out and target.stat().st_size > 0
        with zipfile.ZipFile(target) as z:
            assert any(expect in name for name in z.namelist()), (fmt, z.namelist())
    with zipfile.ZipFile(boxes.export("coco", to=out / "boxes.zip")) as z:
        coco = json.loads(z.read(next(n for n in z.namelist() if n.endswith(".json"))))
    assert [c["name"] for c in coco["categories"]] == ["car"]
    assert len(coco["images"]) == 2 and len(coco["annotations"]) == 2
    # COCO boxes are [x, y, width, height]
    assert coco["annotations"][0]["bbox"] == [2, 3, 18, 12]
    with zipfile.ZipFile(texts.export("csv", to=out / "reviews.zip")) as z:
        table = z.read(next(n for n in z.namelist() if n.endswith(".csv"))).decode()
    assert "dull plot" in table and "neg" in table
    with pytest.raises(WorkbenchError) as e:
        texts.export("coco", to=out)
    assert e.value.status == 400


def _street(path: Path) -> Path:
    path.write_bytes(image_bytes(size=(40, 30)))
    return path
