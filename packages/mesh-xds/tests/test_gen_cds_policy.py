"""CDS generation: a DestinationRule's traffic policy on clusters (connection pool, outlier detection, load
balancer, port-level and subset policies), checked field by field and by a real Envoy."""

from __future__ import annotations

import pytest
from google.protobuf import json_format

from mesh_config import PushContext, ServiceEntryRegistry, default_mesh_config, load_text
from mesh_model import AggregateRegistry, InMemoryRegistry, Protocol, Proxy, Service, ServicePort, Workload
from mesh_xds.generate import GenerationContext, SidecarAddresses
from mesh_xds.generate.cds import build_clusters
from mesh_xds.generate.eds import build_load_assignments, eds_cluster_names
from mesh_xds.testing.envoy import validate_config
from mesh_xds.testing.render import static_bootstrap

REVIEWS = "outbound|9080||reviews.default.svc.cluster.local"
RATINGS = "outbound|9090||ratings.default.svc.cluster.local"
HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
MAX = 4294967295


def _bookinfo() -> InMemoryRegistry:
    registry = InMemoryRegistry()
    http = [ServicePort("http", 9080, Protocol.HTTP)]
    registry.upsert_service(
        Service("reviews.default.svc.cluster.local", "default", ports=http, selector={"app": "reviews"})
    )
    registry.upsert_service(
        Service("productpage.default.svc.cluster.local", "default", ports=http, selector={"app": "productpage"})
    )
    registry.upsert_service(
        Service(
            "ratings.default.svc.cluster.local",
            "default",
            ports=[
                ServicePort("grpc", 9090, Protocol.GRPC),
                ServicePort("tcp-raw", 9091),
                ServicePort("udp", 53, Protocol.UDP),
            ],
            selector={"app": "ratings"},
        )
    )
    for index, version in enumerate(("v1", "v2", "v3"), start=1):
        registry.upsert_workload(
            Workload(
                f"reviews-{version}",
                "default",
                addresses=[f"127.0.1.{index}"],
                labels={"app": "reviews", "version": version},
                service_account="bookinfo-reviews",
            )
        )
    registry.upsert_workload(Workload("ratings-v1", "default", addresses=["127.0.2.1"], labels={"app": "ratings"}))
    return registry


def _context(
    config: str = "",
    *,
    kind: str = "sidecar",
    labels: dict[str, str] | None = None,
    mesh: object = None,
    registry: InMemoryRegistry | None = None,
) -> GenerationContext:
    resources = load_text(config, default_namespace="default").raise_for_errors().resources
    services = AggregateRegistry([registry or _bookinfo(), ServiceEntryRegistry(resources)])
    push = PushContext.build(resources, services)
    metadata = {"NAMESPACE": "default", "LABELS": labels if labels is not None else {"app": "productpage"}}
    proxy = Proxy.parse(f"{kind}~127.0.3.1~productpage-v1.default~default.svc.cluster.local", metadata)
    addresses = SidecarAddresses(inbound="127.0.3.1", application="127.0.3.2", outbound="127.0.3.3")
    return GenerationContext(proxy, push, services, mesh=mesh or default_mesh_config(), addresses=addresses)


def _dicts(ctx: GenerationContext) -> dict[str, dict]:
    return {c.name: json_format.MessageToDict(c, preserving_proto_field_name=True) for c in build_clusters(ctx)}


def _validate(ctx: GenerationContext) -> None:
    clusters = build_clusters(ctx)
    assignments = build_load_assignments(ctx, eds_cluster_names(clusters))
    validate_config(static_bootstrap(clusters=clusters, load_assignments=assignments), check=True)


def _rule(policy: str, host: str = "reviews", extra: str = "") -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: {host}}}
spec:
  host: {host}
  trafficPolicy:
{policy}
{extra}
"""


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


def test_connection_pool_maps_to_circuit_breakers_and_http_options():
    clusters = _dicts(_context(_rule(CONNECTION_POOL, "ratings")))
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
    _validate(_context(_rule(CONNECTION_POOL, "ratings")))


def test_tcp_idle_timeout_applies_unless_http_sets_one_and_client_protocol_is_kept():
    policy = """
    connectionPool:
      tcp: {idleTimeout: 1h}
      http: {useClientProtocol: true}
"""
    options = _dicts(_context(_rule(policy)))[REVIEWS]["typed_extension_protocol_options"][HTTP_OPTIONS]
    assert options["common_http_protocol_options"] == {"idle_timeout": "3600s"}
    assert set(options["use_downstream_protocol_config"]) == {"http_protocol_options", "http2_protocol_options"}


def test_h2_upgrade_policy_upgrades_http_ports():
    policy = """
    connectionPool:
      http: {h2UpgradePolicy: UPGRADE}
"""
    options = _dicts(_context(_rule(policy)))[REVIEWS]["typed_extension_protocol_options"][HTTP_OPTIONS]
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


def test_outlier_detection_maps_field_by_field():
    cluster = _dicts(_context(_rule(OUTLIER)))[REVIEWS]
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
    _validate(_context(_rule(OUTLIER)))


def test_outlier_detection_turns_the_panic_threshold_off_by_default():
    policy = """
    outlierDetection: {consecutive5xxErrors: 0, outlierDetectionHttpErrorCodes: [500]}
"""
    cluster = _dicts(_context(_rule(policy)))[REVIEWS]
    assert cluster["outlier_detection"]["enforcing_consecutive_5xx"] == 0
    assert cluster["common_lb_config"] == {"healthy_panic_threshold": {}}
    matcher = cluster["typed_extension_protocol_options"][HTTP_OPTIONS]["outlier_detection"]["error_matcher"]
    assert matcher["http_response_headers_match"]["headers"][0]["string_match"] == {"exact": "500"}
    _validate(_context(_rule(policy)))


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
def test_load_balancer_settings(balancer, policy, extra):
    config = _rule(f"    loadBalancer: {balancer}")
    cluster = _dicts(_context(config))[REVIEWS]
    assert cluster.get("lb_policy", "ROUND_ROBIN") == policy
    for key, value in extra.items():
        assert cluster[key] == value
    if policy == "CLUSTER_PROVIDED":
        assert cluster["type"] == "ORIGINAL_DST"
        assert "eds_cluster_config" not in cluster
    _validate(_context(config))


def test_port_level_settings_replace_the_whole_policy_for_their_port():
    policy = """
    loadBalancer: {simple: ROUND_ROBIN}
    connectionPool: {tcp: {maxConnections: 5}}
    portLevelSettings:
    - port: {number: 9090}
      connectionPool: {tcp: {maxConnections: 9}}
"""
    clusters = _dicts(_context(_rule(policy, "ratings")))
    grpc = clusters[RATINGS]
    assert grpc["lb_policy"] == "LEAST_REQUEST"
    assert grpc["circuit_breakers"]["thresholds"][0]["max_connections"] == 9
    raw = clusters["outbound|9091||ratings.default.svc.cluster.local"]
    assert raw.get("lb_policy", "ROUND_ROBIN") == "ROUND_ROBIN"
    assert raw["circuit_breakers"]["thresholds"][0]["max_connections"] == 5


def test_subset_policy_overrides_the_rule_field_by_field():
    config = _rule(
        "    loadBalancer: {simple: ROUND_ROBIN}\n    connectionPool: {tcp: {maxConnections: 5}}",
        extra="""  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy: {loadBalancer: {simple: RANDOM}}""",
    )
    v1 = _dicts(_context(config))["outbound|9080|v1|reviews.default.svc.cluster.local"]
    assert v1["lb_policy"] == "RANDOM"
    assert v1["circuit_breakers"]["thresholds"][0]["max_connections"] == 5


def test_locality_weighting_is_set_for_distribute_and_for_failover_with_outlier_detection():
    distribute = _rule("    loadBalancer: {localityLbSetting: {distribute: [{from: 'us/*', to: {'us/a': 100}}]}}")
    assert _dicts(_context(distribute))[REVIEWS]["common_lb_config"] == {"locality_weighted_lb_config": {}}
    failover = _rule(
        "    loadBalancer: {localityLbSetting: {failover: [{from: us, to: eu}]}}\n"
        "    outlierDetection: {consecutive5xxErrors: 1}"
    )
    assert "locality_weighted_lb_config" in _dicts(_context(failover))[REVIEWS]["common_lb_config"]
    without = _rule("    loadBalancer: {localityLbSetting: {failover: [{from: us, to: eu}]}}")
    assert "locality_weighted_lb_config" not in _dicts(_context(without))[REVIEWS]["common_lb_config"]
