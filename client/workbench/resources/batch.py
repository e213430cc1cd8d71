"""Batch inference: run a registered model over a folder of inputs, follow it, read its results.

    run = await client.batch.run("mnist", 2, inputs={"instance": "nb1", "path": "data/batch"})
    await run.wait()
    print(run.progress)                  # 1.0
    for line in await run.results():     # {"input": "a.json", "output": ..., "error": None}
        ...

A batch run is a version of a job (its logs, files, stop and delete are a Job's); the same name
again runs it as a new version. With the sync client the same calls block.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from ..errors import WorkbenchError
from . import Namespace, segment
from .jobs import Job

if TYPE_CHECKING:
    from ..client import AsyncWorkbenchClient

PREDICTIONS = "output/predictions.jsonl"


def batch_path(owner: str, name: str) -> str:
    return f"batch/{segment(owner)}/{segment(name)}"


def parse_inputs(inputs) -> dict:
    """{"instance", "path"} from that dict or "instance:path"."""
    if isinstance(inputs, str):
        instance, sep, path = inputs.partition(":")
        if not sep or not instance:
            raise ValueError(f"inputs {inputs!r} is not INSTANCE:PATH (for example nb1:data/batch)")
        return {"instance": instance, "path": path}
    if isinstance(inputs, dict):
        return dict(inputs)
    raise TypeError('inputs must be {"instance": ..., "path": ...} or "instance:path".')


def _version_of(answer: dict, version: int | None = None) -> dict | None:
    """One version's JSON in a batch run's answer (default: the latest)."""
    if isinstance(answer.get("version"), int) and version in (None, answer["version"]):
        return answer
    versions = answer.get("versions") or []
    wanted = version or answer.get("latest")
    for data in versions:
        if data.get("version") == wanted:
            return data
    return None


class BatchRun(Job):
    """One version of a batch run as last seen: a Job (logs(), wait(), stop(), files(),
    download(), delete()) with .progress (0 to 1), .model, .model_version, .output and
    results() (the predictions: one {"input", "output", "error"} per input, in order)."""

    def __repr__(self) -> str:
        return (
            f"<BatchRun {self.owner}/{self.name} version {self.version} {self.state} "
            f"{self.progress:.0%}>"
        )

    @property
    def progress(self) -> float:
        """How much of the input is done, 0 to 1 (as last seen)."""
        return float(self.data.get("progress") or 0.0)

    @property
    def model(self) -> str | None:
        return self.data.get("model")

    @property
    def model_version(self) -> int | None:
        return self.data.get("model_version")

    @property
    def output(self) -> str:
        """The predictions file, relative to the owner's work folder in their instances."""
        return self.data.get("output") or f"jobs/{self.name}/{self.version}/{PREDICTIONS}"

    async def refresh(self) -> BatchRun:
        """Read the version again (with its progress); returns the run itself."""
        answer = await self._client.api("GET", batch_path(self.owner, self.name))
        data = _version_of(answer, self.version)
        if data is None:  # the run's versions were deleted meanwhile
            data = await self._client.api("GET", self._path)
        self.data = data
        return self

    async def iter_results(self) -> AsyncIterator[dict]:
        """Each line of the predictions as it is read: {"input": "<file>[#line]", "output":
        ..., "error": None or why that input failed}."""
        path = "/".join(segment(part) for part in PREDICTIONS.split("/"))
        async with self._client.api_stream(
            "GET", f"{self._path}/files/{path}", limit=self._client.timeout
        ) as resp:
            async for line in resp.aiter_lines():
                if line.strip():
                    yield json.loads(line)

    async def results(self) -> list[dict]:
        """Every line of the predictions (see iter_results), in input order."""
        return [line async for line in self.iter_results()]


async def _run(client: AsyncWorkbenchClient, owner: str, name: str, answer: dict) -> BatchRun:
    data = _version_of(answer)
    if data is None:
        data = _version_of(await client.api("GET", batch_path(owner, name)))
    return BatchRun(client, data)


class Batch(Namespace):
    """Batch inference runs: the user's own and those of their workspaces (by owner)."""

    async def run(
        self,
        model,
        version: int | None = None,
        *,
        inputs,
        name: str | None = None,
        flavor: str | None = None,
        workspace: str | None = None,
        description: str | None = None,
        max_run_seconds: int | None = None,
    ) -> BatchRun:
        """Run a ready version of one of your models (a name or a Model; version default:
        its latest) over every input file of a folder of an instance's storage (inputs:
        {"instance": "nb1", "path": "data/batch"} or "nb1:data/batch"): .json (v1
        {"instances": [...]}, a v2 request, or a list of instances), .jsonl (one input a
        line) and .npy files, in sorted order. name: default "<model>-batch"; the same
        name again is the run's next version. The BatchRun, usually still queued."""
        inputs = parse_inputs(inputs)  # a malformed one is refused before any request
        model_name = getattr(model, "name", model)
        if version is None:
            latest = getattr(model, "latest", None)
            if latest is None:
                path = f"models/{segment(await self._client.user_name())}/{segment(model_name)}"
                latest = (await self._client.api("GET", path)).get("latest")
            version = latest
        body: dict[str, Any] = {
            "name": name or f"{model_name}-batch"[:32].strip("-"),
            "model": model_name,
            "version": version,
            "inputs": inputs,
        }
        for key, value in (
            ("flavor", flavor),
            ("workspace", workspace),
            ("description", description),
            ("max_run_seconds", max_run_seconds),
        ):
            if value is not None:
                body[key] = value
        answer = await self._client.api("POST", "batch", body)
        owner = answer.get("owner") or await self._client.user_name()
        return await _run(self._client, owner, answer["name"], answer)

    async def list(  # noqa: A002 - the API's word
        self, workspace: str | None = None, *, all: bool = False
    ) -> list[dict]:
        """The batch runs the user sees, each with its latest version's state, model and
        progress; only those of `workspace` if given; all=True: everyone's (administrators)."""
        params = {}
        if workspace:
            params["workspace"] = workspace
        if all:
            params["all"] = "1"
        return await self._client.api("GET", "batch", params=params or None)

    async def get(
        self, name: str, owner: str | None = None, version: int | None = None
    ) -> BatchRun:
        """A batch run's version (default: the latest) as a BatchRun; owner default: the user."""
        owner = await self._client.user_name(owner)
        answer = await self._client.api("GET", batch_path(owner, name))
        data = _version_of(answer, version)
        if data is None:
            raise WorkbenchError(404, f"Batch run {owner}/{name} has no version {version}.")
        return BatchRun(self._client, data)

    async def describe(self, name: str, owner: str | None = None) -> dict:
        """The batch run's JSON with every version's."""
        return await self._client.api("GET", batch_path(await self._client.user_name(owner), name))
