"""Notebook cases: a notebook, or a folder holding some, copied from an instance's storage."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import stat
import threading
from pathlib import Path, PurePosixPath

from workbench.names import instance_name_problem

from hub.service.api import APIError
from inference_bridge.model_files import seal
from inference_bridge.storage_copy import StorageCopyError, copy_image
from training_bridge.files import FilesError, relative_path

from . import KindContext, Snapshot, human_size, slug

log = logging.getLogger("workbench.gallery")

CHUNK = 1024 * 1024
MAX_FILES = 10_000
# JupyterLab's autosaves: copied with a folder, never part of what is published
SKIPPED_FOLDERS = {".ipynb_checkpoints"}
TOO_BIG = "an asset of the gallery may be: leave data out of the folder, or publish less."
MAX_REASON = 300
_exporters = threading.local()


class NotebookError(ValueError):
    """What the copied files cannot be published as (a link, no notebook, one that does not
    parse); the message says which file and why."""


def parse_notebook(data: bytes, name: str):
    """The notebook read as version 4 and validated; NotebookError saying why not."""
    import nbformat

    try:
        nb = nbformat.reads(data.decode("utf-8"), as_version=4)
        nbformat.validate(nb)
    except Exception as e:  # noqa: BLE001 - any reason it does not parse is the user's to fix
        why = " ".join(str(e).split()) or type(e).__name__
        if len(why) > MAX_REASON:
            why = why[: MAX_REASON - 3] + "..."
        raise NotebookError(f"Notebook {name!r} does not parse: {why}") from None
    return nb


def render_preview(nb, folder: Path | None = None) -> str:
    """A notebook as read-only HTML (JupyterLab's look, images embedded, nothing to run)."""
    # one exporter per worker thread: making one loads and compiles its templates (about
    # ten times what rendering a small notebook costs)
    exporter = getattr(_exporters, "html", None)
    if exporter is None:
        from nbconvert import HTMLExporter

        exporter = _exporters.html = HTMLExporter(template_name="lab", embed_images=True)
    resources = {"metadata": {"path": str(folder)}} if folder is not None else {}
    html, _ = exporter.from_notebook_node(nb, resources=resources)
    return html


def walk(root: Path, limit: int) -> list[dict]:
    """Every regular file below root ([{path, size, sha256}], in path order), refusing links
    and anything not a regular file by name; NotebookError when over `limit` bytes."""
    files: list[dict] = []
    total = 0
    for folder, dirs, names in os.walk(root, followlinks=False):
        rel_folder = PurePosixPath(Path(folder).relative_to(root).as_posix())
        for name in list(dirs):
            st = os.lstat(os.path.join(folder, name))
            if stat.S_ISLNK(st.st_mode):
                raise NotebookError(
                    f"{str(rel_folder / name)!r} is a symbolic link: links are not "
                    "published; replace it with the folder itself."
                )
            if name in SKIPPED_FOLDERS:
                dirs.remove(name)
        dirs.sort()
        for name in sorted(names):
            path = os.path.join(folder, name)
            rel = rel_folder / name
            st = os.lstat(path)
            if not stat.S_ISREG(st.st_mode):
                what = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a regular file"
                raise NotebookError(
                    f"{str(rel)!r} is {what}: links are not published; replace it with the "
                    "file itself."
                )
            total += st.st_size
            if total > limit:
                raise NotebookError(
                    f"The notebook case is larger than the {human_size(limit)} {TOO_BIG}"
                )
            if len(files) >= MAX_FILES:
                raise NotebookError(f"The notebook case holds more than {MAX_FILES} files.")
            digest, size = hashlib.sha256(), 0
            with open(path, "rb") as f:
                while chunk := f.read(CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
            files.append({"path": str(rel), "size": size, "sha256": digest.hexdigest()})
    return sorted(files, key=lambda f: f["path"])


def main_notebook(notebooks: list[str], wanted: str | None) -> str:
    """The notebook the case opens on: the one named, else the shallowest (then first by
    name)."""
    if wanted is not None:
        if wanted not in notebooks:
            listed = ", ".join(notebooks[:10])
            raise NotebookError(
                f"source.notebook {wanted!r} is not among the notebooks copied ({listed})."
            )
        return wanted
    return sorted(notebooks, key=lambda p: (len(PurePosixPath(p).parts), p))[0]


class NotebookKind:
    """A notebook case: its files copied with the engine's copier, every notebook checked
    with nbformat, the main one rendered for the preview."""

    name = "notebook"

    def check_source(self, source) -> dict:
        """{"instance", "path", "notebook"?}: path relative to the instance's storage."""
        example = '{"instance": "nb1", "path": "cases/mnist", "notebook": "train.ipynb"}'
        if not isinstance(source, dict):
            raise APIError(400, f"source must be an object, for example {example}.")
        unknown = sorted(str(k) for k in set(source) - {"instance", "path", "notebook"})
        if unknown:
            raise APIError(
                400,
                f"A notebook source takes instance, path, notebook; unknown field(s): "
                f"{', '.join(unknown)}.",
            )
        problem = instance_name_problem(source.get("instance"))
        if problem:
            raise APIError(400, f"source.instance: {problem}")
        if source.get("path") in (None, "", "."):
            raise APIError(
                400,
                "source.path is required: the notebook or folder in the instance's storage, "
                f"for example {example}.",
            )
        try:
            path = str(relative_path(source.get("path"), "source.path"))
            out = {"instance": source["instance"], "path": path}
            if source.get("notebook") is not None:
                notebook = str(relative_path(source["notebook"], "source.notebook"))
                if not notebook.endswith(".ipynb"):
                    raise APIError(400, f"source.notebook {notebook!r} must be a .ipynb file.")
                out["notebook"] = notebook
        except FilesError as e:
            raise APIError(400, str(e)) from None
        return out

    def use_fields(self) -> tuple[str, ...]:
        return ("instance",)

    async def snapshot(
        self, ctx: KindContext, owner: str, source: dict, asset_id: int, version: int
    ) -> Snapshot:
        if ctx.copier is None:
            raise APIError(
                400,
                "This platform's backend cannot copy from instances' storage yet, so notebooks "
                "cannot be published to the gallery here.",
            )
        servers = await ctx.hub.servers(owner) or {}
        instance = source["instance"]
        if instance not in servers:
            raise APIError(400, f"You have no instance {instance!r} (source.instance).")
        image = await copy_image(ctx.policy, ctx.image_checker, owner, servers[instance])
        limit = int(ctx.settings.max_asset_bytes)
        staging = await asyncio.to_thread(ctx.staging, True)
        try:
            try:
                await ctx.copier.copy(
                    owner, instance, image, source["path"], staging, limit, too_big=TOO_BIG
                )
            except StorageCopyError as e:
                raise APIError(413 if str(e).endswith(TOO_BIG) else 400, str(e)) from None
            try:
                return await asyncio.to_thread(self._store, ctx, source, staging, limit)
            except NotebookError as e:
                code = 413 if str(e).endswith(TOO_BIG) else 400
                raise APIError(code, str(e)) from None
        finally:
            await asyncio.to_thread(ctx.discard, staging)

    def _store(self, ctx: KindContext, source: dict, staging: Path, limit: int) -> Snapshot:
        """Check the copied files, render the preview and put everything in the blob store
        (blocking: runs in a worker thread)."""
        seal(staging)
        files = walk(staging, limit)
        notebooks = [f["path"] for f in files if f["path"].endswith(".ipynb")]
        if not notebooks:
            raise NotebookError(
                f"{source['path']!r} holds no notebook: publish a .ipynb file, or a folder "
                "holding at least one."
            )
        parsed = {}
        for name in notebooks:
            parsed[name] = parse_notebook((staging / name).read_bytes(), name)
        main = main_notebook(notebooks, source.get("notebook"))
        nb = parsed[main]
        html = render_preview(nb, (staging / main).parent)
        preview_sha, _ = ctx.blobs.put_bytes_blocking(html.encode("utf-8"))
        for entry in files:
            ctx.blobs.put_file_blocking(
                staging / entry["path"], move=True, digest=(entry["sha256"], entry["size"])
            )
        meta = {
            "notebook": main,
            "notebooks": notebooks,
            "preview_sha256": preview_sha,
            "cells": len(nb.cells),
        }
        return Snapshot(
            files=files,
            meta=meta,
            size=sum(f["size"] for f in files),
            source=dict(source),
        )

    async def use(
        self, ctx: KindContext, caller: dict, asset: dict, version: dict, body: dict
    ) -> dict:
        """The files to write and where: the client that downloads them writes them."""
        instance = body.get("instance")
        if instance is not None:
            problem = instance_name_problem(instance)
            if problem:
                raise APIError(400, f"instance: {problem}")
            servers = await ctx.hub.servers(caller["name"]) or {}
            if instance not in servers:
                raise APIError(400, f"You have no instance {instance!r} (instance).")
        return {
            "kind": "notebook",
            "version": version["version"],
            "files": version["files"],
            "notebook": version["meta"].get("notebook"),
            "folder": f"gallery/{slug(asset['title'], asset['id'])}",
        }
