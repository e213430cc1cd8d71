"""The hub's Experiments page in headless Chromium, against the session hub.

"exppages" runs a small hyperparameter search (3 trials, one at a time, of job_quadratic.py
in the python image, 3 steps of 0.1 s) to its end with a description made of HTML. The page
lists the search with its state, objective, trials done of planned with the counts by state
and the best value; its detail shows the three trials with their parameters and values as the
API gives them, the best one marked, and the objective charted by trial and against each
parameter. Trials ticked (and a run typed in as owner/job/version) compare with the values
of GET /experiments/compare, the rows that differ highlighted and the loss curves overlaid.
A second search (two trials, run alongside the first) is deleted from the page, the first
one staying. Another user ("exppeek") sees none of it. Values are shown as text, never run
as HTML. Needs Chromium at /usr/bin/chromium (or $WORKBENCH_CHROMIUM): a missing browser
fails.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Page, expect
from workbench import WorkbenchError

import training_bridge.experiments.pages
from hub.service.pages import SHARED
from spawner.templating import render_template
from tests.hub.test_browser import (  # noqa: F401 - browser is the shared fixture
    browser,
    shot,
    signed_in,
)
from tests.training_bridge.jobs_helpers import archive

pytestmark = [pytest.mark.integration, pytest.mark.browser]

USER = "exppages"
OTHER = "exppeek"
PASSWORD = "pw-" + secrets.token_hex(8)
JOB = "exp-page-quad"
DOOMED_JOB = "exp-page-gone"
HOSTILE = '<img src=x onerror="window.pwned=1"><b>bold</b> & done'
SCRIPT = Path(__file__).parent / "job_quadratic.py"
SPACE = {
    "x": {"type": "float", "low": -1, "high": 1},
    "lr": {"type": "float", "low": 1e-4, "high": 1, "log": True},
    "opt": {"type": "categorical", "choices": ["sgd", "adam"]},
}
SEARCH_TIMEOUT = 420.0  # three job runs one after another on a machine of maybe 2 cores


def test_the_page_keeps_its_config_as_text():
    config = {
        "user": "</script><script>alert(1)</script>",
        "api": "/services/workbench/api",
        "xsrf": "x",
        "experiments_page": "/services/workbench/experiments",
        "jobs_page": "/services/workbench/jobs",
        "datasets_page": "/services/workbench/datasets",
        "models_page": "/services/workbench/models",
        "hub_home": "/hub/home",
        "instances": "/user/",
    }
    text = render_template(
        training_bridge.experiments.pages.__file__, "experiments.html", shared=SHARED, config=config
    )
    assert "<script>alert(1)" not in text
    assert json.loads(re.search(r"var config = (.*);\n", text).group(1)) == config


def wait_search(client, search_id: int) -> dict:
    deadline = time.monotonic() + SEARCH_TIMEOUT
    model = client.api("GET", f"searches/{search_id}")
    while model["state"] in ("running", "stopping"):
        if time.monotonic() > deadline:
            raise AssertionError(f"search {search_id} still {model['state']}: {model}")
        time.sleep(1)
        model = client.api("GET", f"searches/{search_id}")
    return model


def search_body(job: str, trials: int, description: str = "") -> dict:
    return {
        "job": job,
        "source": {
            "kind": "file",
            "entry": "quadratic.py",
            "archive": archive({"quadratic.py": SCRIPT.read_text()}),
        },
        "image": "python",
        "flavor": "cpu.tiny",
        "description": description,
        "hyperparameters": {"steps": 3, "sleep": 0.1},
        "space": SPACE,
        "objective": {"metric": "loss", "direction": "minimize"},
        "trials": trials,
        "parallel": 1,
        "sampler": {"type": "random", "seed": 7},
        "pruner": "none",
    }


@pytest.fixture(scope="module")
def owner(hub):
    """exppages with two finished searches: `search` (three trials, a description of HTML)
    that the tests show and compare, and `doomed` (two trials, of another job) that the
    deletion test deletes, so that the others find theirs in any order. Both run at once."""
    client = hub.add_user(USER, PASSWORD)
    search = client.api("POST", "searches", search_body(JOB, 3, HOSTILE))
    doomed = client.api("POST", "searches", search_body(DOOMED_JOB, 2))
    client.search = wait_search(client, search["id"])
    client.doomed = wait_search(client, doomed["id"])
    yield client
    for path in (
        f"searches/{search['id']}",
        f"searches/{doomed['id']}",
        f"jobs/{USER}/{JOB}",
        f"jobs/{USER}/{DOOMED_JOB}",
    ):
        try:
            client.api("DELETE", path)
        except WorkbenchError as e:
            if e.status != 404:
                print(f"cleanup of {path}: {e}")


def no_script_ran(page: Page):
    assert page.evaluate("window.pwned") is None
    assert page.locator("img").count() == 0
    assert page.locator("b", has_text="bold").count() == 0


def value_of(cell) -> object:
    """The exact value a cell shows (its data-value), as JSON; None when it has none."""
    text = cell.get_attribute("data-value")
    return json.loads(text) if text else None


def test_the_page_needs_a_signed_in_user(hub):
    r = requests.get(f"{hub.url}/services/workbench/experiments", allow_redirects=False, timeout=30)
    assert r.status_code == 302
    assert "/hub/api/oauth2/authorize" in r.headers["Location"]


def test_the_page_lists_the_search_and_its_trials(hub, owner, browser):  # noqa: F811
    search = owner.search
    assert search["state"] == "completed", search
    trials = search["trials"]
    assert [t["state"] for t in trials] == ["complete"] * 3
    best = search["best_trial"]
    with signed_in(browser, hub, USER, PASSWORD, height=1600) as page:
        page.goto(f"{hub.url}/hub/home")
        page.click("#experiments-link")
        expect(page.locator("h1")).to_have_text("Experiments")
        row = page.locator(f"#searches tr[data-search='{search['id']}']")
        expect(row).to_be_visible()
        expect(row.locator(".search-job a")).to_have_text(JOB)
        expect(row.locator(".search-job .muted")).to_have_text(HOSTILE)
        expect(row.locator(".search-state .state")).to_have_text("completed")
        expect(row.locator(".search-objective")).to_have_text("loss (minimize)")
        expect(row.locator(".search-done")).to_have_text("3 / 3")
        expect(row.locator(".search-trials .counts")).to_contain_text("complete 3")
        expect(row.locator(".search-trials .counts")).to_contain_text("pruned 0")
        expect(row.locator(".search-best")).to_contain_text(f"trial {best}")
        expect(page.locator("#no-tensorboards")).to_be_visible()
        no_script_ran(page)

        row.locator("a.search-link").click()
        expect(page.locator("#search-detail")).to_be_visible()
        title = f"Search #{search['id']} of {USER}/{JOB}"
        expect(page.locator("#search-title")).to_have_text(title)
        expect(page.locator("#search-info")).to_contain_text(HOSTILE)
        rows = page.locator("#trials tr.trial-row")
        expect(rows).to_have_count(3)
        for trial in trials:
            tr = page.locator(f"#trials tr.trial-row[data-trial='{trial['number']}']")
            expect(tr.locator(".trial-state .state")).to_have_text("complete")
            for name, v in trial["params"].items():
                assert value_of(tr.locator(f".trial-param[data-param='{name}']")) == v
            assert value_of(tr.locator(".trial-value")) == trial["value"]
            expect(tr.locator(".trial-param[data-param='opt']")).to_have_text(
                trial["params"]["opt"]
            )
            expect(tr.locator(".trial-steps")).to_have_text(str(trial["steps"]))
        marked = page.locator("#trials tr.best")
        expect(marked).to_have_count(1)
        expect(marked).to_have_attribute("data-trial", str(best))
        expect(marked.locator(".best-mark")).to_contain_text("best")
        # the objective by trial (every trial a point, the best one marked) and against
        # each parameter of the space
        objective = page.locator("#search-charts .objective-chart")
        expect(objective.locator("circle.point")).to_have_count(3)
        expect(objective.locator("circle.point-best")).to_have_attribute("data-trial", str(best))
        for name in SPACE:
            chart = page.locator(f"#search-charts .param-chart[data-param='{name}']")
            expect(chart.locator("circle.point")).to_have_count(3)
        expect(page.locator("#rerun-best")).to_be_enabled()
        expect(page.locator("#delete-search")).to_be_visible()
        expect(page.locator("#stop-search")).to_be_hidden()
        no_script_ran(page)
        shot(page, "experiments-search")


def test_the_compare_view_shows_what_the_api_compares(hub, owner, browser):  # noqa: F811
    search = owner.search
    trials = sorted(search["trials"], key=lambda t: t["number"])
    runs = [f"{USER}/{JOB}/{t['version']}" for t in trials]
    expected = owner.api("GET", "experiments/compare", params={"run": runs})
    with signed_in(browser, hub, USER, PASSWORD, height=1800) as page:
        page.goto(f"{hub.url}/services/workbench/experiments#search/{search['id']}")
        expect(page.locator("#trials tr.trial-row")).to_have_count(3)
        # two trials ticked, the third typed in as owner/job/version
        for t in trials[:2]:
            page.locator(f"#trials tr[data-trial='{t['number']}'] input.compare-tick").check()
        page.fill("#run-input", runs[2])
        page.click("#add-run")
        expect(page.locator("#compare-picked li")).to_have_count(3)
        third = page.locator(f"#trials tr[data-trial='{trials[2]['number']}'] .compare-tick")
        expect(third).to_be_checked()
        page.click("#compare-button")
        expect(page.locator("#compare-result")).to_be_visible()

        heads = page.locator("#comparison th.run-head")
        expect(heads).to_have_count(3)
        for i, run in enumerate(expected["runs"]):
            expect(heads.nth(i).locator("a")).to_have_text(run["label"])
        assert set(expected["parameters"]) >= {"x", "lr", "opt", "steps", "sleep"}
        for name in expected["parameters"]:
            tr = page.locator(f"#comparison tr.param-row[data-key='{name}']")
            cells = tr.locator("td")
            expect(cells).to_have_count(3)
            for i, run in enumerate(expected["runs"]):
                assert value_of(cells.nth(i)) == run["hyperparameters"].get(name), name
            differs = expected["differs"][name]
            assert ("differs" in tr.get_attribute("class").split()) == differs, name
        # the fixed hyperparameters are the same in every trial, the searched ones are not
        assert not expected["differs"]["steps"] and expected["differs"]["x"]
        assert expected["metrics"] == ["loss"]
        cells = page.locator("#comparison tr.metric-row[data-key='loss'] td")
        for i, run in enumerate(expected["runs"]):
            assert value_of(cells.nth(i)) == run["final"]["loss"]
        curves = page.locator("#compare-charts .curves[data-metric='loss'] polyline.curve")
        expect(curves).to_have_count(len(expected["curves"]["loss"]))
        for i, curve in enumerate(expected["curves"]["loss"]):
            label = expected["runs"][curve["run"]]["label"]
            expect(curves.nth(i)).to_have_attribute("data-run", label)
        no_script_ran(page)
        shot(page, "experiments-compare")


def test_another_user_sees_none_of_it(hub, owner, browser):  # noqa: F811
    password = "pw-" + secrets.token_hex(8)
    hub.add_user(OTHER, password)
    search_id = owner.search["id"]
    with signed_in(browser, hub, OTHER, password) as page:
        page.goto(f"{hub.url}/services/workbench/experiments")
        expect(page.locator("#no-searches")).to_be_visible()
        expect(page.locator(f"#searches tr[data-search='{search_id}']")).to_have_count(0)
        page.goto(f"{hub.url}/services/workbench/experiments#search/{search_id}")
        expect(page.locator("#detail-error")).to_contain_text(f"Cannot show search #{search_id}")
        expect(page.locator("#trials tr.trial-row")).to_have_count(0)


def test_the_owner_deletes_the_search_from_the_page(hub, owner, browser):  # noqa: F811
    doomed = owner.doomed
    assert doomed["state"] == "completed", doomed
    search_id = doomed["id"]
    with signed_in(browser, hub, USER, PASSWORD) as page:
        page.goto(f"{hub.url}/services/workbench/experiments#search/{search_id}")
        expect(page.locator("#trials tr.trial-row")).to_have_count(2)
        page.once("dialog", lambda dialog: dialog.accept())
        page.click("#delete-search")
        expect(page.locator(f"#searches tr[data-search='{search_id}']")).to_have_count(0)
        expect(page.locator("#search-detail")).to_be_hidden()
        # only that search: the other one stays listed
        expect(page.locator(f"#searches tr[data-search='{owner.search['id']}']")).to_be_visible()
    with pytest.raises(WorkbenchError) as e:
        owner.api("GET", f"searches/{search_id}")
    assert e.value.status == 404
    assert owner.api("GET", f"searches/{owner.search['id']}")["state"] == "completed"
    # its trials' job runs stay
    assert len(owner.api("GET", f"jobs/{USER}/{DOOMED_JOB}")["versions"]) == 2
