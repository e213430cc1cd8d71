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
