"""The Kubernetes job runner: versions as indexed Jobs or TrainJobs, node states from pods."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator
from datetime import datetime

import aiohttp
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.rest import ApiException

from .kube_manifests import (
    CONTAINER,
    INDEX_KEY,
    RESTART_LABEL,
    TORCH_RUNTIME,
    TRAINER_GROUP,
    TRAINER_VERSION,
    TRAINJOB_PLURAL,
    make_job,
    make_service,
    make_trainjob,
    pod_selector,
    service_name,
    uses_trainjob,
)
from .plan import JobPlan
from .runners import EXITED, MISSING, PENDING, RUNNING, JobRunner, NodeStatus, lines_of

log = logging.getLogger("workbench.jobs.kubernetes")


def _selector(labels: dict[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


def _epoch(stamp) -> float:
    if not stamp:
        return 0
    try:
        return datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0


def _condition(obj: dict | None, kind: str) -> dict | None:
    """The owner's condition `kind` when it is true."""
    for condition in ((obj or {}).get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind and condition.get("status") == "True":
            return condition
    return None


def pod_index(pod: dict) -> int | None:
    """The node rank of a pod: its job-completion-index label or annotation."""
    metadata = pod.get("metadata") or {}
    for where in ("labels", "annotations"):
        value = (metadata.get(where) or {}).get(INDEX_KEY)
        if value is not None:
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _exited(rank: int, terminated: dict, pod_status: dict) -> NodeStatus:
    oom = terminated.get("reason") == "OOMKilled"
    if oom:
        reason = "out of memory"
    else:
        reason = (
            pod_status.get("message") or terminated.get("message") or terminated.get("reason") or ""
        )
        if reason in ("Completed", "Error"):
            reason = ""
    return NodeStatus(
        rank=rank,
        state=EXITED,
        exit_code=terminated.get("exitCode"),
        oom=oom,
        reason=str(reason).strip(),
        started=_epoch(terminated.get("startedAt")),
    )


def node_status(rank: int, pod: dict) -> NodeStatus:
    """What a pod (as the API returns it, camelCase JSON) says of its node.

    A pod the scheduler cannot place is PENDING with the scheduler's message as reason (never
    running), an OOM-killed container EXITED with oom=True, a container the kubelet keeps
    restarting (CrashLoopBackOff) EXITED with its last exit.
    """
    status = pod.get("status") or {}
    statuses = status.get("containerStatuses") or []
    container = next((c for c in statuses if c.get("name") == CONTAINER), None)
    if container is None and statuses:
        container = statuses[0]
    state = (container or {}).get("state") or {}
    if state.get("terminated"):
        return _exited(rank, state["terminated"], status)
    if state.get("running"):
        stopping = bool((pod.get("metadata") or {}).get("deletionTimestamp"))
        return NodeStatus(
            rank=rank,
            state=RUNNING,
            reason="stopping" if stopping else "",
            started=_epoch(state["running"].get("startedAt")),
        )
    waiting = state.get("waiting") or {}
    last = ((container or {}).get("lastState") or {}).get("terminated")
    if waiting.get("reason") == "CrashLoopBackOff" and last:
        return _exited(rank, last, status)
    if status.get("phase") in ("Succeeded", "Failed"):
        reason = status.get("message") or status.get("reason") or ""
        return NodeStatus(rank=rank, state=EXITED, reason=reason)
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            reason = condition.get("message") or condition.get("reason") or "not scheduled"
            return NodeStatus(rank=rank, state=PENDING, reason=reason)
    if waiting:
        reason = waiting.get("message") or waiting.get("reason") or ""
        return NodeStatus(rank=rank, state=PENDING, reason=reason)
    return NodeStatus(rank=rank, state=PENDING, reason="starting")


def _started(pod: dict) -> bool:
    """Whether the pod's container has started (its log can be read)."""
    status = pod.get("status") or {}
    if status.get("phase") in ("Running", "Succeeded", "Failed"):
        return True
    for container in status.get("containerStatuses") or []:
        state = container.get("state") or {}
        if state.get("running") or state.get("terminated"):
            return True
    return False


class KubernetesJobRunner(JobRunner):
    """Runs job versions in one namespace of a cluster.

    TensorFlow, MindSpore and plain versions (and PyTorch without a Trainer runtime) run as an
    Indexed batch/v1 Job with a headless Service; PyTorch versions run as a Kubeflow Trainer
    TrainJob on the ClusterTrainingRuntime `trainer_runtime`. The version's files are
    sub-paths of the PVC `pvc_name`.

    Arguments:
      namespace: where the jobs' objects are made.
      pvc_name: the PersistentVolumeClaim holding every version's code, output and
        checkpoints (plan.code_source etc. are paths inside it). Default "workbench-jobs".
      api_client: a kubernetes_asyncio ApiClient; None: one is made from the in-cluster
        service account, else from the kubeconfig, on first use (and closed by close()).
      trainer_runtime: the ClusterTrainingRuntime of PyTorch versions, default
        "torch-distributed"; None or "": PyTorch versions run as indexed Jobs too (clusters
        without Kubeflow Trainer).
      labels: extra labels for every object and pod.
      store_claims: the PersistentVolumeClaim of each of the platform's stores a version may
        mount read-only ({"models": "workbench-models"}: a batch run's model files are
        sub-paths of it, <owner>/<model>/<version>, as in the hub's <data>/models); a store
        not named here is the claim "workbench-<store>".
      poll_interval: seconds between looks at a pod that logs() waits for.
      request_timeout: seconds each API call may take (log streams excepted).
    """

    relative_folders = True  # sub-paths of the jobs PVC

    def __init__(
        self,
        namespace: str,
        *,
        pvc_name: str = "workbench-jobs",
        api_client: client.ApiClient | None = None,
        trainer_runtime: str | None = TORCH_RUNTIME,
        labels: dict[str, str] | None = None,
        store_claims: dict[str, str] | None = None,
        poll_interval: float = 2.0,
        request_timeout: float = 30.0,
    ):
        self.namespace = namespace
        self.pvc_name = pvc_name
        self.trainer_runtime = trainer_runtime
        self.labels = dict(labels or {})
        self.store_claims = dict(store_claims or {})
        self.poll_interval = poll_interval
        self.request_timeout = request_timeout
        self._api_client = api_client
        self._own_client = False
        self.core = self.batch = self.custom = None
        if api_client is not None:
            self._make_apis(api_client)

    def store_claim(self, store: str) -> str:
        return self.store_claims.get(store) or super().store_claim(store)

    def _make_apis(self, api_client: client.ApiClient):
        self.core = client.CoreV1Api(api_client)
        self.batch = client.BatchV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)

    async def _ready(self):
        if self.core is not None:
            return
        try:
            config.load_incluster_config()
        except config.ConfigException:
            await config.load_kube_config()
        self._api_client = client.ApiClient()
        self._own_client = True
        self._make_apis(self._api_client)

    def _as_dict(self, obj) -> dict:
        """The API's camelCase JSON of a returned object."""
        if obj is None or isinstance(obj, dict):
            return obj
        return self._api_client.sanitize_for_serialization(obj)

    def _trainjob(self, plan: JobPlan) -> bool:
        return uses_trainjob(plan, self.trainer_runtime)

    # --- the objects -----------------------------------------------------------------------

    async def _delete(self, kind: str, name: str) -> bool:
        """Delete one object; False where it was not there (404)."""
        timeout = self.request_timeout
        try:
            if kind == "job":
                await self.batch.delete_namespaced_job(
                    name,
                    self.namespace,
                    propagation_policy="Background",
                    _request_timeout=timeout,
                )
            elif kind == "service":
                await self.core.delete_namespaced_service(
                    name, self.namespace, _request_timeout=timeout
                )
            else:
                await self.custom.delete_namespaced_custom_object(
                    TRAINER_GROUP,
                    TRAINER_VERSION,
                    self.namespace,
                    TRAINJOB_PLURAL,
                    name,
                    propagation_policy="Background",
                    _request_timeout=timeout,
                )
        except ApiException as e:
            if e.status == 404:
                return False
            raise
        return True

    async def _create(self, create, *args) -> None:
        """Create an object; while one of the same name is still being deleted (409), retry
        for up to request_timeout seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.request_timeout
        while True:
            try:
                await create(*args, _request_timeout=self.request_timeout)
                return
            except ApiException as e:
                if e.status != 409 or loop.time() > deadline:
                    raise
            await asyncio.sleep(self.poll_interval)

    async def start(self, plan: JobPlan, restart: int) -> None:
        await self._ready()
        options = dict(namespace=self.namespace, restart=restart, labels=self.labels)
        trainjob = self._trainjob(plan)
        if trainjob:
            bodies = [
                (
                    "trainjob",
                    make_trainjob(
                        plan, pvc_name=self.pvc_name, runtime=self.trainer_runtime, **options
                    ),
                )
            ]
        else:
            bodies = [
                ("service", make_service(plan, **options)),
                ("job", make_job(plan, pvc_name=self.pvc_name, **options)),
            ]
        # what an earlier attempt left (stopped, not removed) goes first, as on the engine
        await self.remove(plan)
        made: list[tuple[str, str]] = []
        try:
            for kind, body in bodies:
                name = body["metadata"]["name"]
                if kind == "service":
                    await self._create(self.core.create_namespaced_service, self.namespace, body)
                elif kind == "job":
                    await self._create(self.batch.create_namespaced_job, self.namespace, body)
                else:
                    try:
                        await self._create(
                            self.custom.create_namespaced_custom_object,
                            TRAINER_GROUP,
                            TRAINER_VERSION,
                            self.namespace,
                            TRAINJOB_PLURAL,
                            body,
                        )
                    except ApiException as e:
                        if e.status == 404:
                            raise RuntimeError(
                                f"Kubeflow Trainer's TrainJob API ({TRAINER_GROUP}/"
                                f"{TRAINER_VERSION}) is not installed in this cluster (or "
                                f"namespace {self.namespace} is missing): install Kubeflow "
                                "Trainer, or run PyTorch jobs as indexed Jobs (trainer_runtime "
                                "empty)"
                            ) from e
                        raise
                made.append((kind, name))
        except BaseException:
            for kind, name in reversed(made):
                try:
                    await self._delete(kind, name)
                except Exception as e:  # noqa: BLE001 - the original error matters more
                    log.warning("job %s: cannot remove %s %s: %s", plan.object_name, kind, name, e)
            raise
        log.info(
            "job %s: started %d node(s) as a %s in %s (attempt %d)",
            plan.object_name,
            plan.nodes,
            "TrainJob" if trainjob else "Job",
            self.namespace,
            restart,
        )

    async def _owner(self, plan: JobPlan) -> dict | None:
        """The version's Job or TrainJob as JSON; None where there is none."""
        try:
            if self._trainjob(plan):
                obj = await self.custom.get_namespaced_custom_object(
                    TRAINER_GROUP,
                    TRAINER_VERSION,
                    self.namespace,
                    TRAINJOB_PLURAL,
                    plan.object_name,
                    _request_timeout=self.request_timeout,
                )
            else:
                obj = await self.batch.read_namespaced_job(
                    plan.object_name, self.namespace, _request_timeout=self.request_timeout
                )
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        return self._as_dict(obj)

    async def _pods(self, plan: JobPlan) -> tuple[dict | None, dict[int, dict]]:
        """(owner, {rank: pod}) of the current attempt: the pods labelled with the owner's
        attempt (with no owner left: the latest attempt's), the newest one per rank."""
        owner = await self._owner(plan)
        listed = await self.core.list_namespaced_pod(
            self.namespace,
            label_selector=_selector(pod_selector(plan)),
            _request_timeout=self.request_timeout,
        )
        pods = self._as_dict(listed).get("items") or []

        def attempt(obj):
            try:
                return int(((obj.get("metadata") or {}).get("labels") or {}).get(RESTART_LABEL))
            except (TypeError, ValueError):
                return -1

        if owner is not None:
            current = attempt(owner)
        else:
            current = max((attempt(p) for p in pods), default=-1)
        by_rank: dict[int, dict] = {}
        for pod in pods:
            rank = pod_index(pod)
            if attempt(pod) != current or rank is None or not 0 <= rank < plan.nodes:
                continue
            stamp = (pod.get("metadata") or {}).get("creationTimestamp")
            if rank not in by_rank or _epoch(stamp) >= _epoch(
                by_rank[rank]["metadata"].get("creationTimestamp")
            ):
                by_rank[rank] = pod
        return owner, by_rank

    async def status(self, plan: JobPlan) -> list[NodeStatus]:
        await self._ready()
        owner, pods = await self._pods(plan)
        failed, complete = _condition(owner, "Failed"), _condition(owner, "Complete")
        suspended = _condition(owner, "Suspended")
        nodes = []
        for rank in range(plan.nodes):
            if rank in pods:
                nodes.append(node_status(rank, pods[rank]))
            elif owner is None:
                kind = "TrainJob" if self._trainjob(plan) else "Job"
                reason = f"its {kind} {plan.object_name} is gone"
                nodes.append(NodeStatus(rank=rank, state=MISSING, reason=reason))
            elif complete:
                nodes.append(NodeStatus(rank=rank, state=EXITED, exit_code=0))
            elif failed:
                reason = failed.get("message") or failed.get("reason") or "failed"
                nodes.append(NodeStatus(rank=rank, state=EXITED, reason=reason))
            elif suspended:
                nodes.append(NodeStatus(rank=rank, state=EXITED, reason="stopped"))
            else:
                # just created: the controller has not made this node's pod yet
                nodes.append(NodeStatus(rank=rank, state=PENDING, reason="creating the pod"))
        return nodes

    async def stop(self, plan: JobPlan, grace: float = 10) -> None:
        """Suspend the Job (or TrainJob), so that no pod is made again, and delete its pods
        with `grace` seconds as grace period (SIGTERM, then SIGKILL)."""
        await self._ready()
        suspend = [{"op": "add", "path": "/spec/suspend", "value": True}]
        try:
            if self._trainjob(plan):
                await self.custom.patch_namespaced_custom_object(
                    TRAINER_GROUP,
                    TRAINER_VERSION,
                    self.namespace,
                    TRAINJOB_PLURAL,
                    plan.object_name,
                    suspend,
                    _request_timeout=self.request_timeout,
                )
            else:
                await self.batch.patch_namespaced_job(
                    plan.object_name, self.namespace, suspend, _request_timeout=self.request_timeout
                )
        except ApiException as e:
            if e.status != 404:
                raise
        await self.core.delete_collection_namespaced_pod(
            self.namespace,
            label_selector=_selector(pod_selector(plan)),
            grace_period_seconds=max(0, math.ceil(grace)),
            _request_timeout=self.request_timeout,
        )
        log.info("job %s: stopping its pods (grace %ss)", plan.object_name, grace)

    async def remove(self, plan: JobPlan) -> None:
        """Delete the Job, its Service and the TrainJob (whichever exist; their pods go with
        them); idempotent."""
        await self._ready()
        removed = []
        for kind, name in (
            ("job", plan.object_name),
            ("service", service_name(plan)),
            ("trainjob", plan.object_name),
        ):
            # a PyTorch version may have either, whatever trainer_runtime says now
            if kind == "trainjob" and plan.runtime != "pytorch":
                continue
            if await self._delete(kind, name):
                removed.append(kind)
        if removed:
            log.info("job %s: removed %s", plan.object_name, ", ".join(removed))

    async def logs(self, plan: JobPlan, rank: int, since: float = 0) -> AsyncIterator[bytes]:
        """Follow node `rank`'s log. While its pod is not there yet or pending (unschedulable,
        pulling its image) this waits, so a log followed from submission on shows everything;
        it ends when the node exits, or when the version has no pod left to wait for."""
        if not 0 <= rank < plan.nodes:
            raise ValueError(f"no node {rank}: the job has {plan.nodes} node(s)")
        await self._ready()
        try:
            while True:
                owner, pods = await self._pods(plan)
                pod = pods.get(rank)
                if pod is None or not _started(pod):
                    finished = owner is None or any(
                        _condition(owner, kind) for kind in ("Failed", "Complete", "Suspended")
                    )
                    if pod is None and finished:
                        return
                    await asyncio.sleep(self.poll_interval)
                    continue
                response = await self._open_log(pod, since)
                try:
                    if response.status >= 400:
                        text = (await response.text())[:500]
                        if response.status in (400, 404) and node_status(rank, pod).state != EXITED:
                            # not started after all, or replaced meanwhile: look again
                            log.debug("job %s node %d: no log: %s", plan.object_name, rank, text)
                            await asyncio.sleep(self.poll_interval)
                            continue
                        log.warning("job %s node %d: log: %s", plan.object_name, rank, text)
                        return
                    # chunks, not readline(): progress bars write long lines without newlines
                    async for line in lines_of(response.content.iter_any()):
                        yield line
                finally:
                    response.release()
                return
        except (ApiException, aiohttp.ClientError) as e:
            log.warning("job %s node %d: log stream ended: %s", plan.object_name, rank, e)

    async def _open_log(self, pod: dict, since: float):
        options = {}
        if since:
            options["since_seconds"] = max(1, math.ceil(time.time() - since))
        return await self.core.read_namespaced_pod_log(
            pod["metadata"]["name"],
            self.namespace,
            container=CONTAINER,
            follow=True,
            _preload_content=False,
            # no read timeout: a quiet training loop is not a dead stream
            _request_timeout=aiohttp.ClientTimeout(sock_connect=self.request_timeout),
            **options,
        )

    async def close(self) -> None:
        if self._own_client and self._api_client is not None:
            await self._api_client.close()
            self._api_client = None
            self.core = self.batch = self.custom = None
