"""The service manager: online services' lifecycle, canaries, access keys and watching loop.

Every request is checked end to end before anything starts (names, predictors, weights,
flavors, the models and their files' SHA-256s, images, quotas), so a refusal leaves nothing
behind; a failure while starting removes what was started. State lives in the platform
database; at start the manager takes up the replicas a restart left running.

Two kinds of backend: a ServiceRunner (the engine) runs single replicas, and the manager
starts, watches, scales and drains them (service_control.py); a ManagedServiceRunner
(Kubernetes: KServe) runs whole services, so the manager renders each service as a
ServicePlan (its predictors, weights, bounds and flavors), applies it at every change, reads
the service's state, reason and replicas back from the backend in its loop, and the router
sends every request to the service's one address there (the backend splits the traffic).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
import shlex
import time
from pathlib import PurePosixPath
from urllib.parse import quote

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from workbench.times import isoformat, utcnow

from hub.service.api import APIError
from spawner.flavors import format_bytes
from spawner.options import InvalidOptions

from . import store
from .service_control import (
    STARTING,
    Deployment,
    Replica,
    ReplicaControl,
    Runtime,
    new_predictor,
    reservation,
    short,
)
from .service_metrics import ServiceMetrics, prometheus
from .service_runners import ServiceRunner
from .service_spec import (
    CREATE_FIELDS,
    UPDATE_FIELDS,
    SpecError,
    check_description,
    check_fields,
    check_key_name,
    check_name,
    check_predictors,
    check_public,
    check_scale_to_zero,
    predictor_key,
)
from .store import DEPLOYING, READY, RUNNING, SERVICE_FAILED, STOPPED, Service, ServiceKey

log = logging.getLogger("workbench.services")

# what every replica of a model with files runs (kserve's ModelServer on port 8080)
SERVING_COMMAND = ("python", "-m", "workbench.serving")
KEY_PREFIX = "wbk_"
STATS_SECONDS = 5.0  # between samples of replicas' CPU and memory
MEMBERSHIP_SECONDS = 30.0  # how long a workspace membership answer is trusted by the router
KEY_USED_SECONDS = 60.0  # a key's last_used is written at most this often


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def is_managed(runner) -> bool:
    """Whether a runner runs whole services itself (a ManagedServiceRunner: KServe)."""
    if isinstance(runner, ServiceRunner):
        return False  # the engine's: Kubernetes' client libraries are not loaded for it
    from .service_kubernetes import ManagedServiceRunner

    return isinstance(runner, ManagedServiceRunner)


class ServiceManager(ReplicaControl):
    """Online services: the API's operations, the router's lookups and the watching loop.

    runner: the backend's ServiceRunner, or a ManagedServiceRunner (which runs whole
    services: see the module's docstring); registry: the model registry (deploy_files);
    config: the [workbench.inference] settings; quotas, workspaces, usage: the platform's
    quota checker, workspace service and usage recorder (None: not checked or recorded).
    """

    def __init__(
        self,
        *,
        db,
        hub,
        policy,
        config,
        runner,
        registry=None,
        quotas=None,
        workspaces=None,
        usage=None,
        public_url: str = "",
        prefix: str = "workbench",
        direct_url: str = "",
    ):
        self.db = db
        self.hub = hub
        self.policy = policy
        self.config = config
        self.runner = runner
        self.managed = is_managed(runner)
        self.registry = registry
        self.quotas = quotas
        self.workspaces = workspaces
        self.usage = usage
        self.public_url = public_url.rstrip("/")
        # the calling path on the API service's own inference port ("": none)
        self.direct_url = direct_url.rstrip("/")
        self.prefix = prefix
        self.services: dict[tuple[str, str], Runtime] = {}
        self.by_id: dict[int, Runtime] = {}
        self.taken_up = False
        self._init_control()
        self._loop_task: asyncio.Task | None = None
        self._stats_at = 0.0
        self._locks: dict[str, asyncio.Lock] = {}
        # the router's caches: key hash -> (service id, key id); hashes known not to be keys
        self._keys: dict[str, tuple[int, int]] = {}
        self._no_keys: dict[str, float] = {}
        self._keys_generation = 0
        self._key_written: dict[int, float] = {}
        self._members: dict[tuple[str, str], tuple[bool, float]] = {}

    # --- looking things up ----------------------------------------------------------------
    def _owner_lock(self, owner: str) -> asyncio.Lock:
        """One change of an owner's services at a time (names and quota are theirs)."""
        return self._locks.setdefault(owner, asyncio.Lock())

    async def _member_of(self, user: str) -> set[str]:
        if self.workspaces is None:
            return {"default"}

        def names(session):
            from features.workspaces.store import workspaces_of

            return {w["name"] for w in workspaces_of(session, user)}

        try:
            return await self.db.run(names)
        except Exception:  # noqa: BLE001 - no workspaces table: the default one only
            return {"default"}

    async def _can_see(self, caller: dict, row: Service) -> bool:
        if caller.get("admin") or row.owner == caller["name"]:
            return True
        return row.workspace != "default" and row.workspace in await self._member_of(caller["name"])

    async def _service(self, caller: dict, owner: str, name: str, *, change=False) -> Service:
        row = await self.db.run(lambda s: store.find_service(s, owner, name))
        if row is None or not await self._can_see(caller, row):
            raise APIError(404, f"No service {name!r} of user {owner!r}.")
        if change and not (caller.get("admin") or row.owner == caller["name"]):
            raise APIError(
                403,
                f"Service {owner}/{name} belongs to {owner}: only they and administrators may "
                "change it.",
            )
        return row

    def runtime(self, owner: str, name: str) -> Runtime | None:
        """The running view of a service (the router's lookup)."""
        return self.services.get((owner, name))

    def _register(self, rt: Runtime) -> None:
        self.services[(rt.owner, rt.name)] = rt
        self.by_id[rt.id] = rt

    def _runtime(self, row: Service, spec: dict) -> Runtime:
        metrics = ServiceMetrics()
        predictors = {}
        for p in spec["predictors"]:
            key = predictor_key(p)
            predictors[key] = new_predictor(metrics, key, p)
        return Runtime(
            id=row.id,
            owner=row.owner,
            name=row.name,
            workspace=row.workspace,
            public=row.public,
            object_name=f"{self.prefix}-svc-{spec['uid']}",
            model_name=spec["model_name"],
            state=row.state,
            reason=row.reason,
            scale_to_zero_seconds=spec.get("scale_to_zero_seconds") or 0,
            predictors=predictors,
            metrics=metrics,
        )

    def url(self, owner: str, name: str) -> str:
        return f"{self.public_url}/{quote(owner, safe='')}/{name}"

    def _model(self, row: Service) -> dict:
        """The API's JSON of a service, with its replicas as they are now."""
        spec = store.loads(row.spec, {})
        rt = self.services.get((row.owner, row.name))
        predictors = []
        for p in spec.get("predictors", []):
            live = rt.predictors.get(predictor_key(p)) if rt else None
            predictors.append(live.model() if live else {**p, "replicas": []})
        return {
            "owner": row.owner,
            "name": row.name,
            "description": row.description,
            "workspace": row.workspace,
            "public": rt.public if rt else row.public,
            "state": rt.state if rt else row.state,
            "reason": rt.reason if rt else row.reason,
            "url": self.url(row.owner, row.name),
            "direct_url": (
                f"{self.direct_url}/{quote(row.owner, safe='')}/{row.name}"
                if self.direct_url
                else None
            ),
            "model_name": spec.get("model_name"),
            "predictors": predictors,
            "scale_to_zero_seconds": spec.get("scale_to_zero_seconds") or 0,
            "created": isoformat(row.created),
            "updated": isoformat(row.updated),
        }

    # --- reading --------------------------------------------------------------------------
    async def list(self, caller: dict, workspace: str | None = None, all_users=False) -> list:
        member_of = await self._member_of(caller["name"])

        def read(session):
            q = select(Service).order_by(Service.created.desc(), Service.id.desc())
            return list(session.scalars(q))

        out = []
        for row in await self.db.run(read):
            if workspace is not None and row.workspace != workspace:
                continue
            if (
                row.owner == caller["name"]
                or (all_users and caller.get("admin"))
                or (row.workspace != "default" and row.workspace in member_of)
            ):
                out.append(self._model(row))
        return out

    async def get(self, caller: dict, owner: str, name: str) -> dict:
        return self._model(await self._service(caller, owner, name))

    async def uses_model(self, owner: str, name: str, version: int | None = None) -> list[str]:
        """The services ("owner/name") that deploy a model (one version of it, if given)."""

        def read(session):
            return list(session.scalars(select(Service)))

        users = []
        for row in await self.db.run(read):
            for p in store.loads(row.spec, {}).get("predictors", []):
                if p.get("owner") == owner and p.get("model") == name:
                    if version is None or p.get("version") == version:
                        users.append(f"{row.owner}/{row.name}")
                        break
        return users

    # --- checks ---------------------------------------------------------------------------
    def _flavor(self, name: str, where: str):
        try:
            return self.policy.flavor(name)
        except InvalidOptions as e:
            raise APIError(400, f"{where}.flavor: {e}") from None

    async def _check_flavor(self, p: dict, where: str):
        """The predictor's flavor: known, and one replica of it fits the machine."""
        flavor = self._flavor(p["flavor"], where)
        capacity = await self.runner.capacity()
        if capacity is not None:
            ncpu, memory = capacity
            if (ncpu and flavor.cpu > ncpu) or (memory and flavor.memory > memory):
                raise APIError(
                    400,
                    f"{where}: flavor {flavor.name!r} needs {flavor.cpu:g} vCPUs and "
                    f"{format_bytes(flavor.memory)} per replica; this machine has {ncpu:g} "
                    f"vCPUs and {format_bytes(memory)}. Pick a smaller flavor.",
                )
        return flavor

    async def _check_model(self, caller: dict, p: dict, where: str) -> None:
        """The model version exists, is ready, and the caller may deploy it (theirs, or
        their workspace's)."""

        def read(session):
            model = store.find_model(session, p["owner"], p["model"])
            if model is None:
                return None, None
            return model, store.find_model_version(session, model, p["version"])

        model, version = await self.db.run(read)
        visible = model is not None and (
            caller.get("admin")
            or model.owner == caller["name"]
            or (
                model.workspace != "default"
                and model.workspace in await self._member_of(caller["name"])
            )
        )
        if not visible:
            raise APIError(
                404,
                f"{where}: no model {p['model']!r} of user {p['owner']!r} that you may deploy. "
                "Register it first (POST /models), or name the owner of a model shared with "
                "your workspace.",
            )
        if version is None:
            raise APIError(
                404, f"{where}: model {p['owner']}/{p['model']} has no version {p['version']}."
            )
        if version.state != READY:
            why = f" ({version.reason})" if version.reason else ""
            raise APIError(
                409,
                f"{where}: version {p['version']} of model {p['owner']}/{p['model']} is "
                f"{version.state}{why}; only ready versions can be deployed.",
            )

    async def _check_predictors(self, caller: dict, predictors: list[dict], all_of=None):
        """Flavors and models of predictors (their indexes in `all_of`, if given)."""
        indexes = all_of or predictors
        for p in predictors:
            where = f"predictors[{indexes.index(p)}]"
            await self._check_flavor(p, where)
            await self._check_model(caller, p, where)

    def _reserved(self, predictors: list[dict]) -> tuple[float, float, int]:
        total = [0.0, 0.0, 0]
        for p in predictors:
            try:
                flavor = self.policy.flavor(p["flavor"])
            except InvalidOptions:
                continue  # a flavor removed since: holds nothing
            for i, value in enumerate(reservation(flavor, p["max_replicas"])):
                total[i] += value
        return tuple(total)

    async def _check_quota(self, owner: str, predictors: list[dict], exclude: int | None = None):
        """HTTP 403 with the figures unless every predictor at its maximum of replicas fits the
        owner's vCPU, memory and GPU quota with their running instances and other services."""
        if self.quotas is None:
            return
        limits = await self.quotas.limits(owner)
        if not any(limits.get(k) for k in ("vcpus", "memory_gib", "gpus")):
            return

        def read(session):
            q = select(Service).where(Service.owner == owner, Service.state != STOPPED)
            return [store.loads(r.spec, {}) for r in session.scalars(q) if r.id != exclude]

        others = [p for spec in await self.db.run(read) for p in spec.get("predictors", [])]
        held = self._reserved(others)
        need = self._reserved(predictors)
        instances = self.quotas.usage(owner, (await self.hub.servers(owner)) or {})
        detail = " + ".join(f"{p['max_replicas']} x {p['flavor']}" for p in predictors)
        for key, used, services, add, unit in (
            ("vcpus", instances.vcpus, held[0], need[0], "vCPUs"),
            ("memory_gib", instances.memory_gib, held[1], need[1], "GiB of memory"),
            ("gpus", instances.gpus, held[2], need[2], "GPUs"),
        ):
            limit = limits.get(key) or 0
            if limit and add and used + services + add > limit + 1e-9:
                raise APIError(
                    403,
                    f"Quota exceeded: the service's replicas need up to {add:g} {unit} "
                    f"({detail} at max_replicas), and {used + services:g} of your {limit:g} "
                    f"are in use (instances {used:g}, other services {services:g}). Lower "
                    "max_replicas, pick a smaller flavor, stop an instance or a service, or "
                    "ask an administrator to raise the quota.",
                )

    async def _resolve(self, user: str, p: dict, where: str = "predictor") -> Deployment:
        """A predictor's deployment: the model's files re-checked against their SHA-256s
        (409 when one changed), its image found on the backend."""
        flavor = self._flavor(p["flavor"], where)
        registry = self.registry
        if registry is None:
            raise APIError(503, "The model registry is not available; try again shortly.")
        folder, version = await registry.deploy_files(p["owner"], p["model"], p["version"])
        image_name = version.get("image") or ""
        await self.policy.prefetch(p["owner"], image_name)
        try:
            image = self.policy.image(image_name, p["owner"])
        except InvalidOptions as e:
            raise APIError(
                400, f"{where}: model {p['owner']}/{p['model']} v{p['version']}: {e}"
            ) from None
        if await self.runner.image_present(image.ref) is False:
            raise APIError(
                400,
                f"{where}: image {image_name!r} ({image.ref}) of model {p['model']} is not "
                f"built on this machine. Build it with `workbench images build {image.name}`.",
            )
        if version.get("format") == "image":
            command = tuple(shlex.split(version.get("command") or ""))
        else:
            command = SERVING_COMMAND
        return Deployment(str(folder or ""), version, image.ref, command, flavor)

    async def _deploy(self, rt: Runtime, p) -> Deployment:
        """A predictor's deployment for a new replica (a scale-up, a restart)."""
        return await self._resolve(rt.owner, p.spec, p.key)

    async def _resolve_all(self, user: str, predictors: list[dict], all_of=None) -> dict:
        indexes = all_of or predictors
        out = {}
        for p in predictors:
            where = f"predictors[{indexes.index(p)}]"
            out[predictor_key(p)] = await self._resolve(user, p, where)
        return out

    # --- state ----------------------------------------------------------------------------
    async def _set_state(self, rt: Runtime, state: str, reason: str) -> None:
        """A service's state: at once for the router, then in the database."""
        rt.state, rt.reason = state, reason

        def write(session):
            row = session.get(Service, rt.id)
            if row is not None:
                row.state, row.reason = state, reason

        await self.db.run(write)
        log.info("service %s/%s: %s %s", rt.owner, rt.name, state, reason)

    async def _write(self, service_id: int, **fields) -> None:
        def write(session):
            row = session.get(Service, service_id)
            if row is not None:
                for key, value in fields.items():
                    setattr(row, key, value)
                row.updated = utcnow()

        await self.db.run(write)

    # --- creating -------------------------------------------------------------------------
    async def create(self, caller: dict, body: dict) -> dict:
        owner = caller["name"]
        try:
            check_fields(body, CREATE_FIELDS, "a service")
            name = check_name(body.get("name"))
            description = check_description(body.get("description"))
            public = check_public(body.get("public"))
            scale_to_zero = check_scale_to_zero(body.get("scale_to_zero_seconds"))
            workspace = body.get("workspace") or "default"
            if not isinstance(workspace, str):
                raise SpecError("workspace must be a workspace's name.")
            predictors = check_predictors(
                body.get("predictors"), owner, self.config.max_replicas, self.policy.default_flavor
            )
        except SpecError as e:
            raise APIError(400, str(e)) from None
        if workspace != "default" and workspace not in await self._member_of(owner):
            raise APIError(400, f"You are not a member of workspace {workspace!r}.")
        async with self._owner_lock(owner):
            if await self.db.run(lambda s: store.find_service(s, owner, name)) is not None:
                raise APIError(409, f"You already have a service named {name!r}; pick another.")
            await self._check_predictors(caller, predictors)
            await self._check_quota(owner, predictors)
            deployments = await self._resolve_all(owner, predictors)
            spec = {
                "uid": secrets.token_hex(4),
                "model_name": predictors[0]["model"],
                "predictors": predictors,
                "scale_to_zero_seconds": scale_to_zero,
            }

            def insert(session):
                row = Service(
                    owner=owner,
                    name=name,
                    description=description,
                    workspace=workspace,
                    public=public,
                    state=DEPLOYING,
                    reason="starting replicas",
                    spec=json.dumps(spec),
                )
                session.add(row)
                session.flush()
                session.expunge(row)
                return row

            try:
                row = await self.db.run(insert)
            except IntegrityError:
                raise APIError(409, f"You already have a service named {name!r}.") from None
            rt = self._runtime(row, spec)
            for key, deployment in deployments.items():
                rt.predictors[key].deployment = deployment
            try:
                if self.managed:
                    await self._apply(self._service_plan(rt, predictors, deployments))
                else:
                    await self._start_minimum(rt, list(rt.predictors.values()))
            except BaseException as e:
                if self.managed:
                    await self.runner.delete(owner, name)
                else:
                    await self.runner.remove_service(rt.object_name)
                await self.db.run(lambda s: s.execute(delete(Service).where(Service.id == row.id)))
                if isinstance(e, APIError):
                    raise
                if not isinstance(e, Exception):
                    raise
                raise APIError(
                    503, f"The service's replicas could not be started: {short(e)}"
                ) from None
            self._register(rt)
        self.wakeup.set()
        log.info("service %s/%s deployed: %s", owner, name, ", ".join(rt.predictors))
        return self._model(row)

    # --- changing -------------------------------------------------------------------------
    async def update(self, caller: dict, owner: str, name: str, body: dict) -> dict:
        row = await self._service(caller, owner, name, change=True)
        try:
            check_fields(body, UPDATE_FIELDS, "a service's changes")
            fields = {}
            if "description" in body:
                fields["description"] = check_description(body["description"])
            if "public" in body:
                fields["public"] = check_public(body["public"])
            scale_to_zero = None
            if "scale_to_zero_seconds" in body:
                scale_to_zero = check_scale_to_zero(body["scale_to_zero_seconds"])
            new = None
            if "predictors" in body:
                new = check_predictors(
                    body["predictors"],
                    row.owner,
                    self.config.max_replicas,
                    self.policy.default_flavor,
                )
        except SpecError as e:
            raise APIError(400, str(e)) from None
        spec = store.loads(row.spec, {})
        removed = []
        rt = self.services.get((row.owner, row.name))
        async with self._owner_lock(row.owner), rt.lock if rt else asyncio.Lock():
            if new is not None:
                removed = await self._change_predictors(caller, row, rt, spec, new, scale_to_zero)
            elif scale_to_zero is not None and self.managed and _deployed(rt):
                specs = spec["predictors"]
                deployments = await self._deployments_of(rt, specs)
                await self._apply(self._service_plan(rt, specs, deployments, scale_to_zero))
            if scale_to_zero is not None:
                spec["scale_to_zero_seconds"] = scale_to_zero
                if rt is not None:
                    rt.scale_to_zero_seconds = scale_to_zero
            if rt is not None and "public" in fields:
                rt.public = fields["public"]
            await self._write(row.id, spec=json.dumps(spec), **fields)
        for p in removed:
            await self._drain_predictor(rt, p)
        self.wakeup.set()
        return await self.get(caller, row.owner, row.name)

    async def _change_predictors(
        self, caller, row: Service, rt, spec: dict, new: list[dict], scale_to_zero=None
    ):
        """New predictors (a canary, new weights or replica counts): the new ones are checked
        and their minimum started (a managed backend: the service's new plan applied) before
        anything changes; returns the predictors to drain."""
        old = {predictor_key(p): p for p in spec["predictors"]}
        for i, p in enumerate(new):
            before = old.get(predictor_key(p))
            if before is not None and before["flavor"] != p["flavor"]:
                raise APIError(
                    400,
                    f"predictors[{i}]: the flavor of a deployed predictor cannot change "
                    f"({before['flavor']} to {p['flavor']}); deploy the version again as a "
                    "canary of another service, or delete and recreate this one.",
                )
        added = [p for p in new if predictor_key(p) not in old]
        await self._check_predictors(caller, added, all_of=new)
        running = row.state != STOPPED and (rt is None or rt.state != STOPPED)
        if running:
            await self._check_quota(row.owner, new, exclude=row.id)
        deployments = await self._resolve_all(row.owner, added, all_of=new)
        if self.managed and running and rt is not None:
            kept = [p for p in new if predictor_key(p) not in deployments]
            deployments.update(await self._deployments_of(rt, kept))
            await self._apply(self._service_plan(rt, new, deployments, scale_to_zero))
        removed = []
        if rt is not None:
            fresh = {}
            for p in added:
                key = predictor_key(p)
                fresh[key] = new_predictor(rt.metrics, key, p)
                fresh[key].deployment = deployments[key]
            if running and not self.managed:
                try:
                    await self._start_minimum(rt, list(fresh.values()))
                except APIError:
                    raise
                except Exception as e:
                    raise APIError(
                        503, f"The new predictor's replicas could not be started: {short(e)}"
                    ) from None
            predictors = {}
            for p in new:
                key = predictor_key(p)
                current = rt.predictors.get(key)
                if current is not None:
                    current.spec.update(p)
                    predictors[key] = current
                else:
                    predictors[key] = fresh[key]
            removed = [p for key, p in rt.predictors.items() if key not in predictors]
            for p in removed:
                p.draining = True  # the router stops sending to it now
                p.notify()
            rt.predictors = predictors
        spec["predictors"] = new
        if self.managed:  # the backend drains them itself
            for p in removed:
                self._let_go(rt, p)
            return []
        return removed

    async def _wait_ready(self, p, within: float) -> bool:
        """Wait for a ready replica of a predictor (waking it from zero)."""
        deadline = time.monotonic() + within
        while not p.ready():
            if p.failed or time.monotonic() >= deadline:
                return False
            p.waking = True
            p.waiting += 1
            self.wakeup.set()
            try:
                await asyncio.wait_for(p.changed.wait(), min(1.0, deadline - time.monotonic()))
            except TimeoutError:
                pass
            finally:
                p.waiting -= 1
        return True

    async def promote(self, caller: dict, owner: str, name: str, rollback=False) -> dict:
        """The canary takes every request and the stable predictor leaves (rollback: the
        canary leaves). The leaving one stops getting requests first, its requests in flight
        finish, then its replicas stop: no request is dropped."""
        row = await self._service(caller, owner, name, change=True)
        spec = store.loads(row.spec, {})
        verb = "roll back" if rollback else "promote"
        if len(spec["predictors"]) != 2:
            raise APIError(
                409,
                f"Service {owner}/{name} has no canary to {verb}: it has one predictor. Add one "
                "with PATCH (predictors: the stable one and the new version, with weights).",
            )
        stable, canary = spec["predictors"]
        keep, drop = (stable, canary) if rollback else (canary, stable)
        rt = self.services.get((row.owner, row.name))
        kept = rt.predictors.get(predictor_key(keep)) if rt else None
        if kept is not None and rt.state != STOPPED and not kept.ready() and not self.managed:
            # it takes every request next: one of its replicas must answer first
            timeout = self.config.cold_start_timeout_seconds
            if not await self._wait_ready(kept, timeout):
                why = kept.failed or kept.last_failure or f"none within {timeout:g} s"
                raise APIError(
                    409,
                    f"Cannot {verb}: {predictor_key(keep)} has no ready replica ({why}).",
                )
        dropped = None
        async with self._owner_lock(row.owner), rt.lock if rt else asyncio.Lock():
            if self.managed and _deployed(rt):
                # the backend moves the traffic once the kept version's revision is ready
                from .kserve_manifests import promoted, rolled_back

                deployments = await self._deployments_of(rt, spec["predictors"])
                plan = self._service_plan(rt, spec["predictors"], deployments)
                await self._apply(rolled_back(plan) if rollback else promoted(plan))
            spec["predictors"] = [{**keep, "weight": 100}]
            if rt is not None:
                dropped = rt.predictors.get(predictor_key(drop))
                if dropped is not None:
                    dropped.draining = True  # the router stops sending to it now
                    dropped.notify()
                kept.spec["weight"] = 100
                rt.predictors = {predictor_key(keep): kept}
            await self._write(row.id, spec=json.dumps(spec))
        if dropped is not None and self.managed:
            self._let_go(rt, dropped)
        elif dropped is not None:
            await self._drain_predictor(rt, dropped)
        log.info("service %s/%s: %s kept, %s gone", owner, name, predictor_key(keep), drop)
        self.wakeup.set()
        return await self.get(caller, owner, name)

    # --- starting, stopping, deleting -----------------------------------------------------
    async def start(self, caller: dict, owner: str, name: str) -> dict:
        row = await self._service(caller, owner, name, change=True)
        rt = self.services.get((row.owner, row.name))
        if rt is not None and rt.state in (DEPLOYING, RUNNING):
            return self._model(row)
        spec = store.loads(row.spec, {})
        predictors = spec["predictors"]
        async with self._owner_lock(row.owner):
            await self._check_predictors(caller, predictors)
            await self._check_quota(row.owner, predictors, exclude=row.id)
            deployments = await self._resolve_all(row.owner, predictors)
            if rt is not None:
                await self._stop_runtime(rt, "restarting")  # a failed one's leftovers
            fresh = self._runtime(row, spec)
            for key, deployment in deployments.items():
                fresh.predictors[key].deployment = deployment
            if rt is not None:
                fresh.metrics = rt.metrics
                for key, p in fresh.predictors.items():
                    p.metrics = rt.metrics.predictor(key)
            await self._set_state(fresh, DEPLOYING, "starting replicas")
            try:
                if self.managed:
                    await self._apply(self._service_plan(fresh, predictors, deployments))
                else:
                    await self._start_minimum(fresh, list(fresh.predictors.values()))
            except BaseException as e:
                await self._set_state(fresh, STOPPED, f"could not start: {short(e)}")
                self._register(fresh)
                if isinstance(e, APIError) or not isinstance(e, Exception):
                    raise
                raise APIError(
                    503, f"The service's replicas could not be started: {short(e)}"
                ) from None
            self._register(fresh)
        self.wakeup.set()
        return await self.get(caller, owner, name)

    async def _stop_runtime(self, rt: Runtime, reason: str) -> None:
        """Stop every replica of a service: the router answers 503 at once, requests in
        flight finish, then the replicas stop."""
        await self._set_state(rt, STOPPED, reason)
        pairs = [(p, r) for p in rt.predictors.values() for r in list(p.replicas.values())]
        for p in rt.predictors.values():
            p.notify()
        if self.managed:  # its requests in flight end with it
            rt.upstream = ""
            await self.runner.delete(rt.owner, rt.name)
            for p, r in pairs:
                p.replicas.pop(r.id, None)
                rt.metrics.forget_replica(r.id)
                self._meter_close(rt, r)
            return
        await self._drain(rt, pairs)

    async def stop(self, caller: dict, owner: str, name: str) -> dict:
        row = await self._service(caller, owner, name, change=True)
        rt = self.services.get((row.owner, row.name))
        if rt is None:
            rt = self._runtime(row, store.loads(row.spec, {}))
            self._register(rt)
        if rt.state != STOPPED:
            await self._stop_runtime(rt, "stopped by the user")
        return await self.get(caller, owner, name)

    async def delete(self, caller: dict, owner: str, name: str) -> None:
        row = await self._service(caller, owner, name, change=True)
        rt = self.services.pop((row.owner, row.name), None)
        self.by_id.pop(row.id, None)
        object_name = f"{self.prefix}-svc-{store.loads(row.spec, {}).get('uid')}"
        if rt is not None:
            await self._stop_runtime(rt, "deleted")
        if self.managed:
            await self.runner.delete(row.owner, row.name)
        else:
            for info in await self.runner.list_replicas(object_name):
                await self.runner.stop_replica(info.id, 0)
            await self.runner.remove_service(object_name)

        def remove(session):
            session.execute(delete(ServiceKey).where(ServiceKey.service_id == row.id))
            session.execute(delete(Service).where(Service.id == row.id))

        await self.db.run(remove)
        self._forget_keys(row.id)
        log.info("service %s/%s deleted", row.owner, row.name)

    # --- keys -----------------------------------------------------------------------------
    async def keys(self, caller: dict, owner: str, name: str) -> list[dict]:
        row = await self._service(caller, owner, name, change=True)

        def read(session):
            q = select(ServiceKey).where(ServiceKey.service_id == row.id).order_by(ServiceKey.id)
            return [_key_model(k) for k in session.scalars(q)]

        return await self.db.run(read)

    async def create_key(self, caller: dict, owner: str, name: str, body: dict) -> dict:
        """A new access key: its secret is in this answer only (the platform keeps its hash)."""
        row = await self._service(caller, owner, name, change=True)
        try:
            check_fields(body, {"name"}, "a key")
            key_name = body.get("name")
            if key_name is not None:
                check_key_name(key_name)
        except SpecError as e:
            raise APIError(400, str(e)) from None
        secret = KEY_PREFIX + secrets.token_urlsafe(32)

        def insert(session):
            taken = {
                k.name
                for k in session.scalars(select(ServiceKey).where(ServiceKey.service_id == row.id))
            }
            chosen = key_name or next(
                f"key-{i}" for i in range(1, len(taken) + 2) if f"key-{i}" not in taken
            )
            if chosen in taken:
                return None
            key = ServiceKey(
                service_id=row.id, name=chosen, prefix=secret[:8], hash=key_hash(secret)
            )
            session.add(key)
            session.flush()
            return _key_model(key)

        try:
            made = await self.db.run(insert)
        except IntegrityError:
            made = None
        if made is None:
            raise APIError(409, f"Service {owner}/{name} already has a key named {key_name!r}.")
        self._no_keys.clear()
        return {**made, "key": secret}

    async def delete_key(self, caller: dict, owner: str, name: str, key_name: str) -> None:
        row = await self._service(caller, owner, name, change=True)

        def remove(session):
            q = select(ServiceKey).where(
                ServiceKey.service_id == row.id, ServiceKey.name == key_name
            )
            key = session.scalars(q).first()
            if key is None:
                return None
            session.delete(key)
            return key.id

        key_id = await self.db.run(remove)
        if key_id is None:
            raise APIError(404, f"Service {owner}/{name} has no key named {key_name!r}.")
        self._forget_keys(row.id, key_id)

    def _forget_keys(self, service_id: int, key_id: int | None = None) -> None:
        """Drop cached keys of a service (one of them, if given): the router asks again."""
        self._keys_generation += 1
        for digest, (sid, kid) in list(self._keys.items()):
            if sid == service_id and (key_id is None or kid == key_id):
                del self._keys[digest]

    async def service_of_key(self, key: str) -> int | None:
        """The id of the service a key opens (None: no such key), cached in memory."""
        digest = key_hash(key)
        found = self._keys.get(digest)
        if found is not None:
            self._key_used(found[1])
            return found[0]
        now = time.monotonic()
        if self._no_keys.get(digest, 0) > now:
            return None
        generation = self._keys_generation

        def read(session):
            row = session.scalars(select(ServiceKey).where(ServiceKey.hash == digest)).first()
            return (row.service_id, row.id) if row else None

        found = await self.db.run(read)
        if found is None:
            if len(self._no_keys) > 10000:
                self._no_keys.clear()
            self._no_keys[digest] = now + 10
            return None
        if generation == self._keys_generation:  # no key was deleted meanwhile
            self._keys[digest] = found
        self._key_used(found[1])
        return found[0]

    def _key_used(self, key_id: int) -> None:
        now = time.monotonic()
        if now - self._key_written.get(key_id, -KEY_USED_SECONDS) < KEY_USED_SECONDS:
            return
        self._key_written[key_id] = now

        def write(session):
            key = session.get(ServiceKey, key_id)
            if key is not None:
                key.last_used = utcnow()

        self._spawn(self.db.run(write))

    async def may_call(self, user: dict, rt: Runtime) -> bool:
        """Whether a signed-in user may call a service: its owner, an administrator, or (a
        public service) a member of its workspace."""
        if user.get("name") == rt.owner or user.get("admin"):
            return True
        if not rt.public:
            return False
        if rt.workspace == "default":
            return True
        cache_key = (user["name"], rt.workspace)
        cached = self._members.get(cache_key)
        now = time.monotonic()
        if cached is not None and cached[1] > now:
            return cached[0]
        member = rt.workspace in await self._member_of(user["name"])
        if len(self._members) > 10000:
            self._members.clear()
        self._members[cache_key] = (member, now + MEMBERSHIP_SECONDS)
        return member

    # --- metrics and logs -----------------------------------------------------------------
    async def metrics(self, caller: dict, owner: str, name: str, fmt: str = "json"):
        row = await self._service(caller, owner, name)
        keys = [predictor_key(p) for p in store.loads(row.spec, {}).get("predictors", [])]
        rt = self.services.get((row.owner, row.name))
        metrics = rt.metrics if rt is not None else ServiceMetrics()
        if fmt == "prometheus":
            return prometheus([(f"{row.owner}/{row.name}", metrics, keys)])
        return metrics.model(keys)

    async def logs(self, caller: dict, owner: str, name: str, replica: str = "") -> str:
        row = await self._service(caller, owner, name)
        rt = self.services.get((row.owner, row.name))
        known = [r.id for p in (rt.predictors.values() if rt else ()) for r in p.replicas.values()]
        if not replica:
            if not known:
                raise APIError(404, f"Service {owner}/{name} has no replicas now.")
            replica = known[0]
        if self.managed:
            try:
                return await self.runner.logs(row.owner, row.name, replica)
            except LookupError:
                raise APIError(
                    404, f"Service {owner}/{name} has no replica {replica!r}; see its replicas."
                ) from None
        if replica not in known:
            object_name = f"{self.prefix}-svc-{store.loads(row.spec, {}).get('uid')}"
            found = {i.id for i in await self.runner.list_replicas(object_name)}
            if replica not in found:
                raise APIError(
                    404, f"Service {owner}/{name} has no replica {replica!r}; see its replicas."
                )
        return await self.runner.replica_logs(replica)

    # --- a managed backend (KServe) -------------------------------------------------------
    @staticmethod
    def _predictor_plan(p: dict, d: Deployment):
        """A predictor as a managed backend runs it: its model version's files (the model
        store's <owner>/<model>/<version> folder), image, flavor, share and bounds."""
        from .kserve_manifests import IMAGE_FORMAT, PredictorPlan

        where = (p["owner"], p["model"], str(p["version"]))
        if d.folder and PurePosixPath(d.folder).parts[-3:] != where:
            raise APIError(
                500, f"The model store keeps {'/'.join(where)} in {d.folder}, not below its root."
            )
        model_format = d.version.get("format") or ""
        return PredictorPlan(
            model=p["model"],
            version=p["version"],
            format=model_format,
            image_ref=d.image_ref,
            owner=p["owner"],
            weight=p["weight"],
            cpu=d.flavor.cpu,
            memory=d.flavor.memory,
            gpu=d.flavor.gpu,
            gpu_type=d.flavor.gpu_type,
            min_replicas=p["min_replicas"],
            max_replicas=p["max_replicas"],
            target_in_flight=p["target_in_flight"],
            predictor=d.version.get("predictor") or "",
            signature=d.version.get("signature") or {},
            command=(d.version.get("command") or "") if model_format == IMAGE_FORMAT else "",
        )

    def _service_plan(self, rt: Runtime, specs: list[dict], deployments: dict, scale_to_zero=None):
        """The ServicePlan of a service with predictors `specs` (stable first), each resolved
        in `deployments` (by predictor key)."""
        from .kserve_manifests import ServicePlan

        return ServicePlan(
            owner=rt.owner,
            name=rt.name,
            predictors=tuple(self._predictor_plan(p, deployments[predictor_key(p)]) for p in specs),
            model_name=rt.model_name,
            workspace=rt.workspace,
            scale_to_zero_seconds=(
                rt.scale_to_zero_seconds if scale_to_zero is None else scale_to_zero
            ),
        )

    async def _deployments_of(self, rt: Runtime, specs: list[dict]) -> dict:
        """The deployments of predictors of a running service: those known, the others
        resolved (their files checked again)."""
        out = {}
        for p in specs:
            key = predictor_key(p)
            live = rt.predictors.get(key)
            deployment = live.deployment if live else None
            if deployment is None:
                deployment = await self._resolve(rt.owner, p, key)
                if live is not None:
                    live.deployment = deployment
            out[key] = deployment
        return out

    def _let_go(self, rt: Runtime, p) -> None:
        """Stop following a predictor the managed backend takes away (its replicas' meters
        and figures end now)."""
        for replica in p.replicas.values():
            rt.metrics.forget_replica(replica.id)
            self._meter_close(rt, replica)
        p.replicas = {}

    async def _apply(self, plan) -> None:
        """Bring the service on the managed backend to `plan`; refusals as clear errors."""
        try:
            await self.runner.apply(plan)
        except APIError:
            raise
        except ValueError as e:
            raise APIError(400, f"The cluster cannot run this service: {e}.") from None
        except Exception as e:  # noqa: BLE001 - the cluster's words, as the answer
            code = 409 if getattr(e, "status", 0) == 409 else 503
            raise APIError(code, f"The cluster did not take the service: {short(e)}") from None

    async def _watch_managed(self, rt: Runtime) -> None:
        """One look at a service on a managed backend: its state and reason, its address
        (the router's upstream) and each predictor's replicas, as the backend reports them."""
        if rt.state == STOPPED:
            return
        try:
            status = await self.runner.status(rt.owner, rt.name)
        except Exception as e:  # noqa: BLE001 - the reason until the cluster answers again
            reason = f"cannot read its state from the cluster: {short(e)}"
            if reason != rt.reason:
                await self._set_state(rt, rt.state, reason)
            return
        if rt.state == STOPPED:  # stopped meanwhile
            return
        upstream = status["url"] if status["exists"] else ""
        changed, rt.upstream = upstream != rt.upstream, upstream
        found = {f"{p['model']}:{p['version']}": p for p in status["predictors"]}
        for key, p in rt.predictors.items():
            replicas = {}
            for r in (found.get(key) or {}).get("replicas", []):
                replica = p.replicas.get(r["id"])
                if replica is None:
                    replica = Replica(r["id"], key)
                    self._meter_open(rt, p, replica)
                changed = changed or replica.state != r["state"]
                replica.state, replica.restarts = r["state"], r["restarts"]
                replicas[r["id"]] = replica
            for gone in p.replicas.keys() - replicas.keys():
                rt.metrics.forget_replica(gone)
                self._meter_close(rt, p.replicas[gone])
                changed = True
            p.replicas = replicas
        if changed:  # requests waiting for an address
            for p in rt.predictors.values():
                p.notify()
        reason = "" if status["ready"] else status["reason"]
        if not status["exists"]:
            state, reason = SERVICE_FAILED, f"{reason}; start the service to make it again"
        elif status["failed"]:
            state = SERVICE_FAILED
        elif status["ready"] or rt.state == RUNNING:
            state = RUNNING
        else:
            state = DEPLOYING
        if (state, reason) != (rt.state, rt.reason):
            await self._set_state(rt, state, reason)

    # --- the loop -------------------------------------------------------------------------
    async def startup(self) -> None:
        """Take up what a restart left running, then watch services (a task)."""
        self._loop_task = asyncio.ensure_future(self._loop())

    async def close(self) -> None:
        """Stop watching (replicas go on; the next start takes them up)."""
        if self._loop_task is not None:
            self._loop_task.cancel()
        for task in list(self._tasks):
            task.cancel()
        await self.close_clients()
        await self.runner.close()

    async def _take_up(self) -> None:
        def read(session):
            return list(session.scalars(select(Service).order_by(Service.id)))

        for row in await self.db.run(read):
            if (row.owner, row.name) in self.services:
                continue
            spec = store.loads(row.spec, {})
            if "uid" not in spec:
                continue
            rt = self._runtime(row, spec)
            # a managed backend's services are read back by the loop
            infos = [] if self.managed else await self.runner.list_replicas(rt.object_name)
            for info in infos:
                p = rt.predictors.get(info.predictor)
                if row.state == STOPPED or p is None:
                    await self.runner.stop_replica(info.id, 0)
                    continue
                # its health check makes it ready again (a gone one is replaced)
                p.replicas[info.id] = Replica(info.id, p.key, state=STARTING)
            self._register(rt)
            if rt.state != STOPPED:
                log.info("taking up service %s/%s (%s)", rt.owner, rt.name, rt.state)
        self.taken_up = True

    async def _loop(self) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("service manager pass failed")
            try:
                await asyncio.wait_for(self.wakeup.wait(), self.config.poll_seconds)
            except TimeoutError:
                pass
            self.wakeup.clear()

    async def tick(self) -> None:
        """One pass: every service looked at (those being changed are left for the next)."""
        if not self.taken_up:
            await self._take_up()
        runtimes = list(self.services.values())
        await asyncio.gather(*(self._watch_one(rt) for rt in runtimes))
        now = time.monotonic()
        if now - self._stats_at >= STATS_SECONDS:
            self._stats_at = now
            self._spawn(self.sample_stats(runtimes))

    async def _watch_one(self, rt: Runtime) -> None:
        if rt.lock.locked():
            return
        async with rt.lock:
            try:
                await (self._watch_managed(rt) if self.managed else self.watch(rt))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("watching service %s/%s failed", rt.owner, rt.name)


def _deployed(rt: Runtime | None) -> bool:
    """Whether a service runs on its backend now (so a change is applied there)."""
    return rt is not None and rt.state != STOPPED


def _key_model(key: ServiceKey) -> dict:
    return {
        "name": key.name,
        "prefix": key.prefix,
        "created": isoformat(key.created),
        "last_used": isoformat(key.last_used) if key.last_used else None,
    }
