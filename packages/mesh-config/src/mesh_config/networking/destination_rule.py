"""DestinationRule (networking.istio.io): policies for traffic to a service after routing.

The spec and its subsets are here; the messages of ``TrafficPolicy`` are in
:mod:`~mesh_config.networking.traffic_policy`, :mod:`~mesh_config.networking.load_balancer` and
:mod:`~mesh_config.networking.connection_pool`, and re-exported from this module.
"""

from __future__ import annotations

from typing import final

import attrs

from mesh_config.common import WorkloadSelector
from mesh_config.kinds import KindSpec, register_kind
from mesh_config.networking._checks import check_labels, check_subset_name, too_many
from mesh_config.networking.connection_pool import (
    ConnectionKeepalive,
    ConnectionPoolSettings,
    H2UpgradePolicy,
    HTTPSettings,
    TcpKeepalive,
    TCPSettings,
)
from mesh_config.networking.load_balancer import (
    BackendUtilization,
    ConsistentHashLB,
    HTTPCookie,
    HTTPCookieAttribute,
    LoadBalancerSettings,
    LocalityDistribute,
    LocalityFailover,
    LocalityLoadBalancerSetting,
    MagLev,
    RingHash,
    SimpleLB,
    WarmupConfiguration,
    ZoneAwareFailover,
    ZoneAwareLoadBalancerSetting,
)
from mesh_config.networking.traffic_policy import (
    ClientTLSMode,
    ClientTLSSettings,
    OutlierDetection,
    PortTrafficPolicy,
    ProxyProtocol,
    ProxyProtocolVersion,
    RetryBudget,
    TrafficPolicy,
    TunnelSettings,
    validate_traffic_policy,
)
from mesh_config.rules import check_export_to, check_selector, check_wildcard_domain
from mesh_config.types import FrozenDict, mapping, optional, repeated, string
from mesh_config.validation import ValidationContext

__all__ = [
    "DESTINATION_RULE",
    "BackendUtilization",
    "ClientTLSMode",
    "ClientTLSSettings",
    "ConnectionKeepalive",
    "ConnectionPoolSettings",
    "ConsistentHashLB",
    "DestinationRule",
    "H2UpgradePolicy",
    "HTTPCookie",
    "HTTPCookieAttribute",
    "HTTPSettings",
    "LoadBalancerSettings",
    "LocalityDistribute",
    "LocalityFailover",
    "LocalityLoadBalancerSetting",
    "MagLev",
    "OutlierDetection",
    "PortTrafficPolicy",
    "ProxyProtocol",
    "ProxyProtocolVersion",
    "RetryBudget",
    "RingHash",
    "SimpleLB",
    "Subset",
    "TCPSettings",
    "TcpKeepalive",
    "TrafficPolicy",
    "TunnelSettings",
    "WarmupConfiguration",
    "ZoneAwareFailover",
    "ZoneAwareLoadBalancerSetting",
    "validate_destination_rule",
]

_MAX_SELECTOR_LABELS = 4096


@final
@attrs.frozen
class Subset:
    """A named set of endpoints of the service, selected by labels, with its own policy."""

    name: str = string(required=True)
    labels: FrozenDict[str, str] = mapping()
    traffic_policy: TrafficPolicy | None = optional()


@final
@attrs.frozen
class DestinationRule:
    """The spec of a DestinationRule.

    Attributes:
        host: the service the rule applies to (a registry name; short names are expanded with the
            rule's namespace).
        traffic_policy: the policies for all traffic to the host.
        subsets: named versions of the service.
        export_to: namespaces the rule is visible in (``.``, ``*`` or names).
        workload_selector: the client workloads the rule applies to (only in its own namespace).
    """

    host: str = string(required=True)
    traffic_policy: TrafficPolicy | None = optional()
    subsets: tuple[Subset, ...] = repeated()
    export_to: tuple[str, ...] = repeated()
    workload_selector: WorkloadSelector | None = optional()


def validate_destination_rule(spec: DestinationRule, ctx: ValidationContext) -> None:
    """The CRD rules and Istio's webhook rules for DestinationRule."""
    check_wildcard_domain(ctx, spec.host, "host")
    validate_traffic_policy(spec.traffic_policy, ctx.at("trafficPolicy"))
    seen: set[str] = set()
    for index, subset in enumerate(spec.subsets):
        here = ctx.at("subsets", index)
        if subset.name in seen:
            here.error(f"duplicate subset names: {subset.name!r}", "name")
        seen.add(subset.name)
        check_subset_name(here, subset.name, "name")
        check_labels(here, subset.labels, "labels")
        validate_traffic_policy(subset.traffic_policy, here.at("trafficPolicy"))
    check_export_to(ctx, spec.export_to, "exportTo")
    if spec.workload_selector is not None:
        _check_selector_export(spec.export_to, ctx)
    check_selector(ctx, spec.workload_selector, "workloadSelector")
    if spec.workload_selector is not None and len(spec.workload_selector.match_labels) > _MAX_SELECTOR_LABELS:
        count = len(spec.workload_selector.match_labels)
        too_many(ctx, count, _MAX_SELECTOR_LABELS, "workloadSelector", "matchLabels")


def _check_selector_export(export_to: tuple[str, ...], ctx: ValidationContext) -> None:
    """A DestinationRule with a workloadSelector is visible only in its own namespace."""
    own = {".", ctx.namespace} if ctx.namespace else {"."}
    # Without a namespace in the document a named namespace may be the rule's own: only '*' is certain.
    others = [entry for entry in export_to if entry not in own and (ctx.namespace or entry == "*")]
    if not others:
        return
    quoted = ", ".join(repr(entry) for entry in others)
    if any(entry in own for entry in export_to):
        ctx.error(
            f"destination rule with workload selector cannot have multiple entries in exportTo: {quoted}", "exportTo"
        )
    else:
        ctx.error(
            f"destination rule with workload selector cannot have exportTo beyond current namespace: {quoted}",
            "exportTo",
        )


DESTINATION_RULE = register_kind(
    KindSpec(
        kind="DestinationRule",
        group="networking.istio.io",
        versions=("v1", "v1beta1", "v1alpha3"),
        spec_type=DestinationRule,
        validate=validate_destination_rule,
        plural="destinationrules",
    )
)
