"""Experiments in the Training panel, in headless Chromium, against the session hub.

A real instance of user "xpanel" runs the python image with the panel's extension and holds
job_quadratic.py (loss falls towards (x - 0.3)^2 + (log10(lr) + 2)^2, + 0.5 unless opt is
adam). A search of 4 trials, 2 at once, is started from the panel's Search form; its view
shows the trials' states as they run, the objective and parameters of each, the best
marked, and charts. Two runs are compared from the panel (the table's values are the API's,
a differing parameter marked); "Use best parameters" makes a new version with the best
trial's parameters; TensorBoard opens in a tab over the compared runs; a long search is
stopped from its view. The instance's relay refuses bad requests with what to do. Real job
containers. Screenshots go to artifacts/screenshots/experiments-*.png. Needs Chromium at
/usr/bin/chromium (or $WORKBENCH_CHROMIUM): a missing browser fails, it never skips.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from workbench import WorkbenchError

from tests.hub.test_browser import CHROMIUM_ARGS, LAB_TIMEOUT_MS, SCREENSHOTS, browser
from tests.labextensions.lab import lab_page
from tests.training_bridge.jobs_helpers import archive

pytestmark = [pytest.mark.integration, pytest.mark.browser]

USER = "xpanel"
NAME = "xp-nb"
SCRIPT = "job_quadratic.py"
JOB = "job-quadratic"  # the form's default name for the script
API_JOB = "xp-searched"  # the job of the search made through the API when the panel made none
SLOW_JOB = "xp-slow"
SOURCE = Path(__file__).parents[1] / "training_bridge" / "experiments" / SCRIPT
# each trial runs about 4 s: longer than the view's refresh, so a running trial is seen
FIXED = {"steps": 4, "sleep": 1}
# 4 trials, 2 at once, each a job container: a loaded 2-core machine takes minutes
SEARCH_TIMEOUT_MS = 600_000
RUN_TIMEOUT_MS = 180_000
# what waits on the platform through the instance (a loaded machine answers slowly)
CALL_TIMEOUT_MS = 30_000
TENSORBOARD_TIMEOUT_MS = 150_000

__all__ = ["browser", "CHROMIUM_ARGS"]


def shot(page: Page, name: str):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"experiments-{name}.png"))


@pytest.fixture(scope="module")
def xpanel(hub):
    """xpanel with a running instance on cpu.small holding the trial script; the searches,
    the jobs, the instance are deleted after."""
    client = hub.add_user(USER)
    body = {"name": NAME, "image": "python", "flavor": "cpu.small", "storage_gib": 1}
    client.api("POST", f"users/{USER}/instances", body)
    deadline = time.monotonic() + 120
    while client.instance(NAME, USER)["state"] != "running":
        assert time.monotonic() < deadline, client.instance(NAME, USER)
        time.sleep(1)
    url = f"{hub.url}/user/{USER}/{NAME}/api/contents/{SCRIPT}"
    content = {"type": "file", "format": "text", "content": SOURCE.read_text()}
    r = client.session.put(url, json=content)
    assert r.status_code in (200, 201), r.text[:500]
    yield client
    for search in client.api("GET", "searches"):
        try:
            if search["state"] in ("running", "stopping"):
                client.api("POST", f"searches/{search['id']}/stop")
            client.api("DELETE", f"searches/{search['id']}")
        except WorkbenchError as e:
            print(f"cannot delete search {search['id']}: {e}")
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
def page(hub, xpanel, browser):
    with lab_page(browser, hub, USER, height=1100, width=1500) as page:
        yield page


@pytest.fixture(scope="module")
def state():
    """What the tests of this module pass on: the search started from the panel and its job."""
    return {}


# the search the panel's form makes (test_search_from_the_panel_...), as the API takes it
SEARCH_BODY = {
    "image": "python",
    "flavor": "cpu.tiny",
    "hyperparameters": FIXED,
    "space": {
        "x": {"type": "float", "low": -1, "high": 1},
        "lr": {"type": "float", "low": 1e-4, "high": 1, "log": True},
        "opt": {"type": "categorical", "choices": ["sgd", "adam"]},
    },
    "objective": {"metric": "loss", "direction": "minimize"},
    "trials": 4,
    "parallel": 2,
    "sampler": {"type": "tpe", "seed": 7},
}


@pytest.fixture
def searched(xpanel, state) -> dict:
    """A completed search of 4 trials: the one the panel started, or, where that test has not
    run (alone, another order), the same search started through the API as a job of its own
    (the panel's test makes its job from nothing)."""
    if "search" not in state:
        body = {
            **SEARCH_BODY,
            "job": API_JOB,
            "source": {
                "kind": "file",
                "entry": SCRIPT,
                "archive": archive({SCRIPT: SOURCE.read_text()}),
            },
        }
        search = xpanel.api("POST", "searches", body)
        state.update(search=search["id"], job=API_JOB)
    deadline = time.monotonic() + SEARCH_TIMEOUT_MS / 1000
    while (search := xpanel.api("GET", f"searches/{state['search']}"))["state"] != "completed":
        assert search["state"] == "running", search
        assert time.monotonic() < deadline, search
        time.sleep(2)
    return state


def open_lab(page: Page, hub):
    """JupyterLab, unless a test before left it open."""
    if not page.locator("#jp-main-dock-panel").is_visible():
        page.goto(f"{hub.url}/user/{USER}/{NAME}/lab")
        expect(page.locator("#jp-main-dock-panel")).to_be_visible(timeout=LAB_TIMEOUT_MS)


def relay(hub, client, method: str, path: str, **kwargs):
    """A call of the instance's relay (/workbench/...) with the user's token."""
    url = f"{hub.url}/user/{USER}/{NAME}/workbench/{path}"
    return client.session.request(method, url, timeout=120, **kwargs)


def open_training_panel(page: Page):
    panel = page.locator("#jp-workbench-training")
    if not panel.is_visible():
        page.locator("li.lm-TabBar-tab[data-id='jp-workbench-training']").click()
    expect(panel).to_be_visible()
    return panel


def show_tab(page: Page, selector: str, tab_id: str):
    """The view of a main-area tab, brought to the front."""
    view = page.locator(selector)
    if not view.is_visible():
        page.locator(f"li.lm-TabBar-tab[data-id='{tab_id}']").click()
    expect(view).to_be_visible()
    return view


def search_view(page: Page, search_id: int):
    """The search's view: its tab brought to the front, or opened from the panel's list."""
    tab = page.locator(f"li.lm-TabBar-tab[data-id='jp-workbench-search-{search_id}-tab']")
    if not tab.count():
        item = open_training_panel(page).locator(f"li[data-search='{search_id}']")
        expect(item).to_be_visible(timeout=CALL_TIMEOUT_MS)
        item.click()
    return show_tab(
        page,
        f".jp-WorkbenchExperiments-search[data-search='{search_id}']",
        f"jp-workbench-search-{search_id}-tab",
    )


def fill_param(form, index: int, name: str, kind: str, **fields):
    row = form.locator(".jp-WorkbenchExperiments-param").nth(index)
    row.locator("input[name='param-name']").fill(name)
    row.locator("select[name='param-type']").select_option(kind)
    for key in ("low", "high", "choices"):
        if key in fields:
            row.locator(f"input[name='param-{key}']").fill(str(fields[key]))
    if fields.get("log"):
        row.locator("input[name='param-log']").check()


def final_value(client, version: int, metric: str = "loss", job: str = JOB):
    """The value at the highest step of a version's metric, from the jobs API."""
    points = client.api("GET", f"jobs/{USER}/{job}/versions/{version}/metrics")[metric]
    return max(points, key=lambda p: p["step"])["value"]


def test_relay_refuses_bad_requests_with_what_to_do(hub, xpanel):
    cases = [
        ({"path": "../../etc/passwd", "space": {}}, "outside this server's folder"),
        ({"path": "no-such-file.py"}, "No such file or folder"),
        ({"space": {"x": {"type": "float", "low": 0, "high": 1}}}, "Give the file, notebook"),
        ({"path": ".", "space": {}}, "A folder needs the command"),
        ({"path": SCRIPT, "job": 5}, "The job's name must be text"),
    ]
    for body, message in cases:
        r = relay(hub, xpanel, "POST", "searches", json=body)
        assert r.status_code == 400, (body, r.text)
        assert message in r.json()["message"], (body, r.json())
    r = relay(hub, xpanel, "POST", "searches", data="{not json")
    assert r.status_code == 400 and "not valid JSON" in r.json()["message"]
    # the platform's own refusal comes back with its message: nothing was made
    searches = xpanel.api("GET", "searches")
    refused = {"path": SCRIPT, "job": "xp-refused", "space": {}, "trials": 2}
    r = relay(hub, xpanel, "POST", "searches", json=refused)
    assert r.status_code == 400, r.text
    assert "space is empty: give at least one parameter" in r.json()["message"], r.json()
    assert xpanel.api("GET", "searches") == searches
    with pytest.raises(WorkbenchError) as e:
        xpanel.api("GET", f"jobs/{USER}/xp-refused")
    assert e.value.status == 404
    for query, message in [
        ("", "Pick the runs to compare"),
        ("?run=not-a-run", "is not a run"),
        ("?search=abc", "search must be a search's number"),
    ]:
        r = relay(hub, xpanel, "GET", f"compare{query}")
        assert r.status_code == 400 and message in r.json()["message"], (query, r.text)
    r = relay(hub, xpanel, "GET", "searches/999999")
    assert r.status_code == 404, r.text
    assert r.headers.get("Content-Type", "").startswith("application/json")
    r = relay(hub, xpanel, "GET", f"compare?run={USER}/no-such-job/1")
    assert r.status_code == 404, r.text


def test_search_from_the_panel_shows_trials_states_and_the_best(hub, xpanel, page, state):
    page.goto(f"{hub.url}/user/{USER}/{NAME}/lab/tree/{SCRIPT}")
    expect(page.locator(".jp-FileEditor")).to_be_visible(timeout=LAB_TIMEOUT_MS)

    # the panel's Search… opens the search form over the open file, prefilled from the instance
    panel = open_training_panel(page)
    panel.locator("button[data-action='search']").click()
    form = page.locator(".jp-WorkbenchExperiments-searchForm")
    expect(form).to_be_visible()
    expect(form.locator("input[name='path']")).to_have_value(SCRIPT)
    expect(form.locator("input[name='name']")).to_have_value(JOB)
    expect(form.locator("input[name='image']")).to_have_value("python", timeout=CALL_TIMEOUT_MS)
    expect(form.locator("input[name='objective']")).to_have_value("loss")

    # a space with no parameter is refused in the form; nothing is sent
    error = form.locator(".jp-WorkbenchTraining-error")
    form.locator("button[data-action='submit']").click()
    expect(error).to_contain_text("at least one parameter")

    form.locator("select[name='flavor']").select_option("cpu.tiny")
    form.locator("textarea[name='hyperparameters']").fill("steps=4\nsleep=1")
    fill_param(form, 0, "x", "float", low=-1, high=1)
    form.locator("button[data-action='add-param']").click()
    fill_param(form, 1, "lr", "float", low="1e-4", high=1, log=True)
    form.locator("button[data-action='add-param']").click()
    fill_param(form, 2, "opt", "categorical", choices="sgd, adam")
    form.locator("input[name='trials']").fill("4")
    form.locator("input[name='parallel']").fill("2")
    form.locator("input[name='seed']").fill("7")
    shot(page, "01-form")
    form.locator("button[data-action='submit']").click()

    view = page.locator(".jp-WorkbenchExperiments-search")
    expect(view).to_be_visible(timeout=CALL_TIMEOUT_MS)
    expect(form).to_have_count(0)  # the form closed
    search_id = int(view.get_attribute("data-search"))
    state.update(search=search_id, job=JOB)
    search = xpanel.api("GET", f"searches/{search_id}")
    assert (search["job"], search["trials_planned"], search["parallel"]) == (JOB, 4, 2)
    x = search["space"]["x"]
    assert (x["type"], x["low"], x["high"], x.get("log", False)) == ("float", -1, 1, False)
    assert search["space"]["lr"]["log"] is True and search["space"]["lr"]["low"] == 1e-4
    assert search["space"]["opt"]["choices"] == ["sgd", "adam"]
    assert search["objective"] == {"metric": "loss", "direction": "minimize"}
    assert search["hyperparameters"] == FIXED
    first = xpanel.api("GET", f"jobs/{USER}/{JOB}/versions/1")
    assert (first["spec"]["image"], first["spec"]["flavor"]) == ("python", "cpu.tiny")

    # the trials appear with their states while the search runs
    trials = view.locator("tr.jp-WorkbenchExperiments-trial")
    expect(
        view.locator("tr.jp-WorkbenchExperiments-trial[data-state='running']").first
    ).to_be_visible(timeout=RUN_TIMEOUT_MS)
    expect(view.locator("[data-field='state']").first).to_have_text("running")
    shot(page, "02-running")

    # the panel lists the search
    item = panel.locator(f"li[data-search='{search_id}']")
    expect(item).to_be_visible(timeout=CALL_TIMEOUT_MS)

    # to its end: each trial's row is the API's, the best marked
    expect(view.locator("header [data-field='state']")).to_have_text(
        "completed", timeout=SEARCH_TIMEOUT_MS
    )
    search = xpanel.api("GET", f"searches/{search_id}")
    assert search["state"] == "completed", search
    expect(trials).to_have_count(4)
    for trial in search["trials"]:
        row = view.locator(f"tr.jp-WorkbenchExperiments-trial[data-trial='{trial['number']}']")
        expect(row).to_have_attribute("data-state", trial["state"])
        expect(row.locator("[data-field='version']")).to_have_text(str(trial["version"]))
        if trial["value"] is not None:
            assert (
                float(row.locator("[data-field='value']").get_attribute("data-value"))
                == (trial["value"])
            )
        for name, value in trial["params"].items():
            cell = row.locator(f"[data-field='param'][data-param='{name}']")
            assert json.loads(cell.get_attribute("data-value")) == value
    assert [t["state"] for t in search["trials"]].count("complete") >= 3  # never pruned: startup
    complete = [t for t in search["trials"] if t["state"] == "complete"]
    best = min(complete, key=lambda t: t["value"])
    assert search["best_trial"] == best["number"]
    best_rows = view.locator("tr.jp-WorkbenchExperiments-trial[data-best='true']")
    expect(best_rows).to_have_count(1)
    expect(best_rows).to_have_attribute("data-trial", str(best["number"]))
    expect(best_rows.locator("[data-field='best']")).to_be_visible()
    # the objective is the final loss the trial's job version reported
    assert best["value"] == final_value(xpanel, best["version"])

    # charts: the objective by trial, and by each parameter, one point per scored trial
    scored = sum(1 for t in search["trials"] if t["value"] is not None)
    for key in ("objective", "param:x", "param:lr", "param:opt"):
        chart = view.locator(f".jp-WorkbenchExperiments-chart[data-metric='{key}']")
        expect(chart.locator("canvas")).to_be_visible()
        expect(chart).to_have_attribute("data-points", str(scored))
    curves = view.locator(".jp-WorkbenchExperiments-chart[data-metric='intermediate']")
    expect(curves).to_have_attribute("data-series", "4")
    expect(item.locator("[data-field='state']")).to_have_text("completed", timeout=CALL_TIMEOUT_MS)
    shot(page, "03-completed")


def test_compare_two_runs_from_the_panel(hub, xpanel, page, searched):
    job = searched["job"]
    open_lab(page, hub)
    panel = open_training_panel(page)
    panel.locator("button[data-action='compare']").click()
    view = page.locator(".jp-WorkbenchExperiments-compare")
    expect(view).to_be_visible()
    view.locator("select[name='pick-job']").select_option(f"{USER}/{job}")
    runs = [f"{USER}/{job}/1", f"{USER}/{job}/2"]
    for run in runs:
        view.locator(f"input[name='pick-version'][value='{run}']").check()
    heads = view.locator("thead th.jp-WorkbenchExperiments-run")
    expect(heads).to_have_count(2, timeout=CALL_TIMEOUT_MS)
    comparison = xpanel.api("GET", "experiments/compare", params={"run": runs})
    keys = [f"{r['owner']}/{r['name']}/{r['version']}" for r in comparison["runs"]]
    assert sorted(keys) == runs
    column = {heads.nth(i).get_attribute("data-key"): i for i in range(2)}

    # final metrics: the API's, which are the jobs' own last values
    assert "loss" in comparison["metrics"]
    for metric in comparison["metrics"]:
        row = view.locator(f"tr[data-kind='metric'][data-name='{metric}']")
        for run in comparison["runs"]:
            i = column[f"{run['owner']}/{run['name']}/{run['version']}"]
            cell = row.locator(f"td[data-run='{i}']")
            assert json.loads(cell.get_attribute("data-value")) == run["final"][metric]
    for run in comparison["runs"]:
        i = column[f"{run['owner']}/{run['name']}/{run['version']}"]
        cell = view.locator(f"tr[data-kind='metric'][data-name='loss'] td[data-run='{i}']")
        assert json.loads(cell.get_attribute("data-value")) == final_value(
            xpanel, run["version"], job=job
        )

    # parameters: x differs between the trials and is marked; the fixed steps are not
    assert comparison["differs"]["x"] is True and comparison["differs"]["steps"] is False
    x_row = view.locator("tr[data-kind='parameter'][data-name='x']")
    expect(x_row).to_have_attribute("data-differs", "true")
    expect(x_row).to_have_class("jp-WorkbenchExperiments-row jp-mod-differs")
    steps_row = view.locator("tr[data-kind='parameter'][data-name='steps']")
    expect(steps_row).to_have_attribute("data-differs", "false")
    for run in comparison["runs"]:
        i = column[f"{run['owner']}/{run['name']}/{run['version']}"]
        cell = x_row.locator(f"td[data-run='{i}']")
        assert json.loads(cell.get_attribute("data-value")) == run["hyperparameters"]["x"]
    # only the differences: the same steps go out of sight
    view.locator("input[name='only-differences']").check()
    expect(steps_row).to_be_hidden()
    expect(x_row).to_be_visible()
    view.locator("input[name='only-differences']").uncheck()

    # the loss curves of both runs in one chart, 4 steps each
    chart = view.locator(".jp-WorkbenchExperiments-chart[data-metric='loss']")
    expect(chart.locator("canvas")).to_be_visible()
    expect(chart).to_have_attribute("data-series", "2")
    expect(chart).to_have_attribute("data-points", "8")
    shot(page, "04-compare")

    # a search's trials compare from its view: all of them when none is ticked
    search = search_view(page, searched["search"])
    search.locator("button[data-action='compare']").click()
    expect(view.locator("[data-field='what']")).to_have_text(
        f"the trials of search {searched['search']}"
    )
    expect(heads).to_have_count(4, timeout=CALL_TIMEOUT_MS)


def test_tensorboard_over_the_compared_runs(hub, xpanel, page, searched):
    # the search's trials compared from its view (all of them: none is ticked)
    open_lab(page, hub)
    search_view(page, searched["search"]).locator("button[data-action='compare']").click()
    view = show_tab(page, ".jp-WorkbenchExperiments-compare", "jp-workbench-compare-tab")
    expect(view.locator("[data-field='what']")).to_have_text(
        f"the trials of search {searched['search']}"
    )
    heads = view.locator("thead th.jp-WorkbenchExperiments-run")
    expect(heads).to_have_count(4, timeout=CALL_TIMEOUT_MS)
    view.locator("button[data-action='tensorboard']").click()
    board = page.locator(".jp-WorkbenchExperiments-tensorboard")
    expect(board).to_be_visible()
    frame = board.locator("iframe.jp-WorkbenchExperiments-tensorboardFrame")
    expect(frame).to_be_visible(timeout=TENSORBOARD_TIMEOUT_MS)
    assert f"/user/{USER}/{NAME}/proxy/" in frame.get_attribute("src")
    expect(
        page.frame_locator("iframe.jp-WorkbenchExperiments-tensorboardFrame").locator("body")
    ).to_contain_text("TensorBoard", timeout=CALL_TIMEOUT_MS)
    tensorboard_id = int(board.get_attribute("data-tensorboard"))
    model = xpanel.api("GET", f"tensorboards/{tensorboard_id}")
    assert model["state"] == "running"
    assert sorted(r["version"] for r in model["runs"]) == [1, 2, 3, 4]
    shot(page, "05-tensorboard")
    # closing its tab stops it
    tab = page.locator(f"li.lm-TabBar-tab[data-id='{board.get_attribute('id')}-tab']")
    tab.locator(".lm-TabBar-tabCloseIcon").click()
    expect(board).to_have_count(0)
    deadline = time.monotonic() + 60
    while xpanel.api("GET", f"tensorboards/{tensorboard_id}")["state"] != "stopped":
        assert time.monotonic() < deadline, "the TensorBoard still runs after its tab closed"
        time.sleep(1)


def test_use_best_parameters_reruns_the_job_with_them(hub, xpanel, page, searched):
    search_id, name = searched["search"], searched["job"]
    open_lab(page, hub)
    view = search_view(page, search_id)
    search = xpanel.api("GET", f"searches/{search_id}")
    best = next(t for t in search["trials"] if t["number"] == search["best_trial"])
    versions = len(xpanel.api("GET", f"jobs/{USER}/{name}")["versions"])
    assert versions == 4  # the search's trials
    view.locator("button[data-action='rerun-best']").click()

    # the job's view shows the new version, a normal run of the job with the best parameters
    job = page.locator(f".jp-WorkbenchTraining-job[data-job='{USER}/{name}']")
    expect(job).to_be_visible(timeout=CALL_TIMEOUT_MS)
    expect(job.locator("select[name='version']")).to_have_value(
        str(versions + 1), timeout=CALL_TIMEOUT_MS
    )
    version = xpanel.api("GET", f"jobs/{USER}/{name}/versions/{versions + 1}")
    assert version["spec"]["hyperparameters"] == {**FIXED, **best["params"]}
    expect(job.locator("[data-field='state']")).to_have_text("succeeded", timeout=RUN_TIMEOUT_MS)
    # it reported the best trial's loss again
    assert final_value(xpanel, versions + 1, job=name) == pytest.approx(best["value"])
    # the search itself is as it was
    assert len(xpanel.api("GET", f"searches/{search_id}")["trials"]) == 4
    shot(page, "06-best-rerun")

    # the job view's Compare versions: all of them side by side, the re-run beside the trials
    job.locator("button[data-action='compare']").click()
    compare = page.locator(".jp-WorkbenchExperiments-compare")
    expect(compare).to_be_visible()
    heads = compare.locator("thead th.jp-WorkbenchExperiments-run")
    expect(heads).to_have_count(versions + 1, timeout=CALL_TIMEOUT_MS)
    assert [heads.nth(i).get_attribute("data-key") for i in range(versions + 1)] == [
        f"{USER}/{name}/{v}" for v in range(1, versions + 2)
    ]

    # the job view's Search…: the search form over the job, from the shown version's spec
    job = show_tab(
        page,
        f".jp-WorkbenchTraining-job[data-job='{USER}/{name}']",
        f"jp-workbench-job-{USER}-{name}-tab",
    )
    job.locator("button[data-action='search']").click()
    form = page.locator(".jp-WorkbenchExperiments-searchForm")
    expect(form.locator(".jp-WorkbenchTraining-title")).to_have_text(
        f"Search hyperparameters of {name} (from version {versions + 1})"
    )
    expect(form.locator("input[name='path']")).to_be_hidden()  # the job's own code
    expect(form.locator("textarea[name='hyperparameters']")).to_have_value(
        "\n".join(
            f"{k}={json.dumps(v) if not isinstance(v, str) else v}"
            for k, v in version["spec"]["hyperparameters"].items()
        ),
        timeout=CALL_TIMEOUT_MS,
    )
    page.locator("li.lm-TabBar-tab.lm-mod-current[data-id^='jp-workbench-training-form']").locator(
        ".lm-TabBar-tabCloseIcon"
    ).click()
    expect(form).to_have_count(0)


def test_stop_a_search_from_its_view(hub, xpanel, page):
    # a long search over the same code, as another job, started through the API
    body = {
        "job": SLOW_JOB,
        "source": {
            "kind": "file",
            "entry": SCRIPT,
            "archive": archive({SCRIPT: SOURCE.read_text()}),
        },
        "image": "python",
        "flavor": "cpu.tiny",
        "hyperparameters": {"steps": 200, "sleep": 1},
        "space": {"x": {"type": "float", "low": -1, "high": 1}},
        "objective": {"metric": "loss", "direction": "minimize"},
        "trials": 3,
        "parallel": 1,
    }
    search = xpanel.api("POST", "searches", body)
    open_lab(page, hub)
    panel = open_training_panel(page)
    item = panel.locator(f"li[data-search='{search['id']}']")
    expect(item).to_be_visible(timeout=CALL_TIMEOUT_MS)
    item.click()
    view = search_view(page, search["id"])
    running = view.locator("tr.jp-WorkbenchExperiments-trial[data-state='running']")
    expect(running).to_have_count(1, timeout=RUN_TIMEOUT_MS)
    stop = view.locator("button[data-action='stop']")
    expect(stop).to_be_enabled()
    stop.click()
    expect(view.locator("header [data-field='state']")).to_have_text(
        "stopped", timeout=RUN_TIMEOUT_MS
    )
    expect(stop).to_be_disabled()
    model = xpanel.api("GET", f"searches/{search['id']}")
    assert model["state"] == "stopped"
    assert [t["state"] for t in model["trials"]] == ["stopped"]
    assert xpanel.api("GET", f"jobs/{USER}/{SLOW_JOB}/versions/1")["state"] == "stopped"
    expect(view.locator("tr[data-trial='0']")).to_have_attribute("data-state", "stopped")
    # nothing to re-run: no trial completed
    expect(view.locator("button[data-action='rerun-best']")).to_be_disabled()
    shot(page, "07-stopped")
