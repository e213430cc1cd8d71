"""The TensorBoard process helper the lab extension and the SDK share, against the real
TensorBoard of this environment over event files tensorboardX wrote: it answers once started,
shows the runs' scalars under their labels, and frees its port when stopped."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import urllib.request

import pytest
from tensorboardX import SummaryWriter
from workbench import tensorboard
from workbench.tensorboard import (
    TensorBoardError,
    TensorBoardProcess,
    logdir_spec,
    proxy_url,
    tensorboard_python,
)

# TensorBoard reads the event files in the background after it answers
LOAD_WITHIN = 60.0


def write_scalars(folder, tags: dict[str, list[float]]):
    writer = SummaryWriter(str(folder))
    for tag, values in tags.items():
        for step, value in enumerate(values):
            writer.add_scalar(tag, value, step)
    writer.close()


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def tags_of(process: TensorBoardProcess) -> dict:
    """The scalar tags by run, once TensorBoard has read every run."""
    deadline = time.monotonic() + LOAD_WITHIN
    while True:
        tags = get_json(process.local_url + "data/plugin/scalars/tags")
        if len(tags) == len(process.logdirs) or time.monotonic() > deadline:
            return tags
        time.sleep(0.5)


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def runs(tmp_path):
    """Two runs' output folders: event files below them, as a job's output holds them."""
    first, second = tmp_path / "train" / "1" / "output", tmp_path / "train" / "2" / "output"
    write_scalars(first / "tb", {"loss": [1.0, 0.5, 0.25], "acc": [0.1, 0.6, 0.9]})
    write_scalars(second, {"loss": [2.0, 1.0]})
    return {"train-v1": first, "train-v2": second}


def test_it_starts_shows_each_runs_scalars_and_stop_frees_its_port(runs):
    process = TensorBoardProcess(runs, python=sys.executable)
    try:
        assert process.start() is process
        assert process.running and process.answers() and listening(process.port)
        tags = tags_of(process)
        # a run is the label plus the folder below its logdir that holds the events
        assert tags == {
            "train-v1/tb": {
                "acc": {"displayName": "acc", "description": ""},
                "loss": {"displayName": "loss", "description": ""},
            },
            "train-v2/.": {"loss": {"displayName": "loss", "description": ""}},
        }
        values = get_json(
            process.local_url + "data/plugin/scalars/scalars?run=train-v1/tb&tag=loss"
        )
        assert [(step, value) for _, step, value in values] == [(0, 1.0), (1, 0.5), (2, 0.25)]
        port = process.port
    finally:
        process.stop()
    assert not process.running and not listening(port)
    process.stop()  # a second stop does nothing


def test_two_tensorboards_run_side_by_side_on_their_own_ports(runs):
    one = TensorBoardProcess({"train-v1": runs["train-v1"]}, python=sys.executable)
    two = TensorBoardProcess({"train-v2": runs["train-v2"]}, python=sys.executable)
    try:
        one.start()
        two.start()
        assert one.port != two.port
        assert list(tags_of(one)) == ["train-v1/tb"] and list(tags_of(two)) == ["train-v2/."]
    finally:
        one.stop()
        two.stop()


def test_a_python_without_tensorboard_fails_with_its_last_words(tmp_path):
    # a Python that cannot import tensorboard: isolated mode with no site-packages
    fake = tmp_path / "python"
    fake.write_text(f'#!/bin/sh\nexec {sys.executable} -I -S "$@"\n')
    fake.chmod(0o755)
    process = TensorBoardProcess({"run": tmp_path}, python=str(fake))
    with pytest.raises(TensorBoardError) as e:
        process.start(timeout=30)
    assert "exited with code 1" in str(e.value)
    assert "No module named 'tensorboard'" in str(e.value)
    assert not process.running


def test_a_missing_python_is_said_so(tmp_path):
    process = TensorBoardProcess({"run": tmp_path}, python=str(tmp_path / "no-python"))
    with pytest.raises(TensorBoardError, match="Cannot run .*no-python"):
        process.start(timeout=5)


def test_the_spec_the_proxy_url_and_the_python():
    assert logdir_spec({"a-v1": "/w/jobs/a/1/output", "b-v2": "/x"}) == (
        "a-v1:/w/jobs/a/1/output,b-v2:/x"
    )
    for bad in ({"a:b": "/x"}, {"a,b": "/x"}, {"a": "/x,y"}, {"": "/x"}):
        with pytest.raises(ValueError):
            logdir_spec(bad)
    assert proxy_url(6006, "/user/al/nb/") == "/user/al/nb/proxy/6006/"
    assert proxy_url(6006, "/user/al/nb") == "/user/al/nb/proxy/6006/"
    # without the platform's JupyterLab environment, this Python runs TensorBoard
    assert tensorboard_python() == (
        tensorboard.JUPYTER_PYTHON if os.path.exists(tensorboard.JUPYTER_PYTHON) else sys.executable
    )


def test_proxy_url_defaults_to_the_servers_prefix(monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/user/al/nb/")
    assert proxy_url(7000) == "/user/al/nb/proxy/7000/"


def test_a_notebook_shows_the_sync_clients_tensorboard_as_a_frame():
    """workbench.tensorboard(...) returns the sync wrapper: the notebook's rich display must
    still reach the frame, while other private names stay hidden."""
    from workbench import WorkbenchClient
    from workbench.resources.tensorboards import TensorBoard
    from workbench.sync import SyncNamespace, _synced

    client = WorkbenchClient("http://127.0.0.1:9", "token", user="tbsync")
    board = _synced(TensorBoard(client.aio, {"id": 3}, url="/user/tbsync/nb/proxy/6006/"))
    assert isinstance(board, SyncNamespace)
    frame = board._repr_html_()
    assert frame.startswith("<iframe ") and 'src="/user/tbsync/nb/proxy/6006/"' in frame
    with pytest.raises(AttributeError):
        board._process  # noqa: B018 - private stays private
    with pytest.raises(AttributeError):
        board._ipython_canary_method_should_not_exist_  # noqa: B018 - IPython's own probe
