"""Audit events: emitted through jupyter_events, stored hash-chained in the platform database."""

from .log import AuditLog, AuditQuery, verify_chain
from .models import AuditEvent, AuditHead

__all__ = ["AuditEvent", "AuditHead", "AuditLog", "AuditQuery", "verify_chain"]
