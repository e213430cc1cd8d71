"""Model versions in the gallery: their files in the blob store, registered again by users."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from pathlib import Path, PurePosixPath

from hub.service.api import APIError
from inference_bridge import store as models_store
from inference_bridge.model_files import ModelFilesError, open_below
from inference_bridge.model_spec import MAX_DESCRIPTION, SpecError, check_name
from inference_bridge.store import READY
from training_bridge.datasets.blobs import BlobError

from . import KindContext, Snapshot

log = logging.getLogger("workbench.gallery")

SOURCE_KEYS = ("model", "version")
CHUNK = 1024 * 1024
# what a version's meta keeps of the registration, besides its files
SPEC_FIELDS = ("format", "image", "command", "predictor", "signature")


def check_ref_version(source, kind: str, example: str) -> dict:
    """{kind: "name" | "owner/name", "version": N} of a model or dataset source (shape only)."""
    if not isinstance(source, dict):
        raise APIError(400, f'A {kind} asset\'s source is {{"{kind}": "{example}", "version": 1}}.')
    unknown = sorted(str(k) for k in set(source) - {kind, "version"})
    if unknown:
        raise APIError(
            400, f"A {kind} source takes {kind} and version; not {', '.join(unknown)} (source)."
        )
    ref = source.get(kind)
    if not isinstance(ref, str) or not ref.strip() or ref.count("/") > 1:
        raise APIError(
            400, f'source.{kind} must name one of your {kind}s: "{example}" or "<you>/{example}".'
        )
    version = source.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or not 0 < version < 10**9:
        raise APIError(
            400, f"source.version must be the number of one of the {kind}'s versions (1, 2, ...)."
        )
    return {kind: ref.strip(), "version": version}


def own_ref(ref: str, owner: str, kind: str) -> str:
    """The name in "name" or "<owner>/name"; 403 when it is another user's."""
    other, _, name = ref.rpartition("/")
    if other and other != owner:
        raise APIError(
            403,
            f"You can publish only your own {kind}s: {ref} belongs to {other}. Take it from "
            f"the gallery or ask {other} to publish it.",
        )
    return name


def damaged(asset: dict, version: dict, path: str) -> APIError:
    return APIError(
        409,
        f"File {path!r} of gallery asset {asset['id']} version {version['version']} no longer "
        "matches its SHA-256 (stored copy damaged): ask its owner to publish it again.",
    )


def copy_blob(blobs, entry: dict, dest: Path, on_mismatch) -> None:
    """Write a snapshot file from the blob store to dest (a new file), hashing it on the
    way; on_mismatch() (an exception) when its bytes are not those published (blocking)."""
    digest, size = hashlib.sha256(), 0
    try:
        source = blobs.open_blocking(entry["sha256"])
    except BlobError:
        raise on_mismatch() from None
    with source, open(dest, "xb") as out:
        while chunk := source.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
            out.write(chunk)
    if size != entry["size"] or digest.hexdigest() != entry["sha256"]:
        raise on_mismatch()


def target_of(folder: Path, path: str) -> Path:
    """Where a snapshot's file goes below folder (its path relative, without '..')."""
    rel = PurePosixPath(path)
    if rel.is_absolute() or not rel.parts or any(p in ("", ".", "..") for p in rel.parts):
        raise APIError(409, f"The snapshot holds a file with an unusable path {path!r}.")
    return folder.joinpath(*rel.parts)


class ModelKind:
    """A ready version of one of the publisher's models: its files (checked against the
    registry's SHA-256s as they are stored) and what registering it again needs."""

    name = "model"

    def check_source(self, source) -> dict:
        return check_ref_version(source, "model", "mnist-cnn")

    def use_fields(self) -> tuple[str, ...]:
        return ("name",)

    @staticmethod
    def _registry(ctx: KindContext):
        registry = ctx.get("model_registry")
        if registry is None:
            raise APIError(400, "Models are not enabled on this platform.")
        return registry

    async def snapshot(
        self, ctx: KindContext, owner: str, source: dict, asset_id: int, version: int
    ) -> Snapshot:
        registry = self._registry(ctx)
        name = own_ref(source["model"], owner, "model")
        number = source["version"]

        def read(session):
            model = models_store.find_model(session, owner, name)
            if model is None:
                return None, None
            row = models_store.find_model_version(session, model, number)
            return (
                models_store.model_model(model, None),
                models_store.version_model(model, row) if row is not None else None,
            )

        model, row = await ctx.db.run(read)
        if model is None:
            raise APIError(
                400, f"You have no model {name!r} (source.model); GET /models lists yours."
            )
        if row is None:
            raise APIError(
                400,
                f"Model {owner}/{name} has no version {number} (source.version); "
                f"GET /models/{owner}/{name} lists its versions.",
            )
        if row["state"] != READY:
            raise APIError(
                409,
                f"Model {owner}/{name} version {number} is {row['state']}, not ready: publish "
                "it once it is.",
            )
        files = list(row["files"])
        total = sum(int(f["size"]) for f in files)
        limit = int(ctx.settings.max_asset_bytes)
        if total > limit:
            raise APIError(
                413,
                f"Model {owner}/{name} version {number} holds {total / 1024**3:.2f} GiB, more than "
                f"the {limit / 1024**3:.2f} GiB a gallery asset may hold.",
            )
        folder = registry.folders.version(owner, name, number)

        def changed(path: str) -> APIError:
            return APIError(
                409,
                f"File {path!r} of model {owner}/{name} version {number} changed since "
                "registration (checksum mismatch): register a new version and publish that.",
            )

        def store_files():
            for entry in files:
                try:
                    fd = open_below(folder, PurePosixPath(entry["path"]))
                except (OSError, ModelFilesError):
                    raise changed(entry["path"]) from None
                os.set_blocking(fd, True)
                with os.fdopen(fd, "rb") as f:
                    sha, size = ctx.blobs.put_stream_blocking(f)
                if sha != entry["sha256"] or size != entry["size"]:
                    raise changed(entry["path"])

        await asyncio.to_thread(store_files)
        log.info(
            "gallery: %s published model %s/%s version %s (%d files)",
            owner,
            owner,
            name,
            number,
            len(files),
        )
        meta = {
            "model": f"{owner}/{name}",
            "version": number,
            **{k: row[k] for k in SPEC_FIELDS},
            "description": model["description"],
            "metrics": row["metrics"],
        }
        return Snapshot(
            files=[{"path": f["path"], "size": f["size"], "sha256": f["sha256"]} for f in files],
            meta=meta,
            size=total,
            source={"model": f"{owner}/{name}", "version": number},
        )

    async def use(
        self, ctx: KindContext, caller: dict, asset: dict, version: dict, body: dict
    ) -> dict:
        registry = self._registry(ctx)
        meta = version.get("meta") or {}
        name = body.get("name")
        if name is None:
            name = meta["model"].rpartition("/")[2]
        try:
            name = check_name(name)
        except SpecError as e:
            raise APIError(400, f"{e} (name)") from None
        files = version.get("files")
        if not isinstance(files, list):
            raise APIError(500, "The gallery gave no file list for this version.")
        blobs = ctx.blobs

        def fill(folder: Path) -> None:
            for entry in files:
                dest = target_of(folder, entry["path"])
                dest.parent.mkdir(parents=True, exist_ok=True)
                copy_blob(blobs, entry, dest, lambda e=entry: damaged(asset, version, e["path"]))

        request = {
            "name": name,
            "description": (meta.get("description") or "")[:MAX_DESCRIPTION],
            "format": meta["format"],
            "image": meta.get("image"),
            "signature": meta.get("signature") or {},
            "predictor": meta.get("predictor") or "",
        }
        if meta["format"] == "image":
            request["command"] = meta.get("command")
        origin = {
            "kind": "gallery",
            "asset": asset["id"],
            "version": version["version"],
            "model": meta["model"],
            "model_version": meta["version"],
        }
        try:
            await registry.register_from_folder(caller, request, fill, source=origin)
        except APIError as e:
            if e.code == 409 and "already have a model" in e.message:
                raise APIError(
                    409,
                    f"You already have a model named {name!r}: send name, another name for "
                    "this model.",
                ) from None
            raise
        return {"kind": "model", "model": f"{caller['name']}/{name}", "version": 1}
