"""Services by host, and the services visible to a namespace."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import final

from mesh_config.index._common import Sourced
from mesh_config.index.sidecar_scope import SidecarScope
from mesh_model import Hostname, Service, most_specific_match

__all__ = ["ServiceIndex"]


@final
class ServiceIndex:
    """Services from a registry, by host, with Istio's visibility rules.

    A service is visible to a client namespace when its ``exportTo`` lets the namespace see it (``*``, the
    namespace itself, or ``.`` for its own namespace) and, when a Sidecar scope is given, the scope imports
    it. Where two namespaces define the same host, a client sees the one of its own namespace first, then
    the oldest (Istio's rule), here: the first in the registry's order.
    """

    def __init__(self, services: Iterable[Service]) -> None:
        self._services = tuple(sorted(services, key=lambda s: (s.hostname.value, s.namespace)))
        self._by_host: dict[Hostname, list[Service]] = {}
        for service in self._services:
            self._by_host.setdefault(service.hostname, []).append(service)
        # The index never changes, so the answers of visible() and selecting() are kept (a race only computes
        # one twice).
        self._visible: dict[tuple[str, SidecarScope | None], tuple[Service, ...]] = {}
        self._selecting: dict[tuple[str, frozenset[tuple[str, str]]], tuple[Service, ...]] = {}

    @property
    def services(self) -> tuple[Service, ...]:
        """Every service, sorted by host then namespace."""
        return self._services

    def visible(self, namespace: str, scope: SidecarScope | None = None) -> tuple[Service, ...]:
        """The services a client in ``namespace`` may call, one per host."""
        key = (namespace, scope)
        found = self._visible.get(key)
        if found is None:
            found = self._visible[key] = self._compute_visible(namespace, scope)
        return found

    def _compute_visible(self, namespace: str, scope: SidecarScope | None) -> tuple[Service, ...]:
        chosen: dict[Hostname, Service] = {}
        for service in self._services:
            if not service.is_visible_from(namespace):
                continue
            if scope is not None and not scope.imports_service(service):
                continue
            current = chosen.get(service.hostname)
            if current is None or (service.namespace == namespace and current.namespace != namespace):
                chosen[service.hostname] = service
        return tuple(chosen[host] for host in sorted(chosen, key=lambda host: host.value))

    def selecting(self, namespace: str, labels: Mapping[str, str]) -> tuple[Service, ...]:
        """The services of ``namespace`` whose selector (not empty) matches ``labels``: a workload's services.

        They are sorted by host, then namespace.
        """
        key = (namespace, frozenset(labels.items()))
        found = self._selecting.get(key)
        if found is None:
            found = self._selecting[key] = tuple(
                service
                for service in self._services
                if service.namespace == namespace
                and service.selector is not None
                and not service.selector.is_empty
                and service.selector.matches(labels)
            )
        return found

    def lookup(self, host: Hostname, namespace: str) -> Sourced[Service | None]:
        """The service a client in ``namespace`` reaches with ``host``.

        An exact name first, else a wildcard ServiceEntry host that covers it.
        """
        candidates = [service for service in self._by_host.get(host, ()) if service.is_visible_from(namespace)]
        if not candidates:
            pattern = most_specific_match(host, [h for h in self._by_host if h.is_wildcard])
            if pattern is not None:
                candidates = [s for s in self._by_host[pattern] if s.is_visible_from(namespace)]
        if not candidates:
            return Sourced(None)
        own = [service for service in candidates if service.namespace == namespace]
        service = (own or candidates)[0]
        return Sourced(service, (service.origin,) if service.origin is not None else ())
