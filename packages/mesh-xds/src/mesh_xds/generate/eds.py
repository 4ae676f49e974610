"""EDS: the endpoints of a proxy's EDS clusters, as Istio sends them (ISTIO.md 2.4, 2.6).

A cluster ``outbound|<port>|<subset>|<host>`` gets the endpoints of the service port from the registry:
healthy ones (draining ones too for services with persistent sessions), those carrying the subset's labels,
grouped by locality with their weights. Endpoints that take Istio mTLS carry
``envoy.transport_socket_match: {tlsMode: istio}`` (unless the DestinationRule sets another TLS mode or the
workload's PeerAuthentication disables mTLS on that port), which auto mTLS clusters match on. With outlier
detection, locality failover priorities apply; ``distribute`` re-weights localities. Every locality group's
metadata records the config objects it came from (the ServiceEntry, the DestinationRule).

An SNI-DNAT cluster ``outbound_.<port>_.<subset>_.<host>`` (gateways with ``AUTO_PASSTHROUGH`` servers) gets
the endpoints of ``outbound|<port>|<subset>|<host>``.

A name that is not an outbound cluster of a visible service (or of a subset its DestinationRule defines)
gets an empty assignment, so that Envoy's cluster warms up rather than waits.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple, final

import attrs
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2

from mesh_config.index import EffectiveMtls, MergedDestinationRule, Sourced
from mesh_config.networking.destination_rule import Subset
from mesh_config.networking.load_balancer import LocalityLoadBalancerSetting
from mesh_config.networking.traffic_policy import ClientTLSMode
from mesh_config.security.peer_authentication import MutualTlsMode
from mesh_model import ConfigKey, Endpoint, Resolution, Service, ServicePort, TlsMode
from mesh_xds.generate import _endpoint_wire as wire
from mesh_xds.generate import names
from mesh_xds.generate._cluster_policy import ClusterPolicy, cluster_policy, locality_lb_setting
from mesh_xds.generate._endpoints import (
    PERSISTENT_SESSION_LABEL,
    LocalityGroup,
    MtlsCheck,
    apply_locality_lb,
    group_endpoints,
    grouped,
    locality_lb_applies,
    to_protos,
)
from mesh_xds.generate.context import GenerationContext, source_metadata
from mesh_xds.resource import ENDPOINT_TYPE, Resource

__all__ = ["build_load_assignments", "eds_cluster_names", "load_assignment_resources", "locality_lb_endpoints"]

_DNS = (Resolution.DNS, Resolution.DNS_ROUND_ROBIN)


@final
@attrs.frozen
class _Workload:
    namespace: str
    labels: Mapping[str, str]


def eds_cluster_names(clusters: Iterable[Any]) -> list[str]:
    """The EDS service names of the EDS clusters among ``clusters``, sorted."""
    return sorted(
        {
            cluster.eds_cluster_config.service_name or cluster.name
            for cluster in clusters
            if cluster.type == cluster_pb2.Cluster.EDS
        }
    )


def _mtls_check(
    ctx: GenerationContext,
    service: Service,
    port: ServicePort,
    policy: ClusterPolicy | None,
    modes: dict[tuple[str, Mapping[str, str] | None], EffectiveMtls],
) -> MtlsCheck:
    """Whether an endpoint takes Istio mTLS; ``modes`` keeps the workloads' modes (by namespace and labels)."""
    if policy is not None and policy.tls is not None:  # the rule decides for every endpoint
        return policy.tls.mode is ClientTLSMode.ISTIO_MUTUAL

    peer_authentications = ctx.push.peer_authentications

    def check(endpoint: Endpoint) -> bool:
        if endpoint.tls_mode is not TlsMode.ISTIO:
            return False
        namespace = endpoint.namespace or service.namespace
        # The labels are part of the key only where a policy selects workloads: hashing them costs.
        key = (namespace, endpoint.labels if peer_authentications.selects_workloads(namespace) else None)
        effective = modes.get(key)
        if effective is None:
            effective = modes[key] = peer_authentications.effective(_Workload(namespace, key[1] or {})).value
        if not effective.port_modes:
            return effective.mode is not MutualTlsMode.DISABLE
        return effective.for_port(endpoint.target_port(port)) is not MutualTlsMode.DISABLE

    return check


def locality_lb_endpoints(
    ctx: GenerationContext,
    service: Service,
    port: ServicePort,
    rule: Sourced[MergedDestinationRule | None],
    subset: Subset | None,
    *,
    dns: bool = False,
) -> list[Any]:
    """The LocalityLbEndpoints of a service port (and subset) as the proxy of ``ctx`` sees them.

    Args:
        ctx: the proxy and its push.
        service: the service.
        port: one of its ports.
        rule: the DestinationRule that applies to the service, with its sources.
        subset: the subset of the cluster, or None.
        dns: the cluster resolves host names itself (endpoints named by host are kept).
    """
    plan = _plan(ctx, service, port, rule, subset, {})
    return to_protos(_groups(ctx, port, plan, dns=dns), source_metadata(plan.sources))


class _Plan(NamedTuple):
    """How the endpoints of a cluster are chosen and grouped (see :func:`~._endpoints.grouped`)."""

    endpoints: tuple[Endpoint, ...]
    subset_labels: Mapping[str, str] | None
    persistent_sessions: bool
    mtls: MtlsCheck
    locality_setting: LocalityLoadBalancerSetting | None
    failover: bool
    sources: tuple[ConfigKey, ...]
    """The config objects every group records."""


def _plan(
    ctx: GenerationContext,
    service: Service,
    port: ServicePort,
    rule: Sourced[MergedDestinationRule | None],
    subset: Subset | None,
    modes: dict[tuple[str, Mapping[str, str] | None], EffectiveMtls],
) -> _Plan:
    spec = rule.value.spec if rule.value is not None else None
    policy = cluster_policy(
        spec.traffic_policy if spec is not None else None,
        subset.traffic_policy if subset is not None else None,
        port.number,
    )
    sources: tuple[ConfigKey, ...] = (service.origin,) if service.origin is not None else ()
    if spec is not None:
        sources += rule.sources
    return _Plan(
        endpoints=ctx.registry.endpoints(service.key, port.number),
        subset_labels=subset.labels if subset is not None else None,
        persistent_sessions=bool(service.labels.get(PERSISTENT_SESSION_LABEL)),
        mtls=_mtls_check(ctx, service, port, policy, modes),
        locality_setting=locality_lb_setting(ctx.mesh, policy.load_balancer if policy is not None else None),
        failover=policy is not None and policy.outlier_detection is not None,
        sources=sources,
    )


def _groups(ctx: GenerationContext, port: ServicePort, plan: _Plan, *, dns: bool) -> list[LocalityGroup]:
    """The locality groups of a cluster, after Istio's locality load balancing."""
    groups = group_endpoints(
        plan.endpoints,
        port,
        subset_labels=plan.subset_labels,
        dns=dns,
        persistent_sessions=plan.persistent_sessions,
        mtls=plan.mtls,
    )
    return apply_locality_lb(
        groups,
        plan.locality_setting,
        proxy_locality=ctx.proxy.locality,
        proxy_labels=ctx.labels,
        failover=plan.failover,
    )


@final
class _Assignments:
    """Writes the load assignments of one proxy, doing once what they have in common."""

    def __init__(self, ctx: GenerationContext) -> None:
        self.ctx = ctx
        self.workload = ctx.workload
        self.visible = {service.hostname.value: service for service in ctx.push.visible_services(self.workload)}
        self.modes: dict[tuple[str, Mapping[str, str] | None], EffectiveMtls] = {}
        self.metadata: dict[tuple[ConfigKey, ...], bytes | None] = {}
        self.writer = wire.AssignmentWriter()

    def value(self, name: str) -> bytes:
        """The serialized ClusterLoadAssignment of the cluster ``name`` (empty when nothing backs it)."""
        parsed = names.parse_outbound_cluster(name) or names.parse_outbound_sni(name)
        if parsed is None:
            return self.writer.cluster_load_assignment(name)
        number, subset_name, host = parsed
        service = self.visible.get(host)
        port = service.port(number) if service is not None and service.resolution not in _DNS else None
        if service is None or port is None:
            return self.writer.cluster_load_assignment(name)
        rule = self.ctx.push.destination_rule(self.workload, service)
        subset = None
        if subset_name:
            subsets = rule.value.spec.subsets if rule.value is not None else ()
            subset = next((candidate for candidate in subsets if candidate.name == subset_name), None)
            if subset is None:
                return self.writer.cluster_load_assignment(name)
        plan = _plan(self.ctx, service, port, rule, subset, self.modes)
        if plan.sources in self.metadata:
            metadata = self.metadata[plan.sources]
        else:
            metadata = self.metadata[plan.sources] = wire.metadata(source_metadata(plan.sources))
        if locality_lb_applies(plan.locality_setting, failover=plan.failover):
            return self.writer.cluster_load_assignment(name, _groups(self.ctx, port, plan, dns=False), metadata)
        written = grouped(  # the common case: each endpoint written as it is chosen
            plan.endpoints,
            port,
            subset_labels=plan.subset_labels,
            dns=False,
            persistent_sessions=plan.persistent_sessions,
            mtls=plan.mtls,
            make=wire.lb_endpoint_field,
        )
        return self.writer.written(name, written, metadata)


def load_assignment_resources(ctx: GenerationContext, cluster_names: Iterable[str]) -> list[Resource]:
    """The ClusterLoadAssignments of the named EDS clusters as resources, sorted by name.

    The same content as :func:`build_load_assignments`, written without building the messages.
    """
    assignments = _Assignments(ctx)
    return [Resource.from_value(ENDPOINT_TYPE, name, assignments.value(name)) for name in sorted(set(cluster_names))]


def build_load_assignments(ctx: GenerationContext, cluster_names: Iterable[str]) -> list[Any]:
    """The ClusterLoadAssignments of the named EDS clusters, sorted by name.

    Args:
        ctx: the proxy and its push.
        cluster_names: the EDS service names Envoy asks for (Istio's are the cluster names); see
            :func:`eds_cluster_names` for those of generated clusters.
    """
    assignments = _Assignments(ctx)
    return [
        endpoint_pb2.ClusterLoadAssignment.FromString(assignments.value(name)) for name in sorted(set(cluster_names))
    ]
