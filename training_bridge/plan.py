"""What one run of a job version needs, whatever runs it: the plan, and each node's environment."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from spawner.oom import wrapped

RUNTIMES = ("pytorch", "tensorflow", "mindspore", "plain")
# where a job's folders are inside each node's container
CODE_DIR = "/job/code"
OUTPUT_DIR = "/job/output"
CHECKPOINT_DIR = "/job/checkpoints"
INPUTS_DIR = "/job/inputs"
TENSORBOARD_DIR = f"{OUTPUT_DIR}/tensorboard"
# the ports node 0 listens on for the others (torchrun's c10d store, TF's and MindSpore's)
MASTER_PORT = 29400  # torchrun's default, and what Kubeflow Trainer sets
WORKER_PORT = 2222
LABEL_PREFIX = "ai-workbench"


def channel_env(name: str) -> str:
    """The variable that tells a node where input channel `name` is."""
    return "WORKBENCH_INPUT_" + name.upper().replace("-", "_")


def dataset_target(name: str) -> str:
    """Where a dataset input channel (a published version's folder) is in each node."""
    return f"{INPUTS_DIR}/{name}"


@dataclass(frozen=True)
class InputChannel:
    """A named read-only input: a folder of the owner's storage."""

    name: str
    # where it comes from: the instance whose storage holds it and the folder in it
    instance: str
    path: str
    # the engine volume (or PVC) of that storage, resolved by the platform
    volume: str = ""

    @property
    def mount_path(self) -> str:
        """Where the whole storage is mounted (read-only) in each node."""
        return f"{INPUTS_DIR}/.storage/{self.instance}"

    @property
    def env_name(self) -> str:
        return channel_env(self.name)

    @property
    def container_path(self) -> str:
        """The input's folder inside each node."""
        return f"{self.mount_path}/{self.path}".rstrip("/")


@dataclass(frozen=True)
class Mount:
    """A read-only folder the platform (never the submitter) gives every node, e.g. a
    registered model's files for a batch run: `source` is a host folder on the engine, a
    sub-path of the PersistentVolumeClaim `claim` on Kubernetes."""

    source: str
    target: str
    claim: str = ""


@dataclass(frozen=True)
class JobPlan:
    """Everything a runner needs to run (or re-run after a failure) one job version."""

    owner: str
    job: str
    version: int
    # a name unique on the engine / in the namespace for this version, [a-z0-9-]
    object_name: str
    image_ref: str
    runtime: str
    # argv of what the user asked to run, before the runtime wraps it (hyperparameters added)
    command: tuple[str, ...]
    nodes: int = 1
    processes_per_node: int = 1
    cpu: float = 1
    memory: int = 1024**3
    gpu: int = 0
    hyperparameters: dict = field(default_factory=dict)
    inputs: tuple[InputChannel, ...] = ()
    max_run_seconds: float = 0
    # host folders (engine) or PVC sub-paths (Kubernetes) of the version's files
    code_source: str = ""
    output_source: str = ""
    checkpoint_source: str = ""
    run_as: str = "1000:100"
    # extra environment every node gets (the platform's mirror settings, a batch run's model)
    environment: dict = field(default_factory=dict)
    # read-only folders of the platform's own stores (see Mount)
    mounts: tuple[Mount, ...] = ()
    workspace: str = "default"
    flavor: str = ""

    def node_name(self, rank: int) -> str:
        """The container / pod / host name of node `rank`."""
        return f"{self.object_name}-{rank}"

    def hosts(self) -> list[str]:
        return [self.node_name(r) for r in range(self.nodes)]

    def labels(self) -> dict[str, str]:
        return {
            f"{LABEL_PREFIX}.user": self.owner,
            f"{LABEL_PREFIX}.job": self.job,
            f"{LABEL_PREFIX}.job-version": str(self.version),
        }


def hyperparameter_args(hyperparameters: dict) -> list[str]:
    """Command-line arguments of hyperparameters: --name value (booleans as true/false)."""
    args = []
    for name, value in hyperparameters.items():
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, (dict, list)):
            value = json.dumps(value)
        args += [f"--{name}", str(value)]
    return args


def base_environment(plan: JobPlan, rank: int, restart: int) -> dict[str, str]:
    """What every node of every runtime sees, on the engine as on Kubernetes."""
    env = {
        **plan.environment,
        "WORKBENCH_JOB": plan.job,
        "WORKBENCH_JOB_OWNER": plan.owner,
        "WORKBENCH_JOB_VERSION": str(plan.version),
        "WORKBENCH_NODE_RANK": str(rank),
        "WORKBENCH_NUM_NODES": str(plan.nodes),
        "WORKBENCH_PROCESSES_PER_NODE": str(plan.processes_per_node),
        "WORKBENCH_OUTPUT_DIR": OUTPUT_DIR,
        "WORKBENCH_CHECKPOINT_DIR": CHECKPOINT_DIR,
        "WORKBENCH_TENSORBOARD_DIR": TENSORBOARD_DIR,
        "WORKBENCH_HYPERPARAMETERS": json.dumps(plan.hyperparameters),
        "WORKBENCH_RESTART": str(restart),
        "WORKBENCH_DIST_BACKEND": "nccl" if plan.gpu else "gloo",
        "PYTHONUNBUFFERED": "1",
    }
    for channel in plan.inputs:
        env[channel.env_name] = channel.container_path
    return env


def runtime_environment(plan: JobPlan, rank: int, hosts: list[str]) -> dict[str, str]:
    """The rendezvous variables of the plan's runtime for node `rank`, as Kubeflow Trainer
    sets them: PET_* for torchrun, TF_CONFIG, MindSpore's msrun settings."""
    master = hosts[0]
    if plan.runtime == "pytorch":
        return {
            "PET_NNODES": str(plan.nodes),
            "PET_NPROC_PER_NODE": str(plan.processes_per_node),
            "PET_NODE_RANK": str(rank),
            "PET_MASTER_ADDR": master,
            "PET_MASTER_PORT": str(MASTER_PORT),
        }
    if plan.runtime == "tensorflow":
        workers = [f"{host}:{WORKER_PORT}" for host in hosts]
        config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": rank}}
        return {"TF_CONFIG": json.dumps(config)}
    if plan.runtime == "mindspore":
        return {
            "MS_WORKER_NUM": str(plan.nodes * plan.processes_per_node),
            "MS_LOCAL_WORKER_NUM": str(plan.processes_per_node),
            "MS_NODE_RANK": str(rank),
            "MS_MASTER_ADDR": master,
            "MS_MASTER_PORT": str(MASTER_PORT),
        }
    return {}


def _script_args(command: list[str], modules: bool) -> list[str] | None:
    """What follows `python` in a command, when a launcher can run it in python's place
    (a script, or `-m module` where the launcher has it); None otherwise (`python -c ...`)."""
    if not command or command[0] not in ("python", "python3"):
        return None
    args = command[1:]
    if args[:1] == ["-u"]:  # output is unbuffered already (PYTHONUNBUFFERED)
        args = args[1:]
    if not args or (args[0].startswith("-") and not (modules and args[0] == "-m")):
        return None
    return args


# msrun resolves the master's name once, at start, and fails if it does not resolve yet (node 0's
# container or pod not up yet): every node waits for the name first (at most 5 minutes)
MSRUN_WAIT = (
    'timeout 300 sh -c "until getent hosts $MS_MASTER_ADDR >/dev/null; do sleep 1; done"; '
    'exec msrun "$@"'
)


def node_command(plan: JobPlan) -> list[str]:
    """The argv each node runs: the user's command under the runtime's launcher, under the
    node's wrapper (spawner.oom)."""
    return wrapped(launch_command(plan), "workbench-node")


def launch_command(plan: JobPlan) -> list[str]:
    """The user's command under the runtime's launcher (torchrun, msrun)."""
    command = list(plan.command)
    if plan.runtime == "pytorch":
        args = _script_args(command, modules=True)
        if args is not None:
            # torchrun takes every setting from PET_*: static rendezvous on node 0's store, so
            # node k runs global ranks k*nproc .. k*nproc+nproc-1 (c10d ranks nodes by host name)
            return ["torchrun", *args]
    if plan.runtime == "mindspore" and plan.nodes * plan.processes_per_node > 1:
        args = _script_args(command, modules=False)
        if args is not None:
            # node 0 also runs msrun's scheduler on MS_MASTER_PORT; ranks follow node_rank
            return [
                "sh",
                "-c",
                MSRUN_WAIT,
                "msrun",
                "--worker_num=$(MS_WORKER_NUM)",
                "--local_worker_num=$(MS_LOCAL_WORKER_NUM)",
                "--master_addr=$(MS_MASTER_ADDR)",
                "--master_port=$(MS_MASTER_PORT)",
                "--node_rank=$(MS_NODE_RANK)",
                "--join=True",
                f"--log_dir={OUTPUT_DIR}/msrun-logs",
                *args,
            ]
    return command


def expand(argv: list[str], env: dict[str, str]) -> list[str]:
    """Replace $(NAME) with env's value, the way Kubernetes expands a container's args."""
    out = []
    for arg in argv:
        for name, value in env.items():
            arg = arg.replace(f"$({name})", value)
        out.append(arg)
    return out
