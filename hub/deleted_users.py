"""What goes when a user is deleted: every row of theirs in the platform database.

A new account may later take the same name; it must find nothing of the old one. Keys,
saved images (with the records of their pushes, which pulls trust as the owner's, and the
shares naming the user on other people's images), workspace memberships, options kept for
running instances and the user's own quota all go. Audit events and usage records stay:
they are the platform's history.
"""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from .keys import SSHKey
from .live_options import LiveOptions
from .quotas import Quota
from .saved_images import ImagePushRow, SavedImageRow
from .workspaces import WorkspaceMember


def forget_user(session: Session, user: str) -> dict[str, int]:
    """Remove the user's rows; how many of each kind went."""
    counts = {
        "keys": session.execute(delete(SSHKey).where(SSHKey.user == user)).rowcount,
        "saved_images": session.execute(
            delete(SavedImageRow).where(SavedImageRow.owner == user)
        ).rowcount,
        "image_pushes": session.execute(
            delete(ImagePushRow).where(ImagePushRow.owner == user)
        ).rowcount,
        "workspace_memberships": session.execute(
            delete(WorkspaceMember).where(WorkspaceMember.user == user)
        ).rowcount,
        "live_options": session.execute(
            delete(LiveOptions).where(LiveOptions.user == user)
        ).rowcount,
        "quotas": session.execute(
            delete(Quota).where(Quota.kind == "user", Quota.subject == user)
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


async def forget_deleted_user(db, user: str) -> dict[str, int]:
    """forget_user() in a worker thread, off the event loop."""
    return await db.run(lambda session: forget_user(session, user))
