"""Usage: resource-seconds and cost per user, day and flavor."""

from __future__ import annotations

from . import Namespace, drop_none


class Usage(Namespace):
    """The usage report: one's own, everyone's with the usage:admin scope."""

    async def get(
        self,
        *,
        since: str | None = None,
        until: str | None = None,
        user: str | None = None,
        workspace: str | None = None,
    ) -> dict:
        """{since, until, currency, rows, total_cost}; since/until: ISO 8601 or -24h, -7d."""
        params = drop_none(since=since, until=until, user=user, workspace=workspace)
        return await self._client.api("GET", "usage", params=params)

    async def csv(
        self,
        *,
        since: str | None = None,
        until: str | None = None,
        user: str | None = None,
        workspace: str | None = None,
    ) -> str:
        """The same report as CSV text."""
        params = drop_none(since=since, until=until, user=user, workspace=workspace)
        return await self._client.api_text("GET", "usage", params={**params, "format": "csv"})
