"""The per-route features of a VirtualService HTTP route, as Istio translates them (private).

Retries (``route/retry/retry.go``), timeouts, faults, CORS, mirroring, string matchers and the hash policy
of a DestinationRule's consistent hash (``route/route.go``). Each function takes the mesh_config value and
returns the Envoy message, or ``None`` when the feature produces nothing.
"""

from __future__ import annotations

from typing import Any, Final

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.common.fault.v3 import fault_pb2 as common_fault_pb2
from envoy.extensions.filters.http.cors.v3 import cors_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.retry.host.previous_hosts.v3 import previous_hosts_pb2
from envoy.extensions.retry.priority.previous_priorities.v3 import previous_priorities_config_pb2
from envoy.type.matcher.v3 import regex_pb2, string_pb2
from envoy.type.v3 import percent_pb2
from google.protobuf import any_pb2, duration_pb2, wrappers_pb2

from mesh_config import Duration
from mesh_config.networking.load_balancer import ConsistentHashLB
from mesh_config.networking.statuses import GRPC_STATUS_NAMES, HTTP_STATUS_CODES
from mesh_config.networking.virtual_service import (
    CorsPolicy,
    HTTPFaultInjection,
    HTTPMirrorPolicy,
    HTTPRetry,
    HTTPRoute,
    Percent,
    StringMatch,
    UnmatchedPreflights,
)

__all__ = [
    "CORS_FILTER",
    "DEFAULT_RETRY_ON",
    "FAULT_FILTER",
    "cors_config",
    "duration",
    "fault_config",
    "hash_policy",
    "inbound_retry_policy",
    "is_present_match",
    "mirror_fraction",
    "mirror_policy_fraction",
    "pack",
    "retry_policy",
    "set_timeout",
    "string_matcher",
]

FAULT_FILTER: Final = "envoy.filters.http.fault"
CORS_FILTER: Final = "envoy.filters.http.cors"
DEFAULT_RETRY_ON: Final = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
_PREVIOUS_HOSTS: Final = "envoy.retry_host_predicates.previous_hosts"
_PREVIOUS_PRIORITIES: Final = "envoy.retry_priorities.previous_priorities"
_HOST_SELECTION_ATTEMPTS: Final = 5
_DEFAULT_ATTEMPTS: Final = 2

_GRPC_CODES: Final = {name: code for code, name in enumerate(GRPC_STATUS_NAMES)}


def pack(message: Any) -> Any:
    """``message`` packed in a ``google.protobuf.Any``."""
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def duration(value: Duration | None) -> Any:
    """A protobuf Duration (zero for ``None``)."""
    out = duration_pb2.Duration()
    out.FromNanoseconds(value.nanos if value is not None else 0)
    return out


def is_present_match(match: StringMatch | None) -> bool:
    """True when a match only asks for presence: no match type, or the regex ``*`` (Istio's convention)."""
    if match is None:
        return True
    if match.exact is None and match.prefix is None and match.regex is None:
        return True
    return match.regex == "*"


def string_matcher(match: StringMatch | None, *, ignore_case: bool = False) -> Any | None:
    """Envoy's StringMatcher for an Istio StringMatch (exact, prefix or RE2 regex), or ``None`` when unset."""
    if match is None:
        return None
    if match.exact is not None:
        return string_pb2.StringMatcher(exact=match.exact, ignore_case=ignore_case)
    if match.prefix is not None:
        return string_pb2.StringMatcher(prefix=match.prefix, ignore_case=ignore_case)
    if match.regex is not None:
        return string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=match.regex))
    return None


def _previous_hosts() -> Any:
    return rc.RetryPolicy.RetryHostPredicate(
        name=_PREVIOUS_HOSTS, typed_config=pack(previous_hosts_pb2.PreviousHostsPredicate())
    )


def _default_retry_template(*, consistent_hash: bool) -> Any:
    policy = rc.RetryPolicy(
        num_retries=wrappers_pb2.UInt32Value(value=_DEFAULT_ATTEMPTS),
        retry_on=DEFAULT_RETRY_ON,
        host_selection_retry_max_attempts=_HOST_SELECTION_ATTEMPTS,
    )
    # With a consistent hash, retries must stay on the hashed host.
    if not consistent_hash:
        policy.retry_host_predicate.append(_previous_hosts())
    return policy


# Built once and copied (never changed): every route without retry settings has one of these.
_DEFAULT_RETRIES: Final = {hashing: _default_retry_template(consistent_hash=hashing) for hashing in (False, True)}


def _default_retry(*, consistent_hash: bool) -> Any:
    policy = rc.RetryPolicy()
    policy.CopyFrom(_DEFAULT_RETRIES[consistent_hash])
    return policy


def _split_retry_on(text: str) -> tuple[str, list[int]]:
    """Envoy retry conditions and the HTTP status codes among them (integers that name a status)."""
    conditions: list[str] = []
    codes: list[int] = []
    for part in text.split(","):
        item = part.strip()
        if not item:
            continue
        if item.isdigit() and int(item) in HTTP_STATUS_CODES:
            codes.append(int(item))
        else:
            conditions.append(item)
    return ",".join(conditions), codes


def retry_policy(retries: HTTPRetry | None, *, consistent_hash: bool = False) -> Any | None:
    """Envoy's retry policy for a route (``retry.ConvertPolicy``).

    No policy gives Istio's default (2 retries on connect failures, refused streams, ``unavailable`` and
    ``cancelled``, on another host); ``attempts: 0`` disables retries; otherwise the default is overridden
    field by field, integer ``retryOn`` items becoming ``retriable_status_codes``.
    """
    policy = _default_retry(consistent_hash=consistent_hash)
    if retries is None:
        return policy
    if retries.attempts <= 0:
        return None
    policy.num_retries.value = retries.attempts
    if retries.retry_on:
        conditions, codes = _split_retry_on(retries.retry_on)
        if codes and "retriable-status-codes" not in conditions:
            conditions = f"{conditions},retriable-status-codes" if conditions else "retriable-status-codes"
        policy.retry_on = conditions
        policy.retriable_status_codes.extend(codes)
    if retries.per_try_timeout is not None:
        policy.per_try_timeout.CopyFrom(duration(retries.per_try_timeout))
    if retries.retry_ignore_previous_hosts is not None:
        del policy.retry_host_predicate[:]
        if retries.retry_ignore_previous_hosts:
            policy.retry_host_predicate.append(_previous_hosts())
    if retries.retry_remote_localities:
        config = previous_priorities_config_pb2.PreviousPrioritiesConfig(update_frequency=2)
        policy.retry_priority.CopyFrom(
            rc.RetryPolicy.RetryPriority(name=_PREVIOUS_PRIORITIES, typed_config=pack(config))
        )
    if retries.backoff is not None:
        policy.retry_back_off.base_interval.CopyFrom(duration(retries.backoff))
    return policy


def inbound_retry_policy() -> Any:
    """Istio's inbound retry policy: retry twice requests reset before they reached the application."""
    return rc.RetryPolicy(retry_on="reset-before-request", num_retries=wrappers_pb2.UInt32Value(value=2))


def set_timeout(action: Any, timeout: Duration | None, *, grpc: bool = False) -> None:
    """Set a route's timeout: the VirtualService's, else 0 (disabled); gRPC deadlines follow it.

    Envoy honours ``grpc-timeout`` up to ``max_grpc_timeout``; proxyless gRPC reads ``max_stream_duration``.
    """
    value = duration(timeout)
    action.timeout.CopyFrom(value)
    if grpc:
        action.max_stream_duration.max_stream_duration.CopyFrom(value)
    else:
        action.max_grpc_timeout.CopyFrom(value)


def _percent(value: Percent) -> Any:
    return percent_pb2.FractionalPercent(
        numerator=int(value.value * 10000), denominator=percent_pb2.FractionalPercent.MILLION
    )


def _integer_percent(value: int) -> Any:
    return percent_pb2.FractionalPercent(numerator=value, denominator=percent_pb2.FractionalPercent.HUNDRED)


def fault_config(fault: HTTPFaultInjection | None) -> Any | None:
    """The per-route config of Envoy's fault filter, or ``None`` when it injects nothing Envoy supports.

    A fixed delay and an HTTP or gRPC abort are supported; exponential delays and HTTP/2 errors are not
    (Istio drops them too).
    """
    if fault is None:
        return None
    out = fault_pb2.HTTPFault()
    delay = fault.delay
    if delay is not None and delay.fixed_delay is not None:
        out.delay.CopyFrom(
            common_fault_pb2.FaultDelay(
                fixed_delay=duration(delay.fixed_delay),
                percentage=_percent(delay.percentage) if delay.percentage else _integer_percent(delay.percent),
            )
        )
    abort = fault.abort
    if abort is not None and (abort.http_status is not None or abort.grpc_status is not None):
        message = fault_pb2.FaultAbort()
        if abort.percentage is not None:
            message.percentage.CopyFrom(_percent(abort.percentage))
        if abort.http_status is not None:
            message.http_status = abort.http_status
        else:
            message.grpc_status = _GRPC_CODES.get(abort.grpc_status or "", _GRPC_CODES["UNKNOWN"])
        out.abort.CopyFrom(message)
    if not out.HasField("delay") and not out.HasField("abort"):
        return None
    return out


def cors_config(cors: CorsPolicy) -> Any:
    """The per-route config of Envoy's CORS filter."""
    out = cors_pb2.CorsPolicy(
        allow_methods=",".join(cors.allow_methods),
        allow_headers=",".join(cors.allow_headers),
        expose_headers=",".join(cors.expose_headers),
        filter_enabled=base_pb2.RuntimeFractionalPercent(default_value=_integer_percent(100)),
        forward_not_matching_preflights=wrappers_pb2.BoolValue(
            value=cors.unmatched_preflights is not UnmatchedPreflights.IGNORE
        ),
    )
    if cors.allow_origins:
        out.allow_origin_string_match.extend(
            matcher for matcher in (string_matcher(origin) for origin in cors.allow_origins) if matcher is not None
        )
    else:
        out.allow_origin_string_match.extend(string_pb2.StringMatcher(exact=origin) for origin in cors.allow_origin)
    if cors.allow_credentials is not None:
        out.allow_credentials.value = cors.allow_credentials
    if cors.max_age is not None:
        out.max_age = str(cors.max_age.nanos // 10**9)
    return out


def mirror_fraction(route: HTTPRoute) -> Any | None:
    """The share of traffic the single ``mirror`` gets: ``mirrorPercentage``, else ``mirrorPercent``, else 100%.

    ``None`` when an explicit 0 turns mirroring off.
    """
    if route.mirror_percentage is not None:
        if route.mirror_percentage.value <= 0:
            return None
        return base_pb2.RuntimeFractionalPercent(default_value=_percent(route.mirror_percentage))
    legacy = route.mirror_percent if route.mirror_percent is not None else route.legacy_mirror_percent
    if legacy is not None:
        if legacy <= 0:
            return None
        return base_pb2.RuntimeFractionalPercent(default_value=_integer_percent(legacy))
    return base_pb2.RuntimeFractionalPercent(default_value=_integer_percent(100))


def mirror_policy_fraction(policy: HTTPMirrorPolicy) -> Any | None:
    """The share of traffic one of ``mirrors`` gets (100% by default; ``None`` for an explicit 0)."""
    if policy.percentage is not None:
        if policy.percentage.value <= 0:
            return None
        return base_pb2.RuntimeFractionalPercent(default_value=_percent(policy.percentage))
    return base_pb2.RuntimeFractionalPercent(default_value=_integer_percent(100))


def hash_policy(consistent_hash: ConsistentHashLB | None) -> Any | None:
    """The route hash policy of a DestinationRule's consistent hash (header, cookie, source IP, query)."""
    if consistent_hash is None:
        return None
    if consistent_hash.http_header_name:
        return rc.RouteAction.HashPolicy(
            header=rc.RouteAction.HashPolicy.Header(header_name=consistent_hash.http_header_name)
        )
    cookie = consistent_hash.http_cookie
    if cookie is not None:
        out = rc.RouteAction.HashPolicy(cookie=rc.RouteAction.HashPolicy.Cookie(name=cookie.name, path=cookie.path))
        if cookie.ttl is not None:
            out.cookie.ttl.CopyFrom(duration(cookie.ttl))
        return out
    if consistent_hash.use_source_ip:
        return rc.RouteAction.HashPolicy(
            connection_properties=rc.RouteAction.HashPolicy.ConnectionProperties(source_ip=True)
        )
    if consistent_hash.http_query_parameter_name:
        return rc.RouteAction.HashPolicy(
            query_parameter=rc.RouteAction.HashPolicy.QueryParameter(name=consistent_hash.http_query_parameter_name)
        )
    return None
