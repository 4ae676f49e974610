"""Debouncing: quiet period, maximum delay, merging, one push at a time, driven by a manual clock."""

from __future__ import annotations

import asyncio
import threading

import pytest

from mesh_model import ChangeSet, ConfigKey, Kind
from mesh_xds.generate import Debouncer, ManualClock


def _key(name: str, kind: str = Kind.VIRTUAL_SERVICE) -> ChangeSet:
    return ChangeSet.of(ConfigKey(kind, "default", name))


class _Recorder:
    """A push function that records what it got, and can be held open to test overlapping changes."""

    def __init__(self) -> None:
        self.pushed: list[ChangeSet] = []
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()

    async def __call__(self, changes: ChangeSet) -> None:
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        self.pushed.append(changes)


@pytest.fixture
def clock():
    return ManualClock()


@pytest.fixture
async def debounced(clock):
    recorder = _Recorder()
    debouncer = Debouncer(recorder, quiet=0.1, max_delay=1.0, clock=clock)
    debouncer.start()
    yield debouncer, recorder
    await debouncer.close()


async def test_a_change_is_pushed_after_the_quiet_period(clock, debounced):
    debouncer, recorder = debounced
    debouncer.add(_key("reviews"))
    assert await clock.wait_for_sleeper() == pytest.approx(0.1)
    clock.advance(0.099)
    assert await clock.wait_for_sleeper() == pytest.approx(0.1)
    assert recorder.pushed == []
    clock.advance(0.001)
    await debouncer.wait_idle()
    assert recorder.pushed == [_key("reviews")]
    assert debouncer.pushes == 1
    assert not debouncer.pending


async def test_changes_in_a_burst_are_merged_into_one_push(clock, debounced):
    debouncer, recorder = debounced
    debouncer.add(_key("reviews"))
    await clock.wait_for_sleeper()
    clock.advance(0.05)
    debouncer.add(_key("ratings"))
    debouncer.add(_key("reviews", Kind.DESTINATION_RULE))
    clock.advance(0.05)  # the first deadline passes, but the quiet period restarted with the last change
    assert await clock.wait_for_sleeper(after=0.1) == pytest.approx(0.15)
    assert recorder.pushed == []
    clock.advance(0.05)
    await debouncer.wait_idle()
    (pushed,) = recorder.pushed
    assert pushed == _key("reviews") | _key("ratings") | _key("reviews", Kind.DESTINATION_RULE)
    assert debouncer.merged == 3


async def _settled(clock: ManualClock, debouncer: Debouncer, pushes: int) -> None:
    """Wait until the debouncer has pushed again or sleeps on the clock."""
    async with asyncio.timeout(10):
        while debouncer.pushes == pushes and not clock.sleepers:
            await asyncio.sleep(0)


async def test_a_steady_stream_of_changes_is_pushed_at_the_maximum_delay(clock, debounced):
    debouncer, recorder = debounced
    for step in range(20):
        debouncer.add(_key(f"vs-{step}"))
        await _settled(clock, debouncer, 0)
        clock.advance(0.06)  # never quiet for 100 ms
        await _settled(clock, debouncer, 0)
        if recorder.pushed:
            break
    (pushed,) = recorder.pushed
    assert clock.now() == pytest.approx(1.02)  # the first change came at 0; due at the latest at 1.0
    assert len(pushed) == 17  # the changes added at 0.00, 0.06, ..., 0.96


async def test_one_push_at_a_time_and_changes_during_a_push_go_into_the_next(clock, debounced):
    debouncer, recorder = debounced
    recorder.gate = asyncio.Event()
    debouncer.add(_key("first"))
    await clock.wait_for_sleeper()
    clock.advance(0.1)
    await asyncio.wait_for(recorder.entered.wait(), 10)
    assert debouncer.pushing
    debouncer.add(_key("second"))
    debouncer.add(_key("third"))
    clock.advance(1.0)  # long past due: still no second push while the first runs
    assert debouncer.pending == _key("second") | _key("third")
    recorder.gate.set()
    await debouncer.wait_idle()
    assert recorder.pushed == [_key("first"), _key("second") | _key("third")]


async def test_flush_pushes_at_once(clock, debounced):
    debouncer, recorder = debounced
    debouncer.add(_key("reviews"))
    await debouncer.flush()
    assert recorder.pushed == [_key("reviews")]
    await debouncer.flush()  # nothing pending: nothing pushed
    assert len(recorder.pushed) == 1


async def test_changes_from_other_threads_are_merged(clock, debounced):
    debouncer, recorder = debounced
    threads = [threading.Thread(target=debouncer.add, args=(_key(f"vs-{n}"),)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    await clock.wait_for_sleeper()
    clock.advance(0.1)
    await debouncer.wait_idle()
    (pushed,) = recorder.pushed
    assert len(pushed) == 8


async def test_a_failing_push_is_logged_and_the_next_changes_are_still_pushed(clock, caplog):
    calls: list[ChangeSet] = []

    async def push(changes: ChangeSet) -> None:
        calls.append(changes)
        if len(calls) == 1:
            raise RuntimeError("generation exploded")

    debouncer = Debouncer(push, quiet=0.1, clock=clock)
    debouncer.start()
    try:
        debouncer.add(_key("bad"))
        await debouncer.flush()
        debouncer.add(_key("good"))
        await debouncer.flush()
    finally:
        await debouncer.close()
    assert calls == [_key("bad"), _key("good")]
    assert "push of 1 changes failed" in caplog.text


async def test_empty_change_sets_and_changes_after_close_are_ignored(clock):
    recorder = _Recorder()
    debouncer = Debouncer(recorder, clock=clock)
    debouncer.start()
    debouncer.add(ChangeSet())
    assert not debouncer.pending
    await debouncer.close()
    debouncer.add(_key("late"))
    assert not debouncer.pending
    assert recorder.pushed == []


def test_changes_added_before_start_wait_for_it():
    debouncer = Debouncer(_Recorder())
    debouncer.add(_key("early"))
    assert debouncer.pending == _key("early")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"quiet": -1}, "quiet must be at least 0 seconds"),
        ({"max_delay": 0}, "max_delay must be more than 0 seconds"),
        ({"quiet": float("nan")}, "quiet must be a finite number of seconds"),
        ({"max_delay": "10s"}, "max_delay must be a finite number of seconds, not '10s'"),
    ],
)
def test_bad_timings_are_refused_with_what_is_wrong(arguments, message):
    with pytest.raises(ValueError, match=message):
        Debouncer(_Recorder(), **arguments)


def test_bad_changes_and_clock_moves_are_refused():
    with pytest.raises(ValueError, match="takes ChangeSet values"):
        Debouncer(_Recorder()).add({"VirtualService"})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="moves forward"):
        ManualClock().advance(-1)
