"""Proxyless gRPC generation: the listeners, routes, clusters and endpoints Istio gives a gRPC client.

The shapes are checked field by field and by a real Envoy (an api listener rendered as a bound listener);
one test runs grpcio's own xDS client, in a subprocess, against an XdsServer serving the generated snapshot.
"""

from __future__ import annotations

import logging

import pytest
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from google.protobuf import json_format

from mesh_config import PushContext, ServiceEntryRegistry, load_text
from mesh_model import AggregateRegistry, InMemoryRegistry, Protocol, Proxy, Service, ServicePort, Workload
from mesh_xds import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    InvalidResourceError,
    Snapshot,
    SyncState,
)
from mesh_xds.bootstrap import DiscoveryAddress, GrpcBootstrapOptions, NodeIdentity, grpc_bootstrap, write_bootstrap
from mesh_xds.generate import GenerationContext
from mesh_xds.generate.grpc import (
    build_grpc_clusters,
    build_grpc_listeners,
    build_grpc_resources,
    build_grpc_routes,
)
from mesh_xds.testing.envoy import validate_config
from mesh_xds.testing.proxyless import ProxylessClient, WhoamiServer
from mesh_xds.testing.render import static_bootstrap

HOST = "echo.default.svc.cluster.local"
DEFAULT = f"outbound|8080||{HOST}"
V1 = f"outbound|8080|v1|{HOST}"
V2 = f"outbound|8080|v2|{HOST}"

SUBSETS = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: echo}
spec:
  host: echo
  trafficPolicy: {loadBalancer: {simple: LEAST_REQUEST}}
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
"""

SPLIT = (
    SUBSETS
    + """
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo}
spec:
  hosts: [echo]
  http:
  - match: [{headers: {x-canary: {exact: "yes"}}, uri: {exact: /mesh.test.Echo/Whoami}}]
    route: [{destination: {host: echo, subset: v2}}]
    fault: {abort: {grpcStatus: UNAVAILABLE, percentage: {value: 10}}}
    corsPolicy: {allowOrigins: [{exact: "https://example.com"}]}
    mirror: {host: echo, subset: v1}
  - match: [{uri: {prefix: /mesh.test.}}]
    route:
    - {destination: {host: echo, subset: v1}, weight: 80}
    - {destination: {host: echo, subset: v2}, weight: 20}
    timeout: 3s
    retries: {attempts: 4, retryOn: "unavailable,resource-exhausted"}
"""
)

TO_V2 = (
    SUBSETS
    + """
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo}
spec:
  hosts: [echo]
  http:
  - route: [{destination: {host: echo, subset: v2}, weight: 100}]
"""
)


def _registry(addresses: dict[str, tuple[str, int]] | None = None) -> InMemoryRegistry:
    registry = InMemoryRegistry()
    ports = [ServicePort("grpc", 8080, Protocol.GRPC), ServicePort("tcp-admin", 9000, Protocol.TCP)]
    registry.upsert_service(Service(HOST, "default", ports=ports, selector={"app": "echo"}))
    registry.upsert_service(
        Service(
            "ratings.other.svc.cluster.local",
            "other",
            ports=[ServicePort("grpc", 9090, Protocol.GRPC), ServicePort("dns", 53, Protocol.UDP)],
        )
    )
    addresses = addresses or {"v1": ("127.0.9.1", 5001), "v2": ("127.0.9.2", 5002)}
    for version, (address, port) in addresses.items():
        registry.upsert_workload(
            Workload(
                f"echo-{version}",
                "default",
                addresses=[address],
                labels={"app": "echo", "version": version},
                ports={"grpc": port, "tcp-admin": 9000},
                locality=f"region-{version}/zone-a",
            )
        )
    return registry


def _context(
    config: str = "",
    *,
    namespace: str = "default",
    registry: InMemoryRegistry | None = None,
    node_id: str = "",
    metadata: dict | None = None,
) -> GenerationContext:
    resources = load_text(config, default_namespace="default").raise_for_errors().resources
    services = AggregateRegistry([registry or _registry(), ServiceEntryRegistry(resources)])
    push = PushContext.build(resources, services)
    node_id = node_id or f"sidecar~127.0.0.1~client.{namespace}~{namespace}.svc.cluster.local"
    proxy = Proxy.parse(node_id, metadata or {"NAMESPACE": namespace, "GENERATOR": "grpc"})
    return GenerationContext(proxy, push, services)


def _dict(message) -> dict:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def _by_name(messages) -> dict[str, dict]:
    return {getattr(m, "name", "") or m.cluster_name: _dict(m) for m in messages}


def _manager(listener) -> hcm_pb2.HttpConnectionManager:
    manager = hcm_pb2.HttpConnectionManager()
    assert listener.api_listener.api_listener.Unpack(manager)
    return manager


def _route_of(resources, name: str) -> dict:
    return next(_dict(m) for m in resources if type(m).__name__ == "RouteConfiguration" and m.name == name)


# ----------------------------------------------------------------------------------------------- listeners


def test_every_port_of_every_visible_service_gets_an_api_listener_fetching_its_routes_over_ads():
    listeners = build_grpc_listeners(_context())
    assert [listener.name for listener in listeners] == [
        f"{HOST}:8080",
        f"{HOST}:9000",
        "ratings.other.svc.cluster.local:9090",
    ]
    manager = _manager(listeners[0])
    assert [f.name for f in manager.http_filters] == ["envoy.filters.http.fault", "envoy.filters.http.router"]
    assert manager.rds.route_config_name == DEFAULT
    assert manager.rds.config_source.HasField("ads")
    assert not listeners[0].filter_chains


@pytest.mark.parametrize(
    "name", ["echo:8080", "echo.default:8080", "echo.default.svc:8080", f"{HOST}:8080", f"{HOST.upper()}.:8080"]
)
def test_a_name_the_client_dials_resolves_from_the_proxy_namespace_and_names_the_listener(name):
    (listener,) = build_grpc_listeners(_context(), [name])
    assert listener.name == name
    assert _manager(listener).rds.route_config_name == DEFAULT


def test_another_namespace_reaches_a_service_by_its_namespaced_name_only():
    ctx = _context(namespace="other")
    names = ["echo:8080", "echo.default:8080", "ratings:9090"]
    assert [listener.name for listener in build_grpc_listeners(ctx, names)] == ["echo.default:8080", "ratings:9090"]


@pytest.mark.parametrize(
    "name",
    [
        "missing:8080",
        "echo:8081",
        "echo",  # two ports: which one is not known
        "ratings.other:53",  # UDP
        "xds.istio.io/grpc/lds/inbound/127.0.0.1:8080",
        "",
    ],
)
def test_a_name_that_resolves_to_no_service_port_gets_no_listener(name):
    assert build_grpc_listeners(_context(), [name]) == []


def test_a_name_without_a_port_takes_the_service_only_port():
    (listener,) = build_grpc_listeners(_context(namespace="other"), ["ratings"])
    assert listener.name == "ratings"
    assert _manager(listener).rds.route_config_name == "outbound|9090||ratings.other.svc.cluster.local"


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda ctx: build_grpc_listeners(ctx, "echo:8080"), "listener names must be an iterable of names"),
        (lambda ctx: build_grpc_routes(ctx, [DEFAULT, 8080]), "route configuration names: 8080 is not a name"),
        (lambda ctx: build_grpc_clusters(ctx, DEFAULT), "cluster names must be an iterable of names"),
        (lambda ctx: build_grpc_resources(ctx, listener_names=[None]), "listener names: None is not a name"),
    ],
)
def test_names_that_are_not_a_list_of_strings_are_refused_with_a_message_naming_them(build, message):
    with pytest.raises(InvalidResourceError) as raised:
        build(_context())
    assert message in str(raised.value)


# ------------------------------------------------------------------------------------------------- routes


def test_a_virtual_service_split_becomes_weighted_subset_clusters_with_grpc_timeouts_and_retries():
    (configuration,) = build_grpc_routes(_context(SPLIT), [DEFAULT])
    route = _dict(configuration)
    assert route["name"] == DEFAULT
    (host,) = route["virtual_hosts"]
    assert host["name"] == f"{HOST}:8080"
    assert host["domains"] == ["*"]
    canary, split = host["routes"]

    assert canary["match"]["path"] == "/mesh.test.Echo/Whoami"
    assert canary["match"]["headers"] == [{"name": "x-canary", "string_match": {"exact": "yes"}}]
    assert canary["route"]["cluster"] == V2
    assert canary["typed_per_filter_config"]["envoy.filters.http.fault"]["abort"]["grpc_status"] == 14
    assert list(canary["typed_per_filter_config"]) == ["envoy.filters.http.fault"]  # CORS would be refused
    assert "request_mirror_policies" not in canary["route"]
    assert canary["metadata"]["filter_metadata"]["istio"]["config"].endswith("/virtual-service/echo")

    assert split["match"]["prefix"] == "/mesh.test."
    assert split["route"]["weighted_clusters"]["clusters"] == [{"name": V1, "weight": 80}, {"name": V2, "weight": 20}]
    assert split["route"]["max_stream_duration"] == {"max_stream_duration": "3s"}
    assert split["route"]["retry_policy"]["num_retries"] == 4
    assert split["route"]["retry_policy"]["retry_on"] == "unavailable,resource-exhausted"


def test_without_a_virtual_service_every_call_goes_to_the_default_cluster_with_istio_retries():
    route = _dict(build_grpc_routes(_context(), [DEFAULT])[0])
    (only,) = route["virtual_hosts"][0]["routes"]
    assert only["match"] == {"prefix": "/"}
    assert only["route"]["cluster"] == DEFAULT
    assert only["route"]["max_stream_duration"] == {"max_stream_duration": "0s"}
    assert only["route"]["retry_policy"]["num_retries"] == 2


def test_a_tcp_port_still_gets_a_route_as_a_grpc_client_always_speaks_http2():
    name = f"outbound|9000||{HOST}"
    route = _dict(build_grpc_routes(_context(), [name])[0])
    assert route["virtual_hosts"][0]["routes"][0]["route"]["cluster"] == name


def test_route_names_of_unknown_services_get_an_empty_configuration_and_other_names_nothing():
    unknown = "outbound|8080||missing.default.svc.cluster.local"
    routes = build_grpc_routes(_context(), [unknown, "8080", "echo:8080"])
    assert [(route.name, len(route.virtual_hosts)) for route in routes] == [(unknown, 0)]


# ----------------------------------------------------------------------------------------------- clusters


def test_each_port_and_subset_gets_a_round_robin_eds_cluster_and_other_policies_are_logged(caplog):
    caplog.set_level(logging.INFO, logger="mesh_xds.generate")
    clusters = _by_name(build_grpc_clusters(_context(SUBSETS)))
    assert list(clusters) == [
        V1,
        V2,
        DEFAULT,
        f"outbound|9000|v1|{HOST}",
        f"outbound|9000|v2|{HOST}",
        f"outbound|9000||{HOST}",
        "outbound|9090||ratings.other.svc.cluster.local",
    ]
    cluster = clusters[V2]
    assert cluster["type"] == "EDS"
    assert cluster["eds_cluster_config"] == {
        "eds_config": {"ads": {}, "resource_api_version": "V3"},
        "service_name": V2,
    }
    assert cluster.get("lb_policy", "ROUND_ROBIN") == "ROUND_ROBIN"
    assert "transport_socket" not in cluster
    assert "transport_socket_matches" not in cluster
    assert cluster["metadata"]["filter_metadata"]["istio"]["config"].endswith("/destination-rule/echo")
    assert f"cluster {V2}: gRPC clients do not support LEAST_REQUEST, using ROUND_ROBIN" in caplog.messages


@pytest.mark.parametrize(
    ("hashing", "ring"),
    [
        ("{httpHeaderName: x-user}", "1024"),
        ("{httpHeaderName: x-user, ringHash: {minimumRingSize: 2048}}", "2048"),
        ("{httpHeaderName: x-user, maglev: {tableSize: 65537}}", "1024"),
        ("{httpHeaderName: x-user, minimumRingSize: 99999999}", "8388608"),
    ],
)
def test_a_consistent_hash_becomes_a_ring_hash_cluster_and_a_header_hash_policy(hashing, ring):
    config = f"""
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: echo}}
spec:
  host: echo
  trafficPolicy: {{loadBalancer: {{consistentHash: {hashing}}}}}
"""
    ctx = _context(config)
    (cluster,) = build_grpc_clusters(ctx, [DEFAULT])
    assert _dict(cluster)["lb_policy"] == "RING_HASH"
    assert _dict(cluster)["ring_hash_lb_config"] == {"minimum_ring_size": ring}
    route = _dict(build_grpc_routes(ctx, [DEFAULT])[0])
    assert route["virtual_hosts"][0]["routes"][0]["route"]["hash_policy"] == [{"header": {"header_name": "x-user"}}]


def test_requested_cluster_names_get_their_clusters_and_unknown_ones_an_empty_eds_cluster():
    unknown_subset = f"outbound|8080|v9|{HOST}"
    clusters = build_grpc_clusters(_context(SUBSETS), [V1, unknown_subset, "BlackHoleCluster"])
    assert [cluster.name for cluster in clusters] == [V1, unknown_subset]


def test_a_dns_service_entry_gets_a_logical_dns_cluster_with_its_first_endpoint():
    config = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api}
spec:
  hosts: [api.example.com]
  location: MESH_EXTERNAL
  resolution: DNS
  ports: [{number: 443, name: grpc, protocol: GRPC}]
  endpoints: [{address: a.example.com}, {address: b.example.com}]
"""
    (cluster,) = build_grpc_clusters(_context(config), ["outbound|443||api.example.com"])
    shape = _dict(cluster)
    assert shape["type"] == "LOGICAL_DNS"
    (locality,) = shape["load_assignment"]["endpoints"]
    (endpoint,) = locality["lb_endpoints"]
    assert endpoint["endpoint"]["address"]["socket_address"] == {"address": "a.example.com", "port_value": 443}
    assert locality["load_balancing_weight"] == 1


def test_endpoints_without_a_locality_still_carry_the_locality_field_grpc_requires():
    config = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: greeter}
spec:
  hosts: [greeter.example.com]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 50051, name: grpc, protocol: GRPC}]
  endpoints: [{address: 127.0.9.7}]
"""
    resources = build_grpc_resources(_context(config), listener_names=["greeter.example.com:50051"])
    assignments = _by_name(m for m in resources if type(m).__name__ == "ClusterLoadAssignment")
    (locality,) = assignments["outbound|50051||greeter.example.com"]["endpoints"]
    assert locality["locality"] == {}  # present though empty: grpcio refuses the assignment otherwise
    assert locality["load_balancing_weight"] == 1


# ------------------------------------------------------------------------------------ the whole resource set


def test_the_resources_form_a_consistent_snapshot_with_weighted_localities_for_the_subsets():
    config = SPLIT.replace("subset: v1}, weight: 80", "subset: v3}, weight: 80")  # v3 is not defined
    resources = build_grpc_resources(_context(config), listener_names=["echo:8080", "missing:1"])
    snapshot = Snapshot.from_messages(resources)
    assert snapshot.missing() == ()
    assert snapshot.resources(LISTENER_TYPE).names == (
        f"{HOST}:8080",
        f"{HOST}:9000",
        "echo:8080",
        "ratings.other.svc.cluster.local:9090",
    )
    assert f"outbound|8080|v3|{HOST}" in snapshot.resources(CLUSTER_TYPE)
    assignments = _by_name(m for m in resources if type(m).__name__ == "ClusterLoadAssignment")
    assert "endpoints" not in assignments[f"outbound|8080|v3|{HOST}"]
    localities = assignments[DEFAULT]["endpoints"]
    assert [group["locality"]["region"] for group in localities] == ["region-v1", "region-v2"]
    assert all(group["load_balancing_weight"] >= 1 for group in localities)
    (v2,) = assignments[V2]["endpoints"]
    assert [e["endpoint"]["address"]["socket_address"]["port_value"] for e in v2["lb_endpoints"]] == [5002]


def _bound(listener, port: int):
    """An api listener as a listener Envoy binds, so that ``--mode validate`` checks its manager and routes."""
    out = listener_pb2.Listener(name=listener.name)
    out.address.socket_address.address = "127.0.0.1"
    out.address.socket_address.port_value = port
    chain = out.filter_chains.add()
    manager = chain.filters.add(name="envoy.filters.network.http_connection_manager")
    manager.typed_config.CopyFrom(listener.api_listener.api_listener)
    return out


def test_envoy_accepts_the_generated_resources():
    config = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api}
spec:
  hosts: [api.example.com]
  resolution: DNS
  ports: [{number: 443, name: grpc, protocol: GRPC}]
"""
    resources = build_grpc_resources(_context(SPLIT + "---" + config), listener_names=["echo:8080"])
    by_type: dict[str, list] = {}
    for message in resources:
        by_type.setdefault(type(message).__name__, []).append(message)
    listeners = [_bound(listener, 20000 + index) for index, listener in enumerate(by_type["Listener"])]
    bootstrap = static_bootstrap(
        clusters=by_type["Cluster"],
        listeners=listeners,
        routes=by_type["RouteConfiguration"],
        load_assignments=by_type["ClusterLoadAssignment"],
    )
    validate_config(bootstrap, check=True)


# ------------------------------------------------------------------------------------- a real gRPC client


async def test_a_grpc_client_follows_a_virtual_service_to_subset_v2(ads_server, cache, tmp_path):
    servers = {version: await WhoamiServer.start(version) for version in ("v1", "v2")}
    identity = NodeIdentity(ip="127.0.0.1", name="client-0", namespace="default")
    bootstrap = grpc_bootstrap(GrpcBootstrapOptions(node=identity, discovery=DiscoveryAddress(port=ads_server.port)))
    node = bootstrap["node"]
    ctx = _context(
        TO_V2,
        registry=_registry({version: server.address for version, server in servers.items()}),
        node_id=node["id"],
        metadata=node["metadata"],
    )
    assert ctx.is_grpc
    snapshot = Snapshot.from_messages(build_grpc_resources(ctx, listener_names=["echo:8080"]))
    cache.set_snapshot(node["id"], snapshot)
    path = write_bootstrap(bootstrap, tmp_path / "grpc-bootstrap.json")
    try:
        async with await ProxylessClient.start("xds:///echo:8080", path) as client:
            answers = [await client.call() for _ in range(4)]
            assert answers == ["ok v2"] * 4

            types = (LISTENER_TYPE, ROUTE_TYPE, CLUSTER_TYPE, ENDPOINT_TYPE)
            status = await ads_server.wait_synced(node["id"], type_urls=types, view=snapshot, timeout=30)
            assert status.type(LISTENER_TYPE).names == ("echo:8080",)
            assert status.type(ROUTE_TYPE).names == (DEFAULT,)
            assert V2 in status.type(CLUSTER_TYPE).names
            for type_url in types:
                record = status.type(type_url)
                assert record.state is SyncState.SYNCED, type_url
                assert record.nacks == 0, type_url
    finally:
        for server in servers.values():
            await server.stop()
