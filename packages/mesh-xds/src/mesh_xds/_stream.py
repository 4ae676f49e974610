"""The driver of one xDS stream on grpc.aio (private).

It reads requests in a task of its own and writes responses from the RPC's task, so that pushes go out
while the client is silent. It owns nothing the session does not: the node, the watch on the source, the
registration with the server's clients and the metrics. Whatever way the stream ends (the client leaves,
breaks the protocol, or the server stops), the reader task is cancelled and awaited, the watch is
cancelled and the stream leaves the registry: nothing of a closed stream remains.

Requests arrive as raw bytes (the RPC has no deserializer) and are parsed here, so that a malformed one
ends its stream with ``INVALID_ARGUMENT`` and a message instead of an opaque gRPC error.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
import time
from collections.abc import Iterable
from typing import Any, Protocol, final

import attrs
import grpc
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf.message import DecodeError

from mesh_model import Subscription
from mesh_xds._clients import Clients
from mesh_xds._delta import DeltaSession
from mesh_xds._session import DeltaRequest, RejectDetail, RequestKind, ServesType, SotwRequest, now
from mesh_xds._sotw import SotwSession
from mesh_xds._text import describe
from mesh_xds.cache import ViewHandler
from mesh_xds.errors import InvalidResourceError, ProtocolError
from mesh_xds.metrics import XdsMetrics
from mesh_xds.node import NodeInfo
from mesh_xds.resource import TYPE_PREFIX, short_type
from mesh_xds.snapshot import Snapshot
from mesh_xds.status import StreamKind, StreamStatus

_log = logging.getLogger("mesh_xds.server")
_ids = itertools.count(1)

Context = grpc.aio.ServicerContext[bytes, bytes]


class Source(Protocol):
    """Where a stream's views come from."""

    def node_key(self, node: NodeInfo) -> str:
        """The key of the node's view."""

    def open(self, node: NodeInfo, on_view: ViewHandler) -> Subscription:
        """Deliver the node's views to ``on_view`` until cancelled."""

    def prepare(self, type_url: str, names: Iterable[str]) -> None:
        """A client asks for these names: make them available if the source builds views on demand."""


@final
@attrs.frozen
class StreamOptions:
    """What a server gives each of its streams."""

    service: str
    source: Source
    clients: Clients
    metrics: XdsMetrics
    serves: ServesType
    control_plane: bytes = b""
    max_types: int = 64
    default_type: str = ""
    only_type: str = ""


@final
class Stream:
    """One SotW or Delta stream."""

    def __init__(self, context: Context, kind: StreamKind, options: StreamOptions) -> None:
        self._context = context
        self._kind = kind
        self._options = options
        session_class = SotwSession if kind is StreamKind.SOTW else DeltaSession
        self._session = session_class(
            serves=options.serves, control_plane=options.control_plane, max_types=options.max_types
        )
        self._stream_id = next(_ids)
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self._wake = asyncio.Event()
        self._latest: tuple[Snapshot | None] | None = None
        self._closing = False
        self._reader_done = False
        self._error: BaseException | None = None
        self._view_changed_at: float | None = None
        self._node: NodeInfo | None = None
        self._node_key = ""
        self._version_label = ""
        self._peer = context.peer() or ""
        self._connected_at = now()
        self._warned_types: set[str] = set()

    @property
    def stream_id(self) -> int:
        return self._stream_id

    @property
    def node_id(self) -> str:
        return self._node.id if self._node is not None else ""

    def status(self) -> StreamStatus | None:
        if self._node is None:
            return None
        return StreamStatus(
            stream_id=self._stream_id,
            service=self._options.service,
            kind=self._kind,
            node=self._node,
            node_key=self._node_key,
            peer=self._peer,
            connected_at=self._connected_at,
            types=self._session.status(),
            pending=self._session.owes_answers() or self._latest is not None,
            view=self._session.view,
        )

    def close(self) -> None:
        self._closing = True
        self._wake.set()

    async def run(self) -> None:
        """Serve the stream until it ends."""
        reader: asyncio.Task[None] | None = None
        watch: Subscription | None = None
        # The stream ends with a status set on the context, not with context.abort(): the AbortError that abort()
        # raises carries this frame (and so this stream) in its traceback, and gRPC keeps it for a while.
        failure: tuple[grpc.StatusCode, str] | None = None
        try:
            first = await self._read()
            if first is None:
                return
            node_proto, request = first
            self._start(node_proto)
            watch = self._options.source.open(self._require_node(), self._on_view)
            self._handle(request)
            reader = asyncio.create_task(self._read_all(), name=f"xds-reader-{self._stream_id}")
            await self._write_all()
            if self._error is not None:
                raise self._error
        except ProtocolError as error:
            message = str(error)  # not the exception: a kept log record would keep the stream alive
            _log.warning("%s stream %d from %s ended: %s", self._options.service, self._stream_id, self._peer, message)
            self._error = None
            failure = (error.code, message)
        except (asyncio.CancelledError, grpc.aio.AbortError):
            raise
        except Exception:
            self._options.metrics.internal_error()
            _log.exception("%s stream %d from %s failed", self._options.service, self._stream_id, self._peer)
            failure = (grpc.StatusCode.INTERNAL, "the xDS server failed; see its log")
        finally:
            self._closing = True
            if reader is not None:
                reader.cancel()
                with contextlib.suppress(BaseException):
                    await reader
            if watch is not None:
                watch.cancel()
            self._options.clients.remove(self)
            if self._node is not None:
                self._options.metrics.stream_closed(self._version_label)
                _log.info("%s stream %d of %s closed", self._options.service, self._stream_id, self._node.id)
        if failure is not None:
            self._context.set_code(failure[0])
            self._context.set_details(failure[1])

    # ---------------------------------------------------------------- requests

    def _start(self, node_proto: Any) -> None:
        if node_proto is None:
            raise ProtocolError(grpc.StatusCode.INVALID_ARGUMENT, "the first request of a stream must carry a node")
        try:
            node = NodeInfo.from_proto(node_proto)
        except InvalidResourceError as error:
            raise ProtocolError(grpc.StatusCode.INVALID_ARGUMENT, f"the first request's node: {error}") from None
        self._node = node
        self._node_key = self._options.source.node_key(node)
        version = node.metadata.get("ISTIO_VERSION")
        self._version_label = version if isinstance(version, str) and version else "unknown"
        self._options.metrics.stream_opened(self._version_label)
        self._options.clients.add(self)
        _log.info(
            "%s %s stream %d: node %s from %s",
            self._options.service,
            self._kind.value,
            self._stream_id,
            describe(node.id),
            self._peer,
        )

    def _require_node(self) -> NodeInfo:
        assert self._node is not None
        return self._node

    async def _read(self) -> tuple[Any, SotwRequest | DeltaRequest] | None:
        data: object = await self._context.read()
        if data is grpc.aio.EOF:
            return None
        if not isinstance(data, bytes):
            raise ProtocolError(grpc.StatusCode.INTERNAL, "the request arrived without its bytes")
        self._options.metrics.received(len(data))
        if self._kind is StreamKind.SOTW:
            return self._decode_sotw(data)
        return self._decode_delta(data)

    def _decode_sotw(self, data: bytes) -> tuple[Any, SotwRequest]:
        try:
            message: Any = discovery_pb2.DiscoveryRequest.FromString(data)
        except DecodeError as error:
            raise ProtocolError(grpc.StatusCode.INVALID_ARGUMENT, f"a malformed DiscoveryRequest: {error}") from None
        request = SotwRequest(
            type_url=self._type_url(message.type_url),
            version_info=message.version_info,
            nonce=message.response_nonce,
            names=tuple(message.resource_names),
            error=_reject(message),
        )
        return (message.node if message.HasField("node") else None), request

    def _decode_delta(self, data: bytes) -> tuple[Any, DeltaRequest]:
        try:
            message: Any = discovery_pb2.DeltaDiscoveryRequest.FromString(data)
        except DecodeError as error:
            raise ProtocolError(
                grpc.StatusCode.INVALID_ARGUMENT, f"a malformed DeltaDiscoveryRequest: {error}"
            ) from None
        request = DeltaRequest(
            type_url=self._type_url(message.type_url),
            nonce=message.response_nonce,
            subscribe=tuple(message.resource_names_subscribe),
            unsubscribe=tuple(message.resource_names_unsubscribe),
            initial_versions=dict(message.initial_resource_versions),
            error=_reject(message),
        )
        return (message.node if message.HasField("node") else None), request

    def _type_url(self, type_url: str) -> str:
        options = self._options
        if not type_url and options.default_type:
            return options.default_type
        if not type_url:
            raise ProtocolError(grpc.StatusCode.INVALID_ARGUMENT, "a request on an ADS stream must name its type_url")
        if not type_url.startswith(TYPE_PREFIX) or len(type_url) == len(TYPE_PREFIX):
            raise ProtocolError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"type_url {describe(type_url)} does not look like {TYPE_PREFIX}<message name>",
            )
        if options.only_type and type_url != options.only_type:
            raise ProtocolError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"this {options.service} service serves only {options.only_type}, not {describe(type_url)}",
            )
        return type_url

    async def _read_all(self) -> None:
        try:
            while not self._closing:
                received = await self._read()
                if received is None:
                    break
                self._handle(received[1])
        except asyncio.CancelledError:
            raise
        except Exception as error:  # handed to the writer, which ends the stream with it
            self._error = error
        finally:
            self._reader_done = True
            self._wake.set()

    def _handle(self, request: SotwRequest | DeltaRequest) -> None:
        names = request.names if isinstance(request, SotwRequest) else request.subscribe
        self._options.source.prepare(request.type_url, names)
        if isinstance(request, SotwRequest):
            assert isinstance(self._session, SotwSession)
            kind = self._session.handle(request)
        else:
            assert isinstance(self._session, DeltaSession)
            kind = self._session.handle(request)
        self._log_request(request, kind)
        self._options.clients.notify(self.node_id)
        if self._session.has_pending():
            self._wake.set()

    def _log_request(self, request: SotwRequest | DeltaRequest, kind: RequestKind) -> None:
        node_id = self._require_node().id
        label = short_type(request.type_url)
        if kind is RequestKind.NACK:
            self._options.metrics.rejected(request.type_url)
            error = request.error
            assert error is not None
            _log.warning("%s NACK from %s (code %d): %s", label, node_id, error.code, describe(error.message))
        elif kind is RequestKind.STALE:
            self._options.metrics.expired_nonce(request.type_url)
            _log.debug("%s stale nonce %s from %s ignored", label, describe(request.nonce), node_id)
        elif kind is RequestKind.INITIAL and request.type_url not in self._warned_types:
            view = self._session.view
            if view is not None and not self._session.serves(request.type_url):
                self._warned_types.add(request.type_url)
                _log.warning("%s asks for %s, which this server does not serve", node_id, describe(request.type_url))

    # ---------------------------------------------------------------- views and responses

    def _on_view(self, snapshot: Snapshot | None) -> None:
        """Take a new view; called by the source, possibly from another thread."""
        self._latest = (snapshot,)
        if threading.get_ident() == self._thread:
            self._apply_view()
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: the stream is gone
            self._loop.call_soon_threadsafe(self._apply_view)

    def _apply_view(self) -> None:
        latest, self._latest = self._latest, None
        if latest is None or self._closing:
            return
        if self._view_changed_at is None:
            self._view_changed_at = time.perf_counter()
        self._session.set_view(latest[0])
        self._options.clients.notify(self.node_id)
        if self._session.has_pending():
            self._wake.set()

    async def _write_all(self) -> None:
        metrics = self._options.metrics
        while True:
            await self._wake.wait()
            self._wake.clear()
            while not (self._reader_done or self._closing):
                started = time.perf_counter()
                outgoing = self._session.next_response()
                if outgoing is None:
                    break
                sending = time.perf_counter()
                try:
                    await self._context.write(outgoing.payload)
                except Exception:
                    metrics.send_failed(outgoing.type_url)
                    raise
                done = time.perf_counter()
                metrics.pushed(
                    outgoing.type_url, seconds=done - started, send_seconds=done - sending, size=len(outgoing.payload)
                )
                self._options.clients.notify(self.node_id)
            if self._reader_done or self._closing:
                return
            self._options.clients.notify(self.node_id)  # nothing is pending any more
            if self._view_changed_at is not None and not self._session.has_pending():
                metrics.converged(time.perf_counter() - self._view_changed_at)
                self._view_changed_at = None


def _reject(message: Any) -> RejectDetail | None:
    if not message.HasField("error_detail"):
        return None
    return RejectDetail(int(message.error_detail.code), str(message.error_detail.message))
