"""Pure builders of the Kubernetes objects of one job version: indexed Job, Service, TrainJob.

How each node gets the same environment as on the engine (plan.base_environment and
plan.runtime_environment) although every pod of a Job shares one pod template:

- WORKBENCH_NODE_RANK comes from the pod's job-completion-index annotation (a downward-API
  fieldRef, as Kubeflow Trainer sets PET_NODE_RANK), and is the first variable of the list;
- every other rank-dependent value (PET_NODE_RANK, MS_NODE_RANK, TF_CONFIG's task index)
  refers to it as $(WORKBENCH_NODE_RANK): the kubelet expands references to variables defined
  earlier in the list, so node r sees its own rank with no wrapper script (a Job's container
  runs the node command itself; a TrainJob's first changes to /job/code through `sh -c`,
  as neither Trainer nor its patches can set a working directory);
- every literal `$` of the values and of the command is written `$$` (which the kubelet turns
  back into `$`), so nothing the user wrote is expanded; only $(NAME) references to the node's
  own variables in the node command (torchrun's and msrun's settings) are left for the kubelet,
  as plan.expand does on the engine.

Indexed Jobs give pod `<object_name>-<rank>` that hostname; with the Service of the same name
as their subdomain, node r is reachable as `<object_name>-<r>.<object_name>` (job_hosts()).

A TrainJob (PyTorch, the `torch-distributed` ClusterTrainingRuntime) gets numNodes, resources,
image, command and the platform's variables; Trainer's torch plugin sets PET_NNODES,
PET_NPROC_PER_NODE, PET_NODE_RANK, PET_MASTER_ADDR (`<name>-node-0-0.<name>`) and
PET_MASTER_PORT (29400; the engine uses plan.MASTER_PORT) itself and refuses them in
trainer.env. Volumes, mounts, security context and pod labels go through the TrainJob's
runtimePatches (the pod template overrides of trainer.kubeflow.org/v1alpha1 in Trainer 2.3).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from kubeflow_trainer_api import models as trainer_models

from spawner.kube_manifests import (
    GPU_RESOURCE,
    label_value,
    make_container_security_context,
)

from .plan import (
    CHECKPOINT_DIR,
    CODE_DIR,
    LABEL_PREFIX,
    OUTPUT_DIR,
    JobPlan,
    base_environment,
    node_command,
    runtime_environment,
)

# the container of every node (Trainer's runtimes name their trainer container "node" too)
CONTAINER = "node"
JOBS_VOLUME = "job-files"
SHM_VOLUME = "shm"
SHM_BYTES = 256 * 1024**2  # as on the engine: at most 256 MiB, at most half the memory
RANK_VARIABLE = "WORKBENCH_NODE_RANK"
# set by the Job controller on each pod of an Indexed Job (label since Kubernetes 1.28)
INDEX_KEY = "batch.kubernetes.io/job-completion-index"
INDEX_FIELD_PATH = f"metadata.annotations['{INDEX_KEY}']"
RESTART_LABEL = f"{LABEL_PREFIX}.job-restart"
DEADLINE_MARGIN = 60

# Kubeflow Trainer
TRAINER_GROUP = "trainer.kubeflow.org"
TRAINER_VERSION = "v1alpha1"
TRAINJOB_PLURAL = "trainjobs"
TORCH_RUNTIME = "torch-distributed"
TRAINER_NODE_JOB = "node"  # the replicated job of a runtime's trainer nodes
TRAINER_MASTER_PORT = 29400  # what Trainer's torch plugin sets as PET_MASTER_PORT
TORCH_RESERVED = (
    "PET_NNODES",
    "PET_NPROC_PER_NODE",
    "PET_NODE_RANK",
    "PET_MASTER_ADDR",
    "PET_MASTER_PORT",
)
PATCH_MANAGER = "ai-workbench/jobs"

_DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_REFERENCE = re.compile(r"(\$\([A-Za-z_][A-Za-z0-9_]*\))")
# stands in for the rank while finding which values depend on it (checked afterwards)
_RANK_MARKER = 7_919_000_003


# --- what the kubelet does with $(NAME) -----------------------------------------------------


def kube_expand(text: str, env: Mapping[str, str]) -> str:
    """Expand `text` as the kubelet expands container env values, command and args:
    $(NAME) becomes env[NAME] when defined (else stays), `$$` becomes `$`, any other `$`
    stays (k8s.io/kubernetes third_party/forked/golang/expansion)."""
    out = []
    i = 0
    while i < len(text):
        if text[i] != "$" or i + 1 >= len(text):
            out.append(text[i])
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "(":
            end = text.find(")", i + 2)
            if end == -1:
                out.append("$(")
                i += 2
            else:
                name = text[i + 2 : end]
                out.append(env[name] if name in env else f"$({name})")
                i = end + 1
        else:
            out.append("$" + nxt)
            i += 2
    return "".join(out)


def escape(text: str) -> str:
    """`text` written so that the kubelet's expansion gives it back unchanged."""
    return text.replace("$", "$$")


def escape_except(text: str, names) -> str:
    """`text` with every `$` escaped except in $(NAME) references to `names`."""
    return "".join(
        part if _REFERENCE.fullmatch(part) and part[2:-1] in names else escape(part)
        for part in _REFERENCE.split(text)
    )


# --- names, labels, resources --------------------------------------------------------------


def uses_trainjob(plan: JobPlan, trainer_runtime: str | None = TORCH_RUNTIME) -> bool:
    """Whether the plan runs as a TrainJob (PyTorch, where a Trainer runtime is configured)."""
    return plan.runtime == "pytorch" and bool(trainer_runtime)


def service_name(plan: JobPlan) -> str:
    """The headless Service (and subdomain) of an indexed Job's pods."""
    return plan.object_name


def job_hosts(plan: JobPlan) -> list[str]:
    """Each node's DNS name as the other pods of the namespace resolve it: the pod's hostname
    (given by the indexed Job) under the Service's subdomain."""
    return [f"{plan.node_name(r)}.{service_name(plan)}" for r in range(plan.nodes)]


def trainjob_hosts(plan: JobPlan) -> list[str]:
    """Each node's DNS name in a TrainJob: JobSet names pod r `<name>-node-0-<r>` under the
    subdomain `<name>` (Trainer's PET_MASTER_ADDR is the first)."""
    name = plan.object_name
    return [f"{name}-{TRAINER_NODE_JOB}-0-{r}.{name}" for r in range(plan.nodes)]


def _check_names(plan: JobPlan, hostnames: list[str]):
    if len(plan.object_name) > 63 or not _DNS_1035.match(plan.object_name):
        raise ValueError(
            f"object name {plan.object_name!r} is not a DNS label (a-z, 0-9, '-', starting "
            "with a letter, at most 63 characters)"
        )
    for host in hostnames:
        if len(host.split(".")[0]) > 63:
            raise ValueError(f"node hostname {host.split('.')[0]!r} is longer than 63 characters")


def pod_selector(plan: JobPlan) -> dict[str, str]:
    """Labels every pod of the version has, whatever attempt made it."""
    return {key: label_value(value) for key, value in plan.labels().items()}


def make_labels(plan: JobPlan, restart: int, extra: Mapping[str, str] | None = None) -> dict:
    """Labels of the objects and pods of one attempt: the plan's (made valid), the attempt,
    and `extra` (values made valid)."""
    labels = {key: label_value(value) for key, value in (extra or {}).items()}
    labels.update(pod_selector(plan))
    labels[RESTART_LABEL] = str(restart)
    return labels


def _cpu(cpu: float) -> str:
    if float(cpu).is_integer():
        return str(int(cpu))
    return f"{max(1, round(cpu * 1000))}m"


def make_resources(plan: JobPlan) -> dict:
    """Requests equal to limits: the flavor is reserved, and beyond its memory a node is
    killed (OOMKilled); GPU plans ask for nvidia.com/gpu."""
    limits = {"cpu": _cpu(plan.cpu), "memory": str(int(plan.memory))}
    if plan.gpu:
        limits[GPU_RESOURCE] = str(plan.gpu)
    return {"limits": dict(limits), "requests": dict(limits)}


def _run_as(plan: JobPlan) -> tuple[int, int]:
    uid, _, gid = plan.run_as.partition(":")
    return int(uid), int(gid or uid)


def make_pod_security_context(plan: JobPlan) -> dict:
    uid, gid = _run_as(plan)
    return {
        "runAsUser": uid,
        "runAsGroup": gid,
        "runAsNonRoot": True,
        "fsGroup": gid,
        # never a recursive chown of the job's files or an input's storage at each start
        "fsGroupChangePolicy": "OnRootMismatch",
    }


def make_volumes(plan: JobPlan, pvc_name: str) -> tuple[list[dict], list[dict]]:
    """(volumes, volumeMounts): the version's code (read-only), output and checkpoints
    (read-write) as sub-paths of the jobs PVC, each input's storage read-only, the plan's
    mounts read-only (sub-paths of their stores' claims), and a
    memory-backed /dev/shm (PyTorch's DataLoader workers and NCCL need more than 64 MiB;
    it counts against the node's memory)."""
    shm = str(min(SHM_BYTES, int(plan.memory) // 2))
    volumes = [
        {"name": JOBS_VOLUME, "persistentVolumeClaim": {"claimName": pvc_name}},
        {"name": SHM_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": shm}},
    ]
    mounts = [
        {"name": JOBS_VOLUME, "mountPath": CODE_DIR, "subPath": plan.code_source, "readOnly": True},
        {"name": JOBS_VOLUME, "mountPath": OUTPUT_DIR, "subPath": plan.output_source},
        {"name": JOBS_VOLUME, "mountPath": CHECKPOINT_DIR, "subPath": plan.checkpoint_source},
        {"name": SHM_VOLUME, "mountPath": "/dev/shm"},
    ]
    for source, what in (
        (plan.code_source, "code"),
        (plan.output_source, "output"),
        (plan.checkpoint_source, "checkpoints"),
    ):
        if not source or source.startswith("/") or ".." in source.split("/"):
            raise ValueError(f"the {what} of a job must be a relative path in the jobs PVC")
    claims: dict[str, str] = {}
    mounted: set[str] = set()
    for channel in plan.inputs:
        if not channel.volume:
            raise ValueError(f"input {channel.name!r} has no storage claim")
        if channel.volume not in claims:
            claims[channel.volume] = f"input-{len(claims)}"
            volumes.append(
                {
                    "name": claims[channel.volume],
                    "persistentVolumeClaim": {"claimName": channel.volume, "readOnly": True},
                }
            )
        if channel.mount_path not in mounted:
            mounted.add(channel.mount_path)
            mounts.append(
                {
                    "name": claims[channel.volume],
                    "mountPath": channel.mount_path,
                    "readOnly": True,
                }
            )
    # the platform's read-only folders (a batch run's model): sub-paths of their stores'
    # claims (the model store's PVC holds <owner>/<model>/<version>/ as the hub's
    # <data>/models does), one volume per claim
    stores: dict[str, str] = {}
    for mount in plan.mounts:
        if not mount.claim:
            raise ValueError(f"the mount at {mount.target} has no storage claim")
        if not mount.source or mount.source.startswith("/") or ".." in mount.source.split("/"):
            raise ValueError(f"the mount at {mount.target} must be a relative path in its claim")
        if mount.claim not in stores:
            stores[mount.claim] = f"store-{len(stores)}"
            volumes.append(
                {
                    "name": stores[mount.claim],
                    "persistentVolumeClaim": {"claimName": mount.claim, "readOnly": True},
                }
            )
        mounts.append(
            {
                "name": stores[mount.claim],
                "mountPath": mount.target,
                "subPath": mount.source,
                "readOnly": True,
            }
        )
    return volumes, mounts


# --- environment and command ----------------------------------------------------------------


def engine_environment(plan: JobPlan, rank: int, restart: int, hosts: list[str]) -> dict:
    """What node `rank` sees on the engine with these hosts."""
    return {**base_environment(plan, rank, restart), **runtime_environment(plan, rank, hosts)}


def make_env(
    plan: JobPlan, restart: int, hosts: list[str], exclude: tuple[str, ...] = ()
) -> list[dict]:
    """The container's env list, the same for every pod, giving node r the engine's
    variables for rank r (see the module's docstring); names in `exclude` are left out."""
    sample = engine_environment(plan, _RANK_MARKER, restart, hosts)
    marker = str(_RANK_MARKER)
    entries: list[dict] = [
        {"name": RANK_VARIABLE, "valueFrom": {"fieldRef": {"fieldPath": INDEX_FIELD_PATH}}}
    ]
    for name, value in sample.items():
        if name == RANK_VARIABLE or name in exclude:
            continue
        value = escape(value).replace(marker, f"$({RANK_VARIABLE})")
        entries.append({"name": name, "value": value})
    # every node must get exactly the engine's values (the marker could, in theory, occur
    # in a value that does not depend on the rank)
    for rank in range(plan.nodes):
        want = engine_environment(plan, rank, restart, hosts)
        resolved = {RANK_VARIABLE: str(rank)}
        for entry in entries[1:]:
            resolved[entry["name"]] = kube_expand(entry["value"], resolved)
        wanted = {k: v for k, v in want.items() if k not in exclude}
        if resolved != wanted:
            raise ValueError(f"cannot express the environment of node {rank} in a pod template")
    return entries


def make_command(plan: JobPlan, names) -> list[str]:
    """The node command with $(NAME) references to the container's own variables kept for
    the kubelet and everything else escaped."""
    return [escape_except(arg, set(names)) for arg in node_command(plan)]


def _deadline(plan: JobPlan) -> int | None:
    """activeDeadlineSeconds: the platform stops a version at max_run_seconds itself (with
    its own reason); the cluster does DEADLINE_MARGIN seconds later, when the hub is down."""
    if plan.max_run_seconds > 0:
        return math.ceil(plan.max_run_seconds) + DEADLINE_MARGIN
    return None


# --- indexed Job + headless Service ---------------------------------------------------------


def make_service(
    plan: JobPlan, *, namespace: str, restart: int, labels: Mapping[str, str] | None = None
) -> dict:
    """The headless Service whose name is the Job's pods' subdomain: one DNS record per pod,
    published before the pods are ready so that rendezvous can start at once."""
    _check_names(plan, job_hosts(plan))
    all_labels = make_labels(plan, restart, labels)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": service_name(plan), "namespace": namespace, "labels": all_labels},
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": {**pod_selector(plan), RESTART_LABEL: str(restart)},
        },
    }


def make_job(
    plan: JobPlan,
    *,
    namespace: str,
    pvc_name: str,
    restart: int,
    labels: Mapping[str, str] | None = None,
) -> dict:
    """An Indexed batch/v1 Job with one pod per node (completions = parallelism = nodes).

    backoffLimit 0 and a FailJob rule for any non-zero exit: the Job never retries a pod,
    the platform restarts all nodes itself (as a new attempt, WORKBENCH_RESTART + 1).
    """
    hosts = job_hosts(plan)
    _check_names(plan, hosts)
    all_labels = make_labels(plan, restart, labels)
    env = make_env(plan, restart, hosts)
    volumes, mounts = make_volumes(plan, pvc_name)
    container = {
        "name": CONTAINER,
        "image": plan.image_ref,
        "command": make_command(plan, [e["name"] for e in env]),
        "workingDir": CODE_DIR,
        "env": env,
        "resources": make_resources(plan),
        "volumeMounts": mounts,
        "securityContext": make_container_security_context(),
    }
    spec = {
        "completionMode": "Indexed",
        "completions": plan.nodes,
        "parallelism": plan.nodes,
        "backoffLimit": 0,
        "podFailurePolicy": {
            "rules": [
                {
                    "action": "FailJob",
                    "onExitCodes": {
                        "containerName": CONTAINER,
                        "operator": "NotIn",
                        "values": [0],
                    },
                }
            ]
        },
        "template": {
            "metadata": {"labels": all_labels},
            "spec": {
                "restartPolicy": "Never",
                "subdomain": service_name(plan),
                # no <SERVICE>_PORT variables: the nodes see exactly the engine's environment
                "enableServiceLinks": False,
                "automountServiceAccountToken": False,
                "securityContext": make_pod_security_context(plan),
                "containers": [container],
                "volumes": volumes,
            },
        },
    }
    deadline = _deadline(plan)
    if deadline:
        spec["activeDeadlineSeconds"] = deadline
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": plan.object_name, "namespace": namespace, "labels": all_labels},
        "spec": spec,
    }


# --- Kubeflow Trainer TrainJob --------------------------------------------------------------


def make_trainjob(
    plan: JobPlan,
    *,
    namespace: str,
    pvc_name: str,
    restart: int,
    labels: Mapping[str, str] | None = None,
    runtime: str = TORCH_RUNTIME,
) -> dict:
    """A TrainJob of a PyTorch plan on the ClusterTrainingRuntime `runtime`, built with
    kubeflow-trainer-api's models; the returned dict is what the API server is sent."""
    if plan.runtime != "pytorch":
        raise ValueError(f"a TrainJob runs PyTorch plans, not {plan.runtime}")
    _check_names(plan, trainjob_hosts(plan))
    all_labels = make_labels(plan, restart, labels)
    env = make_env(plan, restart, trainjob_hosts(plan), exclude=TORCH_RESERVED)
    names = [e["name"] for e in env] + list(TORCH_RESERVED)
    volumes, mounts = make_volumes(plan, pvc_name)
    # neither Trainer nor its patches set a working directory: change to the code first
    command = [
        "sh",
        "-c",
        escape(f'cd {CODE_DIR} && exec "$@"'),
        "sh",
        *make_command(plan, names),
    ]
    m = trainer_models
    trainer = m.TrainerV1alpha1Trainer(
        image=plan.image_ref,
        command=command,
        env=[m.IoK8sApiCoreV1EnvVar.from_dict(e) for e in env],
        num_nodes=plan.nodes,
        num_proc_per_node=plan.processes_per_node,
        resources_per_node=m.IoK8sApiCoreV1ResourceRequirements.from_dict(make_resources(plan)),
    )
    pod_patch = m.TrainerV1alpha1PodTemplatePatch(
        metadata=m.IoK8sApimachineryPkgApisMetaV1ObjectMeta(labels=all_labels),
        spec=m.TrainerV1alpha1PodSpecPatch(
            security_context=m.IoK8sApiCoreV1PodSecurityContext.from_dict(
                make_pod_security_context(plan)
            ),
            volumes=[m.IoK8sApiCoreV1Volume.from_dict(v) for v in volumes],
            containers=[
                m.TrainerV1alpha1ContainerPatch(
                    name=CONTAINER,
                    volume_mounts=[m.IoK8sApiCoreV1VolumeMount.from_dict(v) for v in mounts],
                    security_context=m.IoK8sApiCoreV1SecurityContext.from_dict(
                        make_container_security_context()
                    ),
                )
            ],
        ),
    )
    patch = m.TrainerV1alpha1RuntimePatch(
        manager=PATCH_MANAGER,
        training_runtime_spec=m.TrainerV1alpha1TrainingRuntimeSpecPatch(
            template=m.TrainerV1alpha1JobSetTemplatePatch(
                spec=m.TrainerV1alpha1JobSetSpecPatch(
                    replicated_jobs=[
                        m.TrainerV1alpha1ReplicatedJobPatch(
                            name=TRAINER_NODE_JOB,
                            template=m.TrainerV1alpha1JobTemplatePatch(
                                spec=m.TrainerV1alpha1JobSpecPatch(template=pod_patch)
                            ),
                        )
                    ]
                )
            )
        ),
    )
    trainjob = m.TrainerV1alpha1TrainJob(
        api_version=f"{TRAINER_GROUP}/{TRAINER_VERSION}",
        kind="TrainJob",
        metadata=m.IoK8sApimachineryPkgApisMetaV1ObjectMeta(
            name=plan.object_name, namespace=namespace, labels=all_labels
        ),
        spec=m.TrainerV1alpha1TrainJobSpec(
            runtime_ref=m.TrainerV1alpha1RuntimeRef(
                api_group=TRAINER_GROUP, kind="ClusterTrainingRuntime", name=runtime
            ),
            trainer=trainer,
            runtime_patches=[patch],
            active_deadline_seconds=_deadline(plan),
        ),
    )
    return trainjob.to_dict()
