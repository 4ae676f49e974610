"""State-of-the-world ADS over loopback, driven by the Envoy-like test client."""

import subprocess
import sys

from envoy.service.discovery.v3 import discovery_pb2

from mesh_xds import CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE, ResourceSet, Snapshot, SyncState, pack
from mesh_xds.testing import AdsClient
from mesh_xds.testing.resources import load_assignment, route_configuration, tcp_listener
from mesh_xds.testing.resources import sample_snapshot as bookinfo

NODE = "sidecar~127.0.0.1~productpage-v1.default~default.svc.cluster.local"
ALL = {CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE}


async def start_envoy_like(client):
    await client.subscribe(CLUSTER_TYPE)
    await client.subscribe(LISTENER_TYPE)


async def test_an_envoy_like_client_gets_its_whole_view_and_acks_it(cache, ads_server, ads_target):
    snapshot = bookinfo()
    cache.set_snapshot(NODE, snapshot)
    async with AdsClient(ads_target, NODE) as client:
        await start_envoy_like(client)
        await client.wait_for_resources(ROUTE_TYPE, {"http"})
        await client.wait_for_resources(ENDPOINT_TYPE, {"details", "reviews"})
        status = await ads_server.wait_synced(NODE, type_urls=sorted(ALL), view=snapshot)
        assert set(client.resources(CLUSTER_TYPE)) == {"details", "reviews"}
        for type_url in ALL:
            assert client.resources(type_url) == dict(snapshot.resources(type_url))
        assert status.types[CLUSTER_TYPE].last_ack.version == snapshot.resources(CLUSTER_TYPE).version
        # Envoy asks for the endpoints of new clusters before it ACKs them: the server answered anyway.
        first_cds, first_eds = client.received(CLUSTER_TYPE)[0], client.received(ENDPOINT_TYPE)[0]
        assert first_cds.at <= first_eds.at
        assert all(response.accepted for response in client.responses)


async def test_a_proxy_that_connects_first_waits_for_its_view(cache, ads_server, ads_target):
    async with AdsClient(ads_target, NODE) as client:
        await start_envoy_like(client)
        await ads_server.wait_until(lambda statuses: len(statuses) == 1 and len(statuses[0].types) == 2)
        [status] = ads_server.status()
        assert status.view is None
        assert status.pending
        assert {item.state for item in status.types.values()} == {SyncState.NOT_SENT}
        cache.set_snapshot(NODE, bookinfo())
        await client.wait_for_resources(ROUTE_TYPE, {"http"})


async def test_a_change_is_pushed_in_push_order_and_removals_reach_the_client(cache, ads_server, ads_target):
    cache.set_snapshot(NODE, bookinfo(("details", "reviews")))
    async with AdsClient(ads_target, NODE) as client:
        await start_envoy_like(client)
        first = await ads_server.wait_synced(NODE, type_urls=sorted(ALL))
        assert first.synced
        before = len(client.responses)
        changed = bookinfo(("details", "ratings"), port=9081, route_name="http")
        cache.set_snapshot(NODE, changed)
        await ads_server.wait_synced(NODE, type_urls=sorted(ALL), view=changed)
        assert set(client.resources(CLUSTER_TYPE)) == {"details", "ratings"}
        assert set(client.resources(ENDPOINT_TYPE)) == {"details", "ratings"}
        pushed = [response.type_url for response in list(client.responses)[before:]]
        assert pushed[:3] == [CLUSTER_TYPE, ENDPOINT_TYPE, ROUTE_TYPE]  # the listener did not change
        assert LISTENER_TYPE not in pushed


async def test_an_eds_only_change_pushes_only_eds_and_an_equal_view_nothing(cache, ads_server, ads_target):
    snapshot = bookinfo()
    cache.set_snapshot(NODE, snapshot)
    async with AdsClient(ads_target, NODE) as client:
        await start_envoy_like(client)
        await ads_server.wait_synced(NODE, type_urls=sorted(ALL))
        before = {type_url: len(client.received(type_url)) for type_url in ALL}
        endpoints = ResourceSet(
            ENDPOINT_TYPE, [pack(load_assignment(name, [("127.0.0.2", 1)])) for name in ("details", "reviews")]
        )
        updated = snapshot.replace(endpoints)
        cache.set_snapshot(NODE, updated)
        await ads_server.wait_synced(NODE, view=updated)
        after = {type_url: len(client.received(type_url)) for type_url in ALL}
        assert after == {**before, ENDPOINT_TYPE: before[ENDPOINT_TYPE] + 1}
        cache.set_snapshot(NODE, bookinfo().replace(endpoints))  # new objects, equal content
        await client.round_trip()
        assert {type_url: len(client.received(type_url)) for type_url in ALL} == after


async def test_a_nacked_version_is_not_sent_again(cache, ads_server, ads_target, metrics):
    cache.set_snapshot(NODE, bookinfo())
    async with AdsClient(ads_target, NODE) as client:
        await start_envoy_like(client)
        await ads_server.wait_synced(NODE, type_urls=sorted(ALL))
        client.nack_next(CLUSTER_TYPE, "cluster reviews: invalid lb_policy")
        rejected = bookinfo(("details", "reviews", "ratings"))
        cache.set_snapshot(NODE, rejected)
        await ads_server.wait_until(lambda s: s and s[0].types[CLUSTER_TYPE].state is SyncState.NACKED)
        cds_count = len(client.received(CLUSTER_TYPE))
        await client.round_trip()
        assert len(client.received(CLUSTER_TYPE)) == cds_count
        [status] = ads_server.status_of(NODE)
        nack = status.types[CLUSTER_TYPE].last_nack
        assert nack.message == "cluster reviews: invalid lb_policy"
        assert nack.code == 13
        assert nack.version == rejected.resources(CLUSTER_TYPE).version
        assert "ratings" not in client.resources(CLUSTER_TYPE)  # the client kept its last good config
        assert metrics.registry.get_sample_value("pilot_total_xds_rejects_total", {"type": "cds"}) == 1
        same_clusters = bookinfo(("details", "reviews", "ratings"), port=9999)
        cache.set_snapshot(NODE, same_clusters)  # the rejected clusters again: still withheld
        await client.wait_for_resources(ENDPOINT_TYPE, {"details", "reviews"})
        await client.round_trip()
        assert len(client.received(CLUSTER_TYPE)) == cds_count
        fixed = bookinfo(("details", "reviews", "ratings-v2"))
        cache.set_snapshot(NODE, fixed)
        await ads_server.wait_synced(NODE, type_urls=[CLUSTER_TYPE], view=fixed)
        assert "ratings-v2" in client.resources(CLUSTER_TYPE)


async def test_a_stale_nonce_is_ignored(cache, ads_server, ads_target, metrics):
    cache.set_snapshot(NODE, bookinfo())
    async with AdsClient(ads_target, NODE, follow_references=False) as client:
        await client.subscribe(ENDPOINT_TYPE, ["details"])
        first = await client.wait_for_response(ENDPOINT_TYPE)
        cache.set_snapshot(NODE, bookinfo(port=9090))
        second = await client.wait_for_response(ENDPOINT_TYPE, after=1)
        stale = discovery_pb2.DiscoveryRequest(
            type_url=ENDPOINT_TYPE, version_info=first.version, response_nonce=first.nonce, resource_names=["reviews"]
        )
        # The ACK of the first answer may itself arrive after the second was sent, and so be stale too.
        await client.round_trip()
        [before] = ads_server.status_of(NODE)
        counted = metrics.registry.get_sample_value("pilot_xds_expired_nonce_total", {"type": "eds"}) or 0
        await client.send(stale)
        await client.round_trip()
        assert len(client.received(ENDPOINT_TYPE)) == 2
        assert second.names == ("details",)
        [status] = ads_server.status_of(NODE)
        assert status.types[ENDPOINT_TYPE].stale == before.types[ENDPOINT_TYPE].stale + 1
        assert status.types[ENDPOINT_TYPE].names == ("details",)
        assert metrics.registry.get_sample_value("pilot_xds_expired_nonce_total", {"type": "eds"}) == counted + 1


async def test_new_names_are_answered_even_at_the_same_version(cache, ads_server, ads_target):
    cache.set_snapshot(NODE, bookinfo())
    async with AdsClient(ads_target, NODE, follow_references=False) as client:
        await client.subscribe(ENDPOINT_TYPE, ["details"])
        await client.wait_for_resources(ENDPOINT_TYPE, {"details"})
        await client.subscribe(ENDPOINT_TYPE, ["reviews"])
        await client.wait_for_resources(ENDPOINT_TYPE, {"details", "reviews"})


async def test_explicit_listener_names_like_a_grpc_client(cache, ads_server, ads_target):
    snapshot = bookinfo()
    cache.set_snapshot(NODE, snapshot)
    async with AdsClient(ads_target, NODE, follow_references=False) as client:
        await client.subscribe(LISTENER_TYPE, ["reviews.default:9080"])
        empty = await client.wait_for_response(LISTENER_TYPE)
        assert empty.resources == ()  # answered at once: the name does not exist
        target = pack(tcp_listener("reviews.default:9080", "127.0.0.1", 1, cluster="reviews"))
        cache.set_snapshot(NODE, snapshot.replace(ResourceSet(LISTENER_TYPE, [target])))
        held = await client.wait_for_resources(LISTENER_TYPE, {"reviews.default:9080"})
        assert held["reviews.default:9080"] == target


async def test_a_reconnecting_client_is_answered_at_the_version_it_has(cache, ads_server, ads_target):
    cache.set_snapshot(NODE, bookinfo())
    async with AdsClient(ads_target, NODE) as client:
        await start_envoy_like(client)
        await ads_server.wait_synced(NODE, type_urls=sorted(ALL))
        before = {type_url: len(client.received(type_url)) for type_url in ALL}
        versions = {type_url: client.version(type_url) for type_url in ALL}
        await client.disconnect()
        await ads_server.wait_until(lambda statuses: not statuses)
        await client.connect()  # re-sends every version it has, with an empty nonce
        await ads_server.wait_synced(NODE, type_urls=sorted(ALL))
        for type_url in ALL:
            assert len(client.received(type_url)) == before[type_url] + 1
            assert client.received(type_url)[-1].version == versions[type_url]


def test_versions_differ_across_server_restarts():
    program = (
        "from mesh_xds import Snapshot;"
        "from mesh_xds.testing.resources import eds_cluster;"
        "print(Snapshot.from_messages([eds_cluster('a')]).resources("
        "'type.googleapis.com/envoy.config.cluster.v3.Cluster').version)"
    )
    runs = [
        subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True, timeout=60)
        for _ in range(2)
    ]
    first, second = (run.stdout.strip() for run in runs)
    assert first != second
    assert first.rpartition("-")[2] == second.rpartition("-")[2]  # same content, same digest


async def test_routes_follow_listeners(cache, ads_server, ads_target):
    snapshot = bookinfo(route_name="http")
    cache.set_snapshot(NODE, snapshot)
    async with AdsClient(ads_target, NODE) as client:
        await start_envoy_like(client)
        await client.wait_for_resources(ROUTE_TYPE, {"http"})
        renamed = Snapshot(
            [
                *snapshot.resources(CLUSTER_TYPE).values(),
                *snapshot.resources(ENDPOINT_TYPE).values(),
                *bookinfo(route_name="http2").resources(LISTENER_TYPE).values(),
                pack(route_configuration("http2", {"details.example": "details"})),
            ]
        )
        cache.set_snapshot(NODE, renamed)
        await client.wait_for(lambda: "http2" in client.resources(ROUTE_TYPE), what="the renamed route")
        await ads_server.wait_synced(NODE, view=renamed)
        [status] = ads_server.status_of(NODE)
        assert status.types[ROUTE_TYPE].names == ("http2",)
