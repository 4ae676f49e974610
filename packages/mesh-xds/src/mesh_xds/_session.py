"""The protocol state of one stream, shared by SotW and Delta (private).

A session is synchronous and knows nothing of gRPC: the stream driver (``_stream``) feeds it decoded
requests and views and writes the responses it returns, and the tests drive it directly. Each type the
client asks for has a record (:class:`TypeRecord`) of what was sent, ACKed and NACKed.

Rules common to both variants:

- A request with ``error_detail`` is a NACK of the response with its nonce; the client keeps its previous
  config. The rejected version is never sent again on the stream.
- Nonces are unique in the process, so a nonce from another stream (or another server) is never mistaken
  for one of ours.
- A view change marks the types whose resource set changed; :meth:`Session.next_response` answers them in
  push order (CDS, EDS, LDS, RDS, SDS, then the rest).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Final

import attrs
import grpc

from mesh_xds._text import describe
from mesh_xds.errors import ProtocolError
from mesh_xds.resource import Resource, push_order
from mesh_xds.snapshot import Snapshot
from mesh_xds.status import Ack, Nack, Sent, TypeStatus

MAX_TYPES_PER_STREAM: Final = 64


def now() -> datetime:
    """The time of an event in a record."""
    return datetime.now(UTC)


class RequestKind(enum.Enum):
    """What a request was, for logs, metrics and tests."""

    INITIAL = "initial"
    """The first request of a type on the stream (or one with an empty nonce)."""
    ACK = "ack"
    NACK = "nack"
    STALE = "stale"
    """A nonce that is not the latest: ignored (SotW), or only its subscription changes applied (Delta)."""
    SUBSCRIPTION = "subscription"
    """A Delta request without a nonce that changes the subscription."""


@attrs.frozen
class RejectDetail:
    """The ``error_detail`` of a NACK."""

    code: int
    message: str


@attrs.frozen
class SotwRequest:
    """A decoded ``DiscoveryRequest``."""

    type_url: str
    version_info: str = ""
    nonce: str = ""
    names: tuple[str, ...] = ()
    error: RejectDetail | None = None


@attrs.frozen
class DeltaRequest:
    """A decoded ``DeltaDiscoveryRequest``."""

    type_url: str
    nonce: str = ""
    subscribe: tuple[str, ...] = ()
    unsubscribe: tuple[str, ...] = ()
    initial_versions: Mapping[str, str] = attrs.field(factory=dict)
    error: RejectDetail | None = None


@attrs.frozen
class Outgoing:
    """A response to write: what it holds and its encoded bytes."""

    type_url: str
    version: str
    nonce: str
    names: tuple[str, ...]
    removed: tuple[str, ...]
    payload: bytes = attrs.field(repr=False)


class TypeRecord:
    """What was sent, ACKed and NACKed for one type on one stream."""

    def __init__(self, type_url: str) -> None:
        self.type_url = type_url
        self.last_sent: Sent | None = None
        self.last_ack: Ack | None = None
        self.last_nack: Nack | None = None
        self.responses = 0
        self.acks = 0
        self.nacks = 0
        self.stale = 0
        self.requests = 0
        self.client_version = ""
        self._names: tuple[frozenset[str], tuple[str, ...]] = (frozenset(), ())  # a subscription, sorted

    def record_sent(self, outgoing: Outgoing) -> None:
        self.last_sent = Sent(
            outgoing.version, outgoing.nonce, now(), outgoing.names, outgoing.removed, len(outgoing.payload)
        )
        self.responses += 1

    def record_ack(self, version: str, nonce: str) -> None:
        self.last_ack = Ack(version, nonce, now())
        self.acks += 1

    def record_nack(self, version: str, nonce: str, error: RejectDetail) -> None:
        self.last_nack = Nack(version, nonce, now(), error.code, error.message)
        self.nacks += 1

    def status(self, *, wildcard: bool, names: frozenset[str], resources: Mapping[str, Resource]) -> TypeStatus:
        if names is not self._names[0]:  # sorted again only when the subscription changed
            self._names = (names, tuple(sorted(names)))
        return TypeStatus(
            type_url=self.type_url,
            wildcard=wildcard,
            names=self._names[1],
            last_sent=self.last_sent,
            last_ack=self.last_ack,
            last_nack=self.last_nack,
            responses=self.responses,
            acks=self.acks,
            nacks=self.nacks,
            stale=self.stale,
            client_version=self.client_version,
            resources=resources,
        )


ServesType = Callable[[str, Snapshot], bool]
"""Whether a session answers a type, given the view (unknown types get no answer)."""


class Session:
    """The part of a session that both variants share: the view, the pending types, the push order."""

    def __init__(
        self, *, serves: ServesType, control_plane: bytes = b"", max_types: int = MAX_TYPES_PER_STREAM
    ) -> None:
        self._serves = serves
        self._control_plane = control_plane
        self._max_types = max_types
        self._view: Snapshot | None = None
        self._pending: set[str] = set()
        self._records: dict[str, TypeRecord] = {}

    @property
    def view(self) -> Snapshot | None:
        """The view the session answers from."""
        return self._view

    @property
    def type_urls(self) -> tuple[str, ...]:
        """The types the client asked for, in push order."""
        return push_order(self._records)

    def serves(self, type_url: str) -> bool:
        """Whether the session answers this type with the current view."""
        return self._view is not None and self._serves(type_url, self._view)

    def set_view(self, view: Snapshot | None) -> None:
        """Answer from a new view from now on (``None``: answer nothing until the next view)."""
        old = self._view
        self._view = view
        if view is None:
            return
        for type_url in self._records:
            if old is None or old.resources(type_url) is not view.resources(type_url) or self._owes(type_url):
                self._pending.add(type_url)

    def has_pending(self) -> bool:
        """True when :meth:`next_response` may have something to send."""
        return bool(self._pending) and self._view is not None

    def owes_answers(self) -> bool:
        """True when a type the session serves (any type, without a view) waits for an answer or a push."""
        view = self._view
        for type_url in self._records:
            if view is not None and not self._serves(type_url, view):
                continue
            if type_url in self._pending or self._owes(type_url):
                return True
        return False

    def next_response(self) -> Outgoing | None:
        """The next response to send, in push order, recorded as sent; ``None`` when there is nothing."""
        view = self._view
        if view is None:
            return None
        while self._pending:
            type_url = push_order(self._pending)[0]
            self._pending.discard(type_url)
            if not self._serves(type_url, view):
                continue
            outgoing = self._build(type_url, view)
            if outgoing is not None:
                self._records[type_url].record_sent(outgoing)
                return outgoing
        return None

    def _record(self, type_url: str, factory: Callable[[str], TypeRecord]) -> TypeRecord:
        record = self._records.get(type_url)
        if record is None:
            if len(self._records) >= self._max_types:
                raise ProtocolError(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"a stream may ask for at most {self._max_types} types; {describe(type_url)} would be one more",
                )
            record = factory(type_url)
            self._records[type_url] = record
        return record

    def _owes(self, type_url: str) -> bool:
        raise NotImplementedError

    def _build(self, type_url: str, view: Snapshot) -> Outgoing | None:
        raise NotImplementedError
