"""The ADS server: Envoy's aggregated discovery service, state of the world and Delta, on grpc.aio.

It serves ``envoy.service.discovery.v3.AggregatedDiscoveryService`` (``StreamAggregatedResources`` and
``DeltaAggregatedResources``) from a :class:`~mesh_xds.ConfigWatcher`, plus gRPC health, reflection and
CSDS (``envoy.service.status.v3.ClientStatusDiscoveryService``) on the same port::

    cache = SnapshotCache()
    server = XdsServer(cache)
    port = await server.start("127.0.0.1:0")
    cache.set_snapshot(node_id, snapshot)   # before or after the proxy connects
    await server.wait_synced(node_id)
    await server.stop()

How it treats clients that break the rules (Istio's and go-control-plane's choices):

- a first request without a node, an empty or malformed type URL, a request that does not parse, and
  (on SDS) a type other than secrets end the stream with ``INVALID_ARGUMENT`` and a message;
- a well-formed type URL the server does not serve (not a known Envoy type, and absent from the view)
  is logged once and not answered, as Istio does with a type it has no generator for: an Envoy that asks
  for an extra type keeps the rest of its config;
- a request over ``max_request_bytes`` (4 MiB, as istiod) is refused by gRPC with ``RESOURCE_EXHAUSTED``;
  a stream that asks for more than ``max_types_per_stream`` types ends with ``RESOURCE_EXHAUSTED``;
- a client that never ACKs is pushed to anyway (gRPC flow control bounds what is buffered for it); a
  client that never reads holds one stream task and one view, not a queue;
- an error of the server ends only the stream it happened on, with ``INTERNAL``, and is logged.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final, final

import grpc
from envoy.service.discovery.v3 import ads_pb2
from envoy.service.status.v3 import csds_pb2, csds_pb2_grpc

from mesh_xds import _wire
from mesh_xds._csds import ClientStatusService
from mesh_xds._host import DEFAULT_MAX_REQUEST_BYTES, ServerBase, stream_service
from mesh_xds._session import MAX_TYPES_PER_STREAM
from mesh_xds._stream import StreamOptions
from mesh_xds.cache import ConfigWatcher, ViewHandler
from mesh_xds.metrics import XdsMetrics
from mesh_xds.node import NodeInfo
from mesh_xds.resource import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    EXTENSION_CONFIG_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    RUNTIME_TYPE,
    SCOPED_ROUTE_TYPE,
    SECRET_TYPE,
    VIRTUAL_HOST_TYPE,
)
from mesh_xds.snapshot import Snapshot

__all__ = ["XdsServer"]

_ADS: Final = ads_pb2.DESCRIPTOR.services_by_name["AggregatedDiscoveryService"].full_name
_CSDS: Final = csds_pb2.DESCRIPTOR.services_by_name["ClientStatusDiscoveryService"].full_name
_KNOWN_TYPES: Final = frozenset(
    {
        CLUSTER_TYPE,
        ENDPOINT_TYPE,
        LISTENER_TYPE,
        ROUTE_TYPE,
        SECRET_TYPE,
        VIRTUAL_HOST_TYPE,
        SCOPED_ROUTE_TYPE,
        RUNTIME_TYPE,
        EXTENSION_CONFIG_TYPE,
    }
)


def _serves(type_url: str, view: Snapshot) -> bool:
    return type_url in _KNOWN_TYPES or type_url in view.type_urls


@final
class _CacheSource:
    """Views from a ConfigWatcher."""

    def __init__(self, cache: ConfigWatcher) -> None:
        self._cache = cache
        node_key = getattr(cache, "node_key", None)
        self._node_key = node_key if callable(node_key) else None

    def node_key(self, node: NodeInfo) -> str:
        key = self._node_key(node) if self._node_key is not None else node.id
        return str(key)

    def open(self, node: NodeInfo, on_view: ViewHandler) -> Any:
        return self._cache.watch(node, on_view)

    def prepare(self, type_url: str, names: Iterable[str]) -> None:
        """Views are complete: nothing to prepare."""


@final
class XdsServer(ServerBase):
    """An ADS server (SotW and Delta) with health, reflection and CSDS, serving views from a cache.

    Args:
        cache: where views come from (a :class:`~mesh_xds.SnapshotCache`, or your own ConfigWatcher).
        metrics: where to count; a private registry by default.
        max_request_bytes: the largest request accepted.
        max_types_per_stream: the most types one stream may ask for.
        control_plane_id: sent in every response's ``control_plane.identifier`` (empty: not sent).
        health: serve ``grpc.health.v1.Health`` (SERVING while up, NOT_SERVING while stopping).
        reflection: serve gRPC server reflection.
        csds: serve ``ClientStatusDiscoveryService`` with the record of every stream.
        credentials: serve TLS with these credentials instead of plaintext.
        grpc_options: more channel arguments for ``grpc.aio.server``.
    """

    def __init__(
        self,
        cache: ConfigWatcher,
        *,
        metrics: XdsMetrics | None = None,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        max_types_per_stream: int = MAX_TYPES_PER_STREAM,
        control_plane_id: str = "mesh-xds",
        health: bool = True,
        reflection: bool = True,
        csds: bool = True,
        credentials: grpc.ServerCredentials | None = None,
        grpc_options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        super().__init__(
            metrics=metrics,
            max_request_bytes=max_request_bytes,
            health=health,
            reflection=reflection,
            credentials=credentials,
            grpc_options=grpc_options,
        )
        self._csds_enabled = csds
        self._options = StreamOptions(
            service="ads",
            source=_CacheSource(cache),
            clients=self._clients,
            metrics=self._metrics,
            serves=_serves,
            control_plane=_wire.control_plane(control_plane_id) if control_plane_id else b"",
            max_types=max_types_per_stream,
        )

    def _services(self, server: grpc.aio.Server) -> list[str]:
        handler = stream_service(
            _ADS, sotw="StreamAggregatedResources", delta="DeltaAggregatedResources", options=self._options
        )
        server.add_generic_rpc_handlers([handler])
        names = [_ADS]
        if self._csds_enabled:
            csds_pb2_grpc.add_ClientStatusDiscoveryServiceServicer_to_server(ClientStatusService(self._clients), server)
            names.append(_CSDS)
        return names
