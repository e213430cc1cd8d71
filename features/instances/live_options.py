"""Options changed on a running instance (SSH, auto-stop, description).

JupyterHub keeps an instance's options in its server's user_options, and refuses to change
them while the server runs. Changes to options that apply without a restart are kept here
until the instance next stops, and laid over the hub's user_options wherever the platform
reads them (the API, auto-stop, the SSH gateway). At the stop, whichever path stopped it
(the hub's pages or API, the platform API, auto-stop, a crash), the spawner folds them into
the user_options; they go with the instance when it is deleted, and with the user.
"""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import DateTime, Integer, String, Text, UniqueConstraint, delete, select
from sqlalchemy.orm import Mapped, mapped_column
from workbench.times import utcnow

from hub.db.core import Base


class LiveOptions(Base):
    """The live options of one running instance, over its user_options."""

    __tablename__ = "instance_live_options"
    __table_args__ = (UniqueConstraint("user", "instance"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user: Mapped[str] = mapped_column(String(255), index=True)
    instance: Mapped[str] = mapped_column(String(64))
    options: Mapped[str] = mapped_column(Text, default="{}")
    updated: Mapped[datetime] = mapped_column(DateTime, default=lambda: utcnow())


class LiveOptionsStore:
    """Reads and writes live options; every call runs off the event loop."""

    def __init__(self, db):
        self.db = db

    async def overlay(self, user: str, servers: dict) -> dict:
        """servers (name: hub server model) with live options laid over their user_options."""
        await self.overlay_users({user: servers})
        return servers

    async def overlay_users(self, servers_by_user: dict[str, dict]) -> None:
        """overlay() for many users' servers ({user: {name: server}}) in one query: the
        auto-stop round reads every instance at once."""
        users = [user for user, servers in servers_by_user.items() if servers]
        if not users:
            return

        def read(session):
            rows = session.scalars(select(LiveOptions).where(LiveOptions.user.in_(users)))
            return [(row.user, row.instance, json.loads(row.options)) for row in rows]

        for user, name, options in await self.db.run(read):
            server = servers_by_user[user].get(name)
            if server is not None and server.get("user_options") is not None:
                server["user_options"] = {**server["user_options"], **options}

    async def set(self, user: str, name: str, options: dict):
        def write(session):
            row = session.scalars(
                select(LiveOptions).where(LiveOptions.user == user, LiveOptions.instance == name)
            ).first()
            if row is None:
                row = LiveOptions(user=user, instance=name)
                session.add(row)
            row.options = json.dumps(options)
            row.updated = utcnow()

        await self.db.run(write)

    async def take(self, user: str, name: str) -> dict:
        """Remove an instance's live options and return them ({} if there are none)."""

        def take(session):
            row = session.scalars(
                select(LiveOptions).where(LiveOptions.user == user, LiveOptions.instance == name)
            ).first()
            if row is None:
                return {}
            session.delete(row)
            return json.loads(row.options)

        return await self.db.run(take)

    async def clear(self, user: str, name: str):
        await self.db.run(
            lambda s: s.execute(
                delete(LiveOptions).where(LiveOptions.user == user, LiveOptions.instance == name)
            )
        )


def forget_user(session, user: str) -> dict[str, int]:
    """Options kept for a deleted user's running instances go."""
    removed = session.execute(delete(LiveOptions).where(LiveOptions.user == user))
    return {"live_options": removed.rowcount}
