"""Batch inference runs: a registered model over a folder of inputs, as a training job's version.

A batch run is a version of a job whose spec the platform marks `kind: "batch"`: it runs
`python -m workbench.serving.batch` on the model version's image, with the caller's input
folder as the job's input channel `data`, the model's files mounted read-only at /mnt/models
(a mount of the platform's model store, which a request body can never ask for) and
WORKBENCH_MODEL / WORKBENCH_MODEL_DIR set as in a service's replica. It writes one line per
input to output/predictions.jsonl and prints `progress=<0..1>` lines, read as the job's metric
`progress`. Stop, logs, files and deletion are the jobs routes'; the same name again makes a
new version.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import io
import json
import logging
import shlex
import tarfile
from pathlib import Path

from workbench.names import instance_name_problem

from hub.service.api import APIError
from spawner.options import InvalidOptions
from training_bridge import store as job_store
from training_bridge.files import FilesError, relative_path
from training_bridge.plan import OUTPUT_DIR, InputChannel, dataset_target
from training_bridge.spec import (
    SpecError,
    check_dataset_input,
    check_description,
    check_name,
    job_kind,
)

log = logging.getLogger("workbench.inference.batch")

KIND = "batch"
MODEL_STORE = "models"
MODEL_DIR = "/mnt/models"
INPUT_CHANNEL = "data"
PREDICTIONS = "predictions.jsonl"
PROGRESS_METRIC = "progress"
# what workbench.serving.batch prints as it goes (a job metric rule)
PROGRESS_RULE = {"name": PROGRESS_METRIC, "regex": r"progress=([0-9.]+)"}
BODY_KEYS = (
    "name",
    "description",
    "model",
    "version",
    "inputs",
    "flavor",
    "workspace",
    "max_run_seconds",
)
# model formats a batch run cannot serve: a custom serving container speaks HTTP only
NO_BATCH_FORMATS = ("image",)


def output_path(name: str, version: int) -> str:
    """Where a run's predictions are, relative to the owner's work folder (as output_path)."""
    return f"jobs/{name}/{version}/output/{PREDICTIONS}"


def batch_command(input_path: str) -> list[str]:
    """What a batch run's node runs: every input file below `input_path`, one output line
    per input, in order."""
    return [
        "python",
        "-m",
        "workbench.serving.batch",
        "--inputs",
        input_path,
        "--output",
        f"{OUTPUT_DIR}/{PREDICTIONS}",
    ]


def _code_archive(about: dict) -> str:
    """The run's code folder: a description of the run (a job version always has code)."""
    data = (json.dumps(about, indent=1) + "\n").encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("batch.json")
        info.size = len(data)
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(data))
    return base64.b64encode(buffer.getvalue()).decode()


def _model_env(name: str, version: int, model: dict) -> dict[str, str]:
    """WORKBENCH_MODEL and WORKBENCH_MODEL_DIR, as a service's replica gets them."""
    described = {
        "name": name,
        "version": str(version),
        "format": model.get("format") or "",
        "predictor": model.get("predictor") or "",
        "signature": model.get("signature") or {},
    }
    return {"WORKBENCH_MODEL": json.dumps(described), "WORKBENCH_MODEL_DIR": MODEL_DIR}


class BatchRuns:
    """Batch runs of the caller's ready model versions, through the job service.

    jobs: the job service (platform["job_service"]); registry: the model registry
    (platform["model_registry"]), whose deploy_files(owner, name, version) gives the
    version's folder on this machine and its JSON after checking every file's SHA-256.
    """

    def __init__(self, jobs, registry):
        self.jobs = jobs
        self.registry = registry

    # --- checks ----------------------------------------------------------------------------
    @staticmethod
    def _model_name(caller: dict, value) -> str:
        if not isinstance(value, str) or not value.strip():
            raise APIError(400, 'model is required: the name of one of your models, "mnist".')
        owner, sep, name = value.strip().rpartition("/")
        if sep and owner != caller["name"]:
            raise APIError(
                403,
                f"Batch runs use your own models; {value} is not yours. Register a copy of it "
                "as a model of your own first.",
            )
        return name

    @staticmethod
    def _version(value) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise APIError(
                400, f"version must be a model version's number (1, 2, ...); got {value!r}."
            )
        return value

    @staticmethod
    def _dataset_input(value: dict) -> dict:
        """{"dataset", "version"}: a published dataset version's files as the input."""
        try:
            return check_dataset_input("inputs", value)
        except SpecError as e:
            raise APIError(400, str(e)) from None

    @staticmethod
    def _inputs(value) -> tuple[str, str]:
        """(instance, path) of the input folder: a folder of one of the caller's instances'
        storage, relative to it ("" for all of it)."""
        if not isinstance(value, dict) or set(value) - {"instance", "path"}:
            raise APIError(
                400,
                'inputs must be {"instance": "my-notebook", "path": "data/batch"}, a folder of '
                'one of your instances\' storage, or {"dataset": "flowers", "version": 2}, a '
                "published version of a dataset.",
            )
        instance = value.get("instance")
        problem = instance_name_problem(instance)
        if problem:
            raise APIError(400, f"inputs.instance: {problem}")
        path = value.get("path")
        if path in (None, "", "."):
            return instance, ""
        try:
            return instance, str(relative_path(path, "inputs.path"))
        except FilesError as e:
            raise APIError(400, str(e)) from None

    async def _deploy_files(self, owner: str, name: str, version: int) -> tuple[Path, dict]:
        if self.registry is None:
            raise APIError(503, "Models are not available on this platform.")
        call = self.registry.deploy_files
        if inspect.iscoroutinefunction(call):
            folder, model = await call(owner, name, version)
        else:  # re-hashing files blocks: off the event loop
            folder, model = await asyncio.to_thread(call, owner, name, version)
        return Path(folder), model

    def _store_path(self, folder: Path) -> str:
        """The version's folder as a path in the model store (never a host path in a spec)."""
        root = Path(getattr(self.registry, "root", None) or self.jobs.store_root(MODEL_STORE))
        self.jobs.stores.setdefault(MODEL_STORE, root)
        try:
            return folder.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            log.error("model folder %s is outside the model store %s", folder, root)
            raise APIError(500, "The model's files are not in the model store.") from None

    async def _check_folder(self, owner: str, instance: str, path: str, image_name: str) -> None:
        """The input folder exists (where the backend can tell before the run): a missing
        one is refused now, not found by a failed run."""
        if not isinstance(image_name, str) or not image_name:
            raise APIError(409, "The model version names no image to run it on.")
        await self.jobs.policy.prefetch(owner, image_name)
        try:
            image = self.jobs.policy.image(image_name, owner)
        except InvalidOptions as e:
            raise APIError(400, str(e)) from None
        checker = self.jobs.image_checker
        if checker is not None and await checker(image.ref) is False:
            raise APIError(
                400,
                f"Image {image_name!r} ({image.ref}) of the model is not built on this machine. "
                f"Build it with `workbench images build {image.name}`.",
            )
        try:
            exists = await self.jobs.runner.folder_exists(owner, instance, path, image.ref)
        except RuntimeError as e:  # the storage volume was not found
            raise APIError(
                400, f"Instance {instance!r} has no storage yet ({e}): start it once."
            ) from None
        except Exception as e:  # noqa: BLE001 - the engine's error, in the log
            log.warning("could not look at %s's storage of %s: %s", owner, instance, e)
            raise APIError(503, "Could not look at the instance's storage; try again.") from None
        if exists is False:
            where = path or "its top folder"
            raise APIError(
                400,
                f"No folder {where!r} in the storage of instance {instance!r}: give inputs.path "
                "relative to the instance's work folder.",
            )

    # --- creating --------------------------------------------------------------------------
    async def create(self, caller: dict, body: dict) -> dict:
        """A new batch run (version 1, or the next version of the caller's batch run of that
        name); checked end to end before anything is made."""
        owner = caller["name"]
        unknown = sorted(set(body) - set(BODY_KEYS))
        if unknown:
            raise APIError(
                400,
                f"Unknown field(s) {', '.join(unknown)}; a batch run takes {', '.join(BODY_KEYS)}.",
            )
        try:
            name = check_name(body.get("name"))
            description = check_description(body.get("description"))
        except SpecError as e:
            raise APIError(400, str(e)) from None
        model_name = self._model_name(caller, body.get("model"))
        version = self._version(body.get("version"))
        inputs = body.get("inputs")
        dataset = None
        if isinstance(inputs, dict) and "dataset" in inputs:
            dataset = self._dataset_input(inputs)
            instance, path = "", ""
        else:
            instance, path = self._inputs(inputs)
        flavor = body.get("flavor")
        if flavor is not None and not isinstance(flavor, str):
            raise APIError(400, "flavor must be a flavor's name (see GET /flavors).")
        servers = await self.jobs.hub.servers(owner) or {}
        if dataset is None and instance not in servers:
            raise APIError(400, f"inputs.instance: you have no instance {instance!r}.")
        existing = await self.jobs.db.run(lambda s: job_store.find_job(s, owner, name))
        if existing is not None:
            rows = await self.jobs.db.run(lambda s: job_store.versions_of(s, existing))
            if rows and job_kind(json.loads(rows[-1].spec)) != KIND:
                raise APIError(409, f"You have a training job named {name!r}: pick another name.")
        folder, model = await self._deploy_files(owner, model_name, version)
        if model.get("state") != "ready":
            reason = f" ({model['reason']})" if model.get("reason") else ""
            raise APIError(
                409,
                f"Model {model_name} version {version} is {model.get('state')}{reason}: a batch "
                "run needs a ready version.",
            )
        if model.get("format") in NO_BATCH_FORMATS or not model.get("files"):
            raise APIError(
                400,
                f"Model {model_name} version {version} is a serving image without files: batch "
                "runs need a model with files (onnx, pytorch, sklearn, ...).",
            )
        store_path = self._store_path(folder)
        image_name = model.get("image")
        if dataset is None:
            await self._check_folder(owner, instance, path, image_name)
            input_path = InputChannel(name=INPUT_CHANNEL, instance=instance, path=path)
            input_path = input_path.container_path
            channel = {"instance": instance, "path": path or "."}
        else:
            # a version's folder: its files below data/, beside its manifest
            input_path = f"{dataset_target(INPUT_CHANNEL)}/data"
            channel = dataset
        about = {
            "model": model_name,
            "model_owner": owner,
            "model_version": version,
            "inputs": channel if dataset else {"instance": instance, "path": path},
        }
        job_body = {
            "source": {"kind": "folder", "archive": _code_archive(about)},
            "command": shlex.join(batch_command(input_path)),
            "runtime": "plain",
            "image": image_name,
            "flavor": flavor,
            "inputs": {INPUT_CHANNEL: channel},
            "metrics": [PROGRESS_RULE],
            "max_run_seconds": body.get("max_run_seconds") or 0,
        }
        platform = {
            "kind": KIND,
            "mounts": [{"store": MODEL_STORE, "path": store_path, "target": MODEL_DIR}],
            "environment": _model_env(model_name, version, model),
            "origin": {"model": model_name, "model_owner": owner, "model_version": version},
        }
        if existing is None:
            made = await self.jobs.create(
                caller,
                {
                    **job_body,
                    "name": name,
                    "description": description,
                    "workspace": body.get("workspace"),
                },
                platform=platform,
            )
        else:
            if body.get("description") is not None:
                job_body["description"] = description
            made = await self.jobs.rerun(caller, owner, name, job_body, platform=platform)
        return batch_model(made, 0.0)

    # --- reading ---------------------------------------------------------------------------
    async def _progress(self, caller: dict, owner: str, name: str, version: int) -> float:
        points = (await self.jobs.metrics(caller, owner, name, version)).get(PROGRESS_METRIC)
        return float(points[-1]["value"]) if points else 0.0

    async def list(self, caller: dict, workspace: str | None = None, all_users=False) -> list:
        """The batch runs the caller sees (own, and their workspaces'), each with its latest
        version's state, model and progress."""
        jobs = await self.jobs.list(caller, workspace, all_users, kind=KIND)
        out = []
        for job in jobs:
            owner, name, latest = job["owner"], job["name"], job["latest"]
            try:
                version = await self.jobs.get_version(caller, owner, name, latest)
                progress = await self._progress(caller, owner, name, latest)
            except APIError:  # deleted meanwhile
                continue
            origin = version["spec"].get("origin") or {}
            out.append(
                {
                    **job,
                    "model": origin.get("model"),
                    "model_version": origin.get("model_version"),
                    "output": output_path(name, latest),
                    "progress": progress,
                }
            )
        return out

    async def get(self, caller: dict, owner: str, name: str) -> dict:
        """A batch run with every version (each with its model, output and progress)."""
        job = await self.jobs.get(caller, owner, name)
        versions = job.get("versions") or []
        if not versions or job_kind(versions[-1]["spec"]) != KIND:
            raise APIError(404, f"No batch run {name!r} of user {owner!r}.")
        job["versions"] = [
            batch_model(v, await self._progress(caller, owner, name, v["version"]))
            for v in versions
        ]
        latest = job["versions"][-1]
        for key in ("model", "model_version", "output", "progress"):
            job[key] = latest[key]
        return job


def batch_model(version: dict, progress: float) -> dict:
    """A batch run version's JSON: the job version's, with its model, output and progress."""
    origin = version["spec"].get("origin") or {}
    return {
        **version,
        "model": origin.get("model"),
        "model_version": origin.get("model_version"),
        "output": output_path(version["name"], version["version"]),
        "progress": progress,
    }
