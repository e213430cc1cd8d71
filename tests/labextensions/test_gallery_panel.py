"""The gallery in JupyterLab, in headless Chromium, against the session hub.

Users "galpa" and "galpb" each have a real instance running the python image with the panel's
extension. galpa's storage holds a notebook case (a notebook with an output, and a data file
in a subfolder); galpa shares it from the file browser's context menu through the publish
dialog (an empty title is refused in the dialog first). galpb follows a
#workbench-gallery=<id> link into the Gallery view, goes back to the list, finds the case by
searching a word of its title, sees the notebook rendered in the sandboxed preview, stars it
and opens it in their instance: the notebook opens, and the files in galpb's storage are
byte for byte galpa's. galpa's "Shared by me" lists the case with its use and star, and
unpublishing it there removes it from galpb's search. Screenshots go to
artifacts/screenshots/gallery-*.png. Needs Chromium at /usr/bin/chromium (or
$WORKBENCH_CHROMIUM): a missing browser fails, it never skips.
"""

from __future__ import annotations

import base64
import hashlib
import time

import nbformat
import pytest
from playwright.sync_api import Page, expect
from workbench import WorkbenchError

from tests.hub.test_browser import CHROMIUM_ARGS, LAB_TIMEOUT_MS, SCREENSHOTS, browser
from tests.labextensions.lab import lab_page

pytestmark = [pytest.mark.integration, pytest.mark.browser]

__all__ = ["browser", "CHROMIUM_ARGS"]

USER_A = "galpa"
NB_A = "gal-a"
USER_B = "galpb"
NB_B = "gal-b"
CASE = "iris-case"
WORD = "Petalwise"
TITLE = f"{WORD} iris walkthrough"
SLUG = "petalwise-iris-walkthrough"
OUTPUT = "mean petal width 1.199"
DATA = b"sepal_length,petal_width,species\n5.1,0.2,setosa\n6.7,2.3,virginica\n"
# publishing copies the case with a helper container and renders it; a loaded machine is slow
PUBLISH_TIMEOUT_MS = 180_000
CALL_TIMEOUT_MS = 60_000


def notebook_bytes() -> bytes:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    code = nbformat.v4.new_code_cell(
        f"import csv\nrows = list(csv.DictReader(open('data/iris.csv')))\nprint({OUTPUT!r})"
    )
    code.execution_count = 1
    code.outputs = [nbformat.v4.new_output("stream", name="stdout", text=OUTPUT + "\n")]
    nb.cells = [nbformat.v4.new_markdown_cell("# Iris petals\n\nWidths by species."), code]
    return nbformat.writes(nb).encode()


FILES = {"explore.ipynb": notebook_bytes(), "data/iris.csv": DATA}


def shot(page: Page, name: str):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"gallery-{name}.png"))


def contents(hub, user: str, instance: str) -> str:
    return f"{hub.url}/user/{user}/{instance}/api/contents"


def read_file(hub, client, user: str, instance: str, path: str) -> bytes:
    """A file of an instance's storage, as stored (its contents API, base64)."""
    r = client.session.get(
        f"{contents(hub, user, instance)}/{path}",
        params={"type": "file", "format": "base64", "content": "1"},
        timeout=60,
    )
    assert r.status_code == 200, r.text[:300]
    return base64.b64decode(r.json()["content"])


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def start(client, user: str, name: str):
    body = {"name": name, "image": "python", "flavor": "cpu.tiny", "storage_gib": 1}
    client.api("POST", f"users/{user}/instances", body)


def wait_running(client, user: str, name: str, timeout: float = 180):
    deadline = time.monotonic() + timeout
    while client.instance(name, user)["state"] != "running":
        assert time.monotonic() < deadline, client.instance(name, user)
        time.sleep(1)


@pytest.fixture(scope="module")
def users(hub):
    """galpa and galpb, each with a running instance; galpa's storage holds the case. Their
    gallery assets and instances are removed after."""
    a, b = hub.add_user(USER_A), hub.add_user(USER_B)
    start(a, USER_A, NB_A)
    start(b, USER_B, NB_B)
    wait_running(a, USER_A, NB_A)
    wait_running(b, USER_B, NB_B)
    base = contents(hub, USER_A, NB_A)
    for folder in (CASE, f"{CASE}/data"):
        r = a.session.put(f"{base}/{folder}", json={"type": "directory"}, timeout=60)
        assert r.status_code in (200, 201), r.text[:300]
    for path, data in FILES.items():
        body = {"type": "file", "format": "base64", "content": base64.b64encode(data).decode()}
        r = a.session.put(f"{base}/{CASE}/{path}", json=body, timeout=60)
        assert r.status_code in (200, 201), r.text[:300]
    yield a, b
    for asset in a.api("GET", "gallery/assets", params={"mine": "1"})["assets"]:
        try:
            a.api("DELETE", f"gallery/assets/{asset['id']}")
        except WorkbenchError as e:
            print(f"cleanup: {e}")
    for client, user, name in ((a, USER_A, NB_A), (b, USER_B, NB_B)):
        client.stop_instance(name, user)
        client.delete_instance(name, user)


def show_sidebar(page: Page, panel_id: str):
    """A sidebar panel, shown (its tab toggles it: click until it shows)."""
    panel = page.locator(f"#{panel_id}")
    for _ in range(4):
        if panel.is_visible():
            break
        page.locator(f"li.lm-TabBar-tab[data-id='{panel_id}']").click()
        page.wait_for_timeout(1000)
    expect(panel).to_be_visible()
    return panel


def open_lab(page: Page, hub, user: str, name: str, hash_: str = ""):
    page.goto(f"{hub.url}/user/{user}/{name}/lab{hash_}")
    expect(page.locator("#jp-main-dock-panel")).to_be_visible(timeout=LAB_TIMEOUT_MS)


def test_share_find_preview_star_take_and_unpublish(hub, users, browser):
    a, b = users
    with lab_page(browser, hub, USER_A) as page_a, lab_page(browser, hub, USER_B) as page_b:
        # galpa shares the folder from the file browser's context menu
        open_lab(page_a, hub, USER_A, NB_A)
        files = show_sidebar(page_a, "filebrowser")
        files.locator("[data-command='filebrowser:refresh']").first.click()
        folder = files.locator(".jp-DirListing-item", has_text=CASE)
        expect(folder).to_be_visible(timeout=CALL_TIMEOUT_MS)
        folder.click(button="right")
        page_a.locator(".lm-Menu-itemLabel", has_text="Share to Gallery…").click()
        dialog = page_a.locator(".jp-Dialog")
        form = dialog.locator(".jp-WorkbenchGallery-publish")
        expect(form.locator("input[name='title']")).to_have_value("iris case")
        # an empty title: the dialog comes back with the reason, nothing is published
        form.locator("input[name='title']").fill("  ")
        dialog.locator(".jp-Dialog-button.jp-mod-accept").click()
        expect(form.locator(".jp-WorkbenchGallery-error")).to_have_text(
            "A title is required (1-120 characters)."
        )
        form.locator("input[name='title']").fill(TITLE)
        form.locator("textarea[name='description']").fill(
            "## What it shows\n\nThe **petal** widths of three species.\n\n- one notebook\n- data"
        )
        form.locator("input[name='tags']").fill("iris, Tutorial")
        expect(form.locator("select[name='visibility']")).to_have_value("everyone")
        shot(page_a, "01-share-dialog")
        dialog.locator(".jp-Dialog-button.jp-mod-accept").click()
        expect(page_a.locator(".Toastify__toast", has_text="to the gallery")).to_contain_text(
            f"Shared “{TITLE}” (version 1)", timeout=PUBLISH_TIMEOUT_MS
        )
        [asset] = a.api("GET", "gallery/assets", params={"mine": "1"})["assets"]
        assert (asset["title"], asset["kind"], asset["tags"]) == (
            TITLE,
            "notebook",
            ["iris", "tutorial"],
        )
        assert asset["meta"]["notebook"] == "explore.ipynb"
        listed = a.api("GET", f"gallery/assets/{asset['id']}/versions/1/files")["files"]
        originals = {p: read_file(hub, a, USER_A, NB_A, f"{CASE}/{p}") for p in FILES}
        assert {f["path"]: f["sha256"] for f in listed} == {
            p: sha(data) for p, data in originals.items()
        }
        # galpa's panel lists it under "Shared by me"
        panel_a = show_sidebar(page_a, "jp-workbench-panel")
        mine = panel_a.locator(f"[data-section='gallery'] li[data-asset='{asset['id']}']")
        expect(mine.locator("[data-field='title']")).to_have_text(TITLE, timeout=CALL_TIMEOUT_MS)

        # galpb follows a link to it (the hub's gallery page makes these), then searches
        open_lab(page_b, hub, USER_B, NB_B, f"#workbench-gallery={asset['id']}")
        detail = page_b.locator(f".jp-WorkbenchGallery-detail[data-asset='{asset['id']}']")
        expect(detail.locator("[data-field='title']")).to_have_text(TITLE, timeout=CALL_TIMEOUT_MS)
        detail.locator("button[data-action='back']").click()
        view = page_b.locator(".jp-WorkbenchGallery-view")
        view.locator("input[name='q']").fill(WORD.lower())
        card = view.locator(f"li.jp-WorkbenchGallery-card[data-asset='{asset['id']}']")
        expect(card.locator("[data-field='title']")).to_have_text(TITLE, timeout=CALL_TIMEOUT_MS)
        expect(view.locator("li.jp-WorkbenchGallery-card")).to_have_count(1)
        expect(card.locator("[data-field='owner']")).to_contain_text(f"by {USER_A}")
        shot(page_b, "02-search")
        card.click()

        # the detail: the description as Markdown, the notebook rendered in a sandbox
        expect(detail.locator("[data-field='description'] h4")).to_have_text("What it shows")
        expect(detail.locator("[data-field='description'] strong")).to_have_text("petal")
        expect(detail.locator("tr[data-version='1'] [data-field='files']")).to_have_text("2")
        frame = detail.locator("iframe.jp-WorkbenchGallery-frame")
        expect(frame).to_have_attribute("sandbox", "")
        preview = page_b.frame_locator(".jp-WorkbenchGallery-frame")
        expect(preview.locator("h1", has_text="Iris petals")).to_be_visible(timeout=CALL_TIMEOUT_MS)
        expect(preview.get_by_text(OUTPUT).first).to_be_visible()
        shot(page_b, "03-detail")
        expect(detail.locator("[data-field='sdk']")).to_have_text(
            f"import workbench; workbench.gallery.use({asset['id']})"
        )

        # a star
        detail.locator("button[data-action='star']").click()
        expect(detail.locator("button[data-action='star']")).to_have_attribute(
            "aria-pressed", "true"
        )
        seen = b.api("GET", f"gallery/assets/{asset['id']}")
        assert (seen["starred"], seen["stars"]) == (True, 1)

        # open it in this instance: copied into galpb's storage, the notebook opened
        detail.locator("button[data-action='take']").click()
        expect(page_b.locator(".lm-TabBar-tab", has_text="explore.ipynb")).to_be_visible(
            timeout=CALL_TIMEOUT_MS
        )
        expect(detail.locator("[data-field='result']")).to_contain_text(f"gallery/{SLUG}")
        for path, data in originals.items():
            copied = read_file(hub, b, USER_B, NB_B, f"gallery/{SLUG}/{path}")
            assert sha(copied) == sha(data), path
        shot(page_b, "04-taken")

        # galpa sees the use and the star, then unpublishes it
        panel_a.locator("button[data-action='refresh-shared']").click()
        expect(mine.locator("[data-field='stats']")).to_have_text(
            "notebook · v1 · 1 use · ★ 1", timeout=CALL_TIMEOUT_MS
        )
        mine.locator("button[data-action='unpublish']").click()
        page_a.locator(".jp-Dialog").get_by_role("button", name="Unpublish").click()
        expect(mine).to_have_count(0, timeout=CALL_TIMEOUT_MS)
        with pytest.raises(WorkbenchError) as e:
            b.api("GET", f"gallery/assets/{asset['id']}")
        assert e.value.status == 404

        # galpb's search no longer finds it
        page_b.locator("li.lm-TabBar-tab", has_text="Gallery").first.click()
        detail.locator("button[data-action='back']").click()
        expect(view.locator("li.jp-WorkbenchGallery-card")).to_have_count(
            0, timeout=CALL_TIMEOUT_MS
        )
        expect(view.locator(".jp-WorkbenchGallery-empty")).to_contain_text("Nothing matches")
        shot(page_b, "05-unpublished")
