"""A service registry that serves a registry file and follows its changes."""

from __future__ import annotations

import logging
import os
import pathlib
import threading
from types import TracebackType
from typing import final

from mesh_config.diagnostics import Diagnostic, Position, Severity
from mesh_config.errors import LoadError, StoreError
from mesh_config.limits import LoadLimits
from mesh_config.poller import Poller
from mesh_config.registry_file import RegistryFileResult, load_registry_file
from mesh_model import ChangeHandler, Endpoint, InMemoryRegistry, Service, ServiceKey, Subscription, Workload

__all__ = ["FileRegistry"]

_log = logging.getLogger("mesh_config.registry")

_Signature = tuple[int, int, int, int]


def _signature(path: pathlib.Path) -> _Signature | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)


@final
class FileRegistry:
    """A :class:`~mesh_model.ServiceRegistry` of the services and workloads of a registry file.

    The file's format is that of :func:`~mesh_config.load_registry_file`. The registry loads it when it is
    made; :meth:`start` follows it in a background thread that looks at its inode, size and modification
    time every ``poll_interval`` seconds, and applies a change once the file has stayed the same for one
    more look (so that a file being written is not read half-way); :meth:`refresh` reads it at once.

    The rules, as for :class:`~mesh_config.DirectoryConfigStore`:

    - The file is all or nothing: a version with any error changes nothing, and the last valid content
      stays served. Its diagnostics are logged and kept in :meth:`diagnostics` until a valid version
      replaces them. (On the first load, a file with errors serves nothing.)
    - A file that disappears is reported and changes nothing.
    - Subscribers are told exactly what changed: a service's keys when it appears, changes or goes, its
      endpoints' key when only the workloads behind it changed.

    Args:
        path: the registry file.
        name: the registry's name, for logs.
        poll_interval: seconds between two looks at the file, once started.
        limits: bounds on the file's size, depth and alias expansion.

    Raises:
        LoadError: the file does not exist or cannot be read.
        StoreError: ``poll_interval`` is not positive.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        name: str = "file",
        poll_interval: float = 1.0,
        limits: LoadLimits | None = None,
    ) -> None:
        if not isinstance(poll_interval, int | float) or not poll_interval > 0:
            raise StoreError(f"poll_interval must be a positive number of seconds, not {poll_interval!r}")
        self._path = pathlib.Path(path)
        if not self._path.is_file():
            raise LoadError(f"the registry file {str(path)!r} does not exist or is not a file")
        if not os.access(self._path, os.R_OK):
            raise LoadError(f"the registry file {str(path)!r} cannot be read")
        self._limits = limits
        self._inner = InMemoryRegistry(name)
        self._lock = threading.Lock()
        self._scan_lock = threading.Lock()
        self._diagnostics: tuple[Diagnostic, ...] = ()
        self._applied: _Signature | None = None
        self._observed: _Signature | None = None
        self._missing = False
        self._poller = Poller(
            self._poll,
            float(poll_interval),
            name=f"mesh-config registry {self._path}",
            what=f"reading the registry file {self._path}",
            logger=_log,
        )
        self.refresh()

    @property
    def path(self) -> pathlib.Path:
        """The registry file."""
        return self._path

    # ---------------------------------------------------------------- ServiceRegistry

    @property
    def name(self) -> str:
        """The registry's name."""
        return self._inner.name

    def services(self) -> tuple[Service, ...]:
        """Every service, sorted by key."""
        return self._inner.services()

    def service(self, key: ServiceKey) -> Service | None:
        """The service with this key, or ``None``."""
        return self._inner.service(key)

    def endpoints(self, key: ServiceKey, port: int) -> tuple[Endpoint, ...]:
        """The endpoints serving port number ``port`` of the service: the workloads its selector matches."""
        return self._inner.endpoints(key, port)

    def workloads(self) -> tuple[Workload, ...]:
        """Every workload, sorted by key."""
        return self._inner.workloads()

    def subscribe(self, handler: ChangeHandler) -> Subscription:
        """Call ``handler`` with the keys that changed after every reload that changed something."""
        return self._inner.subscribe(handler)

    # ---------------------------------------------------------------- the file

    def diagnostics(self) -> tuple[Diagnostic, ...]:
        """The problems of the file's latest version (and a missing file), empty when it is valid."""
        with self._lock:
            return self._diagnostics

    def refresh(self) -> bool:
        """Read the file now and apply it if it is valid; return whether what is served changed."""
        with self._scan_lock:
            return self._load(_signature(self._path))

    def _load(self, signature: _Signature | None) -> bool:
        if signature is None:
            if not self._missing:
                _log.error("registry file %s cannot be read; serving what was loaded", self._path)
                message = "the registry file cannot be read; serving what was loaded"
                with self._lock:
                    self._diagnostics = (Diagnostic(Severity.ERROR, message, Position(str(self._path))),)
            self._missing = True
            return False
        self._missing = False
        self._applied = self._observed = signature
        result = load_registry_file(self._path, limits=self._limits)
        with self._lock:
            self._diagnostics = result.diagnostics
        if not result.ok:
            kept = len(self._inner.services())
            _log.warning("%s does not validate (keeping its last valid content, %d services):", self._path, kept)
            for diagnostic in result.errors:
                _log.warning("  %s", diagnostic.format())
            return False
        return self._apply(result)

    def _apply(self, result: RegistryFileResult) -> bool:
        inner = self._inner
        services = {service.key: service for service in result.services}
        workloads = {workload.key: workload for workload in result.workloads}
        changed = False
        with inner.batch():
            for service in inner.services():
                if service.key not in services:
                    changed = inner.remove_service(service.key) or changed
            for workload in inner.workloads():
                if workload.key not in workloads:
                    changed = inner.remove_workload(workload.key) or changed
            for service_key, service in services.items():
                if inner.service(service_key) != service:
                    inner.upsert_service(service)
                    changed = True
            current = {workload.key: workload for workload in inner.workloads()}
            for key, workload in workloads.items():
                if current.get(key) != workload:
                    inner.upsert_workload(workload)
                    changed = True
        if changed:
            _log.info("%s: %d services, %d workloads", self._path, len(services), len(workloads))
        return changed

    # ---------------------------------------------------------------- following

    def start(self) -> None:
        """Follow the file in a background thread (does nothing when already started)."""
        self._poller.start()

    def stop(self) -> None:
        """Stop following the file; waits for the background thread to end. What was loaded stays served."""
        self._poller.stop()

    def _poll(self) -> None:
        with self._scan_lock:
            signature = _signature(self._path)
            if signature is None or self._missing:
                self._load(signature)
                return
            if signature == self._applied:
                return
            if signature != self._observed:  # changed since the last look: wait until it stays the same
                self._observed = signature
                return
            self._load(signature)

    def __enter__(self) -> FileRegistry:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<FileRegistry {str(self._path)!r}: {len(self.services())} services>"
