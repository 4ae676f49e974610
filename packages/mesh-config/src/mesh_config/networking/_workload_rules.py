"""Rules on the WorkloadEntry message, shared by WorkloadEntry, ServiceEntry endpoints and WorkloadGroup (private).

The CRD layer is the same schema in all three places (``address`` UDS rules, the ``ports`` map, lengths); the
webhook layer is Istio's ``validateWorkloadEntry``, whose address rules depend on where the entry is used.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection, Mapping

from mesh_config.rules import check_fqdn
from mesh_config.validation import ValidationContext

__all__ = [
    "UNIX_PREFIX",
    "check_entry_schema",
    "check_entry_semantics",
    "check_labels",
    "is_fqdn",
    "is_ip",
    "written",
]

UNIX_PREFIX = "unix://"

UDS_ABSOLUTE = "UDS must be an absolute path or abstract socket"
UDS_DIR = "UDS may not be a dir"
UDS_PORTS = "UDS may not include ports"
ADDRESS_REQUIRED = "Address is required"
PORT_RANGE = "port must be between 1-65535"
PORT_NAME = "port name must be valid"

# The CRD's CEL pattern for port names (it allows upper case, as Istio's DNS-1123 label check does).
_CRD_PORT_NAME = re.compile(r"[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?\Z")
# Istio's labels.Instance.Validate: an optional DNS prefix and '/', then a qualified name.
_DNS_LABEL = r"[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?"
_QUALIFIED_NAME = r"(?:[A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_KEY = re.compile(rf"((?:{_DNS_LABEL}(?:\.{_DNS_LABEL})*)/)?({_QUALIFIED_NAME})\Z")
_LABEL_VALUE = re.compile(rf"(?:{_QUALIFIED_NAME})?\Z")


def written(ctx: ValidationContext, value: object, *segments: str | int) -> bool:
    """Whether a field counts as set for a CEL ``has()`` rule.

    The field was written in the document (even as an empty or zero value), or, when the spec was built in
    code rather than loaded (the context has no document), it holds a value other than its default.
    """
    return ctx.has(*segments) or bool(value)


def is_ip(text: str) -> bool:
    """True for an IPv4 or IPv6 address (Istio's ``netutil.IsValidIPAddress``)."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def is_fqdn(text: str) -> bool:
    """True for a DNS name without wildcards (Istio's ``ValidateFQDN``)."""
    probe = ValidationContext()
    check_fqdn(probe, text)
    return not probe.has_errors


def check_labels(ctx: ValidationContext, labels: Mapping[str, str], *segments: str | int) -> None:
    """Istio's ``labels.Instance.Validate``: label keys and values of Kubernetes syntax."""
    for key, value in labels.items():
        match = _LABEL_KEY.match(key)
        if match is None:
            ctx.error(f"invalid label key {key!r}", *segments, key)
        elif match.group(1) and len(match.group(1)) - 1 > 253:
            ctx.error(f"invalid label key {key!r}: its DNS prefix is longer than 253 characters", *segments, key)
        elif len(match.group(2)) > 63:
            ctx.error(f"invalid label key {key!r}: its name is longer than 63 characters", *segments, key)
        if not _LABEL_VALUE.match(value):
            ctx.error(f"invalid value {value!r} of label {key!r}", *segments, key)


def check_entry_schema(
    ctx: ValidationContext,
    address: str,
    ports: Mapping[str, int],
    labels: Mapping[str, str],
    network: str,
    locality: str,
    service_account: str,
    *,
    address_required: bool,
) -> None:
    """The CRD rules of a WorkloadEntry message; ``ctx`` is positioned at the message.

    Args:
        ctx: the context at the entry.
        address: the entry's ``address``.
        ports: the entry's ``ports``.
        labels: the entry's ``labels``.
        network: the entry's ``network``.
        locality: the entry's ``locality``.
        service_account: the entry's ``serviceAccount``.
        address_required: apply the ``Address is required`` rule (not on a WorkloadGroup template).
    """
    if written(ctx, address, "address"):
        if len(address) > 256:
            ctx.max_length(256, "address")
        if address.startswith(UNIX_PREFIX):
            if address[len(UNIX_PREFIX) : len(UNIX_PREFIX) + 1] not in ("/", "@"):
                ctx.rule(UDS_ABSOLUTE, "address", json_type="string")
            if address.endswith("/"):
                ctx.rule(UDS_DIR, "address", json_type="string")
    if len(ports) > 128:
        ctx.error("in body should have at most 128 properties", "ports")
    if any(len(name) >= 63 or not _CRD_PORT_NAME.match(name) for name in ports):
        ctx.rule(PORT_NAME, "ports")
    for name, number in ports.items():
        if not 0 < number <= 65535:
            ctx.rule(PORT_RANGE, "ports", name, json_type="integer")
    if len(labels) > 256:
        ctx.error("in body should have at most 256 properties", "labels")
    for field, value, limit in (("network", network, 2048), ("locality", locality, 2048)):
        if len(value) > limit:
            ctx.max_length(limit, field)
    if len(service_account) > 253:
        ctx.max_length(253, "serviceAccount")
    if address_required and not (written(ctx, address, "address") or written(ctx, network, "network")):
        ctx.rule(ADDRESS_REQUIRED)
    if address.startswith(UNIX_PREFIX) and written(ctx, ports, "ports"):
        ctx.rule(UDS_PORTS)


def check_entry_semantics(
    ctx: ValidationContext,
    address: str,
    ports: Mapping[str, int],
    labels: Mapping[str, str],
    network: str,
    *,
    service_ports: Collection[str] | None,
    allow_fqdn: bool,
) -> None:
    """Istio's ``validateWorkloadEntry`` (the webhook rules the CRD does not already cover).

    Args:
        ctx: the context at the entry.
        address: the entry's ``address``.
        ports: the entry's ``ports``.
        labels: the entry's ``labels``.
        network: the entry's ``network``.
        service_ports: the port names of the ServiceEntry the entry belongs to, or ``None`` for a standalone
            WorkloadEntry.
        allow_fqdn: whether a DNS name is allowed as the address (a WorkloadEntry) or only an IP (a STATIC
            ServiceEntry's endpoint).
    """
    if not address:
        if not network:
            if ctx.has("address") or ctx.has("network"):  # otherwise the CRD rule has said so
                ctx.error("address is required", "address")
            return
        ctx.warning(f"address is unset with network {network!r}", "address")
    unix = address.startswith(UNIX_PREFIX)
    if address and not unix and not is_ip(address):
        if not allow_fqdn:
            ctx.error(f"endpoint address {address!r} is not a valid IP address", "address")
        elif not is_fqdn(address):
            ctx.error(f"endpoint address {address!r} is not a valid FQDN or an IP address", "address")
    check_entry_ports(ctx, ports, service_ports)
    check_labels(ctx, labels, "labels")
    if unix and service_ports is not None and len(service_ports) != 1:
        ctx.error(
            f"unix endpoint {address!r} needs exactly 1 service port; the ServiceEntry declares {len(service_ports)}",
            "address",
        )


def check_entry_ports(ctx: ValidationContext, ports: Mapping[str, int], service_ports: Collection[str] | None) -> None:
    """Endpoint port names must be ports of the ServiceEntry."""
    if service_ports is None:
        return
    for name, number in ports.items():
        if name not in service_ports:
            ctx.error(f"endpoint port {name!r} ({number}) is not defined by the service entry", "ports", name)
