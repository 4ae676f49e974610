"""Checks the VirtualService rules share (private): headers, string matches, destinations, gateways.

They follow Istio's ``pkg/config/validation`` (``validation.go``, ``virtualservice.go``,
``header_value_validator.go``) and ``pkg/config/labels``; messages keep Istio's wording and add the value.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable, Mapping

from mesh_config.networking._http_route import Destination, HeaderOperations, Headers, Percent, StringMatch
from mesh_config.rules import check_duration, check_fqdn, check_port, check_regex, check_wildcard_domain
from mesh_config.types import Duration
from mesh_config.validation import ValidationContext

MESH_GATEWAY = "mesh"
"""The reserved gateway name for every sidecar of the mesh."""

_JWT_CLAIM = "@request.auth.claims"
_PSEUDO_HEADERS = frozenset({":method", ":scheme", ":authority", ":path", ":status"})
# RFC 7230 token characters: https://greenbytes.de/tech/webdav/rfc7230.html#header.fields
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~A-Za-z0-9]+")
_HEADER_VALUE_FORBIDDEN = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# Istio's DNS-1123 label (pkg/config/labels) allows upper case.
_LABEL = r"[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?"
_QUALIFIED_NAME = r"(?:[A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_RE = re.compile(_LABEL)
_TAG_KEY = re.compile(rf"((?:{_LABEL}(?:\.{_LABEL})*/)?)({_QUALIFIED_NAME})")
_TAG_VALUE = re.compile(rf"(?:{_QUALIFIED_NAME})?")
_CEL_DURATION = "must be a valid duration greater than 1ms"
_MILLISECOND = 1_000_000


def go_quote(text: str) -> str:
    """``text`` double-quoted, as Go's ``%q`` prints it."""
    return json.dumps(text, ensure_ascii=False)


def go_float(value: float) -> str:
    """A float as Go's ``%v`` prints it (``101``, ``0.5``, ``1e-05``)."""
    text = repr(value)
    return text[:-2] if text.endswith(".0") else text


def is_label(text: str) -> bool:
    """Istio's ``IsDNS1123Label``: a DNS label of at most 63 characters (upper case allowed)."""
    return len(text) <= 63 and _LABEL_RE.fullmatch(text) is not None


def is_ip(text: str) -> bool:
    """True for an IPv4 or IPv6 address."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def is_jwt_claim(name: str) -> bool:
    """True for a header name that routes on a JWT claim (``@request.auth.claims.sub``, ``...[a][b]``)."""
    if not name.lower().startswith(_JWT_CLAIM):
        return False
    rest = name[len(_JWT_CLAIM) :]
    return (rest.startswith(".") and len(rest) > 1) or (rest.startswith("[") and rest.endswith("]") and len(rest) > 2)


def host_overlaps(host: str, other: str) -> bool:
    """Istio's ``host.Name.Matches``: the two (possibly wildcard) hosts share a name, case-sensitively."""
    if host.startswith("*"):
        if other.startswith("*"):
            shorter, longer = (host, other) if len(host) < len(other) else (other, host)
            return longer[1:].endswith(shorter[1:])
        return other.endswith(host[1:])
    if other.startswith("*"):
        return host.endswith(other[1:])
    return host == other


def host_within(host: str, other: str) -> bool:
    """Istio's ``host.Name.SubsetOf``: every name ``host`` covers, ``other`` covers too."""
    if host.startswith("*"):
        return other.startswith("*") and len(host) >= len(other) and host[1:].endswith(other[1:])
    if other.startswith("*"):
        return host.endswith(other[1:])
    return host == other


def check_labels(ctx: ValidationContext, labels: Mapping[str, str], *segments: str | int) -> None:
    """Istio's ``labels.Instance.Validate`` (``sourceLabels``): Kubernetes label keys and values."""
    for key, value in labels.items():
        match = _TAG_KEY.fullmatch(key)
        if match is None:
            ctx.error(f"invalid tag key: {go_quote(key)}", *segments, key)
        elif len(match.group(1)) - 1 > 253:
            ctx.error(f"invalid tag key: {go_quote(key)} (DNS prefix is too long)", *segments, key)
        elif len(match.group(2)) > 63:
            ctx.error(f"invalid tag key: {go_quote(key)} (name is too long)", *segments, key)
        if _TAG_VALUE.fullmatch(value) is None:
            ctx.error(f"invalid tag value: {go_quote(value)}", *segments, key)


def check_match_header_name(ctx: ValidationContext, name: str, *segments: str | int) -> None:
    """A header name in a match: a token, a pseudo-header, or a JWT claim (``@request.auth.claims...``)."""
    if not name:
        ctx.error("header name cannot be empty", *segments)
    elif not is_jwt_claim(name) and name not in _PSEUDO_HEADERS and not _HEADER_NAME.fullmatch(name):
        ctx.error(f"header name {name} is not a valid header name", *segments)


def check_cors_header_name(ctx: ValidationContext, name: str, *segments: str | int) -> None:
    """A CORS allow/expose header: ``*`` or a token."""
    if not name:
        ctx.error("header name cannot be empty", *segments)
    elif name != "*" and not _HEADER_NAME.fullmatch(name):
        ctx.error(f"header name {name} is not a valid header name", *segments)


def is_authority_header(name: str) -> bool:
    """True for ``:authority`` and ``Host`` (any case)."""
    return name.lower() in (":authority", "host")


def _internal(name: str) -> bool:
    return name.startswith(":") or name.lower() == "host"


def _check_operation_name(ctx: ValidationContext, name: str, *segments: str | int, authority_ok: bool) -> None:
    if not name:
        ctx.error("header name cannot be empty", *segments)
    elif authority_ok:
        if _internal(name) and not is_authority_header(name):
            ctx.error(f'invalid header {go_quote(name)}: header cannot have ":" prefix', *segments)
    elif name.lower() == "host":
        ctx.error(f"invalid header {go_quote(name)}: cannot set Host header", *segments)
    elif _internal(name):
        ctx.error(f'invalid header {go_quote(name)}: header cannot have ":" prefix', *segments)


def header_value_problem(value: str) -> str | None:
    """Why Envoy would refuse a header value, or ``None``: control characters, or bad ``%VAR%`` syntax."""
    if _HEADER_VALUE_FORBIDDEN.search(value):
        return f"header value configuration {value} is invalid"
    problem = _envoy_format_problem(value)
    return f"header value configuration: {problem}" if problem else None


def check_headers(ctx: ValidationContext, headers: Headers | None, *segments: str | int) -> None:
    """Header manipulation: names Envoy may change (``Host``/``:authority`` only in request set/add), values."""
    if headers is None:
        return
    here = ctx.at(*segments)
    for side, operations in (("request", headers.request), ("response", headers.response)):
        if operations is not None:
            _check_operations(here.at(side), operations, request=side == "request")


def _check_operations(ctx: ValidationContext, operations: HeaderOperations, *, request: bool) -> None:
    for field, values in (("add", operations.add), ("set", operations.set)):
        for name, value in values.items():
            _check_operation_name(ctx, name, field, name, authority_ok=request)
            problem = header_value_problem(value)
            if problem:
                ctx.error(problem, field, name)
    for index, name in enumerate(operations.remove):
        _check_operation_name(ctx, name, "remove", index, authority_ok=False)


def check_string_match(
    ctx: ValidationContext, match: StringMatch | None, where: str, *segments: str | int, uri: bool = False
) -> None:
    """Istio's ``validateStringMatch``: no empty prefix (allowed for ``uri``), no empty or invalid regex."""
    if match is None:
        return
    if match.prefix is not None and not match.prefix and not uri:
        ctx.error(f"{go_quote(where)}: prefix string match should not be empty", *segments, "prefix")
    if match.regex is not None:
        if not match.regex:
            ctx.error(f"{go_quote(where)}: regex string match should not be empty", *segments, "regex")
        else:
            check_regex(ctx, match.regex, *segments, "regex")


def check_destination(ctx: ValidationContext, destination: Destination | None, *segments: str | int) -> None:
    """Istio's ``validateDestination``: host a domain (not ``*``), subset a DNS label, port 1..65535."""
    if destination is None:
        return
    here = ctx.at(*segments)
    if destination.host == "*":
        here.error(f"invalid destination host {destination.host}", "host")
    else:
        check_wildcard_domain(here, destination.host, "host")
    if destination.subset and not is_label(destination.subset):
        here.error(f"subset name is invalid: {destination.subset}", "subset")
    if destination.port is not None:
        check_port(here, destination.port.number, "port", "number")


def check_gateway_names(
    ctx: ValidationContext, names: Iterable[str], *segments: str | int, gateway_semantics: bool = False
) -> None:
    """Gateway references: ``namespace/name``, or a bare name; the legacy ``name.namespace`` warns."""
    for index, name in enumerate(names):
        namespace, slash, gateway = name.partition("/")
        if not slash:
            if "." in name:
                parts = name.split(".")
                ctx.warning(
                    f"using legacy gatewayName format {go_quote(name)}; prefer the <namespace>/<name> format: "
                    f'"{parts[1]}/{parts[0]}"',
                    *segments,
                    index,
                )
            check_fqdn(ctx, name, *segments, index)
            continue
        if not namespace or not gateway:
            ctx.error(f"config namespace and gateway name cannot be empty (in {go_quote(name)})", *segments, index)
        if not is_label(namespace):
            ctx.error(f"invalid value for namespace: {go_quote(namespace)}", *segments, index)
        if not is_label(gateway) and not gateway_semantics:
            ctx.error(f"invalid value for gateway name: {go_quote(gateway)}", *segments, index)


def check_percentage(ctx: ValidationContext, percentage: Percent | None, *segments: str | int) -> None:
    """Istio's ``validatePercentage``: 0, or 0.0001 to 100."""
    if percentage is None:
        return
    value = percentage.value
    if value < 0 or value > 100 or 0 < value < 0.0001:
        message = f"percentage {go_float(value)} is neither 0.0, nor in range [0.0001, 100.0]"
        ctx.error(message, *segments, "value")


def check_crd_duration(ctx: ValidationContext, duration: Duration | None, *segments: str | int) -> None:
    """A duration field of the VirtualService CRD: its CEL rule (at least 1ms), then whole milliseconds."""
    if duration is None:
        return
    if duration.nanos < _MILLISECOND:
        ctx.rule(f"{_CEL_DURATION} (it is {duration})", *segments, json_type="string")
        return
    check_duration(ctx, duration, *segments)


def _envoy_format_problem(value: str) -> str | None:
    """Envoy's header value parser (``header_parser.cc``, ported by Istio): is ``%VAR(...)%`` well formed."""
    state = "literal"
    at = 0
    while at < len(value):
        char = value[at]
        has_next = at + 1 < len(value)
        if state == "literal":
            if char == "%":
                if not has_next:
                    return "invalid header configuration. Un-escaped %"
                if value[at + 1] == "%":
                    at += 1
                else:
                    state = "name"
        elif state == "name":
            if char == "%":
                state = "literal"
            elif char == "(":
                state = "array"
        elif state == "array":
            if char == "[":
                state = "string-start"
            elif char != " ":
                state = "string"
        elif state == "delimiter":
            if char == ",":
                state = "string-start"
            elif char == "]":
                state = "args-end"
            elif char != " ":
                return f"invalid header configuration. Expecting ',', ']', or whitespace, but found '{char}'"
        elif state == "string-start":
            if char == '"':
                state = "string"
            elif char != " ":
                return f"invalid header configuration. Expecting '\"', but found '{char}'"
        elif state == "string":
            if char == "\\":
                if not has_next:
                    return "invalid header configuration. Un-terminated backslash in JSON string"
                at += 1
            elif char == ")":
                state = "variable-end"
            elif char == '"':
                state = "delimiter"
        elif state == "args-end":
            if char == ")":
                state = "variable-end"
            elif char != " ":
                return f"invalid header configuration. Expecting ')' or whitespace after ']', but found '{char}'"
        elif char == "%":  # variable-end
            state = "literal"
        elif char != " ":
            return f"invalid header configuration. Expecting '%' or whitespace after ')', but found '{char}'"
        at += 1
    if state != "literal":
        return f"invalid header configuration. Un-terminated variable expression '{value}'"
    return None
