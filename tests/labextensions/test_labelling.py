"""Labelling datasets in JupyterLab, keyboard only, in headless Chromium, against the session hub.

A real instance of user "labeller" runs the python image with the panel's extension. One
dataset of each type is made through the platform API (labels, then its samples uploaded as a
tar archive). For each, from the keyboard only: the view is opened from the panel's Datasets
section, ten samples are labelled (classes, boxes drawn and moved, entity spans), the last
change is undone, the page is reloaded: the view comes back with the labels shown, and the
platform has them. A pre-labelled sample shows its pre-label dashed with its confidence and
Enter accepts it. The pre-label is written into the platform's database as an auto-labelling
run writes it (a deployed model service is not what this test is about; the auto-labelling
runs themselves are tested with the datasets API).

Then a folder of the instance is made into a dataset from the file browser's context menu
("Label as Dataset…"), and the server extension's relay is checked: sample files answered with
their ETag (and 304 when the browser has them), the platform's refusals relayed with its
message, folders outside the server's root refused. Screenshots go to
artifacts/screenshots/labelling-*.png. Needs Chromium at /usr/bin/chromium (or
$WORKBENCH_CHROMIUM): a missing browser fails, it never skips.
"""

from __future__ import annotations

import base64
import io
import json
import sqlite3
import tarfile
import time

import pytest
from PIL import Image
from playwright.sync_api import Page, expect
from workbench import WorkbenchError

from tests.hub.test_browser import CHROMIUM_ARGS, LAB_TIMEOUT_MS, SCREENSHOTS, browser
from tests.labextensions.lab import lab_page

pytestmark = [pytest.mark.integration, pytest.mark.browser]

USER = "labeller"
NAME = "label-nb"
FOLDER = "pets-folder"  # a folder of the instance made into a dataset from the file browser
# what waits on the platform through the instance (a loaded machine answers slowly)
CALL_TIMEOUT_MS = 30_000
WIDTH, HEIGHT = 160, 120
SAMPLES = 14
LABELLED = 10  # samples labelled from the keyboard (the last one undone)
PRELABELLED = 11  # the index of the sample a model pre-labelled
MODEL = f"model:{USER}/detector"
CONFIDENCE = 0.87
# named entities: each text starts with two words, tagged together
FIRST_TWO = "Ada{:02d} Lovelace"
TEXT = FIRST_TWO + " met Bob in Paris."

__all__ = ["browser", "CHROMIUM_ARGS"]

DATASETS = {
    "image_classification": ("pets", ["cat", "dog"]),
    "object_detection": ("street", ["car", "person"]),
    "text_classification": ("reviews", ["good", "bad"]),
    "named_entities": ("people", ["PER", "LOC"]),
}


def shot(page: Page, name: str):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"labelling-{name}.png"))


def png(i: int, size=(WIDTH, HEIGHT)) -> bytes:
    image = Image.new("RGB", size, ((i * 53) % 256, (i * 97) % 256, (i * 31) % 256))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def tar_of(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for key, data in files.items():
            info = tarfile.TarInfo(key)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def sample_files(kind: str) -> dict[str, bytes]:
    if kind in ("image_classification", "object_detection"):
        return {f"images/{i:03d}.png": png(i) for i in range(SAMPLES)}
    if kind == "text_classification":
        return {f"texts/{i:03d}.txt": f"Review {i}: it was fine.".encode() for i in range(SAMPLES)}
    return {f"texts/{i:03d}.txt": TEXT.format(i).encode() for i in range(SAMPLES)}


def samples(client, name: str) -> list[dict]:
    page = client.api("GET", f"datasets/{USER}/{name}/samples?limit=100")
    return page["samples"]


def prelabel(kind: str, labels: list[str], sample: dict) -> list[dict]:
    """What a model service's auto-labelling run writes for the sample."""
    a = {"label": labels[1], "annotated_by": MODEL, "confidence": CONFIDENCE}
    a["created"] = "2026-12-02T10:00:00Z"
    if kind == "object_detection":
        a["box"] = [10, 10, 60, 50]
    if kind == "named_entities":
        start = sample["text"].index("Paris")
        a["span"] = [start, start + len("Paris")]
    return [a]


def write_prelabel(hub, sample_id: int, annotations: list[dict]):
    """The pre-label, written as the platform's auto-labelling writes it."""
    with sqlite3.connect(hub.root / "data" / "workbench.sqlite", timeout=30) as db:
        db.execute(
            "UPDATE dataset_samples SET annotations = ?, status = 'prelabelled', "
            "annotated_by = ?, confidence = ? WHERE id = ?",
            (json.dumps(annotations), MODEL, CONFIDENCE, sample_id),
        )


def quietly(call, *args):
    try:
        call(*args)
    except WorkbenchError as e:
        print(f"cleanup: {e}")


def make_dataset(hub, client, kind: str, name: str) -> list[dict]:
    """A dataset of the kind's labels, its samples uploaded as a tar archive and one
    pre-labelled; its samples."""
    labels = DATASETS[kind][1]
    spec = {"name": name, "type": kind, "labels": [{"name": label} for label in labels]}
    client.api("POST", "datasets", spec)
    r = client.session.post(
        f"{client.api_url}/datasets/{USER}/{name}/samples",
        data=tar_of(sample_files(kind)),
        headers={"Content-Type": "application/x-tar"},
        timeout=120,
    )
    assert r.status_code == 200, r.text[:500]
    assert r.json()["added"] == SAMPLES
    rows = samples(client, name)
    write_prelabel(hub, rows[PRELABELLED]["id"], prelabel(kind, labels, rows[PRELABELLED]))
    return rows


@pytest.fixture(scope="module")
def lab(hub):
    """labeller with a running instance and one dataset of each type (samples uploaded, one
    pre-labelled); the datasets and the instance are deleted after."""
    client = hub.add_user(USER)
    body = {"name": NAME, "image": "python", "flavor": "cpu.small", "storage_gib": 1}
    client.api("POST", f"users/{USER}/instances", body)
    for kind, (name, _) in DATASETS.items():
        make_dataset(hub, client, kind, name)
    deadline = time.monotonic() + 180
    while client.instance(NAME, USER)["state"] != "running":
        assert time.monotonic() < deadline, client.instance(NAME, USER)
        time.sleep(1)
    yield client
    for dataset in client.api("GET", "datasets"):
        if dataset["owner"] == USER:
            quietly(client.api, "DELETE", f"datasets/{USER}/{dataset['name']}")
    if client.instance(NAME, USER)["state"] != "stopped":
        client.stop_instance(NAME, USER)
    client.delete_instance(NAME, USER)


@pytest.fixture(scope="module")
def page(hub, lab, browser):
    with lab_page(browser, hub, USER, height=1000) as page:
        yield page


def open_lab(page: Page, hub):
    """JupyterLab (with the views it had open: its layout is restored)."""
    page.goto(f"{hub.url}/user/{USER}/{NAME}/lab")
    expect(page.locator("#jp-main-dock-panel")).to_be_visible(timeout=LAB_TIMEOUT_MS)


def show_sidebar(page: Page, panel_id: str):
    """A sidebar panel, shown (its tab toggles it: the layout may still be settling, so
    click until it shows)."""
    panel = page.locator(f"#{panel_id}")
    for _ in range(4):
        if panel.is_visible():
            break
        page.locator(f"li.lm-TabBar-tab[data-id='{panel_id}']").click()
        page.wait_for_timeout(1000)
    expect(panel).to_be_visible()
    return panel


def open_view(page: Page, name: str):
    """The dataset's labelling view, opened from the panel's Datasets section."""
    panel = show_sidebar(page, "jp-workbench-panel")
    panel.locator("button[data-action='refresh-datasets']").click()
    item = panel.locator(f"li[data-dataset='{USER}/{name}']")
    expect(item.locator("[data-field='stats']")).to_contain_text(
        f"of {SAMPLES} labelled", timeout=CALL_TIMEOUT_MS
    )
    item.locator("button[data-action='label']").click()
    return shown_view(page, name)


def shown_view(page: Page, name: str):
    view = page.locator(f".jp-WorkbenchLabel[data-dataset='{USER}/{name}']")
    expect(view.locator(".jp-WorkbenchLabel-stage[data-ready='1']")).to_be_visible(
        timeout=CALL_TIMEOUT_MS
    )
    view.focus()
    return view


def press(page: Page, *keys: str):
    for key in keys:
        page.keyboard.press(key)


def expect_sample(view, sample: dict):
    expect(view.locator(".jp-WorkbenchLabel-stage")).to_have_attribute(
        "data-sample-id", str(sample["id"]), timeout=CALL_TIMEOUT_MS
    )


def expect_saved(view):
    save = view.locator("[data-field='save']")
    expect(save).to_have_attribute("data-pending", "0", timeout=CALL_TIMEOUT_MS)
    expect(save).to_have_attribute("data-state", "saved")


def label_keys(i: int) -> tuple[str, int]:
    """The key of the label given to sample i, and the label's index."""
    return ("1", 0) if i % 2 == 0 else ("2", 1)


# the box "n" adds in the middle of a 160 x 120 image, moved right by 2 and made 1 taller
# (the keyboard's step is 1% of the image's smaller side: 1 pixel)
MIDDLE = [53, 40, 107, 80]
MOVED = [55, 40, 109, 81]


def keys_of(kind: str, i: int) -> list[str]:
    """The keys that label sample i (and go on to the next one)."""
    key, _ = label_keys(i)
    if kind in ("image_classification", "text_classification"):
        return [key]  # a class: the view goes on by itself
    if kind == "object_detection":
        # the label first (the label of new boxes), then a box in the middle
        moves = ["ArrowRight", "ArrowRight", "Shift+ArrowDown"] if i == 0 else []
        return [key, "n", *moves, "Escape", "ArrowRight"]
    return ["Alt+ArrowRight", "Alt+Shift+ArrowRight", key, "ArrowRight"]


def expected(kind: str, labels: list[str], i: int, sample: dict) -> list[dict]:
    """The annotations sample i has after keys_of(kind, i), as label, box or span."""
    label = labels[label_keys(i)[1]]
    if kind == "object_detection":
        return [{"label": label, "box": MOVED if i == 0 else MIDDLE}]
    if kind == "named_entities":
        return [{"label": label, "span": [0, len(FIRST_TWO.format(i))]}]
    return [{"label": label}]


def plain(annotations: list[dict]) -> list[dict]:
    keep = ("label", "box", "span")
    return [
        {k: ([round(v) for v in a[k]] if k == "box" else a[k]) for k in keep if k in a}
        for a in annotations
    ]


def expect_shown(view, kind: str, annotations: list[dict]):
    """The view shows these annotations of the current sample."""
    if kind in ("image_classification", "text_classification"):
        badges = view.locator(".jp-WorkbenchLabel-badge")
        expect(badges).to_have_count(len(annotations))
        for n, a in enumerate(annotations):
            expect(badges.nth(n)).to_have_attribute("data-label", a["label"])
    elif kind == "object_detection":
        boxes = view.locator("g.jp-WorkbenchLabel-box")
        expect(boxes).to_have_count(len(annotations))
        for n, a in enumerate(annotations):
            expect(boxes.nth(n)).to_have_attribute("data-label", a["label"])
            expect(boxes.nth(n)).to_have_attribute("data-box", ",".join(map(str, a["box"])))
    else:
        tags = view.locator(".jp-WorkbenchLabel-tag")
        expect(tags).to_have_count(len(annotations))
        for n, a in enumerate(annotations):
            expect(tags.nth(n)).to_have_attribute("data-label", a["label"])
            expect(tags.nth(n)).to_have_attribute("data-span", ",".join(map(str, a["span"])))


@pytest.mark.parametrize("kind", list(DATASETS))
def test_label_ten_samples_from_the_keyboard_undo_one_reload_and_accept_a_prelabel(
    hub, lab, page, kind
):
    name, labels = DATASETS[kind]
    rows = samples(lab, name)
    assert len(rows) == SAMPLES
    open_lab(page, hub)
    view = open_view(page, name)
    expect(view).to_have_attribute("data-type", kind)
    expect_sample(view, rows[0])
    expect(view.locator("[data-field='position']")).to_have_text(f"1 / {SAMPLES}")

    for i in range(LABELLED):
        press(page, *keys_of(kind, i))
    expect_sample(view, rows[LABELLED])
    shot(page, f"{kind}-1-labelled")
    # undo: the tenth sample again, unlabelled (and saved so)
    press(page, "Control+z")
    expect_sample(view, rows[LABELLED - 1])
    expect_shown(view, kind, [])
    expect_saved(view)

    after = samples(lab, name)
    for i in range(LABELLED - 1):
        assert after[i]["status"] == "labelled", after[i]
        assert after[i]["annotated_by"] == USER
        assert plain(after[i]["annotations"]) == expected(kind, labels, i, rows[i])
    assert after[LABELLED - 1]["status"] == "unlabelled"
    assert after[LABELLED - 1]["annotations"] == []
    assert all(s["status"] == "unlabelled" for s in after[LABELLED:PRELABELLED])

    # the page again: the view comes back, and shows the labels the platform has
    page.reload()
    expect(page.locator("#jp-main-dock-panel")).to_be_visible(timeout=LAB_TIMEOUT_MS)
    view = shown_view(page, name)
    expect_sample(view, rows[0])
    for i in range(LABELLED):
        if i:
            press(page, "ArrowRight")
        expect_sample(view, rows[i])
        expect_shown(view, kind, expected(kind, labels, i, rows[i]) if i < LABELLED - 1 else [])
    shot(page, f"{kind}-2-reloaded")

    # the model's pre-label: dashed, with its confidence; Enter accepts it and goes on
    press(page, "ArrowRight", "k", "j", "ArrowRight")
    expect_sample(view, rows[PRELABELLED])
    expect(view.locator(".jp-WorkbenchLabel-info")).to_contain_text("prelabelled")
    pre = view.locator("[data-prelabel='1']")
    expect(pre).to_have_count(1)
    expect(pre).to_have_attribute("data-label", labels[1])
    expect(pre).to_have_attribute("data-confidence", str(CONFIDENCE))
    expect(pre).to_contain_text("87%")
    shot(page, f"{kind}-3-prelabel")
    press(page, "Enter")
    expect_sample(view, rows[PRELABELLED + 1])
    expect_saved(view)
    accepted = lab.api("GET", f"datasets/{USER}/{name}/samples/{rows[PRELABELLED]['id']}")
    assert accepted["status"] == "labelled"
    assert [(a["label"], a["annotated_by"]) for a in accepted["annotations"]] == [
        (labels[1], MODEL)
    ]

    # the stats bar counts them, the filter of labelled samples finds them
    stats = view.locator("[data-field='stats']")
    expect(stats).to_have_attribute("data-labelled", str(LABELLED), timeout=CALL_TIMEOUT_MS)
    view.locator("select[name='filter']").select_option("labelled")
    expect(view.locator("[data-field='position']")).to_have_text(
        f"1 / {LABELLED}", timeout=CALL_TIMEOUT_MS
    )
    view.locator("select[name='filter']").select_option("all")
    expect(view.locator("[data-field='position']")).to_have_text(f"1 / {SAMPLES}")


def test_help_overlay_and_boxes_with_the_mouse(hub, lab, page):
    # a dataset of its own: the keyboard test counts what it labels in the shared ones
    name, labels = "street-mouse", DATASETS["object_detection"][1]
    rows = make_dataset(hub, lab, "object_detection", name)
    open_lab(page, hub)
    view = open_view(page, name)
    # ? shows the keys, the editor's own among them; Esc hides them
    press(page, "?")
    help_box = view.locator(".jp-WorkbenchLabel-help")
    expect(help_box).to_be_visible()
    expect(help_box).to_contain_text("Shift+arrows")
    expect(help_box).to_contain_text("Ctrl+Z")
    press(page, "Escape")
    expect(help_box).to_be_hidden()

    # a box drawn with the mouse on an unlabelled sample, with the last label chosen
    target = rows[SAMPLES - 1]
    for _ in range(SAMPLES - 1):
        press(page, "ArrowRight")
    expect_sample(view, target)
    press(page, "2")
    svg = view.locator("svg.jp-WorkbenchLabel-svg")
    box = svg.bounding_box()
    scale = box["width"] / WIDTH
    page.mouse.move(box["x"] + 20 * scale, box["y"] + 30 * scale)
    page.mouse.down()
    page.mouse.move(box["x"] + 80 * scale, box["y"] + 90 * scale, steps=6)
    page.mouse.up()
    drawn = view.locator("g.jp-WorkbenchLabel-box")
    expect(drawn).to_have_count(1)
    expect(drawn).to_have_attribute("data-label", labels[1])
    # zoom in: the same box, twice as big on screen
    press(page, "+", "+")
    expect(view.locator(".jp-WorkbenchLabel-boxes")).to_have_attribute("data-zoom", "2")
    # Tab selects it, 1 labels it, Delete removes it, Ctrl-Z brings it back
    press(page, "Tab", "1")
    expect(drawn).to_have_attribute("data-label", labels[0])
    press(page, "Delete")
    expect(drawn).to_have_count(0)
    press(page, "Control+z")
    expect(drawn).to_have_count(1)
    # Backspace clears the sample, Ctrl-Z brings its box back again
    press(page, "Escape", "Backspace")
    expect(drawn).to_have_count(0)
    expect(view.locator(".jp-WorkbenchLabel-stage")).to_have_attribute("data-status", "unlabelled")
    press(page, "Control+z")
    expect(drawn).to_have_count(1)
    expect_saved(view)
    saved = lab.api("GET", f"datasets/{USER}/{name}/samples/{target['id']}")
    assert [a["label"] for a in saved["annotations"]] == [labels[0]]
    x1, y1, x2, y2 = saved["annotations"][0]["box"]
    assert abs(x1 - 20) <= 2 and abs(y1 - 30) <= 2 and abs(x2 - 80) <= 2 and abs(y2 - 90) <= 2
    shot(page, "mouse-box")
    press(page, "-", "-")


def test_entities_selected_with_the_mouse(hub, lab, page):
    # a dataset of its own: the keyboard test counts what it labels in the shared ones
    name, labels = "people-mouse", DATASETS["named_entities"][1]
    target = make_dataset(hub, lab, "named_entities", name)[SAMPLES - 1]
    open_lab(page, hub)
    view = open_view(page, name)
    for _ in range(SAMPLES - 1):
        press(page, "ArrowRight")
    expect_sample(view, target)
    # a double click selects a word; its label's key tags it
    view.locator(".jp-WorkbenchLabel-seg", has_text="Paris").dblclick()
    start = target["text"].index("Paris")
    expect(view.locator(".jp-WorkbenchLabel-entities")).to_have_attribute(
        "data-selection", f"{start},{start + 5}"
    )
    press(page, "2")
    tag = view.locator(".jp-WorkbenchLabel-tag")
    expect(tag).to_have_attribute("data-label", labels[1])
    expect(tag).to_have_attribute("data-span", f"{start},{start + 5}")
    expect_saved(view)
    saved = lab.api("GET", f"datasets/{USER}/{name}/samples/{target['id']}")
    assert plain(saved["annotations"]) == [{"label": labels[1], "span": [start, start + 5]}]


def test_label_a_folder_as_dataset_from_the_file_browser(hub, lab, page):
    contents = f"{hub.url}/user/{USER}/{NAME}/api/contents"
    for path in (FOLDER, f"{FOLDER}/more"):
        r = lab.session.put(f"{contents}/{path}", json={"type": "directory"})
        assert r.status_code in (200, 201), r.text[:300]
    files = {"a.png": png(1), "b.png": png(2), "more/c.png": png(3), "README.md": b"# pets"}
    for key, data in files.items():
        body = {"type": "file", "format": "base64", "content": base64.b64encode(data).decode()}
        r = lab.session.put(f"{contents}/{FOLDER}/{key}", json=body)
        assert r.status_code in (200, 201), r.text[:300]

    open_lab(page, hub)
    browser_panel = show_sidebar(page, "filebrowser")
    browser_panel.locator("[data-command='filebrowser:refresh']").first.click()
    folder = browser_panel.locator(".jp-DirListing-item", has_text=FOLDER)
    expect(folder).to_be_visible(timeout=CALL_TIMEOUT_MS)
    folder.click(button="right")
    page.locator(".lm-Menu-itemLabel", has_text="Label as Dataset…").click()
    form = page.locator(".jp-WorkbenchLabel-create")
    expect(form.locator("input[name='name']")).to_have_value(FOLDER)
    form.locator("select[name='type']").select_option("image_classification")
    form.locator("input[name='labels']").fill("cat, dog")
    page.locator(".jp-Dialog-button.jp-mod-accept").click()

    view = shown_view(page, FOLDER)
    expect(view.locator("[data-field='position']")).to_have_text("1 / 3")
    expect(view.locator(".jp-WorkbenchLabel-chip")).to_have_count(2)
    press(page, "2")
    expect_saved(view)
    dataset = lab.api("GET", f"datasets/{USER}/{FOLDER}")
    assert dataset["type"] == "image_classification"
    assert [label["name"] for label in dataset["labels"]] == ["cat", "dog"]
    keys = sorted(s["key"] for s in samples(lab, FOLDER))
    assert keys == ["a.png", "b.png", "more/c.png"]
    assert samples(lab, FOLDER)[0]["annotations"][0]["label"] == "dog"
    shot(page, "folder")


def test_the_relay_keeps_etags_and_the_platforms_refusals(hub, lab):
    base = f"{hub.url}/user/{USER}/{NAME}/workbench"
    name, _ = DATASETS["image_classification"]
    row = samples(lab, name)[0]
    url = f"{base}/datasets/{USER}/{name}/samples/{row['id']}/content"
    r = lab.session.get(url, timeout=30)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "image/png"
    assert r.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert r.headers["ETag"] == f'"{row["sha256"]}"'
    assert "immutable" in r.headers["Cache-Control"]
    again = lab.session.get(url, headers={"If-None-Match": r.headers["ETag"]}, timeout=30)
    assert again.status_code == 304
    assert not again.content

    # the query string goes along: keyset pages
    page = lab.session.get(
        f"{base}/datasets/{USER}/{name}/samples?limit=2&after={row['id']}", timeout=30
    ).json()
    assert [s["id"] for s in page["samples"]] == [s["id"] for s in samples(lab, name)[1:3]]

    # the platform's refusal, with its message
    r = lab.session.put(
        f"{base}/datasets/{USER}/{name}/samples/{row['id']}/annotations",
        json={"annotations": [{"label": "horse"}]},
        timeout=30,
    )
    assert r.status_code == 400
    assert "horse" in r.json()["message"]
    r = lab.session.get(f"{base}/datasets/{USER}/no-such-dataset", timeout=30)
    assert r.status_code == 404
    assert "no-such-dataset" in r.json()["message"]

    # a folder outside the server's root is refused before anything is made
    r = lab.session.post(
        f"{base}/datasets-from-folder",
        json={"path": "../../etc", "name": "etc", "type": "text_classification"},
        timeout=30,
    )
    assert r.status_code == 400
    assert "outside this server's folder" in r.json()["message"]
    with pytest.raises(WorkbenchError) as e:
        lab.api("GET", f"datasets/{USER}/etc")
    assert (e.value.status, e.value.message) == (404, f"No dataset 'etc' of user {USER!r}.")
