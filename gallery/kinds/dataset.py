"""Dataset versions in the gallery: a lossless export kept as one zip, imported by users."""

from __future__ import annotations

import asyncio
import logging
import os
import time

from hub.service.api import APIError
from training_bridge.datasets import store as datasets_store
from training_bridge.datasets.datasets import MAX_DESCRIPTION, check_name
from training_bridge.datasets.store import READY

from . import KindContext, Snapshot
from .model import check_ref_version, copy_blob, damaged, own_ref

log = logging.getLogger("workbench.gallery")

FORMAT = "modelarts"  # the export every dataset type round-trips without loss
ZIP = "dataset.zip"
READY_WAIT_SECONDS = 120.0  # a use answers once version 1 is made, or after this
POLL_SECONDS = 0.25


class DatasetKind:
    """A ready published version of one of the publisher's datasets, exported in the
    ModelArts manifest format into one zip; using it makes a dataset of the user's with that
    zip imported and published as its version 1."""

    name = "dataset"

    def check_source(self, source) -> dict:
        return check_ref_version(source, "dataset", "flowers")

    def use_fields(self) -> tuple[str, ...]:
        return ("name",)

    @staticmethod
    def _services(ctx: KindContext):
        datasets, versions = ctx.get("dataset_service"), ctx.get("dataset_versions")
        if datasets is None or versions is None:
            raise APIError(400, "Datasets are not enabled on this platform.")
        return datasets, versions

    async def snapshot(
        self, ctx: KindContext, owner: str, source: dict, asset_id: int, version: int
    ) -> Snapshot:
        datasets, versions = self._services(ctx)
        name = own_ref(source["dataset"], owner, "dataset")
        number = source["version"]
        me = {"name": owner}

        def read(session):
            ds = datasets_store.find_dataset(session, owner, name)
            if ds is None:
                return None, None
            row = datasets_store.find_version(session, ds, number)
            return ds, row

        ds, row = await ctx.db.run(read)
        if ds is None:
            raise APIError(
                400, f"You have no dataset {name!r} (source.dataset); GET /datasets lists yours."
            )
        if row is None:
            raise APIError(
                400,
                f"Dataset {owner}/{name} has no version {number} (source.version): publish "
                f"one (POST /datasets/{owner}/{name}/versions) or pick one of GET .../versions.",
            )
        if row.state != READY:
            raise APIError(
                409,
                f"Version {number} of dataset {owner}/{name} is {row.state}, not ready: publish "
                "it to the gallery once it is.",
            )
        limit = int(ctx.settings.max_asset_bytes)
        if row.size > limit:
            raise APIError(
                413,
                f"Version {number} of dataset {owner}/{name} holds {row.size / 1024**3:.2f} GiB, "
                f"more than the {limit / 1024**3:.2f} GiB a gallery asset may hold.",
            )
        path, _ = await versions.export(me, owner, name, {"format": FORMAT, "version": number})
        try:
            size = await asyncio.to_thread(os.path.getsize, path)
            if size > limit:
                raise APIError(
                    413,
                    f"Version {number} of dataset {owner}/{name} exports to "
                    f"{size / 1024**3:.2f} GiB, more than the {limit / 1024**3:.2f} GiB a "
                    "gallery asset may hold.",
                )
            sha, size = await ctx.blobs.put_file(path, move=True)
        finally:
            await versions.discard_export(path)
        log.info(
            "gallery: %s published dataset %s/%s version %s (%d bytes)",
            owner,
            owner,
            name,
            number,
            size,
        )
        return Snapshot(
            files=[{"path": ZIP, "size": size, "sha256": sha}],
            meta={
                "dataset": f"{owner}/{name}",
                "version": number,
                "type": ds.type,
                "labels": datasets_store.loads(row.labels, []),
                "multi_label": bool(ds.multi_label),
                "samples": row.samples,
                "labelled": row.labelled,
                "train_ratio": row.train_ratio,
                "description": ds.description,
            },
            size=size,
            source={"dataset": f"{owner}/{name}", "version": number},
        )

    async def use(
        self, ctx: KindContext, caller: dict, asset: dict, version: dict, body: dict
    ) -> dict:
        datasets, versions = self._services(ctx)
        meta = version.get("meta") or {}
        user = caller["name"]
        name = body.get("name")
        if name is None:
            name = meta["dataset"].rpartition("/")[2]
        name = check_name(name)
        files = version.get("files")
        entry = next((f for f in files or [] if f.get("path") == ZIP), None)
        if entry is None:
            raise APIError(500, "The gallery gave no dataset.zip for this version.")
        try:
            await datasets.create(
                caller,
                {
                    "name": name,
                    "type": meta["type"],
                    "description": (meta.get("description") or "")[:MAX_DESCRIPTION],
                    "multi_label": bool(meta.get("multi_label")),
                    "labels": meta.get("labels") or [],
                },
            )
        except APIError as e:
            if e.code == 409:
                raise APIError(
                    409,
                    f"You already have a dataset named {name!r}: send name, another name for "
                    "this dataset.",
                ) from None
            raise
        try:
            made = await self._fill(ctx, datasets, versions, caller, asset, version, name, entry)
        except BaseException:
            # nothing half-made: the new dataset goes with what was imported into it
            await asyncio.shield(self._remove(datasets, caller, user, name))
            raise
        log.info(
            "gallery: %s took dataset asset %s version %s as %s/%s",
            user,
            asset["id"],
            version["version"],
            user,
            name,
        )
        return {
            "kind": "dataset",
            "dataset": f"{user}/{name}",
            "version": made["version"],
            "state": made["state"],
        }

    async def _fill(self, ctx, datasets, versions, caller, asset, version, name, entry) -> dict:
        """Import the snapshot's zip into the new dataset and publish its version 1; the
        version's JSON once it is ready (or still pending after READY_WAIT_SECONDS)."""
        user = caller["name"]
        meta = version.get("meta") or {}
        staging = await asyncio.to_thread(datasets.staging)
        try:
            archive = staging / "body"
            await asyncio.to_thread(
                copy_blob,
                ctx.blobs,
                entry,
                archive,
                lambda: damaged(asset, version, entry["path"]),
            )
            await datasets.import_samples(
                caller, user, name, FORMAT, body=archive, content_type="application/zip"
            )
        finally:
            await asyncio.to_thread(datasets.discard, staging)
        publish = {
            "description": f"Taken from the gallery: asset {asset['id']} version "
            f"{version['version']} ({meta.get('dataset')} version {meta.get('version')})."
        }
        ratio = meta.get("train_ratio")
        if isinstance(ratio, (int, float)) and 0 < ratio <= 1:
            publish["train_ratio"] = ratio
        made = await versions.publish(caller, user, name, publish)
        deadline = time.monotonic() + READY_WAIT_SECONDS
        while made["state"] == datasets_store.PENDING and time.monotonic() < deadline:
            await asyncio.sleep(POLL_SECONDS)
            made = await versions.get(caller, user, name, made["version"])
        if made["state"] == datasets_store.FAILED:
            raise APIError(
                409,
                f"Version 1 of the new dataset {user}/{name} could not be made "
                f"({made['reason']}): use the asset again.",
            )
        return made

    @staticmethod
    async def _remove(datasets, caller: dict, user: str, name: str) -> None:
        try:
            await datasets.delete(caller, user, name)
        except Exception as e:  # noqa: BLE001 - keep the use's own error
            log.warning("gallery: could not remove the half-made dataset %s/%s: %s", user, name, e)
