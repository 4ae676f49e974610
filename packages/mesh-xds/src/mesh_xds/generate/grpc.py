"""Proxyless gRPC: the xDS resources Istio gives a gRPC client (node metadata ``GENERATOR=grpc``).

grpcio's own xDS client asks, over SotW ADS and always by name, for four kinds of resources:

* LDS, the channel's target (``reviews:9080`` for ``xds:///reviews:9080``): an ``api_listener`` HTTP
  connection manager (fault filter, router) fetching its routes over ADS;
* RDS, ``outbound|<port>||<host>``: the service's virtual host, with its VirtualService routes or one
  default route (:mod:`._grpc_routes`);
* CDS, ``outbound|<port>|<subset>|<host>``: EDS (LOGICAL_DNS for DNS ServiceEntries), ROUND_ROBIN or
  RING_HASH, one per DestinationRule subset (:mod:`._grpc_clusters`);
* EDS, the cluster's name: the shared EDS builder's assignments, every locality weighted and named (an
  endpoint without a locality gets an empty one: gRPC refuses an assignment without the field).

A listener is named exactly as the client asked: ``reviews:9080``, ``reviews.default:9080``,
``reviews.default.svc:9080`` and ``reviews.default.svc.cluster.local:9080`` all reach the same service, the
short names resolving as Kubernetes DNS resolves them from the proxy's namespace. A name without a port
picks the service's only port. Without names, every port of every service the proxy sees gets a listener
named ``<FQDN>:<port>``.

Example::

    from mesh_xds import Snapshot
    from mesh_xds.generate import GenerationContext
    from mesh_xds.generate.grpc import build_grpc_resources

    ctx = GenerationContext(proxy, push, registry)  # proxy.metadata.generator == "grpc"
    snapshot = Snapshot.from_messages(build_grpc_resources(ctx, listener_names=["reviews:9080"]))

Clients connect in plaintext: gRPC takes its certificates from the ``certificate_providers`` of its
bootstrap, not over SDS, so DestinationRule TLS settings and auto mTLS are not applied. Server-side
listeners (``xds.istio.io/grpc/lds/inbound/<address>``) are not generated: a name of that form gets nothing.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable, Mapping
from typing import Any, Final, final

import attrs
from envoy.config.core.v3 import config_source_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from google.protobuf.message import Message

from mesh_model import Service, ServicePort
from mesh_xds._text import describe
from mesh_xds.errors import InvalidResourceError
from mesh_xds.generate._grpc_clusters import eds_cluster, service_clusters
from mesh_xds.generate._grpc_routes import GrpcRoutes, route_configuration
from mesh_xds.generate._route_features import FAULT_FILTER
from mesh_xds.generate.context import GenerationContext
from mesh_xds.generate.eds import build_load_assignments, eds_cluster_names
from mesh_xds.generate.names import outbound_cluster, parse_outbound_cluster, virtual_host_name
from mesh_xds.resource import CLUSTER_TYPE, references

__all__ = [
    "SERVER_LISTENER_PREFIX",
    "build_grpc_clusters",
    "build_grpc_listeners",
    "build_grpc_resources",
    "build_grpc_routes",
]

_log = logging.getLogger("mesh_xds.generate")

SERVER_LISTENER_PREFIX: Final = "xds.istio.io/grpc/lds/inbound/"
"""The prefix of the listener names gRPC servers ask for (``server_listener_resource_name_template``)."""
_ROUTER: Final = "envoy.filters.http.router"
_SVC: Final = ".svc."


@final
@attrs.frozen
class _Target:
    """A listener to build: the name the client asked for, and the service port it resolved to."""

    name: str
    service: Service
    port: ServicePort

    @property
    def route_name(self) -> str:
        return outbound_cluster(self.port.number, self.service.hostname.value)


def _names(what: str, names: Iterable[str]) -> set[str]:
    """The names asked for, checked: a lone string or a name that is not a string is refused."""
    if isinstance(names, str) or not isinstance(names, Iterable):
        raise InvalidResourceError(f"{what} must be an iterable of names, not {describe(names)}")
    out = set()
    for name in names:
        if not isinstance(name, str):
            raise InvalidResourceError(f"{what}: {describe(name)} is not a name")
        out.add(name)
    return out


def _visible(ctx: GenerationContext) -> dict[str, Service]:
    """The services the proxy sees, by host name (wildcard hosts cannot be dialled, and are left out)."""
    out: dict[str, Service] = {}
    for service in ctx.push.visible_services(ctx.workload):
        if not service.hostname.is_wildcard:
            out.setdefault(service.hostname.value, service)
    return out


def _split(name: str) -> tuple[str, int | None]:
    """``host:port`` (or ``[v6]:port``) into its parts; a name without a numeric port has none."""
    host, colon, port = name.rpartition(":")
    if not colon or not host or not port.isdigit():
        return name, None
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        return name, None
    return host, int(port)


def _candidates(ctx: GenerationContext, host: str) -> list[str]:
    """The host names a name may mean from the proxy, as Kubernetes DNS searches them."""
    host = host.lower().removesuffix(".")
    dns_domain = ctx.proxy.dns_domain or f"{ctx.namespace}.svc.cluster.local"
    out = [host, f"{host}.{dns_domain}"]
    at = dns_domain.find(_SVC)
    if at >= 0:
        suffix = dns_domain[at + len(_SVC) :]
        out += [f"{host}.svc.{suffix}", f"{host}.{suffix}"]
    return out


def _port(service: Service, number: int | None) -> ServicePort | None:
    if number is not None:
        port = service.port(number)
        return port if port is not None and not port.protocol.is_udp else None
    ports = [port for port in service.ports if not port.protocol.is_udp]
    return ports[0] if len(ports) == 1 else None


def _resolve(ctx: GenerationContext, name: str, visible: Mapping[str, Service]) -> _Target | None:
    if name.startswith(SERVER_LISTENER_PREFIX):
        _log.debug("gRPC server listener %s is not generated", name)
        return None
    host, number = _split(name)
    service = next((visible[found] for found in _candidates(ctx, host) if found in visible), None)
    port = _port(service, number) if service is not None else None
    if service is None or port is None:
        _log.debug("gRPC listener %s names no service port visible from %s", name, ctx.proxy.id)
        return None
    return _Target(name, service, port)


def _targets(ctx: GenerationContext, names: Iterable[str] | None) -> list[_Target]:
    visible = _visible(ctx)
    if names is None:
        return [
            _Target(virtual_host_name(host, port.number), service, port)
            for host, service in visible.items()
            for port in service.ports
            if not port.protocol.is_udp
        ]
    found = (_resolve(ctx, name, visible) for name in _names("listener names", names))
    return [target for target in found if target is not None]


def _listener_address(service: Service) -> str:
    """The service's first VIP, else ``0.0.0.0`` (gRPC does not read it; Istio shows it)."""
    for address in service.addresses:
        try:
            ipaddress.ip_address(address)
        except ValueError:
            continue
        return address
    return "0.0.0.0"


def _listener(target: _Target) -> Message:
    manager = hcm_pb2.HttpConnectionManager(stat_prefix=target.name)
    fault = manager.http_filters.add(name=FAULT_FILTER)
    fault.typed_config.Pack(fault_pb2.HTTPFault())
    router = manager.http_filters.add(name=_ROUTER)
    router.typed_config.Pack(router_pb2.Router())
    manager.rds.route_config_name = target.route_name
    manager.rds.config_source.ads.SetInParent()
    manager.rds.config_source.resource_api_version = config_source_pb2.V3
    listener = listener_pb2.Listener(name=target.name)
    listener.address.socket_address.address = _listener_address(target.service)
    listener.address.socket_address.port_value = target.port.number
    listener.api_listener.api_listener.Pack(manager)
    out: Message = listener
    return out


def build_grpc_listeners(ctx: GenerationContext, names: Iterable[str] | None = None) -> list[Message]:
    """The api listeners of a gRPC client, sorted by name.

    Args:
        ctx: the proxy and its push.
        names: the listener names the client asked for (its channel targets without ``xds:///``); every
            ``<FQDN>:<port>`` of the services it sees when ``None``. A name that resolves to no visible
            service port gets no listener.

    Raises:
        InvalidResourceError: ``names`` is a lone string, or holds something other than strings.
    """
    listeners = {target.name: _listener(target) for target in _targets(ctx, names)}
    return [listeners[name] for name in sorted(listeners)]


def build_grpc_routes(ctx: GenerationContext, names: Iterable[str] | None = None) -> list[Message]:
    """The route configurations of a gRPC client, sorted by name.

    Args:
        ctx: the proxy and its push.
        names: the configurations asked for (``outbound|<port>||<host>``); one per port of every service
            the proxy sees when ``None``. A name of a service port the proxy does not see gets an empty
            configuration (calls fail at once rather than wait); a name of another form gets nothing.

    Raises:
        InvalidResourceError: ``names`` is a lone string, or holds something other than strings.
    """
    visible = _visible(ctx)
    if names is None:
        wanted = {target.route_name for target in _targets(ctx, None)}
    else:
        wanted = _names("route configuration names", names)
    resolved: dict[str, tuple[Service, ServicePort] | None] = {}
    for name in sorted(wanted):
        parsed = parse_outbound_cluster(name)
        if parsed is None:
            _log.debug("gRPC route configuration %s is not an outbound cluster name", name)
            continue
        number, _, host = parsed
        service = visible.get(host)
        port = _port(service, number) if service is not None else None
        resolved[name] = (service, port) if service is not None and port is not None else None
    builder = GrpcRoutes(ctx, (found[1].number for found in resolved.values() if found is not None))
    return [
        route_configuration(name, [] if found is None else [builder.virtual_host(*found)])
        for name, found in resolved.items()
    ]


def _all_clusters(ctx: GenerationContext) -> list[Any]:
    """Every port and subset cluster of the services the proxy sees, sorted by name."""
    visible = _visible(ctx)
    clusters: dict[str, Any] = {}
    for host in sorted(visible):
        for cluster in service_clusters(ctx, visible[host]):
            clusters.setdefault(cluster.name, cluster)
    return [clusters[name] for name in sorted(clusters)]


def build_grpc_clusters(ctx: GenerationContext, names: Iterable[str] | None = None) -> list[Message]:
    """The clusters of a gRPC client, sorted by name.

    Args:
        ctx: the proxy and its push.
        names: the clusters asked for; every port and subset of every service the proxy sees when ``None``.
            An outbound cluster name that no visible service defines (an unknown host or subset) gets an EDS
            cluster without endpoints, so that calls routed to it fail at once rather than wait.

    Raises:
        InvalidResourceError: ``names`` is a lone string, or holds something other than strings.
    """
    if names is None:
        return _all_clusters(ctx)
    visible = _visible(ctx)
    clusters: dict[str, Any] = {}
    parsed = {name: parse_outbound_cluster(name) for name in _names("cluster names", names)}
    wanted = {name for name, parts in parsed.items() if parts is not None}
    hosts = {parts[2] for parts in parsed.values() if parts is not None}
    for host in sorted(hosts & visible.keys()):
        for cluster in service_clusters(ctx, visible[host], wanted):
            clusters.setdefault(cluster.name, cluster)
    for name in wanted - clusters.keys():
        clusters[name] = eds_cluster(name)
    return [clusters[name] for name in sorted(clusters)]


def _weighted(assignments: list[Any]) -> list[Any]:
    """Give every locality holding endpoints a weight and a locality, even an empty one.

    gRPC drops a locality without a weight, and refuses a whole assignment where one has no ``locality`` field
    at all ("field not present"), as endpoints of a ServiceEntry have none.
    """
    for assignment in assignments:
        for locality in assignment.endpoints:
            locality.locality.SetInParent()
            if locality.lb_endpoints and not locality.load_balancing_weight.value:
                locality.load_balancing_weight.value = 1
    return assignments


def build_grpc_resources(ctx: GenerationContext, listener_names: Iterable[str] = ()) -> list[Message]:
    """Every resource a gRPC client may ask for: a consistent set for one :class:`~mesh_xds.Snapshot`.

    Listeners come first (sorted by name), then route configurations, clusters and load assignments. Every
    cluster a route names is there, and every EDS cluster has its assignment.

    Args:
        ctx: the proxy and its push.
        listener_names: the names the client dials besides the ``<FQDN>:<port>`` ones, which are always
            there (``reviews:9080`` for a channel on ``xds:///reviews:9080``).

    Raises:
        InvalidResourceError: ``listener_names`` is a lone string, or holds something other than strings.
    """
    targets = {target.name: target for target in _targets(ctx, None)}
    for target in _targets(ctx, listener_names):
        targets.setdefault(target.name, target)
    routes = build_grpc_routes(ctx, {target.route_name for target in targets.values()})
    clusters: dict[str, Any] = {cluster.name: cluster for cluster in _all_clusters(ctx)}
    named = {ref.name for route in routes for ref in references(route) if ref.type_url == CLUSTER_TYPE}
    for name in sorted(named - clusters.keys()):
        clusters[name] = eds_cluster(name)
    ordered = [clusters[name] for name in sorted(clusters)]
    assignments = _weighted(build_load_assignments(ctx, eds_cluster_names(ordered)))
    return [*(_listener(targets[name]) for name in sorted(targets)), *routes, *ordered, *assignments]
