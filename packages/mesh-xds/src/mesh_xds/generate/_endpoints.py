"""A service port's endpoints as Envoy locality groups, with Istio's locality load balancing.

Shared by EDS (load assignments) and CDS (the inline endpoints of DNS clusters):

* endpoints are filtered as Istio does: unhealthy and terminating ones are left out, draining ones too
  unless the service uses persistent sessions, and a subset keeps the endpoints carrying its labels;
* each endpoint carries its weight, its health and its metadata: ``envoy.transport_socket_match``
  ``{tlsMode: istio}`` when it can take Istio mTLS (auto mTLS picks its socket by it), and Istio's
  ``workload`` telemetry string;
* endpoints are grouped by locality (sorted), each group weighing the sum of its endpoints;
* locality load balancing (the rule's ``localityLbSetting``, else the mesh's) either re-weights groups
  (``distribute``) or, with outlier detection on, gives them failover priorities (``failoverPriority``
  labels, then region/zone/subzone proximity and ``failover`` regions).
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final, NamedTuple, TypeVar, final

import attrs
from envoy.config.core.v3 import base_pb2, health_check_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2

from mesh_config.networking.load_balancer import LocalityLoadBalancerSetting
from mesh_model import Endpoint, HealthStatus, Locality, ServicePort, TlsMode

__all__ = [
    "DRAINING_LABEL",
    "PERSISTENT_SESSION_LABEL",
    "TLS_MODE_ISTIO",
    "LocalityGroup",
    "Member",
    "MtlsCheck",
    "apply_locality_lb",
    "group_endpoints",
    "grouped",
    "lb_endpoint",
    "locality_lb_applies",
    "to_protos",
    "workload_label",
]

_T = TypeVar("_T")
_MAX_UINT32: Final = 2**32 - 1
_UNIX: Final = "unix://"
_ISTIO: Final = TlsMode.ISTIO
_HEALTHY: Final = HealthStatus.HEALTHY
TLS_MODE_ISTIO: Final = TlsMode.ISTIO.value
"""The ``tlsMode`` of the ``envoy.transport_socket_match`` metadata of endpoints that take Istio mTLS."""
_OCTET: Final = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4_MATCH: Final = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}").fullmatch
"""Matches the dotted quads ``ipaddress`` accepts (no leading zeros): a fast path of ``_is_ip``."""
PERSISTENT_SESSION_LABEL: Final = "istio.io/persistent-session"
DRAINING_LABEL: Final = "istio.io/draining"
_CANONICAL_NAME: Final = "service.istio.io/canonical-name"
_CANONICAL_REVISION: Final = "service.istio.io/canonical-revision"
_KUBERNETES_NAME: Final = "app.kubernetes.io/name"
_KUBERNETES_VERSION: Final = "app.kubernetes.io/version"
_HEALTH = {
    HealthStatus.HEALTHY: health_check_pb2.HEALTHY,
    HealthStatus.UNHEALTHY: health_check_pb2.UNHEALTHY,
    HealthStatus.DRAINING: health_check_pb2.DRAINING,
}


@final
class Member(NamedTuple):
    """One endpoint of a locality group, with what its Envoy LbEndpoint says about it.

    Attributes:
        endpoint: the model endpoint.
        port: the port it serves the service port on.
        mtls: its metadata says ``tlsMode: istio`` (auto mTLS uses Istio mTLS to reach it).
    """

    endpoint: Endpoint
    port: int
    mtls: bool


@final
@attrs.define
class LocalityGroup:
    """The endpoints of one locality (and, after failover, one priority).

    Attributes:
        locality: where the endpoints run.
        members: the endpoints, in order.
        weight: the group's load-balancing weight.
        priority: the group's failover priority (0 is the most preferred).
    """

    locality: Locality
    members: list[Member]
    weight: int = 0
    priority: int = 0


def _is_ip(address: str) -> bool:
    if _IPV4_MATCH(address):
        return True
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True


def workload_label(endpoint: Endpoint) -> str:
    """Istio's ``workload`` telemetry string of an endpoint: ``<workload>;<namespace>;<name>;<revision>;<cluster>``.

    The name and revision are the canonical ones: ``service.istio.io/canonical-*`` labels, else the Kubernetes
    recommended ``app.kubernetes.io/*`` ones, else ``app`` and ``version`` (the name falls back to the
    workload's, and revision ``latest`` counts as none).
    """
    get = endpoint.labels.get  # runs for every endpoint of every cluster: the lookups are kept inline
    name = get(_CANONICAL_NAME) or get(_KUBERNETES_NAME) or get("app") or endpoint.workload_name
    revision = get(_CANONICAL_REVISION) or get(_KUBERNETES_VERSION) or get("version") or ""
    if revision == "latest":
        revision = ""
    return f"{endpoint.workload_name};{endpoint.namespace};{name};{revision};{endpoint.cluster_id}"


def _health(endpoint: Endpoint) -> HealthStatus:
    if endpoint.labels.get(DRAINING_LABEL):
        return HealthStatus.DRAINING
    return endpoint.health


def lb_endpoint(endpoint: Endpoint, port: ServicePort, *, mtls: bool) -> Any:
    """An endpoint as Envoy's LbEndpoint, serving ``port`` on its target port.

    Args:
        endpoint: the endpoint.
        port: the service port it serves.
        mtls: the endpoint takes Istio mTLS (its metadata then says ``tlsMode: istio``).
    """
    out = endpoint_components_pb2.LbEndpoint()
    _fill(out, _member(endpoint, port, mtls))
    return out


def _member(endpoint: Endpoint, port: ServicePort, mtls: bool) -> Member:
    return Member(endpoint, endpoint.target_port(port), mtls and endpoint.tls_mode is TlsMode.ISTIO)


def _fill(out: Any, member: Member) -> None:
    """Write ``member`` into the empty LbEndpoint ``out`` (field by field: the fastest way to build it)."""
    endpoint = member.endpoint
    out.health_status = _HEALTH[_health(endpoint)]
    address = endpoint.address
    if address.startswith(_UNIX):
        out.endpoint.address.pipe.path = address[len(_UNIX) :]
    else:
        socket = out.endpoint.address.socket_address
        socket.address = address
        socket.port_value = member.port
    out.load_balancing_weight.value = endpoint.weight
    metadata = out.metadata.filter_metadata
    if member.mtls:
        metadata["envoy.transport_socket_match"].fields["tlsMode"].string_value = TLS_MODE_ISTIO
    metadata["istio"].fields["workload"].string_value = workload_label(endpoint)


def _included(endpoint: Endpoint, *, persistent_sessions: bool) -> bool:
    health = _health(endpoint)
    if health in (HealthStatus.UNHEALTHY, HealthStatus.TERMINATING):
        return False
    return health is not HealthStatus.DRAINING or persistent_sessions


MtlsCheck = bool | Callable[[Endpoint], bool]
"""Whether endpoints that can take Istio mTLS get it: the same answer for all of them, or one per endpoint."""


def grouped(
    endpoints: Iterable[Endpoint],
    port: ServicePort,
    *,
    subset_labels: Mapping[str, str] | None,
    dns: bool,
    persistent_sessions: bool,
    mtls: MtlsCheck,
    make: Callable[[Endpoint, int, bool], _T],
) -> list[tuple[Locality, list[_T], int]]:
    """The endpoints that serve ``port``, filtered, made into members and grouped by locality.

    Args:
        endpoints: the service port's endpoints from the registry.
        port: the service port.
        subset_labels: the labels a subset's endpoints carry, or None for every endpoint.
        dns: the cluster resolves host names itself (DNS clusters keep endpoints named by host).
        persistent_sessions: draining endpoints are kept (the service uses persistent sessions).
        mtls: whether an endpoint whose ``tls_mode`` is Istio's takes Istio mTLS.
        make: makes a member of an endpoint, the port it serves ``port`` on and whether it takes Istio mTLS.

    Returns:
        Each locality (sorted) with its members, in order, and the sum of their weights (at most 2^32-1).
    """
    # The loop runs for every endpoint of every cluster: it is kept lean, and what is the same for every
    # endpoint is worked out before it.
    groups: dict[tuple[str, str, str], list[Any]] = {}  # by levels (cheap to hash): locality, members, weight
    subset = tuple(subset_labels.items()) if subset_labels else ()
    fixed, check = (mtls, None) if isinstance(mtls, bool) else (False, mtls)
    default_port = port.target_port if port.target_port is not None else port.number
    port_name = port.name
    for endpoint in endpoints:
        labels = endpoint.labels
        if (endpoint.health is not _HEALTHY or labels.get(DRAINING_LABEL)) and not _included(
            endpoint, persistent_sessions=persistent_sessions
        ):
            continue
        if subset and any(labels.get(key) != value for key, value in subset):
            continue
        address = endpoint.address
        if not dns and not _IPV4_MATCH(address) and not address.startswith(_UNIX) and not _is_ip(address):
            continue
        locality = endpoint.locality
        key = (locality.region, locality.zone, locality.subzone)
        group = groups.get(key)
        if group is None:
            group = groups[key] = [locality, [], 0]
        istio = endpoint.tls_mode is _ISTIO and (fixed if check is None else check(endpoint))
        number = default_port  # ``Endpoint.target_port``, inline
        if port_name:
            for name, value in endpoint.ports:
                if name == port_name:
                    number = value
                    break
        group[1].append(make(endpoint, number, istio))
        group[2] += endpoint.weight
    ordered = sorted(groups.items(), key=lambda item: _locality_text(*item[0]))
    return [(locality, members, min(weight, _MAX_UINT32)) for _, (locality, members, weight) in ordered]


def _locality_text(region: str, zone: str, subzone: str) -> str:
    """``str()`` of the locality of these levels (a lower level is only set with the ones above it)."""
    if subzone:
        return f"{region}/{zone}/{subzone}"
    return f"{region}/{zone}" if zone else region


def group_endpoints(
    endpoints: Iterable[Endpoint],
    port: ServicePort,
    *,
    subset_labels: Mapping[str, str] | None,
    dns: bool,
    persistent_sessions: bool,
    mtls: MtlsCheck,
) -> list[LocalityGroup]:
    """The endpoints that serve ``port``, filtered and grouped by locality (sorted by locality).

    Args:
        endpoints: the service port's endpoints from the registry.
        port: the service port.
        subset_labels: the labels a subset's endpoints carry, or None for every endpoint.
        dns: the cluster resolves host names itself (DNS clusters keep endpoints named by host).
        persistent_sessions: draining endpoints are kept (the service uses persistent sessions).
        mtls: whether an endpoint takes Istio mTLS.
    """
    found = grouped(
        endpoints,
        port,
        subset_labels=subset_labels,
        dns=dns,
        persistent_sessions=persistent_sessions,
        mtls=mtls,
        make=Member,
    )
    return [LocalityGroup(locality, members, weight) for locality, members, weight in found]


def _lb_priority(proxy: Locality, other: Locality) -> int:
    """Istio's ``LbPriority``: 0 same subzone, 1 same zone, 2 same region, 3 elsewhere."""
    if proxy.region != other.region:
        return 3
    if proxy.zone != other.zone:
        return 2
    return 0 if proxy.subzone == other.subzone else 1


def _distribute(
    groups: list[LocalityGroup], proxy: Locality, setting: LocalityLoadBalancerSetting
) -> list[LocalityGroup]:
    for rule in setting.distribute:
        if not proxy.matches(rule.from_):
            continue
        unmatched = set(range(len(groups)))
        weights: dict[int, int] = {}
        for pattern, share in rule.to.items():
            matched = [i for i in sorted(unmatched) if groups[i].locality.matches(pattern)]
            unmatched.difference_update(matched)
            total = sum(groups[i].weight or 1 for i in matched)
            for i in matched:
                weight = (groups[i].weight or 1) * share / total
                if weight > 0:
                    weights[i] = min(math.ceil(weight), _MAX_UINT32)
        kept = []
        for index, group in enumerate(groups):
            if index in unmatched:
                continue
            group.weight = weights.get(index, group.weight)
            kept.append(group)
        return kept
    return groups


def _compact(groups: list[LocalityGroup]) -> None:
    ranks = {priority: rank for rank, priority in enumerate(sorted({group.priority for group in groups}))}
    for group in groups:
        group.priority = ranks[group.priority]


def _failover(groups: list[LocalityGroup], proxy: Locality, setting: LocalityLoadBalancerSetting) -> None:
    for group in groups:
        priority = _lb_priority(proxy, group.locality)
        if priority == 3:
            for rule in setting.failover:
                if rule.from_ == proxy.region:
                    if group.locality.region != rule.to:
                        priority = 4
                    break
        group.priority = group.priority * 5 + priority
    _compact(groups)


def _priority_labels(entries: Sequence[str], proxy_labels: Mapping[str, str]) -> list[tuple[str, str | None]]:
    out: list[tuple[str, str | None]] = []
    for entry in entries:
        name, equals, value = entry.partition("=")
        out.append((name, value if equals else proxy_labels.get(name)))
    return out


def _failover_priority(
    groups: list[LocalityGroup], proxy_labels: Mapping[str, str], entries: Sequence[str]
) -> list[LocalityGroup]:
    labels = _priority_labels(entries, proxy_labels)
    lowest = len(labels)
    out: list[LocalityGroup] = []
    for group in groups:
        split: dict[int, list[Member]] = {}
        for member in group.members:
            priority = 0
            for index, (name, wanted) in enumerate(labels):
                if member.endpoint.labels.get(name) != wanted:
                    priority = lowest - index
                    break
            split.setdefault(priority, []).append(member)
        for priority in sorted(split):
            members = split[priority]
            weight = min(sum(member.endpoint.weight for member in members), _MAX_UINT32)
            out.append(LocalityGroup(group.locality, members, weight, priority))
    _compact(out)
    return out


def locality_lb_applies(setting: LocalityLoadBalancerSetting | None, *, failover: bool) -> bool:
    """Whether :func:`apply_locality_lb` changes anything: ``distribute``, or failover (outlier detection on)."""
    return setting is not None and (bool(setting.distribute) or failover)


def apply_locality_lb(
    groups: list[LocalityGroup],
    setting: LocalityLoadBalancerSetting | None,
    *,
    proxy_locality: Locality,
    proxy_labels: Mapping[str, str],
    failover: bool,
) -> list[LocalityGroup]:
    """Istio's ``ApplyLocalityLoadBalancer``: ``distribute`` weights, or failover priorities.

    Args:
        groups: the locality groups, changed in place where possible.
        setting: the locality setting that applies, or None.
        proxy_locality: the calling proxy's locality.
        proxy_labels: the calling proxy's labels (``failoverPriority`` compares endpoints with them).
        failover: outlier detection is on (failover never happens without it, so it is not set up).
    """
    if setting is None or not locality_lb_applies(setting, failover=failover):
        return groups
    if setting.distribute:
        return _distribute(groups, proxy_locality, setting)
    if setting.failover_priority:
        if proxy_labels:
            groups = _failover_priority(groups, proxy_labels, setting.failover_priority)
        if setting.failover:
            _failover(groups, proxy_locality, setting)
        return groups
    _failover(groups, proxy_locality, setting)
    return groups


def to_protos(groups: Iterable[LocalityGroup], metadata: Mapping[str, Any] | None = None) -> list[Any]:
    """The groups as LocalityLbEndpoints, each with ``metadata`` as its filter metadata."""
    out = []
    template = _metadata(metadata)
    for group in groups:
        proto = endpoint_components_pb2.LocalityLbEndpoints()
        _fill_group(proto, group, template)
        out.append(proto)
    return out


def _metadata(values: Mapping[str, Any] | None) -> Any | None:
    """The filter metadata of every group, built once (and copied into each group, a cheap C copy)."""
    if not values:
        return None
    metadata = base_pb2.Metadata()
    for key, value in values.items():
        metadata.filter_metadata[key].update(value)
    return metadata


def _fill_group(proto: Any, group: LocalityGroup, metadata: Any | None) -> None:
    proto.priority = group.priority
    locality = group.locality
    if not locality.is_empty:
        proto.locality.region = locality.region
        proto.locality.zone = locality.zone
        proto.locality.sub_zone = locality.subzone
    add = proto.lb_endpoints.add
    for member in group.members:
        _fill(add(), member)
    if group.members:
        proto.load_balancing_weight.value = max(group.weight, 1)
    if metadata is not None:
        proto.metadata.CopyFrom(metadata)
