"""AuthorizationPolicy -> Envoy RBAC filters, as Istio builds them (ISTIO.md 2.9).

A workload's AUDIT, DENY and ALLOW policies become, in that order, one RBAC filter per action that has
policies (``envoy.filters.http.rbac`` on HTTP chains, ``envoy.filters.network.rbac`` on TCP chains). Every
rule of a policy is one RBAC policy named ``ns[<namespace>]-policy[<name>]-rule[<index>]``:

* an ALLOW policy without rules allows nothing (a policy that never matches), and an empty rule ``{}``
  matches everything;
* a policy annotated ``istio.io/dry-run: "true"`` goes into ``shadow_rules`` (stat prefix
  ``istio_dry_run_allow_`` or ``istio_dry_run_deny_``): evaluated and counted, never enforced;
* principals and namespaces match the peer's SPIFFE id from mutual TLS (``authenticated.principal_name``),
  with the mesh's trust domain aliases expanded;
* on TCP chains, a rule that needs an HTTP attribute never matches for ALLOW and drops that attribute for
  DENY and AUDIT (so it denies every TCP connection the rest of it matches).

CUSTOM policies (ext_authz) are built by the listener generator from the mesh's extension providers.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any, Final

from envoy.config.listener.v3 import listener_components_pb2
from envoy.config.rbac.v3 import rbac_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as network_rbac_pb2

from mesh_config import MeshConfig
from mesh_config.meta import Resource
from mesh_config.security import AuthorizationAction, AuthorizationPolicy
from mesh_xds.generate import _rbac_match as m
from mesh_xds.generate._rbac_rules import RuleError, translate_rule
from mesh_xds.generate.names import rbac_policy_name

__all__ = [
    "DRY_RUN_ANNOTATION",
    "HTTP_RBAC_FILTER",
    "NETWORK_RBAC_FILTER",
    "build_http_rbac",
    "build_network_rbac",
    "build_rbac",
    "is_dry_run",
    "trust_domains",
]

_log = logging.getLogger(__name__)

HTTP_RBAC_FILTER: Final = "envoy.filters.http.rbac"
NETWORK_RBAC_FILTER: Final = "envoy.filters.network.rbac"
DRY_RUN_ANNOTATION: Final = "istio.io/dry-run"

_TCP_STAT_PREFIX: Final = "tcp."
_SHADOW_PREFIX: Final = {
    rbac_pb2.RBAC.ALLOW: "istio_dry_run_allow_",
    rbac_pb2.RBAC.DENY: "istio_dry_run_deny_",
}
_ORDER: Final = (
    (AuthorizationAction.AUDIT, rbac_pb2.RBAC.LOG),
    (AuthorizationAction.DENY, rbac_pb2.RBAC.DENY),
    (AuthorizationAction.ALLOW, rbac_pb2.RBAC.ALLOW),
)
_TRUE: Final = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE: Final = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def trust_domains(mesh: MeshConfig) -> tuple[str, ...]:
    """The mesh's trust domain followed by its aliases (``cluster.local`` when none is set)."""
    return tuple(dict.fromkeys([mesh.trust_domain or "cluster.local", *mesh.trust_domain_aliases]))


def is_dry_run(policy: Resource[AuthorizationPolicy]) -> bool:
    """True when the policy is annotated ``istio.io/dry-run`` with a true value (Go's ``ParseBool``)."""
    value = policy.metadata.annotations.get(DRY_RUN_ANNOTATION)
    if value is None or value in _FALSE:
        return False
    if value in _TRUE:
        return True
    _log.warning("%s/%s: ignored %s=%r, not a boolean", policy.namespace, policy.name, DRY_RUN_ANNOTATION, value)
    return False


def _never() -> Any:
    return rbac_pb2.Policy(
        permissions=[m.permission_not(m.permission_any())], principals=[m.principal_not(m.principal_any())]
    )


def build_rbac(
    policies: Iterable[Resource[AuthorizationPolicy]],
    action: int,
    *,
    for_tcp: bool,
    trust_domains: Sequence[str] = ("cluster.local",),
    name_prefix: str = "",
) -> tuple[Any, Any] | None:
    """The enforced and the dry-run RBAC rule sets of some policies, with one RBAC action.

    Args:
        policies: the policies (their own ``action`` is not looked at).
        action: ``envoy.config.rbac.v3.RBAC.Action`` of the rule sets.
        for_tcp: build for a TCP filter.
        trust_domains: the mesh's trust domain and aliases.
        name_prefix: prepended to every RBAC policy name.

    Returns:
        ``(rules, shadow_rules)``, either ``None`` when no policy is enforced (or dry-run); ``None`` when there
        are no policies.
    """
    chosen = list(policies)
    if not chosen:
        return None
    enforced = rbac_pb2.RBAC(action=action)
    shadow = rbac_pb2.RBAC(action=action)
    has_enforced = has_shadow = False
    lenient = action != rbac_pb2.RBAC.ALLOW
    for policy in chosen:
        dry_run = is_dry_run(policy)
        target = shadow if dry_run else enforced
        has_shadow |= dry_run
        has_enforced |= not dry_run
        spec = policy.spec
        for index, rule in enumerate(spec.rules):
            name = name_prefix + rbac_policy_name(policy.namespace, policy.name, index)
            try:
                translated = translate_rule(
                    rule, namespace=policy.namespace, for_tcp=for_tcp, lenient=lenient, trust_domains=trust_domains
                )
            except RuleError as error:
                _log.debug("skipped rule %s on a %s filter chain: %s", name, "TCP" if for_tcp else "HTTP", error)
                continue
            target.policies[name].CopyFrom(translated)
        if not spec.rules:
            target.policies[name_prefix + rbac_policy_name(policy.namespace, policy.name, 0)].CopyFrom(_never())
    return (enforced if has_enforced else None, shadow if has_shadow else None)


def _split(policies: Iterable[Resource[AuthorizationPolicy]]) -> dict[AuthorizationAction, list[Any]]:
    by_action: dict[AuthorizationAction, list[Any]] = {action: [] for action in AuthorizationAction}
    for policy in policies:
        by_action[policy.spec.action].append(policy)
    return by_action


def build_http_rbac(
    policies: Iterable[Resource[AuthorizationPolicy]], *, trust_domains: Sequence[str] = ("cluster.local",)
) -> list[Any]:
    """The HTTP RBAC filters of a workload's policies: AUDIT, then DENY, then ALLOW (CUSTOM ones are skipped).

    Args:
        policies: the AuthorizationPolicies that apply to the workload.
        trust_domains: the mesh's trust domain and its aliases (:func:`trust_domains`).

    Returns:
        ``HttpFilter`` messages, none when there are no policies.
    """
    by_action = _split(policies)
    filters = []
    for action, rbac_action in _ORDER:
        built = build_rbac(by_action[action], rbac_action, for_tcp=False, trust_domains=trust_domains)
        if built is None:
            continue
        rules, shadow = built
        config = http_rbac_pb2.RBAC(rules=rules, shadow_rules=shadow)
        if shadow is not None:
            config.shadow_rules_stat_prefix = _SHADOW_PREFIX.get(rbac_action, "")
        http_filter = hcm_pb2.HttpFilter(name=HTTP_RBAC_FILTER)
        http_filter.typed_config.Pack(config)
        filters.append(http_filter)
    return filters


def build_network_rbac(
    policies: Iterable[Resource[AuthorizationPolicy]], *, trust_domains: Sequence[str] = ("cluster.local",)
) -> list[Any]:
    """The network (TCP) RBAC filters of a workload's policies: AUDIT, then DENY, then ALLOW.

    Args:
        policies: the AuthorizationPolicies that apply to the workload.
        trust_domains: the mesh's trust domain and its aliases (:func:`trust_domains`).

    Returns:
        listener ``Filter`` messages, none when there are no policies.
    """
    by_action = _split(policies)
    filters = []
    for action, rbac_action in _ORDER:
        built = build_rbac(by_action[action], rbac_action, for_tcp=True, trust_domains=trust_domains)
        if built is None:
            continue
        rules, shadow = built
        config = network_rbac_pb2.RBAC(rules=rules, shadow_rules=shadow, stat_prefix=_TCP_STAT_PREFIX)
        if shadow is not None:
            config.shadow_rules_stat_prefix = _SHADOW_PREFIX.get(rbac_action, "")
        network_filter = listener_components_pb2.Filter(name=NETWORK_RBAC_FILTER)
        network_filter.typed_config.Pack(config)
        filters.append(network_filter)
    return filters
