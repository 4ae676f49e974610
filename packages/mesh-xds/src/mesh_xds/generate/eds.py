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

from collections.abc import Callable, Iterable, Mapping
from typing import Any, final

import attrs
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2

from mesh_config.index import MergedDestinationRule, Sourced
from mesh_config.networking.destination_rule import Subset
from mesh_config.networking.traffic_policy import ClientTLSMode
from mesh_config.security.peer_authentication import MutualTlsMode
from mesh_model import ConfigKey, Endpoint, Resolution, Service, ServicePort, TlsMode
from mesh_xds.generate import names
from mesh_xds.generate._cluster_policy import ClusterPolicy, cluster_policy, locality_lb_setting
from mesh_xds.generate._endpoints import (
    PERSISTENT_SESSION_LABEL,
    LocalityGroup,
    add_protos,
    apply_locality_lb,
    group_endpoints,
    to_protos,
)
from mesh_xds.generate.context import GenerationContext, source_metadata

__all__ = ["build_load_assignments", "eds_cluster_names", "locality_lb_endpoints"]

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
    ctx: GenerationContext, service: Service, port: ServicePort, policy: ClusterPolicy | None
) -> Callable[[Endpoint], bool]:
    if policy is not None and policy.tls is not None:
        istio_mutual = policy.tls.mode is ClientTLSMode.ISTIO_MUTUAL
        return lambda endpoint: istio_mutual

    def check(endpoint: Endpoint) -> bool:
        if endpoint.tls_mode is not TlsMode.ISTIO:
            return False
        workload = _Workload(endpoint.namespace or service.namespace, endpoint.labels)
        mode = ctx.push.mtls(workload).value.for_port(endpoint.target_port(port))
        return mode is not MutualTlsMode.DISABLE

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
    groups, metadata = _groups(ctx, service, port, rule, subset, dns=dns)
    return to_protos(groups, metadata)


def _groups(
    ctx: GenerationContext,
    service: Service,
    port: ServicePort,
    rule: Sourced[MergedDestinationRule | None],
    subset: Subset | None,
    *,
    dns: bool,
) -> tuple[list[LocalityGroup], dict[str, Any]]:
    """The locality groups of a service port (and subset), and the metadata of each group."""
    spec = rule.value.spec if rule.value is not None else None
    policy = cluster_policy(
        spec.traffic_policy if spec is not None else None,
        subset.traffic_policy if subset is not None else None,
        port.number,
    )
    groups = group_endpoints(
        ctx.registry.endpoints(service.key, port.number),
        port,
        subset_labels=subset.labels if subset is not None else None,
        dns=dns,
        persistent_sessions=bool(service.labels.get(PERSISTENT_SESSION_LABEL)),
        mtls=_mtls_check(ctx, service, port, policy),
    )
    balancer = policy.load_balancer if policy is not None else None
    groups = apply_locality_lb(
        groups,
        locality_lb_setting(ctx.mesh, balancer),
        proxy_locality=ctx.proxy.locality,
        proxy_labels=ctx.labels,
        failover=policy is not None and policy.outlier_detection is not None,
    )
    sources: list[ConfigKey] = [service.origin] if service.origin is not None else []
    if spec is not None:
        sources.extend(rule.sources)
    return groups, source_metadata(sources)


def _assignment(ctx: GenerationContext, name: str, visible: Mapping[str, Service]) -> Any:
    assignment = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
    parsed = names.parse_outbound_cluster(name) or names.parse_outbound_sni(name)
    if parsed is None:
        return assignment
    number, subset_name, host = parsed
    service = visible.get(host)
    if service is None or service.resolution in _DNS:
        return assignment
    port = service.port(number)
    if port is None:
        return assignment
    rule = ctx.push.destination_rule(ctx.workload, service)
    subset = None
    if subset_name:
        subsets = rule.value.spec.subsets if rule.value is not None else ()
        subset = next((candidate for candidate in subsets if candidate.name == subset_name), None)
        if subset is None:
            return assignment
    add_protos(assignment.endpoints, *_groups(ctx, service, port, rule, subset, dns=False))
    return assignment


def build_load_assignments(ctx: GenerationContext, cluster_names: Iterable[str]) -> list[Any]:
    """The ClusterLoadAssignments of the named EDS clusters, sorted by name.

    Args:
        ctx: the proxy and its push.
        cluster_names: the EDS service names Envoy asks for (Istio's are the cluster names); see
            :func:`eds_cluster_names` for those of generated clusters.
    """
    visible = {service.hostname.value: service for service in ctx.push.visible_services(ctx.workload)}
    return [_assignment(ctx, name, visible) for name in sorted(set(cluster_names))]
