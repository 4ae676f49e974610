"""A background thread that calls a function at a fixed interval: how the sources that follow files look at them.

The directory config store and the file registry of mesh_config, and mesh_xds's directory secret provider,
poll their files with a :class:`Poller`; a source of your own can too::

    log = logging.getLogger(__name__)
    poller = Poller(source.reload, 1.0, name="my-source", what="reloading my source", logger=log)
    poller.start()
    ...
    poller.stop()
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import final


@final
class Poller:
    """Calls ``poll`` every ``interval`` seconds in a daemon thread, between :meth:`start` and :meth:`stop`.

    A call that raises is logged as ``"<what> failed"`` and the next one still comes.

    Args:
        poll: the function to call.
        interval: seconds between two calls (positive; the caller checks it).
        name: the thread's name.
        what: what a call does, for the log.
        logger: where a failing call is logged.
    """

    def __init__(
        self, poll: Callable[[], object], interval: float, *, name: str, what: str, logger: logging.Logger
    ) -> None:
        self._poll = poll
        self._interval = interval
        self._name = name
        self._what = what
        self._logger = logger
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def start(self) -> None:
        """Start the thread (does nothing when it runs)."""
        with self._lock:
            if self._thread is not None:
                return
            # Each start has its own event: a thread stopped from one of its own calls may still be ending.
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._follow, args=(self._stop,), name=self._name, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the thread and wait for it to end (unless called from it); :meth:`start` starts it again."""
        with self._lock:
            thread, stop, self._thread = self._thread, self._stop, None
        stop.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _follow(self, stop: threading.Event) -> None:
        while not stop.wait(self._interval):
            try:
                self._poll()
            except Exception:  # the thread must outlive any one bad call
                self._logger.exception("%s failed", self._what)
