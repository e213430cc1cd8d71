"""Tables of the audit log: the events and the head of their hash chain."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime

from sqlalchemy import DateTime, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ..db.core import Base

GENESIS = "0" * 64


class AuditEvent(Base):
    """One audit record; `hash` chains it to the record before it."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    time: Mapped[datetime] = mapped_column(DateTime, index=True)
    event: Mapped[str] = mapped_column(String(64), index=True)
    actor: Mapped[str] = mapped_column(String(255), index=True)
    source: Mapped[str] = mapped_column(String(64), default="")
    resource_type: Mapped[str] = mapped_column(String(32), index=True)
    resource_id: Mapped[str] = mapped_column(String(512), index=True)
    outcome: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")
    details: Mapped[str] = mapped_column(Text, default="{}")
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "time": self.time.isoformat() + "Z",
            "event": self.event,
            "actor": self.actor,
            "source": self.source,
            "resource_type": self.resource_type,
            "resource_id": self.resource_id,
            "outcome": self.outcome,
            "reason": self.reason,
            "details": json.loads(self.details or "{}"),
            "hash": self.hash,
        }

    def compute_hash(self) -> str:
        """SHA-256 of the previous hash and this record's canonical content."""
        content = {k: v for k, v in self.to_dict().items() if k != "hash"}
        payload = self.prev_hash + json.dumps(content, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(payload.encode()).hexdigest()


class AuditHead(Base):
    """The single row holding the chain's last hash; writers lock it to append in order."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, default=0)
    hash: Mapped[str] = mapped_column(String(64), default=GENESIS)
    # the hash of the newest event removed by retention: where the kept chain must start
    anchor: Mapped[str] = mapped_column(String(64), default=GENESIS)
