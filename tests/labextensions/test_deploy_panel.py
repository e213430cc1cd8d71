"""The Deploy panel in JupyterLab, in headless Chromium, against the session hub.

A real instance of user "dplpanel" runs the python image with the panel's extension. A real
training job (pytorch image) fits a scikit-learn classifier on the iris data and writes it to
its output. From the panel: the job's output is registered as a model (a refusal first, with
the platform's message), deployed as a service (real serving containers running kserve), called
from the form (v1 and v2, then a wrong shape answered 400 with the reason) and its request and
latency charts drawn with data. Then a folder of the instance's storage is registered from the
file browser's context menu as version 2, tried as a canary, its traffic share changed with the
slider, promoted, and the service stopped. Screenshots go to artifacts/screenshots/deploy-*.png.
Needs Chromium at /usr/bin/chromium (or $WORKBENCH_CHROMIUM): a missing browser fails, it never
skips.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time

import pytest
from playwright.sync_api import Page, expect
from workbench import WorkbenchError

from tests.hub.test_browser import CHROMIUM_ARGS, LAB_TIMEOUT_MS, SCREENSHOTS, browser
from tests.labextensions.lab import lab_page
from tests.training_bridge.jobs_helpers import archive, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.browser]

USER = "dplpanel"
NAME = "deploy-nb"
JOB = "iris-train"
MODEL = "iris"
SERVICE = "iris"  # the deploy form's default: the model's name
FOLDER = "iris-v2"  # a folder of the instance's storage, registered as version 2
API_MODEL = "iris-api"  # the model deployed through the API when the panel deployed none
# registering copies and hashes the files; a deployment starts a kserve container (imports
# kserve, sklearn and numpy) on a shared machine
REGISTER_TIMEOUT_MS = 180_000
READY_TIMEOUT_MS = 240_000
CALL_TIMEOUT_MS = 60_000

__all__ = ["browser", "CHROMIUM_ARGS"]

TRAIN = """\
import os
import pathlib

import joblib
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

x, y = load_iris(return_X_y=True)
model = LogisticRegression(max_iter=1000).fit(x, y)
print(f"workbench-metric name=accuracy value={model.score(x, y):.4f} step=0", flush=True)
out = pathlib.Path(os.environ["WORKBENCH_OUTPUT_DIR"]) / "model"
out.mkdir(parents=True, exist_ok=True)
joblib.dump(model, out / "model.joblib")
print("saved", out / "model.joblib", flush=True)
"""
SETOSA = [5.1, 3.5, 1.4, 0.2]  # class 0
VIRGINICA = [6.7, 3.0, 5.2, 2.3]  # class 2


def shot(page: Page, name: str):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"deploy-{name}.png"))


def quietly(call, *args):
    try:
        call(*args)
    except WorkbenchError as e:
        print(f"cleanup: {e}")


@pytest.fixture(scope="module")
def dpl(hub):
    """dplpanel with a running instance and a succeeded job whose output holds the model;
    services, models, the job and the instance are deleted after."""
    client = hub.add_user(USER)
    body = {"name": NAME, "image": "python", "flavor": "cpu.small", "storage_gib": 1}
    client.api("POST", f"users/{USER}/instances", body)
    job = {
        "name": JOB,
        "source": {"kind": "file", "entry": "train.py", "archive": archive({"train.py": TRAIN})},
        "image": "pytorch",
        "flavor": "cpu.small",
    }
    client.api("POST", "jobs", job)
    deadline = time.monotonic() + 120
    while client.instance(NAME, USER)["state"] != "running":
        assert time.monotonic() < deadline, client.instance(NAME, USER)
        time.sleep(1)
    finished = wait_for(client, USER, JOB, 1, timeout=300)
    assert finished["state"] == "succeeded", finished
    yield client
    for service in client.api("GET", "services"):
        if service["owner"] == USER:
            quietly(client.api, "DELETE", f"services/{USER}/{service['name']}")
    for model in client.api("GET", "models"):
        if model["owner"] == USER:
            quietly(client.api, "DELETE", f"models/{USER}/{model['name']}")
    quietly(client.api, "DELETE", f"jobs/{USER}/{JOB}")
    if client.instance(NAME, USER)["state"] != "stopped":
        client.stop_instance(NAME, USER)
    client.delete_instance(NAME, USER)


@pytest.fixture(scope="module")
def page(hub, dpl, browser):
    with lab_page(browser, hub, USER, height=1100) as page:
        yield page


def open_deploy_panel(page: Page):
    panel = page.locator("#jp-workbench-deploy")
    if not panel.is_visible():
        page.locator("li.lm-TabBar-tab[data-id='jp-workbench-deploy']").click()
    expect(panel).to_be_visible()
    return panel


def service_view(page: Page, name: str = SERVICE):
    return page.locator(f".jp-WorkbenchDeploy-service[data-service='{USER}/{name}']")


@pytest.fixture(scope="module")
def state():
    """What the tests of this module pass on: the model and service the panel made."""
    return {}


@pytest.fixture
def deployed(dpl, state):
    """A model of one version from the job's output, deployed as a service of its name on
    cpu.small with one replica running: the panel's, or, where that test has not run (alone,
    another order), the same made through the API under a name of its own, deleted after
    (the panel's test starts with no model at all)."""
    if "model" in state:
        yield state
        return
    body = {
        "name": API_MODEL,
        "format": "sklearn",
        "source": {"kind": "job", "job": JOB, "path": "output/model"},
    }
    dpl.api("POST", "models", body)
    predictor = {"model": API_MODEL, "version": 1, "weight": 100, "flavor": "cpu.small"}
    try:
        deadline = time.monotonic() + REGISTER_TIMEOUT_MS / 1000
        while dpl.api("GET", f"models/{USER}/{API_MODEL}/versions/1")["state"] != "ready":
            assert time.monotonic() < deadline, "the model's files were not copied in time"
            time.sleep(1)
        dpl.api("POST", "services", {"name": API_MODEL, "predictors": [predictor]})
        deadline = time.monotonic() + READY_TIMEOUT_MS / 1000
        while (service := dpl.api("GET", f"services/{USER}/{API_MODEL}"))["state"] != "running":
            assert time.monotonic() < deadline, service
            time.sleep(1)
        yield {"model": API_MODEL, "service": API_MODEL}
    finally:
        quietly(dpl.api, "DELETE", f"services/{USER}/{API_MODEL}")
        quietly(dpl.api, "DELETE", f"models/{USER}/{API_MODEL}")


def call(view, path: str, request: dict | None, status: int) -> dict:
    """Send a request from the view's call form; the answer's JSON once it has `status`."""
    view.locator("select[name='call_path']").select_option(path)
    if request is not None:
        view.locator("textarea[name='request']").fill(json.dumps(request))
    answer = view.locator("pre.jp-WorkbenchDeploy-answer")
    # the click hides the last answer and says "Calling…" before anything is sent
    view.locator("button[data-action='call']").click()
    expect(view.locator("[data-field='call-status']")).to_contain_text(
        f"HTTP {status}", timeout=CALL_TIMEOUT_MS
    )
    expect(answer).to_have_attribute("data-status", str(status))
    return json.loads(answer.inner_text())


def test_register_a_job_output_deploy_it_call_it_and_chart_its_metrics(hub, dpl, page, state):
    page.goto(f"{hub.url}/user/{USER}/{NAME}/lab")
    expect(page.locator("#jp-main-dock-panel")).to_be_visible(timeout=LAB_TIMEOUT_MS)
    panel = open_deploy_panel(page)
    expect(panel.locator("[data-empty='models']")).to_be_visible(timeout=CALL_TIMEOUT_MS)

    # the register form lists the job's succeeded version
    panel.locator("button[data-action='register']").click()
    form = page.locator(".jp-WorkbenchDeploy-register")
    expect(form).to_be_visible()
    expect(form.locator("select[name='kind']")).to_have_value("job")
    expect(form.locator("select[name='job']")).to_have_value(JOB, timeout=CALL_TIMEOUT_MS)
    expect(form.locator("select[name='job_version']")).to_have_value("1")
    expect(form.locator("input[name='name']")).to_have_value(JOB)
    expect(form.locator("input[name='path']")).to_be_hidden()  # a storage source's field
    form.locator("input[name='name']").fill(MODEL)
    form.locator("select[name='format']").select_option("sklearn")

    # a refusal stays in the form with the platform's message; nothing is registered
    error = form.locator(".jp-WorkbenchDeploy-error")
    form.locator("input[name='job_path']").fill("code")
    form.locator("button[data-action='register']").click()
    expect(error).to_contain_text("output or checkpoints", timeout=CALL_TIMEOUT_MS)
    with pytest.raises(WorkbenchError) as e:
        dpl.api("GET", f"models/{USER}/{MODEL}")
    assert (e.value.status, e.value.message) == (404, f"No model {MODEL!r} of user {USER!r}.")
    shot(page, "01-register-refused")

    form.locator("input[name='job_path']").fill("output/model")
    form.locator("button[data-action='register']").click()
    view = page.locator(f".jp-WorkbenchDeploy-model[data-model='{USER}/{MODEL}']")
    expect(view).to_be_visible(timeout=REGISTER_TIMEOUT_MS)
    expect(form).to_have_count(0)
    row = view.locator("tr[data-version='1']")
    expect(row.locator("[data-field='state']")).to_have_text("ready")
    expect(row.locator("[data-field='format']")).to_have_text("sklearn")
    expect(row.locator("[data-field='from']")).to_have_text(f"job {JOB} v1")
    expect(row.locator("[data-field='metrics']")).to_have_text(re.compile(r"accuracy=0\.9\d*"))
    version = dpl.api("GET", f"models/{USER}/{MODEL}/versions/1")
    assert version["lineage"] == {"job": JOB, "job_version": 1}
    assert [f["path"] for f in version["files"]] == ["model.joblib"]
    row.locator("summary").click()
    expect(row.locator(".jp-WorkbenchDeploy-file code")).to_have_text(version["files"][0]["sha256"])
    shot(page, "02-model")

    # the sidebar lists the model with its format, lineage and metrics
    panel = open_deploy_panel(page)
    panel.locator("button[data-action='refresh']").click()
    item = panel.locator(f"li[data-model='{USER}/{MODEL}']")
    expect(item.locator("[data-field='format']")).to_have_text("sklearn", timeout=CALL_TIMEOUT_MS)
    expect(item.locator("[data-field='lineage']")).to_have_text(f"from job {JOB} v1")
    expect(item.locator("[data-field='metrics']")).to_contain_text("accuracy=")

    # deploy version 1: the form checks its numbers, then the platform starts a replica
    item.click()
    expect(view).to_be_visible()
    row.locator("button[data-action='deploy']").click()
    deploy = page.locator(".jp-WorkbenchDeploy-deployForm")
    expect(deploy).to_be_visible()
    expect(deploy.locator("input[name='name']")).to_have_value(SERVICE)
    expect(deploy.locator("select[name='flavor'] option[value='cpu.small']")).to_have_count(
        1, timeout=CALL_TIMEOUT_MS
    )
    deploy.locator("select[name='flavor']").select_option("cpu.small")
    deploy.locator("input[name='max_replicas']").fill("0")
    deploy.locator("button[data-action='deploy']").click()
    expect(deploy.locator(".jp-WorkbenchDeploy-error")).to_contain_text("Max replicas")
    deploy.locator("input[name='max_replicas']").fill("1")
    deploy.locator("button[data-action='deploy']").click()

    service = service_view(page)
    expect(service).to_be_visible(timeout=CALL_TIMEOUT_MS)
    expect(deploy).to_have_count(0)
    state.update(model=MODEL, service=SERVICE)
    expect(service.locator("[data-field='state']")).to_have_text(
        "running", timeout=READY_TIMEOUT_MS
    )
    url = dpl.api("GET", f"services/{USER}/{SERVICE}")["url"]
    assert url.endswith(f"/services/workbench/inference/{USER}/{SERVICE}")
    expect(service.locator("tr[data-fact='url'] td")).to_have_text(url)
    predictor = service.locator("tr[data-predictor='iris:1']")
    expect(predictor.locator("[data-field='weight']")).to_have_text("100%")
    expect(predictor.locator("[data-field='replicas']")).to_contain_text("1 ready of 1")
    shot(page, "03-running")

    # call it from the form: v1 and v2 answer with the classes; a wrong shape is a 400
    answer = call(service, f"v1/models/{MODEL}:predict", {"instances": [SETOSA, VIRGINICA]}, 200)
    # one object per instance: the class, and the probabilities of the three classes
    assert [p["predict"] for p in answer["predictions"]] == [0, 2], answer
    assert len(answer["predictions"][0]["predict_proba"]) == 3
    request = {
        "inputs": [
            {"name": "input", "shape": [2, 4], "datatype": "FP64", "data": SETOSA + VIRGINICA}
        ]
    }
    answer = call(service, f"v2/models/{MODEL}/infer", request, 200)
    outputs = {o["name"]: o for o in answer["outputs"]}
    assert outputs["predict"]["data"] == [0, 2], answer
    assert answer["model_name"] == MODEL
    shot(page, "04-called")
    answer = call(service, f"v1/models/{MODEL}:predict", {"instances": [[1.0, 2.0]]}, 400)
    assert answer, "a 400 says why"
    expect(service.locator("[data-field='call-status']")).to_have_attribute("data-kind", "error")

    # the metrics: the charts are drawn with the requests just made
    requests_chart = service.locator(".jp-WorkbenchDeploy-chart[data-metric='requests']")
    expect(requests_chart.locator("canvas")).to_be_visible(timeout=CALL_TIMEOUT_MS)
    expect(requests_chart).to_have_attribute(
        "data-points", re.compile(r"^[1-9]\d*$"), timeout=CALL_TIMEOUT_MS
    )
    latency_chart = service.locator(".jp-WorkbenchDeploy-chart[data-metric='p50 latency']")
    expect(latency_chart.locator("canvas")).to_be_visible()
    expect(latency_chart).to_have_attribute("data-points", re.compile(r"^[1-9]\d*$"))
    expect(service.locator("[data-field='no-metrics']")).to_be_hidden()
    expect(predictor.locator("[data-field='requests']")).to_have_text(
        re.compile(r"^[3-9]\d*$"), timeout=CALL_TIMEOUT_MS
    )
    metrics = dpl.api("GET", f"services/{USER}/{SERVICE}/metrics")
    assert sum(p["requests"] for p in metrics["series"]) >= 3, metrics
    shot(page, "05-metrics")

    # the hub's services page draws the same figures
    hub_page = page.context.new_page()
    hub_page.goto(f"{hub.url}/services/workbench/services#{USER}/{SERVICE}")
    figure = hub_page.locator("#charts .chart[data-metric='requests']")
    expect(figure.locator("svg")).to_be_visible()
    assert int(figure.get_attribute("data-points")) >= 1
    counts = hub_page.locator("#metrics-table tr[data-predictor='iris:1'] td")
    expect(counts.nth(1)).to_have_text(re.compile(r"^[3-9]\d*$"))
    hub_page.screenshot(path=str(SCREENSHOTS / "deploy-05b-services-page.png"), full_page=True)
    hub_page.close()

    # the sidebar lists the service with its state, URL and traffic
    panel = open_deploy_panel(page)
    panel.locator("button[data-action='refresh']").click()
    item = panel.locator(f"li[data-service='{USER}/{SERVICE}']")
    expect(item.locator("[data-field='state']")).to_have_text("running", timeout=CALL_TIMEOUT_MS)
    expect(item.locator("[data-field='url']")).to_have_text(url)
    expect(item.locator("[data-field='predictors']")).to_have_text("iris:1 100% · 1/1 replicas")


def test_register_a_storage_folder_from_the_file_browser_as_a_canary_then_promote(
    hub, dpl, page, deployed
):
    model, name = deployed["model"], deployed["service"]
    # the model's file, put into a folder of the instance's storage
    data = dpl.session.get(
        f"{dpl.api_url}/models/{USER}/{model}/versions/1/files/model.joblib", timeout=60
    ).content
    contents = f"{hub.url}/user/{USER}/{NAME}/api/contents"
    r = dpl.session.put(f"{contents}/{FOLDER}", json={"type": "directory"})
    assert r.status_code in (200, 201), r.text[:300]
    body = {"type": "file", "format": "base64", "content": base64.b64encode(data).decode()}
    r = dpl.session.put(f"{contents}/{FOLDER}/model.joblib", json=body)
    assert r.status_code in (200, 201), r.text[:300]

    # the file browser's context menu on the folder: "Register as Model…"
    if not page.locator("#jp-main-dock-panel").is_visible():
        page.goto(f"{hub.url}/user/{USER}/{NAME}/lab")
        expect(page.locator("#jp-main-dock-panel")).to_be_visible(timeout=LAB_TIMEOUT_MS)
    browser_panel = page.locator("#filebrowser")
    # its tab toggles it (a fresh JupyterLab shows it already): click until it shows
    for _ in range(4):
        if browser_panel.is_visible():
            break
        page.locator("li.lm-TabBar-tab[data-id='filebrowser']").click()
        page.wait_for_timeout(1000)
    expect(browser_panel).to_be_visible()
    browser_panel.locator("[data-command='filebrowser:refresh']").first.click()
    folder = browser_panel.locator(".jp-DirListing-item", has_text=FOLDER)
    expect(folder).to_be_visible(timeout=CALL_TIMEOUT_MS)
    folder.click(button="right")
    page.locator(".lm-Menu-itemLabel", has_text="Register as Model…").click()
    form = page.locator(".jp-WorkbenchDeploy-register")
    expect(form).to_be_visible()
    expect(form.locator("select[name='kind']")).to_have_value("storage")
    expect(form.locator("input[name='path']")).to_have_value(FOLDER)
    expect(form.locator("input[name='name']")).to_have_value(FOLDER)
    expect(form.locator("select[name='job']")).to_be_hidden()
    # outside the server's folder: the server extension refuses
    form.locator("input[name='path']").fill("../../etc")
    form.locator("input[name='name']").fill(model)
    form.locator("select[name='format']").select_option("sklearn")
    form.locator("button[data-action='register']").click()
    expect(form.locator(".jp-WorkbenchDeploy-error")).to_contain_text(
        "outside this server's folder", timeout=CALL_TIMEOUT_MS
    )
    form.locator("input[name='path']").fill(FOLDER)
    expect(form.locator(".jp-WorkbenchDeploy-hint")).to_contain_text(f"version 2 of {USER}/{model}")
    form.locator("button[data-action='register']").click()
    # a short container copies the folder from the storage: then the model's view shows
    view = page.locator(f".jp-WorkbenchDeploy-model[data-model='{USER}/{model}']")
    expect(view).to_be_visible(timeout=REGISTER_TIMEOUT_MS)
    expect(form).to_have_count(0)
    row = view.locator("tr[data-version='2']")
    expect(row.locator("[data-field='state']")).to_have_text("ready", timeout=REGISTER_TIMEOUT_MS)
    expect(row.locator("[data-field='from']")).to_have_text(f"files {NAME}:{FOLDER}")
    version = dpl.api("GET", f"models/{USER}/{model}/versions/2")
    assert version["source"] == {"kind": "storage", "instance": NAME, "path": FOLDER}
    assert version["files"][0]["sha256"] == hashlib.sha256(data).hexdigest()
    shot(page, "06-registered-from-files")

    # version 2 as a canary with 30 % of the requests
    tab = page.locator(f"li.lm-TabBar-tab[data-id='jp-workbench-service-{USER}-{name}-tab']")
    if tab.count():
        tab.click()
    else:  # not opened in this page yet: from the panel's list
        panel = open_deploy_panel(page)
        panel.locator("button[data-action='refresh']").click()
        item = panel.locator(f"li[data-service='{USER}/{name}']")
        expect(item).to_be_visible(timeout=CALL_TIMEOUT_MS)
        item.click()
    service = service_view(page, name)
    expect(service).to_be_visible(timeout=CALL_TIMEOUT_MS)
    service.locator("button[data-action='refresh']").click()
    new_canary = service.locator(".jp-WorkbenchDeploy-newCanary")
    expect(new_canary).to_be_visible(timeout=CALL_TIMEOUT_MS)
    expect(new_canary.locator("select[name='canary_version']")).to_have_value("2")
    new_canary.locator("input[name='canary_weight']").fill("30")
    new_canary.locator("button[data-action='canary']").click()
    canary = service.locator(f"tr[data-predictor='{model}:2']")
    expect(canary.locator("[data-field='weight']")).to_have_text("30%", timeout=CALL_TIMEOUT_MS)
    expect(service.locator(f"tr[data-predictor='{model}:1'] [data-field='weight']")).to_have_text(
        "70%"
    )
    expect(canary.locator("[data-field='model']")).to_have_text(f"{model}:2 (canary)")
    expect(canary.locator("[data-field='replicas']")).to_contain_text(
        "1 ready of 1", timeout=READY_TIMEOUT_MS
    )
    slider = service.locator(".jp-WorkbenchDeploy-canary")
    expect(slider).to_be_visible()
    expect(slider.locator("input[name='canary']")).to_have_value("30")
    shot(page, "07-canary")

    # the slider: half the requests to the canary
    slider.locator("input[name='canary']").fill("50")
    expect(slider.locator("[data-field='split']")).to_have_text(f"{model}:1 50% · {model}:2 50%")
    slider.locator("button[data-action='weights']").click()
    expect(canary.locator("[data-field='weight']")).to_have_text("50%", timeout=CALL_TIMEOUT_MS)
    weights = [p["weight"] for p in dpl.api("GET", f"services/{USER}/{name}")["predictors"]]
    assert weights == [50, 50]
    answer = call(service, f"v1/models/{model}:predict", {"instances": [SETOSA]}, 200)
    assert answer["predictions"][0]["predict"] == 0, answer

    # promote: the canary takes all the traffic, the old predictor goes
    service.locator("button[data-action='promote']").click()
    expect(service.locator(f"tr[data-predictor='{model}:1']")).to_have_count(
        0, timeout=CALL_TIMEOUT_MS
    )
    expect(canary.locator("[data-field='weight']")).to_have_text("100%")
    expect(slider).to_be_hidden()
    predictors = dpl.api("GET", f"services/{USER}/{name}")["predictors"]
    assert [(p["version"], p["weight"]) for p in predictors] == [(2, 100)]
    shot(page, "08-promoted")

    # stop it from the view
    service.locator("button[data-action='stop']").click()
    expect(service.locator("[data-field='state']")).to_have_text("stopped", timeout=90_000)
    expect(service.locator("button[data-action='start']")).to_be_enabled()
    assert dpl.api("GET", f"services/{USER}/{name}")["state"] == "stopped"
    shot(page, "09-stopped")
