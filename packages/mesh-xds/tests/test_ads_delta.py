"""Delta (incremental) ADS over loopback, driven by the Envoy-like test client."""

from envoy.service.discovery.v3 import discovery_pb2

from mesh_xds import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    ResourceSet,
    SnapshotCache,
    StreamKind,
    SyncState,
    XdsServer,
    pack,
)
from mesh_xds.testing import AdsClient
from mesh_xds.testing.resources import load_assignment
from mesh_xds.testing.resources import sample_snapshot as bookinfo

NODE = "sidecar~127.0.0.1~reviews-v1.default~default.svc.cluster.local"
ALL = sorted({CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE})


async def start_envoy_like(client):
    await client.subscribe(CLUSTER_TYPE)
    await client.subscribe(LISTENER_TYPE)


async def test_an_envoy_like_delta_client_gets_its_whole_view(cache, ads_server, ads_target):
    snapshot = bookinfo()
    cache.set_snapshot(NODE, snapshot)
    async with AdsClient(ads_target, NODE, delta=True) as client:
        await start_envoy_like(client)
        await client.wait_for_resources(ROUTE_TYPE, {"http"})
        await client.wait_for_resources(ENDPOINT_TYPE, {"details", "reviews"})
        status = await ads_server.wait_synced(NODE, type_urls=ALL, view=snapshot)
        assert status.kind is StreamKind.DELTA
        for type_url in ALL:
            assert client.resources(type_url) == dict(snapshot.resources(type_url))
        assert status.types[CLUSTER_TYPE].wildcard
        assert status.types[ENDPOINT_TYPE].names == ("details", "reviews")


async def test_only_what_changed_is_sent_and_removals_are_named(cache, ads_server, ads_target):
    snapshot = bookinfo(("details", "reviews"))
    cache.set_snapshot(NODE, snapshot)
    async with AdsClient(ads_target, NODE, delta=True) as client:
        await start_envoy_like(client)
        await ads_server.wait_synced(NODE, type_urls=ALL)
        endpoints = ResourceSet(
            ENDPOINT_TYPE,
            [snapshot.resources(ENDPOINT_TYPE)["details"], pack(load_assignment("reviews", [("127.0.0.9", 1)]))],
        )
        updated = snapshot.replace(endpoints)
        cache.set_snapshot(NODE, updated)
        await ads_server.wait_synced(NODE, view=updated)
        last = client.received(ENDPOINT_TYPE)[-1]
        assert last.names == ("reviews",)
        assert last.removed == ()

        smaller = bookinfo(("details",))
        cache.set_snapshot(NODE, smaller)
        await ads_server.wait_synced(NODE, view=smaller)
        await client.wait_for_resources(CLUSTER_TYPE, {"details"})
        await client.wait_for_resources(ENDPOINT_TYPE, {"details"})
        cds = client.received(CLUSTER_TYPE)[-1]
        assert cds.removed == ("reviews",)
        assert cds.names == ()


async def test_a_reconnect_resends_nothing_the_client_already_has(cache, ads_server, ads_target):
    snapshot = bookinfo()
    cache.set_snapshot(NODE, snapshot)
    async with AdsClient(ads_target, NODE, delta=True) as client:
        await start_envoy_like(client)
        await ads_server.wait_synced(NODE, type_urls=ALL)
        counts = {type_url: len(client.received(type_url)) for type_url in ALL}
        await client.disconnect()
        await ads_server.wait_until(lambda statuses: not statuses)
        await client.connect()  # initial_resource_versions: everything it holds
        await ads_server.wait_synced(NODE, type_urls=[CLUSTER_TYPE, LISTENER_TYPE])
        for type_url in (CLUSTER_TYPE, LISTENER_TYPE):
            answer = client.received(type_url)[counts[type_url]]
            assert answer.resources == ()
            assert answer.removed == ()
        assert client.resources(ROUTE_TYPE) == dict(snapshot.resources(ROUTE_TYPE))


async def test_versions_survive_a_server_restart(cache):
    cache.set_snapshot(NODE, bookinfo())
    first = XdsServer(cache)
    client = AdsClient(f"127.0.0.1:{await first.start()}", NODE, delta=True)
    second = None
    try:
        await client.connect()
        await start_envoy_like(client)
        await first.wait_synced(NODE, type_urls=ALL)
        await client.close()
        await first.stop(grace=0)
        # A new server with equal content: resource versions are content hashes, equal in a new process too.
        restarted = SnapshotCache()
        restarted.set_snapshot(NODE, bookinfo())
        second = XdsServer(restarted)
        client.target = f"127.0.0.1:{await second.start()}"
        counts = {type_url: len(client.received(type_url)) for type_url in ALL}
        await client.connect()
        status = await second.wait_synced(NODE, type_urls=[CLUSTER_TYPE, LISTENER_TYPE])
        for type_url in ALL:
            assert all(response.resources == () for response in client.received(type_url)[counts[type_url] :])
        assert status.types[CLUSTER_TYPE].last_sent.names == ()
    finally:
        await client.close()
        if second is not None:
            await second.stop(grace=0)


async def test_a_subscribed_name_that_does_not_exist_is_removed_at_once(cache, ads_server, ads_target):
    cache.set_snapshot(NODE, bookinfo())
    async with AdsClient(ads_target, NODE, delta=True, follow_references=False) as client:
        await client.subscribe(ENDPOINT_TYPE, ["nowhere"])
        answer = await client.wait_for_response(ENDPOINT_TYPE)
        assert answer.removed == ("nowhere",)
        assert answer.resources == ()
        await client.subscribe(ENDPOINT_TYPE, ["details"])
        await client.wait_for_resources(ENDPOINT_TYPE, {"details"})
        await client.unsubscribe(ENDPOINT_TYPE, ["details"])
        await client.round_trip()
        [status] = ads_server.status_of(NODE)
        assert status.types[ENDPOINT_TYPE].names == ("nowhere",)


async def test_a_nacked_resource_version_is_not_sent_again(cache, ads_server, ads_target, metrics):
    snapshot = bookinfo()
    cache.set_snapshot(NODE, snapshot)
    async with AdsClient(ads_target, NODE, delta=True) as client:
        await start_envoy_like(client)
        await ads_server.wait_synced(NODE, type_urls=ALL)
        client.nack_next(ENDPOINT_TYPE, "endpoint: bad address")
        bad = snapshot.replace(
            ResourceSet(ENDPOINT_TYPE, [pack(load_assignment(n, [("127.0.0.7", 7)])) for n in ("details", "reviews")])
        )
        cache.set_snapshot(NODE, bad)
        await ads_server.wait_until(lambda s: s and s[0].types[ENDPOINT_TYPE].state is SyncState.NACKED)
        count = len(client.received(ENDPOINT_TYPE))
        # Subscribing again to a name normally forces a resend; not of the version the client rejected.
        await client.send(
            discovery_pb2.DeltaDiscoveryRequest(type_url=ENDPOINT_TYPE, resource_names_subscribe=["details"])
        )
        await client.round_trip()
        assert all(r.names == () for r in client.received(ENDPOINT_TYPE)[count:])
        assert metrics.registry.get_sample_value("pilot_total_xds_rejects_total", {"type": "eds"}) == 1
        good = snapshot.replace(
            ResourceSet(ENDPOINT_TYPE, [pack(load_assignment(n, [("127.0.0.8", 8)])) for n in ("details", "reviews")])
        )
        cache.set_snapshot(NODE, good)
        await ads_server.wait_synced(NODE, view=good)
        assert client.resources(ENDPOINT_TYPE) == dict(good.resources(ENDPOINT_TYPE))


async def test_subscriptions_change_even_with_a_stale_nonce(cache, ads_server, ads_target):
    cache.set_snapshot(NODE, bookinfo())
    async with AdsClient(ads_target, NODE, delta=True, follow_references=False) as client:
        await client.subscribe(ENDPOINT_TYPE, ["details"])
        await client.wait_for_resources(ENDPOINT_TYPE, {"details"})
        request = discovery_pb2.DeltaDiscoveryRequest(
            type_url=ENDPOINT_TYPE, response_nonce="not-a-nonce-of-ours", resource_names_subscribe=["reviews"]
        )
        await client.send(request)
        await client.wait_for_resources(ENDPOINT_TYPE, {"details", "reviews"})
        [status] = ads_server.status_of(NODE)
        assert status.types[ENDPOINT_TYPE].stale == 1


async def test_unsubscribing_a_name_under_the_wildcard_resends_it(cache, ads_server, ads_target):
    cache.set_snapshot(NODE, bookinfo())
    async with AdsClient(ads_target, NODE, delta=True, follow_references=False) as client:
        await client.subscribe(CLUSTER_TYPE, ["*", "details"])
        await client.wait_for_resources(CLUSTER_TYPE, {"details", "reviews"})
        count = len(client.received(CLUSTER_TYPE))
        await client.send(
            discovery_pb2.DeltaDiscoveryRequest(type_url=CLUSTER_TYPE, resource_names_unsubscribe=["details"])
        )
        answer = await client.wait_for_response(CLUSTER_TYPE, after=count)
        assert answer.names == ("details",)  # still covered by the wildcard: the client must keep it
