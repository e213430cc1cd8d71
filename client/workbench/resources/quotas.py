"""Quotas: a user's or a workspace's limits and what counts against them."""

from __future__ import annotations

from . import Namespace, segment


class Quotas(Namespace):
    """Limits (instances, running instances, vCPU, memory, GPUs, storage) and usage;
    administrators set them (quotas:manage)."""

    async def get(self, user: str | None = None) -> dict:
        """{user, limits, usage} of a user (the token's owner by default)."""
        return await self._client.api("GET", f"quotas/{await self._client.user_path(user)}")

    async def set(self, user: str, limits: dict) -> dict:
        """Set a user's limits ({} removes them)."""
        path = f"quotas/{await self._client.user_path(user)}"
        return await self._client.api("PUT", path, {"limits": limits})

    async def workspace(self, name: str) -> dict:
        """{limits, usage} of a workspace the caller belongs to."""
        return await self._client.api("GET", f"quotas/workspaces/{segment(name)}")

    async def set_workspace(self, name: str, limits: dict) -> dict:
        """Set a workspace's limits, counted over all its members ({} removes them)."""
        path = f"quotas/workspaces/{segment(name)}"
        return await self._client.api("PUT", path, {"limits": limits})
