"""TCP proxies to the destinations of VirtualService ``tcp`` and ``tls`` routes (private).

Istio's ``buildOutboundNetworkFilters``, shared by sidecar outbound listeners and gateway servers:

* a route with one destination proxies to its cluster ``outbound|<port>|<subset>|<host>`` (the destination's
  port, else the service's only port, else the listener's), its statistics under the cluster's name;
* a route with several destinations becomes ``weighted_clusters``, destinations of weight 0 left out, its
  statistics under ``<VirtualService>.<namespace>``;
* the DestinationRule of the first destination's service adds its ``connectionPool.tcp.idleTimeout``
  (``idle_timeout``), ``connectionPool.tcp.maxConnectionDuration`` (``max_downstream_connection_duration``)
  and a consistent hash on the source IP (``hash_policy``), as Istio does.

A port with no route gets the same TCP proxy to the service's own cluster (:func:`service_tcp_proxy`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, final

import attrs
from envoy.config.listener.v3 import listener_components_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.type.v3 import hash_policy_pb2

from mesh_config.index import MergedDestinationRule, ResolvedVirtualService, Sourced
from mesh_config.networking.load_balancer import LoadBalancerSettings
from mesh_config.networking.virtual_service import RouteDestination
from mesh_model import ConfigKey, Service
from mesh_xds.generate._cluster_policy import duration
from mesh_xds.generate._inbound import TCP_PROXY_FILTER
from mesh_xds.generate._route import destination_cluster, resolve_host
from mesh_xds.generate.context import GenerationContext
from mesh_xds.generate.names import outbound_cluster

__all__ = ["TcpProxy", "route_tcp_proxy", "service_tcp_proxy"]


@final
@attrs.frozen
class TcpProxy:
    """A TCP proxy network filter and the DestinationRules that shaped it.

    Attributes:
        filter: the ``envoy.filters.network.tcp_proxy`` listener filter.
        clusters: the clusters it proxies to, in order.
        sources: the keys of the DestinationRule that set its timeouts or hash policy, if any.
    """

    filter: Any
    clusters: tuple[str, ...]
    sources: tuple[ConfigKey, ...] = ()


def _rule(ctx: GenerationContext, service: Service | None) -> Sourced[MergedDestinationRule | None]:
    if service is None:
        return Sourced(None)
    return ctx.push.destination_rule(ctx.workload, service)


def _uses_source_ip(spec: Any, subset: str) -> bool:
    """Istio's ``maybeSetHashPolicy``: the rule's hash on the source IP, unless the subset's balancer says otherwise."""
    policy = spec.traffic_policy
    use_source_ip = _hashes_source_ip(policy.load_balancer if policy is not None else None)
    for entry in spec.subsets:
        if entry.name != subset:
            continue
        own = entry.traffic_policy.load_balancer if entry.traffic_policy is not None else None
        if own is not None:
            use_source_ip = _hashes_source_ip(own)
        break
    return use_source_ip


def _hashes_source_ip(balancer: LoadBalancerSettings | None) -> bool:
    hashing = balancer.consistent_hash if balancer is not None else None
    return hashing is not None and hashing.use_source_ip


def _tcp_proxy(
    stat_prefix: str,
    clusters: Sequence[tuple[str, int]],
    rule: Sourced[MergedDestinationRule | None],
    subset: str,
    *,
    weighted: bool,
) -> TcpProxy:
    proxy = tcp_proxy_pb2.TcpProxy(stat_prefix=stat_prefix)
    if weighted:
        proxy.weighted_clusters.clusters.extend(
            tcp_proxy_pb2.TcpProxy.WeightedCluster.ClusterWeight(name=name, weight=weight) for name, weight in clusters
        )
    else:
        proxy.cluster = clusters[0][0]
    shaped = False
    spec = rule.value.spec if rule.value is not None else None
    if spec is not None:
        policy = spec.traffic_policy
        pool = policy.connection_pool if policy is not None else None
        tcp = pool.tcp if pool is not None else None
        if tcp is not None and tcp.idle_timeout is not None:
            proxy.idle_timeout.CopyFrom(duration(tcp.idle_timeout))
            shaped = True
        if tcp is not None and tcp.max_connection_duration is not None:
            proxy.max_downstream_connection_duration.CopyFrom(duration(tcp.max_connection_duration))
            shaped = True
        if _uses_source_ip(spec, subset):
            proxy.hash_policy.append(hash_policy_pb2.HashPolicy(source_ip=hash_policy_pb2.HashPolicy.SourceIp()))
            shaped = True
    flt = listener_components_pb2.Filter(name=TCP_PROXY_FILTER)
    flt.typed_config.Pack(proxy)
    return TcpProxy(flt, tuple(name for name, _ in clusters), rule.sources if shaped else ())


def service_tcp_proxy(ctx: GenerationContext, service: Service, port: int) -> TcpProxy:
    """A TCP proxy to the service's own cluster ``outbound|<port>||<host>``, with its DestinationRule's settings.

    Args:
        ctx: the proxy and its push.
        service: the service called.
        port: the listener port; a service with a single port is called on that one.
    """
    number = service.ports[0].number if len(service.ports) == 1 else port
    cluster = outbound_cluster(number, service.hostname.value)
    return _tcp_proxy(cluster, [(cluster, 100)], _rule(ctx, service), "", weighted=False)


def route_tcp_proxy(
    ctx: GenerationContext, vs: ResolvedVirtualService, routes: Sequence[RouteDestination], port: int
) -> TcpProxy | None:
    """A TCP proxy to the destinations of one ``tcp`` or ``tls`` route, or None when it names none.

    Args:
        ctx: the proxy and its push (destination hosts resolve as the proxy sees them).
        vs: the VirtualService the route belongs to (its namespace resolves short host names).
        routes: the route's destinations.
        port: the listener (or gateway server) port, for destinations without a port.
    """
    destinations = [(route.destination, route.weight) for route in routes if route.destination is not None]
    if not destinations:
        return None
    namespace = vs.resource.namespace
    targets: list[tuple[str, int]] = []
    first_service: Service | None = None
    for index, (destination, weight) in enumerate(destinations):
        host = resolve_host(destination.host, namespace)
        service = ctx.push.lookup_service(host, ctx.workload).value if host is not None else None
        if index == 0:
            first_service = service
        if len(destinations) == 1 or weight > 0:
            targets.append((destination_cluster(destination, host, service, port), weight))
    if not targets:
        return None
    rule = _rule(ctx, first_service)
    if len(destinations) == 1:
        return _tcp_proxy(targets[0][0], targets, rule, destinations[0][0].subset, weighted=False)
    return _tcp_proxy(f"{vs.resource.name}.{namespace}", targets, rule, "", weighted=True)
