"""One AuthorizationPolicy rule as one Envoy RBAC policy (private).

As in Istio, every ``from`` becomes one principal and every ``to`` one permission (a request matches the rule
when it matches one of each); inside them, each field set is an AND term, its values an OR list, and its
``not*`` values a NOT of an OR list. ``when`` conditions join every principal or permission, by attribute.

Attributes that only HTTP has (hosts, methods, paths, request principals, JWT claims, headers) cannot be told
on a TCP connection. For ALLOW, such a rule is dropped (it never allows a TCP connection); for DENY, AUDIT
and CUSTOM, the attribute is dropped from the rule (which then matches more: a TCP connection is denied).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final, final

import attrs
from envoy.config.rbac.v3 import rbac_pb2
from envoy.type.matcher.v3 import string_pb2, value_pb2

from mesh_config.security import AuthorizationOperation, AuthorizationRule, AuthorizationSource
from mesh_xds.generate import _rbac_match as m

__all__ = ["HttpOnlyError", "RuleError", "translate_rule", "trust_domain_principals"]


class RuleError(ValueError):
    """A rule that cannot be translated (an unknown attribute or an unusable value)."""


class HttpOnlyError(RuleError):
    """A rule attribute that only HTTP requests carry, met while building a TCP filter."""


_SPIFFE: Final = "spiffe://"


@final
@attrs.frozen
class _Term:
    """One field of a rule: a key, its values and its ``not`` values, and how to translate them."""

    key: str
    values: tuple[str, ...]
    not_values: tuple[str, ...]
    build: Callable[[Sequence[str]], Any]
    http_only: bool = False


def _or_each(one: Callable[[str], Any], combine: Callable[[Sequence[Any]], Any]) -> Callable[[Sequence[str]], Any]:
    return lambda values: combine([one(value) for value in values])


def _principal_name(matcher: Any) -> Any:
    return rbac_pb2.Principal(authenticated=rbac_pb2.Principal.Authenticated(principal_name=matcher))


def _principal(value: str) -> Any:
    return _principal_name(m.string_matcher(value, _SPIFFE))


def _namespace(value: str) -> Any:
    pattern = ".*".join(m.quote_meta(part) for part in value.split("*"))
    return _principal_name(m.regex(f".*/ns/{pattern}/.*"))


def _trust_domain(value: str) -> Any:
    if value == "*":
        return _principal_name(m.regex("spiffe://.+"))
    if value.startswith("*"):
        return _principal_name(m.regex(f"spiffe://.*{m.quote_meta(value[1:])}/.*"))
    if value.endswith("*"):
        return _principal_name(m.string_matcher(value, _SPIFFE))
    return _principal_name(m.string_matcher(f"{value}/*", _SPIFFE))


def _service_account(default_namespace: str) -> Callable[[str], Any]:
    def build(value: str) -> Any:
        namespace, slash, name = value.partition("/")
        if not slash:
            namespace, name = default_namespace, value
        pattern = f"spiffe://.+/ns/{m.quote_meta(namespace)}/(.+/|)sa/{m.quote_meta(name)}(/.+)?"
        return _principal_name(m.regex(pattern))

    return build


def _ip(kind: str) -> Callable[[str], Any]:
    def build(value: str) -> Any:
        try:
            return rbac_pb2.Principal(**{kind: m.cidr(value)})
        except ValueError:
            raise RuleError(f"{value!r} is not an IP address or CIDR block") from None

    return build


def _destination_ip(value: str) -> Any:
    try:
        return rbac_pb2.Permission(destination_ip=m.cidr(value))
    except ValueError:
        raise RuleError(f"{value!r} is not an IP address or CIDR block") from None


def _port(value: str) -> Any:
    if not value.isdigit() or int(value) > 65535:
        raise RuleError(f"{value!r} is not a port number")
    return rbac_pb2.Permission(destination_port=int(value))


def _request_principals(values: Sequence[str]) -> Any:
    """``<iss>/<sub>`` values as matchers on the ``iss`` and ``sub`` claims (the issuer may hold slashes)."""
    any_value = m.regex(".+")
    alternatives = []
    for value in values:
        issuer, slash, subject = value.rpartition("/")
        if not slash:
            issuer, subject = value, ""
        if value == "*":
            match_iss, match_sub = any_value, any_value
        elif value.startswith("*") and slash:
            match_iss = any_value if issuer == "*" else string_pb2.StringMatcher(suffix=issuer[1:])
            match_sub = string_pb2.StringMatcher(exact=subject)
        elif value.startswith("*"):
            match_iss, match_sub = any_value, string_pb2.StringMatcher(suffix=value[1:])
        elif value.endswith("*") and slash:
            match_iss = string_pb2.StringMatcher(exact=issuer)
            match_sub = any_value if subject == "*" else string_pb2.StringMatcher(prefix=subject[:-1])
        elif value.endswith("*"):
            match_iss, match_sub = string_pb2.StringMatcher(prefix=value[:-1]), any_value
        else:
            match_iss, match_sub = string_pb2.StringMatcher(exact=issuer), string_pb2.StringMatcher(exact=subject)
        alternatives.append(
            m.principal_and(
                [
                    m.jwt_claim(["iss"], value_pb2.ValueMatcher(string_match=match_iss)),
                    m.jwt_claim(["sub"], value_pb2.ValueMatcher(string_match=match_sub)),
                ]
            )
        )
    return alternatives[0] if len(alternatives) == 1 else m.principal_or(alternatives)


def _claims(path: Sequence[str]) -> Callable[[Sequence[str]], Any]:
    return lambda values: m.jwt_claim(path, m.value_or(values))


def _bracketed(key: str, prefix: str) -> list[str]:
    """``request.auth.claims[a][b]`` -> ``["a", "b"]``; raises RuleError when the brackets are malformed."""
    rest = key[len(prefix) :]
    if not rest.startswith("[") or not rest.endswith("]") or not rest[1:-1]:
        raise RuleError(f"{key!r}: expected {prefix}[<name>]")
    names = rest[1:-1].split("][")
    if any(not name or "[" in name or "]" in name for name in names):
        raise RuleError(f"{key!r}: expected {prefix}[<name>]")
    return names


def _envoy_metadata(key: str) -> Callable[[str], Any]:
    name = key.removeprefix("experimental.")
    filter_name, bracket, rest = name.partition("[")
    if not bracket or not rest.endswith("]") or not rest[:-1]:
        raise RuleError(f"{key!r}: expected experimental.envoy.filters.<filter>[<key>]")
    field = rest[:-1]

    def build(value: str) -> Any:
        if value.startswith("[") and value.endswith("]"):
            inner = value_pb2.ValueMatcher(string_match=m.string_matcher(value[1:-1]))
            matcher = value_pb2.ValueMatcher(list_match=value_pb2.ListMatcher(one_of=inner))
        else:
            matcher = value_pb2.ValueMatcher(string_match=m.string_matcher(value))
        return rbac_pb2.Permission(metadata=m.metadata_matcher(filter_name, [field], matcher))

    return build


def _header(name: str) -> Callable[[str], Any]:
    return lambda value: rbac_pb2.Principal(header=m.header_matcher(name, value))


def _when_term(key: str, values: tuple[str, ...], not_values: tuple[str, ...], namespace: str) -> tuple[bool, _Term]:
    """(is_permission, term) for a ``when`` condition."""
    principal_or = m.principal_or
    permission_or = m.permission_or
    simple_principals: dict[str, Callable[[str], Any]] = {
        "source.ip": _ip("direct_remote_ip"),
        "remote.ip": _ip("remote_ip"),
        "source.namespace": _namespace,
        "source.principal": _principal,
        "source.serviceAccount": _service_account(namespace),
        "source.trustDomain": _trust_domain,
    }
    simple_permissions: dict[str, Callable[[str], Any]] = {
        "destination.ip": _destination_ip,
        "destination.port": _port,
        "connection.sni": lambda value: rbac_pb2.Permission(requested_server_name=m.string_matcher(value)),
    }
    if key in simple_principals:
        return False, _Term(key, values, not_values, _or_each(simple_principals[key], principal_or))
    if key in simple_permissions:
        return True, _Term(key, values, not_values, _or_each(simple_permissions[key], permission_or))
    if key == "request.auth.principal":
        return False, _Term(key, values, not_values, _request_principals, http_only=True)
    if key == "request.auth.audiences":
        return False, _Term(key, values, not_values, _claims(["aud"]), http_only=True)
    if key == "request.auth.presenter":
        return False, _Term(key, values, not_values, _claims(["azp"]), http_only=True)
    if key.startswith("request.auth.claims"):
        return False, _Term(key, values, not_values, _claims(_bracketed(key, "request.auth.claims")), http_only=True)
    if key.startswith("request.headers"):
        header = _bracketed(key, "request.headers")
        if len(header) != 1:
            raise RuleError(f"{key!r}: expected request.headers[<name>]")
        return False, _Term(key, values, not_values, _or_each(_header(header[0]), principal_or), http_only=True)
    if key.startswith("experimental.envoy.filters."):
        return True, _Term(key, values, not_values, _or_each(_envoy_metadata(key), permission_or))
    raise RuleError(f"unknown attribute {key!r}")


def trust_domain_principals(values: Sequence[str], trust_domains: Sequence[str]) -> tuple[str, ...]:
    """Principals with their trust domain replaced by each of ``trust_domains`` (the mesh's and its aliases).

    Only principals whose trust domain is one of them, or ``cluster.local`` (which stands for the local trust
    domain), are expanded; principals that do not name a trust domain (``*/ns/a/sa/b``) or that are not of the
    ``<trust domain>/ns/<namespace>/sa/<name>`` form are kept as they are.
    """
    if len(trust_domains) < 2 and (not trust_domains or trust_domains[0] == "cluster.local"):
        return tuple(values)
    expanded: list[str] = []
    for value in values:
        parts = value.split("/")
        domain = parts[0]
        if len(parts) != 5 or domain.startswith("*") or (domain not in trust_domains and domain != "cluster.local"):
            expanded.append(value)
            continue
        rest = "/".join(parts[1:])
        expanded.extend(f"{td}/{rest}" for td in trust_domains)
    return tuple(dict.fromkeys(expanded))


def _source_terms(source: AuthorizationSource, namespace: str, trust_domains: Sequence[str]) -> list[_Term]:
    def principals(values: Sequence[str]) -> tuple[str, ...]:
        return trust_domain_principals(values, trust_domains)

    return [
        _Term(
            "principals",
            principals(source.principals),
            principals(source.not_principals),
            _or_each(_principal, m.principal_or),
        ),
        _Term(
            "requestPrincipals",
            source.request_principals,
            source.not_request_principals,
            _request_principals,
            http_only=True,
        ),
        _Term(
            "serviceAccounts",
            source.service_accounts,
            source.not_service_accounts,
            _or_each(_service_account(namespace), m.principal_or),
        ),
        _Term("trustDomains", source.trust_domains, source.not_trust_domains, _or_each(_trust_domain, m.principal_or)),
        _Term("namespaces", source.namespaces, source.not_namespaces, _or_each(_namespace, m.principal_or)),
        _Term(
            "remoteIpBlocks",
            source.remote_ip_blocks,
            source.not_remote_ip_blocks,
            _or_each(_ip("remote_ip"), m.principal_or),
        ),
        _Term("ipBlocks", source.ip_blocks, source.not_ip_blocks, _or_each(_ip("direct_remote_ip"), m.principal_or)),
    ]


def _hosts(values: Sequence[str]) -> Any:
    return m.permission_or([rbac_pb2.Permission(header=h) for value in values for h in m.host_matcher(value)])


def _operation_terms(operation: AuthorizationOperation) -> list[_Term]:
    method = _or_each(lambda value: rbac_pb2.Permission(header=m.header_matcher(":method", value)), m.permission_or)
    return [
        _Term("hosts", operation.hosts, operation.not_hosts, _hosts, http_only=True),
        _Term("methods", operation.methods, operation.not_methods, method, http_only=True),
        _Term("paths", operation.paths, operation.not_paths, _or_each(m.path_permission, m.permission_or), True),
        _Term("ports", operation.ports, operation.not_ports, _or_each(_port, m.permission_or)),
    ]


def _combine(terms: Sequence[_Term], *, for_tcp: bool, lenient: bool, negate: Callable[[Any], Any]) -> list[Any]:
    """The AND terms of one principal or permission; raises RuleError unless ``lenient`` drops the term."""
    found: list[Any] = []
    for term in terms:
        try:
            if term.http_only and for_tcp and (term.values or term.not_values):
                raise HttpOnlyError(f"{term.key} is HTTP only")
            if term.values:
                found.append(term.build(term.values))
            if term.not_values:
                found.append(negate(term.build(term.not_values)))
        except RuleError:
            if not lenient:
                raise
    return found


def translate_rule(
    rule: AuthorizationRule,
    *,
    namespace: str,
    for_tcp: bool,
    lenient: bool,
    trust_domains: Sequence[str],
) -> Any:
    """The RBAC Policy of one rule.

    Args:
        rule: the rule.
        namespace: the policy's namespace (service accounts without one are in it).
        for_tcp: build for a TCP filter, where HTTP-only attributes are unknown.
        lenient: drop the terms that cannot be built instead of failing (DENY, AUDIT and CUSTOM policies).
        trust_domains: the mesh's trust domain and its aliases, for principals.

    Raises:
        HttpOnlyError: ``for_tcp`` and an HTTP-only attribute, unless ``lenient``.
        RuleError: an unknown attribute, or (unless ``lenient``) a value that cannot be used.
    """
    base_principals: list[_Term] = []
    base_permissions: list[_Term] = []
    for condition in rule.when:
        values, not_values = condition.values, condition.not_values
        if condition.key == "source.principal":
            values = trust_domain_principals(values, trust_domains)
            not_values = trust_domain_principals(not_values, trust_domains)
        is_permission, term = _when_term(condition.key, values, not_values, namespace)
        (base_permissions if is_permission else base_principals).append(term)
    froms = [entry.source for entry in rule.from_] or [None]
    tos = [entry.operation for entry in rule.to] or [None]
    principals = []
    for source in froms:
        terms = (_source_terms(source, namespace, trust_domains) if source else []) + base_principals
        found = _combine(terms, for_tcp=for_tcp, lenient=lenient, negate=m.principal_not)
        principals.append(m.principal_and(found or [m.principal_any()]))
    permissions = []
    for operation in tos:
        terms = (_operation_terms(operation) if operation else []) + base_permissions
        found = _combine(terms, for_tcp=for_tcp, lenient=lenient, negate=m.permission_not)
        permissions.append(m.permission_and(found or [m.permission_any()]))
    return rbac_pb2.Policy(permissions=permissions, principals=principals)
