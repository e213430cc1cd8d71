"""The engine machine's vCPUs and memory, as the engine's `info` says, asked once."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class MachineCapacity:
    """vCPUs and memory bytes of the engine's machine: asked once, then refreshed in the
    background when older than max_age seconds. Podman's `info` takes about half a second
    of the engine (it sums up its storage), which no start or submission should wait for
    again; what it answers here changes only when the machine is resized."""

    def __init__(self, max_age: float = 600.0):
        self.max_age = max_age
        self.value: tuple[float, int] | None = None
        self.read_at = 0.0
        self._refresh: asyncio.Task | None = None

    async def get(self, info: Callable[[], Awaitable[dict]]) -> tuple[float, int]:
        """(vCPUs, memory bytes); info() asks the engine (its `info` call)."""
        if self.value is None:
            self._store(await info())
        elif time.monotonic() - self.read_at > self.max_age and (
            self._refresh is None or self._refresh.done()
        ):
            self._refresh = asyncio.create_task(self._refresh_from(info))
        return self.value

    async def _refresh_from(self, info: Callable[[], Awaitable[dict]]):
        try:
            self._store(await info())
        except Exception as e:  # noqa: BLE001 - the last answer stays until the next try
            log.warning("Could not ask the engine for its machine's capacity again: %s", e)
            self.read_at = time.monotonic()

    def _store(self, info: dict):
        self.value = float(info.get("NCPU") or 0), int(info.get("MemTotal") or 0)
        self.read_at = time.monotonic()
