"""Attacks on the audit log: a forged source address, names that read two ways, and a crash
between the platform's answer and its record. Against the session hub of conftest.py."""

from __future__ import annotations

import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from workbench import WorkbenchError

pytestmark = pytest.mark.integration

FORGED = {"X-Real-Ip": "203.0.113.66", "X-Forwarded-For": "198.51.100.7, 192.0.2.1"}


def events(hub, **filters) -> list[dict]:
    query = "&".join(f"{k}={v}" for k, v in filters.items())
    return hub.client().api("GET", f"audit?{query}")


def refused(call, *args) -> int:
    """Status of a call that must be refused."""
    with pytest.raises(WorkbenchError) as info:
        call(*args)
    return info.value.status


def test_forged_source_address_is_not_recorded(hub):
    """The attacker sends X-Real-Ip and X-Forwarded-For naming other addresses with a request
    to the platform API and one to JupyterHub's API (each refused, each audited), hoping the
    log blames someone else. Both events record the address the proxy saw: this machine."""
    forger = hub.add_user("forger")
    forger.headers.update(FORGED)
    assert refused(forger.api, "DELETE", "users/admin/instances/nope") == 404
    assert refused(forger.hub, "DELETE", "users/admin/servers/nope") in (403, 404)
    found = events(hub, user="forger", resource="admin/")
    assert {e["event"] for e in found} == {"deleteNotebook", "stopNotebook"}, found
    assert {e["source"] for e in found} == {"127.0.0.1"}, found


def open_instance(hub, user: str, name: str):
    """Open an instance's JupyterLab in a signed-in browser session (the OAuth dance)."""
    session = hub.browser_session(user, hub.passwords[user])
    r = session.get(f"{hub.url}/user/{user}/{name}/lab", timeout=60)
    assert r.status_code == 200 and f"/user/{user}/{name}/oauth_callback" in " ".join(
        h.url for h in r.history
    ), [h.url for h in r.history]


def test_open_notebook_names_hyphenated_users_exactly(hub):
    """Opening user a-b's instance c-d, and user a's instance b-c-d, must be audited with
    the user who opened it and the instance opened, not a split of an OAuth client name
    (JupyterHub's jupyterhub-user-a-b-c-d reads as a-b-c/d, or as either of the two)."""
    opened = []
    for user, name in (("a-b", "c-d"), ("a", "b-c-d")):
        client = hub.add_user(user)
        client.create_instance(name, image="python", flavor="cpu.small")
        try:
            open_instance(hub, user, name)
        finally:
            client.stop_instance(name)
        opened += [
            (e["actor"], e["resource_id"], e["outcome"])
            for e in events(hub, event="openNotebook", user=user)
        ]
    assert sorted(set(opened)) == [("a", "a/b-c-d", "success"), ("a-b", "a-b/c-d", "success")]


@pytest.mark.parametrize("via", ["platform API", "hub API"])
def test_event_is_stored_before_the_answer(hub, via):
    """A platform that dies right after answering must not lose the event. The test holds
    the platform database's write lock while the attacker's refused request is handled: the
    answer does not come until the event could be written, and when it comes the event is
    already in the database (read at once, no waiting)."""
    user = "hasty-" + via.split()[0]
    client = hub.add_user(user)
    if via == "platform API":
        call = (client.api, "DELETE", "users/admin/instances/nope")
        expected = ("deleteNotebook", "admin/nope")
    else:
        call = (client.hub, "DELETE", "users/admin/servers/nope")
        expected = ("stopNotebook", "admin/nope")
    db = sqlite3.connect(hub.root / "data" / "workbench.sqlite", timeout=30, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")  # the write lock every audit append needs
        with ThreadPoolExecutor(1) as pool:
            answer = pool.submit(refused, *call)
            time.sleep(2)
            assert not answer.done(), "answered before the event was stored"
            db.execute("ROLLBACK")
            assert answer.result(timeout=60) in (403, 404)
        rows = db.execute(
            "SELECT event, resource_id, outcome FROM audit_events WHERE actor = ?", (user,)
        ).fetchall()
    finally:
        db.close()
    assert rows == [(*expected, "denied")], rows
