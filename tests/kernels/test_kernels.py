"""Kernel specs: one per environment, running that environment's interpreter."""

import json
import subprocess
import sys
import sysconfig
from pathlib import Path

from kernels.install_kernel import main, make_kernel_spec


def test_kernel_spec_runs_the_environment_python():
    spec = make_kernel_spec("/opt/envs/pytorch", "PyTorch 2.13", "pytorch")
    assert spec["argv"][0] == "/opt/envs/pytorch/bin/python"
    assert "{connection_file}" in spec["argv"]
    assert spec["display_name"] == "PyTorch 2.13"
    assert spec["env"]["PATH"].startswith("/opt/envs/pytorch/bin:")
    assert spec["metadata"]["ai_workbench"] == {"environment": "pytorch", "engine": "pytorch"}


ENGINE_CHECK = """
import json, os, sys
try:
    import wbengine
    engine = wbengine.__file__
except ImportError:
    engine = None
print(json.dumps({"prefix": sys.prefix, "engine": engine, "path": os.environ["PATH"]}))
"""


def make_env(root: Path, engine: bool) -> Path:
    """A virtual environment at root that sees the test environment's packages (ipykernel
    among them) and, with engine, holds a module of its own: wbengine."""
    subprocess.run(
        [getattr(sys, "_base_executable", sys.executable), "-m", "venv", "--without-pip", root],
        check=True,
        capture_output=True,
    )
    out = subprocess.run(
        [root / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True,
        capture_output=True,
        text=True,
    )
    site = Path(out.stdout.strip())
    (site / "test-deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    if engine:
        (site / "wbengine.py").write_text("VALUE = 42\n")
    return root


def run_in_kernel(prefix: Path, name: str, code: str) -> str:
    """Start the kernel `name` installed under prefix, run code in it, return its stdout."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    specs = KernelSpecManager(kernel_dirs=[str(prefix / "share/jupyter/kernels")])
    km = KernelManager(kernel_name=name, kernel_spec_manager=specs)
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    out = []

    def collect(msg):
        if msg["msg_type"] == "stream" and msg["content"]["name"] == "stdout":
            out.append(msg["content"]["text"])

    try:
        kc.wait_for_ready(timeout=60)
        reply = kc.execute_interactive(code, output_hook=collect, timeout=60)
        assert reply["content"]["status"] == "ok", reply["content"]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    return "".join(out)


def test_installed_kernel_runs_code_in_its_environment(tmp_path):
    """The kernel runs the environment's interpreter: its sys.prefix, its PATH, its modules."""
    engine_env = make_env(tmp_path / "envs" / "demo", engine=True)
    plain_env = make_env(tmp_path / "envs" / "plain", engine=False)
    prefix = tmp_path / "prefix"
    for env, name, engine in ((engine_env, "demo", "wbengine"), (plain_env, "plain", "")):
        args = ["--env", str(env), "--name", name, "--display-name", name.title()]
        assert main([*args, "--engine", engine, "--prefix", str(prefix)]) == 0
    spec = json.loads((prefix / "share/jupyter/kernels/demo/kernel.json").read_text())
    assert spec["display_name"] == "Demo"
    assert spec["metadata"]["ai_workbench"] == {"environment": "demo", "engine": "wbengine"}

    seen = json.loads(run_in_kernel(prefix, "demo", ENGINE_CHECK))
    assert seen["prefix"] == str(engine_env)
    assert seen["engine"] is not None and Path(seen["engine"]).is_relative_to(engine_env)
    assert seen["path"].startswith(f"{engine_env}/bin:")
    # the other environment's kernel does not see the engine
    seen = json.loads(run_in_kernel(prefix, "plain", ENGINE_CHECK))
    assert (seen["prefix"], seen["engine"]) == (str(plain_env), None)


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
