"""The server's own environment in the default image: nothing that only slows its start."""

from __future__ import annotations

import subprocess

import pytest

from spawner.engine import podman_env

pytestmark = pytest.mark.integration

CHECK = """
import sys
import jupyterhub.singleuser  # what the instance's server imports at start
print("jupyter_events" in sys.modules, "rfc3987_syntax" in sys.modules, "lark" in sys.modules)
from jsonschema import Draft7Validator
v = Draft7Validator({"format": "uri"}, format_checker=Draft7Validator.FORMAT_CHECKER)
print(v.is_valid("https://example.org/a"), v.is_valid("not a uri"))
"""


def test_the_server_starts_without_the_iri_grammar_and_still_checks_uris(engine, base_image):
    out = subprocess.run(
        [engine.cli, "run", "--rm", base_image.ref, "/opt/jupyter/bin/python", "-c", CHECK],
        capture_output=True,
        text=True,
        env=podman_env(),
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    imported, slow, grammar = out.stdout.split("\n")[0].split()
    # the server imports jupyter_events, but not rfc3987_syntax and its lark grammar
    assert (imported, slow, grammar) == ("True", "False", "False")
    # the formats the platform's events rely on are still checked
    assert out.stdout.split("\n")[1] == "True False"


LAUNCH = """
import sys
from workbench_lab.singleuser import defer_hub_modules
defer_hub_modules()
import jupyterhub.singleuser.extension  # the server's whole import, as the command makes it
from jupyterhub.services.auth import check_scopes
# the scope check every request to the server makes, as it makes it (no database)
print(sorted(check_scopes({"access:servers!server=ann/x"}, {"access:servers!user=ann"})))
print(*(type(sys.modules[m]).__name__ for m in ("sqlalchemy", "jupyterhub.orm")))
print(*(m in sys.modules for m in ("sqlalchemy.orm", "alembic", "cryptography")))
# what does use them gets the real modules: a server extension with SQLAlchemy, the hub's ORM
import sqlalchemy
with sqlalchemy.create_engine("sqlite://").connect() as db:
    print(db.execute(sqlalchemy.text("select 40 + 2")).scalar())
import jupyterhub.orm
print(jupyterhub.orm.User.__tablename__, type(sys.modules["sqlalchemy"]).__name__)
"""


def test_instances_start_their_server_without_the_hubs_database_layer(engine, base_image):
    """The image's command is workbench-singleuser: JupyterHub's single-user server with the
    hub-only modules it imports (the ORM, SQLAlchemy, the hub's pages) deferred until used,
    about half a second of each start. The server's own scope check runs without them, and
    whatever uses them later gets the real modules."""
    inspect = subprocess.run(
        [engine.cli, "image", "inspect", "--format", "{{json .Config.Cmd}}", base_image.ref],
        capture_output=True,
        text=True,
        env=podman_env(),
        timeout=60,
    )
    assert inspect.stdout.strip() == '["/opt/jupyter/bin/workbench-singleuser"]'
    out = subprocess.run(
        [engine.cli, "run", "--rm", base_image.ref, "/opt/jupyter/bin/python", "-c", LAUNCH],
        capture_output=True,
        text=True,
        env=podman_env(),
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    assert lines[0] == "['access:servers!server=ann/x']"
    assert lines[1:3] == ["DeferredModule DeferredModule", "False False False"]
    assert lines[3:5] == ["42", "users module"]
