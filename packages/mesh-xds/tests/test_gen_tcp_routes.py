"""VirtualService ``tcp`` and ``tls`` routes on a sidecar's outbound listeners, DestinationRule TCP settings on
their TCP proxies, and ports of unknown protocol treated as TCP on both the listener and the cluster side;
every scenario accepted by a real Envoy."""

from __future__ import annotations

import logging

from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from google.protobuf import json_format

from mesh_config import PushContext, ServiceEntryRegistry, load_text
from mesh_model import AggregateRegistry, InMemoryRegistry, Protocol, Proxy, Service, ServicePort, Workload
from mesh_xds.generate import GenerationContext, SidecarAddresses
from mesh_xds.generate.cds import build_clusters
from mesh_xds.generate.eds import build_load_assignments, eds_cluster_names
from mesh_xds.generate.lds import build_listeners
from mesh_xds.generate.rds import build_routes
from mesh_xds.testing.envoy import validate_config
from mesh_xds.testing.render import static_bootstrap

INBOUND, APPLICATION, OUTBOUND = "127.0.7.1", "127.0.7.2", "127.0.7.3"
MONGO = "mongo.db.svc.cluster.local"
VS_PATH = "/apis/networking.istio.io/v1/namespaces/{}/virtual-service/{}"
DR_PATH = "/apis/networking.istio.io/v1/namespaces/db/destination-rule/mongo"

SUBSETS = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: mongo, namespace: db}
spec:
  host: mongo
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
---
"""


def _registry() -> InMemoryRegistry:
    registry = InMemoryRegistry()
    registry.upsert_service(
        Service(MONGO, "db", ports=[ServicePort("mongo", 27017, Protocol.MONGO)], selector={"app": "mongo"})
    )
    for index, version in enumerate(("v1", "v2"), start=1):
        labels = {"app": "mongo", "version": version}
        registry.upsert_workload(Workload(f"mongo-{version}", "db", addresses=[f"127.0.8.{index}"], labels=labels))
    for host in ("api.example.com", "legacy.example.com"):
        registry.upsert_service(Service(host, "default", ports=[ServicePort("tls", 443, Protocol.TLS)]))
    registry.upsert_service(Service("web.example.com", "default", ports=[ServicePort("https", 443, Protocol.HTTPS)]))
    shop = ServicePort("http", 8080, Protocol.HTTP)
    registry.upsert_service(Service("shop.default.svc.cluster.local", "default", ports=[shop]))
    registry.upsert_service(Service("admin.default.svc.cluster.local", "default", ports=[ServicePort("admin", 8080)]))
    registry.upsert_service(Service("raw.default.svc.cluster.local", "default", ports=[ServicePort("raw", 7000)]))
    return registry


def _context(config: str = "", *, labels: dict[str, str] | None = None, grpc: bool = False) -> GenerationContext:
    resources = load_text(config, default_namespace="default").raise_for_errors().resources
    registry = AggregateRegistry([_registry(), ServiceEntryRegistry(resources)])
    metadata = {"NAMESPACE": "default", "LABELS": labels or {"app": "client", "version": "v1"}}
    if grpc:
        metadata["GENERATOR"] = "grpc"
    proxy = Proxy.parse(f"sidecar~{INBOUND}~client-v1.default~default.svc.cluster.local", metadata)
    addresses = SidecarAddresses(INBOUND, APPLICATION, OUTBOUND)
    return GenerationContext(proxy, PushContext.build(resources, registry), registry, addresses=addresses)


def _virtual_service(name: str, namespace: str, body: str) -> str:
    return f"""\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}, namespace: {namespace}}}
spec:
{body}
---
"""


def _chains(ctx: GenerationContext, port: int) -> list[dict]:
    (listener,) = [item for item in build_listeners(ctx) if item.name == f"{OUTBOUND}_{port}"]
    return json_format.MessageToDict(listener, preserving_proto_field_name=True)["filter_chains"]


def _proxy(chain: dict) -> dict:
    (network_filter,) = chain["filters"]
    assert network_filter["name"] == "envoy.filters.network.tcp_proxy"
    config = dict(network_filter["typed_config"])
    assert config.pop("@type") == f"type.googleapis.com/{tcp_proxy_pb2.TcpProxy.DESCRIPTOR.full_name}"
    return config


def _configs(chain: dict) -> list[str]:
    entry = chain["metadata"]["filter_metadata"]["istio"]
    return entry.get("configs", [entry["config"]])


def _validate(ctx: GenerationContext) -> None:
    """The sidecar's listeners, routes, clusters and endpoints, in one static bootstrap a real Envoy accepts."""
    clusters = build_clusters(ctx)
    config = static_bootstrap(
        clusters=clusters,
        listeners=build_listeners(ctx),
        routes=build_routes(ctx),
        load_assignments=build_load_assignments(ctx, eds_cluster_names(clusters)),
    )
    validate_config(config, check=True)


# ------------------------------------------------------------------------------------------------------- tcp

MONGO_ROUTES = SUBSETS + _virtual_service(
    "mongo",
    "db",
    """\
  hosts: [mongo]
  tcp:
  - match: [{sourceLabels: {app: reporting}}]
    route: [{destination: {host: mongo, subset: v2}}]
  - match: [{port: 27018}, {sourceNamespace: other}, {gateways: [istio-system/ingress]}]
    route: [{destination: {host: mongo, subset: v2}}]
  - match: [{destinationSubnets: [10.0.0.0/8, 127.0.7.3]}]
    route: [{destination: {host: mongo, subset: v2}}]
  - match: [{gateways: [mesh], sourceLabels: {app: client}}]
    route:
    - {destination: {host: mongo, subset: v1}, weight: 90}
    - {destination: {host: mongo, subset: v2}, weight: 10}
    - {destination: {host: mongo}, weight: 0}
  - route: [{destination: {host: mongo}}]
""",
)


def test_the_first_tcp_route_whose_match_holds_for_the_proxy_splits_traffic_by_weight():
    chains = _chains(_context(MONGO_ROUTES), 27017)
    # Matches on other source labels, another port, namespace or gateway never apply to this proxy; a match on
    # destination subnets gives a chain of its own; the first route that applies to any destination ends the list.
    assert [chain.get("filter_chain_match") for chain in chains] == [
        {
            "prefix_ranges": [
                {"address_prefix": "10.0.0.0", "prefix_len": 8},
                {"address_prefix": "127.0.7.3", "prefix_len": 32},
            ]
        },
        None,
    ]
    assert _proxy(chains[0]) == {"stat_prefix": f"outbound|27017|v2|{MONGO}", "cluster": f"outbound|27017|v2|{MONGO}"}
    assert _proxy(chains[1]) == {
        "stat_prefix": "mongo.db",
        "weighted_clusters": {
            "clusters": [
                {"name": f"outbound|27017|v1|{MONGO}", "weight": 90},
                {"name": f"outbound|27017|v2|{MONGO}", "weight": 10},
            ]
        },
    }
    assert _configs(chains[0]) == _configs(chains[1]) == [VS_PATH.format("db", "mongo")]
    _validate(_context(MONGO_ROUTES))


def test_a_proxy_that_the_source_labels_select_takes_their_route():
    chains = _chains(_context(MONGO_ROUTES, labels={"app": "reporting"}), 27017)
    assert [_proxy(chain).get("cluster") for chain in chains] == [f"outbound|27017|v2|{MONGO}"]


def test_without_a_route_that_applies_the_port_keeps_its_own_cluster():
    only_subnets = SUBSETS + _virtual_service(
        "mongo",
        "db",
        """\
  hosts: [mongo]
  tcp:
  - match: [{destinationSubnets: [10.0.0.0/8]}]
    route: [{destination: {host: mongo, subset: v2}}]
""",
    )
    chains = _chains(_context(only_subnets), 27017)
    assert [_proxy(chain)["cluster"] for chain in chains] == [f"outbound|27017|v2|{MONGO}", f"outbound|27017||{MONGO}"]
    assert chains[1]["name"] == f"outbound|27017||{MONGO}"
    assert "filter_chain_match" not in chains[1]
    assert [_proxy(chain)["cluster"] for chain in _chains(_context(SUBSETS), 27017)] == [f"outbound|27017||{MONGO}"]


TCP_POLICY = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: mongo, namespace: db}
spec:
  host: mongo
  trafficPolicy:
    connectionPool: {tcp: {idleTimeout: 30m, maxConnectionDuration: 1h}}
    loadBalancer: {consistentHash: {useSourceIp: true}}
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}, trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}}
---
"""


def test_destination_rule_tcp_settings_shape_the_tcp_proxy_and_are_recorded():
    (chain,) = _chains(_context(TCP_POLICY), 27017)
    assert _proxy(chain) == {
        "stat_prefix": f"outbound|27017||{MONGO}",
        "cluster": f"outbound|27017||{MONGO}",
        "idle_timeout": "1800s",
        "max_downstream_connection_duration": "3600s",
        "hash_policy": [{"source_ip": {}}],
    }
    assert _configs(chain) == [DR_PATH]
    to_subset = _virtual_service(
        "mongo", "db", "  hosts: [mongo]\n  tcp:\n  - route: [{destination: {host: mongo, subset: v2}}]\n"
    )
    (chain,) = _chains(_context(TCP_POLICY + to_subset), 27017)
    proxy = _proxy(chain)
    assert (proxy["cluster"], proxy["idle_timeout"]) == (f"outbound|27017|v2|{MONGO}", "1800s")
    assert "hash_policy" not in proxy  # the subset balances round robin
    assert _configs(chain) == [DR_PATH, VS_PATH.format("db", "mongo")]
    _validate(_context(TCP_POLICY + to_subset))


# ------------------------------------------------------------------------------------------------------- tls

TLS_ROUTES = _virtual_service(
    "api",
    "default",
    """\
  hosts: [api.example.com]
  tls:
  - match: [{sniHosts: [api.example.com], sourceNamespace: other}]
    route: [{destination: {host: legacy.example.com}}]
  - match: [{sniHosts: [api.example.com]}, {sniHosts: [api.example.com], port: 443}]
    route:
    - {destination: {host: api.example.com}, weight: 70}
    - {destination: {host: legacy.example.com}, weight: 30}
""",
)


def _by_sni(chains: list[dict]) -> dict[tuple[str, ...], dict]:
    return {tuple(chain.get("filter_chain_match", {}).get("server_names", ())): chain for chain in chains}


def test_tls_routes_send_each_sni_to_their_destinations_and_other_services_keep_their_own():
    chains = _by_sni(_chains(_context(TLS_ROUTES), 443))
    assert list(chains) == [("api.example.com",), ("legacy.example.com",), ("web.example.com",)]
    assert _proxy(chains[("api.example.com",)])["weighted_clusters"]["clusters"] == [
        {"name": "outbound|443||api.example.com", "weight": 70},
        {"name": "outbound|443||legacy.example.com", "weight": 30},
    ]
    assert _configs(chains[("api.example.com",)]) == [VS_PATH.format("default", "api")]
    assert _proxy(chains[("web.example.com",)])["cluster"] == "outbound|443||web.example.com"
    _validate(_context(TLS_ROUTES))


def test_an_sni_routed_by_an_earlier_chain_is_not_routed_again(caplog):
    wildcard = _virtual_service(
        "example",
        "default",
        """\
  hosts: ["*.example.com"]
  tls:
  - match: [{sniHosts: ["*.example.com", api.example.com]}]
    route: [{destination: {host: legacy.example.com}}]
""",
    )
    with caplog.at_level(logging.WARNING, logger="mesh_xds.generate.lds"):
        chains = _by_sni(_chains(_context(TLS_ROUTES + wildcard), 443))
    # api.example.com is routed by the older VirtualService; the wildcard one keeps the other names, and the
    # services it also covers share its chain instead of getting their own.
    assert list(chains) == [("api.example.com",), ("*.example.com",)]
    assert _configs(chains[("*.example.com",)]) == [VS_PATH.format("default", "example")]
    assert "already routes api.example.com" in caplog.text
    assert caplog.text.count("already routes") == 1
    _validate(_context(TLS_ROUTES + wildcard))


# ------------------------------------------------------------------------------------------ unknown protocol


def test_a_port_of_unknown_protocol_is_tcp_on_the_listener_and_the_cluster(caplog):
    ctx = _context()
    raw = "outbound|7000||raw.default.svc.cluster.local"
    (chain,) = _chains(ctx, 7000)
    assert _proxy(chain)["cluster"] == raw
    clusters = {cluster.name: cluster for cluster in build_clusters(ctx)}
    assert not clusters[raw].typed_extension_protocol_options
    # Sharing a port with an HTTP service, it is not routed as HTTP: not sniffed, it cannot be told apart.
    with caplog.at_level(logging.WARNING, logger="mesh_xds.generate.lds"):
        (http,) = _chains(ctx, 8080)
    assert http["filters"][0]["name"] == "envoy.filters.network.http_connection_manager"
    assert "not reachable there: admin.default.svc.cluster.local" in caplog.text
    (routes,) = build_routes(ctx, ["8080"])
    assert [host.name for host in routes.virtual_hosts] == ["shop.default.svc.cluster.local:8080", "allow_any"]


def test_proxyless_grpc_clients_still_route_a_port_of_unknown_protocol_as_http():
    (routes,) = build_routes(_context(grpc=True), ["8080"])
    assert "admin.default.svc.cluster.local:8080" in [host.name for host in routes.virtual_hosts]
