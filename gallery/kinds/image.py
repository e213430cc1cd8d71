"""Saved images in the gallery: a publish tags the image anew as the publisher's gallery image."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from workbench.names import is_saved_name, saved_name

from features.images.store import SavedImageRow, find_row
from hub.service.api import APIError
from images.saved import InvalidImage, parse_saved_name, validate_image_name, validate_tag

from . import KindContext, Snapshot

log = logging.getLogger("workbench.gallery")

SOURCE_KEYS = ("image",)


def gallery_image_name(asset_id: int) -> str:
    """The saved image name an asset's versions have (their tags: v<version>)."""
    return f"gallery-{asset_id}"


def _gib(size: int) -> str:
    return f"{size / 1024**3:.2f} GiB"


class ImageKind:
    """A saved image of the publisher's, kept as a saved image of its own.

    A version is a new saved image row owned by the publisher, saved:<owner>/gallery-<id>:v<N>,
    whose engine reference is a new tag of the same image ID: deleting (or saving over) the
    source image later changes nothing of it. Using it shares that row with the user, who
    then starts instances with its saved: name.
    """

    name = "image"

    def check_source(self, source) -> dict:
        if not isinstance(source, dict) or not isinstance(source.get("image"), str):
            raise APIError(
                400,
                'An image asset\'s source is {"image": "saved:<you>/<name>:<tag>"} (or '
                '"<name>:<tag>"): one of your saved images (GET /images lists them).',
            )
        unknown = sorted(str(k) for k in set(source) - set(SOURCE_KEYS))
        if unknown:
            raise APIError(
                400, f"An image source takes only image; not {', '.join(unknown)} (source)."
            )
        image = source["image"].strip()
        if not image:
            raise APIError(400, "source.image must name one of your saved images.")
        return {"image": image}

    def use_fields(self) -> tuple[str, ...]:
        return ()

    @staticmethod
    def _service(ctx: KindContext):
        service = ctx.get("image_service")
        if service is None:
            raise APIError(400, "Saved images are not enabled on this platform.")
        return service

    @staticmethod
    def _parse(owner: str, image: str) -> tuple[str, str, str]:
        """(owner, name, tag) of "saved:<owner>/<name>:<tag>" or "<name>[:<tag>]"."""
        try:
            if is_saved_name(image):
                return parse_saved_name(image)
            name, _, tag = image.partition(":")
            return owner, validate_image_name(name), validate_tag(tag or "latest")
        except InvalidImage as e:
            raise APIError(400, f"source.image: {e}") from None

    async def snapshot(
        self, ctx: KindContext, owner: str, source: dict, asset_id: int, version: int
    ) -> Snapshot:
        service = self._service(ctx)
        image_owner, name, tag = self._parse(owner, source["image"])
        source_name = saved_name(image_owner, name, tag)
        if image_owner != owner:
            raise APIError(
                403,
                f"You can publish only your own saved images: {source_name} belongs to "
                f"{image_owner}. Save one of your instances as an image and publish that.",
            )
        row = await ctx.db.run(
            lambda s: r.to_dict() if (r := find_row(s, owner, name, tag)) else None
        )
        if row is None or row["state"] == "failed":
            raise APIError(
                400,
                f"You have no saved image {name}:{tag} (source.image); GET /images lists yours.",
            )
        if row["state"] != "ready":
            raise APIError(409, f"Image {name}:{tag} is being saved; publish it once it is ready.")
        limit = int(ctx.settings.max_asset_bytes)
        if row["added_size"] > limit:
            raise APIError(
                413,
                f"Image {name}:{tag} adds {_gib(row['added_size'])} to its base image, more "
                f"than the {_gib(limit)} a gallery asset may hold: save a smaller image (leave "
                "data and caches out of it) and publish that.",
            )
        try:
            engine = service.engine
        except APIError:
            raise APIError(
                400,
                "Saved images are published to the gallery on the Docker/Podman backend only; "
                "on Kubernetes push the image to the registry and share it there instead.",
            ) from None
        target_name = gallery_image_name(asset_id)
        target_tag = f"v{version}"
        repository = service.repository(owner, target_name)
        target_ref = f"{repository}:{target_tag}"
        target = saved_name(owner, target_name, target_tag)

        def taken(session) -> bool:
            return (
                find_row(session, owner, target_name, target_tag) is not None
                or session.scalars(
                    select(SavedImageRow.id).where(SavedImageRow.ref == target_ref)
                ).first()
                is not None
            )

        # never move a name this publish did not make (a saved image of that name)
        if await ctx.db.run(taken) or await asyncio.to_thread(engine.inspect, target_ref):
            raise APIError(
                409,
                f"You have a saved image named {target_name}:{target_tag} already: delete or "
                "rename it (the gallery names its images so), then publish again.",
            )
        source_id = row["id"] or row["ref"]
        try:
            await asyncio.to_thread(engine.tag, source_id, repository, target_tag)
            tagged = await asyncio.to_thread(engine.inspect, target_ref)
        except Exception as e:  # noqa: BLE001 - the engine's words, as a conflict
            await self._untag(engine, target_ref)
            raise APIError(
                409, f"Image {name}:{tag} cannot be copied for the gallery ({e}); save it again."
            ) from None
        if not tagged or (row["id"] and tagged.get("Id") != row["id"]):
            await self._untag(engine, target_ref)
            raise APIError(
                409,
                f"Image {name}:{tag} is no longer on this machine as it was saved; save the "
                "instance again and publish the new image.",
            )

        def insert(session):
            added = SavedImageRow(
                owner=owner,
                name=target_name,
                tag=target_tag,
                ref=target_ref,
                image_id=row["id"],
                size=row["size"],
                added_size=row["added_size"],
                source_instance=row["source_instance"],
                base_image=row["base_image"],
                description=row["description"],
                state="ready",
                shares=[],
                workspace="default",
            )
            session.add(added)
            session.flush()
            return added.id

        try:
            row_id = await ctx.db.run(insert)
        except BaseException as e:
            await asyncio.shield(self._untag(engine, target_ref))
            if isinstance(e, IntegrityError):
                raise APIError(
                    409,
                    f"You have a saved image named {target_name}:{target_tag} already: delete "
                    "it, then publish again.",
                ) from None
            raise
        service.store.forget()
        log.info("gallery: %s published %s as %s (%s)", owner, source_name, target, target_ref)

        async def cleanup():
            await ctx.db.run(
                lambda s: s.execute(delete(SavedImageRow).where(SavedImageRow.id == row_id))
            )
            await self._untag(engine, target_ref)
            service.store.forget()

        return Snapshot(
            files=[],
            meta={
                "image": target,
                "base_image": row["base_image"],
                "size": row["size"],
                "source_image": source_name,
            },
            size=int(row["added_size"]),
            source={"image": source_name},
            cleanup=cleanup,
        )

    @staticmethod
    async def _untag(engine, ref: str) -> None:
        """Remove a gallery image's engine reference (the image stays while other
        references or containers hold it)."""
        try:
            await asyncio.to_thread(engine.remove, ref)
        except Exception as e:  # noqa: BLE001 - cleanup: say so, go on
            log.warning("gallery: could not remove image reference %s: %s", ref, e)

    async def use(
        self, ctx: KindContext, caller: dict, asset: dict, version: dict, body: dict
    ) -> dict:
        service = self._service(ctx)
        image = (version.get("meta") or {}).get("image") or ""
        owner, name, tag = parse_saved_name(image)
        user = caller["name"]

        def share(session):
            row = find_row(session, owner, name, tag)
            if row is None or row.state != "ready":
                return False
            if user != owner and user not in (row.shares or []):
                row.shares = [*(row.shares or []), user]
            return True

        if not await ctx.db.run(share):
            raise APIError(
                409,
                f"The image of gallery asset {asset['id']} version {version['version']} is "
                "gone from this machine: ask its owner to publish it again.",
            )
        service.store.forget(image)
        return {"kind": "image", "image": image}

    async def remove(self, ctx: KindContext, asset: dict, versions: list[dict]) -> None:
        """Remove the saved image rows and engine references of an asset's versions
        (instances already started from them keep running; a stopped one is told at its
        next start that its image is gone)."""
        service = ctx.get("image_service")
        refs = []
        for version in versions:
            image = (version.get("meta") or {}).get("image")
            if not image:
                continue
            owner, name, tag = parse_saved_name(image)

            def remove(session, owner=owner, name=name, tag=tag):
                row = find_row(session, owner, name, tag)
                if row is None:
                    return None
                session.delete(row)
                return row.ref

            ref = await ctx.db.run(remove)
            if ref:
                refs.append(ref)
        if service is None:
            return
        service.store.forget()
        if refs:
            try:
                engine = service.engine
            except APIError as e:  # no engine here: nothing was tagged on one
                log.warning("gallery: image references %s left: %s", refs, e.message)
                return
            for ref in refs:
                await self._untag(engine, ref)
        log.info("gallery: unpublished image asset %s (%d references)", asset.get("id"), len(refs))
