"""Images: the catalog a user may start from, and saved images (save, share, push, pull)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable

from ..errors import WorkbenchError
from . import Namespace, segment

# a save with wait=True answers when it has ended: it may take long for big instances
SAVE_WAIT_TIMEOUT = 3600.0


class Images(Namespace):
    """Preset, saved and registered images; saving a running instance as an image."""

    async def list(self, *, workspace: str | None = None) -> list[dict]:
        """Images the user may start instances from, saved ones included."""
        params = {"workspace": workspace} if workspace else None
        return await self._client.api("GET", "images", params=params)

    async def _saved(self, image: str, tag: str, user: str | None) -> str:
        return f"{await self._client.user_path(user)}/images/{segment(image)}/{segment(tag)}"

    async def _save_path(self, instance: str, user: str | None) -> str:
        return f"{await self._client.user_path(user)}/instances/{segment(instance)}/save"

    async def save(
        self,
        instance: str,
        image: str,
        tag: str = "latest",
        description: str = "",
        user: str | None = None,
        wait: bool = False,
        *,
        limit: float | None = None,
    ) -> dict:
        """Start saving a running instance as image:tag; the save's status (state "saving").

        wait=True: answer when the save has ended, with its final status ("done"; a failed
        save raises WorkbenchError with the reason).
        """
        body = {"name": image, "tag": tag, "description": description}
        path = await self._save_path(instance, user)
        if not wait:
            return await self._client.api("POST", path, body, limit=limit)
        if limit is None:
            limit = max(self._client.timeout, SAVE_WAIT_TIMEOUT)
        status = await self._client.api("POST", path, body, params={"wait": "true"}, limit=limit)
        if status["state"] == "failed":
            raise WorkbenchError(500, status["message"])
        return status

    async def save_status(self, instance: str, user: str | None = None) -> dict:
        """The current or last save of an instance: state saving, done or failed, progress."""
        return await self._client.api("GET", await self._save_path(instance, user))

    async def wait_saved(
        self,
        instance: str,
        user: str | None = None,
        poll: float = 0.5,
        on_status: Callable[[dict], object] | None = None,
    ) -> dict:
        """Poll a save until it is done (its status) or failed (WorkbenchError); on_status
        (a function or coroutine function) sees every status."""
        while True:
            status = await self.save_status(instance, user)
            if on_status is not None:
                result = on_status(status)
                if inspect.isawaitable(result):
                    await result
            if status["state"] == "done":
                return status
            if status["state"] == "failed":
                raise WorkbenchError(500, status["message"])
            await asyncio.sleep(poll)

    async def delete(self, image: str, tag: str, user: str | None = None) -> None:
        """Delete a saved image of the user's (refused while instances use it)."""
        await self._client.api("DELETE", await self._saved(image, tag, user))

    async def share(
        self,
        image: str,
        tag: str,
        users: list[str] | None = None,
        everyone: bool | None = None,
        replace: bool = True,
        remove: list[str] | None = None,
        user: str | None = None,
    ) -> dict:
        """Share a saved image with users (replace=True: exactly these) or everyone."""
        body: dict = {"users": users or []}
        if everyone is not None:
            body["everyone"] = everyone
        if remove:
            body["remove"] = remove
        method = "PUT" if replace else "PATCH"
        return await self._client.api(method, f"{await self._saved(image, tag, user)}/shares", body)

    async def push(self, image: str, tag: str, user: str | None = None) -> dict:
        """Push a saved image to the platform's registry."""
        return await self._client.api("POST", f"{await self._saved(image, tag, user)}/push")

    async def pull(
        self,
        ref: str,
        image: str | None = None,
        tag: str | None = None,
        user: str | None = None,
        base: str | None = None,
    ) -> dict:
        """Pull a saved image from the registry and register it; `base` (its preset) only
        for an own image pushed by another platform."""
        body = {"ref": ref}
        if image:
            body["name"] = image
        if tag:
            body["tag"] = tag
        if base:
            body["base"] = base
        path = f"{await self._client.user_path(user)}/images/pull"
        return await self._client.api("POST", path, body)
