"""Gallery assets, their versions, stars and uses in the platform database."""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column
from workbench.times import isoformat, utcnow

from hub.db.core import Base

KINDS = ("notebook", "image", "model", "dataset")
VISIBILITIES = ("workspace", "everyone")
DEFAULT_WORKSPACE = "default"


class Asset(Base):
    """One published asset of one owner; `latest` is 0 while its first version is copied
    (such an asset is shown to no one and counts toward no quota)."""

    __tablename__ = "gallery_assets"
    # ids are never used again (SQLite would reuse the highest after a deletion): a link to
    # an unpublished asset, or its audit events, never name another one
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner: Mapped[str] = mapped_column(String(255), index=True)
    kind: Mapped[str] = mapped_column(String(16), index=True)
    title: Mapped[str] = mapped_column(String(120))
    description: Mapped[str] = mapped_column(Text, default="")  # Markdown
    tags: Mapped[str] = mapped_column(Text, default="[]")  # JSON list of tags
    visibility: Mapped[str] = mapped_column(String(16), default="everyone")
    workspace: Mapped[str] = mapped_column(String(32), default=DEFAULT_WORKSPACE, index=True)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    updated: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    uses: Mapped[int] = mapped_column(Integer, default=0)
    stars: Mapped[int] = mapped_column(Integer, default=0)
    latest: Mapped[int] = mapped_column(Integer, default=0)  # the latest version's number


class AssetVersion(Base):
    """One published version of an asset: the snapshot's files (their blobs' SHA-256s)."""

    __tablename__ = "gallery_versions"
    __table_args__ = (UniqueConstraint("asset_id", "version", name="uq_gallery_versions_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    asset_id: Mapped[int] = mapped_column(
        ForeignKey("gallery_assets.id", ondelete="CASCADE"), index=True
    )
    version: Mapped[int] = mapped_column(Integer)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    source: Mapped[str] = mapped_column(Text, default="{}")  # JSON: what it was published from
    meta: Mapped[str] = mapped_column(Text, default="{}")  # JSON: the kind's own
    files: Mapped[str] = mapped_column(Text, default="[]")  # JSON: [{path, size, sha256}]
    size: Mapped[int] = mapped_column(BigInteger, default=0)  # counted toward the quota
    notes: Mapped[str] = mapped_column(Text, default="")  # what changed in this version


class Star(Base):
    """A user's star on an asset."""

    __tablename__ = "gallery_stars"
    __table_args__ = (UniqueConstraint("asset_id", "user", name="uq_gallery_stars_user"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    asset_id: Mapped[int] = mapped_column(
        ForeignKey("gallery_assets.id", ondelete="CASCADE"), index=True
    )
    user: Mapped[str] = mapped_column(String(255), index=True)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Use(Base):
    """One use of an asset's version by a user, and where it went."""

    __tablename__ = "gallery_uses"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    asset_id: Mapped[int] = mapped_column(
        ForeignKey("gallery_assets.id", ondelete="CASCADE"), index=True
    )
    version: Mapped[int] = mapped_column(Integer)
    user: Mapped[str] = mapped_column(String(255), index=True)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    target: Mapped[str] = mapped_column(Text, default="{}")  # JSON: where it went


def loads(text: str | None, default):
    try:
        return json.loads(text) if text else default
    except ValueError:
        return default


def version_shas(row: AssetVersion) -> set[str]:
    """The blobs a version references: its files' and what its meta names (a preview)."""
    shas = {f["sha256"] for f in loads(row.files, []) if isinstance(f, dict) and "sha256" in f}
    for key, value in loads(row.meta, {}).items():
        if key.endswith("sha256") and isinstance(value, str):
            shas.add(value)
    return shas


def referenced(session: Session, among: set[str] | None = None) -> set[str]:
    """The blobs any version references (of those in `among`, where given)."""
    found: set[str] = set()
    for files, meta in session.execute(select(AssetVersion.files, AssetVersion.meta)):
        row = AssetVersion(files=files, meta=meta)
        found |= version_shas(row)
    return found if among is None else found & among


def version_model(row: AssetVersion, with_source: bool = False, full: bool = False) -> dict:
    """The API's JSON of a version (full: its files listed instead of counted)."""
    files = loads(row.files, [])
    model = {
        "version": row.version,
        "created": isoformat(row.created),
        "size": row.size,
        "files": files if full else len(files),
        "meta": loads(row.meta, {}),
        "notes": row.notes or "",
    }
    if with_source or full:
        model["source"] = loads(row.source, {})
    return model


def asset_model(row: Asset, latest: AssetVersion | None, starred: bool = False) -> dict:
    """The API's JSON of an asset, with its latest version's size and meta."""
    return {
        "id": row.id,
        "kind": row.kind,
        "title": row.title,
        "description": row.description,
        "tags": loads(row.tags, []),
        "visibility": row.visibility,
        "workspace": row.workspace,
        "owner": row.owner,
        "created": isoformat(row.created),
        "updated": isoformat(row.updated),
        "version": row.latest,
        "size": latest.size if latest is not None else 0,
        "uses": row.uses,
        "stars": row.stars,
        "starred": starred,
        "meta": loads(latest.meta, {}) if latest is not None else {},
    }


def versions_of(session: Session, asset_id: int) -> list[AssetVersion]:
    q = select(AssetVersion).where(AssetVersion.asset_id == asset_id)
    return list(session.scalars(q.order_by(AssetVersion.version)))


def find_version(session: Session, asset_id: int, version: int) -> AssetVersion | None:
    q = select(AssetVersion).where(
        AssetVersion.asset_id == asset_id, AssetVersion.version == version
    )
    return session.scalars(q).first()


def used_bytes(session: Session, owner: str) -> int:
    """Bytes all the versions of an owner's assets count toward their quota."""
    q = (
        select(func.coalesce(func.sum(AssetVersion.size), 0))
        .join(Asset, Asset.id == AssetVersion.asset_id)
        .where(Asset.owner == owner)
    )
    return int(session.scalar(q) or 0)


def recount_stars(session: Session, asset_ids) -> None:
    for asset_id in set(asset_ids):
        count = session.scalar(select(func.count(Star.id)).where(Star.asset_id == asset_id))
        session.execute(update(Asset).where(Asset.id == asset_id).values(stars=int(count or 0)))


def remove_assets(session: Session, ids: list[int]) -> None:
    """Remove assets with their versions, stars and uses (not relying on the database's
    cascades, which SQLite applies only where foreign keys are switched on)."""
    if not ids:
        return
    for table in (Use, Star, AssetVersion):
        session.execute(delete(table).where(table.asset_id.in_(ids)))
    session.execute(delete(Asset).where(Asset.id.in_(ids)))


def forget_user(session: Session, user: str) -> dict[str, int]:
    """A deleted user's assets (their versions, stars and uses) go, and their stars and uses
    of others' assets (whose star counts are recounted). Blobs no version references any
    more are removed by the gallery's sweep when the platform API starts."""
    ids = list(session.scalars(select(Asset.id).where(Asset.owner == user)))
    remove_assets(session, ids)
    starred = list(session.scalars(select(Star.asset_id).where(Star.user == user)))
    stars = session.execute(delete(Star).where(Star.user == user)).rowcount or 0
    uses = session.execute(delete(Use).where(Use.user == user)).rowcount or 0
    recount_stars(session, starred)
    return {"gallery_assets": len(ids), "gallery_stars": stars, "gallery_uses": uses}
