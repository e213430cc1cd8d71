"""Flavors: the resource sizes (vCPU, memory, GPUs) instances may have."""

from __future__ import annotations

from . import Namespace


class Flavors(Namespace):
    """The flavors this user may pick."""

    async def list(self) -> list[dict]:
        return await self._client.api("GET", "flavors")
