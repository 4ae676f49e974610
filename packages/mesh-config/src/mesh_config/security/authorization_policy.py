"""AuthorizationPolicy (``security.istio.io``): access control for workloads.

A policy selects workloads (``selector``) or attaches to a Gateway, Service or ServiceEntry (``targetRef``,
``targetRefs``), and applies an ``action`` to the requests its ``rules`` match: a request matches a rule
when it matches one entry of each of ``from``, ``to`` and ``when`` that the rule sets.
"""

from __future__ import annotations

import enum
from typing import final

import attrs

from mesh_config.common import PolicyTargetReference, WorkloadSelector
from mesh_config.kinds import KindSpec, register_kind
from mesh_config.security._authz_rules import check_rules
from mesh_config.security._policy import check_targets
from mesh_config.types import enum_value, optional, repeated, string
from mesh_config.validation import ValidationContext

__all__ = [
    "AUTHORIZATION_POLICY",
    "AuthorizationAction",
    "AuthorizationCondition",
    "AuthorizationOperation",
    "AuthorizationPolicy",
    "AuthorizationProvider",
    "AuthorizationRule",
    "AuthorizationSource",
    "RuleFrom",
    "RuleTo",
    "validate_authorization_policy",
]

DRY_RUN = "istio.io/dry-run"


class AuthorizationAction(enum.Enum):
    """``AuthorizationPolicy.Action``: what happens to a request that matches a rule."""

    ALLOW = "ALLOW"
    """Allow the request (a workload with ALLOW policies denies every request none of them allows)."""
    DENY = "DENY"
    """Deny the request; DENY policies are evaluated before ALLOW policies."""
    AUDIT = "AUDIT"
    """Audit the request (needs an audit provider); does not change whether it is allowed."""
    CUSTOM = "CUSTOM"
    """Delegate the decision to the extension provider named in ``provider``."""


@final
@attrs.frozen
class AuthorizationProvider:
    """``AuthorizationPolicy.ExtensionProvider``: the external authorizer of a CUSTOM policy.

    Attributes:
        name: an extension provider declared in MeshConfig's ``extensionProviders``.
    """

    name: str = string()


@final
@attrs.frozen
class AuthorizationSource:
    """``Source``: where a request comes from; every field set must match, ``not_*`` fields must not.

    Values of the identity fields may start or end with ``*`` (prefix, suffix or any match).

    Attributes:
        principals: peer identities from mutual TLS, ``<trust domain>/ns/<namespace>/sa/<service account>``.
        not_principals: peer identities that must not match.
        request_principals: JWT identities, ``<iss>/<sub>``.
        not_request_principals: JWT identities that must not match.
        namespaces: the peer's namespace (from its mutual TLS identity).
        not_namespaces: namespaces that must not match.
        service_accounts: the peer's service account, ``name`` (the policy's namespace) or ``namespace/name``.
        not_service_accounts: service accounts that must not match.
        ip_blocks: the peer's IP address, as IPs or CIDR blocks.
        not_ip_blocks: peer addresses that must not match.
        remote_ip_blocks: the original client address (X-Forwarded-For or PROXY protocol).
        not_remote_ip_blocks: original client addresses that must not match.
        trust_domains: the trust domain of the peer's identity.
        not_trust_domains: trust domains that must not match.
    """

    principals: tuple[str, ...] = repeated()
    not_principals: tuple[str, ...] = repeated()
    request_principals: tuple[str, ...] = repeated()
    not_request_principals: tuple[str, ...] = repeated()
    namespaces: tuple[str, ...] = repeated()
    not_namespaces: tuple[str, ...] = repeated()
    service_accounts: tuple[str, ...] = repeated()
    not_service_accounts: tuple[str, ...] = repeated()
    ip_blocks: tuple[str, ...] = repeated()
    not_ip_blocks: tuple[str, ...] = repeated()
    remote_ip_blocks: tuple[str, ...] = repeated()
    not_remote_ip_blocks: tuple[str, ...] = repeated()
    trust_domains: tuple[str, ...] = repeated()
    not_trust_domains: tuple[str, ...] = repeated()


@final
@attrs.frozen
class AuthorizationOperation:
    """``Operation``: what a request does; every field set must match, ``not_*`` fields must not.

    Attributes:
        hosts: the Host (``:authority``) header; may start or end with ``*``.
        not_hosts: hosts that must not match.
        ports: destination ports, as strings of digits (``"8080"``).
        not_ports: ports that must not match.
        methods: HTTP methods (``GET``), or gRPC's ``POST``.
        not_methods: methods that must not match.
        paths: the request path; ``*`` as first or last character, or Envoy URI templates ``{*}``/``{**}``.
        not_paths: paths that must not match.
    """

    hosts: tuple[str, ...] = repeated()
    not_hosts: tuple[str, ...] = repeated()
    ports: tuple[str, ...] = repeated()
    not_ports: tuple[str, ...] = repeated()
    methods: tuple[str, ...] = repeated()
    not_methods: tuple[str, ...] = repeated()
    paths: tuple[str, ...] = repeated()
    not_paths: tuple[str, ...] = repeated()


@final
@attrs.frozen
class AuthorizationCondition:
    """``Condition``: an Istio attribute and the values it must (not) have.

    Attributes:
        key: the attribute, e.g. ``request.headers[User-Agent]``, ``source.ip``, ``request.auth.claims[iss]``.
        values: values, one of which must match.
        not_values: values none of which may match.
    """

    key: str = string(required=True)
    values: tuple[str, ...] = repeated()
    not_values: tuple[str, ...] = repeated()


@final
@attrs.frozen
class RuleFrom:
    """``Rule.From``: one accepted source."""

    source: AuthorizationSource | None = optional()


@final
@attrs.frozen
class RuleTo:
    """``Rule.To``: one accepted operation."""

    operation: AuthorizationOperation | None = optional()


@final
@attrs.frozen
class AuthorizationRule:
    """``Rule``: the requests a policy's action applies to. An empty rule matches every request.

    Attributes:
        from_: sources (YAML ``from``); a request must match one of them, when any is given.
        to: operations; a request must match one of them, when any is given.
        when: conditions; a request must satisfy all of them.
    """

    from_: tuple[RuleFrom, ...] = repeated()
    to: tuple[RuleTo, ...] = repeated()
    when: tuple[AuthorizationCondition, ...] = repeated()


@final
@attrs.frozen
class AuthorizationPolicy:
    """The spec of an AuthorizationPolicy.

    Attributes:
        selector: the workloads it applies to; none (with no targetRef) means the whole namespace, or the
            whole mesh in the root namespace.
        target_ref: a Gateway, GatewayClass, Service or ServiceEntry to attach to (deprecated: use
            ``target_refs``).
        target_refs: the Gateways, GatewayClasses, Services or ServiceEntries to attach to.
        rules: the requests the action applies to. An ALLOW policy without rules allows nothing; an
            empty rule (``{}``) matches everything.
        action: ALLOW (the default), DENY, AUDIT or CUSTOM.
        provider: the extension provider of a CUSTOM policy.
    """

    selector: WorkloadSelector | None = optional()
    target_ref: PolicyTargetReference | None = optional()
    target_refs: tuple[PolicyTargetReference, ...] = repeated()
    rules: tuple[AuthorizationRule, ...] = repeated()
    action: AuthorizationAction = enum_value(AuthorizationAction.ALLOW)
    provider: AuthorizationProvider | None = optional(oneof="action_detail")


def validate_authorization_policy(spec: AuthorizationPolicy, ctx: ValidationContext) -> None:
    """The CRD rules and Istio's webhook rules for AuthorizationPolicy."""
    check_targets(ctx, spec.selector, spec.target_ref, spec.target_refs)
    action = spec.action
    has_rules = bool(spec.rules)
    if action is AuthorizationAction.CUSTOM:
        if not has_rules:
            ctx.error(
                "a CUSTOM policy without rules is never triggered; add an empty rule {} to apply it to every request",
                "rules",
            )
        if spec.provider is None:
            ctx.error("a CUSTOM policy needs a provider: set provider.name to an extension provider", "provider")
        elif not spec.provider.name:
            ctx.error("a CUSTOM policy needs provider.name to name an extension provider", "provider", "name")
    elif spec.provider is not None:
        ctx.error(f"provider may be set only with action CUSTOM, not {action.value}", "provider")
    if action is AuthorizationAction.DENY and not has_rules:
        ctx.error("a DENY policy without rules is never triggered; add an empty rule {} to deny every request", "rules")
    check_rules(ctx, spec.rules, custom=action is AuthorizationAction.CUSTOM, deny=action is AuthorizationAction.DENY)
    dry_run = ctx.metadata.annotations.get(DRY_RUN)
    if dry_run is not None and action not in (AuthorizationAction.ALLOW, AuthorizationAction.DENY):
        meta = ValidationContext(ctx.metadata, path=("metadata",), findings=ctx.findings)
        meta.error(f"{DRY_RUN} is supported only with action ALLOW or DENY, not {action.value}", "annotations", DRY_RUN)


AUTHORIZATION_POLICY = register_kind(
    KindSpec(
        kind="AuthorizationPolicy",
        group="security.istio.io",
        versions=("v1", "v1beta1"),
        spec_type=AuthorizationPolicy,
        validate=validate_authorization_policy,
        plural="authorizationpolicies",
    )
)
