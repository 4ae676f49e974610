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

Streams share their answers. Once a client holds exactly what one resource set offers its subscription
(as every proxy with the same view does after a push), the stream notes that set's digest as its *basis*
and shares the maps of what the client holds with every other stream in the same position. What to send
when the view moves to another set depends then only on the basis, the subscription and the new set: it is
worked out and encoded once, kept with the new set, and every such stream adds only its nonce. A stream
with a history of its own (a NACK, a subscription change, a client that came back with other versions)
works out its answer alone until it holds exactly what a set offers again.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Final, final

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
_FRESH: Final = "-"  # the basis of a client that holds nothing yet (no digest looks like it)

Subscription = tuple[bool, frozenset[str]]
"""Whether a client takes every resource of the type, and the names it subscribed to explicitly."""


@final
class _Change:
    """What one response sends: resources (with their encoding) and removed names."""

    __slots__ = ("body", "names", "pairs", "removed", "removed_bytes", "resources")

    def __init__(self, sent: list[Resource], removed: tuple[str, ...]) -> None:
        self.resources = tuple(sent)
        self.names = tuple(resource.name for resource in sent)
        self.pairs = tuple((resource.name, resource.version) for resource in sent)
        self.body = b"".join(part for resource in sent for part in resource.delta_parts())
        self.removed = removed
        self.removed_bytes = _wire.removed_fields(removed)


@final
class _Holdings:
    """What a client holds once it has everything a set offers its subscription, shared by such streams."""

    __slots__ = ("client", "held", "subscription")

    def __init__(self, available: ResourceSet, subscription: Subscription) -> None:
        wildcard, explicit = subscription
        names = available.names if wildcard else sorted(name for name in explicit if name in available)
        self.held = {name: available[name] for name in names}
        self.client = {name: resource.version for name, resource in self.held.items()}
        self.client.update((name, _ABSENT) for name in explicit if name not in available)
        self.subscription = subscription


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
        # The digest of the set whose offer the client holds exactly (client and held are then shared with
        # other streams: never change them in place), _FRESH when it holds nothing, or None.
        self.basis: str | None = None
        self.named_initial = False  # the client named what it holds; the first answer looks the names up
        self._subscription: Subscription | None = None

    @property
    def subscription(self) -> Subscription:
        """The subscription as a key (one object, shared by the streams in step with this one)."""
        if self._subscription is None:
            self._subscription = (self.wildcard, frozenset(self.explicit))
        return self._subscription

    @property
    def shared(self) -> bool:
        """Whether ``client`` and ``held`` are shared with other streams."""
        return self.basis is not None and self.basis != _FRESH

    def own(self) -> None:
        """Make ``client`` and ``held`` this stream's own, to change them."""
        if self.basis is not None:
            self.client = dict(self.client)
            self.held = dict(self.held)
            self.basis = None

    def adopt(self, available: ResourceSet) -> None:
        """Take, shared, what the client holds once it has everything ``available`` offers."""
        holdings = available._memo(
            ("delta-holdings", self.subscription), lambda: _Holdings(available, self.subscription)
        )
        self.client = holdings.client
        self.held = holdings.held
        self._subscription = holdings.subscription
        self.basis = available.digest

    def take_subscriptions(self, request: DeltaRequest, first: bool) -> None:
        wildcard_type = is_wildcard_type(self.type_url)
        if first or request.subscribe or request.unsubscribe:
            self.answered = None  # the subscription changed: compute the answer again
            self.own()
            self._subscription = None
        if first:
            self.client = dict(request.initial_versions)
            self.named_initial = bool(self.client)
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
        if first and not self.client and self.force <= self.explicit and self.type_url != SECRET_TYPE:
            # Every forced name is one the client does not hold and asked for: the answer is that of any
            # client that holds nothing, with this subscription.
            self.basis = _FRESH

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
        self.own()
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
            # A shared map is in name order and never changes; a stream's own one is copied in name order.
            held = state.held if state.shared else {name: state.held[name] for name in sorted(state.held)}
            result[type_url] = state.status(wildcard=state.wildcard, names=state.subscription[1], resources=held)
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
        shared = state.basis is not None and not state.nacked
        if shared:
            # Every stream with this basis and subscription gets the same answer: work it out once. Its
            # forced names are names the client does not hold: the answer has them anyway.
            key = ("delta-change", state.basis, state.subscription)
            change = available._memo(key, lambda: _Change(*_changes(state, available)))
            state.force.clear()
        else:
            change = _Change(*_changes(state, available))
            if state.named_initial:
                _hold_initial(state, available)
        sends = bool(change.names or change.removed or state.must_respond)
        if sends:
            state.force.clear()
        if shared:
            state.adopt(available)
        else:
            _apply(state, change)
            _share_if_in_step(state, available)
        state.answered = available
        if not sends:
            return None
        state.must_respond = False
        nonce = _versions.nonce()
        version = available.version
        state.in_flight[nonce] = (version, change.pairs)
        while len(state.in_flight) > _IN_FLIGHT_KEPT:
            state.in_flight.popitem(last=False)
        payload = _wire.delta_response(
            version, type_url, nonce, (change.body,), change.removed_bytes, self._control_plane
        )
        return Outgoing(type_url, version, nonce, change.names, change.removed, payload)


def _apply(state: _DeltaType, change: _Change) -> None:
    """Record, on a stream of its own, that the client was sent a change."""
    if not change.names and not change.removed:
        return
    state.own()
    for resource in change.resources:
        state.client[resource.name] = resource.version
        state.held[resource.name] = resource
    for name in change.removed:
        state.held.pop(name, None)
        if name in state.explicit:
            state.client[name] = _ABSENT
        else:
            state.client.pop(name, None)


def _hold_initial(state: _DeltaType, available: ResourceSet) -> None:
    """Count as held what the client named in its first request at the version the view has."""
    state.named_initial = False
    state.own()
    for name, version in state.client.items():
        resource = available.get(name)
        if resource is not None and resource.version == version:
            state.held[name] = resource


def _share_if_in_step(state: _DeltaType, available: ResourceSet) -> None:
    """Share the holdings of a stream whose client now holds exactly what ``available`` offers it."""
    if state.nacked or state.force or state.type_url == SECRET_TYPE:
        return
    holdings = available._memo(("delta-holdings", state.subscription), lambda: _Holdings(available, state.subscription))
    if state.client == holdings.client and state.held == holdings.held:
        state.adopt(available)


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
