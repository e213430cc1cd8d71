"""Datasets against a real hub: each type made with its label set, files and archives uploaded
(each content stored once), a COCO archive imported, samples paged and filtered, annotated one
by one and in bulk, statistics, labels renamed and deleted, visibility between users and a
workspace, and bad input refused with the reason and nothing half-made.

The module's hub allows 1 MiB per dataset and 2 MiB per user, so that the quotas are reached
with small images. The paging test at 100,000 samples runs the service on a database of its
own and checks the queries' plans (indexes, no full scans), not their times."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy import event, insert
from workbench import WorkbenchError

from hub.db import Database, upgrade
from tests.platform import running_hub
from training_bridge.datasets.blobs import BlobStore
from training_bridge.datasets.datasets import DatasetService
from training_bridge.datasets.settings import DatasetSettings
from training_bridge.datasets.store import Dataset, Sample

from .data_helpers import coco, image, noise, tar_of, zip_of

OWNER, OTHER, MATE, SAVER = "dset-owner", "dset-other", "dset-mate", "dset-saver"
WORKSPACE = "dset-lab"
TYPES = ("image_classification", "object_detection", "text_classification", "named_entities")


@pytest.fixture(scope="module")
def ds_hub(tmp_path_factory, engine):
    """A hub of its own: 1 MiB per dataset, 2 MiB of datasets per user."""
    settings = "[workbench.datasets]\nmax_dataset_gib = 0.001\nmax_user_gib = 0.002\n"
    with running_hub(
        tmp_path_factory.mktemp("datasets-hub"), engine.url, "datasets", extra_settings=settings
    ) as h:
        yield h


@pytest.fixture(scope="module")
def owner(ds_hub):
    return ds_hub.add_user(OWNER)


@pytest.fixture(scope="module")
def other(ds_hub):
    return ds_hub.add_user(OTHER)


@pytest.fixture(scope="module")
def mate(ds_hub, owner):
    client = ds_hub.add_user(MATE)
    ds_hub.client().api("POST", "workspaces", {"name": WORKSPACE, "members": [OWNER, MATE]})
    return client


# --- helpers -----------------------------------------------------------------------------------
def path(owner: str, name: str, *parts) -> str:
    return "/".join(["datasets", quote(owner, safe=""), quote(name, safe=""), *map(str, parts)])


def send(client, owner, name, route, data: bytes, content_type: str, **params):
    """A raw body to .../samples or .../import: the response (not raised)."""
    url = f"{client.api_url}/{path(owner, name, route)}"
    return client.session.post(
        url, data=data, params=params, headers={"Content-Type": content_type}, timeout=120
    )


def upload(client, name, data, content_type="image/png", owner=OWNER, **params) -> dict:
    r = send(client, owner, name, "samples", data, content_type, **params)
    assert r.status_code == 200, r.text
    return r.json()


def make(client, name, kind="image_classification", labels=("cat", "dog"), **extra) -> dict:
    body = {"name": name, "type": kind, "labels": list(labels), **extra}
    return client.api("POST", "datasets", body)


def samples(client, name, owner=OWNER, **params) -> list[dict]:
    page = client.api("GET", path(owner, name, "samples"), params={"limit": 500, **params})
    return page["samples"]


def refused(call, status: int, words) -> str:
    with pytest.raises(WorkbenchError) as e:
        call()
    assert e.value.status == status, e.value.message
    for word in words:
        assert word in e.value.message, e.value.message
    return e.value.message


def blob_files(hub) -> set[str]:
    root = hub.root / "data" / "datasets" / "blobs"
    return {p.name for p in root.glob("??/*")} if root.exists() else set()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- datasets ----------------------------------------------------------------------------------
def test_each_type_is_made_with_its_label_set(ds_hub, owner):
    for kind in TYPES:
        name = "kind-" + kind.replace("_", "-")
        labels = ["cat", {"name": "dog", "color": "#00FF00", "key": "D"}]
        multi = kind == "text_classification"
        made = make(owner, name, kind, labels, multi_label=multi, description="d")
        assert (made["owner"], made["name"], made["type"]) == (OWNER, name, kind)
        assert made["labels"] == [
            {"name": "cat", "color": "#e6194b", "key": "1"},
            {"name": "dog", "color": "#00ff00", "key": "d"},
        ]
        assert made["multi_label"] is multi and made["workspace"] == "default"
        assert made["samples"] == 0 and made["size"] == 0 and made["versions"] == []
        assert made["stats"]["per_label"] == {"cat": 0, "dog": 0}
        assert owner.api("GET", path(OWNER, name))["description"] == "d"
    listed = {d["name"]: d for d in owner.api("GET", "datasets")}
    assert {"kind-" + k.replace("_", "-") for k in TYPES} <= set(listed)

    refused(lambda: make(owner, "audio", "audio_classification"), 400, ["Unknown dataset type"])
    refused(lambda: make(owner, "kind-object-detection"), 409, ["already have a dataset named"])
    refused(
        lambda: make(owner, "multi", "object_detection", multi_label=True),
        400,
        ["multi_label is for classification"],
    )
    refused(lambda: make(owner, "Bad Name"), 400, ["Invalid dataset name"])
    refused(
        lambda: make(owner, "keys", labels=[{"name": "a", "key": "x"}, {"name": "b", "key": "x"}]),
        400,
        ["two labels"],
    )
    refused(lambda: make(owner, "extra", colour="red"), 400, ["not colour"])
    names = [d["name"] for d in owner.api("GET", "datasets")]
    assert not {"audio", "multi", "Bad Name", "keys", "extra"} & set(names)


def test_files_and_archives_are_uploaded_and_each_content_stored_once(ds_hub, owner):
    make(owner, "pets")
    one = image(color=(10, 20, 30))
    first = upload(owner, "pets", one, key="cats/one.png")
    assert first == {"added": 1, "replaced": 0, "unchanged": 0, "annotated": 0, "samples": 1}
    two, jpeg = image(color=(40, 50, 60)), image(48, 40, fmt="JPEG")
    archive = zip_of(
        {
            "cats/two.png": two,
            "dogs/one.jpg": jpeg,
            "__MACOSX/cats/._two.png": b"resource fork",
            ".DS_Store": b"finder",
        }
    )
    added = upload(owner, "pets", archive, "application/zip")
    assert (added["added"], added["samples"]) == (2, 3)
    stored = blob_files(ds_hub)
    assert {sha(one), sha(two), sha(jpeg)} <= stored
    again = upload(owner, "pets", archive, "application/zip")
    assert (again["added"], again["unchanged"], again["samples"]) == (0, 2, 3)
    assert blob_files(ds_hub) == stored
    # a tar.gz below a folder given as key
    three = image(color=(70, 80, 90))
    upload(owner, "pets", tar_of({"three.png": three}, gz=True), "application/gzip", key="more")
    by_key = {s["key"]: s for s in samples(owner, "pets")}
    assert set(by_key) == {"cats/one.png", "cats/two.png", "dogs/one.jpg", "more/three.png"}
    assert (by_key["dogs/one.jpg"]["media_type"], by_key["dogs/one.jpg"]["width"]) == (
        "image/jpeg",
        48,
    )
    assert by_key["cats/one.png"]["sha256"] == sha(one)
    assert (by_key["cats/one.png"]["width"], by_key["cats/one.png"]["height"]) == (32, 24)
    assert "text" not in by_key["cats/one.png"]

    # the file as it was sent, cached as immutable by its SHA-256
    sample_id = by_key["cats/one.png"]["id"]
    url = f"{owner.api_url}/{path(OWNER, 'pets', 'samples', sample_id, 'content')}"
    r = owner.session.get(url, timeout=30)
    assert r.status_code == 200 and r.content == one
    assert r.headers["Content-Type"] == "image/png"
    assert r.headers["ETag"] == f'"{sha(one)}"'
    assert "immutable" in r.headers["Cache-Control"]
    again = owner.session.get(url, headers={"If-None-Match": r.headers["ETag"]}, timeout=30)
    assert again.status_code == 304 and again.content == b""

    # a key sent again with other content takes it and loses its annotations
    owner.api(
        "PUT",
        path(OWNER, "pets", "samples", sample_id, "annotations"),
        {"annotations": [{"label": "cat"}]},
    )
    other_image = image(color=(1, 1, 1))
    replaced = upload(owner, "pets", other_image, key="cats/one.png")
    assert (replaced["replaced"], replaced["samples"]) == (1, 4)
    now = owner.api("GET", path(OWNER, "pets", "samples", sample_id))
    assert now["sha256"] == sha(other_image) and now["annotations"] == []
    assert now["status"] == "unlabelled"
    # the replaced content is no sample's any more: it leaves the store
    assert sha(one) not in blob_files(ds_hub)


def test_text_samples_carry_their_text(ds_hub, owner):
    make(owner, "notes", "text_classification", ["good", "bad"])
    upload(owner, "notes", "Très bien.\n".encode(), "text/plain", key="a.txt")
    upload(
        owner,
        "notes",
        tar_of({"b/1.txt": b"first", "b/2.txt": b"second"}, gz=True),
        "application/gzip",
    )
    texts = {s["key"]: s["text"] for s in samples(owner, "notes")}
    assert texts == {"a.txt": "Très bien.\n", "b/1.txt": "first", "b/2.txt": "second"}
    first = samples(owner, "notes")[0]
    assert first["media_type"] == "text/plain" and first["width"] == 0
    url = f"{owner.api_url}/{path(OWNER, 'notes', 'samples', first['id'], 'content')}"
    r = owner.session.get(url, timeout=30)
    assert r.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert r.content.decode() == "Très bien.\n"
    message = refused(
        lambda: _raise(
            send(owner, OWNER, "notes", "samples", b"\xff\xfe\x00", "text/plain", key="x.txt")
        ),
        400,
        ["'x.txt'", "not UTF-8"],
    )
    assert "byte 0" in message
    done = owner.api(
        "PUT",
        path(OWNER, "notes", "samples", first["id"], "annotations"),
        {"annotations": [{"label": "good"}]},
    )
    assert done["text"] == "Très bien.\n" and done["annotations"][0]["label"] == "good"


def _raise(response):
    """A raw response as the client would raise it."""
    if response.status_code >= 400:
        raise WorkbenchError(response.status_code, response.json()["message"])
    return response.json()


def test_a_coco_archive_is_imported_with_its_boxes_and_new_labels(ds_hub, owner):
    make(owner, "boxes", "object_detection", ["cat"])
    a, b = image(40, 30, (5, 5, 5)), image(20, 20, (6, 6, 6))
    annotations = coco(
        [
            {"file_name": "a.png", "width": 40, "height": 30},
            {"file_name": "b.png", "width": 20, "height": 20},
        ],
        ["cat", "dog"],
        [(0, "cat", [1, 1, 10, 10]), (0, "dog", [20, 5, 10, 20]), (1, "dog", [0, 0, 20, 20])],
    )
    archive = zip_of(
        {"images/a.png": a, "images/b.png": b, "annotations/instances_train.json": annotations}
    )
    result = _raise(
        send(owner, OWNER, "boxes", "import", archive, "application/zip", format="coco")
    )
    assert (result["added"], result["annotated"], result["samples"]) == (2, 2, 2)
    assert result["labels"] == ["dog"]
    ds = owner.api("GET", path(OWNER, "boxes"))
    assert [label["name"] for label in ds["labels"]] == ["cat", "dog"]
    assert ds["stats"]["per_label"] == {"cat": 1, "dog": 2}
    assert ds["stats"]["labelled"] == 2
    by_key = {s["key"]: s for s in samples(owner, "boxes")}
    boxes = sorted((x["label"], x["box"]) for x in by_key["images/a.png"]["annotations"])
    assert boxes == [("cat", [1, 1, 11, 11]), ("dog", [20, 5, 30, 25])]
    assert by_key["images/a.png"]["annotated_by"] == OWNER
    assert by_key["images/b.png"]["sha256"] == sha(b)


def test_samples_are_paged_filtered_annotated_and_counted(ds_hub, owner):
    make(owner, "many", labels=("a", "b"))
    same = image(8, 8, (9, 9, 9))
    before = blob_files(ds_hub)
    added = upload(
        owner, "many", zip_of({f"s/{i:02}.png": same for i in range(25)}), "application/zip"
    )
    assert added["added"] == 25
    # 25 samples, one file
    assert len(blob_files(ds_hub) - before) == 1
    assert owner.api("GET", path(OWNER, "many"))["size"] == len(same)
    ids = [s["id"] for s in samples(owner, "many")]
    assert ids == sorted(ids) and len(ids) == 25
    bulk = owner.api(
        "PATCH",
        path(OWNER, "many", "samples"),
        {"samples": [{"id": i, "annotations": [{"label": "a"}]} for i in ids[:5]]},
    )
    assert [s["status"] for s in bulk["samples"]] == ["labelled"] * 5
    for i in ids[5:8]:
        one = owner.api(
            "PUT",
            path(OWNER, "many", "samples", i, "annotations"),
            {"annotations": [{"label": "b"}]},
        )
        assert one["annotated_by"] == OWNER and one["annotations"][0]["annotated_by"] == OWNER
        assert one["confidence"] is None and one["annotations"][0]["created"].endswith("Z")

    seen, after, pages = [], 0, 0
    while True:
        page = owner.api(
            "GET", path(OWNER, "many", "samples"), params={"limit": 10, "after": after}
        )
        seen += [s["id"] for s in page["samples"]]
        pages += 1
        assert "total" not in page
        if page["next"] is None:
            break
        after = page["next"]
    assert seen == ids and pages == 3

    def query(**params):
        return owner.api("GET", path(OWNER, "many", "samples"), params={"limit": 500, **params})

    labelled = query(status="labelled", with_total=1)
    assert labelled["total"] == 8 and [s["id"] for s in labelled["samples"]] == ids[:8]
    assert [s["id"] for s in query(label="a")["samples"]] == ids[:5]
    assert [s["id"] for s in query(label="b", status="labelled")["samples"]] == ids[5:8]
    assert len(query(status="unlabelled")["samples"]) == 17
    assert len(query(annotated_by=OWNER)["samples"]) == 8
    assert query(annotated_by="model")["samples"] == []
    assert query(review="none", with_total=1)["total"] == 25
    assert query(limit=1, with_total=1, status="unlabelled")["total"] == 17
    refused(lambda: query(status="done"), 400, ["status must be one of"])
    refused(lambda: query(limit=0), 400, ["limit must be a whole number from 1 to 500"])
    refused(lambda: query(limit=501), 400, ["limit"])
    refused(lambda: query(task="nope"), 404, ["no labelling task 'nope'"])

    stats = owner.api("GET", path(OWNER, "many", "stats"))
    assert stats == {
        "samples": 25,
        "unlabelled": 17,
        "labelled": 8,
        "prelabelled": 0,
        "to_review": 0,
        "accepted": 0,
        "rejected": 0,
        "per_label": {"a": 5, "b": 3},
    }
    # clearing the annotations makes a sample unlabelled again
    cleared = owner.api(
        "PUT", path(OWNER, "many", "samples", ids[0], "annotations"), {"annotations": []}
    )
    assert (cleared["status"], cleared["annotated_by"]) == ("unlabelled", "")
    # one label each unless multi_label
    refused(
        lambda: owner.api(
            "PUT",
            path(OWNER, "many", "samples", ids[1], "annotations"),
            {"annotations": [{"label": "a"}, {"label": "b"}]},
        ),
        400,
        ["multi_label is off"],
    )
    owner.api("PATCH", path(OWNER, "many"), {"multi_label": True})
    both = owner.api(
        "PUT",
        path(OWNER, "many", "samples", ids[1], "annotations"),
        {"annotations": [{"label": "a"}, {"label": "b"}]},
    )
    assert [x["label"] for x in both["annotations"]] == ["a", "b"]
    refused(
        lambda: owner.api("PATCH", path(OWNER, "many"), {"multi_label": False}),
        409,
        ["1 samples have several labels"],
    )
    # bulk annotation is all or nothing
    refused(
        lambda: owner.api(
            "PATCH",
            path(OWNER, "many", "samples"),
            {
                "samples": [
                    {"id": ids[20], "annotations": [{"label": "a"}]},
                    {"id": ids[21], "annotations": [{"label": "zebra"}]},
                ]
            },
        ),
        400,
        ["'zebra'"],
    )
    assert owner.api("GET", path(OWNER, "many", "samples", ids[20]))["status"] == "unlabelled"
    # nothing is pre-labelled: nothing to accept
    assert owner.api("POST", path(OWNER, "many", "samples/accept"), {"ids": ids[:3]}) == {
        "accepted": 0
    }
    gone = owner.api("POST", path(OWNER, "many", "samples/delete"), {"ids": ids[20:]})
    assert gone == {"deleted": 5, "samples": 20}
    refused(lambda: owner.api("GET", path(OWNER, "many", "samples", ids[24])), 404, ["no sample"])


def test_a_rename_rewrites_annotations_and_a_used_label_goes_only_with_force(ds_hub, owner):
    make(owner, "names", labels=("cat", "dog", "big cat"))
    upload(
        owner,
        "names",
        zip_of({f"{i}.png": image(color=(i, i, i)) for i in range(3)}),
        "application/zip",
    )
    ids = [s["id"] for s in samples(owner, "names")]
    for i in ids[:2]:
        owner.api(
            "PUT",
            path(OWNER, "names", "samples", i, "annotations"),
            {"annotations": [{"label": "cat"}]},
        )
    labels = owner.api(
        "PATCH", path(OWNER, "names", "labels", "cat"), {"name": "kitty", "key": "k"}
    )
    assert labels[0] == {"name": "kitty", "color": "#e6194b", "key": "k"}
    assert [s["id"] for s in samples(owner, "names", label="kitty")] == ids[:2]
    assert samples(owner, "names", label="cat") == []
    assert owner.api("GET", path(OWNER, "names", "stats"))["per_label"]["kitty"] == 2
    refused(
        lambda: owner.api("PATCH", path(OWNER, "names", "labels", "kitty"), {"name": "dog"}),
        409,
        ["has a label 'dog' already"],
    )
    # a name with a space, quoted in the path
    spaced = owner.api("PATCH", path(OWNER, "names", "labels", "big cat"), {"color": "#123456"})
    assert spaced[2] == {"name": "big cat", "color": "#123456", "key": "3"}
    refused(
        lambda: owner.api("DELETE", path(OWNER, "names", "labels", "kitty")),
        409,
        ["used by 2 samples", "force=1"],
    )
    assert owner.api("GET", path(OWNER, "names", "stats"))["labelled"] == 2
    left = owner.api("DELETE", path(OWNER, "names", "labels", "kitty") + "?force=1")
    assert [label["name"] for label in left] == ["dog", "big cat"]
    for s in samples(owner, "names"):
        assert (s["annotations"], s["status"]) == ([], "unlabelled")
    assert owner.api("DELETE", path(OWNER, "names", "labels", "dog")) == [spaced[2]]
    added = owner.api("POST", path(OWNER, "names", "labels"), {"name": "bird"})
    assert added[-1]["name"] == "bird" and added[-1]["key"] and added[-1]["color"]
    refused(
        lambda: owner.api("POST", path(OWNER, "names", "labels"), {"name": "bird"}),
        409,
        ["already"],
    )
    refused(
        lambda: owner.api("POST", path(OWNER, "names", "labels"), {"name": "a/b"}),
        400,
        ["'/'"],
    )
    refused(
        lambda: owner.api("PATCH", path(OWNER, "names", "labels", "nope"), {"color": "#000000"}),
        404,
        ["no label 'nope'"],
    )


def test_owners_workspace_members_and_others_see_what_they_may(ds_hub, owner, other, mate):
    make(owner, "private")
    make(owner, "shared", workspace=WORKSPACE)
    for name in ("private", "shared"):
        upload(owner, name, image(color=(3, 2, 1)), key="x.png")
    shared_id = samples(owner, "shared")[0]["id"]

    # anyone else: as if they did not exist
    for name in ("private", "shared"):
        for call in (
            lambda n=name: other.api("GET", path(OWNER, n)),
            lambda n=name: other.api("GET", path(OWNER, n, "samples")),
            lambda n=name: other.api("GET", path(OWNER, n, "stats")),
            lambda n=name: other.api("DELETE", path(OWNER, n)),
            lambda n=name: _raise(
                send(other, OWNER, n, "samples", image(), "image/png", key="y.png")
            ),
        ):
            refused(call, 404, [f"No dataset '{name}' of user '{OWNER}'"])
    assert not {"private", "shared"} & {d["name"] for d in other.api("GET", "datasets")}

    # a member of the dataset's workspace reads and labels, but does not change it
    assert "shared" in {d["name"] for d in mate.api("GET", "datasets")}
    assert "shared" in {d["name"] for d in mate.api("GET", f"datasets?workspace={WORKSPACE}")}
    assert "private" not in {d["name"] for d in mate.api("GET", "datasets")}
    refused(lambda: mate.api("GET", path(OWNER, "private")), 404, ["No dataset"])
    assert mate.api("GET", path(OWNER, "shared"))["samples"] == 1
    labelled = mate.api(
        "PUT",
        path(OWNER, "shared", "samples", shared_id, "annotations"),
        {"annotations": [{"label": "dog"}]},
    )
    assert labelled["annotated_by"] == MATE
    for call in (
        lambda: _raise(send(mate, OWNER, "shared", "samples", image(), "image/png", key="m.png")),
        lambda: mate.api("DELETE", path(OWNER, "shared")),
        lambda: mate.api("POST", path(OWNER, "shared", "labels"), {"name": "fox"}),
        lambda: mate.api("POST", path(OWNER, "shared", "samples/delete"), {"ids": [shared_id]}),
    ):
        refused(call, 403, ["only they and administrators"])
    assert owner.api("GET", path(OWNER, "shared"))["samples"] == 1

    # administrators see everyone's
    admin = ds_hub.client()
    assert admin.api("GET", path(OWNER, "private"))["name"] == "private"
    assert {"private", "shared"} <= {d["name"] for d in admin.api("GET", "datasets?all=1")}
    assert "private" not in {d["name"] for d in admin.api("GET", "datasets")}


@pytest.fixture(scope="module")
def guarded(ds_hub, owner):
    """A detection dataset with one 32x24 sample, the target of the bad requests."""
    make(owner, "guarded", "object_detection", ["cat"])
    upload(owner, "guarded", image(color=(100, 100, 100)), key="kept.png")
    return samples(owner, "guarded")[0]


def _upload(data, content_type="image/png", **params):
    return lambda c: _raise(send(c, OWNER, "guarded", "samples", data, content_type, **params))


def _import(data, content_type="application/zip", fmt="coco"):
    return lambda c: _raise(send(c, OWNER, "guarded", "import", data, content_type, format=fmt))


def _coco(file_name="a.png", bbox=(1, 1, 5, 5), size=(40, 30)):
    img = image(40, 30, (200, 201, 202))
    data = coco(
        [{"file_name": file_name, "width": size[0], "height": size[1]}], ["cat"], [(0, "cat", bbox)]
    )
    return zip_of({"images/a.png": img, "annotations/instances_default.json": data})


def _annotate(annotations):
    def call(c):
        sample = samples(c, "guarded")[0]
        return c.api(
            "PUT", path(OWNER, "guarded", "samples", sample["id"], "annotations"),
            {"annotations": annotations},
        )  # fmt: skip

    return call


BAD = {
    "not an image": (
        _upload(b"GIF89a but no image", key="x.jpg"),
        400,
        ["'x.jpg'", "not an image"],
    ),
    "not an image file name": (_upload(image(), key="x.txt"), 400, ["'x.txt'", ".png"]),
    "no key for one file": (_upload(image()), 400, ["?key="]),
    "'..' in a zip": (
        _upload(zip_of({"ok.png": image(), "../evil.png": image()}), "application/zip"),
        400,
        ["'../evil.png'", "without '..'"],
    ),
    "an absolute path in a tar": (
        _upload(tar_of({"/tmp/evil.png": image()}), "application/x-tar"),
        400,
        ["'/tmp/evil.png'", "relative"],
    ),
    "a link in a tar": (
        _upload(
            tar_of({"ok.png": image()}, links={"link.png": "/etc/passwd"}), "application/x-tar"
        ),
        400,
        ["'link.png'", "a link"],
    ),
    "a link in a zip": (
        _upload(
            zip_of({"ok.png": image()}, links={"link.png": "../../etc/passwd"}), "application/zip"
        ),
        400,
        ["'link.png'", "a link"],
    ),
    "a device in a tar": (
        _upload(tar_of({}, devices=("null.png",)), "application/x-tar"),
        400,
        ["'null.png'", "device"],
    ),
    "one bad file in an archive": (
        _upload(
            zip_of({"good.png": image(9, 9, (1, 99, 1)), "bad.png": b"junk"}), "application/zip"
        ),
        400,
        ["'bad.png'", "not an image"],
    ),
    "not a zip": (_upload(b"PK but not really", "application/zip"), 400, ["not a readable zip"]),
    "over the dataset quota": (
        _upload(noise(700, 700), key="big.png"),
        403,
        ["over the 0.001 GiB a dataset may"],
    ),
    "COCO naming a file outside": (
        _import(_coco("../../etc/a.png")),
        400,
        ["leaves the dataset folder"],
    ),
    "COCO with a box outside the image": (_import(_coco(bbox=(30, 20, 20, 20))), 400, ["outside"]),
    "COCO that does not parse": (
        _import(zip_of({"a.png": image(), "annotations/x.json": b"{not json"})),
        400,
        ["does not parse"],
    ),
    "an unknown format": (_import(_coco(), fmt="labelme"), 400, ["Unknown format 'labelme'"]),
    "a format of another type": (_import(_coco(), fmt="csv"), 400, ["csv"]),
    "an instance that is not there": (
        lambda c: c.api(
            "POST",
            path(OWNER, "guarded", "import"),
            {"format": "coco", "source": {"instance": "nb", "path": "data/coco"}},
        ),
        400,
        ["no instance 'nb'"],
    ),
    "a label not in the set": (
        _annotate([{"label": "dog", "box": [1, 1, 5, 5]}]),
        400,
        ["'dog'", "not in the dataset's labels"],
    ),
    "a box outside the image": (
        _annotate([{"label": "cat", "box": [0, 0, 100, 10]}]),
        400,
        ["outside the 32x24 image"],
    ),
    "a box missing": (_annotate([{"label": "cat"}]), 400, ["needs a box"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_refused_with_the_reason_and_leaves_nothing(ds_hub, owner, guarded, case):
    call, status, words = BAD[case]
    before_blobs = blob_files(ds_hub)
    before = owner.api("GET", path(OWNER, "guarded"))
    refused(lambda: call(owner), status, words)
    after = owner.api("GET", path(OWNER, "guarded"))
    assert after["samples"] == before["samples"] == 1
    assert (after["labels"], after["size"], after["stats"]) == (
        before["labels"],
        before["size"],
        before["stats"],
    )
    assert samples(owner, "guarded")[0] == guarded
    assert blob_files(ds_hub) == before_blobs
    # the request's staging folder is removed in the background once it is answered
    staging = ds_hub.root / "data" / "datasets" / ".staging"
    deadline = time.monotonic() + 10
    while staging.exists() and list(staging.iterdir()):
        assert time.monotonic() < deadline, list(staging.iterdir())
        time.sleep(0.05)


def test_a_users_datasets_share_one_quota(ds_hub):
    saver = ds_hub.add_user(SAVER)
    for name in ("q1", "q2", "q3"):
        make(saver, name)
    upload(saver, "q1", noise(500, 500), key="a.png", owner=SAVER)
    upload(saver, "q2", noise(500, 500), key="a.png", owner=SAVER)
    refused(
        lambda: _raise(
            send(saver, SAVER, "q3", "samples", noise(500, 500), "image/png", key="a.png")
        ),
        403,
        [f"The datasets of {SAVER} would hold", "over the 0.002 GiB"],
    )
    assert saver.api("GET", path(SAVER, "q3"))["samples"] == 0
    # room again once a dataset goes; its files leave the store
    q1 = samples(saver, "q1", owner=SAVER)[0]["sha256"]
    saver.api("DELETE", path(SAVER, "q1"))
    assert q1 not in blob_files(ds_hub)
    assert upload(saver, "q3", noise(500, 500), key="a.png", owner=SAVER)["added"] == 1


def test_a_file_two_datasets_hold_stays_until_neither_does(ds_hub, owner):
    shared = image(11, 11, (42, 42, 42))
    for name in ("holds-1", "holds-2"):
        make(owner, name)
        upload(owner, name, shared, key="s.png")
    owner.api("DELETE", path(OWNER, "holds-1"))
    assert sha(shared) in blob_files(ds_hub)
    sample = samples(owner, "holds-2")[0]
    owner.api("POST", path(OWNER, "holds-2", "samples/delete"), {"ids": [sample["id"]]})
    assert sha(shared) not in blob_files(ds_hub)
    events = ds_hub.client().api("GET", "audit?event=deleteDataset")
    assert any(e["resource_id"] == f"{OWNER}/holds-1" for e in events)


# --- the service at 100,000 samples --------------------------------------------------------
def test_paging_100k_samples_reads_through_the_indexes(tmp_path):
    """Every query of the samples' page, with each filter, finds its rows through an index
    (SQLite's plan says SEARCH, never a SCAN of the samples), and answers right."""
    url = f"sqlite:///{tmp_path / 'platform.sqlite'}"
    upgrade(url)
    db = Database(url)
    root = tmp_path / "datasets"
    service = DatasetService(
        db=db, settings=DatasetSettings(), data_root=root, blobs=BlobStore(root.as_uri() + "/blobs")
    )
    caller = {"name": "pager", "admin": False}
    asyncio.run(
        service.create(
            caller, {"name": "big", "type": "image_classification", "labels": ["x", "y"]}
        )
    )
    other = asyncio.run(
        service.create(caller, {"name": "other", "type": "image_classification", "labels": ["x"]})
    )
    assert other["samples"] == 0

    def row(i: int) -> dict:
        """Sample i: three in four in "big"; every fifth labelled, x or (every tenth) y."""
        labelled = i % 5 == 0
        annotations = [{"label": "y" if i % 10 == 0 else "x", "annotated_by": "pager"}]
        return {
            "big": i % 4 != 3,
            "key": f"k/{i:06}.png",
            "sha256": f"{i % 7:064x}",
            "size": 10,
            "media_type": "image/png",
            "annotations": json.dumps(annotations if labelled else []),
            "status": "labelled" if labelled else "unlabelled",
            "annotated_by": "pager" if labelled else "",
            "review": "to_review" if i % 1000 == 1 else "",
            "assignee": "ann" if i % 3 == 0 else "",
        }

    rows = [row(i) for i in range(100_000)]
    big = [r for r in rows if r["big"]]
    expected = {
        "labelled": sum(r["status"] == "labelled" for r in big),
        "y": sum('"y"' in r["annotations"] for r in big),
        "x": sum('"x"' in r["annotations"] for r in big),
        "to_review": sum(r["review"] == "to_review" for r in big),
        "ann": sum(r["assignee"] == "ann" for r in big),
    }

    def fill(session):
        ids = {d.name: d.id for d in session.query(Dataset)}
        for r in rows:
            r["dataset_id"] = ids["big"] if r.pop("big") else ids["other"]
        session.execute(insert(Sample), rows)

    db.call(fill)
    statements = []

    @event.listens_for(db.engine, "before_cursor_execute")
    def capture(conn, cursor, statement, parameters, context, executemany):
        if "dataset_samples" in statement and statement.lstrip().upper().startswith("SELECT"):
            statements.append((statement, parameters))

    filters = [
        {},
        {"status": "labelled"},
        {"status": "unlabelled", "after": "50000"},
        {"review": "to_review"},
        {"assignee": "ann"},
        {"label": "y"},
    ]
    pages = {}
    for f in filters:
        query = {"limit": "500", "with_total": "1", **f}
        pages[json.dumps(f)] = asyncio.run(service.samples(caller, "pager", "big", query))
    asyncio.run(service.stats(caller, "pager", "big"))
    event.remove(db.engine, "before_cursor_execute", capture)

    # the answers: 75,000 samples in "big", every fourth in "other"
    everything = pages["{}"]
    assert everything["total"] == 75_000 and len(everything["samples"]) == 500
    assert everything["next"] == everything["samples"][-1]["id"]
    labelled = pages[json.dumps({"status": "labelled"})]
    assert labelled["total"] == expected["labelled"] == 15_000
    assert all(s["status"] == "labelled" for s in labelled["samples"])
    assert pages[json.dumps({"review": "to_review"})]["total"] == expected["to_review"]
    assert pages[json.dumps({"assignee": "ann"})]["total"] == expected["ann"]
    assert pages[json.dumps({"label": "y"})]["total"] == expected["y"]
    assert all(
        s["annotations"][0]["label"] == "y" for s in pages[json.dumps({"label": "y"})]["samples"]
    )
    later = pages[json.dumps({"status": "unlabelled", "after": "50000"})]["samples"]
    assert later[0]["id"] > 50000 and [s["id"] for s in later] == sorted(s["id"] for s in later)

    with sqlite3.connect(tmp_path / "platform.sqlite") as conn:
        for statement, parameters in statements:
            plan = [row[-1] for row in conn.execute("EXPLAIN QUERY PLAN " + statement, parameters)]
            scans = [p for p in plan if p.startswith("SCAN") and "dataset_samples" in p]
            assert not scans, (statement, plan)
    stats = asyncio.run(service.stats(caller, "pager", "big"))
    assert stats["samples"] == 75_000 and stats["labelled"] == expected["labelled"]
    assert stats["per_label"] == {"x": expected["x"], "y": expected["y"]}
    assert stats["to_review"] == expected["to_review"]
    db.dispose()


def test_model_pre_labels_wait_for_acceptance_unless_confident(tmp_path):
    """write_prelabels (what auto-labelling calls): below the threshold a pre-label, at or
    above it a label; a sample a person labelled meanwhile is left alone; accepting by
    confidence keeps each annotation's author."""
    url = f"sqlite:///{tmp_path / 'platform.sqlite'}"
    upgrade(url)
    db = Database(url)
    root = tmp_path / "datasets"
    service = DatasetService(
        db=db, settings=DatasetSettings(), data_root=root, blobs=BlobStore(root.as_uri() + "/blobs")
    )
    caller = {"name": "pre", "admin": False}

    async def run():
        await service.create(caller, {"name": "d", "type": "object_detection", "labels": ["cat"]})
        staging = await asyncio.to_thread(service.staging)
        archive = zip_of({f"{i}.png": image(20, 20, (i, 0, 0)) for i in range(4)})
        (staging / "body").write_bytes(archive)
        await service.upload(caller, "pre", "d", staging / "body", "application/zip", None)
        service.discard(staging)
        ids = [s["id"] for s in (await service.samples(caller, "pre", "d", {}))["samples"]]
        ds = await service.dataset(caller, "pre", "d")
        await service.annotate(caller, ds, ids[3], [{"label": "cat", "box": [0, 0, 5, 5]}])
        model = "model:pre/detector"

        def boxes(confidence):
            return [{"label": "cat", "box": [1, 1, 9, 9], "confidence": confidence}]

        accepted = await service.write_prelabels(
            ds,
            [
                (ids[0], boxes(0.95), 0.95, model),
                (ids[1], boxes(0.5), 0.5, model),
                (ids[2], [{"label": "dog", "box": [1, 1, 2, 2], "confidence": 0.9}], 0.9, model),
                (ids[3], boxes(0.99), 0.99, model),
            ],
            0.9,
        )
        assert accepted == 1
        by_id = {s["id"]: s for s in (await service.samples(caller, "pre", "d", {}))["samples"]}
        assert (by_id[ids[0]]["status"], by_id[ids[0]]["annotated_by"]) == ("labelled", model)
        assert (by_id[ids[1]]["status"], by_id[ids[1]]["confidence"]) == ("prelabelled", 0.5)
        assert by_id[ids[2]]["status"] == "unlabelled"  # a label the set lacks: dropped
        assert by_id[ids[3]]["annotated_by"] == "pre"  # a person's labels stay
        page = await service.samples(caller, "pre", "d", {"annotated_by": "model"})
        assert [s["id"] for s in page["samples"]] == [ids[0], ids[1]]
        assert await service.accept(caller, "pre", "d", {"min_confidence": 0.6}) == {"accepted": 0}
        assert await service.accept(caller, "pre", "d", {"min_confidence": 0.4}) == {"accepted": 1}
        accepted = await service.sample(caller, "pre", "d", ids[1])
        assert (accepted["status"], accepted["annotated_by"]) == ("labelled", "pre")
        assert accepted["annotations"][0]["annotated_by"] == model

    asyncio.run(run())
    db.dispose()


def test_a_restart_cleans_what_no_sample_uses(tmp_path):
    """Files of samples deleted without the service (a deleted user's) and unfinished copies
    leave the store at the next start; what samples use stays."""
    url = f"sqlite:///{tmp_path / 'platform.sqlite'}"
    upgrade(url)
    db = Database(url)
    root = tmp_path / "datasets"
    blobs = BlobStore(root.as_uri() + "/blobs")
    service = DatasetService(db=db, settings=DatasetSettings(), data_root=root, blobs=blobs)
    caller = {"name": "gone", "admin": False}

    async def run():
        await service.create(caller, {"name": "d", "type": "image_classification"})
        staging = await asyncio.to_thread(service.staging)
        (staging / "body").write_bytes(image())
        await service.upload(caller, "gone", "d", staging / "body", "image/png", "a.png")
        kept, _ = await blobs.put_bytes(b"a file a sample of another user holds")
        orphan, _ = await blobs.put_bytes(b"nobody's")
        (Path(blobs.root) / ".incoming").mkdir(exist_ok=True)
        (Path(blobs.root) / ".incoming" / "half").write_bytes(b"half a copy")

        def forget(session):
            from training_bridge.datasets.store import forget_user

            forget_user(session, "gone")
            other = Dataset(owner="kept", name="k", type="image_classification")
            session.add(other)
            session.flush()
            session.add(Sample(dataset_id=other.id, key="k.png", sha256=kept, size=1))

        db.call(forget)
        assert await service.blobs.exists(orphan)
        await service.start()
        await service._cleaning
        assert await blobs.exists(kept)
        assert not await blobs.exists(orphan)
        assert not await blobs.exists(sha(image()))
        assert not list((Path(blobs.root) / ".incoming").iterdir())
        await service.close()

    asyncio.run(run())
    db.dispose()
