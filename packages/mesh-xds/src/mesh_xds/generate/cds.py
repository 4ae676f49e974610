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

from mesh_config.index import MergedDestinationRule, Sourced
from mesh_config.networking.destination_rule import SimpleLB, Subset
from mesh_config.networking.load_balancer import LoadBalancerSettings
from mesh_config.networking.traffic_policy import ClientTLSMode, ClientTLSSettings
from mesh_config.security.peer_authentication import MutualTlsMode
from mesh_model import (
    SPIFFE_SCHEME,
    ConfigKey,
    MeshLocation,
    MeshModelError,
    NodeType,
    Resolution,
    Service,
    ServicePort,
    SpiffeId,
)
from mesh_xds.generate import names
from mesh_xds.generate._cluster_policy import (
    ClusterPolicy,
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
from mesh_xds.generate._cluster_tls import (
    IstioMutualContexts,
    apply_proxy_protocol,
    apply_upstream_tls,
    istio_mtls_sockets,
)
from mesh_xds.generate._cluster_wire import ClusterShape
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
from mesh_xds.resource import CLUSTER_TYPE, ENDPOINT_TYPE, Reference, Resource, pack, references

__all__ = ["build_clusters", "shared_cluster_resources"]

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
_ORIGINATED = _ALPN_OVERRIDE_OFF  # TLS modes whose clusters are built whole (they change the HTTP options)


@final
@attrs.frozen
class _Namespace:
    namespace: str
    labels: dict[str, str] = attrs.field(factory=dict)


@final
@attrs.frozen
class _Shape:
    """A cluster without name, metadata or TLS: what a type and a traffic policy make of it."""

    wire: ClusterShape
    type: int
    http2: bool
    """The cluster speaks HTTP/2 upstream (Istio mTLS then offers ``h2``)."""
    eds_via_ads: bool
    """Its load assignment comes over ADS (when it has an EDS config)."""
    policies: tuple[object, ...]
    """The traffic policies it was made from, whose identities its key holds (kept alive with it)."""


@final
@attrs.frozen
class _Written:
    """An outbound cluster written straight as bytes (:mod:`._cluster_wire`), with what it refers to."""

    name: str
    data: bytes
    references: frozenset[Reference]
    eds: bool


@final
@attrs.frozen
class _Target:
    """One service as a proxy calls it: what every cluster of its ports shares."""

    clusters: _Clusters
    service: Service
    rule: Sourced[MergedDestinationRule | None]
    service_accounts: tuple[str, ...]
    auto_mtls: bool
    metadata: Any = attrs.field(eq=False, repr=False)
    """What the metadata of every cluster of the service starts from: Istio's telemetry entry and the sources."""
    metadata_bytes: bytes = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "metadata_bytes", self.metadata.SerializeToString(deterministic=True))


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
    accounts = {  # the endpoints of a service mostly share one account
        (endpoint.service_account, endpoint.namespace or service.namespace)
        for port in service.ports
        for endpoint in ctx.registry.endpoints(service.key, port.number)
        if endpoint.service_account
    }
    for account, namespace in accounts:
        identity = _spiffe(ctx, account, namespace)
        if identity is not None:
            found.add(identity)
    return tuple(sorted(found))


@final
class _Clusters:
    """Builds the outbound clusters of one proxy, doing once what they have in common."""

    def __init__(self, ctx: GenerationContext) -> None:
        self.ctx = ctx
        self.workload = ctx.workload
        self.sidecar = ctx.proxy.type is NodeType.SIDECAR
        self.tls_contexts = IstioMutualContexts()
        self._sources: dict[tuple[ConfigKey, ...], Any] = {}
        self._auto_mtls: dict[str, bool] = {}
        self._shapes: dict[tuple[object, ...], _Shape] = {}

    def shape(
        self, kind: Any, port: ServicePort, spec: Any, subset: Subset | None, policy: ClusterPolicy | None
    ) -> _Shape:
        """The parts of a cluster that its type and traffic policy make (``policy`` is the rule's and subset's)."""
        rule_policy = spec.traffic_policy if spec is not None else None
        subset_policy = subset.traffic_policy if subset is not None else None
        key = (kind, port.number, port.protocol, id(rule_policy), id(subset_policy))  # the inputs of ``policy``
        found = self._shapes.get(key)
        if found is None:
            cluster = cluster_pb2.Cluster(type=kind)
            cluster.common_lb_config.SetInParent()
            options = http_options()
            _apply_policy(cluster, options, port, policy, self.ctx.mesh)
            http2 = is_http2(options)
            _apply_discovery(cluster)
            finish_http_options(cluster, options)
            eds = [ref for ref in references(cluster) if ref.type_url == ENDPOINT_TYPE]  # with no name yet
            wire = ClusterShape(cluster.SerializeToString(deterministic=True))
            via_ads = bool(eds) and eds[0].via_ads
            found = self._shapes[key] = _Shape(wire, cluster.type, http2, via_ads, (rule_policy, subset_policy))
        return found

    def target(self, service: Service) -> _Target:
        """What the clusters of ``service`` share."""
        rule = self.ctx.push.destination_rule(self.workload, service)
        return _Target(
            clusters=self,
            service=service,
            rule=rule,
            service_accounts=_service_accounts(self.ctx, service),
            auto_mtls=self.auto_mtls(service),
            metadata=self._metadata(service, rule),
        )

    def auto_mtls(self, service: Service) -> bool:
        """Istio's auto mTLS condition: on in the mesh, a mesh-internal service, server side not DISABLE."""
        if self.ctx.mesh.enable_auto_mtls is False or service.location is MeshLocation.MESH_EXTERNAL:
            return False
        found = self._auto_mtls.get(service.namespace)
        if found is None:
            mode = self.ctx.push.peer_authentications.effective(_Namespace(service.namespace)).value.mode
            found = self._auto_mtls[service.namespace] = mode is not MutualTlsMode.DISABLE
        return found

    def _metadata(self, service: Service, rule: Sourced[MergedDestinationRule | None]) -> Any:
        sources: tuple[ConfigKey, ...] = (service.origin,) if service.origin is not None else ()
        if rule.value is not None:
            sources += rule.sources
        template = self._sources.get(sources)
        if template is None:
            template = self._sources[sources] = base_pb2.Metadata()
            for key, value in source_metadata(sources).items():
                template.filter_metadata[key].update(value)
        metadata = base_pb2.Metadata()
        metadata.CopyFrom(template)
        entry = metadata.filter_metadata["istio"].fields["services"].list_value.values.add().struct_value.fields
        for key, text in service_metadata(service).items():
            entry[key].string_value = text
        return metadata


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


def _kind(target: _Target, balancer: LoadBalancerSettings | None) -> Any:
    kind = _TYPES[target.service.resolution]
    if kind == cluster_pb2.Cluster.ORIGINAL_DST and not target.clusters.sidecar:
        kind = cluster_pb2.Cluster.EDS
    if balancer is not None and balancer.simple is SimpleLB.PASSTHROUGH:
        kind = cluster_pb2.Cluster.ORIGINAL_DST
    return kind


def _apply_policy(cluster: Any, options: Any, port: ServicePort, policy: ClusterPolicy | None, mesh: Any) -> None:
    """The traffic policy's parts of a cluster but TLS: protocol, connection pool, outlier detection, balancing."""
    set_upstream_protocol(options, port.protocol)
    pool = policy.connection_pool if policy is not None else None
    apply_h2_upgrade(options, port.protocol, pool, mesh)
    apply_connection_pool(cluster, options, pool, policy.retry_budget if policy is not None else None, mesh)
    outlier = policy.outlier_detection if policy is not None else None
    apply_outlier_detection(cluster, options, outlier)
    balancer = policy.load_balancer if policy is not None else None
    apply_load_balancer(cluster, balancer, mesh=mesh, failover=outlier is not None)


def _proxy_protocol(policy: ClusterPolicy | None) -> bool:
    return policy is not None and policy.proxy_protocol is not None


def _apply_discovery(cluster: Any) -> None:
    """What the cluster's type implies: the original destination's balancing, or EDS over ADS."""
    if cluster.type == cluster_pb2.Cluster.ORIGINAL_DST:
        cluster.lb_policy = cluster_pb2.Cluster.CLUSTER_PROVIDED
    elif cluster.type == cluster_pb2.Cluster.EDS:
        config = cluster.eds_cluster_config.eds_config
        config.ads.SetInParent()
        config.initial_fetch_timeout.SetInParent()  # zero: no timeout
        config.resource_api_version = config_source_pb2.V3


def _outbound_cluster(
    target: _Target, port: ServicePort, subset: Subset | None, *, sni_dnat: bool
) -> Any | _Written | None:
    clusters, service, rule = target.clusters, target.service, target.rule
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
    kind = _kind(target, policy.load_balancer if policy is not None else None)
    tls = policy.tls if policy is not None else None
    extras = _metadata_extras(
        target, subset, alpn_override_off=not sni_dnat and tls is not None and tls.mode in _ORIGINATED
    )
    if kind in _DNS_TYPES or (tls is not None and tls.mode in _ORIGINATED) or _proxy_protocol(policy):
        cluster = _own_cluster(target, name, sni, port, subset, policy, kind, sni_dnat=sni_dnat)
        if cluster is not None:
            _set_extras(cluster.metadata, extras)
        return cluster
    # The common case: the shape of the policy, and what is the cluster's own, written as bytes.
    shape = clusters.shape(kind, port, spec, subset, policy)
    sockets = (b"", b"")
    if not sni_dnat:  # SNI-DNAT clusters forward the client's mutual TLS as it is
        sockets = istio_mtls_sockets(
            shape.type,
            tls=tls,
            sni=sni,
            service_accounts=target.service_accounts,
            auto_mtls=target.auto_mtls,
            http2=shape.http2,
            mesh=clusters.ctx.mesh,
            made=clusters.tls_contexts,
        )
    metadata = target.metadata_bytes
    if extras:
        message = base_pb2.Metadata()
        message.CopyFrom(target.metadata)
        _set_extras(message, extras)
        metadata = message.SerializeToString(deterministic=True)
    data = shape.wire.cluster(name, names.cluster_alt_stat_name(name), metadata, sockets)
    found = clusters.tls_contexts.references(sockets, http2=shape.http2) if any(sockets) else frozenset()
    if shape.wire.eds:
        found |= {Reference(ENDPOINT_TYPE, name, shape.eds_via_ads)}
    return _Written(name, data, found, shape.wire.eds)


def _metadata_extras(
    target: _Target, subset: Subset | None, *, alpn_override_off: bool
) -> list[tuple[str, str | bool]]:
    """What a cluster's ``istio`` metadata adds to its service's: Istio's ALPN override, its subset, external."""
    extras: list[tuple[str, str | bool]] = []
    if target.rule.value is not None:
        if alpn_override_off:
            extras.append(("alpn_override", "false"))
        if subset is not None:
            extras.append(("subset", subset.name))
    if target.service.location is MeshLocation.MESH_EXTERNAL:
        extras.append(("external", True))
    return extras


def _set_extras(metadata: Any, extras: Sequence[tuple[str, str | bool]]) -> None:
    istio = metadata.filter_metadata["istio"].fields  # the target's metadata has the entry
    for key, value in extras:
        if isinstance(value, bool):
            istio[key].bool_value = value
        else:
            istio[key].string_value = value


def _apply_tls(
    target: _Target, cluster: Any, options: Any, tls: ClientTLSSettings | None, sni: str, *, http2: bool
) -> None:
    rule, origin = target.rule, target.service.origin
    apply_upstream_tls(
        cluster,
        options,
        tls=tls,
        sni=sni,
        service_accounts=target.service_accounts,
        auto_mtls=target.auto_mtls,
        http2=http2,
        sidecar=target.clusters.sidecar,
        selector_rule=rule.value is not None and rule.value.workload_selector is not None,
        service_entry=origin is not None and str(origin.kind) == "ServiceEntry",
        mesh=target.clusters.ctx.mesh,
        made=target.clusters.tls_contexts,
    )


def _own_cluster(
    target: _Target,
    name: str,
    sni: str,
    port: ServicePort,
    subset: Subset | None,
    policy: ClusterPolicy | None,
    kind: Any,
    *,
    sni_dnat: bool,
) -> Any | None:
    """A cluster built whole: DNS clusters (with their endpoints), TLS origination, PROXY protocol."""
    ctx, service = target.clusters.ctx, target.service
    cluster = cluster_pb2.Cluster(name=name, type=kind, alt_stat_name=names.cluster_alt_stat_name(name))
    cluster.common_lb_config.SetInParent()
    if kind in _DNS_TYPES:
        _dns_settings(cluster, ctx)
        groups = locality_lb_endpoints(ctx, service, port, target.rule, subset, dns=True)
        if kind == cluster_pb2.Cluster.LOGICAL_DNS:
            groups = _first_endpoint(groups)
        if not any(group.lb_endpoints for group in groups):
            return None
        cluster.load_assignment.cluster_name = name
        cluster.load_assignment.endpoints.extend(groups)
    options = http_options()
    cluster.metadata.CopyFrom(target.metadata)  # services and sources: the same for every cluster of the service
    _apply_policy(cluster, options, port, policy, ctx.mesh)
    if not sni_dnat:  # SNI-DNAT clusters forward the client's mutual TLS as it is
        _apply_tls(target, cluster, options, policy.tls if policy is not None else None, sni, http2=is_http2(options))
        if policy is not None and policy.proxy_protocol is not None:
            apply_proxy_protocol(cluster, policy.proxy_protocol.version)
    _apply_discovery(cluster)
    if cluster.type == cluster_pb2.Cluster.EDS:
        cluster.eds_cluster_config.service_name = name
    finish_http_options(cluster, options)
    return cluster


def _service_clusters(clusters: _Clusters, service: Service, *, sni_dnat: bool = False) -> list[Any | _Written]:
    if service.resolution not in _TYPES:
        return []
    target = clusters.target(service)
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


def _clusters(ctx: GenerationContext, *, inbound: bool) -> list[Any | _Written]:
    """The clusters of the proxy of ``ctx``, sorted by name (the inbound ones only with ``inbound``)."""
    builder = _Clusters(ctx)
    sidecar = builder.sidecar
    clusters: dict[str, Any | _Written] = {}
    for service in ctx.push.visible_services(builder.workload):
        for cluster in _service_clusters(builder, service):
            clusters.setdefault(cluster.name, cluster)
    if ctx.is_gateway:
        hosts = merge_gateways(ctx).auto_passthrough_hosts
        for service in auto_passthrough_services(ctx, hosts) if hosts else ():
            for cluster in _service_clusters(builder, service, sni_dnat=True):
                clusters.setdefault(cluster.name, cluster)
    local = [black_hole_cluster(ctx)]
    if sidecar:
        local += [
            passthrough_cluster(ctx),
            *(inbound_clusters(ctx) if inbound else ()),
            inbound_passthrough_cluster(ctx),
        ]
    for cluster in local:
        clusters.setdefault(cluster.name, cluster)
    return [clusters[name] for name in sorted(clusters)]


def build_clusters(ctx: GenerationContext) -> list[Any]:
    """Every cluster Istio would give the proxy of ``ctx``, as ``envoy.config.cluster.v3.Cluster`` messages.

    Args:
        ctx: the proxy, its push and registry, and where its sidecar listens.

    Returns:
        The clusters, sorted by name; when two services make the same cluster name, the first (by host,
        then namespace) wins.
    """
    return [
        cluster_pb2.Cluster.FromString(cluster.data) if isinstance(cluster, _Written) else cluster
        for cluster in _clusters(ctx, inbound=True)
    ]


def shared_cluster_resources(ctx: GenerationContext) -> tuple[list[Resource], list[str]]:
    """The clusters of :func:`build_clusters` but the inbound ones, as resources; and their EDS service names.

    The same content as :func:`build_clusters`' (and both sorted by name), written without building most messages.
    """
    resources: list[Resource] = []
    eds: set[str] = set()
    for cluster in _clusters(ctx, inbound=False):
        if isinstance(cluster, _Written):
            resources.append(Resource.from_value(CLUSTER_TYPE, cluster.name, cluster.data, cluster.references))
            if cluster.eds:
                eds.add(cluster.name)
        else:
            resources.append(pack(cluster))
            if cluster.type == cluster_pb2.Cluster.EDS:
                eds.add(cluster.eds_cluster_config.service_name or cluster.name)
    return resources, sorted(eds)
