"""The SNI-DNAT clusters of gateways with ``AUTO_PASSTHROUGH`` servers: one per port and subset of each service a
server exposes, named after Istio's mTLS SNI, with the endpoints of the outbound cluster and no upstream TLS, so
that the client's mutual TLS reaches the endpoint untouched; checked with a real Envoy."""

from __future__ import annotations

from google.protobuf import json_format

from mesh_config import PushContext, load_text
from mesh_model import InMemoryRegistry, Protocol, Proxy, Service, ServicePort, Workload
from mesh_xds.generate import GenerationContext
from mesh_xds.generate.cds import build_clusters
from mesh_xds.generate.eds import build_load_assignments, eds_cluster_names
from mesh_xds.generate.gateway_lds import build_gateway_listeners
from mesh_xds.generate.names import outbound_sni, parse_outbound_sni
from mesh_xds.resource import CLUSTER_TYPE, references
from mesh_xds.testing.envoy import validate_config
from mesh_xds.testing.render import static_bootstrap

REVIEWS = "reviews.default.svc.cluster.local"


def _gateway(name: str, port: str, tls: str = "") -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: {name}, namespace: istio-system}}
spec:
  selector: {{istio: eastwestgateway}}
  servers:
  - port: {port}
    hosts: ["*.default.svc.cluster.local"]
    {tls}
---
"""


CROSS_NETWORK = _gateway("cross-network", "{number: 15443, name: tls, protocol: TLS}", "tls: {mode: AUTO_PASSTHROUGH}")
RULE = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}, connectionPool: {tcp: {maxConnections: 7}}}
  subsets: [{name: v1, labels: {version: v1}}]
---
"""


def _registry() -> InMemoryRegistry:
    registry = InMemoryRegistry()
    http = [ServicePort("http", 9080, Protocol.HTTP)]
    registry.upsert_service(Service(REVIEWS, "default", http, selector={"app": "reviews"}))
    registry.upsert_service(Service("ratings.default.svc.cluster.local", "default", http))
    registry.upsert_service(Service("dns.default.svc.cluster.local", "default", [ServicePort("dns", 53, Protocol.UDP)]))
    registry.upsert_service(Service("mysql.db.svc.cluster.local", "db", [ServicePort("tcp", 3306, Protocol.TCP)]))
    for index, version in enumerate(("v1", "v2"), start=2):
        labels = {"app": "reviews", "version": version}
        registry.upsert_workload(
            Workload(f"reviews-{version}", "default", addresses=[f"127.0.9.{index}"], labels=labels)
        )
    return registry


def _context(config: str, kind: str = "router") -> GenerationContext:
    resources = load_text(config, default_namespace="istio-system").raise_for_errors().resources
    registry = _registry()
    metadata = {"NAMESPACE": "istio-system", "LABELS": {"istio": "eastwestgateway"}}
    proxy = Proxy.parse(f"{kind}~127.0.9.1~eastwest-1.istio-system~istio-system.svc.cluster.local", metadata)
    return GenerationContext(proxy, PushContext.build(resources, registry), registry)


def _sni_dnat(ctx: GenerationContext) -> list[str]:
    return [cluster.name for cluster in build_clusters(ctx) if cluster.name.startswith("outbound_.")]


def test_every_port_and_subset_of_the_exposed_services_gets_a_cluster_its_chain_proxies_to():
    ctx = _context(CROSS_NETWORK + RULE)
    # Not mysql (the server exposes only default's services), nor the UDP port.
    assert _sni_dnat(ctx) == [
        "outbound_.9080_._.ratings.default.svc.cluster.local",
        f"outbound_.9080_._.{REVIEWS}",
        f"outbound_.9080_.v1_.{REVIEWS}",
    ]
    listeners = build_gateway_listeners(ctx)
    routed = {ref.name for listener in listeners for ref in references(listener) if ref.type_url == CLUSTER_TYPE}
    assert routed == set(_sni_dnat(ctx))


def test_a_sni_dnat_cluster_has_the_rule_policy_and_the_outbound_endpoints_but_no_upstream_tls():
    ctx = _context(CROSS_NETWORK + RULE)
    clusters = {cluster.name: cluster for cluster in build_clusters(ctx)}
    subset = json_format.MessageToDict(clusters[f"outbound_.9080_.v1_.{REVIEWS}"], preserving_proto_field_name=True)
    assert (subset["type"], subset["eds_cluster_config"]["service_name"]) == ("EDS", f"outbound_.9080_.v1_.{REVIEWS}")
    assert subset["circuit_breakers"]["thresholds"][0]["max_connections"] == 7
    assert "transport_socket" not in subset
    assert "transport_socket_matches" not in subset
    assert clusters[f"outbound|9080|v1|{REVIEWS}"].HasField("transport_socket")  # ISTIO_MUTUAL, when originating
    assignments = build_load_assignments(ctx, eds_cluster_names(clusters.values()))
    addresses = {
        item.cluster_name: [lb.endpoint.address.socket_address.address for g in item.endpoints for lb in g.lb_endpoints]
        for item in assignments
    }
    assert addresses[f"outbound_.9080_._.{REVIEWS}"] == addresses[f"outbound|9080||{REVIEWS}"]
    assert addresses[f"outbound_.9080_._.{REVIEWS}"] == ["127.0.9.2", "127.0.9.3"]
    assert addresses[f"outbound_.9080_.v1_.{REVIEWS}"] == ["127.0.9.2"]
    config = static_bootstrap(
        clusters=clusters.values(), listeners=build_gateway_listeners(ctx), load_assignments=assignments
    )
    validate_config(config, check=True)


def test_only_auto_passthrough_gateways_get_them():
    simple = _gateway("plain", "{number: 8443, name: tls, protocol: TLS}", "tls: {mode: PASSTHROUGH}")
    assert _sni_dnat(_context(simple + RULE)) == []
    assert _sni_dnat(_context(CROSS_NETWORK + RULE, kind="sidecar")) == []


def test_sni_dnat_names_read_back_as_port_subset_and_host():
    assert parse_outbound_sni(outbound_sni(9080, REVIEWS, "v1")) == (9080, "v1", REVIEWS)
    assert parse_outbound_sni(outbound_sni(9080, REVIEWS)) == (9080, "", REVIEWS)
    for name in (f"outbound|9080||{REVIEWS}", "outbound_.http_._.reviews", "outbound_.9080_._.", "inbound_.1_._.x"):
        assert parse_outbound_sni(name) is None
