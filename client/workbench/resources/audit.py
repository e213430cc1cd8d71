"""The audit log (administrators): query, export as JSON lines, verify the hash chain."""

from __future__ import annotations

from . import Namespace, drop_none


class Audit(Namespace):
    """Audit events of the platform; needs the audit:read scope."""

    async def events(self, **filters) -> list[dict]:
        """Audit events, newest first; filters: since, until, user, resource_type, resource,
        event, outcome, limit, offset."""
        return await self._client.api("GET", "audit", params=drop_none(**filters))

    async def export(self, **filters) -> str:
        """Audit events as JSON lines (the same filters)."""
        params = {**drop_none(**filters), "format": "jsonl"}
        return await self._client.api_text("GET", "audit", params=params)

    async def verify(self) -> dict:
        """{ok, checked, problems}: whether the stored hash chain is intact."""
        return await self._client.api("GET", "audit/verify")
