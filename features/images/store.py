"""Saved images in the platform database: the table, and who may use which image."""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime

from sqlalchemy import JSON, BigInteger, DateTime, Integer, String, Text, UniqueConstraint, select
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.orm import Mapped, Session, mapped_column
from workbench.times import utcnow

from hub.db.core import Base, Database
from images.saved import SavedImage, parse_saved_name

log = logging.getLogger(__name__)

EVERYONE = "*"


class SavedImageRow(Base):
    """One saved image: saving (being committed), ready, or failed (with the reason)."""

    __tablename__ = "saved_images"
    __table_args__ = (UniqueConstraint("owner", "name", "tag", name="uq_saved_images_name_tag"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner: Mapped[str] = mapped_column(String(255), index=True)
    name: Mapped[str] = mapped_column(String(64))
    tag: Mapped[str] = mapped_column(String(128))
    ref: Mapped[str] = mapped_column(String(512), unique=True)
    image_id: Mapped[str] = mapped_column(String(128), default="")
    size: Mapped[int] = mapped_column(BigInteger, default=0)  # the whole image, bytes
    added_size: Mapped[int] = mapped_column(BigInteger, default=0)  # above its base, bytes
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    source_instance: Mapped[str] = mapped_column(String(255), default="")
    base_image: Mapped[str] = mapped_column(String(255))  # catalog name
    description: Mapped[str] = mapped_column(Text, default="")
    state: Mapped[str] = mapped_column(String(16), default="saving")  # saving, ready, failed
    error: Mapped[str] = mapped_column(Text, default="")
    shares: Mapped[list] = mapped_column(JSON, default=list)  # user names, or ["*"]
    pushed_ref: Mapped[str] = mapped_column(String(512), default="")
    # the workspace of the instance it was saved from; its members may use it too
    workspace: Mapped[str] = mapped_column(String(32), default="default")

    def saved_image(self) -> SavedImage:
        return SavedImage(
            owner=self.owner,
            name=self.name,
            tag=self.tag,
            ref=self.ref,
            base=self.base_image,
            description=self.description,
        )

    def usable_by(self, user: str, workspaces: set[str] | frozenset = frozenset()) -> bool:
        """Ready, and the user's own, shared with them or everyone, or in one of their
        workspaces (other than "default", which everyone shares)."""
        shares = self.shares or []
        return self.state == "ready" and (
            user == self.owner
            or user in shares
            or EVERYONE in shares
            or (self.workspace != "default" and self.workspace in workspaces)
        )

    def to_dict(self) -> dict:
        return {
            "name": self.saved_image().saved_name,
            "image_name": self.name,
            "tag": self.tag,
            "owner": self.owner,
            "ref": self.ref,
            "id": self.image_id,
            "size": self.size,
            "added_size": self.added_size,
            "created": self.created.isoformat() + "Z" if self.created else None,
            "source_instance": self.source_instance,
            "base_image": self.base_image,
            "description": self.description,
            "state": self.state,
            "error": self.error,
            "shares": list(self.shares or []),
            "pushed_ref": self.pushed_ref,
            "workspace": self.workspace or "default",
            "kind": "saved",
        }


class ImagePushRow(Base):
    """A saved image the platform pushed to the registry: the record a pull trusts (the
    image's labels are not: anyone can set them), kept after the saved image is deleted."""

    __tablename__ = "image_pushes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ref: Mapped[str] = mapped_column(String(512), unique=True)  # in the registry
    owner: Mapped[str] = mapped_column(String(255), index=True)
    name: Mapped[str] = mapped_column(String(64))
    tag: Mapped[str] = mapped_column(String(128))
    image_id: Mapped[str] = mapped_column(String(128), default="")
    base_image: Mapped[str] = mapped_column(String(255))
    source_instance: Mapped[str] = mapped_column(String(255), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    pushed: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


def find_row(session: Session, owner: str, name: str, tag: str) -> SavedImageRow | None:
    return session.scalars(
        select(SavedImageRow).where(
            SavedImageRow.owner == owner, SavedImageRow.name == name, SavedImageRow.tag == tag
        )
    ).first()


def user_workspaces(session: Session, user: str) -> set[str]:
    """The workspaces a user belongs to (besides "default")."""
    from features.workspaces.store import Workspace, WorkspaceMember

    return set(
        session.scalars(
            select(Workspace.name)
            .join(WorkspaceMember, WorkspaceMember.workspace_id == Workspace.id)
            .where(WorkspaceMember.user == user)
        )
    )


def visible_rows(session: Session, user: str, workspace: str | None = None) -> list[SavedImageRow]:
    """Ready images the user may use (own, shared with them, public, in their workspaces) and
    their own saves; with workspace, only the images saved in it."""
    spaces = user_workspaces(session, user)
    q = select(SavedImageRow).order_by(SavedImageRow.created)
    if workspace is not None:
        q = q.where(SavedImageRow.workspace == workspace)
    rows = session.scalars(q).all()
    return [
        r for r in rows if (r.owner == user and r.state != "failed") or r.usable_by(user, spaces)
    ]


class SavedImageStore:
    """Looks up saved images for instance options (the spawners' `saved_images`).

    lookup() is blocking (a database read); async code calls it with asyncio.to_thread
    (InstancePolicy.prefetch does), after which lookups within `ttl` seconds are answered
    from memory.
    """

    def __init__(self, db: Database | str, ttl: float = 5):
        self.db = Database(db) if isinstance(db, str) else db
        self.ttl = ttl
        self._cache: dict[tuple[str, str], tuple[float, SavedImage | None]] = {}
        self._lock = threading.Lock()

    def lookup(self, user: str, name: str) -> SavedImage | None:
        """The saved image `name` (saved:<owner>/<image>:<tag>) if `user` may use it."""
        key = (user, name)
        with self._lock:
            cached = self._cache.get(key)
        if cached and time.monotonic() - cached[0] < self.ttl:
            return cached[1]
        owner, image, tag = parse_saved_name(name)

        def read(session):
            row = find_row(session, owner, image, tag)
            if row is None or not row.usable_by(user, user_workspaces(session, user)):
                return None
            return row.saved_image()

        try:
            found = self.db.call(read)
        except (OperationalError, ProgrammingError) as e:
            # the platform service creates the table at its first start
            log.warning("saved images cannot be read yet: %s", e)
            found = None
        with self._lock:
            self._cache[key] = (time.monotonic(), found)
        return found

    def available(self, user: str) -> list[SavedImage]:
        """The ready saved images `user` may use (blocking), cached for lookups."""
        try:
            images = self.db.call(
                lambda s: [r.saved_image() for r in visible_rows(s, user) if r.state == "ready"]
            )
        except (OperationalError, ProgrammingError):
            return []
        now = time.monotonic()
        with self._lock:
            for image in images:
                self._cache[(user, image.saved_name)] = (now, image)
        return images

    def forget(self, name: str | None = None):
        """Drop cached lookups (of one saved image, or all)."""
        with self._lock:
            for key in [k for k in self._cache if name is None or k[1] == name]:
                del self._cache[key]


def forget_user(session: Session, user: str) -> dict[str, int]:
    """A deleted user's saved images (with the records of their pushes, which pulls trust as
    the owner's) go, and their name leaves the shares of other people's images."""
    from sqlalchemy import delete

    counts = {
        "saved_images": session.execute(
            delete(SavedImageRow).where(SavedImageRow.owner == user)
        ).rowcount,
        "image_pushes": session.execute(
            delete(ImagePushRow).where(ImagePushRow.owner == user)
        ).rowcount,
    }
    # shares are a JSON list on each image: read the shared ones, drop the name in Python
    shared = 0
    for row in session.scalars(select(SavedImageRow)):
        if row.shares and user in row.shares:
            row.shares = [name for name in row.shares if name != user]
            shared += 1
    counts["shares"] = shared
    return counts
