"""The hub's Jobs pages in headless Chromium: the list with states and reasons, a job's logs
as they come, Stop from the page, and a one-file script submitted through the form that runs
to success with its output downloadable. Real hub, real job containers; needs Chromium at
/usr/bin/chromium (or $WORKBENCH_CHROMIUM): a missing browser fails these tests."""

from __future__ import annotations

import base64
import io
import json
import re
import secrets
import tarfile
import time

import pytest
from playwright.sync_api import Page, expect
from workbench import WorkbenchError

import training_bridge.pages
from spawner.templating import render_template
from tests.hub.test_browser import (  # noqa: F401 - browser is the shared fixture
    browser,
    shot,
    signed_in,
)

pytestmark = [pytest.mark.integration, pytest.mark.browser]

USER = "jobpages"
NEWCOMER = "jobpages-new"  # a user with no jobs
PASSWORD = "pw-" + secrets.token_hex(8)
IMAGE = "python"
FLAVOR = "cpu.tiny"
# a job goes from submission to running in seconds, but the machine may have 2 cores
RUN_TIMEOUT_MS = 180_000

SLEEPER = """\
import time
print("hello from the page test", flush=True)
for step in range(3):
    print(f"step={step} loss={1.0 / (step + 1)}", flush=True)
time.sleep(600)
"""
CRASHER = """\
import sys
print("about to fail", flush=True)
sys.exit(3)
"""
FORM_SCRIPT = """\
import os, sys
print("form job ran with", sys.argv[1:], flush=True)
print("loss=0.25", flush=True)
with open(os.path.join(os.environ["WORKBENCH_OUTPUT_DIR"], "result.txt"), "w") as f:
    f.write("forty-two")
"""


def archive_of(name: str, text: str) -> str:
    """A base64 .tar.gz holding one file."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = text.encode()
        info = tarfile.TarInfo(name)
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))
    return base64.b64encode(buf.getvalue()).decode()


def submit(client, name: str, script: str, **fields) -> dict:
    body = {
        "name": name,
        "source": {"kind": "file", "entry": "train.py", "archive": archive_of("train.py", script)},
        "image": IMAGE,
        "flavor": FLAVOR,
        **fields,
    }
    return client.api("POST", "/jobs", body)


def wait_for_state(client, name: str, states: tuple[str, ...], timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = client.api("GET", f"/jobs/{USER}/{name}")
        if job["state"] in states:
            return job
        assert time.monotonic() < deadline, f"{name} is {job['state']}: {job['reason']}"
        time.sleep(1)


@pytest.fixture(scope="module")
def owner(hub):
    """The user whose jobs the pages show; their jobs are deleted after."""
    client = hub.add_user(USER, PASSWORD)
    yield client
    errors = []
    for job in client.api("GET", "/jobs"):
        if job["owner"] != USER:
            continue
        try:
            client.api("DELETE", f"/jobs/{USER}/{job['name']}")
        except WorkbenchError as e:
            errors.append(f"{job['name']}: {e}")
    assert not errors, f"cleanup failed: {errors}"


@pytest.fixture(scope="module")
def page(hub, owner, browser):  # noqa: F811 - browser is the shared fixture
    with signed_in(browser, hub, USER, PASSWORD, height=1200) as page:
        page.set_default_timeout(30_000)
        yield page


def goto_jobs(page: Page, hub) -> None:
    page.goto(f"{hub.url}/services/workbench/jobs")
    expect(page.locator("h1")).to_have_text("Training jobs")


def test_job_page_keeps_names_from_the_url_as_text():
    hostile = "</script><script>alert(1)</script>"
    config = {"user": "u", "api": "/api", "xsrf": "x", "pages": "/jobs", "hub_home": "/hub/home"}
    config.update(owner=hostile, name="<b>n</b>")
    text = render_template(training_bridge.pages.__file__, "job.html", config=config)
    assert "<script>alert(1)" not in text and "<b>n</b>" not in text
    found = re.search(r"var config = (.*);\n", text).group(1)
    assert json.loads(found) == config


def test_home_page_links_to_the_jobs_page(hub, browser):  # noqa: F811
    # a user of their own: the other tests here give "jobpages" jobs, in any order
    password = "pw-" + secrets.token_hex(8)
    hub.add_user(NEWCOMER, password)
    with signed_in(browser, hub, NEWCOMER, password) as page:
        page.goto(f"{hub.url}/hub/home")
        page.click("#jobs-link")
        page.wait_for_url("**/services/workbench/jobs")
        expect(page.locator("h1")).to_have_text("Training jobs")
        expect(page.locator("#no-jobs")).to_be_visible()
        expect(page.locator("#no-jobs")).to_contain_text("No jobs yet")
        expect(page.locator("#jobs tbody tr")).to_have_count(0)
        expect(page.locator("#list-info")).to_have_text("0 of 0 jobs")


def test_list_logs_and_stop_of_a_job_submitted_through_the_api(hub, owner, page):
    submit(
        owner,
        "sleeper",
        SLEEPER,
        description="sleeps <b>long</b>",
        metrics=[{"name": "loss", "regex": "loss=([0-9.eE+-]+)"}],
    )
    submit(owner, "crasher", CRASHER)
    goto_jobs(page, hub)
    sleeper = page.locator(f"tr[data-job='{USER}/sleeper']")
    crasher = page.locator(f"tr[data-job='{USER}/crasher']")
    expect(sleeper.locator(".job-latest")).to_have_text("1")
    # the description is shown as text, not markup
    expect(sleeper.locator(".job-name")).to_contain_text("sleeps <b>long</b>")
    # the list refreshes itself while jobs are active: the crash shows with its reason
    expect(crasher.locator(".job-state .state")).to_have_text("failed", timeout=RUN_TIMEOUT_MS)
    expect(crasher.locator(".job-state .reason")).to_contain_text("exit code 3 on node 0")
    expect(sleeper.locator(".job-state .state")).to_have_text("running", timeout=RUN_TIMEOUT_MS)
    # the state filter
    page.select_option("#state-filter", "failed")
    expect(page.locator("#jobs tbody tr")).to_have_count(1)
    expect(page.locator("#jobs tbody tr")).to_have_attribute("data-job", f"{USER}/crasher")
    assert page.url.endswith("?state=failed")
    page.select_option("#state-filter", "")
    expect(page.locator("#jobs tbody tr")).to_have_count(2)
    shot(page, "jobs-list")

    # the job's page: its version, its log as it comes, its metric
    sleeper.locator(".job-name a").click()
    page.wait_for_url(f"**/services/workbench/jobs/{USER}/sleeper")
    expect(page.locator("#job-title")).to_have_text(f"{USER}/sleeper")
    row = page.locator("#versions tr[data-version='1']")
    expect(row.locator(".version-state .state")).to_have_text("running")
    logs = page.locator("#log-text")
    expect(logs).to_contain_text("[workbench] ")
    expect(logs).to_contain_text("hello from the page test")
    expect(logs).to_contain_text("step=2 loss=0.3333")
    expect(page.locator("#log-status")).to_have_text("following\u2026")
    expect(page.locator("#metrics-table tr[data-metric='loss']")).to_contain_text("0.3333")
    expect(page.locator(".metric[data-metric='loss'] svg polyline")).to_have_count(1)
    shot(page, "job-running")

    # Stop, from the page: the version ends as stopped, the log stream ends with it
    page.click("#stop")
    expect(row.locator(".version-state .state")).to_have_text("stopped", timeout=RUN_TIMEOUT_MS)
    expect(row.locator(".version-state .reason")).to_have_text("stopped by the user")
    expect(page.locator("#log-status")).to_have_text("end of log (stopped)")
    expect(page.locator("#stop")).to_be_disabled()
    assert owner.api("GET", f"/jobs/{USER}/sleeper/versions/1")["state"] == "stopped"
    shot(page, "job-stopped")

    # the crashed job's page: its reason and its whole log
    page.goto(f"{hub.url}/services/workbench/jobs/{USER}/crasher")
    expect(page.locator("#versions .version-state .reason")).to_have_text("exit code 3 on node 0")
    expect(page.locator("#log-text")).to_contain_text("about to fail")
    expect(page.locator("#log-status")).to_have_text("end of log (failed)")

    goto_jobs(page, hub)
    expect(sleeper.locator(".job-state .state")).to_have_text("stopped")
    expect(sleeper.locator(".job-state .reason")).to_have_text("stopped by the user")


def test_submit_a_script_through_the_form(hub, owner, page, tmp_path):
    goto_jobs(page, hub)
    # GET /images asks the engine which images are built: slow on a busy machine
    expect(page.locator(f"#job-image option[value='{IMAGE}']")).to_have_count(1, timeout=60_000)
    expect(page.locator(f"#job-flavor option[value='{FLAVOR}']")).to_have_count(1)
    script = tmp_path / "train.py"
    script.write_text(FORM_SCRIPT)
    page.fill("#job-name", "from-form")
    page.fill("#job-description", "made in the browser")
    page.set_input_files("#job-file", str(script))
    page.select_option("#job-image", IMAGE)
    page.select_option("#job-flavor", FLAVOR)
    page.fill("#job-hyperparameters", "epochs=2\nlr=0.5")
    page.fill("#job-metrics", "loss=loss=([0-9.]+)")
    shot(page, "jobs-form")
    page.click("#submit-button")
    # a submission asks the engine whether the image is built: slow on a busy machine
    expect(page.locator("#submit-result")).to_contain_text("Submitted from-form", timeout=60_000)
    expect(page.locator("#submitted-link")).to_have_attribute(
        "href", f"/services/workbench/jobs/{USER}/from-form"
    )
    expect(page.locator(f"tr[data-job='{USER}/from-form']")).to_have_count(1)
    spec = owner.api("GET", f"/jobs/{USER}/from-form/versions/1")["spec"]
    assert spec["source"] == {"kind": "file", "entry": "train.py"}
    assert spec["hyperparameters"] == {"epochs": 2, "lr": 0.5}
    assert (spec["image"], spec["flavor"]) == (IMAGE, FLAVOR)

    # the API's refusal is shown with its message: the name is taken now
    page.set_input_files("#job-file", str(script))
    page.fill("#job-name", "from-form")
    page.click("#submit-button")
    expect(page.locator("#submit-result")).to_contain_text(
        "already have a job named 'from-form'", timeout=60_000
    )

    page.goto(f"{hub.url}/services/workbench/jobs/{USER}/from-form")
    row = page.locator("#versions tr[data-version='1']")
    expect(row.locator(".version-state .state")).to_have_text("succeeded", timeout=RUN_TIMEOUT_MS)
    ran = "form job ran with ['--epochs', '2', '--lr', '0.5']"
    expect(page.locator("#log-text")).to_contain_text(ran)
    expect(page.locator("#metrics-table tr[data-metric='loss']")).to_contain_text("0.25")
    result = page.locator("#files .file-row[data-path='output/result.txt']")
    expect(result).to_be_visible()
    href = result.locator("a.download").get_attribute("href")
    answer = page.request.get(hub.url + href)
    assert answer.status == 200 and answer.text() == "forty-two"
    shot(page, "job-succeeded")

    # Delete, from the page: back to the list, the job is gone
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#delete-job")
    page.wait_for_url(re.compile(r"/services/workbench/jobs$"))
    expect(page.locator(f"tr[data-job='{USER}/from-form']")).to_have_count(0)
    with pytest.raises(WorkbenchError) as e:
        owner.api("GET", f"/jobs/{USER}/from-form")
    assert e.value.status == 404
