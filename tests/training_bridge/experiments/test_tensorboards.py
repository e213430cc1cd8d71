"""TensorBoard records against the real hub: opened over a user's own runs in their running
instance (a real container), listed, stopped, deleted, each audited as owner/id; refusals say
what is wrong: another's runs, an unknown instance, too many running. (The process itself
runs in the instance: tests/labextensions/test_tensorboard_lab.py.)"""

from __future__ import annotations

import time

import pytest
import requests
from tensorboardX import SummaryWriter
from workbench import WorkbenchError
from workbench.resources.tensorboards import Tensorboards
from workbench.sync import SyncNamespace

from ..jobs_helpers import archive, submit, wait_for

USER = "tbapi-cy"
OTHER = "tbapi-di"
INSTANCE = "tb-nb"
SOURCE = {"kind": "file", "entry": "t.py", "archive": archive({"t.py": "print('done')"})}

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cy(hub):
    """cy with a running instance and two finished versions of job `fit`; her TensorBoards,
    jobs and instance are deleted after."""
    client = hub.add_user(USER)
    body = {"name": INSTANCE, "image": "python", "flavor": "cpu.tiny", "storage_gib": 1}
    client.api("POST", f"users/{USER}/instances", body)
    submit(client, "fit", SOURCE)
    client.api("POST", f"jobs/{USER}/fit/versions", {})
    for v in (1, 2):
        assert wait_for(client, USER, "fit", v)["state"] == "succeeded"
    deadline = time.monotonic() + 120
    while client.instance(INSTANCE, USER)["state"] != "running":
        assert time.monotonic() < deadline, client.instance(INSTANCE, USER)
        time.sleep(1)
    yield client
    for board in client.api("GET", "tensorboards"):
        client.api("DELETE", f"tensorboards/{board['id']}")
    client.api("DELETE", f"jobs/{USER}/fit")
    client.stop_instance(INSTANCE, USER)
    client.delete_instance(INSTANCE, USER)


@pytest.fixture(scope="module")
def di(hub):
    """di with a finished run of his own."""
    client = hub.add_user(OTHER)
    submit(client, "his", SOURCE)
    assert wait_for(client, OTHER, "his")["state"] == "succeeded"
    return client


def refused(client, body: dict, status: int, *words: str) -> str:
    with pytest.raises(WorkbenchError) as e:
        client.api("POST", "tensorboards", body)
    assert e.value.status == status, e.value.message
    for word in words:
        assert word in e.value.message, e.value.message
    return e.value.message


def audited(hub, board_id: int) -> set[str]:
    events = hub.client().api("GET", "audit?resource_type=tensorboard&limit=500")
    return {
        e["event"]
        for e in events
        if e["resource_id"] == f"{USER}/{board_id}" and e["outcome"] == "success"
    }


def test_open_list_stop_and_delete_each_audited(hub, cy):
    board = cy.api(
        "POST",
        "tensorboards",
        {
            "instance": INSTANCE,
            "runs": [{"name": "fit", "version": 2}, {"name": "fit", "version": 1}],
        },
    )
    assert board["owner"] == USER and board["instance"] == INSTANCE
    assert board["state"] == "running" and board["stopped"] is None
    # each run's label, and its output folder relative to the instance's work folder
    assert board["runs"] == [
        {
            "owner": USER,
            "name": "fit",
            "version": 2,
            "label": "fit-v2",
            "logdir": "jobs/fit/2/output",
        },
        {
            "owner": USER,
            "name": "fit",
            "version": 1,
            "label": "fit-v1",
            "logdir": "jobs/fit/1/output",
        },
    ]
    assert cy.api("GET", f"tensorboards/{board['id']}") == board
    assert board["id"] in [b["id"] for b in cy.api("GET", "tensorboards")]

    stopped = cy.api("POST", f"tensorboards/{board['id']}/stop")
    assert stopped["state"] == "stopped" and stopped["stopped"] is not None
    assert cy.api("GET", f"tensorboards/{board['id']}")["state"] == "stopped"
    cy.api("DELETE", f"tensorboards/{board['id']}")
    with pytest.raises(WorkbenchError) as e:
        cy.api("GET", f"tensorboards/{board['id']}")
    assert e.value.status == 404
    assert board["id"] not in [b["id"] for b in cy.api("GET", "tensorboards")]
    assert audited(hub, board["id"]) == {
        "createModelArtsTensorboardJob",
        "stopModelArtsTensorboardJob",
        "deleteModelArtsTensorboardJob",
    }


def test_another_users_tensorboards_are_not_found(hub, cy, di):
    board = cy.api(
        "POST", "tensorboards", {"instance": INSTANCE, "runs": [{"name": "fit", "version": 1}]}
    )
    try:
        for method, path in (
            ("GET", f"tensorboards/{board['id']}"),
            ("POST", f"tensorboards/{board['id']}/stop"),
            ("DELETE", f"tensorboards/{board['id']}"),
        ):
            with pytest.raises(WorkbenchError) as e:
                di.api(method, path)
            assert e.value.status == 404, (method, path)
        assert di.api("GET", "tensorboards") == []
        assert cy.api("GET", f"tensorboards/{board['id']}")["state"] == "running"
        # an administrator sees everyone's with all=1
        everyone = hub.client().api("GET", "tensorboards?all=1")
        assert board["id"] in [b["id"] for b in everyone]
    finally:
        cy.api("DELETE", f"tensorboards/{board['id']}")


def test_refusals_say_what_is_wrong(hub, cy, di):
    runs = [{"name": "fit", "version": 1}]
    refused(
        cy,
        {"instance": INSTANCE, "runs": [{"owner": OTHER, "name": "his", "version": 1}]},
        400,
        "only your own runs' event folders are in your instance",
    )
    refused(cy, {"instance": "nope", "runs": runs}, 400, "You have no instance 'nope'")
    # di's instances are not cy's
    refused(di, {"instance": INSTANCE, "runs": [{"name": "his", "version": 1}]}, 400, "no instance")
    refused(
        cy, {"instance": INSTANCE, "runs": [{"name": "fit", "version": 7}]}, 404, "no version 7"
    )
    refused(cy, {"instance": INSTANCE, "runs": [{"name": "gone", "version": 1}]}, 404, "No job")
    refused(cy, {"runs": runs}, 400, "instance is required")
    refused(cy, {"instance": INSTANCE}, 400, "either")
    refused(cy, {"instance": INSTANCE, "runs": runs, "search": 1}, 400, "not both")
    refused(cy, {"instance": INSTANCE, "runs": []}, 400, "runs must be a list")
    refused(cy, {"instance": INSTANCE, "runs": [{"name": "fit", "version": "1"}]}, 400, "version")
    refused(cy, {"instance": INSTANCE, "runs": runs, "logdir": "/etc"}, 400, "Unknown field")
    refused(cy, {"instance": INSTANCE, "search": 999999}, 404, "No search 999999")
    refused(cy, {"instance": INSTANCE, "runs": runs * 21}, 400, "the 20 one TensorBoard may show")
    assert cy.api("GET", "tensorboards") == []  # nothing was made
    # refused requests are audited as failures
    events = hub.client().api("GET", "audit?event=createModelArtsTensorboardJob&limit=500")
    assert any(e["actor"] == USER and e["outcome"] == "failure" for e in events)


def test_too_many_running_is_a_conflict_until_one_stops(cy):
    body = {"instance": INSTANCE, "runs": [{"name": "fit", "version": 1}]}
    boards = [cy.api("POST", "tensorboards", body) for _ in range(5)]
    try:
        message = refused(cy, body, 409, "5 TensorBoards running", "stop one first")
        assert "POST /tensorboards/ID/stop" in message
        cy.api("POST", f"tensorboards/{boards[0]['id']}/stop")
        boards.append(cy.api("POST", "tensorboards", body))
        assert [b["state"] for b in cy.api("GET", "tensorboards")].count("running") == 5
    finally:
        for board in boards:
            cy.api("DELETE", f"tensorboards/{board['id']}")


def test_the_sdk_in_a_kernel_of_the_instance_starts_tensorboard_itself(cy, tmp_path, monkeypatch):
    """As in a notebook of the instance: its variables set, the work folder holding the
    owner's jobs (here a folder of the test with event files where the job's output is)."""
    monkeypatch.setenv("JUPYTERHUB_SERVER_NAME", INSTANCE)
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", f"/user/{USER}/{INSTANCE}/")
    writer = SummaryWriter(str(tmp_path / "jobs" / "fit" / "2" / "output"))
    writer.add_scalar("loss", 0.5, 0)
    writer.close()
    boards = SyncNamespace(Tensorboards(cy.aio))
    board = boards.open("fit/2", work_dir=tmp_path)
    try:
        assert board.url.startswith(f"/user/{USER}/{INSTANCE}/proxy/")
        port = int(board.url.rstrip("/").rsplit("/", 1)[1])
        local = f"http://127.0.0.1:{port}/data/plugin/scalars/tags"
        deadline = time.monotonic() + 60
        tags = {}
        while not tags and time.monotonic() < deadline:
            tags = requests.get(local, timeout=10).json()
            time.sleep(0.3)
        assert tags == {"fit-v2/.": {"loss": {"displayName": "loss", "description": ""}}}
        record = boards.get(board.id)
        assert record["instance"] == INSTANCE and record["state"] == "running"
        assert [r["label"] for r in record["runs"]] == ["fit-v2"]
        # in a notebook it shows as a frame of its url
        shown = object.__getattribute__(board, "_namespace")._repr_html_()
        assert shown.startswith(f'<iframe src="{board.url}"')
        stopped = board.stop()
        assert stopped.state == "stopped"
        with pytest.raises(requests.ConnectionError):
            requests.get(local, timeout=10)
    finally:
        board.delete()
    assert board.id not in [b["id"] for b in boards.list()]
