"""A notebook run as a job (`python -m workbench.notebook_job`): hyperparameters injected the
way papermill does, cells run in one IPython shell with magics, output streamed as it comes,
the first failing cell ending the run, the executed notebook written with its outputs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from spawner.engine import podman_env
from tests.platform import REPO

MARKDOWN = object()


def make_notebook(path: Path, *cells, minor: int = 5) -> Path:
    """Cells: "source" (code), (tags, "source") (tagged code) or (MARKDOWN, "text")."""
    nb_cells = []
    for i, cell in enumerate(cells):
        tags, source = cell if isinstance(cell, tuple) else ([], cell)
        if tags is MARKDOWN:
            entry = {"cell_type": "markdown", "metadata": {}, "source": source}
        else:
            # sources as lists of lines, as JupyterLab saves them
            lines = source.splitlines(keepends=True)
            entry = {
                "cell_type": "code",
                "execution_count": None,
                "metadata": {"tags": tags} if tags else {},
                "outputs": [],
                "source": lines,
            }
        if minor >= 5:
            entry["id"] = f"cell{i}"
        nb_cells.append(entry)
    nb = {
        "cells": nb_cells,
        "metadata": {"kernelspec": {"name": "python3", "language": "python"}},
        "nbformat": 4,
        "nbformat_minor": minor,
    }
    path.write_text(json.dumps(nb))
    return path


MODULE = (sys.executable, "-m", "workbench.notebook_job")
# the same, where nbformat cannot be imported (as in the images' kernel environments)
WITHOUT_NBFORMAT = (
    sys.executable,
    "-c",
    "import sys; sys.modules['nbformat'] = None\n"
    "from workbench.notebook_job import main; sys.exit(main())",
)


def run_job(notebook: Path, *args, hyperparameters=None, env=None, python=MODULE):
    environment = {k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_")}
    environment.pop("MPLBACKEND", None)
    if hyperparameters is not None:
        environment["WORKBENCH_HYPERPARAMETERS"] = json.dumps(hyperparameters)
    environment.update(env or {})
    return subprocess.run(
        [*python, str(notebook), *map(str, args)],
        capture_output=True,
        text=True,
        env=environment,
        cwd=notebook.parent,
        timeout=180,
    )


def source(cell) -> str:
    text = cell["source"]
    return "".join(text) if isinstance(text, list) else text


def text_of(cell, name="stdout") -> str:
    return "".join(
        "".join(o["text"]) if isinstance(o["text"], list) else o["text"]
        for o in cell["outputs"]
        if o["output_type"] == "stream" and o["name"] == name
    )


@pytest.mark.parametrize("python", [MODULE, WITHOUT_NBFORMAT], ids=["nbformat", "json"])
def test_parameters_are_injected_after_the_tagged_cell(tmp_path, python):
    notebook = make_notebook(
        tmp_path / "train.ipynb",
        (MARKDOWN, "# Training"),
        "import math",
        (["parameters"], "lr = 1.0\nepochs = 1\nname = 'default'\n"),
        "print(f'lr={lr} epochs={epochs} name={name} extra={extra}')",
    )
    out = tmp_path / "out" / "executed.ipynb"
    params = {"lr": 0.05, "name": 'it\'s "quoted"', "extra": {"layers": [64, 32], "on": True}}
    result = run_job(notebook, "--output", out, hyperparameters=params, python=python)
    assert result.returncode == 0, result.stderr
    expected = "lr=0.05 epochs=1 name=it's \"quoted\" extra={'layers': [64, 32], 'on': True}\n"
    assert result.stdout == expected
    cells = json.loads(out.read_text())["cells"]
    # papermill's cell: tagged injected-parameters, right after the parameters cell
    injected = cells[3]
    assert injected["metadata"]["tags"] == ["injected-parameters"]
    assert source(injected) == (
        "# Parameters\n"
        "lr = 0.05\n"
        "name = 'it\\'s \"quoted\"'\n"
        "extra = {'layers': [64, 32], 'on': True}\n"
    )
    assert injected["id"] and injected["id"] not in {c.get("id") for c in cells[:3] + cells[4:]}
    assert [source(c).splitlines()[0] for c in cells] == [
        "# Training",
        "import math",
        "lr = 1.0",
        "# Parameters",
        "print(f'lr={lr} epochs={epochs} name={name} extra={extra}')",
    ]
    # executed in order, with outputs
    assert [c.get("execution_count") for c in cells] == [None, 1, 2, 3, 4]
    assert text_of(cells[4]) == expected
    # the input notebook is left as it was
    assert len(json.loads(notebook.read_text())["cells"]) == 4


def test_without_a_tagged_cell_the_parameters_go_first(tmp_path):
    notebook = make_notebook(tmp_path / "nb.ipynb", "print(seed)", minor=4)
    out = tmp_path / "run1.ipynb"
    result = run_job(notebook, "--output", out, hyperparameters={"seed": 7})
    assert (result.returncode, result.stdout) == (0, "7\n"), result.stderr
    cells = json.loads(out.read_text())["cells"]
    assert source(cells[0]) == "# Parameters\nseed = 7\n"
    assert "id" not in cells[0]  # format 4.4 has no cell ids
    # running the executed notebook again replaces its injected cell
    result = run_job(out, "--output", tmp_path / "run2.ipynb", hyperparameters={"seed": 8})
    assert (result.returncode, result.stdout) == (0, "8\n"), result.stderr
    cells = json.loads((tmp_path / "run2.ipynb").read_text())["cells"]
    assert [source(c) for c in cells] == ["# Parameters\nseed = 8\n", "print(seed)"]
    # no hyperparameters: nothing injected
    result = run_job(notebook, "--output", tmp_path / "run3.ipynb")
    assert result.returncode == 1
    assert "NameError" in result.stderr
    assert len(json.loads((tmp_path / "run3.ipynb").read_text())["cells"]) == 1


def test_a_failing_cell_ends_the_run_and_names_the_cell(tmp_path):
    notebook = make_notebook(
        tmp_path / "fails.ipynb",
        (MARKDOWN, "intro"),
        "print('before')",
        "def divide(x):\n    return x / 0\n\ndivide(1)",
        "print('after')",
    )
    out = tmp_path / "output"
    result = run_job(notebook, env={"WORKBENCH_OUTPUT_DIR": str(out)})
    assert result.returncode == 1
    assert result.stdout == "before\n"  # the cell after the failure never ran
    assert "ZeroDivisionError" in result.stderr
    assert "return x / 0" in result.stderr  # the traceback, with the cell's code
    assert "fails.ipynb: cell 3 (In [2]: def divide(x):) failed: ZeroDivisionError" in (
        result.stderr
    )
    # the executed notebook goes to $WORKBENCH_OUTPUT_DIR/<name>, with the error in its cell
    cells = json.loads((out / "fails.ipynb").read_text())["cells"]
    error = cells[2]["outputs"][-1]
    assert (error["output_type"], error["ename"]) == ("error", "ZeroDivisionError")
    assert any("divide(1)" in line for line in error["traceback"])
    assert cells[3]["outputs"] == [] and cells[3]["execution_count"] is None


def test_magics_shell_commands_and_rich_outputs(tmp_path):
    notebook = make_notebook(
        tmp_path / "magic.ipynb",
        "%time total = sum(range(10))\n!echo shell says $((6 * 7))\ntotal",
        "%%writefile written.txt\nfrom a cell magic\n",
        "%pip --version",
        "from IPython.display import HTML, display\ndisplay(HTML('<b>bold</b>'))\n"
        "import asyncio\nawait asyncio.sleep(0)\nprint(open('written.txt').read())",
        "%no_such_magic",
    )
    result = run_job(notebook, "--output", tmp_path / "out.ipynb")
    assert result.returncode == 1
    assert "shell says 42" in result.stdout
    assert "Wall time" in result.stdout
    assert "pip " in result.stdout and " from " in result.stdout
    assert "from a cell magic" in result.stdout
    assert "UsageError" in result.stderr and "cell 5" in result.stderr
    cells = json.loads((tmp_path / "out.ipynb").read_text())["cells"]
    first = cells[0]["outputs"]
    assert "shell says 42" in text_of(cells[0])
    assert first[-1]["output_type"] == "execute_result"
    assert ("".join(first[-1]["data"]["text/plain"]), first[-1]["execution_count"]) == ("45", 1)
    display = [o for o in cells[3]["outputs"] if o["output_type"] == "display_data"]
    assert "".join(display[0]["data"]["text/html"]) == "<b>bold</b>"
    assert cells[4]["outputs"][-1]["ename"] == "UsageError"


def test_output_streams_while_a_cell_runs(tmp_path):
    """A cell's prints reach the job's log before the cell ends."""
    notebook = make_notebook(
        tmp_path / "slow.ipynb",
        "import sys\nprint('step 1 loss=0.5')\nsys.stdin.readline()\nprint('done')",
    )
    environment = {k: v for k, v in os.environ.items() if k not in ("PYTHONUNBUFFERED",)}
    proc = subprocess.Popen(
        [*MODULE, str(notebook)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=environment,
    )
    try:
        assert proc.stdout.readline() == "step 1 loss=0.5\n"
        assert proc.poll() is None  # still in the cell
    finally:
        out, _ = proc.communicate("\n", timeout=60)
    assert (proc.returncode, out) == (0, "done\n")


def test_exit_in_a_cell(tmp_path):
    stops = make_notebook(tmp_path / "stops.ipynb", "print(1)", "exit()", "print(2)")
    result = run_job(stops)
    assert (result.returncode, result.stdout) == (0, "1\n"), result.stderr
    code = make_notebook(tmp_path / "code.ipynb", "import sys\nsys.exit(3)", "print(2)")
    result = run_job(code)
    assert (result.returncode, result.stdout) == (3, "")
    assert "cell 1" in result.stderr


def test_what_cannot_run_says_why(tmp_path):
    notebook = make_notebook(tmp_path / "nb.ipynb", "print(1)")
    result = run_job(notebook, hyperparameters={"learning-rate": 0.1})
    assert result.returncode == 2
    assert "'learning-rate' is not a Python name" in result.stderr
    result = run_job(notebook, env={"WORKBENCH_HYPERPARAMETERS": "{not json"})
    assert (result.returncode, result.stdout) == (2, "")
    assert "$WORKBENCH_HYPERPARAMETERS is not JSON" in result.stderr
    result = run_job(tmp_path / "missing.ipynb")
    assert result.returncode == 2 and "cannot read notebook" in result.stderr
    (tmp_path / "text.ipynb").write_text("print(1)")
    result = run_job(tmp_path / "text.ipynb")
    assert result.returncode == 2 and "is not a notebook" in result.stderr


def test_in_the_python_image(tmp_path, engine, base_image):
    """The image's kernel environment (IPython from ipykernel, no nbformat) runs it; the module
    is mounted from this checkout until the images are rebuilt with it."""
    code = tmp_path / "code"
    output = tmp_path / "output"
    code.mkdir()
    output.mkdir()
    make_notebook(
        code / "job.ipynb",
        (["parameters"], "steps = 1"),
        "import sys\n!echo from the shell\n"
        "for i in range(steps):\n    print(f'workbench-metric name=loss value={1 / (i + 1)}')",
    )
    os.chmod(code, 0o755)
    os.chmod(output, 0o777)
    command = [
        engine.cli,
        "run",
        "--rm",
        "-v",
        f"{code}:/job/code:ro,Z",
        "-v",
        f"{output}:/job/output:Z",
        "-v",
        f"{REPO / 'client'}:/opt/checkout-client:ro,Z",
        "-e",
        "PYTHONPATH=/opt/checkout-client",
        "-e",
        "WORKBENCH_OUTPUT_DIR=/job/output",
        "-e",
        "WORKBENCH_HYPERPARAMETERS=" + json.dumps({"steps": 2}),
        "-w",
        "/job/code",
        base_image.ref,
        "python",
        "-m",
        "workbench.notebook_job",
        "job.ipynb",
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=podman_env(), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines() == [
        "from the shell",
        "workbench-metric name=loss value=1.0",
        "workbench-metric name=loss value=0.5",
    ]
    cells = json.loads((output / "job.ipynb").read_text())["cells"]
    assert source(cells[1]) == "# Parameters\nsteps = 2\n"
    assert "value=0.5" in text_of(cells[2])


def test_a_stopped_run_still_writes_the_notebook(tmp_path):
    """The platform stops a job with SIGTERM: the running cell ends as interrupted."""
    notebook = make_notebook(
        tmp_path / "long.ipynb", "print('started')\nimport time\ntime.sleep(300)", "print(2)"
    )
    out = tmp_path / "out.ipynb"
    proc = subprocess.Popen(
        [*MODULE, str(notebook), "--output", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline() == "started\n"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM
    assert "long.ipynb: cell 1 (In [1]: print('started')) was stopped" in err
    cells = json.loads(out.read_text())["cells"]
    assert cells[0]["outputs"][-1]["ename"] == "KeyboardInterrupt"
    assert cells[1]["outputs"] == []
