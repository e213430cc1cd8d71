"""The service runner on one machine's container engine: one container per replica."""

from __future__ import annotations

import logging
import time

import docker
from docker.types import DeviceRequest

from spawner.engine_calls import EngineCalls

from .service_runners import (
    EXITED,
    LABEL_PREDICTOR,
    LABEL_SERVICE,
    MISSING,
    MODEL_DIR,
    PORT,
    RUNNING,
    STARTING,
    ReplicaInfo,
    ReplicaPlan,
    ReplicaStats,
    ReplicaStatus,
    ServiceRunner,
)

log = logging.getLogger("workbench.services.engine")

# the engine API version to speak: asking the engine first costs a round trip per client
API_VERSION = "1.41"
SHM_BYTES = 256 * 1024**2


class EngineServiceRunner(EngineCalls, ServiceRunner):
    """Runs each replica as a container with its flavor's limits, the model's folder mounted
    read-only, no capabilities, a non-root user and a pids limit.

    Each service gets a network of its own (Podman: netavark's `isolate` option, so it does
    not reach instances' or other services' networks; Docker isolates bridges already).
    The replica's port 8080 is published on 127.0.0.1 of the engine's host with a port the
    engine picks: the platform API on that host reaches it, and instances, whose traffic to
    the host arrives on a bridge address, do not (the same way the hub reaches instances).

    url: the engine's API; host: the address the platform reaches published ports on;
    pids_limit: most processes per replica (0: the engine's default).
    """

    def __init__(
        self,
        url: str,
        *,
        host: str = "127.0.0.1",
        pids_limit: int = 4096,
        isolate: bool = True,
        threads: int = 8,
        api_version: str = API_VERSION,
    ):
        super().__init__(
            url, threads=threads, thread_name="workbench-services", api_version=api_version
        )
        self.host = host
        self.pids_limit = pids_limit
        self.isolate = isolate
        # replica -> (cpu nanoseconds, monotonic seconds) of its last stats sample
        self._cpu_samples: dict[str, tuple[int, float]] = {}

    @staticmethod
    def network_name(service_object: str) -> str:
        return f"{service_object}-net"

    async def _ensure_network(self, plan: ReplicaPlan) -> str:
        """The service's network: made at its first replica, shared by the others (asked
        for at every start: one that was removed behind the platform's back is made again)."""
        labels = {LABEL_SERVICE: plan.service_object}
        return await self._make_network(
            self.network_name(plan.service_object), labels, self.isolate
        )

    async def start_replica(self, plan: ReplicaPlan) -> str:
        network = await self._ensure_network(plan)
        binds = {}
        if plan.model_dir:
            binds[plan.model_dir] = {"bind": MODEL_DIR, "mode": "ro"}
        host_config = self.api.create_host_config(
            binds=binds,
            port_bindings={PORT: (self.host,)},
            mem_limit=plan.memory,
            memswap_limit=plan.memory,
            nano_cpus=int(plan.cpu * 1e9),
            network_mode=network,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            pids_limit=self.pids_limit or None,
            shm_size=min(SHM_BYTES, plan.memory // 4),
            device_requests=(
                [DeviceRequest(driver="nvidia", count=plan.gpu, capabilities=[["gpu"]])]
                if plan.gpu
                else None
            ),
        )
        try:
            await self._call(
                self.api.create_container,
                plan.image_ref,
                command=list(plan.command) or None,
                name=plan.replica,
                hostname=plan.replica[-63:],
                user=plan.run_as,
                environment=plan.env(),
                labels=plan.labels(),
                ports=[PORT],
                host_config=host_config,
            )
            await self._call(self.api.start, plan.replica)
            await self._keep_isolated(self.isolate)
        except BaseException:
            await self.stop_replica(plan.replica, grace=0)
            raise
        return plan.replica

    async def stop_replica(self, replica: str, grace: float = 10) -> None:
        self._cpu_samples.pop(replica, None)
        try:
            if grace > 0:
                await self._call(self.api.stop, replica, timeout=int(grace))
        except docker.errors.NotFound:
            return
        except docker.errors.APIError as e:
            log.warning("could not stop replica %s: %s", replica, e)
        try:
            await self._call(self.api.remove_container, replica, force=True)
        except docker.errors.NotFound:
            pass

    async def _inspect(self, replica: str) -> dict | None:
        try:
            return await self._call(self.api.inspect_container, replica)
        except docker.errors.NotFound:
            return None

    def _address(self, info: dict) -> str:
        ports = (info.get("NetworkSettings") or {}).get("Ports") or {}
        for binding in ports.get(f"{PORT}/tcp") or ():
            if binding.get("HostPort"):
                return f"{self.host}:{binding['HostPort']}"
        return ""

    async def replica_status(self, replica: str) -> ReplicaStatus:
        info = await self._inspect(replica)
        if info is None:
            return ReplicaStatus(replica, MISSING, reason="its container is gone")
        state = info.get("State") or {}
        if state.get("Running"):
            return ReplicaStatus(replica, RUNNING, address=self._address(info))
        status = (state.get("Status") or "").lower()
        if status in ("created", "configured", "initialized"):
            return ReplicaStatus(replica, STARTING, reason="starting")
        return ReplicaStatus(
            replica,
            EXITED,
            exit_code=state.get("ExitCode"),
            oom=bool(state.get("OOMKilled")),
            reason=state.get("Error") or "",
        )

    async def replica_logs(self, replica: str, tail: int = 1000) -> str:
        try:
            data = await self._call(
                self.api.logs, replica, stdout=True, stderr=True, tail=tail, timestamps=False
            )
        except docker.errors.NotFound:
            return ""
        return data.decode(errors="replace") if isinstance(data, bytes) else str(data)

    async def replica_stats(self, replica: str) -> ReplicaStats | None:
        """Memory now, and CPU as the use between this sample and the previous one."""
        try:
            stats = await self._call(self.api.stats, replica, stream=False, one_shot=True)
        except (docker.errors.NotFound, docker.errors.APIError):
            return None
        cpu = ((stats.get("cpu_stats") or {}).get("cpu_usage") or {}).get("total_usage") or 0
        memory = int((stats.get("memory_stats") or {}).get("usage") or 0)
        now = time.monotonic()
        previous = self._cpu_samples.get(replica)
        self._cpu_samples[replica] = (cpu, now)
        percent = 0.0
        if previous is not None and now > previous[1] and cpu >= previous[0]:
            percent = (cpu - previous[0]) / ((now - previous[1]) * 1e9) * 100
        return ReplicaStats(cpu_percent=round(percent, 1), memory_bytes=memory)

    async def list_replicas(self, service_object: str) -> list[ReplicaInfo]:
        found = await self._call(
            self.api.containers, all=True, filters={"label": [f"{LABEL_SERVICE}={service_object}"]}
        )
        replicas = []
        for container in found or []:
            name = (container.get("Names") or [""])[0].lstrip("/")
            labels = container.get("Labels") or {}
            state = (container.get("State") or "").lower()
            replicas.append(
                ReplicaInfo(
                    id=name,
                    predictor=labels.get(LABEL_PREDICTOR, ""),
                    state=RUNNING if state == "running" else EXITED,
                )
            )
        return replicas

    async def remove_service(self, service_object: str) -> None:
        name = self.network_name(service_object)
        try:
            await self._call(self.api.remove_network, name)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as e:
            log.warning("could not remove network %s: %s", name, e)

    async def image_present(self, ref: str) -> bool | None:
        try:
            await self._call(self.api.inspect_image, ref)
            return True
        except docker.errors.ImageNotFound:
            return False

    async def close(self) -> None:
        self.executor.shutdown(wait=False)
        self.api.close()
