"""Times as the platform keeps and sends them: UTC, ISO 8601 with a Z on the wire."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """Now in UTC as a naive datetime: how the platform's database columns store times."""
    return datetime.now(UTC).replace(tzinfo=None)


def aware_utcnow() -> datetime:
    """Now in UTC with its time zone: for comparing with parse_time()'s answers."""
    return datetime.now(UTC)


def parse_time(value) -> datetime | None:
    """An aware UTC datetime from ISO 8601 text ("...Z" too) or a datetime (naive: UTC);
    None and "" stay None."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def isoformat(value: datetime | None) -> str | None:
    """ISO 8601 with a Z (a naive datetime is taken as UTC); None stays None."""
    if value is None:
        return None
    return parse_time(value).isoformat().replace("+00:00", "Z")
