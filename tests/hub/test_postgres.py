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

from tests.platform import Hub, free_port, remove_engine_objects

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
        admin = hub.client()
        model = dana.create_instance("pg1", flavor="cpu.tiny", storage_gib=1)
        assert model["state"] == "running"
        # the platform's own data: a key, a saved image, a workspace, a quota, usage, audit
        key = dana.generate_key("pgkey")
        saved = dana.save_instance("pg1", "pgimg", "v1", wait=True)
        assert saved["state"] == "done", saved
        admin.api("POST", "workspaces", {"name": "pgteam", "members": ["dana"]})
        admin.api("PUT", "quotas/users/dana", {"limits": {"instances": 7}})
        dana.stop_instance("pg1")
        audited = {e["event"] for e in admin.audit_events(resource="dana/pg1")}
        assert audited
        # the hub's and the platform's state live in PostgreSQL, not in SQLite files
        assert not (tmp_path / "data" / "jupyterhub.sqlite").exists()
        assert not (tmp_path / "data" / "workbench.sqlite").exists()
        with psycopg.connect(postgres) as conn, conn.cursor() as cur:

            def rows(sql: str) -> list[tuple]:
                cur.execute(sql)
                return cur.fetchall()

            spawners = rows(
                "SELECT s.name, s.user_options FROM spawners s JOIN users u ON s.user_id = u.id"
                " WHERE u.name = 'dana' AND s.name <> ''"
            )
            assert [(n, json.loads(o)["flavor"]) for n, o in spawners] == [("pg1", "cpu.tiny")]
            [(versions,)] = rows("SELECT count(*) FROM workbench_alembic_version")
            assert versions >= 1
            # every feature's tables beside JupyterHub's own (which has a "services" table)
            tables = {
                name
                for (name,) in rows(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
                )
            }
            assert {"services", "inference_services", "models", "jobs", "dataset_samples"} <= tables
            assert rows("SELECT name, fingerprint FROM ssh_keys WHERE \"user\" = 'dana'") == [
                ("pgkey", key["fingerprint"])
            ]
            assert rows(
                "SELECT name, tag, state, source_instance FROM saved_images WHERE owner = 'dana'"
            ) == [("pgimg", "v1", "ready", "pg1")]
            assert rows(
                "SELECT w.name FROM workspaces w JOIN workspace_members m"
                " ON m.workspace_id = w.id WHERE m.\"user\" = 'dana'"
            ) == [("pgteam",)]
            [(limits,)] = rows("SELECT limits FROM quotas WHERE kind = 'user' AND subject = 'dana'")
            assert json.loads(limits) == {"instances": 7}
            assert rows(
                "SELECT instance, flavor, stopped IS NOT NULL FROM usage_periods"
                " WHERE \"user\" = 'dana'"
            ) == [("pg1", "cpu.tiny", True)]
            stored = rows("SELECT DISTINCT event FROM audit_events WHERE resource_id = 'dana/pg1'")
            assert {e for (e,) in stored} == audited

        hub.restart()
        dana = hub.client("dana", hub.passwords["dana"])
        assert [(i["name"], i["state"]) for i in dana.instances()] == [("pg1", "stopped")]
        assert [k["fingerprint"] for k in dana.keys()] == [key["fingerprint"]]
        assert "saved:dana/pgimg:v1" in [i["name"] for i in dana.images()]
        assert "pgteam" in [w["name"] for w in dana.api("GET", "workspaces")]
        assert dana.start_instance("pg1")["state"] == "running"
        status = requests.get(
            f"{hub.url}/user/dana/pg1/api/status", headers={"Authorization": f"token {dana.token}"}
        )
        assert status.status_code == 200
        dana.stop_instance("pg1")
        dana.delete_instance("pg1")
        dana.delete_image("pgimg", "v1")
    finally:
        hub.stop()
        remove_engine_objects(engine.url, hub.prefix)
