"""The filters of gateway listeners (private): Istio's gateway HTTP connection manager, TCP proxy and TLS inspector.

The HTTP connection manager is Istio's ``buildGatewayConnectionManager`` on top of the common settings of
:mod:`._hcm` (paths normalized as MeshConfig's ``pathNormalization`` says, websocket upgrades, no stream idle
timeout): routes from RDS over ADS, the client address taken from the connection (``use_remote_address``, with
MeshConfig's ``gatewayTopology.numTrustedProxies``), ``x-forwarded-client-cert`` sanitized and set (or as
``gatewayTopology.forwardClientCertDetails`` says), server name ``istio-envoy``, UUID request ids, and the HTTP
filters: the workload's authentication and authorization ones, gRPC stats (plus gRPC-Web on GRPC-Web ports),
then fault, CORS (for the per-route settings VirtualServices give) and the router.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final

from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_components_pb2
from envoy.extensions.filters.http.grpc_stats.v3 import config_pb2 as grpc_stats_pb2
from envoy.extensions.filters.http.grpc_web.v3 import grpc_web_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.extensions.request_id.uuid.v3 import uuid_pb2
from google.protobuf import json_format, wrappers_pb2

from mesh_config import MeshConfig
from mesh_model import ConfigKey, Protocol
from mesh_xds.generate._hcm import http_connection_manager, http_filter, trailing_filters
from mesh_xds.generate.context import source_metadata

__all__ = [
    "HTTP_CONNECTION_MANAGER",
    "TCP_PROXY",
    "gateway_connection_manager",
    "metadata",
    "network_filter",
    "tcp_proxy",
    "tls_inspector",
]

HTTP_CONNECTION_MANAGER: Final = "envoy.filters.network.http_connection_manager"
TCP_PROXY: Final = "envoy.filters.network.tcp_proxy"
_SERVER_NAME: Final = "istio-envoy"

_FORWARD_CLIENT_CERT: Final = {
    "SANITIZE": hcm_pb2.HttpConnectionManager.SANITIZE,
    "FORWARD_ONLY": hcm_pb2.HttpConnectionManager.FORWARD_ONLY,
    "APPEND_FORWARD": hcm_pb2.HttpConnectionManager.APPEND_FORWARD,
    "SANITIZE_SET": hcm_pb2.HttpConnectionManager.SANITIZE_SET,
    "ALWAYS_FORWARD_ONLY": hcm_pb2.HttpConnectionManager.ALWAYS_FORWARD_ONLY,
}
_SETS_CLIENT_CERT: Final = frozenset(
    {hcm_pb2.HttpConnectionManager.SANITIZE_SET, hcm_pb2.HttpConnectionManager.APPEND_FORWARD}
)


def network_filter(name: str, config: Any) -> Any:
    """A listener network filter holding ``config``."""
    flt = listener_components_pb2.Filter(name=name)
    flt.typed_config.Pack(config)
    return flt


def tls_inspector() -> Any:
    """The TLS inspector listener filter, which reads SNI and ALPN for filter chain matching."""
    flt = listener_components_pb2.ListenerFilter(name="envoy.filters.listener.tls_inspector")
    flt.typed_config.Pack(tls_inspector_pb2.TlsInspector())
    return flt


def metadata(sources: Iterable[ConfigKey]) -> Any | None:
    """Envoy Metadata naming the config objects something came from, or None without any."""
    entries = source_metadata(sources)
    if not entries:
        return None
    return json_format.ParseDict({"filter_metadata": entries}, base_pb2.Metadata())


def _http_filters(protocol: Protocol, extra_filters: Sequence[Any]) -> list[Any]:
    filters = list(extra_filters)
    if protocol is Protocol.GRPC_WEB:
        filters.append(http_filter("envoy.filters.http.grpc_web", grpc_web_pb2.GrpcWeb()))
    stats = grpc_stats_pb2.FilterConfig(
        emit_filter_state=True, stats_for_all_methods=wrappers_pb2.BoolValue(value=False)
    )
    filters.append(http_filter("envoy.filters.http.grpc_stats", stats))
    filters.extend(trailing_filters())
    return filters


def gateway_connection_manager(
    mesh: MeshConfig, *, route_name: str, stat_prefix: str, protocol: Protocol, extra_filters: Sequence[Any] = ()
) -> Any:
    """A gateway's HttpConnectionManager, its routes fetched by name over ADS.

    Args:
        mesh: the mesh settings (gateway topology, path normalization).
        route_name: the RouteConfiguration the manager asks RDS for.
        stat_prefix: the prefix of its statistics.
        protocol: the server's protocol (GRPC-Web adds the gRPC-Web filter).
        extra_filters: HTTP filters that go before the built-in ones (authentication, authorization).
    """
    manager = http_connection_manager(
        mesh,
        stat_prefix=stat_prefix,
        http_filters=_http_filters(protocol, extra_filters),
        rds=route_name,
        inbound=False,
    )
    topology = mesh.default_config.gateway_topology if mesh.default_config is not None else None
    forward = hcm_pb2.HttpConnectionManager.SANITIZE_SET
    if topology is not None:
        manager.xff_num_trusted_hops = topology.num_trusted_proxies
        forward = _FORWARD_CLIENT_CERT.get(topology.forward_client_cert_details.value, forward)
    manager.use_remote_address.value = True
    manager.forward_client_cert_details = forward
    if forward in _SETS_CLIENT_CERT:
        details = manager.set_current_client_cert_details
        details.subject.value = True
        details.cert = details.dns = details.uri = True
    manager.server_name = _SERVER_NAME
    manager.http_protocol_options.SetInParent()
    manager.request_id_extension.typed_config.Pack(
        uuid_pb2.UuidRequestIdConfig(use_request_id_for_trace_sampling=wrappers_pb2.BoolValue(value=True))
    )
    return manager


def tcp_proxy(stat_prefix: str, clusters: Sequence[tuple[str, int]], *, max_duration: Any | None = None) -> Any:
    """A TCP proxy network filter to one cluster, or to several by weight.

    Args:
        stat_prefix: the prefix of its statistics.
        clusters: ``(cluster, weight)`` pairs; with one pair the weight is ignored.
        max_duration: a ``max_downstream_connection_duration`` (from a DestinationRule), if any.
    """
    proxy = tcp_proxy_pb2.TcpProxy(stat_prefix=stat_prefix)
    if len(clusters) == 1:
        proxy.cluster = clusters[0][0]
    else:
        proxy.weighted_clusters.clusters.extend(
            tcp_proxy_pb2.TcpProxy.WeightedCluster.ClusterWeight(name=name, weight=weight) for name, weight in clusters
        )
    if max_duration is not None:
        proxy.max_downstream_connection_duration.CopyFrom(max_duration)
    return network_filter(TCP_PROXY, proxy)
