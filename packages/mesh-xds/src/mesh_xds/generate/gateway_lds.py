"""Gateway listeners: the LDS resources of a router proxy, as Istio's ``buildGatewayListeners`` builds them.

The Gateways that select the proxy are merged per port (:mod:`._gateway_merge`); each port becomes one
listener ``<address>_<port>``, bound on the servers' ``bind`` address or else the proxy's first address
(a ``unix://`` bind becomes a pipe). Its filter chains (:mod:`._gateway_chains`):

* a plain-text HTTP port: one chain, an HTTP connection manager with routes ``http.<port>`` from RDS
  (``tls.httpsRedirect`` is the route configuration's business: it requires TLS there);
* an HTTPS server terminating TLS: a chain matched on its hosts as SNI, with its TLS (:mod:`._gateway_tls`)
  and routes ``https.<port>.<portName>.<gateway>.<namespace>``;
* a TCP server, or a TLS server terminating TLS: a TCP proxy to the first bound VirtualService ``tcp`` route;
* a ``PASSTHROUGH`` server: a chain per bound VirtualService ``tls`` match, on its ``sniHosts``;
* an ``AUTO_PASSTHROUGH`` server: SNI-DNAT chains on ``outbound_.<port>_.<subset>_.<host>``.

Listeners with TLS chains get the TLS inspector. A chain that repeats what an earlier chain of its listener
matches on is dropped (Envoy refuses such listeners), and a listener left without chains is not sent. Every
filter chain records the Gateway (and the VirtualService, DestinationRule and policies) it came from in its
metadata; the listener records its Gateways.

Example::

    from mesh_xds.generate.gateway_lds import build_gateway_listeners, gateway_secret_names

    listeners = build_gateway_listeners(ctx)  # ctx.proxy is a router
    secrets = gateway_secret_names(ctx, listeners)  # {"kubernetes://bookinfo-credential", ...}
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, Final

import attrs
from envoy.config.core.v3 import address_pb2, base_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2

from mesh_xds.generate import names
from mesh_xds.generate._gateway_chains import ChainBuilder, FilterChain
from mesh_xds.generate._gateway_filters import metadata, tls_inspector
from mesh_xds.generate._gateway_merge import merge_gateways
from mesh_xds.generate.context import GenerationContext

__all__ = ["build_gateway_listeners", "gateway_secret_names"]

_log = logging.getLogger("mesh_xds.generate")

_UNIX_PREFIX: Final = "unix://"
_GATEWAY_KIND: Final = "Gateway"


@attrs.define
class _Draft:
    """A listener being built: the chains of every merged port that shares its name."""

    name: str
    bind: str
    port: int
    chains: list[FilterChain] = attrs.field(factory=list)


def build_gateway_listeners(ctx: GenerationContext) -> list[Any]:
    """The listeners of a router proxy, sorted by name; none for a sidecar or a proxy no Gateway selects.

    Args:
        ctx: the proxy and the push it is served from.

    Returns:
        ``envoy.config.listener.v3.Listener`` messages.
    """
    merged = merge_gateways(ctx)
    if not merged.ports:
        return []
    builder = ChainBuilder(ctx)
    address = ctx.proxy.ip_addresses[0] if ctx.proxy.ip_addresses else "127.0.0.1"
    drafts: dict[str, _Draft] = {}
    tls_hosts: dict[int, dict[str, str]] = {}
    for port in merged.ports:
        bind = port.bind or address
        name = names.listener_name(bind, port.number)
        draft = drafts.setdefault(name, _Draft(name, bind, port.number))
        draft.chains.extend(builder.port_chains(port, name, tls_hosts.setdefault(port.number, {})))
    listeners = []
    for draft in sorted(drafts.values(), key=lambda d: d.name):
        listener = _listener(draft)
        if listener is None:
            _log.info("gateway listener %s has no filter chain; left out", draft.name)
            continue
        listeners.append(listener)
    return listeners


def gateway_secret_names(ctx: GenerationContext, listeners: Iterable[Any] | None = None) -> set[str]:
    """The credentials (``kubernetes://<name>``, ``...-cacert``) a router proxy's listeners fetch over ADS.

    The control plane serves these secrets; the workload certificate (``default``, ``ROOTCA``) comes from
    the node agent instead and is not listed.

    Args:
        ctx: the proxy and the push it is served from.
        listeners: its listeners, when already built by :func:`build_gateway_listeners`.
    """
    found: set[str] = set()
    for listener in build_gateway_listeners(ctx) if listeners is None else listeners:
        for chain in listener.filter_chains:
            if not chain.HasField("transport_socket"):
                continue
            context = tls_pb2.DownstreamTlsContext()
            if not chain.transport_socket.typed_config.Unpack(context):
                continue
            common = context.common_tls_context
            configs = [*common.tls_certificate_sds_secret_configs]
            if common.HasField("combined_validation_context"):
                configs.append(common.combined_validation_context.validation_context_sds_secret_config)
            found.update(config.name for config in configs if config.sds_config.HasField("ads"))
    return found


def _listener(draft: _Draft) -> Any | None:
    chains = _unique(draft)
    if not chains:
        return None
    listener = listener_pb2.Listener(
        name=draft.name,
        address=_address(draft.bind, draft.port),
        traffic_direction=base_pb2.OUTBOUND,
        filter_chains=[chain.build() for chain in chains],
    )
    if any(chain.inspects_tls for chain in chains):
        listener.listener_filters.append(tls_inspector())
    found = metadata(key for chain in chains for key in chain.sources if key.kind == _GATEWAY_KIND)
    if found is not None:
        listener.metadata.CopyFrom(found)
    return listener


def _unique(draft: _Draft) -> list[FilterChain]:
    """The chains, without those matching exactly what an earlier one matches."""
    seen: set[tuple[tuple[str, ...], tuple[str, ...]]] = set()
    kept = []
    for chain in draft.chains:
        if chain.match_key in seen:
            _log.info(
                "gateway listener %s: dropping a filter chain that repeats the match %s", draft.name, chain.match_key
            )
            continue
        seen.add(chain.match_key)
        kept.append(chain)
    return kept


def _address(bind: str, port: int) -> Any:
    if bind.startswith(_UNIX_PREFIX):
        return address_pb2.Address(pipe=address_pb2.Pipe(path=bind[len(_UNIX_PREFIX) :]))
    return address_pb2.Address(socket_address=address_pb2.SocketAddress(address=bind, port_value=port))
