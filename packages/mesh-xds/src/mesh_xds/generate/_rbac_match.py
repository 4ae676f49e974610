"""Envoy matchers for AuthorizationPolicy values (private).

Istio's values may start or end with ``*``: ``*`` alone matches any non-empty value, ``*suffix`` a suffix and
``prefix*`` a prefix; anything else matches exactly. User text that ends up in a regular expression is always
escaped (CVE-2026-39350), and a suffix under a fixed prefix becomes a regular expression rather than a suffix
that includes the prefix (CVE-2020-16844).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

from envoy.config.core.v3 import address_pb2, extension_pb2
from envoy.config.rbac.v3 import rbac_pb2
from envoy.config.route.v3 import route_components_pb2
from envoy.extensions.path.match.uri_template.v3 import uri_template_match_pb2
from envoy.type.matcher.v3 import metadata_pb2, path_pb2, regex_pb2, string_pb2, value_pb2
from google.protobuf import wrappers_pb2

__all__ = [
    "JWT_FILTER",
    "JWT_PAYLOAD",
    "cidr",
    "header_matcher",
    "host_matcher",
    "jwt_claim",
    "metadata_matcher",
    "path_permission",
    "permission_and",
    "permission_any",
    "permission_not",
    "permission_or",
    "principal_and",
    "principal_any",
    "principal_not",
    "principal_or",
    "quote_meta",
    "regex",
    "string_matcher",
    "value_or",
]

JWT_FILTER = "envoy.filters.http.jwt_authn"
JWT_PAYLOAD = "payload"
"""The metadata key under which the JWT filter stores a verified token's payload (``payload_in_metadata``)."""

_META = frozenset("\\.+*?()|[]{}^$")


def quote_meta(text: str) -> str:
    """``text`` as a literal in an RE2 expression (Go's ``regexp.QuoteMeta``)."""
    return "".join("\\" + ch if ch in _META else ch for ch in text)


def regex(expression: str) -> Any:
    """A StringMatcher with an RE2 expression, which must match the whole value."""
    return string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=expression))


def string_matcher(value: str, prefix: str = "", *, ignore_case: bool = False) -> Any:
    """A StringMatcher for an Istio value, with ``prefix`` prepended to what the value matches.

    ``*`` matches any non-empty value; ``*x`` a value ending in ``x`` (with ``prefix``: a value starting with
    ``prefix`` and ending in ``x``); ``x*`` a value starting with ``prefix + x``; else exactly ``prefix + x``.
    """
    if value == "*":
        return regex(".+")
    if value.startswith("*"):
        if prefix:
            return regex(quote_meta(prefix) + ".*" + quote_meta(value[1:]))
        return string_pb2.StringMatcher(suffix=value[1:], ignore_case=ignore_case)
    if value.endswith("*"):
        return string_pb2.StringMatcher(prefix=prefix + value[:-1], ignore_case=ignore_case)
    return string_pb2.StringMatcher(exact=prefix + value, ignore_case=ignore_case)


def header_matcher(name: str, value: str) -> Any:
    """A HeaderMatcher for an Istio value (``*``: the header is present)."""
    if value == "*":
        return route_components_pb2.HeaderMatcher(name=name, present_match=True)
    return route_components_pb2.HeaderMatcher(name=name, string_match=string_matcher(value))


def host_matcher(value: str) -> list[Any]:
    """HeaderMatchers on ``:authority`` for an Istio host, ignoring case (RFC 4343, CVE-2021-39155).

    A host also matches with a port (``example.com`` matches ``example.com:8080``): the header carries one
    when the client called a non-default port.
    """
    name = ":authority"
    if value == "*":
        return [route_components_pb2.HeaderMatcher(name=name, present_match=True)]
    if value.endswith("*"):
        return [route_components_pb2.HeaderMatcher(name=name, string_match=string_matcher(value, ignore_case=True))]
    with_port = f"(?i){'.*' if value.startswith('*') else ''}{quote_meta(value.lstrip('*'))}:[0-9]+"
    return [
        route_components_pb2.HeaderMatcher(name=name, string_match=string_matcher(value, ignore_case=True)),
        route_components_pb2.HeaderMatcher(name=name, string_match=regex(with_port)),
    ]


def path_permission(value: str) -> Any:
    """A Permission on the request path without query or fragment (``url_path``).

    Values with Envoy URI-template operators (``{*}``, ``{**}``) become a ``uri_template`` match.
    """
    if "{*}" in value or "{**}" in value:
        template = value.replace("{**}", "**").replace("{*}", "*")
        config = extension_pb2.TypedExtensionConfig(name="uri-template")
        config.typed_config.Pack(uri_template_match_pb2.UriTemplateMatchConfig(path_template=template))
        return rbac_pb2.Permission(uri_template=config)
    return rbac_pb2.Permission(url_path=path_pb2.PathMatcher(path=string_matcher(value)))


def cidr(value: str) -> Any:
    """A CidrRange for an IP address (a host range) or a CIDR block.

    Raises:
        ValueError: the value is neither.
    """
    network = ipaddress.ip_network(value.strip(), strict=False)
    return address_pb2.CidrRange(
        address_prefix=str(network.network_address), prefix_len=wrappers_pb2.UInt32Value(value=network.prefixlen)
    )


def metadata_matcher(filter_name: str, path: Sequence[str], value: Any) -> Any:
    """A MetadataMatcher on ``path`` under a filter's dynamic metadata, with a ValueMatcher."""
    segments = [metadata_pb2.MetadataMatcher.PathSegment(key=key) for key in path]
    return metadata_pb2.MetadataMatcher(filter=filter_name, path=segments, value=value)


def value_or(values: Sequence[str]) -> Any:
    """A ValueMatcher matching a string value, or a list holding a string, that matches one of ``values``."""
    strings = [value_pb2.ValueMatcher(string_match=string_matcher(v)) for v in values]
    one = (
        strings[0]
        if len(strings) == 1
        else value_pb2.ValueMatcher(or_match=value_pb2.OrMatcher(value_matchers=strings))
    )
    in_list = value_pb2.ValueMatcher(list_match=value_pb2.ListMatcher(one_of=one))
    return value_pb2.ValueMatcher(or_match=value_pb2.OrMatcher(value_matchers=[one, in_list]))


def jwt_claim(path: Sequence[str], value: Any) -> Any:
    """A Principal on a claim of the verified JWT's payload (the JWT filter's metadata)."""
    return rbac_pb2.Principal(metadata=metadata_matcher(JWT_FILTER, [JWT_PAYLOAD, *path], value))


def permission_any() -> Any:
    """A Permission that matches every request."""
    return rbac_pb2.Permission(any=True)


def permission_or(rules: Sequence[Any]) -> Any:
    """A Permission matching when one of ``rules`` does."""
    return rbac_pb2.Permission(or_rules=rbac_pb2.Permission.Set(rules=rules))


def permission_and(rules: Sequence[Any]) -> Any:
    """A Permission matching when all of ``rules`` do."""
    return rbac_pb2.Permission(and_rules=rbac_pb2.Permission.Set(rules=rules))


def permission_not(rule: Any) -> Any:
    """A Permission matching when ``rule`` does not."""
    return rbac_pb2.Permission(not_rule=rule)


def principal_any() -> Any:
    """A Principal that matches every downstream."""
    return rbac_pb2.Principal(any=True)


def principal_or(ids: Sequence[Any]) -> Any:
    """A Principal matching when one of ``ids`` does."""
    return rbac_pb2.Principal(or_ids=rbac_pb2.Principal.Set(ids=ids))


def principal_and(ids: Sequence[Any]) -> Any:
    """A Principal matching when all of ``ids`` do."""
    return rbac_pb2.Principal(and_ids=rbac_pb2.Principal.Set(ids=ids))


def principal_not(principal: Any) -> Any:
    """A Principal matching when ``principal`` does not."""
    return rbac_pb2.Principal(not_id=principal)
