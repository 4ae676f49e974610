"""Delta streams in step share their answers: equal bytes for equal positions, and each stream still correct."""

import itertools

import pytest
from envoy.service.discovery.v3 import discovery_pb2
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from mesh_xds import CLUSTER_TYPE, ENDPOINT_TYPE, Snapshot, _delta, _wire
from mesh_xds._delta import DeltaSession
from mesh_xds._session import DeltaRequest, RejectDetail
from mesh_xds.testing.resources import eds_cluster, load_assignment

REJECT = RejectDetail(13, "rejected")
NAMES = tuple(f"svc-{index:02d}" for index in range(12))


def serves(_type_url, _view):
    return True


def view(names=NAMES, *, generation=0, changed=NAMES):
    """Clusters and load assignments of ``names``; those in ``changed`` in their ``generation``."""
    messages = []
    for name in names:
        current = generation if name in changed else 0
        messages.append(eds_cluster(name, connect_timeout=1.0 + current))
        messages.append(load_assignment(name, [(f"127.0.{current}.{NAMES.index(name) + 1}", 8080)]))
    return Snapshot.from_messages(messages)


def drain(session):
    out = []
    while (response := session.next_response()) is not None:
        out.append(response)
    return out


def without_nonce(outgoing):
    """The bytes of a response, its nonce field taken out (the one thing that differs between streams)."""
    nonce_field = _wire.text(5, outgoing.nonce)
    assert outgoing.payload.count(nonce_field) == 1
    return outgoing.payload.replace(nonce_field, b"")


def drain_alone(session):
    """Like :func:`drain`, but the session forgets any basis first: it never takes a shared answer."""
    out = []
    while True:
        for record in session._records.values():
            record.own()
        response = session.next_response()
        if response is None:
            return out
        out.append(response)


def parsed(outgoing):
    return discovery_pb2.DeltaDiscoveryResponse.FromString(outgoing.payload)


def ack_all(session, responses):
    for response in responses:
        session.handle(DeltaRequest(response.type_url, nonce=response.nonce))


def envoy_like(snapshot, names=NAMES, initial=None):
    """A session that asks for every cluster by wildcard and the load assignments of ``names``, all ACKed."""
    session = DeltaSession(serves=serves)
    session.set_view(snapshot)
    initial = initial or {}
    session.handle(DeltaRequest(CLUSTER_TYPE, initial_versions=initial.get(CLUSTER_TYPE, {})))
    session.handle(DeltaRequest(ENDPOINT_TYPE, subscribe=tuple(names), initial_versions=initial.get(ENDPOINT_TYPE, {})))
    ack_all(session, drain(session))
    return session


def versions(resource_set, names=None):
    return {name: resource.version for name, resource in resource_set.items() if names is None or name in names}


@pytest.fixture
def count_answers(monkeypatch):
    """How many times a Delta answer was worked out, resource by resource."""
    calls = []
    original = _delta._changes

    def counting(state, available):
        calls.append(state.type_url)
        return original(state, available)

    monkeypatch.setattr(_delta, "_changes", counting)
    return calls


def test_streams_in_step_get_the_same_bytes_worked_out_once(count_answers):
    first = view()
    sessions = [envoy_like(first) for _ in range(3)]
    assert count_answers == [CLUSTER_TYPE, ENDPOINT_TYPE]  # the first answer too: none of them held anything
    changed = view(generation=1)
    count_answers.clear()
    pushes = []
    for session in sessions:
        session.set_view(changed)
        pushes.append(drain(session))
    assert count_answers == [CLUSTER_TYPE, ENDPOINT_TYPE]
    for type_url, responses in zip((CLUSTER_TYPE, ENDPOINT_TYPE), zip(*pushes, strict=True), strict=True):
        assert {response.type_url for response in responses} == {type_url}
        assert len({response.nonce for response in responses}) == 3
        assert len({without_nonce(response) for response in responses}) == 1
        assert set(responses[0].names) == set(NAMES)
        assert parsed(responses[0]).nonce == responses[0].nonce
    for session in sessions:
        ack_all(session, pushes[0])
    statuses = [session.status() for session in sessions]
    for type_url in (CLUSTER_TYPE, ENDPOINT_TYPE):
        held = [status[type_url].resources for status in statuses]
        assert held[0] == dict(changed.resources(type_url))
        assert list(held[0]) == sorted(NAMES)
        assert held[1] is held[0]  # one map for every stream in step
        assert held[2] is held[0]


def test_the_shared_answer_is_the_one_a_lone_stream_works_out():
    first, changed = view(), view(generation=1, changed=NAMES[:5])
    alone = envoy_like(first)
    alone.set_view(changed)
    expected = {response.type_url: response for response in drain_alone(alone)}
    for session in [envoy_like(first) for _ in range(2)]:
        session.set_view(changed)
        for response in drain(session):
            assert without_nonce(response) == without_nonce(expected[response.type_url])
            assert response.names == NAMES[:5]


def expected_diff(held, target, explicit=()):
    """What a client holding ``held`` (name -> version) must be sent to hold ``target``: (names, removed)."""
    names = tuple(name for name, resource in target.items() if held.get(name) != resource.version)
    removed = tuple(sorted(name for name in {*held, *explicit} if name not in target))
    return names, removed


def test_clients_holding_other_sets_get_their_own_diff():
    old, first, changed = view(NAMES[:8], generation=3), view(), view(NAMES[2:], generation=1, changed=NAMES[4:])
    on_first, on_old = envoy_like(first), envoy_like(old)
    for session in (on_first, on_old):
        session.set_view(changed)
    pushes = {session: {response.type_url: response for response in drain(session)} for session in (on_first, on_old)}
    # A client back with a mix of its own: some names at the view's version, some older, one the view lacks.
    mixed = {
        type_url: {
            **versions(old.resources(type_url), NAMES[:4]),
            **versions(changed.resources(type_url), NAMES[4:7]),
            "gone": "0123",
        }
        for type_url in (CLUSTER_TYPE, ENDPOINT_TYPE)
    }
    returning = DeltaSession(serves=serves)
    returning.set_view(changed)
    returning.handle(DeltaRequest(CLUSTER_TYPE, initial_versions=mixed[CLUSTER_TYPE]))
    returning.handle(DeltaRequest(ENDPOINT_TYPE, subscribe=NAMES, initial_versions=mixed[ENDPOINT_TYPE]))
    pushes[returning] = {response.type_url: response for response in drain(returning)}
    holdings = {on_first: first, on_old: old}
    for type_url in (CLUSTER_TYPE, ENDPOINT_TYPE):
        explicit = NAMES if type_url == ENDPOINT_TYPE else ()
        target = changed.resources(type_url)
        for session, push in pushes.items():
            held = mixed[type_url] if session is returning else versions(holdings[session].resources(type_url))
            response = push[type_url]
            assert (response.names, response.removed) == expected_diff(held, target, explicit)
            message = parsed(response)
            assert {item.name: item.version for item in message.resources} == versions(target, response.names)
            assert tuple(message.removed_resources) == response.removed
        assert pushes[on_first][type_url].names != pushes[on_old][type_url].names


def test_a_returning_client_that_holds_the_view_is_sent_nothing_and_joins_the_others():
    first = view()
    in_step = envoy_like(first)
    held = {type_url: versions(first.resources(type_url)) for type_url in (CLUSTER_TYPE, ENDPOINT_TYPE)}
    returning = DeltaSession(serves=serves)
    returning.set_view(first)
    returning.handle(DeltaRequest(CLUSTER_TYPE, initial_versions=held[CLUSTER_TYPE]))
    returning.handle(DeltaRequest(ENDPOINT_TYPE, subscribe=NAMES, initial_versions=held[ENDPOINT_TYPE]))
    responses = drain(returning)
    assert [(response.names, response.removed) for response in responses] == [((), ()), ((), ())]
    ack_all(returning, responses)
    for type_url in (CLUSTER_TYPE, ENDPOINT_TYPE):
        # What the client named at the view's versions counts as held.
        assert returning.status()[type_url].resources == dict(first.resources(type_url))
        assert returning.status()[type_url].resources is in_step.status()[type_url].resources


def test_removals_reach_every_stream_and_absent_names_are_named_once():
    first = view()
    smaller = view(NAMES[3:])
    sessions = [envoy_like(first, names=(*NAMES, "missing")) for _ in range(2)]
    pushes = []
    for session in sessions:
        session.set_view(smaller)
        pushes.append({response.type_url: response for response in drain(session)})
    for push in pushes:
        assert push[CLUSTER_TYPE].names == ()
        assert push[CLUSTER_TYPE].removed == NAMES[:3]
        assert push[ENDPOINT_TYPE].names == ()
        assert push[ENDPOINT_TYPE].removed == NAMES[:3]  # "missing" was named absent in the first answer
    assert without_nonce(pushes[0][ENDPOINT_TYPE]) == without_nonce(pushes[1][ENDPOINT_TYPE])
    for session, push in zip(sessions, pushes, strict=True):
        ack_all(session, push.values())
        session.set_view(first)
        back = {response.type_url: response for response in drain(session)}
        assert back[CLUSTER_TYPE].names == NAMES[:3]
        assert back[ENDPOINT_TYPE].names == NAMES[:3]
        assert back[ENDPOINT_TYPE].removed == ()
        assert sorted(session.status()[ENDPOINT_TYPE].resources) == sorted(NAMES)


def test_a_nack_takes_one_stream_out_of_step_and_leaves_the_others_alone():
    first = view()
    nacking, other = envoy_like(first), envoy_like(first)
    second = view(generation=1, changed=NAMES[:2])
    pushes = {}
    for session in (nacking, other):
        session.set_view(second)
        pushes[session] = {response.type_url: response for response in drain(session)}
    rejected = pushes[nacking][CLUSTER_TYPE]
    nacking.handle(DeltaRequest(CLUSTER_TYPE, nonce=rejected.nonce, error=REJECT))
    nacking.handle(DeltaRequest(ENDPOINT_TYPE, nonce=pushes[nacking][ENDPOINT_TYPE].nonce))
    ack_all(other, pushes[other].values())
    third = view(generation=1, changed=NAMES[:4])  # the rejected clusters stay as they were in `second`
    for session in (nacking, other):
        session.set_view(third)
    nacking_push = {response.type_url: response for response in drain(nacking)}
    other_push = {response.type_url: response for response in drain(other)}
    assert other_push[CLUSTER_TYPE].names == NAMES[2:4]
    assert nacking_push[CLUSTER_TYPE].names == NAMES[2:4]  # the rejected versions are not sent again
    assert without_nonce(nacking_push[ENDPOINT_TYPE]) == without_nonce(other_push[ENDPOINT_TYPE])
    ack_all(nacking, nacking_push.values())
    ack_all(other, other_push.values())
    fourth = view(generation=2, changed=NAMES[:1])
    for session in (nacking, other):
        session.set_view(fourth)
        cds = next(response for response in drain(session) if response.type_url == CLUSTER_TYPE)
        assert cds.names == NAMES[:4]  # svc-00 changed again; svc-01..03 go back to generation 0


def test_a_first_request_that_also_unsubscribes_is_answered_on_its_own():
    first = view()
    plain = DeltaSession(serves=serves)
    plain.set_view(first)
    plain.handle(DeltaRequest(CLUSTER_TYPE, subscribe=("*",)))
    [answer] = drain(plain)
    assert answer.removed == ()
    # The same subscription, but the protocol asks that a name dropped while the wildcard covers it be
    # sent again, or its removal: this answer is not the shared one.
    other = DeltaSession(serves=serves)
    other.set_view(first)
    other.handle(DeltaRequest(CLUSTER_TYPE, subscribe=("*",), unsubscribe=("gone",)))
    [own] = drain(other)
    assert own.removed == ("gone",)
    assert own.names == answer.names == NAMES


def test_more_subscriptions_than_a_set_keeps_answers_for_are_each_answered_right():
    first, changed = view(), view(generation=1)
    subsets = [
        subset for size in (1, 2, 3) for subset in itertools.combinations(NAMES[:9], size) if "svc-00" not in subset
    ][:40]
    sessions = [envoy_like(first, names=subset) for subset in subsets]
    for subset, session in zip(subsets, sessions, strict=True):
        session.set_view(changed)
        eds = next(response for response in drain(session) if response.type_url == ENDPOINT_TYPE)
        assert eds.names == subset
        assert {item.name: item.version for item in parsed(eds).resources} == versions(
            changed.resources(ENDPOINT_TYPE), subset
        )


def test_a_set_builds_a_derived_value_once_and_keeps_a_few():
    resource_set = view().resources(CLUSTER_TYPE)
    built = []

    def build(value):
        built.append(value)
        return [value]

    first = resource_set._memo(("test", 0), lambda: build(0))
    assert resource_set._memo(("test", 0), lambda: build(1)) is first
    assert built == [0]
    for key in range(1, 100):
        resource_set._memo(("test", key), lambda key=key: build(key))
    assert resource_set._memo(("test", 0), lambda: build("again")) == ["again"]  # dropped, built again
    assert len(built) == 101


# ---------------------------------------------------------------- random histories, shared or not

POOL = ("a", "b", "c", "d")
VIEWS = [
    Snapshot.from_messages([eds_cluster(name, connect_timeout=timeout) for name in subset])
    for size in range(len(POOL) + 1)
    for subset in itertools.combinations(POOL, size)
    for timeout in (1.0, 2.0)
]
CLIENTS = 3


class _Pair:
    """One client with two sessions: one that shares answers, one that works every answer out alone."""

    def __init__(self, snapshot, wildcard, explicit, initial):
        self.shared = DeltaSession(serves=serves)
        self.alone = DeltaSession(serves=serves)
        self.inbox = []  # (shared response, alone response), oldest first
        self.held = dict(initial)
        self.wildcard = wildcard
        self.explicit = set(explicit)
        subscribe = ("*", *sorted(explicit)) if wildcard else tuple(sorted(explicit))
        for session in (self.shared, self.alone):
            session.set_view(snapshot)
            session.handle(DeltaRequest(CLUSTER_TYPE, subscribe=subscribe, initial_versions=dict(initial)))
        self.deliver()

    def deliver(self):
        shared, alone = drain(self.shared), drain_alone(self.alone)
        assert len(shared) == len(alone)
        for one, other in zip(shared, alone, strict=True):
            assert (one.names, one.removed, one.version) == (other.names, other.removed, other.version)
            assert without_nonce(one) == without_nonce(other)
        self.inbox.extend(zip(shared, alone, strict=True))

    def handle(self, make):
        """Send a request to both sessions: ``make(0)`` to the sharing one, ``make(1)`` to the other."""
        shared_request, alone_request = make(0), make(1)
        self.shared.handle(shared_request)
        self.alone.handle(alone_request)
        self.deliver()


class SharingMachine(RuleBasedStateMachine):
    """Clients with random histories on shared views: sharing changes no answer and no status."""

    @initialize(snapshot=st.sampled_from(VIEWS), wildcards=st.lists(st.booleans(), min_size=CLIENTS, max_size=CLIENTS))
    def start(self, snapshot, wildcards):
        self.view = snapshot
        self.clients = [_Pair(snapshot, wildcard, () if wildcard else ("a",), {}) for wildcard in wildcards]

    @rule(snapshot=st.sampled_from(VIEWS))
    def change_view(self, snapshot):
        self.view = snapshot
        for client in self.clients:
            for session in (client.shared, client.alone):
                session.set_view(snapshot)
            client.deliver()

    @rule(index=st.integers(0, CLIENTS - 1), nack=st.booleans())
    def answer_oldest(self, index, nack):
        client = self.clients[index]
        if not client.inbox:
            return
        pair = client.inbox.pop(0)
        response = parsed(pair[0])
        if not nack:
            for name in response.removed_resources:
                client.held.pop(name, None)
            for item in response.resources:
                if client.wildcard or item.name in client.explicit:
                    client.held[item.name] = item.version
        error = REJECT if nack else None
        client.handle(lambda which: DeltaRequest(CLUSTER_TYPE, nonce=pair[which].nonce, error=error))

    @rule(index=st.integers(0, CLIENTS - 1), name=st.sampled_from(POOL), subscribe=st.booleans())
    def change_subscription(self, index, name, subscribe):
        client = self.clients[index]
        if subscribe:
            client.explicit.add(name)
            client.handle(lambda _: DeltaRequest(CLUSTER_TYPE, subscribe=(name,)))
        else:
            client.explicit.discard(name)
            if not client.wildcard:
                client.held.pop(name, None)
            client.handle(lambda _: DeltaRequest(CLUSTER_TYPE, unsubscribe=(name,)))

    @rule(index=st.integers(0, CLIENTS - 1))
    def reconnect(self, index):
        client = self.clients[index]
        self.clients[index] = _Pair(self.view, client.wildcard, client.explicit, client.held)

    @precondition(lambda self: hasattr(self, "clients"))
    @invariant()
    def sharing_changes_no_status(self):
        for client in self.clients:
            shared, alone = client.shared.status()[CLUSTER_TYPE], client.alone.status()[CLUSTER_TYPE]
            assert dict(shared.resources) == dict(alone.resources)
            assert list(shared.resources) == sorted(shared.resources)
            assert (shared.wildcard, shared.names) == (alone.wildcard, alone.names)
            assert (shared.responses, shared.acks, shared.nacks) == (alone.responses, alone.acks, alone.nacks)


TestSharingMachine = SharingMachine.TestCase
TestSharingMachine.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
