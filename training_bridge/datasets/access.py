"""Who may see and change a dataset: its owner and administrators (everything), members of its
workspace (read, label, review), and the labellers and reviewers of its tasks."""

from __future__ import annotations

import json

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from . import store
from .store import Dataset, LabellingTask

OWNER = "owner"  # the owner, or an administrator
MEMBER = "member"  # a member of the dataset's (non-default) workspace
LABELLER = "labeller"  # a labeller of one of its tasks
REVIEWER = "reviewer"  # a reviewer of one of its tasks


class DatasetAccess:
    """Answers what a caller may do with a dataset; workspaces: the workspaces feature's
    object (None: there is only the default workspace)."""

    def __init__(self, db, workspaces=None):
        self.db = db
        self.workspaces = workspaces

    async def member_of(self, user: str) -> set[str]:
        """The names of the user's workspaces ("default" among them)."""
        if self.workspaces is None:
            return {"default"}

        def names(session):
            from features.workspaces.store import workspaces_of

            return {w["name"] for w in workspaces_of(session, user)}

        try:
            return await self.db.run(names)
        except Exception:  # noqa: BLE001 - no workspaces table: the default one only
            return {"default"}

    async def roles(self, caller: dict, ds: Dataset) -> set[str]:
        """What the caller is to the dataset: OWNER, MEMBER, LABELLER, REVIEWER (none: it is
        hidden from them)."""
        name = caller["name"]
        if caller.get("admin") or ds.owner == name:
            return {OWNER}
        roles = set()
        if ds.workspace != "default" and ds.workspace in await self.member_of(name):
            roles.add(MEMBER)
        roles |= await self.db.run(lambda s: task_roles(s, ds.id, name))
        return roles


def task_roles(session: Session, dataset_id: int, user: str) -> set[str]:
    """LABELLER and/or REVIEWER where the user is in a task of the dataset."""
    roles = set()
    for task in _tasks_naming(session, user, LabellingTask.dataset_id == dataset_id):
        if user in store.loads(task.labellers, []):
            roles.add(LABELLER)
        if user in store.loads(task.reviewers, []):
            roles.add(REVIEWER)
    return roles


def task_datasets(session: Session, user: str) -> set[int]:
    """Ids of the datasets with a task the user labels or reviews."""
    ids = set()
    for task in _tasks_naming(session, user):
        if user in store.loads(task.labellers, []) or user in store.loads(task.reviewers, []):
            ids.add(task.dataset_id)
    return ids


def _tasks_naming(session: Session, user: str, *where):
    """Tasks whose member lists may hold the user (the JSON lists are checked by the caller)."""
    # the name as JSON writes it, with non-ASCII letters escaped or not
    spellings = {json.dumps(user), json.dumps(user, ensure_ascii=False)}
    found = [
        column.like(like_pattern(text), escape="!")
        for text in spellings
        for column in (LabellingTask.labellers, LabellingTask.reviewers)
    ]
    return session.scalars(select(LabellingTask).where(*where, or_(*found)))


def _like(text: str) -> str:
    """text for a LIKE pattern with "!" as the escape character."""
    return text.replace("!", "!!").replace("%", "!%").replace("_", "!_")


def like_pattern(text: str) -> str:
    """A LIKE pattern (escape "!") that finds text anywhere."""
    return f"%{_like(text)}%"
