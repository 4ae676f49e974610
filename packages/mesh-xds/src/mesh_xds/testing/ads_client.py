"""An xDS client that speaks ADS (or SDS) like Envoy, for tests and benchmarks.

It sends its node on the first request only, ACKs every response it accepts, NACKs on demand (the next
response of a type, or whatever a rejector function refuses), NACKs a response holding a name twice (as
the protocol asks), and records everything it received. With ``follow_references`` it behaves like Envoy:
the clusters it is sent decide its EDS subscription and the listeners its RDS one (and both its SDS one),
and it asks for the new names *before* it ACKs the response that named them, as Envoy does while a cluster
warms::

    async with AdsClient(f"127.0.0.1:{port}", "my-envoy") as client:
        await client.subscribe(CLUSTER_TYPE)
        await client.subscribe(LISTENER_TYPE)
        clusters = await client.wait_for_resources(CLUSTER_TYPE, {"reviews"})
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable
from typing import Any, Final, final

import attrs
import grpc
from envoy.service.discovery.v3 import discovery_pb2

from mesh_xds.errors import ClientError
from mesh_xds.node import NodeInfo
from mesh_xds.resource import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    RUNTIME_TYPE,
    SECRET_TYPE,
    Resource,
    references,
    resource_name,
    unpack,
    unpack_any,
)

__all__ = ["AdsClient", "ReceivedResponse", "Rejector"]

_PATHS: Final = {
    ("ads", False): "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources",
    ("ads", True): "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources",
    ("sds", False): "/envoy.service.secret.v3.SecretDiscoveryService/StreamSecrets",
    ("sds", True): "/envoy.service.secret.v3.SecretDiscoveryService/DeltaSecrets",
}
_FOLLOWED: Final = {CLUSTER_TYPE: (ENDPOINT_TYPE, SECRET_TYPE), LISTENER_TYPE: (ROUTE_TYPE, SECRET_TYPE)}
_STATE_OF_THE_WORLD: Final = frozenset({CLUSTER_TYPE, LISTENER_TYPE})  # SotW responses replace these wholesale


@final
@attrs.frozen
class ReceivedResponse:
    """A response the client received, and what it did with it.

    Attributes:
        type_url: the response's type.
        version: ``version_info`` (SotW) or ``system_version_info`` (Delta).
        nonce: the response's nonce.
        resources: the resources it held, in order.
        removed: the names it removed (Delta).
        accepted: True when the client ACKed it, False when it NACKed it.
        error: the NACK's message.
        size: the response's size in bytes.
        at: ``time.monotonic()`` when it arrived.
    """

    type_url: str
    version: str
    nonce: str
    resources: tuple[Resource, ...]
    removed: tuple[str, ...]
    accepted: bool
    error: str
    size: int
    at: float

    @property
    def names(self) -> tuple[str, ...]:
        """The names of the resources it held."""
        return tuple(resource.name for resource in self.resources)


Rejector = Callable[[ReceivedResponse], str | None]
"""Decides on a response: an error message to NACK it, ``None`` to accept it."""


@attrs.define
class _TypeState:
    subscribed: bool = False
    names: set[str] = attrs.field(factory=set)  # explicit names ("*" included for a new-style wildcard)
    version: str = ""  # SotW: the last accepted version
    nonce: str = ""  # the last nonce received
    held: dict[str, Resource] = attrs.field(factory=dict)
    versions: dict[str, str] = attrs.field(factory=dict)  # Delta: the server's version of each held resource
    requested: bool = False  # a request of this type was sent on the current stream


def _duplicates(resources: Iterable[Resource]) -> list[str]:
    seen: set[str] = set()
    twice: set[str] = set()
    for resource in resources:
        (twice if resource.name in seen else seen).add(resource.name)
    return sorted(twice)


@final
class AdsClient:
    """A test client for an ADS (or SDS) server, SotW or Delta.

    Args:
        target: the server's address, e.g. ``127.0.0.1:18000`` or ``unix:/tmp/sds.sock``.
        node: the client's node (or just its id).
        delta: speak the incremental protocol.
        service: ``ads`` or ``sds`` (``StreamSecrets``/``DeltaSecrets``).
        follow_references: subscribe to EDS, RDS and SDS names as the clusters and listeners received ask.
        rejector: decides which responses to NACK (besides :meth:`nack_next` and duplicate names).
        keep: how many responses :attr:`responses` keeps (the oldest go first).
    """

    def __init__(
        self,
        target: str,
        node: NodeInfo | str,
        *,
        delta: bool = False,
        service: str = "ads",
        follow_references: bool = True,
        rejector: Rejector | None = None,
        keep: int = 10_000,
    ) -> None:
        if (service, delta) not in _PATHS:
            raise ClientError(f"service must be 'ads' or 'sds', not {service!r}")
        self.target = target
        self.node = node if isinstance(node, NodeInfo) else NodeInfo(node, user_agent="mesh-xds-test-client")
        self.delta = delta
        self.follow_references = follow_references and service == "ads"
        self.rejector = rejector
        self.responses: deque[ReceivedResponse] = deque(maxlen=keep)
        self.error: ClientError | None = None
        self._path = _PATHS[(service, delta)]
        self._types: dict[str, _TypeState] = {}
        self._nack_next: dict[str, list[str]] = {}
        self._channel: grpc.aio.Channel | None = None
        self._call: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._write_lock = asyncio.Lock()
        self._node_sent = False
        self._changed = asyncio.Event()
        self._probes = 0

    async def __aenter__(self) -> AdsClient:
        await self.connect()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def connect(self) -> None:
        """Open the channel and the stream (again, after :meth:`disconnect`), re-sending the subscriptions.

        A SotW client presents the version it last accepted with an empty nonce; a Delta client presents
        the versions of the resources it holds in ``initial_resource_versions``.
        """
        if self._channel is None:
            self._channel = grpc.aio.insecure_channel(self.target)
        serializer = _serialize
        deserializer = discovery_pb2.DeltaDiscoveryResponse if self.delta else discovery_pb2.DiscoveryResponse
        self._call = self._channel.stream_stream(
            self._path, request_serializer=serializer, response_deserializer=deserializer.FromString
        )()
        self.error = None
        self._node_sent = False
        for state in self._types.values():
            state.requested = False
            state.nonce = ""
        self._reader = asyncio.create_task(self._read_all(self._call))
        for type_url, state in list(self._types.items()):
            if state.subscribed:
                await self._send_subscription(type_url)

    async def disconnect(self) -> None:
        """End the stream (the channel stays), keeping what the client holds, as Envoy does when it loses ADS."""
        call, self._call = self._call, None
        reader, self._reader = self._reader, None
        if call is not None:
            call.cancel()
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(BaseException):
                await reader

    async def close(self) -> None:
        """End the stream and close the channel."""
        await self.disconnect()
        channel, self._channel = self._channel, None
        if channel is not None:
            await channel.close()

    # ---------------------------------------------------------------- subscriptions

    async def subscribe(self, type_url: str, names: Collection[str] = ()) -> None:
        """Ask for resources of a type: the given names, or (none given) every one (legacy wildcard).

        SotW sends the whole new subscription; Delta sends the names added.
        """
        state = self._types.setdefault(type_url, _TypeState())
        added = set(names) - state.names
        state.subscribed = True
        state.names |= set(names)
        if self.delta and state.requested:
            if added:
                await self._send(self._delta_request(type_url, subscribe=sorted(added)))
            return
        await self._send_subscription(type_url)

    async def unsubscribe(self, type_url: str, names: Collection[str]) -> None:
        """Stop asking for some names of a type."""
        state = self._types.setdefault(type_url, _TypeState())
        removed = set(names) & state.names
        state.names -= removed
        for name in removed:
            state.held.pop(name, None)
        if self.delta:
            await self._send(self._delta_request(type_url, unsubscribe=sorted(removed)))
        else:
            await self._send(self._sotw_request(type_url, nonce=state.nonce))

    def nack_next(self, type_url: str, message: str = "rejected by the test client", count: int = 1) -> None:
        """NACK the next ``count`` responses of a type with ``message``."""
        self._nack_next.setdefault(type_url, []).extend([message] * count)

    async def round_trip(self, *, timeout: float = 10.0) -> None:
        """Wait until the server has handled every request sent so far.

        The client asks for something the server always answers at once (a Runtime resource with a fresh
        name on ADS; on SDS the current secrets again) and waits for the answer, which the server sends
        only after it handled the earlier requests of the stream.
        """
        self._probes += 1
        name = f"mesh-xds-probe-{self._probes}"
        sds = self._path.startswith("/envoy.service.secret")
        type_url = SECRET_TYPE if sds else RUNTIME_TYPE
        count = len(self.received(type_url))
        if self.delta:
            request = self._delta_request(type_url, subscribe=[name])
        elif sds:
            self._types.setdefault(type_url, _TypeState())
            request = self._sotw_request(type_url, nonce="")  # an empty nonce is always answered
        else:
            state = self._types.setdefault(type_url, _TypeState())
            state.names, state.requested = {name}, True  # so that the ACK keeps the same names
            request = self._sotw_request(type_url, nonce="")
        await self._send(request)
        await self.wait_for(lambda: len(self.received(type_url)) > count, timeout=timeout, what="a round trip")
        if self.delta:
            await self._send(self._delta_request(type_url, unsubscribe=[name]))

    async def send(self, request: Any) -> None:
        """Send a raw ``DiscoveryRequest`` or ``DeltaDiscoveryRequest`` (to test a server's edge cases)."""
        await self._send(request)

    # ---------------------------------------------------------------- what the client holds

    def resources(self, type_url: str) -> dict[str, Resource]:
        """The resources of a type the client holds now, by name."""
        state = self._types.get(type_url)
        return dict(state.held) if state is not None else {}

    def messages(self, type_url: str) -> dict[str, Any]:
        """The resources of a type the client holds, parsed into protobuf messages."""
        return {name: unpack(resource) for name, resource in self.resources(type_url).items()}

    def version(self, type_url: str) -> str:
        """The last version of a type the client accepted (SotW), empty before."""
        state = self._types.get(type_url)
        return state.version if state is not None else ""

    def received(self, type_url: str) -> list[ReceivedResponse]:
        """The responses of a type, oldest first."""
        return [response for response in self.responses if response.type_url == type_url]

    # ---------------------------------------------------------------- waiting

    async def wait_for(
        self, predicate: Callable[[], bool], *, timeout: float = 10.0, what: str = "a condition"
    ) -> None:
        """Wait until ``predicate()`` holds; it is checked again after each response.

        Raises:
            TimeoutError: it did not hold in time (the message says what was received).
            ClientError: the stream ended first.
        """
        try:
            async with asyncio.timeout(timeout):
                while not predicate():
                    if self.error is not None:
                        raise self.error
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            got = ", ".join(f"{r.type_url.rpartition('.')[2]}@{r.version}:{len(r.resources)}" for r in self.responses)
            raise TimeoutError(f"no {what} within {timeout}s; responses: [{got[-2000:]}]") from None

    async def wait_for_resources(
        self, type_url: str, names: Collection[str] | None = None, *, timeout: float = 10.0
    ) -> dict[str, Resource]:
        """Wait until the client holds exactly ``names`` of a type (or at least one resource of it, by default)."""
        expected = None if names is None else set(names)

        def holds() -> bool:
            held = self.resources(type_url)
            return bool(held) if expected is None else set(held) == expected

        await self.wait_for(holds, timeout=timeout, what=f"{type_url} with {sorted(expected or [])}")
        return self.resources(type_url)

    async def wait_for_response(self, type_url: str, *, after: int = 0, timeout: float = 10.0) -> ReceivedResponse:
        """Wait for the response of a type that follows the first ``after`` ones; return it."""
        await self.wait_for(
            lambda: len(self.received(type_url)) > after, timeout=timeout, what=f"response of {type_url}"
        )
        return self.received(type_url)[after]

    # ---------------------------------------------------------------- protocol

    async def _send(self, request: Any) -> None:
        call = self._call
        if call is None:
            raise ClientError("the client is not connected")
        if not self._node_sent:
            request.node.CopyFrom(self.node.to_proto())
            self._node_sent = True
        async with self._write_lock:
            try:
                await call.write(request)
            except (grpc.aio.AioRpcError, asyncio.InvalidStateError) as error:
                raise ClientError(f"the stream ended before a request could be sent: {error}") from None

    async def _send_subscription(self, type_url: str) -> None:
        state = self._types[type_url]
        if self.delta:
            initial = {name: state.versions.get(name, resource.version) for name, resource in state.held.items()}
            await self._send(self._delta_request(type_url, subscribe=sorted(state.names), initial=initial))
        else:
            await self._send(self._sotw_request(type_url, nonce=state.nonce))
        state.requested = True

    def _sotw_request(self, type_url: str, *, nonce: str, error: str = "") -> Any:
        state = self._types[type_url]
        request = discovery_pb2.DiscoveryRequest(
            type_url=type_url, version_info=state.version, response_nonce=nonce, resource_names=sorted(state.names)
        )
        if error:
            request.error_detail.code = grpc.StatusCode.INTERNAL.value[0]
            request.error_detail.message = error
        return request

    def _delta_request(
        self,
        type_url: str,
        *,
        subscribe: Iterable[str] = (),
        unsubscribe: Iterable[str] = (),
        initial: dict[str, str] | None = None,
        nonce: str = "",
        error: str = "",
    ) -> Any:
        request = discovery_pb2.DeltaDiscoveryRequest(
            type_url=type_url,
            resource_names_subscribe=list(subscribe),
            resource_names_unsubscribe=list(unsubscribe),
            initial_resource_versions=initial or {},
            response_nonce=nonce,
        )
        if error:
            request.error_detail.code = grpc.StatusCode.INTERNAL.value[0]
            request.error_detail.message = error
        return request

    async def _read_all(self, call: Any) -> None:
        try:
            while True:
                message = await call.read()
                if message is grpc.aio.EOF:
                    self.error = ClientError("the server ended the stream", grpc.StatusCode.OK)
                    break
                await self._take(message)
                self._changed.set()
        except grpc.aio.AioRpcError as error:
            self.error = ClientError(f"the stream ended with {error.code().name}: {error.details()}", error.code())
        except ClientError as error:  # an ACK could not be sent: the stream is gone
            self.error = error
        except asyncio.CancelledError:
            self.error = ClientError("the client disconnected")
            raise
        finally:
            self._changed.set()

    async def _take(self, message: Any) -> None:
        type_url = str(message.type_url)
        state = self._types.setdefault(type_url, _TypeState())
        state.nonce = str(message.nonce)
        if self.delta:
            resources = tuple(
                Resource(type_url, item.name, item.resource.SerializeToString()) for item in message.resources
            )
            server_versions = {item.name: str(item.version) for item in message.resources}
            version, removed = str(message.system_version_info), tuple(message.removed_resources)
        else:
            resources = tuple(
                Resource(type_url, resource_name(unpack_any(item)), item.SerializeToString())
                for item in message.resources
            )
            version, removed, server_versions = str(message.version_info), (), {}
        provisional = ReceivedResponse(
            type_url, version, state.nonce, resources, removed, True, "", message.ByteSize(), time.monotonic()
        )
        error = self._judge(provisional)
        received = attrs.evolve(provisional, accepted=error is None, error=error or "")
        self.responses.append(received)
        if error is not None:
            await self._reply(type_url, error)
            return
        if self.delta or type_url in _STATE_OF_THE_WORLD:
            if not self.delta:
                state.held.clear()
            for name in removed:
                state.held.pop(name, None)
                state.versions.pop(name, None)
        for resource in resources:
            state.held[resource.name] = resource
        state.versions.update(server_versions)
        if not self.delta:
            state.version = version
        if self.follow_references and type_url in _FOLLOWED:
            await self._follow()
        await self._reply(type_url, None)

    def _judge(self, response: ReceivedResponse) -> str | None:
        pending = self._nack_next.get(response.type_url)
        if pending:
            return pending.pop(0)
        duplicates = _duplicates(response.resources)
        if duplicates:
            return f"duplicate resource names in one response: {duplicates}"
        return self.rejector(response) if self.rejector is not None else None

    async def _reply(self, type_url: str, error: str | None) -> None:
        state = self._types[type_url]
        if self.delta:
            await self._send(self._delta_request(type_url, nonce=state.nonce, error=error or ""))
        else:
            await self._send(self._sotw_request(type_url, nonce=state.nonce, error=error or ""))

    async def _follow(self) -> None:
        """Subscribe to what the clusters and listeners held refer to over ADS, as Envoy does."""
        wanted: dict[str, set[str]] = {ENDPOINT_TYPE: set(), ROUTE_TYPE: set(), SECRET_TYPE: set()}
        for parent in _FOLLOWED:
            for resource in self.resources(parent).values():
                for reference in references(unpack(resource)):
                    if reference.via_ads and reference.type_url in wanted:
                        wanted[reference.type_url].add(reference.name)
        for type_url, names in wanted.items():
            state = self._types.get(type_url)
            if state is None and not names:
                continue
            current = state.names if state is not None else set()
            if names == current:
                continue
            state = self._types.setdefault(type_url, _TypeState())
            if self.delta and state.requested:
                added, removed = sorted(names - current), sorted(current - names)
                state.names = set(names)
                for name in removed:
                    state.held.pop(name, None)
                await self._send(self._delta_request(type_url, subscribe=added, unsubscribe=removed))
            else:
                state.names = set(names)
                for name in [held for held in state.held if held not in names]:
                    del state.held[name]
                state.subscribed = True
                if state.requested:
                    await self._send(self._sotw_request(type_url, nonce=state.nonce))
                else:
                    await self._send_subscription(type_url)


def _serialize(message: Any) -> bytes:
    data: bytes = message.SerializeToString()
    return data
