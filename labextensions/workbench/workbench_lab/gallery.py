"""The gallery from this instance: its browsing calls relayed to the platform, its notebooks
published, and notebook cases taken into its storage (each file checked against its SHA-256)."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import re
import secrets
import shutil
from pathlib import Path, PurePosixPath
from urllib.parse import quote

from jupyter_server.auth.decorator import authorized
from jupyter_server.utils import url_path_join
from tornado import web
from tornado.iostream import StreamClosedError
from workbench import WorkbenchError

from .deploy import storage_relative
from .handlers import WorkbenchHandler
from .platform import PlatformError
from .training import platform_error

GALLERY_UNAVAILABLE = "The gallery is not available on this platform version."
# what the publish dialog may set, passed on to the platform as they are
PUBLISH_FIELDS = ("title", "description", "tags", "visibility", "workspace")
# the list's query, relayed as sent (tag may repeat)
LIST_QUERY = ("q", "tag", "kind", "owner", "mine", "sort", "limit", "offset")
# seconds to wait for the platform: a publish copies the files, parses the notebooks and
# renders the preview; a download may be large
PUBLISH_LIMIT = 300.0
USE_LIMIT = 300.0
DOWNLOAD_LIMIT = 120.0
# how a preview may be shown: no scripts, nothing fetched, the notebook's own inline styles
PREVIEW_CSP = (
    "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'; font-src data:"
)
FLUSH_BYTES = 1 << 20
SHA256 = re.compile(r"^[0-9a-f]{64}$")
# where taken notebook cases go, below the instance's storage
TAKE_FOLDER = "gallery"
# a name kept for folders being written (hidden in the file browser)
PARTIAL_PREFIX = ".taking-"
MAX_SUFFIX = 1000


def asset_path(asset_id: str | int, *rest: str) -> str:
    """The platform API path of a gallery asset (or below it)."""
    return "/".join(["gallery", "assets", str(asset_id), *rest])


def safe_relative(path, what: str) -> PurePosixPath:
    """`path` as a relative POSIX path that stays below its folder; HTTPError 502 (the
    platform sent it) for an absolute path, '..', empty parts or backslashes."""
    if not isinstance(path, str) or not path or "\\" in path or "\0" in path:
        raise web.HTTPError(502, f"The platform sent an unusable {what}: {path!r}.")
    pure = PurePosixPath(path)
    if pure.is_absolute() or any(p in ("", ".", "..") for p in path.split("/")):
        raise web.HTTPError(502, f"The platform sent a {what} outside its folder: {path!r}.")
    return pure


def notebook_source_path(root_dir: str, storage_dir: str, path) -> str:
    """The file-browser path of a notebook or folder to publish as a path of the instance's
    storage; HTTPError 400 when it is outside the server's folder or the storage, missing,
    or a file that is no notebook. Blocking (it looks at the disk)."""
    if not isinstance(path, str) or not path.strip():
        raise web.HTTPError(400, "Give the path of a notebook (.ipynb) or a folder holding one.")
    root = Path(root_dir).resolve()
    local = (root / path.strip().lstrip("/")).resolve()
    if local != root and root not in local.parents:
        raise web.HTTPError(
            400,
            f"{path.strip()!r} is outside this server's folder ({root}): share a notebook or "
            "folder inside it.",
        )
    if not local.exists():
        raise web.HTTPError(400, f"No such notebook or folder: {path.strip()!r}.")
    storage = Path(storage_dir).resolve()
    if local != storage and storage not in local.parents:
        raise web.HTTPError(
            400,
            f"{path.strip()} is not on this instance's storage ({storage}): only files kept "
            "there can be shared to the gallery. Move or copy them there first.",
        )
    if local.is_file() and local.suffix != ".ipynb":
        raise web.HTTPError(
            400,
            f"{path.strip()} is not a notebook: share a .ipynb file, or the folder holding "
            "the notebook and its files.",
        )
    relative = storage_relative(root_dir, storage_dir, path)
    if relative == ".":
        raise web.HTTPError(
            400,
            "Share a notebook, or one folder of this instance's storage, not the whole storage: "
            "put the case in a folder of its own first.",
        )
    return relative


def take_base(root_dir: str, storage_dir: str) -> Path:
    """Where taken cases go: the instance's storage when this server shows it (files there
    outlive the container), else the server's folder."""
    root = Path(root_dir).resolve()
    storage = Path(storage_dir).resolve()
    if storage == root or root in storage.parents:
        return storage
    return root


def make_partial(base: Path) -> Path:
    """A new hidden folder below base/gallery to write a case into before it is named."""
    parent = base / TAKE_FOLDER
    parent.mkdir(parents=True, exist_ok=True)
    partial = parent / f"{PARTIAL_PREFIX}{secrets.token_hex(6)}"
    partial.mkdir()
    return partial


def open_for_writing(partial: Path, relative: PurePosixPath):
    """A new file at `relative` below the partial folder (its folders made)."""
    target = partial.joinpath(*relative.parts)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.parent.resolve() != partial.resolve() and partial.resolve() not in (
        target.parent.resolve().parents
    ):
        raise web.HTTPError(502, f"The platform sent a file outside its folder: {relative}.")
    return open(target, "xb")


def write_chunk(file, digest, chunk: bytes) -> None:
    digest.update(chunk)
    file.write(chunk)


def place(partial: Path, folder: PurePosixPath, base: Path) -> Path:
    """Rename the written folder to `folder` below base, or folder-2, folder-3...: nothing
    that exists is ever replaced."""
    wanted = base.joinpath(*folder.parts)
    wanted.parent.mkdir(parents=True, exist_ok=True)
    for n in range(1, MAX_SUFFIX + 1):
        target = wanted if n == 1 else wanted.with_name(f"{wanted.name}-{n}")
        if os.path.lexists(target):
            continue
        try:
            os.rename(partial, target)
        except OSError as e:
            # taken between the look and the rename (an empty folder made meanwhile)
            if e.errno in (errno.EEXIST, errno.ENOTEMPTY):
                continue
            raise
        return target
    raise web.HTTPError(
        409,
        f"{folder}, {folder}-2 ... {folder}-{MAX_SUFFIX} all exist: remove some of them first.",
    )


class GalleryHandler(WorkbenchHandler):
    """Calls of the platform's gallery API with this instance's token."""

    def refusal(self, e: WorkbenchError) -> web.HTTPError:
        """The HTTP error for a refusal of the gallery API (or no answer from it): its 4xx
        with the platform's message (a 403 is the gallery's refusal, not the token's)."""
        relayed = platform_error(e) or self.platform._error(e)
        if relayed.missing_route:
            return web.HTTPError(501, GALLERY_UNAVAILABLE)
        return web.HTTPError(relayed.code, relayed.message)

    async def configured(self):
        """HTTPError 503 when this server does not know the platform (outside an instance)."""
        try:
            await self.platform.call(asyncio.sleep(0))
        except PlatformError as e:
            raise web.HTTPError(e.code, e.message) from None

    async def api(self, method: str, path: str, body=None, *, params=None, limit=None):
        await self.configured()
        try:
            return await self.platform.client.api(method, path, body, params=params, limit=limit)
        except WorkbenchError as e:
            raise self.refusal(e) from None

    def lab_location(self, asset_id) -> str:
        return url_path_join(self.base_url, "workbench", "gallery", "assets", str(asset_id))


class OptionsHandler(GalleryHandler):
    """What the publish dialog starts from: this instance, its owner, their workspaces."""

    @web.authenticated
    @authorized
    async def get(self):
        workspaces = await self.api("GET", "workspaces")
        self.write_json(
            {
                "instance": self.platform.instance,
                "owner": self.platform.user,
                "workspaces": [
                    w.get("name")
                    for w in workspaces or []
                    if isinstance(w, dict) and w.get("name") and w.get("name") != "default"
                ],
            }
        )


class AssetsHandler(GalleryHandler):
    """GET: the assets the user may see (?q, tag (repeated), kind, owner, mine, sort, limit,
    offset as the platform takes them)."""

    @web.authenticated
    @authorized
    async def get(self):
        params = {}
        for name in LIST_QUERY:
            values = [v for v in self.get_arguments(name) if v != ""]
            if values:
                params[name] = values if name == "tag" else values[-1]
        self.write_json(await self.api("GET", "gallery/assets", params=params or None))


class AssetHandler(GalleryHandler):
    """An asset with its versions: GET, PATCH (title, description, tags, visibility), DELETE."""

    @web.authenticated
    @authorized
    async def get(self, asset_id):
        self.write_json(await self.api("GET", asset_path(asset_id)))

    @web.authenticated
    @authorized
    async def patch(self, asset_id):
        self.write_json(await self.api("PATCH", asset_path(asset_id), self.json_body()))

    @web.authenticated
    @authorized
    async def delete(self, asset_id):
        await self.api("DELETE", asset_path(asset_id))
        self.log.info("workbench_lab: unpublished gallery asset %s", asset_id)
        self.set_status(204)
        self.finish()


class StarHandler(GalleryHandler):
    @web.authenticated
    @authorized
    async def put(self, asset_id):
        self.write_json(await self.api("PUT", asset_path(asset_id, "star")))

    @web.authenticated
    @authorized
    async def delete(self, asset_id):
        self.write_json(await self.api("DELETE", asset_path(asset_id, "star")))


class UseHandler(GalleryHandler):
    """Use an asset as the platform does it (an image shared with the user, a model or dataset
    of theirs); a notebook case is taken with /workbench/gallery/take instead."""

    @web.authenticated
    @authorized
    async def post(self, asset_id):
        body = self.json_body()
        self.write_json(await self.api("POST", asset_path(asset_id, "use"), body, limit=USE_LIMIT))


class FilesHandler(GalleryHandler):
    @web.authenticated
    @authorized
    async def get(self, asset_id, version):
        self.write_json(await self.api("GET", asset_path(asset_id, "versions", version, "files")))


class PreviewHandler(GalleryHandler):
    """A notebook's rendered preview, as the platform serves it: HTML to show in a sandboxed
    frame, under the same Content-Security-Policy (no scripts, nothing fetched)."""

    @web.authenticated
    @authorized
    async def get(self, asset_id, version):
        await self.configured()
        path = asset_path(asset_id, "versions", version, "preview")
        started = False
        try:
            async with self.platform.client.api_stream("GET", path, limit=DOWNLOAD_LIMIT) as resp:
                self.set_header("Content-Type", "text/html; charset=utf-8")
                self.set_header("Content-Security-Policy", PREVIEW_CSP)
                self.set_header("X-Content-Type-Options", "nosniff")
                self.set_header("Cache-Control", "private, max-age=60")
                pending = 0
                async for chunk in resp.aiter_bytes():
                    self.write(chunk)
                    pending += len(chunk)
                    if pending >= FLUSH_BYTES:
                        started, pending = True, 0
                        await self.flush()
        except WorkbenchError as e:
            if not started:
                raise self.refusal(e) from None
            # part of the page is gone: the browser must see it fail, not a short page
            self.log.warning("workbench_lab: preview of asset %s broke off: %s", asset_id, e)
            self.request.connection.close()
            return
        except StreamClosedError:
            return
        self.finish(set_content_type="text/html; charset=utf-8")

    def write_error(self, status_code, **kwargs):
        # an error shown in the preview's frame: JSON, never the HTML of a page
        self.clear_header("Content-Security-Policy")
        super().write_error(status_code, **kwargs)


class PublishHandler(GalleryHandler):
    """Publish a notebook or folder of this instance's storage: POST {path, title,
    description, tags, visibility, workspace, asset? (publish a new version of it), notebook?
    (the main notebook of a folder)}; the platform snapshots the files."""

    @web.authenticated
    @authorized
    async def post(self):
        body = self.json_body()
        if not self.platform.instance:
            raise web.HTTPError(
                400, "This server is not an ai-workbench instance: it has no storage."
            )
        asset = body.get("asset")
        if asset is not None and (
            isinstance(asset, bool) or not isinstance(asset, int | str) or not str(asset).isdigit()
        ):
            raise web.HTTPError(400, "asset must be the number of one of your gallery assets.")
        path = await asyncio.to_thread(
            notebook_source_path,
            self.contents_manager.root_dir,
            self.extensionapp.storage_path,
            body.get("path"),
        )
        source = {"instance": self.platform.instance, "path": path}
        notebook = body.get("notebook")
        if notebook not in (None, ""):
            if not isinstance(notebook, str) or not notebook.endswith(".ipynb"):
                raise web.HTTPError(400, "notebook must name a .ipynb file of the folder.")
            try:
                source["notebook"] = str(safe_relative(notebook.strip("/"), "notebook"))
            except web.HTTPError:
                raise web.HTTPError(
                    400, f"notebook must be a path inside the folder, not {notebook!r}."
                ) from None
        if asset is not None:
            request = {"source": source}
            if body.get("notes"):
                request["notes"] = body["notes"]
            where = asset_path(asset, "versions")
        else:
            request = {"kind": "notebook", "source": source}
            for field in PUBLISH_FIELDS:
                value = body.get(field)
                if value is not None and value != "":
                    request[field] = value
            where = "gallery/assets"
        self.log.info(
            "workbench_lab: publishing %s to the gallery%s",
            path,
            f" as a new version of asset {asset}" if asset is not None else "",
        )
        result = await self.api("POST", where, request, limit=PUBLISH_LIMIT)
        if isinstance(result, dict) and result.get("id") is not None:
            self.set_header("Location", self.lab_location(result["id"]))
        self.write_json(result, status=201)


class TakeHandler(GalleryHandler):
    """Take a notebook case into this instance: POST {asset, version?}. The platform counts
    the use and lists the files; each is downloaded, its size and SHA-256 checked, into a
    hidden folder that is renamed to gallery/<slug> (or <slug>-2 ...) once all are whole.
    A mismatch answers 409 naming the file, and nothing is kept."""

    @web.authenticated
    @authorized
    async def post(self):
        body = self.json_body()
        asset_id = body.get("asset")
        if isinstance(asset_id, bool) or not isinstance(asset_id, int) or asset_id < 1:
            raise web.HTTPError(400, 'Send {"asset": N}: the number of a gallery asset.')
        version = body.get("version")
        if version is not None and (
            isinstance(version, bool) or not isinstance(version, int) or version < 1
        ):
            raise web.HTTPError(400, "version must be a version number of the asset (1, 2, ...).")
        asset = await self.api("GET", asset_path(asset_id))
        if asset.get("kind") != "notebook":
            raise web.HTTPError(
                400,
                f"Gallery asset {asset_id} is a {asset.get('kind')}, not a notebook case: only "
                "notebook cases are copied into an instance. Use it from the gallery view.",
            )
        version = version or asset.get("version")
        use = {"version": version}
        if self.platform.instance:
            use["instance"] = self.platform.instance
        answer = await self.api("POST", asset_path(asset_id, "use"), use, limit=USE_LIMIT)
        files = answer.get("files") if isinstance(answer, dict) else None
        if not isinstance(files, list) or not files:
            raise web.HTTPError(502, f"The platform listed no files of gallery asset {asset_id}.")
        checked = []
        for f in files:
            if not isinstance(f, dict):
                raise web.HTTPError(502, "The platform sent an unusable file list.")
            sha, size = f.get("sha256"), f.get("size")
            if not isinstance(sha, str) or not SHA256.match(sha) or not isinstance(size, int):
                raise web.HTTPError(
                    502, f"The platform sent no SHA-256 or size of {f.get('path')!r}."
                )
            checked.append((safe_relative(f.get("path"), "file path"), size, sha))
        folder = safe_relative(answer.get("folder") or f"{TAKE_FOLDER}/asset-{asset_id}", "folder")
        notebook = answer.get("notebook")
        notebook = safe_relative(notebook, "notebook") if notebook else None

        base = await asyncio.to_thread(
            take_base, self.contents_manager.root_dir, self.extensionapp.storage_path
        )
        try:
            partial = await asyncio.to_thread(make_partial, base)
        except OSError as e:
            raise self.disk_error(TAKE_FOLDER, e) from None
        try:
            for relative, size, sha in checked:
                await self.download(asset_id, version, relative, size, sha, partial)
            target = await asyncio.to_thread(place, partial, folder, base)
        except BaseException:
            await asyncio.to_thread(shutil.rmtree, partial, True)
            raise
        where = await asyncio.to_thread(
            lambda: target.resolve().relative_to(Path(self.contents_manager.root_dir).resolve())
        )
        where = where.as_posix()
        self.log.info(
            "workbench_lab: took gallery asset %s version %s into %s (%d files)",
            asset_id,
            version,
            where,
            len(checked),
        )
        self.write_json(
            {
                "folder": where,
                "notebook": f"{where}/{notebook}" if notebook else None,
                "files": [{"path": str(p), "size": s, "sha256": h} for p, s, h in checked],
                "asset": asset_id,
                "version": version,
            },
            status=201,
        )

    async def download(self, asset_id, version, relative, size: int, sha: str, partial: Path):
        """Write one file below the partial folder, hashed as it comes; HTTPError 409 when
        its bytes are not the ones listed."""
        path = asset_path(asset_id, "versions", str(version), "files", quote(str(relative)))
        digest = hashlib.sha256()
        written = 0
        try:
            file = await asyncio.to_thread(open_for_writing, partial, relative)
        except OSError as e:
            raise self.disk_error(relative, e) from None
        try:
            async with self.platform.client.api_stream("GET", path, limit=DOWNLOAD_LIMIT) as resp:
                sent = resp.headers.get("X-Workbench-SHA256")
                if sent and sent != sha:
                    raise self.mismatch(relative, asset_id, version, "its listed SHA-256")
                async for chunk in resp.aiter_bytes():
                    written += len(chunk)
                    if written > size:
                        raise self.mismatch(relative, asset_id, version, "its listed size")
                    await asyncio.to_thread(write_chunk, file, digest, chunk)
        except WorkbenchError as e:
            raise self.refusal(e) from None
        except OSError as e:
            raise self.disk_error(relative, e) from None
        finally:
            await asyncio.to_thread(file.close)
        if written != size:
            raise self.mismatch(relative, asset_id, version, "its listed size")
        if digest.hexdigest() != sha:
            raise self.mismatch(relative, asset_id, version, "its SHA-256")

    def mismatch(self, relative, asset_id, version, what: str) -> web.HTTPError:
        self.log.warning(
            "workbench_lab: file %s of gallery asset %s version %s does not match %s",
            relative,
            asset_id,
            version,
            what,
        )
        return web.HTTPError(
            409,
            f"File '{relative}' of gallery asset {asset_id} version {version} does not match "
            f"{what} (damaged on the way or in the store): nothing was written. Try again; if "
            "it persists, ask its owner to publish it again.",
        )

    @staticmethod
    def disk_error(relative, e: OSError) -> web.HTTPError:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            return web.HTTPError(
                507, f"No space left for '{relative}': free some of this instance's storage."
            )
        return web.HTTPError(500, f"Cannot write '{relative}': {e.strerror or e}.")


def routes() -> list[tuple[str, type]]:
    """The extension's gallery routes under <base_url>/workbench/gallery/."""
    asset = r"/workbench/gallery/assets/([0-9]{1,9})"
    return [
        (r"/workbench/gallery/options", OptionsHandler),
        (r"/workbench/gallery/assets", AssetsHandler),
        (asset, AssetHandler),
        (asset + r"/star", StarHandler),
        (asset + r"/use", UseHandler),
        (asset + r"/versions/([0-9]{1,9})/files", FilesHandler),
        (asset + r"/versions/([0-9]{1,9})/preview", PreviewHandler),
        (r"/workbench/gallery/publish", PublishHandler),
        (r"/workbench/gallery/take", TakeHandler),
    ]
