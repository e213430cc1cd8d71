"""Runs a notebook as a job: `python -m workbench.notebook_job NOTEBOOK [--output EXECUTED]`.

The code cells run top to bottom in one IPython shell, in the notebook's folder, as in a kernel:
`%pip`, `!command`, `%%time` and other magics work, and so do top-level `await` and matplotlib's
inline figures. Before that the job's hyperparameters ($WORKBENCH_HYPERPARAMETERS, JSON) are
injected the way papermill does it: a cell tagged `injected-parameters` holding
`# Parameters` and one `name = value` line each goes after the first cell tagged `parameters`
(or first, when no cell has that tag; it replaces an earlier injected cell).

Each cell's output goes to this process's stdout and stderr as it is written. The first cell
that fails ends the run: its traceback and its cell number are printed and the exit status is
1 (`sys.exit(n)` in a cell: n; `exit()` or `sys.exit(0)` ends the run with success). The
executed notebook, with outputs, is written after each cell to --output, by default
$WORKBENCH_OUTPUT_DIR/<notebook's name> where that variable is set (nowhere otherwise).

IPython (ipykernel brings it) is imported only here, and nbformat only if installed: the
notebook is read and written as plain JSON otherwise.
"""

from __future__ import annotations

import argparse
import base64
import importlib.util
import json
import keyword
import math
import os
import signal
import sys
import uuid
from pathlib import Path

PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"
SKIP_TAG = "skip-execution"
# exit statuses besides a cell's own sys.exit(n): a failing cell, and what stops a run before
# any cell (a notebook that cannot be read, bad hyperparameters, no IPython)
FAILED = 1
UNUSABLE = 2


class NotebookError(Exception):
    """A notebook or hyperparameters this module cannot run; the message says why."""


def _source(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def read_notebook(path: Path) -> dict:
    """The notebook at `path` in format 4, as a dict (nbformat converts older formats)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise NotebookError(f"cannot read notebook {path}: {e.strerror or e}") from None
    try:
        import nbformat
    except ImportError:
        nbformat = None
    try:
        nb = nbformat.reads(text, as_version=4) if nbformat else json.loads(text)
    except Exception as e:
        raise NotebookError(f"{path} is not a notebook: {e}") from None
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise NotebookError(f"{path} is not a notebook: it has no list of cells")
    if nb.get("nbformat") != 4:
        raise NotebookError(
            f"{path} is in notebook format {nb.get('nbformat')}; save it with JupyterLab "
            "(format 4) or install nbformat, which converts it"
        )
    for cell in nb["cells"]:
        cell["source"] = _source(cell)
    return nb


def _jsonable(value):
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def write_notebook(nb: dict, path: Path) -> None:
    """Write `nb` to `path` atomically (with nbformat when installed, else as JSON)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import nbformat

        text = nbformat.writes(nbformat.from_dict(nb))
    except ImportError:
        text = json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    # a file of its own next to the target (permissions as for any new file), then renamed
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(temp, "x", encoding="utf-8") as f:
            f.write(text)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def _literal(value) -> str:
    """Python source for a JSON value (repr, but with the non-finite floats JSON allows)."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"float({str(value)!r})"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_literal(k)}: {_literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    return repr(value)


def parameters_source(parameters: dict) -> str:
    """The injected cell's source, as papermill writes it for Python."""
    lines = ["# Parameters"]
    for name, value in parameters.items():
        if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
            raise NotebookError(
                f"hyperparameter {name!r} is not a Python name, and a notebook's hyperparameters "
                "become variables: rename it (e.g. learning_rate)"
            )
        lines.append(f"{name} = {_literal(value)}")
    return "\n".join(lines) + "\n"


def _tagged(nb: dict, tag: str) -> int:
    for i, cell in enumerate(nb["cells"]):
        if tag in (cell.get("metadata") or {}).get("tags", []):
            return i
    return -1


def inject_parameters(nb: dict, parameters: dict) -> int | None:
    """Insert the `injected-parameters` cell into `nb` (in place): after the first cell tagged
    `parameters`, else first; an earlier injected cell is replaced. Returns its index (None
    when there are no parameters: nothing is injected)."""
    if not parameters:
        return None
    cell = {
        "cell_type": "code",
        "execution_count": None,
        "metadata": {"tags": [INJECTED_TAG]},
        "outputs": [],
        "source": parameters_source(parameters),
    }
    if nb.get("nbformat_minor", 0) >= 5:
        cell["id"] = uuid.uuid4().hex[:8]
    cells = nb["cells"]
    injected = _tagged(nb, INJECTED_TAG)
    if injected >= 0:
        cells[injected] = cell
        return injected
    tagged = _tagged(nb, PARAMETERS_TAG)
    index = tagged + 1 if tagged >= 0 else 0
    cells.insert(index, cell)
    return index


def hyperparameters_from_env(env=os.environ) -> dict:
    text = env.get("WORKBENCH_HYPERPARAMETERS") or "{}"
    try:
        value = json.loads(text)
    except ValueError as e:
        raise NotebookError(f"$WORKBENCH_HYPERPARAMETERS is not JSON: {e}") from None
    if not isinstance(value, dict):
        raise NotebookError("$WORKBENCH_HYPERPARAMETERS is not a JSON object")
    return value


class _Recorder:
    """The current cell's outputs, as the notebook stores them; echoes them to the real
    stdout and stderr as they come."""

    def __init__(self, stdout, stderr):
        self.stdout = stdout
        self.stderr = stderr
        self.outputs: list[dict] = []
        self.count = 0
        self.failed = False

    def start(self, cell: dict, count: int) -> None:
        self.outputs = cell["outputs"] = []
        self.count = count
        self.failed = False

    def stream(self, name: str, text: str) -> None:
        last = self.outputs[-1] if self.outputs else None
        if last and last["output_type"] == "stream" and last["name"] == name:
            last["text"] += text
        else:
            self.outputs.append({"output_type": "stream", "name": name, "text": text})

    def echo(self, text: str, stream=None) -> None:
        stream = stream or self.stdout
        if text and not text.endswith("\n"):
            text += "\n"
        stream.write(text)
        stream.flush()

    def result(self, data: dict, metadata: dict | None) -> None:
        data = _jsonable(data)
        self.outputs.append(
            {
                "output_type": "execute_result",
                "execution_count": self.count,
                "data": data,
                "metadata": _jsonable(metadata or {}),
            }
        )
        self.echo(data.get("text/plain", ""))

    def display(self, data: dict, metadata: dict | None, transient: dict | None, update: bool):
        output = {
            "output_type": "display_data",
            "data": _jsonable(data),
            "metadata": _jsonable(metadata or {}),
        }
        display_id = (transient or {}).get("display_id")
        if display_id:
            output["transient"] = {"display_id": display_id}
        if update:
            for i, old in enumerate(self.outputs):
                if old.get("transient", {}).get("display_id") == display_id:
                    self.outputs[i] = output
            return
        self.outputs.append(output)
        self.echo(output["data"].get("text/plain", ""))

    def clear(self) -> None:
        self.outputs.clear()

    def error(self, ename: str, evalue: str, traceback: list[str], echo: bool = True) -> None:
        self.failed = True
        self.outputs.append(
            {"output_type": "error", "ename": ename, "evalue": evalue, "traceback": traceback}
        )
        if echo:
            self.echo("\n".join(traceback) or f"{ename}: {evalue}", self.stderr)


class _Tee:
    """sys.stdout / sys.stderr while cells run: the job's output at once, and the cell's."""

    def __init__(self, name: str, stream, recorder: _Recorder):
        self._name = name
        self._stream = stream
        self._recorder = recorder

    def write(self, text: str) -> int:
        if not text:
            return 0
        self._stream.write(text)
        self._stream.flush()
        self._recorder.stream(self._name, text)
        return len(text)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        return False

    def __getattr__(self, name):
        return getattr(self._stream, name)


def _make_shell(recorder: _Recorder):
    """An IPython shell whose results, displays and tracebacks go to `recorder`."""
    from IPython.core.displayhook import DisplayHook
    from IPython.core.displaypub import DisplayPublisher
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets import Type
    from traitlets.config import Config

    class Hook(DisplayHook):
        def write_output_prompt(self):
            pass

        def write_format_data(self, format_dict, md_dict=None):
            recorder.result(format_dict, md_dict)

    class Publisher(DisplayPublisher):
        def publish(self, data, metadata=None, *args, transient=None, update=False, **kwargs):
            recorder.display(data, metadata, transient, update)

        def clear_output(self, wait=False):
            recorder.clear()

    class Shell(InteractiveShell):
        displayhook_class = Type(Hook)
        display_pub_class = Type(Publisher)

        def ask_exit(self):  # exit() and quit() in a cell: the run ends with success
            self.exit_now = True

        def _showtraceback(self, etype, evalue, stb):
            if etype is SystemExit and evalue.code in (None, 0):
                return
            recorder.error(etype.__name__, str(evalue), list(stb))

    config = Config()
    # no history database in the home folder: a job's home may be read-only
    config.HistoryManager.enabled = False
    return Shell.instance(config=config, colors="nocolor")


_stopping = False


def _stop(signum, frame):
    # the platform stops a job with SIGTERM: end the cell like an interrupt, so that the
    # executed notebook is still written
    global _stopping
    _stopping = True
    raise KeyboardInterrupt


def _run_cells(nb: dict, name: str, save) -> int:
    """Run the code cells of `nb`; the exit status."""
    # the default of ipykernel too: figures end up in the cells' outputs
    if "MPLBACKEND" not in os.environ and importlib.util.find_spec("matplotlib_inline"):
        os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    stdout, stderr = sys.stdout, sys.stderr
    recorder = _Recorder(stdout, stderr)
    shell = _make_shell(recorder)
    sys.stdout = _Tee("stdout", stdout, recorder)
    sys.stderr = _Tee("stderr", stderr, recorder)
    status = 0
    try:
        for number, cell in enumerate(nb["cells"], 1):
            if cell.get("cell_type") != "code":
                continue
            if SKIP_TAG in (cell.get("metadata") or {}).get("tags", []):
                continue
            count = shell.execution_count
            recorder.start(cell, count)
            cell["execution_count"] = count
            result = shell.run_cell(cell["source"], store_history=True, cell_id=cell.get("id"))
            error = result.error_before_exec or result.error_in_exec
            if isinstance(error, SystemExit) and error.code in (None, 0):
                error = None
                shell.exit_now = True
            if error is not None:
                if not recorder.failed:  # a UsageError: IPython printed it in one line
                    recorder.error(type(error).__name__, str(error), [], echo=False)
                if isinstance(error, SystemExit):
                    status = error.code if isinstance(error.code, int) else FAILED
                elif isinstance(error, KeyboardInterrupt) and _stopping:
                    status = 128 + signal.SIGTERM
                else:
                    status = FAILED
                first = next((line for line in cell["source"].splitlines() if line.strip()), "")
                where = f"{name}: cell {number} (In [{count}]: {first.strip()[:60]})"
                if status == 128 + signal.SIGTERM:
                    recorder.echo(f"{where} was stopped", stderr)
                else:
                    recorder.echo(f"{where} failed: {type(error).__name__}: {error}", stderr)
            save()
            if status or shell.exit_now:
                break
    finally:
        sys.stdout, sys.stderr = stdout, stderr
    return status


def run_notebook(path: Path, output: Path | None, parameters: dict) -> int:
    """Run the notebook at `path` with `parameters`, writing it with its outputs to `output`
    (None: nowhere). Returns the exit status."""
    path = Path(path).resolve()
    nb = read_notebook(path)
    injected = inject_parameters(nb, parameters)
    if importlib.util.find_spec("IPython") is None:
        raise NotebookError(
            "IPython is not installed in this environment: pip install ipykernel (or ipython)"
        )
    output = Path(output).resolve() if output else None

    def save():
        if output is not None:
            write_notebook(nb, output)

    if injected is not None:
        print(f"{path.name}: hyperparameters injected as cell {injected + 1}", file=sys.stderr)
    os.chdir(path.parent)  # relative paths mean what they mean in JupyterLab
    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        status = _run_cells(nb, path.name, save)
    except KeyboardInterrupt:  # stopped between cells
        status = 128 + signal.SIGTERM
    finally:
        signal.signal(signal.SIGTERM, previous)
        sys.stdout.flush()
        sys.stderr.flush()
    save()
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m workbench.notebook_job",
        description="Run a notebook's code cells top to bottom in one IPython shell, with the "
        "job's hyperparameters ($WORKBENCH_HYPERPARAMETERS) injected after the cell tagged "
        "'parameters'.",
    )
    parser.add_argument("notebook", type=Path, help="the .ipynb file to run")
    parser.add_argument(
        "--output",
        type=Path,
        help="where to write the executed notebook (default: $WORKBENCH_OUTPUT_DIR/<name> "
        "where that is set)",
    )
    args = parser.parse_args(argv)
    output = args.output
    if output is None and os.environ.get("WORKBENCH_OUTPUT_DIR"):
        output = Path(os.environ["WORKBENCH_OUTPUT_DIR"]) / args.notebook.name
    try:
        return run_notebook(args.notebook, output, hyperparameters_from_env())
    except NotebookError as e:
        print(f"notebook job: {e}", file=sys.stderr)
        return UNUSABLE


if __name__ == "__main__":
    sys.exit(main())
