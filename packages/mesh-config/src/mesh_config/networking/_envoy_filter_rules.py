"""The validation rules of EnvoyFilter: the CRD's and Istio's webhook's (private).

Kept apart from the messages in ``envoy_filter.py``; enum members are compared by value so that this module
needs the message classes only for type checking.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import re2

from mesh_config._attachment import check_attachment_choice, check_target_ref_schema, check_target_refs_count
from mesh_config.networking._envoy_patch import (
    DEPRECATED_FILTER_NAMES,
    HTTP_CONNECTION_MANAGER,
    missing_typed_config,
    type_problems,
)
from mesh_config.validation import ValidationContext

if TYPE_CHECKING:
    from mesh_config.networking.envoy_filter import EnvoyConfigObjectPatch, EnvoyFilter
    from mesh_config.networking.service_entry import WorkloadLabelSelector

__all__ = ["INTERNALS_WARNING", "validate_envoy_filter"]

INTERNALS_WARNING = (
    "EnvoyFilter exposes internal implementation details that may change at any time. "
    "Prefer other APIs if possible, and exercise extreme caution, especially around upgrades."
)
"""The warning Istio gives for every EnvoyFilter."""

MAX_LABELS = 256
"""The CRD's ``maxProperties`` on ``workloadSelector.labels``."""

_LISTENER_CLASS = frozenset({"LISTENER", "FILTER_CHAIN", "NETWORK_FILTER", "HTTP_FILTER"})
_ROUTE_CLASS = frozenset({"ROUTE_CONFIGURATION", "VIRTUAL_HOST", "HTTP_ROUTE"})
_FILTER_OBJECTS = frozenset({"HTTP_FILTER", "NETWORK_FILTER", "LISTENER_FILTER"})
_NOT_FOR_WAYPOINT = frozenset({"LISTENER", "LISTENER_FILTER", "EXTENSION_CONFIG", "BOOTSTRAP"})


def validate_envoy_filter(spec: EnvoyFilter, ctx: ValidationContext) -> None:
    """The CRD rules and Istio's webhook rules for EnvoyFilter; always warns that it exposes internals."""
    ctx.warning(INTERNALS_WARNING)
    check_attachment_choice(
        ctx, "only one of targetRefs or workloadSelector can be set", "workloadSelector", "targetRefs"
    )
    check_target_refs_count(ctx, spec.target_refs, "targetRefs")
    for index, ref in enumerate(spec.target_refs):
        check_target_ref_schema(ctx, ref, "targetRefs", index)
    if spec.workload_selector is not None:
        _check_selector(spec.workload_selector, ctx.at("workloadSelector"))
    for index, patch in enumerate(spec.config_patches):
        here = ctx.at("configPatches", index)
        _check_match_schema(patch, here)
        if patch.match is not None and patch.match.context.value == "WAYPOINT":
            _check_waypoint_patch(patch, here)
        else:
            _check_patch(patch, here)


def _check_selector(selector: WorkloadLabelSelector, ctx: ValidationContext) -> None:
    labels = selector.labels
    if len(labels) > MAX_LABELS:
        ctx.error(f"in body should have at most {MAX_LABELS} properties", "labels")
    if not labels:
        ctx.warning(
            "Envoy filter: workload selector specified without labels, will be applied to all services in namespace"
        )
    for key, value in labels.items():
        if len(value) > 63:
            ctx.max_length(63, "labels", key)
        if "*" in value:
            ctx.rule("wildcard is not supported in selector", "labels", key, json_type="string")
        if not key:
            ctx.error(f"empty key is not supported in selector: {key + '=' + value!r}", "labels")
        elif "*" in key:
            ctx.error(f"wildcard is not supported in selector: {key + '=' + value!r}", "labels", key)


def _check_match_schema(patch: EnvoyConfigObjectPatch, ctx: ValidationContext) -> None:
    match = patch.match
    if match is None:
        return
    here = ctx.at("match")
    is_waypoint = match.context.value == "WAYPOINT" if here.has("context") else False
    if here.has("waypoint") != is_waypoint:
        here.rule("only support waypointMatch when context is WAYPOINT")
    waypoint = match.waypoint
    if waypoint is not None and here.has("waypoint", "portNumber") and not 0 < waypoint.port_number <= 65535:
        here.rule("port must be between 1-65535", "waypoint", "portNumber", json_type="integer")


def _check_waypoint_patch(patch: EnvoyConfigObjectPatch, ctx: ValidationContext) -> None:
    """Istio's rules for a WAYPOINT patch (which, as in Istio, skip the other patch rules)."""
    apply_to = patch.apply_to.value
    waypoint = patch.match.waypoint if patch.match is not None else None
    if apply_to in _NOT_FOR_WAYPOINT:
        ctx.error(f"Envoy filter: applyTo {apply_to} is not supported for waypoint", "applyTo")
        return
    if apply_to == "HTTP_FILTER":
        if waypoint is None or waypoint.filter is None:
            ctx.error(f"Envoy filter: applyTo {apply_to} for waypoint must have filter match", "match")
        elif waypoint.filter.name != HTTP_CONNECTION_MANAGER:
            name = waypoint.filter.name
            message = f"Envoy filter: applyTo {apply_to} for waypoint requires name with {HTTP_CONNECTION_MANAGER}"
            ctx.error(f"{message}, not {name!r}", "match", "waypoint", "filter", "name")
        elif waypoint.filter.sub_filter is None or not waypoint.filter.sub_filter.name:
            message = f"Envoy filter: applyTo {apply_to} for waypoint must have subfilter name to match on"
            ctx.error(message, "match", "waypoint", "filter")
        return
    if waypoint is None:
        return
    if waypoint.filter is not None and apply_to in (*_ROUTE_CLASS, "CLUSTER"):
        ctx.error(
            f"Envoy filter: applyTo {apply_to} for waypoint cannot have filter match", "match", "waypoint", "filter"
        )
    elif waypoint.route is not None and apply_to in ("CLUSTER", "FILTER_CHAIN", "NETWORK_FILTER"):
        ctx.error(
            f"Envoy filter: applyTo {apply_to} for waypoint cannot have route match", "match", "waypoint", "route"
        )


def _check_patch(patch: EnvoyConfigObjectPatch, ctx: ValidationContext) -> None:
    """Istio's rules for one patch; like Istio, the first broken prerequisite ends the patch's checks."""
    apply_to = patch.apply_to.value
    if apply_to == "INVALID":
        ctx.error("Envoy filter: missing applyTo", "applyTo")
        return
    if patch.patch is None:
        ctx.error("Envoy filter: missing patch", "patch")
        return
    operation = patch.patch.operation.value
    if operation == "INVALID":
        ctx.error("Envoy filter: missing patch operation", "patch", "operation")
        return
    if operation != "REMOVE" and patch.patch.value is None:
        ctx.error(f"Envoy filter: missing patch value for non-remove operation {operation}", "patch", "value")
        return
    match = patch.match
    if match is not None and match.proxy is not None and match.proxy.proxy_version:
        version = match.proxy.proxy_version
        try:
            re2.compile(version)
        except re2.error as error:
            message = f"Envoy filter: invalid regex for proxy version {version!r}, [{error}]"
            ctx.error(message, "match", "proxy", "proxyVersion")
            return
    if not _check_match_class(patch, ctx):
        return
    _check_value(patch, ctx)


def _check_match_class(patch: EnvoyConfigObjectPatch, ctx: ValidationContext) -> bool:
    """The match's object type must agree with applyTo; False ends the patch's checks (as in Istio)."""
    apply_to = patch.apply_to.value
    match = patch.match
    if match is None or (match.listener, match.route_configuration, match.cluster, match.waypoint) == (None,) * 4:
        return True
    if apply_to in _LISTENER_CLASS:
        if match.listener is None:
            ctx.error("Envoy filter: applyTo for listener class objects cannot have non listener match", "match")
            return False
        chain = match.listener.filter_chain
        if chain is None or chain.filter is None:
            return True
        where = ("match", "listener", "filterChain", "filter")
        if apply_to in ("LISTENER", "FILTER_CHAIN"):
            ctx.warning(f"Envoy filter: filter match has no effect when used with {apply_to}", *where)
        name = chain.filter.name
        if not name:
            ctx.error("Envoy filter: filter match has no name to match on", *where)
            return False
        sub_filter = chain.filter.sub_filter
        if sub_filter is not None:
            if apply_to != "HTTP_FILTER":
                ctx.error(
                    "Envoy filter: subfilter match can be used with applyTo HTTP_FILTER only", *where, "subFilter"
                )
                return False
            if name not in (HTTP_CONNECTION_MANAGER, "envoy.http_connection_manager"):
                message = (
                    f"Envoy filter: subfilter match requires filter match with {HTTP_CONNECTION_MANAGER}, not {name!r}"
                )
                ctx.error(message, *where, "name")
                return False
            if not sub_filter.name:
                ctx.error("Envoy filter: subfilter match has no name to match on", *where, "subFilter")
                return False
        _check_filter_name(name, ctx, *where, "name")
        if sub_filter is not None:
            _check_filter_name(sub_filter.name, ctx, *where, "subFilter", "name")
    elif apply_to in _ROUTE_CLASS and match.route_configuration is None:
        message = "Envoy filter: applyTo for http route class objects cannot have non route configuration match"
        ctx.error(message, "match")
    elif apply_to == "CLUSTER" and match.cluster is None:
        ctx.error("Envoy filter: applyTo for cluster class objects cannot have non cluster match", "match")
    return True


def _check_filter_name(name: str, ctx: ValidationContext, *segments: str | int) -> None:
    canonical = DEPRECATED_FILTER_NAMES.get(name)
    if canonical is not None:
        ctx.warning(f"using deprecated filter name {name!r}; use {canonical!r} instead", *segments)


def _check_value(patch: EnvoyConfigObjectPatch, ctx: ValidationContext) -> None:
    value = patch.patch.value if patch.patch is not None else None
    if value is None:
        return
    where = ctx.at("patch", "value")
    for problem in type_problems(value):
        if problem.error:
            where.error(f"Envoy filter: {problem.message}", *problem.path)
        else:
            where.warning(problem.message, *problem.path)
    untyped = missing_typed_config(value, is_filter=patch.apply_to.value in _FILTER_OBJECTS)
    if untyped:
        names = ", ".join(repr(name) for name in untyped)
        where.warning(f"using deprecated types by name without typed_config; {names}")
