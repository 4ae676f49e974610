"""The clusters of proxyless gRPC clients (private), as Istio's gRPC generator builds them.

A service port gets ``outbound|<port>||<host>`` and one ``outbound|<port>|<subset>|<host>`` per subset of
its DestinationRule. Unlike a sidecar's clusters they carry only what grpcio reads:

* the endpoints: EDS over ADS for registry services (``service_name`` = the cluster name), LOGICAL_DNS
  with the first endpoint inline for DNS-resolved ServiceEntries (gRPC takes no STRICT_DNS);
* the load-balancing policy: ROUND_ROBIN, or RING_HASH for a consistent hash (Maglev included, which gRPC
  lacks). gRPC takes no other policy, so LEAST_REQUEST, RANDOM and PASSTHROUGH become ROUND_ROBIN, with
  a log line;
* the DestinationRule the cluster came from, in ``metadata.filter_metadata.istio``.

TLS settings are not applied: gRPC reads certificates from its bootstrap's ``certificate_providers``, not
over SDS, and the clients connect in plaintext (as Istio's generator does unless the rule asks for
``ISTIO_MUTUAL``). Connection pools and outlier detection are Envoy features gRPC does not read from
Istio's fields, and are left out.
"""

from __future__ import annotations

import logging
from collections.abc import Container
from typing import Any, Final

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import config_source_pb2

from mesh_config.index import MergedDestinationRule, Sourced
from mesh_config.networking.destination_rule import Subset
from mesh_config.networking.load_balancer import LoadBalancerSettings, SimpleLB
from mesh_config.networking.traffic_policy import ClientTLSMode
from mesh_model import Resolution, Service, ServicePort
from mesh_xds.generate._cluster_policy import cluster_policy
from mesh_xds.generate.context import GenerationContext, source_metadata
from mesh_xds.generate.eds import locality_lb_endpoints
from mesh_xds.generate.names import outbound_cluster

__all__ = ["eds_cluster", "service_clusters"]

_log = logging.getLogger("mesh_xds.generate")

_DNS: Final = (Resolution.DNS, Resolution.DNS_ROUND_ROBIN)
_DEFAULT_RING_SIZE: Final = 1024
_MAX_RING_SIZE: Final = 8 * 1024 * 1024
"""The largest ring gRPC accepts (and Envoy's limit too)."""
_ROUND_ROBIN_ALIASES: Final = (SimpleLB.UNSPECIFIED, SimpleLB.ROUND_ROBIN)


def eds_cluster(name: str) -> Any:
    """A ROUND_ROBIN cluster whose endpoints come over ADS, under its own name."""
    cluster = cluster_pb2.Cluster(name=name, type=cluster_pb2.Cluster.EDS, lb_policy=cluster_pb2.Cluster.ROUND_ROBIN)
    config = cluster.eds_cluster_config
    config.service_name = name
    config.eds_config.ads.SetInParent()
    config.eds_config.resource_api_version = config_source_pb2.V3
    return cluster


def _apply_load_balancer(cluster: Any, balancer: LoadBalancerSettings | None) -> None:
    if balancer is None:
        return
    hashing = balancer.consistent_hash
    if hashing is not None:
        cluster.lb_policy = cluster_pb2.Cluster.RING_HASH
        if hashing.maglev is not None:
            _log.info("cluster %s: gRPC clients have no Maglev, using a ring hash", cluster.name)
        size = hashing.minimum_ring_size
        if hashing.ring_hash is not None and hashing.ring_hash.minimum_ring_size:
            size = hashing.ring_hash.minimum_ring_size
        size = min(size or _DEFAULT_RING_SIZE, _MAX_RING_SIZE)
        cluster.ring_hash_lb_config.minimum_ring_size.value = size
        return
    if balancer.backend_utilization is not None:
        _log.info("cluster %s: gRPC clients do not balance on backend utilization, using ROUND_ROBIN", cluster.name)
    elif balancer.simple not in _ROUND_ROBIN_ALIASES:
        _log.info("cluster %s: gRPC clients do not support %s, using ROUND_ROBIN", cluster.name, balancer.simple.value)


def _dns_cluster(
    ctx: GenerationContext,
    service: Service,
    port: ServicePort,
    rule: Sourced[MergedDestinationRule | None],
    subset: Subset | None,
    name: str,
) -> Any | None:
    """LOGICAL_DNS with the first endpoint: gRPC takes exactly one locality holding one endpoint."""
    for group in locality_lb_endpoints(ctx, service, port, rule, subset, dns=True):
        if not group.lb_endpoints:
            continue
        cluster = cluster_pb2.Cluster(
            name=name, type=cluster_pb2.Cluster.LOGICAL_DNS, lb_policy=cluster_pb2.Cluster.ROUND_ROBIN
        )
        cluster.load_assignment.cluster_name = name
        locality = cluster.load_assignment.endpoints.add()
        locality.CopyFrom(group)
        del locality.lb_endpoints[1:]
        locality.priority = 0
        locality.load_balancing_weight.value = 1
        return cluster
    return None


def _cluster(
    ctx: GenerationContext,
    service: Service,
    port: ServicePort,
    rule: Sourced[MergedDestinationRule | None],
    subset: Subset | None,
) -> Any | None:
    name = outbound_cluster(port.number, service.hostname.value, subset.name if subset is not None else "")
    if service.resolution in _DNS:
        cluster = _dns_cluster(ctx, service, port, rule, subset, name)
        if cluster is None:
            return None
    else:
        cluster = eds_cluster(name)
    spec = rule.value.spec if rule.value is not None else None
    policy = cluster_policy(
        spec.traffic_policy if spec is not None else None,
        subset.traffic_policy if subset is not None else None,
        port.number,
    )
    if policy is not None:
        _apply_load_balancer(cluster, policy.load_balancer)
        if policy.tls is not None and policy.tls.mode is not ClientTLSMode.DISABLE:
            _log.info("cluster %s: gRPC clients connect in plaintext, not with TLS %s", name, policy.tls.mode.value)
    if spec is not None:
        for key, value in source_metadata(rule.sources).items():
            cluster.metadata.filter_metadata[key].update(value)
    return cluster


def service_clusters(ctx: GenerationContext, service: Service, wanted: Container[str] | None = None) -> list[Any]:
    """The clusters of a service's ports and subsets, those named in ``wanted`` only when it is given.

    UDP ports get none, nor does a DNS-resolved service port without endpoints.
    """
    rule = ctx.push.destination_rule(ctx.workload, service)
    subsets: tuple[Subset, ...] = tuple(rule.value.spec.subsets) if rule.value is not None else ()
    out = []
    for port in service.ports:
        if port.protocol.is_udp:
            continue
        for subset in (None, *subsets):
            name = outbound_cluster(port.number, service.hostname.value, subset.name if subset is not None else "")
            if wanted is not None and name not in wanted:
                continue
            cluster = _cluster(ctx, service, port, rule, subset)
            if cluster is not None:
                out.append(cluster)
    return out
