"""What each connected client was sent, and what it ACKed and NACKed: the servers' per-stream record.

:meth:`XdsServer.status() <mesh_xds.XdsServer.status>` returns one :class:`StreamStatus` per open stream,
with a :class:`TypeStatus` for every type the client asked for. The values are immutable snapshots of the
record, built when asked for; they are what ``meshctl proxy-status`` and CSDS show, and their ``to_json()``
is what a ``/debug/syncz`` page shows::

    for stream in server.status():
        for status in stream.types.values():
            print(stream.node.id, status.short_type, status.state.value, status.last_nack)
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime
from typing import Any, final

import attrs

from mesh_xds.node import NodeInfo
from mesh_xds.resource import Resource, short_type
from mesh_xds.snapshot import Snapshot

__all__ = ["Ack", "Nack", "Sent", "StreamKind", "StreamStatus", "SyncState", "TypeStatus"]


class StreamKind(enum.Enum):
    """The variant of the xDS protocol a stream speaks."""

    SOTW = "sotw"
    """State of the world: every response holds every resource of its type the client should have."""
    DELTA = "delta"
    """Incremental: responses hold the resources that changed, and the names of removed ones."""


class SyncState(enum.Enum):
    """How a client stands with the last response of one type (Istio's proxy-status words)."""

    NOT_SENT = "NOT SENT"
    """Nothing was sent yet (no view, or nothing to send)."""
    SYNCED = "SYNCED"
    """The last response was ACKed."""
    STALE = "STALE"
    """The last response is neither ACKed nor NACKed yet."""
    NACKED = "NACKED"
    """The last response was rejected; the client keeps its previous config."""


@final
@attrs.frozen
class Sent:
    """A response sent to a client.

    Attributes:
        version: ``version_info`` (SotW) or ``system_version_info`` (Delta).
        nonce: the response's nonce.
        at: when it was sent.
        names: the names of the resources it held.
        removed: the names it removed (Delta only).
        size: its size in bytes.
    """

    version: str
    nonce: str
    at: datetime
    names: tuple[str, ...]
    removed: tuple[str, ...] = ()
    size: int = 0


@final
@attrs.frozen
class Ack:
    """A client's acceptance of a response.

    Attributes:
        version: the version accepted.
        nonce: the nonce of the response accepted.
        at: when the ACK arrived.
    """

    version: str
    nonce: str
    at: datetime


@final
@attrs.frozen
class Nack:
    """A client's rejection of a response.

    Attributes:
        version: the version rejected (the one sent with ``nonce``).
        nonce: the nonce of the response rejected.
        at: when the NACK arrived.
        code: the gRPC status code of ``error_detail`` (Envoy sends 13, INTERNAL).
        message: the client's error message.
    """

    version: str
    nonce: str
    at: datetime
    code: int
    message: str


@final
@attrs.frozen
class TypeStatus:
    """The record of one type on one stream.

    Attributes:
        type_url: the type.
        wildcard: whether the client takes every resource of the type.
        names: the names the client subscribed to explicitly, sorted.
        last_sent: the last response sent, ``None`` before the first.
        last_ack: the last ACK.
        last_nack: the last NACK (kept after later ACKs; compare nonces with ``last_sent``).
        responses: how many responses were sent.
        acks: how many were ACKed.
        nacks: how many were NACKed.
        stale: how many requests came with a stale nonce and were ignored.
        client_version: the version the client last said it has (SotW ``version_info``).
        resources: by name, the resources the client was last given (SotW) or holds as far as the server
            knows (Delta). Shared with the server's cache: read, do not keep for long.
    """

    type_url: str
    wildcard: bool
    names: tuple[str, ...]
    last_sent: Sent | None
    last_ack: Ack | None
    last_nack: Nack | None
    responses: int
    acks: int
    nacks: int
    stale: int
    client_version: str = ""
    resources: Mapping[str, Resource] = attrs.field(factory=dict, repr=False, eq=False)

    @property
    def short_type(self) -> str:
        """``cds``, ``eds``, ``lds``, ``rds``, ``sds``, ..."""
        return short_type(self.type_url)

    @property
    def state(self) -> SyncState:
        """Where the client stands with the last response."""
        if self.last_sent is None:
            return SyncState.NOT_SENT
        nonce = self.last_sent.nonce
        if self.last_nack is not None and self.last_nack.nonce == nonce:
            return SyncState.NACKED
        if self.last_ack is not None and self.last_ack.nonce == nonce:
            return SyncState.SYNCED
        return SyncState.STALE

    @property
    def acked_version(self) -> str:
        """The version of the last ACKed response, empty when none was ACKed."""
        return self.last_ack.version if self.last_ack is not None else ""

    def to_json(self) -> dict[str, Any]:
        """The record as JSON-ready data (times in ISO 8601; resources by name only, never their content)."""
        sent, ack, nack = self.last_sent, self.last_ack, self.last_nack
        return {
            "type_url": self.type_url,
            "state": self.state.value,
            "wildcard": self.wildcard,
            "names": list(self.names),
            "sent": None
            if sent is None
            else {
                "version": sent.version,
                "nonce": sent.nonce,
                "at": sent.at.isoformat(),
                "resources": len(sent.names),
                "removed": len(sent.removed),
                "size": sent.size,
            },
            "acked": None if ack is None else {"version": ack.version, "nonce": ack.nonce, "at": ack.at.isoformat()},
            "nacked": None
            if nack is None
            else {
                "version": nack.version,
                "nonce": nack.nonce,
                "at": nack.at.isoformat(),
                "code": nack.code,
                "error": nack.message,
            },
            "responses": self.responses,
            "acks": self.acks,
            "nacks": self.nacks,
            "stale_requests": self.stale,
            "client_version": self.client_version,
        }


@final
@attrs.frozen
class StreamStatus:
    """The record of one stream: who the client is and how it stands with each type.

    Attributes:
        stream_id: a number unique within the process.
        service: ``ads`` or ``sds``.
        kind: SotW or Delta.
        node: the client's node.
        node_key: the key of the node's view in the cache.
        peer: the client's address as gRPC reports it.
        connected_at: when the stream started.
        types: one status per type the client asked for, in push order.
        pending: True while the stream has a view change or a request it has not answered yet.
        view: the snapshot the stream answers from, ``None`` before the cache had one for the node.
    """

    stream_id: int
    service: str
    kind: StreamKind
    node: NodeInfo
    node_key: str
    peer: str
    connected_at: datetime
    types: Mapping[str, TypeStatus]
    pending: bool = False
    view: Snapshot | None = attrs.field(default=None, eq=False, repr=False)

    @property
    def synced(self) -> bool:
        """True when nothing is pending and every response sent was ACKed (types never answered aside)."""
        states = [status.state for status in self.types.values()]
        return (
            not self.pending
            and SyncState.SYNCED in states
            and all(state in (SyncState.SYNCED, SyncState.NOT_SENT) for state in states)
        )

    def type(self, type_url: str) -> TypeStatus | None:
        """The status of one type, ``None`` when the client never asked for it."""
        return self.types.get(type_url)

    def to_json(self) -> dict[str, Any]:
        """The record as JSON-ready data: the stream, its node, and each type's :meth:`TypeStatus.to_json`."""
        return {
            "stream_id": self.stream_id,
            "service": self.service,
            "kind": self.kind.value,
            "node_id": self.node.id,
            "node_key": self.node_key,
            "peer": self.peer,
            "connected_at": self.connected_at.isoformat(),
            "synced": self.synced,
            "pending": self.pending,
            "types": {status.short_type: status.to_json() for status in self.types.values()},
        }
