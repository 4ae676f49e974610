"""CDS: the clusters Istio gives a proxy (ISTIO.md 2.4, 2.6, 2.8), sorted by name.

For a sidecar: ``outbound|<port>||<host>`` for every port of every service its Sidecar scope sees, plus
``outbound|<port>|<subset>|<host>`` for every subset of the service's DestinationRule; its inbound clusters
``inbound|<targetPort>||``; ``BlackHoleCluster``, ``PassthroughCluster`` and ``InboundPassthroughCluster``.
A gateway gets the outbound clusters and ``BlackHoleCluster``, and when a Gateway that selects it has an
``AUTO_PASSTHROUGH`` server, the SNI-DNAT clusters ``outbound_.<port>_.<subset>_.<host>`` of every mesh-internal
service the server exposes: the same clusters (and, over EDS, the same endpoints) without upstream TLS, since
they forward the client's mutual TLS untouched to the endpoint its SNI names.

An outbound cluster's type follows the service's resolution: EDS over ADS (``service_name`` = the cluster
name) for STATIC, STRICT_DNS for DNS and LOGICAL_DNS for DNS_ROUND_ROBIN (with their endpoints inline; a DNS
cluster without endpoints is left out, as Istio does), ORIGINAL_DST for NONE (EDS on gateways). UDP ports
and DYNAMIC_DNS services get no cluster.

Without a DestinationRule a cluster has Istio's defaults: circuit breakers at 2^32-1, MeshConfig's
``connectTimeout``, LEAST_REQUEST, auto mTLS. A DestinationRule's traffic policy (port-level settings and the
subset's own policy applied) maps field by field. The cluster's metadata records the config objects it came
from (``istio.config``): the DestinationRule, and the ServiceEntry that defines the service.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, final

import attrs
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2, config_source_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2
from google.protobuf import duration_pb2

from mesh_config.index import MergedDestinationRule, Sourced
from mesh_config.networking.destination_rule import SimpleLB, Subset
from mesh_config.networking.traffic_policy import ClientTLSMode
from mesh_config.security.peer_authentication import MutualTlsMode
from mesh_model import SPIFFE_SCHEME, MeshLocation, MeshModelError, NodeType, Resolution, Service, ServicePort, SpiffeId
from mesh_xds.generate import names
from mesh_xds.generate._cluster_policy import (
    apply_connection_pool,
    apply_h2_upgrade,
    apply_load_balancer,
    apply_outlier_detection,
    cluster_policy,
    duration,
    finish_http_options,
    http_options,
    is_http2,
    set_upstream_protocol,
)
from mesh_xds.generate._cluster_tls import apply_proxy_protocol, apply_upstream_tls
from mesh_xds.generate._gateway_merge import auto_passthrough_services, merge_gateways
from mesh_xds.generate._local_clusters import (
    black_hole_cluster,
    inbound_clusters,
    inbound_passthrough_cluster,
    ipv6_only,
    passthrough_cluster,
    service_metadata,
)
from mesh_xds.generate.context import GenerationContext, source_metadata
from mesh_xds.generate.eds import locality_lb_endpoints

__all__ = ["build_clusters"]

_TYPES = {
    Resolution.STATIC: cluster_pb2.Cluster.EDS,
    Resolution.DNS: cluster_pb2.Cluster.STRICT_DNS,
    Resolution.DNS_ROUND_ROBIN: cluster_pb2.Cluster.LOGICAL_DNS,
    Resolution.NONE: cluster_pb2.Cluster.ORIGINAL_DST,
}
_DNS_TYPES = (cluster_pb2.Cluster.STRICT_DNS, cluster_pb2.Cluster.LOGICAL_DNS)
# TLS modes that originate TLS with the application's own settings: Istio tells its ALPN filter to leave
# them alone (istio.alpn_override "false"); ISTIO_MUTUAL, DISABLE and auto mTLS get no such entry.
_ALPN_OVERRIDE_OFF = frozenset({ClientTLSMode.SIMPLE, ClientTLSMode.MUTUAL})


@final
@attrs.frozen
class _Namespace:
    namespace: str
    labels: dict[str, str] = attrs.field(factory=dict)


@final
@attrs.frozen
class _Target:
    """One service as a proxy calls it: what every cluster of its ports shares."""

    ctx: GenerationContext
    service: Service
    rule: Sourced[MergedDestinationRule | None]
    service_accounts: tuple[str, ...]
    auto_mtls: bool
    sidecar: bool
    metadata: Any = attrs.field(init=False, eq=False, repr=False)
    """What the metadata of every cluster of the service starts from: Istio's telemetry entry and the sources."""

    def __attrs_post_init__(self) -> None:
        metadata = base_pb2.Metadata()
        sources = [self.service.origin] if self.service.origin is not None else []
        if self.rule.value is not None:
            sources.extend(self.rule.sources)
        for values in ({"istio": {"services": [service_metadata(self.service)]}}, source_metadata(sources)):
            for key, value in values.items():
                metadata.filter_metadata[key].update(value)
        object.__setattr__(self, "metadata", metadata)


def _spiffe(ctx: GenerationContext, account: str, namespace: str) -> str | None:
    if account.startswith(SPIFFE_SCHEME):
        return account
    try:
        return str(SpiffeId(ctx.mesh.trust_domain or "cluster.local", namespace, account))
    except MeshModelError:
        return None


def _service_accounts(ctx: GenerationContext, service: Service) -> tuple[str, ...]:
    """The identities a service's workloads may present: its own list and its endpoints' accounts."""
    found = set(service.service_accounts)
    for port in service.ports:
        for endpoint in ctx.registry.endpoints(service.key, port.number):
            if endpoint.service_account:
                identity = _spiffe(ctx, endpoint.service_account, endpoint.namespace or service.namespace)
                if identity is not None:
                    found.add(identity)
    return tuple(sorted(found))


def _auto_mtls(ctx: GenerationContext, service: Service) -> bool:
    """Istio's auto mTLS condition: on in the mesh, a mesh-internal service, server side not DISABLE."""
    if ctx.mesh.enable_auto_mtls is False or service.location is MeshLocation.MESH_EXTERNAL:
        return False
    mode = ctx.push.peer_authentications.effective(_Namespace(service.namespace)).value.mode
    return mode is not MutualTlsMode.DISABLE


def _dns_settings(cluster: Any, ctx: GenerationContext) -> None:
    v6 = ipv6_only(ctx.proxy.ip_addresses)
    cluster.dns_lookup_family = cluster_pb2.Cluster.V6_ONLY if v6 else cluster_pb2.Cluster.V4_ONLY
    rate = ctx.mesh.dns_refresh_rate
    if rate is not None and rate.nanos > 1_000_000:
        cluster.dns_refresh_rate.CopyFrom(duration(rate))
    cluster.respect_dns_ttl = True


def _first_endpoint(groups: Sequence[Any]) -> list[Any]:
    """LOGICAL_DNS takes exactly one endpoint: the first."""
    for group in groups:
        if group.lb_endpoints:
            first = endpoint_components_pb2.LocalityLbEndpoints()
            first.CopyFrom(group)
            del first.lb_endpoints[1:]
            return [first]
    return []


def _set_metadata(cluster: Any, values: dict[str, Any]) -> None:
    for key, value in values.items():
        cluster.metadata.filter_metadata[key].update(value)


def _outbound_cluster(target: _Target, port: ServicePort, subset: Subset | None, *, sni_dnat: bool) -> Any | None:
    ctx, service, rule = target.ctx, target.service, target.rule
    host = service.hostname.value
    subset_name = subset.name if subset is not None else ""
    sni = names.outbound_sni(port.number, host, subset_name)
    name = sni if sni_dnat else names.outbound_cluster(port.number, host, subset_name)
    spec = rule.value.spec if rule.value is not None else None
    policy = cluster_policy(
        spec.traffic_policy if spec is not None else None,
        subset.traffic_policy if subset is not None else None,
        port.number,
    )
    balancer = policy.load_balancer if policy is not None else None
    kind = _TYPES[service.resolution]
    if kind == cluster_pb2.Cluster.ORIGINAL_DST and not target.sidecar:
        kind = cluster_pb2.Cluster.EDS
    if balancer is not None and balancer.simple is SimpleLB.PASSTHROUGH:
        kind = cluster_pb2.Cluster.ORIGINAL_DST
    cluster = cluster_pb2.Cluster(name=name, type=kind, alt_stat_name=names.cluster_alt_stat_name(name))
    cluster.common_lb_config.SetInParent()
    if kind in _DNS_TYPES:
        _dns_settings(cluster, ctx)
        groups = locality_lb_endpoints(ctx, service, port, rule, subset, dns=True)
        if kind == cluster_pb2.Cluster.LOGICAL_DNS:
            groups = _first_endpoint(groups)
        if not any(group.lb_endpoints for group in groups):
            return None
        cluster.load_assignment.cluster_name = name
        cluster.load_assignment.endpoints.extend(groups)
    options = http_options()
    set_upstream_protocol(options, port.protocol)
    cluster.metadata.CopyFrom(target.metadata)  # services and sources: the same for every cluster of the service
    pool = policy.connection_pool if policy is not None else None
    apply_h2_upgrade(options, port.protocol, pool, ctx.mesh)
    apply_connection_pool(cluster, options, pool, policy.retry_budget if policy is not None else None, ctx.mesh)
    outlier = policy.outlier_detection if policy is not None else None
    apply_outlier_detection(cluster, options, outlier)
    apply_load_balancer(cluster, balancer, mesh=ctx.mesh, failover=outlier is not None)
    tls = policy.tls if policy is not None else None
    origin = service.origin
    if not sni_dnat:  # SNI-DNAT clusters forward the client's mutual TLS as it is
        apply_upstream_tls(
            cluster,
            options,
            tls=tls,
            sni=sni,
            service_accounts=target.service_accounts,
            auto_mtls=target.auto_mtls,
            http2=is_http2(options),
            sidecar=target.sidecar,
            selector_rule=rule.value is not None and rule.value.workload_selector is not None,
            service_entry=origin is not None and str(origin.kind) == "ServiceEntry",
            mesh=ctx.mesh,
        )
        if policy is not None and policy.proxy_protocol is not None:
            apply_proxy_protocol(cluster, policy.proxy_protocol.version)
    if cluster.type == cluster_pb2.Cluster.ORIGINAL_DST:
        cluster.lb_policy = cluster_pb2.Cluster.CLUSTER_PROVIDED
    elif cluster.type == cluster_pb2.Cluster.EDS:
        config = cluster.eds_cluster_config
        config.service_name = name
        config.eds_config.ads.SetInParent()
        config.eds_config.initial_fetch_timeout.CopyFrom(duration_pb2.Duration())
        config.eds_config.resource_api_version = config_source_pb2.V3
    if spec is not None:
        extra: dict[str, Any] = {}
        if not sni_dnat and tls is not None and tls.mode in _ALPN_OVERRIDE_OFF:
            extra["alpn_override"] = "false"
        if subset is not None:
            extra["subset"] = subset.name
        _set_metadata(cluster, {"istio": extra})
    if service.location is MeshLocation.MESH_EXTERNAL:
        _set_metadata(cluster, {"istio": {"external": True}})
    finish_http_options(cluster, options)
    return cluster


def _service_clusters(ctx: GenerationContext, service: Service, *, sidecar: bool, sni_dnat: bool = False) -> list[Any]:
    if service.resolution not in _TYPES:
        return []
    target = _Target(
        ctx=ctx,
        service=service,
        rule=ctx.push.destination_rule(ctx.workload, service),
        service_accounts=_service_accounts(ctx, service),
        auto_mtls=_auto_mtls(ctx, service),
        sidecar=sidecar,
    )
    subsets = target.rule.value.spec.subsets if target.rule.value is not None else ()
    out = []
    for port in service.ports:
        if port.protocol.is_udp:
            continue
        for subset in (None, *subsets):
            cluster = _outbound_cluster(target, port, subset, sni_dnat=sni_dnat)
            if cluster is not None:
                out.append(cluster)
    return out


def build_clusters(ctx: GenerationContext) -> list[Any]:
    """Every cluster Istio would give the proxy of ``ctx``, as ``envoy.config.cluster.v3.Cluster`` messages.

    Args:
        ctx: the proxy, its push and registry, and where its sidecar listens.

    Returns:
        The clusters, sorted by name; when two services make the same cluster name, the first (by host,
        then namespace) wins.
    """
    sidecar = ctx.proxy.type is NodeType.SIDECAR
    clusters: dict[str, Any] = {}
    for service in ctx.push.visible_services(ctx.workload):
        for cluster in _service_clusters(ctx, service, sidecar=sidecar):
            clusters.setdefault(cluster.name, cluster)
    if ctx.is_gateway:
        hosts = merge_gateways(ctx).auto_passthrough_hosts
        for service in auto_passthrough_services(ctx, hosts) if hosts else ():
            for cluster in _service_clusters(ctx, service, sidecar=False, sni_dnat=True):
                clusters.setdefault(cluster.name, cluster)
    local = [black_hole_cluster(ctx)]
    if sidecar:
        local += [passthrough_cluster(ctx), *inbound_clusters(ctx), inbound_passthrough_cluster(ctx)]
    for cluster in local:
        clusters.setdefault(cluster.name, cluster)
    return [clusters[name] for name in sorted(clusters)]
