"""LDS: the listeners Istio gives a sidecar (ISTIO.md 2.2, 2.8, 2.9), in ``captureMode: NONE`` style.

Without iptables, a sidecar's listeners bind real addresses on loopback (docs/architecture.md):

* **outbound**, on the workload's outbound address (which its application calls), one listener
  ``<outbound>_<port>`` per port of the services its Sidecar scope sees:

  - a port where a service speaks HTTP (HTTP, HTTP2, gRPC, gRPC-Web): an HTTP connection manager whose
    routes come over RDS from the route configuration ``"<port>"`` (one virtual host per service), with the
    fault, CORS and router filters; the port's other services are not reachable there (a warning names them);
  - a TLS or HTTPS port: TLS passes through unterminated, told apart by SNI (``tls_inspector``): the chains of
    the VirtualServices' ``tls`` routes, each matched on its ``sniHosts``, and for each service without one a
    chain matched on its host name, to ``outbound|<port>||<host>``;
  - any other port (TCP, Mongo, MySQL, Redis, and ports of unknown protocol, which are not sniffed and are
    TCP throughout): a TCP proxy for the first service of the port by host name (a warning names the others),
    to the destinations of its VirtualServices' ``tcp`` routes, else to ``outbound|<port>||<host>``.

* **inbound**, on the workload's inbound address (its endpoint address), one listener ``<inbound>_<port>``
  per target port of the services that select the workload, with the port's PeerAuthentication mode
  (STRICT, PERMISSIVE or DISABLE), its AuthorizationPolicies as RBAC (and ext_authz for CUSTOM) and its
  RequestAuthentications as ``jwt_authn``.

An outbound listener that would bind the same address and port as an inbound one is left out, with a
warning: give the three addresses of :class:`~mesh_xds.generate.SidecarAddresses` distinct values.

Example::

    from mesh_xds.generate import GenerationContext, SidecarAddresses
    from mesh_xds.generate.lds import build_listeners

    addresses = SidecarAddresses(inbound="127.0.1.1", application="127.0.1.2", outbound="127.0.1.3")
    for listener in build_listeners(GenerationContext(proxy, push, registry, addresses=addresses)):
        print(listener.name)
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from typing import Any

from envoy.config.core.v3 import address_pb2, base_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2

from mesh_model import NodeType, Service, ServicePort
from mesh_xds.generate import _hcm
from mesh_xds.generate._inbound import build_inbound_listeners
from mesh_xds.generate._outbound_tcp import add_tcp_chains
from mesh_xds.generate.context import GenerationContext, source_metadata
from mesh_xds.generate.gateway_lds import build_gateway_listeners
from mesh_xds.generate.names import listener_name
from mesh_xds.generate.rds import is_http_port

__all__ = ["build_inbound_listeners", "build_listeners", "build_outbound_listeners"]

_log = logging.getLogger(__name__)

_Member = tuple[Service, ServicePort]


def build_listeners(ctx: GenerationContext) -> list[Any]:
    """The listeners of a proxy, sorted by name.

    For a sidecar: its inbound and outbound listeners. For a gateway: those of the Gateways that select it
    (:func:`mesh_xds.generate.gateway_lds.build_gateway_listeners`). Proxyless gRPC clients and ambient
    proxies get none from here.

    Args:
        ctx: the proxy, its push and its addresses.

    Returns:
        ``envoy.config.listener.v3.Listener`` messages.
    """
    if ctx.is_gateway:
        return build_gateway_listeners(ctx)
    if ctx.proxy.type is not NodeType.SIDECAR or ctx.is_grpc:
        return []
    inbound = build_inbound_listeners(ctx)
    outbound = build_outbound_listeners(ctx, exclude={listener.name for listener in inbound})
    return sorted([*inbound, *outbound], key=lambda listener: str(listener.name))


def build_outbound_listeners(ctx: GenerationContext, *, exclude: Collection[str] = ()) -> list[Any]:
    """A sidecar's outbound listeners, one per port of the services it sees, sorted by port.

    Args:
        ctx: the proxy, its push and its addresses.
        exclude: listener names not to build (those of the inbound listeners), each left out with a warning.
    """
    by_port: dict[int, list[_Member]] = {}
    for service in ctx.push.visible_services(ctx.workload):
        for port in service.ports:
            if not port.protocol.is_udp:
                by_port.setdefault(port.number, []).append((service, port))
    address = ctx.sidecar_addresses.outbound
    listeners = []
    for number in sorted(by_port):
        name = listener_name(address, number)
        members = sorted(by_port[number], key=lambda member: member[0].hostname.value)
        if name in exclude:
            _log.warning(
                "%s: outbound port %d of %s is not served: inbound listener %s binds the same address",
                ctx.proxy.id,
                number,
                ", ".join(service.hostname.value for service, _ in members),
                name,
            )
            continue
        listener = listener_pb2.Listener(
            name=name,
            address=address_pb2.Address(socket_address=address_pb2.SocketAddress(address=address, port_value=number)),
            traffic_direction=base_pb2.OUTBOUND,
        )
        if any(is_http_port(port) for _, port in members):
            listener.filter_chains.append(_http_chain(ctx, name, address, number, members))
        else:
            add_tcp_chains(ctx, listener, number, members)
        listeners.append(listener)
    return listeners


def _set_metadata(chain: Any, services: Sequence[Service]) -> None:
    for key, value in source_metadata(s.origin for s in services if s.origin is not None).items():
        chain.metadata.filter_metadata[key].update(value)


def _http_chain(ctx: GenerationContext, name: str, address: str, port: int, members: Sequence[_Member]) -> Any:
    routed = [(s, p) for s, p in members if is_http_port(p)]
    dropped = [s.hostname.value for s, p in members if not is_http_port(p)]
    if dropped:
        _log.warning(
            "%s: outbound port %d is HTTP; its non-HTTP services are not reachable there: %s",
            ctx.proxy.id,
            port,
            ", ".join(dropped),
        )
    manager = _hcm.http_connection_manager(
        ctx.mesh,
        stat_prefix=f"outbound_{address}_{port}",
        http_filters=_hcm.trailing_filters(),
        rds=str(port),
        inbound=False,
    )
    hcm = listener_components_pb2.Filter(name=_hcm.HCM_FILTER)
    hcm.typed_config.Pack(manager)
    chain = listener_components_pb2.FilterChain(name=name, filters=[hcm])
    _set_metadata(chain, [service for service, _ in routed])
    return chain
