"""Team labelling against a real hub: an owner, two labellers and a reviewer in a workspace.
Samples are dealt round robin, each labeller labels only their share, the reviewer rejects
with a comment and the labeller fixes it, sampling acceptance decides on a labeller's whole
batch, and the progress per member says where everyone is."""

from __future__ import annotations

import pytest
from workbench import WorkbenchError

from tests.training_bridge.datasets.data_helpers import image, zip_of

OWNER, ANN, BEN, REV, OUT = "team-owner", "team-ann", "team-ben", "team-rev", "team-out"
D = f"datasets/{OWNER}/fruit"


@pytest.fixture(scope="module")
def team(hub):
    """The users by name, the first four members of workspace team-ws, and dataset "fruit"
    (8 unlabelled images) in that workspace."""
    clients = {name: hub.add_user(name) for name in (OWNER, ANN, BEN, REV, OUT)}
    hub.client().api("POST", "workspaces", {"name": "team-ws", "members": [OWNER, ANN, BEN, REV]})
    owner = clients[OWNER]
    owner.api(
        "POST",
        "datasets",
        {
            "name": "fruit",
            "type": "image_classification",
            "labels": ["apple", "pear"],
            "workspace": "team-ws",
        },
    )
    files = {f"f/{i}.png": image(color=(30 * i, 10, 200 - 20 * i)) for i in range(8)}
    r = owner.session.post(
        f"{owner.api_url}/{D}/samples",
        data=zip_of(files),
        headers={"Content-Type": "application/zip"},
        timeout=120,
    )
    assert r.status_code == 200, r.text
    return clients


def share(client, user: str, **filters) -> list[dict]:
    query = "&".join(f"{k}={v}" for k, v in {"assignee": user, **filters}.items())
    return client.api("GET", f"{D}/samples?{query}")["samples"]


def label_all(client, user: str, samples: list[dict], name: str) -> None:
    for s in samples:
        body = {"annotations": [{"label": name}]}
        answer = client.api("PUT", f"{D}/samples/{s['id']}/annotations", body)
        assert answer["status"] == "labelled" and answer["annotated_by"] == user


def progress(client) -> dict:
    return client.api("GET", f"{D}/tasks/round-1")["progress"]


def counts(assigned=0, labelled=0, to_review=0, accepted=0, rejected=0, reviewed=0) -> dict:
    return {
        "assigned": assigned,
        "labelled": labelled,
        "to_review": to_review,
        "accepted": accepted,
        "rejected": rejected,
        "reviewed": reviewed,
    }


def test_a_team_labels_reviews_and_accepts_by_sampling(hub, team):
    owner, ann, ben, rev, out = (team[n] for n in (OWNER, ANN, BEN, REV, OUT))
    for body, words in (
        ({"name": "t", "labellers": [ANN, OUT], "reviewers": [REV]}, "team-out cannot work"),
        ({"name": "t", "labellers": [], "reviewers": [REV]}, "at least one"),
        ({"name": "bad name", "labellers": [ANN]}, "needs a name"),
        ({"name": "t", "labellers": [ANN], "samples": {"ids": [999999]}}, "no sample 999999"),
    ):
        with pytest.raises(WorkbenchError) as e:
            owner.api("POST", f"{D}/tasks", body)
        assert e.value.status in (400, 404) and words in e.value.message, e.value.message
    with pytest.raises(WorkbenchError) as e:  # only the owner makes tasks
        ann.api("POST", f"{D}/tasks", {"name": "mine", "labellers": [ANN]})
    assert e.value.status == 403

    task = owner.api(
        "POST",
        f"{D}/tasks",
        {"name": "round-1", "labellers": [ANN, BEN], "reviewers": [REV], "description": "go"},
    )
    assert task["samples"] == 8 and task["state"] == "running"
    assert task["labellers"] == [ANN, BEN] and task["reviewers"] == [REV]
    assert task["progress"] == {
        ANN: counts(assigned=4),
        BEN: counts(assigned=4),
        REV: counts(),
    }
    with pytest.raises(WorkbenchError) as e:
        owner.api("POST", f"{D}/tasks", {"name": "round-2", "labellers": [ANN]})
    assert e.value.status == 409 and "free of other tasks" in e.value.message

    # each labeller sees their share, dealt round robin
    mine, his = share(ann, ANN), share(ben, BEN)
    assert len(mine) == len(his) == 4
    assert all(s["assignee"] == ANN and s["task"] == task["id"] for s in mine)
    ids = sorted(s["id"] for s in mine + his)
    assert [s["id"] for s in mine] == ids[0::2] and [s["id"] for s in his] == ids[1::2]
    with pytest.raises(WorkbenchError) as e:
        ben.api(
            "PUT", f"{D}/samples/{mine[0]['id']}/annotations", {"annotations": [{"label": "pear"}]}
        )
    assert e.value.status == 403 and f"assigned to {ANN}" in e.value.message
    with pytest.raises(WorkbenchError) as e:  # not in the workspace: the dataset is hidden
        out.api("GET", f"{D}/tasks")
    assert e.value.status == 404

    # labelled samples of a task with a reviewer wait for review
    label_all(ann, ANN, mine, "apple")
    label_all(ben, BEN, his, "pear")
    assert {s["review"] for s in share(ann, ANN)} == {"to_review"}
    assert progress(owner)[ANN] == counts(assigned=4, labelled=4, to_review=4)

    # the reviewer rejects one with a comment and accepts another; labellers cannot review
    decisions = {
        "samples": [
            {"id": mine[0]["id"], "accepted": False, "comment": "that is a pear"},
            {"id": mine[1]["id"], "accepted": True},
        ]
    }
    with pytest.raises(WorkbenchError) as e:
        ann.api("POST", f"{D}/tasks/round-1/review", decisions)
    assert e.value.status == 403 and "reviewers of task 'round-1'" in e.value.message
    reviewed = rev.api("POST", f"{D}/tasks/round-1/review", decisions)["samples"]
    assert [(s["review"], s["reviewed_by"]) for s in reviewed] == [
        ("rejected", REV),
        ("accepted", REV),
    ]
    back = share(ann, ANN, review="rejected")
    assert [(s["id"], s["review_comment"]) for s in back] == [(mine[0]["id"], "that is a pear")]
    # the labeller fixes it: up for review again
    label_all(ann, ANN, back, "pear")
    again = ann.api("GET", f"{D}/samples/{mine[0]['id']}")
    assert again["review"] == "to_review" and again["annotations"][0]["label"] == "pear"
    assert progress(owner)[ANN] == counts(assigned=4, labelled=4, to_review=3, accepted=1)

    # sampling acceptance: a share of ben's batch is drawn, then the whole batch accepted
    with pytest.raises(WorkbenchError) as e:
        rev.api("PATCH", f"{D}/tasks/round-1/sampling", {"labeller": BEN, "accepted": True})
    assert e.value.status == 409 and "start one" in e.value.message
    check = rev.api("POST", f"{D}/tasks/round-1/sampling", {"labeller": BEN, "ratio": 0.5})
    assert check["state"] == "running" and len(check["samples"]) == 2
    assert set(check["samples"]) <= {s["id"] for s in his}
    with pytest.raises(WorkbenchError) as e:
        rev.api("POST", f"{D}/tasks/round-1/sampling", {"labeller": REV, "ratio": 0.5})
    assert e.value.status == 400 and "one of the labellers" in e.value.message
    decided = rev.api("PATCH", f"{D}/tasks/round-1/sampling", {"labeller": BEN, "accepted": True})
    assert decided["state"] == "accepted" and decided["count"] == 4
    assert {s["review"] for s in share(ben, BEN)} == {"accepted"}
    # and ann's three waiting ones rejected together, with the reviewer's word
    rev.api("POST", f"{D}/tasks/round-1/sampling", {"labeller": ANN, "ratio": 1})
    rev.api(
        "PATCH",
        f"{D}/tasks/round-1/sampling",
        {"labeller": ANN, "accepted": False, "comment": "look again"},
    )
    rejected = share(ann, ANN, review="rejected")
    assert len(rejected) == 3 and {s["review_comment"] for s in rejected} == {"look again"}

    task = owner.api("GET", f"{D}/tasks/round-1")
    assert task["progress"] == {
        ANN: counts(assigned=4, labelled=4, accepted=1, rejected=3),
        BEN: counts(assigned=4, labelled=4, accepted=4),
        REV: counts(reviewed=8),
    }
    assert task["sampling"][BEN]["state"] == "accepted"
    assert task["sampling"][ANN]["comment"] == "look again"
    stats = owner.api("GET", f"{D}/stats")
    assert stats["accepted"] == 5 and stats["rejected"] == 3 and stats["labelled"] == 8

    # ben leaves: his samples go to ann; deleting the task releases them, labels kept
    task = owner.api("PATCH", f"{D}/tasks/round-1", {"labellers": [ANN]})
    assert task["progress"][ANN]["assigned"] == 8 and BEN not in task["progress"]
    owner.api("DELETE", f"{D}/tasks/round-1")
    samples = owner.api("GET", f"{D}/samples")["samples"]
    assert {(s["assignee"], s["task"], s["status"]) for s in samples} == {("", None, "labelled")}
    assert owner.api("GET", f"{D}/tasks") == []
    events = {
        e["event"]
        for e in hub.client().api("GET", "audit?resource_type=dataset&limit=500")
        if e["resource_id"].startswith(f"{OWNER}/fruit")
    }
    assert {
        "createWorkforceTask",
        "reviewSamples",
        "startWorkforceSamplingTask",
        "updateWorkforceSamplingTask",
        "updateWorkforceTask",
        "deleteWorkforceTask",
    } <= events
