"""The gallery in the platform API: publishing snapshots, browsing, stars, uses, checked files.

Publishing reserves the asset's row first (its `latest` stays 0, so no one sees it), lets the
asset's kind copy the source into the content-addressed blob store, then checks the owner's
quota and inserts the version in one transaction under the owner's lock; any refusal on the
way removes what was reserved and undoes the kind's side effects, so nothing is half-made.
Blobs no version references any more are removed when no publish is copying (one could be
about to reference them) and by a sweep when the platform API starts.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re

from sqlalchemy import and_, func, or_, select
from workbench.times import utcnow

from hub.service.api import APIError

from . import store
from .kinds import KIND_NAMES, KINDS, Kind, KindContext, human_size
from .store import DEFAULT_WORKSPACE, Asset, AssetVersion, Star, Use

log = logging.getLogger("workbench.gallery")

MAX_TITLE = 120
MAX_DESCRIPTION = 20_000
MAX_NOTES = 2_000
MAX_TAGS = 10
TAG = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
SORTS = {"newest", "most_used", "stars"}
MAX_LIMIT = 100
DEFAULT_LIMIT = 50
MAX_OFFSET = 1_000_000_000
MAX_QUERY = 200
CHUNK = 1024 * 1024

PUBLISH_KEYS = ("kind", "title", "description", "tags", "visibility", "workspace", "source")
VERSION_KEYS = ("source", "notes")
UPDATE_KEYS = ("title", "description", "tags", "visibility", "workspace")


def check_keys(body: dict, allowed: tuple[str, ...], what: str) -> None:
    """400 naming the fields a body has that `what` does not take."""
    unknown = sorted(str(k) for k in set(body) - set(allowed))
    if unknown:
        raise APIError(
            400,
            f"{what} takes {', '.join(allowed)}; unknown field(s): {', '.join(unknown)}.",
        )


def check_title(value) -> str:
    if not isinstance(value, str) or not value.strip() or len(value.strip()) > MAX_TITLE:
        raise APIError(400, f"A title is required (1-{MAX_TITLE} characters).")
    return " ".join(value.split())


def check_description(value) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > MAX_DESCRIPTION:
        raise APIError(
            400, f"description must be Markdown text of at most {MAX_DESCRIPTION} characters."
        )
    return value


def check_tags(value) -> list[str]:
    """Tags lowercased, each 1-32 of [a-z0-9-] starting with a letter or digit, at most 10,
    each once (in the order given)."""
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        raise APIError(400, 'tags must be a list of words, for example ["nlp", "bert"].')
    tags: list[str] = []
    for tag in value:
        text = tag.strip().lower() if isinstance(tag, str) else tag
        if not isinstance(text, str) or not TAG.match(text):
            raise APIError(
                400,
                f"Tag {tag!r} is not valid: use 1-32 lowercase letters, digits and '-', "
                "starting with a letter or digit (for example 'image-classification').",
            )
        if text not in tags:
            tags.append(text)
    if len(tags) > MAX_TAGS:
        raise APIError(400, f"An asset may have at most {MAX_TAGS} tags; got {len(tags)}.")
    return tags


def check_notes(value) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > MAX_NOTES:
        raise APIError(400, f"notes must be text of at most {MAX_NOTES} characters.")
    return value


def check_version_number(value, what: str = "version") -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 999_999_999:
        raise APIError(400, f"{what} must be a version number (1, 2, ...); got {value!r}.")
    return value


class GalleryService:
    """Publishing, browsing and using gallery assets.

    ctx: what the kinds use of the platform (its `blobs` and `settings` are the gallery's);
    kinds: {name: Kind} (the installed ones by default); workspaces: the workspaces feature's
    object (None: only the default workspace exists).
    """

    def __init__(self, ctx: KindContext, kinds: dict[str, Kind] | None = None, workspaces=None):
        self.ctx = ctx
        self.db = ctx.db
        self.blobs = ctx.blobs
        self.settings = ctx.settings
        self.kinds = KINDS if kinds is None else kinds
        self.workspaces = workspaces
        self._locks: dict[str, asyncio.Lock] = {}
        # blobs are removed only while no publish copies (it may be about to reference them)
        self._publishing = 0
        self._gate = asyncio.Lock()
        self._garbage: set[str] = set()

    # --- start and stop ------------------------------------------------------------------
    async def start(self) -> None:
        """Sweep: remove unfinished copies and every blob no version references (a deleted
        user's, an interrupted publish's)."""
        try:
            removed = await self.sweep()
        except Exception as e:  # noqa: BLE001 - the gallery serves all the same
            log.warning("gallery: the blob sweep failed: %s", e)
            return
        if removed:
            log.info("gallery: removed %d blobs no asset references", removed)

    async def sweep(self) -> int:
        """Remove every blob no version references; how many went."""
        async with self._gate:
            if self._publishing:
                return 0
            await asyncio.to_thread(self.blobs.clear_temporary_blocking)
            stored = await asyncio.to_thread(self.blobs.addresses_blocking)
            if not stored:
                return 0
            kept = await self.db.run(lambda s: store.referenced(s, stored))
            return await asyncio.to_thread(self._remove_blocking, stored - kept)

    async def close(self) -> None:
        pass

    def _remove_blocking(self, shas) -> int:
        removed = 0
        for sha in shas:
            try:
                removed += self.blobs.remove_blocking(sha)
            except Exception as e:  # noqa: BLE001 - the next sweep tries again
                log.warning("gallery: cannot remove blob %s: %s", sha, e)
        return removed

    async def _collect(self) -> None:
        """Remove the blobs set aside as garbage that no version references, unless a
        publish is copying (then the next collection, or the start-up sweep, does)."""
        if self._publishing or not self._garbage:
            return
        async with self._gate:
            if self._publishing or not self._garbage:
                return
            candidates = set(self._garbage)
            self._garbage -= candidates
            kept = await self.db.run(lambda s: store.referenced(s, candidates))
            removed = await asyncio.to_thread(self._remove_blocking, candidates - kept)
            if removed:
                log.info("gallery: removed %d blobs no asset references", removed)

    # --- visibility ----------------------------------------------------------------------
    async def member_of(self, user: str) -> set[str]:
        """The workspaces a user is a member of ("default" included)."""
        if self.workspaces is None:
            return {DEFAULT_WORKSPACE}

        def names(session):
            from features.workspaces.store import workspaces_of

            return {w["name"] for w in workspaces_of(session, user)}

        try:
            return await self.db.run(names)
        except Exception:  # noqa: BLE001 - no workspaces table: the default one only
            return {DEFAULT_WORKSPACE}

    @staticmethod
    def _owns(caller: dict, asset: Asset) -> bool:
        return bool(caller.get("admin")) or asset.owner == caller["name"]

    async def _can_see(self, caller: dict, asset: Asset) -> bool:
        if asset.latest < 1:
            return False  # its first version is still being copied
        if self._owns(caller, asset) or asset.visibility == "everyone":
            return True
        return asset.workspace != DEFAULT_WORKSPACE and asset.workspace in await self.member_of(
            caller["name"]
        )

    @staticmethod
    def _not_found(asset_id) -> APIError:
        return APIError(404, f"No gallery asset {asset_id} that you may see.")

    async def _asset(self, caller: dict, asset_id: int, *, change: bool = False) -> Asset:
        """The asset when the caller may see it (404 otherwise); change: only its owner and
        administrators (403 for others who see it)."""
        row = await self.db.run(lambda s: s.get(Asset, asset_id))
        if row is None or not await self._can_see(caller, row):
            raise self._not_found(asset_id)
        if change and not self._owns(caller, row):
            raise APIError(
                403,
                f"Gallery asset {asset_id} belongs to {row.owner}: only they and administrators "
                "may change it.",
            )
        return row

    async def _version(self, asset: Asset, version: int | None) -> AssetVersion:
        number = asset.latest if version is None else version
        row = await self.db.run(lambda s: store.find_version(s, asset.id, number))
        if row is None:
            raise APIError(
                404,
                f"Gallery asset {asset.id} has no version {number} (its versions are "
                f"1-{asset.latest}).",
            )
        return row

    def _kind(self, name) -> Kind:
        kind = self.kinds.get(name) if isinstance(name, str) else None
        if kind is None:
            kinds = ", ".join(k for k in KIND_NAMES if k in self.kinds)
            raise APIError(400, f"kind must be one of {kinds}; got {name!r}.")
        return kind

    async def _visibility(self, owner: str, visibility, workspace) -> tuple[str, str]:
        """(visibility, workspace) checked: workspace visibility needs a non-default
        workspace the owner is a member of; everyone's stores "default"."""
        if visibility is None:
            visibility = "everyone"
        if visibility not in store.VISIBILITIES:
            raise APIError(
                400, f"visibility must be 'workspace' or 'everyone'; got {visibility!r}."
            )
        if visibility == "everyone":
            if workspace not in (None, "", DEFAULT_WORKSPACE):
                raise APIError(
                    400,
                    "An asset shown to everyone belongs to no workspace: leave workspace out, "
                    "or set visibility to 'workspace'.",
                )
            return visibility, DEFAULT_WORKSPACE
        theirs = sorted((await self.member_of(owner)) - {DEFAULT_WORKSPACE})
        if not isinstance(workspace, str) or workspace not in theirs:
            listed = ", ".join(theirs) if theirs else "none: ask an administrator to add you"
            raise APIError(
                400,
                f"visibility 'workspace' needs workspace: one of your workspaces ({listed}); "
                f"got {workspace!r}.",
            )
        return visibility, workspace

    # --- models --------------------------------------------------------------------------
    async def _model(self, caller: dict, asset_id: int, versions: bool = False) -> dict:
        def read(session):
            row = session.get(Asset, asset_id)
            if row is None:
                return None
            latest = store.find_version(session, row.id, row.latest)
            starred = session.scalar(
                select(Star.id).where(Star.asset_id == row.id, Star.user == caller["name"])
            )
            model = store.asset_model(row, latest, starred is not None)
            if versions:
                owner = self._owns(caller, row)
                model["versions"] = [
                    store.version_model(v, with_source=owner)
                    for v in store.versions_of(session, row.id)
                ]
            return model

        model = await self.db.run(read)
        if model is None:
            raise self._not_found(asset_id)
        return model

    # --- reading -------------------------------------------------------------------------
    async def list(self, caller: dict, query: dict | None = None) -> dict:
        """The assets the caller may see that match the query: {"assets", "total", "tags"
        (tag -> how many of the matching assets have it)}.

        query: q (words in the title, description or tags), tag (a list: all must match),
        kind, owner, mine, sort (newest, most_used, stars), limit (1-100), offset.
        """
        query = dict(query or {})
        q = query.get("q") or ""
        if not isinstance(q, str) or len(q) > MAX_QUERY:
            raise APIError(400, f"q must be text of at most {MAX_QUERY} characters.")
        tag = query.get("tag") or []
        if isinstance(tag, str):
            tag = [tag]
        tags = check_tags(tag)
        kind = query.get("kind") or None
        if kind is not None and kind not in KIND_NAMES:
            raise APIError(400, f"kind must be one of {', '.join(KIND_NAMES)}; got {kind!r}.")
        owner = query.get("owner") or None
        if owner is not None and not isinstance(owner, str):
            raise APIError(400, "owner must be a user's name.")
        if query.get("mine") in (True, "1", "true", 1):
            owner = caller["name"]
        sort = query.get("sort") or "newest"
        if sort not in SORTS:
            raise APIError(400, f"sort must be one of newest, most_used, stars; got {sort!r}.")
        try:
            limit = int(query.get("limit") or DEFAULT_LIMIT)
            offset = int(query.get("offset") or 0)
        except (TypeError, ValueError):
            raise APIError(400, "limit and offset must be whole numbers.") from None
        if not 1 <= limit <= MAX_LIMIT or not 0 <= offset <= MAX_OFFSET:
            raise APIError(400, f"limit must be 1-{MAX_LIMIT} and offset 0-{MAX_OFFSET}.")
        member = set() if caller.get("admin") else await self.member_of(caller["name"])

        def read(session):
            conditions = [Asset.latest > 0]
            if not caller.get("admin"):
                conditions.append(
                    or_(
                        Asset.owner == caller["name"],
                        Asset.visibility == "everyone",
                        and_(
                            Asset.visibility == "workspace",
                            Asset.workspace.in_(sorted(member - {DEFAULT_WORKSPACE})),
                        ),
                    )
                )
            if kind:
                conditions.append(Asset.kind == kind)
            if owner:
                conditions.append(Asset.owner == owner)
            for t in tags:
                conditions.append(Asset.tags.contains(f'"{t}"'))
            for word in q.lower().split():
                conditions.append(
                    or_(
                        func.lower(Asset.title).contains(word, autoescape=True),
                        func.lower(Asset.description).contains(word, autoescape=True),
                        func.lower(Asset.tags).contains(word, autoescape=True),
                    )
                )
            where = and_(*conditions)
            counts: dict[str, int] = {}
            total = 0
            for text in session.scalars(select(Asset.tags).where(where)):
                total += 1
                for t in store.loads(text, []):
                    counts[t] = counts.get(t, 0) + 1
            order = {
                "newest": (Asset.created.desc(), Asset.id.desc()),
                "most_used": (Asset.uses.desc(), Asset.created.desc(), Asset.id.desc()),
                "stars": (Asset.stars.desc(), Asset.created.desc(), Asset.id.desc()),
            }[sort]
            rows = list(
                session.scalars(
                    select(Asset).where(where).order_by(*order).limit(limit).offset(offset)
                )
            )
            ids = [r.id for r in rows]
            latest = {}
            starred = set()
            if ids:
                pairs = [
                    and_(AssetVersion.asset_id == r.id, AssetVersion.version == r.latest)
                    for r in rows
                ]
                latest = {
                    v.asset_id: v for v in session.scalars(select(AssetVersion).where(or_(*pairs)))
                }
                starred = set(
                    session.scalars(
                        select(Star.asset_id).where(
                            Star.asset_id.in_(ids), Star.user == caller["name"]
                        )
                    )
                )
            assets = [store.asset_model(r, latest.get(r.id), r.id in starred) for r in rows]
            ranked = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
            return {"assets": assets, "total": total, "tags": ranked}

        return await self.db.run(read)

    async def get(self, caller: dict, asset_id: int) -> dict:
        """The asset with its versions (their sources only for its owner and admins)."""
        await self._asset(caller, asset_id)
        return await self._model(caller, asset_id, versions=True)

    async def files(self, caller: dict, asset_id: int, version: int) -> list[dict]:
        """A version's files: [{path, size, sha256}]."""
        asset = await self._asset(caller, asset_id)
        row = await self._version(asset, version)
        return store.loads(row.files, [])

    def _damaged(self, asset_id: int, version: int, path: str, sha: str, why: str) -> APIError:
        log.warning(
            "gallery: file %r of asset %s version %s (blob %s) %s",
            path,
            asset_id,
            version,
            sha,
            why,
        )
        return APIError(
            409,
            f"File {path!r} of gallery asset {asset_id} version {version} no longer matches "
            "its SHA-256 (stored copy damaged): ask its owner to publish it again.",
        )

    def _open_checked_blocking(self, sha: str, size: int):
        """The blob opened at its start once its whole content hashed to its address (and
        has the size recorded); None when it does not or is missing."""
        try:
            f = self.blobs.open_blocking(sha)
        except Exception:  # noqa: BLE001 - missing or unreadable: damaged
            return None
        try:
            digest, n = hashlib.sha256(), 0
            while chunk := f.read(CHUNK):
                digest.update(chunk)
                n += len(chunk)
            if n != size or digest.hexdigest() != sha:
                f.close()
                return None
            f.seek(0)
            return f
        except BaseException:
            f.close()
            raise

    async def open_file(self, caller: dict, asset_id: int, version: int, path: str):
        """(a binary file object at its start, size, sha256) of a version's file, once its
        stored copy hashed to the SHA-256 recorded at publish (409 naming it otherwise).
        The caller closes the file."""
        asset = await self._asset(caller, asset_id)
        row = await self._version(asset, version)
        entry = next((f for f in store.loads(row.files, []) if f.get("path") == path), None)
        if entry is None:
            raise APIError(
                404, f"Gallery asset {asset_id} version {row.version} has no file {path!r}."
            )
        sha, size = entry["sha256"], int(entry["size"])
        f = await asyncio.to_thread(self._open_checked_blocking, sha, size)
        if f is None:
            raise self._damaged(asset_id, row.version, path, sha, "no longer hashes to it")
        return f, size, sha

    async def preview(self, caller: dict, asset_id: int, version: int | None = None) -> str:
        """The rendered read-only HTML of a notebook version (404 for other kinds)."""
        asset = await self._asset(caller, asset_id)
        row = await self._version(asset, version)
        sha = store.loads(row.meta, {}).get("preview_sha256")
        if asset.kind != "notebook" or not isinstance(sha, str):
            raise APIError(
                404, f"Gallery asset {asset_id} is a {asset.kind}: only notebooks have a preview."
            )

        def read():
            try:
                data = self.blobs.read_blocking(sha)
            except Exception:  # noqa: BLE001 - missing: damaged
                return None
            return data if hashlib.sha256(data).hexdigest() == sha else None

        data = await asyncio.to_thread(read)
        if data is None:
            raise self._damaged(asset_id, row.version, "preview.html", sha, "is damaged")
        return data.decode("utf-8", errors="replace")

    # --- publishing ----------------------------------------------------------------------
    def _lock(self, owner: str) -> asyncio.Lock:
        """One quota check and insert of an owner at a time."""
        return self._locks.setdefault(owner, asyncio.Lock())

    async def _check_quota(self, owner: str, adding: int) -> None:
        """413 when `adding` bytes more would be over the owner's gallery quota."""
        quota = int(self.settings.max_user_bytes)
        used = await self.db.run(lambda s: store.used_bytes(s, owner))
        if used + adding > quota:
            raise APIError(
                413,
                f"This version ({human_size(adding)}) is over your gallery quota of "
                f"{human_size(quota)} (you use {human_size(used)}): unpublish assets or "
                "versions you no longer need.",
            )

    async def _snapshot(self, kind: Kind, owner: str, source: dict, asset_id: int, version: int):
        """The kind's snapshot, its size checked against max_asset_bytes (413)."""
        snap = await kind.snapshot(self.ctx, owner, source, asset_id, version)
        limit = int(self.settings.max_asset_bytes)
        if snap.size > limit:
            await self._undo(snap)
            raise APIError(
                413,
                f"This {kind.name} is {human_size(snap.size)}, larger than the "
                f"{human_size(limit)} one version of a gallery asset may hold: publish a "
                "smaller one.",
            )
        return snap

    async def _undo(self, snap) -> None:
        """Undo a snapshot's side effects and set its blobs aside for collection."""
        if snap is None:
            return
        self._garbage |= {f["sha256"] for f in snap.files if "sha256" in f}
        self._garbage |= {
            v for k, v in snap.meta.items() if k.endswith("sha256") and isinstance(v, str)
        }
        if snap.cleanup is not None:
            try:
                await snap.cleanup()
            except Exception as e:  # noqa: BLE001 - logged; the refusal stands
                log.warning("gallery: undoing a failed publish: %s", e)

    async def _begin(self) -> None:
        async with self._gate:
            self._publishing += 1

    async def _end(self) -> None:
        self._publishing -= 1
        await self._collect()

    async def publish(self, caller: dict, body: dict) -> dict:
        """Publish an asset with its version 1 (a snapshot of the source): the asset."""
        owner = caller["name"]
        check_keys(body, PUBLISH_KEYS, "Publishing")
        kind = self._kind(body.get("kind"))
        title = check_title(body.get("title"))
        description = check_description(body.get("description"))
        tags = check_tags(body.get("tags"))
        visibility, workspace = await self._visibility(
            owner, body.get("visibility"), body.get("workspace")
        )
        if "source" not in body or body["source"] is None:
            raise APIError(400, f"source is required: what to publish as a {kind.name}.")
        source = kind.check_source(body["source"])
        await self._check_quota(owner, 0)

        def reserve(session):
            now = utcnow()
            row = Asset(
                owner=owner,
                kind=kind.name,
                title=title,
                description=description,
                tags=json.dumps(tags),
                visibility=visibility,
                workspace=workspace,
                created=now,
                updated=now,
                uses=0,
                stars=0,
                latest=0,
            )
            session.add(row)
            session.flush()
            return row.id

        asset_id = await self.db.run(reserve)
        await self._begin()
        snap = None
        try:
            snap = await self._snapshot(kind, owner, source, asset_id, 1)
            async with self._lock(owner):
                await self._check_quota(owner, snap.size)

                def insert(session):
                    session.add(self._version_row(asset_id, 1, snap, ""))
                    row = session.get(Asset, asset_id)
                    row.latest = 1

                await self.db.run(insert)
        except BaseException:
            await asyncio.shield(self._unreserve(asset_id, snap))
            raise
        finally:
            await self._end()
        log.info(
            "gallery: %s published %s %s (%s)", owner, kind.name, asset_id, human_size(snap.size)
        )
        return await self._model(caller, asset_id)

    async def _unreserve(self, asset_id: int, snap) -> None:
        await self.db.run(lambda s: store.remove_assets(s, [asset_id]))
        await self._undo(snap)

    @staticmethod
    def _version_row(asset_id: int, version: int, snap, notes: str) -> AssetVersion:
        return AssetVersion(
            asset_id=asset_id,
            version=version,
            created=utcnow(),
            source=json.dumps(snap.source),
            meta=json.dumps(snap.meta),
            files=json.dumps(snap.files),
            size=int(snap.size),
            notes=notes,
        )

    async def add_version(self, caller: dict, asset_id: int, body: dict) -> dict:
        """Publish a new version of an asset from a source of the same kind: the asset."""
        asset = await self._asset(caller, asset_id, change=True)
        check_keys(body, VERSION_KEYS, "A new version")
        kind = self._kind(asset.kind)
        notes = check_notes(body.get("notes"))
        if "source" not in body or body["source"] is None:
            raise APIError(400, f"source is required: what to publish as a {kind.name}.")
        source = kind.check_source(body["source"])
        limit = int(self.settings.max_versions)
        if asset.latest >= limit:
            raise APIError(
                409,
                f"Gallery asset {asset_id} has {asset.latest} versions, the most one may have "
                f"({limit}): publish a new asset instead.",
            )
        await self._check_quota(asset.owner, 0)
        await self._begin()
        snap = None
        try:
            snap = await self._snapshot(kind, asset.owner, source, asset_id, asset.latest + 1)
            async with self._lock(asset.owner):
                await self._check_quota(asset.owner, snap.size)

                def insert(session):
                    row = session.get(Asset, asset_id)
                    if row is None:
                        return None
                    number = (
                        session.scalar(
                            select(func.max(AssetVersion.version)).where(
                                AssetVersion.asset_id == asset_id
                            )
                        )
                        or 0
                    ) + 1
                    if number > limit:
                        return 0
                    session.add(self._version_row(asset_id, number, snap, notes))
                    row.latest = number
                    row.updated = utcnow()
                    return number

                number = await self.db.run(insert)
            if number is None:
                raise self._not_found(asset_id)
            if number == 0:
                raise APIError(
                    409,
                    f"Gallery asset {asset_id} has the most versions one may have ({limit}): "
                    "publish a new asset instead.",
                )
        except BaseException:
            await asyncio.shield(self._undo(snap))
            raise
        finally:
            await self._end()
        log.info("gallery: %s published version %s of asset %s", caller["name"], number, asset_id)
        return await self._model(caller, asset_id)

    async def update(self, caller: dict, asset_id: int, body: dict) -> dict:
        """Change an asset's title, description, tags or visibility: the asset."""
        asset = await self._asset(caller, asset_id, change=True)
        check_keys(body, UPDATE_KEYS, "Changing an asset")
        changes: dict = {}
        if "title" in body:
            changes["title"] = check_title(body["title"])
        if "description" in body:
            changes["description"] = check_description(body["description"])
        if "tags" in body:
            changes["tags"] = json.dumps(check_tags(body["tags"]))
        if "visibility" in body or "workspace" in body:
            visibility = body.get("visibility", asset.visibility)
            workspace = body.get("workspace")
            if "workspace" not in body and visibility == "workspace":
                workspace = asset.workspace
            changes["visibility"], changes["workspace"] = await self._visibility(
                asset.owner, visibility, workspace
            )

        def write(session):
            row = session.get(Asset, asset_id)
            if row is None:
                return False
            for key, value in changes.items():
                setattr(row, key, value)
            if changes:
                row.updated = utcnow()
            return True

        if not await self.db.run(write):
            raise self._not_found(asset_id)
        return await self._model(caller, asset_id)

    async def unpublish(self, caller: dict, asset_id: int) -> dict:
        """Remove an asset with all its versions, stars and uses, then the blobs no other
        version references; the asset as it was."""
        asset = await self._asset(caller, asset_id, change=True)
        model = await self._model(caller, asset_id, versions=True)

        def remove(session):
            rows = store.versions_of(session, asset_id)
            versions = [store.version_model(v, full=True) for v in rows]
            shas = set().union(*(store.version_shas(v) for v in rows)) if rows else set()
            store.remove_assets(session, [asset_id])
            return versions, shas

        versions, shas = await self.db.run(remove)
        kind = self.kinds.get(asset.kind)
        remover = getattr(kind, "remove", None)
        if remover is not None:
            try:
                await remover(self.ctx, model, versions)
            except Exception as e:  # noqa: BLE001 - the asset is gone; logged
                log.warning("gallery: removing what asset %s made: %s", asset_id, e)
        self._garbage |= shas
        await self._collect()
        log.info("gallery: %s unpublished asset %s of %s", caller["name"], asset_id, asset.owner)
        return model

    async def owner_of(self, asset_id: int) -> str | None:
        """Who owns an asset (None: there is none), for the audit log."""
        row = await self.db.run(lambda s: s.get(Asset, asset_id))
        return row.owner if row is not None else None

    # --- stars and uses ------------------------------------------------------------------
    async def star(self, caller: dict, asset_id: int) -> dict:
        """Star an asset (starring twice changes nothing): the asset."""
        await self._asset(caller, asset_id)

        def write(session):
            found = session.scalar(
                select(Star.id).where(Star.asset_id == asset_id, Star.user == caller["name"])
            )
            if found is None:
                session.add(Star(asset_id=asset_id, user=caller["name"], created=utcnow()))
                session.flush()
            store.recount_stars(session, [asset_id])

        await self.db.run(write)
        return await self._model(caller, asset_id)

    async def unstar(self, caller: dict, asset_id: int) -> dict:
        """Take back one's star (none there changes nothing): the asset."""
        await self._asset(caller, asset_id)

        def write(session):
            from sqlalchemy import delete

            session.execute(
                delete(Star).where(Star.asset_id == asset_id, Star.user == caller["name"])
            )
            store.recount_stars(session, [asset_id])

        await self.db.run(write)
        return await self._model(caller, asset_id)

    async def use(self, caller: dict, asset_id: int, body: dict) -> dict:
        """Hand a version (default the latest) to the caller as its kind does, and count the
        use: the kind's answer."""
        asset = await self._asset(caller, asset_id)
        kind = self._kind(asset.kind)
        check_keys(body, ("version", *kind.use_fields()), f"Using a {kind.name}")
        number = check_version_number(body.get("version"))
        row = await self._version(asset, number)
        asset_model = await self._model(caller, asset_id)
        version_model = store.version_model(row, full=True)
        fields = {k: v for k, v in body.items() if k != "version"}
        answer = await kind.use(self.ctx, caller, asset_model, version_model, fields)
        target = {**fields, **{k: v for k, v in answer.items() if k != "files"}}

        def record(session):
            session.add(
                Use(
                    asset_id=asset_id,
                    version=row.version,
                    user=caller["name"],
                    created=utcnow(),
                    target=json.dumps(target, default=str),
                )
            )
            current = session.get(Asset, asset_id)
            if current is not None:
                current.uses = (current.uses or 0) + 1

        await self.db.run(record)
        return answer
