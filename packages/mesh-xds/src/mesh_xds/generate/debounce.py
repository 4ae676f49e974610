"""Debouncing: many small changes become one push, as istiod's ``debounce`` loop does (ISTIO.md 2.10).

Config stores and service registries tell what changed as :class:`~mesh_model.ChangeSet` values, often in
bursts (a ``kubectl apply`` of twenty objects, a deployment rolling its pods). A :class:`Debouncer` merges
them and calls its push function once the changes have been quiet for ``quiet`` seconds (100 ms), or
``max_delay`` seconds (10 s) after the first unpushed change, whichever comes first. One push runs at a time:
changes that arrive during a push are merged into the next one::

    async def push(changes: ChangeSet) -> None:
        ...  # rebuild the PushContext, regenerate, deliver

    debouncer = Debouncer(push)
    debouncer.start()                       # inside a running event loop
    store.subscribe(debouncer.add)          # handlers may run on any thread
    registry.subscribe(debouncer.add)
    ...
    await debouncer.close()

Time comes from a :class:`Clock`; :class:`ManualClock` lets a test move time by hand and wait until the
debouncer sleeps, so that what happens when is certain rather than a matter of timing.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import math
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Final, Protocol, final, runtime_checkable

from mesh_model import ChangeSet
from mesh_xds._text import describe

__all__ = ["DEFAULT_MAX_DELAY", "DEFAULT_QUIET", "Clock", "Debouncer", "ManualClock", "MonotonicClock"]

_log = logging.getLogger("mesh_xds.generate.debounce")

DEFAULT_QUIET: Final = 0.1
"""Istio's ``PILOT_DEBOUNCE_AFTER``: push after 100 ms without a change."""
DEFAULT_MAX_DELAY: Final = 10.0
"""Istio's ``PILOT_DEBOUNCE_MAX``: push at the latest 10 s after the first change."""

PushFunction = Callable[[ChangeSet], Awaitable[None]]
"""What a debouncer calls with the merged changes."""


@runtime_checkable
class Clock(Protocol):
    """Where a :class:`Debouncer` reads the time and waits."""

    def now(self) -> float:
        """The current time in seconds (any origin; only differences count). Safe from any thread."""

    async def sleep_until(self, deadline: float) -> None:
        """Return once :meth:`now` has reached ``deadline`` (at once when it has)."""


@final
class MonotonicClock:
    """The real clock: ``time.monotonic`` and ``asyncio.sleep``."""

    def now(self) -> float:
        """Seconds since an arbitrary point, never going back."""
        return time.monotonic()

    async def sleep_until(self, deadline: float) -> None:
        """Sleep on the running event loop until ``deadline``."""
        while (remaining := deadline - time.monotonic()) > 0:
            await asyncio.sleep(remaining)


@final
class ManualClock:
    """A clock that moves only when told to, for deterministic tests.

    Sleepers wake when :meth:`advance` moves the time past their deadline; :meth:`wait_for_sleeper` waits
    until something sleeps on the clock, so that a test knows the debouncer has settled::

        clock = ManualClock()
        debouncer = Debouncer(push, clock=clock)
        debouncer.start()
        debouncer.add(changes)
        assert await clock.wait_for_sleeper() == 0.1   # the debouncer waits for 100 ms of quiet
        clock.advance(0.1)                             # and then pushes

    Args:
        start: the time the clock starts at.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        self._lock = threading.Lock()
        self._order = itertools.count()
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._changed = asyncio.Event()

    def now(self) -> float:
        """The time the clock was last moved to."""
        with self._lock:
            return self._now

    async def sleep_until(self, deadline: float) -> None:
        """Wait until the clock has been moved to ``deadline`` or past it."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if deadline <= self._now:
                return
            heapq.heappush(self._sleepers, (deadline, next(self._order), future))
        self._changed.set()
        try:
            await future
        finally:
            with self._lock:
                self._sleepers = [entry for entry in self._sleepers if entry[2] is not future]
                heapq.heapify(self._sleepers)

    def advance(self, seconds: float) -> None:
        """Move the time forward and wake every sleeper whose deadline has come (call on the loop's thread).

        Raises:
            ValueError: ``seconds`` is negative or not a finite number.
        """
        if not isinstance(seconds, int | float) or not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"a clock moves forward by a finite number of seconds, not {describe(seconds)}")
        with self._lock:
            self._now += float(seconds)
            due = []
            while self._sleepers and self._sleepers[0][0] <= self._now:
                due.append(heapq.heappop(self._sleepers)[2])
        for future in due:
            if not future.done():
                future.set_result(None)

    @property
    def sleepers(self) -> tuple[float, ...]:
        """The deadlines of the tasks sleeping on the clock, earliest first."""
        with self._lock:
            return tuple(sorted(deadline for deadline, _, future in self._sleepers if not future.done()))

    async def wait_for_sleeper(self, *, after: float | None = None, timeout: float = 10.0) -> float:
        """Wait until a task sleeps on the clock (with a deadline later than ``after``); return its deadline.

        Raises:
            TimeoutError: nothing slept on the clock within ``timeout`` real seconds.
        """
        floor = self.now() if after is None else after
        try:
            async with asyncio.timeout(timeout):
                while True:
                    later = [deadline for deadline in self.sleepers if deadline > floor]
                    if later:
                        return later[0]
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise TimeoutError(f"nothing slept on the clock after {floor} within {timeout}s") from None


def _seconds(what: str, value: object, *, positive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number of seconds, not {describe(value)}")
    if value < 0 or (positive and value == 0):
        raise ValueError(f"{what} must be {'more than' if positive else 'at least'} 0 seconds, not {value}")
    return float(value)


@final
class Debouncer:
    """Merges change sets and pushes them once they settle (see the module documentation).

    Args:
        push: called with the merged changes; awaited before the next push starts. An exception it raises
            is logged, and the changes it was given are not retried.
        quiet: push once no change came for this many seconds.
        max_delay: push at the latest this many seconds after the first change of a push.
        clock: where time comes from; the real monotonic clock by default.

    Raises:
        ValueError: ``quiet`` is negative, ``max_delay`` is not positive, or either is not a number.
    """

    def __init__(
        self,
        push: PushFunction,
        *,
        quiet: float = DEFAULT_QUIET,
        max_delay: float = DEFAULT_MAX_DELAY,
        clock: Clock | None = None,
    ) -> None:
        if not callable(push):
            raise ValueError(f"push must be an async function of a ChangeSet, not {describe(push)}")
        self._push = push
        self._quiet = _seconds("quiet", quiet, positive=False)
        self._max_delay = _seconds("max_delay", max_delay, positive=True)
        self._clock: Clock = clock if clock is not None else MonotonicClock()
        self._lock = threading.Lock()
        self._pending = ChangeSet()
        self._first: float | None = None
        self._last = 0.0
        self._pushes = 0
        self._merged = 0
        self._pushing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._idle: asyncio.Condition | None = None
        self._closed = False

    @property
    def quiet(self) -> float:
        """Seconds without a change before a push."""
        return self._quiet

    @property
    def max_delay(self) -> float:
        """The longest a change waits for its push, in seconds (plus the push in progress)."""
        return self._max_delay

    @property
    def pending(self) -> ChangeSet:
        """The changes not pushed yet."""
        with self._lock:
            return self._pending

    @property
    def pushes(self) -> int:
        """How many pushes have completed (or failed)."""
        return self._pushes

    @property
    def merged(self) -> int:
        """How many change sets were handed to :meth:`add` and had something in them."""
        return self._merged

    @property
    def pushing(self) -> bool:
        """True while the push function runs."""
        return self._pushing

    def start(self) -> None:
        """Start debouncing on the running event loop (changes added before are kept).

        Raises:
            RuntimeError: there is no running event loop, or the debouncer was closed.
        """
        if self._closed:
            raise RuntimeError("the debouncer is closed")
        if self._task is not None:
            return
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._wake = asyncio.Event()
        self._idle = asyncio.Condition()
        self._task = loop.create_task(self._run(), name="mesh-xds-debounce")
        with self._lock:
            if self._pending:
                self._wake.set()

    def add(self, changes: ChangeSet) -> None:
        """Merge a change set into the next push; safe from any thread (a store's or a registry's handler).

        An empty change set is ignored. Changes added after :meth:`close` are dropped.

        Raises:
            ValueError: ``changes`` is not a ChangeSet.
        """
        if not isinstance(changes, ChangeSet):
            raise ValueError(f"a debouncer takes ChangeSet values, not {describe(changes)}")
        if not changes or self._closed:
            return
        now = self._clock.now()
        with self._lock:
            self._pending = self._pending.merge(changes)
            first = self._first is None
            if first:
                self._first = now
            self._last = now
            self._merged += 1
        if first:  # later changes only push the deadline back: the sleeping loop need not wake
            self._signal()

    async def flush(self) -> None:
        """Push what is pending now, without waiting for it to settle; return when it is pushed.

        Raises:
            RuntimeError: the debouncer was not started or is closed.
        """
        if self._idle is None or self._closed:
            raise RuntimeError("flush() needs a started, open debouncer")
        with self._lock:
            if self._first is not None:
                self._first = -math.inf  # due at once
        self._signal()
        await self.wait_idle()

    async def wait_idle(self, *, timeout: float = 30.0) -> None:
        """Wait until nothing is pending and no push runs.

        Raises:
            TimeoutError: that did not happen within ``timeout`` seconds of real time.
            RuntimeError: the debouncer was not started.
        """
        idle = self._idle
        if idle is None:
            raise RuntimeError("wait_idle() needs a started debouncer")
        try:
            async with asyncio.timeout(timeout), idle:
                await idle.wait_for(self._is_idle)
        except TimeoutError:
            raise TimeoutError(f"the debouncer did not become idle within {timeout}s") from None

    async def close(self) -> None:
        """Stop: changes still pending are dropped; a push in progress is cancelled."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise

    def _is_idle(self) -> bool:
        with self._lock:
            return not self._pending and not self._pushing

    def _signal(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is None or wake is None:
            return
        try:
            if _on_loop_thread(loop):
                wake.set()
            else:
                loop.call_soon_threadsafe(wake.set)
        except RuntimeError:  # the loop is closed: nothing will push any more
            pass

    def _deadline(self) -> float | None:
        """When the pending changes are due; None when nothing is pending."""
        with self._lock:
            if self._first is None:
                return None
            return min(self._last + self._quiet, self._first + self._max_delay)

    async def _run(self) -> None:
        wake = self._wake
        assert wake is not None
        while True:
            wake.clear()
            deadline = self._deadline()
            if deadline is None:
                await self._notify_idle()
                if self._deadline() is None:
                    await wake.wait()
            elif deadline > self._clock.now():
                await self._sleep_until(deadline, wake)
            else:
                await self._push_pending()

    async def _sleep_until(self, deadline: float, wake: asyncio.Event) -> None:
        """Sleep until ``deadline`` or until woken (by :meth:`flush`)."""
        sleeper = asyncio.ensure_future(self._clock.sleep_until(deadline))
        waker = asyncio.ensure_future(wake.wait())
        try:
            await asyncio.wait((sleeper, waker), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeper, waker):
                if not task.done():
                    task.cancel()
            await asyncio.gather(sleeper, waker, return_exceptions=True)

    async def _push_pending(self) -> None:
        with self._lock:
            changes, self._pending = self._pending, ChangeSet()
            self._first = None
            self._pushing = True
        try:
            await self._push(changes)
        except asyncio.CancelledError:
            raise
        except Exception:
            _log.exception("push of %d changes failed", len(changes))
        finally:
            with self._lock:
                self._pushing = False
            self._pushes += 1
        await self._notify_idle()

    async def _notify_idle(self) -> None:
        idle = self._idle
        if idle is not None:
            async with idle:
                idle.notify_all()


def _on_loop_thread(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
