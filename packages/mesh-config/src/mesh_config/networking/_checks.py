"""Checks shared by DestinationRule, Gateway and Sidecar (private).

They follow Istio's webhook helpers (``pkg/config/validation``, ``agent/validation.go``, ``pkg/config/labels``)
where :mod:`mesh_config.rules` differs from them: Istio's DNS labels allow upper case, a Gateway host may omit
its namespace, and partial wildcards (``*foo.com``) are refused in Gateway and Sidecar hosts.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping

from mesh_config.rules import check_duration, check_wildcard_domain
from mesh_config.types import Duration
from mesh_config.validation import ValidationContext
from mesh_model import Protocol

UNIX_PREFIX = "unix://"
"""The prefix of a Unix domain socket address (``bind``, ``defaultEndpoint``)."""

DURATION_RULE = "must be a valid duration greater than 1ms"
"""The message of the CRD rule ``duration(self) >= duration('1ms')``."""

_ISTIO_DNS_LABEL = re.compile(r"[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?\Z")
_QUALIFIED_NAME = r"(?:[A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_DNS_PREFIX = r"[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?)*/"
_TAG_KEY = re.compile(rf"({_DNS_PREFIX})?({_QUALIFIED_NAME})\Z")
_TAG_VALUE = re.compile(rf"(?:{_QUALIFIED_NAME})?\Z")
_MILLISECOND = 1_000_000


def number_text(value: float) -> str:
    """A number as Kubernetes prints it: ``150`` for ``150.0``."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


def out_of_range(ctx: ValidationContext, value: float, requirement: str, *segments: str | int) -> None:
    """A CRD ``minimum``/``maximum`` violation: ``Invalid value: 150: should be less than or equal to 100``."""
    ctx.error(f"Invalid value: {number_text(value)}: {requirement}", *segments)


def too_many(ctx: ValidationContext, count: int, limit: int, *segments: str | int) -> None:
    """A CRD ``maxItems``/``maxProperties`` violation."""
    ctx.error(f"Too many: {count}: must have at most {limit} items", *segments)


def cel_duration(ctx: ValidationContext, duration: Duration | None, *segments: str | int) -> None:
    """A duration under the CRD rule ``duration(self) >= duration('1ms')`` and Istio's ``ValidateDuration``.

    The CRD rule reports durations under 1 ms; the webhook then refuses a fraction of a millisecond.
    """
    if duration is None:
        return
    if duration.nanos < _MILLISECOND:
        ctx.rule(f"{DURATION_RULE} (got {str(duration)!r})", *segments, json_type="string")
    else:
        check_duration(ctx, duration, *segments)


def is_istio_dns_label(text: str) -> bool:
    """Istio's ``labels.IsDNS1123Label``: a DNS label of at most 63 characters (upper case allowed)."""
    return len(text) <= 63 and bool(_ISTIO_DNS_LABEL.match(text))


def check_labels(ctx: ValidationContext, labels: Mapping[str, str], *segments: str | int) -> None:
    """Istio's ``labels.Instance.Validate``: Kubernetes label keys and values."""
    for key, value in labels.items():
        match = _TAG_KEY.match(key)
        if match is None:
            ctx.error(f"invalid tag key: {key!r}", *segments, key)
        elif match.group(1) and len(match.group(1)) - 1 > 253:
            ctx.error(f"invalid tag key: {key!r} (DNS prefix is too long)", *segments, key)
        elif len(match.group(2)) > 63:
            ctx.error(f"invalid tag key: {key!r} (name is too long)", *segments, key)
        if not _TAG_VALUE.match(value):
            ctx.error(f"invalid tag value: {value!r}", *segments, key)


def protocol_of(name: str) -> Protocol:
    """Istio's ``protocol.Parse``: the protocol of a port, ``UNSUPPORTED`` when unknown (or empty)."""
    return Protocol.lookup(name) or Protocol.UNSUPPORTED


def check_protocol(ctx: ValidationContext, name: str, *segments: str | int) -> None:
    """Istio's ``ValidateProtocol``: a known protocol name, or empty (protocol sniffing)."""
    if name and Protocol.lookup(name) is None:
        ctx.error(f"unsupported protocol: {name!r}", *segments)


def check_port_number(ctx: ValidationContext, number: int, *segments: str | int) -> bool:
    """Istio's ``ValidatePort``: 1..65535."""
    if not 1 <= number <= 65535:
        ctx.error(f"port number {number} must be in the range 1..65535", *segments)
        return False
    return True


def check_port_name(ctx: ValidationContext, name: str, *segments: str | int) -> None:
    """Istio's ``ValidatePortName``: a DNS label."""
    if not is_istio_dns_label(name):
        ctx.error(f"invalid port name: {name!r}", *segments)


def is_ip(text: str) -> bool:
    """True for an IPv4 or IPv6 address (with an optional zone)."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def check_ip(ctx: ValidationContext, text: str, *segments: str | int) -> None:
    """Istio's ``ValidateIPAddress``."""
    if not is_ip(text):
        ctx.error(f"{text!r} is not a valid IP", *segments)


def check_unix_address(ctx: ValidationContext, path: str, *segments: str | int) -> None:
    """Istio's ``ValidateUnixAddress``: an absolute file path, or an abstract socket name (``@name``)."""
    if not path:
        ctx.error("unix address must not be empty", *segments)
    elif not path.startswith("@") and (not path.startswith("/") or path.endswith("/")):
        ctx.error(f"{path!r} is not an absolute path to a file", *segments)


def check_subset_name(ctx: ValidationContext, name: str, *segments: str | int) -> None:
    """Istio's ``validateSubsetName``: a non-empty DNS label."""
    if not name:
        ctx.error("subset name cannot be empty", *segments)
    elif not is_istio_dns_label(name):
        ctx.error(f"subset name is invalid: {name!r}", *segments)


def check_namespace_slash_host(
    ctx: ValidationContext,
    host: str,
    *segments: str | int,
    gateway: bool,
    gateway_semantics: bool = False,
) -> None:
    """Istio's ``ValidateNamespaceSlashWildcardHostname`` for Gateway and Sidecar hosts.

    A host is ``namespace/dnsName``. The namespace is ``*``, ``.``, a DNS label, or ``~`` (in a Sidecar, or in
    a Gateway translated from the Gateway API). A Gateway host may also be a bare ``dnsName`` (the old form)
    or an IP address. The name must be fully qualified or ``*``, and a wildcard may only be ``*`` or a
    leading ``*.``.
    """
    namespace, slash, name = host.partition("/")
    if not slash:
        if gateway:
            _check_host_name(ctx, host, host, segments, gateway=True)
        else:
            ctx.error(f"host {host!r} must be of form namespace/dnsName", *segments)
        return
    if not namespace or not name:
        ctx.error(f"config namespace and dnsName in host entry {host!r} cannot be empty", *segments)
    tilde_allowed = not gateway or gateway_semantics
    if namespace not in ("*", ".") and not (namespace == "~" and tilde_allowed) and not is_istio_dns_label(namespace):
        where = "gateway" if gateway else "sidecar"
        ctx.error(f"invalid namespace value {namespace!r} in {where} host {host!r}", *segments)
    _check_host_name(ctx, name, host, segments, gateway=gateway)


def _check_host_name(
    ctx: ValidationContext, name: str, host: str, segments: tuple[str | int, ...], *, gateway: bool
) -> None:
    if name != "*" and "." not in name:
        ctx.error(f"short names (non FQDN) are not allowed: {host!r}", *segments)
    if not (gateway and is_ip(name)):
        check_wildcard_domain(ctx, name, *segments)
    if "*" in name and len(name) != 1 and not name.startswith("*."):
        ctx.error(f"partial wildcard {name!r} not allowed", *segments)


def quoted_list(values: Iterable[str]) -> str:
    """Values as a sorted, quoted, comma-separated list."""
    return ", ".join(repr(value) for value in sorted(values))


def written(ctx: ValidationContext, *names: str) -> bool:
    """True when the object at ``ctx`` was written with any of ``names`` set (not null, not ``[]``).

    Rules such as "must have at least one field" ask this of the data as written, so that a field that
    failed the schema (and was left unset) does not also make the object look empty.
    """
    raw = ctx.raw()
    return isinstance(raw, dict) and any(raw.get(name) not in (None, []) for name in names)
