"""client.gallery: what it sends (checked against a recorded transport: each kind's source, a
notebook's path made a path of the instance's storage, bad local input refused before any
request, a download whose SHA-256 does not match leaving nothing behind), and the whole path on
the real hub: a notebook case published from an instance's storage (and from a kernel, with
`import workbench`) and taken byte for byte, a damaged stored copy refused naming its file, a
saved image, a model version and a dataset version published by one user and used by another,
and the refusals users rely on (another's model, a blank title, a notebook that does not
parse, a workspace asset others may not see)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import secrets
import time
from pathlib import Path

import httpx
import pytest
from workbench import AsyncWorkbenchClient, WorkbenchClient, WorkbenchError
from workbench.resources.gallery import (
    FileMismatch,
    Gallery,
    GalleryInputError,
    SearchResult,
    slug,
    storage_path,
)
from workbench.resources.models import storage_source

from tests.platform import run_code

# --- what the calls send (no hub) -----------------------------------------------------------


def recorded(handler) -> tuple[AsyncWorkbenchClient, list[httpx.Request]]:
    """An async client whose requests go to handler(request) -> httpx.Response, recorded."""
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    client = AsyncWorkbenchClient("http://platform.test", "tok-gal", user="galunit")
    client._http = httpx.AsyncClient(transport=httpx.MockTransport(record))
    client._http_pid = os.getpid()
    return client, seen


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def echo(request: httpx.Request) -> httpx.Response:
    """The platform's answers to publishes and lookups, made from what was sent."""
    path = request.url.path
    if path.endswith("/models/galunit/lin"):
        return httpx.Response(200, json={"owner": "galunit", "name": "lin", "latest": 3})
    if path.endswith("/datasets/galunit/pets/versions"):
        versions = [{"version": 1, "state": "ready"}, {"version": 2, "state": "publishing"}]
        return httpx.Response(200, json={"versions": versions})
    body = json.loads(request.content) if request.content else {}
    return httpx.Response(201, json={"id": 7, "version": 1, **body})


async def test_each_kind_is_published_with_its_source(monkeypatch):
    monkeypatch.delenv("JUPYTERHUB_SERVER_NAME", raising=False)
    client, seen = recorded(echo)
    gallery = client.gallery
    asset = await gallery.publish(
        "cases/mnist",
        instance="nb1",
        notebook="train.ipynb",
        title="MNIST",
        description="**fast**",
        tags="vision, cnn",
    )
    assert seen[-1].method == "POST" and seen[-1].url.path.endswith("/api/gallery/assets")
    assert json.loads(seen[-1].content) == {
        "kind": "notebook",
        "title": "MNIST",
        "description": "**fast**",
        "tags": ["vision", "cnn"],
        "visibility": "everyone",
        "source": {"instance": "nb1", "path": "cases/mnist", "notebook": "train.ipynb"},
    }
    assert asset["id"] == 7
    # an absolute path below the storage is taken as its part below it
    await gallery.publish("/home/jovyan/work/a.ipynb", instance="nb1", title="A")
    assert json.loads(seen[-1].content)["source"] == {"instance": "nb1", "path": "a.ipynb"}
    await gallery.publish(image="env:v1", title="Env", visibility="workspace", workspace="nlp")
    body = json.loads(seen[-1].content)
    assert (body["kind"], body["source"], body["workspace"]) == (
        "image",
        {"image": "env:v1"},
        "nlp",
    )
    # a model's or dataset's version defaults to its latest (ready) one
    await gallery.publish(model="lin", title="Lin")
    assert json.loads(seen[-1].content)["source"] == {"model": "lin", "version": 3}
    await gallery.publish(dataset="galunit/pets", title="Pets")
    assert json.loads(seen[-1].content)["source"] == {"dataset": "galunit/pets", "version": 1}
    await gallery.publish(model="other/net", version=2, title="Net")
    assert json.loads(seen[-1].content)["source"] == {"model": "other/net", "version": 2}
    # a new version of an asset: only its source (and notes)
    await gallery.publish(model="lin", version=4, asset=7, notes="retrained")
    assert seen[-1].url.path.endswith("/api/gallery/assets/7/versions")
    assert json.loads(seen[-1].content) == {
        "source": {"model": "lin", "version": 4},
        "notes": "retrained",
    }
    await client.aclose()


async def test_bad_local_input_sends_nothing(monkeypatch, tmp_path):
    monkeypatch.delenv("JUPYTERHUB_SERVER_NAME", raising=False)
    client, seen = recorded(echo)
    gallery = client.gallery
    cases = [
        ({"title": "x"}, "Give one thing to publish"),
        ({"image": "a:b", "model": "m", "title": "x"}, "(not image and model)"),
        ({"path": "a.ipynb", "title": "x"}, "Outside an instance, say which of your instances"),
        ({"path": "../a.ipynb", "instance": "nb", "title": "x"}, "'..' is not allowed"),
        ({"path": "/etc/passwd", "instance": "nb", "title": "x"}, "is not on the storage"),
        ({"path": "a.ipynb", "instance": "nb", "version": 2, "title": "x"}, "version= is for"),
        ({"image": "a:b", "title": "x", "visibility": "friends"}, "visibility 'friends'"),
    ]
    for kwargs, message in cases:
        with pytest.raises(GalleryInputError) as e:
            await gallery.publish(**kwargs)
        assert message in e.value.message and e.value.status == 400, kwargs
    with pytest.raises(GalleryInputError, match="kind 'notebooks' is not one of"):
        await gallery.search(kind="notebooks")
    with pytest.raises(GalleryInputError, match="Nothing to change"):
        await gallery.update(3)
    with pytest.raises(GalleryInputError, match="not a gallery asset's id"):
        await gallery.get("three")
    assert seen == []
    await client.aclose()


def test_a_notebook_in_a_kernel_is_a_path_of_its_instance_storage(monkeypatch, tmp_path):
    storage = tmp_path / "work"
    (storage / "cases" / "demo").mkdir(parents=True)
    (storage / "cases" / "demo" / "main.ipynb").write_text("{}")
    (tmp_path / "elsewhere.ipynb").write_text("{}")
    monkeypatch.setenv("JUPYTERHUB_SERVER_NAME", "nb7")
    monkeypatch.chdir(storage / "cases")
    assert storage_path("demo", None, str(storage)) == ("nb7", "cases/demo")
    assert storage_path("demo/main.ipynb", "nb7", str(storage)) == ("nb7", "cases/demo/main.ipynb")
    assert storage_path(storage, None, str(storage)) == ("nb7", ".")
    with pytest.raises(GalleryInputError, match="is not on this instance's storage"):
        storage_path(tmp_path / "elsewhere.ipynb", None, str(storage))
    with pytest.raises(GalleryInputError, match="does not exist in this instance"):
        storage_path("missing.ipynb", None, str(storage))
    # another instance's storage: the path is taken as relative to it
    assert storage_path("x/y.ipynb", "other", str(storage)) == ("other", "x/y.ipynb")
    assert slug("BERT: fine-tuning, in 5 min!", 3) == "bert-fine-tuning-in-5-min"
    assert slug("***", 3) == "asset-3"


NOTEBOOK_ASSET = {
    "id": 5,
    "kind": "notebook",
    "title": "Fine tuning",
    "version": 2,
    "meta": {"notebook": "main.ipynb"},
}
FILES = {"main.ipynb": b'{"cells": []}', "data/points.csv": b"x,y\n1,2\n"}


def notebook_platform(served: dict[str, bytes], listed: dict[str, bytes] | None = None):
    """The platform's answers for asset 5: its JSON, the use (listing `listed`'s files with
    their sizes and SHA-256s) and each file's bytes as `served`."""
    listed = listed or served

    def answer(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/gallery/assets/5"):
            return httpx.Response(200, json=NOTEBOOK_ASSET)
        if path.endswith("/gallery/assets/5/use"):
            files = [{"path": p, "size": len(d), "sha256": sha(d)} for p, d in listed.items()]
            return httpx.Response(
                200,
                json={
                    "kind": "notebook",
                    "files": files,
                    "notebook": "main.ipynb",
                    "folder": "gallery/fine-tuning",
                },
            )
        prefix = "/services/workbench/api/gallery/assets/5/versions/2/files/"
        if path.startswith(prefix):
            data = served[path[len(prefix) :]]
            return httpx.Response(200, content=data, headers={"X-Workbench-SHA256": sha(data)})
        return httpx.Response(404, json={"message": f"no route {path}"})

    return answer


async def test_a_notebook_case_is_downloaded_checked_and_never_overwrites(monkeypatch, tmp_path):
    monkeypatch.setenv("JUPYTERHUB_SERVER_NAME", "nb2")
    monkeypatch.chdir(tmp_path)
    client, seen = recorded(notebook_platform(FILES))
    taken = await client.gallery.use(5)
    target = tmp_path / "gallery" / "fine-tuning"
    assert taken["path"] == str(target)
    assert taken["notebook_path"] == str(target / "main.ipynb")
    assert {p: (target / p).read_bytes() for p in FILES} == FILES
    uses = [r for r in seen if r.url.path.endswith("/use")]
    assert json.loads(uses[0].content) == {"instance": "nb2"}  # recorded by the platform
    # taken again: a new folder beside the first
    again = await client.gallery.use(5, version=2)
    assert again["path"] == str(tmp_path / "gallery" / "fine-tuning-2")
    assert json.loads([r for r in seen if r.url.path.endswith("/use")][-1].content) == {
        "instance": "nb2",
        "version": 2,
    }
    # a path that holds files is refused before the use is counted
    count = len(seen)
    with pytest.raises(GalleryInputError) as e:
        await client.gallery.use(5, path=target)
    assert e.value.status == 409 and "already holds files" in e.value.message
    assert [r.method for r in seen[count:]] == ["GET"]
    with pytest.raises(GalleryInputError, match="name= is for models and datasets"):
        await client.gallery.use(5, name="x")
    await client.aclose()


async def test_a_file_that_does_not_match_its_sha256_leaves_nothing(monkeypatch, tmp_path):
    monkeypatch.delenv("JUPYTERHUB_SERVER_NAME", raising=False)
    damaged = {**FILES, "data/points.csv": b"x,y\n1,3\n"}
    client, _ = recorded(notebook_platform(damaged, listed=FILES))
    target = tmp_path / "case"
    with pytest.raises(FileMismatch) as e:
        await client.gallery.use(5, path=target)
    assert e.value.status == 409
    assert "File 'data/points.csv' of gallery asset 5 version 2" in e.value.message
    assert "nothing was kept" in e.value.message
    assert list(tmp_path.iterdir()) == []
    # a name the platform should never give is not written either
    client, _ = recorded(notebook_platform(FILES, listed={"../escape.py": b"x"}))
    with pytest.raises(WorkbenchError, match="cannot be written"):
        await client.gallery.use(5, path=target)
    assert list(tmp_path.iterdir()) == []
    await client.aclose()


async def test_search_sends_the_filters_and_keeps_the_totals():
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, json={"assets": [{"id": 1}, {"id": 2}], "total": 9, "tags": {"nlp": 2}}
        )

    client, seen = recorded(answer)
    found = await client.gallery.search("bert", tag=["nlp", "pytorch"], kind="model", sort="stars")
    assert isinstance(found, SearchResult) and [a["id"] for a in found] == [1, 2]
    assert (found.total, found.tags) == (9, {"nlp": 2})
    params = seen[-1].url.params
    assert params["q"] == "bert" and params.get_list("tag") == ["nlp", "pytorch"]
    assert (params["kind"], params["sort"], params["limit"]) == ("model", "stars", "50")
    await client.gallery.search(mine=True)
    assert seen[-1].url.params["mine"] == "true" and "q" not in seen[-1].url.params
    await client.aclose()


def test_the_sync_client_and_the_module_offer_the_gallery():
    import workbench

    assert "gallery" in dir(workbench)
    client = WorkbenchClient("http://127.0.0.1:9", "t", user="galunit")
    assert isinstance(client.aio.gallery, Gallery)
    with pytest.raises(WorkbenchError) as e:  # a blocking call: the error, not a coroutine
        client.gallery.search("x")
    assert e.value.status == 0


# --- on the real hub ------------------------------------------------------------------------

OWNER, TAKER = "galsdk", "galtaker"
TEAM = "galteam"


def notebook_bytes(*sources: str) -> bytes:
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    cells = [new_markdown_cell("# A gallery case")] + [new_code_cell(s) for s in sources]
    return nbformat.writes(new_notebook(cells=cells)).encode()


def onnx_bytes() -> bytes:
    """y = x + 1 on 4 floats."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "B"], ["y"])],
        "plus-one",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor("B", TensorProto.FLOAT, [4], [1.0] * 4)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def png_bytes(seed: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.frombytes("RGB", (8, 8), bytes((seed * 7 + i) % 256 for i in range(192))).save(
        buffer, format="PNG"
    )
    return buffer.getvalue()


# the case's files (random data: the blobs are this module's alone)
CASE = {
    "cases/galdemo/main.ipynb": notebook_bytes("print('hello from the gallery')"),
    "cases/galdemo/data/points.csv": b"x,y\n" + secrets.token_hex(64).encode() + b"\n",
    "cases/galdemo/helper.py": b"def f():\n    return 42\n",
    "cases/galbroken/weights.ipynb": notebook_bytes(f"W = {secrets.token_hex(16)!r}"),
    "cases/galbroken/weights.bin": secrets.token_bytes(4096),
    "cases/galbad.ipynb": b'{"cells": [ this is not json',
    "models/galplus/plus.onnx": onnx_bytes(),
}
WRITE = """\
import base64, os
for path, data in {files!r}.items():
    os.makedirs(os.path.dirname(path), exist_ok=True)
    open(path, "wb").write(base64.b64decode(data))
print("written")
"""


def write_files(client, instance: dict, files: dict[str, bytes]):
    encoded = {path: base64.b64encode(data).decode() for path, data in files.items()}
    out = run_code(client, instance["url"], WRITE.format(files=encoded))
    assert out["error"] is None and "written" in out["stdout"], out


def wait_running(client, name: str) -> dict:
    deadline = time.monotonic() + 180
    while (instance := client.instances.get(name))["state"] != "running":
        assert instance["state"] not in ("failed", "stopped"), instance
        assert time.monotonic() < deadline, instance
        time.sleep(1)
    return instance


def unpublish_all(client):
    for asset in client.gallery.search(mine=True, limit=100):
        try:
            client.gallery.unpublish(asset["id"])
        except WorkbenchError as e:
            print(f"cleanup of gallery asset {asset['id']}: {e}")


@pytest.fixture(scope="module")
def owner(hub):
    """galsdk with a running instance "nb" whose storage holds CASE."""
    client = hub.add_user(OWNER)
    client.instances.create("nb", image="python", flavor="cpu.tiny", storage_gib=1)
    client.nb = wait_running(client, "nb")
    write_files(client, client.nb, CASE)
    yield client
    unpublish_all(client)
    for model in client.models.list():
        client.models.delete(model["name"])
    for dataset in client.datasets.list():
        client.datasets.delete(dataset["name"])
    client.instances.stop("nb")
    client.instances.delete("nb")


@pytest.fixture(scope="module")
def taker(hub):
    client = hub.add_user(TAKER)
    yield client
    unpublish_all(client)
    for model in client.models.list():
        if model.get("owner", TAKER) == TAKER:
            client.models.delete(model["name"])
    for dataset in client.datasets.list():
        if dataset.get("owner", TAKER) == TAKER:
            client.datasets.delete(dataset["name"])


def local_case(root: Path, prefix: str) -> dict[str, bytes]:
    """{path below the case: bytes} of the files of CASE below prefix."""
    return {
        path[len(prefix) + 1 :]: data
        for path, data in CASE.items()
        if path.startswith(prefix + "/")
    }


def files_below(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.mark.integration
def test_a_notebook_case_published_from_storage_arrives_byte_for_byte(owner, taker, tmp_path):
    asset = owner.gallery.publish(
        "cases/galdemo",
        instance="nb",
        title="Gallery demo: hello!",
        description="# Demo\nSays **hello**.",
        tags=["Demo", "intro"],
    )
    assert (asset["kind"], asset["owner"], asset["version"]) == ("notebook", OWNER, 1)
    assert asset["tags"] == ["demo", "intro"] and asset["uses"] == 0
    assert asset["meta"]["notebook"] == "main.ipynb"
    expected = local_case(tmp_path, "cases/galdemo")
    listed = {f["path"]: f for f in owner.gallery.files(asset["id"])}
    assert set(listed) == set(expected)
    assert all(listed[p]["sha256"] == sha(d) for p, d in expected.items())
    # a read-only rendering, for anyone who may see it
    assert "hello from the gallery" in taker.gallery.preview(asset["id"])

    # later edits of the source change nothing published
    write_files(owner, owner.nb, {"cases/galdemo/helper.py": b"changed\n"})
    taken = taker.gallery.use(asset["id"], path=tmp_path / "taken")
    assert files_below(tmp_path / "taken") == expected
    assert taken["notebook_path"] == str(tmp_path / "taken" / "main.ipynb")
    assert taker.gallery.get(asset["id"])["uses"] == 1

    # a new version from the changed source; the first stays as it was
    second = owner.gallery.publish("cases/galdemo", instance="nb", asset=asset["id"])
    assert second["version"] == 2
    taker.gallery.use(asset["id"], version=1, path=tmp_path / "first")
    assert files_below(tmp_path / "first") == expected
    taker.gallery.use(asset["id"], path=tmp_path / "latest")
    assert (tmp_path / "latest" / "helper.py").read_bytes() == b"changed\n"
    detail = taker.gallery.get(asset["id"])
    assert [v["version"] for v in detail["versions"]] == [1, 2] and detail["uses"] == 3
    assert all("source" not in v for v in detail["versions"])  # the owner's business
    assert owner.gallery.get(asset["id"])["versions"][0]["source"]["instance"] == "nb"


@pytest.mark.integration
def test_publish_from_a_kernel_with_import_workbench(owner):
    code = (
        "import os, workbench\n"
        "os.chdir('/home/jovyan/work/cases')\n"
        "a = workbench.gallery.publish('galdemo', title='From a kernel', notebook='main.ipynb')\n"
        "print(a['id'], a['meta']['notebook'])\n"
        "print([x['id'] for x in workbench.gallery.search(mine=True)])\n"
    )
    out = run_code(owner, owner.nb["url"], code)
    assert out["error"] is None, out
    first, second = out["stdout"].split("\n")[:2]
    asset_id, notebook = first.split()
    assert notebook == "main.ipynb" and int(asset_id) in json.loads(second)
    asset = owner.gallery.get(int(asset_id))
    assert asset["versions"][0]["source"]["path"] == "cases/galdemo"
    owner.gallery.unpublish(int(asset_id))


def blob_file(hub, digest: str) -> Path:
    """The stored copy of a file of the gallery (content-addressed under the hub's data)."""
    found = [p for p in (hub.root / "data").rglob(digest) if p.is_file()]
    assert len(found) == 1, found
    return found[0]


@pytest.mark.integration
def test_a_damaged_stored_file_fails_use_naming_it_and_leaves_nothing(hub, owner, taker, tmp_path):
    asset = owner.gallery.publish(
        "cases/galbroken", instance="nb", title="Broken weights", visibility="everyone"
    )
    weights = CASE["cases/galbroken/weights.bin"]
    stored = blob_file(hub, sha(weights))
    assert stored.read_bytes() == weights
    stored.chmod(0o644)
    stored.write_bytes(b"damaged" + weights[7:])
    target = tmp_path / "broken"
    with pytest.raises(WorkbenchError) as e:
        taker.gallery.use(asset["id"], path=target)
    assert e.value.status == 409 and "weights.bin" in e.value.message, e.value.message
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []
    owner.gallery.unpublish(asset["id"])
    with pytest.raises(WorkbenchError) as e:
        taker.gallery.get(asset["id"])
    assert e.value.status == 404


@pytest.fixture(scope="module")
def sources(owner, tmp_path_factory):
    """galsdk's saved image galimg:v1, model galplus (version 1) and dataset galpets with a
    published version 1 of two labelled images."""
    owner.images.save("nb", "galimg", "v1", wait=True)
    model = owner.models.create(
        "galplus", format="onnx", source=storage_source("nb", "models/galplus")
    )
    folder = tmp_path_factory.mktemp("galpets")
    (folder / "cats").mkdir()
    (folder / "dogs").mkdir()
    (folder / "cats" / "c1.png").write_bytes(png_bytes(1))
    (folder / "dogs" / "d1.png").write_bytes(png_bytes(2))
    dataset = owner.datasets.create(
        "galpets", "image_classification", labels=["cat", "dog"], folder=folder
    )
    for sample in dataset.samples():
        dataset.annotate(sample["id"], "cat" if sample["key"].startswith("cats/") else "dog")
    assert dataset.publish().wait().state == "ready"
    return {"image": "galimg:v1", "model": model, "dataset": dataset}


@pytest.mark.integration
def test_an_image_a_model_and_a_dataset_version_published_and_used(owner, taker, sources):
    image_asset = owner.gallery.publish(image=sources["image"], title="Env with tools", tags="env")
    model_asset = owner.gallery.publish(model="galplus", title="Plus one", tags=["onnx"])
    data_asset = owner.gallery.publish(dataset="galpets", version=1, title="Cats and dogs")
    assert image_asset["meta"]["image"] == f"saved:{OWNER}/gallery-{image_asset['id']}:v1"
    assert (model_asset["meta"]["model"], model_asset["meta"]["version"]) == (
        f"{OWNER}/galplus",
        1,
    )
    assert (data_asset["meta"]["dataset"], data_asset["meta"]["samples"]) == (f"{OWNER}/galpets", 2)

    # the other user finds them by owner, kind and text
    ids = [image_asset["id"], model_asset["id"], data_asset["id"]]
    assert set(ids) <= {a["id"] for a in taker.gallery.search(owner=OWNER)}
    assert model_asset["id"] in [a["id"] for a in taker.gallery.search("plus", kind="model")]
    assert image_asset["id"] not in [a["id"] for a in taker.gallery.search(kind="model")]

    # an image: usable for new instances
    used = taker.gallery.use(image_asset["id"])
    assert used == {"kind": "image", "image": image_asset["meta"]["image"]}
    instance = taker.instances.create("galfromimg", image=used["image"], start=False)
    assert instance["image"] == used["image"]
    taker.instances.delete("galfromimg")

    # a model: one of the taker's, with the same files, ready to deploy
    used = taker.gallery.use(model_asset["id"])
    assert (used["kind"], used["model"], used["version"]) == ("model", f"{TAKER}/galplus", 1)
    mine = taker.models.get("galplus")
    source_files = sources["model"].versions[0]["files"]
    assert [f["sha256"] for f in mine.versions[0]["files"]] == [f["sha256"] for f in source_files]
    assert mine.versions[0]["state"] == "ready"
    with pytest.raises(WorkbenchError) as e:  # the name is taken now
        taker.gallery.use(model_asset["id"])
    assert e.value.status == 409 and "name" in e.value.message
    renamed = taker.gallery.use(model_asset["id"], name="galplus-2")
    assert renamed["model"] == f"{TAKER}/galplus-2"

    # a dataset: one of the taker's with a published version, the same labels and samples
    used = taker.gallery.use(data_asset["id"], name="mypets")
    assert (used["kind"], used["dataset"], used["version"]) == ("dataset", f"{TAKER}/mypets", 1)
    pets = taker.datasets.get("mypets")
    assert pets.label_names == ["cat", "dog"]
    version = pets.version(1).wait()
    assert (version.state, version.data["samples"]) == ("ready", 2)
    assert sorted(line["annotation"][0]["name"] for line in version.manifest()) == ["cat", "dog"]

    # uses counted; stars are each user's own
    assert [taker.gallery.get(i)["uses"] for i in ids] == [1, 2, 1]
    starred = taker.gallery.star(model_asset["id"])
    assert (starred["stars"], starred["starred"]) == (1, True)
    assert owner.gallery.get(model_asset["id"])["starred"] is False
    assert taker.gallery.search(owner=OWNER, sort="stars")[0]["id"] == model_asset["id"]
    assert taker.gallery.unstar(model_asset["id"])["stars"] == 0
    for asset_id in ids:
        owner.gallery.unpublish(asset_id)
    # what the taker took stays theirs
    assert taker.models.get("galplus").latest == 1


@pytest.mark.integration
def test_what_users_may_not_publish_or_take_is_refused(hub, owner, taker, sources):
    before = {a["id"] for a in owner.gallery.search(mine=True)}
    taken_before = {a["id"] for a in taker.gallery.search(mine=True)}
    with pytest.raises(WorkbenchError) as e:
        owner.gallery.publish("cases/galbad.ipynb", instance="nb", title="Bad")
    assert e.value.status == 400 and "galbad.ipynb" in e.value.message
    assert "does not parse" in e.value.message
    with pytest.raises(WorkbenchError) as e:
        owner.gallery.publish("cases/galdemo", instance="nb", title="   ")
    assert e.value.status == 400 and "A title is required" in e.value.message
    with pytest.raises(WorkbenchError) as e:
        taker.gallery.publish("cases/galdemo", instance="nb", title="Not mine")
    assert e.value.status == 400 and "no instance 'nb'" in e.value.message
    with pytest.raises(WorkbenchError) as e:
        taker.gallery.publish(model=f"{OWNER}/galplus", version=1, title="Not mine either")
    assert e.value.status == 403
    with pytest.raises(WorkbenchError) as e:
        taker.gallery.publish(dataset=f"{OWNER}/galpets", version=1, title="Nor this")
    assert e.value.status == 403
    with pytest.raises(WorkbenchError) as e:
        owner.gallery.publish(image="galnothere:v9", title="None")
    assert e.value.status == 400
    # nothing half-made
    assert {a["id"] for a in owner.gallery.search(mine=True)} == before
    assert {a["id"] for a in taker.gallery.search(mine=True)} == taken_before

    # a workspace's asset: its members see it, others get the same answer as for none
    admin = hub.client()
    admin.workspaces.create(TEAM, members=[OWNER])
    try:
        asset = owner.gallery.publish(
            "cases/galdemo",
            instance="nb",
            title="Team only",
            visibility="workspace",
            workspace=TEAM,
        )
        assert (asset["visibility"], asset["workspace"]) == ("workspace", TEAM)
        for call in (taker.gallery.get, taker.gallery.use, taker.gallery.star):
            with pytest.raises(WorkbenchError) as e:
                call(asset["id"])
            assert e.value.status == 404, call
            assert e.value.message == f"No gallery asset {asset['id']} that you may see."
        assert asset["id"] not in {a["id"] for a in taker.gallery.search()}
        assert asset["id"] in {a["id"] for a in owner.gallery.search()}
        # only its owner edits or unpublishes it
        with pytest.raises(WorkbenchError) as e:
            taker.gallery.unpublish(asset["id"])
        assert e.value.status == 404
        owner.gallery.unpublish(asset["id"])
    finally:
        admin.workspaces.set_members(TEAM, [])
        admin.workspaces.delete(TEAM)
