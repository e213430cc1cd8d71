"""The hub on PostgreSQL: a real server started for the test, the platform's data kept in it."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import requests

from .platform import Hub, free_port, remove_engine_objects

pytestmark = pytest.mark.integration


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise RuntimeError(
            "PostgreSQL's server is not installed: `apt-get install -y postgresql` "
            "(make test does this)."
        )
    return found[-1]


def _as_postgres(cmd: list[str]) -> list[str]:
    # the server refuses to run as root
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@pytest.fixture(scope="module")
def postgres():
    """A PostgreSQL server on a free loopback port with an empty `workbench` database."""
    # not under pytest's tmp folders: those are private to root, and the server is not root
    root = Path(tempfile.mkdtemp(prefix="workbench-pg-"))
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sock, "postgres")
    subprocess.run(
        _as_postgres([_pg_bin("initdb"), "-D", str(data), "-U", "workbench", "--auth=trust"]),
        check=True,
        capture_output=True,
    )
    port = free_port()
    subprocess.run(
        _as_postgres(
            [
                _pg_bin("pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(root / "server.log"),
                "-o",
                f"-p {port} -k {sock} -c listen_addresses=127.0.0.1",
                "-w",
                "start",
            ]
        ),
        check=True,
        capture_output=True,
    )
    try:
        subprocess.run(
            _as_postgres(
                [
                    _pg_bin("createdb"),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(port),
                    "-U",
                    "workbench",
                    "workbench",
                ]
            ),
            check=True,
            capture_output=True,
        )
        yield f"postgresql://workbench@127.0.0.1:{port}/workbench"
    finally:
        subprocess.run(
            _as_postgres([_pg_bin("pg_ctl"), "-D", str(data), "-m", "fast", "stop"]),
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


def test_hub_keeps_users_and_instances_in_postgresql(tmp_path, postgres, engine, base_image):
    import psycopg

    hub = Hub(tmp_path, extra_settings=f'db_url = "{postgres}"', engine_url=engine.url)
    hub.start()
    try:
        dana = hub.add_user("dana")
        model = dana.create_instance("pg1", flavor="cpu.tiny", storage_gib=1)
        assert model["state"] == "running"
        dana.stop_instance("pg1")
        # the hub's state lives in PostgreSQL, not in a SQLite file
        assert not (tmp_path / "data" / "jupyterhub.sqlite").exists()
        with psycopg.connect(postgres) as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT s.name, s.user_options FROM spawners s JOIN users u ON s.user_id = u.id"
                " WHERE u.name = 'dana' AND s.name <> ''"
            )
            rows = cur.fetchall()
        assert [(name, json.loads(opts)["flavor"]) for name, opts in rows] == [("pg1", "cpu.tiny")]

        hub.restart()
        dana = hub.client("dana", hub.passwords["dana"])
        assert [(i["name"], i["state"]) for i in dana.instances()] == [("pg1", "stopped")]
        assert dana.start_instance("pg1")["state"] == "running"
        status = requests.get(
            f"{hub.url}/user/dana/pg1/api/status", headers={"Authorization": f"token {dana.token}"}
        )
        assert status.status_code == 200
        dana.stop_instance("pg1")
        dana.delete_instance("pg1")
    finally:
        hub.stop()
        remove_engine_objects(engine.url, hub.prefix)
