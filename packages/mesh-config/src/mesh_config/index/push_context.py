"""PushContext: an immutable snapshot of every index, the input of xDS generation."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, final

import attrs

from mesh_config.index._common import Sourced, WorkloadRef
from mesh_config.index.authn import EffectiveMtls, PeerAuthenticationIndex
from mesh_config.index.authz import PolicyIndex
from mesh_config.index.destination_rules import DestinationRuleIndex, MergedDestinationRule
from mesh_config.index.services import ServiceIndex
from mesh_config.index.sidecar_scope import SidecarIndex, SidecarScope
from mesh_config.index.virtual_services import MESH_GATEWAY, ResolvedVirtualService, VirtualServiceIndex
from mesh_config.meta import Resource
from mesh_model import ChangeSet, Hostname, Kind, Service, ServiceRegistry

__all__ = ["PushContext"]

_REGISTRY_KINDS = frozenset({Kind.SERVICE, Kind.ENDPOINTS, Kind.WORKLOAD, Kind.SERVICE_ENTRY, Kind.WORKLOAD_ENTRY})


@final
@attrs.frozen
class PushContext:
    """Every index of one push. Build one with :meth:`build`; derive the next with :meth:`rebuild`.

    The indexes are built separately and each can be used on its own; the PushContext only holds them and
    offers per-workload shortcuts. Every answer says which config objects fed it.

    Attributes:
        resources: the config objects the indexes were built from.
        root_namespace: the mesh's root namespace (``istio-system`` by default).
        services: services by host and visibility.
        virtual_services: VirtualServices by gateway and host, delegates merged.
        destination_rules: DestinationRules merged per host, with precedence.
        sidecars: the Sidecar scope of each workload.
        peer_authentications: the effective mTLS mode of each workload and port.
        authorization_policies: the AuthorizationPolicies of each workload.
        request_authentications: the RequestAuthentications of each workload.
        version: a counter that grows with every rebuild.
    """

    resources: tuple[Resource[Any], ...]
    root_namespace: str
    services: ServiceIndex
    virtual_services: VirtualServiceIndex
    destination_rules: DestinationRuleIndex
    sidecars: SidecarIndex
    peer_authentications: PeerAuthenticationIndex
    authorization_policies: PolicyIndex
    request_authentications: PolicyIndex
    version: int = 0

    @classmethod
    def build(
        cls,
        resources: Iterable[Resource[Any]],
        registry: ServiceRegistry | Iterable[Service] = (),
        *,
        root_namespace: str = "istio-system",
    ) -> PushContext:
        """Build every index.

        Args:
            resources: the accepted config objects (from a store or a load).
            registry: the service registry, or the services themselves.
            root_namespace: MeshConfig's rootNamespace.
        """
        items = tuple(resources)
        return cls(
            resources=items,
            root_namespace=root_namespace,
            services=ServiceIndex(_services(registry)),
            virtual_services=VirtualServiceIndex(items),
            destination_rules=DestinationRuleIndex(items, root_namespace=root_namespace),
            sidecars=SidecarIndex(items, root_namespace=root_namespace),
            peer_authentications=PeerAuthenticationIndex(items, root_namespace=root_namespace),
            authorization_policies=PolicyIndex("AuthorizationPolicy", items, root_namespace=root_namespace),
            request_authentications=PolicyIndex("RequestAuthentication", items, root_namespace=root_namespace),
        )

    def rebuild(
        self,
        changes: ChangeSet,
        resources: Iterable[Resource[Any]],
        registry: ServiceRegistry | Iterable[Service] = (),
    ) -> PushContext:
        """The next PushContext: only the indexes whose kinds changed are rebuilt; the others are reused.

        A MeshConfig change rebuilds everything.
        """
        items = tuple(resources)
        kinds = changes.kinds
        root = self.root_namespace
        if Kind.MESH_CONFIG in kinds:
            return attrs.evolve(PushContext.build(items, registry, root_namespace=root), version=self.version + 1)

        def pick(kind: str, current: Any, make: Callable[[], Any]) -> Any:
            return make() if kind in kinds else current

        return PushContext(
            resources=items,
            root_namespace=root,
            services=ServiceIndex(_services(registry)) if kinds & _REGISTRY_KINDS else self.services,
            virtual_services=pick(Kind.VIRTUAL_SERVICE, self.virtual_services, lambda: VirtualServiceIndex(items)),
            destination_rules=pick(
                Kind.DESTINATION_RULE, self.destination_rules, lambda: DestinationRuleIndex(items, root_namespace=root)
            ),
            sidecars=pick(Kind.SIDECAR, self.sidecars, lambda: SidecarIndex(items, root_namespace=root)),
            peer_authentications=pick(
                Kind.PEER_AUTHENTICATION,
                self.peer_authentications,
                lambda: PeerAuthenticationIndex(items, root_namespace=root),
            ),
            authorization_policies=pick(
                Kind.AUTHORIZATION_POLICY,
                self.authorization_policies,
                lambda: PolicyIndex("AuthorizationPolicy", items, root_namespace=root),
            ),
            request_authentications=pick(
                Kind.REQUEST_AUTHENTICATION,
                self.request_authentications,
                lambda: PolicyIndex("RequestAuthentication", items, root_namespace=root),
            ),
            version=self.version + 1,
        )

    def sidecar_scope(self, workload: WorkloadRef) -> Sourced[SidecarScope]:
        """The Sidecar scope of a workload."""
        return self.sidecars.scope_for(workload)

    def visible_services(self, workload: WorkloadRef) -> tuple[Service, ...]:
        """The services a workload's proxy gets: exported to its namespace and imported by its scope."""
        return self.services.visible(workload.namespace, self.sidecar_scope(workload).value)

    def destination_rule(self, workload: WorkloadRef, service: Service) -> Sourced[MergedDestinationRule | None]:
        """The DestinationRule that applies when ``workload`` calls ``service``."""
        return self.destination_rules.lookup(service.hostname, client=workload, service_namespace=service.namespace)

    def virtual_services_for(
        self, workload: WorkloadRef, *, gateway: str = MESH_GATEWAY
    ) -> tuple[ResolvedVirtualService, ...]:
        """The VirtualServices a sidecar (or, with ``gateway``, a gateway) uses, scoped like Istio does."""
        if gateway != MESH_GATEWAY:
            return self.virtual_services.for_gateway(gateway)
        scope = self.sidecar_scope(workload).value
        return tuple(
            vs
            for vs in self.virtual_services.for_gateway(MESH_GATEWAY, workload.namespace)
            if any(scope.imports(vs.resource.namespace, host) for host in vs.hosts)
        )

    def mtls(self, workload: WorkloadRef) -> Sourced[EffectiveMtls]:
        """The mTLS modes a workload accepts."""
        return self.peer_authentications.effective(workload)

    def lookup_service(self, host: Hostname, workload: WorkloadRef) -> Sourced[Service | None]:
        """The service ``workload`` reaches when it calls ``host``."""
        return self.services.lookup(host, workload.namespace)


def _services(registry: ServiceRegistry | Iterable[Service]) -> tuple[Service, ...]:
    if isinstance(registry, ServiceRegistry):
        return registry.services()
    return tuple(registry)
