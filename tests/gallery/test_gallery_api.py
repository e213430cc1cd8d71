"""The gallery against a real hub: notebook cases published from an instance's storage (copied
by a real container), checked files, the sandboxed preview, versions, search and sorting,
stars and uses, visibility, unpublishing, refusals that leave nothing behind, and the audit.

The module runs a hub of its own whose assets may hold at most 1 MiB a version and 2.5 MiB
a user, so that both limits are reached with small files."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
from pathlib import Path

import pytest
from workbench import WorkbenchError

from gallery.kinds import slug
from gallery.service import check_tags
from hub.service.api import APIError
from tests.platform import engine_names, run_code, running_hub

pytestmark = pytest.mark.integration

OWNER, OTHER, MATE = "gal-ann", "gal-bob", "gal-mate"
CSP = "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'; font-src data:"
MiB = 1024 * 1024


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def notebook(marker: str, heading: str = "A gallery case") -> str:
    """A valid notebook (nbformat 4) with a Markdown and a code cell naming `marker`."""
    return json.dumps(
        {
            "nbformat": 4,
            "nbformat_minor": 5,
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3"}},
            "cells": [
                {"cell_type": "markdown", "id": "c1", "metadata": {}, "source": f"# {heading}"},
                {
                    "cell_type": "code",
                    "id": "c2",
                    "metadata": {},
                    "execution_count": None,
                    "outputs": [],
                    "source": f"{marker} = 42\nprint({marker})",
                },
            ],
        }
    )


def write_files(client, instance: dict, files: dict[str, bytes | str]) -> None:
    """Write files (path relative to the instance's work folder -> content) from a kernel."""
    code = (
        "import os, base64\n"
        f"files = { ({k: (v.encode() if isinstance(v, str) else v) for k, v in files.items()})!r}\n"
        "for path, data in files.items():\n"
        "    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)\n"
        "    open(path, 'wb').write(data)\n"
        "print('written', len(files))\n"
    )
    out = run_code(client, instance["url"], code)
    assert out["error"] is None and "written" in out["stdout"], out


def case(client, instance: dict, name: str) -> dict:
    """A notebook case in `cases/<name>` with unique content: its files' bytes by path."""
    marker = f"answer_{secrets.token_hex(6)}"
    files = {
        "train.ipynb": notebook(marker).encode(),
        "data/points.csv": f"x,y\n1,2\n3,{marker}\n".encode(),
    }
    write_files(
        client,
        instance,
        {
            **{f"cases/{name}/{path}": data for path, data in files.items()},
            # JupyterLab's autosave: never part of what is published
            f"cases/{name}/.ipynb_checkpoints/train-checkpoint.ipynb": notebook("old").encode(),
        },
    )
    return {"files": files, "marker": marker, "path": f"cases/{name}"}


def publish(client, path: str, title: str = "A case", **fields) -> dict:
    body = {
        "kind": "notebook",
        "title": title,
        "description": fields.pop("description", "How to **train** it."),
        "tags": fields.pop("tags", ["demo"]),
        "source": {"instance": fields.pop("instance", "nb"), "path": path},
        **fields,
    }
    return client.api("POST", "gallery/assets", body)


def refused(call, status: int, words) -> WorkbenchError:
    with pytest.raises(WorkbenchError) as e:
        call()
    assert e.value.status == status, e.value.message
    for word in words:
        assert word in e.value.message, e.value.message
    return e.value


def download(client, asset_id: int, version: int, path: str):
    return client.session.get(
        f"{client.api_url}/gallery/assets/{asset_id}/versions/{version}/files/{path}", timeout=60
    )


def blob_path(hub, digest: str) -> Path:
    return hub.root / "data" / "gallery" / "blobs" / digest[:2] / digest


def events_of(hub, asset_id: int) -> set[str]:
    return {
        e["event"]
        for e in hub.client().api("GET", "audit?resource_type=gallery&limit=500")
        if e["resource_id"].endswith(f"/{asset_id}") and e["outcome"] == "success"
    }


def mine(client) -> list[int]:
    return [a["id"] for a in client.api("GET", "gallery/assets?mine=1&limit=100")["assets"]]


# --- the checks on their own -------------------------------------------------------------
def test_tags_and_folder_names_are_checked():
    assert check_tags([" NLP", "nlp", "image-classification"]) == ["nlp", "image-classification"]
    for bad in (["-x"], ["a b"], ["x" * 33], "nlp", [3], [f"t{i}" for i in range(11)]):
        with pytest.raises(APIError) as e:
            check_tags(bad)
        assert e.value.code == 400
    assert slug("MNIST: a first CNN!", 7) == "mnist-a-first-cnn"
    assert slug("???", 7) == "asset-7"
    assert len(slug("x" * 100, 1)) == 40


# --- against a real hub ------------------------------------------------------------------
@pytest.fixture(scope="module")
def gallery_hub(tmp_path_factory, engine, test_catalog):
    """A hub of its own with small gallery limits (its assets and instances are its own)."""
    with running_hub(
        tmp_path_factory.mktemp("gallery-hub"),
        engine.url,
        "gallery",
        catalog=test_catalog,
        extra_settings=(
            f"[workbench.gallery]\nmax_asset_bytes = {MiB}\nmax_user_bytes = {5 * MiB // 2}\n"
        ),
    ) as h:
        yield h


@pytest.fixture(scope="module")
def ann(gallery_hub):
    return gallery_hub.add_user(OWNER)


@pytest.fixture(scope="module")
def bob(gallery_hub):
    return gallery_hub.add_user(OTHER)


@pytest.fixture(scope="module")
def instance(ann):
    """ann's running instance "nb" (the storage cases are published from)."""
    ann.api(
        "POST",
        f"users/{OWNER}/instances",
        {"name": "nb", "image": "python", "flavor": "cpu.tiny", "storage_gib": 1},
    )
    deadline = time.monotonic() + 120
    while (found := ann.instance("nb"))["state"] != "running":
        assert time.monotonic() < deadline, found
        time.sleep(1)
    return found


def assert_nothing_left(hub, engine, client, before: list[int]):
    """No asset was made, no staging folder or copy container is left."""
    assert mine(client) == before
    staging = hub.root / "data" / "gallery" / "work" / ".staging"
    assert not staging.exists() or not list(staging.iterdir())
    assert engine_names(engine.url, "container", hub.prefix + "-model-copy") == []


def test_a_notebook_case_is_published_as_a_checked_snapshot(gallery_hub, ann, bob, instance):
    made = case(ann, instance, "snap")
    asset = publish(ann, made["path"], title="MNIST: a first CNN", tags=["Vision", "demo"])
    assert (asset["kind"], asset["owner"], asset["version"]) == ("notebook", OWNER, 1)
    assert asset["tags"] == ["vision", "demo"] and asset["visibility"] == "everyone"
    assert asset["meta"]["notebook"] == "train.ipynb" and asset["meta"]["cells"] == 2
    expected = sorted(
        ({"path": p, "size": len(d), "sha256": sha(d)} for p, d in made["files"].items()),
        key=lambda f: f["path"],
    )
    assert asset["size"] == sum(len(d) for d in made["files"].values())
    listed = bob.api("GET", f"gallery/assets/{asset['id']}/versions/1/files")["files"]
    assert listed == expected  # the checkpoint folder is left out
    for entry in expected:
        r = download(bob, asset["id"], 1, entry["path"])
        assert r.status_code == 200, r.text
        assert r.content == made["files"][entry["path"]]
        assert r.headers["X-Workbench-SHA256"] == entry["sha256"] == sha(r.content)
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        # stored read-only, at the address its SHA-256 names
        assert blob_path(gallery_hub, entry["sha256"]).stat().st_mode & 0o777 == 0o444
    assert download(bob, asset["id"], 1, "nope.txt").status_code == 404

    # the preview: HTML under a sandbox that runs nothing, showing the cells
    r = bob.session.get(
        f"{bob.api_url}/gallery/assets/{asset['id']}/versions/1/preview", timeout=60
    )
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("text/html")
    assert r.headers["Content-Security-Policy"] == CSP
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert made["marker"] in r.text and "A gallery case" in r.text

    # the owner sees where it came from; others do not
    detail = ann.api("GET", f"gallery/assets/{asset['id']}")
    assert detail["versions"][0]["source"] == {"instance": "nb", "path": made["path"]}
    assert detail["versions"][0]["files"] == 2
    assert "source" not in bob.api("GET", f"gallery/assets/{asset['id']}")["versions"][0]

    # a later change of the source changes nothing published; a new version takes it
    changed = notebook("changed_" + secrets.token_hex(4)).encode()
    write_files(ann, instance, {f"{made['path']}/train.ipynb": changed})
    assert download(bob, asset["id"], 1, "train.ipynb").content == made["files"]["train.ipynb"]
    v2 = ann.api(
        "POST",
        f"gallery/assets/{asset['id']}/versions",
        {"source": {"instance": "nb", "path": made["path"]}, "notes": "a new cell"},
    )
    assert v2["version"] == 2
    assert download(bob, asset["id"], 2, "train.ipynb").content == changed
    assert download(bob, asset["id"], 1, "train.ipynb").content == made["files"]["train.ipynb"]
    versions = bob.api("GET", f"gallery/assets/{asset['id']}")["versions"]
    assert [(v["version"], v["notes"]) for v in versions] == [(1, ""), (2, "a new cell")]
    refused(lambda: bob.api("GET", f"gallery/assets/{asset['id']}/versions/3/files"), 404, ["3"])
    assert {"create_content", "add_version"} <= events_of(gallery_hub, asset["id"])
    ann.api("DELETE", f"gallery/assets/{asset['id']}")


def test_search_filters_and_sorts(gallery_hub, ann, bob, instance):
    made = case(ann, instance, "search")
    word = f"zebra{secrets.token_hex(3)}"
    tag = f"t-{secrets.token_hex(3)}"
    first = publish(ann, made["path"], title=f"Older {word}", tags=[tag, "first"])
    second = publish(ann, made["path"], title="Newer case", tags=[tag, "second"])
    ids = {first["id"], second["id"]}
    try:
        found = bob.api("GET", f"gallery/assets?q={word}")
        assert [a["id"] for a in found["assets"]] == [first["id"]] and found["total"] == 1
        assert found["tags"] == {tag: 1, "first": 1}
        assert {a["id"] for a in bob.api("GET", f"gallery/assets?tag={tag}")["assets"]} == ids
        both = bob.api("GET", f"gallery/assets?tag={tag}&tag=second")["assets"]
        assert [a["id"] for a in both] == [second["id"]]
        assert ids <= {a["id"] for a in bob.api("GET", "gallery/assets?kind=notebook")["assets"]}
        assert not ids & {a["id"] for a in bob.api("GET", "gallery/assets?kind=model")["assets"]}
        assert ids <= {a["id"] for a in bob.api("GET", f"gallery/assets?owner={OWNER}")["assets"]}

        def order(sort):
            listed = bob.api("GET", f"gallery/assets?tag={tag}&sort={sort}")["assets"]
            return [a["id"] for a in listed]

        assert order("newest") == [second["id"], first["id"]]
        used = bob.api("POST", f"gallery/assets/{first['id']}/use", {})
        assert used["kind"] == "notebook"
        assert order("most_used") == [first["id"], second["id"]]
        bob.api("PUT", f"gallery/assets/{second['id']}/star")
        assert order("stars") == [second["id"], first["id"]]
        page = bob.api("GET", f"gallery/assets?tag={tag}&limit=1&offset=1")
        assert page["total"] == 2 and [a["id"] for a in page["assets"]] == [first["id"]]
        for query, words in (
            ("sort=best", ["sort must be one of"]),
            ("kind=video", ["kind must be one of"]),
            ("tag=Not%20a%20tag", ["Tag"]),
            ("limit=500", ["limit must be"]),
        ):
            refused(lambda q=query: bob.api("GET", f"gallery/assets?{q}"), 400, words)
    finally:
        for asset_id in ids:
            ann.api("DELETE", f"gallery/assets/{asset_id}")


def test_stars_and_uses_are_counted(gallery_hub, ann, bob, instance):
    made = case(ann, instance, "stars")
    asset = publish(ann, made["path"], title="Stars: a case")
    path = f"gallery/assets/{asset['id']}"
    try:
        starred = bob.api("PUT", f"{path}/star")
        assert (starred["stars"], starred["starred"]) == (1, True)
        assert bob.api("PUT", f"{path}/star")["stars"] == 1  # once per user
        assert ann.api("GET", path)["starred"] is False
        assert ann.api("PUT", f"{path}/star")["stars"] == 2
        unstarred = bob.api("DELETE", f"{path}/star")
        assert (unstarred["stars"], unstarred["starred"]) == (1, False)

        used = bob.api("POST", f"{path}/use", {"version": 1})
        assert used["folder"] == "gallery/stars-a-case" and used["notebook"] == "train.ipynb"
        assert {f["path"] for f in used["files"]} == set(made["files"])
        assert ann.api("POST", f"{path}/use", {"instance": "nb"})["kind"] == "notebook"
        assert bob.api("GET", path)["uses"] == 2
        refused(lambda: bob.api("POST", f"{path}/use", {"instance": "nb"}), 400, ["no instance"])
        refused(lambda: bob.api("POST", f"{path}/use", {"name": "x"}), 400, ["name"])
        refused(lambda: bob.api("POST", f"{path}/use", {"version": 9}), 404, ["no version 9"])
        assert bob.api("GET", path)["uses"] == 2
        events = events_of(gallery_hub, asset["id"])
        assert {"like_content", "cancel_like_content", "subscription_content"} <= events
    finally:
        ann.api("DELETE", path)


def test_workspace_assets_are_seen_by_members_only(gallery_hub, ann, bob, instance):
    admin = gallery_hub.client()
    mate = gallery_hub.add_user(MATE)
    try:
        admin.api("POST", "workspaces", {"name": "gal-lab", "members": [OWNER, MATE]})
    except WorkbenchError as e:
        assert e.status == 409, e.message
    made = case(ann, instance, "team")
    refused(
        lambda: publish(ann, made["path"], visibility="workspace", workspace="elsewhere"),
        400,
        ["gal-lab"],
    )
    asset = publish(
        ann, made["path"], title="Team only", visibility="workspace", workspace="gal-lab"
    )
    path = f"gallery/assets/{asset['id']}"
    try:
        assert mate.api("GET", path)["workspace"] == "gal-lab"
        assert asset["id"] in [a["id"] for a in mate.api("GET", "gallery/assets")["assets"]]
        assert download(mate, asset["id"], 1, "train.ipynb").status_code == 200
        for call in (
            lambda: bob.api("GET", path),
            lambda: bob.api("POST", f"{path}/use", {}),
            lambda: bob.api("PUT", f"{path}/star"),
            lambda: bob.api("GET", f"{path}/versions/1/files"),
            lambda: bob.api("DELETE", path),
        ):
            refused(call, 404, [f"No gallery asset {asset['id']} that you may see"])
        assert download(bob, asset["id"], 1, "train.ipynb").status_code == 404
        assert asset["id"] not in [a["id"] for a in bob.api("GET", "gallery/assets")["assets"]]
        # a member sees it but only its owner (and administrators) change it
        refused(lambda: mate.api("PATCH", path, {"title": "Mine"}), 403, ["only they"])
        changed = ann.api("PATCH", path, {"title": "Team only, v2", "visibility": "everyone"})
        assert (changed["title"], changed["workspace"]) == ("Team only, v2", "default")
        assert bob.api("GET", path)["title"] == "Team only, v2"
        assert "modify_content" in events_of(gallery_hub, asset["id"])
        assert admin.api("GET", path)["id"] == asset["id"]
    finally:
        ann.api("DELETE", path)


def test_unpublish_by_owner_removes_everything(gallery_hub, ann, bob, instance):
    made = case(ann, instance, "gone")
    asset = publish(ann, made["path"], title="Soon gone")
    path = f"gallery/assets/{asset['id']}"
    files = bob.api("GET", f"{path}/versions/1/files")["files"]
    preview = asset["meta"]["preview_sha256"]
    refused(lambda: bob.api("DELETE", path), 403, ["only they and administrators"])
    assert bob.api("GET", path)["id"] == asset["id"]
    ann.api("DELETE", path)
    refused(lambda: bob.api("GET", path), 404, ["that you may see"])
    refused(lambda: ann.api("GET", path), 404, ["that you may see"])
    for entry in files:
        assert not blob_path(gallery_hub, entry["sha256"]).exists(), entry
    assert not blob_path(gallery_hub, preview).exists()
    assert "delete_content" in events_of(gallery_hub, asset["id"])


@pytest.fixture(scope="module")
def bad_cases(ann, instance):
    """Cases that cannot be published: a notebook that does not parse, one too big for an
    asset, a folder without a notebook."""
    write_files(
        ann,
        instance,
        {
            "bad/broken/main.ipynb": "{ this is not json",
            "bad/broken/ok.ipynb": notebook("fine"),
            "bad/big/main.ipynb": notebook("big"),
            "bad/big/weights.bin": os.urandom(MiB + 1024),
            "bad/plain/readme.txt": "no notebook here",
            "bad/invalid.ipynb": json.dumps({"nbformat": 4, "nbformat_minor": 5, "cells": 3}),
        },
    )


@pytest.mark.parametrize(
    "who, body, status, words",
    [
        (
            "bob",
            {"source": {"instance": "nb", "path": "bad/plain"}},
            400,
            ["You have no instance 'nb' (source.instance)"],
        ),
        ("ann", {"title": "  "}, 400, ["A title is required (1-120 characters)."]),
        ("ann", {"title": "x" * 121}, 400, ["A title is required"]),
        (
            "ann",
            {"source": {"instance": "nb", "path": "bad/broken"}},
            400,
            ["Notebook 'main.ipynb' does not parse"],
        ),
        (
            "ann",
            {"source": {"instance": "nb", "path": "bad/invalid.ipynb"}},
            400,
            ["Notebook 'invalid.ipynb' does not parse"],
        ),
        ("ann", {"source": {"instance": "nb", "path": "bad/big"}}, 413, ["larger than the 1 MiB"]),
        ("ann", {"source": {"instance": "nb", "path": "bad/plain"}}, 400, ["holds no notebook"]),
        ("ann", {"source": {"instance": "nb", "path": "bad/none"}}, 400, ["has no 'bad/none'"]),
        ("ann", {"source": {"instance": "nb", "path": "../etc"}}, 400, ["without '..'"]),
        ("ann", {"colour": "red", "stars": 5}, 400, ["unknown field(s): colour, stars"]),
        (
            "ann",
            {"source": {"instance": "nb", "path": "bad/plain", "depth": 1}},
            400,
            ["unknown field(s): depth"],
        ),
        ("ann", {"tags": ["Not a tag"]}, 400, ["Tag 'Not a tag' is not valid"]),
        ("ann", {"tags": [f"t{i}" for i in range(11)]}, 400, ["at most 10 tags"]),
        ("ann", {"kind": "video"}, 400, ["kind must be one of"]),
        ("ann", {"visibility": "friends"}, 400, ["visibility must be"]),
    ],
)
def test_bad_publishes_are_refused_with_the_reason_and_leave_nothing(
    gallery_hub, engine, ann, bob, instance, bad_cases, who, body, status, words
):
    client = {"ann": ann, "bob": bob}[who]
    full = {
        "kind": "notebook",
        "title": "Refused",
        "source": {"instance": "nb", "path": "bad/broken"},
        **body,
    }
    before = mine(client)
    refused(lambda: client.api("POST", "gallery/assets", full), status, words)
    assert_nothing_left(gallery_hub, engine, client, before)


def test_the_gallery_quota_is_enforced(gallery_hub, engine, ann, instance):
    """Each version counts toward its owner's quota (2.5 MiB here): a publish over it is
    refused with what is used, and leaves nothing."""
    write_files(
        ann,
        instance,
        {"quota/main.ipynb": notebook("quota"), "quota/data.bin": os.urandom(900 * 1024)},
    )
    made = []
    try:
        for _ in range(4):
            before = mine(ann)
            try:
                made.append(publish(ann, "quota", title="Quota filler")["id"])
            except WorkbenchError as e:
                assert e.status == 413, e.message
                assert "over your gallery quota of 2.5 MiB (you use" in e.message, e.message
                assert "unpublish assets or versions you no longer need" in e.message
                assert_nothing_left(gallery_hub, engine, ann, before)
                break
        else:
            pytest.fail("four publishes of 0.9 MiB fit in a 2.5 MiB quota")
        assert made, "not even one publish of 0.9 MiB fit"
        # a new version counts too
        refused(
            lambda: ann.api(
                "POST",
                f"gallery/assets/{made[0]}/versions",
                {"source": {"instance": "nb", "path": "quota"}},
            ),
            413,
            ["gallery quota"],
        )
        assert ann.api("GET", f"gallery/assets/{made[0]}")["version"] == 1
    finally:
        for asset_id in made:
            ann.api("DELETE", f"gallery/assets/{asset_id}")


def test_a_damaged_stored_file_is_refused_naming_it(gallery_hub, ann, bob, instance):
    made = case(ann, instance, "damaged")
    asset = publish(ann, made["path"], title="Damaged later")
    entry = next(
        f
        for f in bob.api("GET", f"gallery/assets/{asset['id']}/versions/1/files")["files"]
        if f["path"] == "data/points.csv"
    )
    blob = blob_path(gallery_hub, entry["sha256"])
    original = blob.read_bytes()
    try:
        blob.chmod(0o644)
        blob.write_bytes(original.replace(b"x,y", b"x,z"))
        r = download(bob, asset["id"], 1, "data/points.csv")
        assert r.status_code == 409, r.text
        message = r.json()["message"]
        assert f"File 'data/points.csv' of gallery asset {asset['id']} version 1" in message
        assert "no longer matches its SHA-256" in message and "publish it again" in message
        # the other files still download
        assert download(bob, asset["id"], 1, "train.ipynb").status_code == 200
        assert "no longer hashes" in gallery_hub.log_tail(200)
    finally:
        blob.write_bytes(original)
        blob.chmod(0o444)
        ann.api("DELETE", f"gallery/assets/{asset['id']}")


def test_an_unknown_or_hidden_asset_cannot_be_taken(gallery_hub, bob):
    refused(lambda: bob.api("POST", "gallery/assets/999999/use", {}), 404, ["999999"])
    refused(lambda: bob.api("GET", "gallery/assets/999999/versions/1/preview"), 404, ["999999"])
    refused(lambda: bob.api("PATCH", "gallery/assets/999999", {"title": "x"}), 404, ["999999"])


def test_a_deleted_users_assets_stars_and_uses_go(tmp_path):
    """forget_user on the migrated tables: the user's assets go with their versions, stars and
    uses; their stars on others' assets go and those assets' counts follow."""
    from hub.db import Database, upgrade
    from hub.deleted_users import forget_user

    url = f"sqlite:///{tmp_path / 'platform.sqlite'}"
    upgrade(url)
    db = Database(url)

    def fill(session):
        from gallery.store import Asset, AssetVersion, Star, Use

        mine = Asset(owner="gone", kind="notebook", title="Mine", latest=1, uses=1, stars=1)
        theirs = Asset(owner="stays", kind="notebook", title="Theirs", latest=1, uses=1, stars=2)
        session.add_all([mine, theirs])
        session.flush()
        session.add(AssetVersion(asset_id=mine.id, version=1, files="[]", size=5))
        session.add(AssetVersion(asset_id=theirs.id, version=1, files="[]", size=7))
        session.add_all(
            [
                Star(asset_id=mine.id, user="stays"),
                Star(asset_id=theirs.id, user="gone"),
                Star(asset_id=theirs.id, user="third"),
                Use(asset_id=theirs.id, version=1, user="gone"),
                Use(asset_id=mine.id, version=1, user="stays"),
            ]
        )
        return theirs.id

    theirs = db.call(fill)
    counts = db.call(lambda s: forget_user(s, "gone"))
    assert (counts["gallery_assets"], counts["gallery_stars"], counts["gallery_uses"]) == (1, 1, 1)

    def read(session):
        from sqlalchemy import func, select

        from gallery.store import Asset, AssetVersion, Star, Use

        return (
            [a.owner for a in session.scalars(select(Asset))],
            session.get(Asset, theirs).stars,
            session.scalar(select(func.count(AssetVersion.id))),
            sorted(s.user for s in session.scalars(select(Star))),
            session.scalar(select(func.count(Use.id))),
        )

    assert db.call(read) == (["stays"], 1, 1, ["third"], 0)
    db.dispose()
