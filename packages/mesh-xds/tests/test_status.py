"""The per-stream record, and what the server exposes of it: the Python API, CSDS, health, reflection, metrics."""

import grpc
import prometheus_client
import pytest
from envoy.admin.v3 import config_dump_shared_pb2
from envoy.service.status.v3 import csds_pb2, csds_pb2_grpc
from envoy.type.matcher.v3 import node_pb2, string_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from mesh_xds import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    SECRET_TYPE,
    NodeInfo,
    Snapshot,
    StreamKind,
    SyncState,
    TlsSecret,
    secret_resource,
)
from mesh_xds.testing import AdsClient
from mesh_xds.testing.resources import sample_snapshot

NODE = NodeInfo(
    "sidecar~127.0.0.1~details-v1.default~default.svc.cluster.local",
    cluster="details",
    metadata={"ISTIO_VERSION": "1.24.2", "NAMESPACE": "default"},
    locality="eu/zone-a",
)
ALL = sorted({CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE})


async def synced_client(cache, ads_server, ads_target, snapshot=None, *, delta=False):
    snapshot = snapshot or sample_snapshot()
    cache.set_snapshot(NODE.id, snapshot)
    client = AdsClient(ads_target, NODE, delta=delta)
    await client.connect()
    await client.subscribe(CLUSTER_TYPE)
    await client.subscribe(LISTENER_TYPE)
    await ads_server.wait_synced(NODE.id, type_urls=ALL, view=snapshot)
    return client


async def test_the_record_says_what_was_sent_and_acked(cache, ads_server, ads_target):
    snapshot = sample_snapshot()
    client = await synced_client(cache, ads_server, ads_target, snapshot)
    try:
        [stream] = ads_server.status()
        assert stream.kind is StreamKind.SOTW
        assert stream.service == "ads"
        assert stream.synced
        assert stream.node == NODE
        assert stream.node.metadata["ISTIO_VERSION"] == "1.24.2"
        assert stream.node.locality == "eu/zone-a"
        assert stream.node_key == NODE.id
        assert stream.peer.startswith("ipv4:127.0.0.1:")
        assert list(stream.types) == [CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE]
        clusters = stream.types[CLUSTER_TYPE]
        assert clusters.state is SyncState.SYNCED
        assert clusters.wildcard
        assert clusters.short_type == "cds"
        assert clusters.last_sent.version == clusters.acked_version == snapshot.resources(CLUSTER_TYPE).version
        assert clusters.last_sent.names == ("details", "reviews")
        assert clusters.last_sent.size > 0
        assert clusters.last_ack.at >= clusters.last_sent.at >= stream.connected_at
        assert clusters.resources is snapshot.resources(CLUSTER_TYPE)
        endpoints = stream.types[ENDPOINT_TYPE]
        assert not endpoints.wildcard
        assert endpoints.names == ("details", "reviews")
        assert ads_server.status_of("nobody") == ()
    finally:
        await client.close()


async def test_a_nack_is_recorded_with_its_text_and_time(cache, ads_server, ads_target):
    client = await synced_client(cache, ads_server, ads_target, delta=True)
    try:
        client.nack_next(LISTENER_TYPE, "Error adding/updating listener(s) http: goo.gle/debug1234 invalid")
        cache.set_snapshot(NODE.id, sample_snapshot(listener_port=15002))
        [stream] = await ads_server.wait_until(lambda s: s and s[0].types[LISTENER_TYPE].state is SyncState.NACKED)
        listeners = stream.types[LISTENER_TYPE]
        assert "listener(s) http" in listeners.last_nack.message
        assert listeners.last_nack.code == 13
        assert listeners.nacks == 1
        assert listeners.last_nack.nonce == listeners.last_sent.nonce
        assert not stream.synced
    finally:
        await client.close()


async def test_wait_until_says_what_it_saw_when_it_times_out(ads_server):
    with pytest.raises(TimeoutError, match="no stream is open"):
        await ads_server.wait_until(lambda statuses: bool(statuses), timeout=0.05)


async def fetch(target, **request):
    async with grpc.aio.insecure_channel(target) as channel:
        stub = csds_pb2_grpc.ClientStatusDiscoveryServiceStub(channel)
        return await stub.FetchClientStatus(csds_pb2.ClientStatusRequest(**request))


async def test_csds_reports_every_client_and_its_resources(cache, ads_server, ads_target):
    snapshot = sample_snapshot()
    client = await synced_client(cache, ads_server, ads_target, snapshot)
    try:
        response = await fetch(ads_target)
        [config] = response.config
        assert config.node.id == NODE.id
        assert config.node.locality.zone == "zone-a"
        assert config.node.metadata.fields["NAMESPACE"].string_value == "default"
        found = {(entry.type_url, entry.name): entry for entry in config.generic_xds_configs}
        assert set(found) == {(url, name) for url in ALL for name in snapshot.resources(url)}
        cluster = found[(CLUSTER_TYPE, "reviews")]
        assert cluster.config_status == csds_pb2.SYNCED
        assert cluster.client_status == config_dump_shared_pb2.ACKED
        assert cluster.version_info == snapshot.resources(CLUSTER_TYPE).version
        assert cluster.xds_config.SerializeToString() == snapshot.resources(CLUSTER_TYPE)["reviews"].any_bytes
        bare = await fetch(ads_target, exclude_resource_contents=True)
        assert not any(entry.HasField("xds_config") for entry in bare.config[0].generic_xds_configs)
        async with grpc.aio.insecure_channel(ads_target) as channel:
            stub = csds_pb2_grpc.ClientStatusDiscoveryServiceStub(channel)
            streamed = [reply async for reply in stub.StreamClientStatus(iter([csds_pb2.ClientStatusRequest()] * 2))]
            assert len(streamed) == 2
            assert streamed[0].config[0].node.id == NODE.id
    finally:
        await client.close()


async def test_csds_selects_clients_by_node_id(cache, ads_server, ads_target):
    client = await synced_client(cache, ads_server, ads_target)
    try:
        prefix = node_pb2.NodeMatcher(node_id=string_pb2.StringMatcher(prefix="SIDECAR~", ignore_case=True))
        assert len((await fetch(ads_target, node_matchers=[prefix])).config) == 1
        other = node_pb2.NodeMatcher(node_id=string_pb2.StringMatcher(exact="router~x"))
        assert len((await fetch(ads_target, node_matchers=[other])).config) == 0
        regex = node_pb2.NodeMatcher(node_id=string_pb2.StringMatcher(safe_regex={"regex": ".*"}))
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await fetch(ads_target, node_matchers=[regex])
        assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    finally:
        await client.close()


async def test_csds_never_shows_secret_contents(cache, ads_server, ads_target):
    secret = secret_resource("gateway-cert", TlsSecret(certificate_chain=b"chain", private_key=b"very secret key"))
    cache.set_snapshot(NODE.id, Snapshot([secret]))
    async with AdsClient(ads_target, NODE, follow_references=False) as client:
        await client.subscribe(SECRET_TYPE, ["gateway-cert"])
        await ads_server.wait_synced(NODE.id, type_urls=[SECRET_TYPE])
        response = await fetch(ads_target)
        [entry] = response.config[0].generic_xds_configs
        assert entry.name == "gateway-cert"
        assert entry.version_info
        assert not entry.HasField("xds_config")
        assert b"very secret key" not in response.SerializeToString()


async def test_csds_reports_a_nack_as_an_error(cache, ads_server, ads_target):
    client = await synced_client(cache, ads_server, ads_target)
    try:
        client.nack_next(CLUSTER_TYPE, "bad cluster")
        cache.set_snapshot(NODE.id, sample_snapshot(("details", "reviews", "ratings")))
        await ads_server.wait_until(lambda s: s and s[0].types[CLUSTER_TYPE].state is SyncState.NACKED)
        entries = [e for e in (await fetch(ads_target)).config[0].generic_xds_configs if e.type_url == CLUSTER_TYPE]
        assert {entry.config_status for entry in entries} == {csds_pb2.ERROR}
        assert {entry.error_state.details for entry in entries} == {"bad cluster"}
    finally:
        await client.close()


async def test_health_and_reflection_are_served(ads_target):
    async with grpc.aio.insecure_channel(ads_target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "envoy.service.discovery.v3.AggregatedDiscoveryService"):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        replies = [
            r
            async for r in reflection.ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")])
            )
        ]
        names = {service.name for service in replies[0].list_services_response.service}
        assert {
            "envoy.service.discovery.v3.AggregatedDiscoveryService",
            "envoy.service.status.v3.ClientStatusDiscoveryService",
            "grpc.health.v1.Health",
        } <= names


async def test_metrics_count_on_their_own_registry(cache, ads_server, ads_target, metrics):
    client = await synced_client(cache, ads_server, ads_target)
    try:
        sample = metrics.registry.get_sample_value
        assert sample("pilot_xds", {"version": "1.24.2"}) == 1
        assert sample("pilot_xds_pushes_total", {"type": "cds"}) >= 1
        assert sample("pilot_xds_push_time_count", {"type": "lds"}) >= 1
        assert sample("pilot_xds_config_size_bytes_count", {"type": "rds"}) >= 1
        assert sample("pilot_proxy_convergence_time_count") >= 1
        assert sample("pilot_xds_recv_max") > 0
        assert prometheus_client.REGISTRY.get_sample_value("pilot_xds", {"version": "1.24.2"}) is None
    finally:
        await client.close()
    await ads_server.wait_until(lambda statuses: not statuses)
    assert metrics.registry.get_sample_value("pilot_xds", {"version": "1.24.2"}) == 0
