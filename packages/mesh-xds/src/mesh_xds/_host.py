"""What the ADS and SDS servers share: the grpc.aio server, health, reflection, streams and status (private)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Final

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

from mesh_xds._clients import Clients, StatusPredicate
from mesh_xds._stream import Context, Stream, StreamOptions
from mesh_xds._text import describe
from mesh_xds.errors import ServerError
from mesh_xds.metrics import XdsMetrics
from mesh_xds.status import StreamKind, StreamStatus, SyncState

_log = logging.getLogger("mesh_xds.server")

DEFAULT_MAX_REQUEST_BYTES: Final = 4 * 1024 * 1024
"""Istio's ``ISTIO_GPRC_MAXRECVMSGSIZE``: larger requests end their stream with RESOURCE_EXHAUSTED."""

Handler = Callable[[Any, Context], Coroutine[Any, Any, None]]


def _identity(data: bytes) -> bytes:
    return data


def stream_handler(handler: Handler) -> grpc.RpcMethodHandler[bytes, bytes]:
    """A stream-stream method handler that passes request and response bytes through untouched."""
    return grpc.stream_stream_rpc_method_handler(handler, request_deserializer=_identity, response_serializer=_identity)


def stream_service(service: str, *, sotw: str, delta: str, options: StreamOptions) -> grpc.GenericRpcHandler:
    """The handler of an xDS service: its method ``sotw`` runs SotW streams and ``delta`` Delta ones."""

    async def run_sotw(_requests: Any, context: Context) -> None:
        await Stream(context, StreamKind.SOTW, options).run()

    async def run_delta(_requests: Any, context: Context) -> None:
        await Stream(context, StreamKind.DELTA, options).run()

    handlers = {sotw: stream_handler(run_sotw), delta: stream_handler(run_delta)}
    return grpc.method_handlers_generic_handler(service, handlers)


class ServerBase:
    """A grpc.aio server with health and reflection, serving xDS streams and keeping their records."""

    def __init__(
        self,
        *,
        metrics: XdsMetrics | None,
        max_request_bytes: int,
        health: bool,
        reflection: bool,
        credentials: grpc.ServerCredentials | None,
        grpc_options: Sequence[tuple[str, Any]],
    ) -> None:
        if max_request_bytes <= 0:
            raise ServerError(f"max_request_bytes must be positive, got {describe(max_request_bytes)}")
        self._metrics = metrics if metrics is not None else XdsMetrics()
        self._max_request_bytes = max_request_bytes
        self._health_enabled = health
        self._reflection_enabled = reflection
        self._credentials = credentials
        self._grpc_options = tuple(grpc_options)
        self._clients = Clients()
        self._server: grpc.aio.Server | None = None
        self._health: health_aio.HealthServicer | None = None
        self._port = 0
        self._address = ""
        self._stopped = False

    # ---------------------------------------------------------------- for subclasses

    def _services(self, server: grpc.aio.Server) -> list[str]:
        """Add the server's own services; return their full names."""
        raise NotImplementedError

    async def _started(self) -> None:
        """Called once the server serves."""

    async def _stopping(self) -> None:
        """Called before the server stops."""

    # ---------------------------------------------------------------- public through subclasses

    @property
    def metrics(self) -> XdsMetrics:
        """The server's metrics."""
        return self._metrics

    @property
    def port(self) -> int:
        """The bound TCP port (0 before :meth:`start`, and for Unix sockets)."""
        return self._port

    @property
    def address(self) -> str:
        """The address served, with the bound port (empty before :meth:`start`)."""
        return self._address

    async def start(self, address: str = "127.0.0.1:0") -> int:
        """Bind ``address`` and serve; return the bound TCP port (0 for a Unix socket).

        Args:
            address: ``host:port`` (port 0 picks a free one), or ``unix:/path/to.sock``.

        Raises:
            ServerError: the server was started before, or the address cannot be bound.
        """
        if self._server is not None or self._stopped:
            raise ServerError("a server can be started once")
        options = [
            ("grpc.max_receive_message_length", self._max_request_bytes),
            ("grpc.so_reuseport", 0),  # a second server on a busy port must fail, not share it
            *self._grpc_options,
        ]
        server = grpc.aio.server(options=options)
        names = self._services(server)
        if self._health_enabled:
            self._health = health_aio.HealthServicer()
            health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
            names.append(health_pb2.DESCRIPTOR.services_by_name["Health"].full_name)
        if self._reflection_enabled:
            reflection.enable_server_reflection([*names, reflection.SERVICE_NAME], server)
        try:
            if self._credentials is not None:
                port = server.add_secure_port(address, self._credentials)
            else:
                port = server.add_insecure_port(address)
        except RuntimeError as error:
            raise ServerError(f"cannot bind {describe(address)}: {error}") from None
        is_unix = address.startswith("unix")
        self._port = 0 if is_unix else port
        self._address = address if is_unix else f"{address.rpartition(':')[0]}:{port}"
        await server.start()
        self._server = server
        if self._health is not None:
            for name in ("", *names):
                await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        await self._started()
        _log.info("serving %s on %s", ", ".join(names), self._address)
        return self._port

    async def stop(self, grace: float | None = 1.0) -> None:
        """End every stream and stop serving; idempotent.

        Streams end with status OK (clients reconnect elsewhere); ``grace`` seconds are left to calls
        that are still running (health watches), then they are cancelled.
        """
        server, self._server = self._server, None
        self._stopped = True
        if server is None:
            return
        if self._health is not None:
            await self._health.enter_graceful_shutdown()
        await self._stopping()
        self._clients.close_all()
        await server.stop(grace)
        _log.info("stopped serving on %s", self._address)

    def status(self) -> tuple[StreamStatus, ...]:
        """The record of every open stream (see :mod:`mesh_xds.status`)."""
        return self._clients.status()

    def status_of(self, node_id: str) -> tuple[StreamStatus, ...]:
        """The records of the open streams of one node."""
        return self._clients.status(node_id)

    async def wait_until(
        self, predicate: StatusPredicate, *, node_id: str | None = None, timeout: float = 10.0
    ) -> tuple[StreamStatus, ...]:
        """Wait until ``predicate(statuses)`` holds; return the statuses that satisfied it.

        The predicate is given :meth:`status` (or :meth:`status_of` ``node_id``) again after every change
        of a record; naming the node makes waiting on many nodes at once cheap.

        Raises:
            TimeoutError: it did not hold within ``timeout`` seconds (the message shows the statuses).
        """
        try:
            return await self._clients.wait_until(predicate, timeout, node_id)
        except TimeoutError:
            shown = _summary(self._clients.status(node_id))
            raise TimeoutError(f"no status satisfied the condition in {timeout}s: {shown}") from None

    async def wait_synced(
        self, node_id: str, *, type_urls: Sequence[str] = (), view: object = None, timeout: float = 10.0
    ) -> StreamStatus:
        """Wait until a stream of ``node_id`` has ACKed everything sent and has nothing left to send.

        Args:
            node_id: the node.
            type_urls: types that must have been answered and ACKed (by default, those it asked for).
            view: when given, the snapshot the stream must be answering from.
            timeout: seconds to wait.

        Raises:
            TimeoutError: no stream of the node got there in time.
        """

        def synced(status: StreamStatus) -> bool:
            if not status.synced or (view is not None and status.view is not view):
                return False
            return all((found := status.type(url)) is not None and found.state is SyncState.SYNCED for url in type_urls)

        statuses = await self.wait_until(lambda found: any(map(synced, found)), node_id=node_id, timeout=timeout)
        return next(status for status in statuses if synced(status))


def _summary(statuses: tuple[StreamStatus, ...]) -> str:
    if not statuses:
        return "no stream is open"
    parts = []
    for status in statuses[:5]:
        types = ", ".join(f"{item.short_type}={item.state.value}" for item in status.types.values())
        parts.append(f"{status.node.id} [{types}{', pending' if status.pending else ''}]")
    more = f" and {len(statuses) - 5} more" if len(statuses) > 5 else ""
    return "; ".join(parts) + more
