"""Clients that break the rules: each gets a clear gRPC error (or no answer), and everyone else is served."""

import asyncio
import gc
import logging

import grpc
import pytest
from envoy.service.discovery.v3 import discovery_pb2

from mesh_xds import CLUSTER_TYPE, LISTENER_TYPE, ClientError, ServerError, SnapshotCache, XdsServer
from mesh_xds._stream import Stream
from mesh_xds.testing import AdsClient
from mesh_xds.testing.resources import sample_snapshot

NODE = "sidecar~127.0.0.1~ratings-v1.default~default.svc.cluster.local"
SOTW = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
DELTA = "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"


async def raw_call(target, path, messages):
    """Send raw request bytes on a new stream; return the stream's final status and the responses read."""
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.stream_stream(
            path, request_serializer=lambda data: data, response_deserializer=lambda data: data
        )()
        for message in messages:
            await call.write(message)
        responses = []
        try:
            async for response in call:
                responses.append(response)
        except grpc.aio.AioRpcError as error:
            return error.code(), error.details(), responses
        return await call.code(), await call.details(), responses


async def until_no_stream_is_alive(timeout=10.0):
    """Wait until no Stream object is left (gRPC may hold the last aborted call's traceback a moment)."""
    async with asyncio.timeout(timeout):
        while True:
            gc.collect()
            if not any(isinstance(thing, Stream) for thing in gc.get_objects()):
                return
            await asyncio.sleep(0.01)


def request(**fields):
    return discovery_pb2.DiscoveryRequest(**fields).SerializeToString()


@pytest.mark.parametrize(
    ("messages", "message"),
    [
        ([request(type_url=CLUSTER_TYPE)], "must carry a node"),
        ([request(type_url=CLUSTER_TYPE, node={"id": ""})], "non-empty id"),
        ([request(node={"id": NODE})], "must name its type_url"),
        ([request(node={"id": NODE}, type_url="envoy.config.cluster.v3.Cluster")], "does not look like"),
        ([b"\xff\xff\xff"], "malformed DiscoveryRequest"),
        ([request(node={"id": NODE}, type_url=CLUSTER_TYPE), b"\x0a"], "malformed DiscoveryRequest"),
    ],
)
async def test_malformed_requests_end_their_stream_with_invalid_argument(ads_target, messages, message):
    code, details, _ = await raw_call(ads_target, SOTW, messages)
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert message in details


async def test_malformed_delta_requests_too(ads_target):
    code, details, _ = await raw_call(ads_target, DELTA, [b"\x12\x01"])
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert "malformed DeltaDiscoveryRequest" in details


async def test_an_oversized_request_is_refused_and_others_are_served():
    cache = SnapshotCache()
    cache.set_snapshot(NODE, sample_snapshot())
    server = XdsServer(cache, max_request_bytes=4096)
    port = await server.start()
    try:
        big = request(node={"id": NODE}, type_url=CLUSTER_TYPE, resource_names=["x" * 100] * 100)
        code, _, _ = await raw_call(f"127.0.0.1:{port}", SOTW, [big])
        assert code is grpc.StatusCode.RESOURCE_EXHAUSTED
        async with AdsClient(f"127.0.0.1:{port}", NODE) as client:
            await client.subscribe(CLUSTER_TYPE)
            await client.wait_for_resources(CLUSTER_TYPE)
    finally:
        await server.stop(grace=0)


async def test_too_many_types_on_one_stream():
    server = XdsServer(SnapshotCache(), max_types_per_stream=2)
    port = await server.start()
    try:
        messages = [request(node={"id": NODE}, type_url=f"type.googleapis.com/example.T{index}") for index in range(3)]
        code, details, _ = await raw_call(f"127.0.0.1:{port}", SOTW, messages)
        assert code is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "at most 2 types" in details
    finally:
        await server.stop(grace=0)


async def test_an_unknown_type_is_not_answered_and_the_rest_is_served(cache, ads_server, ads_target, caplog):
    cache.set_snapshot(NODE, sample_snapshot())
    async with AdsClient(ads_target, NODE) as client:
        with caplog.at_level(logging.WARNING, logger="mesh_xds.server"):
            await client.subscribe("type.googleapis.com/example.Unknown")
            await client.subscribe(CLUSTER_TYPE)
            await client.wait_for_resources(CLUSTER_TYPE)
            await client.round_trip()
        assert client.received("type.googleapis.com/example.Unknown") == []
        assert "does not serve" in caplog.text
        [status] = ads_server.status()
        assert status.types["type.googleapis.com/example.Unknown"].last_sent is None


async def test_a_client_that_never_acks_is_still_pushed_to_and_others_are_unaffected(cache, ads_server, ads_target):
    cache.set_snapshot(NODE, sample_snapshot())
    cache.set_snapshot("other", sample_snapshot())
    async with grpc.aio.insecure_channel(ads_target) as channel:
        silent = channel.stream_stream(
            SOTW, request_serializer=lambda data: data, response_deserializer=lambda data: data
        )()
        await silent.write(request(node={"id": NODE}, type_url=CLUSTER_TYPE))
        first = discovery_pb2.DiscoveryResponse.FromString(await silent.read())
        cache.set_snapshot(NODE, sample_snapshot(("details", "reviews", "ratings")))
        second = discovery_pb2.DiscoveryResponse.FromString(await silent.read())
        assert first.version_info != second.version_info
        assert len(second.resources) == 3
        async with AdsClient(ads_target, "other") as client:
            await client.subscribe(CLUSTER_TYPE)
            await ads_server.wait_synced("other")
        status = ads_server.status_of(NODE)[0].types[CLUSTER_TYPE]
        assert status.responses == 2
        assert status.acks == 0
        assert status.state.value == "STALE"
        silent.cancel()


async def test_an_error_of_the_cache_ends_only_its_stream(metrics, caplog):
    class BrokenCache:
        def watch(self, node, on_change):
            if node.id == "broken":
                raise RuntimeError("the cache is broken")
            return SnapshotCache().watch(node, on_change)

    server = XdsServer(BrokenCache(), metrics=metrics)
    port = await server.start()
    try:
        code, details, _ = await raw_call(
            f"127.0.0.1:{port}", SOTW, [request(node={"id": "broken"}, type_url=CLUSTER_TYPE)]
        )
        assert code is grpc.StatusCode.INTERNAL
        assert "see its log" in details
        assert "the cache is broken" in caplog.text
        assert metrics.registry.get_sample_value("pilot_total_xds_internal_errors_total") == 1
        async with AdsClient(f"127.0.0.1:{port}", "fine") as client:
            await client.subscribe(CLUSTER_TYPE)
            await server.wait_until(lambda statuses: len(statuses) == 1)
    finally:
        await server.stop(grace=0)


async def test_thousands_of_reconnects_leave_nothing_behind(cache, ads_server, ads_target, metrics):
    cache.set_snapshot(NODE, sample_snapshot())
    async with grpc.aio.insecure_channel(ads_target) as channel:

        async def one(index):
            call = channel.stream_stream(SOTW, request_serializer=lambda d: d, response_deserializer=lambda d: d)()
            await call.write(request(node={"id": NODE}, type_url=CLUSTER_TYPE))
            await call.read()
            if index % 3 == 0:
                call.cancel()  # the client goes away
            elif index % 3 == 1:
                await call.done_writing()  # the client says goodbye
                await call.code()
            else:
                await call.write(b"\xff")  # the client breaks the protocol
                await call.code()

        for batch in range(10):
            await asyncio.gather(*(one(batch * 100 + index) for index in range(100)))
        await ads_server.wait_until(lambda statuses: not statuses)
    assert cache.watched_keys() == {}
    assert not [task for task in asyncio.all_tasks() if task.get_name().startswith("xds-")]
    await until_no_stream_is_alive()
    assert metrics.registry.get_sample_value("pilot_xds", {"version": "unknown"}) == 0
    assert metrics.registry.get_sample_value("pilot_xds_pushes_total", {"type": "cds"}) == 1000


async def test_a_stopped_server_ends_its_streams_and_cannot_start_again(cache):
    server = XdsServer(cache)
    port = await server.start()
    cache.set_snapshot(NODE, sample_snapshot())
    client = AdsClient(f"127.0.0.1:{port}", NODE)
    await client.connect()
    await client.subscribe(LISTENER_TYPE)
    await client.wait_for_resources(LISTENER_TYPE)
    await server.stop(grace=0)
    await server.stop()
    with pytest.raises(ClientError):
        await client.wait_for(lambda: False, timeout=10)
    await client.close()
    with pytest.raises(ServerError, match="started once"):
        await server.start()
    with pytest.raises(ServerError, match="cannot bind"):
        await XdsServer(cache).start("not an address")
