"""The per-stream protocol state, driven without gRPC: rules, and random sequences checked by invariants."""

import itertools

import pytest
from envoy.service.discovery.v3 import discovery_pb2
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from mesh_xds import CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ProtocolError, Snapshot, SyncState
from mesh_xds._delta import DeltaSession
from mesh_xds._session import DeltaRequest, RejectDetail, RequestKind, SotwRequest
from mesh_xds._sotw import SotwSession
from mesh_xds.resource import PUSH_ORDER
from mesh_xds.testing.resources import eds_cluster, load_assignment

NAMES = ("a", "b", "c", "d")
# A pool of views: every subset of NAMES, with two endpoint variants, so that content repeats and changes.
VIEWS = [
    Snapshot.from_messages(
        [eds_cluster(name) for name in subset] + [load_assignment(name, [("127.0.0.1", port)]) for name in subset]
    )
    for size in range(len(NAMES) + 1)
    for subset in itertools.combinations(NAMES, size)
    for port in (8000, 9000)
]
REJECT = RejectDetail(13, "rejected")


def serves(_type_url, _view):
    return True


def drain(session):
    out = []
    while (response := session.next_response()) is not None:
        out.append(response)
    return out


def test_sotw_answers_the_first_request_and_every_empty_nonce():
    session = SotwSession(serves=serves)
    session.set_view(VIEWS[3])
    assert session.handle(SotwRequest(CLUSTER_TYPE)) is RequestKind.INITIAL
    [first] = drain(session)
    assert session.handle(SotwRequest(CLUSTER_TYPE, first.version, first.nonce)) is RequestKind.ACK
    assert drain(session) == []
    # A reconnecting gRPC client re-sends its version with an empty nonce: answer it anyway.
    session.handle(SotwRequest(CLUSTER_TYPE, first.version, ""))
    [again] = drain(session)
    assert again.version == first.version
    assert again.nonce != first.nonce


def test_sotw_ignores_stale_nonces_and_withholds_nacked_versions():
    session = SotwSession(serves=serves)
    session.set_view(VIEWS[2])
    session.handle(SotwRequest(CLUSTER_TYPE))
    [first] = drain(session)
    session.set_view(VIEWS[4])
    [second] = drain(session)
    assert session.handle(SotwRequest(CLUSTER_TYPE, "", first.nonce, error=REJECT)) is RequestKind.STALE
    assert session.handle(SotwRequest(CLUSTER_TYPE, first.version, second.nonce, error=REJECT)) is RequestKind.NACK
    status = session.status()[CLUSTER_TYPE]
    assert status.state is SyncState.NACKED
    assert status.last_nack.version == second.version
    assert status.stale == 1
    assert status.nacks == 1
    session.set_view(VIEWS[2])
    [third] = drain(session)
    assert third.version == first.version
    session.set_view(VIEWS[4])  # back to the content the client rejected: not sent again
    assert drain(session) == []


def test_sotw_answers_added_names_even_when_nothing_changed():
    session = SotwSession(serves=serves)
    session.set_view(VIEWS[-1])
    session.handle(SotwRequest(ENDPOINT_TYPE, names=("a",)))
    [first] = drain(session)
    assert first.names == ("a",)
    session.handle(SotwRequest(ENDPOINT_TYPE, first.version, first.nonce, names=("a", "z")))
    [second] = drain(session)  # "z" does not exist: same content, answered anyway
    assert second.names == ("a",)
    assert second.version == first.version
    session.handle(SotwRequest(ENDPOINT_TYPE, second.version, second.nonce, names=()))
    assert drain(session) == []  # only removals of a non-wildcard type: no answer needed


def test_too_many_types_end_the_stream():
    session = SotwSession(serves=serves, max_types=2)
    session.handle(SotwRequest(CLUSTER_TYPE))
    session.handle(SotwRequest(LISTENER_TYPE))
    with pytest.raises(ProtocolError, match="at most 2 types"):
        session.handle(SotwRequest(ENDPOINT_TYPE))


def test_delta_sends_removed_names_and_honours_initial_versions():
    view = VIEWS[-1]
    held = {name: view.resources(CLUSTER_TYPE)[name].version for name in ("a", "b")}
    session = DeltaSession(serves=serves)
    session.set_view(VIEWS[5])  # a different subset
    session.handle(DeltaRequest(CLUSTER_TYPE, subscribe=("*",), initial_versions={**held, "gone": "x"}))
    [first] = drain(session)
    current = VIEWS[5].resources(CLUSTER_TYPE)
    expected_sent = sorted(n for n in current if held.get(n) != current[n].version)
    assert list(first.names) == expected_sent
    assert set(first.removed) == ({"a", "b", "gone"} - set(current))


def test_delta_tells_once_that_a_subscribed_name_does_not_exist():
    session = DeltaSession(serves=serves)
    session.set_view(VIEWS[0])
    session.handle(DeltaRequest(ENDPOINT_TYPE, subscribe=("nope",)))
    [first] = drain(session)
    assert first.removed == ("nope",)
    assert first.names == ()
    session.handle(DeltaRequest(ENDPOINT_TYPE, nonce=first.nonce))
    session.set_view(VIEWS[1])
    assert drain(session) == []


class SotwMachine(RuleBasedStateMachine):
    """A client that subscribes, ACKs, NACKs, answers late and changes names; the session must stay right."""

    @initialize(view=st.sampled_from(VIEWS))
    def start(self, view):
        self.session = SotwSession(serves=serves)
        self.session.set_view(view)
        self.view = view
        self.inbox = []  # responses not yet answered, oldest first
        self.sent = {}  # type -> all responses in order
        self.nacked = {}  # type -> versions NACKed
        self.names = {CLUSTER_TYPE: (), ENDPOINT_TYPE: ("a", "b")}
        self.acks = {}
        self.nacks = {}
        for type_url, names in self.names.items():
            self.session.handle(SotwRequest(type_url, names=names))
        self.deliver()

    @rule(view=st.sampled_from(VIEWS))
    def change_view(self, view):
        self.view = view
        self.session.set_view(view)
        self.deliver()

    @rule()
    def deliver(self):
        batch = drain(self.session)
        orders = [PUSH_ORDER.index(response.type_url) for response in batch]
        assert orders == sorted(orders), "a push goes out in push order"
        for response in batch:
            self.check_content(response)
            assert response.version not in self.nacked.get(response.type_url, set()), "a NACKed version came back"
            self.sent.setdefault(response.type_url, []).append(response)
            self.inbox.append(response)

    def check_content(self, response):
        parsed = discovery_pb2.DiscoveryResponse.FromString(response.payload)
        available = self.view.resources(response.type_url)
        names = self.names[response.type_url]
        expected = list(available) if response.type_url == CLUSTER_TYPE else sorted(n for n in names if n in available)
        assert list(response.names) == expected
        assert [item.SerializeToString() for item in parsed.resources] == [available[n].any_bytes for n in expected]
        assert (parsed.version_info, parsed.nonce, parsed.type_url) == (
            response.version,
            response.nonce,
            response.type_url,
        )

    @precondition(lambda self: self.inbox)
    @rule(data=st.data(), nack=st.booleans(), names=st.none() | st.sets(st.sampled_from(NAMES), max_size=4))
    def answer(self, data, nack, names):
        response = self.inbox.pop(data.draw(st.integers(0, len(self.inbox) - 1)))
        type_url = response.type_url
        new_names = self.names[type_url]
        if type_url == ENDPOINT_TYPE and names is not None:
            new_names = tuple(sorted(names))
        error = REJECT if nack else None
        kind = self.session.handle(SotwRequest(type_url, response.version, response.nonce, new_names, error))
        if response is not self.sent[type_url][-1]:
            assert kind is RequestKind.STALE  # and its names are ignored
        elif nack:
            assert kind is RequestKind.NACK
            self.names[type_url] = new_names
            self.nacked.setdefault(type_url, set()).add(response.version)
            self.nacks[type_url] = self.nacks.get(type_url, 0) + 1
        else:
            assert kind is RequestKind.ACK
            self.names[type_url] = new_names
            self.acks[type_url] = self.acks.get(type_url, 0) + 1
        self.deliver()

    @invariant()
    def the_record_matches(self):
        for type_url, status in self.session.status().items():
            sent = self.sent.get(type_url, [])
            assert status.responses == len(sent)
            assert (status.last_sent.nonce if status.last_sent else None) == (sent[-1].nonce if sent else None)
            assert status.acks == self.acks.get(type_url, 0)
            assert status.nacks == self.nacks.get(type_url, 0)

    @invariant()
    def a_client_that_answered_holds_its_subscription(self):
        for type_url, sent in self.sent.items():
            latest = sent[-1]
            available = self.view.resources(type_url)
            names = self.names[type_url]
            expected = set(available) if type_url == CLUSTER_TYPE else {n for n in names if n in available}
            # Removing names of a non-wildcard type needs no answer, so the last response may hold more.
            holds = set(latest.names) == expected if type_url == CLUSTER_TYPE else expected <= set(latest.names)
            if not holds and not self.session.has_pending():
                # Only a NACKed version may stand between the client and its subscription.
                withheld = self.nacked.get(type_url, set())
                assert withheld, f"{type_url}: client holds {latest.names}, should hold {expected}"


class DeltaMachine(RuleBasedStateMachine):
    """A Delta client applying responses; what it holds must follow its subscription and the view."""

    @initialize(view=st.sampled_from(VIEWS), wildcard=st.booleans())
    def start(self, view, wildcard):
        self.view = view
        self.held = {}
        self.nacked = set()  # (name, version) rejected
        self.suspect = set()  # names whose removal was rejected
        self.explicit = set() if wildcard else {"a"}
        self.wildcard = wildcard
        self.inbox = []
        self.open(initial={})

    def open(self, initial):
        self.session = DeltaSession(serves=serves)
        self.session.set_view(self.view)
        subscribe = ("*", *sorted(self.explicit)) if self.wildcard else tuple(sorted(self.explicit))
        self.session.handle(DeltaRequest(CLUSTER_TYPE, subscribe=subscribe, initial_versions=initial))
        self.inbox = []
        self.deliver()

    def deliver(self):
        for response in drain(self.session):
            parsed = discovery_pb2.DeltaDiscoveryResponse.FromString(response.payload)
            pairs = {(item.name, item.version) for item in parsed.resources}
            assert not pairs & self.nacked, "a NACKed resource version came back"
            self.inbox.append(parsed)

    @rule(view=st.sampled_from(VIEWS))
    def change_view(self, view):
        self.view = view
        self.session.set_view(view)
        self.deliver()

    @precondition(lambda self: self.inbox)
    @rule(nack=st.booleans())
    def answer_oldest(self, nack):
        parsed = self.inbox.pop(0)
        if nack:
            self.nacked |= {(item.name, item.version) for item in parsed.resources}
            self.suspect |= set(parsed.removed_resources)
        else:
            for name in parsed.removed_resources:
                self.held.pop(name, None)
            for item in parsed.resources:  # a client ignores what it did not ask for
                if self.wildcard or item.name in self.explicit:
                    self.held[item.name] = item.version
        error = REJECT if nack else None
        self.session.handle(DeltaRequest(CLUSTER_TYPE, nonce=parsed.nonce, error=error))
        self.deliver()

    @rule(name=st.sampled_from(NAMES), subscribe=st.booleans())
    def change_subscription(self, name, subscribe):
        if subscribe:
            self.explicit.add(name)
            request = DeltaRequest(CLUSTER_TYPE, subscribe=(name,))
        else:
            self.explicit.discard(name)
            if not self.wildcard:
                self.held.pop(name, None)  # the client forgets what it no longer wants
            request = DeltaRequest(CLUSTER_TYPE, unsubscribe=(name,))
        self.session.handle(request)
        self.deliver()

    @rule()
    def reconnect(self):
        self.nacked, self.suspect = set(), set()  # NACKs belong to a stream
        self.open(initial=dict(self.held))

    @invariant()
    def once_answered_the_client_holds_what_it_should(self):
        if self.inbox or self.session.has_pending():
            return
        available = self.view.resources(CLUSTER_TYPE)
        wanted = set(available) if self.wildcard else self.explicit & set(available)
        for name in wanted:
            version = available[name].version
            if (name, version) not in self.nacked:
                assert self.held.get(name) == version, f"{name}: holds {self.held.get(name)}, view has {version}"
        for name in set(self.held) - wanted - self.suspect:
            assert any(pair[0] == name for pair in self.nacked), f"{name} should have been removed"


TestSotwMachine = SotwMachine.TestCase
TestSotwMachine.settings = settings(max_examples=80, stateful_step_count=30, deadline=None)
TestDeltaMachine = DeltaMachine.TestCase
TestDeltaMachine.settings = settings(max_examples=80, stateful_step_count=30, deadline=None)
