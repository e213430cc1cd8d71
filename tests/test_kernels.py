"""Kernel specs: one per environment, running that environment's interpreter."""

import json
import sys

from kernels.install_kernel import main, make_kernel_spec


def test_kernel_spec_runs_the_environment_python():
    spec = make_kernel_spec("/opt/envs/pytorch", "PyTorch 2.13", "pytorch")
    assert spec["argv"][0] == "/opt/envs/pytorch/bin/python"
    assert "{connection_file}" in spec["argv"]
    assert spec["display_name"] == "PyTorch 2.13"
    assert spec["env"]["PATH"].startswith("/opt/envs/pytorch/bin:")
    assert spec["metadata"]["ai_workbench"] == {"environment": "pytorch", "engine": "pytorch"}


def test_install_writes_kernel_json(tmp_path):
    env = sys.prefix  # any environment with bin/python
    assert (
        main(["--env", env, "--name", "demo", "--display-name", "Demo", "--prefix", str(tmp_path)])
        == 0
    )
    spec = json.loads((tmp_path / "share/jupyter/kernels/demo/kernel.json").read_text())
    assert spec["display_name"] == "Demo"


def test_install_refuses_a_missing_environment(tmp_path, capsys):
    assert (
        main(
            [
                "--env",
                str(tmp_path / "none"),
                "--name",
                "x",
                "--display-name",
                "X",
                "--prefix",
                str(tmp_path),
            ]
        )
        == 2
    )
    assert "create the environment first" in capsys.readouterr().err
