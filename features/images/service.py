"""Saved images for the platform API: saving running instances, listing, sharing, deleting,
quotas, pushing to and pulling from a registry."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from hub.service.api import APIError
from images.registry import EngineImages, ImageEngineError
from images.saved import (
    InvalidImage,
    environment_secrets,
    is_saved_name,
    make_saved_labels,
    owner_slug,
    parse_pushed_ref,
    saved_repository,
    validate_description,
    validate_image_name,
    validate_tag,
)
from images.savers import ImageSaver, SaveError, SaveSource, SaveUnavailable, make_saver

from .store import EVERYONE as EVERYONE_SHARE
from .store import (
    ImagePushRow,
    SavedImageRow,
    SavedImageStore,
    find_row,
    user_workspaces,
    utcnow,
    visible_rows,
)

log = logging.getLogger(__name__)

# saved images named so are snapshots of images published to the gallery: the gallery holds
# them (and counts them in its quota), so their owner unpublishes rather than deletes them
SNAPSHOT_PREFIX = "gallery-"


def own_image_name(name) -> str:
    """A name a user may give an image they save or pull (InvalidImage otherwise)."""
    name = validate_image_name(name)
    if name.startswith(SNAPSHOT_PREFIX):
        raise InvalidImage(
            f"Image names starting with {SNAPSHOT_PREFIX!r} are kept for gallery snapshots: "
            "pick another name."
        )
    return name


GIB = 1024**3


class ImageService:
    """Saves instances as images and manages saved images, one save per instance at a time."""

    def __init__(
        self,
        *,
        db,
        hub,
        policy,
        settings,
        store: SavedImageStore,
        engine_url: str,
        saver: ImageSaver | None = None,
    ):
        self.db = db
        self.hub = hub
        self.policy = policy
        self.settings = settings
        self.store = store
        self.engine_url = engine_url
        self._engine: EngineImages | None = None
        self.namespace = f"{settings.container_prefix}-saved"
        # the current or last save of each instance, by (user, instance)
        self.saves: dict[tuple[str, str], dict] = {}
        self.tasks: dict[tuple[str, str], asyncio.Task] = {}
        self._starting: set[tuple[str, str]] = set()  # saves being checked and registered
        # pushes and pulls of one registry reference, one at a time (both tag and untag it)
        self._ref_locks: dict[str, list] = {}  # ref: [lock, holders and waiters]
        # engine calls in threads of their own, never the loop's default pool (which other
        # work shares): commits, pushes and pulls may take minutes each, so they have a
        # bounded pool apart from the quick calls (inspect, tag, remove, diff)
        self.transfers = ThreadPoolExecutor(
            settings.image_transfer_threads, thread_name_prefix="workbench-transfer"
        )
        self.calls = ThreadPoolExecutor(8, thread_name_prefix="workbench-engine")
        # saving, the same calls on every backend; the engine's saves share these threads
        self.saver = saver or make_image_saver(settings, engine_url, self.calls, self.transfers)
        self._transfers_of: dict[str, int] = {}  # long operations under way, by user
        self._late_removals: set[asyncio.Task] = set()  # of interrupted saves' images

    async def _call(self, fn, *args, **kwargs):
        """Run a quick engine call in the engine threads."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.calls, functools.partial(fn, *args, **kwargs))

    async def _transfer(self, fn, *args, **kwargs):
        """Run a long engine call (commit, push, pull, reading an image) in the transfer
        threads."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.transfers, functools.partial(fn, *args, **kwargs))

    def _take_transfer(self, user: str, what: str):
        """Count one more long operation of the user's; HTTP 429 past the per-user limit.

        Synchronous: the count and the check happen with no await between.
        """
        limit = self.settings.image_transfers_per_user
        running = self._transfers_of.get(user, 0)
        if limit and running >= limit:
            raise APIError(
                429,
                f"You have {running} image saves, pushes or pulls under way (the most at once "
                f"is {limit}); wait for one to finish, then {what} again.",
            )
        self._transfers_of[user] = running + 1

    def _give_transfer(self, user: str):
        left = self._transfers_of.get(user, 1) - 1
        if left > 0:
            self._transfers_of[user] = left
        else:
            self._transfers_of.pop(user, None)

    @contextlib.asynccontextmanager
    async def _transfer_slot(self, user: str, what: str):
        self._take_transfer(user, what)
        try:
            yield
        finally:
            self._give_transfer(user)

    @property
    def engine(self) -> EngineImages:
        """The container engine, for pushes and pulls (docker backend; saves go through
        `saver`)."""
        if self.settings.backend != "docker" or not self.engine_url:
            raise APIError(
                501,
                "Pushing and pulling images needs the Docker/Podman backend here; on "
                "Kubernetes saves go to the registry already (see the README, 'Saved images').",
            )
        if self._engine is None:
            self._engine = EngineImages(
                self.engine_url, timeout=self.settings.image_transfer_timeout_seconds
            )
        return self._engine

    def repository(self, owner: str, name: str) -> str:
        return saved_repository(self.settings.image_registry, self.namespace, owner, name)

    # --- saving ---------------------------------------------------------------------------

    async def start_save(self, user: str, instance: str, body: dict) -> dict:
        """Check everything, register the image as saving and commit in the background."""
        unknown = sorted(set(body) - {"name", "tag", "description"})
        if unknown:
            raise APIError(
                400, f"Unknown field(s): {', '.join(unknown)}; send name, tag, description."
            )
        try:
            name = own_image_name(body.get("name"))
            tag = validate_tag(body.get("tag") or "latest")
            description = validate_description(body.get("description"))
        except InvalidImage as e:
            raise APIError(400, str(e)) from None
        key = (user, instance)
        # the check and the reservation happen with no await between them: of concurrent
        # requests for one instance, exactly one goes on
        if key in self.tasks or key in self._starting:
            raise APIError(409, f"Instance {instance!r} is already saving; wait for it.")
        self._take_transfer(user, "save")
        self._starting.add(key)
        try:
            status = await self._start_save(key, name, tag, description)
        except BaseException:
            self._give_transfer(user)
            raise
        finally:
            self._starting.discard(key)
        self.tasks[key].add_done_callback(lambda _: self._give_transfer(user))
        return status

    async def _start_save(self, key, name: str, tag: str, description: str) -> dict:
        user, instance = key
        try:
            repository = self.saver.repository(user, name)
        except SaveUnavailable as e:
            raise APIError(501, str(e)) from None
        # the instance and the user's quota, asked at once; the instance's errors come first
        server, quota = await asyncio.gather(
            self.hub.server(user, instance), self._check_quota(user), return_exceptions=True
        )
        if isinstance(server, BaseException):
            raise server
        if server is None:
            raise APIError(404, f"No instance {instance!r} of user {user!r}.")
        if not server.get("ready") or server.get("pending"):
            raise APIError(
                409,
                f"Instance {instance!r} is not running; only a running instance can be saved. "
                f"Start it (POST .../instances/{instance}/start or `workbench instances start "
                f"{instance}`), then save again.",
            )
        options = server.get("user_options") or {}
        image_name = options.get("image") or self.policy.default_image
        await self.policy.prefetch(user, image_name)
        try:
            current = self.policy.image(image_name, user)
        except Exception as e:  # noqa: BLE001 - InvalidOptions: the image went away
            raise APIError(409, f"Instance {instance!r} runs an unknown image: {e}") from None
        base = self.policy.catalog.get(current.base if is_saved_name(image_name) else image_name)
        ref = f"{repository}:{tag}"
        if isinstance(quota, BaseException):
            raise quota

        def register(session):
            old = find_row(session, user, name, tag)
            if old is not None and old.state == "failed":
                session.delete(old)  # an interrupted save of the same name: start over
                session.flush()
            elif old is not None:
                return None
            row = SavedImageRow(
                owner=user,
                name=name,
                tag=tag,
                ref=ref,
                base_image=base.name,
                source_instance=instance,
                description=description,
                state="saving",
                shares=[],
                workspace=options.get("workspace") or "default",
            )
            session.add(row)
            session.flush()
            return row.id, row.to_dict()

        try:
            registered = await self.db.run(register)
        except IntegrityError:
            registered = None
        if registered is None:
            raise APIError(
                409,
                f"You already have an image {name}:{tag}. Pick another tag, or delete it first "
                f"(`workbench images delete {name}:{tag}`).",
            )
        row_id, image = registered
        status = {
            "instance": instance,
            "state": "saving",
            "step": "queued",
            "progress": 0,
            "message": f"Saving instance {instance!r} as {name}:{tag}",
            "image": image,
            "started": utcnow().isoformat() + "Z",
            "finished": None,
        }
        self.saves[key] = status
        # the spawner's state: the container's id (docker), the pod's name (kubernetes)
        source = SaveSource(user, instance, server.get("state") or {}, base.ref)
        self.tasks[key] = asyncio.create_task(
            self._save(key, row_id, source, base, repository, tag, description)
        )
        log.info("%s/%s: saving as %s (from %s)", user, instance, ref, base.name)
        return dict(status)

    def _step(self, status: dict, step: str, progress: int, message: str):
        status.update(step=step, progress=progress, message=message)
        log.info("%s: %s", status["image"]["ref"], message)

    async def wait(self, user: str, instance: str) -> dict:
        """Wait for the instance's save in progress (if any) to end; its status."""
        task = self.tasks.get((user, instance))
        if task is not None:
            await asyncio.wait([task])
        return await self.save_status(user, instance)

    async def _save(self, key, row_id, source, base, repository, tag, description):
        user, instance = key
        status = self.saves[key]
        ref = f"{repository}:{tag}"
        committed = False
        try:
            labels = make_saved_labels(
                owner=user,
                instance=instance,
                base=base.name,
                description=description,
                name=repository.rsplit("/", 1)[-1],
                tag=tag,
            )
            result = await self.saver.commit(
                source,
                repository,
                tag,
                labels,
                lambda step, percent, message: self._step(status, step, percent, message),
            )
            committed = True  # from here on a failure removes the image too
            self._step(status, "register", 90, "Registering the image")
            added = result.added_size

            def ready(session):
                row = session.get(SavedImageRow, row_id)
                row.state = "ready"
                row.image_id = result.image_id
                row.size = result.size
                row.added_size = added
                row.created = utcnow()
                if result.pushed_ref:
                    row.pushed_ref = result.pushed_ref
                return row.to_dict()

            image = await self.db.run(ready)
            self.store.forget()
            status.update(state="done", step="done", progress=100, image=image)
            status["message"] = f"Saved as {image['name']} ({added / 1e6:.0f} MB added)"
            log.info("%s/%s: saved as %s, %s bytes added", user, instance, ref, added)
        except asyncio.CancelledError:
            # the service is stopping; the engine may finish the commit after this process
            # is gone: the row stays "saving", and the next start cleans up what is left
            status.update(state="failed", step="failed", progress=100)
            status["message"] = "Saving was interrupted; save the instance again."
            raise
        except BaseException as e:
            message = str(e) if isinstance(e, SaveError) else f"Saving failed: {e}"
            log.warning("%s/%s: saving as %s failed: %s", user, instance, ref, message)
            # a failed commit leaves nothing; one that succeeded is removed here
            await self._discard(row_id, ref if committed else None)
            status.update(state="failed", step="failed", progress=100, message=message)
            status["image"] = {**status["image"], "state": "failed", "error": message}
        finally:
            status["finished"] = utcnow().isoformat() + "Z"
            self.tasks.pop(key, None)

    async def _discard(self, row_id: int | None, ref: str | None):
        """Remove a failed save's row and the image it made."""
        if ref:
            try:
                await self.saver.discard(ref)
            except Exception as e:  # noqa: BLE001 - cleanup must not hide the failure
                log.warning("could not remove partial image %s: %s", ref, e)
        if row_id is not None:

            def delete(session):
                row = session.get(SavedImageRow, row_id)
                if row is not None:
                    session.delete(row)

            await self.db.run(delete)

    async def save_status(self, user: str, instance: str) -> dict:
        """The current or last save of an instance (after a restart: from the database)."""
        status = self.saves.get((user, instance))
        if status is not None:
            return dict(status)

        def last(session):
            row = session.scalars(
                select(SavedImageRow)
                .where(SavedImageRow.owner == user, SavedImageRow.source_instance == instance)
                .order_by(SavedImageRow.created.desc())
            ).first()
            return row.to_dict() if row else None

        image = await self.db.run(last)
        if image is None:
            raise APIError(
                404,
                f"Instance {instance!r} has not been saved yet. POST a name and tag to "
                "this address to save it.",
            )
        state = {"ready": "done", "failed": "failed"}.get(image["state"], "saving")
        return {
            "instance": instance,
            "state": state,
            "step": state,
            "progress": 100 if state != "saving" else 0,
            "message": image["error"] or f"Saved as {image['name']}",
            "image": image,
            "started": image["created"],
            "finished": image["created"] if state != "saving" else None,
        }

    async def cleanup_interrupted(self):
        """Fail saves and pulls a restart interrupted, removing the images they left."""

        def interrupted(session):
            return [
                (r.id, r.ref, r.pushed_ref)
                for r in session.scalars(
                    select(SavedImageRow).where(SavedImageRow.state == "saving")
                ).all()
            ]

        for row_id, ref, pulled in await self.db.run(interrupted):
            if pulled:
                # a pull (on the engine): its registry name too, since pulls start only when
                # no image has that name
                for name in {ref, pulled}:
                    try:
                        await self._call(self.engine.remove, name)
                    except Exception as e:  # noqa: BLE001 - keep cleaning the others
                        log.warning("could not remove interrupted image %s: %s", name, e)
            else:
                try:
                    await self.saver.discard(ref)
                except Exception as e:  # noqa: BLE001 - keep cleaning the others
                    log.warning("could not remove interrupted image %s: %s", ref, e)

            def fail(session, row_id=row_id):
                row = session.get(SavedImageRow, row_id)
                row.state = "failed"
                row.error = (
                    "The platform restarted while this image was being saved; nothing was "
                    "kept. Save the instance again."
                )

            await self.db.run(fail)
            log.warning("save of %s was interrupted by a restart; cleaned up", ref)
            if not pulled:
                # the backend may still be writing the interrupted save
                self._late_removals.add(
                    asyncio.create_task(self._remove_when_committed(row_id, ref))
                )

    async def _remove_when_committed(self, row_id: int, ref: str):
        """Remove an interrupted save's image should the backend finish it later, as long as
        the failed row stands (a new save of the same name replaces it)."""

        def still_failed(session):
            row = session.get(SavedImageRow, row_id)
            return row is not None and row.state == "failed"

        async def abandoned() -> bool:
            return await self.db.run(still_failed)

        try:
            if await self.saver.discard_late(ref, abandoned):
                log.warning("removed %s, which an interrupted save committed late", ref)
        except Exception as e:  # noqa: BLE001 - a background task: say so, end
            log.warning("could not watch for a late commit of %s: %s", ref, e)
        finally:
            self._late_removals.discard(asyncio.current_task())

    # --- quotas ---------------------------------------------------------------------------

    async def _check_quota(self, user: str):
        def usage(session):
            rows = session.scalars(
                select(SavedImageRow).where(
                    SavedImageRow.owner == user,
                    SavedImageRow.state != "failed",
                    # published snapshots count toward the gallery's quota instead
                    SavedImageRow.name.not_like(f"{SNAPSHOT_PREFIX}%"),
                )
            ).all()
            return len(rows), sum(r.added_size for r in rows)

        count, size = await self.db.run(usage)
        max_count = self.settings.saved_images_max_count
        max_gib = self.settings.saved_images_max_gib
        if max_count and count >= max_count:
            raise APIError(
                403,
                f"You have {count} saved images, the most allowed ({max_count}). Delete one "
                "(`workbench images delete NAME:TAG`) and save again.",
            )
        if max_gib and size >= max_gib * GIB:
            raise APIError(
                403,
                f"Your saved images take {size / GIB:.2f} GiB, the most allowed is "
                f"{max_gib:g} GiB. Delete one (`workbench images delete NAME:TAG`) and save "
                "again.",
            )

    # --- listing, deleting, sharing -------------------------------------------------------

    async def list(
        self, user: str, catalog_models: list[dict], workspace: str | None = None
    ) -> list[dict]:
        """Presets, then the saved images the user may use (of one workspace, if given)."""
        rows = await self.db.run(lambda s: [r.to_dict() for r in visible_rows(s, user, workspace)])
        return catalog_models + rows

    async def _own_row(self, user: str, name: str, tag: str) -> dict:
        row = await self.db.run(
            lambda s: r.to_dict() if (r := find_row(s, user, name, tag)) else None
        )
        if row is None or row["state"] == "failed":
            raise APIError(404, f"You have no saved image {name}:{tag}.")
        return row

    async def users_of(self, image: str, owner: str) -> list[str]:
        """Instances (user/name) that keep `image` from being deleted: any of its owner's,
        and other users' running (or starting, or stopping) ones. Others' stopped instances
        do not pin an image (its owner could never delete one shared with everyone); they
        are told at their next start that it is gone."""
        found, offset = [], 0
        while True:
            users = await self.hub.request(
                "GET", f"/users?include_stopped_servers=1&offset={offset}&limit=200"
            )
            users = users.get("items", []) if isinstance(users, dict) else users or []
            for u in users:
                for name, server in (u.get("servers") or {}).items():
                    if not name or (server.get("user_options") or {}).get("image") != image:
                        continue
                    if u["name"] == owner or server.get("ready") or server.get("pending"):
                        found.append(f"{u['name']}/{name}")
            if len(users) < 200:
                return found
            offset += 200

    async def delete(self, user: str, name: str, tag: str):
        row = await self._own_row(user, name, tag)
        if name.startswith(SNAPSHOT_PREFIX):
            asset = name.removeprefix(SNAPSHOT_PREFIX)
            raise APIError(
                409,
                f"Image {name}:{tag} is the snapshot of your gallery asset {asset}: others "
                f"use it from there. Unpublish the asset instead (`workbench gallery "
                f"unpublish {asset}`), which removes it.",
            )
        if row["state"] == "saving":
            raise APIError(409, f"Image {name}:{tag} is being saved; wait until it is done.")
        users = await self.users_of(row["name"], user)
        if users:
            raise APIError(
                409,
                f"Image {name}:{tag} is used by instance(s) {', '.join(users)}. Switch your "
                "instances to another image or delete them; others' running instances keep it "
                "until they stop (stop sharing it so that no new one starts), then delete it.",
            )
        try:
            await self.saver.discard(row["ref"])
        except SaveError as e:
            raise APIError(409, str(e)) from None
        await self.db.run(lambda s: s.delete(find_row(s, user, name, tag)))
        self.store.forget(row["name"])
        log.info("%s: deleted saved image %s", user, row["ref"])

    async def share(self, user: str, name: str, tag: str, body: dict, replace: bool) -> dict:
        """Share with users (list of names) and/or everyone; PUT replaces, PATCH adds/removes."""
        await self._own_row(user, name, tag)
        unknown = sorted(set(body) - {"users", "everyone", "remove"})
        if unknown:
            raise APIError(
                400, f"Unknown field(s): {', '.join(unknown)}; send users, everyone, remove."
            )
        users, remove = body.get("users", []), body.get("remove", [])
        everyone = body.get("everyone")
        for value, what in ((users, "users"), (remove, "remove")):
            if not isinstance(value, list) or not all(isinstance(u, str) and u for u in value):
                raise APIError(400, f"'{what}' must be a list of user names.")
        if everyone is not None and not isinstance(everyone, bool):
            raise APIError(400, "'everyone' must be true or false.")
        for other in users:
            if await self.hub.user(other) is None:
                raise APIError(400, f"No user {other!r} to share with.")

        def update(session):
            row = find_row(session, user, name, tag)
            shares = [] if replace else [s for s in row.shares or [] if s not in remove]
            shares += [u for u in users if u not in shares and u != user]
            if everyone is True and EVERYONE_SHARE not in shares:
                shares.append(EVERYONE_SHARE)
            if everyone is False and EVERYONE_SHARE in shares:
                shares.remove(EVERYONE_SHARE)
            row.shares = shares
            return row.to_dict()

        model = await self.db.run(update)
        self.store.forget(model["name"])
        return model

    # --- registries -----------------------------------------------------------------------

    def _registry(self) -> tuple[str, dict | None, bool]:
        url = self.settings.registry_url.rstrip("/")
        if not url:
            raise APIError(
                400,
                "No registry is configured: set registry_url (and registry_username, "
                "registry_password) in the settings file.",
            )
        auth = None
        if self.settings.registry_username:
            auth = {
                "username": self.settings.registry_username,
                "password": self.settings.registry_password,
                "serveraddress": url,
            }
        return url, auth, self.settings.registry_insecure

    @contextlib.asynccontextmanager
    async def _ref_lock(self, ref: str):
        """One push or pull of a registry reference at a time (each tags and untags it)."""
        entry = self._ref_locks.setdefault(ref, [asyncio.Lock(), 0])
        entry[1] += 1
        try:
            async with entry[0]:
                yield
        finally:
            entry[1] -= 1
            if not entry[1]:
                self._ref_locks.pop(ref, None)

    async def push(self, user: str, name: str, tag: str) -> dict:
        row = await self._own_row(user, name, tag)
        if row["state"] != "ready":
            raise APIError(409, f"Image {name}:{tag} is being saved; push it when done.")
        url, auth, insecure = self._registry()
        engine = self.engine
        target_repo = saved_repository(url, self.namespace, user, name)
        target = f"{target_repo}:{tag}"
        # a registry named like the local images (image_registry): the image has its name
        # already, and that name is the only one it has
        own_name = target == row["ref"]
        async with self._transfer_slot(user, "push"), self._ref_lock(target):
            if not own_name:
                await self._call(engine.tag, row["ref"], target_repo, tag)
            try:
                await self._transfer(engine.push, target, auth=auth, insecure=insecure)
            except ImageEngineError as e:
                raise APIError(502, str(e)) from None
            finally:
                if not own_name:
                    # the registry's name stays only in the database
                    await self._call(engine.remove, target)

        def pushed(session):
            found = find_row(session, user, name, tag)
            found.pushed_ref = target
            record = session.scalars(
                select(ImagePushRow).where(ImagePushRow.ref == target)
            ).first() or ImagePushRow(ref=target)
            record.owner, record.name, record.tag = user, name, tag
            record.image_id = found.image_id
            record.base_image = found.base_image
            record.source_instance = found.source_instance
            record.description = found.description
            record.pushed = utcnow()
            session.add(record)
            return found.to_dict()

        log.info("%s: pushed %s to %s", user, row["ref"], target)
        return await self.db.run(pushed)

    async def _pull_source(self, user: str, ref: str, slug: str) -> dict | None:
        """What the platform's records say of a registry image `user` may pull: the push
        record (own pushes, and others' saved images shared with the user), or an empty
        record for the user's own repository pushed from elsewhere; None: not theirs to read."""

        def read(session):
            record = session.scalars(select(ImagePushRow).where(ImagePushRow.ref == ref)).first()
            if record is None:
                return {} if slug == owner_slug(user) else None
            if record.owner != user:
                row = find_row(session, record.owner, record.name, record.tag)
                spaces = user_workspaces(session, user)
                if row is None or row.pushed_ref != ref or not row.usable_by(user, spaces):
                    return None
            return {
                "base_image": record.base_image,
                "image_id": record.image_id,
                "source_instance": record.source_instance,
                "description": record.description,
            }

        return await self.db.run(read)

    async def pull(self, user: str, body: dict) -> dict:
        """Pull a saved image from the configured registry and register it for the user.

        Only references under the registry's saved images are pulled, only those the user
        may read (their own, or a pushed saved image shared with them), and the image is
        registered from the platform's record of its push, not from its labels.
        """
        unknown = sorted(set(body) - {"ref", "name", "tag", "description", "base"})
        if unknown:
            raise APIError(
                400, f"Unknown field(s): {', '.join(unknown)}; send ref, name, tag, description."
            )
        url = self._registry()[0]
        try:
            ref, slug, ref_name, ref_tag = parse_pushed_ref(body.get("ref"), url, self.namespace)
            name = own_image_name(body.get("name") or ref_name)
            tag = validate_tag(body.get("tag") or ref_tag)
            description = validate_description(body.get("description"))
        except InvalidImage as e:
            raise APIError(400, str(e)) from None
        source = await self._pull_source(user, ref, slug)
        if source is None:
            raise APIError(
                404,
                f"No image {ref} that you may pull: pull your own pushed images, or saved "
                "images their owner pushed and shares with you (ask them to share it).",
            )
        base = source.get("base_image") or body.get("base")
        if not source and not base:
            raise APIError(
                400,
                f"This platform has no record of pushing {ref} (was it pushed from another "
                "installation?). Send 'base', the preset image it was saved from "
                f"({', '.join(self.policy.catalog.names)}).",
            )
        if base not in self.policy.catalog.names:
            raise APIError(
                409 if source else 400,
                f"{ref} was saved from {base!r}, which this catalog does not have.",
            )
        engine = self.engine
        await self._check_quota(user)
        local_repo = self.repository(user, name)
        local_ref = f"{local_repo}:{tag}"
        async with self._transfer_slot(user, "pull"), self._ref_lock(ref):
            if await self._call(engine.inspect, ref) is not None:
                # never take a name this pull did not make (the registry is named like the
                # local images, or a push of it is under way)
                raise APIError(
                    409,
                    f"This machine already has an image named {ref}. If it is a saved image "
                    "shared with you, start instances from its saved: name (`workbench images "
                    "saved` lists them); else try again in a minute.",
                )
            return await self._pull(user, ref, local_ref, name, tag, base, source, description)

    async def _pull(self, user, ref, local_ref, name, tag, base, source, description) -> dict:
        """Pull `ref` (no image of that name is on the engine) and register it as local_ref."""
        _, auth, insecure = self._registry()
        engine = self.engine
        local_repo = local_ref.rpartition(":")[0]

        def register(session):
            if find_row(session, user, name, tag) is not None:
                return None
            row = SavedImageRow(
                owner=user,
                name=name,
                tag=tag,
                ref=local_ref,
                base_image=base,
                state="saving",
                shares=[],
                pushed_ref=ref,
            )
            session.add(row)
            session.flush()
            return row.id

        try:
            row_id = await self.db.run(register)
        except IntegrityError:
            row_id = None
        if row_id is None:
            raise APIError(
                409, f"You already have an image {name}:{tag}. Pull it under another tag."
            )
        made = None  # the local name this pull made
        try:
            image_id = await self._transfer(engine.pull, ref, auth=auth, insecure=insecure)
            made = local_ref if ref == local_ref else None
            if source.get("image_id") and image_id != source["image_id"]:
                raise APIError(
                    409,
                    f"The registry's {ref} is not the image pushed from here (it was "
                    "overwritten since). Ask its owner to push it again.",
                )
            info = await self._call(engine.inspect, ref) or {}
            if ref != local_ref:
                await self._call(engine.tag, ref, local_repo, tag)
                made = local_ref
                await self._call(engine.remove, ref)
            base_info = await self._call(engine.inspect, self.policy.catalog.get(base).ref)
            base_size = int((base_info or {}).get("Size") or 0)

            def ready(session):
                row = session.get(SavedImageRow, row_id)
                row.state = "ready"
                row.image_id = image_id
                row.size = int(info.get("Size") or 0)
                row.added_size = max(row.size - base_size, 0)
                row.source_instance = source.get("source_instance", "")
                row.description = description or source.get("description", "")
                return row.to_dict()

            model = await self.db.run(ready)
        except BaseException as e:
            # what this pull made: the registry's name (no image had it before the pull)
            # and the local one
            for name in {made, ref if ref != local_ref else None} - {None}:
                try:
                    await self._call(engine.remove, name)
                except Exception as cleanup:  # noqa: BLE001 - keep the pull's error
                    log.warning("could not remove pulled image %s: %s", name, cleanup)
            await self._discard(row_id, None)
            if isinstance(e, ImageEngineError):
                raise APIError(502, str(e)) from None
            raise
        self.store.forget()
        log.info("%s: pulled %s as %s", user, ref, local_ref)
        return model


def platform_secrets(settings) -> dict[str, str]:
    """Secrets of the platform itself, which no instance should ever hold: {value: what}."""
    secrets = environment_secrets(
        [f"JUPYTERHUB_API_TOKEN={os.environ.get('JUPYTERHUB_API_TOKEN', '')}"],
        "the platform service",
    )
    for value, what in (
        (settings.registry_password, "the registry password"),
        (settings.save_agent_token, "the save agent's token"),
    ):
        if value:
            secrets[value] = what
    return secrets


def make_image_saver(settings, engine_url: str, calls=None, transfers=None) -> ImageSaver:
    """The saver the settings' backend uses (images/savers.py): the engine's commit on
    docker, the node agent on the instance's node on kubernetes."""
    return make_saver(
        settings.backend,
        namespace=f"{settings.container_prefix}-saved",
        engine_url=engine_url,
        image_registry=settings.image_registry,
        container_prefix=settings.container_prefix,
        work_dir=settings.work_dir,
        platform_secrets=platform_secrets(settings),
        timeout=settings.image_transfer_timeout_seconds,
        calls=calls,
        transfers=transfers,
        registry_url=settings.registry_url,
        agent_token=settings.save_agent_token,
        agent_namespace=settings.save_agent_namespace or settings.kubernetes_namespace,
        agent_port=settings.save_agent_port,
    )


def make_image_service(*, db, hub, policy, settings, store, engine_url) -> ImageService:
    return ImageService(
        db=db, hub=hub, policy=policy, settings=settings, store=store, engine_url=engine_url
    )
