"""The cache the servers read views from, and the narrow protocol between them.

A server knows a cache only through :class:`ConfigWatcher` (go-control-plane's idea): when a stream has
learnt its client's node, the server calls :meth:`~ConfigWatcher.watch` and from then on receives the node's
:class:`~mesh_xds.Snapshot` whenever it is replaced. Everything else, such as how views are chosen, built,
shared or stored, is the cache's business, so a user can plug in their own cache.

:class:`SnapshotCache` is the cache that comes with the package: one snapshot per key, the key chosen from
the node by a :class:`~mesh_xds.NodeHash` (by default the node id). A snapshot may be set before or after
the proxy connects; an inconsistent one is refused with an error that names what it lacks, and the proxy
keeps the last consistent view::

    cache = SnapshotCache()
    cache.set_snapshot("sidecar~127.0.0.1~reviews-v1.default~default.svc.cluster.local", snapshot)
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Protocol, final, runtime_checkable

from mesh_model import Subscription
from mesh_xds._text import describe
from mesh_xds.errors import InvalidResourceError
from mesh_xds.node import NodeHash, NodeIdHash, NodeInfo
from mesh_xds.snapshot import Snapshot

__all__ = ["ConfigWatcher", "SnapshotCache", "ViewHandler"]

_log = logging.getLogger("mesh_xds.cache")

ViewHandler = Callable[[Snapshot | None], None]
"""Called with a node's new view; ``None`` when the view was cleared."""


@runtime_checkable
class ConfigWatcher(Protocol):
    """What a server needs from a cache: the view of a node, now and whenever it changes."""

    def watch(self, node: NodeInfo, on_change: ViewHandler) -> Subscription:
        """Call ``on_change`` with the node's view until the returned subscription is cancelled.

        The current view, when there is one, is delivered before ``watch`` returns; every later
        replacement is delivered once, in order, possibly from another thread (the server hops to its
        event loop). ``None`` means the node has no view: the server then answers nothing new, and the
        proxy keeps the config it has. ``on_change`` must not block and must not call the cache.
        """


@final
class _Watch:
    """A watch on one key; :meth:`cancel` is idempotent."""

    __slots__ = ("_cache", "handler", "key")

    def __init__(self, cache: SnapshotCache, key: str, handler: ViewHandler) -> None:
        self._cache = cache
        self.key = key
        self.handler = handler

    def cancel(self) -> None:
        self._cache._remove_watch(self)


@final
class SnapshotCache:
    """One :class:`~mesh_xds.Snapshot` per key, watched by the servers (a :class:`ConfigWatcher`).

    Keys are chosen from nodes by ``node_hash``: by default the node id, so a snapshot set under a proxy's
    node id is that proxy's view. Many keys may share one snapshot object (and so its encoded bytes).

    Thread-safe: snapshots may be set from any thread; watchers are told in the order of the calls.

    Args:
        node_hash: chooses the key of a node's view.
        check: refuse inconsistent snapshots (see :meth:`~mesh_xds.Snapshot.missing`).
        static_clusters: clusters that exist without being in snapshots (static bootstrap clusters), for
            the consistency check.
    """

    def __init__(
        self, node_hash: NodeHash | None = None, *, check: bool = True, static_clusters: Iterable[str] = ()
    ) -> None:
        self._node_hash: NodeHash = node_hash if node_hash is not None else NodeIdHash()
        self._check = check
        self._static_clusters = frozenset(static_clusters)
        self._lock = threading.Lock()
        # Held while watchers are told, so that notifications keep the order of the changes.
        self._notify_lock = threading.RLock()
        self._snapshots: dict[str, Snapshot] = {}
        self._watches: dict[str, list[_Watch]] = {}

    def node_key(self, node: NodeInfo) -> str:
        """The key of a node's view."""
        return self._node_hash.key(node)

    def set_snapshot(self, key: str, snapshot: Snapshot) -> None:
        """Make ``snapshot`` the view of ``key`` and push it to the key's connected proxies.

        Raises:
            InvalidResourceError: ``snapshot`` is not a Snapshot.
            InconsistentSnapshotError: the snapshot refers to resources it does not hold (only when the
                cache checks); the key keeps its previous snapshot.
        """
        if not isinstance(snapshot, Snapshot):
            raise InvalidResourceError(f"set_snapshot() takes a Snapshot, not {describe(snapshot)}")
        if self._check:
            snapshot.check(static_clusters=self._static_clusters)
        with self._notify_lock:
            with self._lock:
                self._snapshots[key] = snapshot
                watches = list(self._watches.get(key, ()))
            self._tell(watches, snapshot)

    def clear_snapshot(self, key: str) -> bool:
        """Forget the view of ``key``; its proxies keep their config but get nothing new.

        Returns:
            True when there was a snapshot to forget.
        """
        with self._notify_lock:
            with self._lock:
                existed = self._snapshots.pop(key, None) is not None
                watches = list(self._watches.get(key, ()))
            if existed:
                self._tell(watches, None)
        return existed

    def snapshot(self, key: str) -> Snapshot | None:
        """The view of ``key``, or ``None``."""
        with self._lock:
            return self._snapshots.get(key)

    def keys(self) -> tuple[str, ...]:
        """The keys that have a snapshot, sorted."""
        with self._lock:
            return tuple(sorted(self._snapshots))

    def watched_keys(self) -> dict[str, int]:
        """The number of live watches of each watched key (connected streams, for status and tests)."""
        with self._lock:
            return {key: len(watches) for key, watches in sorted(self._watches.items())}

    def watch(self, node: NodeInfo, on_change: ViewHandler) -> Subscription:
        """Watch the view of the node's key (see :class:`ConfigWatcher`)."""
        key = self.node_key(node)
        watch = _Watch(self, key, on_change)
        with self._notify_lock:
            with self._lock:
                self._watches.setdefault(key, []).append(watch)
                current = self._snapshots.get(key)
            if current is not None:
                self._tell([watch], current)
        return watch

    def _remove_watch(self, watch: _Watch) -> None:
        with self._lock:
            watches = self._watches.get(watch.key)
            if watches is None:
                return
            kept = [other for other in watches if other is not watch]
            if kept:
                self._watches[watch.key] = kept
            else:
                del self._watches[watch.key]

    @staticmethod
    def _tell(watches: list[_Watch], snapshot: Snapshot | None) -> None:
        for watch in watches:
            try:
                watch.handler(snapshot)
            except Exception:
                _log.exception("view handler of key %s failed", describe(watch.key))
