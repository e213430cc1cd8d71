"""Usage metering: periods split by day, cost from the price table, and a real start/stop."""

from __future__ import annotations

import time
from datetime import datetime

import pytest
from workbench import WorkbenchError

from features.usage.store import UsageRecorder, to_csv, usage_report
from hub.db import Database, upgrade


@pytest.fixture
def db(tmp_path):
    url = f"sqlite:///{tmp_path / 'wb.sqlite'}"
    upgrade(url)
    db = Database(url)
    yield db
    db.dispose()


def ts(text: str) -> float:
    return datetime.fromisoformat(text + "+00:00").timestamp()


def test_periods_are_split_at_midnight_and_priced(db):
    rec = UsageRecorder(db)
    small = {"flavor": "cpu.small", "vcpus": 1, "memory_gib": 2, "gpus": 0}
    rec.open("alice", "nb", small, ts("2026-11-01T23:00:00"))
    rec.close("alice", "nb", ts("2026-11-02T01:30:00"))
    rows = db.call(
        lambda s: usage_report(
            s,
            datetime(2026, 11, 1),
            datetime(2026, 11, 3),
            prices={"cpu.small": 0.5},
        )
    )
    assert [(r["day"], r["seconds"], r["memory_gib_seconds"], r["cost"]) for r in rows] == [
        ("2026-11-01", 3600.0, 7200.0, 0.5),
        ("2026-11-02", 5400.0, 10800.0, 0.75),
    ]
    assert to_csv(rows).splitlines()[1].startswith("alice,default,2026-11-01,cpu.small,nb,3600.0")


def test_usage_is_aggregated_per_workspace(db):
    rec = UsageRecorder(db)
    tiny = {"flavor": "cpu.tiny", "vcpus": 0.5, "memory_gib": 1, "gpus": 0}
    rec.open("amy", "a", {**tiny, "workspace": "nlp"}, ts("2026-11-03T10:00:00"))
    rec.open("amy", "b", tiny, ts("2026-11-03T10:00:00"))
    rec.close("amy", "a", ts("2026-11-03T11:00:00"))
    rec.close("amy", "b", ts("2026-11-03T10:30:00"))
    rows = db.call(lambda s: usage_report(s, datetime(2026, 11, 3), datetime(2026, 11, 4)))
    assert {(r["workspace"], r["seconds"]) for r in rows} == {("nlp", 3600.0), ("default", 1800.0)}
    only = db.call(
        lambda s: usage_report(s, datetime(2026, 11, 3), datetime(2026, 11, 4), workspace="nlp")
    )
    assert [r["instances"] for r in only] == [["a"]]


def test_a_period_left_open_by_a_dead_hub_ends_at_the_next_start(db):
    rec = UsageRecorder(db)
    gpu = {"flavor": "gpu.t4", "vcpus": 4, "memory_gib": 16, "gpus": 1}
    rec.open("bob", "train", gpu, ts("2026-11-05T10:00:00"))
    rec.open("bob", "train", gpu, ts("2026-11-05T11:00:00"))
    rec.close("bob", "train", ts("2026-11-05T11:30:00"))
    [row] = db.call(
        lambda s: usage_report(s, datetime(2026, 11, 5), datetime(2026, 11, 6), user="bob")
    )
    assert (row["seconds"], row["gpu_seconds"], row["cost"]) == (5400.0, 5400.0, None)


def test_metering_of_a_start_stop_sequence_matches_wall_clock(hub):
    mona = hub.add_user("mona")
    t0 = time.time()
    mona.create_instance("metered", flavor="cpu.tiny")
    t1 = time.time()
    time.sleep(3)
    t2 = time.time()
    mona.stop_instance("metered")
    t3 = time.time()
    report = mona.api("GET", "usage", params={"since": "-1h"})
    [row] = [r for r in report["rows"] if r["user"] == "mona"]
    # the period runs from the container's start to its stop, both inside the API calls
    assert (t2 - t1) - 1 <= row["seconds"] <= (t3 - t0) + 1
    assert row["flavor"] == "cpu.tiny" and row["instances"] == ["metered"]
    assert row["vcpu_seconds"] == pytest.approx(row["seconds"] * 0.5, rel=1e-3)
    csv_text = mona.session.get(
        f"{mona.api_url}/usage", params={"format": "csv", "since": "-1h"}, timeout=30
    ).text
    assert csv_text.startswith("user,workspace,day,flavor") and "mona" in csv_text
    mona.delete_instance("metered")


def test_users_see_only_their_own_usage_and_admins_see_everyones(hub):
    milo, mira = hub.add_user("milo"), hub.add_user("mira")
    milo.create_instance("milo-nb", flavor="cpu.tiny")
    mira.create_instance("mira-nb", flavor="cpu.tiny")
    try:
        # a running period counts up to now: both users have usage in the last hour
        own = milo.api("GET", "usage", params={"since": "-1h"})["rows"]
        assert own and {r["user"] for r in own} == {"milo"}
        assert {i for r in own for i in r["instances"]} == {"milo-nb"}
        for params in ({"user": "mira"}, {"user": "admin"}):
            with pytest.raises(WorkbenchError) as e:
                milo.api("GET", "usage", params={"since": "-1h", **params})
            assert e.value.status == 403 and "only your own usage" in e.value.message
        admin = hub.client()
        everyone = admin.api("GET", "usage", params={"since": "-1h"})["rows"]
        instances = {(r["user"], i) for r in everyone for i in r["instances"]}
        assert {("milo", "milo-nb"), ("mira", "mira-nb")} <= instances
        [mira_row] = admin.api("GET", "usage", params={"since": "-1h", "user": "mira"})["rows"]
        assert (mira_row["user"], mira_row["instances"]) == ("mira", ["mira-nb"])
        assert mira_row["seconds"] > 0
    finally:
        for client, name in ((milo, "milo-nb"), (mira, "mira-nb")):
            client.stop_instance(name)
            client.delete_instance(name)


def test_bad_usage_queries_are_refused(hub):
    mick = hub.add_user("mick")
    for params, reason in (
        ({"since": "soon"}, "is not a time"),
        ({"since": "-1h", "until": "-2h"}, "must be before"),
        ({"format": "xml"}, "format must be"),
        ({"since": "-400d"}, "at most 366 days"),
    ):
        with pytest.raises(WorkbenchError) as e:
            mick.api("GET", "usage", params=params)
        assert e.value.status == 400 and reason in e.value.message
