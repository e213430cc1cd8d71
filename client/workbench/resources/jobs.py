"""Training jobs: submit code from a local file, notebook or folder; follow, wait, stop, re-run.

    job = await client.jobs.submit("train.py", image="pytorch", flavor="cpu.small",
                                   hyperparameters={"lr": 0.1})
    async for line in job.logs(follow=True):
        print(line)
    final = await job.wait()          # the version's JSON once it has ended
    print(final["state"], await job.metrics())

With the sync client (and `import workbench`) the same calls block, and job.logs() is a
plain iterator.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import re
import stat
import tarfile
import time
from collections.abc import AsyncIterator, Iterable
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from .. import names
from ..errors import WorkbenchError
from . import Namespace, segment

if TYPE_CHECKING:
    from ..client import AsyncWorkbenchClient

# a version in one of these states has ended: it changes no more
FINAL_STATES = frozenset({"succeeded", "failed", "stopped"})
# what a folder's archive leaves out: version control, caches, notebook autosaves
SKIPPED_FOLDERS = frozenset({".git", "__pycache__", ".ipynb_checkpoints"})
# the most code (files' sizes added up, before compression) a job takes from a folder
MAX_SOURCE_BYTES = 64 * 1024**2
# how often a followed log stream is opened again after it broke off (hub restarts)
FOLLOW_RETRIES = 5


class JobSourceError(WorkbenchError, ValueError):
    """The local code given to submit() cannot be sent: no such file, a kind that does not
    fit, a folder over MAX_SOURCE_BYTES, a missing command. Raised before any request."""

    def __init__(self, message: str):
        super().__init__(400, message)


class JobFailed(WorkbenchError):
    """wait(check=True) saw the version fail or be stopped; .data is its final JSON."""

    def __init__(self, data: dict):
        self.data = data
        what = f"{data.get('name')} version {data.get('version')}"
        reason = f": {data['reason']}" if data.get("reason") else ""
        super().__init__(409, f"Job {what} {data.get('state')}{reason}")


# --- the code snapshot --------------------------------------------------------------------


def default_job_name(source: str | os.PathLike) -> str:
    """A valid job name from a file's or folder's name: "Train_MNIST v2.py" -> "train-mnist-v2"."""
    path = Path(os.path.abspath(os.path.expanduser(source)))
    stem = path.stem if path.is_file() or path.suffix in (".py", ".ipynb") else path.name
    name = re.sub(r"[^a-z0-9]+", "-", stem.lower()).strip("-")[:32].strip("-")
    return name or "job"


def _folder_files(root: Path) -> tuple[list[str], list[tuple[str, int]]]:
    """(folders, [(file, size)]) under root, relative POSIX paths, sorted; skipped folders
    and symbolic links (which may point out of the folder) are left out."""
    folders: list[str] = []
    files: list[tuple[str, int]] = []
    for top, dirs, filenames in os.walk(root):
        base = Path(top)
        keep = []
        for d in sorted(dirs):
            if d in SKIPPED_FOLDERS or (base / d).is_symlink():
                continue
            keep.append(d)
            folders.append((base / d).relative_to(root).as_posix())
        dirs[:] = keep
        for f in sorted(filenames):
            st = os.lstat(base / f)
            if stat.S_ISREG(st.st_mode):  # no links, sockets, fifos
                files.append(((base / f).relative_to(root).as_posix(), st.st_size))
    return sorted(folders), sorted(files)


def _too_big(root: Path, files: list[tuple[str, int]], total: int) -> JobSourceError:
    biggest = sorted(files, key=lambda f: -f[1])[:3]
    listed = ", ".join(f"{name} ({size / 1024**2:.1f} MiB)" for name, size in biggest)
    return JobSourceError(
        f"The folder {root} holds {total / 1024**2:.1f} MiB of files, over the "
        f"{MAX_SOURCE_BYTES // 1024**2} MiB a job's code may have (biggest: {listed}). "
        "Keep data and models out of the code folder: give them to the job as inputs."
    )


def _add_file(tar: tarfile.TarFile, path: Path, name: str):
    info = tar.gettarinfo(str(path), arcname=name)
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    with open(path, "rb") as f:
        tar.addfile(info, f)


def build_archive(
    source: str | os.PathLike, kind: str | None = None
) -> tuple[str, str | None, bytes]:
    """(kind, entry, .tar.gz bytes) of a job's code.

    A .py file (kind "file") or a .ipynb (kind "notebook"): the archive holds that file
    alone and entry is its name. A folder (kind "folder"): the whole folder without .git,
    __pycache__, .ipynb_checkpoints and symbolic links; entry None. `kind` overrides what
    the name suggests (e.g. "file" for a shell script run with a command of its own).
    JobSourceError when the source does not exist, does not fit the kind or is too big.
    """
    path = Path(os.path.expanduser(source))
    if not path.exists():
        raise JobSourceError(f"No such file or folder: {path}")
    if kind is None:
        if path.is_dir():
            kind = "folder"
        elif path.suffix == ".ipynb":
            kind = "notebook"
        elif path.suffix == ".py":
            kind = "file"
        else:
            raise JobSourceError(
                f"{path} is neither a .py file, a notebook (.ipynb) nor a folder: give "
                "kind='file' and a command to run it."
            )
    if kind not in ("file", "notebook", "folder"):
        raise JobSourceError(f"Unknown source kind {kind!r}: use file, notebook or folder.")
    if (kind == "folder") != path.is_dir():
        raise JobSourceError(
            f"{path} is {'a folder' if path.is_dir() else 'a file'}: "
            f"kind {kind!r} needs {'a folder' if kind == 'folder' else 'a file'}."
        )
    buffer = io.BytesIO()
    if kind == "folder":
        folders, files = _folder_files(path)
        total = sum(size for _, size in files)
        if total > MAX_SOURCE_BYTES:
            raise _too_big(path, files, total)
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            for name in folders:
                info = tar.gettarinfo(str(path / name), arcname=name)
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                tar.addfile(info)
            for name, _ in files:
                _add_file(tar, path / name, name)
        return kind, None, buffer.getvalue()
    size = path.stat().st_size
    if size > MAX_SOURCE_BYTES:
        raise JobSourceError(
            f"{path} has {size / 1024**2:.1f} MiB, over the {MAX_SOURCE_BYTES // 1024**2} MiB "
            "a job's code may have."
        )
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        _add_file(tar, path.resolve(), path.name)
    return kind, path.name, buffer.getvalue()


def parse_value(text: str) -> Any:
    """A hyperparameter's value from the command line: JSON when it parses (0.1, 3, true,
    null, [1, 2]), else the text itself ("adam")."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_assignments(items: Iterable[str], what: str = "hyperparameter") -> dict[str, str]:
    """{"lr": "0.1"} from ["lr=0.1"] (split at the first '='); ValueError naming a malformed
    item (no '=' or no name)."""
    result: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"{what} {item!r} is not NAME=VALUE (for example lr=0.1)")
        result[name.strip()] = value
    return result


def parse_hyperparameters(items: Iterable[str]) -> dict[str, Any]:
    """{"lr": 0.1, "optimizer": "adam"} from ["lr=0.1", "optimizer=adam"]: ValueError on
    an item that is not NAME=VALUE."""
    return {k: parse_value(v) for k, v in parse_assignments(items).items()}


def parse_metrics(items: Iterable[str]) -> list[dict]:
    """[{"name": "loss", "regex": "loss=([0-9.]+)"}] from ["loss=loss=([0-9.]+)"] (the name
    ends at the first '='); ValueError on a malformed item or a regex that does not compile."""
    metrics = []
    for name, regex in parse_assignments(items, "metric").items():
        try:
            re.compile(regex)
        except re.error as e:
            problem = f"metric {name!r}: {regex!r} is not a regular expression ({e})"
            raise ValueError(problem) from None
        metrics.append({"name": name, "regex": regex})
    return metrics


# --- jobs ---------------------------------------------------------------------------------


class Job:
    """One version of a job, as last seen: .owner, .name, .version, .data (its JSON).

    Its calls act on that version: refresh(), logs(), read_logs(), wait(), metrics(),
    files(), download(), stop(), rerun() (a new version, returned as a new Job); delete()
    removes the whole job, delete_version() only this version.
    """

    def __init__(self, client: AsyncWorkbenchClient, data: dict):
        self._client = client
        self.data = data
        self.owner: str = data["owner"]
        self.name: str = data["name"]
        self.version: int = int(data["version"])

    def __repr__(self) -> str:
        return f"<Job {self.owner}/{self.name} version {self.version} {self.state}>"

    @property
    def state(self) -> str:
        """queued, starting, running, succeeded, failed, stopping or stopped (as last seen)."""
        return self.data.get("state", "")

    @property
    def reason(self) -> str:
        """Why it waits, failed or was stopped (as last seen); "" when there is nothing to say."""
        return self.data.get("reason") or ""

    @property
    def done(self) -> bool:
        """Whether the version had ended when last seen."""
        return self.state in FINAL_STATES

    @property
    def spec(self) -> dict:
        return self.data.get("spec") or {}

    @property
    def _path(self) -> str:
        return f"{_job_path(self.owner, self.name)}/versions/{self.version}"

    async def refresh(self) -> Job:
        """Read the version again; returns the job itself."""
        self.data = await self._client.api("GET", self._path)
        return self

    async def read_logs(self, node: int = 0) -> str:
        """The log of node `node` so far, as one text."""
        return await self._client.api_text("GET", f"{self._path}/logs", params={"node": node})

    async def logs(self, node: int = 0, *, follow: bool = False) -> AsyncIterator[str]:
        """The lines of node `node`'s log (without their line ends).

        follow=False: the lines so far. follow=True: the lines so far, then each new one as
        it is written, until the version has ended; from submission on, so a queued job
        shows the platform's `[workbench] ` lines (its queue position) until it starts. A
        stream that breaks off (the hub restarting) is opened again, without repeating lines.
        """
        if not follow:
            for line in (await self.read_logs(node)).splitlines():
                yield line
            return
        path = f"{self._path}/logs"
        seen = 0
        retries = 0
        while True:
            count = 0
            try:
                async with self._client.api_stream(
                    "GET", path, params={"node": node, "follow": 1}
                ) as resp:
                    async for line in resp.aiter_lines():
                        count += 1
                        if count > seen:
                            seen = count
                            retries = 0
                            yield line
            except WorkbenchError as e:
                if e.status != 0 or retries >= FOLLOW_RETRIES:
                    raise
            else:
                # the stream ends when the version has; else it was cut short
                await self.refresh()
                if self.done or retries >= FOLLOW_RETRIES:
                    return
            retries += 1
            await asyncio.sleep(min(2**retries, 30))

    async def wait(
        self,
        timeout: float | None = None,  # noqa: ASYNC109 - seconds, as Popen.wait(timeout)
        poll: float = 2.0,
        *,
        check: bool = False,
    ) -> dict:
        """Wait until the version has ended; its final JSON (look at ["state"]).

        check=True: raise JobFailed (a WorkbenchError) unless it succeeded. TimeoutError
        after `timeout` seconds (None: no limit).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            await self.refresh()
            if self.done:
                if check and self.state != "succeeded":
                    raise JobFailed(self.data)
                return self.data
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(
                    f"Job {self.name} version {self.version} is still {self.state} "
                    f"after {timeout:g} s."
                )
            delay = poll if deadline is None else min(poll, max(deadline - time.monotonic(), 0))
            await asyncio.sleep(delay)

    async def metrics(self) -> dict[str, list[dict]]:
        """{metric: [{"step", "value", "time", "source"}, ...]} of the version so far."""
        return await self._client.api("GET", f"{self._path}/metrics")

    async def files(self, path: str = "output") -> list[dict]:
        """[{"path", "size", "type"}] under one of the version's folders: output,
        checkpoints, code or logs (or a folder inside them)."""
        return await self._client.api("GET", f"{self._path}/files", params={"path": path})

    async def download(self, path: str, to: str | os.PathLike = ".") -> Path:
        """Download a file of the version ("output/model.pt") or a whole folder ("output")
        to `to`: a file or folder path, or an existing folder to put it in. The local path.
        Each file is written as it comes and appears only once whole."""
        path = path.strip("/")
        listing = await self.files(path)
        target = await asyncio.to_thread(_local_target, to, path)
        if [(f["path"], f["type"]) for f in listing] == [(path, "file")]:
            await self._download_file(path, target)
            return target
        for entry in listing:
            rel = PurePosixPath(entry["path"]).relative_to(path)
            if entry["type"] != "file" or ".." in rel.parts or rel.is_absolute():
                continue
            await self._download_file(entry["path"], target.joinpath(*rel.parts))
        await asyncio.to_thread(target.mkdir, parents=True, exist_ok=True)
        return target

    async def _download_file(self, path: str, target: Path) -> None:
        quoted = "/".join(segment(part) for part in path.split("/"))
        await asyncio.to_thread(target.parent.mkdir, parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.part")
        f = await asyncio.to_thread(partial.open, "wb")
        try:
            async with self._client.api_stream(
                "GET", f"{self._path}/files/{quoted}", limit=self._client.timeout
            ) as resp:
                async for chunk in resp.aiter_bytes():
                    await asyncio.to_thread(f.write, chunk)
            await asyncio.to_thread(f.close)
            await asyncio.to_thread(os.replace, partial, target)
        finally:
            f.close()
            await asyncio.to_thread(partial.unlink, missing_ok=True)

    async def stop(self) -> dict:
        """Stop the version (state stopping, then stopped); its JSON."""
        self.data = await self._client.api("POST", f"{self._path}/stop")
        return self.data

    async def rerun(self, **changes) -> Job:
        """Run the job again as a new version, with this version's code and any of submit()'s
        settings changed (flavor=, nodes=, hyperparameters= replaces them all, ...)."""
        return await _rerun(self._client, self.owner, self.name, changes)

    async def versions(self) -> list[dict]:
        """Every version's JSON, the first first."""
        job = await self._client.api("GET", _job_path(self.owner, self.name))
        return sorted(job.get("versions") or [], key=lambda v: v["version"])

    async def delete_version(self) -> None:
        """Delete this version (stopped first if it runs) and its files."""
        await self._client.api("DELETE", self._path)

    async def delete(self) -> None:
        """Delete the whole job: every version (running ones stopped) and their files."""
        await self._client.api("DELETE", _job_path(self.owner, self.name))


def _local_target(to: str | os.PathLike, path: str) -> Path:
    """Where download() writes `path`: `to`, or path's last part inside `to` if a folder."""
    target = Path(os.path.expanduser(to))
    return target / Path(path).name if target.is_dir() else target


def _job_path(owner: str, name: str) -> str:
    return f"jobs/{segment(owner)}/{segment(name)}"


def _version_of(answer: dict) -> dict | None:
    """The version JSON in an answer: the answer itself, or a job's latest version."""
    if isinstance(answer.get("version"), int):
        return answer
    versions = answer.get("versions") or []
    latest = answer.get("latest")
    for version in versions:
        if version.get("version") == latest:
            return version
    return max(versions, key=lambda v: v["version"]) if versions else None


async def _job(client: AsyncWorkbenchClient, owner: str, name: str, answer: dict) -> Job:
    data = _version_of(answer)
    if data is None:  # a job's JSON without its versions: ask for the latest
        latest = answer.get("latest") or 1
        data = await client.api("GET", f"{_job_path(owner, name)}/versions/{latest}")
    return Job(client, data)


async def _rerun(client: AsyncWorkbenchClient, owner: str, name: str, changes: dict) -> Job:
    body = {key: value for key, value in changes.items() if value is not None}
    answer = await client.api("POST", f"{_job_path(owner, name)}/versions", body)
    return await _job(client, owner, name, answer)


class Jobs(Namespace):
    """Training jobs: the user's own and those of their workspaces (by owner)."""

    async def submit(
        self,
        source: str | os.PathLike,
        *,
        name: str | None = None,
        command: str | None = None,
        runtime: str = "plain",
        image: str | None = None,
        flavor: str | None = None,
        nodes: int = 1,
        processes_per_node: int = 1,
        hyperparameters: dict | None = None,
        inputs: dict | None = None,
        metrics: list[dict] | None = None,
        max_run_seconds: float = 0,
        max_restarts: int = 0,
        description: str = "",
        workspace: str | None = None,
        kind: str | None = None,
    ) -> Job:
        """Run local code as a new job (its version 1); the Job, usually still queued.

        source: a .py file (run as `python <file>` unless `command` says otherwise), a
        notebook (.ipynb, run cell by cell, hyperparameters injected after the cell tagged
        "parameters") or a folder (`command` required, e.g. "python -m trainer"); `kind`
        ("file", "notebook", "folder") overrides what the name suggests. Files and notebooks
        are sent alone, folders whole (up to 64 MiB, without .git, caches and symbolic links).
        name: default the file's or folder's name made valid ("Train MNIST.py": train-mnist).
        runtime: plain, pytorch (torchrun), tensorflow (TF_CONFIG) or mindspore.
        image, flavor: inside an instance, default the instance's own; elsewhere the
        platform's defaults. hyperparameters: appended to the command as `--name value` and
        given as $WORKBENCH_HYPERPARAMETERS. inputs: {"data": {"instance": "nb1", "path":
        "datasets/mnist"}}. metrics: [{"name": "loss", "regex": "loss=([0-9.]+)"}] read from
        the log. max_run_seconds, max_restarts: 0 for no limit, no restarts.
        """
        kind, entry, archive = await asyncio.to_thread(build_archive, source, kind)
        if kind == "folder" and not command:
            raise JobSourceError(
                f"A folder runs with a command: give command= (for example 'python train.py' "
                f"for {os.path.join(os.fspath(source), 'train.py')})."
            )
        if kind == "notebook" and command:
            raise JobSourceError(
                "A notebook runs cell by cell: it takes no command (give hyperparameters "
                "to change its parameters)."
            )
        name = name or default_job_name(source)
        problem = names.job_name_problem(name)
        if problem:
            raise JobSourceError(problem)
        source_body: dict = {"kind": kind, "archive": base64.b64encode(archive).decode()}
        if entry is not None:
            source_body["entry"] = entry
        body: dict = {
            "name": name,
            "description": description,
            "source": source_body,
            "runtime": runtime,
            "nodes": nodes,
            "processes_per_node": processes_per_node,
            "hyperparameters": dict(hyperparameters or {}),
            "inputs": dict(inputs or {}),
            "metrics": list(metrics or []),
            "max_run_seconds": max_run_seconds,
            "max_restarts": max_restarts,
        }
        for key, value in (
            ("command", command),
            ("image", image),
            ("flavor", flavor),
            ("workspace", workspace),
        ):
            if value is not None:
                body[key] = value
        # inside an instance, the job runs on its image and flavor unless told otherwise
        instance = os.environ.get("JUPYTERHUB_SERVER_NAME")
        if instance and (image is None or flavor is None):
            body["instance"] = instance
        answer = await self._client.api("POST", "jobs", body)
        owner = answer.get("owner") or await self._client.user_name()
        return await _job(self._client, owner, name, answer)

    async def list(  # noqa: A002 - the API's word
        self, workspace: str | None = None, *, all: bool = False
    ) -> list[dict]:
        """The jobs the user sees (own, and their workspaces'), each with its latest state;
        only those of `workspace` if given; all=True: everyone's (administrators)."""
        params = {}
        if workspace:
            params["workspace"] = workspace
        if all:
            params["all"] = "1"
        return await self._client.api("GET", "jobs", params=params or None)

    async def _owner(self, owner: str | None) -> str:
        return await self._client.user_name(owner)

    async def get(self, name: str, owner: str | None = None, version: int | None = None) -> Job:
        """A job's version (default: the latest) as a Job; owner default: the user."""
        owner = await self._owner(owner)
        if version is not None:
            data = await self._client.api("GET", f"{_job_path(owner, name)}/versions/{version}")
            return Job(self._client, data)
        answer = await self._client.api("GET", _job_path(owner, name))
        return await _job(self._client, owner, name, answer)

    async def describe(self, name: str, owner: str | None = None) -> dict:
        """The job's JSON with every version's."""
        return await self._client.api("GET", _job_path(await self._owner(owner), name))

    async def update(self, name: str, owner: str | None = None, *, description: str) -> dict:
        """Change a job's description."""
        path = _job_path(await self._owner(owner), name)
        return await self._client.api("PATCH", path, {"description": description})

    async def rerun(self, name: str, owner: str | None = None, **changes) -> Job:
        """A new version of a job with the last version's code (see Job.rerun)."""
        return await _rerun(self._client, await self._owner(owner), name, changes)

    async def stop(self, name: str, version: int | None = None, owner: str | None = None) -> dict:
        """Stop a version (default: the latest); its JSON."""
        return await (await self.get(name, owner, version)).stop()

    async def delete(self, name: str, version: int | None = None, owner: str | None = None):
        """Delete a job with all its versions, or only `version`."""
        owner = await self._owner(owner)
        path = _job_path(owner, name)
        if version is not None:
            path = f"{path}/versions/{version}"
        await self._client.api("DELETE", path)
