"""The config store protocol: where validated Istio objects live, and how their changes are told.

A store holds :class:`~mesh_config.Resource` objects by ``(kind, namespace, name)`` and tells its
subscribers what changed as a :class:`~mesh_model.ChangeSet` of :class:`~mesh_model.ConfigKey` values
(``ConfigKey("VirtualService", "default", "reviews")``), the same events the service registries send, so that
the control plane debounces both together.

Writes use optimistic concurrency, as the Kubernetes API server does: the store gives every stored object a
new ``metadata.resourceVersion``; an update or delete that names a resourceVersion other than the current one
fails with :class:`~mesh_config.ConflictError`, and one that names none applies unconditionally.

:class:`~mesh_config.memory_store.InMemoryConfigStore` and
:class:`~mesh_config.directory_store.DirectoryConfigStore` implement it; any object with these methods does
too.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from mesh_config.meta import Resource
from mesh_model import ChangeHandler, Subscription

__all__ = ["ConfigStore"]


@runtime_checkable
class ConfigStore(Protocol):
    """A source of validated config objects that tells what changes.

    Every method returns immutable values, and implementations are safe to call from several threads.
    Handlers get only the keys that changed: a handler reads the current objects with :meth:`get` or
    :meth:`list` (by the time it runs, a key may have changed again, or gone).
    """

    def get(self, kind: str, namespace: str, name: str) -> Resource[Any] | None:
        """The object with this key, or ``None``."""

    def list(self, kind: str, namespace: str | None = None) -> tuple[Resource[Any], ...]:
        """The objects of a kind, in one namespace or (``None``) in all, sorted by namespace and name."""

    def create(self, resource: Resource[Any]) -> Resource[Any]:
        """Add an object and return it as stored, with its new resourceVersion.

        Raises:
            InvalidConfigError: the object does not validate (nothing is changed).
            AlreadyExistsError: an object with the same key exists.
            StoreError: the store cannot be written.
        """

    def update(self, resource: Resource[Any]) -> Resource[Any]:
        """Replace an object and return it as stored, with its new resourceVersion.

        An update that changes nothing returns the stored object and tells no one.

        Raises:
            InvalidConfigError: the object does not validate (nothing is changed).
            NotFoundError: there is no object with that key.
            ConflictError: the object's resourceVersion is set and is not the current one.
            StoreError: the store cannot be written.
        """

    def delete(self, kind: str, namespace: str, name: str, resource_version: str | None = None) -> None:
        """Remove an object.

        Raises:
            NotFoundError: there is no object with that key.
            ConflictError: ``resource_version`` is given and is not the current one.
            StoreError: the store cannot be written.
        """

    def subscribe(self, handler: ChangeHandler) -> Subscription:
        """Call ``handler`` with a change set after every change, until the subscription is cancelled.

        A handler that raises is logged and does not stop the others.
        """
