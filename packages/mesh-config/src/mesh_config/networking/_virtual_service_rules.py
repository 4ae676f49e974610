"""Istio's webhook rules for one HTTP route of a VirtualService (private; ``virtualservice.go``).

Every function reports into a context positioned at the route (``spec.http[i]``).
"""

from __future__ import annotations

import base64
import binascii
import enum
import re
from collections.abc import Sequence

from mesh_config.networking._http_route import (
    CorsPolicy,
    HTTPDirectResponse,
    HTTPFaultInjection,
    HTTPRetry,
    HTTPRewrite,
    HTTPRoute,
    HTTPRouteDestination,
    RouteDestination,
)
from mesh_config.networking._route_checks import (
    check_cors_header_name,
    check_crd_duration,
    check_destination,
    check_gateway_names,
    check_headers,
    check_labels,
    check_match_header_name,
    check_percentage,
    check_string_match,
    go_quote,
    is_authority_header,
    is_label,
)
from mesh_config.networking.statuses import GRPC_STATUS_NAMES, HTTP_STATUS_CODES
from mesh_config.rules import check_port, check_regex
from mesh_config.validation import ValidationContext

_KB = 1024
_MB = 1024 * _KB
# Envoy's x-envoy-retry-on and x-envoy-retry-grpc-on policies.
_RETRY_ON = frozenset(
    {
        "5xx",
        "gateway-error",
        "reset",
        "reset-before-request",
        "connect-failure",
        "retriable-4xx",
        "refused-stream",
        "retriable-status-codes",
        "retriable-headers",
        "envoy-ratelimited",
        "http3-post-connect-failure",
        "cancelled",
        "deadline-exceeded",
        "internal",
        "resource-exhausted",
        "unavailable",
    }
)
_CORS_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE", "*"})
_GRPC_STATUSES = frozenset(GRPC_STATUS_NAMES)
_GO_INT = re.compile(r"[+-]?[0-9]+")


class RouteKind(enum.Enum):
    """How Istio treats an HTTP route: on its own, delegating to another VirtualService, or delegated to."""

    INDEPENDENT = "independent"
    ROOT = "root"
    DELEGATE = "delegate"


def check_http_route(
    ctx: ValidationContext, route: HTTPRoute, *, in_delegate: bool, gateway_semantics: bool = False
) -> None:
    """Every rule of one HTTP route; ``in_delegate`` is true for the routes of a VirtualService without hosts."""
    if in_delegate:
        kind = RouteKind.DELEGATE
    else:
        kind = RouteKind.ROOT if route.delegate is not None else RouteKind.INDEPENDENT
    _check_conflicts(ctx, route, kind)
    _check_matches(ctx, route)
    check_headers(ctx, route.headers, "headers")
    if route.cors_policy is not None:
        _check_cors(ctx.at("corsPolicy"), route.cors_policy)
    if route.fault is not None:
        _check_fault(ctx.at("fault"), route.fault)
    _check_mirrors(ctx, route)
    _check_redirect(ctx, route)
    if route.direct_response is not None:
        _check_direct_response(ctx.at("directResponse"), route.direct_response)
    if route.retries is not None:
        _check_retries(ctx.at("retries"), route.retries)
    if route.rewrite is not None:
        _check_rewrite(ctx.at("rewrite"), route.rewrite)
    _check_authority(ctx, route)
    check_route_destinations(ctx, route.route, "route", gateway_semantics=gateway_semantics)
    check_crd_duration(ctx, route.timeout, "timeout")


def check_route_destinations(
    ctx: ValidationContext,
    destinations: Sequence[HTTPRouteDestination | RouteDestination],
    field: str,
    *,
    gateway_semantics: bool = False,
) -> None:
    """Weighted destinations: each destination valid, weights not negative and not all 0 when several."""
    total = 0
    for index, destination in enumerate(destinations):
        here = ctx.at(field, index)
        if isinstance(destination, HTTPRouteDestination):
            check_headers(here, destination.headers, "headers")
        if not gateway_semantics:
            check_destination(here, destination.destination, "destination")
        if destination.weight < 0:
            here.error(f"weight {destination.weight} < 0", "weight")
        total += destination.weight
    if len(destinations) > 1 and total == 0:
        ctx.error("total destination weight = 0", field)


def _check_conflicts(ctx: ValidationContext, route: HTTPRoute, kind: RouteKind) -> None:
    if kind is RouteKind.ROOT:
        # A route that delegates may carry nothing else that decides where the request goes.
        if route.redirect is not None:
            ctx.error(f"root HTTP route {route.name} must not specify redirect", "redirect")
        if route.route:
            ctx.error(f"root HTTP route {route.name} must not specify route", "route")
        return
    if kind is RouteKind.DELEGATE and route.delegate is not None:
        ctx.error("delegate HTTP route cannot contain delegate", "delegate")
    if route.redirect is not None:
        if route.route:
            ctx.error("HTTP route cannot contain both route and redirect", "redirect")
        if route.fault is not None:
            ctx.error("HTTP route cannot contain both fault and redirect", "redirect")
        if route.rewrite is not None:
            ctx.error("HTTP route rule cannot contain both rewrite and redirect", "redirect")
        if route.direct_response is not None:
            ctx.error("HTTP route rule cannot contain both direct_response and redirect", "redirect")
    elif route.direct_response is not None:
        if route.route:
            ctx.error("HTTP route cannot contain both route and direct_response", "directResponse")
        if route.fault is not None:
            ctx.error("HTTP route cannot contain both fault and direct_response", "directResponse")
        if route.rewrite is not None:
            ctx.error("HTTP route rule cannot contain both rewrite and direct_response", "directResponse")
    elif not route.route:
        ctx.error("HTTP route, redirect or direct_response is required")
    if route.mirror is not None and route.mirrors:
        ctx.error("HTTP route cannot contain both mirror and mirrors", "mirrors")


def _check_matches(ctx: ValidationContext, route: HTTPRoute) -> None:
    for index, match in enumerate(route.match):
        here = ctx.at("match", index)
        for name, header in match.headers.items():
            check_match_header_name(here, name, "headers", name)
            check_string_match(here, header, "headers", "headers", name)
        for name, header in match.without_headers.items():
            check_match_header_name(here, name, "withoutHeaders", name)
            if header.regex != "*":  # `*` is not a regex: Istio turns it into a presence match
                check_string_match(here, header, "withoutHeaders", "withoutHeaders", name)
        # Envoy allows an empty URI prefix (it matches everything), not an empty scheme/method/authority one.
        check_string_match(here, match.uri, "uri", "uri", uri=True)
        for field in ("scheme", "method", "authority"):
            check_string_match(here, getattr(match, field), field, field)
        for name, param in match.query_params.items():
            check_string_match(here, param, "queryParams", "queryParams", name)
        if match.port:
            check_port(here, match.port, "port")
        check_labels(here, match.source_labels, "sourceLabels")
        check_gateway_names(here, match.gateways, "gateways")
        if match.source_namespace and not is_label(match.source_namespace):
            here.error(f"sourceNamespace match {match.source_namespace} is invalid", "sourceNamespace")


def _check_cors(ctx: ValidationContext, policy: CorsPolicy) -> None:
    for index, origin in enumerate(policy.allow_origins):
        value = origin.exact or origin.prefix or origin.regex
        if not value:
            ctx.error("'' is not a valid match type for CORS allow origins", "allowOrigins", index)
        elif origin.regex:
            check_regex(ctx, origin.regex, "allowOrigins", index, "regex")
    for index, method in enumerate(policy.allow_methods):
        if method not in _CORS_METHODS:
            ctx.error(f"{go_quote(method)} is not a supported HTTP method", "allowMethods", index)
    for field, names in (("allowHeaders", policy.allow_headers), ("exposeHeaders", policy.expose_headers)):
        for index, name in enumerate(names):
            check_cors_header_name(ctx, name, field, index)
    check_crd_duration(ctx, policy.max_age, "maxAge")
    if policy.max_age is not None and policy.max_age.nanos > 0 and policy.max_age.nanos % 10**9:
        ctx.error(f"max_age duration is accurate only to seconds precision (it is {policy.max_age})", "maxAge")


def _check_fault(ctx: ValidationContext, fault: HTTPFaultInjection) -> None:
    if fault.abort is None and fault.delay is None:
        ctx.error("HTTP fault injection must have an abort and/or a delay")
    if fault.abort is not None:
        abort = fault.abort
        here = ctx.at("abort")
        check_percentage(here, abort.percentage, "percentage")
        if abort.grpc_status is not None:
            if abort.grpc_status not in _GRPC_STATUSES:
                here.error(
                    f"gRPC status {go_quote(abort.grpc_status)} is not supported. See "
                    "https://github.com/grpc/grpc/blob/master/doc/statuscodes.md for a list of supported codes, "
                    "for example 'NOT_FOUND'",
                    "grpcStatus",
                )
        elif abort.http2_error is not None:
            here.error("HTTP/2 abort fault injection not supported yet", "http2Error")
        elif abort.http_status is not None:
            _check_http_status(here, abort.http_status, "httpStatus")
        else:
            here.warning("abort configured, but error type not set")
    if fault.delay is not None:
        delay = fault.delay
        here = ctx.at("delay")
        check_percentage(here, delay.percentage, "percentage")
        check_crd_duration(here, delay.fixed_delay, "fixedDelay")
        if delay.exponential_delay is not None:
            check_crd_duration(here, delay.exponential_delay, "exponentialDelay")
            here.error("exponentialDelay not supported yet", "exponentialDelay")


def _check_http_status(ctx: ValidationContext, status: int, *segments: str | int) -> None:
    if status < 200 or status > 600:
        ctx.error(f"HTTP status {status} is not in range 200-599", *segments)


def _check_mirrors(ctx: ValidationContext, route: HTTPRoute) -> None:
    for percent, field in ((route.mirror_percent, "mirrorPercent"), (route.legacy_mirror_percent, "mirror_percent")):
        if percent is None:
            continue
        if percent > 100:
            ctx.error(f"mirror_percent must have a max value of 100 (it has {percent})", field)
        ctx.warning('using deprecated setting "mirrorPercent", use "mirrorPercentage" instead', field)
    if route.mirror_percentage is not None:
        _check_mirror_share(ctx, route.mirror_percentage.value, "mirror_percentage", "mirrorPercentage", "value")
    check_destination(ctx, route.mirror, "mirror")
    for index, mirror in enumerate(route.mirrors):
        check_destination(ctx, mirror.destination, "mirrors", index, "destination")
        if mirror.percentage is not None:
            value = mirror.percentage.value
            _check_mirror_share(ctx, value, "mirror percentage", "mirrors", index, "percentage", "value")


def _check_mirror_share(ctx: ValidationContext, value: float, what: str, *segments: str | int) -> None:
    if value > 100:
        ctx.error(f"{what} must have a max value of 100 (it has {value:f})", *segments)
    if value < 0:
        ctx.error(f"{what} must have a min value of 0 (it has {value:f})", *segments)


def _check_redirect(ctx: ValidationContext, route: HTTPRoute) -> None:
    redirect = route.redirect
    if redirect is None:
        return
    here = ctx.at("redirect")
    has_port = redirect.port is not None or redirect.derive_port is not None
    if not (redirect.uri or redirect.prefix_rewrite or redirect.authority or has_port or redirect.scheme):
        here.error("redirect must specify URI, prefixRewrite, authority, scheme, or port")
    if redirect.redirect_code and not 300 <= redirect.redirect_code <= 399:
        here.error(f"{redirect.redirect_code} is not a valid redirect code, must be 3xx", "redirectCode")
    if redirect.scheme not in ("", "http", "https"):
        here.error(f'invalid redirect scheme, must be "http" or "https" (it is {go_quote(redirect.scheme)})', "scheme")
    if redirect.port:
        check_port(here, redirect.port, "port")
    if redirect.prefix_rewrite:
        if redirect.uri:
            here.error("redirect may only contain one of uri or prefixRewrite", "prefixRewrite")
        for index, match in enumerate(route.match):
            if match.uri is None or match.uri.prefix is None:
                ctx.error(
                    f"redirect prefixRewrite {go_quote(redirect.prefix_rewrite)} requires a uri prefix match",
                    "match",
                    index,
                )


def _check_direct_response(ctx: ValidationContext, response: HTTPDirectResponse) -> None:
    body = response.body
    if body is not None:
        size = 0
        if body.string is not None:
            size = len(body.string.encode("utf-8"))
        elif body.bytes is not None:
            try:
                size = len(base64.b64decode(body.bytes, validate=True))
            except (binascii.Error, ValueError):
                ctx.error(f"in body must be of type byte: {go_quote(body.bytes[:64])}", "body", "bytes")
        if size > _MB:
            message = "large direct_responses may impact control plane performance, must be less than 1MB"
            ctx.error(f"{message} (the body is {size} bytes)", "body")
        elif size > 100 * _KB:
            ctx.warning(
                f"large direct_responses may impact control plane performance (the body is {size} bytes)", "body"
            )
    _check_http_status(ctx, response.status, "status")


def _check_retries(ctx: ValidationContext, retries: HTTPRetry) -> None:
    if retries.attempts < 0:
        ctx.error(f"attempts cannot be negative (it is {retries.attempts})", "attempts")
    configured = retries.per_try_timeout is not None or retries.retry_on or retries.retry_remote_localities is not None
    if retries.attempts == 0 and configured:
        ctx.error("http retry policy configured when attempts are set to 0 (disabled)", "attempts")
    check_crd_duration(ctx, retries.per_try_timeout, "perTryTimeout")
    if retries.retry_on:
        for policy in retries.retry_on.split(","):
            if not _is_status_code(policy) and policy not in _RETRY_ON:
                ctx.error(f"{go_quote(policy)} is not a valid retryOn policy", "retryOn")
    check_crd_duration(ctx, retries.backoff, "backoff")


def _is_status_code(text: str) -> bool:
    return _GO_INT.fullmatch(text) is not None and int(text) in HTTP_STATUS_CODES


def _check_rewrite(ctx: ValidationContext, rewrite: HTTPRewrite) -> None:
    regex_rewrite = rewrite.uri_regex_rewrite
    if rewrite.uri and regex_rewrite is not None:
        ctx.error("rewrite may only contain one of URI or UriRegexRewrite", "uriRegexRewrite")
    if not rewrite.uri and regex_rewrite is None and not rewrite.authority:
        ctx.error(
            "rewrite must specify at least one of URI, UriRegexRewrite, or authority. "
            "Only one of URI or UriRegexRewrite may be specified"
        )
    if regex_rewrite is not None:
        if not regex_rewrite.match or not regex_rewrite.rewrite:
            message = (
                "UriRegexRewrite has errors: UriRegexRewrite requires both Rewrite and Match fields to be specified"
            )
            ctx.error(message, "uriRegexRewrite")
        else:
            check_regex(ctx, regex_rewrite.match, "uriRegexRewrite", "match")


def _check_authority(ctx: ValidationContext, route: HTTPRoute) -> None:
    """The authority may be rewritten in one place only: ``rewrite.authority`` or one request header."""
    current = route.rewrite.authority if route.rewrite is not None else ""
    request = route.headers.request if route.headers is not None else None
    if request is None:
        return
    for field, values in (("set", request.set), ("add", request.add)):
        for name, value in values.items():
            if not is_authority_header(name):
                continue
            if current:
                message = f"authority header cannot be set multiple times: have {go_quote(current)}, "
                ctx.error(f"{message}attempting to set {go_quote(value)}", "headers", "request", field, name)
            current = value
