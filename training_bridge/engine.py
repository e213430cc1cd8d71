"""The job runner on one machine's container engine: one container per node, on a network of
the job's own (Docker Engine API: Docker, or Podman's compatible service)."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator

import docker
from docker.types import DeviceRequest

from spawner.container import find_instance_volume
from spawner.engine_calls import EngineCalls

from .plan import (
    CHECKPOINT_DIR,
    CODE_DIR,
    OUTPUT_DIR,
    JobPlan,
    base_environment,
    expand,
    node_command,
    runtime_environment,
)
from .runners import EXITED, MISSING, PENDING, RUNNING, JobRunner, NodeStatus, lines_of

log = logging.getLogger("workbench.jobs.engine")

RANK_LABEL = "ai-workbench.job-node"
SHM_BYTES = 256 * 1024**2  # /dev/shm for DataLoader workers and collectives


class EngineJobRunner(EngineCalls, JobRunner):
    """Runs each node of a job version as a container with the flavor's limits.

    url: the engine's API; isolate: give each job a network isolated from instances' and
    other jobs' (Podman: netavark's `isolate` option; Docker isolates bridges already);
    files: read-only host files every node gets ({host path: container path}, the
    platform's CA bundle and mirror settings); pids_limit: most processes per node;
    container_prefix: the platform's instances' container prefix (whose storage jobs read).
    """

    def __init__(
        self,
        url: str,
        *,
        container_prefix: str = "workbench",
        isolate: bool = True,
        files: dict[str, str] | None = None,
        pids_limit: int = 4096,
        threads: int = 8,
    ):
        super().__init__(url, threads=threads, thread_name="workbench-jobs")
        # log streams block for as long as a node runs: a client of their own
        self.url = url
        self.container_prefix = container_prefix
        self.isolate = isolate
        self.files = dict(files or {})
        self.pids_limit = pids_limit

    @staticmethod
    def network_name(plan: JobPlan) -> str:
        return f"{plan.object_name}-net"

    async def _ensure_network(self, plan: JobPlan) -> str:
        """The job's network: made at its first start, kept across restarts (one call)."""
        return await self._make_network(self.network_name(plan), plan.labels(), self.isolate)

    async def input_volume(self, owner: str, instance: str) -> str:
        """The engine volume of the platform's instance's storage."""
        volume = await self._call(
            find_instance_volume, self.api, self.container_prefix, owner, instance
        )
        if volume is None:
            raise RuntimeError(f"the storage of instance {instance!r} was not found")
        return volume

    def _binds(self, plan: JobPlan, volumes: dict[str, str]) -> dict:
        binds = {
            plan.code_source: {"bind": CODE_DIR, "mode": "ro"},
            plan.output_source: {"bind": OUTPUT_DIR, "mode": "rw"},
            plan.checkpoint_source: {"bind": CHECKPOINT_DIR, "mode": "rw"},
            **{host: {"bind": path, "mode": "ro"} for host, path in self.files.items()},
        }
        for channel in plan.inputs:
            binds[volumes[channel.name]] = {"bind": channel.mount_path, "mode": "ro"}
        for mount in plan.mounts:
            binds[mount.source] = {"bind": mount.target, "mode": "ro"}
        return binds

    async def folder_exists(self, owner: str, instance: str, path: str, image_ref: str):
        """Whether `path` is a folder of the instance's storage: `test -d` in a short
        container with the storage mounted read-only (links resolve inside it, as in a
        node), without network, as the nodes' user."""
        volume = await self.input_volume(owner, instance)
        host_config = self.api.create_host_config(
            binds={volume: {"bind": "/storage", "mode": "ro"}},
            network_mode="none",
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            mem_limit=256 * 1024**2,
        )
        container = await self._call(
            self.api.create_container,
            image_ref,
            command=["test", "-d", f"/storage/{path}".rstrip("/")],
            user="1000:100",
            labels={"ai-workbench.user": owner, "ai-workbench.check": "input"},
            host_config=host_config,
        )
        try:
            await self._call(self.api.start, container["Id"])
            result = await self._call(self.api.wait, container["Id"], timeout=120)
        finally:
            try:
                await self._call(self.api.remove_container, container["Id"], force=True)
            except docker.errors.NotFound:
                pass
        return (result or {}).get("StatusCode") == 0

    async def start(self, plan: JobPlan, restart: int) -> None:
        if restart:
            await self.remove_nodes(plan)  # the failed attempt's containers
        network = await self._ensure_network(plan)
        volumes = {}
        for channel in plan.inputs:
            volumes[channel.name] = channel.volume or await self.input_volume(
                plan.owner, channel.instance
            )
        hosts = plan.hosts()
        created = []
        try:
            for rank in range(plan.nodes):
                env = base_environment(plan, rank, restart)
                env.update(runtime_environment(plan, rank, hosts))
                argv = expand(node_command(plan), env)
                name = plan.node_name(rank)
                host_config = self.api.create_host_config(
                    binds=self._binds(plan, volumes),
                    mem_limit=plan.memory,
                    memswap_limit=plan.memory,
                    nano_cpus=int(plan.cpu * 1e9),
                    network_mode=network,
                    cap_drop=["ALL"],
                    security_opt=["no-new-privileges"],
                    pids_limit=self.pids_limit or None,
                    shm_size=min(SHM_BYTES, plan.memory // 2),
                    device_requests=(
                        [DeviceRequest(driver="nvidia", count=plan.gpu, capabilities=[["gpu"]])]
                        if plan.gpu
                        else None
                    ),
                )
                networking = self.api.create_networking_config(
                    {network: self.api.create_endpoint_config(aliases=[name])}
                )
                container = await self._call(
                    self.api.create_container,
                    plan.image_ref,
                    command=argv,
                    name=name,
                    hostname=name,
                    user=plan.run_as,
                    working_dir=CODE_DIR,
                    environment=env,
                    labels={**plan.labels(), RANK_LABEL: str(rank)},
                    host_config=host_config,
                    networking_config=networking,
                )
                created.append(container["Id"])
            await asyncio.gather(*(self._call(self.api.start, cid) for cid in created))
            await self._keep_isolated(self.isolate)
        except BaseException:
            await self.remove(plan)
            raise

    async def image_present(self, ref: str) -> bool | None:
        """Whether the engine holds the image (one inspect, not a listing of all)."""
        try:
            await self._call(self.api.inspect_image, ref)
            return True
        except docker.errors.ImageNotFound:
            return False

    async def _inspect(self, name: str) -> dict | None:
        try:
            return await self._call(self.api.inspect_container, name)
        except docker.errors.NotFound:
            return None

    async def status(self, plan: JobPlan) -> list[NodeStatus]:
        await self._is_podman()
        found = await asyncio.gather(*(self._inspect(n) for n in plan.hosts()))
        statuses = []
        for rank, info in enumerate(found):
            if info is None:
                statuses.append(NodeStatus(rank, MISSING, reason="its container is gone"))
                continue
            state = info.get("State") or {}
            if state.get("Running"):
                statuses.append(NodeStatus(rank, RUNNING))
            elif (state.get("Status") or "").lower() in ("created", "configured", "initialized"):
                statuses.append(NodeStatus(rank, PENDING, reason="starting"))
            else:
                statuses.append(
                    NodeStatus(
                        rank,
                        EXITED,
                        exit_code=state.get("ExitCode"),
                        oom=bool(state.get("OOMKilled")),
                    )
                )
        return statuses

    async def stop(self, plan: JobPlan, grace: float = 10) -> None:
        async def stop_one(name):
            try:
                await self._call(self.api.stop, name, timeout=int(grace))
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as e:
                log.warning("could not stop %s: %s", name, e)

        await asyncio.gather(*(stop_one(n) for n in plan.hosts()))

    async def remove_nodes(self, plan: JobPlan) -> None:
        """Remove the nodes' containers (a restart makes new ones)."""

        async def remove_one(name):
            try:
                await self._call(self.api.remove_container, name, force=True)
            except docker.errors.NotFound:
                pass

        await asyncio.gather(*(remove_one(n) for n in plan.hosts()))

    async def remove(self, plan: JobPlan) -> None:
        await self.remove_nodes(plan)
        try:
            await self._call(self.api.remove_network, self.network_name(plan))
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as e:
            log.warning("could not remove network of %s: %s", plan.object_name, e)

    async def logs(self, plan: JobPlan, rank: int, since: float = 0) -> AsyncIterator[bytes]:
        """Follow a node's output from a thread of its own (the stream blocks while it runs)."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        done = object()
        closed = threading.Event()
        name = plan.node_name(rank)

        def pump():
            # the API version given: asking the engine for it first costs a round trip
            # (half a second on a busy Podman) before the stream opens
            client = docker.APIClient(base_url=self.url, version=self.api.api_version, timeout=None)
            try:
                kwargs = {"stream": True, "follow": True, "stdout": True, "stderr": True}
                if since:
                    kwargs["since"] = int(since)
                for chunk in client.logs(name, **kwargs):
                    if closed.is_set():
                        break
                    loop.call_soon_threadsafe(queue.put_nowait, chunk)
            except docker.errors.NotFound:
                pass
            except Exception as e:  # noqa: BLE001 - the stream ends; the scheduler sees why
                log.warning("log stream of %s ended: %s", name, e)
            finally:
                client.close()
                try:
                    loop.call_soon_threadsafe(queue.put_nowait, done)
                except RuntimeError:
                    pass  # the loop is closed

        thread = threading.Thread(target=pump, name=f"logs-{name}", daemon=True)
        thread.start()

        async def chunks():
            while (chunk := await queue.get()) is not done:
                yield chunk

        try:
            async for line in lines_of(chunks()):
                yield line
        finally:
            closed.set()

    async def close(self) -> None:
        self.executor.shutdown(wait=False)
        self.api.close()
