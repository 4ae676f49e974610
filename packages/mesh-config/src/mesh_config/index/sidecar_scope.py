"""Sidecar scopes: which services, VirtualServices and DestinationRules a workload's proxy sees."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, final

import attrs

from mesh_config.index._common import Sourced, WorkloadRef, oldest_first, selector_labels, selects
from mesh_config.meta import Resource
from mesh_model import Hostname, InvalidHostError, Service

__all__ = ["EgressHost", "SidecarIndex", "SidecarScope"]

_KIND = "Sidecar"


@final
@attrs.frozen
class EgressHost:
    """One ``namespace/host`` entry of a Sidecar egress listener.

    Attributes:
        namespace: ``*`` (any), a namespace name (``.`` is resolved to the workload's namespace), or
            ``~`` (nothing).
        host: the host pattern.
    """

    namespace: str
    host: Hostname

    @classmethod
    def parse(cls, text: str, workload_namespace: str) -> EgressHost | None:
        """Parse ``ns/host``; ``None`` when it cannot be used (validation reports it)."""
        namespace, slash, host = text.partition("/")
        if not slash:
            return None
        if namespace == ".":
            namespace = workload_namespace
        try:
            return cls(namespace, Hostname.parse(host))
        except InvalidHostError:
            return None

    def matches(self, namespace: str, host: Hostname) -> bool:
        """True when a service (or config) in ``namespace`` for ``host`` is imported by this entry."""
        if self.namespace == "~" or (self.namespace != "*" and self.namespace != namespace):
            return False
        return self.host.matches(host)


DEFAULT_EGRESS = ("*/*",)


@final
@attrs.frozen
class SidecarScope:
    """What a workload's proxy sees.

    Attributes:
        namespace: the workload's namespace.
        sidecar: the Sidecar resource that applies, or ``None`` for the default scope (``*/*``).
        egress_hosts: the imported ``namespace/host`` entries of every egress listener.
        outbound_traffic_policy: ``ALLOW_ANY`` or ``REGISTRY_ONLY`` from the Sidecar, or ``""`` to use the
            mesh setting.
    """

    namespace: str
    sidecar: Resource[Any] | None
    egress_hosts: tuple[EgressHost, ...]
    outbound_traffic_policy: str = ""

    @classmethod
    def default(cls, namespace: str) -> SidecarScope:
        """The scope of a workload no Sidecar selects: every service of every namespace."""
        return cls(namespace, None, tuple(_parse_hosts(DEFAULT_EGRESS, namespace)))

    def imports(self, namespace: str, host: Hostname) -> bool:
        """True when the scope imports config of ``namespace`` for ``host``."""
        return any(entry.matches(namespace, host) for entry in self.egress_hosts)

    def imports_service(self, service: Service) -> bool:
        """True when the scope imports the service (exportTo is checked separately)."""
        return self.imports(service.namespace, service.hostname)


def _parse_hosts(hosts: Iterable[str], namespace: str) -> list[EgressHost]:
    return [entry for entry in (EgressHost.parse(text, namespace) for text in hosts) if entry is not None]


@final
class SidecarIndex:
    """Answers "which Sidecar applies to this workload", in Istio's order.

    A Sidecar of the workload's namespace whose ``workloadSelector`` matches (the oldest, if several), else
    the namespace's selector-less Sidecar, else the root namespace's selector-less Sidecar, else the default
    scope that imports everything (``*/*``).
    """

    def __init__(self, resources: Iterable[Resource[Any]], *, root_namespace: str = "istio-system") -> None:
        self.root_namespace = root_namespace
        self._selecting: dict[str, list[Resource[Any]]] = {}
        self._default: dict[str, Resource[Any]] = {}
        for resource in oldest_first(r for r in resources if r.kind == _KIND):
            if selector_labels(resource.spec, "workload_selector"):
                self._selecting.setdefault(resource.namespace, []).append(resource)
            else:
                self._default.setdefault(resource.namespace, resource)

    def sidecar_for(self, workload: WorkloadRef) -> Resource[Any] | None:
        """The Sidecar that applies, or ``None`` for the default scope."""
        for resource in self._selecting.get(workload.namespace, ()):
            if selects(selector_labels(resource.spec, "workload_selector"), workload.labels):
                return resource
        return self._default.get(workload.namespace) or self._default.get(self.root_namespace)

    def scope_for(self, workload: WorkloadRef) -> Sourced[SidecarScope]:
        """The scope of a workload, with the Sidecar it came from."""
        resource = self.sidecar_for(workload)
        if resource is None:
            return Sourced(SidecarScope.default(workload.namespace))
        hosts: list[str] = []
        for listener in resource.spec.egress:
            hosts.extend(listener.hosts)
        if not resource.spec.egress:
            hosts.extend(DEFAULT_EGRESS)  # a Sidecar without egress listeners imports everything, as Istio's
        policy = resource.spec.outbound_traffic_policy
        mode = policy.mode.value if policy is not None else ""
        scope = SidecarScope(workload.namespace, resource, tuple(_parse_hosts(hosts, workload.namespace)), mode)
        return Sourced(scope, (resource.key,))
