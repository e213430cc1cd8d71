"""Features plug in: a feature declared in a folder of its own (here a temporary package) gets
its routes, table and migration, scopes and role grants, audit names and user cleanup without
anything in hub/ naming it."""

from __future__ import annotations

import sys
import textwrap

import pytest
from sqlalchemy import inspect

from hub import rbac
from hub.db import Database, upgrade
from hub.deleted_users import forget_user
from hub.features import Feature, FeatureError, check, load_features, ordered
from hub.service.handlers import load_openapi
from hub.settings import WorkbenchSettings

FILES = {
    "__init__.py": '''
        """Notes: a feature made for this test."""
        from hub.features import Feature

        feature = Feature(
            name="notes",
            description="Short notes of a user.",
            requires=("instances",),
            scopes={"notes:write": "Write notes."},
            grants={"server": ["notes:write"]},
            audit_events={"addNote": "A note was added."},
            tables=["wbnotes.tables"],
            migrations="wbnotes.migrations",
            handlers=["wbnotes.api"],
            openapi="wbnotes:openapi.yaml",
            setup="wbnotes.api:setup",
            forget_user="wbnotes.tables:forget_user",
        )
    ''',
    "tables.py": '''
        """The notes table."""
        from sqlalchemy import Integer, String, delete
        from sqlalchemy.orm import Mapped, mapped_column

        from hub.db import Base


        class Note(Base):
            __tablename__ = "test_notes"
            id: Mapped[int] = mapped_column(Integer, primary_key=True)
            user: Mapped[str] = mapped_column(String(255))


        def forget_user(session, user):
            return {"notes": session.execute(delete(Note).where(Note.user == user)).rowcount}
    ''',
    "openapi.yaml": """
        tags: [{name: notes}]
        paths:
          /api/users/{user}/notes:
            parameters: [{$ref: "#/components/parameters/user"}]
            post:
              tags: [notes]
              operationId: addNote
              responses:
                "201": {description: Added.}
                default: {$ref: "#/components/responses/Error"}
    """,
    "migrations/__init__.py": '"""Revisions of the notes table."""',
    "migrations/n001_notes.py": '''
        """notes"""
        import sqlalchemy as sa
        from alembic import op

        revision = "n001"
        down_revision = "0001"
        branch_labels = ("notes",)
        depends_on = None


        def upgrade():
            op.create_table(
                "test_notes",
                sa.Column("id", sa.Integer, primary_key=True),
                sa.Column("user", sa.String(255)),
            )


        def downgrade():
            op.drop_table("test_notes")
    ''',
    "api.py": '''
        """Notes' API."""
        from tornado import web

        from hub.service.api import APIHandler, needs_scope


        class NotesHandler(APIHandler):
            audit_events = {"POST": ("addNote", "note")}

            @web.authenticated
            @needs_scope("notes:write")
            async def post(self, user):
                self.write_json({}, status=201)


        default_handlers = [(r"/users/(?P<user>[^/]+)/notes", NotesHandler)]


        def setup(platform):
            platform["notes_manager"] = platform["instance_manager"]
    ''',
}


@pytest.fixture
def notes(tmp_path, monkeypatch):
    """The notes feature, importable as `wbnotes`, with the installed features."""
    root = tmp_path / "pkg" / "wbnotes"
    for name, text in FILES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    monkeypatch.syspath_prepend(str(tmp_path / "pkg"))
    yield __import__("wbnotes").feature
    for name in [m for m in sys.modules if m.startswith("wbnotes")]:
        del sys.modules[name]


def test_installed_features():
    names = [f.name for f in load_features()]
    assert set(names) == {
        "instances",
        "images",
        "quotas",
        "workspaces",
        "usage",
        "ssh",
        "jobs",
        "inference",
        "datasets",
        "experiments",
        "gallery",
    }
    # each comes after what it requires
    assert names.index("images") < names.index("quotas") < names.index("instances")
    assert names.index("instances") < names.index("workspaces")
    assert max(names.index(n) for n in ("quotas", "usage", "workspaces")) < names.index("jobs")
    assert names.index("jobs") < names.index("inference")
    assert names.index("jobs") < names.index("datasets")
    assert names.index("jobs") < names.index("experiments")
    assert max(names.index(n) for n in ("images", "inference", "datasets")) < names.index("gallery")


def test_a_new_feature_plugs_in(notes, tmp_path, monkeypatch):
    from hub.service.app import make_app

    features = ordered([*load_features(), notes])
    check(features)
    url = f"sqlite:///{tmp_path / 'platform.sqlite'}"
    upgrade(url, features=features)
    db = Database(url)
    assert "test_notes" in inspect(db.engine).get_table_names()

    # its scope exists, the full and common roles hold it, an instance's token gets it
    assert "custom:workbench:notes:write" in rbac.custom_scopes(features)
    roles = rbac.role_scopes(features)
    assert "notes:write" in roles["workbench-full-access"]
    assert "notes:write" in roles["workbench-common-operations"]
    assert "notes:write" not in roles["workbench-viewer"]
    assert "custom:workbench:notes:write" in rbac.server_scopes(features)

    # its routes and objects are in the platform API's application
    monkeypatch.setenv("JUPYTERHUB_API_URL", "http://127.0.0.1:9/hub/api")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "unused")
    app = make_app(WorkbenchSettings(data_dir=str(tmp_path / "data")), db, features)
    handlers = {
        rule.matcher.regex.pattern: rule.target for rule in app.default_router.rules[0].target.rules
    }
    route = "/services/workbench/api/users/(?P<user>[^/]+)/notes$"
    assert handlers[route].__name__ == "NotesHandler"
    assert app.settings["notes_manager"] is app.settings["instance_manager"]
    assert "addNote" in app.settings["audit"].events
    # its part of the API's description is served with the rest
    description = load_openapi("/services/workbench/", features)
    assert "/api/users/{user}/notes" in description["paths"]
    assert "/api/users/{user}/instances" in description["paths"]
    assert {"name": "notes"} in description["tags"]

    # a deleted user's notes go with the rest of their rows
    db.call(
        lambda s: s.execute(
            __import__("wbnotes.tables").tables.Note.__table__.insert(),
            [{"user": "gone"}, {"user": "kept"}],
        )
    )
    counts = db.call(lambda s: forget_user(s, "gone", features))
    assert counts["notes"] == 1
    db.dispose()


def test_every_audited_handler_names_a_declared_event(tmp_path, monkeypatch):
    """Handlers record only event names some feature declares (the audit log refuses others)."""
    from hub.service.app import make_app

    monkeypatch.setenv("JUPYTERHUB_API_URL", "http://127.0.0.1:9/hub/api")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "unused")
    url = f"sqlite:///{tmp_path / 'platform.sqlite'}"
    upgrade(url)
    app = make_app(WorkbenchSettings(data_dir=str(tmp_path / "data")), Database(url))
    declared = app.settings["audit"].events
    used = {
        event
        for rule in app.default_router.rules[0].target.rules
        for event, _ in getattr(rule.target, "audit_events", {}).values()
    }
    assert used and used <= declared
    with pytest.raises(ValueError, match="declared by no feature"):
        app.settings["audit"].record("madeUpEvent", actor="a", resource_type="x", resource_id="y")


@pytest.mark.parametrize(
    "change, message",
    [
        ({"scopes": {"instances:read": "again"}}, "declared by instances too"),
        ({"grants": {"owner": []}}, "unknown role"),
        ({"grants": {"viewer": ["notes:delete"]}}, "does not declare"),
        ({"requires": ("nothing",)}, "not installed"),
        ({"audit_events": {"createNotebook": "again"}}, "declared by instances too"),
        ({"name": "Notes"}, "lowercase"),
    ],
)
def test_a_clashing_feature_is_refused(change, message):
    fields = {"name": "notes", "description": "x", "scopes": {"notes:write": "Write."}}
    fields.update(change)
    with pytest.raises(FeatureError, match=message):
        check([*load_features(), Feature(**fields)])


def test_features_requiring_each_other_are_refused():
    a = Feature(name="a", description="", requires=("b",))
    b = Feature(name="b", description="", requires=("a",))
    with pytest.raises(FeatureError, match="cycle"):
        ordered([a, b])


def test_a_feature_reads_its_own_settings_table(notes, tmp_path, monkeypatch):
    """[workbench.notes] is the notes feature's table; unknown tables and keys are refused."""
    import wbnotes
    from traitlets import Integer
    from traitlets.config import Configurable

    from hub.settings import SettingsError, load_feature_settings

    class NotesSettings(Configurable):
        max_notes = Integer(10, help="Most notes per user. Default 10.").tag(config=True)

    wbnotes.NotesSettings = NotesSettings
    feature = Feature(name="notes", description="", settings="wbnotes:NotesSettings")
    found = load_feature_settings({"notes": {"max_notes": 3}}, "w.toml", [feature])
    assert found["notes"].max_notes == 3
    assert load_feature_settings({}, "w.toml", [feature])["notes"].max_notes == 10
    with pytest.raises(SettingsError, match=r"\[workbench.jobs\]"):
        load_feature_settings({"jobs": {}}, "w.toml", [feature])
    with pytest.raises(SettingsError, match="max_note"):
        load_feature_settings({"notes": {"max_note": 3}}, "w.toml", [feature])
    with pytest.raises(SettingsError, match="Invalid setting"):
        load_feature_settings({"notes": {"max_notes": "many"}}, "w.toml", [feature])
