"""Validation rules shared by several kinds: Istio's ``agent/validation.go`` helpers and common CRD rules.

Each rule reports into a :class:`~mesh_config.ValidationContext` positioned at the field it checks.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence

import re2

from mesh_config.common import PolicyTargetReference, WorkloadSelector
from mesh_config.types import Duration
from mesh_config.validation import ValidationContext

__all__ = [
    "MAX_REGEX_LENGTH",
    "check_cidr",
    "check_duration",
    "check_export_to",
    "check_fqdn",
    "check_namespace_slash_host",
    "check_percent",
    "check_port",
    "check_port_name",
    "check_regex",
    "check_selector",
    "check_selector_choice",
    "check_target_ref",
    "check_target_refs",
    "check_wildcard_domain",
    "is_dns_label",
]

MAX_REGEX_LENGTH = 1024
"""Istio's cap on the length of a user regex."""

_DNS_LABEL = re.compile(r"[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?\Z")
# Istio's IsDNS1123Label accepts upper case too.
_DNS1123_LABEL = _DNS_LABEL
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False
_WILDCARD_LABEL = re.compile(r"(?:\*|\*-?[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?)\Z")
_TARGET_GROUP = re.compile(r"(?:|[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)\Z")
_TARGET_KIND = re.compile(r"[a-zA-Z](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?\Z")
_TARGET_KINDS = {
    ("", "Service"),
    ("core", "Service"),
    ("networking.istio.io", "ServiceEntry"),
    ("gateway.networking.k8s.io", "Gateway"),
    ("gateway.networking.k8s.io", "GatewayClass"),
}


def is_dns_label(text: str) -> bool:
    """True for a DNS-1123 label of at most 63 characters (upper case accepted, as Istio does)."""
    return len(text) <= 63 and bool(_DNS1123_LABEL.match(text))


def _domain_problem(domain: str, *, wildcard: bool) -> str | None:
    if not domain:
        return "domain name is empty"
    if len(domain) > 255:
        return f"domain name {domain[:40]!r}... is too long (at most 255 characters)"
    labels = domain[:-1].split(".") if domain.endswith(".") else domain.split(".")
    for index, label in enumerate(labels):
        if wildcard and index == 0 and label.startswith("*"):
            if len(label) > 63 or not _WILDCARD_LABEL.match(label):
                return f"wildcard label {label!r} in {domain!r} is malformed"
            continue
        if not label:
            return f"domain name {domain!r} has an empty label"
        if "*" in label:
            return f"domain name {domain!r}: only the first label may be a wildcard"
        if len(label) > 63 or not _DNS_LABEL.match(label):
            return f"domain name {domain!r}: label {label!r} is not a valid DNS label"
    top = labels[-1]
    if len(labels) > 1 and top.isdigit():
        return f"domain name {domain!r} has an all-numeric top-level domain"
    return None


def check_wildcard_domain(ctx: ValidationContext, domain: str, *segments: str | int) -> bool:
    """Istio's ``ValidateWildcardDomain``: a DNS name whose first label may be ``*`` or ``*foo``."""
    problem = _domain_problem(domain, wildcard=True)
    if problem:
        ctx.error(problem, *segments)
    return problem is None


def check_fqdn(ctx: ValidationContext, domain: str, *segments: str | int) -> bool:
    """Istio's ``ValidateFQDN``: a DNS name without wildcards."""
    problem = _domain_problem(domain, wildcard=False)
    if problem:
        ctx.error(problem, *segments)
    return problem is None


def check_namespace_slash_host(
    ctx: ValidationContext, host: str, *segments: str | int, allow_tilde: bool = False, allow_ip: bool = False
) -> None:
    """Gateway and Sidecar hosts: ``namespace/dnsName`` (``*/``, ``./``, ``~ns/`` where allowed)."""
    namespace, slash, name = host.partition("/")
    if not slash:
        ctx.error(f"host {host!r} must be of the form namespace/dnsName", *segments)
        return
    bare = namespace[1:] if allow_tilde and namespace.startswith("~") else namespace
    if bare not in ("*", ".") and not is_dns_label(bare):
        ctx.error(f"host {host!r}: namespace {namespace!r} must be '*', '.', or a DNS label", *segments)
    if allow_ip and _is_ip(name):
        return
    if name != "*" and "." not in name.rstrip("."):
        ctx.error(f"host {host!r}: short names are not allowed; use a fully qualified name or '*'", *segments)
        return
    check_wildcard_domain(ctx, name, *segments)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def check_port(ctx: ValidationContext, port: int, *segments: str | int) -> bool:
    """Istio's ``ValidatePort``: 1..65535."""
    if not 1 <= port <= 65535:
        ctx.error(f"port number {port} must be in the range 1..65535", *segments)
        return False
    return True


def check_port_name(ctx: ValidationContext, name: str, *segments: str | int) -> None:
    """Istio's ``ValidatePortName``: a DNS-1123 label."""
    if not name or not is_dns_label(name):
        ctx.error(f"port name {name!r} must be a lower-case DNS label", *segments)


def check_duration(
    ctx: ValidationContext, duration: Duration | None, *segments: str | int, allow_zero: bool = False
) -> None:
    """Istio's ``ValidateDuration``: at least 1 ms and whole milliseconds."""
    if duration is None:
        return
    if allow_zero and duration.nanos == 0:
        return
    if duration.nanos < 1_000_000:
        ctx.error(f"duration {duration} must be at least 1ms", *segments)
    elif duration.nanos % 1_000_000:
        ctx.error(f"duration {duration} must be a whole number of milliseconds", *segments)


def check_percent(ctx: ValidationContext, value: float, *segments: str | int) -> None:
    """A percentage in 0..100."""
    if not 0 <= value <= 100:
        ctx.error(f"percentage {value} must be in the range 0..100", *segments)


def check_cidr(ctx: ValidationContext, text: str, *segments: str | int) -> bool:
    """Istio's ``ValidateIPSubnet``: an IP address or a CIDR block."""
    try:
        if "/" in text and not text.rpartition("/")[2].isdigit():
            raise ValueError(text)  # a netmask ("/255.0.0.0"), which Go's parser refuses
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        ctx.error(f"{text!r} is not an IP address or CIDR block", *segments)
        return False
    return True


def check_regex(ctx: ValidationContext, regex: str, *segments: str | int) -> None:
    """A user regex, as Envoy runs it: it must compile with RE2 and be at most 1024 characters."""
    if len(regex) > MAX_REGEX_LENGTH:
        ctx.error(f"regex is {len(regex)} characters long; the limit is {MAX_REGEX_LENGTH}", *segments)
        return
    try:
        re2.compile(regex, _RE2_OPTIONS)
    except re2.error as error:
        reason = error.args[0] if error.args else error
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        ctx.error(f"regex {regex!r} does not compile with RE2: {reason}", *segments)


def check_export_to(
    ctx: ValidationContext, export_to: Sequence[str], *segments: str | int, allow_tilde: bool = False
) -> None:
    """Istio's ``validateExportTo``: ``.``, ``*``, namespaces, and ``~`` where allowed; no duplicates."""
    seen: set[str] = set()
    for index, entry in enumerate(export_to):
        value = ctx.namespace if entry == "." and ctx.namespace else entry
        if entry == "~" and not allow_tilde:
            ctx.error("exportTo '~' is allowed only on ServiceEntry", *segments, index)
        elif entry not in ("*", ".", "~") and not is_dns_label(entry):
            ctx.error(f"exportTo entry {entry!r} must be '.', '*' or a namespace name", *segments, index)
        if value in seen:
            ctx.error(f"exportTo entry {entry!r} is repeated", *segments, index)
        seen.add(value)
    if len(export_to) > 1 and "*" in export_to:
        ctx.error("exportTo '*' must be the only entry", *segments)
    if len(export_to) > 1 and "~" in export_to:
        ctx.error("exportTo '~' must be the only entry", *segments)


def check_selector(ctx: ValidationContext, selector: WorkloadSelector | None, *segments: str | int) -> None:
    """Istio's ``validateWorkloadSelector`` and the CRD rules on ``matchLabels``."""
    if selector is None:
        return
    here = ctx.at(*segments, "matchLabels")
    if len(selector.match_labels) > 4096:
        here.error("in body should have at most 4096 properties")
    if not selector.match_labels:
        ctx.warning("selector has no labels and so selects every workload of the namespace", *segments)
    for key, value in selector.match_labels.items():
        if not key:
            here.rule("key must not be empty")
        elif "*" in key:
            here.rule("wildcard not allowed in label key match")
        if "*" in value:
            here.rule("wildcard not allowed in label value match", key, json_type="string")
        if len(value) > 63:
            here.max_length(63, key)


def check_selector_choice(ctx: ValidationContext, *present: tuple[str, bool], message: str = "") -> None:
    """At most one of selector, targetRef and targetRefs may be set (``message`` overrides the wording)."""
    names = [name for name, is_set in present if is_set]
    if len(names) > 1:
        ctx.rule(message or f"only one of {' or '.join(name for name, _ in present)} can be set")


def check_target_ref(ctx: ValidationContext, ref: PolicyTargetReference | None, *segments: str | int) -> None:
    """Istio's ``validatePolicyTargetReference`` and the CRD rules on ``targetRef``."""
    if ref is None:
        return
    here = ctx.at(*segments)
    if not ref.kind and ctx.has(*segments, "kind"):
        here.min_length(1, "kind")
    if not ref.name and ctx.has(*segments, "name"):
        here.min_length(1, "name")
    if len(ref.name) > 253:
        here.max_length(253, "name")
    if ref.group and (len(ref.group) > 253 or not _TARGET_GROUP.match(ref.group)):
        here.pattern(_TARGET_GROUP.pattern.rstrip("\\Z"), "group")
    if ref.kind and (len(ref.kind) > 63 or not _TARGET_KIND.match(ref.kind)):
        here.pattern(_TARGET_KIND.pattern.rstrip("\\Z"), "kind")
    if ref.namespace:
        here.rule("cross namespace referencing is not currently supported", "namespace", json_type="string")
    if ref.kind and (ref.group, ref.kind) not in _TARGET_KINDS:
        here.error(
            f"targetRef {ref.group or 'core'}/{ref.kind} is not supported; expected a Service, a ServiceEntry, "
            "a gateway.networking.k8s.io Gateway or GatewayClass"
        )


def check_target_refs(ctx: ValidationContext, refs: Sequence[PolicyTargetReference], *segments: str | int) -> None:
    """Each entry of ``targetRefs``."""
    for index, ref in enumerate(refs):
        check_target_ref(ctx, ref, *segments, index)
