"""The platform's resources, one namespace module each (instances, images, keys, ...).

A new feature adds a module here with a Namespace subclass of async methods, and one line in
workbench.client.NAMESPACES; the sync client and `import workbench` pick it up as they are.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote

if TYPE_CHECKING:
    from ..client import AsyncWorkbenchClient


def segment(value) -> str:
    """One path segment, quoted (names, tags, ids)."""
    return quote(str(value), safe="")


def drop_none(**values) -> dict:
    return {k: v for k, v in values.items() if v is not None}


class Namespace:
    """A group of calls on one resource of the platform API, on an AsyncWorkbenchClient.

    Calling the namespace itself lists the resource: `await client.instances()` is
    `await client.instances.list()`.
    """

    def __init__(self, client: AsyncWorkbenchClient):
        self._client = client

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {self._client!r}>"

    async def __call__(self, *args, **kwargs):
        lister = getattr(self, "list", None)
        if lister is None:
            raise TypeError(f"{type(self).__name__} has no list(): call one of its methods.")
        return await lister(*args, **kwargs)
