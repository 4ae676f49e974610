"""A sidecar's inbound listeners (private): one per workload port, with mTLS, RBAC and JWT.

Every target port of the services that select the workload gets a listener ``<inbound>_<port>`` on the
workload's inbound address (its endpoint address, ``captureMode: NONE`` style), whose filter chains follow
the PeerAuthentication mode of the port (ISTIO.md 2.8):

=========== ============================================================================================
mode        filter chains (``tls_inspector`` tells TLS from plaintext)
=========== ============================================================================================
STRICT      mutual TLS only (``transport_protocol: tls``)
PERMISSIVE  mutual TLS (``tls`` and an Istio ALPN), plaintext (``raw_buffer``); TCP ports also pass other
            TLS through unterminated
DISABLE     plaintext only
=========== ============================================================================================

Chains are named after the listener: ``<inbound>_<port>`` for mutual TLS, with ``_plaintext`` for plaintext
and ``_tls`` for TLS passed through.

HTTP ports terminate HTTP with the route configuration inline (``inbound|<port>||``, every request to the
inbound cluster) and the HTTP filters in Istio's order: CUSTOM authorization (shadow RBAC and ext_authz),
``jwt_authn``, RBAC for AUDIT, DENY and ALLOW, then fault, CORS and the router. Other ports get network RBAC
and a TCP proxy to ``inbound|<port>||``. Every chain records the config objects it came from.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, Final, final

from envoy.config.core.v3 import address_pb2, base_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

from mesh_config.security import MutualTlsMode
from mesh_model import ConfigKey, Service, ServicePort
from mesh_xds.generate import _ext_authz, _hcm
from mesh_xds.generate._downstream_tls import ALPN_ISTIO_MTLS, istio_mutual_server_context, transport_socket
from mesh_xds.generate._local_clusters import inbound_service_ports
from mesh_xds.generate.context import GenerationContext, source_metadata
from mesh_xds.generate.jwt import build_jwt_filter
from mesh_xds.generate.names import inbound_cluster, listener_name
from mesh_xds.generate.rbac import build_http_rbac, build_network_rbac, trust_domains
from mesh_xds.generate.rds import inbound_route_configuration, is_http_port

__all__ = ["TCP_PROXY_FILTER", "TLS_INSPECTOR", "build_inbound_listeners", "tcp_proxy_filter", "tls_inspector"]

TLS_INSPECTOR: Final = "envoy.filters.listener.tls_inspector"
TCP_PROXY_FILTER: Final = "envoy.filters.network.tcp_proxy"
_TLS: Final = "tls"
_RAW: Final = "raw_buffer"
_PLAINTEXT_SUFFIX: Final = "_plaintext"
_PASSTHROUGH_SUFFIX: Final = "_tls"


def tls_inspector() -> Any:
    """The listener filter that reads the TLS ClientHello (SNI, ALPN) before a filter chain is chosen."""
    inspector = listener_components_pb2.ListenerFilter(name=TLS_INSPECTOR)
    inspector.typed_config.Pack(tls_inspector_pb2.TlsInspector())
    return inspector


def tcp_proxy_filter(cluster: str) -> Any:
    """A TCP proxy to ``cluster``, its stats under the cluster's name."""
    proxy = listener_components_pb2.Filter(name=TCP_PROXY_FILTER)
    proxy.typed_config.Pack(tcp_proxy_pb2.TcpProxy(stat_prefix=cluster, cluster=cluster))
    return proxy


@final
class _Policies:
    """The workload's policies, read once for all its ports."""

    def __init__(self, ctx: GenerationContext) -> None:
        self.ctx = ctx
        self.mtls = ctx.push.mtls(ctx.workload)
        self.authorization = ctx.push.authorization_policies.for_workload(ctx.workload)
        self.authentication = ctx.push.request_authentications.for_workload(ctx.workload)

    @functools.cached_property
    def http_filters(self) -> list[Any]:
        """CUSTOM authorization, ``jwt_authn``, RBAC, then fault, CORS and the router."""
        policies = self.authorization.value
        filters = _ext_authz.custom_http_filters(self.ctx, policies)
        jwt = build_jwt_filter(self.authentication.value)
        if jwt is not None:
            filters.append(jwt)
        filters.extend(build_http_rbac(policies, trust_domains=trust_domains(self.ctx.mesh)))
        filters.extend(_hcm.trailing_filters())
        return filters

    @functools.cached_property
    def network_filters(self) -> list[Any]:
        """CUSTOM authorization and RBAC for TCP."""
        policies = self.authorization.value
        return [
            *_ext_authz.custom_network_filters(self.ctx, policies),
            *build_network_rbac(policies, trust_domains=trust_domains(self.ctx.mesh)),
        ]


@final
class _Port:
    """What the chains of one inbound port share: the policies that apply and the filters they make."""

    def __init__(
        self, ctx: GenerationContext, policies: _Policies, port: int, members: Sequence[tuple[Service, ServicePort]]
    ) -> None:
        self.ctx = ctx
        self.policies = policies
        self.port = port
        self.service, service_port = members[0]
        self.http = is_http_port(service_port)
        self.address = ctx.sidecar_addresses.inbound
        self.name = listener_name(self.address, port)
        self.mode = policies.mtls.value.for_port(port)
        origins = [service.origin for service, _ in members if service.origin is not None]
        sources: list[ConfigKey] = [*policies.mtls.sources, *policies.authorization.sources, *origins]
        if self.http:
            sources.extend(policies.authentication.sources)
        self.metadata = source_metadata(sources)
        self.filters = self.network_filters()

    def network_filters(self) -> list[Any]:
        if self.http:
            manager = _hcm.http_connection_manager(
                self.ctx.mesh,
                stat_prefix=f"inbound_{self.address}_{self.port}",
                http_filters=self.policies.http_filters,
                route_config=inbound_route_configuration(self.port, hostname=self.service.hostname.value),
                inbound=True,
            )
            hcm = listener_components_pb2.Filter(name=_hcm.HCM_FILTER)
            hcm.typed_config.Pack(manager)
            return [hcm]
        return [*self.policies.network_filters, tcp_proxy_filter(inbound_cluster(self.port))]

    def chain(self, *, mutual_tls: bool, transport: str | None, alpn: Sequence[str] = ()) -> Any:
        suffix = "" if mutual_tls else _PASSTHROUGH_SUFFIX if transport == _TLS else _PLAINTEXT_SUFFIX
        chain = listener_components_pb2.FilterChain(name=self.name + suffix, filters=self.filters)
        if transport is not None:
            chain.filter_chain_match.transport_protocol = transport
        chain.filter_chain_match.application_protocols.extend(alpn)
        if mutual_tls:
            chain.transport_socket.CopyFrom(
                transport_socket(istio_mutual_server_context(self.ctx.mesh, http=self.http))
            )
        for key, value in self.metadata.items():
            chain.metadata.filter_metadata[key].update(value)
        return chain

    def chains(self) -> list[Any]:
        if self.mode is MutualTlsMode.STRICT:
            return [self.chain(mutual_tls=True, transport=_TLS)]
        if self.mode is MutualTlsMode.DISABLE:
            return [self.chain(mutual_tls=False, transport=None)]
        chains = [self.chain(mutual_tls=True, transport=_TLS, alpn=ALPN_ISTIO_MTLS)]
        if not self.http:
            chains.append(self.chain(mutual_tls=False, transport=_TLS))
        chains.append(self.chain(mutual_tls=False, transport=_RAW))
        return chains

    def listener(self) -> Any:
        listener = listener_pb2.Listener(
            name=self.name,
            address=address_pb2.Address(
                socket_address=address_pb2.SocketAddress(address=self.address, port_value=self.port)
            ),
            traffic_direction=base_pb2.INBOUND,
            filter_chains=self.chains(),
        )
        if self.mode is not MutualTlsMode.DISABLE:
            listener.listener_filters.append(tls_inspector())
            listener.continue_on_listener_filters_timeout = True
        return listener


def build_inbound_listeners(ctx: GenerationContext) -> list[Any]:
    """A sidecar's inbound listeners, one per inbound port (the target ports of the services selecting it)."""
    ports = inbound_service_ports(ctx)
    if not ports:
        return []
    policies = _Policies(ctx)
    return [_Port(ctx, policies, port, members).listener() for port, members in ports]
