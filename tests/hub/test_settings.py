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


def test_the_platform_api_never_starts_an_engine_of_its_own(tmp_path, monkeypatch):
    """Built where no engine answers on its settings' sockets, the platform API (with the
    jobs, inference and model features that run containers) starts no Podman service: the
    hub starts the engine and hands its URL over; until then, calls go where it will be."""
    import subprocess

    from hub.db import Database
    from hub.service.app import make_app

    monkeypatch.delenv("WORKBENCH_ENGINE_URL", raising=False)
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.setenv("JUPYTERHUB_API_URL", "http://127.0.0.1:1/hub/api")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "unused")
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/services/workbench/")
    config = tmp_path / "workbench.toml"
    config.write_text(f'[workbench]\ndata_dir = "{tmp_path}"\n')
    settings, _ = load_settings(config)
    url = settings.engine_url()
    assert url.startswith("unix://")
    make_app(settings, Database(f"sqlite:///{tmp_path}/platform.sqlite"))

    services = subprocess.run(
        ["pgrep", "-f", f"podman system service.*{tmp_path}"], capture_output=True, text=True
    )
    assert services.stdout == "", f"a Podman service was started: {services.stdout}"
    assert not (tmp_path / "podman.sock").exists()
    monkeypatch.setenv("WORKBENCH_ENGINE_URL", "unix:///run/handed-over.sock")
    assert settings.engine_url() == "unix:///run/handed-over.sock"
