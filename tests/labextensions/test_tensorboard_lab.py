"""TensorBoard in JupyterLab, in headless Chromium, against the session hub.

A real instance of user "tblab-eve" runs the python image (jupyter-server-proxy and
tensorboard in its server environment). Her job, run in the pytorch image, wrote TensorBoard
scalars with tensorboardX into its output folder. From JupyterLab's page she opens TensorBoard
for that run through the lab extension's endpoint: TensorBoard starts in the instance over
jobs/<name>/<version>/output, its page at the returned url loads in a frame of JupyterLab,
and its scalars API through the proxy lists the run's tags; the hub's audit log has the
opening. Closing it stops the process and deletes the record. Real job containers.
Screenshots go to artifacts/screenshots/tensorboard-*.png. Needs Chromium at
/usr/bin/chromium (or $WORKBENCH_CHROMIUM): a missing browser fails, it never skips.
"""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import Page, expect
from workbench import WorkbenchError
from workbench.resources.tensorboards import Tensorboards
from workbench.sync import SyncNamespace

from tests.hub.test_browser import CHROMIUM_ARGS, LAB_TIMEOUT_MS, SCREENSHOTS, browser
from tests.labextensions.lab import lab_page
from tests.training_bridge.jobs_helpers import archive, submit, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.browser]

USER = "tblab-eve"
NAME = "tb-lab"
JOB = "scalars"
RUN = "scalars-v1"
# TensorBoard reads the event files after it answers; the frame loads its whole app
LOAD_TIMEOUT_MS = 60_000

__all__ = ["browser", "CHROMIUM_ARGS"]

WRITER = """\
import os
from tensorboardX import SummaryWriter

writer = SummaryWriter(os.path.join(os.environ["WORKBENCH_OUTPUT_DIR"], "tb"))
for step in range(4):
    writer.add_scalar("loss", 1.0 / (step + 1), step)
    writer.add_scalar("eval/accuracy", 0.5 + step / 10, step)
writer.close()
print("wrote scalars")
"""


def shot(page: Page, name: str):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"tensorboard-{name}.png"))


@pytest.fixture(scope="module")
def eve(hub):
    """eve with a running instance and a finished run whose output holds event files; her
    TensorBoards, job and instance are deleted after."""
    client = hub.add_user(USER)
    body = {"name": NAME, "image": "python", "flavor": "cpu.small", "storage_gib": 1}
    client.api("POST", f"users/{USER}/instances", body)
    source = {"kind": "file", "entry": "write.py", "archive": archive({"write.py": WRITER})}
    submit(client, JOB, source, image="pytorch")
    done = wait_for(client, USER, JOB, timeout=300)
    assert done["state"] == "succeeded", done
    files = client.api("GET", f"jobs/{USER}/{JOB}/versions/1/files?path=output")
    assert any(f["path"].startswith("output/tb/events.out.tfevents") for f in files), files
    deadline = time.monotonic() + 120
    while client.instance(NAME, USER)["state"] != "running":
        assert time.monotonic() < deadline, client.instance(NAME, USER)
        time.sleep(1)
    yield client
    for board in client.api("GET", "tensorboards"):
        client.api("DELETE", f"tensorboards/{board['id']}")
    try:
        client.api("DELETE", f"jobs/{USER}/{JOB}")
    except WorkbenchError as e:
        print(f"cannot delete job {JOB}: {e}")
    if client.instance(NAME, USER)["state"] != "stopped":
        client.stop_instance(NAME, USER)
    client.delete_instance(NAME, USER)


@pytest.fixture(scope="module")
def page(hub, eve, browser):
    with lab_page(browser, hub, USER, height=900) as page:
        page.goto(f"{hub.url}/user/{USER}/{NAME}/lab")
        expect(page.locator("#jp-main-dock-panel")).to_be_visible(timeout=LAB_TIMEOUT_MS)
        yield page


# the lab extension's endpoints, called from JupyterLab's page as the panel calls them
LAB_CALL = """
async ([method, url, body]) => {
  const xsrf = document.cookie.split('; ').find(c => c.startsWith('_xsrf='));
  const headers = {'Content-Type': 'application/json'};
  if (xsrf) headers['X-XSRFToken'] = decodeURIComponent(xsrf.slice(6));
  const r = await fetch(url, {method, headers, body: body ? JSON.stringify(body) : undefined});
  const text = await r.text();
  return {status: r.status, body: text ? JSON.parse(text) : null};
}
"""


def lab_call(page: Page, hub, method: str, path: str, body=None) -> dict:
    url = f"/user/{USER}/{NAME}/workbench/{path}"
    return page.evaluate(LAB_CALL, [method, url, body])


def scalar_tags(page: Page, hub, url: str) -> dict:
    """TensorBoard's scalar tags by run through JupyterLab's proxy, once it has read them."""
    deadline = time.monotonic() + LOAD_TIMEOUT_MS / 1000
    while True:
        r = page.request.get(f"{hub.url}{url}data/plugin/scalars/tags")
        assert r.status == 200, (r.status, r.text()[:500])
        tags = r.json()
        if tags or time.monotonic() > deadline:
            return tags
        time.sleep(0.5)


def audited(hub, board_id: int) -> set[str]:
    events = hub.client().api("GET", "audit?resource_type=tensorboard&limit=500")
    return {
        e["event"]
        for e in events
        if e["resource_id"] == f"{USER}/{board_id}" and e["outcome"] == "success"
    }


def test_open_tensorboard_for_a_run_see_its_scalars_in_jupyterlab_then_close_it(hub, eve, page):
    opened = lab_call(page, hub, "POST", "tensorboards", {"runs": [{"name": JOB, "version": 1}]})
    assert opened["status"] == 201, opened
    board = opened["body"]
    assert board["instance"] == NAME and board["state"] == "running"
    assert board["runs"] == [
        {"owner": USER, "name": JOB, "version": 1, "label": RUN, "logdir": "jobs/scalars/1/output"}
    ]
    prefix = f"/user/{USER}/{NAME}/proxy/"
    assert board["url"].startswith(prefix) and board["url"].endswith("/")
    port = int(board["url"][len(prefix) : -1])
    # a second click on the same run opens the same TensorBoard
    again = lab_call(page, hub, "POST", "tensorboards", {"runs": [{"name": JOB, "version": 1}]})
    assert again["status"] == 200 and again["body"]["id"] == board["id"], again
    listed = lab_call(page, hub, "GET", "tensorboards")
    assert listed["status"] == 200
    assert [(b["id"], b["url"]) for b in listed["body"]] == [(board["id"], board["url"])]

    # the scalars the job wrote, through jupyter-server-proxy
    assert scalar_tags(page, hub, board["url"]) == {
        f"{RUN}/tb": {
            "eval/accuracy": {"displayName": "eval/accuracy", "description": ""},
            "loss": {"displayName": "loss", "description": ""},
        }
    }
    values = page.request.get(
        f"{hub.url}{board['url']}data/plugin/scalars/scalars?run={RUN}/tb&tag=loss"
    ).json()
    assert [round(v, 4) for _, _, v in values] == [1.0, 0.5, 0.3333, 0.25]

    # TensorBoard's page loads in a frame of JupyterLab's main area, showing the run
    page.evaluate(
        """url => {
          const frame = document.createElement('iframe');
          frame.id = 'tensorboard-frame';
          frame.src = url;
          frame.style.cssText = 'position:fixed;inset:40px;width:90%;height:85%;z-index:9999';
          document.getElementById('jp-main-dock-panel').appendChild(frame);
        }""",
        board["url"],
    )
    frame = page.frame_locator("#tensorboard-frame")
    expect(frame.locator("body")).to_contain_text("TensorBoard", timeout=LOAD_TIMEOUT_MS)
    expect(frame.get_by_text(f"{RUN}/tb").first).to_be_visible(timeout=LOAD_TIMEOUT_MS)
    shot(page, "01-frame")

    assert "createModelArtsTensorboardJob" in audited(hub, board["id"])
    assert eve.api("GET", f"tensorboards/{board['id']}")["state"] == "running"

    # closing it stops the process (the proxy has nothing there any more) and the record goes
    closed = lab_call(page, hub, "DELETE", f"tensorboards/{board['id']}?delete=1")
    assert closed["status"] == 204, closed
    gone = page.request.get(f"{hub.url}/user/{USER}/{NAME}/proxy/{port}/data/environment")
    assert gone.status >= 500, gone.status
    with pytest.raises(WorkbenchError) as e:
        eve.api("GET", f"tensorboards/{board['id']}")
    assert e.value.status == 404
    assert lab_call(page, hub, "GET", "tensorboards")["body"] == []
    assert {"stopModelArtsTensorboardJob", "deleteModelArtsTensorboardJob"} <= audited(
        hub, board["id"]
    )


def test_refusals_reach_the_page_with_the_platforms_message(hub, eve, page):
    other = lab_call(
        page, hub, "POST", "tensorboards", {"runs": [{"owner": "admin", "name": "x", "version": 1}]}
    )
    assert other["status"] == 400
    assert "only your own runs' event folders" in other["body"]["message"]
    missing = lab_call(page, hub, "POST", "tensorboards", {"runs": [{"name": JOB, "version": 5}]})
    assert missing["status"] == 404 and "no version 5" in missing["body"]["message"]
    assert lab_call(page, hub, "GET", "tensorboards")["body"] == []


def test_the_sdk_outside_the_instance_opens_it_through_its_jupyterlab(hub, eve):
    boards = SyncNamespace(Tensorboards(eve.aio))
    board = boards.open([(JOB, 1)], instance=NAME)
    try:
        assert board.url.startswith(f"{hub.url}/user/{USER}/{NAME}/proxy/")
        assert board.instance == NAME and [r["label"] for r in board.runs] == [RUN]
        deadline = time.monotonic() + LOAD_TIMEOUT_MS / 1000
        tags = {}
        while not tags and time.monotonic() < deadline:
            r = eve.session.get(f"{board.url}data/plugin/scalars/tags", timeout=30)
            assert r.status_code == 200, r.text[:500]
            tags = r.json()
            time.sleep(0.5)
        assert list(tags) == [f"{RUN}/tb"] and "loss" in tags[f"{RUN}/tb"]
    finally:
        board.delete()
    assert eve.api("GET", "tensorboards") == []
    with pytest.raises(WorkbenchError) as e:
        boards.open([(JOB, 1)], instance="not-mine")
    assert e.value.status == 404
