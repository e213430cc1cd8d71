"""The settings file: defaults, validation and pass-through of JupyterHub config tables."""

import pytest

from hub.settings import SettingsError, load_settings


def test_defaults_without_a_file(tmp_path, monkeypatch):
    """Without a settings file anywhere, relative paths are the project folder's: every
    command, from any folder, uses the platform's data folder (never one of its own)."""
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    monkeypatch.setattr("hub.settings.PROJECT_DIR", project)
    monkeypatch.chdir(elsewhere)
    monkeypatch.delenv("WORKBENCH_CONFIG", raising=False)
    settings, extra = load_settings()
    assert settings.bind_url == "http://127.0.0.1:8000"
    assert settings.effective_db_url == f"sqlite:///{project / '.run' / 'jupyterhub.sqlite'}"
    assert settings.backend == "docker" and settings.authenticator == "native"
    assert not extra


def test_settings_are_found_from_any_folder(tmp_path, monkeypatch):
    """The nearest workbench.toml in the folder or above it, else the project folder's."""
    project = tmp_path / "project"
    (project / "sub" / "deeper").mkdir(parents=True)
    (project / "workbench.toml").write_text('[workbench]\ndata_dir = "state"\n')
    monkeypatch.setattr("hub.settings.PROJECT_DIR", project)
    monkeypatch.delenv("WORKBENCH_CONFIG", raising=False)
    for folder in (project / "sub" / "deeper", tmp_path):
        monkeypatch.chdir(folder)
        settings, _ = load_settings()
        assert settings.data_path == project / "state"


def test_file_values_and_relative_paths(tmp_path):
    conf = tmp_path / "conf" / "workbench.toml"
    conf.parent.mkdir()
    conf.write_text(
        '[workbench]\ndata_dir = "state"\ndb_url = "postgresql://u:p@db/wb"\n'
        "storage_max_gib = 500\n"
        '[GenericOAuthenticator]\nclient_id = "abc"\n'
    )
    settings, extra = load_settings(conf)
    assert settings.data_path == tmp_path / "conf" / "state"
    assert settings.effective_db_url == "postgresql://u:p@db/wb"
    assert settings.spawner_config()["storage_max_gib"] == 500
    assert extra.GenericOAuthenticator.client_id == "abc"


@pytest.mark.parametrize(
    "body,message",
    [
        ('[workbench]\nbind_ulr = "x"\n', "Unknown setting.*bind_ulr"),
        ('[workbench]\nbackend = "nomad"\n', "backend must be"),
        ("[workbench]\nhub_port = 'eighty'\n", "Invalid setting"),
        ("[workbench]\nstorage_min_gib = 20\nstorage_default_gib = 10\n", "storage settings"),
        ("[workbench\n", "Cannot read"),
    ],
)
def test_bad_settings_are_explained(tmp_path, body, message):
    conf = tmp_path / "workbench.toml"
    conf.write_text(body)
    with pytest.raises(SettingsError, match=message):
        load_settings(conf)


def test_missing_file_says_what_to_do(tmp_path):
    with pytest.raises(SettingsError, match="workbench.example.toml"):
        load_settings(tmp_path / "nope.toml")


def test_example_settings_file_is_valid_and_complete(tmp_path):
    from pathlib import Path

    from hub.settings import WorkbenchSettings, render_example

    example = Path(__file__).resolve().parents[2] / "hub" / "workbench.example.toml"
    text = example.read_text()
    assert text == render_example(), "regenerate hub/workbench.example.toml (render_example)"
    for name in WorkbenchSettings.class_traits(config=True):
        assert f"# {name} = " in text
    # uncommenting every default gives a valid settings file with the same values
    uncommented = "\n".join(
        line[2:] if " = " in line and line.startswith("# ") and "\n" not in line else line
        for line in text.splitlines()
    )
    path = tmp_path / "workbench.toml"
    path.write_text(uncommented)
    settings, _ = load_settings(path)
    assert settings.bind_url == "http://127.0.0.1:8000"
    assert settings.storage_default_gib == 10
