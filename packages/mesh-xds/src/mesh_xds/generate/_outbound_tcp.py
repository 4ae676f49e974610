"""The filter chains of a sidecar's outbound TCP and TLS listeners, with VirtualService ``tcp`` and ``tls`` routes.

Istio's ``buildSidecarOutboundTCPTLSFilterChainOpts`` (private), in the ``captureMode: NONE`` layout where the
services sharing a port share one listener on the outbound address. The VirtualServices of a service are
those bound to ``mesh`` that the proxy sees and whose hosts match the service's host, oldest first. A route
match applies when its static conditions hold for the proxy: its ``port`` (if any) is the listener's, its
``sourceLabels`` are among the proxy's labels, its ``sourceNamespace`` (if any) is the proxy's, and its
``gateways`` (if any) include ``mesh``.

* **TLS and HTTPS ports** (``tls_inspector`` reads the SNI): for each service, sorted by host, each applying
  ``tls`` match gives a chain matched on its ``sniHosts`` (and its ``destinationSubnets`` as prefix ranges)
  proxying to the route's destinations; only the first match with the same SNI hosts and subnets counts, and
  a VirtualService that several services of the port share gives its chains once. A service that no ``tls``
  match applies to gets a chain matched on its host name, to ``outbound|<port>||<host>``.
* **Other ports**: the first service by host name is served (the others are named in a warning). Its ``tcp``
  routes are taken in order: a route without match, or whose applying match has no ``destinationSubnets``,
  becomes the chain without match and ends the list; matches with ``destinationSubnets`` gather into a chain
  matched on them. Without such a final route, the last chain proxies to ``outbound|<port>||<host>``.

Destinations become TCP proxies as :mod:`._tcp_routes` says. An SNI name (or subnet) that an earlier chain
of the listener already matches is left out of later ones, with a warning: Envoy refuses two chains with the
same match. Every chain records the config objects it came from: the VirtualService (and the DestinationRule
that set its timeouts), or the service's ServiceEntry.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any, final

import attrs
from envoy.config.listener.v3 import listener_components_pb2

from mesh_config.index import MESH_GATEWAY, ResolvedVirtualService, resolve_gateway_name
from mesh_model import ConfigKey, Service, ServicePort
from mesh_xds.generate._inbound import tls_inspector
from mesh_xds.generate._rbac_match import cidr
from mesh_xds.generate._tcp_routes import TcpProxy, route_tcp_proxy, service_tcp_proxy
from mesh_xds.generate.context import GenerationContext, source_metadata

__all__ = ["add_tcp_chains"]

_log = logging.getLogger("mesh_xds.generate.lds")

_Member = tuple[Service, ServicePort]
_ANY = ""
"""A chain that does not match on SNI (or on the destination address) matches any."""


@final
@attrs.frozen
class _Chain:
    """A filter chain being built: what it matches, its TCP proxy, and where it came from."""

    proxy: TcpProxy
    sources: tuple[ConfigKey, ...]
    server_names: tuple[str, ...] = ()
    subnets: tuple[str, ...] = ()
    name: str = ""

    def claims(self) -> list[tuple[str, str]]:
        """The (subnet, SNI) pairs the chain matches; Envoy refuses two chains with a common pair."""
        return [(subnet, name) for subnet in self.subnets or (_ANY,) for name in self.server_names or (_ANY,)]

    def build(self) -> Any:
        chain = listener_components_pb2.FilterChain(name=self.name, filters=[self.proxy.filter])
        if self.server_names:
            chain.filter_chain_match.server_names.extend(self.server_names)
        if self.subnets:
            chain.filter_chain_match.prefix_ranges.extend(cidr(subnet) for subnet in self.subnets)
        for key, value in source_metadata((*self.sources, *self.proxy.sources)).items():
            chain.metadata.filter_metadata[key].update(value)
        return chain


def _subnets(values: Iterable[str]) -> tuple[str, ...] | None:
    """The subnets in one spelling (``10.0.0.0/8``), or None when one is not an address or CIDR block."""
    out = []
    for value in values:
        try:
            network = cidr(value)
        except ValueError:
            return None
        out.append(f"{network.address_prefix}/{network.prefix_len.value}")
    return tuple(dict.fromkeys(out))


def _server_names(hosts: Iterable[str]) -> tuple[str, ...]:
    """SNI names to match; ``*`` matches any name, which is no ``server_names`` at all."""
    names = tuple(dict.fromkeys(hosts))
    return () if "*" in names else names


@final
class _Builder:
    """Builds the chains of one outbound port from one read of the proxy's VirtualServices."""

    def __init__(self, ctx: GenerationContext, port: int) -> None:
        self.ctx = ctx
        self.port = port
        self.virtual_services = ctx.push.virtual_services_for(ctx.workload)
        self._built: set[tuple[ConfigKey, tuple[tuple[str, ...], tuple[str, ...]]]] = set()

    def routes_for(self, service: Service) -> list[ResolvedVirtualService]:
        """Istio's ``getConfigsForHost``: the VirtualServices with a host matching the service's, oldest first."""
        return [vs for vs in self.virtual_services if any(host.matches(service.hostname) for host in vs.hosts)]

    def applies(self, match: Any, vs: ResolvedVirtualService) -> bool:
        """Istio's ``matchTCP`` and ``matchTLS``: the conditions known when generating hold for the proxy."""
        if match.port and match.port != self.port:
            return False
        if any(self.ctx.labels.get(key) != value for key, value in match.source_labels.items()):
            return False
        if match.source_namespace and match.source_namespace != self.ctx.namespace:
            return False
        gateways = [resolve_gateway_name(name, vs.resource.namespace) for name in match.gateways]
        return not gateways or MESH_GATEWAY in gateways

    def _route_chain(
        self, vs: ResolvedVirtualService, route: Any, server_names: tuple[str, ...], subnets: Sequence[str]
    ) -> _Chain | None:
        normalized = _subnets(subnets)
        if normalized is None:
            _log.warning(
                "%s: VirtualService %s has a destinationSubnets entry that is not an address: %s",
                self.ctx.proxy.id,
                vs.key,
                ", ".join(subnets),
            )
            return None
        proxy = route_tcp_proxy(self.ctx, vs, route.route, self.port)
        if proxy is None:
            return None
        return _Chain(proxy, (vs.key,), server_names, normalized)

    def default_chain(self, service: Service, server_names: tuple[str, ...] = ()) -> _Chain:
        proxy = service_tcp_proxy(self.ctx, service, self.port)
        origin = (service.origin,) if service.origin is not None else ()
        return _Chain(proxy, origin, server_names, name=proxy.clusters[0])

    def tls_chains(self, service: Service) -> list[_Chain]:
        """``buildSidecarOutboundTLSFilterChainOpts``: the ``tls`` matches of the service, else its own chain.

        A match of a VirtualService that an earlier service of the port shares is built once.
        """
        out: list[_Chain] = []
        handled: set[tuple[tuple[str, ...], tuple[str, ...]]] = set()
        for vs in self.routes_for(service):
            for route in vs.spec.tls:
                for match in route.match:
                    key = (tuple(match.sni_hosts), tuple(match.destination_subnets))
                    if not self.applies(match, vs) or key in handled:
                        continue
                    handled.add(key)
                    if (vs.key, key) in self._built:
                        continue
                    self._built.add((vs.key, key))
                    chain = self._route_chain(vs, route, _server_names(match.sni_hosts), match.destination_subnets)
                    if chain is not None:
                        out.append(chain)
        if handled:
            return out
        return [self.default_chain(service, (service.hostname.value,))]

    def tcp_chains(self, service: Service) -> list[_Chain]:
        """``buildSidecarOutboundTCPFilterChainOpts``: the ``tcp`` routes of the service, then its own chain."""
        out: list[_Chain] = []
        for vs in self.routes_for(service):
            for route in vs.spec.tcp:
                if not route.match:
                    chain = self._route_chain(vs, route, (), ())
                    if chain is not None:
                        return [*out, chain]
                    continue
                subnets: list[str] = []
                for match in route.match:
                    if not self.applies(match, vs):
                        continue
                    if not match.destination_subnets:
                        chain = self._route_chain(vs, route, (), ())
                        if chain is not None:
                            return [*out, chain]
                        break
                    subnets.extend(match.destination_subnets)
                if subnets:
                    chain = self._route_chain(vs, route, (), subnets)
                    if chain is not None:
                        out.append(chain)
        return [*out, self.default_chain(service)]


def _without_conflicts(ctx: GenerationContext, port: int, chains: Iterable[_Chain]) -> list[_Chain]:
    """The chains, each without the SNI names an earlier chain already matches; a chain left with none is dropped."""
    claimed: set[tuple[str, str]] = set()
    out = []
    for chain in chains:
        taken = [pair for pair in chain.claims() if pair in claimed]
        kept: _Chain | None = chain
        if taken:
            _log.warning(
                "%s: outbound port %d already routes %s; not routed again by %s",
                ctx.proxy.id,
                port,
                ", ".join(sorted({name or subnet or "every connection" for subnet, name in taken})),
                ", ".join(str(source) for source in chain.sources) or chain.name,
            )
            names = tuple(name for name in chain.server_names if name not in {pair[1] for pair in taken})
            kept = attrs.evolve(chain, server_names=names) if names else None
        if kept is not None:
            claimed.update(kept.claims())
            out.append(kept)
    return out


def add_tcp_chains(ctx: GenerationContext, listener: Any, port: int, members: Sequence[_Member]) -> None:
    """Add the filter chains of a TCP or TLS outbound port to ``listener``.

    Args:
        ctx: the proxy and its push.
        listener: the ``Listener`` of the port, without chains yet.
        port: the port.
        members: the services on the port with their port, sorted by host name.
    """
    builder = _Builder(ctx, port)
    tls = [service for service, service_port in members if service_port.protocol.is_tls]
    tcp = [service for service, service_port in members if not service_port.protocol.is_tls]
    chains: list[_Chain] = []
    for service in tls:
        chains.extend(builder.tls_chains(service))
    if tls:
        listener.listener_filters.append(tls_inspector())
    if tcp:
        if len(tcp) > 1:
            _log.warning(
                "%s: outbound TCP port %d serves %s; not reachable there: %s",
                ctx.proxy.id,
                port,
                tcp[0].hostname.value,
                ", ".join(service.hostname.value for service in tcp[1:]),
            )
        chains.extend(builder.tcp_chains(tcp[0]))
    listener.filter_chains.extend(chain.build() for chain in _without_conflicts(ctx, port, chains))
