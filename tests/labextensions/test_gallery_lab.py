"""The gallery routes of the JupyterLab server extension (workbench_lab) through jp_fetch.

The extension under test runs in pytest's own Jupyter server, pointed at the real platform API
of the session hub with the token of user "glabtake" (who has a stopped instance). User
"glabown" has a running instance whose storage holds a notebook case (a notebook and a data
file), published to the gallery through the platform API. Taking it writes the files, each
checked against its SHA-256, into a new folder of this server's storage (never over one that
exists); a stored copy damaged on disk (the blob file overwritten, as a failing disk would)
is refused with 409 naming the file, and no folder is left behind. Publishing refuses paths
outside the storage before the platform is asked.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from pathlib import Path

import nbformat
import pytest
from tornado.httpclient import HTTPClientError
from workbench import WorkbenchError
from workbench_lab.gallery import PREVIEW_CSP

from tests.labextensions.jupyter_fixtures import fetch_on_loop, use_jupyter_fixtures

# pytest-jupyter's fixtures behind jp_fetch, for this module's tests only
use_jupyter_fixtures(globals())

pytestmark = pytest.mark.integration

OWNER = "glabown"
OWNER_NB = "glab-own"
TAKER = "glabtake"
TAKER_NB = "glab-take"
CASE = "churn-case"
TITLE = "Churn forecast walkthrough"
SLUG = "churn-forecast-walkthrough"
# this module's own bytes (content-addressed blobs: no other test shares them)
TOKEN = secrets.token_hex(8)
DATA = f"customer,months,churned\n{TOKEN},12,0\nb,3,1\n".encode()


def notebook_bytes() -> bytes:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell(f"# Churn forecast\n\nRun {TOKEN}."),
        nbformat.v4.new_code_cell("import csv\nrows = list(csv.reader(open('data.csv')))"),
    ]
    return nbformat.writes(nb).encode()


NOTEBOOK = notebook_bytes()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def put_file(hub, client, path: str, data: bytes):
    """Write a file into glabown's instance's storage through its contents API."""
    url = f"{hub.url}/user/{OWNER}/{OWNER_NB}/api/contents/{path}"
    body = {"type": "file", "format": "base64", "content": base64.b64encode(data).decode()}
    r = client.session.put(url, json=body, timeout=60)
    assert r.status_code in (200, 201), r.text[:500]


def wait_running(client, name: str, user: str, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while client.instance(name, user)["state"] != "running":
        assert time.monotonic() < deadline, client.instance(name, user)
        time.sleep(1)


@pytest.fixture(scope="module")
def published(hub):
    """glabown's notebook case published (everyone may see it): (owner's client, asset);
    the asset and the instance are removed after."""
    client = hub.add_user(OWNER)
    body = {"name": OWNER_NB, "image": "python", "flavor": "cpu.tiny", "storage_gib": 1}
    client.api("POST", f"users/{OWNER}/instances", body)
    wait_running(client, OWNER_NB, OWNER)
    url = f"{hub.url}/user/{OWNER}/{OWNER_NB}/api/contents/{CASE}"
    r = client.session.put(url, json={"type": "directory"}, timeout=60)
    assert r.status_code in (200, 201), r.text[:500]
    put_file(hub, client, f"{CASE}/forecast.ipynb", NOTEBOOK)
    put_file(hub, client, f"{CASE}/data.csv", DATA)
    asset = client.api(
        "POST",
        "gallery/assets",
        {
            "kind": "notebook",
            "title": TITLE,
            "description": "Months to churn.",
            "tags": ["churn"],
            "visibility": "everyone",
            "source": {"instance": OWNER_NB, "path": CASE},
        },
        limit=300,
    )
    yield client, asset
    try:
        client.api("DELETE", f"gallery/assets/{asset['id']}")
    except WorkbenchError as e:
        print(f"cleanup: {e}")
    client.stop_instance(OWNER_NB, OWNER)
    client.delete_instance(OWNER_NB, OWNER)


@pytest.fixture(scope="module")
def taker(hub):
    """glabtake with a stopped instance (the one this server stands for); deleted after."""
    client = hub.add_user(TAKER)
    client.create_instance(TAKER_NB, flavor="cpu.tiny", storage_gib=1, start=False, user=TAKER)
    yield client
    client.delete_instance(TAKER_NB, TAKER)


@pytest.fixture
def storage(jp_root_dir) -> Path:
    """This server's storage: a folder below its root (so that the root holds files that
    are not on the storage)."""
    path = Path(jp_root_dir) / "work"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture
def jp_server_config(hub, taker, storage):
    lab = {
        "platform_url": f"{hub.url}/services/workbench/api",
        "api_token": taker.token,
        "user": TAKER,
        "instance": TAKER_NB,
        "request_timeout": 30.0,
        "storage_path": str(storage),
    }
    return {
        "ServerApp": {"jpserver_extensions": {"workbench_lab": True}},
        "WorkbenchLabApp": lab,
    }


@pytest.fixture
def fetch(jp_fetch, jp_asyncio_loop):
    """Call the extension through jp_fetch on pytest-jupyter's loop: the answer's response."""

    def call(path, *, method="GET", body=None, params=None):
        kwargs = {"method": method, "request_timeout": 300, "params": params or {}}
        if body is not None:
            kwargs["body"] = json.dumps(body)
        elif method in ("POST", "PUT"):
            kwargs["body"] = ""
        return fetch_on_loop(jp_fetch, jp_asyncio_loop, "workbench", "gallery", path, **kwargs)

    return call


def refused(fetch, path, *, method="GET", body=None) -> tuple[int, str]:
    with pytest.raises(HTTPClientError) as info:
        fetch(path, method=method, body=body)
    return info.value.code, json.loads(info.value.response.body)["message"]


def test_take_writes_each_file_checked_into_a_new_folder(fetch, published, storage):
    _, asset = published
    resp = fetch("take", method="POST", body={"asset": asset["id"]})
    assert resp.code == 201
    taken = json.loads(resp.body)
    assert taken["folder"] == f"work/gallery/{SLUG}"
    assert taken["notebook"] == f"work/gallery/{SLUG}/forecast.ipynb"
    folder = storage / "gallery" / SLUG
    assert (folder / "forecast.ipynb").read_bytes() == NOTEBOOK
    assert (folder / "data.csv").read_bytes() == DATA
    assert {f["path"]: f["sha256"] for f in taken["files"]} == {
        "data.csv": sha(DATA),
        "forecast.ipynb": sha(NOTEBOOK),
    }
    # taken again: a folder beside it, the first one untouched; nothing half-written stays
    (folder / "data.csv").write_bytes(b"my edits")
    again = json.loads(fetch("take", method="POST", body={"asset": asset["id"]}).body)
    assert again["folder"] == f"work/gallery/{SLUG}-2"
    assert (storage / "gallery" / f"{SLUG}-2" / "data.csv").read_bytes() == DATA
    assert (folder / "data.csv").read_bytes() == b"my edits"
    assert sorted(p.name for p in (storage / "gallery").iterdir()) == [SLUG, f"{SLUG}-2"]
    # each take is a use
    model = json.loads(fetch(f"assets/{asset['id']}").body)
    assert model["uses"] >= 2


def test_take_refuses_a_damaged_file_and_leaves_no_folder(fetch, published, hub, storage):
    _, asset = published
    blob = hub.root / "data" / "gallery" / "blobs" / sha(DATA)[:2] / sha(DATA)
    assert blob.read_bytes() == DATA
    blob.chmod(0o644)
    blob.write_bytes(DATA.replace(b"12", b"99"))
    try:
        code, message = refused(fetch, "take", method="POST", body={"asset": asset["id"]})
    finally:
        blob.write_bytes(DATA)
        blob.chmod(0o444)
    assert code == 409
    assert "'data.csv'" in message and "SHA-256" in message
    # nothing written: no folder, not even a hidden partial one
    assert not (storage / "gallery").exists() or list((storage / "gallery").iterdir()) == []


def test_take_refusals(fetch, published, taker):
    assert refused(fetch, "take", method="POST", body={}) == (
        400,
        'Send {"asset": N}: the number of a gallery asset.',
    )
    code, message = refused(fetch, "take", method="POST", body={"asset": 999999})
    assert (code, message) == (404, "No gallery asset 999999 that you may see.")
    _, asset = published
    code, message = refused(fetch, "take", method="POST", body={"asset": asset["id"], "version": 7})
    assert code == 404, message


def test_publish_refuses_paths_outside_the_storage(fetch, taker, storage, jp_root_dir):
    (Path(jp_root_dir) / "outside.ipynb").write_bytes(NOTEBOOK)
    (storage / "notes.txt").write_text("not a notebook")

    def publish(path):
        body = {"path": path, "title": "Outside", "visibility": "everyone"}
        return refused(fetch, "publish", method="POST", body=body)

    code, message = publish("outside.ipynb")
    assert code == 400
    assert message.startswith("outside.ipynb is not on this instance's storage")
    code, message = publish("../etc")
    assert code == 400 and "outside this server's folder" in message
    code, message = publish("work/notes.txt")
    assert code == 400 and "is not a notebook" in message
    assert publish("work/nope") == (400, "No such notebook or folder: 'work/nope'.")
    # nothing reached the gallery
    assert taker.api("GET", "gallery/assets", params={"mine": "1"})["assets"] == []


def test_relays_list_star_and_preview(fetch, published):
    _, asset = published
    listed = json.loads(fetch("assets", params={"q": "churn", "kind": "notebook"}).body)
    assert asset["id"] in [a["id"] for a in listed["assets"]]
    starred = json.loads(fetch(f"assets/{asset['id']}/star", method="PUT").body)
    assert starred["starred"] is True and starred["stars"] >= 1
    unstarred = json.loads(fetch(f"assets/{asset['id']}/star", method="DELETE").body)
    assert unstarred["starred"] is False
    resp = fetch(f"assets/{asset['id']}/versions/1/preview")
    assert resp.headers["Content-Security-Policy"] == PREVIEW_CSP
    assert resp.headers["Content-Type"].startswith("text/html")
    assert TOKEN in resp.body.decode()
