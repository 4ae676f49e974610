"""The validation rules of ServiceEntry: the CRD schema and CEL rules, then Istio's webhook (private).

Where the CRD and the webhook check the same thing, the finding is reported once, in the CRD's words (the
API server refuses the object before the webhook sees it); the webhook's wording is used for what only the
webhook checks. Enum fields are compared by value so that this module needs no runtime import of the
message module (which imports this one).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from mesh_config.networking._workload_rules import (
    PORT_RANGE,
    check_entry_ports,
    check_entry_schema,
    check_entry_semantics,
    check_labels,
    is_fqdn,
    is_ip,
    written,
)
from mesh_config.rules import check_cidr, check_export_to, check_wildcard_domain
from mesh_config.validation import ValidationContext
from mesh_model import Protocol

if TYPE_CHECKING:
    from mesh_config.networking.service_entry import ServiceEntry

__all__ = ["check_service_entry"]

_PORT_NAME = re.compile(r"[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?\Z")
_AUTO_ALLOCATE_LABEL = "networking.istio.io/enable-autoallocate-ip"
_USE_WAYPOINT_LABEL = "istio.io/use-waypoint"
_DYNAMIC_DNS_PROTOCOLS = frozenset({Protocol.HTTP, Protocol.HTTP2, Protocol.GRPC, Protocol.TLS})
_DNS_MODES = ("DNS", "DNS_ROUND_ROBIN")


def check_service_entry(spec: ServiceEntry, ctx: ValidationContext) -> None:
    """Every rule of a ServiceEntry; ``ctx`` is positioned at ``spec``."""
    resolution = spec.resolution.value
    _check_schema(spec, ctx)
    _check_hosts(spec, ctx, resolution)
    for index, address in enumerate(spec.addresses):
        check_cidr(ctx, address, "addresses", index)
    _check_ports(spec, ctx, resolution)
    _check_selector(spec, ctx, resolution)
    if resolution == "STATIC":
        names = {port.name for port in spec.ports}
        for index, endpoint in enumerate(spec.endpoints):
            check_entry_semantics(
                ctx.at("endpoints", index),
                endpoint.address,
                endpoint.ports,
                endpoint.labels,
                endpoint.network,
                service_ports=names,
                allow_fqdn=False,
            )
    elif resolution in _DNS_MODES:
        _check_dns(spec, ctx, resolution)
    elif resolution == "DYNAMIC_DNS":
        _check_dynamic_dns(spec, ctx)
    if resolution != "NONE" and len(spec.hosts) > 1:
        for port in spec.ports:
            protocol = Protocol.lookup(port.protocol) or Protocol.UNSUPPORTED
            if not protocol.is_http and not protocol.is_tls:
                ctx.error(
                    f"multiple hosts provided with non-HTTP, non-TLS port {port.name!r} "
                    f"(protocol {port.protocol!r}); only resolution NONE allows that",
                    "hosts",
                )
                break
    check_export_to(ctx, spec.export_to, "exportTo", allow_tilde=True)


def _check_schema(spec: ServiceEntry, ctx: ValidationContext) -> None:
    """The OpenAPI bounds and CEL rules of the CRD."""
    for field, items, limit in (
        ("hosts", spec.hosts, 256),
        ("addresses", spec.addresses, 256),
        ("ports", spec.ports, 256),
        ("endpoints", spec.endpoints, 4096),
    ):
        if len(items) > limit:
            ctx.max_items(limit, field)
    if not spec.hosts and (ctx.has("hosts") or not ctx.has()):  # (without a document, "hosts" is required)
        ctx.min_items(1, "hosts")
    for index, host in enumerate(spec.hosts):
        if host == "*":
            ctx.rule("hostname cannot be wildcard", "hosts", index, json_type="string")
    for index, address in enumerate(spec.addresses):
        if len(address) > 64:
            ctx.max_length(64, "addresses", index)
    seen_names: set[str] = set()
    numbers = [port.number for port in spec.ports]
    for index, port in enumerate(spec.ports):
        here = ctx.at("ports", index)
        for field, text in (("name", port.name), ("protocol", port.protocol)):
            if len(text) > 256:
                here.max_length(256, field)
        if port.name in seen_names:
            ctx.duplicate(port.name, "ports", index, "name")
        seen_names.add(port.name)
        # "number" is required: without a document, 0 counts as written.
        if (here.has("number") or not here.has()) and not 0 < port.number <= 65535:
            here.rule(PORT_RANGE, "number", json_type="integer")
        if written(here, port.target_port, "targetPort") and not 0 < port.target_port <= 65535:
            here.rule(PORT_RANGE, "targetPort", json_type="integer")
    if any(numbers.count(number) != 1 for number in numbers):
        ctx.rule("port number cannot be duplicated", "ports", json_type="array")
    selector = spec.workload_selector
    if selector is not None:
        if len(selector.labels) > 256:
            ctx.error("in body should have at most 256 properties", "workloadSelector", "labels")
        for key, value in selector.labels.items():
            if len(value) > 63:
                ctx.max_length(63, "workloadSelector", "labels", key)
            if "*" in value:
                ctx.rule("wildcard is not supported in selector", "workloadSelector", "labels", key, json_type="string")
    for index, endpoint in enumerate(spec.endpoints):
        check_entry_schema(
            ctx.at("endpoints", index),
            endpoint.address,
            endpoint.ports,
            endpoint.labels,
            endpoint.network,
            endpoint.locality,
            endpoint.service_account,
            address_required=True,
        )
    has_endpoints = written(ctx, spec.endpoints, "endpoints")
    if written(ctx, spec.workload_selector is not None, "workloadSelector") and has_endpoints:
        ctx.rule("only one of WorkloadSelector or Endpoints can be set")
    resolution = spec.resolution.value
    if any("/" in address for address in spec.addresses) and resolution not in ("NONE", "STATIC"):
        ctx.rule("CIDR addresses are allowed only for NONE/STATIC resolution types")
    if resolution == "NONE" and has_endpoints:
        ctx.rule("NONE mode cannot set endpoints")
    if resolution == "DNS_ROUND_ROBIN" and len(spec.endpoints) > 1:
        ctx.rule("DNS_ROUND_ROBIN mode cannot have multiple endpoints")


def _check_hosts(spec: ServiceEntry, ctx: ValidationContext, resolution: str) -> None:
    for index, host in enumerate(spec.hosts):
        if host == "*":
            continue  # the CRD rule has reported it
        if not check_wildcard_domain(ctx, host, "hosts", index):
            continue
        partial = "*" in host and not host.startswith("*.")
        if partial and resolution != "DYNAMIC_DNS":
            ctx.warning(f"partial wildcard {host!r} not allowed; use '*.' followed by a domain", "hosts", index)


def _auto_allocates(spec: ServiceEntry, ctx: ValidationContext) -> bool:
    """Istio's ``ShouldV2AutoAllocateIP``: istiod gives the hosts addresses of its own."""
    opt_out = ctx.metadata.labels.get(_AUTO_ALLOCATE_LABEL, "")
    return spec.resolution.value != "NONE" and opt_out.lower() != "false" and not spec.addresses


def _check_ports(spec: ServiceEntry, ctx: ValidationContext, resolution: str) -> None:
    auto_allocates = _auto_allocates(spec, ctx)
    for index, port in enumerate(spec.ports):
        here = ctx.at("ports", index)
        if len(port.name) > 63 or not _PORT_NAME.match(port.name):
            here.error(f"invalid port name {port.name!r}: it must be a DNS label (letters, digits and '-')", "name")
        if port.protocol and Protocol.lookup(port.protocol) is None:
            known = ", ".join(p.value for p in Protocol if p is not Protocol.UNSUPPORTED)
            here.error(f"unsupported protocol {port.protocol!r}; expected one of {known}", "protocol")
        if not spec.addresses and not auto_allocates and port.protocol in ("", "TCP"):
            here.warning(
                f"port {port.name!r} serves TCP (or an unset protocol) but the ServiceEntry has no addresses: "
                "addresses are required for such ports when ISTIO_META_DNS_AUTO_ALLOCATE is not set on a proxy"
            )


def _check_selector(spec: ServiceEntry, ctx: ValidationContext, resolution: str) -> None:
    selector = spec.workload_selector
    if selector is None:
        return
    here = ctx.at("workloadSelector")
    if not selector.labels:
        here.warning(
            "service entry: workload selector specified without labels, will be applied to all services in namespace"
        )
    for key, value in selector.labels.items():
        if not key:
            here.error(f"empty key is not supported in selector: {key}={value!r}", "labels", key)
        elif "*" in key and "*" not in value:
            here.error(f"wildcard is not supported in selector: {key!r}", "labels", key)
    if resolution in ("NONE", *_DNS_MODES):
        here.warning(f"workloadSelector should not be set when resolution mode is {resolution}")


def _check_dns(spec: ServiceEntry, ctx: ValidationContext, resolution: str) -> None:
    if not spec.endpoints:
        for index, host in enumerate(spec.hosts):
            if host != "*" and not is_fqdn(host):
                ctx.error(
                    f"host {host!r} must be a fully qualified name: hosts are resolved with DNS when resolution "
                    f"mode {resolution} has no endpoints",
                    "hosts",
                    index,
                )
    names = {port.name for port in spec.ports}
    for index, endpoint in enumerate(spec.endpoints):
        here = ctx.at("endpoints", index)
        address = endpoint.address
        if not is_ip(address) and not is_fqdn(address):
            here.error(f"endpoint address {address!r} is not a valid FQDN or an IP address", "address")
        check_labels(here, endpoint.labels, "labels")
        check_entry_ports(here, endpoint.ports, names)
    if spec.addresses and len(spec.hosts) > 1:
        tcp = [port for port in spec.ports if (Protocol.lookup(port.protocol) or Protocol.UNSUPPORTED).is_tcp]
        if tcp:
            ctx.warning(
                f"service entry can not have more than one host specified simultaneously with address and "
                f"tcp port {tcp[0].name!r}",
                "hosts",
            )


def _check_dynamic_dns(spec: ServiceEntry, ctx: ValidationContext) -> None:
    for index, host in enumerate(spec.hosts):
        if not host.startswith("*"):
            ctx.error(
                f"host {host!r} must be a wildcard (such as '*.example.com') for resolution DYNAMIC_DNS", "hosts", index
            )
    if spec.addresses:
        ctx.error(f"addresses {list(spec.addresses)!r} may not be set with resolution DYNAMIC_DNS", "addresses")
    if spec.endpoints:
        ctx.error("endpoints may not be set with resolution DYNAMIC_DNS: each request's host is resolved", "endpoints")
    for index, port in enumerate(spec.ports):
        protocol = Protocol.lookup(port.protocol)
        if protocol not in _DYNAMIC_DNS_PROTOCOLS:
            ctx.error(
                f"port {port.name!r}: protocol {port.protocol!r} is not supported with resolution DYNAMIC_DNS; "
                "use HTTP, HTTP2, GRPC or TLS",
                "ports",
                index,
                "protocol",
            )
    if spec.location.value == "MESH_INTERNAL" and _USE_WAYPOINT_LABEL in ctx.metadata.labels:
        ctx.error(
            f"a MESH_INTERNAL ServiceEntry with resolution DYNAMIC_DNS may not use a waypoint "
            f"({_USE_WAYPOINT_LABEL}={ctx.metadata.labels[_USE_WAYPOINT_LABEL]!r})",
            "location",
        )
