"""Migrations under a lock, and repair of a database a race left with overlapping versions."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

from hub.db import upgrade_when_ready
from hub.db.core import VERSION_TABLE
from tests.platform import REPO


def versions(path) -> set[str]:
    with sqlite3.connect(path) as db:
        return {row[0] for row in db.execute(f"SELECT version_num FROM {VERSION_TABLE}")}


def test_stray_initial_version_row_is_repaired(tmp_path):
    """A database an earlier race left with the initial revision's row beside later ones
    (alembic: "Requested revision ... overlaps with other requested revisions 0001") upgrades
    again: the stray row is removed, the heads stay."""
    path = tmp_path / "stuck.sqlite"
    url = f"sqlite:///{path}"
    upgrade_when_ready(url)
    heads = versions(path)
    assert "0001" not in heads and heads
    with sqlite3.connect(path) as db:
        db.execute(f"INSERT INTO {VERSION_TABLE} (version_num) VALUES ('0001')")
    upgrade_when_ready(url)
    assert versions(path) == heads


def test_many_processes_migrating_one_new_database_all_succeed(tmp_path):
    """Eight processes migrate one new database at once (the services' first start): each
    waits for the lock, none fails, and the version rows are exactly the heads."""
    path = tmp_path / "race.sqlite"
    code = f"from hub.db import upgrade_when_ready; upgrade_when_ready('sqlite:///{path}')"
    procs = [
        subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stderr=subprocess.PIPE)
        for _ in range(8)
    ]
    results = [(p.wait(120), p.stderr.read().decode()[-500:]) for p in procs]
    assert [rc for rc, _ in results] == [0] * 8, results
    single = tmp_path / "single.sqlite"
    upgrade_when_ready(f"sqlite:///{single}")
    assert versions(path) == versions(single)
