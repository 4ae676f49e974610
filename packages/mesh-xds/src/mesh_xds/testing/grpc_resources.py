"""Envoy resources shaped for proxyless gRPC clients (grpcio's own xDS client), named as Istio names them.

A gRPC channel on ``xds:///echo.default.svc.cluster.local:8080`` asks, over SotW ADS and always by name, for:

1. the Listener named exactly like the target (``echo.default.svc.cluster.local:8080``), whose
   ``api_listener`` holds an HttpConnectionManager with the route configuration inline or over RDS, and
   HTTP filters ending with the router;
2. that RouteConfiguration, whose virtual host domains must match the target;
3. the Cluster the route names (EDS over ADS; ROUND_ROBIN or RING_HASH only);
4. its ClusterLoadAssignment, where every locality needs a ``load_balancing_weight`` above 0.

Istio's gRPC generator names the route configuration and the cluster ``outbound|<port>||<host>``; the
builders here do the same unless told otherwise::

    target = "echo.default.svc.cluster.local:8080"
    snapshot = target_snapshot(target, [("127.0.0.1", 50051)])
    cache.set_snapshot(node_id, snapshot)
    channel = grpc.insecure_channel(f"xds:///{target}")  # with GRPC_XDS_BOOTSTRAP set
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, base_pb2, health_check_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.listener.v3 import api_listener_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from google.protobuf import any_pb2, wrappers_pb2
from google.protobuf.message import Message

from mesh_xds.errors import InvalidResourceError
from mesh_xds.generate.names import outbound_cluster
from mesh_xds.snapshot import Snapshot
from mesh_xds.testing.resources import ads_config_source

__all__ = [
    "GRPC_LB_POLICIES",
    "XDS_SCHEME",
    "api_listener",
    "grpc_cluster",
    "grpc_load_assignment",
    "grpc_route_configuration",
    "listener_name",
    "outbound_cluster_name",
    "target_resources",
    "target_snapshot",
]

XDS_SCHEME: Final = "xds:///"
"""The scheme of the channel targets that grpcio resolves over xDS."""
GRPC_LB_POLICIES: Final = frozenset({"ROUND_ROBIN", "RING_HASH"})
"""The cluster ``lb_policy`` values a gRPC client accepts."""
_ROUTER: Final = "envoy.filters.http.router"


def _any(message: Any) -> Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def _text(what: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidResourceError(f"{what} {value!r} is not a non-empty string")
    return value


def _port(what: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
        raise InvalidResourceError(f"{what} {value!r} is not a port number (1-65535)")
    return value


def listener_name(target: str) -> str:
    """The Listener name a channel on ``target`` asks for: the target without its ``xds:///`` scheme.

    Raises:
        InvalidResourceError: ``target`` is empty, or has another scheme or an authority (``xds://host/``).
    """
    _text("target", target)
    name = target.removeprefix(XDS_SCHEME)
    if not name or "://" in name or name.startswith("/"):
        raise InvalidResourceError(f"target {target!r} is not 'name' or 'xds:///name'")
    return name


def _split_host_port(name: str) -> tuple[str, int | None]:
    """``host:port`` (or ``[v6]:port``) into its parts; a name without a numeric port has none."""
    host, colon, port = name.rpartition(":")
    if not colon or not host or not port.isdigit():
        return name, None
    if host.startswith("["):
        if not host.endswith("]"):
            return name, None
        host = host[1:-1]
    elif ":" in host:
        return name, None
    return host, _port("target port", int(port))


def outbound_cluster_name(host: str, port: int, *, subset: str = "") -> str:
    """Istio's name for a service port's cluster, which its gRPC generator also gives the route configuration.

    It is :func:`mesh_xds.generate.names.outbound_cluster`, with its arguments checked::

        outbound_cluster_name("echo.default.svc.cluster.local", 8080)  # 'outbound|8080||echo.default.svc...'

    Raises:
        InvalidResourceError: the host is empty or the port is out of range.
    """
    return outbound_cluster(_port("port", port), _text("host", host), subset)


def api_listener(
    target: str, *, route_name: str = "", route_configuration: Message | None = None, stat_prefix: str = ""
) -> Message:
    """The Listener a gRPC channel on ``target`` asks for: an ``api_listener`` HttpConnectionManager.

    Args:
        target: the channel's target, with or without ``xds:///``; the Listener is named after it.
        route_name: the RouteConfiguration to fetch over ADS (RDS).
        route_configuration: a RouteConfiguration to hold inline instead.
        stat_prefix: the manager's ``stat_prefix`` (gRPC ignores it; Envoy requires it), the name by default.

    Raises:
        InvalidResourceError: the target is malformed, or not exactly one of ``route_name`` and
            ``route_configuration`` is given.
    """
    name = listener_name(target)
    if bool(route_name) == (route_configuration is not None):
        raise InvalidResourceError(
            f"listener {name!r}: give exactly one of route_name and route_configuration, "
            f"not route_name={route_name!r} with route_configuration={route_configuration!r}"
        )
    manager = hcm_pb2.HttpConnectionManager(
        stat_prefix=stat_prefix or name,
        http_filters=[hcm_pb2.HttpFilter(name=_ROUTER, typed_config=_any(router_pb2.Router()))],
    )
    if route_configuration is not None:
        if not isinstance(route_configuration, route_pb2.RouteConfiguration):
            raise InvalidResourceError(
                f"listener {name!r}: route_configuration is a {type(route_configuration).__name__}, "
                "not a RouteConfiguration"
            )
        manager.route_config.CopyFrom(route_configuration)
    else:
        manager.rds.CopyFrom(
            hcm_pb2.Rds(route_config_name=_text("route_name", route_name), config_source=ads_config_source())
        )
    listener: Message = listener_pb2.Listener(
        name=name, api_listener=api_listener_pb2.ApiListener(api_listener=_any(manager))
    )
    return listener


def grpc_route_configuration(name: str, domains: Sequence[str], clusters: str | Mapping[str, int]) -> Message:
    """A RouteConfiguration with one virtual host sending every call to one cluster, or split by weight.

    Args:
        name: the configuration's name.
        domains: the virtual host's domains; one must match the channel's target (``host:port`` or ``host``).
        clusters: a cluster name, or cluster names with their weights (each above 0).

    Raises:
        InvalidResourceError: no domain, no cluster, or a weight that is not a positive integer.
    """
    _text("route configuration name", name)
    if isinstance(domains, str) or not domains:
        raise InvalidResourceError(f"route configuration {name!r}: domains {domains!r} is not a list of domains")
    for domain in domains:
        _text("domain", domain)
    if isinstance(clusters, str):
        action = route_components_pb2.RouteAction(cluster=_text("cluster", clusters))
    else:
        if not clusters:
            raise InvalidResourceError(f"route configuration {name!r}: no cluster to route to")
        weighted = []
        for cluster, weight in clusters.items():
            if isinstance(weight, bool) or not isinstance(weight, int) or weight <= 0:
                raise InvalidResourceError(f"cluster {cluster!r}: weight {weight!r} is not a positive integer")
            weighted.append(
                route_components_pb2.WeightedCluster.ClusterWeight(
                    name=_text("cluster", cluster), weight=wrappers_pb2.UInt32Value(value=weight)
                )
            )
        action = route_components_pb2.RouteAction(
            weighted_clusters=route_components_pb2.WeightedCluster(clusters=weighted)
        )
    route = route_components_pb2.Route(match=route_components_pb2.RouteMatch(prefix="/"), route=action)
    host = route_components_pb2.VirtualHost(name=domains[0], domains=list(domains), routes=[route])
    configuration: Message = route_pb2.RouteConfiguration(name=name, virtual_hosts=[host])
    return configuration


def grpc_cluster(name: str, *, service_name: str = "", lb_policy: str = "ROUND_ROBIN") -> Message:
    """An EDS Cluster whose load assignment comes over ADS (named ``service_name``, else the cluster's name).

    Raises:
        InvalidResourceError: an empty name, or an ``lb_policy`` gRPC does not accept.
    """
    _text("cluster name", name)
    if lb_policy not in GRPC_LB_POLICIES:
        raise InvalidResourceError(
            f"cluster {name!r}: lb_policy {lb_policy!r} is not one gRPC accepts ({', '.join(sorted(GRPC_LB_POLICIES))})"
        )
    cluster: Message = cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.EDS,
        lb_policy=cluster_pb2.Cluster.LbPolicy.Value(lb_policy),
        eds_cluster_config=cluster_pb2.Cluster.EdsClusterConfig(
            eds_config=ads_config_source(), service_name=service_name
        ),
    )
    return cluster


def grpc_load_assignment(
    name: str, endpoints: Iterable[tuple[str, int]], *, weight: int = 1, region: str = "", zone: str = ""
) -> Message:
    """A ClusterLoadAssignment with one weighted locality holding healthy ``(host, port)`` endpoints.

    gRPC drops a locality without a ``load_balancing_weight``, so the locality always has one.

    Raises:
        InvalidResourceError: an empty name, a bad endpoint, or a weight that is not a positive integer.
    """
    _text("load assignment name", name)
    if isinstance(weight, bool) or not isinstance(weight, int) or weight <= 0:
        raise InvalidResourceError(f"load assignment {name!r}: weight {weight!r} is not a positive integer")
    lb_endpoints = []
    for endpoint in endpoints:
        if not isinstance(endpoint, tuple) or len(endpoint) != 2:
            raise InvalidResourceError(f"load assignment {name!r}: endpoint {endpoint!r} is not (host, port)")
        host, port = endpoint
        address = address_pb2.Address(
            socket_address=address_pb2.SocketAddress(
                address=_text("endpoint host", host), port_value=_port("endpoint port", port)
            )
        )
        lb_endpoints.append(
            endpoint_components_pb2.LbEndpoint(
                endpoint=endpoint_components_pb2.Endpoint(address=address), health_status=health_check_pb2.HEALTHY
            )
        )
    locality = endpoint_components_pb2.LocalityLbEndpoints(
        locality=base_pb2.Locality(region=region, zone=zone),
        lb_endpoints=lb_endpoints,
        load_balancing_weight=wrappers_pb2.UInt32Value(value=weight),
    )
    assignment: Message = endpoint_pb2.ClusterLoadAssignment(cluster_name=name, endpoints=[locality])
    return assignment


def target_resources(
    target: str, endpoints: Iterable[tuple[str, int]], *, cluster: str = "", lb_policy: str = "ROUND_ROBIN"
) -> list[Message]:
    """The four resources that let a channel on ``target`` reach ``endpoints``: LDS, RDS, CDS and EDS.

    The route configuration and the cluster are named ``cluster``, by default Istio's
    ``outbound|<port>||<host>`` for a ``host:port`` target (else the target's name); the virtual host
    matches the target with and without its port.

    Raises:
        InvalidResourceError: the target or an endpoint is malformed, or ``lb_policy`` is not one gRPC accepts.
    """
    name = listener_name(target)
    host, port = _split_host_port(name)
    if not cluster:
        cluster = outbound_cluster_name(host, port) if port is not None else name
    domains = [name] if port is None else [name, host]
    return [
        api_listener(name, route_name=cluster),
        grpc_route_configuration(cluster, domains, cluster),
        grpc_cluster(cluster, lb_policy=lb_policy),
        grpc_load_assignment(cluster, endpoints),
    ]


def target_snapshot(
    target: str, endpoints: Iterable[tuple[str, int]], *, cluster: str = "", lb_policy: str = "ROUND_ROBIN"
) -> Snapshot:
    """A consistent snapshot of :func:`target_resources` for one target.

    Raises:
        InvalidResourceError: the target or an endpoint is malformed, or ``lb_policy`` is not one gRPC accepts.
    """
    return Snapshot.from_messages(target_resources(target, endpoints, cluster=cluster, lb_policy=lb_policy))
