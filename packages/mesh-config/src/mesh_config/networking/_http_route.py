"""The messages of a VirtualService's HTTP routes (``networking.istio.io`` ``virtual_service.proto``).

Kept apart from :mod:`mesh_config.networking.virtual_service`, which re-exports them. Members of a proto
``oneof`` that are scalars (``StringMatch.exact``, ``HTTPRedirect.port``, ``HTTPBody.string``, ...) are
``None`` when unset, since Istio tells ``exact: ""`` (match the empty string) from no ``exact`` at all.
"""

from __future__ import annotations

import enum
from typing import final

import attrs

from mesh_config.common import PortSelector
from mesh_config.types import (
    Duration,
    FrozenDict,
    Int32,
    UInt32,
    boolean,
    enum_value,
    integer,
    mapping,
    number,
    optional,
    repeated,
    string,
)

__all__ = [
    "CorsPolicy",
    "Delegate",
    "Destination",
    "FaultAbort",
    "FaultDelay",
    "HTTPBody",
    "HTTPDirectResponse",
    "HTTPFaultInjection",
    "HTTPMatchRequest",
    "HTTPMirrorPolicy",
    "HTTPRedirect",
    "HTTPRetry",
    "HTTPRewrite",
    "HTTPRoute",
    "HTTPRouteDestination",
    "HeaderOperations",
    "Headers",
    "Percent",
    "RedirectPortSelection",
    "RegexRewrite",
    "RouteDestination",
    "StringMatch",
    "UnmatchedPreflights",
]


class RedirectPortSelection(enum.Enum):
    """``HTTPRedirect.RedirectPortSelection``: where a redirect takes its port from."""

    FROM_PROTOCOL_DEFAULT = "FROM_PROTOCOL_DEFAULT"
    """80 for http, 443 for https."""
    FROM_REQUEST_PORT = "FROM_REQUEST_PORT"
    """The port of the request."""


class UnmatchedPreflights(enum.Enum):
    """``CorsPolicy.UnmatchedPreflights``: what to do with CORS preflights that match no origin."""

    UNSPECIFIED = "UNSPECIFIED"
    """Envoy's default (forward)."""
    FORWARD = "FORWARD"
    """Forward them upstream."""
    IGNORE = "IGNORE"
    """Answer them without the CORS headers, without forwarding."""


@final
@attrs.frozen
class StringMatch:
    """A string match: exactly one of ``exact``, ``prefix`` or ``regex`` (RE2), or none for "present"."""

    exact: str | None = optional(oneof="match_type")
    prefix: str | None = optional(oneof="match_type")
    regex: str | None = optional(oneof="match_type")


@final
@attrs.frozen
class Percent:
    """A percentage as a double, 0.0 to 100.0."""

    value: float = number()


@final
@attrs.frozen
class Destination:
    """A service (and optionally a subset and port) that traffic is sent to.

    Attributes:
        host: a service registry name; short names are relative to the VirtualService's namespace.
        subset: a subset named in the host's DestinationRule.
        port: the service port, needed when the service exposes several.
    """

    host: str = string(required=True)
    subset: str = string()
    port: PortSelector | None = optional()


@final
@attrs.frozen
class HTTPMatchRequest:
    """The conditions an HTTP request must meet for a rule to apply (all of them)."""

    name: str = string()
    uri: StringMatch | None = optional()
    scheme: StringMatch | None = optional()
    method: StringMatch | None = optional()
    authority: StringMatch | None = optional()
    headers: FrozenDict[str, StringMatch] = mapping()
    port: UInt32 = integer()
    source_labels: FrozenDict[str, str] = mapping()
    gateways: tuple[str, ...] = repeated()
    query_params: FrozenDict[str, StringMatch] = mapping()
    ignore_uri_case: bool = boolean()
    without_headers: FrozenDict[str, StringMatch] = mapping()
    source_namespace: str = string()
    stat_prefix: str = string()


@final
@attrs.frozen
class HeaderOperations:
    """``Headers.HeaderOperations``: headers to overwrite, append and remove."""

    set: FrozenDict[str, str] = mapping()
    add: FrozenDict[str, str] = mapping()
    remove: tuple[str, ...] = repeated()


@final
@attrs.frozen
class Headers:
    """Header manipulation of requests and responses."""

    request: HeaderOperations | None = optional()
    response: HeaderOperations | None = optional()


@final
@attrs.frozen
class HTTPRouteDestination:
    """One weighted destination of an HTTP route, with its own header manipulation."""

    destination: Destination | None = optional(required=True)
    weight: Int32 = integer()
    headers: Headers | None = optional()


@final
@attrs.frozen
class RouteDestination:
    """One weighted destination of a TLS or TCP route."""

    destination: Destination | None = optional(required=True)
    weight: Int32 = integer()


@final
@attrs.frozen
class HTTPRedirect:
    """A redirect response: any of the URI, authority, scheme and port are replaced.

    Attributes:
        port: an explicit port (``port`` and ``derive_port`` are a oneof).
        derive_port: take the port from the protocol or from the request.
        prefix_rewrite: replace the matched URI prefix (instead of ``uri``).
    """

    uri: str = string()
    authority: str = string()
    port: UInt32 | None = optional(oneof="redirect_port")
    derive_port: RedirectPortSelection | None = optional(oneof="redirect_port")
    scheme: str = string()
    redirect_code: UInt32 = integer()
    prefix_rewrite: str = string()


@final
@attrs.frozen
class HTTPBody:
    """A direct response body: ``string`` text or base64 ``bytes`` (kept as the base64 text)."""

    string: str | None = optional(oneof="specifier")
    bytes: str | None = optional(oneof="specifier")


@final
@attrs.frozen
class HTTPDirectResponse:
    """A fixed response sent without forwarding the request."""

    status: UInt32 = integer(required=True)
    body: HTTPBody | None = optional()


@final
@attrs.frozen
class Delegate:
    """The VirtualService (without hosts) an HTTP route hands its traffic to."""

    name: str = string()
    namespace: str = string()


@final
@attrs.frozen
class RegexRewrite:
    """Rewrite the parts of a path that match an RE2 regex."""

    match: str = string()
    rewrite: str = string()


@final
@attrs.frozen
class HTTPRewrite:
    """Rewrite the URI (or a regex part of it) and the authority before forwarding."""

    uri: str = string()
    authority: str = string()
    uri_regex_rewrite: RegexRewrite | None = optional()


@final
@attrs.frozen
class HTTPRetry:
    """The retry policy of an HTTP route.

    Attributes:
        attempts: the number of retries; 0 disables retries.
        per_try_timeout: the timeout of each try.
        retry_on: Envoy ``x-envoy-retry-on`` / ``x-envoy-retry-grpc-on`` policies and status codes, comma-separated.
        retry_remote_localities: retry in other localities (``None``: Envoy's default).
        retry_ignore_previous_hosts: avoid hosts already tried (``None``: Istio's default, true).
        backoff: the base interval of the exponential back-off.
    """

    # The CRD marks the BoolValue fields nullable: Kubernetes takes ``null`` there as unset.
    __mesh_allow_null__ = True

    attempts: Int32 = integer()
    per_try_timeout: Duration | None = optional()
    retry_on: str = string()
    retry_remote_localities: bool | None = optional()
    retry_ignore_previous_hosts: bool | None = optional()
    backoff: Duration | None = optional()


@final
@attrs.frozen
class CorsPolicy:
    """Cross-origin resource sharing for an HTTP route (Envoy's CORS filter)."""

    __mesh_allow_null__ = True  # allowCredentials is nullable in the CRD

    allow_origin: tuple[str, ...] = repeated()
    allow_origins: tuple[StringMatch, ...] = repeated()
    allow_methods: tuple[str, ...] = repeated()
    allow_headers: tuple[str, ...] = repeated()
    expose_headers: tuple[str, ...] = repeated()
    max_age: Duration | None = optional()
    allow_credentials: bool | None = optional()
    unmatched_preflights: UnmatchedPreflights = enum_value(UnmatchedPreflights.UNSPECIFIED)


@final
@attrs.frozen
class FaultDelay:
    """``HTTPFaultInjection.Delay``: delay a share of requests.

    Attributes:
        percent: deprecated integer percentage; use ``percentage``.
        fixed_delay: the delay (``fixed_delay`` and ``exponential_delay`` are a oneof).
        exponential_delay: not supported by Istio.
        percentage: the share of requests delayed.
    """

    percent: Int32 = integer()
    fixed_delay: Duration | None = optional(oneof="http_delay_type")
    exponential_delay: Duration | None = optional(oneof="http_delay_type")
    percentage: Percent | None = optional()


@final
@attrs.frozen
class FaultAbort:
    """``HTTPFaultInjection.Abort``: fail a share of requests with an HTTP or gRPC status."""

    http_status: Int32 | None = optional(oneof="error_type")
    grpc_status: str | None = optional(oneof="error_type")
    http2_error: str | None = optional(oneof="error_type")
    percentage: Percent | None = optional()


@final
@attrs.frozen
class HTTPFaultInjection:
    """Faults injected on the client side: delays and aborts."""

    delay: FaultDelay | None = optional()
    abort: FaultAbort | None = optional()


@final
@attrs.frozen
class HTTPMirrorPolicy:
    """One mirror destination and the share of traffic copied to it."""

    destination: Destination | None = optional(required=True)
    percentage: Percent | None = optional()


@final
@attrs.frozen
class HTTPRoute:
    """One HTTP routing rule: conditions, and what to do with matching requests.

    Attributes:
        name: for logs and statistics.
        match: the conditions (any one of them); none matches every request.
        route: weighted destinations to forward to.
        redirect: answer with a redirect instead.
        direct_response: answer with a fixed response instead.
        delegate: hand the routing over to a VirtualService without hosts.
        rewrite: URI and authority rewrites before forwarding.
        timeout: the request timeout.
        retries: the retry policy.
        fault: faults to inject.
        mirror: one destination that gets a copy of the traffic.
        mirrors: several mirror destinations (exclusive with ``mirror``).
        mirror_percent: deprecated integer mirror share (``mirrorPercent``).
        legacy_mirror_percent: the CRD's other spelling of it, ``mirror_percent``.
        mirror_percentage: the share of traffic ``mirror`` gets.
        cors_policy: CORS for the route.
        headers: header manipulation for every destination.
    """

    __mesh_allow_null__ = True  # mirrorPercent is nullable in the CRD

    name: str = string()
    match: tuple[HTTPMatchRequest, ...] = repeated()
    route: tuple[HTTPRouteDestination, ...] = repeated()
    redirect: HTTPRedirect | None = optional()
    direct_response: HTTPDirectResponse | None = optional()
    delegate: Delegate | None = optional()
    rewrite: HTTPRewrite | None = optional()
    timeout: Duration | None = optional()
    retries: HTTPRetry | None = optional()
    fault: HTTPFaultInjection | None = optional()
    mirror: Destination | None = optional()
    mirrors: tuple[HTTPMirrorPolicy, ...] = repeated()
    mirror_percent: UInt32 | None = optional()
    legacy_mirror_percent: UInt32 | None = optional(json="mirror_percent")
    mirror_percentage: Percent | None = optional()
    cors_policy: CorsPolicy | None = optional()
    headers: Headers | None = optional()
