"""A service's replicas: start, health, restarts, scaling, draining and metering.

The service manager (manager.py) holds one `Runtime` per service and calls `watch()` on it once
per pass of its loop: replicas whose process ended are removed and replaced (with a backoff;
three failures in a row without a ready replica fail the predictor, with the reason), starting
replicas become ready when GET /v2/health/ready answers 200, and each predictor is scaled
between its minimum and maximum on the requests in flight per replica. Replicas leave by
draining: the router stops sending to them first, their requests in flight finish, then they stop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import secrets
import time
from dataclasses import dataclass, field

import aiohttp

from spawner.flavors import Flavor
from spawner.quotas import GIB

from .service_metrics import PredictorMetrics, ServiceMetrics
from .service_runners import EXITED, MISSING, ReplicaPlan, ReplicaStatus, ServiceRunner
from .store import DEPLOYING, RUNNING, SERVICE_FAILED, STOPPED

log = logging.getLogger("workbench.services")

# replica states (the API shows "creating" as "starting")
CREATING = "creating"  # its container is being made
STARTING = "starting"  # its process runs; not yet ready
READY = "ready"
STOPPING = "stopping"  # draining, then stopped

FAILURES_TO_FAIL = 3  # failures in a row, without a ready replica, that fail a predictor
BACKOFF_MAX_SECONDS = 30.0
STOP_GRACE_SECONDS = 10.0
HEALTH_TIMEOUT_SECONDS = 2.0
# a new replica's readiness is looked at this often at first, backing off to the most
PROBE_FIRST_SECONDS = 0.05
PROBE_MAX_SECONDS = 0.5


@dataclass(eq=False)
class Replica:
    """One replica of a predictor, as the manager and the router see it."""

    id: str
    predictor: str
    state: str = CREATING
    address: str = ""  # host:port, once known
    restarts: int = 0  # replicas this one replaced, in a row
    since: float = field(default_factory=time.monotonic)  # entered its state
    in_flight: int = 0
    suspect: bool = False  # the router could not reach it: not routed until healthy
    # set when a stopping replica's last request in flight is answered
    drained: asyncio.Event = field(default_factory=asyncio.Event)

    def done(self) -> None:
        """One of its requests is answered (the router calls this)."""
        self.in_flight -= 1
        if not self.in_flight and self.state == STOPPING:
            self.drained.set()

    def model(self) -> dict:
        state = STARTING if self.state == CREATING else self.state
        return {"id": self.id, "state": state, "restarts": self.restarts}


@dataclass(eq=False)
class Deployment:
    """A predictor's model version, checked and resolved: what its replicas are made of."""

    folder: str  # host folder of the files ("" for an image model)
    version: dict  # the model version's JSON
    image_ref: str
    command: tuple[str, ...]
    flavor: Flavor


@dataclass(eq=False)
class Predictor:
    """A model version of a service with its share of requests and its replicas."""

    key: str  # "<model>:<version>"
    spec: dict
    metrics: PredictorMetrics
    deployment: Deployment | None = None
    replicas: dict[str, Replica] = field(default_factory=dict)
    draining: bool = False  # no new requests; leaving the service
    last_request: float = field(default_factory=time.monotonic)
    peak: int = 0  # most requests in flight since the autoscaler last looked
    below_since: float | None = None  # load below the replicas' target since
    waking: bool = False  # a request asked for a replica (scale from zero)
    waiting: int = 0  # requests waiting for a ready replica now
    failures: int = 0  # replica failures in a row without a ready replica
    restarts_due: list[int] = field(default_factory=list)  # restart counts of replacements
    next_start: float = 0.0  # no new replica before (backoff after failures)
    last_failure: str = ""
    failed: str = ""  # why the predictor gave up ("" while it runs)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def weight(self) -> int:
        return 0 if self.draining or self.failed else self.spec["weight"]

    def ready(self) -> list[Replica]:
        return [r for r in self.replicas.values() if r.state == READY and not r.suspect]

    def live(self) -> list[Replica]:
        return [r for r in self.replicas.values() if r.state in (CREATING, STARTING, READY)]

    def notify(self) -> None:
        """Wake the requests waiting for a replica of this predictor."""
        event, self.changed = self.changed, asyncio.Event()
        event.set()

    def model(self) -> dict:
        out = {**self.spec, "replicas": [r.model() for r in self.replicas.values()]}
        if self.failed:
            out["reason"] = self.failed
        return out


@dataclass(eq=False)
class Runtime:
    """A service as the manager runs it: its predictors, replicas, state and metrics."""

    id: int
    owner: str
    name: str
    workspace: str
    public: bool
    object_name: str  # "<prefix>-svc-<uid>": names its replicas and network
    model_name: str  # the model's name in the protocol's paths
    state: str
    reason: str
    scale_to_zero_seconds: float
    predictors: dict[str, Predictor]  # stable first
    metrics: ServiceMetrics = field(default_factory=ServiceMetrics)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # a managed backend's (KServe's) address of the whole service, where the router sends
    # every request: the backend splits them between predictors ("" until it is known)
    upstream: str = ""


def new_predictor(metrics: ServiceMetrics, key: str, spec: dict) -> Predictor:
    return Predictor(key=key, spec=dict(spec), metrics=metrics.predictor(key))


def reservation(flavor: Flavor, replicas: int) -> tuple[float, float, int]:
    """vCPUs, memory GiB and GPUs `replicas` replicas of a flavor hold."""
    return flavor.cpu * replicas, flavor.memory * replicas / GIB, flavor.gpu * replicas


def exit_reason(status: ReplicaStatus, memory: int) -> str:
    if status.state == MISSING:
        return "its container disappeared"
    if status.oom:
        return f"out of memory at {memory // 1024**2} MiB"
    if status.exit_code is not None:
        return f"exited with code {status.exit_code}"
    return status.reason or "ended"


class ReplicaControl:
    """The replica half of the service manager (a base class of ServiceManager): starts,
    watches, scales and drains replicas. The manager provides `runner`, `config` (the
    inference settings), `usage` (a UsageRecorder or None), `_deploy(runtime, predictor)`
    and `_set_state(runtime, state, reason)`."""

    runner: ServiceRunner
    config: object
    usage: object | None = None

    def _init_control(self) -> None:
        self._tasks: set[asyncio.Task] = set()
        self._http: aiohttp.ClientSession | None = None
        self._forwarding: aiohttp.ClientSession | None = None
        self.wakeup = asyncio.Event()

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    @property
    def http(self) -> aiohttp.ClientSession:
        """The health checks' client (made in the running loop, at first use)."""
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=4),
                timeout=aiohttp.ClientTimeout(total=HEALTH_TIMEOUT_SECONDS),
            )
        return self._http

    @property
    def forwarding(self) -> aiohttp.ClientSession:
        """The router's one pooled client: connections to replicas are kept alive (for less
        than the serving runtime's own 5 s, so a connection it closed is never reused)."""
        if self._forwarding is None or self._forwarding.closed:
            self._forwarding = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=4),
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
            )
        return self._forwarding

    async def close_clients(self) -> None:
        for session in (self._http, self._forwarding):
            if session is not None and not session.closed:
                await session.close()

    # --- starting and removing replicas ---------------------------------------------------
    def _new_replica(self, rt: Runtime, p: Predictor) -> Replica:
        """A replica record, counted at once (its container is made by _launch)."""
        restarts = p.restarts_due.pop(0) if p.restarts_due else 0
        replica = Replica(f"{rt.object_name}-{secrets.token_hex(3)}", p.key, restarts=restarts)
        p.replicas[replica.id] = replica
        return replica

    def _plan(self, rt: Runtime, p: Predictor, replica: Replica) -> ReplicaPlan:
        d = p.deployment
        model = {
            "name": rt.model_name,
            "version": str(p.spec["version"]),
            "format": d.version.get("format") or "",
            "predictor": d.version.get("predictor") or "",
            "signature": d.version.get("signature") or {},
        }
        return ReplicaPlan(
            owner=rt.owner,
            service=rt.name,
            service_object=rt.object_name,
            predictor=p.key,
            replica=replica.id,
            image_ref=d.image_ref,
            model_dir=d.folder,
            model_env=json.dumps(model),
            cpu=d.flavor.cpu,
            memory=d.flavor.memory,
            gpu=d.flavor.gpu,
            gpu_type=d.flavor.gpu_type,
            command=d.command,
            workspace=rt.workspace,
        )

    async def _launch(self, rt: Runtime, p: Predictor, replica: Replica) -> None:
        """Make and start a replica's container; on failure its record goes and it raises."""
        try:
            if p.deployment is None:
                p.deployment = await self._deploy(rt, p)
            await self.runner.start_replica(self._plan(rt, p, replica))
        except BaseException:
            p.replicas.pop(replica.id, None)
            raise
        if replica.state == CREATING:
            replica.state, replica.since = STARTING, time.monotonic()
        self._meter_open(rt, p, replica)
        log.info("service %s/%s: replica %s of %s started", rt.owner, rt.name, replica.id, p.key)
        self._spawn(self._probe_until_ready(rt, p, replica))

    def _ready(self, rt: Runtime, p: Predictor, replica: Replica, now: float) -> None:
        """A starting replica answered its readiness check: it takes requests from now on."""
        replica.state, replica.since = READY, now
        p.failures, p.last_failure, p.waking = 0, "", False
        log.info("service %s/%s: replica %s ready", rt.owner, rt.name, replica.id)

    async def _probe_until_ready(self, rt: Runtime, p: Predictor, replica: Replica) -> None:
        """Look at a new replica's readiness often, so that it takes requests as soon as its
        model is loaded rather than at the loop's next pass; crashes and the ready timeout
        stay the loop's to handle."""
        deadline = replica.since + self.config.ready_timeout_seconds
        interval = PROBE_FIRST_SECONDS
        while replica.state == STARTING and replica.id in p.replicas:
            if time.monotonic() > deadline:
                return
            if not replica.address:
                try:
                    status = await self.runner.replica_status(replica.id)
                except Exception:  # noqa: BLE001 - the loop reports it
                    return
                if status.state in (EXITED, MISSING):
                    return
                replica.address = status.address
            if replica.address and await self._healthy(replica):
                if replica.state == STARTING and replica.id in p.replicas:
                    self._ready(rt, p, replica, time.monotonic())
                    p.notify()
                    self.wakeup.set()
                return
            await asyncio.sleep(interval)
            interval = min(interval * 1.5, PROBE_MAX_SECONDS)

    async def _launch_logged(self, rt: Runtime, p: Predictor, replica: Replica) -> None:
        """_launch from the loop: a failure counts against the predictor, with its reason."""
        try:
            await self._launch(rt, p, replica)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - counted and shown as the reason
            self._failure(rt, p, replica, f"could not start: {short(e)}")
        self.wakeup.set()

    async def _start_minimum(self, rt: Runtime, predictors: list[Predictor]) -> None:
        """Start each predictor's minimum of replicas now (a deploy, a start, a new canary);
        on a failure remove what was started and raise."""
        started = [
            (p, self._new_replica(rt, p)) for p in predictors for _ in range(p.spec["min_replicas"])
        ]
        results = await asyncio.gather(
            *(self._launch(rt, p, r) for p, r in started), return_exceptions=True
        )
        errors = [e for e in results if isinstance(e, BaseException)]
        if errors:
            await asyncio.gather(
                *(self._remove(rt, p, r) for p, r in started if r.id in p.replicas)
            )
            raise errors[0]

    async def _remove(self, rt: Runtime, p: Predictor, replica: Replica, grace: float = 0):
        """Stop and remove a replica now (its record, container and meter)."""
        replica.state = STOPPING
        try:
            await self.runner.stop_replica(replica.id, grace)
        finally:
            p.replicas.pop(replica.id, None)
            rt.metrics.forget_replica(replica.id)
            self._meter_close(rt, replica)

    async def _drain(self, rt: Runtime, pairs: list[tuple[Predictor, Replica]]) -> None:
        """Take replicas out of service without dropping a request: the router stops sending
        to them at once, their requests in flight finish (up to the request timeout), then
        they stop."""
        for _, replica in pairs:
            replica.state = STOPPING
        busy = [r.drained.wait() for _, r in pairs if r.in_flight]
        if busy:
            try:
                await asyncio.wait_for(asyncio.gather(*busy), self.config.request_timeout_seconds)
            except TimeoutError:
                log.warning("service %s/%s: requests still in flight stopped", rt.owner, rt.name)
        await asyncio.gather(*(self._remove(rt, p, r, STOP_GRACE_SECONDS) for p, r in pairs))

    async def _drain_predictor(self, rt: Runtime, p: Predictor) -> None:
        p.draining = True
        p.notify()
        await self._drain(rt, [(p, r) for r in list(p.replicas.values())])

    # --- watching -------------------------------------------------------------------------
    async def _healthy(self, replica: Replica) -> bool:
        try:
            async with self.http.get(f"http://{replica.address}/v2/health/ready") as answer:
                return answer.status == 200
        except (aiohttp.ClientError, TimeoutError, OSError):
            return False

    async def watch(self, rt: Runtime) -> None:
        """One look at a service: ended replicas, readiness, scaling, its state."""
        if rt.state == STOPPED:
            return
        now = time.monotonic()
        watched = [
            (p, r)
            for p in rt.predictors.values()
            for r in list(p.replicas.values())
            if r.state in (STARTING, READY)
        ]
        statuses = await asyncio.gather(
            *(self.runner.replica_status(r.id) for _, r in watched), return_exceptions=True
        )
        probes = []
        for (p, r), status in zip(watched, statuses, strict=True):
            if isinstance(status, BaseException):
                log.warning("status of replica %s: %s", r.id, status)
                continue
            if r.id not in p.replicas or r.state not in (STARTING, READY):
                continue  # drained meanwhile
            if status.state in (EXITED, MISSING):
                memory = p.deployment.flavor.memory if p.deployment else 0
                await self._ended(rt, p, r, exit_reason(status, memory))
                continue
            if status.address:
                r.address = status.address
            if (r.state == STARTING or r.suspect) and r.address:
                probes.append((p, r))
        results = await asyncio.gather(*(self._healthy(r) for _, r in probes))
        for (p, r), ok in zip(probes, results, strict=True):
            if ok:
                if r.suspect:
                    r.suspect = False
                if r.state == STARTING:
                    self._ready(rt, p, r, now)
                p.notify()
            elif r.state == STARTING and now - r.since > self.config.ready_timeout_seconds:
                limit = self.config.ready_timeout_seconds
                await self._ended(rt, p, r, f"not ready within {limit:g} s")
        for p in list(rt.predictors.values()):
            self._scale(rt, p, now)
        await self._refresh_state(rt)

    async def _ended(self, rt: Runtime, p: Predictor, replica: Replica, reason: str) -> None:
        """A replica whose process ended (or never got ready): its last words join the reason,
        it is removed and replaced at the next pass (after a backoff)."""
        tail = [line for line in (await self.runner.replica_logs(replica.id, 20)).splitlines()]
        last = next((line.strip() for line in reversed(tail) if line.strip()), "")
        if last:
            reason = f"{reason}: {last[:300]}"
        log.warning("service %s/%s: replica %s %s", rt.owner, rt.name, replica.id, reason)
        await self._remove(rt, p, replica)
        self._failure(rt, p, replica, reason)

    def _failure(self, rt: Runtime, p: Predictor, replica: Replica, reason: str) -> None:
        p.replicas.pop(replica.id, None)
        p.failures += 1
        p.last_failure = reason
        p.restarts_due.append(replica.restarts + 1)
        p.next_start = time.monotonic() + min(2 ** (p.failures - 1), BACKOFF_MAX_SECONDS)
        if p.failures >= FAILURES_TO_FAIL and not p.ready():
            p.failed = f"{reason} ({p.failures} failures in a row)"
            p.notify()

    def _scale(self, rt: Runtime, p: Predictor, now: float) -> None:
        """Scale a predictor between its minimum and maximum: up at once to cover its requests
        in flight, down one replica per scale_down_seconds below target, to zero when idle."""
        if rt.state == STOPPED or p.draining or p.failed:
            return
        spec = p.spec
        live = p.live()
        peak, p.peak = p.peak, p.metrics.in_flight
        need = math.ceil(peak / spec["target_in_flight"])
        floor = spec["min_replicas"]
        if floor == 0 and (p.waking or p.waiting or (live and not self._idle(rt, p, now))):
            floor = 1
        desired = min(max(need, floor), spec["max_replicas"])
        if desired > len(live):
            p.below_since = None
            if now >= p.next_start:
                for _ in range(desired - len(live)):
                    replica = self._new_replica(rt, p)
                    self._spawn(self._launch_logged(rt, p, replica))
        elif desired < len(live):
            if desired == 0:  # idle for scale_to_zero_seconds
                log.info("service %s/%s: %s scales to zero", rt.owner, rt.name, p.key)
                self._spawn(self._drain(rt, [(p, r) for r in live]))
            elif p.below_since is None:
                p.below_since = now
            elif now - p.below_since >= self.config.scale_down_seconds:
                p.below_since = now
                victim = min(live, key=lambda r: (r.state == READY, r.in_flight))
                log.info("service %s/%s: %s scales down to %s", rt.owner, rt.name, p.key, desired)
                self._spawn(self._drain(rt, [(p, victim)]))
        else:
            p.below_since = None

    @staticmethod
    def _idle(rt: Runtime, p: Predictor, now: float) -> bool:
        wait = rt.scale_to_zero_seconds
        busy = p.metrics.in_flight or p.waiting
        return bool(wait) and not busy and now - p.last_request >= wait

    async def _refresh_state(self, rt: Runtime) -> None:
        if rt.state == STOPPED:
            return
        active = [p for p in rt.predictors.values() if not p.draining]
        failed = [p for p in active if p.failed]
        waiting = [p for p in active if p.spec["min_replicas"] and not p.ready()]
        if failed:
            state, reason = SERVICE_FAILED, f"predictor {failed[0].key}: {failed[0].failed}"
        elif not waiting:
            state, reason = RUNNING, ""
        else:
            p = waiting[0]
            why = f" (after: {p.last_failure})" if p.last_failure else ""
            if rt.state == RUNNING:
                state, reason = RUNNING, f"predictor {p.key} has no ready replica{why}"
            else:
                state, reason = DEPLOYING, f"starting replicas of {p.key}{why}"
        if (state, reason) != (rt.state, rt.reason):
            await self._set_state(rt, state, reason)

    # --- resource use ---------------------------------------------------------------------
    async def sample_stats(self, runtimes: list[Runtime]) -> None:
        """Each replica's CPU and memory use, for the metrics."""
        pairs = [
            (rt, p, r)
            for rt in runtimes
            for p in rt.predictors.values()
            for r in p.replicas.values()
            if r.state in (STARTING, READY)
        ]
        stats = await asyncio.gather(
            *(self.runner.replica_stats(r.id) for _, _, r in pairs), return_exceptions=True
        )
        for (rt, p, r), sample in zip(pairs, stats, strict=True):
            if sample is not None and not isinstance(sample, BaseException):
                if r.id in p.replicas:
                    rt.metrics.set_replica(r.id, p.key, sample.cpu_percent, sample.memory_bytes)

    # --- metering -------------------------------------------------------------------------
    @staticmethod
    def _meter_name(rt: Runtime, replica: Replica) -> str:
        return f"{rt.name}/{replica.id.rsplit('-', 1)[-1]}"

    def _meter_open(self, rt: Runtime, p: Predictor, replica: Replica) -> None:
        if self.usage is None or p.deployment is None:
            return
        flavor = p.deployment.flavor
        resources = {
            "flavor": flavor.name,
            "vcpus": flavor.cpu,
            "memory_gib": flavor.memory / GIB,
            "gpus": flavor.gpu,
            "workspace": rt.workspace,
        }
        name, when = self._meter_name(rt, replica), time.time()
        self._spawn(
            asyncio.to_thread(self.usage.open, rt.owner, name, resources, when, kind="service")
        )

    def _meter_close(self, rt: Runtime, replica: Replica) -> None:
        if self.usage is None:
            return
        name, when = self._meter_name(rt, replica), time.time()
        self._spawn(asyncio.to_thread(self.usage.close, rt.owner, name, when))


def short(e: BaseException) -> str:
    """An error in one line of words (an APIError's message, an engine's explanation)."""
    text = getattr(e, "message", None) or getattr(e, "explanation", None) or str(e)
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return " ".join(str(text or type(e).__name__).split())[:300]
