"""A job's metrics: users' log rules, the parser of output lines, TensorBoard event files."""

from __future__ import annotations

import fnmatch
import logging
import math
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from workbench.training import METRIC_LINE_PREFIX

log = logging.getLogger(__name__)

MAX_RULES = 20
MAX_REGEX_LENGTH = 500
# a longer line is matched on its first this many characters: bounds any rule's cost per line
MAX_LINE_LENGTH = 4096
NAME = re.compile(r"[A-Za-z][A-Za-z0-9_./-]{0,63}")
NAME_HELP = "1 to 64 characters: a letter, then letters, digits and _ . / -"
# lines the platform itself writes into node logs; never metrics
PLATFORM_PREFIX = "[workbench] "
# what workbench.training.report_metric prints (format_metric_line), anywhere in a line so that
# launchers' prefixes ("[rank0]: ...") do not hide it
BUILTIN_LINE = re.compile(
    re.escape(METRIC_LINE_PREFIX)
    + r" name=(?P<name>\S+) value=(?P<value>\S+)(?: step=(?P<step>[+-]?\d+))?\s*$"
)
EVENT_FILE_GLOB = "events.out.tfevents.*"


class MetricError(ValueError):
    """A `metrics` setting that cannot be used; the message says what to change."""


@dataclass(frozen=True, slots=True)
class MetricPoint:
    """One value of one metric: `time` in epoch seconds, `source` "log" or "tensorboard"."""

    name: str
    step: int
    value: float
    time: float
    source: str = "log"


@dataclass(frozen=True)
class MetricRule:
    """A user's rule: lines matching `regex` give a value of metric `name`."""

    name: str
    regex: str
    pattern: re.Pattern
    # the value's group (number or "value"); the step's ("step") or None: steps count from 0
    value_group: int | str
    step_group: str | None = None

    def to_dict(self) -> dict:
        return {"name": self.name, "regex": self.regex}


def _unbounded(op, av) -> bool:
    from re import _constants as c

    return op in (c.MAX_REPEAT, c.MIN_REPEAT) and av[1] == c.MAXREPEAT


def _nested_repeat(items, inside_repeat: bool = False) -> bool:
    """Whether a parsed regex repeats without bound a part that itself repeats without bound,
    as in (a+)+ or (\\d*,?)*: such regexes can take exponential time on a line that almost
    matches. Possessive repeats and atomic groups never backtrack into their body: safe."""
    from re import _constants as c

    for op, av in items:
        if _unbounded(op, av):
            if inside_repeat:
                return True
            if _nested_repeat(av[2], True):
                return True
        elif op in (c.MAX_REPEAT, c.MIN_REPEAT):
            if _nested_repeat(av[2], inside_repeat):
                return True
        elif op == c.SUBPATTERN:
            if _nested_repeat(av[3], inside_repeat):
                return True
        elif op == c.BRANCH:
            if any(_nested_repeat(branch, inside_repeat) for branch in av[1]):
                return True
        elif op in (c.ASSERT, c.ASSERT_NOT):
            if _nested_repeat(av[1], inside_repeat):
                return True
        # POSSESSIVE_REPEAT and ATOMIC_GROUP: not descended into
    return False


def _is_catastrophic(regex: str) -> bool:
    try:
        from re import _parser

        return _nested_repeat(_parser.parse(regex).data)
    except Exception:  # another Python's internals: the length limit still holds
        return False


def compile_metric_rule(raw, index: int = 0) -> MetricRule:
    """One rule {"name": ..., "regex": ...}; MetricError says what is wrong with it."""
    where = f"metrics[{index}]"
    if not isinstance(raw, dict):
        raise MetricError(
            f'{where}: use an object {{"name": "loss", "regex": "loss=([0-9.eE+-]+)"}}'
        )
    unknown = sorted(set(raw) - {"name", "regex"})
    if unknown:
        raise MetricError(f"{where}: unknown field {unknown[0]!r}; a rule has only name and regex")
    name = raw.get("name")
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise MetricError(f"{where}: name {name!r} is not a metric name; use {NAME_HELP}")
    where = f"metric {name!r}"
    regex = raw.get("regex")
    if not isinstance(regex, str) or not regex:
        raise MetricError(f"{where}: regex is missing; e.g. {name}=([0-9.eE+-]+)")
    if len(regex) > MAX_REGEX_LENGTH:
        raise MetricError(
            f"{where}: regex is {len(regex)} characters long; use at most {MAX_REGEX_LENGTH}"
        )
    try:
        pattern = re.compile(regex)
    except re.error as e:
        at = f" at position {e.pos}" if e.pos is not None else ""
        raise MetricError(f"{where}: regex does not compile: {e.msg}{at}") from None
    named = pattern.groupindex
    step_group = "step" if "step" in named else None
    if "value" in named:
        value_group: int | str = "value"
    else:
        others = [i for i in range(1, pattern.groups + 1) if i != named.get("step")]
        if len(others) != 1:
            besides = " besides the step" if step_group else ""
            raise MetricError(
                f"{where}: regex has {len(others)} capture groups{besides}; capture the "
                "value in exactly one group, e.g. loss=([0-9.eE+-]+), or name it (?P<value>...) "
                "(and the step (?P<step>\\d+)); make other groups non-capturing with (?:...)"
            )
        value_group = others[0]
    if _is_catastrophic(regex):
        raise MetricError(
            f"{where}: regex repeats a part that itself repeats, as in (a+)+, which can take "
            "exponential time on some lines; drop one of the repetitions, or make the inner one "
            "possessive (\\d++) or atomic (?>...)"
        )
    return MetricRule(name, regex, pattern, value_group, step_group)


def compile_metric_rules(raw) -> list[MetricRule]:
    """The `metrics` setting of a job: a list of {"name", "regex"} (None or []: none).
    Raises MetricError with what to change."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise MetricError(
            'metrics: use a list of rules, e.g. [{"name": "loss", "regex": "loss=([0-9.eE+-]+)"}]'
        )
    if len(raw) > MAX_RULES:
        raise MetricError(f"metrics: {len(raw)} rules; use at most {MAX_RULES}")
    rules = [compile_metric_rule(item, i) for i, item in enumerate(raw)]
    seen = set()
    for rule in rules:
        if rule.name in seen:
            raise MetricError(f"metric {rule.name!r} has two rules; give each rule its own name")
        seen.add(rule.name)
    return rules


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _step(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        value = _number(text)
        return int(value) if value is not None and value.is_integer() else None


class LogMetricParser:
    """Turns a job's output lines into metric points: the built-in `workbench-metric` lines
    (workbench.training.report_metric) and the job's rules. Without a step in the line, a
    metric's steps count on from its last one (0 first). One parser per node's log."""

    def __init__(self, rules: list[MetricRule] = ()):
        self.rules = list(rules)
        self._searches = [
            (rule.name, rule.pattern.search, rule.value_group, rule.step_group)
            for rule in self.rules
        ]
        self._next_step: dict[str, int] = {}

    def _point(self, name: str, value: float, step_text: str | None, time: float):
        if step_text is None:
            step = self._next_step.get(name, 0)
        else:
            step = _step(step_text)
            if step is None:
                return None
        self._next_step[name] = step + 1
        return MetricPoint(name, step, value, time, "log")

    def feed(self, line: str, time: float) -> list[MetricPoint]:
        """The points in one output line (with or without its newline), at `time` (epoch s)."""
        if line.startswith(PLATFORM_PREFIX):
            return []
        if len(line) > MAX_LINE_LENGTH:
            line = line[:MAX_LINE_LENGTH]
        if METRIC_LINE_PREFIX in line:
            match = BUILTIN_LINE.search(line)
            if match is not None:
                name = match["name"]
                value = _number(match["value"])
                if value is None or not NAME.fullmatch(name):
                    return []
                point = self._point(name, value, match["step"], time)
                return [point] if point is not None else []
        points = []
        for name, search, value_group, step_group in self._searches:
            match = search(line)
            if match is None:
                continue
            value = _number(match[value_group])
            if value is None:
                continue
            point = self._point(name, value, match[step_group] if step_group else None, time)
            if point is not None:
                points.append(point)
        return points


class _EventFile:
    """One event file, read incrementally by one EventAccumulator; remembers what it returned."""

    def __init__(self, path: Path, folder: Path):
        from tensorboard.backend.event_processing import event_accumulator as ea

        self.path = path
        run = path.parent.relative_to(folder).as_posix()
        self.prefix = "" if run == "." else run + "/"
        self.accumulator = ea.EventAccumulator(
            str(path), size_guidance={ea.SCALARS: 0, ea.TENSORS: 0}
        )
        self.seen: set[tuple[str, int, float]] = set()

    def _new(self, tag: str, step: int, wall_time: float, value) -> MetricPoint | None:
        key = (tag, step, wall_time)
        if key in self.seen:
            return None
        self.seen.add(key)
        value = float(value)
        if not math.isfinite(value):
            return None
        return MetricPoint(self.prefix + tag, int(step), value, float(wall_time), "tensorboard")

    def new_points(self) -> list[MetricPoint]:
        from tensorboard.util import tensor_util

        acc = self.accumulator
        acc.Reload()
        tags = acc.Tags()
        points = []
        # simple_value summaries (tensorboardX, torch's add_scalar, TF1)
        for tag in tags.get("scalars", []):
            for event in acc.Scalars(tag):
                point = self._new(tag, event.step, event.wall_time, event.value)
                if point is not None:
                    points.append(point)
        # tensor summaries of the scalars plugin (TF2's tf.summary.scalar, new_style=True)
        try:
            scalar_tensors = set(acc.PluginTagToContent("scalars"))
        except KeyError:
            scalar_tensors = set()
        for tag in tags.get("tensors", []):
            if tag not in scalar_tensors:
                continue
            for event in acc.Tensors(tag):
                array = tensor_util.make_ndarray(event.tensor_proto).reshape(-1)
                if array.size != 1:
                    continue
                point = self._new(tag, event.step, event.wall_time, array[0])
                if point is not None:
                    points.append(point)
        return points


class EventFileWatcher:
    """The scalars of the TensorBoard event files under a folder (recursive), as they are
    written: each poll() returns the points not returned before. A file in a subfolder names
    its metrics `<subfolder>/<tag>` (TensorBoard's runs), one in the folder itself `<tag>`.
    Blocking file reads: call it from a thread in async code."""

    def __init__(self, folder: Path | str):
        self.folder = Path(folder)
        self._files: dict[Path, _EventFile] = {}

    def _event_files(self) -> list[Path]:
        """The regular event files below the folder. A job writes this folder: links (which
        the platform would follow with its own rights, to another user's files) are skipped,
        and so is whatever resolves outside the folder."""
        if self.folder.is_symlink() or not self.folder.is_dir():
            return []
        root = os.path.realpath(self.folder) + os.sep
        found = []
        for dirpath, _dirs, names in os.walk(self.folder, followlinks=False):
            for name in names:
                if not fnmatch.fnmatch(name, EVENT_FILE_GLOB):
                    continue
                path = Path(dirpath, name)
                try:
                    regular = stat.S_ISREG(os.lstat(path).st_mode)
                except OSError:
                    continue
                if regular and os.path.realpath(path).startswith(root):
                    found.append(path)
        return sorted(found)

    def poll(self) -> list[MetricPoint]:
        points: list[MetricPoint] = []
        present = set()
        for path in self._event_files():
            present.add(path)
            try:
                entry = self._files.get(path)
                if entry is None:
                    entry = self._files[path] = _EventFile(path, self.folder)
                points += entry.new_points()
            except Exception as e:  # a damaged or vanishing file must not stop the others
                log.warning("metrics: cannot read event file %s: %s", path, e)
        for gone in set(self._files) - present:
            del self._files[gone]
        return points


def read_event_files(folder: Path | str) -> list[MetricPoint]:
    """Every scalar in every TensorBoard event file under `folder` (recursive)."""
    return EventFileWatcher(folder).poll()
