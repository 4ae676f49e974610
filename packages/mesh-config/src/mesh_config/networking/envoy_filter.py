"""EnvoyFilter (networking.istio.io): patches to generated Envoy config."""

from __future__ import annotations

import enum
from typing import final

import attrs

from mesh_config.common import PolicyTargetReference
from mesh_config.kinds import KindSpec, register_kind
from mesh_config.networking._envoy_filter_rules import validate_envoy_filter
from mesh_config.networking.service_entry import WorkloadLabelSelector
from mesh_config.types import (
    FrozenDict,
    Int32,
    JsonObject,
    UInt32,
    enum_value,
    integer,
    mapping,
    optional,
    repeated,
    string,
)

__all__ = [
    "ENVOY_FILTER",
    "ApplyTo",
    "ClusterMatch",
    "EnvoyConfigObjectMatch",
    "EnvoyConfigObjectPatch",
    "EnvoyFilter",
    "FilterChainMatch",
    "FilterClass",
    "FilterMatch",
    "ListenerMatch",
    "Patch",
    "PatchContext",
    "PatchOperation",
    "ProxyMatch",
    "RouteAction",
    "RouteConfigurationMatch",
    "RouteMatch",
    "SubFilterMatch",
    "VirtualHostMatch",
    "WaypointFilterMatch",
    "WaypointMatch",
    "WaypointRouteMatch",
    "WaypointSubFilterMatch",
    "validate_envoy_filter",
]


class ApplyTo(enum.Enum):
    """``EnvoyFilter.ApplyTo``: the kind of Envoy object a patch applies to."""

    INVALID = "INVALID"
    LISTENER = "LISTENER"
    FILTER_CHAIN = "FILTER_CHAIN"
    NETWORK_FILTER = "NETWORK_FILTER"
    HTTP_FILTER = "HTTP_FILTER"
    ROUTE_CONFIGURATION = "ROUTE_CONFIGURATION"
    VIRTUAL_HOST = "VIRTUAL_HOST"
    HTTP_ROUTE = "HTTP_ROUTE"
    CLUSTER = "CLUSTER"
    EXTENSION_CONFIG = "EXTENSION_CONFIG"
    BOOTSTRAP = "BOOTSTRAP"
    LISTENER_FILTER = "LISTENER_FILTER"


class PatchContext(enum.Enum):
    """``EnvoyFilter.PatchContext``: which proxies' config a patch applies to."""

    ANY = "ANY"
    SIDECAR_INBOUND = "SIDECAR_INBOUND"
    SIDECAR_OUTBOUND = "SIDECAR_OUTBOUND"
    GATEWAY = "GATEWAY"
    WAYPOINT = "WAYPOINT"


class RouteAction(enum.Enum):
    """``EnvoyFilter.RouteConfigurationMatch.RouteMatch.Action``: the action of the routes to match."""

    ANY = "ANY"
    ROUTE = "ROUTE"
    REDIRECT = "REDIRECT"
    DIRECT_RESPONSE = "DIRECT_RESPONSE"


class PatchOperation(enum.Enum):
    """``EnvoyFilter.Patch.Operation``: how a patch is applied."""

    INVALID = "INVALID"
    MERGE = "MERGE"
    ADD = "ADD"
    REMOVE = "REMOVE"
    INSERT_BEFORE = "INSERT_BEFORE"
    INSERT_AFTER = "INSERT_AFTER"
    INSERT_FIRST = "INSERT_FIRST"
    REPLACE = "REPLACE"
    MERGE_AND_REPLACE_LIST = "MERGE_AND_REPLACE_LIST"


class FilterClass(enum.Enum):
    """``EnvoyFilter.Patch.FilterClass``: where an added filter goes relative to Istio's own."""

    UNSPECIFIED = "UNSPECIFIED"
    AUTHN = "AUTHN"
    AUTHZ = "AUTHZ"
    STATS = "STATS"


@final
@attrs.frozen
class ProxyMatch:
    """``EnvoyFilter.ProxyMatch``: proxies by version (an RE2 regex) and node metadata."""

    proxy_version: str = string()
    metadata: FrozenDict[str, str] = mapping()


@final
@attrs.frozen
class ClusterMatch:
    """``EnvoyFilter.ClusterMatch``: clusters by port, service, subset or name."""

    port_number: UInt32 = integer()
    service: str = string()
    subset: str = string()
    name: str = string()


@final
@attrs.frozen
class RouteMatch:
    """``EnvoyFilter.RouteConfigurationMatch.RouteMatch``: routes by name and action."""

    name: str = string()
    action: RouteAction = enum_value(RouteAction.ANY)


@final
@attrs.frozen
class VirtualHostMatch:
    """``EnvoyFilter.RouteConfigurationMatch.VirtualHostMatch``: virtual hosts by name or domain."""

    name: str = string()
    domain_name: str = string()
    route: RouteMatch | None = optional()


@final
@attrs.frozen
class RouteConfigurationMatch:
    """``EnvoyFilter.RouteConfigurationMatch``: route configurations, virtual hosts and routes."""

    port_number: UInt32 = integer()
    port_name: str = string()
    gateway: str = string()
    vhost: VirtualHostMatch | None = optional()
    name: str = string()


@final
@attrs.frozen
class SubFilterMatch:
    """``EnvoyFilter.ListenerMatch.SubFilterMatch``: an HTTP filter inside the HTTP connection manager."""

    name: str = string()


@final
@attrs.frozen
class FilterMatch:
    """``EnvoyFilter.ListenerMatch.FilterMatch``: a network filter, and optionally an HTTP filter in it."""

    name: str = string()
    sub_filter: SubFilterMatch | None = optional()


@final
@attrs.frozen
class FilterChainMatch:
    """``EnvoyFilter.ListenerMatch.FilterChainMatch``: filter chains by name, SNI, protocols or port."""

    name: str = string()
    sni: str = string()
    transport_protocol: str = string()
    application_protocols: str = string()
    filter: FilterMatch | None = optional()
    destination_port: UInt32 = integer()
    transport_socket: str = string()


@final
@attrs.frozen
class ListenerMatch:
    """``EnvoyFilter.ListenerMatch``: listeners by port or name, and filter chains and filters in them."""

    port_number: UInt32 = integer()
    port_name: str = string()
    filter_chain: FilterChainMatch | None = optional()
    listener_filter: str = string()
    name: str = string()


@final
@attrs.frozen
class WaypointRouteMatch:
    """``EnvoyFilter.WaypointMatch.RouteMatch``: a waypoint's route by name."""

    name: str = string()


@final
@attrs.frozen
class WaypointSubFilterMatch:
    """``EnvoyFilter.WaypointMatch.FilterMatch.SubFilterMatch``: an HTTP filter of a waypoint."""

    name: str = string()


@final
@attrs.frozen
class WaypointFilterMatch:
    """``EnvoyFilter.WaypointMatch.FilterMatch``: a waypoint's network filter, and an HTTP filter in it."""

    name: str = string()
    sub_filter: WaypointSubFilterMatch | None = optional()


@final
@attrs.frozen
class WaypointMatch:
    """``EnvoyFilter.WaypointMatch``: what of a waypoint's config to patch."""

    port_number: UInt32 = integer()
    route: WaypointRouteMatch | None = optional()
    filter: WaypointFilterMatch | None = optional()


@final
@attrs.frozen
class EnvoyConfigObjectMatch:
    """``EnvoyFilter.EnvoyConfigObjectMatch``: the context, proxies and object a patch applies to."""

    context: PatchContext = enum_value(PatchContext.ANY)
    proxy: ProxyMatch | None = optional()
    listener: ListenerMatch | None = optional(oneof="object_types")
    route_configuration: RouteConfigurationMatch | None = optional(oneof="object_types")
    cluster: ClusterMatch | None = optional(oneof="object_types")
    waypoint: WaypointMatch | None = optional(oneof="object_types")


@final
@attrs.frozen
class Patch:
    """``EnvoyFilter.Patch``: the operation and the Envoy config (as JSON) to apply."""

    operation: PatchOperation = enum_value(PatchOperation.INVALID)
    value: JsonObject | None = optional()
    filter_class: FilterClass = enum_value(FilterClass.UNSPECIFIED)


@final
@attrs.frozen
class EnvoyConfigObjectPatch:
    """``EnvoyFilter.EnvoyConfigObjectPatch``: where to apply a patch, when, and the patch."""

    apply_to: ApplyTo = enum_value(ApplyTo.INVALID)
    match: EnvoyConfigObjectMatch | None = optional()
    patch: Patch | None = optional()


@final
@attrs.frozen
class EnvoyFilter:
    """The spec of an EnvoyFilter.

    Attributes:
        workload_selector: the workloads it applies to; none means the namespace (the mesh in the root
            namespace). Exclusive with ``target_refs``.
        target_refs: the Gateways, GatewayClasses, Services or ServiceEntries it attaches to.
        config_patches: the patches, applied in order.
        priority: the order among EnvoyFilters of the same context (lower first; default 0).
    """

    workload_selector: WorkloadLabelSelector | None = optional()
    target_refs: tuple[PolicyTargetReference, ...] = repeated()
    config_patches: tuple[EnvoyConfigObjectPatch, ...] = repeated()
    priority: Int32 = integer()


ENVOY_FILTER = register_kind(
    KindSpec(
        kind="EnvoyFilter",
        group="networking.istio.io",
        versions=("v1alpha3",),
        spec_type=EnvoyFilter,
        validate=validate_envoy_filter,
        plural="envoyfilters",
    )
)
