"""EDS generation: load assignments by locality, subsets, health, mTLS metadata and locality failover."""

from __future__ import annotations

import pytest
from google.protobuf import json_format

from mesh_config import PushContext, ServiceEntryRegistry, load_text
from mesh_model import (
    AggregateRegistry,
    Endpoint,
    HealthStatus,
    InMemoryRegistry,
    Protocol,
    Proxy,
    Service,
    ServicePort,
    TlsMode,
)
from mesh_xds.generate import GenerationContext
from mesh_xds.generate.cds import build_clusters
from mesh_xds.generate.eds import build_load_assignments, eds_cluster_names
from mesh_xds.testing.envoy import validate_config
from mesh_xds.testing.render import static_bootstrap

HOST = "reviews.default.svc.cluster.local"
REVIEWS = f"outbound|9080||{HOST}"
KEY = Service(HOST, "default").key


def _endpoint(address: str, locality: str = "", **fields: object) -> Endpoint:
    fields.setdefault("tls_mode", TlsMode.ISTIO)
    fields.setdefault("namespace", "default")
    return Endpoint(address, ports={"http": 9080}, locality=locality, **fields)


def _context(endpoints: list[Endpoint], config: str = "", *, locality: str = "", labels: dict | None = None):
    registry = InMemoryRegistry()
    service = Service(HOST, "default", ports=[ServicePort("http", 9080, Protocol.HTTP)])
    registry.upsert_service(service)
    registry.set_endpoints(service.key, endpoints)
    resources = load_text(config, default_namespace="default").raise_for_errors().resources
    services = AggregateRegistry([registry, ServiceEntryRegistry(resources)])
    push = PushContext.build(resources, services)
    metadata = {"NAMESPACE": "default", "LABELS": labels or {"app": "productpage"}}
    proxy = Proxy.parse("sidecar~127.0.3.1~productpage.default~default.svc.cluster.local", metadata, locality=locality)
    return GenerationContext(proxy, push, services)


def _assignment(ctx: GenerationContext, name: str = REVIEWS) -> dict:
    (assignment,) = build_load_assignments(ctx, [name])
    return json_format.MessageToDict(assignment, preserving_proto_field_name=True)


def _addresses(group: dict) -> list[str]:
    return [e["endpoint"]["address"]["socket_address"]["address"] for e in group.get("lb_endpoints", [])]


def _validate(ctx: GenerationContext) -> None:
    clusters = build_clusters(ctx)
    assignments = build_load_assignments(ctx, eds_cluster_names(clusters))
    validate_config(static_bootstrap(clusters=clusters, load_assignments=assignments), check=True)


def _rule(policy: str, subsets: str = "") -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: reviews}}
spec:
  host: reviews
  trafficPolicy:
{policy}
{subsets}
"""


def test_endpoints_are_grouped_by_locality_with_weights_and_metadata():
    ctx = _context(
        [
            _endpoint(
                "127.0.1.2", "us/b", weight=3, workload_name="reviews-v2", labels={"app": "reviews", "version": "v2"}
            ),
            _endpoint("127.0.1.1", "us/a", workload_name="reviews-v1", labels={"app": "reviews", "version": "v1"}),
            _endpoint("127.0.1.3", "us/b", tls_mode=TlsMode.DISABLED, workload_name="legacy"),
        ]
    )
    assignment = _assignment(ctx)
    assert assignment["cluster_name"] == REVIEWS
    first, second = assignment["endpoints"]
    assert first["locality"] == {"region": "us", "zone": "a"}
    assert (first["load_balancing_weight"], second["load_balancing_weight"]) == (1, 4)
    assert _addresses(second) == ["127.0.1.2", "127.0.1.3"]
    v2, legacy = second["lb_endpoints"]
    assert v2["health_status"] == "HEALTHY"
    assert v2["load_balancing_weight"] == 3
    assert v2["endpoint"]["address"]["socket_address"]["port_value"] == 9080
    assert v2["metadata"]["filter_metadata"] == {
        "envoy.transport_socket_match": {"tlsMode": "istio"},
        "istio": {"workload": "reviews-v2;default;reviews;v2;"},
    }
    assert "envoy.transport_socket_match" not in legacy["metadata"]["filter_metadata"]
    _validate(ctx)


def test_endpoints_serve_the_port_on_their_named_target_port_and_unix_sockets_become_pipes():
    ctx = _context([Endpoint("127.0.1.1", ports={"http": 19080}), Endpoint("unix:///run/reviews.sock")])
    (group,) = _assignment(ctx)["endpoints"]
    tcp, pipe = group["lb_endpoints"]
    assert tcp["endpoint"]["address"]["socket_address"] == {"address": "127.0.1.1", "port_value": 19080}
    assert pipe["endpoint"]["address"] == {"pipe": {"path": "/run/reviews.sock"}}


def test_unhealthy_terminating_and_draining_endpoints_are_left_out():
    endpoints = [
        _endpoint("127.0.1.1"),
        _endpoint("127.0.1.2", health=HealthStatus.UNHEALTHY),
        _endpoint("127.0.1.3", health=HealthStatus.TERMINATING),
        _endpoint("127.0.1.4", health=HealthStatus.DRAINING),
        _endpoint("127.0.1.5", labels={"istio.io/draining": "true"}),
    ]
    (group,) = _assignment(_context(endpoints))["endpoints"]
    assert _addresses(group) == ["127.0.1.1"]


def test_persistent_session_services_keep_draining_endpoints():
    ctx = _context([_endpoint("127.0.1.1"), _endpoint("127.0.1.4", health=HealthStatus.DRAINING)])
    registry = InMemoryRegistry()
    service = Service(HOST, "default", ports=[ServicePort("http", 9080)], labels={"istio.io/persistent-session": "s"})
    registry.upsert_service(service)
    registry.set_endpoints(service.key, ctx.registry.endpoints(KEY, 9080))
    push = PushContext.build((), registry)
    (group,) = _assignment(GenerationContext(ctx.proxy, push, registry))["endpoints"]
    assert [e["health_status"] for e in group["lb_endpoints"]] == ["HEALTHY", "DRAINING"]


def test_subset_clusters_get_the_endpoints_with_the_subset_labels():
    config = _rule("    loadBalancer: {simple: ROUND_ROBIN}", "  subsets: [{name: v1, labels: {version: v1}}]")
    ctx = _context(
        [_endpoint("127.0.1.1", labels={"version": "v1"}), _endpoint("127.0.1.2", labels={"version": "v2"})], config
    )
    (group,) = _assignment(ctx, f"outbound|9080|v1|{HOST}")["endpoints"]
    assert _addresses(group) == ["127.0.1.1"]
    assert group["metadata"]["filter_metadata"]["istio"]["config"].endswith("/destination-rule/reviews")
    _validate(ctx)


@pytest.mark.parametrize(
    "name",
    [
        f"outbound|9080|v9|{HOST}",
        "outbound|9999||reviews.default.svc.cluster.local",
        "outbound|80||nowhere.example",
        "x",
    ],
)
def test_unknown_clusters_get_an_empty_assignment(name):
    assert _assignment(_context([_endpoint("127.0.1.1")]), name) == {"cluster_name": name}


def test_tls_metadata_follows_the_rule_and_peer_authentication():
    endpoints = [_endpoint("127.0.1.1", labels={"app": "reviews"})]
    simple = _assignment(_context(endpoints, _rule("    tls: {mode: SIMPLE}")))
    assert (
        "envoy.transport_socket_match" not in simple["endpoints"][0]["lb_endpoints"][0]["metadata"]["filter_metadata"]
    )
    disabled = """
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: reviews}
spec:
  selector: {matchLabels: {app: reviews}}
  mtls: {mode: STRICT}
  portLevelMtls: {9080: {mode: DISABLE}}
"""
    plain = _assignment(_context(endpoints, disabled))
    assert "envoy.transport_socket_match" not in plain["endpoints"][0]["lb_endpoints"][0]["metadata"]["filter_metadata"]
    namespace_wide = "\n".join(line for line in disabled.splitlines() if "selector" not in line and "port" not in line)
    namespace_wide = namespace_wide.replace("STRICT", "DISABLE")
    plain = _assignment(_context(endpoints, namespace_wide))
    assert "envoy.transport_socket_match" not in plain["endpoints"][0]["lb_endpoints"][0]["metadata"]["filter_metadata"]
    other_workloads = disabled.replace("app: reviews", "app: ratings")
    istio = _assignment(_context(endpoints, other_workloads))
    assert "envoy.transport_socket_match" in istio["endpoints"][0]["lb_endpoints"][0]["metadata"]["filter_metadata"]


FAILOVER_ENDPOINTS = [
    _endpoint("127.0.1.1", "us-east/a/1"),
    _endpoint("127.0.1.2", "us-east/a/2"),
    _endpoint("127.0.1.3", "us-east/b/1"),
    _endpoint("127.0.1.4", "eu-west/a/1"),
    _endpoint("127.0.1.5", "ap-south/a/1"),
]


def _priorities(assignment: dict) -> dict[str, int]:
    return {addr: group.get("priority", 0) for group in assignment["endpoints"] for addr in _addresses(group)}


def test_locality_failover_needs_outlier_detection():
    ctx = _context(FAILOVER_ENDPOINTS, locality="us-east/a/1")
    assert set(_priorities(_assignment(ctx)).values()) == {0}


def test_locality_failover_orders_endpoints_by_proximity():
    ctx = _context(FAILOVER_ENDPOINTS, _rule("    outlierDetection: {consecutive5xxErrors: 3}"), locality="us-east/a/1")
    assert _priorities(_assignment(ctx)) == {
        "127.0.1.1": 0,
        "127.0.1.2": 1,
        "127.0.1.3": 2,
        "127.0.1.4": 3,
        "127.0.1.5": 3,
    }
    _validate(ctx)


def test_failover_regions_come_before_other_regions():
    policy = """
    outlierDetection: {consecutive5xxErrors: 3}
    loadBalancer: {localityLbSetting: {failover: [{from: us-east, to: eu-west}]}}
"""
    ctx = _context(FAILOVER_ENDPOINTS, _rule(policy), locality="us-east/a/1")
    priorities = _priorities(_assignment(ctx))
    assert (priorities["127.0.1.4"], priorities["127.0.1.5"]) == (3, 4)


def test_failover_priority_labels_split_localities():
    endpoints = [
        _endpoint("127.0.1.1", "us/a", labels={"net": "n1", "rack": "r1"}),
        _endpoint("127.0.1.2", "us/a", labels={"net": "n1", "rack": "r2"}),
        _endpoint("127.0.1.3", "us/a", labels={"net": "n2", "rack": "r1"}),
    ]
    policy = """
    outlierDetection: {consecutive5xxErrors: 3}
    loadBalancer: {localityLbSetting: {failoverPriority: [net, rack]}}
"""
    ctx = _context(endpoints, _rule(policy), locality="us/a", labels={"net": "n1", "rack": "r1"})
    assignment = _assignment(ctx)
    assert _priorities(assignment) == {"127.0.1.1": 0, "127.0.1.2": 1, "127.0.1.3": 2}
    assert [group["load_balancing_weight"] for group in assignment["endpoints"]] == [1, 1, 1]
    _validate(ctx)


def test_distribute_reweights_localities_and_drops_the_others():
    endpoints = [
        _endpoint("127.0.1.1", "us/a", weight=2),
        _endpoint("127.0.1.2", "us/a"),
        _endpoint("127.0.1.3", "us/b"),
        _endpoint("127.0.1.4", "eu/a"),
    ]
    policy = """
    loadBalancer:
      localityLbSetting:
        distribute: [{from: 'us/*', to: {'us/a': 80, 'us/b': 20}}]
"""
    ctx = _context(endpoints, _rule(policy), locality="us/a")
    groups = _assignment(ctx)["endpoints"]
    assert [(g["locality"]["zone"], g["load_balancing_weight"]) for g in groups] == [("a", 80), ("b", 20)]
    _validate(ctx)


def test_mesh_config_turning_locality_balancing_off_keeps_one_priority():
    ctx = _context(
        FAILOVER_ENDPOINTS,
        _rule(
            "    outlierDetection: {consecutive5xxErrors: 3}\n    loadBalancer: {localityLbSetting: {enabled: false}}"
        ),
        locality="us-east/a/1",
    )
    assert set(_priorities(_assignment(ctx)).values()) == {0}


def test_service_entry_endpoints_record_their_origin_and_dns_services_get_none():
    config = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: payments}
spec:
  hosts: [payments.example.com]
  ports: [{number: 443, name: https, protocol: HTTPS}]
  resolution: STATIC
  endpoints: [{address: 10.0.0.7, labels: {security.istio.io/tlsMode: istio}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: search}
spec:
  hosts: [search.example.com]
  ports: [{number: 443, name: https, protocol: HTTPS}]
  resolution: DNS
"""
    ctx = _context([], config)
    (group,) = _assignment(ctx, "outbound|443||payments.example.com")["endpoints"]
    assert group["metadata"]["filter_metadata"]["istio"]["config"] == (
        "/apis/networking.istio.io/v1/namespaces/default/service-entry/payments"
    )
    assert _addresses(group) == ["10.0.0.7"]
    assert _assignment(ctx, "outbound|443||search.example.com") == {"cluster_name": "outbound|443||search.example.com"}


def test_eds_cluster_names_lists_only_eds_clusters():
    clusters = build_clusters(_context([_endpoint("127.0.1.1")]))
    assert eds_cluster_names(clusters) == [REVIEWS]
