"""CSDS: ``envoy.service.status.v3.ClientStatusDiscoveryService`` over the servers' records (private).

``grpcio-csds`` only dumps the xDS config of the gRPC library's own *client* (``cygrpc.dump_xds_configs``),
so the service is implemented here: one ``ClientConfig`` per open stream, with one ``GenericXdsConfig`` per
resource the client holds (as far as the server knows; one without a name for a type it holds nothing of),
the version, and the state of the type's last response (NOT_SENT, SYNCED, STALE, ERROR after a NACK, with
the client's error text). Node matchers select clients by node id (exact, prefix, suffix, contains, with
``ignore_case``). Secrets are listed by name and version only: their contents (private keys) are never shown.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any, Final, final

import grpc
from envoy.admin.v3 import config_dump_shared_pb2
from envoy.service.status.v3 import csds_pb2, csds_pb2_grpc
from google.protobuf import timestamp_pb2

from mesh_xds._clients import Clients
from mesh_xds.resource import SECRET_TYPE
from mesh_xds.status import StreamKind, StreamStatus, SyncState, TypeStatus

_log = logging.getLogger("mesh_xds.csds")

_CONFIG_STATUS: Final = {
    SyncState.NOT_SENT: csds_pb2.NOT_SENT,
    SyncState.SYNCED: csds_pb2.SYNCED,
    SyncState.STALE: csds_pb2.STALE,
    SyncState.NACKED: csds_pb2.ERROR,
}
_CLIENT_STATUS: Final = {
    SyncState.NOT_SENT: config_dump_shared_pb2.UNKNOWN,
    SyncState.SYNCED: config_dump_shared_pb2.ACKED,
    SyncState.STALE: config_dump_shared_pb2.UNKNOWN,
    SyncState.NACKED: config_dump_shared_pb2.NACKED,
}


class _BadRequestError(Exception):
    pass


def _timestamp(at: datetime) -> Any:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(at)
    return stamp


def _string_matches(matcher: Any, value: str) -> bool:
    kind = matcher.WhichOneof("match_pattern")
    if kind is None:
        return True
    pattern = getattr(matcher, kind)
    if kind not in ("exact", "prefix", "suffix", "contains") or not isinstance(pattern, str):
        raise _BadRequestError(f"node matchers support exact, prefix, suffix and contains, not {kind}")
    if matcher.ignore_case:
        value, pattern = value.lower(), pattern.lower()
    if kind == "exact":
        return value == pattern
    if kind == "prefix":
        return value.startswith(pattern)
    if kind == "suffix":
        return value.endswith(pattern)
    return pattern in value


def _selected(request: Any, status: StreamStatus) -> bool:
    if not request.node_matchers:
        return True
    return any(
        not matcher.HasField("node_id") or _string_matches(matcher.node_id, status.node.id)
        for matcher in request.node_matchers
    )


def _add_type(config: Any, status: TypeStatus, kind: StreamKind, *, contents: bool) -> None:
    state = status.state
    updated = status.last_ack.at if status.last_ack is not None else None
    if updated is None and status.last_sent is not None:
        updated = status.last_sent.at
    # A type the client holds nothing of still gets one entry, without a name (as istiod's syncz reports
    # every type), so that its state shows: an empty response ACKed is SYNCED, not NOT SENT.
    for resource in status.resources.values() or (None,):
        entry = config.generic_xds_configs.add(
            type_url=status.type_url,
            name="" if resource is None else resource.name,
            config_status=_CONFIG_STATUS[state],
            client_status=_CLIENT_STATUS[state],
        )
        if kind is StreamKind.DELTA and resource is not None:
            entry.version_info = resource.version
        elif status.last_sent is not None:
            entry.version_info = status.last_sent.version
        if updated is not None:
            entry.last_updated.CopyFrom(_timestamp(updated))
        if contents and resource is not None and status.type_url != SECRET_TYPE:
            entry.xds_config.ParseFromString(resource.any_bytes)
        nack = status.last_nack
        if state is SyncState.NACKED and nack is not None:
            entry.error_state.details = nack.message
            entry.error_state.version_info = nack.version
            entry.error_state.last_update_attempt.CopyFrom(_timestamp(nack.at))


def client_status(request: Any, statuses: tuple[StreamStatus, ...]) -> Any:
    """The ``ClientStatusResponse`` for a request over the given stream records."""
    response = csds_pb2.ClientStatusResponse()
    for status in statuses:
        if not _selected(request, status):
            continue
        config = response.config.add()
        config.node.CopyFrom(status.node.to_proto())
        config.client_scope = f"{status.service}/{status.kind.value}/{status.stream_id}"
        for type_status in status.types.values():
            _add_type(config, type_status, status.kind, contents=not request.exclude_resource_contents)
    return response


@final
class ClientStatusService(csds_pb2_grpc.ClientStatusDiscoveryServiceServicer):  # type: ignore[misc]
    """The CSDS servicer (FetchClientStatus and StreamClientStatus) over a server's clients."""

    def __init__(self, clients: Clients) -> None:
        self._clients = clients

    async def FetchClientStatus(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:  # noqa: N802
        """Answer one ClientStatusRequest."""
        try:
            return client_status(request, self._clients.status())
        except _BadRequestError as error:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))

    async def StreamClientStatus(  # noqa: N802
        self, request_iterator: AsyncIterator[Any], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        """Answer every ClientStatusRequest of the stream."""
        async for request in request_iterator:
            try:
                yield client_status(request, self._clients.status())
            except _BadRequestError as error:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
