"""What goes when a user is deleted: every row of theirs in the platform database.

A new account may later take the same name; it must find nothing of the old one. Each
feature says what of a user's it removes (hub/features.py forget_user): keys, saved images
and their shares, workspace memberships, options kept for running instances, the user's own
quota. Audit events and usage records stay: they are the platform's history.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from .features import collect, load_features


def forget_user(session: Session, user: str, features=None) -> dict[str, int]:
    """Remove the user's rows in every feature's tables; how many of each kind went."""
    counts: dict[str, int] = {}
    for _feature, forget in collect(
        load_features() if features is None else features, "forget_user"
    ):
        counts.update(forget(session, user))
    return counts


async def forget_deleted_user(db, user: str) -> dict[str, int]:
    """forget_user() in a worker thread, off the event loop."""
    return await db.run(lambda session: forget_user(session, user))
