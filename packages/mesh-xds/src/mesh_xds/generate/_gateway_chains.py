"""The filter chains of gateway servers (private): Istio's gateway HTTP, TCP, TLS and SNI-DNAT chains.

* a plain-text HTTP port: one chain, an HTTP connection manager with routes ``http.<port>`` from RDS;
* an HTTPS server terminating TLS: a chain matched on the server's hosts as SNI (``*`` matches any), with
  its TLS and an HTTP connection manager with routes ``https.<port>.<portName>.<gateway>.<namespace>``;
* a TCP server, or a TLS server terminating TLS: one chain proxying to the destinations of the first ``tcp``
  route of the VirtualServices bound to the Gateway (Istio's ``buildGatewayNetworkFiltersFromTCPRoutes``);
* a ``PASSTHROUGH`` server: a chain per ``tls`` route match of those VirtualServices, matched on its
  ``sniHosts``, proxying the TLS stream unopened (``buildGatewayNetworkFiltersFromTLSRoutes``);
* an ``AUTO_PASSTHROUGH`` server: a chain per visible service port (and DestinationRule subset) whose host
  the server exposes, matched on Istio's mTLS SNI ``outbound_.<port>_.<subset>_.<host>`` and ALPNs, proxying
  to the cluster of that name (SNI-DNAT, ``builtAutoPassthroughFilterChains``), without authorization.

A VirtualService applies to a server when it is bound to the server's Gateway, visible in the proxy's
namespace and shares a host with the server (a ``namespace/host`` server host only with VirtualServices of
that namespace). HTTP chains run the proxy's authentication and authorization filters (JWT, CUSTOM, RBAC) in
their connection manager; TCP and TLS chains run its network authorization filters before the TCP proxy,
whose destinations and DestinationRule settings are those of sidecars (:mod:`._tcp_routes`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any, Final, final

import attrs
from envoy.config.listener.v3 import listener_components_pb2
from google.protobuf import duration_pb2

from mesh_config.index import ResolvedVirtualService, resolve_gateway_name
from mesh_config.networking.server_tls import ServerTLSMode, ServerTLSSettings
from mesh_model import ConfigKey, Hostname, InvalidHostError, Protocol
from mesh_xds.generate import _ext_authz, names
from mesh_xds.generate._downstream_tls import transport_socket
from mesh_xds.generate._gateway_filters import (
    HTTP_CONNECTION_MANAGER,
    gateway_connection_manager,
    metadata,
    network_filter,
    tcp_proxy,
)
from mesh_xds.generate._gateway_merge import GatewayServer, MergedPort, auto_passthrough_services
from mesh_xds.generate._gateway_tls import gateway_tls_context
from mesh_xds.generate._tcp_routes import route_tcp_proxy
from mesh_xds.generate.context import GenerationContext
from mesh_xds.generate.jwt import build_jwt_filter
from mesh_xds.generate.rbac import build_http_rbac, build_network_rbac, trust_domains

__all__ = ["ChainBuilder", "FilterChain"]

_log = logging.getLogger("mesh_xds.generate")

_ISTIO_MTLS_ALPN: Final = ("istio", "istio-peer-exchange", "istio-http/1.0", "istio-http/1.1", "istio-h2")
"""The ALPNs of Istio mutual TLS: an AUTO_PASSTHROUGH chain takes only mesh traffic."""
_TRANSPORT_SOCKET_CONNECT_TIMEOUT: Final = 15
"""Seconds a downstream TLS handshake may take (Istio's defence against slow handshakes)."""


@final
@attrs.define
class FilterChain:
    """A filter chain being built, with what it matches on and where it came from."""

    filters: list[Any]
    sources: tuple[ConfigKey, ...]
    sni: Sequence[str] = ()
    alpn: Sequence[str] = ()
    tls: Any | None = None

    @property
    def match_key(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """What the chain matches on (server names, ALPNs); two chains of a listener must differ in it."""
        return (tuple(sorted(self.sni)) if "*" not in self.sni else (), tuple(self.alpn))

    @property
    def inspects_tls(self) -> bool:
        """The chain needs the TLS inspector (it matches on SNI or terminates TLS)."""
        return bool(self.sni) or self.tls is not None

    def build(self) -> Any:
        """The ``envoy.config.listener.v3.FilterChain``."""
        chain = listener_components_pb2.FilterChain(
            filters=self.filters,
            transport_socket_connect_timeout=duration_pb2.Duration(seconds=_TRANSPORT_SOCKET_CONNECT_TIMEOUT),
        )
        server_names, alpn = self.match_key
        chain.filter_chain_match.server_names.extend(server_names)
        chain.filter_chain_match.application_protocols.extend(alpn)
        if not server_names and not alpn:
            chain.ClearField("filter_chain_match")
        if self.tls is not None:
            chain.transport_socket.CopyFrom(transport_socket(self.tls))
        found = metadata(self.sources)
        if found is not None:
            chain.metadata.CopyFrom(found)
        return chain


@final
class ChainBuilder:
    """Builds the filter chains of one router proxy's servers."""

    def __init__(self, ctx: GenerationContext) -> None:
        self.ctx = ctx
        authz = ctx.push.authorization_policies.for_workload(ctx.workload)
        authn = ctx.push.request_authentications.for_workload(ctx.workload)
        domains = trust_domains(ctx.mesh)
        http = _ext_authz.custom_http_filters(ctx, authz.value)
        jwt = build_jwt_filter(authn.value)
        if jwt is not None:
            http.append(jwt)
        http.extend(build_http_rbac(authz.value, trust_domains=domains))
        self._http_filters = http
        self._http_sources = (*authz.sources, *authn.sources)
        self._network_filters = [
            *_ext_authz.custom_network_filters(ctx, authz.value),
            *build_network_rbac(authz.value, trust_domains=domains),
        ]
        self._network_sources = authz.sources

    def port_chains(self, port: MergedPort, listener: str, tls_hosts: dict[str, str]) -> list[FilterChain]:
        """The chains of a merged port.

        Args:
            port: the port and its servers.
            listener: the name of the listener the chains go in (for default statistics prefixes).
            tls_hosts: the SNI names already routed on this port number, with their bind address; updated.
        """
        if port.protocol.is_http:
            manager = self._manager(port.route_name, f"outbound_{listener}", port.protocol)
            gateways = tuple(dict.fromkeys(server.gateway for server in port.servers))
            return [FilterChain([manager], (*gateways, *self._http_sources))]
        chains: list[FilterChain] = []
        for server in port.servers:
            if server.is_https_terminated and server.tls is not None:
                chains.append(self._https_chain(server, server.tls, listener))
            else:
                chains.extend(self._tcp_chains(server, tls_hosts))
        return chains

    def _manager(self, route_name: str, stat_prefix: str, protocol: Protocol) -> Any:
        manager = gateway_connection_manager(
            self.ctx.mesh,
            route_name=route_name,
            stat_prefix=stat_prefix,
            protocol=protocol,
            extra_filters=self._http_filters,
        )
        return network_filter(HTTP_CONNECTION_MANAGER, manager)

    def _https_chain(self, server: GatewayServer, tls: ServerTLSSettings, listener: str) -> FilterChain:
        manager = self._manager(server.route_name, server.server.name or f"outbound_{listener}", server.protocol)
        return FilterChain(
            [manager],
            (server.gateway, *self._http_sources),
            sni=server.sni_hosts,
            tls=gateway_tls_context(tls, self.ctx.mesh, http=True),
        )

    def _tcp_chains(self, server: GatewayServer, tls_hosts: dict[str, str]) -> list[FilterChain]:
        tls = server.tls
        if tls is not None and server.is_passthrough:
            if tls.mode is ServerTLSMode.AUTO_PASSTHROUGH:
                return self._auto_passthrough_chains(server)
            return self._tls_route_chains(server, tls_hosts)
        found = self._tcp_route(server)
        if found is None:
            _log.info("gateway %s: no VirtualService tcp route for port %d", server.gateway_name, server.port.number)
            return []
        filters, sources = found
        if tls is None:
            return [FilterChain(filters, (server.gateway, *sources))]
        context = gateway_tls_context(tls, self.ctx.mesh, http=False)
        return [FilterChain(filters, (server.gateway, *sources), sni=server.sni_hosts, tls=context)]

    def _bound_virtual_services(self, server: GatewayServer) -> list[ResolvedVirtualService]:
        bound = self.ctx.push.virtual_services.for_gateway(server.gateway_name, self.ctx.namespace)
        return [vs for vs in bound if _shares_host(server.hosts, vs)]

    def _tcp_route(self, server: GatewayServer) -> tuple[list[Any], tuple[ConfigKey, ...]] | None:
        for vs in self._bound_virtual_services(server):
            for route in vs.spec.tcp:
                matched = not route.match or any(_l4_match(m.port, m.gateways, server, vs) for m in route.match)
                if matched and route.route:
                    filters, sources = self._route_filters(vs, route.route, server.port.number)
                    if filters:
                        return [*self._network_filters, *filters], (vs.key, *sources, *self._network_sources)
        return None

    def _tls_route_chains(self, server: GatewayServer, tls_hosts: dict[str, str]) -> list[FilterChain]:
        chains = []
        bind = server.server.bind
        for vs in self._bound_virtual_services(server):
            for index, route in enumerate(vs.spec.tls):
                if not route.route:
                    continue
                for match in route.match:
                    if not _l4_match(match.port, match.gateways, server, vs):
                        continue
                    taken = [host for host in match.sni_hosts if host in tls_hosts and tls_hosts[host] == bind]
                    if taken:
                        _log.info(
                            "gateway %s: skipping VirtualService %s tls route %d, SNI hosts already routed: %s",
                            server.gateway_name,
                            vs.key,
                            index,
                            ", ".join(taken),
                        )
                        continue
                    tls_hosts.update(dict.fromkeys(match.sni_hosts, bind))
                    filters, sources = self._route_filters(vs, route.route, server.port.number)
                    if filters:
                        keys = (server.gateway, vs.key, *sources, *self._network_sources)
                        chains.append(FilterChain([*self._network_filters, *filters], keys, sni=match.sni_hosts))
        return chains

    def _auto_passthrough_chains(self, server: GatewayServer) -> list[FilterChain]:
        ctx = self.ctx
        chains = []
        for service in auto_passthrough_services(ctx, server.sni_hosts):
            rule = ctx.push.destination_rule(ctx.workload, service)
            subsets = [""] + ([subset.name for subset in rule.value.spec.subsets] if rule.value is not None else [])
            for port in service.ports:
                if port.protocol is Protocol.UDP:
                    continue
                for subset in subsets:
                    sni = names.outbound_sni(port.number, service.hostname.value, subset)
                    filters = [tcp_proxy(sni, [(sni, 100)])]
                    chains.append(
                        FilterChain(filters, (server.gateway, *rule.sources), sni=(sni,), alpn=_ISTIO_MTLS_ALPN)
                    )
        return chains

    def _route_filters(
        self, vs: ResolvedVirtualService, routes: Sequence[Any], port: int
    ) -> tuple[list[Any], tuple[ConfigKey, ...]]:
        """Istio's ``buildOutboundNetworkFilters``: a TCP proxy to one destination, or to several by weight."""
        proxy = route_tcp_proxy(self.ctx, vs, routes, port)
        if proxy is None:
            return [], ()
        return [proxy.filter], proxy.sources


def _parse(text: str) -> Hostname | None:
    try:
        return Hostname.parse(text)
    except InvalidHostError:
        return None


def _shares_host(server_hosts: Iterable[str], vs: ResolvedVirtualService) -> bool:
    """Istio's ``pickMatchingGatewayHosts``: a server host (of the VirtualService's namespace) overlaps one."""
    for text in server_hosts:
        scope, slash, name = text.rpartition("/")
        if slash and scope != vs.resource.namespace:
            continue
        host = _parse(name)
        if host is not None and any(host.matches(vs_host) for vs_host in vs.hosts):
            return True
    return False


def _l4_match(port: int, gateways: Iterable[str], server: GatewayServer, vs: ResolvedVirtualService) -> bool:
    """Istio's ``l4SingleMatch``: the match's port (if any) is the server's, its gateways (if any) name it."""
    if port and port != server.port.number:
        return False
    named = [resolve_gateway_name(name, vs.resource.namespace) for name in gateways]
    return not named or server.gateway_name in named
