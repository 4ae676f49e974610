"""The values an AuthorizationPolicy matches on (private): IPs, ports, service accounts, paths, attributes.

These follow Istio's ``pkg/config/security/security.go``. Each function returns a problem as a sentence
quoting the value, or ``None`` when the value is good.
"""

from __future__ import annotations

import ipaddress
import re

import re2

from mesh_config.rules import is_dns_label

__all__ = [
    "MAX_SERVICE_ACCOUNTS",
    "MAX_SERVICE_ACCOUNT_LENGTH",
    "attribute_problem",
    "attribute_value_problem",
    "identity_warning",
    "ip_problem",
    "namespace_problem",
    "path_template_problem",
    "port_problem",
    "service_account_problem",
    "service_account_regex_problem",
]

MAX_SERVICE_ACCOUNTS = 16
"""At most this many ``serviceAccounts`` (and ``notServiceAccounts``) in one source."""

MAX_SERVICE_ACCOUNT_LENGTH = 320
"""The longest ``namespace/serviceAccount`` value."""

MATCH_ONE = "{*}"
MATCH_ANY = "{**}"
# RFC 3986 pchar, which Envoy's URI templates allow as literal path segments.
_LITERAL = re.compile(r"[a-zA-Z0-9\-._~%!$&'()+,;:@=]+\Z")

_NAMESPACE_PATTERN = re.compile(r"[-a-z0-9*]+\Z")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\Z")
_SPIFFE = "spiffe://"

_IP_KEYS = frozenset({"source.ip", "remote.ip", "destination.ip"})
_PLAIN_KEYS = frozenset(
    {
        "source.namespace",
        "source.principal",
        "source.serviceAccount",
        "source.trustDomain",
        "request.auth.principal",
        "request.auth.audiences",
        "request.auth.presenter",
        "destination.ip",
        "destination.port",
        "connection.sni",
        *_IP_KEYS,
    }
)
_MAP_PREFIXES = ("request.headers", "request.experimental.inline.headers", "request.auth.claims")
_EXPERIMENTAL = "experimental.envoy.filters."
_SUPPORTED = (
    "request.headers[<name>], source.ip, remote.ip, source.namespace, source.serviceAccount, source.principal, "
    "source.trustDomain, request.auth.principal, request.auth.audiences, request.auth.presenter, "
    "request.auth.claims[<name>], destination.ip, destination.port, connection.sni, "
    "experimental.envoy.filters.<filter>[<key>]"
)


def ip_problem(text: str) -> str | None:
    """An IP address (``10.1.2.3``, ``::1``) or a CIDR block (``10.1.0.0/16``), as Go's ``netip`` parses them.

    Host bits may be set in a block (``10.1.2.3/16``); prefix lengths have no sign or leading zero; an IPv6
    zone is allowed on an address but not in a block.
    """
    if "/" not in text:
        if _address(text) is None:
            return f"{text!r} is not an IP address"
        return None
    address, _, bits = text.rpartition("/")
    parsed = _address(address)
    if parsed is None:
        return f"{text!r} is not a CIDR block: {address!r} is not an IP address"
    if "%" in address:
        return f"{text!r} is not a CIDR block: an IPv6 zone may not appear in a block"
    if not bits.isdigit() or not bits.isascii() or (len(bits) > 1 and bits.startswith("0")):
        return f"{text!r} is not a CIDR block: the prefix length {bits!r} is not a number"
    if int(bits) > parsed.max_prefixlen:
        return f"{text!r} is not a CIDR block: the prefix length {bits} is longer than {parsed.max_prefixlen}"
    return None


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def port_problem(text: str) -> str | None:
    """A port number written as a string: decimal digits, 0..65535 (Istio parses it as an unsigned number)."""
    if not text.isascii() or not text.isdigit() or int(text) > 65535:
        return f"port {text!r} must be a number in the range 0..65535"
    return None


def service_account_problem(value: str) -> str | None:
    """A ``serviceAccounts`` value: ``name`` or ``namespace/name``, no wildcard."""
    if not value:
        return "service account must not be empty"
    if "*" in value:
        return f"service account {value!r}: wildcards are not allowed"
    namespace, slash, name = value.partition("/")
    if "/" in name:
        return f"service account {value!r} must be 'serviceAccount' or 'namespace/serviceAccount'"
    if len(value) > MAX_SERVICE_ACCOUNT_LENGTH:
        return f"service account {value[:40]!r}... is longer than {MAX_SERVICE_ACCOUNT_LENGTH} characters"
    if slash and not namespace:
        return f"service account {value!r} has an empty namespace; expected 'namespace/serviceAccount'"
    if slash and not name:
        return f"service account {value!r} has an empty name; expected 'namespace/serviceAccount'"
    return None


def path_template_problem(path: str) -> str | None:
    """Envoy URI templates in ``paths``: ``{*}`` matches one segment, ``{**}`` the rest and must come last.

    A path without a template may hold any characters; in a templated path every other segment must be a
    literal (RFC 3986 ``pchar``), and braces appear only as ``{*}`` or ``{**}``.
    """
    templated = MATCH_ONE in path or MATCH_ANY in path
    seen_any = False
    for segment in path.strip("/").split("/"):
        if segment in (MATCH_ONE, MATCH_ANY):
            if seen_any:
                return f"path {path!r}: {MATCH_ANY} must be the last operator of the template"
            seen_any = segment == MATCH_ANY
            continue
        if "{" in segment or "}" in segment:
            return f"path {path!r}: '{{' and '}}' may appear only as {MATCH_ONE} or {MATCH_ANY}"
        if templated and not _LITERAL.match(segment):
            return f"path {path!r}: segment {segment!r} of a template must be a literal of URL path characters"
    return None


def attribute_problem(key: str) -> str | None:
    """A ``when`` key: one of the attributes Istio supports, with ``[name]`` where it takes one."""
    if key.startswith(_MAP_PREFIXES) or key.startswith(_EXPERIMENTAL):
        return _map_key_problem(key)
    if key in _PLAIN_KEYS:
        return None
    if key == "destination.namespace":
        return f"attribute {key!r} is replaced by the policy's metadata.namespace"
    if key.startswith("destination.labels"):
        return f"attribute {key!r} is replaced by the workload selector"
    if key in ("destination.name", "destination.user"):
        return f"attribute {key!r} is deprecated and was supported only in v1alpha1"
    return f"unknown attribute {key!r}; supported: {_SUPPORTED}"


def _map_key_problem(key: str) -> str | None:
    opening = key.find("[")
    if key.endswith("]") and 0 < opening < len(key) - 2:
        return None
    return f"attribute {key!r} must have the form name[key], e.g. request.headers[User-Agent]"


def attribute_value_problem(key: str, value: str) -> str | None:
    """One of a condition's ``values`` or ``notValues``, for its key."""
    if not value:
        return "value must not be empty"
    if key in _IP_KEYS:
        return ip_problem(value)
    if key == "destination.port":
        return port_problem(value)
    if key == "source.serviceAccount":
        return service_account_problem(value)
    return None


def namespace_problem(value: str) -> tuple[bool, str] | None:
    """A ``namespaces`` value (or ``source.namespace`` condition value); ``(is_error, message)`` or ``None``.

    Istio turns the value into the regular expression ``.*/ns/<value>/.*`` with each ``*`` made ``.*`` and
    nothing else escaped: a value that does not compile makes Envoy reject the policy (an error), and one
    that is not a namespace name matches by regular-expression rules (a warning).
    """
    if not _compiles(f".*/ns/{value.replace('*', '.*')}/.*"):
        return True, f"namespace {value!r} makes an invalid regular expression, which Envoy would reject"
    if not _NAMESPACE_PATTERN.match(value):
        return False, (
            f"namespace {value!r} is not a namespace name (lower-case letters, digits, '-', and '*' as a "
            "wildcard); Istio matches it as a regular expression"
        )
    return None


def service_account_regex_problem(value: str) -> tuple[bool, str] | None:
    """A well-formed service account that Istio's regular expression would not match as meant."""
    namespace, slash, name = value.partition("/")
    if not slash:
        namespace, name = "default", value
    if not _compiles(f"spiffe://.+/ns/{namespace}/(.+/|)sa/{name}(/.+)?"):
        return True, f"service account {value!r} makes an invalid regular expression, which Envoy would reject"
    if not is_dns_label(namespace) or len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
        return False, (
            f"service account {value!r} is not a Kubernetes 'namespace/name' (lower-case DNS names); "
            "Istio matches it as a regular expression"
        )
    return None


def identity_warning(value: str) -> str | None:
    """A principal written with the ``spiffe://`` scheme, which Istio adds itself: it never matches."""
    if value.startswith(_SPIFFE):
        return (
            f"principal {value!r} starts with {_SPIFFE!r}, which Istio adds itself, so it never matches; "
            f"write {value[len(_SPIFFE) :]!r}"
        )
    return None


def _compiles(regex: str) -> bool:
    try:
        re2.compile(regex)
    except re2.error:
        return False
    return True
