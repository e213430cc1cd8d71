"""Datasets from this instance: the labelling view's calls relayed to the platform's datasets
API, and a folder of the instance made into a dataset."""

from __future__ import annotations

import asyncio
import os
import re
import tarfile
import tempfile
from pathlib import Path
from urllib.parse import quote, unquote

import httpx
from jupyter_server.auth.decorator import authorized
from jupyter_server.utils import url_path_join
from tornado import web
from tornado.iostream import StreamClosedError
from workbench import WorkbenchError

from .handlers import WorkbenchHandler
from .platform import PlatformError
from .training import platform_error

DATASETS_UNAVAILABLE = "Datasets are not available on this platform version."
DATASET_TYPES = (
    "image_classification",
    "object_detection",
    "text_classification",
    "named_entities",
)
# what a folder's files must end with to be samples of a dataset of each type
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff")
SAMPLE_SUFFIXES = {
    "image_classification": IMAGE_SUFFIXES,
    "object_detection": IMAGE_SUFFIXES,
    "text_classification": (".txt",),
    "named_entities": (".txt",),
}
# folders of tools and caches, never samples
SKIPPED_FOLDERS = {"__pycache__", ".ipynb_checkpoints", "node_modules"}
# the browser's request headers the platform needs, and the platform's answer headers it needs
# (the content's ETag and Cache-Control let the browser keep sample images)
REQUEST_HEADERS = ("Content-Type", "Accept", "If-None-Match", "If-Modified-Since")
ANSWER_HEADERS = ("ETag", "Cache-Control", "Last-Modified", "Content-Disposition")
# calls that copy, publish or pack many files take longer than the others
LONG_CALL = re.compile(r"/(samples|import|export|versions|autolabel|accept|delete)$")
LONG_LIMIT = 600.0
# a relayed answer is flushed to the browser in parts of this size (exports can be large)
FLUSH_BYTES = 1 << 20
# a folder goes in archives of at most this size (the platform takes bodies up to 100 MiB)
ARCHIVE_BYTES = 64 << 20
# what a file adds to a tar besides its bytes (header, padding; the end blocks)
TAR_OVERHEAD = 3 * 512 + 10240
# an archive stays in memory up to this size, then goes to a temporary file
SPOOL_BYTES = 32 << 20
UPLOAD_CHUNK = 1 << 20


def dataset_path(owner: str, name: str, *rest: str) -> str:
    """The platform API path of a dataset (or below it), the names quoted."""
    return "/".join(["datasets", quote(owner, safe=""), quote(name, safe=""), *rest])


def relayed_path(rest: str) -> str:
    """The platform path for what follows /workbench/datasets in a request's (still quoted)
    path; HTTPError 400 for one that would leave the datasets API ('.', '..', empty parts)."""
    if not rest or rest == "/":
        return "datasets"
    parts = rest.strip("/").split("/") if rest.startswith("/") else [""]
    if any(unquote(p) in ("", ".", "..") or "\\" in unquote(p) for p in parts):
        raise web.HTTPError(400, f"Not a datasets API path: {unquote(rest)!r}.")
    return "datasets/" + "/".join(parts)


def resolve_folder(root_dir: str, path) -> Path:
    """The folder `path` (relative to the server's root) on disk; HTTPError 400 when it lies
    outside the root (.., absolute paths, links leading out) or is no folder."""
    if not isinstance(path, str) or not path.strip():
        raise web.HTTPError(400, "Give the path of a folder of images or texts.")
    root = Path(root_dir).resolve()
    local = (root / path.strip().lstrip("/")).resolve()
    if local != root and root not in local.parents:
        raise web.HTTPError(
            400, f"{path!r} is outside this server's folder ({root}): pick a folder inside it."
        )
    if not local.is_dir():
        raise web.HTTPError(400, f"{path.strip()} is not a folder: pick a folder of samples.")
    return local


def sample_files(folder: Path, dataset_type: str) -> tuple[list[tuple[Path, str]], int]:
    """The files of a folder that are samples of the type, with their keys (their paths below
    the folder); hidden files, caches and links left out. Also the number of other files."""
    suffixes = SAMPLE_SUFFIXES[dataset_type]
    files, skipped = [], 0
    for here, dirs, names in os.walk(folder):
        dirs[:] = sorted(
            d
            for d in dirs
            if not d.startswith(".")
            and d not in SKIPPED_FOLDERS
            and not os.path.islink(os.path.join(here, d))
        )
        for name in sorted(names):
            local = Path(here, name)
            if name.startswith(".") or local.is_symlink() or not local.is_file():
                continue
            if not name.lower().endswith(suffixes):
                skipped += 1
                continue
            files.append((local, local.relative_to(folder).as_posix()))
    return files, skipped


def folder_archives(root_dir: str, path: str, dataset_type: str):
    """Tars of the samples in the folder `path` (relative to the server's root), each below
    ARCHIVE_BYTES: ([(file, size)], samples, skipped). HTTPError 400 when the folder holds
    no samples or a file too big to send. Blocking: it reads the folder."""
    folder = resolve_folder(root_dir, path)
    try:
        files, skipped = sample_files(folder, dataset_type)
        if not files:
            suffixes = SAMPLE_SUFFIXES[dataset_type]
            kinds = "images" if suffixes is IMAGE_SUFFIXES else "text files (.txt)"
            raise web.HTTPError(
                400,
                f"{path.strip()} holds no {kinds}: a {dataset_type.replace('_', ' ')} "
                f"dataset is made of files ending in {', '.join(suffixes)}.",
            )
        archives = []
        tar = None
        try:
            for local, key in files:
                size = local.stat().st_size
                if size + TAR_OVERHEAD > ARCHIVE_BYTES:
                    raise web.HTTPError(
                        400,
                        f"{key} has {size / 1024**2:.0f} MiB, more than one upload may "
                        f"({ARCHIVE_BYTES // 1024**2} MiB): leave it out of the folder.",
                    )
                if tar is None or archives[-1].tell() + size + TAR_OVERHEAD > ARCHIVE_BYTES:
                    if tar is not None:
                        tar.close()
                    archives.append(tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES))
                    tar = tarfile.open(fileobj=archives[-1], mode="w")
                info = tar.gettarinfo(str(local), arcname=key)
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                with open(local, "rb") as f:
                    tar.addfile(info, f)
            tar.close()
        except BaseException:
            for archive in archives:
                archive.close()
            raise
    except OSError as e:
        raise web.HTTPError(400, f"Cannot read {path!r}: {e.strerror or e}.") from None
    sized = []
    for archive in archives:
        sized.append((archive, archive.tell()))
        archive.seek(0)
    return sized, len(files), skipped


async def read_chunks(file):
    """The file's bytes in parts, each read in a thread."""
    while True:
        chunk = await asyncio.to_thread(file.read, UPLOAD_CHUNK)
        if not chunk:
            return
        yield chunk


class DatasetsHandler(WorkbenchHandler):
    """Calls of the platform's datasets API with this instance's token."""

    def refusal(self, e: WorkbenchError) -> web.HTTPError:
        """The HTTP error for a refusal of the datasets API (or no answer from it): its 4xx
        with the platform's message (a 403 is a dataset's refusal, not the token's)."""
        relayed = platform_error(e) or self.platform._error(e)
        if relayed.missing_route:
            return web.HTTPError(501, DATASETS_UNAVAILABLE)
        return web.HTTPError(relayed.code, relayed.message)

    async def configured(self):
        """HTTPError 503 when this server does not know the platform (outside an instance)."""
        try:
            await self.platform.call(asyncio.sleep(0))
        except PlatformError as e:
            raise web.HTTPError(e.code, e.message) from None

    async def api(self, method: str, path: str, body=None, *, limit=None):
        await self.configured()
        try:
            return await self.platform.client.api(method, path, body, limit=limit)
        except WorkbenchError as e:
            raise self.refusal(e) from None


class RelayHandler(DatasetsHandler):
    """/workbench/datasets and below, relayed to the platform's /datasets: the method, query,
    body and content type as sent, the answer as the platform gives it (JSON, sample files
    with their ETag and Cache-Control, downloads), its refusals with its message."""

    @web.authenticated
    @authorized
    async def get(self, rest):
        await self.relay("GET", rest)

    @web.authenticated
    @authorized
    async def post(self, rest):
        await self.relay("POST", rest)

    @web.authenticated
    @authorized
    async def put(self, rest):
        await self.relay("PUT", rest)

    @web.authenticated
    @authorized
    async def patch(self, rest):
        await self.relay("PATCH", rest)

    @web.authenticated
    @authorized
    async def delete(self, rest):
        await self.relay("DELETE", rest)

    def raw_rest(self) -> str:
        """What follows /workbench/datasets in the request's path, still quoted (a name may
        hold a quoted '/')."""
        prefix = url_path_join(self.base_url, "workbench", "datasets")
        path = self.request.path
        return path[len(prefix) :] if path.startswith(prefix) else ""

    async def relay(self, method: str, rest: str | None):
        await self.configured()
        platform = self.platform
        path = relayed_path(self.raw_rest() if rest else "")
        url = f"{platform.url}/{path}"
        if self.request.query:
            url += "?" + self.request.query
        headers = {"Authorization": f"token {platform.token}"}
        for name in REQUEST_HEADERS:
            value = self.request.headers.get(name)
            if value:
                headers[name] = value
        content = self.request.body if method in ("POST", "PUT", "PATCH") else None
        slow = method != "GET" and LONG_CALL.search(path)
        limit = LONG_LIMIT if slow else platform.timeout
        timeout = httpx.Timeout(limit, connect=min(5.0, limit))
        started = False
        try:
            async with platform.client.http.stream(
                method, url, content=content, headers=headers, timeout=timeout
            ) as resp:
                if resp.status_code >= 300 and resp.status_code != 304:
                    await resp.aread()
                    raise self.refusal(platform.client.error(method, url, resp))
                self.set_status(resp.status_code)
                for name in ANSWER_HEADERS:
                    if name in resp.headers:
                        self.set_header(name, resp.headers[name])
                content_type = resp.headers.get("Content-Type", "application/octet-stream")
                if resp.status_code == 200 and method == "GET" and self.check_etag_header():
                    # the browser has this sample's content already
                    self.set_status(304)
                if self.get_status() in (204, 304):
                    # tornado sends these without a body or its headers
                    self.finish()
                    return
                pending = 0
                async for chunk in resp.aiter_bytes():
                    self.write(chunk)
                    pending += len(chunk)
                    if pending >= FLUSH_BYTES:
                        # large answers (exports) go on as they come; small ones are
                        # finished whole, so that a browser's If-None-Match gets its 304
                        self.set_header("Content-Type", content_type)
                        started = True
                        pending = 0
                        await self.flush()
        except httpx.TransportError as e:
            if not started:
                raise self.refusal(platform.client.no_answer(url, e, limit)) from None
            # part of the answer is gone: the browser must see it fail, not a short file
            self.log.warning("workbench_lab: relaying %s %s broke off: %s", method, path, e)
            self.request.connection.close()
            return
        except StreamClosedError:
            return
        self.finish(set_content_type=content_type)


class FromFolderHandler(DatasetsHandler):
    """A new dataset made of a folder of this instance: POST {path, name, type, labels?,
    multi_label?, description?}; its files are packed and uploaded as the dataset's samples.
    If the upload is refused, the new dataset is deleted again."""

    @web.authenticated
    @authorized
    async def post(self):
        body = self.json_body()
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise web.HTTPError(400, "Give the dataset a name (lower-case letters, digits, '-').")
        dataset_type = body.get("type")
        if dataset_type not in DATASET_TYPES:
            raise web.HTTPError(400, f"Give the dataset's type: one of {', '.join(DATASET_TYPES)}.")
        spec = {"name": name.strip(), "type": dataset_type}
        for field in ("description", "workspace", "multi_label", "labels"):
            if body.get(field) not in (None, ""):
                spec[field] = body[field]
        await self.configured()
        archives, samples, skipped = await asyncio.to_thread(
            folder_archives, self.contents_manager.root_dir, body.get("path"), dataset_type
        )
        try:
            dataset = await self.api("POST", "datasets", spec)
            owner = dataset.get("owner") or self.platform.user
            self.log.info(
                "workbench_lab: uploading %d files of %s in %d archives as dataset %s/%s",
                samples,
                body.get("path"),
                len(archives),
                owner,
                spec["name"],
            )
            added = {"added": 0, "unchanged": 0}
            try:
                for archive, size in archives:
                    answer = await self.upload(owner, spec["name"], archive, size)
                    for field in added:
                        added[field] += int(answer.get(field) or 0)
            except BaseException:
                await self.forget(owner, spec["name"])
                raise
        finally:
            for archive, _ in archives:
                archive.close()
        dataset = await self.api("GET", dataset_path(owner, spec["name"]))
        self.set_header(
            "Location", url_path_join(self.base_url, "workbench", dataset_path(owner, spec["name"]))
        )
        self.write_json(
            {"dataset": dataset, "upload": added, "files": samples, "skipped": skipped},
            status=201,
        )

    async def upload(self, owner: str, name: str, archive, size: int) -> dict:
        """POST the archive to the dataset's samples, read from the file as it goes."""
        platform = self.platform
        url = f"{platform.url}/{dataset_path(owner, name, 'samples')}"
        headers = {
            "Authorization": f"token {platform.token}",
            "Content-Type": "application/x-tar",
            "Content-Length": str(size),
        }
        try:
            resp = await platform.client.http.post(
                url,
                content=read_chunks(archive),
                headers=headers,
                timeout=httpx.Timeout(LONG_LIMIT, connect=5.0),
            )
        except httpx.TransportError as e:
            raise self.refusal(platform.client.no_answer(url, e, LONG_LIMIT)) from None
        if resp.status_code >= 300:
            raise self.refusal(platform.client.error("POST", url, resp))
        return resp.json() if resp.content else {}

    async def forget(self, owner: str, name: str):
        """Delete a dataset whose samples could not be uploaded (nothing half-made stays)."""
        try:
            await self.platform.client.api("DELETE", dataset_path(owner, name))
        except WorkbenchError as e:
            self.log.warning("workbench_lab: cannot delete dataset %s/%s again: %s", owner, name, e)


def routes() -> list[tuple[str, type]]:
    """The extension's dataset routes under <base_url>/workbench/."""
    return [
        (r"/workbench/datasets-from-folder", FromFolderHandler),
        (r"/workbench/datasets(/.*)?", RelayHandler),
    ]
