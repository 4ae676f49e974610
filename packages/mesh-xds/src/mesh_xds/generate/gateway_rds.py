"""RDS for gateways: the route configurations of the HTTP and terminated HTTPS servers of a gateway proxy.

The Gateways whose ``selector`` matches the proxy's labels are merged by port, as Istio does: every plain
HTTP server on a port shares the configuration ``http.<port>``; each HTTPS server that terminates TLS gets
``https.<port>.<portName>.<gateway>.<namespace>``. A configuration holds one virtual host
``<host>:<port>`` per host that both a server and a VirtualService bound to its gateway name (hosts of
the server narrowed to the VirtualService's namespace by their ``namespace/`` part), with the routes of
every such VirtualService, oldest first and catch-all routes last. Hosts with identical routes share a
virtual host; with no host at all, a ``blackhole:<port>`` virtual host answers 404.

Example::

    from mesh_xds.generate.gateway_rds import build_gateway_routes

    for configuration in build_gateway_routes(ctx):  # ctx.proxy is a router
        print(configuration.name)  # http.80, https.443.https.bookinfo-gateway.default, ...
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, final

from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from google.protobuf import wrappers_pb2
from google.protobuf.message import Message

from mesh_config.index import ResolvedVirtualService
from mesh_config.meta import Resource
from mesh_config.networking.virtual_service import Destination
from mesh_model import ConfigKey, Hostname, InvalidHostError, Service
from mesh_xds.generate._gateway_merge import GatewayServer, merge_gateways
from mesh_xds.generate._route import (
    MAX_DIRECT_RESPONSE_BODY,
    RouteOptions,
    consistent_hash_for,
    is_catch_all,
    requested_names,
    virtual_service_routes,
)
from mesh_xds.generate.context import GenerationContext
from mesh_xds.generate.names import virtual_host_name

__all__ = ["build_gateway_routes", "gateway_route_names"]


def gateway_route_names(ctx: GenerationContext) -> tuple[str, ...]:
    """The names of a gateway proxy's route configurations, sorted (what its listeners ask RDS for)."""
    return tuple(sorted(merge_gateways(ctx).servers_by_route))


def build_gateway_routes(ctx: GenerationContext, names: Iterable[str] | None = None) -> list[Message]:
    """The route configurations of a gateway proxy, sorted by name.

    Args:
        ctx: the gateway proxy and its push.
        names: the configurations asked for; every one of its servers' when ``None``. A name no server
            has gets an empty configuration (Envoy may still ask for it while a listener drains).

    Raises:
        TypeError: ``names`` is a string, or holds something other than strings.
    """
    servers = merge_gateways(ctx).servers_by_route
    builder = _GatewayRoutes(ctx)
    wanted = requested_names(names, servers)
    out: list[Message] = []
    for name in wanted:
        if name in servers:
            out.append(builder.route_configuration(name, servers[name]))
        else:
            empty: Message = route_pb2.RouteConfiguration(
                name=name, validate_clusters=wrappers_pb2.BoolValue(value=False)
            )
            out.append(empty)
    return out


def _server_hosts(server: GatewayServer, namespace: str) -> list[Hostname]:
    """``NamesForNamespace``: the server's hosts that a VirtualService of ``namespace`` may bind."""
    out = []
    for text in server.hosts:
        host_namespace, _, host = text.rpartition("/")
        if host_namespace not in ("", "*", namespace):
            continue
        try:
            out.append(Hostname.parse(host))
        except InvalidHostError:
            continue
    return out


def _intersection(server_hosts: list[Hostname], vs_hosts: Iterable[Hostname]) -> list[Hostname]:
    """For each pair of hosts that overlap, the narrower one (``Names.Intersection``)."""
    out: list[Hostname] = []
    for mine in server_hosts:
        for theirs in vs_hosts:
            narrower = mine if theirs.covers(mine) else theirs if mine.covers(theirs) else None
            if narrower is not None and narrower not in out:
                out.append(narrower)
    return out


@final
class _VirtualHost:
    def __init__(self, host: str, port: int, routes: list[Any]) -> None:
        self.name = virtual_host_name(host, port)
        self.domains = [host]
        self.routes = list(routes)
        self.require_tls = False


@final
class _GatewayRoutes:
    """Builds a gateway's route configurations, reading each gateway's VirtualServices once."""

    def __init__(self, ctx: GenerationContext) -> None:
        self.ctx = ctx
        self._virtual_services: dict[str, tuple[ResolvedVirtualService, ...]] = {}
        self._routes: dict[tuple[str, ConfigKey, int, bool], list[Any]] = {}
        self._resources: dict[ConfigKey, Resource[Any]] | None = None

    def _resource_for(self, key: ConfigKey) -> Resource[Any] | None:
        if self._resources is None:
            self._resources = {resource.key: resource for resource in self.ctx.push.resources}
        return self._resources.get(key)

    def _service_lookup(self, vs: ResolvedVirtualService) -> Callable[[Hostname], Service | None]:
        """A destination's service: the VirtualService's namespace's when visible, else the proxy's view."""

        def lookup(host: Hostname) -> Service | None:
            own = self.ctx.push.services.lookup(host, vs.resource.namespace).value
            if own is not None and own.namespace == vs.resource.namespace and own.is_visible_from(self.ctx.namespace):
                return own
            return self.ctx.push.lookup_service(host, self.ctx.workload).value

        return lookup

    def _routes_for(self, gateway: str, vs: ResolvedVirtualService, port: int, tls: bool) -> list[Any]:
        key = (gateway, vs.key, port, tls)
        if key not in self._routes:
            service_for = self._service_lookup(vs)

            def hash_for(host: Hostname, destination: Destination) -> Any:
                number = destination.port.number if destination.port is not None and destination.port.number else None
                return consistent_hash_for(self.ctx, service_for(host), number, destination.subset)

            options = RouteOptions(
                port=port,
                gateways=frozenset({gateway}),
                labels=self.ctx.labels,
                namespace=self.ctx.namespace,
                service_for=service_for,
                hash_for=hash_for,
                resource_for=self._resource_for,
                default_retry=self.ctx.mesh.default_http_retry_policy,
                grpc=self.ctx.is_grpc,
                tls=tls,
            )
            self._routes[key] = virtual_service_routes(vs, options)
        return self._routes[key]

    def route_configuration(self, name: str, servers: Sequence[GatewayServer]) -> Message:
        hosts: dict[str, _VirtualHost] = {}
        for bound in servers:
            tls = bound.tls
            redirect = tls is not None and tls.https_redirect
            gateway = bound.gateway_name
            if gateway not in self._virtual_services:
                self._virtual_services[gateway] = self.ctx.push.virtual_services.for_gateway(
                    gateway, self.ctx.namespace
                )
            for vs in self._virtual_services[gateway]:
                matching = _intersection(_server_hosts(bound, vs.resource.namespace), vs.hosts)
                if not matching:
                    continue
                routes = self._routes_for(gateway, vs, bound.port.number, tls is not None)
                if not routes:
                    continue
                for host in matching:
                    current = hosts.get(host.value)
                    if current is None:
                        current = hosts[host.value] = _VirtualHost(host.value, bound.port.number, routes)
                    else:
                        current.routes.extend(routes)
                    current.require_tls = current.require_tls or redirect
            if redirect:
                for text in bound.hosts:
                    host_name = text.rpartition("/")[2].lower()
                    hosts.setdefault(host_name, _VirtualHost(host_name, bound.port.number, [])).require_tls = True
        port = servers[0].port.number
        if not hosts:
            virtual_hosts = [rc.VirtualHost(name=virtual_host_name("blackhole", port), domains=["*"])]
        else:
            virtual_hosts = [self._virtual_host(host) for host in _collapse(hosts)]
            virtual_hosts.sort(key=lambda host: host.name)
        configuration: Message = route_pb2.RouteConfiguration(
            name=name,
            virtual_hosts=virtual_hosts,
            validate_clusters=wrappers_pb2.BoolValue(value=False),
            ignore_port_in_host_matching=not self.ctx.is_grpc,
            max_direct_response_body_size_bytes=wrappers_pb2.UInt32Value(value=MAX_DIRECT_RESPONSE_BODY),
        )
        return configuration

    @staticmethod
    def _virtual_host(host: _VirtualHost) -> Any:
        routes = [route for route in host.routes if not is_catch_all(route)]
        routes += [route for route in host.routes if is_catch_all(route)]
        out = rc.VirtualHost(name=host.name, domains=host.domains, routes=routes, include_request_attempt_count=True)
        if host.require_tls:
            out.require_tls = rc.VirtualHost.ALL
        return out


def _collapse(hosts: dict[str, _VirtualHost]) -> list[_VirtualHost]:
    """Hosts whose routes are the very same share one virtual host, named after the first host by name."""
    out: list[_VirtualHost] = []
    by_routes: dict[tuple[tuple[int, ...], bool], _VirtualHost] = {}
    for name in sorted(hosts):
        host = hosts[name]
        key = (tuple(id(route) for route in host.routes), host.require_tls)
        first = by_routes.get(key)
        if first is not None:
            first.domains.extend(host.domains)
            continue
        by_routes[key] = host
        out.append(host)
    return out
