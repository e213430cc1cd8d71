"""Usage metering: running periods of instances, resource-seconds per user and day, cost."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from datetime import UTC, datetime, timedelta

from sqlalchemy import DateTime, Float, Integer, String, select
from sqlalchemy.orm import Mapped, mapped_column
from workbench.times import utcnow

from hub.db.core import Base


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC).replace(tzinfo=None)


class UsagePeriod(Base):
    """One period an instance ran with one flavor; `stopped` is empty while it runs."""

    __tablename__ = "usage_periods"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user: Mapped[str] = mapped_column(String(255), index=True)
    instance: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16), default="instance")  # later: job, service
    workspace: Mapped[str] = mapped_column(String(32), default="default", index=True)
    flavor: Mapped[str] = mapped_column(String(64))
    vcpus: Mapped[float] = mapped_column(Float)
    memory_gib: Mapped[float] = mapped_column(Float)
    gpus: Mapped[int] = mapped_column(Integer)
    started: Mapped[datetime] = mapped_column(DateTime, index=True)
    stopped: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class UsageRecorder:
    """Opens and closes running periods (called by the spawner in worker threads)."""

    def __init__(self, db):
        self.db = db

    def open(self, user: str, name: str, resources: dict, when: float, kind: str = "instance"):
        with self.db.session() as session:
            # a period left open (the hub died before it could close it) ends now
            self._close_open(session, user, name, _utc(when))
            session.add(
                UsagePeriod(
                    user=user,
                    instance=name,
                    kind=kind,
                    flavor=resources.get("flavor", "unknown"),
                    vcpus=resources.get("vcpus", 0),
                    memory_gib=resources.get("memory_gib", 0),
                    gpus=resources.get("gpus", 0),
                    workspace=resources.get("workspace") or "default",
                    started=_utc(when),
                )
            )

    def close(self, user: str, name: str, when: float):
        with self.db.session() as session:
            self._close_open(session, user, name, _utc(when))

    @staticmethod
    def _close_open(session, user, name, when):
        q = select(UsagePeriod).where(
            UsagePeriod.user == user, UsagePeriod.instance == name, UsagePeriod.stopped.is_(None)
        )
        for period in session.scalars(q):
            period.stopped = max(when, period.started)


def _split_by_day(start: datetime, end: datetime):
    """(day, seconds) pieces of [start, end) cut at UTC midnights."""
    while start < end:
        midnight = datetime(start.year, start.month, start.day) + timedelta(days=1)
        piece_end = min(end, midnight)
        yield start.date().isoformat(), (piece_end - start).total_seconds()
        start = piece_end


def usage_report(
    session,
    since: datetime,
    until: datetime,
    user: str | None = None,
    prices: dict | None = None,
    now: datetime | None = None,
    workspace: str | None = None,
) -> list[dict]:
    """Rows per user, workspace, day, flavor and kind (instance or job): seconds, vCPU-,
    GiB- and GPU-seconds, cost.

    Periods are clipped to [since, until); a running period counts up to now. prices maps a
    flavor name to its price per hour.
    """
    now = now or utcnow()
    prices = prices or {}
    q = select(UsagePeriod).where(UsagePeriod.started < until)
    if user:
        q = q.where(UsagePeriod.user == user)
    if workspace:
        q = q.where(UsagePeriod.workspace == workspace)
    totals = defaultdict(lambda: defaultdict(float))
    for p in session.scalars(q):
        end = min(p.stopped or now, until)
        start = max(p.started, since)
        if end <= start:
            continue
        for day, seconds in _split_by_day(start, end):
            row = totals[(p.user, p.workspace, day, p.flavor, p.kind or "instance")]
            row["seconds"] += seconds
            row["vcpu_seconds"] += seconds * p.vcpus
            row["memory_gib_seconds"] += seconds * p.memory_gib
            row["gpu_seconds"] += seconds * p.gpus
            instances = row.setdefault("instances", set())
            instances.add(p.instance)
    rows = []
    for (u, ws, day, flavor, kind), row in sorted(totals.items()):
        price = prices.get(flavor)
        rows.append(
            {
                "user": u,
                "workspace": ws,
                "day": day,
                "flavor": flavor,
                "instances": sorted(row["instances"]),
                "seconds": round(row["seconds"], 3),
                "vcpu_seconds": round(row["vcpu_seconds"], 3),
                "memory_gib_seconds": round(row["memory_gib_seconds"], 3),
                "gpu_seconds": round(row["gpu_seconds"], 3),
                "cost": None if price is None else round(row["seconds"] / 3600 * price, 6),
                # what ran: instances, or job nodes ("<job>/<version>/node-<rank>")
                "kind": kind,
            }
        )
    return rows


CSV_FIELDS = [
    "user",
    "workspace",
    "day",
    "flavor",
    "instances",
    "seconds",
    "vcpu_seconds",
    "memory_gib_seconds",
    "gpu_seconds",
    "cost",
    "kind",
]


def to_csv(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, CSV_FIELDS)
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "instances": " ".join(row["instances"])})
    return out.getvalue()
