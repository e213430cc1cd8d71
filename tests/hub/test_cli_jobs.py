"""`workbench jobs ...`: usage errors before any request, and jobs on the real hub (submit
with --follow, list, show, logs, metrics, rerun, stop, delete)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest

from tests.platform import REPO, free_port


def run_cli(*args, home, url=None, expect=0, timeout=300):
    env = {**os.environ, "HOME": str(home)}
    env.pop("WORKBENCH_TOKEN", None)
    env.pop("JUPYTERHUB_SERVER_NAME", None)
    proc = subprocess.run(
        [sys.executable, "-m", "hub.cli", *args, *(["--url", url] if url else [])],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=timeout,
    )
    assert proc.returncode == expect, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["submit", "{py}", "--param", "lr"], "hyperparameter 'lr' is not NAME=VALUE"),
        (["submit", "{py}", "--param", "=1"], "is not NAME=VALUE"),
        (["submit", "{py}", "--metric", "loss=([0-9]+"], "not a regular expression"),
        (["submit", "{py}", "--input", "data=datasets"], "is not NAME=INSTANCE:PATH"),
        (["submit", "{dir}"], "A folder runs with a command"),
        (["submit", "{dir}/nope.py"], "No such file or folder"),
        (["submit", "{py}", "--name", "Bad_Name"], "Invalid job name 'Bad_Name'"),
        (["submit", "{py}", "--nodes", "two"], "invalid int value: 'two'"),
        (["rerun", "x", "--param", "epochs"], "hyperparameter 'epochs' is not NAME=VALUE"),
        (["logs"], "the following arguments are required: name"),
        (["stop", "x", "--version", "latest"], "invalid int value: 'latest'"),
    ],
)
def test_usage_errors_exit_2_before_any_request(tmp_path, args, message):
    """The platform's address answers nothing: a request would fail with exit 1."""
    (tmp_path / "train.py").write_text("print(1)\n")
    args = [a.format(py=tmp_path / "train.py", dir=tmp_path) for a in args]
    url = f"http://127.0.0.1:{free_port()}"
    out = run_cli("jobs", *args, home=tmp_path, url=url, expect=2)
    assert message in out
    assert "not reachable" not in out


def test_no_platform_is_exit_1(tmp_path):
    (tmp_path / "train.py").write_text("print(1)\n")
    url = f"http://127.0.0.1:{free_port()}"
    out = run_cli("jobs", "submit", str(tmp_path / "train.py"), home=tmp_path, url=url, expect=1)
    assert "error: The platform API" in out and "not reachable" in out


# --- on the real hub ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli(hub, tmp_path_factory):
    """Run `workbench ...` as a signed-in user with their own HOME."""
    home = tmp_path_factory.mktemp("jobs-home")
    hub.add_user("jules")

    def run(*args, expect=0, password=None):
        env = {**os.environ, "HOME": str(home), "WORKBENCH_CONFIG": str(hub.config)}
        env.pop("WORKBENCH_TOKEN", None)
        env.pop("JUPYTERHUB_SERVER_NAME", None)
        if password:
            env["WORKBENCH_PASSWORD"] = password
        proc = subprocess.run(
            [sys.executable, "-m", "hub.cli", *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=REPO,
            timeout=300,
        )
        assert proc.returncode == expect, proc.stdout + proc.stderr
        return proc.stdout + proc.stderr

    run("login", "--user", "jules", "--url", hub.url, password=hub.passwords["jules"])
    run.home = home
    return run


@pytest.mark.integration
def test_jobs_from_the_command_line(cli, tmp_path):
    code = tmp_path / "proj"
    code.mkdir()
    (code / "fit.py").write_text(
        "import sys\nargs = sys.argv[1:]\nprint('args', args, flush=True)\n"
        "for i in range(3):\n    print(f'step={i} acc=0.{i + 5}', flush=True)\n"
        "import os\nout = os.path.join(os.environ['WORKBENCH_OUTPUT_DIR'], 'sub')\n"
        "os.makedirs(out)\nopen(os.path.join(out, 'acc.txt'), 'w').write('0.7')\n"
    )
    out = cli(
        *("jobs", "submit", str(code), "--command", "python fit.py", "--name", "fit"),
        *("--image", "python", "--flavor", "cpu.tiny", "--param", "lr=0.1"),
        *("--param", "opt=adam", "--metric", "acc=acc=([0-9.]+)", "--follow"),
    )
    assert "Submitted job fit version 1" in out
    assert "args ['--lr', '0.1', '--opt', 'adam']" in out
    assert "Job fit version 1 (succeeded)" in out
    out = cli("jobs", "list")
    assert "fit" in out and "succeeded" in out and "NAME" in out
    out = cli("jobs", "show", "fit")
    assert "python fit.py" in out and '"lr": 0.1' in out and "cpu.tiny" in out
    assert "step=2 acc=0.7" in cli("jobs", "logs", "fit")
    out = cli("jobs", "metrics", "fit")
    assert "acc" in out and "0.7" in out
    # a re-run changes one parameter and keeps the other
    out = cli("jobs", "rerun", "fit", "--param", "lr=0.3", "-f")
    assert "version 2" in out and "args ['--lr', '0.3', '--opt', 'adam']" in out
    out = cli("jobs", "logs", "fit", "--version", "1")
    assert "'--lr', '0.1'" in out
    out = cli("jobs", "stop", "fit")
    assert "Job fit version 2 (succeeded) had already ended." in out
    # a folder of outputs comes down whole
    (tmp_path / "out").mkdir()
    out = cli("jobs", "download", "fit", "output", "--to", str(tmp_path / "out"))
    assert "Downloaded output of fit version 2" in out
    assert (tmp_path / "out" / "output" / "sub" / "acc.txt").read_text() == "0.7"
    assert "Deleted version 1 of job fit." in cli("jobs", "delete", "fit", "--version", "1")
    out = cli("jobs", "logs", "fit", "--version", "1", expect=1)
    assert "error: " in out and "has no version 1" in out
    assert "'--lr', '0.3'" in cli("jobs", "logs", "fit")


@pytest.mark.integration
def test_stop_a_long_job_from_the_command_line(cli, tmp_path):
    (tmp_path / "long.py").write_text(
        "import time\nfor i in range(600):\n    print('tick', i, flush=True)\n    time.sleep(1)\n"
    )
    out = cli("jobs", "submit", str(tmp_path / "long.py"), "--image", "python")
    assert "Submitted job long version 1" in out
    deadline = time.monotonic() + 180
    while "tick 1" not in cli("jobs", "logs", "long"):
        assert time.monotonic() < deadline, cli("jobs", "show", "long")
        time.sleep(2)
    out = cli("jobs", "stop", "long")
    assert re.search(r"^Stopp(ing|ed) job long version 1 \(stopp(ing|ed)\)", out), out
    deadline = time.monotonic() + 120
    while "stopped" not in cli("jobs", "list"):
        assert time.monotonic() < deadline
        time.sleep(2)
    assert "Deleted job long" in cli("jobs", "delete", "long")
    assert "long" not in cli("jobs", "list")
    out = cli("jobs", "logs", "long", expect=1)
    assert out.startswith("error: ")
