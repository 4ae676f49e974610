"""RDS: the HTTP route configurations Istio gives a sidecar, from VirtualServices and the services it sees.

A sidecar has one outbound HTTP listener per port (``0.0.0.0_9080``, or its outbound address in
``captureMode: NONE``) whose routes come from the route configuration named after the port (``9080``).
It holds one virtual host per service with an HTTP port there, named ``<host>:<port>``, whose domains are
every name a client may use for the service; its routes are those of the VirtualService for the host
(``gateways: [mesh]``, delegates merged), or a default route to ``outbound|<port>||<host>``. A last
virtual host catches every other host: ``allow_any`` to the ``PassthroughCluster`` (outbound traffic
policy ALLOW_ANY, the default) or ``block_all`` answering 502 (REGISTRY_ONLY).

Example::

    from mesh_xds.generate import GenerationContext
    from mesh_xds.generate.rds import build_routes

    for configuration in build_routes(GenerationContext(proxy, push, registry)):
        print(configuration.name, [host.name for host in configuration.virtual_hosts])

Inbound HTTP routes are inline in the inbound listeners: :func:`inbound_route_configuration`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final, final

import attrs
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from google.protobuf import wrappers_pb2
from google.protobuf.message import Message

from mesh_config.index import MESH_GATEWAY, ResolvedVirtualService
from mesh_config.meta import Resource
from mesh_config.networking.load_balancer import ConsistentHashLB
from mesh_config.networking.virtual_service import Destination, HTTPRetry
from mesh_model import ConfigKey, Hostname, Protocol, Service, ServicePort
from mesh_xds.generate import _route_features as features
from mesh_xds.generate._domains import domain, domain_with_port, service_domains, with_port
from mesh_xds.generate._route import (
    MAX_DIRECT_RESPONSE_BODY,
    RouteOptions,
    consistent_hash_for,
    destination_cluster,
    requested_names,
    resolve_host,
    virtual_service_routes,
)
from mesh_xds.generate._route_wire import DefaultRoute, route_configuration, virtual_host
from mesh_xds.generate.context import GenerationContext
from mesh_xds.generate.gateway_rds import build_gateway_routes
from mesh_xds.generate.names import (
    ALLOW_ANY_VIRTUAL_HOST,
    BLOCK_ALL_VIRTUAL_HOST,
    DEFAULT_ROUTE,
    PASSTHROUGH_CLUSTER,
    inbound_cluster,
    inbound_virtual_host,
    outbound_cluster,
)
from mesh_xds.resource import CLUSTER_TYPE, ROUTE_TYPE, Reference, pack, references
from mesh_xds.resource import Resource as XdsResource

__all__ = ["build_routes", "inbound_route_configuration", "is_http_port", "outbound_http_ports", "route_resources"]

_BLOCKED_STATUS: Final = 502
_HTTP: Final = Protocol.HTTP
_HTTP2: Final = Protocol.HTTP2
_GRPC: Final = Protocol.GRPC
_GRPC_WEB: Final = Protocol.GRPC_WEB


def is_http_port(port: ServicePort) -> bool:
    """True for the service ports that get HTTP routing: HTTP, HTTP2, GRPC and GRPC-Web."""
    protocol = port.protocol  # compared by identity: hashing an enum member is slow, and this runs per port
    return protocol is _HTTP or protocol is _HTTP2 or protocol is _GRPC or protocol is _GRPC_WEB


def outbound_http_ports(ctx: GenerationContext) -> tuple[int, ...]:
    """The ports of a sidecar's outbound HTTP listeners: every HTTP port of the services it sees, sorted."""
    services = ctx.push.visible_services(ctx.workload)
    return tuple(sorted({port.number for service in services for port in service.ports if is_http_port(port)}))


def build_routes(ctx: GenerationContext, names: Iterable[str] | None = None) -> list[Message]:
    """The route configurations of a proxy, sorted by name.

    For a sidecar: one per outbound HTTP port (:func:`outbound_http_ports`), or those named. A name
    ``<port>`` is the port's configuration; ``<host>:<port>`` holds only that service's virtual host,
    matching every domain (Istio's name for sniffed ports and proxyless gRPC clients); any other name gets
    an empty configuration, as Istio answers for a route it does not know. For a gateway: its servers'
    configurations (:func:`mesh_xds.generate.gateway_rds.build_gateway_routes`).

    Args:
        ctx: the proxy and its push.
        names: the route configurations asked for; all of them when ``None``.

    Raises:
        TypeError: ``names`` is a string, or holds something other than strings.
    """
    if ctx.is_gateway:
        return build_gateway_routes(ctx, names)
    builder = _SidecarRoutes(ctx)
    wanted = requested_names(names, (str(port) for port in outbound_http_ports(ctx)))
    return [builder.route_configuration(name) for name in wanted]


def route_resources(ctx: GenerationContext) -> list[XdsResource]:
    """Every route configuration of :func:`build_routes` as resources, sorted by name.

    The same content, written without building the messages of a sidecar's outbound configurations.
    """
    if ctx.is_gateway:
        return [pack(configuration) for configuration in build_gateway_routes(ctx, None)]
    builder = _SidecarRoutes(ctx)
    out = []
    for name in requested_names(None, (str(port) for port in outbound_http_ports(ctx))):
        data, found = builder.written(int(name))
        out.append(XdsResource.from_value(ROUTE_TYPE, name, data, found))
    return out


def inbound_route_configuration(port: int, *, hostname: str = "") -> Message:
    """The route configuration of a sidecar's inbound HTTP port, inline in its listener's filter chain.

    Named ``inbound|<port>||`` with one virtual host ``inbound|http|<port>`` that sends every request to
    the inbound cluster, without a timeout, retrying twice what was reset before reaching the application.

    Args:
        port: the inbound (workload) port.
        hostname: the service host the port serves, for the tracing operation ``<host>:<port>/*``.
    """
    action = rc.RouteAction(cluster=inbound_cluster(port), retry_policy=features.inbound_retry_policy())
    action.timeout.CopyFrom(features.duration(None))
    action.max_stream_duration.max_stream_duration.CopyFrom(features.duration(None))
    action.max_stream_duration.grpc_timeout_header_max.CopyFrom(features.duration(None))
    route = rc.Route(name=DEFAULT_ROUTE, match=rc.RouteMatch(prefix="/"), route=action)
    if hostname:
        route.decorator.operation = f"{hostname}:{port}/*"
    host = rc.VirtualHost(name=inbound_virtual_host(port), domains=["*"], routes=[route])
    configuration: Message = route_pb2.RouteConfiguration(
        name=inbound_cluster(port), virtual_hosts=[host], validate_clusters=wrappers_pb2.BoolValue(value=False)
    )
    return configuration


def _route_configuration(name: str, hosts: list[Any]) -> Message:
    configuration: Message = route_pb2.RouteConfiguration(
        name=name,
        virtual_hosts=hosts,
        validate_clusters=wrappers_pb2.BoolValue(value=False),
        max_direct_response_body_size_bytes=wrappers_pb2.UInt32Value(value=MAX_DIRECT_RESPONSE_BODY),
    )
    return configuration


_CONFIGURATION_TAIL: Final = _route_configuration("", []).SerializeToString(deterministic=True)
"""The fields of an outbound route configuration after its name and virtual hosts (1 and 2)."""
_VIRTUAL_HOST_TAIL: Final = rc.VirtualHost(include_request_attempt_count=True).SerializeToString(deterministic=True)
"""The fields of a virtual host after its name, domains and routes (1 to 3)."""


@final
@attrs.frozen
class _Group:
    """Virtual hosts to build with the same routes: a VirtualService's, or a service's default route.

    Attributes:
        routes: the VirtualService's routes, or None for the default route of the group's one service.
        hosts: the VirtualService's hosts that are no service on the port.
        services: the services whose virtual hosts take the routes.
    """

    routes: list[Any] | None
    hosts: list[str]
    services: list[Service]


@final
class _SidecarRoutes:
    """Builds a sidecar's outbound route configurations from one read of its push."""

    def __init__(self, ctx: GenerationContext) -> None:
        self.ctx = ctx
        self.visible = ctx.push.visible_services(ctx.workload)
        self.by_host = {service.hostname: service for service in self.visible}
        self.virtual_services = ctx.push.virtual_services_for(ctx.workload)
        self.scope = ctx.push.sidecar_scope(ctx.workload).value
        self.proxy_domain = ctx.proxy.dns_domain or f"{ctx.namespace}.svc.cluster.local"
        self._resources: dict[ConfigKey, Resource[Any]] | None = None
        self._hosts: dict[tuple[str, str], Hostname | None] = {}  # destination hosts resolved
        self._routed_by_port: dict[int, dict[Hostname, Service]] | None = None
        self._default_route = self._default_route_template()
        self._default_wire = DefaultRoute(self._default_route)

    def route_configuration(self, name: str) -> Message:
        if name.isdigit():
            configuration: Message = route_pb2.RouteConfiguration.FromString(self.written(int(name))[0])
            return configuration
        host, colon, number = name.rpartition(":")
        if colon and host and number.isdigit():
            hosts = [
                vhost
                for vhost in self.virtual_hosts(int(number))
                if name in vhost.domains or domain(host) in vhost.domains
            ]
            if len(hosts) == 1:
                del hosts[0].domains[:]
                hosts[0].domains.append("*")
            return _route_configuration(name, hosts)
        configuration = route_pb2.RouteConfiguration(name=name, validate_clusters=wrappers_pb2.BoolValue(value=False))
        return configuration

    def written(self, port: int) -> tuple[bytes, frozenset[Reference]]:
        """The serialized route configuration of an outbound port, and the clusters it refers to."""
        hosts = []
        found: set[Reference] = set()
        routes_of: dict[int, list[bytes]] = {}  # by group: a VirtualService's routes serve all its hosts
        for name, domains, group in self._virtual_hosts(port):
            routes = routes_of.get(id(group))
            if routes is None:
                routes = routes_of[id(group)] = self._written_routes(group, port, found)
            hosts.append(virtual_host(name, domains, routes, _VIRTUAL_HOST_TAIL))
        catch_all = self.catch_all()
        hosts.append(catch_all.SerializeToString(deterministic=True))
        found.update(references(catch_all))
        return route_configuration(str(port), hosts, _CONFIGURATION_TAIL), frozenset(found)

    def _written_routes(self, group: _Group, port: int, found: set[Reference]) -> list[bytes]:
        if group.routes is not None:
            found.update(references(rc.VirtualHost(routes=group.routes)))
            return [route.SerializeToString(deterministic=True) for route in group.routes]
        service = group.services[0]
        host = service.hostname.value
        cluster = outbound_cluster(port, host)
        found.add(Reference(CLUSTER_TYPE, cluster))
        hashing = features.hash_policy(consistent_hash_for(self.ctx, service, port))
        policy = None if hashing is None else hashing.SerializeToString(deterministic=True)
        return [self._default_wire.route(cluster, f"{host}:{port}/*", policy)]

    def _resource_for(self, key: ConfigKey) -> Resource[Any] | None:
        if self._resources is None:
            self._resources = {resource.key: resource for resource in self.ctx.push.resources}
        return self._resources.get(key)

    def _resolve(self, text: str, namespace: str) -> Hostname | None:
        key = (text, namespace)
        if key in self._hosts:
            return self._hosts[key]
        found = self._hosts[key] = resolve_host(text, namespace)
        return found

    def _service_for(self, host: Hostname) -> Service | None:
        return self.by_host.get(host) or self.ctx.push.lookup_service(host, self.ctx.workload).value

    def _hash_for(self, host: Hostname, destination: Destination) -> ConsistentHashLB | None:
        port = destination.port.number if destination.port is not None and destination.port.number else None
        return consistent_hash_for(self.ctx, self._service_for(host), port, destination.subset)

    def _default_retry(self) -> HTTPRetry | None:
        return self.ctx.mesh.default_http_retry_policy

    def options(self, port: int) -> RouteOptions:
        return RouteOptions(
            port=port,
            gateways=frozenset({MESH_GATEWAY}),
            labels=self.ctx.labels,
            namespace=self.ctx.namespace,
            service_for=self._service_for,
            hash_for=self._hash_for,
            resource_for=self._resource_for,
            default_retry=self._default_retry(),
            grpc=self.ctx.is_grpc,
            resolve=self._resolve,
        )

    def _default_route_template(self) -> Any:
        """What every default route has: its name, a match of every path, no timeout and Istio's retries."""
        action = rc.RouteAction()
        features.set_timeout(action, None, grpc=self.ctx.is_grpc)
        retry_policy = features.retry_policy(self._default_retry())
        if retry_policy is not None:
            action.retry_policy.CopyFrom(retry_policy)
        return rc.Route(name=DEFAULT_ROUTE, match=rc.RouteMatch(prefix="/"), route=action)

    def default_route(self, service: Service, port: int) -> Any:
        """``BuildDefaultHTTPOutboundRoute``: every path to the service's cluster, Istio's retries, no timeout."""
        route = rc.Route()
        route.CopyFrom(self._default_route)
        action = route.route
        action.cluster = outbound_cluster(port, service.hostname.value)
        hashing = features.hash_policy(consistent_hash_for(self.ctx, service, port))
        if hashing is not None:
            action.hash_policy.append(hashing)
        route.decorator.operation = f"{service.hostname.value}:{port}/*"
        return route

    def _routed(self, port: ServicePort) -> bool:
        """HTTP ports get virtual hosts; so do ports of unknown protocol for gRPC clients, which speak HTTP/2.

        A sidecar does not sniff: a port of unknown protocol is TCP to it, on the listener and the cluster alike.
        """
        return is_http_port(port) or (self.ctx.is_grpc and port.protocol.is_unsupported)

    def _routed_services(self) -> dict[int, dict[Hostname, Service]]:
        """The services with virtual hosts on each port (by host, in the order of :attr:`visible`)."""
        if self._routed_by_port is None:
            found: dict[int, dict[Hostname, Service]] = {}
            for service in self.visible:
                for service_port in service.ports:
                    if self._routed(service_port):
                        found.setdefault(service_port.number, {})[service.hostname] = service
            self._routed_by_port = found
        return self._routed_by_port

    def groups(self, port: int) -> list[_Group]:
        """``BuildSidecarVirtualHostWrapper``: VirtualService groups first, then default routes."""
        services = dict(self._routed_services().get(port, {}))
        candidates = list(self.virtual_services)
        if port != 80:
            wildcards = [name for name in services if name.is_wildcard]
            candidates = [vs for vs in candidates if _selects(vs, services, wildcards)]
        owners = _wildcard_owners(candidates, services)
        options = self.options(port)
        groups: list[_Group] = []
        claimed: set[Hostname] = set()
        for vs in candidates:
            routes = virtual_service_routes(vs, options)
            if not routes:
                continue
            extra, matched = _separate(vs, services, owners)
            if not matched and port != 80:
                continue
            groups.append(_Group(routes, extra, matched))
            claimed.update(service.hostname for service in matched)
        for host in sorted(services, key=lambda name: name.value):
            if host not in claimed:
                groups.append(_Group(None, [], [services[host]]))
        return groups

    def virtual_hosts(self, port: int) -> list[Any]:
        """The virtual hosts of a port, sorted by name, duplicate names and domains left out."""
        return [
            rc.VirtualHost(
                name=name,
                domains=domains,
                routes=group.routes if group.routes is not None else [self.default_route(group.services[0], port)],
                include_request_attempt_count=True,
            )
            for name, domains, group in self._virtual_hosts(port)
        ]

    def _virtual_hosts(self, port: int) -> list[tuple[str, list[str], _Group]]:
        """The name, domains and group of each virtual host of a port, sorted by name."""
        groups = self.groups(port)
        known = set()
        for group in groups:
            for service in group.services:
                known.add(service.hostname.value)
                known.add(domain_with_port(service.hostname.value, port))
        names: set[str] = set()
        used: set[str] = set()
        out = []
        for group in groups:
            entries: list[tuple[str, Service | None]] = [(host, None) for host in group.hosts]
            entries += [(service.hostname.value, service) for service in group.services]
            for hostname, backing in entries:
                name = domain_with_port(hostname, port)
                if name in names:
                    continue
                names.add(name)
                shortened: list[str] = []
                if backing is None:
                    domains = with_port([hostname], port)
                else:
                    domains, shortened = service_domains(backing, port, self.proxy_domain)
                kept = []
                for entry in domains:
                    lowered = entry.lower()
                    if lowered in used or (entry in known and entry in shortened):
                        continue
                    used.add(lowered)
                    kept.append(entry)
                if kept:
                    out.append((name, kept, group))
        out.sort(key=lambda host: host[0])
        return out

    def catch_all(self) -> Any:
        """``allow_any`` to the PassthroughCluster (or the Sidecar's egress proxy), or ``block_all`` (502)."""
        mode = self.scope.outbound_traffic_policy
        if not mode:
            policy = self.ctx.mesh.outbound_traffic_policy
            mode = policy.mode.value if policy is not None else "ALLOW_ANY"
        if mode != "ALLOW_ANY":
            blocked = rc.Route(
                name=BLOCK_ALL_VIRTUAL_HOST,
                match=rc.RouteMatch(prefix="/"),
                direct_response=rc.DirectResponseAction(status=_BLOCKED_STATUS),
            )
            return rc.VirtualHost(
                name=BLOCK_ALL_VIRTUAL_HOST, domains=["*"], routes=[blocked], include_request_attempt_count=True
            )
        cluster = PASSTHROUGH_CLUSTER
        sidecar = self.scope.sidecar
        egress = sidecar.spec.outbound_traffic_policy if sidecar is not None else None
        if egress is not None and egress.egress_proxy is not None:
            cluster = destination_cluster(egress.egress_proxy, None, None, 0)
        action = rc.RouteAction(cluster=cluster)
        action.timeout.CopyFrom(features.duration(None))
        action.max_grpc_timeout.CopyFrom(features.duration(None))
        passthrough = rc.Route(name=ALLOW_ANY_VIRTUAL_HOST, match=rc.RouteMatch(prefix="/"), route=action)
        return rc.VirtualHost(
            name=ALLOW_ANY_VIRTUAL_HOST, domains=["*"], routes=[passthrough], include_request_attempt_count=True
        )


def _selects(vs: ResolvedVirtualService, services: dict[Hostname, Service], wildcards: list[Hostname]) -> bool:
    """``selectVirtualServices``: a VirtualService applies on a port when one of its hosts is a service there.

    ``wildcards`` are the services' wildcard hosts.
    """
    for host in vs.hosts:
        if host in services:
            return True
        if host.is_wildcard:
            if any(host.matches(name) for name in services):
                return True
            continue
        # A plain host matches only itself (not a service here) and the wildcard hosts that cover it.
        if any(name.covers(host) for name in wildcards):
            return True
    return False


def _wildcard_owners(
    virtual_services: list[ResolvedVirtualService], services: dict[Hostname, Service]
) -> dict[Hostname, ConfigKey]:
    """For each service, the VirtualService with the most specific wildcard host covering it (oldest on ties)."""
    owners: dict[Hostname, tuple[tuple[int, int, str], ConfigKey]] = {}
    for vs in virtual_services:
        for host in vs.hosts:
            if not host.is_wildcard:
                continue
            for name in services:
                if not name.matches(host):
                    continue
                rank = host.specificity()
                current = owners.get(name)
                if current is None or rank < current[0]:
                    owners[name] = (rank, vs.key)
    return {name: key for name, (_, key) in owners.items()}


def _separate(
    vs: ResolvedVirtualService, services: dict[Hostname, Service], owners: dict[Hostname, ConfigKey]
) -> tuple[list[str], list[Service]]:
    """``separateVSHostsAndServices``: hosts that are not services on the port, and the services it routes."""
    extra: list[str] = []
    matched: list[Service] = []
    for host in vs.hosts:
        if not host.is_wildcard:
            if host in services:
                if services[host] not in matched:
                    matched.append(services[host])
            else:
                extra.append(host.value)
            continue
        found = False
        for name in sorted(services, key=lambda candidate: candidate.value):
            if not name.matches(host):
                continue
            found = True
            if owners.get(name) == vs.key and services[name] not in matched:
                matched.append(services[name])
        if not found:
            extra.append(host.value)
    return extra, matched
