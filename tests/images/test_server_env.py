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
from workbench_lab.singleuser import without_migrations
without_migrations()
import jupyterhub.singleuser.extension  # the server's whole import, as the command makes it
import jupyterhub.orm
print(type(sys.modules["alembic"]).__name__, "alembic.runtime" in sys.modules)
try:
    jupyterhub.orm.alembic.command.upgrade(None, "head")
except RuntimeError as e:
    print(e)
"""


def test_instances_start_their_server_without_the_hubs_database_migrations(engine, base_image):
    """The image's command is workbench-singleuser: JupyterHub's single-user server with
    stand-ins for the alembic modules JupyterHub's ORM imports (about 0.3 s of each start);
    the server still imports, and anything calling a migration gets a clear error."""
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
    stand_in, real_alembic_loaded = out.stdout.split("\n")[0].split()
    assert (stand_in, real_alembic_loaded) == ("MigrationsUnavailable", "False")
    assert "alembic.command.upgrade is not available in an instance's server" in out.stdout
