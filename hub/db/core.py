"""Engine, sessions and migrations of the platform database (beside JupyterHub's own)."""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.pool import NullPool

log = logging.getLogger("workbench.db")

MIGRATIONS = Path(__file__).parent / "migrations"
# the platform's tables may share a PostgreSQL database with JupyterHub's, which has its
# own alembic_version table
VERSION_TABLE = "workbench_alembic_version"

T = TypeVar("T")


class Base(DeclarativeBase):
    """Base class of the platform's tables."""


def database_url(settings) -> str:
    """The platform database's URL: platform_db_url, else the hub's PostgreSQL URL, else SQLite
    in the data folder (workbench.sqlite, beside jupyterhub.sqlite)."""
    if settings.platform_db_url:
        return settings.platform_db_url
    if settings.db_url and not settings.db_url.startswith("sqlite"):
        return settings.db_url
    return f"sqlite:///{settings.data_path / 'workbench.sqlite'}"


def _sqlalchemy_url(url: str) -> str:
    # SQLAlchemy's postgresql:// means psycopg2; the platform ships psycopg 3
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def make_engine(url: str) -> Engine:
    """An engine; SQLite gets WAL and a busy timeout, as several processes share the file."""
    url = _sqlalchemy_url(url)
    if make_url(url).get_backend_name() == "sqlite":
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, pool_pre_ping=True
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def version_locations(features=None) -> list[str]:
    """Folders of alembic revisions: the kit's (the first revision, the audit log) and each
    installed feature's, so one `alembic upgrade heads` migrates every feature in order."""
    from ..features import load_features

    folders = [str(MIGRATIONS / "versions")]
    for feature in load_features() if features is None else features:
        path = feature.migrations_path()
        if path is not None:
            folders.append(str(path))
    return folders


def alembic_config(url: str, features=None):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # a separator no path holds (alembic's default splits on spaces)
    config.set_main_option("path_separator", "newline")
    config.set_main_option("version_locations", "\n".join(version_locations(features)))
    config.set_main_option("sqlalchemy.url", _sqlalchemy_url(url).replace("%", "%%"))
    return config


# PostgreSQL advisory lock key of the platform's migrations (any constant of our own)
MIGRATION_LOCK_KEY = 0x776F726B62656E63  # "workbenc"


@contextmanager
def migration_lock(url: str):
    """Hold the database's migration lock: one process migrates at a time.

    The platform's services migrate at start, often at the same moment. SQLite: a file lock
    beside the database file; PostgreSQL: an advisory lock held on a connection of its own.
    """
    sa_url = make_url(_sqlalchemy_url(url))
    backend = sa_url.get_backend_name()
    if backend == "sqlite" and sa_url.database and sa_url.database != ":memory:":
        import fcntl

        path = Path(sa_url.database)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_name(path.name + ".migrate-lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
    elif backend == "postgresql":
        engine = create_engine(_sqlalchemy_url(url), poolclass=NullPool)
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
                conn.commit()
                try:
                    yield
                finally:
                    conn.execute(
                        text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY}
                    )
                    conn.commit()
        finally:
            engine.dispose()
    else:
        yield


def repair_versions(url: str) -> list[str]:
    """Remove version rows that are ancestors of other rows (left by a race of earlier
    versions: alembic refuses to upgrade a database whose rows overlap). Returns them."""
    from alembic.script import ScriptDirectory
    from sqlalchemy import inspect as inspect_db

    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            if not inspect_db(conn).has_table(VERSION_TABLE):
                return []
            rows = set(conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars())
            if len(rows) < 2:
                return []
            script = ScriptDirectory.from_config(alembic_config(url))
            below = set()
            for row in rows:
                try:
                    below |= {r.revision for r in script.iterate_revisions(row, "base")} - {row}
                except Exception:  # noqa: BLE001 - a revision this code does not know
                    continue
            stray = sorted(rows & below)
            for row in stray:
                conn.execute(
                    text(f"DELETE FROM {VERSION_TABLE} WHERE version_num = :v"), {"v": row}
                )
            if stray:
                log.warning("database: removed stray migration versions %s", ", ".join(stray))
            return stray
    finally:
        engine.dispose()


def upgrade(url: str, revision: str = "heads", features=None):
    """Bring the database at url to revision (creating it if needed), under the migration
    lock, after repairing overlapping version rows.

    Each feature keeps its own migration branch off the initial revision, so "heads"
    (every branch) is the default.
    """
    from alembic import command

    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    with migration_lock(url):
        repair_versions(url)
        command.upgrade(alembic_config(url, features), revision)


def upgrade_when_ready(url: str, attempts: int = 10):
    """upgrade(), retried while the database is not reachable yet (a PostgreSQL starting)."""
    import time

    from sqlalchemy.exc import DBAPIError

    for attempt in range(attempts):
        try:
            return upgrade(url)
        except DBAPIError as e:
            if attempt == attempts - 1:
                raise
            log.info("database migration failed (%s); retrying", e.orig)
            time.sleep(0.5 + attempt * 0.5)


class Database:
    """The platform database for async code: each call runs in a worker thread.

    The threads are the database's own (as many as its connection pool holds), so that
    slow work elsewhere in a process (image pulls, pushes and commits hold threads for
    minutes) never leaves queries waiting for a thread.
    """

    def __init__(self, url: str, threads: int = 8):
        self.url = url
        self.engine = make_engine(url)
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False)
        self.executor = ThreadPoolExecutor(threads, thread_name_prefix="workbench-db")

    @contextmanager
    def session(self):
        """A session committed on success and rolled back on error."""
        session = self.sessionmaker()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def call(self, fn: Callable[[Session], T]) -> T:
        """Run fn(session) in a transaction (blocking)."""
        with self.session() as session:
            return fn(session)

    async def run(self, fn: Callable[[Session], T]) -> T:
        """Run fn(session) in a transaction in a worker thread, off the event loop."""
        loop = asyncio.get_running_loop()
        ctx = contextvars.copy_context()
        return await loop.run_in_executor(self.executor, ctx.run, self.call, fn)

    def dispose(self):
        self.executor.shutdown(wait=False)
        self.engine.dispose()
