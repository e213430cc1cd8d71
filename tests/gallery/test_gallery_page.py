"""The hub's Gallery page in headless Chromium, against the session hub.

"galpage" publishes, from the storage of a running instance, a notebook case (for everyone,
with a Markdown description holding HTML), an ONNX model version (for everyone) and a
notebook case for the members of workspace "galpage-team" only. "galpeek", who is not a
member, finds the page from the hub's home, sees the public assets as cards (not the
workspace's), searches by text, filters by kind, reads the description rendered from its
Markdown subset with the HTML shown as text, sees the notebook's read-only preview in a
sandboxed frame, stars the model and uses it as a new model of their own. The owner sees the
workspace asset, the links that open a notebook case in each of their running instances, and
edits and unpublishes an asset. Needs Chromium at /usr/bin/chromium (or $WORKBENCH_CHROMIUM):
a missing browser fails.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import time

import pytest
import requests
from playwright.sync_api import Page, expect
from workbench import WorkbenchError
from workbench.resources.models import storage_source

import gallery.pages
from hub.service.pages import SHARED
from spawner.templating import render_template
from tests.hub.test_browser import (  # noqa: F401 - browser is the shared fixture
    browser,
    shot,
    signed_in,
)
from tests.platform import run_code

pytestmark = [pytest.mark.integration, pytest.mark.browser]

OWNER, OTHER = "galpage", "galpeek"
PASSWORDS = {OWNER: "pw-" + secrets.token_hex(8), OTHER: "pw-" + secrets.token_hex(8)}
TEAM = "galpage-team"
MARKDOWN = (
    "# Getting started\n"
    "A **bold** claim with `code` and [the docs](https://example.com/docs).\n\n"
    "- first point\n- second point\n\n"
    '<img src=x onerror="window.pwned=1"> [trap](javascript:window.pwned=2) & done'
)


def test_the_page_keeps_its_config_as_text():
    config = {
        "user": "</script><script>alert(1)</script>",
        "api": "/services/workbench/api",
        "xsrf": "x",
        "gallery_page": "/services/workbench/gallery",
        "jobs_page": "/services/workbench/jobs",
        "experiments_page": "/services/workbench/experiments",
        "datasets_page": "/services/workbench/datasets",
        "models_page": "/services/workbench/models",
        "services_page": "/services/workbench/services",
        "hub_home": "/hub/home",
        "instances": "/user/",
    }
    text = render_template(gallery.pages.__file__, "gallery.html", shared=SHARED, config=config)
    assert "<script>alert(1)" not in text
    assert json.loads(re.search(r"var config = (.*);\n", text).group(1)) == config
    assert re.search(r"<iframe id=\"preview\" sandbox ", text)


def notebook_json(text: str) -> str:
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    return nbformat.writes(new_notebook(cells=[new_markdown_cell(text), new_code_cell("1 + 1")]))


def onnx_model() -> bytes:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "identity",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


WRITE = """\
import base64, os
for path, data in {files!r}.items():
    os.makedirs(os.path.dirname(path), exist_ok=True)
    open(path, "wb").write(base64.b64decode(data))
print("written")
"""


@pytest.fixture(scope="module")
def assets(hub):
    """galpage's three assets (by key: case, model, team), and galpeek signed up."""
    owner = hub.add_user(OWNER, PASSWORDS[OWNER])
    other = hub.add_user(OTHER, PASSWORDS[OTHER])
    admin = hub.client()
    admin.workspaces.create(TEAM, members=[OWNER])
    owner.instances.create("nb", image="python", flavor="cpu.tiny", storage_gib=1)
    deadline = time.monotonic() + 180
    while (instance := owner.instances.get("nb"))["state"] != "running":
        assert time.monotonic() < deadline, instance
        time.sleep(1)
    files = {
        "cases/intro/intro.ipynb": notebook_json(
            "Galpage preview: a **read-only** rendering"
        ).encode(),
        "cases/team/team.ipynb": notebook_json("for the team").encode(),
        "models/ident/ident.onnx": onnx_model(),
    }
    encoded = {path: base64.b64encode(data).decode() for path, data in files.items()}
    out = run_code(owner, instance["url"], WRITE.format(files=encoded))
    assert out["error"] is None and "written" in out["stdout"], out
    owner.models.create("galident", format="onnx", source=storage_source("nb", "models/ident"))
    made = {
        "case": owner.gallery.publish(
            "cases/intro",
            instance="nb",
            title="Galpage intro case",
            description=MARKDOWN,
            tags=["intro", "galpage"],
        ),
        "model": owner.gallery.publish(
            model="galident", title="Galpage identity model", tags=["onnx", "galpage"]
        ),
        "team": owner.gallery.publish(
            "cases/team",
            instance="nb",
            title="Galpage team secret",
            tags=["galpage"],
            visibility="workspace",
            workspace=TEAM,
        ),
    }
    yield made
    for client in (owner, other):
        for asset in client.gallery.search(mine=True):
            client.gallery.unpublish(asset["id"])
    for client, name in ((owner, "galident"), (other, "peek-ident")):
        try:
            client.models.delete(name)
        except WorkbenchError as e:
            if e.status != 404:
                print(f"cleanup of model {name}: {e}")
    owner.instances.stop("nb")
    owner.instances.delete("nb")
    admin.workspaces.set_members(TEAM, [])
    admin.workspaces.delete(TEAM)


def card(page: Page, asset: dict):
    return page.locator(f"#cards .card[data-asset='{asset['id']}']")


def no_script_ran(page: Page):
    assert page.evaluate("window.pwned") is None
    assert page.locator("#detail-description img").count() == 0


def test_the_page_needs_a_signed_in_user(hub):
    r = requests.get(f"{hub.url}/services/workbench/gallery", allow_redirects=False, timeout=30)
    assert r.status_code == 302
    assert "/hub/api/oauth2/authorize" in r.headers["Location"]


def test_another_user_browses_searches_previews_stars_and_uses(hub, assets, browser):  # noqa: F811
    case, model, team = assets["case"], assets["model"], assets["team"]
    with signed_in(browser, hub, OTHER, PASSWORDS[OTHER], height=1400) as page:
        page.goto(f"{hub.url}/hub/home")
        page.click("#gallery-link")
        expect(page.locator("h1")).to_have_text("Gallery")
        # the cards: title, kind, owner, tags, uses and stars; not the workspace's asset
        expect(card(page, case)).to_be_visible()
        expect(card(page, model)).to_be_visible()
        expect(card(page, team)).to_have_count(0)
        expect(card(page, case).locator(".card-title")).to_have_text("Galpage intro case")
        expect(card(page, case).locator(".kind")).to_have_text("notebook")
        expect(card(page, case).locator(".owner")).to_have_text(f"by {OWNER}")
        expect(card(page, case).locator(".card-tags span")).to_have_text(["intro", "galpage"])
        expect(card(page, model).locator(".stars")).to_have_text("\u2606 0")

        # a text search, then a kind filter, then a tag chip
        page.fill("#search-q", "identity")
        page.click("#search-button")
        expect(card(page, case)).to_have_count(0)
        expect(card(page, model)).to_be_visible()
        page.fill("#search-q", "galpage")
        page.click("#search-button")
        expect(card(page, case)).to_be_visible()
        page.select_option("#kind-filter", "notebook")
        expect(card(page, model)).to_have_count(0)
        expect(card(page, case)).to_be_visible()
        expect(page.locator("#cards .card")).to_have_count(1)
        page.select_option("#kind-filter", "")
        expect(card(page, model)).to_be_visible()
        page.click("#tag-chips .chip[data-tag='onnx']")
        expect(page.locator("#tag-chips .chip[data-tag='onnx']")).to_have_attribute(
            "aria-pressed", "true"
        )
        expect(card(page, case)).to_have_count(0)
        expect(card(page, model)).to_be_visible()
        page.click("#tag-chips .chip[data-tag='onnx']")
        expect(card(page, case)).to_be_visible()

        # the notebook: its description from Markdown, HTML as text; the preview sandboxed
        card(page, case).locator(".card-title").click()
        expect(page.locator("#detail-title")).to_have_text("Galpage intro case")
        description = page.locator("#detail-description")
        expect(description.locator("h3")).to_have_text("Getting started")
        expect(description.locator("strong")).to_have_text("bold")
        expect(description.locator("code")).to_have_text("code")
        expect(description.locator("a[href='https://example.com/docs']")).to_have_text("the docs")
        expect(description.locator("li")).to_have_text(["first point", "second point"])
        expect(description).to_contain_text('<img src=x onerror="window.pwned=1">')
        expect(description).to_contain_text("[trap](javascript:window.pwned=2) & done")
        assert description.locator("a[href^='javascript']").count() == 0
        frame = page.locator("#preview")
        expect(frame).to_have_attribute("sandbox", "")
        expect(frame).to_have_attribute(
            "src", re.compile(rf"/gallery/assets/{case['id']}/versions/1/preview$")
        )
        preview = page.frame_locator("#preview")
        expect(preview.locator("body")).to_contain_text("Galpage preview")
        expect(preview.locator("strong", has_text="read-only")).to_be_visible()
        # no running instance of galpeek's to open it in
        expect(page.locator("#use-no-instance")).to_be_visible()
        expect(page.locator("#owner-box")).to_be_hidden()
        no_script_ran(page)
        shot(page, "gallery-notebook")

        # the model: starred, then used as a new model of galpeek's
        page.goto(f"{hub.url}/services/workbench/gallery#asset={model['id']}")
        expect(page.locator("#detail-title")).to_have_text("Galpage identity model")
        expect(page.locator("#preview-box")).to_be_hidden()
        expect(page.locator("#detail-meta dd[data-fact='model']")).to_have_text(f"{OWNER}/galident")
        expect(page.locator("#detail-meta dd[data-fact='format']")).to_have_text("onnx")
        page.click("#star-toggle")
        expect(page.locator("#star-toggle")).to_have_attribute("aria-pressed", "true")
        expect(page.locator("#detail-stats")).to_have_text("1 star, 0 uses")
        expect(card(page, model).locator(".stars")).to_have_text("\u2605 1")
        expect(page.locator("#use-name")).to_have_value("galident")
        page.fill("#use-name", "peek-ident")
        page.click("#use-submit")
        expect(page.locator("#use-result")).to_contain_text(
            f"Now yours: model {OTHER}/peek-ident version 1"
        )
        expect(page.locator("#use-result a")).to_have_attribute(
            "href", re.compile(rf"/models#{OTHER}/peek-ident$")
        )
        expect(page.locator("#detail-stats")).to_have_text("1 star, 1 use")
        # the name is taken now: the reason shows
        page.click("#use-submit")
        expect(page.locator("#use-error")).to_contain_text("name")
        shot(page, "gallery-model")

        # the workspace's asset answers as if it did not exist
        page.goto(f"{hub.url}/services/workbench/gallery#asset={team['id']}")
        expect(page.locator("#detail-error")).to_have_text(
            f"No gallery asset {team['id']} that you may see."
        )
        expect(page.locator("#use-box")).to_be_hidden()

    peek = hub.client(OTHER, PASSWORDS[OTHER])
    mine = peek.models.get("peek-ident")
    assert mine.latest == 1 and mine.versions[0]["state"] == "ready"
    assert peek.gallery.get(model["id"])["starred"] is True


def test_the_owner_opens_cases_in_instances_edits_and_unpublishes(hub, assets, browser):  # noqa: F811
    case, team = assets["case"], assets["team"]
    owner = hub.client(OWNER, PASSWORDS[OWNER])
    extra = owner.gallery.publish(
        "cases/intro", instance="nb", title="Galpage to edit", tags=["galpage"]
    )
    with signed_in(browser, hub, OWNER, PASSWORDS[OWNER], height=1400) as page:
        page.goto(f"{hub.url}/services/workbench/gallery")
        expect(card(page, team)).to_be_visible()
        expect(card(page, team).locator(".owner")).to_have_text(f"by {OWNER} · workspace {TEAM}")
        page.check("#mine")
        expect(card(page, case)).to_be_visible()
        expect(card(page, extra)).to_be_visible()

        # a notebook case: a link into each running instance, where JupyterLab takes it
        card(page, case).locator(".card-title").click()
        expect(page.locator("#detail-title")).to_have_text("Galpage intro case")
        link = page.locator("#use-instances a.use-instance[data-instance='nb']")
        expect(link).to_have_attribute(
            "href", re.compile(rf"/user/{OWNER}/nb/lab#workbench-gallery={case['id']}$")
        )

        # edited: title, tags and description
        card(page, extra).locator(".card-title").click()
        expect(page.locator("#detail-title")).to_have_text("Galpage to edit")
        expect(page.locator("#owner-box")).to_be_visible()
        page.fill("#edit-title", "Galpage edited")
        page.fill("#edit-tags", "galpage, Revised")
        page.fill("#edit-description", "Now *short*.")
        page.click("#edit-save")
        expect(page.locator("#edit-result")).to_have_text("Saved.")
        expect(page.locator("#detail-title")).to_have_text("Galpage edited")
        expect(page.locator("#detail-description em")).to_have_text("short")
        expect(card(page, extra).locator(".card-tags span")).to_have_text(["galpage", "revised"])
        expect(card(page, extra).locator(".card-title")).to_have_text("Galpage edited")

        # unpublished after a confirmation
        page.once("dialog", lambda dialog: dialog.accept())
        page.click("#unpublish")
        expect(card(page, extra)).to_have_count(0)
        expect(page.locator("#detail")).to_be_hidden()
        expect(card(page, case)).to_be_visible()
    with pytest.raises(WorkbenchError) as e:
        owner.gallery.get(extra["id"])
    assert e.value.status == 404
