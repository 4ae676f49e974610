"""The Gateways of a router proxy, merged per port as Istio's ``mergeGateways`` does (private).

The Gateways whose ``selector`` matches the proxy's labels (in any namespace; an empty selector matches every
gateway proxy) are taken oldest first and merged into one logical gateway:

* plain-text HTTP servers on one port share one listener and one route configuration ``http.<port>``;
* TLS servers (HTTPS, TLS) on one port share one listener and are told apart by SNI; each terminated HTTPS
  server has a route configuration of its own, ``https.<port>.<portName>.<gateway>.<namespace>``;
* a server with ``bind`` gets a listener (and route names) of its own for that address.

A server that cannot be merged is left out and logged, as Istio does: another protocol on a plain-text
port, a TLS server on a plain-text HTTP port (or the reverse), a TLS host already served on that port and
address, an HTTPS route name used twice.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any, final

import attrs

from mesh_config.networking.gateway import Gateway, Port, Server
from mesh_config.networking.server_tls import ServerTLSMode, ServerTLSSettings
from mesh_model import ConfigKey, Hostname, InvalidHostError, MeshLocation, Protocol, Service
from mesh_xds.generate import names
from mesh_xds.generate.context import GenerationContext

__all__ = [
    "GatewayServer",
    "MergedGateway",
    "MergedPort",
    "auto_passthrough_services",
    "merge_gateways",
    "selected_gateways",
]

_log = logging.getLogger("mesh_xds.generate")

_GATEWAY_KIND = "Gateway"
_PASSTHROUGH = frozenset({ServerTLSMode.PASSTHROUGH, ServerTLSMode.AUTO_PASSTHROUGH})


@final
@attrs.frozen
class GatewayServer:
    """One server of a Gateway, as merged.

    Attributes:
        gateway: the key of the Gateway it belongs to.
        server: the server as written.
        port: its port.
        hosts: its hosts, namespaces resolved: ``<namespace>/<host>`` (``./`` becomes the Gateway's namespace)
            or a bare ``<host>`` for any namespace (``*/`` dropped; ``*/*`` becomes ``*``).
        route_name: its route configuration (HTTP and terminated HTTPS servers), else empty.
    """

    gateway: ConfigKey
    server: Server
    port: Port
    hosts: tuple[str, ...]
    route_name: str

    @property
    def gateway_name(self) -> str:
        """``<namespace>/<name>`` of the Gateway, as VirtualServices name it."""
        return f"{self.gateway.namespace}/{self.gateway.name}"

    @property
    def protocol(self) -> Protocol:
        """The server's protocol (``UNSUPPORTED`` when unknown)."""
        return Protocol.lookup(self.port.protocol) or Protocol.UNSUPPORTED

    @property
    def tls(self) -> ServerTLSSettings | None:
        """The server's TLS settings."""
        return self.server.tls

    @property
    def is_passthrough(self) -> bool:
        """TLS passed through unterminated (``PASSTHROUGH`` or ``AUTO_PASSTHROUGH``)."""
        return self.tls is not None and self.tls.mode in _PASSTHROUGH

    @property
    def is_http(self) -> bool:
        """Served by an HTTP connection manager: an HTTP port, or HTTPS with TLS terminated."""
        return self.protocol.is_http or self.is_https_terminated

    @property
    def is_https_terminated(self) -> bool:
        """An HTTPS server whose TLS the gateway terminates."""
        return self.protocol is Protocol.HTTPS and self.tls is not None and not self.is_passthrough

    @property
    def is_tls_server(self) -> bool:
        """A non-HTTP server with TLS settings (HTTPS or TLS, terminated or passed through)."""
        return self.tls is not None and not self.protocol.is_http

    @property
    def sni_hosts(self) -> tuple[str, ...]:
        """The SNI names the server answers: its hosts without namespace, sorted; empty without TLS."""
        if self.tls is None:
            return ()
        return tuple(sorted({host.rpartition("/")[2] for host in self.hosts}))


@final
@attrs.frozen
class MergedPort:
    """The servers that share one port (and bind address).

    Attributes:
        number: the port.
        protocol: the protocol of the first server on it.
        bind: the address its listener binds to; empty for the proxy's address.
        servers: the servers, in merge order.
        route_name: the route configuration of a plain-text HTTP port, else empty.
    """

    number: int
    protocol: Protocol
    bind: str
    servers: tuple[GatewayServer, ...]
    route_name: str = ""


@final
@attrs.frozen
class MergedGateway:
    """Every Gateway of a proxy, merged.

    Attributes:
        ports: the merged ports, in the order they were first seen.
        servers_by_route: the servers of each route configuration name.
    """

    ports: tuple[MergedPort, ...] = ()
    servers_by_route: Mapping[str, tuple[GatewayServer, ...]] = attrs.field(factory=dict)

    @property
    def auto_passthrough_hosts(self) -> frozenset[str]:
        """The hosts of ``AUTO_PASSTHROUGH`` servers (Istio's ``AutoPassthroughSNIHosts``).

        The services they cover need SNI-DNAT clusters ``outbound_.<port>_.<subset>_.<host>``.
        """
        return frozenset(
            host
            for port in self.ports
            for server in port.servers
            if server.tls is not None and server.tls.mode is ServerTLSMode.AUTO_PASSTHROUGH
            for host in server.sni_hosts
        )

    @property
    def gateways(self) -> tuple[ConfigKey, ...]:
        """The keys of the Gateways that contributed servers, sorted."""
        return tuple(sorted({server.gateway for port in self.ports for server in port.servers}))


def selected_gateways(ctx: GenerationContext) -> list[Any]:
    """The Gateway resources that select the proxy, oldest first (creation time, namespace, name)."""
    if not ctx.is_gateway:
        return []
    labels = ctx.labels
    chosen = [
        resource
        for resource in ctx.push.resources
        if resource.kind == _GATEWAY_KIND
        and isinstance(resource.spec, Gateway)
        and all(labels.get(key) == value for key, value in resource.spec.selector.items())
    ]
    return sorted(chosen, key=lambda r: (r.metadata.creation_timestamp, r.namespace, r.name))


def merge_gateways(ctx: GenerationContext) -> MergedGateway:
    """Merge the Gateways that select the proxy (nothing for a sidecar)."""
    merger = _Merger()
    for resource in selected_gateways(ctx):
        for server in resource.spec.servers:
            merger.add(resource, server)
    return merger.result()


def auto_passthrough_services(ctx: GenerationContext, hosts: Iterable[str]) -> list[Service]:
    """The services an ``AUTO_PASSTHROUGH`` server with ``hosts`` exposes, sorted by host name.

    Those the proxy sees that are inside the mesh and whose host one of ``hosts`` covers; each gets SNI-DNAT
    filter chains on the gateway and SNI-DNAT clusters ``outbound_.<port>_.<subset>_.<host>``.
    """
    exposed = []
    for text in hosts:
        try:
            exposed.append(Hostname.parse(text))
        except InvalidHostError:
            continue
    return [
        service
        for service in sorted(ctx.push.visible_services(ctx.workload), key=lambda s: s.hostname.value)
        if service.location is not MeshLocation.MESH_EXTERNAL and any(h.covers(service.hostname) for h in exposed)
    ]


def _sanitize(hosts: Iterable[str], namespace: str) -> tuple[str, ...]:
    """Istio's ``sanitizeServerHostNamespace``: ``./h`` -> ``<ns>/h``, ``*/h`` -> ``h``, ``*/*`` -> ``*``."""
    out: list[str] = []
    for host in hosts:
        scope, slash, name = host.partition("/")
        if not slash:
            out.append(host)
        elif scope == ".":
            out.append(f"{namespace}/{name}")
        elif scope == "*":
            if name == "*":
                return ("*",)
            out.append(name)
        else:
            out.append(host)
    return tuple(out)


def _route_name(server: Server, port: Port, gateway: ConfigKey) -> str:
    """Istio's ``gatewayRDSRouteName``: ``http.<port>``, ``https.<port>.<name>.<gw>.<ns>``, or empty."""
    protocol = Protocol.lookup(port.protocol) or Protocol.UNSUPPORTED
    if protocol.is_http:
        return names.gateway_http_route(port.number, server.bind)
    passthrough = server.tls is not None and server.tls.mode in _PASSTHROUGH
    if protocol is Protocol.HTTPS and not passthrough:
        return names.gateway_https_route(port.number, port.name, gateway.name, gateway.namespace, server.bind)
    return ""


def _can_merge(current: Protocol, new: Protocol) -> bool:
    """Istio's ``canMergeProtocols``: HTTP servers share a plain-text port."""
    return (current.is_http or current is new) and new.is_http


@final
class _Merger:
    """The state of one merge: Istio's ``mergeGateways`` loop, one server at a time."""

    def __init__(self) -> None:
        self._order: list[tuple[int, Protocol, str]] = []
        self._servers: dict[tuple[int, Protocol, str], list[GatewayServer]] = {}
        self._route_of_port: dict[tuple[int, Protocol, str], str] = {}
        self._plaintext: dict[int, tuple[int, Protocol, str]] = {}
        self._by_route: dict[str, list[GatewayServer]] = {}
        self._tls_hosts: dict[int, dict[str, str]] = {}

    def _skip(self, entry: GatewayServer, why: str) -> None:
        _log.info(
            "gateway %s: skipping server on port %s (%d/%s): %s",
            entry.gateway_name,
            entry.port.name,
            entry.port.number,
            entry.port.protocol,
            why,
        )

    def _append(self, key: tuple[int, Protocol, str], entry: GatewayServer) -> None:
        if key not in self._servers:
            self._servers[key] = []
            self._order.append(key)
        self._servers[key].append(entry)

    def add(self, resource: Any, server: Server) -> None:
        port = server.port
        if port is None:
            return
        key = resource.key
        entry = GatewayServer(key, server, port, _sanitize(server.hosts, key.namespace), _route_name(server, port, key))
        if server.tls is not None and not self._claim_tls_hosts(entry):
            return
        slot = (port.number, entry.protocol, server.bind)
        if not any(seen[0] == port.number for seen in self._servers):
            self._add_first(slot, entry)
        elif port.number in self._plaintext:
            self._add_plaintext(slot, entry)
        else:
            self._add_tls(slot, entry)

    def _claim_tls_hosts(self, entry: GatewayServer) -> bool:
        """Istio's ``CheckDuplicates``: a TLS host is served once per port and bind address."""
        known = self._tls_hosts.setdefault(entry.port.number, {})
        bind = entry.server.bind
        duplicates = [host for host in entry.hosts if host in known and known[host] == bind]
        if duplicates:
            self._skip(entry, f"duplicate TLS hosts {', '.join(duplicates)}")
            return False
        known.update(dict.fromkeys(entry.hosts, bind))
        return True

    def _add_first(self, slot: tuple[int, Protocol, str], entry: GatewayServer) -> None:
        if not entry.is_tls_server:
            self._plaintext[entry.port.number] = slot
        if entry.is_http:
            self._by_route[entry.route_name] = [entry]
        self._append(slot, entry)
        self._route_of_port[slot] = entry.route_name

    def _add_plaintext(self, slot: tuple[int, Protocol, str], entry: GatewayServer) -> None:
        current = self._plaintext[entry.port.number]
        same_bind = current[2] == entry.server.bind
        if same_bind and not _can_merge(entry.protocol, current[1]):
            self._skip(entry, f"conflicts with the {current[1].value} server already on that port")
            return
        if same_bind and not entry.route_name:
            self._skip(entry, "no route name for it")
            return
        target = current if same_bind else slot
        self._append(target, entry)
        if not same_bind:
            self._route_of_port[target] = entry.route_name
        if entry.route_name:
            self._by_route.setdefault(entry.route_name, []).append(entry)

    def _add_tls(self, slot: tuple[int, Protocol, str], entry: GatewayServer) -> None:
        if entry.is_http:
            if not entry.route_name:
                self._skip(entry, "no route name for it")
                return
            if entry.route_name in self._by_route:
                self._skip(entry, f"route {entry.route_name} is already used (non-unique HTTPS port name)")
                return
        new_bind = not any(k[0] == entry.port.number and k[2] == entry.server.bind for k in self._servers)
        if entry.tls is None and not new_bind:
            self._skip(entry, "a plain-text server on a TLS port")
            return
        if entry.is_http:
            self._by_route[entry.route_name] = [entry]
        self._append(slot, entry)

    def result(self) -> MergedGateway:
        ports = tuple(
            MergedPort(
                number=slot[0],
                protocol=self._servers[slot][0].protocol,
                bind=slot[2],
                servers=tuple(self._servers[slot]),
                route_name=self._route_of_port.get(slot, ""),
            )
            for slot in self._order
        )
        return MergedGateway(ports, {name: tuple(servers) for name, servers in self._by_route.items()})
