"""CDS generation: the clusters Istio gives sidecars and gateways, checked field by field and by a real Envoy."""

from __future__ import annotations

import attrs

from mesh_config import default_mesh_config
from mesh_config.types import Duration
from mesh_model import Protocol, Service, ServicePort

REVIEWS = "outbound|9080||reviews.default.svc.cluster.local"
RATINGS = "outbound|9090||ratings.default.svc.cluster.local"
SPIFFE_REVIEWS = "spiffe://cluster.local/ns/default/sa/bookinfo-reviews"
HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
MAX = 4294967295


def _tls(cluster: dict) -> dict:
    return cluster["transport_socket"]["typed_config"]


def test_sidecar_gets_outbound_inbound_and_special_clusters(cluster_context, cluster_dicts):
    names = list(cluster_dicts(cluster_context()))
    assert names == [
        "BlackHoleCluster",
        "InboundPassthroughCluster",
        "PassthroughCluster",
        "inbound|9080||",
        "outbound|9080||productpage.default.svc.cluster.local",
        REVIEWS,
        RATINGS,
        "outbound|9091||ratings.default.svc.cluster.local",
    ]


def test_gateway_gets_outbound_clusters_and_black_hole_only(cluster_context, cluster_dicts):
    names = list(cluster_dicts(cluster_context(kind="router", labels={"istio": "ingressgateway"})))
    assert "BlackHoleCluster" in names
    assert not [n for n in names if n.startswith("inbound") or "Passthrough" in n]
    assert REVIEWS in names


def test_cluster_without_destination_rule_has_istio_defaults(cluster_context, cluster_dicts):
    cluster = cluster_dicts(cluster_context())[REVIEWS]
    assert cluster["type"] == "EDS"
    assert cluster["eds_cluster_config"] == {
        "eds_config": {"ads": {}, "initial_fetch_timeout": "0s", "resource_api_version": "V3"},
        "service_name": REVIEWS,
    }
    assert cluster["connect_timeout"] == "10s"
    assert cluster["lb_policy"] == "LEAST_REQUEST"
    assert cluster["circuit_breakers"]["thresholds"] == [
        {
            "max_connections": MAX,
            "max_pending_requests": MAX,
            "max_requests": MAX,
            "max_retries": MAX,
            "track_remaining": True,
        }
    ]
    assert cluster["alt_stat_name"] == f"{REVIEWS};"
    assert cluster["metadata"]["filter_metadata"]["istio"] == {
        "services": [{"host": "reviews.default.svc.cluster.local", "name": "reviews", "namespace": "default"}]
    }


def test_auto_mtls_matches_endpoints_by_tls_mode(cluster_context, cluster_dicts):
    cluster = cluster_dicts(cluster_context())[REVIEWS]
    assert "transport_socket" not in cluster
    istio, plain = cluster["transport_socket_matches"]
    assert (istio["name"], istio["match"]) == ("tlsMode-istio", {"tlsMode": "istio"})
    assert (plain["name"], plain["match"]) == ("tlsMode-disabled", {})
    assert plain["transport_socket"]["name"] == "envoy.transport_sockets.raw_buffer"
    context = istio["transport_socket"]["typed_config"]
    assert context["sni"] == "outbound_.9080_._.reviews.default.svc.cluster.local"
    common = context["common_tls_context"]
    assert common["alpn_protocols"] == ["istio-peer-exchange", "istio"]
    assert [s["name"] for s in common["tls_certificate_sds_secret_configs"]] == ["default"]
    sds = common["tls_certificate_sds_secret_configs"][0]["sds_config"]["api_config_source"]
    assert sds["grpc_services"] == [{"envoy_grpc": {"cluster_name": "sds-grpc"}}]
    validation = common["combined_validation_context"]
    assert validation["validation_context_sds_secret_config"]["name"] == "ROOTCA"
    assert validation["default_validation_context"]["match_typed_subject_alt_names"] == [
        {"san_type": "URI", "matcher": {"exact": SPIFFE_REVIEWS}}
    ]


def test_default_clusters_pass_envoy_validation(cluster_context, validate_clusters):
    validate_clusters(cluster_context())


def test_mesh_config_sets_connect_timeout_and_can_turn_auto_mtls_off(cluster_context, cluster_dicts):
    mesh = attrs.evolve(default_mesh_config(), connect_timeout=Duration.parse("2.5s"), enable_auto_mtls=False)
    cluster = cluster_dicts(cluster_context(mesh=mesh))[REVIEWS]
    assert cluster["connect_timeout"] == "2.500s"
    assert "transport_socket_matches" not in cluster
    assert "transport_socket" not in cluster


def test_namespace_peer_authentication_disable_turns_auto_mtls_off(cluster_context, cluster_dicts):
    config = """
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default}
spec: {mtls: {mode: DISABLE}}
"""
    assert "transport_socket_matches" not in cluster_dicts(cluster_context(config))[REVIEWS]


def test_grpc_ports_speak_http2_and_ports_of_unknown_protocol_are_plain_tcp(cluster_context, cluster_dicts):
    clusters = cluster_dicts(cluster_context())
    grpc = clusters[RATINGS]
    assert grpc["typed_extension_protocol_options"][HTTP_OPTIONS]["explicit_http_config"] == {
        "http2_protocol_options": {}
    }
    context = grpc["transport_socket_matches"][0]["transport_socket"]["typed_config"]
    assert context["common_tls_context"]["alpn_protocols"] == ["istio-peer-exchange", "istio", "h2"]
    # Not sniffed: the listener proxies TCP, so the cluster has no HTTP options, on sidecars and gateways alike.
    unknown = clusters["outbound|9091||ratings.default.svc.cluster.local"]
    assert "typed_extension_protocol_options" not in unknown
    tls = unknown["transport_socket_matches"][0]["transport_socket"]["typed_config"]
    assert tls["common_tls_context"]["alpn_protocols"] == ["istio-peer-exchange", "istio"]
    gateway = cluster_dicts(cluster_context(kind="router"))["outbound|9091||ratings.default.svc.cluster.local"]
    assert "typed_extension_protocol_options" not in gateway
    assert "outbound|53||ratings.default.svc.cluster.local" not in clusters


def test_subsets_get_clusters_that_record_the_rule(cluster_context, cluster_dicts):
    config = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
"""
    clusters = cluster_dicts(cluster_context(config))
    path = "/apis/networking.istio.io/v1/namespaces/default/destination-rule/reviews"
    v2 = clusters["outbound|9080|v2|reviews.default.svc.cluster.local"]
    assert v2["eds_cluster_config"]["service_name"] == "outbound|9080|v2|reviews.default.svc.cluster.local"
    assert v2["metadata"]["filter_metadata"]["istio"]["config"] == path
    assert v2["metadata"]["filter_metadata"]["istio"]["subset"] == "v2"
    sni = v2["transport_socket_matches"][0]["transport_socket"]["typed_config"]["sni"]
    assert sni == "outbound_.9080_.v2_.reviews.default.svc.cluster.local"
    assert clusters[REVIEWS]["metadata"]["filter_metadata"]["istio"]["config"] == path
    assert "config" not in clusters[RATINGS]["metadata"]["filter_metadata"]["istio"]


def test_only_tls_the_application_configures_turns_the_alpn_override_off(
    cluster_context, cluster_dicts, destination_rule
):
    # Istio (AddALPNOverrideToMetadata) marks SIMPLE and MUTUAL clusters only; auto mTLS, DISABLE and
    # ISTIO_MUTUAL keep Istio's ALPN.
    subsets = "  subsets:\n  - {name: v1, labels: {version: v1}}"
    for policy, marked in (
        ("    connectionPool: {tcp: {maxConnections: 10}}", False),
        ("    tls: {mode: DISABLE}", False),
        ("    tls: {mode: ISTIO_MUTUAL}", False),
        ("    tls: {mode: SIMPLE}", True),
    ):
        clusters = cluster_dicts(cluster_context(destination_rule(policy, extra=subsets)))
        for name in (REVIEWS, "outbound|9080|v1|reviews.default.svc.cluster.local"):
            metadata = clusters[name]["metadata"]["filter_metadata"]["istio"]
            assert ("alpn_override" in metadata) is marked, (policy, name)


def test_istio_mutual_from_the_rule_is_a_plain_transport_socket(
    cluster_context, cluster_dicts, destination_rule, validate_clusters
):
    cluster = cluster_dicts(cluster_context(destination_rule("    tls: {mode: ISTIO_MUTUAL}")))[REVIEWS]
    assert "transport_socket_matches" not in cluster
    context = _tls(cluster)
    assert context["sni"] == "outbound_.9080_._.reviews.default.svc.cluster.local"
    sans = context["common_tls_context"]["combined_validation_context"]["default_validation_context"]
    assert sans["match_typed_subject_alt_names"] == [{"san_type": "URI", "matcher": {"exact": SPIFFE_REVIEWS}}]
    assert "alpn_override" not in cluster["metadata"]["filter_metadata"]["istio"]
    validate_clusters(cluster_context(destination_rule("    tls: {mode: ISTIO_MUTUAL}")))


def test_istio_mutual_keeps_the_given_sni_and_names_and_expands_trust_domain_aliases(
    cluster_context, cluster_dicts, destination_rule
):
    mesh = attrs.evolve(default_mesh_config(), trust_domain_aliases=("old.example",))
    config = destination_rule(
        "    tls: {mode: ISTIO_MUTUAL, sni: reviews.example, subjectAltNames: [spiffe://x/ns/a/sa/b]}"
    )
    context = _tls(cluster_dicts(cluster_context(config))[REVIEWS])
    assert context["sni"] == "reviews.example"
    sans = context["common_tls_context"]["combined_validation_context"]["default_validation_context"]
    assert [m["matcher"]["exact"] for m in sans["match_typed_subject_alt_names"]] == ["spiffe://x/ns/a/sa/b"]
    aliased = _tls(
        cluster_dicts(cluster_context(destination_rule("    tls: {mode: ISTIO_MUTUAL}"), mesh=mesh))[REVIEWS]
    )
    names = aliased["common_tls_context"]["combined_validation_context"]["default_validation_context"]
    assert [m["matcher"]["exact"] for m in names["match_typed_subject_alt_names"]] == [
        SPIFFE_REVIEWS,
        "spiffe://old.example/ns/default/sa/bookinfo-reviews",
    ]


def test_simple_tls_trusts_the_system_roots_and_sets_auto_sni(cluster_context, cluster_dicts, destination_rule):
    cluster = cluster_dicts(cluster_context(destination_rule("    tls: {mode: SIMPLE}")))[REVIEWS]
    common = _tls(cluster)["common_tls_context"]
    assert common["combined_validation_context"]["validation_context_sds_secret_config"]["name"] == "file-root:system"
    assert "tls_certificate_sds_secret_configs" not in common
    upstream = cluster["typed_extension_protocol_options"][HTTP_OPTIONS]["upstream_http_protocol_options"]
    assert upstream == {"auto_sni": True, "auto_san_validation": True}
    assert cluster["metadata"]["filter_metadata"]["istio"]["alpn_override"] == "false"


def test_mutual_tls_reads_certificates_from_files_through_sds(
    cluster_context, cluster_dicts, destination_rule, validate_clusters
):
    config = destination_rule(
        "    tls: {mode: MUTUAL, clientCertificate: /etc/certs/cert.pem, privateKey: /etc/certs/key.pem,"
        " caCertificates: /etc/certs/ca.pem, sni: api.example, subjectAltNames: [api.example]}",
        "ratings",
    )
    cluster = cluster_dicts(cluster_context(config))[RATINGS]
    context = _tls(cluster)
    common = context["common_tls_context"]
    assert context["sni"] == "api.example"
    assert common["tls_certificate_sds_secret_configs"][0]["name"] == "file-cert:/etc/certs/cert.pem~/etc/certs/key.pem"
    validation = common["combined_validation_context"]
    assert validation["validation_context_sds_secret_config"]["name"] == "file-root:/etc/certs/ca.pem"
    assert validation["default_validation_context"]["match_typed_subject_alt_names"] == [
        {"san_type": "DNS", "matcher": {"exact": "api.example"}}
    ]
    assert common["alpn_protocols"] == ["h2"]
    validate_clusters(cluster_context(config))


def test_insecure_skip_verify_validates_nothing(cluster_context, cluster_dicts, destination_rule):
    cluster = cluster_dicts(cluster_context(destination_rule("    tls: {mode: SIMPLE, insecureSkipVerify: true}")))[
        REVIEWS
    ]
    assert _tls(cluster)["common_tls_context"]["validation_context"] == {}
    upstream = cluster["typed_extension_protocol_options"][HTTP_OPTIONS]["upstream_http_protocol_options"]
    assert upstream == {"auto_sni": True}


def test_credential_name_is_fetched_over_ads_on_gateways_and_ignored_on_sidecars(
    cluster_context, cluster_dicts, destination_rule, validate_clusters
):
    config = destination_rule("    tls: {mode: MUTUAL, credentialName: reviews-client}")
    gateway = _tls(cluster_dicts(cluster_context(config, kind="router"))[REVIEWS])["common_tls_context"]
    certificate = gateway["tls_certificate_sds_secret_configs"][0]
    assert certificate == {
        "name": "kubernetes://reviews-client",
        "sds_config": {"ads": {}, "resource_api_version": "V3"},
    }
    root = gateway["combined_validation_context"]["validation_context_sds_secret_config"]
    assert root["name"] == "kubernetes://reviews-client-cacert"
    sidecar = cluster_dicts(cluster_context(config))[REVIEWS]
    assert "transport_socket" not in sidecar
    assert "transport_socket_matches" not in sidecar
    validate_clusters(cluster_context(config, kind="router"))


def test_tls_disable_turns_auto_mtls_off(cluster_context, cluster_dicts, destination_rule):
    cluster = cluster_dicts(cluster_context(destination_rule("    tls: {mode: DISABLE}")))[REVIEWS]
    assert "transport_socket" not in cluster
    assert "transport_socket_matches" not in cluster


def test_proxy_protocol_wraps_the_transport_sockets(
    cluster_context, cluster_dicts, destination_rule, validate_clusters
):
    cluster = cluster_dicts(cluster_context(destination_rule("    proxyProtocol: {version: V2}")))[REVIEWS]
    for match in cluster["transport_socket_matches"]:
        socket = match["transport_socket"]
        assert socket["name"] == "envoy.transport_sockets.upstream_proxy_protocol"
        assert socket["typed_config"]["config"] == {"version": "V2"}
    assert cluster["transport_socket_matches"][1]["transport_socket"]["typed_config"]["transport_socket"]["name"] == (
        "envoy.transport_sockets.raw_buffer"
    )
    validate_clusters(cluster_context(destination_rule("    proxyProtocol: {version: V2}")))


SERVICE_ENTRIES = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: external-api}
spec:
  hosts: [api.example.com]
  location: MESH_EXTERNAL
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: mirrors}
spec:
  hosts: [mirror.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS_ROUND_ROBIN
  endpoints: [{address: a.mirror.example.com}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: passthrough}
spec:
  hosts: [db.internal]
  addresses: [10.9.0.0/16]
  ports: [{number: 5432, name: tcp, protocol: TCP}]
  resolution: NONE
"""


def test_dns_service_entries_get_dns_clusters_with_inline_endpoints(cluster_context, cluster_dicts, validate_clusters):
    clusters = cluster_dicts(cluster_context(SERVICE_ENTRIES))
    api = clusters["outbound|443||api.example.com"]
    assert api["type"] == "STRICT_DNS"
    assert (api["dns_lookup_family"], api["dns_refresh_rate"], api["respect_dns_ttl"]) == ("V4_ONLY", "60s", True)
    (group,) = api["load_assignment"]["endpoints"]
    assert group["lb_endpoints"][0]["endpoint"]["address"]["socket_address"] == {
        "address": "api.example.com",
        "port_value": 443,
    }
    assert api["metadata"]["filter_metadata"]["istio"]["external"] is True
    assert api["metadata"]["filter_metadata"]["istio"]["config"] == (
        "/apis/networking.istio.io/v1/namespaces/default/service-entry/external-api"
    )
    assert "transport_socket_matches" not in api
    mirrors = clusters["outbound|80||mirror.example.com"]
    assert mirrors["type"] == "LOGICAL_DNS"
    (group,) = mirrors["load_assignment"]["endpoints"]
    assert group["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]["address"] == "a.mirror.example.com"
    validate_clusters(cluster_context(SERVICE_ENTRIES))


def test_resolution_none_is_original_dst_on_sidecars_and_eds_on_gateways(cluster_context, cluster_dicts):
    sidecar = cluster_dicts(cluster_context(SERVICE_ENTRIES))["outbound|5432||db.internal"]
    assert (sidecar["type"], sidecar["lb_policy"]) == ("ORIGINAL_DST", "CLUSTER_PROVIDED")
    assert "eds_cluster_config" not in sidecar
    gateway = cluster_dicts(cluster_context(SERVICE_ENTRIES, kind="router"))["outbound|5432||db.internal"]
    assert gateway["type"] == "EDS"


def test_inbound_clusters_point_at_the_application_on_the_target_port(
    cluster_registry, cluster_context, cluster_dicts, validate_clusters
):
    registry = cluster_registry()
    registry.upsert_service(
        Service(
            "details.default.svc.cluster.local",
            "default",
            ports=[ServicePort("http", 80, Protocol.HTTP, target_port=8080), ServicePort("grpc", 9080, Protocol.GRPC)],
            selector={"app": "productpage"},
        )
    )
    clusters = cluster_dicts(cluster_context(registry=registry))
    inbound = clusters["inbound|8080||"]
    assert inbound["type"] == "STATIC"
    address = inbound["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
    assert address["socket_address"] == {"address": "127.0.3.2", "port_value": 8080}
    shared = clusters["inbound|9080||"]
    hosts = [s["host"] for s in shared["metadata"]["filter_metadata"]["istio"]["services"]]
    assert hosts == ["details.default.svc.cluster.local", "productpage.default.svc.cluster.local"]
    assert shared["typed_extension_protocol_options"][HTTP_OPTIONS]["explicit_http_config"] == {
        "http2_protocol_options": {}
    }
    assert shared["circuit_breakers"]["thresholds"][0]["max_connections"] == MAX
    assert "transport_socket" not in shared
    validate_clusters(cluster_context(registry=registry))


def test_inbound_connection_pool_comes_from_the_rule_then_the_sidecar(cluster_context, cluster_dicts, destination_rule):
    rule = destination_rule("    connectionPool: {tcp: {maxConnections: 7}}", "productpage")
    inbound = cluster_dicts(cluster_context(rule))["inbound|9080||"]
    assert inbound["circuit_breakers"]["thresholds"][0]["max_connections"] == 7
    assert inbound["metadata"]["filter_metadata"]["istio"]["config"].endswith("destination-rule/productpage")
    sidecar = """
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default}
spec:
  inboundConnectionPool: {tcp: {maxConnections: 3}}
"""
    overridden = cluster_dicts(cluster_context(rule + sidecar))["inbound|9080||"]
    assert overridden["circuit_breakers"]["thresholds"][0]["max_connections"] == 3
    assert len(overridden["metadata"]["filter_metadata"]["istio"]["configs"]) == 2


def test_sidecar_scope_limits_the_outbound_clusters(cluster_context, cluster_dicts):
    config = """
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default}
spec:
  egress: [{hosts: [./reviews.default.svc.cluster.local]}]
"""
    outbound = [name for name in cluster_dicts(cluster_context(config)) if name.startswith("outbound")]
    assert outbound == [REVIEWS]


def test_special_clusters(cluster_context, cluster_dicts):
    clusters = cluster_dicts(cluster_context())
    black_hole = clusters["BlackHoleCluster"]
    assert (black_hole["type"], black_hole["connect_timeout"]) == ("STATIC", "10s")
    assert "load_assignment" not in black_hole
    passthrough = clusters["PassthroughCluster"]
    assert (passthrough["type"], passthrough["lb_policy"]) == ("ORIGINAL_DST", "CLUSTER_PROVIDED")
    options = passthrough["typed_extension_protocol_options"][HTTP_OPTIONS]
    assert options["common_http_protocol_options"] == {"idle_timeout": "300s"}
    assert "use_downstream_protocol_config" in options
    inbound = clusters["InboundPassthroughCluster"]
    assert inbound["upstream_bind_config"]["source_address"] == {"address": "127.0.0.6", "port_value": 0}
