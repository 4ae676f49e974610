"""VirtualService (networking.istio.io): traffic routing rules for hosts.

A VirtualService binds routing rules to hosts, for the mesh's sidecars (``mesh``) and for gateways:
ordered HTTP rules (match, then route, redirect, direct response or delegate, with rewrites, retries,
faults, mirroring, CORS and header changes), TLS rules by SNI and TCP rules. A VirtualService without
hosts is a delegate: root VirtualServices hand HTTP traffic to it with ``delegate``.

:func:`validate_virtual_service` applies the CRD schema's rules that the loader does not already enforce
(the duration CEL rules, base64 bodies) and Istio's webhook rules (``ValidateVirtualService``), including
the IST0130/IST0131 warnings about rules and matches that can never apply.
"""

from __future__ import annotations

from typing import final

import attrs

from mesh_config.kinds import KindSpec, register_kind
from mesh_config.networking._http_route import (
    CorsPolicy,
    Delegate,
    Destination,
    FaultAbort,
    FaultDelay,
    HeaderOperations,
    Headers,
    HTTPBody,
    HTTPDirectResponse,
    HTTPFaultInjection,
    HTTPMatchRequest,
    HTTPMirrorPolicy,
    HTTPRedirect,
    HTTPRetry,
    HTTPRewrite,
    HTTPRoute,
    HTTPRouteDestination,
    Percent,
    RedirectPortSelection,
    RegexRewrite,
    RouteDestination,
    StringMatch,
    UnmatchedPreflights,
)
from mesh_config.networking._route_checks import (
    MESH_GATEWAY,
    check_gateway_names,
    check_labels,
    go_quote,
    host_overlaps,
    host_within,
    is_ip,
    is_jwt_claim,
)
from mesh_config.networking._unreachable_rules import check_unreachable_rules
from mesh_config.networking._virtual_service_rules import check_http_route, check_route_destinations
from mesh_config.rules import check_cidr, check_export_to, check_port, check_wildcard_domain
from mesh_config.types import FrozenDict, UInt32, integer, mapping, repeated, string
from mesh_config.validation import ValidationContext

__all__ = [
    "VIRTUAL_SERVICE",
    "CorsPolicy",
    "Delegate",
    "Destination",
    "FaultAbort",
    "FaultDelay",
    "HTTPBody",
    "HTTPDirectResponse",
    "HTTPFaultInjection",
    "HTTPMatchRequest",
    "HTTPMirrorPolicy",
    "HTTPRedirect",
    "HTTPRetry",
    "HTTPRewrite",
    "HTTPRoute",
    "HTTPRouteDestination",
    "HeaderOperations",
    "Headers",
    "L4MatchAttributes",
    "Percent",
    "RedirectPortSelection",
    "RegexRewrite",
    "RouteDestination",
    "StringMatch",
    "TCPRoute",
    "TLSMatchAttributes",
    "TLSRoute",
    "UnmatchedPreflights",
    "VirtualService",
    "validate_virtual_service",
]

_ROUTE_SEMANTICS = "internal.istio.io/route-semantics"
"""Set to ``gateway`` on VirtualServices that istiod converts from the Gateway API."""
_AUTO_SNI_PREFIX = "outbound_"
_AUTO_SNI_FORMAT = "outbound_.<PORT>_._.<HOSTNAME>"
_ASCII_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


@final
@attrs.frozen
class L4MatchAttributes:
    """The conditions a TCP connection must meet for a TCP rule to apply.

    Attributes:
        destination_subnets: destination IPs or CIDR blocks.
        port: the destination port.
        source_subnet: not used by Istio (kept because the CRD accepts it).
        source_labels: labels of the client workload.
        gateways: gateways the condition applies to.
        source_namespace: the client workload's namespace.
    """

    destination_subnets: tuple[str, ...] = repeated()
    port: UInt32 = integer()
    source_subnet: str = string()
    source_labels: FrozenDict[str, str] = mapping()
    gateways: tuple[str, ...] = repeated()
    source_namespace: str = string()


@final
@attrs.frozen
class TLSMatchAttributes:
    """The conditions a TLS connection must meet for a TLS rule to apply; SNI hosts are required."""

    sni_hosts: tuple[str, ...] = repeated(required=True)
    destination_subnets: tuple[str, ...] = repeated()
    port: UInt32 = integer()
    source_labels: FrozenDict[str, str] = mapping()
    gateways: tuple[str, ...] = repeated()
    source_namespace: str = string()


@final
@attrs.frozen
class TLSRoute:
    """A rule for TLS traffic that is passed through unterminated, routed by SNI."""

    match: tuple[TLSMatchAttributes, ...] = repeated(required=True)
    route: tuple[RouteDestination, ...] = repeated()


@final
@attrs.frozen
class TCPRoute:
    """A rule for opaque TCP traffic."""

    match: tuple[L4MatchAttributes, ...] = repeated()
    route: tuple[RouteDestination, ...] = repeated()


@final
@attrs.frozen
class VirtualService:
    """The spec of a VirtualService.

    Attributes:
        hosts: the hosts the rules apply to (DNS names with an optional wildcard prefix, or IPs); none
            makes this a delegate VirtualService.
        gateways: ``namespace/name`` of the gateways that apply the rules, ``mesh`` for the sidecars;
            none means ``mesh``.
        http: ordered HTTP rules; the first that matches applies.
        tls: ordered rules for unterminated TLS.
        tcp: ordered rules for TCP.
        export_to: the namespaces that see this VirtualService (``.``, ``*`` or names; none means all).
    """

    hosts: tuple[str, ...] = repeated()
    gateways: tuple[str, ...] = repeated()
    http: tuple[HTTPRoute, ...] = repeated()
    tls: tuple[TLSRoute, ...] = repeated()
    tcp: tuple[TCPRoute, ...] = repeated()
    export_to: tuple[str, ...] = repeated()


def validate_virtual_service(spec: VirtualService, ctx: ValidationContext) -> None:
    """The CRD rules and Istio's webhook rules for VirtualService."""
    # Rules about an empty list look at what was written (a list the schema refused may arrive empty), and
    # rules that compare with hosts or gateways skip them when the schema refused part of them.
    written = {
        field: bool(getattr(spec, field)) or (ctx.has(field) and bool(ctx.raw(field)))
        for field in ("hosts", "gateways", "http", "tcp", "tls")
    }
    broken = {
        field for field in ("hosts", "gateways") if ctx.has(field) and ctx.raw(field) != list(getattr(spec, field))
    }
    delegate = not written["hosts"]
    if delegate:
        if spec.gateways:
            ctx.error("delegate virtual service must have no gateways specified", "gateways")
        if spec.tls:
            ctx.error("delegate virtual service must have no tls route specified", "tls")
        if spec.tcp:
            ctx.error("delegate virtual service must have no tcp route specified", "tcp")
    gateway_semantics = ctx.metadata.annotations.get(_ROUTE_SEMANTICS) == "gateway"
    on_gateway = bool(spec.gateways) and MESH_GATEWAY not in spec.gateways
    if spec.gateways:
        check_gateway_names(ctx, spec.gateways, "gateways", gateway_semantics=gateway_semantics)
    if not on_gateway and "gateways" not in broken:
        _check_jwt_claims_on_mesh(ctx, spec)
    _check_hosts(ctx, spec, on_gateway=on_gateway, gateways_known="gateways" not in broken)
    if not (written["http"] or written["tcp"] or written["tls"]):
        ctx.error("http, tcp or tls must be provided in virtual service")
    for index, route in enumerate(spec.http):
        check_http_route(ctx.at("http", index), route, in_delegate=delegate, gateway_semantics=gateway_semantics)
    for index, tls in enumerate(spec.tls):
        _check_tls_route(
            ctx.at("tls", index), tls, spec, gateway_semantics=gateway_semantics, hosts_known="hosts" not in broken
        )
    for index, tcp in enumerate(spec.tcp):
        _check_tcp_route(ctx.at("tcp", index), tcp, gateway_semantics=gateway_semantics)
    check_export_to(ctx, spec.export_to, "exportTo")
    check_unreachable_rules(ctx, spec.http, spec.tcp, spec.tls)


def _check_jwt_claims_on_mesh(ctx: ValidationContext, spec: VirtualService) -> None:
    """Routing on JWT claims needs the gateway's JWT filter: it is refused for the mesh."""
    gateways = "[" + " ".join(spec.gateways) + "]"
    for index, route in enumerate(spec.http):
        for match_index, match in enumerate(route.match):
            for field, headers in (("headers", match.headers), ("withoutHeaders", match.without_headers)):
                for key in headers:
                    if is_jwt_claim(key):
                        ctx.error(
                            f"JWT claim based routing (key: {key}) is only supported for gateway, "
                            f"found no gateways: {gateways}",
                            "http",
                            index,
                            "match",
                            match_index,
                            field,
                            key,
                        )


def _check_hosts(ctx: ValidationContext, spec: VirtualService, *, on_gateway: bool, gateways_known: bool) -> None:
    sni = any(match.sni_hosts for route in spec.tls for match in route.match)
    all_valid = True
    for index, host in enumerate(spec.hosts):
        if is_ip(host):
            continue
        valid = _check_host(ctx, host, "hosts", index, gateway_sni=on_gateway and sni)
        if not valid:
            all_valid = False
        elif not on_gateway and gateways_known and host == "*":
            ctx.error("wildcard host * is not allowed for virtual services bound to the mesh gateway", "hosts", index)
            all_valid = False
    if not all_valid:
        return
    # Overlapping hosts (a literal repeat, or "*.foo.com" with "*.com") are duplicates.
    for index, host in enumerate(spec.hosts):
        for later_index in range(index + 1, len(spec.hosts)):
            other = spec.hosts[later_index]
            if host_overlaps(host, other):
                ctx.error(f"duplicate hosts in virtual service: {host} & {other}", "hosts", later_index)


def _check_host(ctx: ValidationContext, host: str, *segments: str | int, gateway_sni: bool) -> bool:
    """A host (or SNI host) as a wildcard domain; on gateways with SNI, also ``outbound_.<PORT>_._.<HOSTNAME>``."""
    if gateway_sni and host.startswith(_AUTO_SNI_PREFIX) and 0 < len(host) <= 255:
        parts = host.split("_")
        if len(parts) < 4:
            ctx.error(f"domain name {host} invalid, should follow '{_AUTO_SNI_FORMAT}' format", *segments)
            return False
        port, hostname = parts[1].strip("."), parts[3].strip(".")
        for label, wanted in ((port, "0123456789"), (hostname, _ASCII_LETTERS)):
            if not any(char in wanted for char in label):
                message = f"domain name {go_quote(host)} invalid (label {go_quote(label)} invalid)"
                ctx.error(f"{message}. should follow {_AUTO_SNI_FORMAT} format", *segments)
                return False
        return True
    return check_wildcard_domain(ctx, host, *segments)


def _check_tls_route(
    ctx: ValidationContext, route: TLSRoute, spec: VirtualService, *, gateway_semantics: bool, hosts_known: bool
) -> None:
    if not route.match:
        ctx.error("TLS route must have at least one match condition", "match")
    for index, match in enumerate(route.match):
        here = ctx.at("match", index)
        if not match.sni_hosts:
            here.error("TLS match must have at least one SNI host", "sniHosts")
        for sni_index, sni_host in enumerate(match.sni_hosts):
            _check_sni_host(here, sni_host, spec, "sniHosts", sni_index, hosts_known=hosts_known)
        _check_l4_match(here, match.destination_subnets, match.port, match.source_labels, match.gateways)
    if not route.route:
        ctx.error("TLS route is required", "route")
    check_route_destinations(ctx, route.route, "route", gateway_semantics=gateway_semantics)


def _check_sni_host(
    ctx: ValidationContext, sni_host: str, spec: VirtualService, *segments: str | int, hosts_known: bool
) -> None:
    if is_ip(sni_host):
        message = (
            f"using an IP address ({go_quote(sni_host)}) goes against SNI spec and most clients do not support this"
        )
        ctx.warning(message, *segments)
        return
    # Istio checks SNI hosts with the gateway rules unless the VirtualService names the mesh.
    if not _check_host(ctx, sni_host, *segments, gateway_sni=MESH_GATEWAY not in spec.gateways):
        return
    if hosts_known and not any(host_within(sni_host, host) for host in spec.hosts):
        hosts = ", ".join(spec.hosts)
        ctx.error(
            f"SNI host {go_quote(sni_host)} is not a compatible subset of any of the virtual service hosts: [{hosts}]",
            *segments,
        )


def _check_l4_match(
    ctx: ValidationContext,
    subnets: tuple[str, ...],
    port: int,
    source_labels: FrozenDict[str, str],
    gateways: tuple[str, ...],
) -> None:
    for index, subnet in enumerate(subnets):
        check_cidr(ctx, subnet, "destinationSubnets", index)
    if port:
        check_port(ctx, port, "port")
    check_labels(ctx, source_labels, "sourceLabels")
    check_gateway_names(ctx, gateways, "gateways")


def _check_tcp_route(ctx: ValidationContext, route: TCPRoute, *, gateway_semantics: bool) -> None:
    for index, match in enumerate(route.match):
        here = ctx.at("match", index)
        _check_l4_match(here, match.destination_subnets, match.port, match.source_labels, match.gateways)
    if not route.route:
        ctx.error("TCP route is required", "route")
    check_route_destinations(ctx, route.route, "route", gateway_semantics=gateway_semantics)


VIRTUAL_SERVICE = register_kind(
    KindSpec(
        kind="VirtualService",
        group="networking.istio.io",
        versions=("v1", "v1beta1", "v1alpha3"),
        spec_type=VirtualService,
        validate=validate_virtual_service,
        plural="virtualservices",
    )
)
"""The VirtualService kind: ``networking.istio.io`` v1 (storage), v1beta1 and v1alpha3."""
