"""The hub's Models and Services pages in headless Chromium, against the session hub.

"dplpages" registers a model from a real job's output and deploys it as a service that starts
no replica (min_replicas 0), both with a description made of HTML. The models page lists the
model with its versions, lineage (a link to the job's page), metrics and files with their
SHA-256s; the services page lists the service with its URL, traffic split and replica counts,
creates an access key shown once and deletes it, and shows its metrics. Another user
("dplother") sees none of it. Names and descriptions are shown as text, never run as HTML.
Needs Chromium at /usr/bin/chromium (or $WORKBENCH_CHROMIUM): a missing browser fails.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets

import pytest
import requests
from playwright.sync_api import Page, expect
from workbench import WorkbenchError

import inference_bridge.pages
from hub.service.pages import SHARED
from spawner.templating import render_template
from tests.hub.test_browser import (  # noqa: F401 - browser is the shared fixture
    browser,
    shot,
    signed_in,
)
from tests.training_bridge.jobs_helpers import archive, submit, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.browser]

USER = "dplpages"
OTHER = "dplother"
PASSWORD = "pw-" + secrets.token_hex(8)
JOB = "dpl-train"
MODEL = "dpl-net"
SERVICE = "dpl-svc"
ONNX = b"\x08\x07onnx-bytes" * 64
# a description that would run script if the page put it in as HTML
HOSTILE = '<img src=x onerror="window.pwned=1"><b>bold</b> & done'
TRAIN = f"""\
import os
out = os.path.join(os.environ["WORKBENCH_OUTPUT_DIR"], "model")
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, "model.onnx"), "wb") as f:
    f.write({ONNX!r})
print("workbench-metric name=accuracy value=0.93 step=0", flush=True)
"""
PAGE_CONFIG = {
    "api": "/services/workbench/api",
    "xsrf": "x",
    "models_page": "/services/workbench/models",
    "services_page": "/services/workbench/services",
    "jobs_page": "/services/workbench/jobs",
    "hub_home": "/hub/home",
}


@pytest.mark.parametrize("template", ["models.html", "services.html"])
def test_the_pages_keep_their_config_as_text(template):
    config = {**PAGE_CONFIG, "user": "</script><script>alert(1)</script>"}
    text = render_template(inference_bridge.pages.__file__, template, shared=SHARED, config=config)
    assert "<script>alert(1)" not in text
    found = re.search(r"var config = (.*);\n", text).group(1)
    assert json.loads(found) == config


@pytest.fixture(scope="module")
def owner(hub):
    """dplpages with a model (from a succeeded job) and a service of it without replicas;
    all deleted after."""
    client = hub.add_user(USER, PASSWORD)
    source = {"kind": "file", "entry": "train.py", "archive": archive({"train.py": TRAIN})}
    submit(client, JOB, source)
    finished = wait_for(client, USER, JOB, 1, timeout=240)
    assert finished["state"] == "succeeded", finished
    client.api(
        "POST",
        "models",
        {
            "name": MODEL,
            "description": HOSTILE,
            "format": "onnx",
            "source": {"kind": "job", "job": JOB, "version": 1, "path": "output/model"},
        },
    )
    predictor = {"model": MODEL, "version": 1, "weight": 100, "flavor": "cpu.tiny"}
    predictor |= {"min_replicas": 0, "max_replicas": 1}
    body = {"name": SERVICE, "description": HOSTILE, "predictors": [predictor]}
    client.api("POST", "services", body | {"scale_to_zero_seconds": 300})
    yield client
    for path in (f"services/{USER}/{SERVICE}", f"models/{USER}/{MODEL}", f"jobs/{USER}/{JOB}"):
        try:
            client.api("DELETE", path)
        except WorkbenchError as e:
            print(f"cleanup of {path}: {e}")


@pytest.fixture(scope="module")
def other(hub):
    return hub.add_user(OTHER)


def no_script_ran(page: Page):
    assert page.evaluate("window.pwned") is None
    assert page.locator("img").count() == 0
    assert page.locator("b", has_text="bold").count() == 0


def test_the_pages_need_a_signed_in_user(hub):
    for page in ("models", "services"):
        r = requests.get(f"{hub.url}/services/workbench/{page}", allow_redirects=False, timeout=30)
        assert r.status_code == 302, (page, r.status_code)
        assert "/hub/api/oauth2/authorize" in r.headers["Location"]


def test_models_page_shows_versions_lineage_and_files(hub, owner, browser):  # noqa: F811
    version = owner.api("GET", f"models/{USER}/{MODEL}/versions/1")
    with signed_in(browser, hub, USER, PASSWORD, height=1200) as page:
        page.goto(f"{hub.url}/hub/home")
        page.click("#models-link")
        expect(page.locator("h1")).to_have_text("Models")
        row = page.locator(f"#models tr[data-model='{USER}/{MODEL}']")
        expect(row).to_be_visible()
        expect(row.locator(".model-name .muted")).to_have_text(HOSTILE)
        expect(row.locator(".model-latest")).to_have_text("v1")
        expect(row.locator(".model-format")).to_have_text("onnx")
        no_script_ran(page)

        row.locator("a.model-link").first.click()
        detail = page.locator("#model-detail")
        expect(detail).to_be_visible()
        expect(page.locator("#model-title")).to_have_text(f"{USER}/{MODEL}")
        expect(page.locator("#model-info")).to_contain_text(HOSTILE)
        v1 = page.locator("#versions tr[data-version='1']")
        expect(v1.locator(".version-state")).to_have_text("ready")
        lineage = v1.locator("a.lineage-link")
        expect(lineage).to_have_text(f"job {JOB} v1")
        assert lineage.get_attribute("href").endswith(f"/services/workbench/jobs/{USER}/{JOB}")
        expect(v1.locator(".version-metrics")).to_have_text("accuracy=0.93")
        files = page.locator("#files tr.file-row")
        expect(files).to_have_count(1)
        expect(files.locator(".file-sha256")).to_have_text(hashlib.sha256(ONNX).hexdigest())
        assert version["files"][0]["sha256"] == hashlib.sha256(ONNX).hexdigest()
        href = files.locator("a.download").get_attribute("href")
        assert href.endswith(f"/api/models/{USER}/{MODEL}/versions/1/files/model.onnx")
        shot(page, "models-page")
        download = page.request.get(f"{hub.url}{href}")
        assert download.status == 200 and download.body() == ONNX
        no_script_ran(page)

        # the lineage link leads to the job's page
        lineage.click()
        expect(page.locator("h1")).to_have_text(f"{USER}/{JOB}")


def test_services_page_shows_traffic_replicas_keys_and_metrics(hub, owner, browser):  # noqa: F811
    service = owner.api("GET", f"services/{USER}/{SERVICE}")
    with signed_in(browser, hub, USER, PASSWORD, height=1200) as page:
        page.on("dialog", lambda dialog: dialog.accept())
        page.goto(f"{hub.url}/hub/home")
        page.click("#services-link")
        expect(page.locator("h1")).to_have_text("Services")
        row = page.locator(f"#services tr[data-service='{USER}/{SERVICE}']")
        expect(row).to_be_visible()
        expect(row.locator(".service-name .muted")).to_have_text(HOSTILE)
        expect(row.locator(".service-url")).to_have_text(service["url"])
        expect(row.locator(".service-traffic")).to_have_text(f"{MODEL}:1 100%")
        expect(row.locator(".service-replicas")).to_have_text(f"{MODEL}:1 0/0 ready")
        expect(row.locator(".service-state")).to_contain_text(service["state"])
        no_script_ran(page)

        row.locator("a.service-link").first.click()
        expect(page.locator("#service-detail")).to_be_visible()
        expect(page.locator("#facts dd[data-fact='url']")).to_have_text(service["url"])
        expect(page.locator("#facts dd[data-fact='description']")).to_have_text(HOSTILE)
        predictor = page.locator(f"#predictors tr[data-predictor='{MODEL}:1']")
        expect(predictor.locator(".predictor-weight")).to_have_text("100%")
        expect(predictor.locator(".predictor-replicas")).to_have_text("0 ready of 0 (min 0, max 1)")
        expect(page.locator("#metrics-info")).to_have_text("No requests yet.")
        no_script_ran(page)

        shot(page, "services-page")

        # a key: shown once, listed by its prefix, deleted
        expect(page.locator("#no-keys")).to_be_visible()
        page.fill("#key-name", "ci")
        page.click("#create-key")
        expect(page.locator("#new-key")).to_be_visible()
        key = page.locator("#new-key-value").inner_text()
        assert key.startswith("wbk_"), key
        key_row = page.locator("#keys tr[data-key='ci']")
        expect(key_row.locator(".key-prefix")).to_have_text(key[:8] + "\u2026")
        shot(page, "services-page-key")
        listed = owner.api("GET", f"services/{USER}/{SERVICE}/keys")
        assert [k["name"] for k in listed] == ["ci"] and "key" not in listed[0]
        page.reload()
        expect(key_row).to_be_visible()
        expect(page.locator("#new-key")).to_be_hidden()  # not shown again
        assert key not in page.content()
        key_row.locator("button.delete-key").click()
        expect(key_row).to_have_count(0)
        expect(page.locator("#message")).to_have_text("Key ci deleted.")
        assert owner.api("GET", f"services/{USER}/{SERVICE}/keys") == []


def test_other_users_see_none_of_it(hub, owner, other, browser):  # noqa: F811
    with signed_in(browser, hub, OTHER, hub.passwords[OTHER], height=1000) as page:
        page.goto(f"{hub.url}/services/workbench/models")
        expect(page.locator("#list-info")).to_have_text("0 of 0 models")
        expect(page.locator("#no-models")).to_contain_text("No models yet")
        page.goto(f"{hub.url}/services/workbench/models#{USER}/{MODEL}")
        expect(page.locator("#detail-error")).to_contain_text(f"Cannot show model {USER}/{MODEL}")
        expect(page.locator("#files tr.file-row")).to_have_count(0)

        page.goto(f"{hub.url}/services/workbench/services")
        expect(page.locator("#list-info")).to_have_text("0 of 0 services")
        page.goto(f"{hub.url}/services/workbench/services#{USER}/{SERVICE}")
        expect(page.locator("#message")).to_contain_text(f"Cannot show service {USER}/{SERVICE}")
        expect(page.locator("#new-key-form")).to_be_hidden()
        assert HOSTILE not in page.inner_text("body")
