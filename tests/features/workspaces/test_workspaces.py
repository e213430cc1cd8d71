"""Workspaces against the real hub: membership, isolation, switching, quotas, bad input.

Each test stands alone: gina's "bert" in nlp is the team's from the start, and whatever
instances a test makes are removed after it.
"""

from __future__ import annotations

import pytest
from workbench import WorkbenchError


@pytest.fixture(scope="module")
def team(hub):
    """nlp (gina, ivy) with gina's stopped instance "bert", and cv (hank)."""
    admin = hub.client()
    gina, hank, ivy = (hub.add_user(n) for n in ("gina", "hank", "ivy"))
    admin.api("POST", "workspaces", {"name": "nlp", "members": ["gina", "ivy"]})
    admin.api("POST", "workspaces", {"name": "cv", "description": "vision", "members": ["hank"]})
    create(gina, "bert", "nlp")
    yield admin, gina, hank, ivy
    for client in (gina, hank, ivy):
        remove_instances(client, [i["name"] for i in client.instances()])


@pytest.fixture(autouse=True)
def leaves_only_its_team(team):
    """What a test creates goes after it, so that no test finds another's instances."""
    before = [(client, {i["name"] for i in client.instances()}) for client in team[1:]]
    yield
    for client, names in before:
        remove_instances(client, [i["name"] for i in client.instances() if i["name"] not in names])


def remove_instances(client, names):
    for name in names:
        if client.instance(name)["state"] != "stopped":
            client.stop_instance(name)
        client.delete_instance(name)


def create(client, name, workspace):
    return client.api(
        "POST",
        f"users/{client.whoami()['name']}/instances",
        {"name": name, "workspace": workspace, "start": False},
    )


def test_members_switch_between_their_workspaces(team):
    admin, gina, hank, ivy = team
    assert [w["name"] for w in gina.api("GET", "workspaces")] == ["default", "nlp"]
    create(gina, "scratch", "default")
    assert [i["name"] for i in gina.api("GET", "users/gina/instances?workspace=nlp")] == ["bert"]
    assert [i["name"] for i in gina.api("GET", "users/gina/instances?workspace=default")] == [
        "scratch"
    ]
    assert gina.instance("bert")["workspace"] == "nlp"
    # members see each other's instances in the workspace
    seen = ivy.api("GET", "workspaces/nlp/instances")
    assert [(i["owner"], i["name"]) for i in seen] == [("gina", "bert")]


def test_workspaces_are_isolated(team):
    admin, gina, hank, ivy = team
    create(hank, "yolo", "cv")
    for path in ("workspaces/nlp", "workspaces/nlp/instances", "quotas/workspaces/nlp"):
        with pytest.raises(WorkbenchError) as e:
            hank.api("GET", path)
        assert e.value.status == 404 and "No workspace 'nlp' of yours" in e.value.message
    with pytest.raises(WorkbenchError) as e:
        create(hank, "sneak", "nlp")
    assert e.value.status == 404 and "No workspace 'nlp' of yours" in e.value.message
    assert [i["name"] for i in hank.instances()] == ["yolo"]  # nothing half-made
    assert [i["name"] for i in gina.api("GET", "workspaces/nlp/instances")] == ["bert"]
    with pytest.raises(WorkbenchError) as e:
        gina.api("GET", "workspaces/cv/instances")
    assert e.value.status == 404 and "No workspace 'cv' of yours" in e.value.message
    # the spawn page holds users to the same rule
    s = gina.session
    r = s.post(
        f"{gina.url}/hub/api/users/gina/servers/viaform", json={"workspace": "cv"}, timeout=60
    )
    assert r.status_code == 404 and "No workspace 'cv' of yours" in r.text


def test_an_instance_stays_in_its_workspace(team):
    admin, gina, *_ = team
    create(gina, "fixed", "nlp")
    with pytest.raises(WorkbenchError) as e:
        gina.update_instance("fixed", workspace="default")
    assert e.value.status == 400 and "stays in the workspace" in e.value.message


def test_workspace_quota_counts_every_member(team):
    admin, gina, hank, ivy = team
    admin.api("PUT", "quotas/workspaces/nlp", {"limits": {"instances": 3}})
    try:
        have = len(admin.api("GET", "workspaces/nlp/instances"))
        for i in range(3 - have):
            create(ivy, f"ivy{i}", "nlp")
        with pytest.raises(WorkbenchError) as e:
            create(gina, "one-more", "nlp")
        assert e.value.status == 403 and "workspace nlp's limit of 3" in e.value.message
        quota = gina.api("GET", "quotas/workspaces/nlp")
        assert quota["usage"]["instances"] == 3
        create(gina, "one-more", "default")  # other workspaces are not counted
    finally:
        admin.api("PUT", "quotas/workspaces/nlp", {"limits": {}})


@pytest.mark.parametrize(
    "body, status, reason",
    [
        ({"name": "NLP"}, 400, "Invalid workspace name"),
        ({"name": "nlp"}, 409, "already exists"),
        ({"name": "default"}, 409, "already exists"),
        ({"name": "x", "members": "gina"}, 400, "list of user names"),
        ({"name": "y", "owner": "gina"}, 400, "Unknown field"),
    ],
)
def test_bad_workspace_requests_are_refused(team, body, status, reason):
    admin = team[0]
    with pytest.raises(WorkbenchError) as e:
        admin.api("POST", "workspaces", body)
    assert e.value.status == status and reason in e.value.message
    assert "x" not in [w["name"] for w in admin.api("GET", "workspaces?all=1")]


def test_only_administrators_manage_workspaces(team):
    admin, gina, *_ = team
    with pytest.raises(WorkbenchError) as e:
        gina.api("POST", "workspaces", {"name": "mine"})
    assert e.value.status == 403 and "custom:workbench:workspaces:manage" in e.value.message
    with pytest.raises(WorkbenchError) as e:
        admin.api("DELETE", "workspaces/default")
    assert e.value.status == 400 and "always exists" in e.value.message
    with pytest.raises(WorkbenchError) as e:
        admin.api("DELETE", "workspaces/nlp")
    assert e.value.status == 409 and "gina/bert" in e.value.message
    admin.api("POST", "workspaces", {"name": "empty"})
    admin.api("DELETE", "workspaces/empty")
    assert "empty" not in [w["name"] for w in admin.api("GET", "workspaces?all=1")]


def test_images_saved_in_a_workspace_belong_to_it(team):
    admin, gina, hank, ivy = team
    gina.api(
        "POST",
        "users/gina/instances",
        {"name": "src", "workspace": "nlp", "flavor": "cpu.tiny"},
    )
    status = gina.save_instance("src", "nlp-base", "v1", wait=True)
    saved = status["image"]["name"]
    assert status["image"]["workspace"] == "nlp"
    gina.stop_instance("src")

    def names(client, **params):
        query = "&".join(f"{k}={v}" for k, v in params.items())
        return [i["name"] for i in client.api("GET", f"images?{query}")]

    # a member of the workspace sees it and can start from it; others cannot
    assert saved in names(ivy, workspace="nlp")
    assert saved not in names(ivy, workspace="default")
    ivy.api(
        "POST",
        "users/ivy/instances",
        {"name": "from-nlp", "workspace": "nlp", "image": saved, "start": False},
    )
    assert saved not in names(hank)
    assert saved not in names(hank, workspace="nlp")
    with pytest.raises(WorkbenchError) as e:
        hank.api("POST", "users/hank/instances", {"name": "steal", "image": saved})
    assert e.value.status == 400 and "not shared with you" in e.value.message
    assert "steal" not in [i["name"] for i in hank.instances()]
    ivy.delete_instance("from-nlp")
    gina.delete_instance("src")  # its image goes after the instances made from it
    gina.delete_image("nlp-base", "v1")
