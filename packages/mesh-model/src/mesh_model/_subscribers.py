"""Change subscriptions shared by the registries (private)."""

from __future__ import annotations

import logging
import threading
from typing import final

from mesh_model.config_key import ChangeSet
from mesh_model.registry import ChangeHandler

_log = logging.getLogger("mesh_model.registry")


@final
class HandlerSubscription:
    """A handler's registration; :meth:`cancel` stops further calls (idempotent)."""

    def __init__(self, owner: Subscribers, handler: ChangeHandler) -> None:
        self._owner = owner
        self._handler = handler

    def cancel(self) -> None:
        """Stop calling the handler."""
        self._owner.remove(self._handler)


@final
class Subscribers:
    """A thread-safe list of change handlers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._handlers: list[ChangeHandler] = []

    def add(self, handler: ChangeHandler) -> HandlerSubscription:
        with self._lock:
            self._handlers.append(handler)
        return HandlerSubscription(self, handler)

    def remove(self, handler: ChangeHandler) -> None:
        with self._lock:
            if handler in self._handlers:
                self._handlers.remove(handler)

    def emit(self, changes: ChangeSet) -> None:
        """Call every handler with ``changes``; a failing handler is logged and the others still run."""
        if not changes:
            return
        with self._lock:
            handlers = list(self._handlers)
        for handler in handlers:
            try:
                handler(changes)
            except Exception:
                _log.exception("registry change handler %r failed on %d changes", handler, len(changes))
