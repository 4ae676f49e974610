"""Proxyless gRPC: grpcio's own xDS client reaches a backend through the resources an XdsServer serves.

The client runs in a subprocess with ``GRPC_XDS_BOOTSTRAP`` pointing at a bootstrap from
:func:`mesh_xds.bootstrap.grpc_bootstrap`; the backends and the ADS server run on the test's event loop.
grpcio reads the bootstrap when it creates its process-wide xDS client, which every ``xds:`` channel of the
process shares while one is open: a subprocess per test gives each test its own client and bootstrap.
"""

import pytest
from envoy.config.cluster.v3 import cluster_pb2

from mesh_xds import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    InvalidResourceError,
    Snapshot,
    StreamKind,
    SyncState,
    references,
)
from mesh_xds.bootstrap import DiscoveryAddress, GrpcBootstrapOptions, NodeIdentity, grpc_bootstrap, write_bootstrap
from mesh_xds.testing.grpc_resources import (
    api_listener,
    grpc_cluster,
    grpc_load_assignment,
    grpc_route_configuration,
    listener_name,
    outbound_cluster_name,
    target_resources,
    target_snapshot,
)
from mesh_xds.testing.proxyless import ProxylessClient, WhoamiServer

TARGET = "echo.default.svc.cluster.local:8080"
CLUSTER = "outbound|8080||echo.default.svc.cluster.local"
TYPES = (LISTENER_TYPE, ROUTE_TYPE, CLUSTER_TYPE, ENDPOINT_TYPE)


@pytest.fixture
async def backends():
    servers = [await WhoamiServer.start("a"), await WhoamiServer.start("b")]
    yield [server.address for server in servers]
    for server in servers:
        await server.stop()


@pytest.fixture
async def grpc_client(ads_server, tmp_path):
    """Start the client subprocess on ``xds:///TARGET``; yield its node id and the client."""
    node = NodeIdentity(ip="127.0.0.1", name="client-0", namespace="default")
    config = grpc_bootstrap(GrpcBootstrapOptions(node=node, discovery=DiscoveryAddress(port=ads_server.port)))
    path = write_bootstrap(config, tmp_path / "grpc-bootstrap.json")
    async with await ProxylessClient.start(f"xds:///{TARGET}", path) as client:
        yield config["node"]["id"], client


async def test_a_grpc_client_reaches_the_backend_the_snapshot_names_and_acks_every_type(
    ads_server, cache, backends, grpc_client
):
    node_id, client = grpc_client
    snapshot = target_snapshot(TARGET, [backends[0]])
    cache.set_snapshot(node_id, snapshot)

    assert await client.call() == "ok a"

    status = await ads_server.wait_synced(node_id, type_urls=TYPES, view=snapshot)
    assert status.kind is StreamKind.SOTW
    assert status.node.metadata["GENERATOR"] == "grpc"
    expected_names = {
        LISTENER_TYPE: (TARGET,),
        ROUTE_TYPE: (CLUSTER,),
        CLUSTER_TYPE: (CLUSTER,),
        ENDPOINT_TYPE: (CLUSTER,),
    }
    for type_url, names in expected_names.items():
        record = status.type(type_url)
        assert record.state is SyncState.SYNCED, type_url
        assert not record.wildcard, type_url
        assert record.names == names
        assert record.acked_version == snapshot.resources(type_url).version
        assert record.nacks == 0


async def test_moving_the_endpoint_sends_the_next_calls_to_the_new_backend(ads_server, cache, backends, grpc_client):
    node_id, client = grpc_client
    cache.set_snapshot(node_id, target_snapshot(TARGET, [backends[0]]))
    assert await client.call() == "ok a"

    moved = target_snapshot(TARGET, [backends[1]])
    cache.set_snapshot(node_id, moved)

    await client.call_until("ok b")
    status = await ads_server.wait_synced(node_id, type_urls=TYPES, view=moved)
    assert status.type(ENDPOINT_TYPE).acked_version == moved.resources(ENDPOINT_TYPE).version
    assert [await client.call() for _ in range(3)] == ["ok b"] * 3


async def test_a_cluster_grpc_rejects_is_nacked_with_its_reason_and_calls_keep_working_on_the_last_good_one(
    ads_server, cache, backends, grpc_client
):
    node_id, client = grpc_client
    good = target_snapshot(TARGET, [backends[0]])
    cache.set_snapshot(node_id, good)
    assert await client.call() == "ok a"
    await ads_server.wait_synced(node_id, type_urls=TYPES, view=good)

    rejected = grpc_cluster(CLUSTER)
    rejected.lb_policy = cluster_pb2.Cluster.LEAST_REQUEST
    messages = target_resources(TARGET, [backends[0]])
    cache.set_snapshot(node_id, Snapshot.from_messages([*messages[:2], rejected, messages[3]]))

    def nacked(statuses):
        return any(
            (record := status.type(CLUSTER_TYPE)) is not None and record.state is SyncState.NACKED
            for status in statuses
        )

    (status,) = await ads_server.wait_until(nacked, node_id=node_id)
    record = status.type(CLUSTER_TYPE)
    assert "lb_policy" in record.last_nack.message
    assert record.acked_version == good.resources(CLUSTER_TYPE).version
    assert await client.call() == "ok a"


# ----------------------------------------------------------------------------------------- the builders


def test_target_resources_name_everything_as_istio_does_and_refer_only_to_each_other():
    listener, route, cluster, assignment = target_resources(f"xds:///{TARGET}", [("127.0.0.1", 50051)])
    assert listener.name == TARGET
    assert route.name == cluster.name == assignment.cluster_name == CLUSTER
    assert list(route.virtual_hosts[0].domains) == [TARGET, "echo.default.svc.cluster.local"]
    assert assignment.endpoints[0].load_balancing_weight.value == 1
    assert {reference.name for reference in references(listener)} == {CLUSTER}
    assert target_snapshot(TARGET, [("127.0.0.1", 50051)]).missing() == ()


def test_a_target_without_a_port_names_its_cluster_after_itself():
    listener, route, cluster, _ = target_resources("echo", [("127.0.0.1", 50051)])
    assert listener.name == route.name == cluster.name == "echo"
    assert list(route.virtual_hosts[0].domains) == ["echo"]


def test_an_inline_route_configuration_is_held_by_the_listener():
    inline = grpc_route_configuration("echo", [TARGET], {"a": 90, "b": 10})
    listener = api_listener(TARGET, route_configuration=inline)
    assert {reference.name for reference in references(listener)} == {"a", "b"}


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: listener_name("dns:///echo"), "is not 'name' or 'xds:///name'"),
        (lambda: listener_name("xds:///"), "is not 'name' or 'xds:///name'"),
        (lambda: api_listener(TARGET), "exactly one of route_name and route_configuration"),
        (
            lambda: api_listener(TARGET, route_name="r", route_configuration=grpc_route_configuration("r", ["d"], "c")),
            "exactly one",
        ),
        (lambda: api_listener(TARGET, route_configuration=grpc_cluster("c")), "not a RouteConfiguration"),
        (lambda: grpc_route_configuration("r", "echo", "c"), "is not a list of domains"),
        (lambda: grpc_route_configuration("r", ["echo"], {}), "no cluster to route to"),
        (lambda: grpc_route_configuration("r", ["echo"], {"c": 0}), "weight 0 is not a positive integer"),
        (lambda: grpc_cluster("c", lb_policy="LEAST_REQUEST"), "'LEAST_REQUEST' is not one gRPC accepts"),
        (lambda: grpc_load_assignment("c", [("127.0.0.1", 50051)], weight=0), "weight 0 is not a positive integer"),
        (lambda: grpc_load_assignment("c", ["127.0.0.1:50051"]), "is not (host, port)"),
        (lambda: grpc_load_assignment("c", [("127.0.0.1", 70000)]), "endpoint port 70000 is not a port number"),
        (lambda: outbound_cluster_name("", 8080), "host '' is not a non-empty string"),
        (lambda: target_resources("echo:0", []), "target port 0 is not a port number"),
    ],
)
def test_a_malformed_argument_is_refused_with_a_message_naming_it(build, message):
    with pytest.raises(InvalidResourceError) as raised:
        build()
    assert message in str(raised.value)
