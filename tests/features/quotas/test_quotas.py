"""Quotas against the real hub: atomic admission, limits on running resources, bad input.

Each test sets the limits it needs and sets them back after; concurrent *starts* against
the running quota are in tests/security/test_quotas.py.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml
from workbench import WorkbenchError

from spawner.flavors import DEFAULT_FLAVORS
from tests.platform import running_hub


@pytest.fixture(scope="module")
def quinn(hub):
    return hub.add_user("quinn")


@pytest.fixture
def set_limits(hub, quinn):
    """Set quinn's limits for one test; they are gone after it."""
    admin = hub.client()
    yield lambda **values: admin.api("PUT", "quotas/users/quinn", {"limits": values})
    admin.api("PUT", "quotas/users/quinn", {"limits": {}})


def test_twenty_concurrent_creates_against_a_quota_of_three_leave_three(hub, quinn, set_limits):
    set_limits(instances=3)

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


def test_running_quota_refuses_a_second_start_with_what_to_do(hub, quinn, set_limits):
    set_limits(instances=5, running_instances=1)
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
    "quota, flavor, would_be",
    [
        ({"vcpus": 0.25}, "cpu.tiny", "vCPUs of running instances would be 0.5"),
        ({"vcpus": 1.5}, "cpu.medium", "vCPUs of running instances would be 2"),
        ({"memory_gib": 0.5}, "cpu.tiny", "memory of running instances, GiB would be 1"),
        ({"memory_gib": 4}, "cpu.medium", "memory of running instances, GiB would be 8"),
    ],
)
def test_a_start_over_the_vcpu_or_memory_quota_is_refused(
    hub, quinn, set_limits, quota, flavor, would_be
):
    """The flavor's vCPUs and memory count against the quota before anything starts."""
    set_limits(**quota)
    with pytest.raises(WorkbenchError) as e:
        quinn.create_instance("big", flavor=flavor, storage_gib=1)
    assert e.value.status == 403, e.value.message
    limit = next(iter(quota.values()))
    assert f"{would_be}, over quinn's limit of {limit:g}" in e.value.message, e.value.message
    assert "big" not in [i["name"] for i in quinn.instances()]  # nothing half-made


def test_storage_quota_counts_every_instance_running_or_not(hub, quinn, set_limits):
    set_limits(storage_gib=5)
    quinn.create_instance("disk1", storage_gib=3, start=False)
    try:
        with pytest.raises(WorkbenchError) as e:
            quinn.create_instance("disk2", storage_gib=3, start=False)
        assert e.value.status == 403
        assert "storage of all instances, GiB would be 6, over quinn's limit of 5" in (
            e.value.message
        )
        assert [i["name"] for i in quinn.instances()] == ["disk1"]
        quinn.create_instance("disk2", storage_gib=2, start=False)  # exactly the limit
    finally:
        for name in ("disk1", "disk2"):
            if name in [i["name"] for i in quinn.instances()]:
                quinn.delete_instance(name)


def test_gpu_quota_counts_the_flavors_gpus(engine, base_image, tmp_path):
    """On a hub of its own, with a flavor of two GPUs: against a quota of one GPU it is
    refused before anything starts (this machine need not have a GPU for that)."""
    flavors = tmp_path / "flavors.yaml"
    raw = yaml.safe_load(DEFAULT_FLAVORS.read_text())
    raw["flavors"].append({"name": "gpu.two", "cpu": 0.5, "memory": "1Gi", "gpu": 2})
    flavors.write_text(yaml.safe_dump(raw))
    (tmp_path / "hub").mkdir()
    settings = f'flavors_path = "{flavors}"'
    with running_hub(tmp_path / "hub", engine.url, "gpu quota", extra_settings=settings) as h:
        gus = h.add_user("gus")
        h.client().api("PUT", "quotas/users/gus", {"limits": {"gpus": 1}})
        with pytest.raises(WorkbenchError) as e:
            gus.create_instance("twin", flavor="gpu.two", storage_gib=1)
        assert e.value.status == 403, e.value.message
        assert "GPUs of running instances would be 2, over gus's limit of 1" in e.value.message
        assert gus.instances() == []


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
