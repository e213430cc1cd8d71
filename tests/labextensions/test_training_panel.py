"""The Training panel in JupyterLab, in headless Chromium, against the session hub.

A real instance of user "tracy" runs the python image with the panel's extension: a notebook
with a cell tagged `parameters` and a cell printing `workbench-metric` lines is submitted from
the notebook's toolbar; the form is prefilled from the instance and shows the platform's (and
the server extension's) refusals; the job view follows the log while the job runs, draws the
`loss` chart, opens the output folder in the file browser; a re-run with edits runs long and
is stopped from the view. Real job containers. Screenshots go to
artifacts/screenshots/training-*.png. Needs Chromium at /usr/bin/chromium (or
$WORKBENCH_CHROMIUM): a missing browser fails, it never skips.
"""

from __future__ import annotations

import json
import time

import pytest
from playwright.sync_api import Page, expect
from workbench import WorkbenchError

from tests.hub.test_browser import (
    CHROMIUM_ARGS,
    LAB_TIMEOUT_MS,
    SCREENSHOTS,
    browser,
)
from tests.labextensions.lab import lab_page
from tests.training_bridge.jobs_helpers import archive, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.browser]

USER = "tracy"
NAME = "train-nb"
NOTEBOOK = "train.ipynb"
JOB = "train"
API_JOB = "train-api"  # the job submitted through the API when the panel submitted none
# from submission to the first metric line: a container start and IPython on a shared machine
RUN_TIMEOUT_MS = 180_000
STOP_TIMEOUT_MS = 90_000
# what waits on the platform through the instance (a loaded machine answers slowly)
CALL_TIMEOUT_MS = 30_000

__all__ = ["browser", "CHROMIUM_ARGS"]


def shot(page: Page, name: str):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"training-{name}.png"))


def cell(source: str, tags: tuple[str, ...] = ()) -> dict:
    return {
        "cell_type": "code",
        "execution_count": None,
        "metadata": {"tags": list(tags)},
        "outputs": [],
        "source": source,
    }


TRAIN_NOTEBOOK = {
    "cells": [
        cell("steps = 3\ndelay = 0.1", ("parameters",)),
        cell(
            "import time\n"
            "for i in range(steps):\n"
            "    loss = 1.0 / (i + 1)\n"
            '    print(f"workbench-metric name=loss value={loss:.4f} step={i}", flush=True)\n'
            "    time.sleep(delay)\n"
            'print("training done", steps)\n'
        ),
    ],
    "metadata": {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}
    },
    "nbformat": 4,
    "nbformat_minor": 5,
}


@pytest.fixture(scope="module")
def tracy(hub):
    """tracy with a running instance on cpu.small holding the notebook; the jobs, the instance
    are deleted after."""
    client = hub.add_user(USER)
    body = {"name": NAME, "image": "python", "flavor": "cpu.small", "storage_gib": 1}
    client.api("POST", f"users/{USER}/instances", body)
    deadline = time.monotonic() + 120
    while client.instance(NAME, USER)["state"] != "running":
        assert time.monotonic() < deadline, client.instance(NAME, USER)
        time.sleep(1)
    url = f"{hub.url}/user/{USER}/{NAME}/api/contents/{NOTEBOOK}"
    content = {"type": "notebook", "format": "json", "content": TRAIN_NOTEBOOK}
    r = client.session.put(url, json=content)
    assert r.status_code in (200, 201), r.text[:500]
    yield client
    for job in client.api("GET", "jobs"):
        if job["owner"] == USER:
            try:
                client.api("DELETE", f"jobs/{USER}/{job['name']}")
            except WorkbenchError as e:
                print(f"cannot delete job {job['name']}: {e}")
    if client.instance(NAME, USER)["state"] != "stopped":
        client.stop_instance(NAME, USER)
    client.delete_instance(NAME, USER)


@pytest.fixture(scope="module")
def page(hub, tracy, browser):
    with lab_page(browser, hub, USER, height=1000) as page:
        yield page


@pytest.fixture(scope="module")
def state():
    """What the tests of this module pass on: the job the panel submitted."""
    return {}


@pytest.fixture
def first_run(tracy, state) -> str:
    """A job whose version 1 succeeded as the panel's form submits it (12 steps, 2 s apart,
    cpu.tiny, a metric rule of its own): the one the panel submitted, or, where that test has
    not run (alone, another order), the same job submitted through the API under a name of
    its own (the panel's test submits its job from nothing)."""
    if "job" not in state:
        body = {
            "name": API_JOB,
            "source": {
                "kind": "notebook",
                "entry": NOTEBOOK,
                "archive": archive({NOTEBOOK: json.dumps(TRAIN_NOTEBOOK)}),
            },
            "image": "python",
            "flavor": "cpu.tiny",
            "hyperparameters": {"steps": 12, "delay": 2},
            "metrics": [{"name": "done", "regex": r"training done (\d+)"}],
        }
        tracy.api("POST", "jobs", body)
        state["job"] = API_JOB
    model = wait_for(tracy, USER, state["job"], 1, timeout=RUN_TIMEOUT_MS / 1000)
    assert model["state"] == "succeeded", model
    return state["job"]


def version_of(client, v: int, job: str = JOB) -> dict:
    return client.api("GET", f"jobs/{USER}/{job}/versions/{v}")


def open_training_panel(page: Page):
    panel = page.locator("#jp-workbench-training")
    if not panel.is_visible():
        page.locator("li.lm-TabBar-tab[data-id='jp-workbench-training']").click()
    expect(panel).to_be_visible()
    return panel


def test_submit_the_open_notebook_follow_its_log_and_chart_open_its_output(hub, tracy, page, state):
    page.goto(f"{hub.url}/user/{USER}/{NAME}/lab/tree/{NOTEBOOK}")
    notebook = page.locator(".jp-NotebookPanel")
    expect(notebook).to_be_visible(timeout=LAB_TIMEOUT_MS)
    expect(notebook.locator(".jp-Cell")).to_have_count(2, timeout=LAB_TIMEOUT_MS)

    # the notebook's toolbar button opens the form, prefilled from the instance and the file
    notebook.locator("[data-command='workbench:submit-training-job']").click()
    form = page.locator(".jp-WorkbenchTraining-form")
    expect(form).to_be_visible()
    expect(form.locator("input[name='path']")).to_have_value(NOTEBOOK)
    expect(form.locator("input[name='name']")).to_have_value(JOB)
    expect(form.locator("input[name='image']")).to_have_value("python", timeout=CALL_TIMEOUT_MS)
    expect(form.locator("select[name='flavor']")).to_have_value("cpu.small")
    expect(form.locator("input[name='command']")).to_be_disabled()  # a notebook runs its cells
    expect(form.locator(".jp-WorkbenchTraining-hint")).to_contain_text("parameters")
    shot(page, "01-form")

    # refusals stay in the form with their message: the server extension's, the platform's
    error = form.locator(".jp-WorkbenchTraining-error")
    form.locator("input[name='path']").fill("../../etc/passwd")
    form.locator("button[data-action='submit']").click()
    expect(error).to_contain_text("outside this server's folder", timeout=CALL_TIMEOUT_MS)
    form.locator("input[name='path']").fill(NOTEBOOK)
    form.locator("input[name='nodes']").fill("2")
    form.locator("button[data-action='submit']").click()
    expect(error).to_contain_text("runs on one node", timeout=CALL_TIMEOUT_MS)
    shot(page, "02-refused")
    with pytest.raises(WorkbenchError) as e:
        version_of(tracy, 1)  # nothing was submitted
    assert (e.value.status, e.value.message) == (404, f"No job {JOB!r} of user {USER!r}.")

    # submit: 12 steps, 2 s apart, with a small flavor; a metric rule of the form's own
    form.locator("input[name='nodes']").fill("1")
    form.locator("select[name='flavor']").select_option("cpu.tiny")
    form.locator("textarea[name='hyperparameters']").fill("steps=12\ndelay=2")
    form.locator("button[data-action='add-metric']").click()
    form.locator("input[name='metric-name']").fill("done")
    form.locator("input[name='metric-regex']").fill(r"training done (\d+)")
    form.locator("button[data-action='submit']").click()

    view = page.locator(f".jp-WorkbenchTraining-job[data-job='{USER}/{JOB}']")
    expect(view).to_be_visible(timeout=CALL_TIMEOUT_MS)
    expect(form).to_have_count(0)  # the form closed
    state["job"] = JOB
    spec = version_of(tracy, 1)["spec"]
    assert spec["source"] == {"kind": "notebook", "entry": NOTEBOOK}
    assert (spec["image"], spec["flavor"]) == ("python", "cpu.tiny")
    assert spec["hyperparameters"] == {"steps": 12, "delay": 2}
    assert spec["metrics"] == [{"name": "done", "regex": r"training done (\d+)"}]

    # the log follows while the job runs: metric lines appear before the job has ended
    log = view.locator("pre.jp-WorkbenchTraining-log")
    expect(log).to_contain_text(
        "[workbench] ", timeout=CALL_TIMEOUT_MS
    )  # the platform's events, from submission on
    expect(log).to_contain_text("name=loss value=0.5000 step=1", timeout=RUN_TIMEOUT_MS)
    assert version_of(tracy, 1)["state"] == "running"
    assert "training done" not in log.inner_text()
    expect(log).to_have_attribute("data-following", "true")
    expect(view.locator("[data-field='state']")).to_have_text("running")

    # the loss chart is drawn (uPlot's canvas) and grows while the job runs
    chart = view.locator(".jp-WorkbenchTraining-chart[data-metric='loss']")
    expect(chart.locator("canvas")).to_be_visible(timeout=CALL_TIMEOUT_MS)
    expect(chart.locator(".uplot")).to_be_visible()
    first = int(chart.get_attribute("data-points") or "0")
    assert first >= 1
    shot(page, "03-running")

    # the sidebar lists the job with its state
    panel = open_training_panel(page)
    item = panel.locator(f"li[data-job='{USER}/{JOB}']")
    expect(item.locator("[data-field='state']")).to_have_text("running", timeout=CALL_TIMEOUT_MS)

    # to its end: every step in the chart and the log, the form's metric read too
    expect(view.locator("[data-field='state']")).to_have_text("succeeded", timeout=RUN_TIMEOUT_MS)
    expect(log).to_contain_text("training done 12")
    expect(log).to_have_attribute("data-following", "false")
    expect(chart).to_have_attribute("data-points", "12", timeout=CALL_TIMEOUT_MS)
    assert int(chart.get_attribute("data-points")) > first
    expect(view.locator(".jp-WorkbenchTraining-chart[data-metric='done']")).to_be_visible()
    expect(item.locator("[data-field='state']")).to_have_text("succeeded", timeout=CALL_TIMEOUT_MS)
    metrics = tracy.api("GET", f"jobs/{USER}/{JOB}/versions/1/metrics")
    assert [p["step"] for p in metrics["loss"]] == list(range(12))
    shot(page, "04-succeeded")

    # the output folder opens in the file browser: the executed notebook is in it
    view.locator("button[data-action='output']").click()
    browser_panel = page.locator("#filebrowser")
    expect(browser_panel).to_be_visible()
    expect(browser_panel.locator(".jp-BreadCrumbs")).to_contain_text(
        "output", timeout=CALL_TIMEOUT_MS
    )
    expect(browser_panel.locator(".jp-DirListing-item", has_text=NOTEBOOK)).to_be_visible()
    expect(view.locator(".jp-WorkbenchTraining-error")).to_be_hidden()
    shot(page, "05-output")


def test_rerun_with_edits_then_stop_it_from_the_job_view(hub, tracy, page, first_run):
    job = first_run
    if not page.locator("#jp-main-dock-panel").is_visible():
        page.goto(f"{hub.url}/user/{USER}/{NAME}/lab")
        expect(page.locator("#jp-main-dock-panel")).to_be_visible(timeout=LAB_TIMEOUT_MS)
    view = page.locator(f".jp-WorkbenchTraining-job[data-job='{USER}/{job}']")
    tab = page.locator(f"li.lm-TabBar-tab[data-id='jp-workbench-job-{USER}-{job}-tab']")
    if not view.is_visible():
        if tab.count():
            tab.click()
        else:  # not opened in this page yet: from the panel's list
            item = open_training_panel(page).locator(f"li[data-job='{USER}/{job}']")
            expect(item).to_be_visible(timeout=CALL_TIMEOUT_MS)
            item.click()
    expect(view).to_be_visible(timeout=CALL_TIMEOUT_MS)

    # re-run with edits: the form holds version 1's spec
    view.locator("button[data-action='rerun']").click()
    form = page.locator(".jp-WorkbenchTraining-form")
    expect(form).to_be_visible()
    expect(form.locator(".jp-WorkbenchTraining-title")).to_have_text(
        f"Re-run {job} (from version 1)"
    )
    expect(form.locator("input[name='path']")).to_be_hidden()  # the code is version 1's
    expect(form.locator("input[name='name']")).to_have_attribute("readonly", "")
    hyperparameters = form.locator("textarea[name='hyperparameters']")
    expect(hyperparameters).to_have_value("steps=12\ndelay=2", timeout=CALL_TIMEOUT_MS)
    expect(form.locator("select[name='flavor']")).to_have_value("cpu.tiny")
    expect(form.locator("input[name='metric-name']")).to_have_value("done")
    hyperparameters.fill(json.dumps({"steps": 1000, "delay": 1}))
    form.locator("button[data-action='submit']").click()

    # the view shows version 2, which runs long; Stop ends it
    expect(view.locator("select[name='version']")).to_have_value("2", timeout=CALL_TIMEOUT_MS)
    assert version_of(tracy, 2, job)["spec"]["hyperparameters"] == {"steps": 1000, "delay": 1}
    log = view.locator("pre.jp-WorkbenchTraining-log")
    expect(log).to_contain_text("name=loss value=1.0000 step=0", timeout=RUN_TIMEOUT_MS)
    expect(view.locator("[data-field='state']")).to_have_text("running")
    stop = view.locator("button[data-action='stop']")
    expect(stop).to_be_enabled()
    shot(page, "06-rerun-running")
    stop.click()
    expect(view.locator("[data-field='state']")).to_have_text("stopped", timeout=STOP_TIMEOUT_MS)
    expect(stop).to_be_disabled()
    expect(log).to_have_attribute("data-following", "false")
    model = version_of(tracy, 2, job)
    assert model["state"] == "stopped", model
    assert version_of(tracy, 1, job)["state"] == "succeeded"
    # version 1 is still there to look at
    view.locator("select[name='version']").select_option("1")
    expect(view.locator("[data-field='state']")).to_have_text("succeeded", timeout=CALL_TIMEOUT_MS)
    expect(log).to_contain_text("training done 12", timeout=CALL_TIMEOUT_MS)
    shot(page, "07-stopped")
