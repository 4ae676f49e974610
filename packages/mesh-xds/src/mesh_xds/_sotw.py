"""The state-of-the-world protocol of one stream (private; see ``_session`` for the shared rules).

When a SotW stream answers a type:

- its first request, and any request with an empty nonce (a reconnecting gRPC client re-sends its last
  version with an empty nonce): always, even when the client says it has the current version;
- an ACK or NACK whose names add a subscription (or, for wildcard types, remove one): yes, even when the
  version did not change, since the client waits for the new names (Envoy asks EDS for a new cluster
  before it ACKs CDS);
- a request with a stale nonce (not the last one sent for its type): never, and its names are ignored,
  since the client sends its full subscription again with the newer nonce;
- a view change: when the content for the client's names changed.

A response holds every subscribed resource of its type, so a listener or cluster missing from it is
removed by the client. Its version is a digest of the content (see ``_versions``); a version the client
NACKed on this stream is withheld until the content changes again.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Final

from mesh_xds import _versions, _wire
from mesh_xds._session import (
    MAX_TYPES_PER_STREAM,
    Outgoing,
    RequestKind,
    ServesType,
    Session,
    SotwRequest,
    TypeRecord,
)
from mesh_xds.resource import Resource, is_wildcard_type
from mesh_xds.snapshot import ResourceSet, Snapshot
from mesh_xds.status import TypeStatus

_NACKED_KEPT: Final = 16


class _SotwType(TypeRecord):
    def __init__(self, type_url: str) -> None:
        super().__init__(type_url)
        self.wildcard = False
        self.named = False  # a request of this type had names: the legacy wildcard no longer applies
        self.explicit: frozenset[str] = frozenset()
        self.must_respond = False
        self.nacked: deque[str] = deque(maxlen=_NACKED_KEPT)
        self.held: Mapping[str, Resource] = {}

    def subscribe(self, names: tuple[str, ...]) -> tuple[bool, bool]:
        """Take a request's names; return whether it added and whether it removed subscriptions."""
        requested = frozenset(names)
        self.named = self.named or bool(requested)
        was_wildcard, had = self.wildcard, self.explicit
        if is_wildcard_type(self.type_url):
            self.wildcard = "*" in requested or not self.named
            self.explicit = requested - {"*"}
        else:
            self.wildcard = False
            self.explicit = requested
        added = (self.wildcard and not was_wildcard) or bool(self.explicit - had)
        removed = (was_wildcard and not self.wildcard) or bool(had - self.explicit)
        return added, removed


class SotwSession(Session):
    """The SotW protocol state of one stream."""

    def __init__(
        self, *, serves: ServesType, control_plane: bytes = b"", max_types: int = MAX_TYPES_PER_STREAM
    ) -> None:
        super().__init__(serves=serves, control_plane=control_plane, max_types=max_types)

    def handle(self, request: SotwRequest) -> RequestKind:
        """Take a request; afterwards :meth:`next_response` returns what it calls for.

        Raises:
            ProtocolError: the stream asked for more types than allowed.
        """
        state = self._state(request.type_url)
        state.requests += 1
        last = state.last_sent
        if request.nonce and last is not None and request.nonce != last.nonce:
            state.stale += 1
            return RequestKind.STALE
        added, removed = state.subscribe(request.names)
        state.client_version = request.version_info
        if not request.nonce or last is None:
            kind = RequestKind.INITIAL
            state.must_respond = True
        elif request.error is not None:
            kind = RequestKind.NACK
            state.record_nack(last.version, last.nonce, request.error)
            state.nacked.append(last.version)
        else:
            kind = RequestKind.ACK
            state.record_ack(request.version_info, request.nonce)
        if added or (removed and is_wildcard_type(request.type_url)):
            state.must_respond = True
        if state.must_respond:
            self._pending.add(request.type_url)
        return kind

    def status(self) -> dict[str, TypeStatus]:
        """The record of every type, in push order."""
        result = {}
        for type_url in self.type_urls:
            state = self._state(type_url)
            # SotW never changes a held mapping (a ResourceSet, or a dict built for one response): share it.
            result[type_url] = state.status(wildcard=state.wildcard, names=state.explicit, resources=state.held)
        return result

    def _state(self, type_url: str) -> _SotwType:
        record = self._record(type_url, _SotwType)
        assert isinstance(record, _SotwType)
        return record

    def _owes(self, type_url: str) -> bool:
        return self._state(type_url).must_respond

    def _build(self, type_url: str, view: Snapshot) -> Outgoing | None:
        state = self._state(type_url)
        available = view.resources(type_url)
        version, body, chosen = _select(state, available)
        names = available.names if chosen is available else tuple(chosen)
        if version in state.nacked:
            state.must_respond = False
            return None
        if not state.must_respond and state.last_sent is not None and state.last_sent.version == version:
            return None
        state.must_respond = False
        state.held = chosen
        nonce = _versions.nonce()
        payload = _wire.sotw_response(version, type_url, nonce, (body,), self._control_plane)
        return Outgoing(type_url, version, nonce, names, (), payload)


def _select(state: _SotwType, available: ResourceSet) -> tuple[str, bytes, Mapping[str, Resource]]:
    """The version, encoded ``resources`` fields and resources (by name) of the client's subscription."""
    if not state.wildcard:
        names = sorted(name for name in state.explicit if name in available)
        if len(names) < len(available):
            chosen = {name: available[name] for name in names}
            body = b"".join(part for resource in chosen.values() for part in resource.sotw_parts())
            return _versions.version_of(_versions.digest(chosen.values())), body, chosen
    return available.version, available.sotw_body(), available
