"""What a training script uses inside a job: metrics, checkpoints, hyperparameters, node rank.

Standard library only, so importing it costs nothing and works in any environment:

    from workbench import training

    params = training.hyperparameters()          # {"lr": 0.1, "epochs": 3}
    resumed = training.load_checkpoint()          # (state, step) or None
    start = resumed[1] + 1 if resumed else 0
    for step in range(start, 100):
        loss = ...
        training.report_metric("loss", loss, step=step)
        if step % 10 == 0:
            training.save_checkpoint({"weights": ...}, step)
    (training.output_dir() / "result.json").write_text("...")

- `report_metric(name, value, step=None)` prints one line
  `workbench-metric name=<name> value=<float> [step=<int>]` that the platform always reads from
  a job's output (no `metrics` rule needed); without a step, steps count from 0 per metric.
- `checkpoint_dir()` is $WORKBENCH_CHECKPOINT_DIR (/job/checkpoints, kept across a job's
  restarts), or ./checkpoints outside a job. `save_checkpoint(state, step, keep=3)` writes a
  JSON-serialisable dict atomically as checkpoint-<step>.json plus a `latest` pointer and keeps
  the newest `keep`; `load_checkpoint()` returns (state, step) of the latest one, or None.
  Scripts that save their own files (torch.save) find the newest with
  `latest_checkpoint_path("*.pt")`.
- `hyperparameters()` is the job's hyperparameters ($WORKBENCH_HYPERPARAMETERS, also passed as
  `--name value` arguments); `output_dir()` is where results go ($WORKBENCH_OUTPUT_DIR,
  ./output outside a job); `node_rank()` and `num_nodes()` say which node of how many this is.
"""

from __future__ import annotations

import json
import math
import os
import re
import uuid
from pathlib import Path

# the line report_metric prints and the platform parses from every job's output
METRIC_LINE_PREFIX = "workbench-metric"
DEFAULT_LINE = METRIC_LINE_PREFIX + " name={name} value={value}"
DEFAULT_LINE_STEP = DEFAULT_LINE + " step={step}"
METRIC_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_./-]{0,63}")

CHECKPOINT_PREFIX = "checkpoint-"
LATEST = "latest"

__all__ = [
    "checkpoint_dir",
    "format_metric_line",
    "hyperparameters",
    "latest_checkpoint_path",
    "load_checkpoint",
    "node_rank",
    "num_nodes",
    "output_dir",
    "report_metric",
    "save_checkpoint",
]


def format_metric_line(name: str, value: float, step: int | None = None) -> str:
    """The output line (without newline) that reports `value` of metric `name`.

    Names are 1 to 64 characters: a letter, then letters, digits, `_ . / -`. Values that are not
    finite (nan, inf) are printed but not recorded by the platform."""
    if not isinstance(name, str) or not METRIC_NAME.fullmatch(name):
        raise ValueError(
            f"metric name {name!r}: use 1 to 64 characters, a letter first, then letters, "
            "digits and _ . / - (e.g. 'loss' or 'eval/accuracy')"
        )
    value = float(value)
    text = repr(value) if math.isfinite(value) else str(value)
    if step is None:
        return DEFAULT_LINE.format(name=name, value=text)
    if isinstance(step, bool) or int(step) != step:
        raise ValueError(f"step {step!r} of metric {name!r}: use a whole number")
    return DEFAULT_LINE_STEP.format(name=name, value=text, step=int(step))


def report_metric(name: str, value: float, step: int | None = None) -> None:
    """Record `value` of metric `name` (at `step`) in the job's metrics: prints one line."""
    line = format_metric_line(name, value, step)
    print(line, flush=True)


def _env_path(variable: str, default: str) -> Path:
    return Path(os.environ.get(variable) or default)


def output_dir() -> Path:
    """Where a job's results go: $WORKBENCH_OUTPUT_DIR (/job/output), or ./output outside a job."""
    return _env_path("WORKBENCH_OUTPUT_DIR", "output")


def checkpoint_dir() -> Path:
    """Where checkpoints go: $WORKBENCH_CHECKPOINT_DIR (/job/checkpoints, kept across a job's
    restarts), or ./checkpoints outside a job."""
    return _env_path("WORKBENCH_CHECKPOINT_DIR", "checkpoints")


def hyperparameters() -> dict:
    """The job's hyperparameters ($WORKBENCH_HYPERPARAMETERS); {} outside a job."""
    text = os.environ.get("WORKBENCH_HYPERPARAMETERS") or "{}"
    try:
        value = json.loads(text)
    except ValueError as e:
        raise ValueError(f"$WORKBENCH_HYPERPARAMETERS is not JSON: {e}") from None
    if not isinstance(value, dict):
        raise ValueError("$WORKBENCH_HYPERPARAMETERS is not a JSON object")
    return value


def _env_int(variable: str, default: int) -> int:
    text = os.environ.get(variable)
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"${variable} is not a whole number: {text!r}") from None


def node_rank() -> int:
    """This node's rank: 0 to num_nodes() - 1 ($WORKBENCH_NODE_RANK; 0 outside a job)."""
    return _env_int("WORKBENCH_NODE_RANK", 0)


def num_nodes() -> int:
    """How many nodes the job runs on ($WORKBENCH_NUM_NODES; 1 outside a job)."""
    return _env_int("WORKBENCH_NUM_NODES", 1)


def _write_atomically(path: Path, text: str) -> None:
    # a reader (or a restart after a kill) sees the old file or the new one, never half of one
    # a file of its own next to the target (permissions as for any new file), then renamed
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(temp, "x", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def _checkpoint_steps(folder: Path) -> list[int]:
    steps = []
    for path in folder.glob(f"{CHECKPOINT_PREFIX}*.json"):
        text = path.name[len(CHECKPOINT_PREFIX) : -len(".json")]
        if text.isdigit():
            steps.append(int(text))
    return sorted(steps)


def save_checkpoint(state: dict, step: int, keep: int = 3) -> Path:
    """Save `state` (JSON-serialisable) as checkpoint `step`, point `latest` at it and remove
    all but the newest `keep` checkpoints (0: keep all). Returns the checkpoint's path."""
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"step {step!r}: use a whole number, 0 or more")
    if not isinstance(state, dict):
        raise TypeError("state: use a dict of JSON-serialisable values")
    text = json.dumps(state)  # fails before anything is written when not serialisable
    folder = checkpoint_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{CHECKPOINT_PREFIX}{step}.json"
    _write_atomically(path, text)
    _write_atomically(folder / LATEST, path.name + "\n")
    if keep > 0:
        for old in _checkpoint_steps(folder)[:-keep]:
            if old != step:
                (folder / f"{CHECKPOINT_PREFIX}{old}.json").unlink(missing_ok=True)
    return path


def load_checkpoint() -> tuple[dict, int] | None:
    """The latest checkpoint saved by save_checkpoint as (state, step); None when there is none
    (a first run)."""
    folder = checkpoint_dir()
    path = None
    try:
        name = (folder / LATEST).read_text(encoding="utf-8").strip()
    except OSError:
        name = ""
    if name.startswith(CHECKPOINT_PREFIX) and "/" not in name and (folder / name).is_file():
        path = folder / name
    else:
        # no pointer (or a stale one): the highest step there is
        steps = _checkpoint_steps(folder) if folder.is_dir() else []
        if steps:
            path = folder / f"{CHECKPOINT_PREFIX}{steps[-1]}.json"
    if path is None:
        return None
    step = int(path.name[len(CHECKPOINT_PREFIX) : -len(".json")])
    with open(path, encoding="utf-8") as f:
        return json.load(f), step


def latest_checkpoint_path(pattern: str = "*.pt") -> Path | None:
    """The most recently modified file in checkpoint_dir() matching `pattern` (e.g. "*.pt",
    "model-*.ckpt"); None when there is none. For scripts that save their own checkpoints."""
    folder = checkpoint_dir()
    if not folder.is_dir():
        return None
    files = [p for p in folder.glob(pattern) if p.is_file() and not p.name.startswith(".")]
    if not files:
        return None
    return max(files, key=lambda p: (p.stat().st_mtime_ns, p.name))
