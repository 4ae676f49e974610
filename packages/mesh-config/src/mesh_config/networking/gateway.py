"""Gateway (networking.istio.io): a load balancer at the edge of the mesh.

``ServerTLSSettings`` is also the TLS of Sidecar ingress listeners; its rules are
:func:`validate_server_tls`.
"""

from __future__ import annotations

from typing import final

import attrs

from mesh_config.kinds import KindSpec, register_kind
from mesh_config.networking._checks import (
    UNIX_PREFIX,
    check_ip,
    check_namespace_slash_host,
    check_port_number,
    check_unix_address,
    is_istio_dns_label,
    protocol_of,
    written,
)
from mesh_config.networking.server_tls import (
    ServerTLSMode,
    ServerTLSSettings,
    TLSCertificate,
    TLSProtocol,
    validate_server_tls,
)
from mesh_config.types import FrozenDict, UInt32, integer, mapping, optional, repeated, string
from mesh_config.validation import ValidationContext
from mesh_model import Protocol

__all__ = [
    "GATEWAY",
    "GATEWAY_SEMANTICS_ANNOTATION",
    "Gateway",
    "Port",
    "Server",
    "ServerTLSMode",
    "ServerTLSSettings",
    "TLSCertificate",
    "TLSProtocol",
    "validate_gateway",
    "validate_server_tls",
]

GATEWAY_SEMANTICS_ANNOTATION = "internal.istio.io/gateway-semantics"
"""Set to ``gateway`` on Gateways translated from the Kubernetes Gateway API, which relaxes two rules."""

_SUPPORTED = "HTTP, HTTP2, GRPC, GRPC-WEB, MONGO, REDIS, MYSQL, TCP"


@final
@attrs.frozen
class Port:
    """A Gateway server's port: number, protocol and name (``targetPort`` is refused)."""

    number: UInt32 = integer(required=True)
    protocol: str = string(required=True)
    name: str = string(required=True)
    target_port: UInt32 = integer()


@final
@attrs.frozen
class Server:
    """A Gateway server: a port, the hosts it exposes and its TLS.

    Attributes:
        port: the port the proxy listens on.
        bind: the IP address or ``unix://`` socket to bind to.
        hosts: ``namespace/dnsName`` entries (``*/`` any namespace, ``./`` the Gateway's own).
        tls: TLS settings (required for HTTPS and TLS ports).
        default_endpoint: unused by Istio today.
        name: an optional server name, unique within the Gateway.
    """

    port: Port | None = optional(required=True)
    bind: str = string()
    hosts: tuple[str, ...] = repeated(required=True)
    tls: ServerTLSSettings | None = optional()
    default_endpoint: str = string()
    name: str = string()


@final
@attrs.frozen
class Gateway:
    """The spec of a Gateway.

    Attributes:
        servers: the servers (ports and hosts) the gateway exposes.
        selector: labels of the gateway proxies it configures (in any namespace by default).
    """

    servers: tuple[Server, ...] = repeated()
    selector: FrozenDict[str, str] = mapping()


def validate_gateway(spec: Gateway, ctx: ValidationContext) -> None:
    """The CRD rules and Istio's webhook rules for Gateway."""
    semantics = ctx.metadata.annotations.get(GATEWAY_SEMANTICS_ANNOTATION) == "gateway"
    name = ctx.metadata.name
    if name and not semantics and not is_istio_dns_label(name):
        metadata = ValidationContext(ctx.metadata, path=("metadata",), findings=ctx.findings)
        metadata.error(f"invalid gateway name: {name!r} (a Gateway name must be a DNS label, without dots)", "name")
    if not spec.servers and not written(ctx, "servers"):
        ctx.error("gateway must have at least one server", "servers")
    port_names: set[str] = set()
    for index, server in enumerate(spec.servers):
        here = ctx.at("servers", index)
        _check_server(server, here, gateway_semantics=semantics)
        if server.port is None:
            continue
        if server.port.name in port_names:
            here.error(f"port names in servers must be unique: duplicate name {server.port.name!r}", "port", "name")
        port_names.add(server.port.name)
        if server.tls is not None and server.tls.https_redirect and not protocol_of(server.port.protocol).is_http:
            here.warning("tls.httpsRedirect should only be used with http servers", "tls", "httpsRedirect")


def _check_server(server: Server, ctx: ValidationContext, *, gateway_semantics: bool) -> None:
    if ctx.has("hosts") and not server.hosts:
        ctx.error("server config must contain at least one host", "hosts")
    for index, host in enumerate(server.hosts):
        check_namespace_slash_host(ctx, host, "hosts", index, gateway=True, gateway_semantics=gateway_semantics)
    port_ok = _check_server_port(server.port, server.bind, ctx.at("port"))
    if server.bind.startswith(UNIX_PREFIX):
        check_unix_address(ctx, server.bind[len(UNIX_PREFIX) :], "bind")
        if server.port is not None and server.port.number != 0:
            ctx.error(f"port number must be 0 for unix domain socket, not {server.port.number}", "port", "number")
    elif server.bind:
        check_ip(ctx, server.bind, "bind")
    validate_server_tls(server.tls, ctx.at("tls"))
    if not port_ok or server.port is None:
        return
    protocol = protocol_of(server.port.protocol)
    tls = server.tls
    if protocol.is_tls and tls is None:
        ctx.error(f"server must have TLS settings for HTTPS/TLS protocols ({server.port.protocol!r})", "port")
    elif not protocol.is_tls and tls is not None:
        if not protocol.is_http:
            ctx.error(f"server cannot have TLS settings for non HTTPS/TLS ports ({server.port.protocol!r})", "tls")
        elif tls.mode not in (ServerTLSMode.PASSTHROUGH, ServerTLSMode.AUTO_PASSTHROUGH) or (
            tls.ca_certificates or tls.private_key or tls.server_certificate
        ):
            ctx.error(f"server cannot have TLS settings for plain text HTTP ports ({server.port.protocol!r})", "tls")


def _check_server_port(port: Port | None, bind: str, ctx: ValidationContext) -> bool:
    """Istio's ``validateServerPort``; True when the port is valid."""
    if port is None:
        return False
    marker = len(ctx.findings)
    if Protocol.lookup(port.protocol) is None:
        ctx.error(f"invalid protocol {port.protocol!r}, supported protocols are {_SUPPORTED}", "protocol")
    if port.number > 0 or not bind.startswith(UNIX_PREFIX):
        check_port_number(ctx, port.number, "number")
    if port.target_port > 0:
        ctx.error(f"targetPort has no impact on Gateways (targetPort {port.target_port})", "targetPort")
    if not port.name:
        ctx.error("port name must be set", "name")
    return len(ctx.findings) == marker


GATEWAY = register_kind(
    KindSpec(
        kind="Gateway",
        group="networking.istio.io",
        versions=("v1", "v1beta1", "v1alpha3"),
        spec_type=Gateway,
        validate=validate_gateway,
        plural="gateways",
    )
)
