"""A config store held in memory, changed through its methods."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterable
from typing import Any, final

import attrs

from mesh_config.diagnostics import Diagnostic, Position, Severity
from mesh_config.document import load_object
from mesh_config.dump import to_dict
from mesh_config.errors import AlreadyExistsError, ConflictError, InvalidConfigError, NotFoundError, StoreError
from mesh_config.meta import Resource
from mesh_model import ChangeHandler, ConfigKey, Subscription
from mesh_model.subscribers import Subscribers

__all__ = ["InMemoryConfigStore"]

_SOURCE = "<memory>"
_log = logging.getLogger("mesh_config.store")


@final
class InMemoryConfigStore:
    """A :class:`~mesh_config.store.ConfigStore` in memory.

    Every object is validated on the way in, with both layers (the CRD schema and Istio's webhook rules),
    exactly as if it had been loaded from YAML: an invalid object raises
    :class:`~mesh_config.InvalidConfigError` with its diagnostics and changes nothing. The store numbers
    resourceVersions ``"1"``, ``"2"``, ... in the order of its writes, and counts ``metadata.generation``
    up when an object's spec changes.

    Every change tells the subscribers at once, on the thread that made it; inside ``with store.batch():``
    the changes are collected and told once, when the block ends::

        store = InMemoryConfigStore()
        subscription = store.subscribe(print)
        with store.batch():
            store.create(reviews_route)
            store.create(reviews_rule)
    """

    def __init__(self, resources: Iterable[Resource[Any]] = ()) -> None:
        """Start with ``resources`` (validated and numbered like creates, with no one told)."""
        self._lock = threading.RLock()
        self._objects: dict[ConfigKey, Resource[Any]] = {}
        self._version = 0
        self._subscribers = Subscribers(logger=_log, source="config")
        for resource in resources:
            self.create(resource)

    def get(self, kind: str, namespace: str, name: str) -> Resource[Any] | None:
        """The object with this key, or ``None``."""
        with self._lock:
            return self._objects.get(ConfigKey(kind, namespace, name))

    def list(self, kind: str, namespace: str | None = None) -> tuple[Resource[Any], ...]:
        """The objects of a kind, in one namespace or (``None``) in all, sorted by namespace and name."""
        with self._lock:
            found = [
                resource
                for key, resource in self._objects.items()
                if key.kind == kind and (namespace is None or key.namespace == namespace)
            ]
        return tuple(sorted(found, key=lambda resource: (resource.namespace, resource.name)))

    def subscribe(self, handler: ChangeHandler) -> Subscription:
        """Call ``handler`` after every change (see :class:`~mesh_config.store.ConfigStore`)."""
        return self._subscribers.add(handler)

    def batch(self) -> contextlib.AbstractContextManager[None]:
        """Collect the changes made inside the block and tell subscribers once, at its end."""
        return self._subscribers.batch()

    def create(self, resource: Resource[Any]) -> Resource[Any]:
        """Add an object; returns it as stored, with resourceVersion set and generation 1.

        Any resourceVersion the object carries is replaced.

        Raises:
            InvalidConfigError: the object does not validate.
            AlreadyExistsError: an object with the same key exists.
        """
        checked = _validated(resource)
        with self._lock:
            if checked.key in self._objects:
                raise AlreadyExistsError(f"{checked.key} already exists")
            stored = checked.with_metadata(resource_version=self._next_version(), generation=1)
            self._objects[stored.key] = stored
        self._changed(stored.key)
        return stored

    def update(self, resource: Resource[Any]) -> Resource[Any]:
        """Replace an object; returns it as stored (see :meth:`ConfigStore.update`).

        Raises:
            InvalidConfigError: the object does not validate.
            NotFoundError: there is no object with that key.
            ConflictError: the object's resourceVersion is set and is not the current one.
        """
        checked = _validated(resource)
        key = checked.key
        with self._lock:
            current = self._objects.get(key)
            if current is None:
                raise NotFoundError(f"{key} does not exist")
            wanted = checked.metadata.resource_version
            if wanted and wanted != current.metadata.resource_version:
                raise ConflictError(
                    f"{key} has resourceVersion {current.metadata.resource_version!r}, not {wanted!r}: "
                    "it changed since it was read"
                )
            generation = current.metadata.generation + (checked.spec != current.spec)
            candidate = checked.with_metadata(resource_version=current.metadata.resource_version, generation=generation)
            if candidate == current:
                return current
            stored = candidate.with_metadata(resource_version=self._next_version())
            self._objects[key] = stored
        self._changed(key)
        return stored

    def delete(self, kind: str, namespace: str, name: str, resource_version: str | None = None) -> None:
        """Remove an object.

        Raises:
            NotFoundError: there is no object with that key.
            ConflictError: ``resource_version`` is given and is not the current one.
        """
        key = ConfigKey(kind, namespace, name)
        with self._lock:
            current = self._objects.get(key)
            if current is None:
                raise NotFoundError(f"{key} does not exist")
            if resource_version and resource_version != current.metadata.resource_version:
                raise ConflictError(
                    f"{key} has resourceVersion {current.metadata.resource_version!r}, not {resource_version!r}"
                )
            del self._objects[key]
        self._changed(key)

    def __len__(self) -> int:
        with self._lock:
            return len(self._objects)

    def _next_version(self) -> str:
        self._version += 1
        return str(self._version)

    def _changed(self, key: ConfigKey) -> None:
        self._subscribers.changed((key,))


def _validated(resource: Resource[Any]) -> Resource[Any]:
    """The object after both layers of validation, as if loaded from YAML; raises when it is invalid."""
    if not isinstance(resource, Resource):
        raise StoreError(f"a config store holds Resource objects, not {type(resource).__name__}")
    result = load_object(to_dict(resource), source=_SOURCE)
    if result.skipped:
        message = f"{resource.kind} of {resource.api_version!r} is not a kind mesh_config knows"
        problem = Diagnostic(
            Severity.ERROR, message, Position(_SOURCE), resource.kind, resource.namespace, resource.name
        )
        raise InvalidConfigError([problem])
    if result.resource is None:
        raise InvalidConfigError(result.diagnostics)
    if not result.resource.name:  # generateName alone: this store names nothing itself
        message = "name is required (a config store does not generate names)"
        problem = Diagnostic(Severity.ERROR, message, Position(_SOURCE), resource.kind, resource.namespace, "")
        raise InvalidConfigError([attrs.evolve(problem, path=("metadata", "name"))])
    return result.resource
