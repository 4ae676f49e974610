"""Serve Envoy resources from your own code with mesh_xds: ``python examples/xds_serve.py``.

Packs a cluster, its endpoints and a TCP listener (xds-protos messages) into a snapshot, serves it over ADS
to a test client that behaves like Envoy, pushes an endpoint change, shows the proxy's status, and shows
the cache refusing a snapshot that refers to a cluster it does not hold.
"""

import asyncio

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, config_source_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from google.protobuf import any_pb2

from mesh_xds import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    InconsistentSnapshotError,
    ResourceSet,
    Snapshot,
    SnapshotCache,
    XdsServer,
    pack,
)
from mesh_xds.testing import AdsClient

NODE = "sidecar~127.0.0.1~productpage-v1.default~default.svc.cluster.local"
ADS = config_source_pb2.ConfigSource(
    ads=config_source_pb2.AggregatedConfigSource(), resource_api_version=config_source_pb2.V3
)


def socket(host: str, port: int) -> address_pb2.Address:
    return address_pb2.Address(socket_address=address_pb2.SocketAddress(address=host, port_value=port))


def cluster(name: str) -> cluster_pb2.Cluster:
    eds = cluster_pb2.Cluster.EdsClusterConfig(eds_config=ADS)
    return cluster_pb2.Cluster(name=name, type=cluster_pb2.Cluster.EDS, eds_cluster_config=eds)


def endpoints(name: str, *hosts: str) -> endpoint_pb2.ClusterLoadAssignment:
    lb = [endpoint_components_pb2.LbEndpoint(endpoint={"address": socket(host, 9080)}) for host in hosts]
    return endpoint_pb2.ClusterLoadAssignment(
        cluster_name=name, endpoints=[endpoint_components_pb2.LocalityLbEndpoints(lb_endpoints=lb)]
    )


def tcp_listener(name: str, port: int, to_cluster: str) -> listener_pb2.Listener:
    proxy = any_pb2.Any()
    proxy.Pack(tcp_proxy_pb2.TcpProxy(stat_prefix=name, cluster=to_cluster))
    chain = listener_components_pb2.FilterChain(
        filters=[{"name": "envoy.filters.network.tcp_proxy", "typed_config": proxy}]
    )
    return listener_pb2.Listener(name=name, address=socket("127.0.0.1", port), filter_chains=[chain])


def held(envoy: AdsClient) -> None:
    for type_url in (CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE):
        print(f"envoy holds {type_url.rpartition('.')[2]}: {', '.join(envoy.resources(type_url))}")


async def main() -> None:
    cache = SnapshotCache()
    server = XdsServer(cache)
    port = await server.start("127.0.0.1:0")
    try:
        snapshot = Snapshot.from_messages(
            [cluster("reviews"), endpoints("reviews", "127.0.10.1"), tcp_listener("reviews", 19080, "reviews")]
        )
        cache.set_snapshot(NODE, snapshot)  # before or after the proxy connects
        async with AdsClient(f"127.0.0.1:{port}", NODE) as envoy:  # stands in for Envoy: ACKs, follows EDS
            await envoy.subscribe(CLUSTER_TYPE)
            await envoy.subscribe(LISTENER_TYPE)
            await server.wait_synced(NODE, view=snapshot)
            held(envoy)

            before = len(envoy.responses)
            new_endpoints = ResourceSet(ENDPOINT_TYPE, [pack(endpoints("reviews", "127.0.10.1", "127.0.10.2"))])
            update = snapshot.replace(new_endpoints)  # the other types are shared, so only EDS is pushed
            cache.set_snapshot(NODE, update)
            status = await server.wait_synced(NODE, view=update)
            pushed = [response.type_url.rpartition(".")[2] for response in list(envoy.responses)[before:]]
            print(f"pushed after the endpoint change: {', '.join(pushed)}")
            assignment = envoy.messages(ENDPOINT_TYPE)["reviews"]
            hosts = [lb.endpoint.address.socket_address.address for lb in assignment.endpoints[0].lb_endpoints]
            print(f"reviews endpoints: {', '.join(hosts)}")
            print("status:", ", ".join(f"{item.short_type} {item.state.value}" for item in status.types.values()))

            try:
                cache.set_snapshot(NODE, Snapshot.from_messages([tcp_listener("db", 15432, "postgres")]))
            except InconsistentSnapshotError as error:
                print(f"refused: {error}")
    finally:
        await server.stop()  # ends every stream


if __name__ == "__main__":
    asyncio.run(main())
