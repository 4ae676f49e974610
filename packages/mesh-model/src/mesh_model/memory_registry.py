"""A service registry held in memory, changed through its methods."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable
from typing import TypeVar, final

from mesh_model.config_key import ConfigKey
from mesh_model.endpoint import Endpoint
from mesh_model.errors import RegistryError
from mesh_model.registry import ChangeHandler, Subscription, endpoints_key, service_key, workload_key
from mesh_model.service import Service, ServiceKey
from mesh_model.subscribers import Subscribers
from mesh_model.workload import Workload, WorkloadKey

__all__ = ["InMemoryRegistry"]

_K = TypeVar("_K")


@final
class InMemoryRegistry:
    """A :class:`~mesh_model.ServiceRegistry` whose content is set by calling its methods.

    A service's endpoints are the ones given with :meth:`set_endpoints`, plus the workloads that back it:
    those of its namespace that its ``selector`` matches, and those that name it in ``Workload.services``.

    Every change tells the subscribers at once; inside ``with registry.batch():`` the changes are collected
    and told once, when the block ends::

        registry = InMemoryRegistry()
        with registry.batch():
            registry.upsert_service(reviews)
            registry.upsert_workload(reviews_v1)
    """

    def __init__(self, name: str = "memory") -> None:
        self._name = name
        self._lock = threading.RLock()
        self._services: dict[ServiceKey, Service] = {}
        self._endpoints: dict[ServiceKey, tuple[Endpoint, ...]] = {}
        self._workloads: dict[WorkloadKey, Workload] = {}
        self._namespace_workloads: dict[str, dict[WorkloadKey, Workload]] = {}
        self._named_workloads: dict[ServiceKey, dict[WorkloadKey, Workload]] = {}
        # The answers of endpoints(), by service and port: made when asked for, dropped when the service, its
        # explicit endpoints or a workload that backs it (or backed it) changes.
        self._answers: dict[ServiceKey, dict[int, tuple[Endpoint, ...]]] = {}
        self._subscribers = Subscribers()

    @property
    def name(self) -> str:
        """The registry's name."""
        return self._name

    def services(self) -> tuple[Service, ...]:
        """Every service, sorted by key."""
        with self._lock:
            return tuple(self._services[key] for key in sorted(self._services))

    def service(self, key: ServiceKey) -> Service | None:
        """The service with this key, or ``None``."""
        with self._lock:
            return self._services.get(key)

    def workloads(self) -> tuple[Workload, ...]:
        """Every workload, sorted by key."""
        with self._lock:
            return tuple(self._workloads[key] for key in sorted(self._workloads))

    def endpoints(self, key: ServiceKey, port: int) -> tuple[Endpoint, ...]:
        """The endpoints serving port number ``port`` of the service: explicit ones, then its workloads'."""
        with self._lock:
            answers = self._answers.get(key)
            answer = answers.get(port) if answers is not None else None
            if answer is None:
                answer = self._compute_endpoints(key, port)
                if key in self._services:  # nothing is kept for services that are not here
                    self._answers.setdefault(key, {})[port] = answer
            return answer

    def _compute_endpoints(self, key: ServiceKey, port: int) -> tuple[Endpoint, ...]:
        service = self._services.get(key)
        service_port = service.port(port) if service is not None else None
        if service is None or service_port is None:
            return ()
        found = list(self._endpoints.get(key, ()))
        for workload in self._backing_workloads(service):
            found.append(workload.to_endpoint())
        return tuple(endpoint for endpoint in found if endpoint.serves(service_port))

    def subscribe(self, handler: ChangeHandler) -> Subscription:
        """Call ``handler`` after every change (see :class:`~mesh_model.ServiceRegistry`)."""
        return self._subscribers.add(handler)

    def batch(self) -> contextlib.AbstractContextManager[None]:
        """Collect the changes made inside the block and tell subscribers once, at its end."""
        return self._subscribers.batch()

    def upsert_service(self, service: Service) -> None:
        """Add a service, or replace the one with the same key."""
        if not isinstance(service, Service):
            raise RegistryError(f"expected a Service, got {type(service).__name__}")
        with self._lock:
            self._services[service.key] = service
            self._answers.pop(service.key, None)
        self._changed([service_key(service.key), endpoints_key(service.key)])

    def remove_service(self, key: ServiceKey) -> bool:
        """Remove a service and its explicit endpoints; returns whether it was there."""
        with self._lock:
            found = self._services.pop(key, None) is not None
            self._endpoints.pop(key, None)
            self._answers.pop(key, None)
        if found:
            self._changed([service_key(key), endpoints_key(key)])
        return found

    def set_endpoints(self, key: ServiceKey, endpoints: Iterable[Endpoint]) -> None:
        """Replace the explicit endpoints of a service (workload-backed endpoints are not touched).

        Raises:
            RegistryError: the service is not in this registry, or an item is not an Endpoint.
        """
        if isinstance(endpoints, Endpoint | str) or not isinstance(endpoints, Iterable):
            raise RegistryError(f"expected an iterable of Endpoint values for {key}, got {type(endpoints).__name__}")
        items = tuple(endpoints)
        for item in items:
            if not isinstance(item, Endpoint):
                raise RegistryError(f"expected Endpoint values for {key}, got {type(item).__name__}")
        with self._lock:
            if key not in self._services:
                raise RegistryError(f"no service {key} in registry {self._name!r}; add the service first")
            self._endpoints[key] = items
            self._answers.pop(key, None)
        self._changed([endpoints_key(key)])

    def upsert_workload(self, workload: Workload) -> None:
        """Add a workload, or replace the one with the same key."""
        if not isinstance(workload, Workload):
            raise RegistryError(f"expected a Workload, got {type(workload).__name__}")
        with self._lock:
            previous = self._workloads.get(workload.key)
            if previous is not None:
                self._unindex(previous)
            self._workloads[workload.key] = workload
            self._namespace_workloads.setdefault(workload.namespace, {})[workload.key] = workload
            for service in workload.services:
                self._named_workloads.setdefault(service, {})[workload.key] = workload
            affected = self._services_backed_by(workload)
            if previous is not None:
                affected |= self._services_backed_by(previous)
            self._forget_answers(affected)
        self._changed([workload_key(workload.key), *(endpoints_key(key) for key in affected)])

    def remove_workload(self, key: WorkloadKey) -> bool:
        """Remove a workload; returns whether it was there."""
        with self._lock:
            previous = self._workloads.pop(key, None)
            if previous is not None:
                self._unindex(previous)
            affected = self._services_backed_by(previous) if previous is not None else set()
            self._forget_answers(affected)
        if previous is None:
            return False
        self._changed([workload_key(key), *(endpoints_key(service) for service in affected)])
        return True

    def _unindex(self, workload: Workload) -> None:
        _discard(self._namespace_workloads, workload.namespace, workload.key)
        for service in workload.services:
            _discard(self._named_workloads, service, workload.key)

    def _backing_workloads(self, service: Service) -> list[Workload]:
        """The workloads that back ``service``, by key: only those of its namespace or naming it are looked at."""
        candidates = dict(self._named_workloads.get(service.key, {}))
        if service.selector is not None:
            candidates.update(self._namespace_workloads.get(service.namespace, {}))
        return [
            workload for _, workload in sorted(candidates.items()) if workload.addresses and _backs(workload, service)
        ]

    def _forget_answers(self, keys: Iterable[ServiceKey]) -> None:
        for key in keys:
            self._answers.pop(key, None)

    def _services_backed_by(self, workload: Workload) -> set[ServiceKey]:
        return {key for key, service in self._services.items() if _backs(workload, service)}

    def _changed(self, keys: Iterable[ConfigKey]) -> None:
        self._subscribers.changed(keys)


def _discard(index: dict[_K, dict[WorkloadKey, Workload]], key: _K, workload: WorkloadKey) -> None:
    members = index.get(key)
    if members is not None:
        members.pop(workload, None)
        if not members:
            del index[key]


def _backs(workload: Workload, service: Service) -> bool:
    if service.key in workload.services:
        return True
    selector = service.selector
    return selector is not None and workload.namespace == service.namespace and selector.matches(workload.labels)
