"""A DestinationRule's traffic policy on one cluster, field by field (ISTIO.md 2.6).

The policy that applies to a cluster is the rule's, replaced by its ``portLevelSettings`` for the port
(port-level settings do not inherit: fields they omit get defaults), then overridden field by field by the
subset's own policy (itself port-resolved). Connection pool, outlier detection and load balancer settings
then map to the Envoy cluster; HTTP settings go to the cluster's ``HttpProtocolOptions``.
"""

from __future__ import annotations

from typing import Any, Final, final

import attrs
from envoy.config.cluster.v3 import circuit_breaker_pb2, cluster_pb2
from envoy.config.common.matcher.v3 import matcher_pb2
from envoy.config.route.v3 import route_components_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from envoy.type.matcher.v3 import string_pb2
from google.protobuf import duration_pb2

from mesh_config.meshconfig import MeshH2UpgradePolicy
from mesh_config.networking.connection_pool import ConnectionPoolSettings, H2UpgradePolicy, TcpKeepalive
from mesh_config.networking.load_balancer import LoadBalancerSettings, LocalityLoadBalancerSetting, SimpleLB
from mesh_config.networking.traffic_policy import (
    ClientTLSSettings,
    OutlierDetection,
    ProxyProtocol,
    RetryBudget,
    TrafficPolicy,
)
from mesh_config.types import Duration
from mesh_model import Protocol

__all__ = [
    "HTTP_PROTOCOL_OPTIONS",
    "ClusterPolicy",
    "apply_connection_pool",
    "apply_h2_upgrade",
    "apply_load_balancer",
    "apply_outlier_detection",
    "cluster_policy",
    "duration",
    "finish_http_options",
    "http_options",
    "is_http2",
    "locality_lb_setting",
    "passthrough_http_options",
    "set_upstream_protocol",
]

HTTP_PROTOCOL_OPTIONS: Final = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
"""The ``typed_extension_protocol_options`` key of a cluster's HTTP options."""

_MAX_UINT32: Final = 2**32 - 1


@final
@attrs.frozen
class ClusterPolicy:
    """The traffic policy of one cluster, after port-level settings and the subset's policy.

    Attributes:
        connection_pool: connection limits.
        outlier_detection: ejection of failing hosts.
        load_balancer: the load-balancing algorithm and locality settings.
        tls: TLS to the upstream.
        proxy_protocol: a PROXY protocol header upstream.
        retry_budget: a cap on concurrent retries.
    """

    connection_pool: ConnectionPoolSettings | None = None
    outlier_detection: OutlierDetection | None = None
    load_balancer: LoadBalancerSettings | None = None
    tls: ClientTLSSettings | None = None
    proxy_protocol: ProxyProtocol | None = None
    retry_budget: RetryBudget | None = None


def _for_port(policy: TrafficPolicy | None, port: int) -> tuple[ClusterPolicy | None, bool]:
    if policy is None:
        return None, False
    for setting in policy.port_level_settings:
        if setting.port is not None and setting.port.number == port:
            level = ClusterPolicy(
                setting.connection_pool, setting.outlier_detection, setting.load_balancer, setting.tls
            )
            return level, True
    whole = ClusterPolicy(
        policy.connection_pool,
        policy.outlier_detection,
        policy.load_balancer,
        policy.tls,
        policy.proxy_protocol,
        policy.retry_budget,
    )
    return whole, False


def cluster_policy(rule: TrafficPolicy | None, subset: TrafficPolicy | None, port: int) -> ClusterPolicy | None:
    """The policy of the cluster of ``port`` (and of a subset, whose policy overrides the rule's)."""
    base, _ = _for_port(rule, port)
    own, port_level = _for_port(subset, port)
    if own is None:
        return base
    if base is None:
        return own

    def pick(name: str) -> Any:
        value = getattr(own, name)
        return value if value is not None or port_level else getattr(base, name)

    return ClusterPolicy(
        connection_pool=pick("connection_pool"),
        outlier_detection=pick("outlier_detection"),
        load_balancer=pick("load_balancer"),
        tls=pick("tls"),
        proxy_protocol=own.proxy_protocol or base.proxy_protocol,
        retry_budget=own.retry_budget or base.retry_budget,
    )


def duration(value: Duration) -> Any:
    """A protobuf Duration."""
    out = duration_pb2.Duration()
    out.FromNanoseconds(value.nanos)
    return out


def http_options() -> Any:
    """An empty HttpProtocolOptions, filled while a cluster is built."""
    return http_protocol_options_pb2.HttpProtocolOptions()


def is_http2(options: Any) -> bool:
    """True when the options make the cluster speak HTTP/2 upstream."""
    return bool(
        options.WhichOneof("upstream_protocol_options") == "explicit_http_config"
        and options.explicit_http_config.HasField("http2_protocol_options")
    )


def _set_h2(options: Any) -> None:
    options.explicit_http_config.http2_protocol_options.SetInParent()


def _use_downstream(options: Any) -> None:
    http1 = None
    if options.WhichOneof("upstream_protocol_options") == "explicit_http_config":
        http1 = options.explicit_http_config.http_protocol_options
    config = http_protocol_options_pb2.HttpProtocolOptions.UseDownstreamHttpConfig()
    config.http_protocol_options.SetInParent()
    if http1 is not None:
        config.http_protocol_options.CopyFrom(http1)
    config.http2_protocol_options.SetInParent()
    options.use_downstream_protocol_config.CopyFrom(config)


def set_upstream_protocol(options: Any, protocol: Protocol) -> None:
    """HTTP/2 for HTTP2 and gRPC ports.

    Ports of unknown protocol are not sniffed: their listeners proxy TCP, so their clusters get no HTTP
    options (Istio, which sniffs them, gives them the downstream's protocol).
    """
    if protocol.is_http2:
        _set_h2(options)


def apply_h2_upgrade(options: Any, protocol: Protocol, pool: ConnectionPoolSettings | None, mesh: Any) -> None:
    """Istio's ``shouldH2Upgrade``: the rule's ``h2UpgradePolicy``, else the mesh's for HTTP ports."""
    if pool is not None and pool.http is not None:
        if pool.http.use_client_protocol or pool.http.h2_upgrade_policy is H2UpgradePolicy.DO_NOT_UPGRADE:
            return
        if pool.http.h2_upgrade_policy is H2UpgradePolicy.UPGRADE:
            _set_h2(options)
            return
    if protocol.is_http and mesh.h2_upgrade_policy is MeshH2UpgradePolicy.UPGRADE:
        _set_h2(options)


def _keepalive(cluster: Any, keepalive: TcpKeepalive | None) -> None:
    if keepalive is None:
        return
    tcp = cluster.upstream_connection_options.tcp_keepalive
    tcp.SetInParent()
    if keepalive.probes > 0:
        tcp.keepalive_probes.value = keepalive.probes
    if keepalive.time is not None:
        tcp.keepalive_time.value = keepalive.time.nanos // 10**9
    if keepalive.interval is not None:
        tcp.keepalive_interval.value = keepalive.interval.nanos // 10**9


def _http2_options(options: Any) -> Any | None:
    kind = options.WhichOneof("upstream_protocol_options")
    if kind == "explicit_http_config" and options.explicit_http_config.HasField("http2_protocol_options"):
        return options.explicit_http_config.http2_protocol_options
    if kind == "use_downstream_protocol_config":
        return options.use_downstream_protocol_config.http2_protocol_options
    return None


def apply_connection_pool(
    cluster: Any, options: Any, pool: ConnectionPoolSettings | None, budget: RetryBudget | None, mesh: Any
) -> None:
    """Circuit breakers (2^32-1 unless set), connect timeout, TCP keep-alive and HTTP connection settings."""
    threshold = circuit_breaker_pb2.CircuitBreakers.Thresholds(track_remaining=True)
    threshold.max_connections.value = _MAX_UINT32
    threshold.max_pending_requests.value = _MAX_UINT32
    threshold.max_requests.value = _MAX_UINT32
    threshold.max_retries.value = _MAX_UINT32
    if budget is not None:
        threshold.retry_budget.budget_percent.value = budget.percent if budget.percent is not None else 20.0
        threshold.retry_budget.min_retry_concurrency.value = budget.min_retry_concurrency or 3
    if mesh.connect_timeout is not None:
        cluster.connect_timeout.CopyFrom(duration(mesh.connect_timeout))
    _keepalive(cluster, mesh.tcp_keepalive)
    http = pool.http if pool is not None else None
    tcp = pool.tcp if pool is not None else None
    idle: Duration | None = None
    if http is not None:
        if http.http2_max_requests > 0:
            threshold.max_requests.value = http.http2_max_requests
        if http.http1_max_pending_requests > 0:
            threshold.max_pending_requests.value = http.http1_max_pending_requests
        if http.max_retries > 0:
            threshold.max_retries.value = http.max_retries
        idle = http.idle_timeout
    if tcp is not None:
        if tcp.connect_timeout is not None:
            cluster.connect_timeout.CopyFrom(duration(tcp.connect_timeout))
        if tcp.max_connections > 0:
            threshold.max_connections.value = tcp.max_connections
        if idle is None:
            idle = tcp.idle_timeout
        _keepalive(cluster, tcp.tcp_keepalive)
        if tcp.max_connection_duration is not None:
            options.common_http_protocol_options.max_connection_duration.CopyFrom(duration(tcp.max_connection_duration))
    cluster.circuit_breakers.thresholds.append(threshold)
    if idle is not None:
        options.common_http_protocol_options.idle_timeout.CopyFrom(duration(idle))
    if http is None:
        return
    if http.max_requests_per_connection > 0:
        options.common_http_protocol_options.max_requests_per_connection.value = http.max_requests_per_connection
    if http.use_client_protocol:
        _use_downstream(options)
    h2 = _http2_options(options)
    if h2 is not None:
        if http.max_concurrent_streams > 0:
            h2.max_concurrent_streams.value = http.max_concurrent_streams
        if (keepalive := http.http2_keep_alive) is not None:
            if keepalive.interval is not None:
                h2.connection_keepalive.interval.CopyFrom(duration(keepalive.interval))
            if keepalive.timeout is not None:
                h2.connection_keepalive.timeout.CopyFrom(duration(keepalive.timeout))


def _status_rule(code: int) -> Any:
    header = route_components_pb2.HeaderMatcher(name=":status", string_match=string_pb2.StringMatcher(exact=str(code)))
    predicate = matcher_pb2.MatchPredicate()
    predicate.http_response_headers_match.headers.append(header)
    return predicate


def apply_outlier_detection(cluster: Any, options: Any, outlier: OutlierDetection | None) -> None:
    """Consecutive-error ejection (success-rate ejection off) and the panic threshold (0 by default)."""
    if outlier is None:
        return
    out = cluster.outlier_detection
    out.enforcing_success_rate.value = 0
    if (errors := outlier.consecutive_5xx_errors) is not None:
        out.consecutive_5xx.value = errors
        out.enforcing_consecutive_5xx.value = 100 if errors > 0 else 0
    if (errors := outlier.consecutive_gateway_errors) is not None:
        out.consecutive_gateway_failure.value = errors
        out.enforcing_consecutive_gateway_failure.value = 100 if errors > 0 else 0
    if outlier.interval is not None:
        out.interval.CopyFrom(duration(outlier.interval))
    if outlier.base_ejection_time is not None:
        out.base_ejection_time.CopyFrom(duration(outlier.base_ejection_time))
    if outlier.max_ejection_percent > 0:
        out.max_ejection_percent.value = outlier.max_ejection_percent
    if outlier.split_external_local_origin_errors:
        out.split_external_local_origin_errors = True
        if (outlier.consecutive_local_origin_failures or 0) > 0:
            out.consecutive_local_origin_failure.value = outlier.consecutive_local_origin_failures
            out.enforcing_consecutive_local_origin_failure.value = 100
        out.enforcing_local_origin_success_rate.value = 0
    if outlier.min_health_percent >= 0:
        cluster.common_lb_config.healthy_panic_threshold.value = float(outlier.min_health_percent)
    codes = outlier.outlier_detection_http_error_codes
    if codes:
        matcher = options.outlier_detection.error_matcher
        if len(codes) == 1:
            matcher.CopyFrom(_status_rule(codes[0]))
        else:
            matcher.or_match.rules.extend(_status_rule(code) for code in codes)


def locality_lb_setting(mesh: Any, lb: LoadBalancerSettings | None) -> LocalityLoadBalancerSetting | None:
    """The locality setting that applies: the rule's, else the mesh's; None when turned off."""
    if lb is not None and lb.locality_lb_setting is not None:
        setting = lb.locality_lb_setting
        return None if setting.enabled is False else setting
    setting = mesh.locality_lb_setting
    if setting is None or setting.enabled is False:
        return None
    result: LocalityLoadBalancerSetting = setting
    return result


def _slow_start(cluster: Any, lb: LoadBalancerSettings, field: str) -> None:
    if lb.warmup is not None:
        config = getattr(cluster, field).slow_start_config
        if lb.warmup.duration is not None:
            config.slow_start_window.CopyFrom(duration(lb.warmup.duration))
        config.aggression.default_value = lb.warmup.aggression if lb.warmup.aggression is not None else 1.0
        config.aggression.runtime_key = "("
        percent = lb.warmup.minimum_percent
        config.min_weight_percent.value = percent if percent is not None else 10.0
    elif lb.warmup_duration_secs is not None:
        getattr(cluster, field).slow_start_config.slow_start_window.CopyFrom(duration(lb.warmup_duration_secs))


def apply_load_balancer(cluster: Any, lb: LoadBalancerSettings | None, *, mesh: Any, failover: bool) -> None:
    """The load-balancing policy: simple algorithms, slow start, ring hash or Maglev, locality weighting.

    Args:
        cluster: the Cluster to change.
        lb: the rule's load balancer settings, if any.
        mesh: the MeshConfig (its locality setting applies when the rule has none).
        failover: outlier detection is on, so locality failover may apply.
    """
    setting = locality_lb_setting(mesh, lb)
    if setting is not None and (setting.distribute or (failover and (setting.failover or setting.failover_priority))):
        cluster.common_lb_config.locality_weighted_lb_config.SetInParent()
    if cluster.type == cluster_pb2.Cluster.ORIGINAL_DST:
        cluster.lb_policy = cluster_pb2.Cluster.CLUSTER_PROVIDED
        return
    simple = lb.simple if lb is not None else SimpleLB.UNSPECIFIED
    if simple is SimpleLB.RANDOM:
        cluster.lb_policy = cluster_pb2.Cluster.RANDOM
    elif simple is SimpleLB.ROUND_ROBIN:
        cluster.lb_policy = cluster_pb2.Cluster.ROUND_ROBIN
        if lb is not None:
            _slow_start(cluster, lb, "round_robin_lb_config")
    elif simple is SimpleLB.PASSTHROUGH:
        cluster.lb_policy = cluster_pb2.Cluster.CLUSTER_PROVIDED
        cluster.type = cluster_pb2.Cluster.ORIGINAL_DST
        cluster.ClearField("load_assignment")
    else:
        cluster.lb_policy = cluster_pb2.Cluster.LEAST_REQUEST
        if lb is not None:
            _slow_start(cluster, lb, "least_request_lb_config")
    hashing = lb.consistent_hash if lb is not None else None
    if hashing is None:
        return
    if hashing.maglev is not None:
        cluster.lb_policy = cluster_pb2.Cluster.MAGLEV
        if hashing.maglev.table_size:
            cluster.maglev_lb_config.table_size.value = hashing.maglev.table_size
    elif hashing.ring_hash is not None:
        cluster.lb_policy = cluster_pb2.Cluster.RING_HASH
        if hashing.ring_hash.minimum_ring_size:
            cluster.ring_hash_lb_config.minimum_ring_size.value = hashing.ring_hash.minimum_ring_size
    else:
        cluster.lb_policy = cluster_pb2.Cluster.RING_HASH
        cluster.ring_hash_lb_config.minimum_ring_size.value = hashing.minimum_ring_size or 1024


def finish_http_options(cluster: Any, options: Any) -> None:
    """Attach the HTTP options to the cluster when anything was set (HTTP/1.1 unless a protocol was chosen)."""
    if not options.ListFields():
        return
    if options.WhichOneof("upstream_protocol_options") is None:
        options.explicit_http_config.http_protocol_options.SetInParent()
    cluster.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS].Pack(options)


def passthrough_http_options() -> Any:
    """The HTTP options of passthrough clusters: 5 minute idle timeout, the downstream's protocol."""
    options = http_options()
    options.common_http_protocol_options.idle_timeout.CopyFrom(duration(Duration.of(seconds=300)))
    _use_downstream(options)
    return options
