"""Fixtures: the container engine, the base image, and a real hub for integration tests."""

from __future__ import annotations

import subprocess

import pytest

from hub.settings import load_settings
from spawner.engine import find_engine, podman_env

from .platform import REPO, Hub


@pytest.fixture(scope="session")
def engine(tmp_path_factory):
    """The local container engine (Podman's service is started if needed)."""
    settings, _ = load_settings(REPO / "workbench.toml" if (REPO / "workbench.toml").exists() else None)
    settings.data_path.mkdir(parents=True, exist_ok=True)
    return find_engine(
        settings.docker_host,
        podman_socket=settings.podman_socket,
        containers_conf=str(REPO / "spawner" / "containers.conf"),
        start=True,
        log_file=str(settings.data_path / "podman.log"),
    )


@pytest.fixture(scope="session")
def base_image(engine):
    """The default image, built if missing (make test builds it first)."""
    from images.build import ImageBuilder
    from images.catalog import load_catalog

    catalog = load_catalog()
    env = podman_env(str(REPO / "spawner" / "containers.conf"))
    builder = ImageBuilder(catalog, cli=engine.cli, cache_dir=REPO / ".run" / "cache", env=env)
    builder.build(["python"])
    return catalog.get("python")


def _cleanup_engine(engine, prefix: str):
    env = podman_env(str(REPO / "spawner" / "containers.conf"))
    for kind, fmt in (("container", "{{.Names}}"), ("volume", "{{.Name}}")):
        listed = subprocess.run(
            [engine.cli, kind, "ls", "-a" if kind == "container" else "-q", "--format", fmt],
            capture_output=True, text=True, env=env,
        )
        names = [n for n in listed.stdout.split() if n.startswith(prefix)]
        if names:
            args = ["rm", "-f", *names] if kind == "container" else ["volume", "rm", "-f", *names]
            subprocess.run([engine.cli, *args], capture_output=True, env=env)


@pytest.fixture(scope="session")
def hub(tmp_path_factory, engine, base_image):
    """A real hub with the platform API, spawning real containers; torn down after."""
    h = Hub(tmp_path_factory.mktemp("hub"))
    h.start()
    yield h
    h.stop()
    _cleanup_engine(engine, h.prefix)
    print(f"\n--- hub log tail ---\n{h.log_tail(30)}")
