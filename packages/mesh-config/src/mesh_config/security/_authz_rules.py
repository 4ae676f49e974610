"""Validation of an AuthorizationPolicy's rules (private): ``from``, ``to`` and ``when``.

Istio's webhook (``ValidateAuthorizationPolicy`` in ``pkg/config/validation/validation.go``, attributes in
``pkg/config/security/security.go``) together with the CRD's limits on the same fields.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from mesh_config.security._authz_values import (
    MAX_SERVICE_ACCOUNT_LENGTH,
    MAX_SERVICE_ACCOUNTS,
    attribute_problem,
    attribute_value_problem,
    identity_warning,
    ip_problem,
    namespace_problem,
    path_template_problem,
    port_problem,
    service_account_problem,
    service_account_regex_problem,
)
from mesh_config.security._policy import wildcard_inside
from mesh_config.validation import ValidationContext

if TYPE_CHECKING:
    from mesh_config.security.authorization_policy import (
        AuthorizationCondition,
        AuthorizationOperation,
        AuthorizationRule,
        AuthorizationSource,
    )

__all__ = ["MAX_RULES", "check_rules"]

MAX_RULES = 512
"""The CRD's ``maxItems`` of ``rules`` and of each rule's ``from``."""

# Source fields, by YAML name: (attribute name, a TCP attribute?, allowed with CUSTOM?).
_SOURCE_FIELDS = {
    "principals": ("principals", True, False),
    "notPrincipals": ("not_principals", True, False),
    "requestPrincipals": ("request_principals", False, False),
    "notRequestPrincipals": ("not_request_principals", False, False),
    "namespaces": ("namespaces", True, False),
    "notNamespaces": ("not_namespaces", True, False),
    "serviceAccounts": ("service_accounts", True, False),
    "notServiceAccounts": ("not_service_accounts", True, False),
    "ipBlocks": ("ip_blocks", True, True),
    "notIpBlocks": ("not_ip_blocks", True, True),
    "remoteIpBlocks": ("remote_ip_blocks", True, True),
    "notRemoteIpBlocks": ("not_remote_ip_blocks", True, True),
    "trustDomains": ("trust_domains", True, False),
    "notTrustDomains": ("not_trust_domains", True, False),
}
_IP_FIELDS = ("ipBlocks", "notIpBlocks", "remoteIpBlocks", "notRemoteIpBlocks")
_ACCOUNT_FIELDS = ("serviceAccounts", "notServiceAccounts")
_PRINCIPAL_FIELDS = ("principals", "notPrincipals")
_NAMESPACE_FIELDS = ("namespaces", "notNamespaces")
_OTHER_FIELDS = ("requestPrincipals", "notRequestPrincipals", "trustDomains", "notTrustDomains")
# Fields whose values Istio matches as exact, prefix* or *suffix strings.
_LITERAL_FIELDS = ("principals", "notPrincipals", "requestPrincipals", "notRequestPrincipals")
_OPERATION_FIELDS = {
    "hosts": "hosts",
    "notHosts": "not_hosts",
    "ports": "ports",
    "notPorts": "not_ports",
    "methods": "methods",
    "notMethods": "not_methods",
    "paths": "paths",
    "notPaths": "not_paths",
}
# Peer identity attributes a CUSTOM (ext_authz) policy cannot match on.
_CUSTOM_KEYS = ("source.namespace", "source.serviceAccount", "source.principal", "source.trustDomain")
_HTTP_ONLY_DENY = (
    "this DENY rule uses only HTTP attributes, so it denies all traffic to TCP ports under the policy's scope; "
    "set ports (or a TCP attribute such as ipBlocks or principals) to limit it"
)


def check_rules(ctx: ValidationContext, rules: Sequence[AuthorizationRule], *, custom: bool, deny: bool) -> None:
    """Every rule of a policy; ``ctx`` is at ``spec``."""
    if len(rules) > MAX_RULES:
        ctx.max_items(MAX_RULES, "rules")
    for index, rule in enumerate(rules):
        _check_rule(ctx.at("rules", index), rule, custom=custom, deny=deny)


def _check_rule(ctx: ValidationContext, rule: AuthorizationRule, *, custom: bool, deny: bool) -> None:
    if ctx.has("from") and not rule.from_:
        ctx.error("from must not be empty; leave it out to match every source", "from")
    if len(rule.from_) > MAX_RULES:
        ctx.max_items(MAX_RULES, "from")
    tcp_from = False
    for index, entry in enumerate(rule.from_):
        here = ctx.at("from", index)
        if entry.source is None:
            here.error("from entry needs a source", "source")
            continue
        tcp_from |= _check_source(here.at("source"), entry.source, custom=custom)
    if ctx.has("to") and not rule.to:
        ctx.error("to must not be empty; leave it out to match every operation", "to")
    tcp_to = False
    for index, target in enumerate(rule.to):
        here = ctx.at("to", index)
        if target.operation is None:
            here.error("to entry needs an operation", "operation")
            continue
        tcp_to |= _check_operation(here.at("operation"), target.operation)
    for index, condition in enumerate(rule.when):
        _check_condition(ctx.at("when", index), condition, custom=custom)
    has_from = any(entry.source is not None for entry in rule.from_)
    has_to = any(target.operation is not None for target in rule.to)
    if deny and ((has_from and not has_to and not tcp_from) or (has_to and not tcp_to)):
        ctx.warning(_HTTP_ONLY_DENY)


def _check_source(ctx: ValidationContext, source: AuthorizationSource, *, custom: bool) -> bool:
    """Check one source; True when it matches on a TCP (connection-level) attribute."""
    values = {name: getattr(source, attribute) for name, (attribute, _, _) in _SOURCE_FIELDS.items()}
    if (ctx.has("serviceAccounts") or ctx.has("notServiceAccounts")) and any(
        ctx.has(name) for name in ("principals", "notPrincipals", "namespaces", "notNamespaces")
    ):
        ctx.rule("Cannot set serviceAccounts with namespaces or principals")
    if not any(values.values()):
        ctx.error("source must set at least one field")
    for name, items in values.items():
        if custom and items and not _SOURCE_FIELDS[name][2]:
            ctx.error(f"{name} is not supported with action CUSTOM", name)
    for name in _ACCOUNT_FIELDS:
        _check_service_accounts(ctx, values[name], name)
    for name in _IP_FIELDS:
        _check_each(ctx, values[name], name, _empty_or(ip_problem))
    for name in _PRINCIPAL_FIELDS + _NAMESPACE_FIELDS + _OTHER_FIELDS:
        _check_each(ctx, values[name], name, _empty_or(_no_problem))
    for name in _LITERAL_FIELDS:
        _warn_inner_wildcards(ctx, values[name], name)
    for name in _PRINCIPAL_FIELDS:
        _report_each(ctx, values[name], name, _principal_finding)
    for name in _NAMESPACE_FIELDS:
        _report_each(ctx, values[name], name, namespace_problem)
    return any(values[name] for name, (_, tcp, _) in _SOURCE_FIELDS.items() if tcp)


def _check_service_accounts(ctx: ValidationContext, accounts: Sequence[str], name: str) -> None:
    if len(accounts) > MAX_SERVICE_ACCOUNTS:
        ctx.max_items(MAX_SERVICE_ACCOUNTS, name)
    for index, account in enumerate(accounts):
        if len(account) > MAX_SERVICE_ACCOUNT_LENGTH:
            ctx.max_length(MAX_SERVICE_ACCOUNT_LENGTH, name, index)
            continue
        problem = service_account_problem(account)
        if problem:
            ctx.error(problem, name, index)
        else:
            _report(ctx, service_account_regex_problem(account), name, index)


def _check_operation(ctx: ValidationContext, operation: AuthorizationOperation) -> bool:
    """Check one operation; True when it matches on ports (a TCP attribute)."""
    values = {name: getattr(operation, attribute) for name, attribute in _OPERATION_FIELDS.items()}
    if not any(values.values()):
        ctx.error("operation must set at least one field")
    for name in ("ports", "notPorts"):
        _check_each(ctx, values[name], name, _empty_or(port_problem))
    for name in ("paths", "notPaths"):
        _check_each(ctx, values[name], name, _empty_or(path_template_problem))
    for name in ("hosts", "notHosts", "methods", "notMethods"):
        _check_each(ctx, values[name], name, _empty_or(_no_problem))
    for name in ("hosts", "notHosts", "methods", "notMethods", "paths", "notPaths"):
        plain = [value if "{" not in value else "" for value in values[name]]
        _warn_inner_wildcards(ctx, plain, name)
    return bool(operation.ports or operation.not_ports)


def _check_condition(ctx: ValidationContext, condition: AuthorizationCondition, *, custom: bool) -> None:
    key = condition.key
    if custom and (key in _CUSTOM_KEYS or key.startswith("request.auth.")):
        ctx.error(f"condition key {key!r} is not supported with action CUSTOM", "key")
    key_problem = attribute_problem(key) if key else "key must not be empty"
    if key_problem:
        ctx.error(key_problem, "key")
    if not condition.values and not condition.not_values:
        ctx.error(f"condition on {key!r} needs values or notValues")
    for name, values in (("values", condition.values), ("notValues", condition.not_values)):
        if key == "source.serviceAccount" and len(values) > MAX_SERVICE_ACCOUNTS:
            ctx.error(f"{key} may have at most {MAX_SERVICE_ACCOUNTS} values, not {len(values)}", name)
        for index, value in enumerate(values):
            problem = "value must not be empty" if not value else None
            if not problem and not key_problem:
                problem = attribute_value_problem(key, value)
            if problem:
                ctx.error(f"{key}: {problem}", name, index)
            elif value and key in _CONDITION_FORMATS:
                _report(ctx, _CONDITION_FORMATS[key](value), name, index)


def _no_problem(_value: str) -> str | None:
    return None


def _principal_finding(value: str) -> tuple[bool, str] | None:
    warning = identity_warning(value) if value else None
    return (False, warning) if warning else None


_CONDITION_FORMATS: dict[str, Callable[[str], tuple[bool, str] | None]] = {
    "source.namespace": namespace_problem,
    "source.principal": _principal_finding,
    "source.serviceAccount": service_account_regex_problem,
}


def _report(ctx: ValidationContext, finding: tuple[bool, str] | None, *segments: str | int) -> None:
    if finding is None:
        return
    is_error, message = finding
    if is_error:
        ctx.error(message, *segments)
    else:
        ctx.warning(message, *segments)


def _report_each(
    ctx: ValidationContext, values: Sequence[str], name: str, check: Callable[[str], tuple[bool, str] | None]
) -> None:
    for index, value in enumerate(values):
        if value:
            _report(ctx, check(value), name, index)


def _empty_or(check: Callable[[str], str | None]) -> Callable[[str], str | None]:
    def checked(value: str) -> str | None:
        return "value must not be empty" if not value else check(value)

    return checked


def _check_each(ctx: ValidationContext, values: Sequence[str], name: str, check: Callable[[str], str | None]) -> None:
    for index, value in enumerate(values):
        problem = check(value)
        if problem:
            ctx.error(problem, name, index)


def _warn_inner_wildcards(ctx: ValidationContext, values: Sequence[str], name: str) -> None:
    for index, value in enumerate(values):
        if value and wildcard_inside(value):
            ctx.warning(
                f"{value!r}: '*' is a wildcard only as the first or last character; here it matches a literal '*'",
                name,
                index,
            )
