"""The incremental (Delta) protocol of one stream (private; see ``_session`` for the shared rules).

The server keeps, per type, the version of every resource the client holds as far as it knows (optimistic:
updated when a response is sent). A response holds the resources whose version differs and the names the
client must drop:

- the first request of a type is always answered (possibly with nothing), after taking its
  ``initial_resource_versions`` as what the client holds: a reconnecting client is sent only what changed,
  across server restarts too, since resource versions are content hashes;
- a name in ``resource_names_subscribe`` is sent even when the client seems to hold it (the protocol says
  the client may have forgotten it), except on the first request when its initial version is current;
- a subscribed name the view lacks is sent in ``removed_resources``, once, so the client knows it does not
  exist; a resource that leaves the view is removed. A secret is the exception: Envoy takes the removal of a
  secret it does not hold as "go on without it" and ends the warming of the listener or cluster that waits
  for it, so a secret that is not ready yet is not mentioned until it exists (as Istio's agent does);
- ``*`` subscribes to every resource of a wildcard type; so does a first request with no names (legacy);
- unsubscribing from a name also covered by the wildcard re-sends it (or its removal), as the protocol asks;
- subscription changes are honoured even with a stale nonce (the protocol says so); the nonce only says
  which response an ACK or NACK is for;
- a resource version the client NACKed is never sent again; the client keeps its previous one.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Final

from mesh_xds import _versions, _wire
from mesh_xds._session import (
    MAX_TYPES_PER_STREAM,
    DeltaRequest,
    Outgoing,
    RequestKind,
    ServesType,
    Session,
    TypeRecord,
)
from mesh_xds.resource import SECRET_TYPE, Resource, is_wildcard_type
from mesh_xds.snapshot import ResourceSet, Snapshot
from mesh_xds.status import TypeStatus

_IN_FLIGHT_KEPT: Final = 64
_ABSENT: Final = ""  # the client was told the resource does not exist


class _DeltaType(TypeRecord):
    def __init__(self, type_url: str) -> None:
        super().__init__(type_url)
        self.wildcard = False
        self.explicit: set[str] = set()
        self.client: dict[str, str] = {}
        self.held: dict[str, Resource] = {}
        self.force: set[str] = set()
        self.must_respond = False
        self.nacked: dict[str, str] = {}
        # nonce -> (system version, the (name, version) pairs sent with it), oldest first
        self.in_flight: OrderedDict[str, tuple[str, tuple[tuple[str, str], ...]]] = OrderedDict()
        self.answered: ResourceSet | None = None  # the set the last response was computed from

    def take_subscriptions(self, request: DeltaRequest, first: bool) -> None:
        wildcard_type = is_wildcard_type(self.type_url)
        if request.subscribe or request.unsubscribe:
            self.answered = None  # the subscription changed: compute the answer again
        if first:
            self.client = dict(request.initial_versions)
            if wildcard_type and not request.subscribe and not request.unsubscribe:
                self.wildcard = True
        for name in request.subscribe:
            if name == "*" and wildcard_type:
                self.wildcard = True
                continue
            self.explicit.add(name)
            if not (first and name in request.initial_versions):
                self.force.add(name)
        for name in request.unsubscribe:
            if name == "*" and wildcard_type:
                self.wildcard = False
                for held in [held for held in self.client if held not in self.explicit]:
                    self._forget(held)
                continue
            self.explicit.discard(name)
            if self.wildcard:
                self.force.add(name)
            else:
                self._forget(name)

    def take_reply(self, request: DeltaRequest) -> RequestKind:
        entry = self.in_flight.get(request.nonce)
        if entry is None:
            self.stale += 1
            return RequestKind.STALE
        while self.in_flight:  # this response and the older ones are answered
            nonce, _ = self.in_flight.popitem(last=False)
            if nonce == request.nonce:
                break
        version, sent = entry
        if request.error is not None:
            self.record_nack(version, request.nonce, request.error)
            self.nacked.update(sent)
            return RequestKind.NACK
        self.record_ack(version, request.nonce)
        return RequestKind.ACK

    def _forget(self, name: str) -> None:
        self.client.pop(name, None)
        self.held.pop(name, None)
        self.force.discard(name)


class DeltaSession(Session):
    """The Delta protocol state of one stream."""

    def __init__(
        self, *, serves: ServesType, control_plane: bytes = b"", max_types: int = MAX_TYPES_PER_STREAM
    ) -> None:
        super().__init__(serves=serves, control_plane=control_plane, max_types=max_types)

    def handle(self, request: DeltaRequest) -> RequestKind:
        """Take a request; afterwards :meth:`next_response` returns what it calls for.

        Raises:
            ProtocolError: the stream asked for more types than allowed.
        """
        state = self._state(request.type_url)
        first = state.requests == 0
        state.requests += 1
        if first:
            kind = RequestKind.INITIAL
            state.must_respond = True
        elif request.nonce:
            kind = state.take_reply(request)
        else:
            kind = RequestKind.SUBSCRIPTION
        state.take_subscriptions(request, first)
        if first or request.subscribe or request.unsubscribe:
            self._pending.add(request.type_url)
        return kind

    def status(self) -> dict[str, TypeStatus]:
        """The record of every type, in push order."""
        result = {}
        for type_url in self.type_urls:
            state = self._state(type_url)
            held = {name: state.held[name] for name in sorted(state.held)}
            result[type_url] = state.status(wildcard=state.wildcard, names=state.explicit, resources=held)
        return result

    def _state(self, type_url: str) -> _DeltaType:
        record = self._record(type_url, _DeltaType)
        assert isinstance(record, _DeltaType)
        return record

    def _owes(self, type_url: str) -> bool:
        state = self._state(type_url)
        return state.must_respond or bool(state.force)

    def _build(self, type_url: str, view: Snapshot) -> Outgoing | None:
        state = self._state(type_url)
        available = view.resources(type_url)
        if available is state.answered and not state.force and not state.must_respond:
            return None
        sent, removed = _changes(state, available)
        if not sent and not removed and not state.must_respond:
            state.answered = available
            return None
        for resource in sent:
            state.client[resource.name] = resource.version
            state.held[resource.name] = resource
        for name in removed:
            state.held.pop(name, None)
            if name in state.explicit:
                state.client[name] = _ABSENT
            else:
                state.client.pop(name, None)
        state.force.clear()
        state.must_respond = False
        state.answered = available
        nonce = _versions.nonce()
        version = available.version
        state.in_flight[nonce] = (version, tuple((resource.name, resource.version) for resource in sent))
        while len(state.in_flight) > _IN_FLIGHT_KEPT:
            state.in_flight.popitem(last=False)
        parts = (part for resource in sent for part in resource.delta_parts())
        payload = _wire.delta_response(version, type_url, nonce, parts, removed, self._control_plane)
        return Outgoing(type_url, version, nonce, tuple(resource.name for resource in sent), removed, payload)


def _changes(state: _DeltaType, available: Mapping[str, Resource]) -> tuple[list[Resource], tuple[str, ...]]:
    """The resources to send and the names to remove for the client's subscription."""
    if state.wildcard:
        wanted: Mapping[str, Resource] = available
    else:
        wanted = {name: available[name] for name in sorted(state.explicit) if name in available}
    sent: list[Resource] = []
    for name, resource in wanted.items():
        nacked = state.nacked.get(name)
        if nacked is not None and nacked != resource.version:
            del state.nacked[name]  # the resource changed: its new version may be sent
            nacked = None
        if nacked is None and (state.client.get(name) != resource.version or name in state.force):
            sent.append(resource)
    removed = {name for name, version in state.client.items() if version != _ABSENT and name not in wanted}
    if state.type_url != SECRET_TYPE:  # the client is told that a name does not exist, except for secrets
        removed.update(name for name in state.explicit if name not in available and name not in state.client)
        removed.update(name for name in state.force if name not in wanted)
    return sent, tuple(sorted(removed))
