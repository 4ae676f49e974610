"""Sidecar (networking.istio.io): the ports and hosts a workload's proxy handles.

Ingress listeners use the Gateway's :class:`~mesh_config.networking.server_tls.ServerTLSSettings` for TLS and
the DestinationRule's :class:`~mesh_config.networking.connection_pool.ConnectionPoolSettings` for limits;
``outboundTrafficPolicy.egressProxy`` is a VirtualService
:class:`~mesh_config.networking.virtual_service.Destination`.
"""

from __future__ import annotations

import enum
from typing import final

import attrs

from mesh_config.kinds import KindSpec, register_kind
from mesh_config.networking._checks import (
    UNIX_PREFIX,
    check_ip,
    check_namespace_slash_host,
    check_port_name,
    check_port_number,
    check_protocol,
    check_subset_name,
    check_unix_address,
    protocol_of,
    too_many,
    written,
)
from mesh_config.networking.connection_pool import ConnectionPoolSettings, validate_connection_pool
from mesh_config.networking.server_tls import ServerTLSMode, ServerTLSSettings, validate_server_tls
from mesh_config.networking.service_entry import WorkloadLabelSelector
from mesh_config.networking.virtual_service import Destination
from mesh_config.rules import check_fqdn
from mesh_config.types import UInt32, enum_value, integer, optional, repeated, string
from mesh_config.validation import ValidationContext

__all__ = [
    "SIDECAR",
    "CaptureMode",
    "IstioEgressListener",
    "IstioIngressListener",
    "OutboundTrafficPolicy",
    "OutboundTrafficPolicyMode",
    "Sidecar",
    "SidecarPort",
    "validate_sidecar",
]

_MAX_SELECTOR_LABELS = 256
_LOCAL_HOSTS = ("127.0.0.1", "0.0.0.0", "::1", "::")


class CaptureMode(enum.Enum):
    """How traffic reaches a listener."""

    DEFAULT = "DEFAULT"
    """The environment's default capture mode."""
    IPTABLES = "IPTABLES"
    """Traffic is redirected to the listener by iptables."""
    NONE = "NONE"
    """No capture: the application addresses the listener (or the bind address) itself."""


class OutboundTrafficPolicyMode(enum.Enum):
    """``OutboundTrafficPolicy.Mode``: what happens to traffic to services outside the registry."""

    REGISTRY_ONLY = "REGISTRY_ONLY"
    """Only services in the registry are reachable."""
    ALLOW_ANY = "ALLOW_ANY"
    """Unknown destinations are passed through (or sent to ``egressProxy``)."""


@final
@attrs.frozen
class SidecarPort:
    """``SidecarPort``: the port of a Sidecar listener (``targetPort`` is refused)."""

    number: UInt32 = integer()
    protocol: str = string()
    name: str = string()
    target_port: UInt32 = integer()


@final
@attrs.frozen
class IstioIngressListener:
    """An inbound listener of the workload's proxy.

    Attributes:
        port: the port the proxy listens on.
        bind: the IP address to bind to.
        capture_mode: how traffic reaches the listener.
        default_endpoint: where traffic goes: ``127.0.0.1:PORT``, ``0.0.0.0:PORT``, ``[::1]:PORT``,
            ``[::]:PORT`` or ``unix:///path``.
        tls: TLS termination for the port (HTTPS or TLS ports only).
        connection_pool: connection limits for the port.
    """

    port: SidecarPort | None = optional(required=True)
    bind: str = string()
    capture_mode: CaptureMode = enum_value(CaptureMode.DEFAULT)
    default_endpoint: str = string()
    tls: ServerTLSSettings | None = optional()
    connection_pool: ConnectionPoolSettings | None = optional()


@final
@attrs.frozen
class IstioEgressListener:
    """An outbound listener of the workload's proxy and the services it reaches.

    Attributes:
        port: the port; none makes this the catch-all listener (only the last one may omit it).
        bind: the IP address or ``unix://`` socket to bind to.
        capture_mode: how traffic reaches the listener.
        hosts: ``namespace/dnsName`` entries of the services visible to the workload.
    """

    port: SidecarPort | None = optional()
    bind: str = string()
    capture_mode: CaptureMode = enum_value(CaptureMode.DEFAULT)
    hosts: tuple[str, ...] = repeated(required=True)


@final
@attrs.frozen
class OutboundTrafficPolicy:
    """``OutboundTrafficPolicy``: handling of traffic to destinations outside the registry."""

    mode: OutboundTrafficPolicyMode = enum_value(OutboundTrafficPolicyMode.REGISTRY_ONLY)
    egress_proxy: Destination | None = optional()


@final
@attrs.frozen
class Sidecar:
    """The spec of a Sidecar.

    Attributes:
        workload_selector: the workloads it applies to; none means every workload of the namespace.
        ingress: inbound listeners.
        egress: outbound listeners and the hosts they reach.
        inbound_connection_pool: connection limits for every inbound port.
        outbound_traffic_policy: handling of traffic to unknown destinations.
    """

    workload_selector: WorkloadLabelSelector | None = optional()
    ingress: tuple[IstioIngressListener, ...] = repeated()
    egress: tuple[IstioEgressListener, ...] = repeated()
    inbound_connection_pool: ConnectionPoolSettings | None = optional()
    outbound_traffic_policy: OutboundTrafficPolicy | None = optional()


def validate_sidecar(spec: Sidecar, ctx: ValidationContext) -> None:
    """The CRD rules and Istio's webhook rules for Sidecar."""
    _check_selector(spec.workload_selector, ctx.at("workloadSelector"))
    if (
        not spec.egress
        and not spec.ingress
        and spec.outbound_traffic_policy is None
        and spec.inbound_connection_pool is None
        and not written(ctx, "egress", "ingress", "outboundTrafficPolicy", "inboundConnectionPool")
    ):
        ctx.error("sidecar: empty configuration provided")
    ports: set[int] = set()
    for index, listener in enumerate(spec.ingress):
        _check_ingress(listener, ctx.at("ingress", index), ports)
    validate_connection_pool(spec.inbound_connection_pool, ctx.at("inboundConnectionPool"))
    ports.clear()
    sockets: set[str] = set()
    for index, egress in enumerate(spec.egress):
        here = ctx.at("egress", index)
        if egress.port is None:
            if index != len(spec.egress) - 1 and not here.has("port"):
                here.error("sidecar: the egress listener with empty port should be the last listener in the list")
        else:
            _check_egress_port(egress, egress.port, here, ports, sockets)
        _check_egress_hosts(egress, here)
    _check_outbound_policy(spec.outbound_traffic_policy, ctx.at("outboundTrafficPolicy"))


def _check_selector(selector: WorkloadLabelSelector | None, ctx: ValidationContext) -> None:
    if selector is None:
        return
    if not selector.labels:
        ctx.warning("sidecar: workload selector specified without labels, will be applied to all services in namespace")
    if len(selector.labels) > _MAX_SELECTOR_LABELS:
        too_many(ctx, len(selector.labels), _MAX_SELECTOR_LABELS, "labels")
    for key, value in selector.labels.items():
        if not key:
            ctx.error(f"empty key is not supported in selector: {key + '=' + value!r}", "labels")
        elif "*" in key:
            ctx.error(f"wildcard is not supported in selector: {key + '=' + value!r}", "labels", key)
        if len(value) > 63:
            ctx.max_length(63, "labels", key)
        if "*" in value:
            ctx.rule("wildcard is not supported in selector", "labels", key, json_type="string")


def _check_ingress(listener: IstioIngressListener, ctx: ValidationContext, ports: set[int]) -> None:
    port = listener.port
    if port is None:
        return  # The schema requires it.
    here = ctx.at("port")
    if port.target_port > 0:
        here.error(f"targetPort has no impact on Sidecars (targetPort {port.target_port})", "targetPort")
    if port.name:
        check_port_name(here, port.name, "name")
    check_protocol(here, port.protocol, "protocol")
    check_port_number(here, port.number, "number")
    if listener.bind:
        check_ip(ctx, listener.bind, "bind")
    if port.number in ports:
        here.error(f"sidecar: ports on IP bound listeners must be unique (port {port.number})", "number")
    ports.add(port.number)
    if listener.default_endpoint:
        _check_default_endpoint(listener.default_endpoint, ctx)
    if (tls := listener.tls) is not None:
        _check_ingress_tls(tls, port, ctx.at("tls"))
    validate_connection_pool(listener.connection_pool, ctx.at("connectionPool"))
    pool = listener.connection_pool
    if pool is not None and pool.http is not None and not protocol_of(port.protocol).is_http:
        ctx.warning(
            f"sidecar: HTTP connection pool settings are configured for port {port.number} ({port.name!r}) but its "
            f"protocol is not HTTP ({port.protocol!r}); only TCP settings will apply",
            "connectionPool",
            "http",
        )


def _check_default_endpoint(endpoint: str, ctx: ValidationContext) -> None:
    if endpoint.startswith(UNIX_PREFIX):
        check_unix_address(ctx, endpoint[len(UNIX_PREFIX) :], "defaultEndpoint")
        return
    split = _split_host_port(endpoint)
    if isinstance(split, str):
        ctx.error(f"sidecar: defaultEndpoint {endpoint!r}: {split}", "defaultEndpoint")
        return
    host, port = split
    if host and host not in _LOCAL_HOSTS:
        ctx.error(
            f"sidecar: defaultEndpoint must be of form 127.0.0.1:<port>,0.0.0.0:<port>,[::1]:port,[::]:port,"
            f"unix://filepath or unset, not {endpoint!r}",
            "defaultEndpoint",
        )
    if not port.isascii() or not port.lstrip("+-").isdigit():
        ctx.error(f"sidecar: defaultEndpoint port ({port!r}) is not a number", "defaultEndpoint")
    else:
        check_port_number(ctx, int(port), "defaultEndpoint")


def _split_host_port(text: str) -> tuple[str, str] | str:
    """Go's ``net.SplitHostPort``: the host and port of ``host:port`` or ``[host]:port``, or a problem."""
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            return "missing ']' in address"
        if close + 1 >= len(text) or text[close + 1] != ":":
            return "missing port in address"
        host, port = text[1:close], text[close + 2 :]
    else:
        host, colon, port = text.rpartition(":")
        if not colon:
            return "missing port in address"
        if ":" in host:
            return "too many colons in address"
    if "[" in port or "]" in port or "[" in host or "]" in host:
        return "unexpected '[' or ']' in address"
    return host, port


def _check_ingress_tls(tls: ServerTLSSettings, port: SidecarPort, ctx: ValidationContext) -> None:
    if tls.subject_alt_names:
        ctx.error("sidecar: subjectAltNames is not supported in ingress tls", "subjectAltNames")
    if tls.https_redirect:
        ctx.error("sidecar: httpsRedirect is not supported", "httpsRedirect")
    if tls.credential_name:
        ctx.error("sidecar: credentialName is not currently supported", "credentialName")
    if tls.credential_names:
        ctx.error("sidecar: credentialNames is not currently supported", "credentialNames")
    if tls.tls_certificates:
        ctx.error("sidecar: tls_certificates is not currently supported", "tlsCertificates")
    if tls.mode in (ServerTLSMode.ISTIO_MUTUAL, ServerTLSMode.AUTO_PASSTHROUGH):
        ctx.error(f"configuration is invalid: cannot set mode to {tls.mode.value} in sidecar ingress tls", "mode")
    if not protocol_of(port.protocol).is_tls:
        ctx.error(f"server cannot have TLS settings for non HTTPS/TLS ports ({port.protocol!r})")
    validate_server_tls(tls, ctx)


def _check_egress_port(
    egress: IstioEgressListener, port: SidecarPort, ctx: ValidationContext, ports: set[int], sockets: set[str]
) -> None:
    here = ctx.at("port")
    if port.target_port > 0:
        here.error(f"targetPort has no impact on Sidecars (targetPort {port.target_port})", "targetPort")
    if port.name:
        check_port_name(here, port.name, "name")
    check_protocol(here, port.protocol, "protocol")
    bind = egress.bind
    if port.number == 0:
        if not bind.startswith(UNIX_PREFIX):
            ctx.error("sidecar: ports with 0 value must have a unix domain socket bind address", "bind")
        else:
            check_unix_address(ctx, bind[len(UNIX_PREFIX) :], "bind")
        if egress.capture_mode not in (CaptureMode.DEFAULT, CaptureMode.NONE):
            ctx.error(
                f"sidecar: captureMode must be DEFAULT/NONE for unix domain socket listeners, not "
                f"{egress.capture_mode.value}",
                "captureMode",
            )
        if bind in sockets:
            ctx.error(f"sidecar: unix domain socket values for listeners must be unique ({bind!r})", "bind")
        sockets.add(bind)
        return
    check_port_number(here, port.number, "number")
    if bind:
        check_ip(ctx, bind, "bind")
    if port.number in ports:
        here.error(f"sidecar: ports on IP bound listeners must be unique (port {port.number})", "number")
    ports.add(port.number)


def _check_egress_hosts(egress: IstioEgressListener, ctx: ValidationContext) -> None:
    if not egress.hosts:
        if ctx.has("hosts"):
            ctx.error("sidecar: egress listener must contain at least one host", "hosts")
        return
    by_namespace: dict[str, set[str]] = {}
    for index, host in enumerate(egress.hosts):
        namespace, slash, name = host.partition("/")
        if slash:
            namespace = ctx.namespace if namespace == "." and ctx.namespace else namespace
            names = by_namespace.setdefault(namespace, set())
            if (name in names or "*" in names) if name != "*" else names:
                ctx.warning(f"duplicated egress host: {host!r}", "hosts", index)
            names.add(name)
        check_namespace_slash_host(ctx, host, "hosts", index, gateway=False)
    if "*" in by_namespace.get("*", ()) and len(by_namespace) != 1:
        ctx.warning("`*/*` host select all resources, no other hosts can be added", "hosts")


def _check_outbound_policy(policy: OutboundTrafficPolicy | None, ctx: ValidationContext) -> None:
    if policy is None or (proxy := policy.egress_proxy) is None:
        return
    here = ctx.at("egressProxy")
    if policy.mode is not OutboundTrafficPolicyMode.ALLOW_ANY:
        here.error(
            f"sidecar: egress_proxy must be set only with ALLOW_ANY outbound_traffic_policy mode, not "
            f"{policy.mode.value}"
        )
        return
    check_fqdn(here, proxy.host, "host")  # An FQDN is also the valid destination host Istio checks next.
    if proxy.port is None:
        here.error("sidecar: egress_proxy port must be non-nil", "port")
        return
    if proxy.subset:
        check_subset_name(here, proxy.subset, "subset")
    check_port_number(here, proxy.port.number, "port", "number")


SIDECAR = register_kind(
    KindSpec(
        kind="Sidecar",
        group="networking.istio.io",
        versions=("v1", "v1beta1", "v1alpha3"),
        spec_type=Sidecar,
        validate=validate_sidecar,
        plural="sidecars",
    )
)
