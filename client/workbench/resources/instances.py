"""Instances: list, create, start, stop, change, extend, delete; SSH access; spawn progress."""

from __future__ import annotations

from collections.abc import AsyncIterator

from . import Namespace, segment


class Instances(Namespace):
    """A user's notebook instances (the token's owner unless `user` is given: admins)."""

    async def _path(self, name: str | None, user: str | None) -> str:
        path = f"{await self._client.user_path(user)}/instances"
        return path if name is None else f"{path}/{segment(name)}"

    async def list(self, user: str | None = None, *, workspace: str | None = None) -> list[dict]:
        """The user's instances (only those of `workspace`, if given)."""
        params = {"workspace": workspace} if workspace else None
        return await self._client.api("GET", await self._path(None, user), params=params)

    async def get(self, name: str, user: str | None = None) -> dict:
        """One instance: state, image, flavor, storage, SSH, auto-stop, URL when running."""
        return await self._client.api("GET", await self._path(name, user))

    async def create(
        self,
        name: str,
        *,
        image: str | None = None,
        flavor: str | None = None,
        storage_gib: int | None = None,
        description: str = "",
        start: bool = True,
        user: str | None = None,
        ssh: dict | None = None,
        auto_stop: dict | None = None,
        workspace: str | None = None,
        limit: float | None = None,
    ) -> dict:
        """Create an instance and, unless start=False, start it (answers once it runs).

        ssh: {"enabled", "allowlist"}; auto_stop: {"idle_minutes", "max_hours"}.
        """
        body = {"name": name, "description": description, "start": start}
        for key, value in (
            ("image", image),
            ("flavor", flavor),
            ("storage_gib", storage_gib),
            ("ssh", ssh),
            ("auto_stop", auto_stop),
            ("workspace", workspace),
        ):
            if value is not None:
                body[key] = value
        return await self._client.api("POST", await self._path(None, user), body, limit=limit)

    async def start(self, name: str, user: str | None = None, *, limit: float | None = None):
        """Start a stopped instance; answers once it runs."""
        path = await self._path(name, user)
        return await self._client.api("POST", f"{path}/start", limit=limit)

    async def stop(self, name: str, user: str | None = None, *, limit: float | None = None):
        """Stop an instance (its storage stays); answers once it has stopped."""
        path = await self._path(name, user)
        return await self._client.api("POST", f"{path}/stop", limit=limit)

    async def update(
        self, name: str, user: str | None = None, *, limit: float | None = None, **changes
    ) -> dict:
        """Change an instance: image, flavor (a running one restarts), description, ssh,
        auto_stop (applied at once)."""
        path = await self._path(name, user)
        return await self._client.api("PATCH", path, changes, limit=limit)

    async def set_auto_stop(
        self,
        name: str,
        idle_minutes: float | None = None,
        max_hours: float | None = None,
        user: str | None = None,
    ) -> dict:
        """Change when an instance stops on its own (applies to a running one at once)."""
        current = (await self.get(name, user)).get("auto_stop") or {}
        auto_stop = dict(current)
        if idle_minutes is not None:
            auto_stop["idle_minutes"] = idle_minutes
        if max_hours is not None:
            auto_stop["max_hours"] = max_hours
        return await self.update(name, user, auto_stop=auto_stop)

    async def extend(self, name: str, minutes: float, user: str | None = None) -> dict:
        """Keep a running instance longer: counts as activity and adds minutes to its fixed
        run time, if it has one."""
        path = await self._path(name, user)
        return await self._client.api("POST", f"{path}/extend", {"minutes": minutes})

    async def delete(
        self, name: str, user: str | None = None, *, limit: float | None = None
    ) -> None:
        """Delete an instance and its storage."""
        await self._client.api("DELETE", await self._path(name, user), limit=limit)

    async def ssh(self, name: str, user: str | None = None) -> dict:
        """{enabled, allowlist, host, port, username, command, config, alias} of an instance."""
        path = await self._path(name, user)
        return await self._client.api("GET", f"{path}/ssh")

    async def set_ssh(
        self,
        name: str,
        enabled: bool,
        allowlist: list[str] | None = None,
        user: str | None = None,
    ) -> dict:
        """Turn SSH on or off for an instance (applies at once, without a restart)."""
        ssh = {"enabled": enabled, "allowlist": list(allowlist or [])}
        return await self.update(name, user, ssh=ssh)

    async def progress(
        self, name: str, user: str | None = None, *, limit: float | None = None
    ) -> AsyncIterator[dict]:
        """Spawn progress events of a starting instance (the hub's event stream), until it
        is ready or failed, or `limit` seconds (default: the client's timeout) have passed.
        WorkbenchError if the hub refuses (e.g. 400: the instance is not starting)."""
        user = await self._client.user_name(user)
        limit = self._client.timeout if limit is None else limit
        async for event in self._client.hub_api.progress(user, name, limit, quiet=False):
            yield event
