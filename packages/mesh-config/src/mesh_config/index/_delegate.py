"""Merging a delegate VirtualService's HTTP routes into the root route that delegates (private)."""

from __future__ import annotations

from typing import Any

import attrs

_EQUAL_FIELDS = ("scheme", "method", "authority", "source_namespace")
_MAP_FIELDS = ("headers", "query_params", "without_headers", "source_labels")


def _uri_within(root: Any, delegate: Any) -> bool:
    """True when every URI the delegate matches can also match the root's URI match."""
    root_prefix = getattr(root, "prefix", "") or ""
    root_exact = getattr(root, "exact", "") or ""
    if getattr(root, "regex", ""):
        return bool(root == delegate)
    for value in (getattr(delegate, "exact", "") or "", getattr(delegate, "prefix", "") or ""):
        if not value:
            continue
        if root_exact:
            return bool(getattr(delegate, "exact", "")) and value == root_exact
        return value.startswith(root_prefix)
    return bool(root == delegate)


def merge_matches(root: Any, delegate: Any) -> Any | None:
    """The delegate's match narrowed by the root's, or ``None`` when the two can never both match."""
    changes: dict[str, Any] = {}
    if root.uri is not None:
        if delegate.uri is None:
            changes["uri"] = root.uri
        elif not _uri_within(root.uri, delegate.uri):
            return None
    for name in _EQUAL_FIELDS:
        mine, theirs = getattr(root, name), getattr(delegate, name)
        if mine and theirs and mine != theirs:
            return None
        if mine and not theirs:
            changes[name] = mine
    if root.port and delegate.port and root.port != delegate.port:
        return None
    if root.port and not delegate.port:
        changes["port"] = root.port
    for name in _MAP_FIELDS:
        mine, theirs = getattr(root, name), getattr(delegate, name)
        merged = dict(theirs)
        for key, value in mine.items():
            if key in merged and merged[key] != value:
                return None
            merged[key] = value
        if len(merged) != len(theirs):
            changes[name] = type(theirs)(merged)
    if root.gateways and not delegate.gateways:
        changes["gateways"] = root.gateways
    if root.ignore_uri_case and not delegate.ignore_uri_case:
        changes["ignore_uri_case"] = True
    return attrs.evolve(delegate, **changes) if changes else delegate


def merge_routes(root_route: Any, delegate_routes: tuple[Any, ...]) -> list[Any]:
    """The delegate's routes, each with its matches narrowed by the root route's matches."""
    merged: list[Any] = []
    for route in delegate_routes:
        if not root_route.match:
            merged.append(route)
            continue
        if not route.match:
            merged.append(attrs.evolve(route, match=root_route.match))
            continue
        matches = []
        for root_match in root_route.match:
            for delegate_match in route.match:
                combined = merge_matches(root_match, delegate_match)
                if combined is not None:
                    matches.append(combined)
        if matches:
            merged.append(attrs.evolve(route, match=tuple(matches)))
    return merged
