"""A read-only config store that serves a directory tree of YAML/JSON files and follows their changes."""

from __future__ import annotations

import logging
import os
import pathlib
import threading
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any, final

import attrs

from mesh_config.diagnostics import Diagnostic, Position, Severity
from mesh_config.errors import LoadError, StoreError
from mesh_config.limits import LoadLimits
from mesh_config.loader import config_files, load_file
from mesh_config.meta import Resource
from mesh_config.poller import Poller
from mesh_model import ChangeHandler, ChangeSet, ConfigKey, Subscription
from mesh_model.subscribers import Subscribers

__all__ = ["DirectoryConfigStore"]

_log = logging.getLogger("mesh_config.store")

Signature = tuple[int, int, int, int]
"""What tells a file changed: (device, inode, size, mtime in ns)."""


@attrs.frozen
class _Object:
    """One object of a file, with where it is written."""

    resource: Resource[Any]
    position: Position | None


@attrs.frozen
class _File:
    """What the store knows of one file.

    ``objects`` is the file's last valid content: a new version of the file replaces it only when the whole
    file validates, so that a broken edit (or a half-written file) takes nothing away.
    """

    signature: Signature
    objects: tuple[_Object, ...]
    diagnostics: tuple[Diagnostic, ...]
    order: int


@attrs.frozen
class _Served:
    """The object served for a key: the file it comes from, as written there, and as served."""

    path: str
    written: Resource[Any]
    resource: Resource[Any]


@final
class DirectoryConfigStore:
    """A :class:`~mesh_config.store.ConfigStore` that serves the Istio objects of a directory tree.

    Every ``.yaml``, ``.yml`` and ``.json`` file below ``root`` is loaded (hidden files and folders are
    skipped, as Kubernetes' ``..data`` folders of mounted ConfigMaps). The store loads the tree when it is
    made; :meth:`start` follows it in a background thread, which polls the files' inode, size and
    modification time every ``poll_interval`` seconds and applies what changed once the tree has been quiet
    for ``debounce`` seconds (or after ``max_delay``, if it never is). :meth:`refresh` rescans at once.

    The rules:

    - A file is all or nothing: when a new version of it has any error, none of that version is applied and
      the file's last valid objects stay served. Its diagnostics are logged and kept in :meth:`diagnostics`
      until a valid version replaces them.
    - An object defined in two files (same kind, namespace and name) is an error that names both files; the
      object already served (on the first load, the one read first) stays.
    - Deleting a file removes its objects. A root directory that disappears is reported and changes
      nothing (an unmounted volume does not wipe the config).
    - Each change tells the subscribers exactly the keys whose objects appeared, changed or went, in one
      change set per rescan; files that change without changing an object tell no one.

    The store is read-only: :meth:`create`, :meth:`update` and :meth:`delete` raise
    :class:`~mesh_config.StoreError` (change the files instead). Handlers run on the thread that rescanned:
    the watcher thread, or the caller of :meth:`refresh`.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        default_namespace: str = "default",
        poll_interval: float = 1.0,
        debounce: float = 0.5,
        max_delay: float = 10.0,
        limits: LoadLimits | None = None,
    ) -> None:
        """Load the tree under ``root``.

        Args:
            root: the directory.
            default_namespace: the namespace of objects that set none.
            poll_interval: seconds between two polls of the tree, once started.
            debounce: seconds the tree must stay unchanged before a change is applied.
            max_delay: the longest a change waits for a quiet tree.
            limits: bounds per file.

        Raises:
            LoadError: ``root`` is not a directory.
            StoreError: a time is not positive.
        """
        for label, value in (("poll_interval", poll_interval), ("debounce", debounce), ("max_delay", max_delay)):
            if not value >= 0 or (label == "poll_interval" and value == 0):
                raise StoreError(f"{label} must be a positive number of seconds, not {value!r}")
        self._root = pathlib.Path(root)
        if not self._root.is_dir():
            raise LoadError(f"{str(root)!r} is not a directory")
        self._default_namespace = default_namespace
        self._debounce = debounce
        self._max_delay = max_delay
        self._limits = limits or LoadLimits()
        self._subscribers = Subscribers(logger=_log, source="config")
        self._lock = threading.Lock()  # guards the served state, briefly
        self._scan_lock = threading.RLock()  # one rescan at a time, changes told in order
        self._files: dict[str, _File] = {}
        self._served: dict[ConfigKey, _Served] = {}
        self._collisions: dict[str, tuple[Diagnostic, ...]] = {}
        self._root_problem: Diagnostic | None = None
        self._version = 0
        self._order = 0
        self._observed: dict[str, Signature] | None = None
        self._pending_since = 0.0
        self._quiet_since = 0.0
        self._poller = Poller(
            self._watch,
            poll_interval,
            name=f"mesh-config watch {self._root}",
            what=f"rescanning {self._root}",
            logger=_log,
        )
        self._closed = False
        self.refresh()

    @property
    def root(self) -> pathlib.Path:
        """The directory served."""
        return self._root

    # ------------------------------------------------------------------ reading

    def get(self, kind: str, namespace: str, name: str) -> Resource[Any] | None:
        """The object with this key, or ``None``."""
        with self._lock:
            served = self._served.get(ConfigKey(kind, namespace, name))
        return served.resource if served is not None else None

    def list(self, kind: str, namespace: str | None = None) -> tuple[Resource[Any], ...]:
        """The objects of a kind, in one namespace or (``None``) in all, sorted by namespace and name."""
        with self._lock:
            found = [
                served.resource
                for key, served in self._served.items()
                if key.kind == kind and (namespace is None or key.namespace == namespace)
            ]
        return tuple(sorted(found, key=lambda resource: (resource.namespace, resource.name)))

    def source_of(self, kind: str, namespace: str, name: str) -> str | None:
        """The file the object with this key is served from, or ``None``."""
        with self._lock:
            served = self._served.get(ConfigKey(kind, namespace, name))
        return served.path if served is not None else None

    def diagnostics(self, path: str | os.PathLike[str] | None = None) -> tuple[Diagnostic, ...]:
        """The current problems (and warnings) of every file, or of one file, sorted by file.

        A file's diagnostics are those of its latest version, plus the objects it defines that another
        file already serves.
        """
        with self._lock:
            found: list[Diagnostic] = [self._root_problem] if self._root_problem and path is None else []
            for name in sorted(self._files):
                if path is None or name == str(path):
                    found.extend(self._files[name].diagnostics)
                    found.extend(self._collisions.get(name, ()))
        return tuple(found)

    def subscribe(self, handler: ChangeHandler) -> Subscription:
        """Call ``handler`` with the keys that changed after every rescan that changed something."""
        return self._subscribers.add(handler)

    # ------------------------------------------------------------------ writing: the files are the truth

    def create(self, resource: Resource[Any]) -> Resource[Any]:
        """Refused: the store is read-only.

        Raises:
            StoreError: always.
        """
        raise self._read_only()

    def update(self, resource: Resource[Any]) -> Resource[Any]:
        """Refused: the store is read-only.

        Raises:
            StoreError: always.
        """
        raise self._read_only()

    def delete(self, kind: str, namespace: str, name: str, resource_version: str | None = None) -> None:
        """Refused: the store is read-only.

        Raises:
            StoreError: always.
        """
        raise self._read_only()

    def _read_only(self) -> StoreError:
        return StoreError(f"the directory store of {str(self._root)!r} is read-only: change its files instead")

    # ------------------------------------------------------------------ watching

    def start(self) -> None:
        """Follow the tree in a background thread (does nothing when already started).

        Raises:
            StoreError: the store is closed.
        """
        with self._scan_lock:
            if self._closed:
                raise StoreError("the directory store is closed")
            self._poller.start()

    def stop(self) -> None:
        """Stop following the tree (:meth:`start` resumes); waits for the watcher thread to end."""
        self._poller.stop()

    def close(self) -> None:
        """Stop for good; the objects stay readable."""
        self._closed = True
        self.stop()

    def __enter__(self) -> DirectoryConfigStore:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def _watch(self) -> None:
        self._scan(force=False)

    def refresh(self) -> ChangeSet:
        """Rescan the tree now, apply every change without waiting, and return the keys that changed."""
        return self._scan(force=True)

    # ------------------------------------------------------------------ scanning

    def _listing(self) -> dict[str, Signature] | None:
        """The signature of every config file, or ``None`` when the root cannot be read."""
        if not self._root.is_dir():
            return None
        listing: dict[str, Signature] = {}
        for path in config_files(self._root):
            try:
                info = path.stat()
            except OSError:
                continue  # gone since it was listed, or a dangling link: absent
            listing[str(path)] = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
        return listing

    def _due(self, listing: dict[str, Signature]) -> bool:
        """Debounce: True when a change has been quiet long enough (or waited too long) to apply."""
        now = time.monotonic()
        if listing == {path: file.signature for path, file in self._files.items()}:
            self._observed = None
            return False
        if listing != self._observed:
            if self._observed is None:
                self._pending_since = now
            self._observed = listing
            self._quiet_since = now
        return now - self._quiet_since >= self._debounce or now - self._pending_since >= self._max_delay

    def _scan(self, *, force: bool) -> ChangeSet:
        with self._scan_lock:
            listing = self._listing()
            if listing is None:
                self._report_root()
                return ChangeSet()
            if self._root_problem is not None:
                with self._lock:
                    self._root_problem = None
                _log.info("%s can be read again", self._root)
            if not force and not self._due(listing):
                return ChangeSet()
            self._observed = None
            files = self._reload(listing)
            served, collisions = self._resolve(files)
            changes = self._apply(files, served, collisions)
            # Told inside the scan lock, so that change sets arrive in order (handlers run on this thread).
            self._subscribers.emit(changes)
            return changes

    def _report_root(self) -> None:
        problem = Diagnostic(
            Severity.ERROR, "the config directory cannot be read; serving what was loaded", Position(str(self._root))
        )
        with self._lock:
            first = self._root_problem is None
            self._root_problem = problem
        if first:
            _log.error("%s", problem.format())

    def _reload(self, listing: Mapping[str, Signature]) -> dict[str, _File]:
        """The new state of every file: unchanged files as they were, changed ones loaded again."""
        files: dict[str, _File] = {}
        for path in sorted(listing):
            signature = listing[path]
            previous = self._files.get(path)
            if previous is not None and previous.signature == signature:
                files[path] = previous
                continue
            result = load_file(path, default_namespace=self._default_namespace, limits=self._limits)
            if previous is None:
                self._order += 1
            order = previous.order if previous is not None else self._order
            if result.ok:
                objects = tuple(
                    _Object(document.resource, document.position)
                    for document in result.documents
                    if document.resource is not None
                )
                files[path] = _File(signature, objects, result.diagnostics, order)
                continue
            kept = previous.objects if previous is not None else ()
            files[path] = _File(signature, kept, result.diagnostics, order)
            what = f"keeping its last {len(kept)} valid objects" if previous is not None else "nothing loaded from it"
            _log.warning("%s does not validate (%s):", path, what)
            for diagnostic in result.errors:
                _log.warning("  %s", diagnostic.format())
        return files

    def _resolve(
        self, files: Mapping[str, _File]
    ) -> tuple[dict[ConfigKey, tuple[str, Resource[Any]]], dict[str, tuple[Diagnostic, ...]]]:
        """Which file serves each key, and the collision errors of the others."""
        claims: dict[ConfigKey, list[tuple[str, _Object]]] = {}
        for path, file in sorted(files.items(), key=lambda item: (item[1].order, item[0])):
            for item in file.objects:
                claims.setdefault(item.resource.key, []).append((path, item))
        served: dict[ConfigKey, tuple[str, Resource[Any]]] = {}
        collisions: dict[str, list[Diagnostic]] = {}
        for key, candidates in claims.items():
            previous = self._served.get(key)
            winner = candidates[0]
            if previous is not None:
                winner = next((claim for claim in candidates if claim[0] == previous.path), winner)
            served[key] = (winner[0], winner[1].resource)
            for path, item in candidates:
                if item is winner[1]:
                    continue
                where = "earlier in the same file" if path == winner[0] else f"in {winner[0]}"
                message = f"{key} is also defined {where}, which is served; this one is ignored"
                resource = item.resource
                collisions.setdefault(path, []).append(
                    Diagnostic(
                        Severity.ERROR,
                        message,
                        item.position or Position(path),
                        resource.kind,
                        resource.namespace,
                        resource.name,
                    )
                )
        for path, found in collisions.items():
            if tuple(found) != self._collisions.get(path, ()):
                for diagnostic in found:
                    _log.warning("%s", diagnostic.format())
        return served, {path: tuple(found) for path, found in collisions.items()}

    def _apply(
        self,
        files: dict[str, _File],
        served: Mapping[ConfigKey, tuple[str, Resource[Any]]],
        collisions: dict[str, tuple[Diagnostic, ...]],
    ) -> ChangeSet:
        """Swap in the new state; returns the keys whose served objects appeared, changed or went."""
        changed: set[ConfigKey] = set(self._served) - set(served)
        result: dict[ConfigKey, _Served] = {}
        for key, (path, written) in served.items():
            previous = self._served.get(key)
            if previous is not None and previous.written == written:
                result[key] = attrs.evolve(previous, path=path)
                continue
            self._version += 1
            result[key] = _Served(path, written, written.with_metadata(resource_version=str(self._version)))
            changed.add(key)
        with self._lock:
            self._files = files
            self._served = result
            self._collisions = collisions
        return ChangeSet(changed)
