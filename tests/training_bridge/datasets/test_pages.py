"""The hub's Datasets page in headless Chromium, against the session hub.

"dspages" makes a text-classification dataset with a description made of HTML, uploads three
texts, labels two, publishes a version and opens a labelling task. The page lists the dataset
with its sample count and labelled share; its detail shows the statistics, the count per
label, the version with its manifest's SHA-256 and the task with the member's progress.
Another user ("dspeek") sees none of it. Values are shown as text, never run as HTML.
Needs Chromium at /usr/bin/chromium (or $WORKBENCH_CHROMIUM): a missing browser fails.
"""

from __future__ import annotations

import json
import re
import secrets

import pytest
import requests
from playwright.sync_api import Page, expect
from workbench import WorkbenchError

import training_bridge.datasets.pages
from hub.service.pages import SHARED
from spawner.templating import render_template
from tests.hub.test_browser import (  # noqa: F401 - browser is the shared fixture
    browser,
    shot,
    signed_in,
)

from .data_helpers import zip_of

pytestmark = [pytest.mark.integration, pytest.mark.browser]

USER = "dspages"
OTHER = "dspeek"
PASSWORD = "pw-" + secrets.token_hex(8)
NAME = "reviews"
HOSTILE = '<img src=x onerror="window.pwned=1"><b>bold</b> & done'
TEXTS = {"a.txt": b"great phone", "b.txt": b"broke in a day", "c.txt": b"fine"}


def test_the_page_keeps_its_config_as_text():
    config = {
        "user": "</script><script>alert(1)</script>",
        "api": "/services/workbench/api",
        "xsrf": "x",
        "datasets_page": "/services/workbench/datasets",
        "jobs_page": "/services/workbench/jobs",
        "models_page": "/services/workbench/models",
        "hub_home": "/hub/home",
    }
    text = render_template(
        training_bridge.datasets.pages.__file__, "datasets.html", shared=SHARED, config=config
    )
    assert "<script>alert(1)" not in text
    assert json.loads(re.search(r"var config = (.*);\n", text).group(1)) == config


@pytest.fixture(scope="module")
def owner(hub):
    """dspages with a dataset of three texts, two labelled, a version and a task."""
    client = hub.add_user(USER, PASSWORD)
    base = f"datasets/{USER}/{NAME}"
    body = {"name": NAME, "type": "text_classification", "labels": ["good", "bad"]}
    client.api("POST", "datasets", body | {"description": HOSTILE})
    r = client.session.post(
        f"{client.api_url}/{base}/samples",
        data=zip_of(TEXTS),
        headers={"Content-Type": "application/zip"},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    rows = {s["key"]: s for s in client.api("GET", f"{base}/samples")["samples"]}
    for key, label in (("a.txt", "good"), ("b.txt", "bad")):
        answer = {"annotations": [{"label": label}]}
        client.api("PUT", f"{base}/samples/{rows[key]['id']}/annotations", answer)
    client.api("POST", f"{base}/versions", {"description": "first"})
    task = {"name": "pass-1", "labellers": [USER], "reviewers": [USER]}
    client.api("POST", f"{base}/tasks", task)
    yield client
    try:
        client.api("DELETE", base)
    except WorkbenchError as e:
        print(f"cleanup of {base}: {e}")


def no_script_ran(page: Page):
    assert page.evaluate("window.pwned") is None
    assert page.locator("img").count() == 0
    assert page.locator("b", has_text="bold").count() == 0


def test_the_page_needs_a_signed_in_user(hub):
    r = requests.get(f"{hub.url}/services/workbench/datasets", allow_redirects=False, timeout=30)
    assert r.status_code == 302
    assert "/hub/api/oauth2/authorize" in r.headers["Location"]


def test_datasets_page_shows_stats_versions_and_tasks(hub, owner, browser):  # noqa: F811
    dataset = owner.api("GET", f"datasets/{USER}/{NAME}")
    [version] = dataset["versions"]
    full = owner.api("GET", f"datasets/{USER}/{NAME}/versions/{version['version']}")
    with signed_in(browser, hub, USER, PASSWORD, height=1400) as page:
        page.goto(f"{hub.url}/hub/home")
        page.click("#datasets-link")
        expect(page.locator("h1")).to_have_text("Datasets")
        row = page.locator(f"#datasets tr[data-dataset='{USER}/{NAME}']")
        expect(row).to_be_visible()
        expect(row.locator(".dataset-name .muted")).to_have_text(HOSTILE)
        expect(row.locator(".dataset-type")).to_have_text("text classification")
        expect(row.locator(".dataset-samples")).to_have_text("3")
        expect(row.locator(".dataset-labelled")).to_contain_text("67 %")
        no_script_ran(page)

        row.locator("a.dataset-link").click()
        expect(page.locator("#dataset-detail")).to_be_visible()
        expect(page.locator("#dataset-title")).to_have_text(f"{USER}/{NAME}")
        expect(page.locator("#dataset-info")).to_contain_text(HOSTILE)
        expect(page.locator("#dataset-stats dd[data-stat='labelled']")).to_have_text("2")
        expect(page.locator("#dataset-stats dd[data-stat='unlabelled']")).to_have_text("1")
        labels = page.locator("#labels tr.label-row")
        expect(labels).to_have_count(2)
        expect(labels.nth(0)).to_contain_text("good")
        expect(labels.nth(0).locator("td").nth(2)).to_have_text("1")
        v1 = page.locator("#versions tr.version-row")
        expect(v1).to_have_count(1)
        expect(v1).to_contain_text(full["manifest_sha256"])
        expect(v1.locator("td").nth(2)).to_have_text("3")
        expect(v1.locator("td").nth(3)).to_have_text("2")
        task = page.locator("#tasks tr.task-row")
        expect(task).to_have_count(1)
        expect(task.locator("td").nth(0)).to_have_text("pass-1")
        expect(task.locator("td").nth(1)).to_have_text(USER)
        no_script_ran(page)
        shot(page, "datasets-page")


def test_another_user_sees_none_of_it(hub, owner, browser):  # noqa: F811
    password = "pw-" + secrets.token_hex(8)
    hub.add_user(OTHER, password)
    with signed_in(browser, hub, OTHER, password) as page:
        page.goto(f"{hub.url}/services/workbench/datasets")
        expect(page.locator("#no-datasets")).to_be_visible()
        expect(page.locator(f"#datasets tr[data-dataset='{USER}/{NAME}']")).to_have_count(0)
        page.goto(f"{hub.url}/services/workbench/datasets#{USER}/{NAME}")
        expect(page.locator("#detail-error")).to_contain_text("Cannot show dataset")
