"""The engine machine's capacity: asked once, then refreshed without holding anyone up."""

from __future__ import annotations

import asyncio

from spawner.capacity import MachineCapacity


class Engine:
    """Answers `info` as an engine does, counting the calls; slow when told to be."""

    def __init__(self):
        self.calls = 0
        self.ncpu = 4
        self.delay = 0.0
        self.fail = False

    async def info(self) -> dict:
        self.calls += 1
        await asyncio.sleep(self.delay)
        if self.fail:
            raise ConnectionError("engine gone")
        return {"NCPU": self.ncpu, "MemTotal": 8 << 30}


async def test_the_engine_is_asked_once_while_the_answer_is_fresh():
    engine, machine = Engine(), MachineCapacity(max_age=60)
    assert await machine.get(engine.info) == (4.0, 8 << 30)
    for _ in range(5):
        assert await machine.get(engine.info) == (4.0, 8 << 30)
    assert engine.calls == 1


async def test_an_old_answer_is_used_while_a_new_one_is_asked_for_in_the_background():
    engine, machine = Engine(), MachineCapacity(max_age=60)
    await machine.get(engine.info)
    machine.read_at -= 61  # a minute later; the machine was resized meanwhile
    engine.ncpu, engine.delay = 8, 0.2
    loop = asyncio.get_running_loop()
    began = loop.time()
    answers = [await machine.get(engine.info) for _ in range(3)]
    # no caller waited for the slow engine, and one refresh was asked for, not three
    assert loop.time() - began < 0.1
    assert answers == [(4.0, 8 << 30)] * 3
    await machine._refresh
    assert engine.calls == 2
    assert await machine.get(engine.info) == (8.0, 8 << 30)


async def test_a_failed_refresh_keeps_the_last_answer_until_the_next_try(caplog):
    engine, machine = Engine(), MachineCapacity(max_age=60)
    await machine.get(engine.info)
    machine.read_at -= 61
    engine.fail = True
    assert await machine.get(engine.info) == (4.0, 8 << 30)
    await machine._refresh
    assert "engine gone" in caplog.text
    # not asked again at every call after a failure: after max_age again
    assert await machine.get(engine.info) == (4.0, 8 << 30)
    assert engine.calls == 2
