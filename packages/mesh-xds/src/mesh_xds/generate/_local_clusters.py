"""The clusters that are not a called service's: the workload's inbound clusters and Istio's special ones.

* ``inbound|<targetPort>||``: one per target port of the services that select the workload (their selector
  matches the proxy's labels in its namespace), a STATIC cluster to the application's address on that port
  (in ``captureMode: NONE`` style, like a Sidecar ingress ``defaultEndpoint``). The first service by host
  name sets the protocol (HTTP/2 for HTTP2 and gRPC ports; ports of unknown protocol are TCP); the
  connection pool of its DestinationRule applies, overridden by the Sidecar's ``connectionPool`` for the
  port or its ``inboundConnectionPool``.
* ``BlackHoleCluster``: STATIC without endpoints, for traffic that must go nowhere.
* ``PassthroughCluster``: ORIGINAL_DST, for outbound traffic to unknown destinations (ALLOW_ANY).
* ``InboundPassthroughCluster``: ORIGINAL_DST from ``127.0.0.6``, for inbound traffic to ports no service
  declares.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Final

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2

from mesh_config.networking.connection_pool import ConnectionPoolSettings
from mesh_model import ConfigKey, Service, ServicePort
from mesh_xds.generate import names
from mesh_xds.generate._cluster_policy import (
    HTTP_PROTOCOL_OPTIONS,
    apply_connection_pool,
    cluster_policy,
    finish_http_options,
    http_options,
    passthrough_http_options,
    set_upstream_protocol,
)
from mesh_xds.generate.context import GenerationContext, source_metadata

__all__ = [
    "black_hole_cluster",
    "inbound_clusters",
    "inbound_passthrough_cluster",
    "inbound_service_ports",
    "ipv6_only",
    "passthrough_cluster",
    "service_metadata",
]

_INBOUND_PASSTHROUGH_BIND_V4: Final = "127.0.0.6"
_INBOUND_PASSTHROUGH_BIND_V6: Final = "::6"


def service_metadata(service: Service) -> dict[str, str]:
    """Istio's telemetry entry for a service: its host, short name and namespace."""
    host = service.hostname.value
    name = host.split(".", 1)[0] if f".{service.namespace}.svc." in f"{host}." else host
    return {"host": host, "name": name, "namespace": service.namespace}


def inbound_service_ports(ctx: GenerationContext) -> list[tuple[int, list[tuple[Service, ServicePort]]]]:
    """The workload's inbound ports: each target port with the services (by host) and ports that use it.

    A service selects the workload when it is in the proxy's namespace and its non-empty selector matches
    the proxy's labels. A port's target port is its ``target_port``, else its number. UDP ports are left out.
    """
    ports: dict[int, list[tuple[Service, ServicePort]]] = {}
    for service in ctx.push.services.selecting(ctx.namespace, ctx.labels):  # sorted by host
        for port in service.ports:
            if port.protocol.is_udp:
                continue
            target = port.target_port if port.target_port is not None else port.number
            ports.setdefault(target, []).append((service, port))
    return sorted(ports.items())


def _static_endpoint(cluster: Any, address: str, port: int) -> None:
    assignment = cluster.load_assignment
    assignment.cluster_name = cluster.name
    endpoint = assignment.endpoints.add().lb_endpoints.add().endpoint
    endpoint.address.socket_address.address = address
    endpoint.address.socket_address.port_value = port


def _inbound_pool(
    ctx: GenerationContext, target: int, service: Service, port: ServicePort
) -> tuple[ConnectionPoolSettings | None, list[ConfigKey]]:
    pool: ConnectionPoolSettings | None = None
    sources: list[ConfigKey] = []
    rule = ctx.push.destination_rule(ctx.workload, service)
    if rule.value is not None and rule.value.spec.traffic_policy is not None:
        policy = cluster_policy(rule.value.spec.traffic_policy, None, port.number)
        pool = policy.connection_pool if policy is not None else None
        sources.extend(rule.sources)
    scope = ctx.push.sidecar_scope(ctx.workload)
    sidecar = scope.value.sidecar
    if sidecar is not None:
        override = next(
            (
                listener.connection_pool
                for listener in sidecar.spec.ingress
                if listener.port is not None and listener.port.number == target and listener.connection_pool is not None
            ),
            sidecar.spec.inbound_connection_pool,
        )
        if override is not None:
            pool = override
            sources.extend(scope.sources)
    return pool, sources


def _set_metadata(cluster: Any, values: dict[str, Any]) -> None:
    for key, value in values.items():
        cluster.metadata.filter_metadata[key].update(value)


def inbound_clusters(ctx: GenerationContext) -> list[Any]:
    """``inbound|<targetPort>||`` clusters to the application, one per inbound port."""
    out = []
    application = ctx.sidecar_addresses.application
    for target, members in inbound_service_ports(ctx):
        service, port = members[0]
        name = names.inbound_cluster(target)
        cluster = cluster_pb2.Cluster(
            name=name, type=cluster_pb2.Cluster.STATIC, alt_stat_name=names.cluster_alt_stat_name(name)
        )
        cluster.common_lb_config.SetInParent()
        _static_endpoint(cluster, application, target)
        options = http_options()
        set_upstream_protocol(options, port.protocol)
        hosts: dict[str, Service] = {}
        for member, _ in members:
            hosts.setdefault(member.hostname.value, member)
        _set_metadata(cluster, {"istio": {"services": [service_metadata(member) for member in hosts.values()]}})
        pool, sources = _inbound_pool(ctx, target, service, port)
        if service.origin is not None:
            sources.insert(0, service.origin)
        apply_connection_pool(cluster, options, pool, None, ctx.mesh)
        _set_metadata(cluster, source_metadata(sources))
        finish_http_options(cluster, options)
        out.append(cluster)
    return out


def black_hole_cluster(ctx: GenerationContext) -> Any:
    """``BlackHoleCluster``: a STATIC cluster without endpoints."""
    name = names.BLACK_HOLE_CLUSTER
    cluster = cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.STATIC,
        lb_policy=cluster_pb2.Cluster.ROUND_ROBIN,
        alt_stat_name=names.cluster_alt_stat_name(name),
    )
    if ctx.mesh.connect_timeout is not None:
        cluster.connect_timeout.FromNanoseconds(ctx.mesh.connect_timeout.nanos)
    return cluster


def passthrough_cluster(ctx: GenerationContext, name: str = names.PASSTHROUGH_CLUSTER) -> Any:
    """``PassthroughCluster``: ORIGINAL_DST to wherever the connection was going, in its own protocol."""
    cluster = cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.ORIGINAL_DST,
        lb_policy=cluster_pb2.Cluster.CLUSTER_PROVIDED,
        alt_stat_name=names.cluster_alt_stat_name(name),
    )
    apply_connection_pool(cluster, http_options(), None, None, ctx.mesh)
    cluster.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS].Pack(passthrough_http_options())
    return cluster


def ipv6_only(addresses: tuple[str, ...]) -> bool:
    """True when the proxy has addresses and all of them are IPv6."""
    try:
        return bool(addresses) and all(ipaddress.ip_address(address).version == 6 for address in addresses)
    except ValueError:
        return False


def inbound_passthrough_cluster(ctx: GenerationContext) -> Any:
    """``InboundPassthroughCluster``: the passthrough cluster, bound to Istio's inbound source address."""
    cluster = passthrough_cluster(ctx, names.INBOUND_PASSTHROUGH_CLUSTER)
    bind = _INBOUND_PASSTHROUGH_BIND_V6 if ipv6_only(ctx.proxy.ip_addresses) else _INBOUND_PASSTHROUGH_BIND_V4
    cluster.upstream_bind_config.source_address.CopyFrom(address_pb2.SocketAddress(address=bind, port_value=0))
    return cluster
