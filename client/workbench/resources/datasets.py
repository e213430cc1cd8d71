"""Datasets: create from local files, label, review, publish versions and use them locally.

    ds = await client.datasets.create("pets", "image_classification", labels=["cat", "dog"],
                                      folder="~/pets")
    async for sample in ds.samples(status="unlabelled"):
        await ds.annotate(sample["id"], "cat")
    version = await ds.publish(description="first cut", train_ratio=0.8)
    path = await version.local_path()      # ~/.cache/workbench/datasets/<owner>/pets/1/
    await ds.export(format="coco", to="pets-coco.zip")

Local folders are sent as tar archives, each below the platform's upload limit, with progress
on stderr for long uploads. With the sync client (and `import workbench`) the same calls block,
and ds.samples() is a plain iterator.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import mimetypes
import os
import re
import shutil
import stat
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import httpx

from ..errors import WorkbenchError
from . import Namespace, drop_none, segment

if TYPE_CHECKING:
    from ..client import AsyncWorkbenchClient

TYPES = ("image_classification", "object_detection", "text_classification", "named_entities")
FORMATS = ("modelarts", "coco", "voc", "yolo", "csv", "jsonl")
# the platform API takes request bodies up to 100 MiB (tornado's default): each archive a
# folder is sent in stays well below that
UPLOAD_CHUNK_BYTES = 64 * 1024**2
# uploads at least this big show their progress on stderr (progress=None)
PROGRESS_FROM_BYTES = 16 * 1024**2
# what a folder's archives leave out: version control, caches, notebook autosaves
SKIPPED_FOLDERS = frozenset({".git", "__pycache__", ".ipynb_checkpoints"})
# names of archives sent as they are
ARCHIVE_TYPES = {
    ".zip": "application/zip",
    ".tar": "application/x-tar",
    ".tar.gz": "application/gzip",
    ".tgz": "application/gzip",
}
# the most samples one bulk annotation call (PATCH .../samples) takes
BULK_ANNOTATIONS = 1000
# an auto-labelling run in one of these states has ended
FINAL_RUN_STATES = frozenset({"done", "stopped", "failed"})
# the file in a cached version's folder that says which manifest it holds
CACHE_STAMP = ".workbench-version.json"

Progress = Callable[[int, int], object]


class DatasetInputError(WorkbenchError, ValueError):
    """Local input that cannot be sent (no such file or folder, an unknown type or format, a
    file over the upload limit); raised before any request."""

    def __init__(self, message: str):
        super().__init__(400, message)


class AutoLabelFailed(WorkbenchError):
    """wait(check=True) saw an auto-labelling run fail or be stopped; .data is its JSON."""

    def __init__(self, data: dict):
        self.data = data
        reason = f": {data['reason']}" if data.get("reason") else ""
        super().__init__(409, f"Auto-labelling run {data.get('id')} {data.get('state')}{reason}")


def dataset_path(owner: str, name: str) -> str:
    return f"datasets/{segment(owner)}/{segment(name)}"


def split_name(name: str, owner: str | None = None) -> tuple[str | None, str]:
    """(owner, name) of "name" or "owner/name" (owner as given when the name has none)."""
    first, sep, rest = str(name).partition("/")
    if sep:
        return first, rest
    return owner, first


def cache_root() -> Path:
    """Where local_path() keeps versions: $XDG_CACHE_HOME (default ~/.cache)/workbench/datasets."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "workbench" / "datasets"


def label_set(labels: Iterable | None) -> list[dict]:
    """[{"name": ...}, ...] from names or label dicts (colors and keys left to the platform)."""
    out = []
    for label in labels or []:
        if isinstance(label, str):
            out.append({"name": label})
        elif isinstance(label, dict) and "name" in label:
            out.append(dict(label))
        else:
            raise DatasetInputError(
                f"A label is a name or {{'name': ..., 'color': ..., 'key': ...}}, not {label!r}."
            )
    return out


def annotation_list(annotations) -> list[dict]:
    """A sample's annotations from a label name ("cat"), names (["cat", "dog"]) or the
    annotation dicts themselves ([{"label": "cat", "box": [...]}])."""
    if annotations is None:
        return []
    if isinstance(annotations, str):
        return [{"label": annotations}]
    if isinstance(annotations, dict):
        return [dict(annotations)]
    return [{"label": a} if isinstance(a, str) else dict(a) for a in annotations]


def sample_selection(samples) -> dict | None:
    """A task's samples: None (the platform's default), "unlabelled" (a status), ids, or
    the API's dict ({"status": ...} or {"ids": [...]})."""
    if samples is None or isinstance(samples, dict):
        return samples
    if isinstance(samples, str):
        return {"status": samples}
    return {"ids": [int(i) for i in samples]}


def _archive_type(path: Path) -> str | None:
    name = path.name.lower()
    for suffix, media_type in ARCHIVE_TYPES.items():
        if name.endswith(suffix):
            return media_type
    return None


def _no_changes() -> dict:
    return {"added": 0, "replaced": 0, "unchanged": 0, "samples": 0}


def _mib(size: float) -> str:
    return f"{size / 1024**2:.1f} MiB"


def _expand(path) -> Path:
    return Path(os.path.expanduser(path))


def _archive_file(path: Path) -> tuple[str, int] | None:
    """(media type, size) of an archive file (.zip, .tar, .tar.gz) sent as it is; None for
    anything else."""
    media_type = _archive_type(path)
    if media_type and path.is_file():
        return media_type, path.stat().st_size
    return None


# --- local files to archives ----------------------------------------------------------------


def folder_files(root: Path) -> list[tuple[str, Path, int]]:
    """[(key, path, size)] of the regular files under root, keys relative POSIX paths in sorted
    order; SKIPPED_FOLDERS, hidden files and symbolic links (which may point out of the
    folder) are left out."""
    files = []
    for top, dirs, filenames in os.walk(root):
        base = Path(top)
        dirs[:] = sorted(
            d
            for d in dirs
            if d not in SKIPPED_FOLDERS and not d.startswith(".") and not (base / d).is_symlink()
        )
        for f in filenames:
            if f.startswith("."):
                continue
            st = os.lstat(base / f)
            if stat.S_ISREG(st.st_mode):  # no links, sockets, fifos
                files.append(((base / f).relative_to(root).as_posix(), base / f, st.st_size))
    return sorted(files)


def local_files(sources) -> list[tuple[str, Path, int]]:
    """[(key, path, size)] of a folder, one file, a list of files and folders ({key: path}
    names the keys): a folder's files keep their paths inside it, a file its name.
    DatasetInputError for what does not exist, or two files under one key."""
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    pairs = list(sources.items()) if isinstance(sources, dict) else [(None, s) for s in sources]
    files: dict[str, tuple[str, Path, int]] = {}
    for key, source in pairs:
        path = Path(os.path.expanduser(source))
        if path.is_dir():
            found = folder_files(path)
            if key:
                found = [(f"{key.strip('/')}/{k}", p, s) for k, p, s in found]
        elif path.is_file():
            found = [(key or path.name, path, path.stat().st_size)]
        else:
            raise DatasetInputError(f"No such file or folder: {path}")
        for entry in found:
            if entry[0] in files:
                raise DatasetInputError(
                    f"Two files would be sample {entry[0]!r}: {files[entry[0]][1]} and "
                    f"{entry[1]}. Give files as {{key: path}} to name them apart."
                )
            files[entry[0]] = entry
    return sorted(files.values())


def _tar_entry(key: str, length: int) -> int:
    """Bytes one file takes in a tar: a header and the content padded to 512 bytes (and a PAX
    header before it for a long or non-ASCII key)."""
    size = 512 + -(-length // 512) * 512
    if len(key.encode()) > 100 or not key.isascii():
        size += 512 + -(-len(key.encode()) * 2 // 512) * 512
    return size


def _tar_total(entries: int) -> int:
    """A tar's size from its entries' bytes: the end marker, padded to tar's 10240-byte records."""
    return -(-(entries + 1024) // tarfile.RECORDSIZE) * tarfile.RECORDSIZE


def tar_size(files: Iterable[tuple[str, Path, int]]) -> int:
    """The size of write_tar()'s archive of files (key, path, size)."""
    return _tar_total(sum(_tar_entry(key, length) for key, _, length in files))


def chunk_files(
    files: list[tuple[str, Path, int]], limit: int = UPLOAD_CHUNK_BYTES
) -> list[list[tuple[str, Path, int]]]:
    """The files in groups whose tar archives have at most `limit` bytes each, in order;
    DatasetInputError naming a file that alone is over it."""
    chunks: list[list[tuple[str, Path, int]]] = []
    current: list[tuple[str, Path, int]] = []
    used = 0
    for entry in files:
        cost = _tar_entry(entry[0], entry[2])
        if _tar_total(cost) > limit:
            raise DatasetInputError(
                f"{entry[1]} has {_mib(entry[2])}, over the {_mib(limit)} one upload may "
                "hold: a sample must be smaller."
            )
        if current and _tar_total(used + cost) > limit:
            chunks.append(current)
            current, used = [], 0
        current.append(entry)
        used += cost
    if current:
        chunks.append(current)
    return chunks


def write_tar(files: list[tuple[str, Path, int]], target) -> int:
    """Write files (key, path, size) into an uncompressed tar at target (a file object);
    its size. Owners, modes and times are left out: only the content counts."""
    with tarfile.open(fileobj=target, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for key, path, _ in files:
            info = tarfile.TarInfo(key)
            with open(path, "rb") as f:
                info.size = os.fstat(f.fileno()).st_size
                info.mode = 0o644
                tar.addfile(info, f)
    target.flush()
    return target.tell()


def _temporary_tar(files: list[tuple[str, Path, int]]) -> tuple[Any, int]:
    f = tempfile.TemporaryFile(prefix="workbench-upload-", suffix=".tar")
    try:
        size = write_tar(files, f)
    except BaseException:
        f.close()
        raise
    f.seek(0)
    return f, size


# --- progress --------------------------------------------------------------------------------


class ProgressLine:
    """An upload's progress on stderr: one line each time another 10% is sent, and at the end."""

    def __init__(self, what: str, stream=None):
        self.what = what
        self.stream = stream
        self.shown = -1

    def __call__(self, done: int, total: int):
        tenth = 10 if not total else min(10, done * 10 // total)
        if tenth == self.shown:
            return
        self.shown = tenth
        stream = self.stream or sys.stderr
        percent = 100 if not total else done * 100 // total
        print(f"{self.what}: {percent:3d}% ({_mib(done)} of {_mib(total)})", file=stream)
        stream.flush()


def _progress(progress, what: str, total: int) -> Progress | None:
    """The callback of an upload: the caller's, none (False), or stderr lines for long ones."""
    if progress is False:
        return None
    if callable(progress):
        return progress
    if progress is True or total >= PROGRESS_FROM_BYTES:
        return ProgressLine(what)
    return None


# --- requests the JSON calls do not cover ----------------------------------------------------


async def _send(
    client: AsyncWorkbenchClient,
    method: str,
    path: str,
    source,
    size: int,
    content_type: str,
    *,
    params: dict | None = None,
    on_sent: Callable[[int], object] | None = None,
) -> Any:
    """Send `size` bytes read from the file object `source` as a request body; the JSON answer.
    on_sent(bytes so far) is called as the body goes."""
    url = f"{client.api_url}/{path.lstrip('/')}"
    block = 1024**2

    async def body() -> AsyncIterator[bytes]:
        sent = 0
        while data := await asyncio.to_thread(source.read, block):
            sent += len(data)
            yield data
            if on_sent is not None:
                on_sent(sent)

    headers = client._headers({"Content-Type": content_type, "Content-Length": str(size)})
    try:
        resp = await client.http.request(
            method,
            url,
            content=body(),
            params=params,
            headers=headers,
            timeout=client._timeout(None),
        )
    except httpx.TransportError as e:
        error = client.no_answer(url, e)
        if size > UPLOAD_CHUNK_BYTES:
            error.message += f" A body of {_mib(size)} may be over the platform's upload limit."
        raise error from None
    if resp.status_code >= 300:
        raise client.error(method, url, resp)
    if not resp.content:
        return None
    try:
        return resp.json()
    except ValueError:
        raise WorkbenchError(
            502, f"{client._where(url)} answered with something other than JSON."
        ) from None


async def _send_file(
    client: AsyncWorkbenchClient,
    path: str,
    file: Path,
    content_type: str,
    *,
    params: dict | None = None,
    on_sent: Callable[[int], object] | None = None,
) -> Any:
    f = await asyncio.to_thread(open, file, "rb")
    try:
        size = (await asyncio.to_thread(os.fstat, f.fileno())).st_size
        return await _send(
            client, "POST", path, f, size, content_type, params=params, on_sent=on_sent
        )
    finally:
        await asyncio.to_thread(f.close)


def _filename(disposition: str) -> str | None:
    """The file name of a Content-Disposition header, if any (no folders)."""
    match = re.search(r"filename\*=UTF-8''([^;]+)", disposition, re.I) or re.search(
        r'filename="?([^";]+)"?', disposition, re.I
    )
    if not match:
        return None
    from urllib.parse import unquote

    name = os.path.basename(unquote(match.group(1)).strip())
    return name or None


async def _download(
    client: AsyncWorkbenchClient, method: str, path: str, body: Any, to, default_name: str
) -> Path:
    """Write the answer's body to `to` (a file, or an existing folder to put it in under the
    answer's file name); the path. The file appears only once whole."""
    url = f"{client.api_url}/{path.lstrip('/')}"
    headers = client._headers({"Content-Type": "application/json"})
    try:
        async with client.http.stream(
            method,
            url,
            content=json.dumps(body),
            headers=headers,
            timeout=client._timeout(None),
        ) as resp:
            if resp.status_code >= 300:
                await resp.aread()
                raise client.error(method, url, resp)
            name = _filename(resp.headers.get("content-disposition", "")) or default_name
            target = await asyncio.to_thread(_download_target, to, name)
            partial = target.with_name(f".{target.name}.part")
            f = await asyncio.to_thread(partial.open, "wb")
            try:
                async for chunk in resp.aiter_bytes():
                    await asyncio.to_thread(f.write, chunk)
                await asyncio.to_thread(f.close)
                await asyncio.to_thread(os.replace, partial, target)
            finally:
                f.close()
                await asyncio.to_thread(partial.unlink, missing_ok=True)
    except httpx.TransportError as e:
        raise client.no_answer(url, e) from None
    return target


def _download_target(to, name: str) -> Path:
    """`to`, or the file `name` inside it when it is a folder (default the current one);
    its folder made."""
    target = _expand(to) if to is not None else Path(name)
    if target.is_dir():
        target = target / name
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


# --- the local copy of a version --------------------------------------------------------------


def _safe_members(archive: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    """The archive's members, refused if one would land outside the folder or is a link."""
    members = []
    for info in archive.infolist():
        name = PurePosixPath(info.filename)
        if name.is_absolute() or ".." in name.parts or "\\" in info.filename:
            raise WorkbenchError(502, f"The export holds a path outside its folder: {name}")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise WorkbenchError(502, f"The export holds a symbolic link: {name}")
        members.append(info)
    return members


def make_read_only(root: Path) -> None:
    """Files a-w (r--r--r--), folders r-x: the version is never changed by mistake."""
    for top, dirs, files in os.walk(root):
        for f in files:
            os.chmod(os.path.join(top, f), 0o444)
        for d in dirs:
            os.chmod(os.path.join(top, d), 0o555)
    os.chmod(root, 0o555)


def remove_tree(root: Path) -> None:
    """Remove a folder make_read_only() left, making it writable first."""
    if not root.exists():
        return
    for top, dirs, _ in os.walk(root):
        os.chmod(top, 0o755)
        for d in dirs:
            with contextlib.suppress(OSError):
                os.chmod(os.path.join(top, d), 0o755)
    shutil.rmtree(root)


def unpack_version(zip_path: Path, target: Path, stamp: dict) -> Path:
    """Unzip an export into target (replacing what is there) with a stamp of the version it is,
    read-only; the folder appears at target whole or not at all."""
    work = target.with_name(f".{target.name}.unpacking-{os.getpid()}")
    remove_tree(work)
    work.mkdir(parents=True)
    try:
        with zipfile.ZipFile(zip_path) as archive:
            archive.extractall(work, members=_safe_members(archive))
        (work / CACHE_STAMP).write_text(json.dumps(stamp))
        make_read_only(work)
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        if target.exists():
            os.replace(target, old)
        os.replace(work, target)
        remove_tree(old)
    except BaseException:
        remove_tree(work)
        raise
    return target


def read_stamp(folder: Path) -> dict | None:
    try:
        return json.loads((folder / CACHE_STAMP).read_text())
    except (OSError, ValueError):
        return None


# --- the objects -----------------------------------------------------------------------------


class DatasetVersion:
    """A published version as last seen: .owner, .name (the dataset's), .version, .data.

    manifest() reads its samples, diff() compares it with another version, local_path()
    keeps a read-only copy on this machine, export() writes it in a format, delete() removes it.
    """

    def __init__(self, client: AsyncWorkbenchClient, owner: str, name: str, data: dict):
        self._client = client
        self.owner = owner
        self.name = name
        self.data = data
        self.version: int = int(data["version"])

    def __repr__(self) -> str:
        return (
            f"<DatasetVersion {self.owner}/{self.name} version {self.version} {self.state}, "
            f"{self.data.get('samples', 0)} samples>"
        )

    @property
    def _path(self) -> str:
        return f"{dataset_path(self.owner, self.name)}/versions/{self.version}"

    @property
    def state(self) -> str:
        """pending, ready or failed (as last seen)."""
        return self.data.get("state", "")

    @property
    def reason(self) -> str:
        return self.data.get("reason") or ""

    @property
    def labels(self) -> list[dict]:
        """The label set when it was published."""
        return list(self.data.get("labels") or [])

    async def refresh(self) -> DatasetVersion:
        """Read the version again; returns the version itself."""
        self.data = await self._client.api("GET", self._path)
        return self

    async def wait(
        self,
        timeout: float | None = 600,  # noqa: ASYNC109 - seconds, as Popen.wait(timeout)
        poll: float = 0.5,
    ) -> DatasetVersion:
        """Wait until the version is ready (WorkbenchError if it failed, TimeoutError after
        `timeout` seconds)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.state not in ("ready", "failed"):
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(
                    f"Version {self.version} of {self.owner}/{self.name} is still {self.state} "
                    f"after {timeout:g} s."
                )
            await asyncio.sleep(poll)
            await self.refresh()
        if self.state == "failed":
            raise WorkbenchError(
                409, f"Version {self.version} of {self.owner}/{self.name} failed: {self.reason}"
            )
        return self

    async def manifest(self) -> list[dict]:
        """Its samples as ModelArts manifest lines ({"source", "annotation", ..., "split"})."""
        text = await self._client.api_text("GET", f"{self._path}/manifest")
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    async def diff(self, other) -> dict:
        """What changed from `other` (a version number or DatasetVersion) to this version:
        {"added": [keys], "removed": [keys], "relabelled": [{"key", "before", "after"}]}."""
        against = int(getattr(other, "version", other))
        return await self._client.api("GET", f"{self._path}/diff", params={"against": against})

    async def export(self, format: str = "modelarts", to=None) -> Path:  # noqa: A002
        """Write the version as a zip in `format` (modelarts, coco, voc, yolo, csv, jsonl) to
        `to` (a file, or a folder to put it in; default the current folder); its path."""
        return await _export(self._client, self.owner, self.name, format, self.version, to)

    def cache_path(self, cache_dir=None) -> Path:
        """Where local_path() keeps this version: <cache>/<owner>/<name>/<version>."""
        root = _expand(cache_dir) if cache_dir else cache_root()
        return root / self.owner / self.name / str(self.version)

    async def local_path(self, cache_dir=None, *, refresh: bool = False) -> Path:
        """A read-only local copy of the version in ModelArts manifest form (manifest and
        data files), downloaded on first use into ~/.cache/workbench/datasets/<owner>/<name>/
        <version>/ (cache_dir: another root) and reused after, while its manifest is the
        same. refresh: download it again."""
        target = self.cache_path(cache_dir)
        stamp = await asyncio.to_thread(read_stamp, target)
        if stamp is not None and not refresh:
            try:
                await self.refresh()
            except WorkbenchError as e:
                if e.status == 0:  # offline: the copy is what there is
                    return target
                raise
            if stamp.get("manifest_sha256") == self.data.get("manifest_sha256"):
                return target
        await self.wait()
        await asyncio.to_thread(target.parent.mkdir, parents=True, exist_ok=True)
        zip_path = target.with_name(f".{target.name}.download-{os.getpid()}.zip")
        try:
            await _export(self._client, self.owner, self.name, "modelarts", self.version, zip_path)
            stamp = {
                "owner": self.owner,
                "name": self.name,
                "version": self.version,
                "manifest_sha256": self.data.get("manifest_sha256"),
            }
            await asyncio.to_thread(unpack_version, zip_path, target, stamp)
        finally:
            await asyncio.to_thread(zip_path.unlink, missing_ok=True)
        return target

    async def delete(self) -> None:
        """Delete the version (refused while a queued or running job uses it)."""
        await self._client.api("DELETE", self._path)


class AutoLabelRun:
    """An auto-labelling run as last seen: .id, .data, .state, .total, .done, .accepted.

    wait() until it has ended; stop() ends it early."""

    def __init__(self, client: AsyncWorkbenchClient, owner: str, name: str, data: dict):
        self._client = client
        self.owner = owner
        self.name = name
        self.data = data
        self.id: int = int(data["id"])

    def __repr__(self) -> str:
        return (
            f"<AutoLabelRun {self.id} of {self.owner}/{self.name} {self.state} "
            f"{self.done} of {self.total}>"
        )

    @property
    def _path(self) -> str:
        return f"{dataset_path(self.owner, self.name)}/autolabel/{self.id}"

    @property
    def state(self) -> str:
        return self.data.get("state", "")

    @property
    def reason(self) -> str:
        return self.data.get("reason") or ""

    @property
    def total(self) -> int:
        return int(self.data.get("total") or 0)

    @property
    def done(self) -> int:
        return int(self.data.get("done") or 0)

    @property
    def accepted(self) -> int:
        """Pre-labels at or above the threshold, taken as labels."""
        return int(self.data.get("accepted") or 0)

    @property
    def finished(self) -> bool:
        return self.state in FINAL_RUN_STATES

    async def refresh(self) -> AutoLabelRun:
        self.data = await self._client.api("GET", self._path)
        return self

    async def stop(self) -> AutoLabelRun:
        """Stop the run (what it labelled stays)."""
        answer = await self._client.api("POST", f"{self._path}/stop")
        if isinstance(answer, dict) and answer.get("id") == self.id:
            self.data = answer
        else:
            await self.refresh()
        return self

    async def wait(
        self,
        timeout: float | None = None,  # noqa: ASYNC109 - seconds, as Popen.wait(timeout)
        poll: float = 1.0,
        *,
        check: bool = False,
        on_progress: Callable[[AutoLabelRun], object] | None = None,
    ) -> dict:
        """Wait until the run has ended; its JSON. check=True: AutoLabelFailed unless done.
        on_progress(run) sees each poll. TimeoutError after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            await self.refresh()
            if on_progress is not None:
                on_progress(self)
            if self.finished:
                if check and self.state != "done":
                    raise AutoLabelFailed(self.data)
                return self.data
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"Auto-labelling run {self.id} is still {self.state}.")
            delay = poll if deadline is None else min(poll, max(deadline - time.monotonic(), 0))
            await asyncio.sleep(delay)


class Dataset:
    """A dataset as last seen: .owner, .name, .type, .labels, .data (its JSON).

    Its calls: samples() and sample() read samples, upload() and import_() add them,
    annotate(), annotate_many() and accept() label them, add_label(), update_label(),
    delete_label() change the label set, publish() makes a version, version() and versions()
    read them, export() writes one, tasks and review() organise a team, autolabel() asks a
    deployed model.
    """

    def __init__(self, client: AsyncWorkbenchClient, data: dict):
        self._client = client
        self.data = data
        self.owner: str = data["owner"]
        self.name: str = data["name"]

    def __repr__(self) -> str:
        count = self.data.get("samples", 0)
        return f"<Dataset {self.owner}/{self.name} {self.type}, {count} samples>"

    @property
    def _path(self) -> str:
        return dataset_path(self.owner, self.name)

    @property
    def type(self) -> str:  # noqa: A003 - the API's word
        return self.data.get("type", "")

    @property
    def description(self) -> str:
        return self.data.get("description") or ""

    @property
    def workspace(self) -> str:
        return self.data.get("workspace") or ""

    @property
    def multi_label(self) -> bool:
        return bool(self.data.get("multi_label"))

    @property
    def labels(self) -> list[dict]:
        """The label set as last seen: [{"name", "color", "key"}]."""
        return list(self.data.get("labels") or [])

    @property
    def label_names(self) -> list[str]:
        return [label["name"] for label in self.labels]

    async def refresh(self) -> Dataset:
        """Read the dataset (with its stats and versions) again; returns the dataset itself."""
        self.data = await self._client.api("GET", self._path)
        return self

    async def update(
        self,
        *,
        description: str | None = None,
        workspace: str | None = None,
        multi_label: bool | None = None,
    ) -> Dataset:
        """Change the description, workspace or multi_label."""
        body = drop_none(description=description, workspace=workspace, multi_label=multi_label)
        self.data = await self._client.api("PATCH", self._path, body)
        return self

    async def delete(self) -> None:
        """Delete the dataset with its samples, versions and tasks (refused while a queued or
        running job uses one of its versions)."""
        await self._client.api("DELETE", self._path)

    # --- labels ----------------------------------------------------------------------------

    def _set_labels(self, answer) -> list[dict]:
        labels = answer.get("labels") if isinstance(answer, dict) else answer
        if isinstance(labels, list):
            self.data["labels"] = labels
        return self.labels

    async def add_label(
        self, name: str, *, color: str | None = None, key: str | None = None
    ) -> list[dict]:
        """Add a label (color "#rrggbb" and key one of a-z, 0-9: default picked); the set."""
        body = drop_none(name=name, color=color, key=key)
        return self._set_labels(await self._client.api("POST", f"{self._path}/labels", body))

    async def update_label(
        self,
        label: str,
        *,
        name: str | None = None,
        color: str | None = None,
        key: str | None = None,
    ) -> list[dict]:
        """Rename a label (its annotations follow) or change its color or key; the set."""
        body = drop_none(name=name, color=color, key=key)
        path = f"{self._path}/labels/{segment(label)}"
        return self._set_labels(await self._client.api("PATCH", path, body))

    async def rename_label(self, label: str, name: str) -> list[dict]:
        return await self.update_label(label, name=name)

    async def delete_label(self, label: str, *, force: bool = False) -> list[dict]:
        """Delete a label; refused while annotations use it unless force (they go too)."""
        params = {"force": "1"} if force else None
        answer = await self._client.api(
            "DELETE", f"{self._path}/labels/{segment(label)}", params=params
        )
        if answer is None:
            return self._set_labels(await self._client.api("GET", self._path))
        return self._set_labels(answer)

    # --- samples ---------------------------------------------------------------------------

    async def samples(
        self,
        *,
        status: str | None = None,
        label: str | None = None,
        review: str | None = None,
        assignee: str | None = None,
        task: str | None = None,
        annotated_by: str | None = None,
        limit: int | None = None,
        page_size: int = 200,
    ) -> AsyncIterator[dict]:
        """The samples in id order, fetched a page at a time: only those with a status
        (unlabelled, labelled, prelabelled), a label, a review state (to_review, accepted,
        rejected), an assignee, in a task, or annotated_by="model". limit: at most so many."""
        params = drop_none(
            status=status,
            label=label,
            review=review,
            assignee=assignee,
            task=task,
            annotated_by=annotated_by,
        )
        after = None
        count = 0
        while limit is None or count < limit:
            size = page_size if limit is None else min(page_size, limit - count)
            query = {**params, "limit": max(1, min(size, 500))}
            if after is not None:
                query["after"] = after
            page = await self._client.api("GET", f"{self._path}/samples", params=query)
            for sample in page.get("samples") or []:
                yield sample
                count += 1
                if limit is not None and count >= limit:
                    return
            after = page.get("next")
            if after is None:
                return

    async def count(self, **filters) -> int:
        """How many samples match the filters of samples() (status=, label=, ...)."""
        params = {**drop_none(**filters), "limit": 1, "with_total": "1"}
        page = await self._client.api("GET", f"{self._path}/samples", params=params)
        return int(page.get("total") or 0)

    async def sample(self, sample_id: int) -> dict:
        """One sample's JSON."""
        return await self._client.api("GET", f"{self._path}/samples/{int(sample_id)}")

    async def content(self, sample_id: int) -> bytes:
        """A sample's file: the image's bytes, or the text as UTF-8."""
        chunks = []
        async with self._client.api_stream(
            "GET", f"{self._path}/samples/{int(sample_id)}/content", limit=self._client.timeout
        ) as resp:
            async for chunk in resp.aiter_bytes():
                chunks.append(chunk)
        return b"".join(chunks)

    async def annotate(self, sample_id: int, annotations) -> dict:
        """Set a sample's annotations ("cat", ["cat", "dog"], or annotation dicts with boxes or
        spans; [] or None: none, unlabelled again); the sample."""
        body = {"annotations": annotation_list(annotations)}
        path = f"{self._path}/samples/{int(sample_id)}/annotations"
        return await self._client.api("PUT", path, body)

    async def annotate_many(self, annotations) -> list[dict]:
        """Set many samples' annotations: {id: annotations}, [(id, annotations)] or
        [{"id", "annotations"}] (annotations as annotate() takes them), sent 1000 at a time;
        the answers."""
        if isinstance(annotations, dict):
            items = list(annotations.items())
        else:
            items = [
                (a["id"], a.get("annotations")) if isinstance(a, dict) else tuple(a)
                for a in annotations
            ]
        body = [{"id": int(i), "annotations": annotation_list(a)} for i, a in items]
        answers = []
        for start in range(0, len(body), BULK_ANNOTATIONS):
            part = body[start : start + BULK_ANNOTATIONS]
            answers.append(
                await self._client.api("PATCH", f"{self._path}/samples", {"samples": part})
            )
        return answers

    async def accept(self, ids=None, *, min_confidence: float | None = None) -> Any:
        """Take a model's pre-labels as labels: those of `ids`, or all at or above
        min_confidence."""
        if ids is None and min_confidence is None:
            raise DatasetInputError("Say which pre-labels to accept: ids, or min_confidence.")
        body: dict[str, Any] = {}
        if ids is not None:
            body["ids"] = [int(i) for i in ids]
        if min_confidence is not None:
            body["min_confidence"] = float(min_confidence)
        return await self._client.api("POST", f"{self._path}/samples/accept", body)

    async def delete_samples(self, ids) -> Any:
        """Remove samples (their files stay while another sample or a version holds them)."""
        body = {"ids": [int(i) for i in ids]}
        return await self._client.api("POST", f"{self._path}/samples/delete", body)

    async def stats(self) -> dict:
        """{"samples", "labelled", "unlabelled", "prelabelled", "to_review", "accepted",
        "rejected", "per_label": {"cat": 3}}."""
        return await self._client.api("GET", f"{self._path}/stats")

    # --- adding samples --------------------------------------------------------------------

    async def upload(
        self,
        path,
        *,
        key: str | None = None,
        progress: bool | Progress | None = None,
        chunk_bytes: int = UPLOAD_CHUNK_BYTES,
    ) -> dict:
        """Add samples from local files: a folder (its files keyed by their paths inside it),
        a file (keyed by its name, or `key`), a .zip / .tar / .tar.gz archive (its members),
        or a list of these ({key: path} names the keys). Folders and files are sent as tar
        archives of at most chunk_bytes each. progress: a callable(sent, total) in bytes,
        False for none; default a line on stderr every 10% for uploads of 16 MiB or more.
        {"added", "replaced", "unchanged", "samples"}: how many files were new, replaced another
        file under their key (losing its annotations) or were there already, and the dataset's
        sample count."""
        single = isinstance(path, (str, os.PathLike))
        if single and key is None:
            given = await asyncio.to_thread(_expand, path)
            archive = await asyncio.to_thread(_archive_file, given)
            if archive:
                media_type, size = archive
                if size > chunk_bytes:
                    raise DatasetInputError(
                        f"{given} has {_mib(size)}, over the {_mib(chunk_bytes)} one upload may "
                        "hold: unpack it and upload the folder (it is sent in parts)."
                    )
                report = _progress(progress, f"uploading {given.name}", size)
                answer = await _send_file(
                    self._client,
                    f"{self._path}/samples",
                    given,
                    media_type,
                    on_sent=(lambda sent: report(sent, size)) if report else None,
                )
                return self._count(answer, _no_changes())
        if key is not None:
            if not single:
                raise DatasetInputError("key= names one file: give a single path with it.")
            sources: Any = {key: path}
        else:
            sources = path
        files = await asyncio.to_thread(local_files, sources)
        if not files:
            raise DatasetInputError(f"No files to upload in {path}.")
        if key is not None and len(files) == 1 and files[0][2] <= chunk_bytes:
            # one named file goes as itself, with its key
            entry = files[0]
            media_type = mimetypes.guess_type(entry[1].name)[0] or "application/octet-stream"
            report = _progress(progress, f"uploading {entry[1].name}", entry[2])
            answer = await _send_file(
                self._client,
                f"{self._path}/samples",
                entry[1],
                media_type,
                params={"key": entry[0]},
                on_sent=(lambda sent: report(sent, entry[2])) if report else None,
            )
            return self._count(answer, _no_changes())
        return await self._upload_files(files, progress, chunk_bytes)

    def _count(self, answer, totals: dict) -> dict:
        """Add an upload's answer into totals; keep the dataset's sample count."""
        if isinstance(answer, dict):
            for field in ("added", "replaced", "unchanged"):
                value = answer.get(field)
                totals[field] += len(value) if isinstance(value, list) else int(value or 0)
            samples = answer.get("samples")
            totals["samples"] = len(samples) if isinstance(samples, list) else int(samples or 0)
            self.data["samples"] = totals["samples"]
        return totals

    async def _upload_files(
        self, files: list[tuple[str, Path, int]], progress, chunk_bytes: int
    ) -> dict:
        """Send files as tar archives of at most chunk_bytes each; an archive the platform
        finds too big (413: a lower limit than ours) is sent again in halves."""
        chunks = chunk_files(files, chunk_bytes)
        total = sum(size for _, _, size in files)
        what = f"uploading {len(files)} files to {self.owner}/{self.name}"
        report = _progress(progress, what, total)
        totals = _no_changes()
        done = 0
        while chunks:
            chunk = chunks.pop(0)
            payload = sum(size for _, _, size in chunk)
            f, size = await asyncio.to_thread(_temporary_tar, chunk)
            try:

                def sent(n: int, done=done, payload=payload, size=size):
                    if report:
                        report(done + payload * n // max(size, 1), total)

                answer = await _send(
                    self._client,
                    "POST",
                    f"{self._path}/samples",
                    f,
                    size,
                    "application/x-tar",
                    on_sent=sent,
                )
            except WorkbenchError as e:
                if e.status != 413 or len(chunk) < 2:
                    raise
                half = len(chunk) // 2
                chunks[:0] = [chunk[:half], chunk[half:]]
                continue
            finally:
                await asyncio.to_thread(f.close)
            done += payload
            self._count(answer, totals)
        if report and not total:
            report(0, 0)
        return totals

    async def import_(
        self,
        path,
        format: str,  # noqa: A002 - the API's word
        *,
        progress: bool | Progress | None = None,
        chunk_bytes: int = UPLOAD_CHUNK_BYTES,
    ) -> dict:
        """Add samples with their annotations in `format` (modelarts, coco, voc, yolo, csv,
        jsonl): a local folder (sent as one tar archive), an archive (.zip, .tar, .tar.gz), a
        single annotations file (csv, jsonl: tarred alone), or {"instance": "nb", "path":
        "data/coco"} to copy from an instance's storage. {"added", "annotated", "samples"}."""
        if format not in FORMATS:
            raise DatasetInputError(f"Unknown format {format!r}: use one of {', '.join(FORMATS)}.")
        target = f"{self._path}/import"
        params = {"format": format}
        if isinstance(path, dict):
            body = {"format": format, "source": dict(path)}
            return await self._client.api("POST", target, body, params=params)
        given = await asyncio.to_thread(_expand, path)
        archive = await asyncio.to_thread(_archive_file, given)
        if archive:
            media_type, size = archive
            f = await asyncio.to_thread(open, given, "rb")
        elif await asyncio.to_thread(given.exists):
            files = await asyncio.to_thread(local_files, given)
            if not files:
                raise DatasetInputError(f"No files to import in {given}.")
            f, size = await asyncio.to_thread(_temporary_tar, files)
            media_type = "application/x-tar"
        else:
            raise DatasetInputError(f"No such file or folder: {given}")
        try:
            if size > chunk_bytes:
                raise DatasetInputError(
                    f"{given} makes an archive of {_mib(size)}, over the {_mib(chunk_bytes)} "
                    "one upload may hold: upload() the files first (sent in parts), then import "
                    "the annotations alone."
                )
            report = _progress(progress, f"importing {given.name}", size)
            answer = await _send(
                self._client,
                "POST",
                target,
                f,
                size,
                media_type,
                params=params,
                on_sent=(lambda sent: report(sent, size)) if report else None,
            )
        finally:
            await asyncio.to_thread(f.close)
        if isinstance(answer, dict) and isinstance(answer.get("samples"), int):
            self.data["samples"] = answer["samples"]
        return answer

    # --- versions --------------------------------------------------------------------------

    def _version(self, data: dict) -> DatasetVersion:
        return DatasetVersion(self._client, self.owner, self.name, data)

    async def publish(
        self,
        *,
        description: str | None = None,
        train_ratio: float | None = None,
        seed: int | None = None,
        wait: bool = True,
    ) -> DatasetVersion:
        """Publish the samples as they are now as a new, immutable version (train_ratio of them
        in the train split, the rest validation); waits until it is ready unless wait=False."""
        body = drop_none(description=description, train_ratio=train_ratio, seed=seed)
        version = self._version(await self._client.api("POST", f"{self._path}/versions", body))
        if wait:
            await version.wait()
        return version

    async def versions(self) -> list[dict]:
        """Every version's JSON, the first first."""
        answer = await self._client.api("GET", f"{self._path}/versions")
        if isinstance(answer, dict):
            answer = answer.get("versions") or []
        return sorted(answer, key=lambda v: v["version"])

    async def version(self, version: int | None = None) -> DatasetVersion:
        """One version (default: the latest)."""
        if version is None:
            versions = await self.versions()
            if not versions:
                raise WorkbenchError(
                    404, f"Dataset {self.owner}/{self.name} has no version yet: publish() one."
                )
            return self._version(versions[-1])
        data = await self._client.api("GET", f"{self._path}/versions/{int(version)}")
        return self._version(data)

    async def diff(self, version: int, against: int) -> dict:
        """What changed from version `against` to `version` (see DatasetVersion.diff)."""
        path = f"{self._path}/versions/{int(version)}/diff"
        return await self._client.api("GET", path, params={"against": int(against)})

    async def delete_version(self, version: int) -> None:
        """Delete a version (refused while a queued or running job uses it)."""
        await self._client.api("DELETE", f"{self._path}/versions/{int(version)}")

    async def export(
        self,
        format: str = "modelarts",  # noqa: A002 - the API's word
        version: int | None = None,
        to=None,
    ) -> Path:
        """Write the dataset (the samples as they are now, or a version) as a zip in `format`
        to `to` (a file, or a folder to put it in; default the current folder); its path."""
        return await _export(self._client, self.owner, self.name, format, version, to)

    async def local_path(self, version: int | None = None, cache_dir=None) -> Path:
        """A version's read-only local copy (default: the latest); see DatasetVersion."""
        return await (await self.version(version)).local_path(cache_dir)

    # --- labelling tasks -------------------------------------------------------------------

    async def tasks(self) -> list[dict]:
        """The labelling tasks, each with its progress per member."""
        answer = await self._client.api("GET", f"{self._path}/tasks")
        return answer.get("tasks", []) if isinstance(answer, dict) else answer

    async def task(self, name: str) -> dict:
        """A task with `progress` per member {"assigned", "labelled", "to_review", ...}."""
        return await self._client.api("GET", f"{self._path}/tasks/{segment(name)}")

    async def create_task(
        self,
        name: str,
        labellers: list[str],
        reviewers: list[str] | None = None,
        *,
        samples=None,
        description: str | None = None,
    ) -> dict:
        """A team task: its samples ("unlabelled", a list of ids, or {"status": ...} /
        {"ids": [...]}) dealt round robin between the labellers; reviewers accept or reject."""
        body: dict[str, Any] = {
            "name": name,
            "labellers": list(labellers),
            "reviewers": list(reviewers or []),
        }
        selection = sample_selection(samples)
        if selection is not None:
            body["samples"] = selection
        if description is not None:
            body["description"] = description
        return await self._client.api("POST", f"{self._path}/tasks", body)

    async def update_task(
        self,
        name: str,
        *,
        labellers: list[str] | None = None,
        reviewers: list[str] | None = None,
        description: str | None = None,
    ) -> dict:
        """Change a task's members (a removed labeller's samples are dealt again)."""
        body = drop_none(labellers=labellers, reviewers=reviewers, description=description)
        return await self._client.api("PATCH", f"{self._path}/tasks/{segment(name)}", body)

    async def delete_task(self, name: str) -> None:
        """End a task: its samples are released, their labels kept."""
        await self._client.api("DELETE", f"{self._path}/tasks/{segment(name)}")

    async def review(self, task: str, verdicts) -> Any:
        """Review a task's samples: [(id, accepted), (id, accepted, comment)] or
        [{"id", "accepted", "comment"}]; rejected ones go back to their labeller."""
        samples = []
        for verdict in verdicts:
            if isinstance(verdict, dict):
                samples.append(dict(verdict))
                continue
            sample_id, accepted, *rest = verdict
            entry: dict[str, Any] = {"id": int(sample_id), "accepted": bool(accepted)}
            if rest and rest[0]:
                entry["comment"] = str(rest[0])
            samples.append(entry)
        path = f"{self._path}/tasks/{segment(task)}/review"
        return await self._client.api("POST", path, {"samples": samples})

    async def start_sampling(self, task: str, labeller: str, ratio: float) -> dict:
        """Check a random share of a labeller's samples to review: {"labeller", "samples",
        "state"}."""
        path = f"{self._path}/tasks/{segment(task)}/sampling"
        return await self._client.api("POST", path, {"labeller": labeller, "ratio": ratio})

    async def finish_sampling(
        self, task: str, labeller: str, accepted: bool, comment: str | None = None
    ) -> dict:
        """The verdict on a sampling check: all the labeller's samples in review accepted, or
        all rejected back to them."""
        body = drop_none(labeller=labeller, accepted=bool(accepted), comment=comment)
        path = f"{self._path}/tasks/{segment(task)}/sampling"
        return await self._client.api("PATCH", path, body)

    # --- auto-labelling --------------------------------------------------------------------

    async def autolabel(
        self, service, *, threshold: float | None = None, limit: int | None = None
    ) -> AutoLabelRun:
        """Pre-label the unlabelled samples with a deployed service ("name", "owner/name" or a
        Service); pre-labels at or above `threshold` confidence become labels. The run."""
        if hasattr(service, "owner") and hasattr(service, "name"):
            service = f"{service.owner}/{service.name}"
        owner, name = split_name(service)
        owner = await self._client.user_name(owner)
        body = {"service": f"{owner}/{name}", **drop_none(threshold=threshold, limit=limit)}
        answer = await self._client.api("POST", f"{self._path}/autolabel", body)
        return AutoLabelRun(self._client, self.owner, self.name, answer)

    async def autolabel_runs(self) -> list[dict]:
        """The auto-labelling runs with total, done, accepted and state."""
        answer = await self._client.api("GET", f"{self._path}/autolabel")
        return answer.get("runs", []) if isinstance(answer, dict) else answer

    async def autolabel_run(self, run_id: int) -> AutoLabelRun:
        data = await self._client.api("GET", f"{self._path}/autolabel/{int(run_id)}")
        return AutoLabelRun(self._client, self.owner, self.name, data)


async def _export(
    client: AsyncWorkbenchClient,
    owner: str,
    name: str,
    format: str,  # noqa: A002 - the API's word
    version: int | None,
    to,
) -> Path:
    if format not in FORMATS:
        raise DatasetInputError(f"Unknown format {format!r}: use one of {', '.join(FORMATS)}.")
    body: dict[str, Any] = {"format": format}
    if version is not None:
        body["version"] = int(version)
    default = f"{name}-{f'v{version}' if version is not None else 'current'}-{format}.zip"
    return await _download(client, "POST", f"{dataset_path(owner, name)}/export", body, to, default)


class Datasets(Namespace):
    """Datasets: the user's own, their workspaces', and those of tasks they label or review."""

    async def create(
        self,
        name: str,
        type: str,  # noqa: A002 - the API's word
        *,
        labels: Iterable | None = None,
        folder=None,
        files=None,
        multi_label: bool = False,
        description: str = "",
        workspace: str | None = None,
        progress: bool | Progress | None = None,
        chunk_bytes: int = UPLOAD_CHUNK_BYTES,
    ) -> Dataset:
        """Make a dataset; the Dataset. type: image_classification, object_detection,
        text_classification or named_entities. labels: names or {"name", "color", "key"}.
        folder: a local folder whose files become its samples (keyed by their paths in it);
        files: a list of files (keyed by their names) or {key: path}. If the upload fails
        the new dataset is deleted again."""
        if type not in TYPES:
            raise DatasetInputError(
                f"Unknown dataset type {type!r}: use one of {', '.join(TYPES)}."
            )
        if folder is not None and files is not None:
            raise DatasetInputError("Give a folder or files, not both.")
        labels = label_set(labels)
        local = None
        if folder is not None:
            root = await asyncio.to_thread(_expand, folder)
            if not await asyncio.to_thread(root.is_dir):
                raise DatasetInputError(f"No such folder: {root}")
            local = await asyncio.to_thread(local_files, root)
            if not local:
                raise DatasetInputError(f"The folder {root} holds no files.")
        elif files is not None:
            local = await asyncio.to_thread(local_files, files)
        if local:
            chunk_files(local, chunk_bytes)  # a file over the limit is refused before anything
        body: dict[str, Any] = {
            "name": name,
            "type": type,
            "description": description,
            "multi_label": bool(multi_label),
            "labels": labels,
        }
        if workspace is not None:
            body["workspace"] = workspace
        dataset = Dataset(self._client, await self._client.api("POST", "datasets", body))
        if local:
            try:
                await dataset._upload_files(local, progress, chunk_bytes)
            except Exception:
                # nothing half-made: the new dataset goes again, the error stays
                with contextlib.suppress(WorkbenchError):
                    await dataset.delete()
                raise
            await dataset.refresh()
        return dataset

    async def list(  # noqa: A002 - the API's word
        self, workspace: str | None = None, *, all: bool = False
    ) -> list[dict]:
        """The datasets the user sees; only those of `workspace` if given; all=True:
        everyone's (administrators)."""
        params = {}
        if workspace:
            params["workspace"] = workspace
        if all:
            params["all"] = "1"
        answer = await self._client.api("GET", "datasets", params=params or None)
        return answer.get("datasets", []) if isinstance(answer, dict) else answer

    async def get(self, name: str, owner: str | None = None) -> Dataset:
        """A dataset by "name" (the user's) or "owner/name", with its stats and versions."""
        owner, name = split_name(name, owner)
        owner = await self._client.user_name(owner)
        return Dataset(self._client, await self._client.api("GET", dataset_path(owner, name)))

    async def delete(self, name: str, owner: str | None = None) -> None:
        """Delete a dataset with its samples, versions and tasks."""
        owner, name = split_name(name, owner)
        owner = await self._client.user_name(owner)
        await self._client.api("DELETE", dataset_path(owner, name))
