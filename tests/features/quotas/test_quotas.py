"""Quotas against the real hub: atomic admission, limits on running resources, bad input."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from workbench import WorkbenchError


@pytest.fixture(scope="module")
def quinn(hub):
    return hub.add_user("quinn")


def test_twenty_concurrent_creates_against_a_quota_of_three_leave_three(hub, quinn):
    admin = hub.client()
    admin.api("PUT", "quotas/users/quinn", {"limits": {"instances": 3}})

    def create(i):
        try:
            quinn.create_instance(f"q{i}", start=False)
            return "ok"
        except WorkbenchError as e:
            return e.message

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(create, range(20)))
    assert results.count("ok") == 3, results
    assert all("Quota exceeded" in r for r in results if r != "ok")
    assert len(quinn.instances()) == 3
    quota = quinn.api("GET", "quotas/users/quinn")
    assert quota["usage"]["instances"] == 3 and quota["limits"]["instances"] == 3
    for i in range(20):
        try:
            quinn.delete_instance(f"q{i}")
        except WorkbenchError:
            pass


def test_running_quota_refuses_a_second_start_with_what_to_do(hub, quinn):
    admin = hub.client()
    admin.api("PUT", "quotas/users/quinn", {"limits": {"instances": 5, "running_instances": 1}})
    quinn.create_instance("run1", flavor="cpu.tiny")
    with pytest.raises(WorkbenchError) as e:
        quinn.create_instance("run2", flavor="cpu.tiny")
    assert e.value.status == 403
    assert "instances running at once would be 2" in e.value.message
    assert "Stop or delete an instance" in e.value.message
    assert [i["name"] for i in quinn.instances()] == ["run1"]  # nothing half-made
    quinn.create_instance("run2", flavor="cpu.tiny", start=False)
    with pytest.raises(WorkbenchError) as e:
        quinn.start_instance("run2")
    assert e.value.status == 403
    assert "instances running at once would be 2" in e.value.message
    assert quinn.instance("run2")["state"] == "stopped"
    quinn.stop_instance("run1")
    assert quinn.start_instance("run2")["state"] == "running"
    quinn.stop_instance("run2")
    for name in ("run1", "run2"):
        quinn.delete_instance(name)


@pytest.mark.parametrize(
    "limits, reason",
    [
        ({"instances": -1}, "cannot be negative"),
        ({"bananas": 3}, "Unknown quota"),
        ({"vcpus": "many"}, "must be a number"),
        ("five", "must be an object"),
    ],
)
def test_malformed_quotas_are_refused(hub, quinn, limits, reason):
    with pytest.raises(WorkbenchError) as e:
        hub.client().api("PUT", "quotas/users/quinn", {"limits": limits})
    assert e.value.status == 400 and reason in e.value.message


def test_users_cannot_set_their_own_quota(quinn):
    with pytest.raises(WorkbenchError) as e:
        quinn.api("PUT", "quotas/users/quinn", {"limits": {"instances": 100}})
    assert e.value.status == 403 and "custom:workbench:quotas:manage" in e.value.message
