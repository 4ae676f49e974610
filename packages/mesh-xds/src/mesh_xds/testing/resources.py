"""Small, valid Envoy resources for tests, examples and benchmarks.

Each function returns an ``xds-protos`` message that Envoy accepts, with EDS and RDS fetched over ADS::

    snapshot = Snapshot.from_messages([
        eds_cluster("reviews"),
        load_assignment("reviews", [("127.0.0.1", 9080)]),
        http_listener("http", "127.0.0.1", 15001, route_name="http"),
        route_configuration("http", {"reviews": "reviews"}),
    ])

TLS secrets may come from an SDS server instead, as Istio's sidecars get theirs::

    context = downstream_tls_context(certificate="default", validation="ROOTCA", require_client_certificate=True)
    listener = tls_tcp_listener("inbound", "127.0.0.1", 15006, cluster="reviews", context=context)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, config_source_pb2, grpc_service_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2, tls_pb2
from google.protobuf import any_pb2, duration_pb2, wrappers_pb2
from google.protobuf.message import Message

from mesh_xds.bootstrap import SDS_CLUSTER
from mesh_xds.snapshot import Snapshot

__all__ = [
    "ads_config_source",
    "downstream_tls_context",
    "eds_cluster",
    "http_listener",
    "load_assignment",
    "route_configuration",
    "sample_snapshot",
    "sds_config_source",
    "tcp_listener",
    "tls_tcp_listener",
]


def _any(message: Any) -> Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def _address(host: str, port: int) -> Any:
    return address_pb2.Address(socket_address=address_pb2.SocketAddress(address=host, port_value=port))


def ads_config_source() -> Message:
    """A config source that fetches over the ADS stream (v3)."""
    source: Message = config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(), resource_api_version=config_source_pb2.V3
    )
    return source


def eds_cluster(name: str, *, service_name: str = "", connect_timeout: float = 1.0) -> Message:
    """An EDS cluster whose endpoints come over ADS (named ``service_name``, else the cluster's name)."""
    timeout = duration_pb2.Duration()
    timeout.FromNanoseconds(int(connect_timeout * 1e9))
    cluster: Message = cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.EDS,
        connect_timeout=timeout,
        eds_cluster_config=cluster_pb2.Cluster.EdsClusterConfig(
            eds_config=ads_config_source(), service_name=service_name
        ),
    )
    return cluster


def load_assignment(name: str, endpoints: Iterable[tuple[str, int]] = ()) -> Message:
    """A ClusterLoadAssignment with one locality holding ``(host, port)`` endpoints."""
    lb_endpoints = [
        endpoint_components_pb2.LbEndpoint(endpoint=endpoint_components_pb2.Endpoint(address=_address(host, port)))
        for host, port in endpoints
    ]
    assignment: Message = endpoint_pb2.ClusterLoadAssignment(
        cluster_name=name, endpoints=[endpoint_components_pb2.LocalityLbEndpoints(lb_endpoints=lb_endpoints)]
    )
    return assignment


def http_listener(name: str, host: str, port: int, *, route_name: str) -> Message:
    """A listener with an HTTP connection manager whose routes come over ADS (RDS) and the router filter."""
    manager = hcm_pb2.HttpConnectionManager(
        stat_prefix=name,
        rds=hcm_pb2.Rds(route_config_name=route_name, config_source=ads_config_source()),
        http_filters=[hcm_pb2.HttpFilter(name="envoy.filters.http.router", typed_config=_any(router_pb2.Router()))],
    )
    listener: Message = listener_pb2.Listener(
        name=name,
        address=_address(host, port),
        filter_chains=[
            listener_components_pb2.FilterChain(
                filters=[
                    listener_components_pb2.Filter(
                        name="envoy.filters.network.http_connection_manager", typed_config=_any(manager)
                    )
                ]
            )
        ],
    )
    return listener


def tcp_listener(name: str, host: str, port: int, *, cluster: str) -> Message:
    """A listener that proxies TCP to a cluster."""
    proxy = tcp_proxy_pb2.TcpProxy(stat_prefix=name, cluster=cluster)
    listener: Message = listener_pb2.Listener(
        name=name,
        address=_address(host, port),
        filter_chains=[
            listener_components_pb2.FilterChain(
                filters=[
                    listener_components_pb2.Filter(name="envoy.filters.network.tcp_proxy", typed_config=_any(proxy))
                ]
            )
        ],
    )
    return listener


def route_configuration(name: str, routes: Mapping[str, str]) -> Message:
    """A route configuration with one virtual host per domain, each routing every path to a cluster.

    Args:
        name: the route configuration's name.
        routes: domain to cluster, e.g. ``{"reviews": "outbound|9080||reviews.default.svc.cluster.local"}``.
    """
    hosts = [
        route_components_pb2.VirtualHost(
            name=domain,
            domains=[domain],
            routes=[
                route_components_pb2.Route(
                    match=route_components_pb2.RouteMatch(prefix="/"),
                    route=route_components_pb2.RouteAction(cluster=cluster),
                )
            ],
        )
        for domain, cluster in routes.items()
    ]
    configuration: Message = route_pb2.RouteConfiguration(name=name, virtual_hosts=hosts)
    return configuration


def sample_snapshot(
    clusters: Iterable[str] = ("details", "reviews"),
    *,
    host: str = "127.0.0.1",
    port: int = 9080,
    listener_port: int = 15001,
    route_name: str = "http",
) -> Snapshot:
    """A consistent snapshot of a few clusters behind one HTTP listener.

    It holds an EDS cluster and a load assignment (one endpoint) per name, a listener named ``http`` on
    ``listener_port``, and its route configuration sending ``<name>.example`` to each cluster.
    """
    names = list(clusters)
    messages = [eds_cluster(name) for name in names]
    messages += [load_assignment(name, [(host, port)]) for name in names]
    messages.append(http_listener("http", host, listener_port, route_name=route_name))
    messages.append(route_configuration(route_name, {f"{name}.example": name for name in names}))
    return Snapshot.from_messages(messages)


def sds_config_source(
    *, cluster: str = SDS_CLUSTER, delta: bool = False, initial_fetch_timeout: float = 0.0
) -> Message:
    """A config source that fetches secrets from an SDS server reached through a static cluster.

    Args:
        cluster: the bootstrap's cluster to the SDS server (``sds-grpc``, as Istio's).
        delta: speak Delta (``DELTA_GRPC``) rather than state of the world (``GRPC``, Istio's choice).
        initial_fetch_timeout: seconds Envoy waits for a secret before it gives up waiting (the listener
            or cluster then comes up without it); 0 waits for ever, as Istio does.
    """
    timeout = duration_pb2.Duration()
    timeout.FromNanoseconds(int(initial_fetch_timeout * 1e9))
    api_type = config_source_pb2.ApiConfigSource.DELTA_GRPC if delta else config_source_pb2.ApiConfigSource.GRPC
    grpc_service = grpc_service_pb2.GrpcService(envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(cluster_name=cluster))
    source: Message = config_source_pb2.ConfigSource(
        api_config_source=config_source_pb2.ApiConfigSource(
            api_type=api_type,
            transport_api_version=config_source_pb2.V3,
            grpc_services=[grpc_service],
            set_node_on_first_message_only=True,
        ),
        initial_fetch_timeout=timeout,
        resource_api_version=config_source_pb2.V3,
    )
    return source


def downstream_tls_context(
    *,
    certificate: str = "default",
    validation: str | None = "ROOTCA",
    require_client_certificate: bool = False,
    sds_source: Message | None = None,
) -> Message:
    """A server-side TLS context whose certificate (and trusted roots) come over SDS.

    Args:
        certificate: the name of the SDS secret holding the certificate chain and key (Istio's ``default``).
        validation: the name of the SDS secret holding the roots that client certificates must chain to
            (Istio's ``ROOTCA``); ``None`` validates no client certificate.
        require_client_certificate: refuse clients without a valid certificate (mutual TLS).
        sds_source: where the secrets come from; :func:`sds_config_source` by default.
    """
    source = sds_config_source() if sds_source is None else sds_source
    common = tls_pb2.CommonTlsContext(
        tls_certificate_sds_secret_configs=[secret_pb2.SdsSecretConfig(name=certificate, sds_config=source)]
    )
    if validation is not None:
        common.validation_context_sds_secret_config.CopyFrom(
            secret_pb2.SdsSecretConfig(name=validation, sds_config=source)
        )
    context: Message = tls_pb2.DownstreamTlsContext(
        common_tls_context=common, require_client_certificate=wrappers_pb2.BoolValue(value=require_client_certificate)
    )
    return context


def tls_tcp_listener(name: str, host: str, port: int, *, cluster: str, context: Message) -> Message:
    """A listener that terminates TLS with ``context`` (a DownstreamTlsContext) and proxies TCP to a cluster."""
    listener: Any = tcp_listener(name, host, port, cluster=cluster)
    socket = listener.filter_chains[0].transport_socket
    socket.name = "envoy.transport_sockets.tls"
    socket.typed_config.Pack(context)
    result: Message = listener
    return result
