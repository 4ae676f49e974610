"""Load balancer settings (``LoadBalancerSettings`` of ``destination_rule.proto``) and their rules.

``LocalityLoadBalancerSetting`` is also MeshConfig's ``localityLbSetting``; its rules are
:func:`validate_locality_lb_setting`.
"""

from __future__ import annotations

import enum
import math
from typing import final

import attrs

from mesh_config.networking._checks import cel_duration, out_of_range
from mesh_config.types import (
    Duration,
    FrozenDict,
    UInt32,
    UInt64,
    boolean,
    enum_value,
    integer,
    mapping,
    optional,
    repeated,
    string,
)
from mesh_config.validation import ValidationContext

__all__ = [
    "MAGLEV_TABLE_SIZE_LIMIT",
    "BackendUtilization",
    "ConsistentHashLB",
    "HTTPCookie",
    "HTTPCookieAttribute",
    "LoadBalancerSettings",
    "LocalityDistribute",
    "LocalityFailover",
    "LocalityLoadBalancerSetting",
    "MagLev",
    "RingHash",
    "SimpleLB",
    "WarmupConfiguration",
    "ZoneAwareFailover",
    "ZoneAwareLoadBalancerSetting",
    "is_maglev_prime",
    "validate_load_balancer",
    "validate_locality_lb_setting",
]

MAGLEV_TABLE_SIZE_LIMIT = 5000011
"""Maglev table sizes must be primes below this (Envoy's limit)."""

_TOPOLOGY_LABELS = ("topology.kubernetes.io/region", "topology.kubernetes.io/zone", "topology.istio.io/subzone")


class SimpleLB(enum.Enum):
    """``LoadBalancerSettings.SimpleLB``: a load-balancing algorithm without configuration."""

    UNSPECIFIED = "UNSPECIFIED"
    """No preference: Istio picks its default (LEAST_REQUEST)."""
    LEAST_CONN = "LEAST_CONN"
    """Deprecated alias of LEAST_REQUEST."""
    RANDOM = "RANDOM"
    """A random healthy host."""
    PASSTHROUGH = "PASSTHROUGH"
    """The original destination address of the connection."""
    ROUND_ROBIN = "ROUND_ROBIN"
    """Each healthy host in turn."""
    LEAST_REQUEST = "LEAST_REQUEST"
    """The host with fewer outstanding requests of two picked at random."""


@final
@attrs.frozen
class RingHash:
    """``ConsistentHashLB.RingHash``: the ring hash (ketama) algorithm."""

    minimum_ring_size: UInt64 = integer()


@final
@attrs.frozen
class MagLev:
    """``ConsistentHashLB.MagLev``: the Maglev algorithm; ``tableSize`` must be a prime."""

    table_size: UInt64 = integer()


@final
@attrs.frozen
class HTTPCookieAttribute:
    """``HTTPCookie.Attribute``: an attribute of a generated session cookie."""

    name: str = string(required=True)
    value: str = string()


@final
@attrs.frozen
class HTTPCookie:
    """``ConsistentHashLB.HTTPCookie``: hash on a cookie, generated with ``ttl`` when absent."""

    name: str = string(required=True)
    path: str = string()
    ttl: Duration | None = optional()
    attributes: tuple[HTTPCookieAttribute, ...] = repeated()


@final
@attrs.frozen
class ConsistentHashLB:
    """``LoadBalancerSettings.ConsistentHashLB``: soft session affinity by a hash of the request.

    One hash key (``httpHeaderName``, ``httpCookie``, ``useSourceIp``, ``httpQueryParameterName``) and at
    most one algorithm (``ringHash``, ``maglev``) may be set.
    """

    http_header_name: str = string(oneof="hash_key")
    http_cookie: HTTPCookie | None = optional(oneof="hash_key")
    use_source_ip: bool = boolean(oneof="hash_key")
    http_query_parameter_name: str = string(oneof="hash_key")
    ring_hash: RingHash | None = optional(oneof="hash_algorithm")
    maglev: MagLev | None = optional(oneof="hash_algorithm")
    minimum_ring_size: UInt64 = integer()


@final
@attrs.frozen
class BackendUtilization:
    """Load balancing weighted by the utilization the backends report (ORCA metrics)."""

    error_utilization_penalty_percent: UInt32 = integer()
    metric_names_for_computing_utilization: tuple[str, ...] = repeated()
    weight_expiration_period: Duration | None = optional()
    weight_stabilization_period: Duration | None = optional()
    weight_update_period: Duration | None = optional()


@final
@attrs.frozen
class LocalityDistribute:
    """``LocalityLoadBalancerSetting.Distribute``: weights of the localities traffic from ``from`` goes to."""

    from_: str = string()
    to: FrozenDict[str, UInt32] = mapping()


@final
@attrs.frozen
class LocalityFailover:
    """``LocalityLoadBalancerSetting.Failover``: the region to fail over to from a region."""

    from_: str = string()
    to: str = string()


@final
@attrs.frozen
class LocalityLoadBalancerSetting:
    """Locality-weighted load balancing (``localityLbSetting``, in DestinationRules and in MeshConfig).

    Attributes:
        distribute: explicit traffic weights per source locality (exclusive with ``failover``).
        failover: where a region's traffic goes when its endpoints are unhealthy.
        failover_priority: labels that order endpoints into priorities.
        enabled: turns locality load balancing on or off (unset keeps the default).
    """

    distribute: tuple[LocalityDistribute, ...] = repeated()
    failover: tuple[LocalityFailover, ...] = repeated()
    failover_priority: tuple[str, ...] = repeated()
    enabled: bool | None = optional()


@final
@attrs.frozen
class ZoneAwareFailover:
    """``ZoneAwareLoadBalancerSetting.Failover``: the region to fail over to from a region."""

    from_: str = string()
    to: str = string()


@final
@attrs.frozen
class ZoneAwareLoadBalancerSetting:
    """Zone-aware load balancing (``zoneAwareLbSetting``), exclusive with ``localityLbSetting``."""

    enabled: bool | None = optional()
    failover: tuple[ZoneAwareFailover, ...] = repeated()
    failover_priority: tuple[str, ...] = repeated()
    min_cluster_size: UInt32 | None = optional()


@final
@attrs.frozen
class WarmupConfiguration:
    """``WarmupConfiguration``: slow start for new endpoints."""

    duration: Duration | None = optional(required=True)
    minimum_percent: float | None = optional()
    aggression: float | None = optional()


@final
@attrs.frozen
class LoadBalancerSettings:
    """Load-balancing policy (``loadBalancer``): one of ``simple``, ``consistentHash``, ``backendUtilization``.

    Attributes:
        simple: a simple algorithm.
        consistent_hash: session affinity by a hash of the request.
        backend_utilization: weights from the load the backends report.
        locality_lb_setting: locality-weighted load balancing.
        zone_aware_lb_setting: zone-aware load balancing.
        warmup_duration_secs: slow-start window for new endpoints (superseded by ``warmup``).
        warmup: slow-start configuration.
    """

    simple: SimpleLB = enum_value(SimpleLB.UNSPECIFIED, oneof="lb_policy")
    consistent_hash: ConsistentHashLB | None = optional(oneof="lb_policy")
    backend_utilization: BackendUtilization | None = optional(oneof="lb_policy")
    locality_lb_setting: LocalityLoadBalancerSetting | None = optional()
    zone_aware_lb_setting: ZoneAwareLoadBalancerSetting | None = optional()
    warmup_duration_secs: Duration | None = optional()
    warmup: WarmupConfiguration | None = optional()


def is_maglev_prime(value: int) -> bool:
    """Envoy's primality test for Maglev table sizes (which calls 1 a prime, as Envoy does)."""
    if value != 0 and value < 4:
        return True
    if value & 1 == 0:
        return False
    return all(value % factor for factor in range(3, math.isqrt(value) + 1, 2))


def validate_load_balancer(settings: LoadBalancerSettings | None, ctx: ValidationContext, *, has_outlier: bool) -> None:
    """The CRD rules and Istio's ``validateLoadBalancer``, with ``ctx`` at the ``loadBalancer`` field.

    Args:
        settings: the settings, if any.
        ctx: the context, at ``loadBalancer``.
        has_outlier: the traffic policy that holds them sets ``outlierDetection`` (failover needs it).
    """
    if settings is None:
        return
    if settings.consistent_hash is not None:
        _check_consistent_hash(settings.consistent_hash, ctx.at("consistentHash"))
    if settings.locality_lb_setting is not None and settings.zone_aware_lb_setting is not None:
        ctx.error("only one of localityLbSetting or zoneAwareLbSetting can be set")
    validate_locality_lb_setting(settings.locality_lb_setting, ctx.at("localityLbSetting"), has_outlier=has_outlier)
    if (zone_aware := settings.zone_aware_lb_setting) is not None:
        size = zone_aware.min_cluster_size
        if size is not None and size < 1:
            out_of_range(ctx, size, "should be greater than or equal to 1", "zoneAwareLbSetting", "minClusterSize")
    cel_duration(ctx, settings.warmup_duration_secs, "warmupDurationSecs")
    if (warmup := settings.warmup) is not None:
        here = ctx.at("warmup")
        cel_duration(here, warmup.duration, "duration")
        percent = warmup.minimum_percent
        if percent is not None and not 0 <= percent <= 100:
            bound = "greater than or equal to 0" if percent < 0 else "less than or equal to 100"
            out_of_range(here, percent, f"should be {bound}", "minimumPercent")
        if (aggression := warmup.aggression) is not None:
            if aggression < 0:
                out_of_range(here, aggression, "should be greater than or equal to 0", "aggression")
            elif aggression < 1:
                here.error(f"aggression should be greater than or equal to 1, not {aggression:g}", "aggression")


def _check_consistent_hash(hashing: ConsistentHashLB, ctx: ValidationContext) -> None:
    if (cookie := hashing.http_cookie) is not None:
        if not cookie.name:
            ctx.error("name required for HttpCookie", "httpCookie", "name")
        seen: set[str] = set()
        for index, attribute in enumerate(cookie.attributes):
            if attribute.name in seen:
                ctx.error(f"duplicate cookie attribute name {attribute.name!r}", "httpCookie", "attributes", index)
            seen.add(attribute.name)
    if hashing.minimum_ring_size:
        ctx.warning(
            "consistent hash MinimumRingSize is deprecated, use ConsistentHashLB's RingHash configuration instead",
            "minimumRingSize",
        )
        if hashing.ring_hash is not None or hashing.maglev is not None:
            ctx.error("only one of MinimumRingSize or Maglev/Ringhash can be specified", "minimumRingSize")
    if (maglev := hashing.maglev) is not None:
        size = maglev.table_size
        if size == 0:
            ctx.error("tableSize must be set for maglev", "maglev", "tableSize")
        if size >= MAGLEV_TABLE_SIZE_LIMIT:
            ctx.error(f"tableSize {size} must be less than {MAGLEV_TABLE_SIZE_LIMIT} for maglev", "maglev", "tableSize")
        elif not is_maglev_prime(size):
            ctx.error(f"tableSize {size} must be a prime number for maglev", "maglev", "tableSize")


def validate_locality_lb_setting(
    setting: LocalityLoadBalancerSetting | None, ctx: ValidationContext, *, has_outlier: bool = True
) -> None:
    """Istio's ``ValidateLocalityLbSetting``, with ``ctx`` at the ``localityLbSetting`` field.

    Args:
        setting: the setting, if any.
        ctx: the context, at ``localityLbSetting``.
        has_outlier: outlier detection is configured; without it, failover only warns (MeshConfig passes
            True, as Istio does).
    """
    if setting is None:
        return
    if setting.distribute and setting.failover:
        ctx.error("can not simultaneously specify 'distribute' and 'failover'")
    if setting.failover:
        for index, label in enumerate(setting.failover_priority):
            if label in _TOPOLOGY_LABELS:
                ctx.error(
                    f"can not simultaneously set 'failover' and topology label {label!r} in 'failover_priority'",
                    "failoverPriority",
                    index,
                )
    for index, entry in enumerate(setting.distribute):
        here = ctx.at("distribute", index)
        bad = [(locality, weight) for locality, weight in entry.to.items() if not 1 <= weight <= 100]
        for locality, weight in bad:
            here.error(f"locality weight {weight} of {locality!r} must be in range [1, 100]", "to", locality)
        total = sum(entry.to.values())
        if not bad and total != 100:
            here.error(f"total locality weight {total} != 100", "to")
        if problem := _locality_problem(list(entry.to)):
            here.error(problem, "to")
    if problem := _locality_problem([entry.from_ for entry in setting.distribute]):
        ctx.error(problem, "distribute")
    if (setting.failover or setting.failover_priority) and not has_outlier:
        ctx.warning("outlier detection policy must be provided for failover")
    for index, failover in enumerate(setting.failover):
        here = ctx.at("failover", index)
        pair = f"from {failover.from_!r} to {failover.to!r}"
        if failover.from_ == failover.to:
            here.error(f"locality lb failover settings must specify different regions ({pair})")
        if "/" in failover.from_ or "/" in failover.to:
            here.error(f"locality lb failover only specify region ({pair})")
        if "*" in failover.from_ or "*" in failover.to:
            here.error(f"locality lb failover region should not contain '*' wildcard ({pair})")


def _locality_problem(localities: list[str]) -> str | None:
    """Istio's ``validateLocalities``: wildcards only at the end, no empty parts, no overlaps."""
    tree: dict[str, dict[str, dict[str, bool]]] = {}
    for locality in localities:
        stars = locality.count("*")
        if stars and (stars > 1 or not locality.endswith("*")):
            return f"locality {locality!r} wildcard '*' number can not exceed 1 and must be in the end"
        overlap = f"locality {locality!r} overlap with previous specified ones"
        if "*" in tree:
            return overlap
        parts = locality.split("/", 2)
        if any(not part for part in parts):
            return f"locality {locality!r} must not contain empty region/zone/subzone info"
        region = parts[0]
        if len(parts) == 1:
            if region in tree:
                return overlap
            tree[region] = {"*": {"*": True}}
            continue
        zones = tree.get(region)
        zone = parts[1]
        if zones is not None and ("*" in zones or (len(parts) == 2 and zone in zones)):
            return overlap
        if len(parts) == 2:
            tree.setdefault(region, {})[zone] = {"*": True}
            continue
        subzones = tree.setdefault(region, {}).setdefault(zone, {})
        if subzones.get("*") or subzones.get(parts[2]):
            return overlap
        subzones[parts[2]] = True
    return None
