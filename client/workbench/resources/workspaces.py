"""Workspaces: groups of users whose instances, images and quotas belong together."""

from __future__ import annotations

from . import Namespace, segment


class Workspaces(Namespace):
    """The caller's workspaces; administrators create them and set members
    (workspaces:manage)."""

    async def list(self, *, all: bool = False) -> list[dict]:  # noqa: A002 - the API's word
        """The caller's workspaces; all=True: every one (administrators)."""
        return await self._client.api("GET", "workspaces", params={"all": "1"} if all else None)

    async def get(self, name: str) -> dict:
        return await self._client.api("GET", f"workspaces/{segment(name)}")

    async def create(
        self, name: str, description: str = "", members: list[str] | None = None
    ) -> dict:
        body = {"name": name, "description": description, "members": list(members or [])}
        return await self._client.api("POST", "workspaces", body)

    async def set_members(self, name: str, members: list[str]) -> dict:
        path = f"workspaces/{segment(name)}/members"
        return await self._client.api("PUT", path, {"members": list(members)})

    async def delete(self, name: str) -> None:
        """Delete a workspace that holds no instances."""
        await self._client.api("DELETE", f"workspaces/{segment(name)}")

    async def instances(self, name: str) -> list[dict]:
        """Every instance in the workspace, all members' (instances:read)."""
        return await self._client.api("GET", f"workspaces/{segment(name)}/instances")
