"""Calls to the container engine's Docker API from async code: a thread pool, the engine's
kind, its machine's capacity, and networks made once."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import docker

from .capacity import MachineCapacity
from .isolation import enforce


class EngineCalls:
    """A docker-py APIClient whose blocking calls run in a pool of threads of their own."""

    def __init__(self, url: str, *, threads: int, thread_name: str, api_version=None):
        self.url = url
        self._api_version = api_version
        self._api: docker.APIClient | None = None
        self.executor = ThreadPoolExecutor(threads, thread_name_prefix=thread_name)
        self._podman: bool | None = None
        self._machine = MachineCapacity()

    @property
    def api(self) -> docker.APIClient:
        """The engine's client, made at first use (it asks the engine its API version): the
        platform's services start while the engine is still coming up."""
        if self._api is None:
            self._api = docker.APIClient(base_url=self.url, version=self._api_version, timeout=120)
        return self._api

    async def _call(self, fn, *args, **kwargs):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, lambda: fn(*args, **kwargs))

    async def _is_podman(self) -> bool:
        if self._podman is None:
            version = await self._call(self.api.version)
            self._podman = any(
                "podman" in (c.get("Name") or "").lower() for c in version.get("Components") or []
            )
        return self._podman

    async def capacity(self) -> tuple[float, int]:
        """The engine machine's vCPUs and memory bytes."""
        return await self._machine.get(lambda: self._call(self.api.info))

    async def _make_network(self, name: str, labels: dict, isolate: bool) -> str:
        """A bridge network of that name, made unless it exists (isolate: on Podman, with
        netavark's `isolate` option, so it reaches no other network; Docker isolates bridges
        already)."""
        options = {"isolate": "true"} if isolate and await self._is_podman() else {}
        try:
            await self._call(
                self.api.create_network,
                name,
                driver="bridge",
                options=options,
                labels=labels,
                check_duplicate=True,
            )
        except docker.errors.APIError as e:
            # it exists: Docker answers 409, Podman 4 a 500 saying so
            if e.status_code != 409 and "already exists" not in str(e.explanation or e):
                raise
        await self._keep_isolated(isolate)
        return name

    async def _keep_isolated(self, isolate: bool = True):
        """On Podman, rebuild the platform's rules keeping isolated networks apart
        (spawner/isolation.py): after making such a network and after starting containers
        on one (netavark may have put its own accept rules first)."""
        if isolate and await self._is_podman():
            await self._call(enforce, self.api)
