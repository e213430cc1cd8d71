"""Checking a job submission: what a user asks for, validated into a version's spec."""

from __future__ import annotations

import math
import re
import shlex
from pathlib import PurePosixPath

from workbench.names import instance_name_problem, job_name_problem

from .files import FilesError, relative_path
from .plan import RUNTIMES

KINDS = ("file", "folder", "notebook")
MAX_DESCRIPTION = 512
MAX_COMMAND = 4096
MAX_HYPERPARAMETERS = 100
MAX_INPUTS = 16
MAX_RESTARTS = 20
MAX_RUN_SECONDS = 30 * 24 * 3600
HYPERPARAMETER_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
INPUT_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
# what a re-run may change (the rest of a version's spec stays as it was)
RERUN_KEYS = (
    "command",
    "runtime",
    "image",
    "flavor",
    "nodes",
    "processes_per_node",
    "hyperparameters",
    "inputs",
    "metrics",
    "max_run_seconds",
    "max_restarts",
)
# runtimes whose nodes find each other (the others run on one node)
MULTI_NODE_RUNTIMES = ("pytorch", "tensorflow", "mindspore")
# what only platform code sets on a version (never a submission's body): the kind of run, the
# read-only folders of the platform's stores it mounts, environment it adds, and what made it
PLATFORM_KEYS = ("kind", "mounts", "environment", "origin")
JOB_KINDS = ("training", "batch")
STORE_NAME = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
# where the platform's own folders are in a node: never over another mount or a system folder
RESERVED_TARGETS = ("/job", "/bin", "/dev", "/etc", "/lib", "/proc", "/sbin", "/sys", "/usr")
MAX_PLATFORM_ENV_BYTES = 256 * 1024


class SpecError(ValueError):
    """The submission cannot be run; the message says what to fix (an HTTP 400)."""


def check_name(name) -> str:
    problem = job_name_problem(name)
    if problem:
        raise SpecError(problem)
    return name


def check_description(value) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > MAX_DESCRIPTION:
        raise SpecError(f"description must be text of at most {MAX_DESCRIPTION} characters.")
    return value


def _int(body: dict, key: str, default: int, low: int, high: int) -> int:
    value = body.get(key, default)
    if value is None:
        value = default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise SpecError(f"{key} must be a whole number from {low} to {high}; got {value!r}.")
    value = int(value)
    if not low <= value <= high:
        raise SpecError(f"{key} must be from {low} to {high}; got {value}.")
    return value


def check_hyperparameters(value) -> dict:
    """name -> a number, text or true/false; else SpecError naming the bad one."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SpecError('hyperparameters must be an object of name: value, e.g. {"lr": 0.01}.')
    if len(value) > MAX_HYPERPARAMETERS:
        raise SpecError(f"At most {MAX_HYPERPARAMETERS} hyperparameters.")
    for name, v in value.items():
        if not HYPERPARAMETER_NAME.match(name):
            raise SpecError(
                f"Hyperparameter name {name!r}: use letters, digits, '_', '.' and '-', "
                "starting with a letter or '_'."
            )
        if isinstance(v, bool) or isinstance(v, int):
            continue
        if isinstance(v, float):
            if not math.isfinite(v):
                raise SpecError(f"Hyperparameter {name!r} must be a finite number.")
            continue
        if isinstance(v, str):
            if len(v) > 1024 or "\x00" in v:
                raise SpecError(f"Hyperparameter {name!r} is longer than 1024 characters.")
            continue
        raise SpecError(
            f"Hyperparameter {name!r} must be a number, text or true/false; got {type(v).__name__}."
        )
    return dict(value)


def check_dataset_input(name: str, channel: dict) -> dict:
    """{"dataset": "name" | "owner/name", "version": N}: a published dataset version (the
    platform resolves and checks it against what the submitter may see)."""
    ref, version = channel.get("dataset"), channel.get("version")
    parts = ref.split("/") if isinstance(ref, str) else []
    if not 1 <= len(parts) <= 2 or not all(0 < len(p) <= 255 for p in parts):
        raise SpecError(f'Input {name!r}: dataset must be "name" or "owner/name".')
    if isinstance(version, bool) or not isinstance(version, int) or not 0 < version < 10**9:
        raise SpecError(
            f"Input {name!r}: version must be the number of a published version of dataset "
            f"{ref!r} (see GET /datasets/<owner>/<name>/versions)."
        )
    # "store" and "path" are what the platform resolved for an earlier version (a re-run
    # resolves them again)
    if set(channel) - {"dataset", "version", "store", "path"}:
        raise SpecError(f'Input {name!r}: a dataset input has only "dataset" and "version".')
    return {"dataset": ref, "version": version}


def check_inputs(value, instances: set[str]) -> dict:
    """name -> {"instance", "path"}: folders of the caller's own instances' storage; or
    name -> {"dataset", "version"}: published dataset versions (see check_dataset_input)."""
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > MAX_INPUTS:
        raise SpecError(
            f"inputs must be an object of at most {MAX_INPUTS} channels: "
            '{"data": {"instance": "my-notebook", "path": "datasets/mnist"}} or '
            '{"data": {"dataset": "flowers", "version": 2}}.'
        )
    out = {}
    for name, channel in value.items():
        if not INPUT_NAME.match(name):
            raise SpecError(f"Input name {name!r}: use lower-case letters, digits and '_'.")
        if not isinstance(channel, dict):
            raise SpecError(f'Input {name!r} must be {{"instance": ..., "path": ...}}.')
        if "dataset" in channel:
            out[name] = check_dataset_input(name, channel)
            continue
        instance = channel.get("instance")
        problem = instance_name_problem(instance)
        if problem:
            raise SpecError(f"Input {name!r}: {problem}")
        if instance not in instances:
            raise SpecError(f"Input {name!r}: you have no instance {instance!r}.")
        path = channel.get("path") or "."
        try:
            rel = relative_path(path, f"path of input {name!r}") if path != "." else ""
        except FilesError as e:
            raise SpecError(str(e)) from None
        out[name] = {"instance": instance, "path": str(rel)}
    return out


def check_command(value, required: bool) -> list[str]:
    if value is None or value == "":
        if required:
            raise SpecError(
                "A folder job needs a command, for example 'python train.py --epochs 3'."
            )
        return []
    if isinstance(value, list):
        if not all(isinstance(a, str) for a in value):
            raise SpecError("command must be text or a list of text.")
        argv = value
    elif isinstance(value, str):
        if len(value) > MAX_COMMAND:
            raise SpecError(f"command is longer than {MAX_COMMAND} characters.")
        try:
            argv = shlex.split(value)
        except ValueError as e:
            raise SpecError(f"command cannot be parsed ({e}).") from None
    else:
        raise SpecError("command must be text, for example 'python train.py'.")
    if not argv or not argv[0].strip():
        raise SpecError("command is empty: say what to run, for example 'python train.py'.")
    return argv


def check_source(source, names: list[str] | None) -> dict:
    """The source's kind and entry (names: the archive's files, when it comes with one)."""
    if not isinstance(source, dict):
        raise SpecError(
            'source must be {"kind": "file"|"folder"|"notebook", "entry": ..., "archive": ...}.'
        )
    kind = source.get("kind") or "file"
    if kind not in KINDS:
        raise SpecError(f"source.kind must be one of {', '.join(KINDS)}; got {kind!r}.")
    entry = source.get("entry") or ""
    if kind != "folder" or entry:
        try:
            entry = str(relative_path(entry, "source.entry"))
        except FilesError as e:
            raise SpecError(str(e)) from None
        if names is not None and entry not in names:
            raise SpecError(f"The code holds no file {entry!r} (source.entry).")
        if kind == "notebook" and not entry.endswith(".ipynb"):
            raise SpecError("A notebook job's entry must be a .ipynb file.")
    return {"kind": kind, "entry": entry}


def job_command(source: dict, command: list[str], hyperparameters: dict) -> list[str]:
    """The argv a version runs: the user's command (or `python <entry>`), hyperparameters
    added as --name value; a notebook runs under workbench.notebook_job."""
    from .plan import hyperparameter_args

    if source["kind"] == "notebook":
        return ["python", "-m", "workbench.notebook_job", source["entry"]]
    argv = command or ["python", source["entry"]]
    return argv + hyperparameter_args(hyperparameters)


def check_spec(body: dict, *, previous: dict | None = None, names=None, instances=()) -> dict:
    """A version's spec from a submission (or a re-run's changes over `previous`), without
    the image and flavor checks, which need the platform's policy (see JobService)."""
    base = dict(previous or {})
    if previous is not None:
        unknown = set(body) - set(RERUN_KEYS) - {"source", "description"}
        if unknown:
            raise SpecError(
                f"A re-run can change {', '.join(RERUN_KEYS)} (and source); not "
                f"{', '.join(sorted(unknown))}."
            )
        merged = {**base, **{k: v for k, v in body.items() if k in RERUN_KEYS}}
        if "source" in body:
            merged["source"] = body["source"]
    else:
        merged = dict(body)
    source = check_source(merged.get("source"), names)
    runtime = merged.get("runtime") or "plain"
    if runtime not in RUNTIMES:
        raise SpecError(f"runtime must be one of {', '.join(RUNTIMES)}; got {runtime!r}.")
    nodes = _int(merged, "nodes", 1, 1, 64)
    if nodes > 1 and runtime not in MULTI_NODE_RUNTIMES:
        raise SpecError(
            f"A {runtime} job runs on one node; pick the pytorch, tensorflow or mindspore "
            "runtime for several nodes."
        )
    command_value = merged.get("command")
    if source["kind"] == "notebook":
        command_value = None
    command = check_command(command_value, required=source["kind"] == "folder")
    hyperparameters = check_hyperparameters(merged.get("hyperparameters"))
    from .metrics import MetricError, compile_metric_rules

    metrics = merged.get("metrics") or []
    try:
        compile_metric_rules(metrics)
    except MetricError as e:
        raise SpecError(str(e)) from None
    return {
        "source": source,
        "command": shlex.join(command) if command else "",
        "runtime": runtime,
        "image": merged.get("image"),
        "flavor": merged.get("flavor"),
        "nodes": nodes,
        "processes_per_node": _int(merged, "processes_per_node", 1, 1, 64),
        "hyperparameters": hyperparameters,
        "inputs": check_inputs(merged.get("inputs"), set(instances)),
        "metrics": list(metrics),
        "max_run_seconds": _int(merged, "max_run_seconds", 0, 0, MAX_RUN_SECONDS),
        "max_restarts": _int(merged, "max_restarts", 0, 0, MAX_RESTARTS),
    }


def check_platform_fields(fields: dict | None) -> dict:
    """The platform-only part of a version's spec (PLATFORM_KEYS), checked: a feature's code
    (a batch run) sets it, a request body never does. ValueError on a mistake of that code.

    mounts: [{"store": "models", "path": "<sub-path of the store>", "target": "/mnt/models"}],
    read-only; a store is a folder of the platform's data (see JobService.store_root), on
    Kubernetes a PersistentVolumeClaim (see JobRunner.store_claim). No host path is written
    in a spec: versions' specs are shown to their owners.
    """
    fields = dict(fields or {})
    unknown = set(fields) - set(PLATFORM_KEYS)
    if unknown:
        raise ValueError(f"unknown platform fields {sorted(unknown)}")
    kind = fields.get("kind") or "training"
    if kind not in JOB_KINDS:
        raise ValueError(f"kind must be one of {JOB_KINDS}; got {kind!r}")
    mounts, targets = [], set()
    for mount in fields.get("mounts") or []:
        store, path, target = mount.get("store"), mount.get("path"), mount.get("target")
        if not isinstance(store, str) or not STORE_NAME.match(store):
            raise ValueError(f"mount store {store!r} is not a store's name")
        try:
            rel = str(relative_path(path, "mount path"))
        except FilesError as e:
            raise ValueError(str(e)) from None
        target_path = PurePosixPath(target) if isinstance(target, str) else None
        if (
            target_path is None
            or not target_path.is_absolute()
            or ".." in target_path.parts
            or len(target_path.parts) < 2
            or any(str(target_path).startswith(r) for r in RESERVED_TARGETS)
            or str(target_path) in targets
        ):
            raise ValueError(f"mount target {target!r} is not a free absolute folder")
        targets.add(str(target_path))
        mounts.append({"store": store, "path": rel, "target": str(target_path)})
    environment = fields.get("environment") or {}
    if not isinstance(environment, dict) or not all(
        isinstance(k, str) and ENV_NAME.match(k) and isinstance(v, str)
        for k, v in environment.items()
    ):
        raise ValueError("environment must map variable names to text")
    if sum(len(k) + len(v) for k, v in environment.items()) > MAX_PLATFORM_ENV_BYTES:
        raise ValueError("environment is too large")
    origin = fields.get("origin") or {}
    if not isinstance(origin, dict):
        raise ValueError("origin must be an object")
    out = {"kind": kind}
    if mounts:
        out["mounts"] = mounts
    if environment:
        out["environment"] = dict(environment)
    if origin:
        out["origin"] = dict(origin)
    return out


def job_kind(spec: dict) -> str:
    """What kind of run a version's spec describes: training (submitted) or batch."""
    return spec.get("kind") or "training"
