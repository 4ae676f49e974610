"""A registry that merges several, in order of precedence."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import final

from mesh_model.config_key import ChangeSet
from mesh_model.endpoint import Endpoint
from mesh_model.errors import RegistryError
from mesh_model.registry import (
    ChangeHandler,
    ServiceRegistry,
    Subscription,
    endpoints_key,
    service_key,
    workload_key,
)
from mesh_model.service import Service, ServiceKey
from mesh_model.subscribers import Subscribers
from mesh_model.workload import Workload, WorkloadKey

__all__ = ["AggregateRegistry"]


@final
class AggregateRegistry:
    """Merges registries into one :class:`~mesh_model.ServiceRegistry`.

    Precedence is the order of the registries, first highest:

    * a service defined (same namespace and host) in several registries is the first registry's;
    * its endpoints are those of every registry that defines it, in order (as Istio merges a service's
      endpoints across clusters);
    * a workload in several registries is the first registry's.

    Change sets of every member reach the aggregate's subscribers; adding or removing a member tells them
    about every service and workload it holds.
    """

    def __init__(self, registries: Iterable[ServiceRegistry] = (), *, name: str = "aggregate") -> None:
        self._name = name
        self._lock = threading.Lock()
        self._members: list[tuple[ServiceRegistry, Subscription]] = []
        self._registries: tuple[ServiceRegistry, ...] = ()  # the members, replaced whole under the lock
        self._subscribers = Subscribers()
        for registry in registries:
            self.add_registry(registry)

    @property
    def name(self) -> str:
        """The aggregate's name."""
        return self._name

    @property
    def registries(self) -> tuple[ServiceRegistry, ...]:
        """The member registries, highest precedence first."""
        return self._registries  # read without the lock: it is replaced, never changed

    def add_registry(self, registry: ServiceRegistry, *, index: int | None = None) -> None:
        """Add a member at ``index`` in the precedence order (last when ``None``).

        Raises:
            RegistryError: the registry is already a member, does not implement ServiceRegistry, or is this
                aggregate or one that contains it (which would loop forever).
        """
        if not isinstance(registry, ServiceRegistry):
            raise RegistryError(f"{type(registry).__name__} does not implement ServiceRegistry")
        if _contains(registry, self):
            raise RegistryError(f"registry {registry.name!r} is or contains {self._name!r}; it cannot be its member")
        with self._lock:
            if any(member is registry for member, _ in self._members):
                raise RegistryError(f"registry {registry.name!r} is already a member of {self._name!r}")
            subscription = registry.subscribe(self._subscribers.emit)
            position = len(self._members) if index is None else index
            self._members.insert(position, (registry, subscription))
            self._registries = tuple(member for member, _ in self._members)
        self._subscribers.emit(_everything(registry))

    def remove_registry(self, registry: ServiceRegistry) -> bool:
        """Remove a member; returns whether it was one."""
        with self._lock:
            position = next((i for i, (member, _) in enumerate(self._members) if member is registry), None)
            if position is None:
                return False
            _, subscription = self._members.pop(position)
            self._registries = tuple(member for member, _ in self._members)
        subscription.cancel()
        self._subscribers.emit(_everything(registry))
        return True

    def services(self) -> tuple[Service, ...]:
        """Every service, the first registry's where several define it, sorted by key."""
        merged: dict[ServiceKey, Service] = {}
        for registry in self.registries:
            for service in registry.services():
                merged.setdefault(service.key, service)
        return tuple(merged[key] for key in sorted(merged))

    def service(self, key: ServiceKey) -> Service | None:
        """The first registry's service with this key, or ``None``."""
        for registry in self.registries:
            service = registry.service(key)
            if service is not None:
                return service
        return None

    def endpoints(self, key: ServiceKey, port: int) -> tuple[Endpoint, ...]:
        """The endpoints of the service's port from every registry that defines the service, in order."""
        found: tuple[Endpoint, ...] = ()
        for registry in self.registries:  # mostly one registry has the service: its tuple is the answer
            answer = tuple(registry.endpoints(key, port))
            if answer:
                found = found + answer if found else answer
        return found

    def workloads(self) -> tuple[Workload, ...]:
        """Every workload, the first registry's where several hold it, sorted by key."""
        merged: dict[WorkloadKey, Workload] = {}
        for registry in self.registries:
            for workload in registry.workloads():
                merged.setdefault(workload.key, workload)
        return tuple(merged[key] for key in sorted(merged))

    def subscribe(self, handler: ChangeHandler) -> Subscription:
        """Call ``handler`` after a change in any member (see :class:`~mesh_model.ServiceRegistry`)."""
        return self._subscribers.add(handler)


def _contains(registry: ServiceRegistry, target: AggregateRegistry) -> bool:
    if registry is target:
        return True
    return isinstance(registry, AggregateRegistry) and any(_contains(member, target) for member in registry.registries)


def _everything(registry: ServiceRegistry) -> ChangeSet:
    keys = []
    for service in registry.services():
        keys += [service_key(service.key), endpoints_key(service.key)]
    keys += [workload_key(workload.key) for workload in registry.workloads()]
    return ChangeSet(keys)
