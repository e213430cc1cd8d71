"""The platform database: migrations on SQLite, access off the event loop."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import threading

import pytest
from sqlalchemy import text

from hub.db import Database, database_url, upgrade
from hub.settings import WorkbenchSettings
from tests.platform import REPO


def test_default_url_is_sqlite_beside_the_hubs(tmp_path):
    settings = WorkbenchSettings(data_dir=str(tmp_path))
    assert database_url(settings) == f"sqlite:///{tmp_path / 'workbench.sqlite'}"


def test_postgres_hub_database_is_shared_and_explicit_url_wins(tmp_path):
    pg = "postgresql://wb:pw@db/workbench"
    assert database_url(WorkbenchSettings(data_dir=str(tmp_path), db_url=pg)) == pg
    explicit = WorkbenchSettings(
        data_dir=str(tmp_path), db_url=pg, platform_db_url="sqlite:////srv/wb.sqlite"
    )
    assert database_url(explicit) == "sqlite:////srv/wb.sqlite"


def test_upgrade_is_idempotent_and_uses_its_own_version_table(tmp_path):
    url = f"sqlite:///{tmp_path / 'sub' / 'wb.sqlite'}"
    upgrade(url)
    upgrade(url)
    con = sqlite3.connect(tmp_path / "sub" / "wb.sqlite")
    tables = {r[0] for r in con.execute("select name from sqlite_master where type='table'")}
    assert "workbench_alembic_version" in tables
    assert "alembic_version" not in tables  # JupyterHub's own, in a shared database
    assert con.execute("select count(*) from workbench_alembic_version").fetchone()[0] >= 1


def test_concurrent_upgrades_from_several_processes_all_succeed(tmp_path):
    url = f"sqlite:///{tmp_path / 'race.sqlite'}"
    code = f"from hub.db import upgrade_when_ready; upgrade_when_ready({url!r})"
    procs = [
        subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stderr=subprocess.PIPE)
        for _ in range(4)
    ]
    results = [(p.wait(60), p.stderr.read().decode()) for p in procs]
    assert [rc for rc, _ in results] == [0, 0, 0, 0], results


async def test_run_executes_in_a_worker_thread_and_rolls_back_on_error(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'wb.sqlite'}")
    await db.run(lambda s: s.execute(text("create table t (x integer)")))
    loop_thread = threading.get_ident()

    def insert(session):
        session.execute(text("insert into t values (1)"))
        return threading.get_ident()

    assert await db.run(insert) != loop_thread

    def insert_then_fail(session):
        session.execute(text("insert into t values (2)"))
        raise RuntimeError("refused")

    with pytest.raises(RuntimeError, match="^refused$"):
        await db.run(insert_then_fail)
    rows = await db.run(lambda s: s.execute(text("select x from t")).scalars().all())
    assert rows == [1]
    # many concurrent calls on the same SQLite file
    await asyncio.gather(*(db.run(insert) for _ in range(20)))
    assert await db.run(lambda s: s.execute(text("select count(*) from t")).scalar()) == 21
    db.dispose()
