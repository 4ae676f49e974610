"""Simulated proxies for the xDS benchmarks: many ADS streams on one asyncio loop, in a process of their own.

Run by ``xds_convergence.py`` and ``xds_generation.py``, not by hand::

    python benchmarks/_xds_fleet.py --target 127.0.0.1:18000 --proxies 100 --services 1000 [--delta] [--istio]

Each proxy has a channel of its own (so a TCP connection of its own, as every Envoy has) and one ADS
stream, and asks for what an Envoy sidecar of the benchmark's mesh asks for, in Envoy's order: CDS and LDS
by wildcard, then the load assignment of every cluster (before it ACKs CDS) and the route configuration of
the listener (before it ACKs LDS). It ACKs every response as Envoy does: SotW with the response's version
and nonce, Delta with its nonce. It decodes each response's envelope but not the resources inside, so
that the clients cost the machine little and the figures are the server's.

With ``--istio`` the proxies are the sidecars of ``_gen_mesh`` (Istio node ids and metadata), served by a
control plane that generates their config: as Envoy does, each asks for the load assignments of the EDS
clusters and the route configurations of the listeners it was sent, which it reads from the CDS and LDS
responses (a resource seen once is not parsed again, whichever proxy received it).

It writes ``ready`` on stdout just before the proxies connect, runs until its stdin closes, then writes one JSON
line: the responses and bytes each proxy received, by type. It exits 1 with a message on stderr when a
stream fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections import Counter
from typing import Any, Final

import _gen_mesh
import _xds_mesh as mesh
import grpc
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2

from mesh_xds import CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE
from mesh_xds.resource import short_type

_SOTW_PATH: Final = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
_DELTA_PATH: Final = "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"
_CHANNEL_OPTIONS: Final = (
    ("grpc.use_local_subchannel_pool", 1),  # a connection per proxy, not one shared by every channel
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
)
# The subscription that a response of a wildcard type calls for, sent before that response is ACKed.
_FOLLOWS: Final = {CLUSTER_TYPE: ENDPOINT_TYPE, LISTENER_TYPE: ROUTE_TYPE}


def _node(index: int, *, istio: bool) -> Any:
    if istio:
        return base_pb2.Node(
            id=_gen_mesh.node_id(index),
            cluster=f"{_gen_mesh.CLIENT_APP}.{_gen_mesh.CLIENT_NAMESPACE}",
            user_agent_name="envoy",
            metadata=_gen_mesh.node_metadata(),
        )
    return base_pb2.Node(
        id=mesh.node_id(index),
        cluster=f"client-{index:03d}.bench",
        user_agent_name="envoy",
        metadata={"ISTIO_VERSION": "1.28.0", "CLUSTER_ID": "Kubernetes"},
    )


_HCM_TYPE: Final = "type.googleapis.com/" + http_connection_manager_pb2.HttpConnectionManager.DESCRIPTOR.full_name


def _eds_names(resource: bytes) -> list[str]:
    """The load assignment an EDS cluster (a serialized Any) waits for; none for other clusters."""
    cluster = cluster_pb2.Cluster.FromString(any_pb2.Any.FromString(resource).value)
    if cluster.type != cluster_pb2.Cluster.EDS:
        return []
    return [cluster.eds_cluster_config.service_name or cluster.name]


def _rds_names(resource: bytes) -> list[str]:
    """The route configurations a listener (a serialized Any) waits for."""
    listener = listener_pb2.Listener.FromString(any_pb2.Any.FromString(resource).value)
    found = []
    for chain in listener.filter_chains:
        for network_filter in chain.filters:
            if network_filter.typed_config.type_url == _HCM_TYPE:
                manager = http_connection_manager_pb2.HttpConnectionManager.FromString(
                    network_filter.typed_config.value
                )
                if manager.HasField("rds"):
                    found.append(manager.rds.route_config_name)
    return found


_READERS: Final = {CLUSTER_TYPE: _eds_names, LISTENER_TYPE: _rds_names}
_SEEN: dict[bytes, list[str]] = {}  # what a resource waits for, by its bytes (every proxy gets the same ones)


def _waits_for(type_url: str, resource: Any) -> list[str]:
    """The names a resource (an Any) of ``type_url`` waits for."""
    data = resource.SerializeToString()
    names = _SEEN.get(data)
    if names is None:
        names = _SEEN[data] = _READERS[type_url](data)
    return names


class _Proxy:
    """One simulated sidecar."""

    def __init__(
        self, index: int, target: str, names: dict[str, list[str]], *, delta: bool, istio: bool = False
    ) -> None:
        self.index = index
        self.delta = delta
        self.istio = istio
        self._held: dict[str, dict[str, list[str]]] = {CLUSTER_TYPE: {}, LISTENER_TYPE: {}}
        self.responses: Counter[str] = Counter()
        self.bytes: Counter[str] = Counter()
        self._channel = grpc.aio.insecure_channel(target, options=list(_CHANNEL_OPTIONS))
        self._names = names
        response_class = discovery_pb2.DeltaDiscoveryResponse if delta else discovery_pb2.DiscoveryResponse
        self._call: Any = self._channel.stream_stream(
            _DELTA_PATH if delta else _SOTW_PATH,
            request_serializer=None,
            response_deserializer=lambda data: (len(data), response_class.FromString(data)),
        )()
        # A request is its subscription's bytes plus the ACK's fields: concatenated messages merge.
        self._base = {type_url: self._subscription(type_url) for type_url in names}

    def _subscription(self, type_url: str) -> bytes:
        names = self._names[type_url]
        if self.delta:
            message: Any = discovery_pb2.DeltaDiscoveryRequest(type_url=type_url, resource_names_subscribe=names)
        else:
            message = discovery_pb2.DiscoveryRequest(type_url=type_url, resource_names=names)
        data: bytes = message.SerializeToString()
        return data

    def _ack(self, type_url: str, version: str, nonce: str) -> bytes:
        if self.delta:
            delta_ack: bytes = discovery_pb2.DeltaDiscoveryRequest(
                type_url=type_url, response_nonce=nonce
            ).SerializeToString()
            return delta_ack
        # SotW repeats the subscription with every request, as Envoy does.
        ack: bytes = discovery_pb2.DiscoveryRequest(version_info=version, response_nonce=nonce).SerializeToString()
        return self._base[type_url] + ack

    async def start(self) -> None:
        """Open the stream: the node with the first request, CDS then LDS."""
        first: Any = (discovery_pb2.DeltaDiscoveryRequest if self.delta else discovery_pb2.DiscoveryRequest)()
        first.node.CopyFrom(_node(self.index, istio=self.istio))
        await self._call.write(bytes(first.SerializeToString()) + self._base[CLUSTER_TYPE])
        await self._call.write(self._base[LISTENER_TYPE])

    async def run(self) -> None:
        """ACK every response until the stream ends."""
        requested: set[str] = {CLUSTER_TYPE, LISTENER_TYPE}
        while True:
            received = await self._call.read()
            if received is grpc.aio.EOF:
                return
            size, response = received
            type_url = str(response.type_url)
            self.responses[type_url] += 1
            self.bytes[type_url] += size
            follow = _FOLLOWS.get(type_url)
            if follow is not None and self.istio:
                await self._follow(follow, self._wanted(type_url, response), requested)
            elif follow is not None and follow not in requested:
                requested.add(follow)
                await self._call.write(self._base[follow])
            version = "" if self.delta else str(response.version_info)
            await self._call.write(self._ack(type_url, version, str(response.nonce)))

    def _wanted(self, type_url: str, response: Any) -> list[str]:
        """What the resources of ``type_url`` held after ``response`` wait for (of the type that follows)."""
        held = self._held[type_url]
        if self.delta:
            for name in response.removed_resources:
                held.pop(name, None)
            for item in response.resources:
                held[item.name] = _waits_for(type_url, item.resource)
        else:
            held.clear()
            for number, item in enumerate(response.resources):
                held[str(number)] = _waits_for(type_url, item)
        return sorted({name for names in held.values() for name in names})

    async def _follow(self, type_url: str, names: list[str], requested: set[str]) -> None:
        """Subscribe to ``names`` of ``type_url`` when the subscription changes (Envoy's order: before the ACK)."""
        if type_url in requested and self._names[type_url] == names:
            return
        old = set(self._names[type_url]) if type_url in requested else set()
        requested.add(type_url)
        self._names = {**self._names, type_url: names}
        self._base[type_url] = self._subscription(type_url)
        if self.delta:
            change = discovery_pb2.DeltaDiscoveryRequest(
                type_url=type_url,
                resource_names_subscribe=sorted(set(names) - old),
                resource_names_unsubscribe=sorted(old - set(names)),
            )
            await self._call.write(change.SerializeToString())
        else:
            await self._call.write(self._base[type_url])

    async def close(self) -> None:
        """End the stream and the channel."""
        self._call.cancel()
        await self._channel.close()


async def _serve(target: str, proxies: int, services: int, *, delta: bool, istio: bool) -> dict[str, Any]:
    clusters = [] if istio else [mesh.cluster_name(index) for index in range(services)]
    names: dict[str, list[str]] = {
        CLUSTER_TYPE: [],
        ENDPOINT_TYPE: clusters,
        LISTENER_TYPE: [],
        ROUTE_TYPE: [] if istio else [mesh.ROUTE_NAME],
    }
    print("ready", flush=True)
    fleet = [_Proxy(index, target, names, delta=delta, istio=istio) for index in range(proxies)]
    for proxy in fleet:
        await proxy.start()
    runs = [asyncio.create_task(proxy.run(), name=f"proxy-{proxy.index}") for proxy in fleet]
    loop = asyncio.get_running_loop()
    stdin_closed = loop.run_in_executor(None, sys.stdin.read)
    done, _ = await asyncio.wait([stdin_closed, *runs], return_when=asyncio.FIRST_COMPLETED)
    failed = [task for task in runs if task in done]
    for task in runs:
        task.cancel()
    await asyncio.gather(*runs, return_exceptions=True)
    for proxy in fleet:
        await proxy.close()
    if failed:
        error = failed[0].exception() if not failed[0].cancelled() else None
        raise SystemExit(f"proxy stream ended early: {error or 'the server closed it'}")
    responses: Counter[str] = sum((proxy.responses for proxy in fleet), Counter())
    sizes: Counter[str] = sum((proxy.bytes for proxy in fleet), Counter())
    return {
        "responses": {short_type(url): count for url, count in sorted(responses.items())},
        "bytes": {short_type(url): count for url, count in sorted(sizes.items())},
    }


def main() -> None:
    """Run the fleet until stdin closes."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--target", required=True, help="the ADS server, host:port")
    parser.add_argument("--proxies", type=int, default=100)
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--delta", action="store_true", help="speak Delta ADS instead of SotW")
    parser.add_argument("--istio", action="store_true", help="be the sidecars of _gen_mesh, asking for what they get")
    options = parser.parse_args()
    summary = asyncio.run(
        _serve(options.target, options.proxies, options.services, delta=options.delta, istio=options.istio)
    )
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
