"""Change subscriptions shared by the config stores (private; the same pattern as mesh_model's registries)."""

from __future__ import annotations

import logging
import threading
from typing import final

from mesh_model import ChangeHandler, ChangeSet

_log = logging.getLogger("mesh_config.store")


@final
class HandlerSubscription:
    """A handler's registration; :meth:`cancel` stops further calls (idempotent)."""

    def __init__(self, owner: Subscribers, handler: ChangeHandler) -> None:
        self._owner = owner
        self.handler = handler

    def cancel(self) -> None:
        """Stop calling the handler (only this registration ends, however often it is cancelled)."""
        self._owner.remove(self)


@final
class Subscribers:
    """A thread-safe list of change handlers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscriptions: list[HandlerSubscription] = []

    def add(self, handler: ChangeHandler) -> HandlerSubscription:
        """Register a handler."""
        subscription = HandlerSubscription(self, handler)
        with self._lock:
            self._subscriptions.append(subscription)
        return subscription

    def remove(self, subscription: HandlerSubscription) -> None:
        """Drop one registration, by identity."""
        with self._lock:
            self._subscriptions = [kept for kept in self._subscriptions if kept is not subscription]

    def emit(self, changes: ChangeSet) -> None:
        """Call every handler with ``changes``; a failing handler is logged and the others still run."""
        if not changes:
            return
        with self._lock:
            subscriptions = list(self._subscriptions)
        for subscription in subscriptions:
            try:
                subscription.handler(changes)
            except Exception:
                _log.exception("config change handler %r failed on %d changes", subscription.handler, len(changes))
