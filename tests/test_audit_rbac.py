"""Audit events and permissions against the real hub and platform API."""

from __future__ import annotations

import time

import pytest

from hub.client import WorkbenchError


def events_for(admin, resource, expect=1, timeout=10, **filters):
    """The audit events of a resource, waiting until at least `expect` are stored."""
    deadline = time.monotonic() + timeout
    while True:
        events = admin.audit_events(resource=resource, **filters)
        if len(events) >= expect or time.monotonic() > deadline:
            return events
        time.sleep(0.2)


@pytest.fixture(scope="module")
def admin(hub):
    return hub.client()


@pytest.fixture(scope="module")
def carol(hub):
    return hub.add_user("carol")


def test_each_instance_operation_leaves_exactly_one_event(hub, admin, carol):
    carol.create_instance("audited", start=False, flavor="cpu.tiny")
    carol.update_instance("audited", flavor="cpu.small")
    carol.delete_instance("audited")
    events = events_for(admin, "carol/audited", expect=3)
    assert [e["event"] for e in reversed(events)] == [
        "createNotebook",
        "updateNotebook",
        "deleteNotebook",
    ]
    for e in events:
        assert e["actor"] == "carol"
        assert e["outcome"] == "success"
        assert e["resource_type"] == "notebook"
        assert e["source"] == "127.0.0.1"
    update = events[1]
    assert update["details"]["changed"]["flavor"] == {"from": "cpu.tiny", "to": "cpu.small"}
    assert update["reason"] == "flavor cpu.tiny -> cpu.small"


def test_failed_and_refused_operations_are_audited_with_their_outcome(hub, admin, carol):
    with pytest.raises(WorkbenchError):
        carol.create_instance("bad-flavor", flavor="cpu.huge", start=False)
    [failed] = events_for(admin, "carol/bad-flavor")
    assert (failed["event"], failed["outcome"]) == ("createNotebook", "failure")
    assert "cpu.huge" in failed["reason"]
    # another user's instance: refused, and no hint whether it exists
    with pytest.raises(WorkbenchError) as refused:
        carol.stop_instance("anything", user="admin")
    assert refused.value.status == 404
    [denied] = events_for(admin, "admin/anything")
    assert (denied["event"], denied["outcome"], denied["actor"]) == (
        "stopNotebook",
        "denied",
        "carol",
    )


def test_operations_through_the_hub_itself_are_audited(hub, admin, carol):
    carol.create_instance("via-hub", start=False)
    r = carol.session.post(f"{hub.url}/hub/api/users/carol/servers/via-hub", timeout=120)
    assert r.status_code in (201, 202), r.text
    carol.stop_instance("via-hub")  # through the platform API: its own one event
    r = carol.session.delete(
        f"{hub.url}/hub/api/users/carol/servers/via-hub", json={"remove": True}, timeout=60
    )
    assert r.status_code in (202, 204), r.text
    events = events_for(admin, "carol/via-hub", expect=4)
    assert [(e["event"], e["details"].get("via")) for e in reversed(events)] == [
        ("createNotebook", None),
        ("startNotebook", "hub"),
        ("stopNotebook", None),
        ("deleteNotebook", "hub"),
    ]


def test_admin_queries_export_and_verifies(hub, admin, carol):
    carol.create_instance("q1", start=False)
    events_for(admin, "carol/q1")
    assert all(e["actor"] == "carol" for e in admin.audit_events(user="carol"))
    assert admin.audit_events(event="createNotebook", resource="carol/q1")[0]["actor"] == "carol"
    lines = admin.audit_export(user="carol", since="-1h").strip().splitlines()
    assert lines and all('"actor": "carol"' in line for line in lines)
    assert admin.audit_verify()["ok"] is True
    page = hub.browser_session().get(f"{hub.url}/services/workbench/admin/audit?user=carol")
    assert page.status_code == 200 and "createNotebook" in page.text


@pytest.mark.parametrize(
    "params, reason",
    [
        ({"since": "yesterday"}, "is not a time"),
        ({"limit": "0"}, "limit must be between"),
        ({"outcome": "maybe"}, "outcome must be one of"),
        ({"colour": "red"}, "Unknown filter"),
        ({"since": "-1h", "until": "-2h"}, "'since' must be before 'until'"),
    ],
)
def test_malformed_audit_queries_are_refused(admin, params, reason):
    with pytest.raises(WorkbenchError) as e:
        admin.audit_events(**params)
    assert e.value.status == 400 and reason in e.value.message


def test_users_cannot_read_the_audit_log(hub, carol):
    with pytest.raises(WorkbenchError) as e:
        carol.audit_events()
    assert e.value.status == 403 and "custom:workbench:audit:read" in e.value.message
    page = hub.browser_session("carol", hub.passwords["carol"]).get(
        f"{hub.url}/services/workbench/admin/audit"
    )
    assert page.status_code == 403


def test_viewer_sees_but_cannot_change(hub, admin, carol):
    viewer = hub.add_user("victor")
    carol.create_instance("shown", start=False)
    # an admin moves victor from the users' group to the viewers' group
    admin.hub("DELETE", "groups/workbench-users/users", {"users": ["victor"]})
    admin.hub("POST", "groups/workbench-viewers/users", {"users": ["victor"]})
    viewer.login("victor", hub.passwords["victor"])  # a new token with the new scopes
    assert viewer.instances() == []
    with pytest.raises(WorkbenchError) as e:
        viewer.create_instance("mine", start=False)
    assert e.value.status == 403
    assert "custom:workbench:instances:create" in e.value.message
    [denied] = events_for(admin, "victor/mine")
    assert denied["outcome"] == "denied"
    # the UI: the spawn form refuses too
    s = hub.browser_session("victor", hub.passwords["victor"])
    s.get(f"{hub.url}/hub/spawn/victor/mine")
    r = s.post(
        f"{hub.url}/hub/spawn/victor/mine",
        data={"image": "python", "flavor": "cpu.tiny", "_xsrf": s.cookies.get("_xsrf")},
    )
    assert "custom:workbench:instances:start" in r.text
    assert viewer.hub("GET", "users/victor")["servers"].get("mine", {}).get("ready") is not True
    # and new users land in the users' group with everyday permissions
    groups = admin.hub("GET", "users/carol")["groups"]
    assert "workbench-users" in groups
