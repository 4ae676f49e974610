"""Change subscriptions and batching: the building blocks of registries, config stores and secret providers.

The registries of mesh_model, the config stores of mesh_config and the secret providers of mesh_xds notify
their subscribers with these; a registry or store of your own can too::

    from mesh_model import ChangeSet, Subscribers

    class MyRegistry:
        def __init__(self) -> None:
            self._subscribers = Subscribers()

        def subscribe(self, handler):
            return self._subscribers.add(handler)  # a Subscription: .cancel() ends it

        def reload(self, keys) -> None:
            with self._subscribers.batch():  # every change of the block reaches the handlers as one ChangeSet
                self._subscribers.changed(keys)

:class:`Handlers` is the general form, for events of any type (mesh_xds's secret providers emit secret
names with it).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar, final

from mesh_model.config_key import ChangeSet, ConfigKey
from mesh_model.registry import ChangeHandler

_log = logging.getLogger("mesh_model.registry")

_E = TypeVar("_E")


@final
class HandlerSubscription(Generic[_E]):
    """A handler's registration; :meth:`cancel` stops further calls (idempotent)."""

    def __init__(self, owner: Handlers[_E], handler: Callable[[_E], None]) -> None:
        self._owner = owner
        self.handler = handler

    def cancel(self) -> None:
        """Stop calling the handler.

        Only this registration ends: the same handler subscribed twice keeps its other registration, however
        often this one is cancelled.
        """
        self._owner.remove(self)


@final
class Handlers(Generic[_E]):
    """A thread-safe list of handlers, each called with every event.

    Args:
        logger: where a failing handler is logged.
        source: what changed, as the log names it (``"registry"``, ``"config"``, ``"secret"``).
        describe: the event, as the log names it.
    """

    def __init__(self, *, logger: logging.Logger, source: str, describe: Callable[[_E], str]) -> None:
        self._logger = logger
        self._source = source
        self._describe = describe
        self._lock = threading.Lock()
        self._subscriptions: list[HandlerSubscription[_E]] = []

    def add(self, handler: Callable[[_E], None]) -> HandlerSubscription[_E]:
        """Register a handler."""
        subscription = HandlerSubscription(self, handler)
        with self._lock:
            self._subscriptions.append(subscription)
        return subscription

    def remove(self, subscription: HandlerSubscription[_E]) -> None:
        """Drop one registration."""
        with self._lock:
            # By identity: two registrations of one handler are distinct.
            self._subscriptions = [kept for kept in self._subscriptions if kept is not subscription]

    def emit(self, event: _E) -> None:
        """Call every handler with ``event``; a failing handler is logged and the others still run."""
        with self._lock:
            subscriptions = list(self._subscriptions)
        for subscription in subscriptions:
            try:
                subscription.handler(event)
            except Exception:
                self._logger.exception(
                    "%s change handler %r failed on %s", self._source, subscription.handler, self._describe(event)
                )


def _count(changes: ChangeSet) -> str:
    return f"{len(changes)} changes"


@final
class Subscribers:
    """Change-set handlers, with batches that hold changes back until they end.

    Args:
        logger: where a failing handler is logged.
        source: what changed, as the log names it (``"registry"``, ``"config"``).
    """

    def __init__(self, *, logger: logging.Logger = _log, source: str = "registry") -> None:
        self._handlers = Handlers[ChangeSet](logger=logger, source=source, describe=_count)
        self._lock = threading.Lock()
        self._pending: set[ConfigKey] | None = None
        self._depth = 0

    def add(self, handler: ChangeHandler) -> HandlerSubscription[ChangeSet]:
        """Register a handler."""
        return self._handlers.add(handler)

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Collect the changes made inside the block (nested blocks included) and emit them once, at its end."""
        with self._lock:
            self._depth += 1
            if self._pending is None:
                self._pending = set()
        try:
            yield
        finally:
            with self._lock:
                self._depth -= 1
                pending = self._pending if self._depth == 0 else None
                if self._depth == 0:
                    self._pending = None
            if pending:
                self.emit(ChangeSet(pending))

    def changed(self, keys: Iterable[ConfigKey]) -> None:
        """Emit ``keys`` now, or add them to the open batch."""
        with self._lock:
            if self._pending is not None:
                self._pending.update(keys)
                return
        self.emit(ChangeSet(keys))

    def emit(self, changes: ChangeSet) -> None:
        """Call every handler with ``changes`` (when there are any); a failing handler is logged."""
        if changes:
            self._handlers.emit(changes)
