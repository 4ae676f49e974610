"""CDS generation: a DestinationRule's traffic policy on clusters (connection pool, outlier detection, load
balancer, port-level and subset policies), checked field by field and by a real Envoy."""

from __future__ import annotations

import pytest

REVIEWS = "outbound|9080||reviews.default.svc.cluster.local"
RATINGS = "outbound|9090||ratings.default.svc.cluster.local"
HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
MAX = 4294967295


CONNECTION_POOL = """
    connectionPool:
      tcp:
        maxConnections: 100
        connectTimeout: 3s
        tcpKeepalive: {probes: 5, time: 7200s, interval: 75s}
        maxConnectionDuration: 1h
      http:
        http1MaxPendingRequests: 10
        http2MaxRequests: 1000
        maxRequestsPerConnection: 20
        maxRetries: 4
        idleTimeout: 30s
        maxConcurrentStreams: 50
        http2KeepAlive: {interval: 10s, timeout: 2s}
    retryBudget: {percent: 25, minRetryConcurrency: 5}
"""


def test_connection_pool_maps_to_circuit_breakers_and_http_options(
    cluster_context, cluster_dicts, destination_rule, validate_clusters
):
    clusters = cluster_dicts(cluster_context(destination_rule(CONNECTION_POOL, "ratings")))
    cluster = clusters[RATINGS]
    assert cluster["connect_timeout"] == "3s"
    assert cluster["circuit_breakers"]["thresholds"] == [
        {
            "max_connections": 100,
            "max_pending_requests": 10,
            "max_requests": 1000,
            "max_retries": 4,
            "retry_budget": {"budget_percent": {"value": 25.0}, "min_retry_concurrency": 5},
            "track_remaining": True,
        }
    ]
    assert cluster["upstream_connection_options"]["tcp_keepalive"] == {
        "keepalive_probes": 5,
        "keepalive_time": 7200,
        "keepalive_interval": 75,
    }
    options = cluster["typed_extension_protocol_options"][HTTP_OPTIONS]
    assert options["common_http_protocol_options"] == {
        "idle_timeout": "30s",
        "max_connection_duration": "3600s",
        "max_requests_per_connection": 20,
    }
    assert options["explicit_http_config"]["http2_protocol_options"] == {
        "max_concurrent_streams": 50,
        "connection_keepalive": {"interval": "10s", "timeout": "2s"},
    }
    validate_clusters(cluster_context(destination_rule(CONNECTION_POOL, "ratings")))


def test_tcp_idle_timeout_applies_unless_http_sets_one_and_client_protocol_is_kept(
    cluster_context, cluster_dicts, destination_rule
):
    policy = """
    connectionPool:
      tcp: {idleTimeout: 1h}
      http: {useClientProtocol: true}
"""
    options = cluster_dicts(cluster_context(destination_rule(policy)))[REVIEWS]["typed_extension_protocol_options"][
        HTTP_OPTIONS
    ]
    assert options["common_http_protocol_options"] == {"idle_timeout": "3600s"}
    assert set(options["use_downstream_protocol_config"]) == {"http_protocol_options", "http2_protocol_options"}


def test_h2_upgrade_policy_upgrades_http_ports(cluster_context, cluster_dicts, destination_rule):
    policy = """
    connectionPool:
      http: {h2UpgradePolicy: UPGRADE}
"""
    options = cluster_dicts(cluster_context(destination_rule(policy)))[REVIEWS]["typed_extension_protocol_options"][
        HTTP_OPTIONS
    ]
    assert options["explicit_http_config"] == {"http2_protocol_options": {}}


OUTLIER = """
    outlierDetection:
      consecutive5xxErrors: 7
      consecutiveGatewayErrors: 3
      interval: 5s
      baseEjectionTime: 15m
      maxEjectionPercent: 40
      minHealthPercent: 25
      splitExternalLocalOriginErrors: true
      consecutiveLocalOriginFailures: 2
      outlierDetectionHttpErrorCodes: [503, 504]
"""


def test_outlier_detection_maps_field_by_field(cluster_context, cluster_dicts, destination_rule, validate_clusters):
    cluster = cluster_dicts(cluster_context(destination_rule(OUTLIER)))[REVIEWS]
    assert cluster["outlier_detection"] == {
        "consecutive_5xx": 7,
        "enforcing_consecutive_5xx": 100,
        "consecutive_gateway_failure": 3,
        "enforcing_consecutive_gateway_failure": 100,
        "interval": "5s",
        "base_ejection_time": "900s",
        "max_ejection_percent": 40,
        "enforcing_success_rate": 0,
        "split_external_local_origin_errors": True,
        "consecutive_local_origin_failure": 2,
        "enforcing_consecutive_local_origin_failure": 100,
        "enforcing_local_origin_success_rate": 0,
    }
    assert cluster["common_lb_config"]["healthy_panic_threshold"] == {"value": 25.0}
    matcher = cluster["typed_extension_protocol_options"][HTTP_OPTIONS]["outlier_detection"]["error_matcher"]
    codes = [
        rule["http_response_headers_match"]["headers"][0]["string_match"]["exact"]
        for rule in matcher["or_match"]["rules"]
    ]
    assert codes == ["503", "504"]
    validate_clusters(cluster_context(destination_rule(OUTLIER)))


def test_outlier_detection_turns_the_panic_threshold_off_by_default(
    cluster_context, cluster_dicts, destination_rule, validate_clusters
):
    policy = """
    outlierDetection: {consecutive5xxErrors: 0, outlierDetectionHttpErrorCodes: [500]}
"""
    cluster = cluster_dicts(cluster_context(destination_rule(policy)))[REVIEWS]
    assert cluster["outlier_detection"]["enforcing_consecutive_5xx"] == 0
    assert cluster["common_lb_config"] == {"healthy_panic_threshold": {}}
    matcher = cluster["typed_extension_protocol_options"][HTTP_OPTIONS]["outlier_detection"]["error_matcher"]
    assert matcher["http_response_headers_match"]["headers"][0]["string_match"] == {"exact": "500"}
    validate_clusters(cluster_context(destination_rule(policy)))


@pytest.mark.parametrize(
    ("balancer", "policy", "extra"),
    [
        ("{simple: ROUND_ROBIN}", "ROUND_ROBIN", {}),
        ("{simple: RANDOM}", "RANDOM", {}),
        ("{simple: LEAST_CONN}", "LEAST_REQUEST", {}),
        ("{simple: PASSTHROUGH}", "CLUSTER_PROVIDED", {}),
        (
            "{simple: ROUND_ROBIN, warmup: {duration: 60s}}",
            "ROUND_ROBIN",
            {
                "round_robin_lb_config": {
                    "slow_start_config": {
                        "slow_start_window": "60s",
                        "aggression": {"default_value": 1.0, "runtime_key": "("},
                        "min_weight_percent": {"value": 10.0},
                    }
                }
            },
        ),
        (
            "{warmupDurationSecs: 30s}",
            "LEAST_REQUEST",
            {"least_request_lb_config": {"slow_start_config": {"slow_start_window": "30s"}}},
        ),
        (
            "{consistentHash: {httpHeaderName: x-user}}",
            "RING_HASH",
            {"ring_hash_lb_config": {"minimum_ring_size": "1024"}},
        ),
        (
            "{consistentHash: {useSourceIp: true, ringHash: {minimumRingSize: 2048}}}",
            "RING_HASH",
            {"ring_hash_lb_config": {"minimum_ring_size": "2048"}},
        ),
        (
            "{consistentHash: {httpCookie: {name: user, ttl: 0s}, maglev: {tableSize: 65537}}}",
            "MAGLEV",
            {"maglev_lb_config": {"table_size": "65537"}},
        ),
    ],
)
def test_load_balancer_settings(
    cluster_context, cluster_dicts, destination_rule, validate_clusters, balancer, policy, extra
):
    config = destination_rule(f"    loadBalancer: {balancer}")
    cluster = cluster_dicts(cluster_context(config))[REVIEWS]
    assert cluster.get("lb_policy", "ROUND_ROBIN") == policy
    for key, value in extra.items():
        assert cluster[key] == value
    if policy == "CLUSTER_PROVIDED":
        assert cluster["type"] == "ORIGINAL_DST"
        assert "eds_cluster_config" not in cluster
    validate_clusters(cluster_context(config))


def test_port_level_settings_replace_the_whole_policy_for_their_port(cluster_context, cluster_dicts, destination_rule):
    policy = """
    loadBalancer: {simple: ROUND_ROBIN}
    connectionPool: {tcp: {maxConnections: 5}}
    portLevelSettings:
    - port: {number: 9090}
      connectionPool: {tcp: {maxConnections: 9}}
"""
    clusters = cluster_dicts(cluster_context(destination_rule(policy, "ratings")))
    grpc = clusters[RATINGS]
    assert grpc["lb_policy"] == "LEAST_REQUEST"
    assert grpc["circuit_breakers"]["thresholds"][0]["max_connections"] == 9
    raw = clusters["outbound|9091||ratings.default.svc.cluster.local"]
    assert raw.get("lb_policy", "ROUND_ROBIN") == "ROUND_ROBIN"
    assert raw["circuit_breakers"]["thresholds"][0]["max_connections"] == 5


def test_subset_policy_overrides_the_rule_field_by_field(cluster_context, cluster_dicts, destination_rule):
    config = destination_rule(
        "    loadBalancer: {simple: ROUND_ROBIN}\n    connectionPool: {tcp: {maxConnections: 5}}",
        extra="""  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy: {loadBalancer: {simple: RANDOM}}""",
    )
    v1 = cluster_dicts(cluster_context(config))["outbound|9080|v1|reviews.default.svc.cluster.local"]
    assert v1["lb_policy"] == "RANDOM"
    assert v1["circuit_breakers"]["thresholds"][0]["max_connections"] == 5


def test_locality_weighting_is_set_for_distribute_and_for_failover_with_outlier_detection(
    cluster_context, cluster_dicts, destination_rule
):
    distribute = destination_rule(
        "    loadBalancer: {localityLbSetting: {distribute: [{from: 'us/*', to: {'us/a': 100}}]}}"
    )
    assert cluster_dicts(cluster_context(distribute))[REVIEWS]["common_lb_config"] == {
        "locality_weighted_lb_config": {}
    }
    failover = destination_rule(
        "    loadBalancer: {localityLbSetting: {failover: [{from: us, to: eu}]}}\n"
        "    outlierDetection: {consecutive5xxErrors: 1}"
    )
    assert "locality_weighted_lb_config" in cluster_dicts(cluster_context(failover))[REVIEWS]["common_lb_config"]
    without = destination_rule("    loadBalancer: {localityLbSetting: {failover: [{from: us, to: eu}]}}")
    assert "locality_weighted_lb_config" not in cluster_dicts(cluster_context(without))[REVIEWS]["common_lb_config"]
