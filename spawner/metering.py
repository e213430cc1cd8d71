"""Spawner side of usage metering: report when an instance's resources start and stop."""

from __future__ import annotations

import asyncio
import inspect
import time

from traitlets import Any, HasTraits


class MeteringMixin(HasTraits):
    """Records each running period of an instance with its flavor's resources.

    Place it right before the engine spawner class in the bases, so its start() and stop()
    wrap the engine's own: the period starts when the container or pod runs and ends when it
    is stopped, whoever stops it (the user, idle stop, or the hub after a crash).
    """

    usage_recorder = Any(
        None,
        allow_none=True,
        help="""A callable returning the recorder of running periods (an object with
        open(user, name, resources, when) and close(user, name, when), called in a worker
        thread), or None to meter nothing. Set by the platform's configuration.""",
    ).tag(config=True)

    _recorder = None

    def _usage(self):
        if self._recorder is None and self.usage_recorder is not None:
            self._recorder = self.usage_recorder()
        return self._recorder

    async def metered_resources(self) -> dict:
        """The flavor and its vCPUs, memory (GiB) and GPUs, and the instance's workspace
        (from this start's resolved options)."""
        try:
            resolved = await self.resolved_options()
        except Exception:  # noqa: BLE001 - unmetered rather than a failed start
            return {}
        spec, flavor = resolved.spec, resolved.flavor
        return {
            "flavor": flavor.name,
            "vcpus": flavor.cpu,
            "memory_gib": flavor.memory / 1024**3,
            "gpus": flavor.gpu,
            "workspace": spec.workspace,
        }

    async def start(self):
        result = super().start()
        if inspect.isawaitable(result):
            result = await result
        recorder = self._usage()
        if recorder is not None:
            resources = await self.metered_resources()
            await self._meter(recorder.open, self.user.name, self.name, resources, time.time())
        return result

    async def stop(self, now=False):
        try:
            await super().stop(now=now)
        finally:
            recorder = self._usage()
            if recorder is not None:
                await self._meter(recorder.close, self.user.name, self.name, time.time())

    async def _meter(self, fn, *args):
        try:
            await asyncio.to_thread(fn, *args)
        except Exception:  # noqa: BLE001 - metering must never fail an instance
            self.log.exception("usage metering failed for %s/%s", self.user.name, self.name)
