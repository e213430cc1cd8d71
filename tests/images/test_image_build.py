"""The image build command: failures name the image and step, unknown names are refused."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from images.build import BuildError, ImageBuilder
from images.catalog import DEFAULT_CATALOG, load_catalog
from spawner.engine import podman_env
from tests.platform import REPO

pytestmark = pytest.mark.integration


def test_a_failing_build_names_the_image_and_the_step(tmp_path, engine, base_image):
    folder = tmp_path / "broken-build"
    folder.mkdir()
    (folder / "Dockerfile").write_text(
        "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nRUN echo preparing\n"
        "RUN echo 'no space left on device' >&2 && exit 7\n"
    )
    data = yaml.safe_load(DEFAULT_CATALOG.read_text())
    python = data["images"][0]
    data["images"] = [
        python,
        {
            **python,
            "name": "failing",
            "repository": "localhost/ai-workbench-test/failing",
            "dockerfile": str(folder),
            "base": "python",
            "description": "a build that fails",
        },
    ]
    catalog_path = tmp_path / "catalog.yaml"
    catalog_path.write_text(yaml.safe_dump(data))
    builder = ImageBuilder(
        load_catalog(catalog_path),
        cli=engine.cli,
        engine_url=engine.url,
        cache_dir=REPO / ".run" / "cache",
        env=podman_env(),
        progress=lambda line: None,
    )
    with pytest.raises(BuildError) as e:
        builder.build(["failing"])
    message = str(e.value)
    assert message.startswith("[failing] build failed")
    assert "no space left on device" in message
    assert "Failing step:" in message and "exit 7" in message
    assert not builder.exists("localhost/ai-workbench-test/failing:" + python["tag"])


def test_unknown_image_names_are_refused(tmp_path):
    env = {**os.environ, "WORKBENCH_CONFIG": str(tmp_path / "none.toml")}
    (tmp_path / "none.toml").write_text(f'[workbench]\ndata_dir = "{REPO / ".run"}"\n')
    proc = subprocess.run(
        [sys.executable, "-m", "hub.cli", "images", "build", "pytorch-nightly"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Unknown image 'pytorch-nightly'" in proc.stderr
    assert "pytorch" in proc.stderr and "mindspore" in proc.stderr
