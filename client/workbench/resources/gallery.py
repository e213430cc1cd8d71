"""The gallery: publish notebook cases, saved images, models and datasets; search, star, use.

    asset = await client.gallery.publish("cases/mnist", title="MNIST in 5 minutes",
                                         description="A **small** CNN", tags=["vision"])
    await client.gallery.publish(model="mnist", version=2, title="MNIST CNN")
    found = await client.gallery.search("mnist", kind="model", sort="stars")
    await client.gallery.use(found[0]["id"], name="my-mnist")     # a model of yours now
    await client.gallery.use(asset["id"], path="mnist-case")      # the notebook's files here

With the sync client (and `import workbench`: workbench.gallery.publish(...)) the same calls
block. In a kernel of an instance a notebook's path is one of this instance's files (relative
to the working folder, or absolute below its storage); elsewhere it is a path of the storage
of `instance`, relative to its work folder.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import WorkbenchError
from . import Namespace, segment

KINDS = ("notebook", "image", "model", "dataset")
SORTS = ("newest", "most_used", "stars")
VISIBILITIES = ("everyone", "workspace")
# an instance's storage as its containers mount it: what a notebook's path is relative to
STORAGE_DIR = "/home/jovyan/work"
# where use() puts a notebook case when no path is given, relative to the working folder
DEFAULT_FOLDER = "gallery"
SLUG_RUN = re.compile(r"[^a-z0-9]+")
CHUNK = 1 << 20


class GalleryInputError(WorkbenchError, ValueError):
    """What publish() or use() were given cannot be sent (no source, two sources, a path
    outside the instance's storage, a target folder in the way). Raised before any request
    that changes something."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(status, message)


class FileMismatch(WorkbenchError):
    """A downloaded file's size or SHA-256 is not what the gallery recorded: nothing was kept."""

    def __init__(self, message: str):
        super().__init__(409, message)


class SearchResult(list):
    """The assets a search found (this page of them): a list of asset dicts, with .total
    (how many match in all) and .tags ({tag: count} over the matches)."""

    def __init__(self, assets: Iterable[dict], total: int = 0, tags: dict | None = None):
        super().__init__(assets)
        self.total = total
        self.tags = dict(tags or {})

    def __repr__(self) -> str:
        return f"<SearchResult {len(self)} of {self.total}: {list.__repr__(self)}>"


def asset_path(asset_id) -> str:
    return f"gallery/assets/{_asset_id(asset_id)}"


def _asset_id(asset) -> int:
    """An asset's id from an id, its text or an asset dict."""
    if isinstance(asset, dict):
        asset = asset.get("id")
    if isinstance(asset, bool):
        raise GalleryInputError(f"{asset!r} is not a gallery asset's id (a number).")
    try:
        value = int(str(asset).strip())
    except (TypeError, ValueError):
        raise GalleryInputError(f"{asset!r} is not a gallery asset's id (a number).") from None
    if value < 1:
        raise GalleryInputError(f"{asset!r} is not a gallery asset's id (1 or more).")
    return value


def slug(title: str, asset_id: int) -> str:
    """The folder name a notebook case is taken into (as the platform makes it)."""
    text = SLUG_RUN.sub("-", (title or "").lower()).strip("-")[:40].strip("-")
    return text or f"asset-{asset_id}"


def tag_list(tags) -> list[str]:
    """Tags from a list or a comma-separated text, stripped, without empty ones."""
    if tags is None:
        return []
    if isinstance(tags, str):
        tags = tags.split(",")
    return [str(t).strip() for t in tags if str(t).strip()]


def storage_path(
    path: str | os.PathLike, instance: str | None, storage_dir: str = STORAGE_DIR
) -> tuple[str, str]:
    """(instance, path relative to its storage) of a notebook or folder to publish.

    In a kernel of an instance (and instance None or this one) `path` is a file of this
    instance: relative to the working folder or absolute, it must exist and be on the
    storage. Elsewhere `instance` is required and `path` is relative to its storage (an
    absolute path below the storage is taken as its part below it). GalleryInputError
    otherwise. Blocking (it may look at the disk)."""
    here = os.environ.get("JUPYTERHUB_SERVER_NAME") or None
    text = os.fspath(path).strip()
    if not text:
        raise GalleryInputError("Give the notebook (.ipynb) or folder to publish.")
    storage = Path(storage_dir)
    if here and instance in (None, here):
        local = Path(os.path.abspath(os.path.expanduser(text)))
        if not local.exists():
            raise GalleryInputError(f"{text} does not exist in this instance.")
        try:
            resolved, root = local.resolve(), storage.resolve()
        except OSError as e:
            raise GalleryInputError(f"{text}: {e}") from None
        if resolved != root and root not in resolved.parents:
            raise GalleryInputError(
                f"{text} is not on this instance's storage ({storage_dir}): only files kept "
                "there can be published. Move or copy them there first."
            )
        rel = resolved.relative_to(root).as_posix()
        return here, rel or "."
    if not instance:
        raise GalleryInputError(
            "Outside an instance, say which of your instances holds the notebook: "
            "instance='nb1' (path relative to its storage)."
        )
    posix = PurePosixPath(text.replace("\\", "/"))
    if posix.is_absolute():
        try:
            posix = posix.relative_to(storage_dir)
        except ValueError:
            raise GalleryInputError(
                f"{text} is not on the storage of instance {instance} ({storage_dir}): give "
                "a path relative to its storage, for example cases/mnist."
            ) from None
    if ".." in posix.parts:
        raise GalleryInputError(f"{text}: '..' is not allowed; give a path inside the storage.")
    return instance, posix.as_posix() or "."


def _safe_relative(path: str) -> PurePosixPath:
    """A file path of an asset, checked: relative, no "..", no empty parts."""
    rel = PurePosixPath(str(path))
    if (
        not str(path)
        or rel.is_absolute()
        or "\\" in str(path)
        or any(part in ("", ".", "..") for part in str(path).split("/"))
    ):
        raise WorkbenchError(502, f"The gallery named a file {path!r} that cannot be written.")
    return rel


def _named(value, what: str) -> str:
    """A model's or dataset's "name" or "owner/name" from text or a Model/Dataset."""
    if isinstance(value, str):
        return value.strip()
    owner, name = getattr(value, "owner", None), getattr(value, "name", None)
    if owner and name:
        return f"{owner}/{name}"
    raise GalleryInputError(f"{what} must be a name, 'owner/name' or a {what.capitalize()}.")


def _versioned(value, version):
    """The version given, else the one an object holds (a DatasetVersion's .version)."""
    if version is not None:
        return version
    held = getattr(value, "version", None)
    return held if isinstance(held, int) else None


def _ready_target(target: Path) -> None:
    """The target folder of a notebook case must not exist, or be an empty folder."""
    if target.is_dir():
        if any(target.iterdir()):
            raise GalleryInputError(
                f"{target} already holds files: give another path (nothing is overwritten).",
                409,
            )
    elif target.exists():
        raise GalleryInputError(f"{target} is a file: give a folder path.", 409)


def _free_folder(base: Path) -> Path:
    """base, or base-2, base-3, ... the first that does not exist (or is an empty folder)."""
    candidate, n = base, 1
    while candidate.exists() and not (candidate.is_dir() and not any(candidate.iterdir())):
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def _notebook_target(path, title: str, asset_id: int) -> Path:
    """Where a notebook case goes: `path` (absent or an empty folder), else the first free
    one of ./gallery/<slug>, -2, -3, ..."""
    if path is None:
        return _free_folder(Path.cwd() / DEFAULT_FOLDER / slug(title, asset_id))
    target = Path(os.path.abspath(os.path.expanduser(os.fspath(path))))
    _ready_target(target)
    return target


def _place(partial: Path, target: Path) -> None:
    """Move the finished temporary folder to the target (an empty target folder is replaced)."""
    if target.is_dir():
        target.rmdir()  # empty, checked before the download; not empty: OSError, partial stays
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(partial, target)


class Gallery(Namespace):
    """Assets others published and yours: notebook cases, saved images, model versions,
    dataset versions. Visible to you: your own, your workspaces' and everyone's."""

    async def publish(
        self,
        path: str | os.PathLike | None = None,
        *,
        image: str | None = None,
        model=None,
        dataset=None,
        version: int | None = None,
        title: str | None = None,
        description: str = "",
        tags: Iterable[str] | str = (),
        visibility: str = "everyone",
        workspace: str | None = None,
        instance: str | None = None,
        asset=None,
        notebook: str | None = None,
        notes: str | None = None,
    ) -> dict:
        """Publish a snapshot to the gallery; the asset's JSON.

        One source: path (a .ipynb notebook, or a folder holding at least one; `notebook`
        names the main one in a folder), image ("saved:<you>/<name>:<tag>" or "<name>:<tag>",
        one of your saved images), model ("name", with version: default its latest) or
        dataset ("name", with version: default its latest). title (1-120 characters),
        description (Markdown), tags (lower-case words with '-'), visibility "everyone" or
        "workspace" (with workspace: one of yours).

        asset: publish a new version of that asset of yours instead (same kind; its title,
        description, tags and visibility stay: change them with update()); notes say what
        changed. Later edits of the source change nothing published.
        """
        source = await self._source(path, image, model, dataset, version, instance, notebook)
        kind = source.pop("_kind")
        if asset is not None:
            body: dict[str, Any] = {"source": source}
            if notes:
                body["notes"] = notes
            return await self._client.api("POST", f"{asset_path(asset)}/versions", body)
        if visibility not in VISIBILITIES:
            raise GalleryInputError(
                f"visibility {visibility!r} is not one of: everyone, workspace."
            )
        body = {
            "kind": kind,
            "title": title if title is not None else "",
            "description": description or "",
            "tags": tag_list(tags),
            "visibility": visibility,
            "source": source,
        }
        if workspace is not None:
            body["workspace"] = workspace
        return await self._client.api("POST", "gallery/assets", body)

    async def _source(self, path, image, model, dataset, version, instance, notebook) -> dict:
        """The source of a publish (its kind under "_kind"); GalleryInputError unless one."""
        candidates = {"path": path, "image": image, "model": model, "dataset": dataset}
        given = [name for name, value in candidates.items() if value is not None and value != ""]
        if len(given) != 1:
            raise GalleryInputError(
                "Give one thing to publish: a notebook or folder (path), image=, model= or dataset="
                + (f" (not {' and '.join(given)})." if given else ".")
            )
        if path not in (None, ""):
            if version is not None:
                raise GalleryInputError("version= is for models and datasets, not notebooks.")
            where, rel = await asyncio.to_thread(storage_path, path, instance)
            source = {"_kind": "notebook", "instance": where, "path": rel}
            if notebook:
                source["notebook"] = str(notebook)
            return source
        if notebook:
            raise GalleryInputError("notebook= names the main notebook of a published folder.")
        if image not in (None, ""):
            if version is not None:
                raise GalleryInputError("version= is for models and datasets, not images.")
            return {"_kind": "image", "image": str(image).strip()}
        if model is not None:
            name = _named(model, "model")
            version = _versioned(model, version)
            if version is None:
                version = await self._latest_model(name)
            return {"_kind": "model", "model": name, "version": int(version)}
        name = _named(dataset, "dataset")
        version = _versioned(dataset, version)
        if version is None:
            version = await self._latest_dataset(name)
        return {"_kind": "dataset", "dataset": name, "version": int(version)}

    async def _latest_model(self, name: str) -> int:
        from .models import model_path

        owner, _, short = name.rpartition("/")
        owner = await self._client.user_name(owner or None)
        data = await self._client.api("GET", model_path(owner, short))
        versions = [v["version"] for v in data.get("versions") or []]
        latest = data.get("latest") or (max(versions) if versions else None)
        if latest is None:
            raise GalleryInputError(f"Model {owner}/{short} has no version to publish.")
        return int(latest)

    async def _latest_dataset(self, name: str) -> int:
        from .datasets import dataset_path

        owner, _, short = name.rpartition("/")
        owner = await self._client.user_name(owner or None)
        answer = await self._client.api("GET", f"{dataset_path(owner, short)}/versions")
        if isinstance(answer, dict):
            answer = answer.get("versions") or []
        ready = [v["version"] for v in answer if v.get("state", "ready") == "ready"]
        if not ready:
            raise GalleryInputError(
                f"Dataset {owner}/{short} has no published version ready: publish one first."
            )
        return int(max(ready))

    async def search(
        self,
        q: str | None = None,
        *,
        tag: str | Iterable[str] | None = None,
        kind: str | None = None,
        sort: str = "newest",
        mine: bool = False,
        owner: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> SearchResult:
        """Assets you may see matching q (in titles, descriptions, tags), all of the tags,
        the kind (notebook, image, model, dataset), the owner, or only yours (mine=True);
        sorted newest first, by uses (most_used) or by stars. A SearchResult: a list of asset
        dicts with .total and .tags."""
        if kind is not None and kind not in KINDS:
            raise GalleryInputError(f"kind {kind!r} is not one of: {', '.join(KINDS)}.")
        if sort not in SORTS:
            raise GalleryInputError(f"sort {sort!r} is not one of: {', '.join(SORTS)}.")
        params: list[tuple[str, str]] = []
        if q:
            params.append(("q", q))
        params += [("tag", t) for t in tag_list(tag)]
        if kind:
            params.append(("kind", kind))
        if owner:
            params.append(("owner", owner))
        if mine:
            params.append(("mine", "true"))
        params += [("sort", sort), ("limit", str(int(limit))), ("offset", str(int(offset)))]
        answer = await self._client.api("GET", "gallery/assets", params=params)
        return SearchResult(
            answer.get("assets") or [], answer.get("total") or 0, answer.get("tags")
        )

    async def list(self, **filters) -> SearchResult:
        """Every asset you may see (or those the filters of search() pick)."""
        return await self.search(**filters)

    async def get(self, asset) -> dict:
        """An asset with its versions (each version's source only for its owner)."""
        return await self._client.api("GET", asset_path(asset))

    async def files(self, asset, version: int | None = None) -> list[dict]:
        """The files of a version (default: the latest): [{"path", "size", "sha256"}]."""
        if version is None:
            version = (await self.get(asset))["version"]
        answer = await self._client.api("GET", f"{asset_path(asset)}/versions/{int(version)}/files")
        return answer.get("files") if isinstance(answer, dict) else answer

    async def preview(self, asset, version: int | None = None) -> str:
        """A notebook case's read-only HTML rendering (of a version: default the latest)."""
        if version is None:
            version = (await self.get(asset))["version"]
        return await self._client.api_text(
            "GET", f"{asset_path(asset)}/versions/{int(version)}/preview"
        )

    async def update(
        self,
        asset,
        *,
        title: str | None = None,
        description: str | None = None,
        tags: Iterable[str] | str | None = None,
        visibility: str | None = None,
        workspace: str | None = None,
    ) -> dict:
        """Change an asset's title, description, tags or visibility (yours; administrators:
        anyone's); the asset."""
        body: dict[str, Any] = {}
        if title is not None:
            body["title"] = title
        if description is not None:
            body["description"] = description
        if tags is not None:
            body["tags"] = tag_list(tags)
        if visibility is not None:
            if visibility not in VISIBILITIES:
                raise GalleryInputError(
                    f"visibility {visibility!r} is not one of: everyone, workspace."
                )
            body["visibility"] = visibility
        if workspace is not None:
            body["workspace"] = workspace
        if not body:
            raise GalleryInputError(
                "Nothing to change: give title=, description=, tags=, visibility= or workspace=."
            )
        return await self._client.api("PATCH", asset_path(asset), body)

    async def unpublish(self, asset) -> None:
        """Remove an asset with all its versions from the gallery (what others already took
        stays theirs)."""
        await self._client.api("DELETE", asset_path(asset))

    async def star(self, asset) -> dict:
        """Star an asset; the asset (starred true)."""
        return await self._client.api("PUT", f"{asset_path(asset)}/star")

    async def unstar(self, asset) -> dict:
        """Take your star back; the asset."""
        return await self._client.api("DELETE", f"{asset_path(asset)}/star")

    async def use(
        self,
        asset,
        version: int | None = None,
        *,
        name: str | None = None,
        path: str | os.PathLike | None = None,
    ) -> dict:
        """Take a version of an asset (default: the latest); the use is counted.

        A notebook case: its files are downloaded into `path` (default ./gallery/<title>, or
        -2, -3... when taken) with each size and SHA-256 checked; nothing is kept when one
        does not match (FileMismatch naming the file). The answer has "path" (the local
        folder) and "notebook_path" (its main notebook there).
        An image: you may start instances from "image" (saved:<owner>/gallery-<id>:v<N>).
        A model or dataset: a new one of yours, named `name` (default the source's name):
        "model" / "dataset" and "version" say which.
        """
        asset_id = _asset_id(asset)
        data = await self.get(asset_id)
        kind = data.get("kind")
        if kind == "notebook":
            if name is not None:
                raise GalleryInputError("name= is for models and datasets; a notebook takes path=.")
            return await self._use_notebook(data, version, path)
        if path is not None:
            raise GalleryInputError(f"path= is for notebook cases; asset {asset_id} is a {kind}.")
        body: dict[str, Any] = {}
        if version is not None:
            body["version"] = int(version)
        if name is not None:
            if kind == "image":
                raise GalleryInputError("An image takes no name=: use it as it is.")
            body["name"] = name
        return await self._client.api("POST", f"{asset_path(asset_id)}/use", body)

    async def _use_notebook(self, data: dict, version, path) -> dict:
        asset_id = int(data["id"])
        target = await asyncio.to_thread(_notebook_target, path, data.get("title", ""), asset_id)
        body: dict[str, Any] = {}
        if version is not None:
            body["version"] = int(version)
        here = os.environ.get("JUPYTERHUB_SERVER_NAME")
        if here:
            body["instance"] = here
        answer = await self._client.api("POST", f"{asset_path(asset_id)}/use", body)
        number = int(answer.get("version") or version or data["version"])
        files = answer.get("files")
        if files is None:
            files = await self.files(asset_id, number)
        await self._download(asset_id, number, files, target)
        main = answer.get("notebook") or (data.get("meta") or {}).get("notebook")
        result = dict(answer)
        result["path"] = str(target)
        result["notebook_path"] = str(target.joinpath(*PurePosixPath(main).parts)) if main else None
        return result

    async def _download(self, asset_id: int, version: int, files: list[dict], target: Path):
        """Every file into a temporary folder beside target, checked, then renamed to it."""
        checked = [(_safe_relative(f["path"]), f) for f in files]
        await asyncio.to_thread(target.parent.mkdir, parents=True, exist_ok=True)
        partial = Path(
            await asyncio.to_thread(
                tempfile.mkdtemp, prefix=f".{target.name}.", suffix=".part", dir=target.parent
            )
        )
        try:
            for rel, entry in checked:
                await self._download_file(asset_id, version, rel, entry, partial)
            await asyncio.to_thread(_place, partial, target)
        except BaseException:
            await asyncio.to_thread(shutil.rmtree, partial, True)
            raise

    async def _download_file(
        self, asset_id: int, version: int, rel: PurePosixPath, entry: dict, root: Path
    ):
        quoted = "/".join(segment(part) for part in rel.parts)
        url = f"{asset_path(asset_id)}/versions/{version}/files/{quoted}"
        local = root.joinpath(*rel.parts)
        await asyncio.to_thread(local.parent.mkdir, parents=True, exist_ok=True)
        digest, size = hashlib.sha256(), 0
        f = await asyncio.to_thread(local.open, "wb")
        try:
            async with self._client.api_stream("GET", url, limit=self._client.timeout) as resp:
                async for chunk in resp.aiter_bytes(CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
                    await asyncio.to_thread(f.write, chunk)
        finally:
            await asyncio.to_thread(f.close)
        expected = entry.get("sha256")
        where = f"File '{rel.as_posix()}' of gallery asset {asset_id} version {version}"
        if entry.get("size") is not None and size != int(entry["size"]):
            raise FileMismatch(
                f"{where} arrived with {size} bytes, not {entry['size']}: nothing was kept. "
                "Try again; if it persists, ask its owner to publish it again."
            )
        if expected and digest.hexdigest() != expected:
            raise FileMismatch(
                f"{where} does not match its SHA-256 (got {digest.hexdigest()[:12]}..., "
                f"expected {expected[:12]}...): nothing was kept. Ask its owner to publish it "
                "again."
            )
