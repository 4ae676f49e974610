"""Connection pool settings (``ConnectionPoolSettings`` of ``destination_rule.proto``).

Used by DestinationRule traffic policies and by Sidecar ingress listeners (``connectionPool``,
``inboundConnectionPool``).
"""

from __future__ import annotations

import enum
from typing import final

import attrs

from mesh_config.networking._checks import cel_duration, written
from mesh_config.rules import check_duration
from mesh_config.types import Duration, Int32, UInt32, boolean, enum_value, integer, optional
from mesh_config.validation import ValidationContext

__all__ = [
    "ConnectionKeepalive",
    "ConnectionPoolSettings",
    "H2UpgradePolicy",
    "HTTPSettings",
    "TCPSettings",
    "TcpKeepalive",
    "validate_connection_pool",
]


class H2UpgradePolicy(enum.Enum):
    """``ConnectionPoolSettings.HTTPSettings.H2UpgradePolicy``: whether HTTP/1.1 is upgraded to HTTP/2."""

    DEFAULT = "DEFAULT"
    """Use the mesh-wide default (``h2UpgradePolicy`` of MeshConfig)."""
    DO_NOT_UPGRADE = "DO_NOT_UPGRADE"
    """Never upgrade."""
    UPGRADE = "UPGRADE"
    """Upgrade to HTTP/2."""


@final
@attrs.frozen
class TcpKeepalive:
    """``TCPSettings.TcpKeepalive``: TCP keep-alive probes on upstream sockets."""

    probes: UInt32 = integer()
    time: Duration | None = optional()
    interval: Duration | None = optional()


@final
@attrs.frozen
class TCPSettings:
    """``ConnectionPoolSettings.TCPSettings``: limits common to HTTP and TCP upstream connections."""

    max_connections: Int32 = integer()
    connect_timeout: Duration | None = optional()
    tcp_keepalive: TcpKeepalive | None = optional()
    max_connection_duration: Duration | None = optional()
    idle_timeout: Duration | None = optional()


@final
@attrs.frozen
class ConnectionKeepalive:
    """``HTTPSettings.ConnectionKeepalive``: HTTP/2 PING keep-alive."""

    interval: Duration | None = optional()
    timeout: Duration | None = optional()


@final
@attrs.frozen
class HTTPSettings:
    """``ConnectionPoolSettings.HTTPSettings``: limits of HTTP/1.1, HTTP/2 and gRPC connections."""

    http1_max_pending_requests: Int32 = integer()
    http2_max_requests: Int32 = integer()
    max_requests_per_connection: Int32 = integer()
    max_retries: Int32 = integer()
    idle_timeout: Duration | None = optional()
    h2_upgrade_policy: H2UpgradePolicy = enum_value(H2UpgradePolicy.DEFAULT)
    use_client_protocol: bool = boolean()
    max_concurrent_streams: Int32 = integer()
    http2_keep_alive: ConnectionKeepalive | None = optional()


@final
@attrs.frozen
class ConnectionPoolSettings:
    """Connection-pool limits for an upstream host (``connectionPool``).

    Attributes:
        tcp: settings common to HTTP and TCP connections.
        http: HTTP connection-pool settings.
    """

    tcp: TCPSettings | None = optional()
    http: HTTPSettings | None = optional()


_NON_NEGATIVE = (
    ("http1_max_pending_requests", "http1MaxPendingRequests", "http1 max pending requests"),
    ("http2_max_requests", "http2MaxRequests", "http2 max requests"),
    ("max_requests_per_connection", "maxRequestsPerConnection", "max requests per connection"),
    ("max_retries", "maxRetries", "max retries"),
    ("max_concurrent_streams", "maxConcurrentStreams", "max concurrent streams"),
)


def validate_connection_pool(settings: ConnectionPoolSettings | None, ctx: ValidationContext) -> None:
    """The CRD rules and Istio's ``validateConnectionPool``, with ``ctx`` at the ``connectionPool`` field."""
    if settings is None:
        return
    if settings.http is None and settings.tcp is None and not written(ctx, "http", "tcp"):
        ctx.error("connection pool must have at least one field (tcp or http)")
    if (http := settings.http) is not None:
        here = ctx.at("http")
        for attribute, field, words in _NON_NEGATIVE:
            value = getattr(http, attribute)
            if value < 0:
                here.error(f"{words} must be non-negative, not {value}", field)
        cel_duration(here, http.idle_timeout, "idleTimeout")
        if http.h2_upgrade_policy is H2UpgradePolicy.UPGRADE and http.use_client_protocol:
            here.error("use client protocol must not be true when H2UpgradePolicy is UPGRADE", "useClientProtocol")
        if (keepalive := http.http2_keep_alive) is not None:
            there = here.at("http2KeepAlive")
            cel_duration(there, keepalive.interval, "interval")
            cel_duration(there, keepalive.timeout, "timeout")
            if keepalive.interval is None or keepalive.timeout is None:
                missing = "interval" if keepalive.interval is None else "timeout"
                there.error(f"http2KeepAlive needs both interval and timeout; {missing} is missing")
    if (tcp := settings.tcp) is not None:
        here = ctx.at("tcp")
        if tcp.max_connections < 0:
            here.error(f"max connections must be non-negative, not {tcp.max_connections}", "maxConnections")
        cel_duration(here, tcp.connect_timeout, "connectTimeout")
        cel_duration(here, tcp.max_connection_duration, "maxConnectionDuration")
        # An idle timeout of 0 (under 1 ms) disables it; other values are checked (no CRD rule here).
        if tcp.idle_timeout is not None and abs(tcp.idle_timeout.nanos) >= 1_000_000:
            check_duration(here, tcp.idle_timeout, "idleTimeout")
        if (probes := tcp.tcp_keepalive) is not None:
            cel_duration(here.at("tcpKeepalive"), probes.time, "time")
            cel_duration(here.at("tcpKeepalive"), probes.interval, "interval")
