"""Writing, querying, pruning and verifying the audit log."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from jupyter_events import EventLogger
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session
from workbench.times import utcnow

from .models import GENESIS, AuditEvent, AuditHead

log = logging.getLogger("workbench.audit")

SCHEMA_ID = "https://schema.ai-workbench.dev/events/audit"
SCHEMA_FILE = Path(__file__).parent / "schemas" / "audit-v1.yaml"
OUTCOMES = ("success", "failure", "denied")


def append(session: Session, data: dict, when: datetime | None = None) -> AuditEvent:
    """Append one event to the chain in session's transaction.

    The head row is updated first, which takes the write lock (a row lock on PostgreSQL, the
    database lock on SQLite), so concurrent writers from any process append one at a time.
    """
    session.execute(update(AuditHead).where(AuditHead.id == 1).values(seq=AuditHead.seq + 1))
    head = session.get(AuditHead, 1, populate_existing=True)
    if head is None:  # a database older than the head row's migration
        head = AuditHead(id=1, seq=1, hash=GENESIS)
        session.add(head)
    event = AuditEvent(
        time=when or utcnow(),
        event=data["event"],
        actor=data["actor"],
        source=data.get("source") or "",
        resource_type=data["resource_type"],
        resource_id=data["resource_id"],
        outcome=data["outcome"],
        reason=(data.get("reason") or "")[:2000],
        details=json.dumps(data.get("details") or {}, sort_keys=True),
        prev_hash=head.hash,
        hash="",
    )
    session.add(event)
    session.flush()  # assigns the id, which is part of the hashed content
    event.hash = event.compute_hash()
    head.hash = event.hash
    return event


def verify_chain(session: Session) -> tuple[int, list[str]]:
    """Check every stored event against its hash and its predecessor's.

    Returns (events checked, problems); no problems means the log is intact. Events pruned by
    retention are gone, so the chain is checked from the oldest one kept.
    """
    problems = []
    previous: AuditEvent | None = None
    count = 0
    head = session.get(AuditHead, 1)
    for event in session.scalars(select(AuditEvent).order_by(AuditEvent.id)):
        count += 1
        if previous is None and head is not None and event.prev_hash != head.anchor:
            problems.append(
                f"event {event.id}: older events were removed outside retention pruning"
            )
        if previous is not None and event.prev_hash != previous.hash:
            problems.append(
                f"event {event.id}: does not follow event {previous.id} "
                "(an event was removed or inserted)"
            )
        if event.compute_hash() != event.hash:
            problems.append(f"event {event.id}: content does not match its hash (modified)")
        previous = event
    last_hash = previous.hash if previous is not None else None
    if head is not None and last_hash is not None and head.hash != last_hash:
        problems.append(
            f"the newest events after {previous.id} were removed (chain head does not match)"
        )
    return count, problems


@dataclass
class AuditQuery:
    """Filters of an audit query; times are naive UTC."""

    since: datetime | None = None
    until: datetime | None = None
    actor: str | None = None
    resource_type: str | None = None
    resource_id: str | None = None
    event: str | None = None
    outcome: str | None = None
    limit: int = 1000
    offset: int = 0

    def run(self, session: Session) -> list[AuditEvent]:
        q = select(AuditEvent)
        if self.since:
            q = q.where(AuditEvent.time >= self.since)
        if self.until:
            q = q.where(AuditEvent.time < self.until)
        for column, value in (
            (AuditEvent.actor, self.actor),
            (AuditEvent.resource_type, self.resource_type),
            (AuditEvent.event, self.event),
            (AuditEvent.outcome, self.outcome),
        ):
            if value:
                q = q.where(column == value)
        if self.resource_id:
            # "alice/nb" matches exactly; "alice/" matches every resource of alice
            if self.resource_id.endswith("/"):
                q = q.where(AuditEvent.resource_id.startswith(self.resource_id))
            else:
                q = q.where(AuditEvent.resource_id == self.resource_id)
        q = q.order_by(AuditEvent.id.desc()).offset(self.offset).limit(self.limit)
        return list(session.scalars(q))


class _DatabaseHandler(logging.Handler):
    """jupyter_events handler appending each validated event to the database."""

    def __init__(self, audit: AuditLog):
        super().__init__()
        self.audit = audit

    def emit(self, record):
        capsule = record.msg
        if not isinstance(capsule, dict) or capsule.get("__schema__") != SCHEMA_ID:
            return
        data = {k: v for k, v in capsule.items() if not k.startswith("__")}
        stamp = capsule["__timestamp__"]
        # jupyter_events writes an aware time with a "Z" appended ("...+00:00Z")
        when = datetime.fromisoformat(stamp.removesuffix("Z"))
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        with self.audit.db.session() as session:
            append(session, data, when.astimezone(UTC).replace(tzinfo=None))


class AuditLog:
    """The platform's audit log: emit events, query them, prune them, verify the chain."""

    def __init__(self, db, retention_days: float = 7, events=None):
        self.db = db
        self.retention_days = retention_days
        # the event names the platform's features declare; None: any name
        self.events = frozenset(events) if events is not None else None
        self.eventlog = EventLogger()
        self.eventlog._logger.propagate = False  # stored, not printed in the service's log
        self.eventlog.register_event_schema(SCHEMA_FILE)
        self._handler = _DatabaseHandler(self)
        self._handler.handleError = self._raise  # a lost audit record must not pass silently
        self.eventlog.register_handler(self._handler)
        self._tasks: set[asyncio.Task] = set()

    @staticmethod
    def _raise(record):
        raise

    def record(
        self,
        event: str,
        *,
        actor: str,
        resource_type: str,
        resource_id: str,
        outcome: str = "success",
        reason: str = "",
        source: str = "",
        details: dict | None = None,
    ):
        """Validate and store one event (blocking: call it in a worker thread)."""
        if self.events is not None and event not in self.events:
            raise ValueError(
                f"audit event {event!r} is declared by no feature (hub/features.py audit_events)"
            )
        data = {
            "event": event,
            "actor": actor or "anonymous",
            "resource_type": resource_type,
            "resource_id": resource_id,
            "outcome": outcome,
            "reason": reason or "",
            "source": source or "",
            "details": details or {},
        }
        self.eventlog.emit(schema_id=SCHEMA_ID, data=data)

    async def emit(self, event: str, **fields):
        """record() off the event loop; a failure to store is logged, never raised."""
        try:
            await asyncio.to_thread(self.record, event, **fields)
        except Exception:
            log.exception("could not store audit event %s %s", event, fields)

    def emit_soon(self, event: str, **fields):
        """emit() as a task of the running loop (from code that cannot await)."""
        task = asyncio.get_running_loop().create_task(self.emit(event, **fields))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def flush(self):
        """Wait for events still being stored."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks))

    def query(self, query: AuditQuery) -> list[dict]:
        return self.db.call(lambda s: [e.to_dict() for e in query.run(s)])

    def prune(self, now: datetime | None = None) -> int:
        """Remove events older than the retention period; returns how many."""
        cutoff = (now or utcnow()) - timedelta(days=self.retention_days)
        with self.db.session() as session:
            # lock the head as writers do, then move its anchor to the newest removed event
            session.execute(update(AuditHead).where(AuditHead.id == 1).values(seq=AuditHead.seq))
            newest_old = session.scalars(
                select(AuditEvent)
                .where(AuditEvent.time < cutoff)
                .order_by(AuditEvent.id.desc())
                .limit(1)
            ).first()
            if newest_old is None:
                return 0
            head = session.get(AuditHead, 1)
            head.anchor = newest_old.hash
            result = session.execute(delete(AuditEvent).where(AuditEvent.id <= newest_old.id))
            removed = result.rowcount or 0
        if removed:
            log.info("audit: pruned %s events older than %s", removed, cutoff.isoformat())
        return removed

    def verify(self) -> tuple[int, list[str]]:
        return self.db.call(verify_chain)
