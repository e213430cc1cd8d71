"""The Kubernetes job runner: the Jobs, Services and TrainJobs it makes, checked without a cluster.

No cluster runs here. The runner is exercised against an in-process API double (FakeKube)
that records calls, keeps the objects it is sent, and plays the pods the Job controller or
Kubeflow Trainer would make in the states a test gives them (pending and unschedulable,
running, OOM-killed, exited).

The manifests are validated against the official Kubernetes JSON schemas of the newest
version the installed kubernetes-validate ships (strict: unknown fields are errors), and
TrainJobs against kubeflow-trainer-api's models. What the cluster does to a pod's
environment is replayed here from the rules Kubernetes and Trainer document: the Job
controller's index annotation and hostname, Trainer's PET_* variables, the kubelet's
downward-API fields and $(NAME) expansion. So each node's variables and command are
compared with what the engine gives the same node.
"""

from __future__ import annotations

import asyncio
import copy
import re
import time

import kubernetes_validate
import kubernetes_validate.utils
import pytest
from kubeflow_trainer_api import models as trainer_models
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.rest import ApiException

from training_bridge import kube_manifests as km
from training_bridge.kubernetes import KubernetesJobRunner
from training_bridge.plan import (
    InputChannel,
    JobPlan,
    base_environment,
    expand,
    hyperparameter_args,
    node_command,
    runtime_environment,
)
from training_bridge.runners import EXITED, MISSING, PENDING, RUNNING

K8S_VERSION = kubernetes_validate.utils.latest_version()
NAMESPACE = "workbench-jobs"
PVC = "workbench-jobs"
INDEX = "batch.kubernetes.io/job-completion-index"
# values the kubelet would change if they were not escaped
HYPERPARAMETERS = {"lr": 0.1, "note": "keep $(HOME) and $$ and $x as they are", "layers": [64, 32]}

LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def make_plan(runtime="plain", nodes=1, **fields) -> JobPlan:
    version = fields.pop("version", 3)
    values = dict(
        owner="Jane.Doe@Example.com",
        job="mnist",
        version=version,
        object_name=f"wbjob-jane-mnist-{version}",
        image_ref="registry.example.com/ai-workbench/pytorch:2.5-cpu",
        runtime=runtime,
        command=("python", "train.py", *hyperparameter_args(HYPERPARAMETERS)),
        nodes=nodes,
        processes_per_node=2 if runtime in ("pytorch", "mindspore") else 1,
        cpu=1.5,
        memory=4 * 1024**3,
        hyperparameters=HYPERPARAMETERS,
        inputs=(
            InputChannel("data", "nb1", "datasets/mnist", "workbench-jane--nb1-work"),
            InputChannel("extra-set", "nb1", "datasets/extra", "workbench-jane--nb1-work"),
        ),
        max_run_seconds=3600,
        code_source=f"jane/mnist/{version}/code",
        output_source=f"jane/mnist/{version}/output",
        checkpoint_source=f"jane/mnist/{version}/checkpoints",
        environment={"PIP_INDEX_URL": "http://mirror:3141/root/pypi/+simple/"},
        flavor="cpu.large",
    )
    values.update(fields)
    return JobPlan(**values)


PLANS = {
    "pytorch-2": make_plan("pytorch", 2),
    "pytorch-gpu": make_plan("pytorch", 2, gpu=1, cpu=8, flavor="gpu.t4"),
    "tensorflow-2": make_plan("tensorflow", 2),
    "mindspore-2": make_plan("mindspore", 2),
    "plain-1": make_plan("plain", 1, max_run_seconds=0),
    "plain-gpu": make_plan("plain", 1, gpu=2, cpu=16, flavor="gpu.a100x2"),
}
JOB_PLANS = [pytest.param(p, id=i) for i, p in PLANS.items() if p.runtime != "pytorch"]
# without a Trainer runtime, PyTorch runs as an indexed Job too
JOB_PLANS.append(pytest.param(PLANS["pytorch-2"], id="pytorch-2-as-job"))
TRAINJOB_PLANS = [pytest.param(p, id=i) for i, p in PLANS.items() if p.runtime == "pytorch"]


def validate(manifest: dict):
    assert kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)


def assert_valid_labels(labels: dict):
    for key, value in labels.items():
        prefix, _, name = key.rpartition("/")
        assert not prefix or (len(prefix) <= 253 and DNS_SUBDOMAIN.match(prefix)), key
        assert len(name) <= 63 and LABEL_NAME.match(name), key
        assert value == "" or (len(value) <= 63 and LABEL_NAME.match(value)), (key, value)


# --- what the cluster does to a pod template --------------------------------------------------


def kubelet_expand(text: str, env: dict) -> str:
    """The kubelet's $(NAME) expansion of env values, command and args: defined names are
    replaced, `$$` is an escaped `$`, anything else stays."""

    def replace(match):
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return re.sub(r"\$\$|\$\(([^)]*)\)", replace, text)


def field(pod: dict, path: str) -> str:
    """A downward-API fieldRef of the pod."""
    found = re.fullmatch(r"metadata\.(annotations|labels)\['([^']+)'\]", path)
    if found:
        return pod["metadata"][found.group(1)][found.group(2)]
    assert path == "metadata.name", path
    return pod["metadata"]["name"]


def kubelet_environment(pod: dict) -> tuple[dict, list[str]]:
    """(environment, argv) the kubelet gives the node container of `pod`."""
    (container,) = pod["spec"]["containers"]
    env: dict[str, str] = {}
    for entry in container.get("env", []):
        if "valueFrom" in entry:
            env[entry["name"]] = field(pod, entry["valueFrom"]["fieldRef"]["fieldPath"])
        else:
            env[entry["name"]] = kubelet_expand(entry.get("value", ""), env)
    argv = container.get("command", []) + container.get("args", [])
    return env, [kubelet_expand(a, env) for a in argv]


def job_pod(job: dict, rank: int) -> dict:
    """The pod the Job controller makes for index `rank` of an Indexed Job."""
    template = copy.deepcopy(job["spec"]["template"])
    name = job["metadata"]["name"]
    metadata = template["metadata"]
    metadata["name"] = f"{name}-{rank}-x7k2q"
    metadata["namespace"] = job["metadata"]["namespace"]
    metadata["labels"] = {**metadata["labels"], INDEX: str(rank), "job-name": name}
    metadata["annotations"] = {INDEX: str(rank)}
    spec = template["spec"]
    spec["hostname"] = f"{name}-{rank}"  # Indexed Jobs name each pod's host
    (container,) = spec["containers"]
    container["env"].append(
        {
            "name": "JOB_COMPLETION_INDEX",
            "valueFrom": {"fieldRef": {"fieldPath": f"metadata.annotations['{INDEX}']"}},
        }
    )
    return {"apiVersion": "v1", "kind": "Pod", **template}


def trainer_pod(trainjob: dict, rank: int) -> dict:
    """The node pod Kubeflow Trainer (torch plugin, JobSet) makes for rank `rank` of a
    TrainJob on the torch-distributed runtime: the trainer's image, command, env and
    resources, the runtime patches, and the PET_* variables Trainer sets."""
    name = trainjob["metadata"]["name"]
    trainer = trainjob["spec"]["trainer"]
    (patch,) = trainjob["spec"]["runtimePatches"]
    (node_job,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    assert node_job["name"] == "node"
    pod_patch = node_job["template"]["spec"]["template"]
    (container_patch,) = pod_patch["spec"]["containers"]
    assert container_patch["name"] == "node"
    env = [
        *trainer["env"],
        {"name": "PET_NNODES", "value": str(trainer["numNodes"])},
        {"name": "PET_NPROC_PER_NODE", "value": str(trainer["numProcPerNode"])},
        {
            "name": "PET_NODE_RANK",
            "valueFrom": {"fieldRef": {"fieldPath": f"metadata.annotations['{INDEX}']"}},
        },
        {"name": "PET_MASTER_ADDR", "value": f"{name}-node-0-0.{name}"},
        {"name": "PET_MASTER_PORT", "value": "29400"},
    ]
    container = {
        "name": "node",
        "image": trainer["image"],
        "command": trainer["command"],
        "env": env,
        "resources": trainer["resourcesPerNode"],
        "ports": [{"containerPort": 29400}],
        **{k: v for k, v in container_patch.items() if k != "name"},
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{name}-node-0-{rank}-q9d8w",
            "namespace": trainjob["metadata"]["namespace"],
            "labels": {
                **pod_patch["metadata"]["labels"],
                INDEX: str(rank),
                "jobset.sigs.k8s.io/jobset-name": name,
                "jobset.sigs.k8s.io/replicatedjob-name": "node",
            },
            "annotations": {INDEX: str(rank)},
        },
        "spec": {
            "hostname": f"{name}-node-0-{rank}",
            "subdomain": name,
            "restartPolicy": "OnFailure",
            "containers": [container],
            **{k: v for k, v in pod_patch["spec"].items() if k != "containers"},
        },
    }


def engine_node(plan: JobPlan, rank: int, restart: int, hosts: list[str]) -> tuple[dict, list]:
    """(environment, argv) of node `rank` on the engine, given the nodes' host names."""
    env = base_environment(plan, rank, restart)
    env.update(runtime_environment(plan, rank, hosts))
    return env, expand(node_command(plan), env)


# --- manifests -----------------------------------------------------------------------------


def test_kube_expand_is_the_kubelets():
    env = {"A": "1", "B": "$(A)"}
    cases = {
        "$(A)": "1",
        "x$(A)y$(A)": "x1y1",
        "$$(A)": "$(A)",
        "$$$(A)": "$1",
        "$(UNSET)": "$(UNSET)",
        "$(": "$(",
        "$(A": "$(A",
        "$x $": "$x $",
        "$$": "$",
        "$(B)": "$(A)",  # values are not expanded twice
        "": "",
    }
    for text, want in cases.items():
        assert km.kube_expand(text, env) == want == kubelet_expand(text, env), text
        assert km.kube_expand(km.escape(text), env) == text


@pytest.mark.parametrize("plan", JOB_PLANS)
@pytest.mark.parametrize("restart", [0, 2])
def test_indexed_job_gives_each_node_the_engines_environment(plan, restart):
    job = km.make_job(plan, namespace=NAMESPACE, pvc_name=PVC, restart=restart)
    service = km.make_service(plan, namespace=NAMESPACE, restart=restart)
    validate(job)
    validate(service)

    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"] == plan.nodes
    assert spec["backoffLimit"] == 0  # the platform restarts all nodes itself
    pod_spec = spec["template"]["spec"]
    assert pod_spec["restartPolicy"] == "Never"
    # the headless Service is the pods' subdomain and selects exactly this attempt's pods
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["publishNotReadyAddresses"] is True
    assert pod_spec["subdomain"] == service["metadata"]["name"]
    pod_labels = spec["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["selector"]["ai-workbench.job-restart"] == str(restart)
    assert pod_spec["enableServiceLinks"] is False  # no <SERVICE>_PORT variables

    pods = [job_pod(job, rank) for rank in range(plan.nodes)]
    # node r answers to plan.node_name(r) under the Service: the hosts the nodes are given
    hosts = [f"{p['spec']['hostname']}.{p['spec']['subdomain']}" for p in pods]
    assert [p["spec"]["hostname"] for p in pods] == [plan.node_name(r) for r in range(plan.nodes)]
    assert hosts == km.job_hosts(plan)
    for rank, pod in enumerate(pods):
        validate(pod)
        env, argv = kubelet_environment(pod)
        assert env.pop("JOB_COMPLETION_INDEX") == str(rank)
        want_env, want_argv = engine_node(plan, rank, restart, hosts)
        assert env == want_env
        assert argv == want_argv
        assert env["WORKBENCH_NODE_RANK"] == str(rank)
        assert env["WORKBENCH_RESTART"] == str(restart)
    # what the kubelet would have changed arrives unchanged
    env, argv = kubelet_environment(pods[-1])
    assert "keep $(HOME) and $$ and $x as they are" in argv
    assert (
        env["WORKBENCH_HYPERPARAMETERS"]
        == base_environment(plan, 0, 0)["WORKBENCH_HYPERPARAMETERS"]
    )
    if plan.runtime == "tensorflow":
        assert [kubelet_environment(p)[0]["TF_CONFIG"] for p in pods] == [
            runtime_environment(plan, r, hosts)["TF_CONFIG"] for r in range(plan.nodes)
        ]
    if plan.runtime == "mindspore":
        assert "--node_rank=1" in kubelet_environment(pods[1])[1]


@pytest.mark.parametrize("plan", JOB_PLANS[:1] + [pytest.param(PLANS["plain-gpu"], id="gpu")])
def test_job_resources_storage_security_and_labels(plan):
    job = km.make_job(plan, namespace=NAMESPACE, pvc_name=PVC, restart=0, labels={"team": "ml"})
    pod_spec = job["spec"]["template"]["spec"]
    (container,) = pod_spec["containers"]

    assert container["image"] == plan.image_ref
    assert container["workingDir"] == "/job/code"
    resources = container["resources"]
    assert resources["limits"] == resources["requests"]
    assert resources["limits"]["memory"] == str(plan.memory)
    assert resources["limits"]["cpu"] == ("1500m" if plan.cpu == 1.5 else str(int(plan.cpu)))
    if plan.gpu:
        assert resources["limits"]["nvidia.com/gpu"] == str(plan.gpu)
    else:
        assert "nvidia.com/gpu" not in resources["limits"]

    # never root, no privilege gain, no capabilities
    assert pod_spec["securityContext"]["runAsUser"] == 1000
    assert pod_spec["securityContext"]["runAsGroup"] == 100
    assert pod_spec["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert pod_spec["automountServiceAccountToken"] is False

    # code read-only, output and checkpoints read-write, from the jobs PVC; inputs read-only
    volumes = {v["name"]: v for v in pod_spec["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert volumes[mounts["/job/code"]["name"]]["persistentVolumeClaim"] == {"claimName": PVC}
    assert mounts["/job/code"]["subPath"] == plan.code_source
    assert mounts["/job/code"]["readOnly"] is True
    for path, source in (
        ("/job/output", plan.output_source),
        ("/job/checkpoints", plan.checkpoint_source),
    ):
        assert mounts[path]["subPath"] == source and not mounts[path].get("readOnly")
        assert mounts[path]["name"] == mounts["/job/code"]["name"]
    # both inputs come from one instance's storage: one volume, mounted once
    (channel, _) = plan.inputs
    storage = mounts[channel.mount_path]
    assert storage["readOnly"] is True
    assert volumes[storage["name"]]["persistentVolumeClaim"] == {
        "claimName": channel.volume,
        "readOnly": True,
    }
    assert len(pod_spec["volumes"]) == 3
    assert volumes[mounts["/dev/shm"]["name"]]["emptyDir"]["medium"] == "Memory"

    assert job["spec"].get("activeDeadlineSeconds") == (
        plan.max_run_seconds + km.DEADLINE_MARGIN if plan.max_run_seconds else None
    )
    for labels in (job["metadata"]["labels"], job["spec"]["template"]["metadata"]["labels"]):
        assert_valid_labels(labels)
        assert labels["ai-workbench.user"] != plan.owner  # made a valid label value
        assert labels["ai-workbench.job"] == "mnist"
        assert labels["ai-workbench.job-version"] == "3"
        assert labels["team"] == "ml"


@pytest.mark.parametrize("plan", TRAINJOB_PLANS)
def test_trainjob_round_trips_and_gives_each_node_the_engines_environment(plan):
    trainjob = km.make_trainjob(plan, namespace=NAMESPACE, pvc_name=PVC, restart=1)

    # the models read back exactly what is sent (no field dropped or renamed); their
    # from_dict is the entry point for API JSON (model_validate wants Quantity objects)
    model = trainer_models.TrainerV1alpha1TrainJob.from_dict(trainjob)
    assert model.to_dict() == trainjob
    assert trainjob["apiVersion"] == "trainer.kubeflow.org/v1alpha1"
    assert trainjob["kind"] == "TrainJob"
    spec = trainjob["spec"]
    assert spec["runtimeRef"] == {
        "apiGroup": "trainer.kubeflow.org",
        "kind": "ClusterTrainingRuntime",
        "name": "torch-distributed",
    }
    trainer = spec["trainer"]
    assert trainer["numNodes"] == plan.nodes
    assert trainer["numProcPerNode"] == plan.processes_per_node
    assert trainer["image"] == plan.image_ref
    resources = trainer["resourcesPerNode"]
    assert resources["limits"] == resources["requests"]
    assert resources["limits"].get("nvidia.com/gpu") == (str(plan.gpu) if plan.gpu else None)
    # Trainer refuses its reserved variables in trainer.env
    assert not {e["name"] for e in trainer["env"]} & set(km.TORCH_RESERVED)
    assert spec["activeDeadlineSeconds"] == plan.max_run_seconds + km.DEADLINE_MARGIN
    assert_valid_labels(trainjob["metadata"]["labels"])

    hosts = km.trainjob_hosts(plan)
    for rank in range(plan.nodes):
        pod = trainer_pod(trainjob, rank)
        validate(pod)  # the patches are valid pod parts
        assert f"{pod['spec']['hostname']}.{pod['spec']['subdomain']}" == hosts[rank]
        env, argv = kubelet_environment(pod)
        want_env, want_argv = engine_node(plan, rank, 1, hosts)
        # the same variables; only Trainer's rendezvous port differs from the engine's
        assert env == {**want_env, "PET_MASTER_PORT": str(km.TRAINER_MASTER_PORT)}
        assert argv[:4] == ["sh", "-c", 'cd /job/code && exec "$@"', "sh"]
        assert argv[4:] == want_argv
        assert argv[8] == "torchrun"  # under the node wrapper (sh -c)
        mounts = {m["mountPath"]: m for m in pod["spec"]["containers"][0]["volumeMounts"]}
        assert mounts["/job/code"]["readOnly"] is True
        assert mounts["/job/output"]["subPath"] == plan.output_source
        assert pod["spec"]["securityContext"]["runAsUser"] == 1000
        assert pod["spec"]["containers"][0]["securityContext"]["capabilities"] == {"drop": ["ALL"]}


@pytest.mark.parametrize(
    "object_name",
    ["1job", "Job-x", "job_x", "j" * 62],
    ids=["digit", "upper", "underscore", "hostname-too-long"],
)
def test_names_kubernetes_refuses_are_refused_before_sending(object_name):
    plan = make_plan("tensorflow", 2, object_name=object_name)
    with pytest.raises(ValueError):
        km.make_job(plan, namespace=NAMESPACE, pvc_name=PVC, restart=0)
    with pytest.raises(ValueError):
        km.make_trainjob(
            make_plan("pytorch", 2, object_name=object_name),
            namespace=NAMESPACE,
            pvc_name=PVC,
            restart=0,
        )


# --- the Kubernetes API double -------------------------------------------------------------


def not_found():
    return ApiException(status=404, reason="NotFound")


class FakeLog:
    """A followed log response (_preload_content=False): status, content, release()."""

    def __init__(self, chunks: list[bytes], status: int = 200):
        self.status = status
        self.chunks = chunks
        self.released = False
        self.content = self

    async def iter_any(self):
        for chunk in self.chunks:
            await asyncio.sleep(0)
            yield chunk

    async def text(self):
        return b"".join(self.chunks).decode()

    def release(self):
        self.released = True


class FakeKube:
    """An in-process CoreV1Api + BatchV1Api + CustomObjectsApi double.

    Keeps Services, Jobs, TrainJobs and pods by name; `refuse[kind]` makes the next create of
    that kind fail; pods appear only when a test adds them (as the Job controller or Trainer
    would make them). Any API method not defined here fails the test.
    """

    def __init__(self):
        self.calls: list[tuple] = []
        self.services: dict[str, dict] = {}
        self.jobs: dict[str, dict] = {}
        self.trainjobs: dict[str, dict] = {}
        self.pods: dict[str, dict] = {}
        self.logs: dict[str, list[bytes]] = {}
        self.refuse: dict[str, ApiException] = {}
        self._clock = 0

    # objects
    def _create(self, kind, store, body):
        name = body["metadata"]["name"]
        self.calls.append(("create", kind, name))
        if kind in self.refuse:
            raise self.refuse.pop(kind)
        if name in store:
            raise ApiException(status=409, reason="AlreadyExists")
        store[name] = copy.deepcopy(body)
        return copy.deepcopy(body)

    def _delete(self, kind, store, name, options):
        self.calls.append(("delete", kind, name, options.get("propagation_policy")))
        if store.pop(name, None) is None:
            raise not_found()

    async def create_namespaced_service(self, namespace, body, **kw):
        assert namespace == NAMESPACE
        return self._create("service", self.services, body)

    async def delete_namespaced_service(self, name, namespace, **kw):
        self._delete("service", self.services, name, kw)

    async def create_namespaced_job(self, namespace, body, **kw):
        assert namespace == NAMESPACE
        return self._create("job", self.jobs, body)

    async def read_namespaced_job(self, name, namespace, **kw):
        if name not in self.jobs:
            raise not_found()
        return copy.deepcopy(self.jobs[name])

    async def delete_namespaced_job(self, name, namespace, **kw):
        self._delete("job", self.jobs, name, kw)

    async def patch_namespaced_job(self, name, namespace, body, **kw):
        self.calls.append(("patch", "job", name, body))
        if name not in self.jobs:
            raise not_found()
        self._apply(self.jobs[name], body)

    async def create_namespaced_custom_object(self, group, version, namespace, plural, body, **kw):
        assert (group, version, plural) == ("trainer.kubeflow.org", "v1alpha1", "trainjobs")
        if "trainjob-api" in self.refuse:
            self.calls.append(("create", "trainjob", body["metadata"]["name"]))
            raise self.refuse.pop("trainjob-api")
        return self._create("trainjob", self.trainjobs, body)

    async def get_namespaced_custom_object(self, group, version, namespace, plural, name, **kw):
        if name not in self.trainjobs:
            raise not_found()
        return copy.deepcopy(self.trainjobs[name])

    async def delete_namespaced_custom_object(self, group, version, namespace, plural, name, **kw):
        self._delete("trainjob", self.trainjobs, name, kw)

    async def patch_namespaced_custom_object(
        self, group, version, namespace, plural, name, body, **kw
    ):
        self.calls.append(("patch", "trainjob", name, body))
        if name not in self.trainjobs:
            raise not_found()
        self._apply(self.trainjobs[name], body)

    @staticmethod
    def _apply(obj, patch):
        for op in patch:  # the JSON patches the runner sends
            assert op["op"] == "add" and op["path"] == "/spec/suspend"
            obj["spec"]["suspend"] = op["value"]

    def set_condition(self, store, name, kind, message=""):
        status = store[name].setdefault("status", {})
        status.setdefault("conditions", []).append(
            {"type": kind, "status": "True", "reason": kind, "message": message}
        )

    # pods
    def add_pod(self, owner: dict, rank: int, status: dict) -> str:
        """A pod of `owner` (Job or TrainJob as sent) for index `rank`."""
        self._clock += 1
        name = owner["metadata"]["name"]
        if owner["kind"] == "Job":
            labels = owner["spec"]["template"]["metadata"]["labels"]
            pod_name = f"{name}-{rank}-{self._clock:05d}"
        else:
            patch = owner["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]
            node = patch["template"]["spec"]["replicatedJobs"][0]
            labels = node["template"]["spec"]["template"]["metadata"]["labels"]
            pod_name = f"{name}-node-0-{rank}-{self._clock:05d}"
        self.pods[pod_name] = {
            "metadata": {
                "name": pod_name,
                "labels": {**labels, INDEX: str(rank)},
                "annotations": {INDEX: str(rank)},
                "creationTimestamp": f"2030-01-01T00:00:{self._clock:02d}Z",
            },
            "status": copy.deepcopy(status),
        }
        return pod_name

    async def list_namespaced_pod(self, namespace, label_selector="", **kw):
        self.calls.append(("list", "pod", label_selector))
        wanted = dict(term.split("=", 1) for term in label_selector.split(",") if term)
        items = [
            copy.deepcopy(p)
            for p in self.pods.values()
            if wanted.items() <= p["metadata"]["labels"].items()
        ]
        return {"items": items}

    async def delete_collection_namespaced_pod(self, namespace, label_selector="", **kw):
        self.calls.append(("delete-pods", label_selector, kw.get("grace_period_seconds")))
        wanted = dict(term.split("=", 1) for term in label_selector.split(","))
        for name, pod in list(self.pods.items()):
            if wanted.items() <= pod["metadata"]["labels"].items():
                del self.pods[name]

    async def read_namespaced_pod_log(self, name, namespace, **kw):
        self.calls.append(("log", name, kw))
        assert kw["follow"] is True and kw["_preload_content"] is False
        assert kw["container"] == "node"
        if name not in self.pods:
            return FakeLog([b'{"message": "pods not found"}'], status=404)
        return FakeLog(self.logs.get(name, []))

    def __getattr__(self, name):
        raise AssertionError(f"unexpected Kubernetes API call: {name}")


def container_status(state: dict, ready=False, **more) -> dict:
    """A containerStatuses entry with the fields the API always sets."""
    return {
        "name": "node",
        "image": "registry.example.com/ai-workbench/pytorch:2.5-cpu",
        "imageID": "",
        "ready": ready,
        "restartCount": 0,
        "state": state,
        **more,
    }


RUNNING_POD = {
    "phase": "Running",
    "containerStatuses": [
        container_status({"running": {"startedAt": "2030-01-01T00:01:00Z"}}, ready=True)
    ],
}
UNSCHEDULABLE = (
    "0/3 nodes are available: 3 Insufficient nvidia.com/gpu. preemption: 0/3 nodes are "
    "available: 3 No preemption victims found for incoming pod."
)
UNSCHEDULABLE_POD = {
    "phase": "Pending",
    "conditions": [
        {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": UNSCHEDULABLE,
        }
    ],
}


def exited_pod(code: int, reason: str = "Error") -> dict:
    return {
        "phase": "Failed" if code else "Succeeded",
        "containerStatuses": [
            container_status(
                {
                    "terminated": {
                        "exitCode": code,
                        "reason": reason,
                        "startedAt": "2030-01-01T00:01:00Z",
                        "finishedAt": "2030-01-01T00:02:00Z",
                    }
                }
            )
        ],
    }


@pytest.fixture(scope="module")
async def api_client():
    async with ApiClient() as client:
        yield client


@pytest.fixture
def kube():
    return FakeKube()


@pytest.fixture
def runner(api_client, kube):
    runner = KubernetesJobRunner(
        NAMESPACE, pvc_name=PVC, api_client=api_client, poll_interval=0.01, request_timeout=1
    )
    runner.core = runner.batch = runner.custom = kube
    return runner


# --- the runner ----------------------------------------------------------------------------


async def test_start_makes_the_service_then_the_job_and_status_follows_the_pods(runner, kube):
    plan = PLANS["tensorflow-2"]

    await runner.start(plan, 0)

    creates = [c[1:] for c in kube.calls if c[0] == "create"]
    assert creates == [("service", plan.object_name), ("job", plan.object_name)]
    job, service = kube.jobs[plan.object_name], kube.services[plan.object_name]
    validate(job)
    validate(service)
    assert job == km.make_job(plan, namespace=NAMESPACE, pvc_name=PVC, restart=0)

    # right after creation no pod exists yet: pending, never missing
    assert [(s.state, s.reason) for s in await runner.status(plan)] == [
        (PENDING, "creating the pod"),
        (PENDING, "creating the pod"),
    ]

    kube.add_pod(job, 0, RUNNING_POD)
    kube.add_pod(job, 1, UNSCHEDULABLE_POD)
    first, second = await runner.status(plan)
    assert first.state == RUNNING and first.started > 0
    # unschedulable is pending with the scheduler's words, never running
    assert (second.state, second.reason) == (PENDING, UNSCHEDULABLE)


async def test_oom_killed_and_failed_nodes_are_reported(runner, kube):
    plan = PLANS["mindspore-2"]
    await runner.start(plan, 0)
    job = kube.jobs[plan.object_name]
    kube.add_pod(job, 0, exited_pod(137, "OOMKilled"))
    kube.add_pod(job, 1, exited_pod(3))

    oom, failed = await runner.status(plan)

    assert (oom.state, oom.exit_code, oom.oom) == (EXITED, 137, True)
    assert oom.reason == "out of memory"
    assert (failed.state, failed.exit_code, failed.oom, failed.reason) == (EXITED, 3, False, "")


async def test_waiting_containers_are_pending_with_why_and_crash_loops_exited(runner, kube):
    plan = PLANS["plain-1"]
    await runner.start(plan, 0)
    job = kube.jobs[plan.object_name]
    pod = kube.add_pod(
        job,
        0,
        {
            "phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "True"}],
            "containerStatuses": [
                container_status(
                    {
                        "waiting": {
                            "reason": "ImagePullBackOff",
                            "message": 'Back-off pulling image "registry.example.com/x"',
                        }
                    }
                )
            ],
        },
    )
    ((state, reason),) = [(s.state, s.reason) for s in await runner.status(plan)]
    assert (state, reason) == (PENDING, 'Back-off pulling image "registry.example.com/x"')

    kube.pods[pod]["status"]["containerStatuses"][0]["state"] = {
        "waiting": {"reason": "CrashLoopBackOff"}
    }
    kube.pods[pod]["status"]["containerStatuses"][0]["lastState"] = exited_pod(137, "OOMKilled")[
        "containerStatuses"
    ][0]["state"]
    ((status,),) = [await runner.status(plan)]
    assert (status.state, status.exit_code, status.oom) == (EXITED, 137, True)


async def test_pytorch_runs_as_a_trainjob(runner, kube):
    plan = PLANS["pytorch-gpu"]

    await runner.start(plan, 0)

    assert [c[1] for c in kube.calls if c[0] == "create"] == ["trainjob"]
    trainjob = kube.trainjobs[plan.object_name]
    assert trainjob == km.make_trainjob(plan, namespace=NAMESPACE, pvc_name=PVC, restart=0)
    assert not kube.jobs and not kube.services  # Trainer's JobSet makes its own

    kube.add_pod(trainjob, 1, UNSCHEDULABLE_POD)
    statuses = await runner.status(plan)
    assert [(s.state, s.reason) for s in statuses] == [
        (PENDING, "creating the pod"),
        (PENDING, UNSCHEDULABLE),
    ]
    kube.add_pod(trainjob, 0, exited_pod(0, "Completed"))
    kube.add_pod(trainjob, 1, exited_pod(0, "Completed"))  # newer pod of the same index
    assert [(s.state, s.exit_code) for s in await runner.status(plan)] == [(EXITED, 0)] * 2

    await runner.stop(plan, grace=5)
    assert ("patch", "trainjob", plan.object_name) in [c[:3] for c in kube.calls]
    assert kube.trainjobs[plan.object_name]["spec"]["suspend"] is True

    await runner.remove(plan)
    assert not kube.trainjobs


async def test_without_trainer_pytorch_runs_as_an_indexed_job(api_client, kube):
    runner = KubernetesJobRunner(NAMESPACE, api_client=api_client, trainer_runtime=None)
    runner.core = runner.batch = runner.custom = kube
    plan = PLANS["pytorch-2"]

    await runner.start(plan, 0)

    assert set(kube.jobs) == set(kube.services) == {plan.object_name} and not kube.trainjobs
    (container,) = kube.jobs[plan.object_name]["spec"]["template"]["spec"]["containers"]
    assert container["command"][4] == "torchrun"  # under the node wrapper


async def test_missing_trainer_is_said_plainly(runner, kube):
    kube.refuse["trainjob-api"] = not_found()

    with pytest.raises(RuntimeError, match="Kubeflow Trainer"):
        await runner.start(PLANS["pytorch-2"], 0)
    assert not kube.trainjobs


async def test_failed_create_removes_what_was_made(runner, kube):
    plan = PLANS["tensorflow-2"]
    kube.refuse["job"] = ApiException(status=403, reason="Forbidden: exceeded quota")

    with pytest.raises(ApiException) as e:
        await runner.start(plan, 0)

    assert e.value.status == 403
    assert kube.services == {} and kube.jobs == {}
    made = [c[:3] for c in kube.calls if c[0] in ("create", "delete")]
    assert made[-3:] == [
        ("create", "service", plan.object_name),
        ("create", "job", plan.object_name),
        ("delete", "service", plan.object_name),
    ]


async def test_remove_is_idempotent(runner, kube):
    plan = PLANS["tensorflow-2"]
    await runner.start(plan, 0)

    await runner.remove(plan)
    assert kube.jobs == {} and kube.services == {}
    deletes = [c for c in kube.calls if c[0] == "delete"]
    # the Job's pods go with it, in the background
    assert ("delete", "job", plan.object_name, "Background") in deletes

    await runner.remove(plan)  # nothing left: every 404 is fine
    await runner.remove(PLANS["pytorch-2"])  # never started at all

    statuses = await runner.status(plan)
    assert [s.state for s in statuses] == [MISSING, MISSING]
    assert "is gone" in statuses[0].reason


async def test_restart_replaces_the_stopped_attempt_and_ignores_its_pods(runner, kube):
    plan = PLANS["tensorflow-2"]
    await runner.start(plan, 0)
    first = kube.jobs[plan.object_name]
    kube.add_pod(first, 0, exited_pod(1))
    kube.add_pod(first, 1, RUNNING_POD)

    await runner.stop(plan, grace=7)

    assert ("patch", "job", plan.object_name) in [c[:3] for c in kube.calls]
    assert kube.jobs[plan.object_name]["spec"]["suspend"] is True
    (delete_pods,) = [c for c in kube.calls if c[0] == "delete-pods"]
    assert delete_pods[2] == 7
    assert kube.pods == {}
    kube.set_condition(kube.jobs, plan.object_name, "Suspended")
    assert [(s.state, s.reason) for s in await runner.status(plan)] == [(EXITED, "stopped")] * 2

    # a pod of the first attempt still terminating: not the new attempt's node
    kube.add_pod(first, 0, exited_pod(143))
    await runner.start(plan, 1)  # the stopped attempt's objects are replaced

    second = kube.jobs[plan.object_name]
    assert second["metadata"]["labels"]["ai-workbench.job-restart"] == "1"
    assert "status" not in second
    assert [s.state for s in await runner.status(plan)] == [PENDING, PENDING]
    kube.add_pod(second, 0, RUNNING_POD)
    assert [s.state for s in await runner.status(plan)] == [RUNNING, PENDING]


async def test_job_ended_by_the_cluster_without_pods(runner, kube):
    plan = PLANS["plain-1"]
    await runner.start(plan, 0)
    kube.set_condition(
        kube.jobs, plan.object_name, "Failed", "Job was active longer than specified deadline"
    )

    ((status,),) = [await runner.status(plan)]

    assert (status.state, status.exit_code) == (EXITED, None)
    assert status.reason == "Job was active longer than specified deadline"


async def test_logs_wait_while_pending_then_follow_the_node(runner, kube):
    plan = PLANS["tensorflow-2"]
    await runner.start(plan, 0)
    job = kube.jobs[plan.object_name]

    async def collect(since=0):
        return [line async for line in runner.logs(plan, 1, since)]

    task = asyncio.ensure_future(collect(since=time.time() - 30))
    await asyncio.sleep(0.05)  # no pod yet
    pod = kube.add_pod(job, 1, UNSCHEDULABLE_POD)
    await asyncio.sleep(0.05)  # pending
    assert not task.done()
    assert not [c for c in kube.calls if c[0] == "log"]

    kube.logs[pod] = [b"epoch 1 loss=0.5\nepoch 2 ", b"loss=0.25\n\r 50%|##", b"###| 2/4"]
    kube.pods[pod]["status"] = RUNNING_POD
    lines = await asyncio.wait_for(task, 5)

    assert lines == [b"epoch 1 loss=0.5\n", b"epoch 2 loss=0.25\n", b"\r 50%|#####| 2/4\n"]
    (call,) = [c for c in kube.calls if c[0] == "log"]
    assert call[1] == pod and 30 <= call[2]["since_seconds"] <= 32


async def test_logs_end_when_there_is_nothing_to_follow(runner, kube):
    plan = PLANS["plain-1"]
    assert [line async for line in runner.logs(plan, 0)] == []  # never started

    await runner.start(plan, 0)
    kube.set_condition(kube.jobs, plan.object_name, "Failed", "deadline")
    assert [line async for line in runner.logs(plan, 0)] == []  # ended without a pod

    with pytest.raises(ValueError):
        [line async for line in runner.logs(plan, 1)]


async def test_status_reads_the_clients_model_objects(api_client, kube, runner):
    """The real client returns V1Job and V1PodList objects (datetimes, snake_case): the
    runner reads them as the API's JSON."""
    import json
    from types import SimpleNamespace

    def as_model(data, kind):
        return api_client.deserialize(SimpleNamespace(data=json.dumps(data)), kind)

    class ModelKube(FakeKube):
        async def read_namespaced_job(self, name, namespace, **kw):
            return as_model(await super().read_namespaced_job(name, namespace), "V1Job")

        async def list_namespaced_pod(self, namespace, label_selector="", **kw):
            found = await super().list_namespaced_pod(namespace, label_selector)
            return as_model(found, "V1PodList")

    models = ModelKube()
    runner.core = runner.batch = runner.custom = models
    plan = PLANS["tensorflow-2"]
    await runner.start(plan, 0)
    job = models.jobs[plan.object_name]
    models.add_pod(job, 0, RUNNING_POD)
    models.add_pod(job, 1, exited_pod(137, "OOMKilled"))

    running, oom = await runner.status(plan)

    assert running.state == RUNNING
    assert running.started == pytest.approx(1893456060)  # 2030-01-01T00:01:00Z
    assert (oom.state, oom.exit_code, oom.oom) == (EXITED, 137, True)
