"""Workspaces: named groups of users, each with its own instances, images and quotas."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Integer, String, Text, UniqueConstraint, select
from sqlalchemy.orm import Mapped, Session, mapped_column
from workbench.names import WORKSPACE_NAME_RE
from workbench.times import utcnow

from hub.db.core import Base

DEFAULT = "default"


class WorkspaceError(ValueError):
    """A workspace request is malformed or refused; the message says why."""


class Workspace(Base):
    """A workspace other than "default" (which always exists and holds everyone)."""

    __tablename__ = "workspaces"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(32), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(255), default="")


class WorkspaceMember(Base):
    """A user's membership of a workspace."""

    __tablename__ = "workspace_members"
    __table_args__ = (UniqueConstraint("workspace_id", "user"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    user: Mapped[str] = mapped_column(String(255), index=True)


def check_name(name) -> str:
    if not isinstance(name, str) or not WORKSPACE_NAME_RE.match(name):
        raise WorkspaceError(
            f"Invalid workspace name {name!r}: use 1 to 32 lower-case letters, digits and '-' "
            "(for example 'nlp-team')."
        )
    return name


def _find(session: Session, name: str) -> Workspace | None:
    return session.scalars(select(Workspace).where(Workspace.name == name)).first()


def _members(session: Session, ws: Workspace) -> list[str]:
    return sorted(
        session.scalars(
            select(WorkspaceMember.user).where(WorkspaceMember.workspace_id == ws.id)
        ).all()
    )


def _model(session: Session, ws: Workspace | None) -> dict:
    if ws is None:
        return {
            "name": DEFAULT,
            "description": "Everyone's workspace; it always exists.",
            "members": "*",
            "created": None,
        }
    return {
        "name": ws.name,
        "description": ws.description,
        "members": _members(session, ws),
        "created": ws.created.isoformat() + "Z",
        "created_by": ws.created_by,
    }


def is_member(session: Session, user: str, name: str) -> bool:
    """Whether user belongs to workspace name (everyone belongs to "default")."""
    if name == DEFAULT:
        return True
    ws = _find(session, name)
    if ws is None:
        return False
    return user in _members(session, ws)


def workspaces_of(session: Session, user: str | None) -> list[dict]:
    """The workspaces user belongs to ("default" first); all of them for user None."""
    q = select(Workspace).order_by(Workspace.name)
    if user is not None:
        q = q.join(WorkspaceMember, WorkspaceMember.workspace_id == Workspace.id).where(
            WorkspaceMember.user == user
        )
    return [_model(session, None)] + [_model(session, ws) for ws in session.scalars(q)]


def get(session: Session, name: str) -> dict | None:
    if name == DEFAULT:
        return _model(session, None)
    ws = _find(session, name)
    return _model(session, ws) if ws else None


def create(session: Session, name: str, description: str, members: list, by: str) -> dict:
    check_name(name)
    if name == DEFAULT or _find(session, name) is not None:
        raise WorkspaceError(f"Workspace {name!r} already exists. Pick another name.")
    if not isinstance(description, str) or len(description) > 512:
        raise WorkspaceError("The description must be text of at most 512 characters.")
    ws = Workspace(name=name, description=description, created_by=by)
    session.add(ws)
    session.flush()
    set_members(session, ws.name, members)
    return _model(session, ws)


def set_members(session: Session, name: str, members) -> dict:
    if name == DEFAULT:
        raise WorkspaceError('Everyone belongs to "default"; its members cannot be set.')
    ws = _find(session, name)
    if ws is None:
        raise LookupError(name)
    if not isinstance(members, list) or not all(isinstance(m, str) and m for m in members):
        raise WorkspaceError('"members" must be a list of user names.')
    current = {
        m.user: m
        for m in session.scalars(
            select(WorkspaceMember).where(WorkspaceMember.workspace_id == ws.id)
        )
    }
    for user in set(current) - set(members):
        session.delete(current[user])
    for user in set(members) - set(current):
        session.add(WorkspaceMember(workspace_id=ws.id, user=user))
    session.flush()
    return _model(session, ws)


def delete(session: Session, name: str) -> bool:
    if name == DEFAULT:
        raise WorkspaceError('The "default" workspace always exists and cannot be deleted.')
    ws = _find(session, name)
    if ws is None:
        return False
    for m in session.scalars(select(WorkspaceMember).where(WorkspaceMember.workspace_id == ws.id)):
        session.delete(m)
    session.delete(ws)
    return True


class WorkspaceStore:
    """Membership checks for the spawners (blocking; called in worker threads)."""

    def __init__(self, db):
        self.db = db

    def is_member(self, user: str, name: str) -> bool:
        return self.db.call(lambda s: is_member(s, user, name))

    def names_of(self, user: str) -> list[str]:
        """The names of the user's workspaces, "default" first."""
        return [w["name"] for w in self.db.call(lambda s: workspaces_of(s, user))]


def forget_user(session: Session, user: str) -> dict[str, int]:
    """A deleted user leaves every workspace."""
    from sqlalchemy import delete

    removed = session.execute(delete(WorkspaceMember).where(WorkspaceMember.user == user))
    return {"workspace_memberships": removed.rowcount}
