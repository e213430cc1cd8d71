"""Audit events and permissions against the real hub and platform API."""

from __future__ import annotations

import time

import pytest
from workbench import WorkbenchError


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
def audra(hub):
    return hub.add_user("audra")


def test_each_instance_operation_leaves_exactly_one_event(hub, admin, audra):
    audra.create_instance("audited", start=False, flavor="cpu.tiny")
    audra.update_instance("audited", flavor="cpu.small")
    audra.delete_instance("audited")
    events = events_for(admin, "audra/audited", expect=3)
    assert [e["event"] for e in reversed(events)] == [
        "createNotebook",
        "updateNotebook",
        "deleteNotebook",
    ]
    for e in events:
        assert e["actor"] == "audra"
        assert e["outcome"] == "success"
        assert e["resource_type"] == "notebook"
        assert e["source"] == "127.0.0.1"
    update = events[1]
    assert update["details"]["changed"]["flavor"] == {"from": "cpu.tiny", "to": "cpu.small"}
    assert update["reason"] == "flavor cpu.tiny -> cpu.small"


def test_failed_and_refused_operations_are_audited_with_their_outcome(hub, admin, audra):
    with pytest.raises(WorkbenchError) as e:
        audra.create_instance("bad-flavor", flavor="cpu.huge", start=False)
    assert e.value.status == 400 and "Unknown flavor 'cpu.huge'" in e.value.message
    [failed] = events_for(admin, "audra/bad-flavor")
    assert (failed["event"], failed["outcome"]) == ("createNotebook", "failure")
    assert "cpu.huge" in failed["reason"]
    # another user's instance: refused, and no hint whether it exists
    with pytest.raises(WorkbenchError) as refused:
        audra.stop_instance("anything", user="admin")
    assert refused.value.status == 404
    [denied] = events_for(admin, "admin/anything")
    assert (denied["event"], denied["outcome"], denied["actor"]) == (
        "stopNotebook",
        "denied",
        "audra",
    )


def test_operations_through_the_hub_itself_are_audited(hub, admin, audra):
    audra.create_instance("via-hub", start=False)
    r = audra.session.post(f"{hub.url}/hub/api/users/audra/servers/via-hub", timeout=120)
    assert r.status_code in (201, 202), r.text
    audra.stop_instance("via-hub")  # through the platform API: its own one event
    r = audra.session.delete(
        f"{hub.url}/hub/api/users/audra/servers/via-hub", json={"remove": True}, timeout=60
    )
    assert r.status_code in (202, 204), r.text
    events = events_for(admin, "audra/via-hub", expect=4)
    assert [(e["event"], e["details"].get("via")) for e in reversed(events)] == [
        ("createNotebook", None),
        ("startNotebook", "hub"),
        ("stopNotebook", None),
        ("deleteNotebook", "hub"),
    ]


def test_admin_queries_export_and_verifies(hub, admin, audra):
    audra.create_instance("q1", start=False)
    events_for(admin, "audra/q1")
    assert all(e["actor"] == "audra" for e in admin.audit_events(user="audra"))
    assert admin.audit_events(event="createNotebook", resource="audra/q1")[0]["actor"] == "audra"
    lines = admin.audit_export(user="audra", since="-1h").strip().splitlines()
    assert lines and all('"actor": "audra"' in line for line in lines)
    assert admin.audit_verify()["ok"] is True
    page = hub.browser_session().get(f"{hub.url}/services/workbench/admin/audit?user=audra")
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


def test_users_cannot_read_the_audit_log(hub, audra):
    with pytest.raises(WorkbenchError) as e:
        audra.audit_events()
    assert e.value.status == 403 and "custom:workbench:audit:read" in e.value.message
    page = hub.browser_session("audra", hub.passwords["audra"]).get(
        f"{hub.url}/services/workbench/admin/audit"
    )
    assert page.status_code == 403


def test_viewer_sees_but_cannot_change(hub, admin, audra):
    viewer = hub.add_user("victor")
    audra.create_instance("shown", start=False)
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
    groups = admin.hub("GET", "users/audra")["groups"]
    assert "workbench-users" in groups
