"""A job's metrics: users' regex rules, output lines turned into points, TensorBoard event files
written with tensorboardX and read back with TensorBoard's own reader."""

from __future__ import annotations

import time

import pytest
from tensorboardX import SummaryWriter
from tensorboardX.event_file_writer import EventsWriter
from tensorboardX.proto.event_pb2 import Event
from tensorboardX.proto.summary_pb2 import Summary, SummaryMetadata
from tensorboardX.proto.tensor_pb2 import TensorProto
from workbench.training import format_metric_line

from training_bridge.metrics import (
    MAX_RULES,
    EventFileWatcher,
    LogMetricParser,
    MetricError,
    MetricPoint,
    compile_metric_rules,
    read_event_files,
)

LOSS = {"name": "loss", "regex": r"loss=([0-9.eE+-]+)"}


def error_of(raw) -> str:
    with pytest.raises(MetricError) as info:
        compile_metric_rules(raw)
    assert isinstance(info.value, ValueError)  # the API turns it into a 400
    return str(info.value)


def test_valid_rules_compile():
    assert compile_metric_rules(None) == [] and compile_metric_rules([]) == []
    loss, acc, lr = compile_metric_rules(
        [
            LOSS,
            {"name": "eval/acc", "regex": r"acc(?:uracy)?: (?P<value>[0-9.]+)(%)?"},
            {"name": "lr", "regex": r"step (?P<step>\d+) lr=(\S+)"},
        ]
    )
    assert (loss.name, loss.value_group, loss.step_group) == ("loss", 1, None)
    assert (acc.value_group, acc.step_group) == ("value", None)
    assert (lr.value_group, lr.step_group) == (2, "step")
    assert loss.to_dict() == LOSS


@pytest.mark.parametrize(
    "raw, words",
    [
        ({"name": "loss"}, ["metric 'loss'", "regex is missing"]),
        ("loss=(.*)", ["list of rules"]),
        (["loss"], ["metrics[0]", "object"]),
        ([{"name": "1loss", "regex": "x(1)"}], ["metrics[0]", "'1loss'", "a letter"]),
        ([{"name": "a b", "regex": "x(1)"}], ["'a b'", "letters, digits"]),
        ([{"name": "x" * 65, "regex": "x(1)"}], ["1 to 64 characters"]),
        ([{"name": "loss", "regex": "x(1)", "step": 1}], ["unknown field 'step'"]),
        ([{"name": "loss", "regex": "loss=([0-9"}], ["does not compile", "position"]),
        ([{"name": "loss", "regex": "loss=[0-9.]+"}], ["0 capture groups", "(?P<value>"]),
        ([{"name": "loss", "regex": r"(\w+)=([0-9.]+)"}], ["2 capture groups", "(?:...)"]),
        ([{"name": "loss", "regex": "(?P<step>\\d+) (x)(y)"}], ["groups besides the step"]),
        ([{"name": "loss", "regex": "loss=(" + "[0-9]" * 100 + ")"}], ["at most 500"]),
        ([{"name": "loss", "regex": r"loss=((?:\d+)+)"}], ["exponential", "possessive"]),
        ([LOSS, dict(LOSS)], ["'loss' has two rules"]),
        ([{"name": f"m{i}", "regex": "(1)"} for i in range(MAX_RULES + 1)], ["at most 20"]),
    ],
)
def test_invalid_rules_say_what_to_change(raw, words):
    message = error_of(raw if isinstance(raw, (list, str)) else [raw])
    for word in words:
        assert word in message, message


def test_a_possessive_or_atomic_inner_repeat_is_accepted():
    compile_metric_rules([{"name": "a", "regex": r"v=((?:\d++,)*\d+)"}])
    compile_metric_rules([{"name": "b", "regex": r"v=((?>\d+,)*\d+)"}])


def test_rules_steps_and_values():
    rules = compile_metric_rules(
        [
            LOSS,
            {"name": "acc", "regex": r"acc=(?P<value>\S+) at step (?P<step>\d+)"},
        ]
    )
    parser = LogMetricParser(rules)
    assert parser.feed("epoch 1 loss=0.5\n", 10.0) == [MetricPoint("loss", 0, 0.5, 10.0, "log")]
    assert parser.feed("nothing here", 11.0) == []
    # steps count per metric from 0 when the regex has no step group
    assert parser.feed("loss=2.5e-1 acc=0.75 at step 40", 12.0) == [
        MetricPoint("loss", 1, 0.25, 12.0),
        MetricPoint("acc", 40, 0.75, 12.0),
    ]
    # values that are not numbers, or not finite, are skipped (no step used up)
    assert parser.feed("loss=nan", 13.0) == []
    assert parser.feed("loss=inf", 13.0) == []
    assert parser.feed("loss=1.2.3", 13.0) == []
    assert parser.feed("loss=3", 14.0) == [MetricPoint("loss", 2, 3.0, 14.0)]


def test_the_platforms_own_lines_are_never_parsed():
    parser = LogMetricParser(compile_metric_rules([LOSS]))
    assert parser.feed("[workbench] queued: position 1 (loss=3)", 1.0) == []
    assert parser.feed("[workbench] workbench-metric name=x value=1", 1.0) == []
    assert parser.feed("loss=3", 1.0) == [MetricPoint("loss", 0, 3.0, 1.0)]


def test_the_sdk_line_is_always_parsed():
    parser = LogMetricParser()  # no rules
    line = format_metric_line("eval/acc", 0.875, step=7)
    assert line == "workbench-metric name=eval/acc value=0.875 step=7"
    assert parser.feed(line + "\n", 5.0) == [MetricPoint("eval/acc", 7, 0.875, 5.0)]
    # without a step: one more than the metric's last
    assert parser.feed(format_metric_line("eval/acc", 1), 6.0) == [
        MetricPoint("eval/acc", 8, 1.0, 6.0)
    ]
    assert parser.feed(format_metric_line("loss", 2.5), 6.0) == [MetricPoint("loss", 0, 2.5, 6.0)]
    # behind a launcher's prefix too; not-finite values are printed but not recorded
    assert parser.feed("[rank0]: workbench-metric name=loss value=1e-3", 7.0) == [
        MetricPoint("loss", 1, 0.001, 7.0)
    ]
    assert parser.feed(format_metric_line("loss", float("nan")), 8.0) == []
    assert parser.feed("workbench-metric name=1bad value=1", 8.0) == []


def test_the_sdk_line_does_not_also_feed_rules():
    parser = LogMetricParser(compile_metric_rules([{"name": "v", "regex": r"value=(\S+)"}]))
    assert parser.feed("workbench-metric name=loss value=4", 1.0) == [
        MetricPoint("loss", 0, 4.0, 1.0)
    ]
    assert parser.feed("value=4", 1.0) == [MetricPoint("v", 0, 4.0, 1.0)]


def test_parser_speed_is_reported():
    """Not an assertion on time (shared machines): the rate is printed with -s."""
    parser = LogMetricParser(
        compile_metric_rules(
            [
                LOSS,
                {"name": "acc", "regex": r"acc(?:uracy)?[=:] *(?P<value>[0-9.]+)"},
                {"name": "lr", "regex": r"step (?P<step>\d+) .*lr=(\S+)"},
            ]
        )
    )
    lines = [
        f"step {i} loss={1 / (i + 1):.5f} accuracy: 0.{i % 97} lr=0.01"
        if i % 4 == 0
        else f"progress {i}/100000 [=====>    ] eta 00:01:{i % 60:02d}"
        for i in range(100_000)
    ]
    start = time.perf_counter()
    points = sum(len(parser.feed(line, 0.0)) for line in lines)
    elapsed = time.perf_counter() - start
    assert points == 3 * 25_000
    print(f"metrics parser: {len(lines) / elapsed:,.0f} lines/s with 3 rules")


def scalars(points, source="tensorboard"):
    assert all(p.source == source for p in points)
    return sorted((p.name, p.step, p.value) for p in points)


def test_event_files_of_tensorboardx_are_read(tmp_path):
    with SummaryWriter(str(tmp_path)) as writer:
        for step in range(3):
            writer.add_scalar("loss", 1 / (step + 1), step, walltime=1000.0 + step)
        writer.add_scalars("group", {"train": 1.5, "eval": 2.5}, 0)
        writer.add_text("note", "not a scalar", 0)
    # a run in a subfolder, as TensorBoard shows it
    with SummaryWriter(str(tmp_path / "eval")) as writer:
        writer.add_scalar("acc", 0.5, 10)
    points = read_event_files(tmp_path)
    assert scalars(points) == [
        ("eval/acc", 10, 0.5),
        ("group/eval/group", 0, 2.5),
        ("group/train/group", 0, 1.5),
        ("loss", 0, 1.0),
        ("loss", 1, 0.5),
        ("loss", 2, pytest.approx(1 / 3)),
    ]
    assert sorted(p.time for p in points if p.name == "loss") == [1000.0, 1001.0, 1002.0]


def tensor_scalar(tag, value) -> Summary:
    """A scalar as torch.utils.tensorboard (new_style=True) and TF2's tf.summary write it: a
    tensor with the scalars plugin's metadata."""
    metadata = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="scalars"))
    tensor = TensorProto(dtype="DT_FLOAT", float_val=[value])
    return Summary(value=[Summary.Value(tag=tag, tensor=tensor, metadata=metadata)])


def test_the_watcher_returns_only_new_points(tmp_path):
    watcher = EventFileWatcher(tmp_path / "tensorboard")
    assert watcher.poll() == []  # the folder does not exist yet
    # one file written in steps (a synchronous writer: each flush is on disk)
    (tmp_path / "tensorboard").mkdir()
    events = EventsWriter(str(tmp_path / "tensorboard" / "events"), ".node0")

    def write(step, summary):
        events.write_event(Event(wall_time=2000.0 + step, step=step, summary=summary))
        events.flush()

    write(0, Summary(value=[Summary.Value(tag="loss", simple_value=0.875)]))
    write(0, tensor_scalar("tensor_loss", 0.75))
    assert scalars(watcher.poll()) == [("loss", 0, 0.875), ("tensor_loss", 0, 0.75)]
    assert watcher.poll() == []
    # the second write to the same file is picked up, and only it
    write(1, Summary(value=[Summary.Value(tag="loss", simple_value=0.5)]))
    write(1, tensor_scalar("tensor_loss", 0.25))
    write(1, Summary(value=[Summary.Value(tag="bad", simple_value=float("nan"))]))
    assert scalars(watcher.poll()) == [("loss", 1, 0.5), ("tensor_loss", 1, 0.25)]
    # a new file (a restarted writer) is picked up too
    with SummaryWriter(str(tmp_path / "tensorboard"), filename_suffix=".restart") as writer:
        writer.add_scalar("loss", 0.125, 2, walltime=2002.0)
    assert scalars(watcher.poll()) == [("loss", 2, 0.125)]
    assert watcher.poll() == []
    events.close()
    # a fresh read sees everything once
    assert len(read_event_files(tmp_path / "tensorboard")) == 5


def test_a_damaged_event_file_does_not_hide_the_others(tmp_path):
    with SummaryWriter(str(tmp_path / "good")) as writer:
        writer.add_scalar("loss", 1.0, 0)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "events.out.tfevents.1.host").write_bytes(b"\x00garbage" * 10)
    assert scalars(read_event_files(tmp_path)) == [("good/loss", 0, 1.0)]


def test_the_watcher_skips_links_a_job_leaves_to_files_outside_its_folder(tmp_path):
    """A job writes its TensorBoard folder; the platform reads it with its own rights, so a
    link to someone else's event file (or a linked folder) must not be followed."""
    from tensorboardX import SummaryWriter

    from training_bridge.metrics import EventFileWatcher

    secret = tmp_path / "other-user"
    writer = SummaryWriter(str(secret))
    writer.add_scalar("secret", 42.0, 0)
    writer.close()
    (secret_file,) = secret.glob("events.out.tfevents.*")
    mine = tmp_path / "job" / "tensorboard"
    mine.mkdir(parents=True)
    (mine / "events.out.tfevents.1.link").symlink_to(secret_file)
    (mine / "run").symlink_to(secret, target_is_directory=True)
    assert EventFileWatcher(mine).poll() == []
    linked_root = tmp_path / "job" / "linked"
    linked_root.symlink_to(secret, target_is_directory=True)
    assert EventFileWatcher(linked_root).poll() == []
    assert [p.name for p in EventFileWatcher(secret).poll()] == ["secret"]
