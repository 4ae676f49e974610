"""Warnings for VirtualService rules that can never apply (private).

Istio's webhook reports them as warnings that ``istioctl analyze`` shows as IST0130
(VirtualServiceUnreachableRule: a rule after a catch-all, or whose matches all repeat earlier ones) and
IST0131 (VirtualServiceIneffectiveMatch: a match that repeats, or whose URI prefix is covered by, an
earlier one). The prefix-overlap test is Istio's heuristic (``coveredValidation``), kept as it is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, final

import attrs

from mesh_config.networking._http_route import HTTPMatchRequest, HTTPRoute, StringMatch
from mesh_config.networking._route_checks import go_quote
from mesh_config.validation import ValidationContext


@final
@attrs.frozen
class _PrefixMatch:
    """What Istio compares of an HTTP match with a URI prefix (``OverlappingMatchValidationForHTTPRoute``)."""

    rule: str
    name: str
    route_index: int
    match_index: int
    prefix: str
    port: int
    method: str
    authority: str
    headers: Mapping[str, str]
    query_params: Mapping[str, str]
    without_headers: Mapping[str, str]


def check_unreachable_rules(
    ctx: ValidationContext, http: Sequence[HTTPRoute], tcp: Sequence[Any], tls: Sequence[Any]
) -> None:
    """Warn about unreachable rules and ineffective matches of the http, tcp and tls routes."""
    prefixed = _check_rules(ctx, "http", http)
    _check_prefix_overlaps(ctx, prefixed)
    _check_rules(ctx, "tcp", tcp)
    _check_rules(ctx, "tls", tls)


def _rule_name(route: Any, index: int) -> str:
    name = getattr(route, "name", "")
    return go_quote(name) if name else f"#{index}"


def _match_name(match: Any, index: int) -> str:
    name = getattr(match, "name", "")
    return go_quote(name) if name else f"#{index}"


def _unused(ctx: ValidationContext, rule: str, reason: str, *segments: str | int) -> None:
    ctx.warning(f"virtualService rule {rule} not used ({reason})", *segments)


def _ineffective(ctx: ValidationContext, rule: str, match: str, duplicate: str, *segments: str | int) -> None:
    message = f"virtualService rule {rule} match {match} is not used (duplicate/overlapping match in rule {duplicate})"
    ctx.warning(message, *segments)


def _check_rules(ctx: ValidationContext, field: str, routes: Sequence[Any]) -> list[_PrefixMatch]:
    seen: dict[Any, int] = {}
    catch_all = -1
    prefixed: list[_PrefixMatch] = []
    for index, route in enumerate(routes):
        rule = _rule_name(route, index)
        if not route.match:
            if catch_all >= 0:
                _unused(ctx, rule, "only the last rule can have no matches", field, index)
            catch_all = index
            continue
        repeats = 0
        for match_index, match in enumerate(route.match):
            if catch_all >= 0:
                _unused(ctx, rule, "route without matches defined before", field, index, "match", match_index)
                continue
            key = attrs.evolve(match, name="") if isinstance(match, HTTPMatchRequest) else match
            earlier = seen.get(key)
            if earlier is not None:
                where = (field, index, "match", match_index)
                _ineffective(ctx, rule, _match_name(match, match_index), _rule_name(routes[earlier], earlier), *where)
                repeats += 1
                continue
            seen[key] = index
            if isinstance(match, HTTPMatchRequest):
                found = _prefix_match(rule, index, match, match_index)
                if found is not None:
                    prefixed.append(found)
        if repeats == len(route.match):
            _unused(ctx, rule, "all matches used by prior rules", field, index)
    return prefixed


def _exact_or_prefix(match: StringMatch | None) -> str:
    if match is None:
        return ""
    if match.exact:
        return f"exact:{match.exact}"
    if match.prefix:
        return f"prefix:{match.prefix}"
    return ""


def _prefix_match(rule: str, index: int, match: HTTPMatchRequest, match_index: int) -> _PrefixMatch | None:
    if match.uri is None or not match.uri.prefix:
        return None
    return _PrefixMatch(
        rule=rule,
        name=_match_name(match, match_index),
        route_index=index,
        match_index=match_index,
        prefix=match.uri.prefix,
        port=match.port,
        # Istio takes a match without a method to be for GET.
        method=_exact_or_prefix(match.method) or "exact:GET",
        authority=_exact_or_prefix(match.authority),
        headers={key: _exact_or_prefix(value) for key, value in match.headers.items()},
        query_params={key: _exact_or_prefix(value) for key, value in match.query_params.items()},
        without_headers={key: _exact_or_prefix(value) for key, value in match.without_headers.items()},
    )


def _value_covered(earlier: str, later: str) -> bool:
    return earlier == later or earlier.startswith(later)


def _map_covered(earlier: Mapping[str, str], later: Mapping[str, str]) -> bool:
    if len(earlier) != len(later):
        return False
    return all(key in later and _value_covered(value, later[key]) for key, value in earlier.items())


def _covered(earlier: _PrefixMatch, later: _PrefixMatch) -> bool:
    return (
        later.prefix.startswith(earlier.prefix)
        and later.port == earlier.port
        and _value_covered(earlier.method, later.method)
        and _value_covered(earlier.authority, later.authority)
        and _map_covered(earlier.headers, later.headers)
        and _map_covered(earlier.query_params, later.query_params)
        and _map_covered(earlier.without_headers, later.without_headers)
    )


def _check_prefix_overlaps(ctx: ValidationContext, prefixed: Sequence[_PrefixMatch]) -> None:
    for position, earlier in enumerate(prefixed):
        for later in prefixed[position + 1 :]:
            if later.prefix == earlier.prefix or not _covered(earlier, later):
                continue
            _ineffective(
                ctx,
                later.rule,
                f"{later.name} of prefix {later.prefix}",
                f"{earlier.name} of prefix {earlier.prefix} on {earlier.rule}",
                "http",
                later.route_index,
                "match",
                later.match_index,
            )
