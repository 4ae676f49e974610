"""The service registry protocol: where services, their endpoints and workloads come from.

A registry answers what exists now and tells its subscribers what changed, as a
:class:`~mesh_model.config_key.ChangeSet` of keys: ``Service`` keys when a service appears, changes or goes,
``Endpoints`` keys when only a service's endpoints change (which needs only an EDS push), and ``Workload``
keys for workloads. Keys of services and endpoints use the host name as the name.

:class:`~mesh_model.InMemoryRegistry` and :class:`~mesh_model.AggregateRegistry` implement it; any object
with these methods does too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from mesh_model.config_key import ChangeSet, ConfigKey, Kind
from mesh_model.endpoint import Endpoint
from mesh_model.service import Service, ServiceKey
from mesh_model.workload import Workload, WorkloadKey

__all__ = [
    "ChangeHandler",
    "ServiceRegistry",
    "Subscription",
    "endpoints_key",
    "service_key",
    "workload_key",
]

ChangeHandler = Callable[[ChangeSet], None]
"""A function called with each change set."""


@runtime_checkable
class Subscription(Protocol):
    """A handler's registration with a registry."""

    def cancel(self) -> None:
        """Stop calling the handler. Calling it again does nothing."""


@runtime_checkable
class ServiceRegistry(Protocol):
    """A source of services, endpoints and workloads.

    Every method returns immutable values; the tuples a registry returns are never changed afterwards.
    Implementations must be safe to call from several threads.
    """

    @property
    def name(self) -> str:
        """A short name for the registry, used in logs and debug output."""

    def services(self) -> tuple[Service, ...]:
        """Every service, sorted by key."""

    def service(self, key: ServiceKey) -> Service | None:
        """The service with this key, or ``None``."""

    def endpoints(self, key: ServiceKey, port: int) -> tuple[Endpoint, ...]:
        """The endpoints that serve port number ``port`` of the service (empty if either is unknown)."""

    def workloads(self) -> tuple[Workload, ...]:
        """Every workload, sorted by key."""

    def subscribe(self, handler: ChangeHandler) -> Subscription:
        """Call ``handler`` with a change set after every change, until the subscription is cancelled.

        Handlers run on the thread that made the change; one that raises is logged and does not stop the
        others.
        """


def service_key(key: ServiceKey) -> ConfigKey:
    """The change key of a service's definition."""
    return ConfigKey(Kind.SERVICE, key.namespace, key.hostname.value)


def endpoints_key(key: ServiceKey) -> ConfigKey:
    """The change key of a service's endpoints."""
    return ConfigKey(Kind.ENDPOINTS, key.namespace, key.hostname.value)


def workload_key(key: WorkloadKey) -> ConfigKey:
    """The change key of a workload."""
    return ConfigKey(Kind.WORKLOAD, key.namespace, key.name)
