"""A node's log file: followers are woken at each append, and a job printing without end
cannot fill the platform's disk."""

from __future__ import annotations

import asyncio

from training_bridge.service import LogFile


async def test_appends_wake_followers_and_stop_at_the_limit(tmp_path):
    log = LogFile(tmp_path / "node-0.log", limit=100)
    waiter = log.changed
    log.append(b"x" * 60 + b"\n")
    assert waiter.is_set() and not log.changed.is_set()
    log.append(b"y" * 60 + b"\n")  # crosses the limit: a note instead, then nothing
    log.append(b"z\n")
    text = (tmp_path / "node-0.log").read_text()
    assert text.startswith("x" * 60)
    assert "y" not in text and "z" not in text
    assert text.endswith("the log reached 0 MiB: later lines are dropped\n")
    await asyncio.sleep(0)
