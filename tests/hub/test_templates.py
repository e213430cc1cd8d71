"""Pages and forms rendered from their Jinja2 templates: what users typed comes back as text.

The spawn form is rendered by a real spawner; the usage, audit and API frame pages by their
templates with the context their handlers give them (the handlers themselves run in the
real-hub tests: test_audit_rbac.py, test_browser.py).
"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from types import SimpleNamespace

from jupyterhub import orm

import features.usage.api
import hub.audit.api
import hub.service.subdomains
from spawner.docker import WorkbenchDockerSpawner
from spawner.templating import render_template

HOSTILE = "<script>alert('x')</script> \"quoted\" & more"


class Page(HTMLParser):
    """Elements by id, the values of inputs, text of cells and every script's text."""

    def __init__(self, text: str):
        super().__init__()
        self.ids, self.inputs, self.cells, self.scripts, self.tags = {}, {}, [], [], []
        self._cell = self._script = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        if "id" in attrs:
            self.ids[attrs["id"]] = attrs
        if tag == "input" and "name" in attrs:
            self.inputs[attrs["name"]] = attrs.get("value")
        if tag == "td":
            self._cell = ""
        if tag == "script":
            self._script = ""

    def handle_endtag(self, tag):
        if tag == "td":
            self.cells.append(self._cell)
            self._cell = None
        if tag == "script":
            self.scripts.append(self._script)
            self._script = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data
        if self._script is not None:
            self._script += data


def test_spawn_form_shows_what_was_typed_as_text():
    options = {
        "image": "python",
        "flavor": "cpu.small",
        "storage_gib": 7,
        "description": HOSTILE,
        "ssh": {"enabled": True, "allowlist": ["10.0.0.0/8"]},
        "auto_stop": {"idle_minutes": 2.5, "max_hours": 3},
        "workspace": "nlp",
    }
    spawner = WorkbenchDockerSpawner(
        user=SimpleNamespace(name="alice", id=1, url="/user/alice/"),
        orm_spawner=orm.Spawner(name="nb", user_options=options),
    )

    page = Page(spawner._render_options_form(workspaces=["default", "nlp"]))

    assert "script" not in page.tags
    assert page.inputs["description"] == HOSTILE
    assert page.inputs["storage_gib"] == "7" and page.inputs["ssh_allowlist"] == "10.0.0.0/8"
    assert page.inputs["idle_minutes"] == "2.5" and page.inputs["max_hours"] == "3"
    # set up in a workspace: fixed, not a choice
    assert page.inputs["workspace"] == "nlp" and "wb-workspace-fixed" in page.ids
    assert "checked" in page.ids["wb-ssh-enabled"]
    assert page.ids["wb-max-hours"]["max"] == "168"


def test_usage_page_escapes_its_rows_and_filters():
    page = Page(
        render_template(
            features.usage.api.__file__,
            "usage.html",
            fields=("user", "instances"),
            rows=[[HOSTILE, "nb1 nb2"]],
            total=1.5,
            currency="EUR",
            csv_url="/services/workbench/api/usage?format=csv",
            values={"since": HOSTILE, "until": "", "user": ""},
        )
    )
    assert "script" not in page.tags
    assert page.cells == [HOSTILE, "nb1 nb2"] and page.inputs["since"] == HOSTILE


def test_audit_page_escapes_events_and_says_when_none_match():
    event = dict.fromkeys(
        ("time", "actor", "source", "event", "resource_type", "resource_id", "reason"), HOSTILE
    )
    context = {
        "columns": ("time", "actor", "source", "event", "resource_type", "resource_id"),
        "export_url": "/services/workbench/api/audit?format=jsonl&user=a%26b",
        "values": dict.fromkeys(hub.audit.api.FILTERS, HOSTILE),
    }
    page = Page(
        render_template(
            hub.audit.api.__file__, "audit.html", events=[{**event, "outcome": "denied"}], **context
        )
    )
    assert "script" not in page.tags
    assert page.cells == [HOSTILE] * 6 + ["denied", HOSTILE]
    assert page.ids["export"]["href"].endswith("&user=a%26b")
    assert page.inputs["outcome"] == HOSTILE

    empty = Page(render_template(hub.audit.api.__file__, "audit.html", events=[], **context))
    assert empty.cells == ["No events match."]


def test_api_frame_config_cannot_end_its_script():
    config = {"user": "</script><script>alert(1)</script>", "api": "/api", "xsrf": "x"}
    config["hub_prefix"] = "/hub/"
    page = Page(render_template(hub.service.subdomains.__file__, "api_frame.html", config=config))
    (script,) = page.scripts
    found = re.search(r"var config = (.*);\n", script).group(1)
    assert json.loads(found) == config
