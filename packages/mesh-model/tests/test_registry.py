import logging
import threading

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from mesh_model import AggregateRegistry, ChangeSet, Endpoint, InMemoryRegistry, Protocol, RegistryError, Service
from mesh_model.registry import ServiceRegistry, Subscription, endpoints_key, service_key, workload_key
from mesh_model.service import ServiceKey, ServicePort
from mesh_model.workload import Workload

HTTP = ServicePort("http", 80, Protocol.HTTP)
GRPC = ServicePort("grpc", 90, Protocol.GRPC)


def svc(name: str, namespace: str = "default", selector=None, ports=(HTTP, GRPC), **more) -> Service:
    host = f"{name}.{namespace}.svc.cluster.local"
    return Service(host, namespace, ports=ports, selector=selector, **more)


def wl(name: str, address: str, namespace: str = "default", labels=None, **more) -> Workload:
    return Workload(name, namespace, addresses=[address] if address else [], labels=labels or {}, **more)


def changed(service: Service) -> set:
    return {service_key(service.key), endpoints_key(service.key)}


class Recorder:
    def __init__(self, registry) -> None:
        self.seen: list[ChangeSet] = []
        self.subscription = registry.subscribe(self.seen.append)

    def take(self) -> list[set]:
        result = [set(changes.keys) for changes in self.seen]
        self.seen.clear()
        return result


REVIEWS = svc("reviews", selector={"app": "reviews"})
RATINGS = svc("ratings", selector={"app": "ratings"})


@pytest.fixture
def registry() -> InMemoryRegistry:
    return InMemoryRegistry("test")


def test_contents_are_sorted_replaced_and_removed(registry):
    registry.upsert_service(REVIEWS)
    registry.upsert_service(RATINGS)
    assert registry.services() == (RATINGS, REVIEWS)
    replaced = svc("reviews", selector={"app": "reviews"}, labels={"v": "2"})
    registry.upsert_service(replaced)
    assert registry.service(REVIEWS.key) is replaced
    assert registry.remove_service(REVIEWS.key)
    assert not registry.remove_service(REVIEWS.key)
    assert registry.services() == (RATINGS,)
    assert registry.service(REVIEWS.key) is None
    assert registry.name == "test"
    b, a = wl("b", "10.0.0.2"), wl("a", "10.0.0.1")
    registry.upsert_workload(b)
    registry.upsert_workload(a)
    assert registry.workloads() == (a, b)
    assert registry.remove_workload(a.key)
    assert not registry.remove_workload(a.key)
    assert registry.workloads() == (b,)
    registry.set_endpoints(RATINGS.key, [Endpoint("10.0.0.1")])
    registry.remove_service(RATINGS.key)
    registry.upsert_service(RATINGS)
    assert registry.endpoints(RATINGS.key, 80) == (), "removing a service drops its explicit endpoints"


def test_endpoints_combine_explicit_selected_and_named_workloads(registry):
    registry.upsert_service(REVIEWS)
    explicit = Endpoint("10.9.9.9")
    registry.set_endpoints(REVIEWS.key, [explicit])
    registry.upsert_workload(wl("r-2", "10.0.0.2", labels={"app": "reviews"}))
    registry.upsert_workload(wl("r-1", "10.0.0.1", labels={"app": "reviews", "v": "1"}))
    registry.upsert_workload(wl("other-ns", "10.0.0.3", namespace="other", labels={"app": "reviews"}))
    registry.upsert_workload(wl("named", "10.0.0.4", namespace="other", services=[REVIEWS.key]))
    registry.upsert_workload(wl("no-address", "", labels={"app": "reviews"}))
    registry.upsert_workload(wl("ratings", "10.0.0.5", labels={"app": "ratings"}))
    addresses = [endpoint.address for endpoint in registry.endpoints(REVIEWS.key, 80)]
    assert addresses == ["10.9.9.9", "10.0.0.1", "10.0.0.2", "10.0.0.4"]
    assert registry.endpoints(REVIEWS.key, 80)[1].workload_name == "r-1"


def test_endpoints_are_filtered_by_the_service_port(registry):
    registry.upsert_service(REVIEWS)
    registry.set_endpoints(
        REVIEWS.key, [Endpoint("10.0.0.1", ports={"http": 8080}), Endpoint("10.0.0.2", ports={"grpc": 9090})]
    )
    registry.upsert_workload(wl("all-ports", "10.0.0.3", labels={"app": "reviews"}))
    assert [e.address for e in registry.endpoints(REVIEWS.key, 80)] == ["10.0.0.1", "10.0.0.3"]
    assert [e.address for e in registry.endpoints(REVIEWS.key, 90)] == ["10.0.0.2", "10.0.0.3"]
    assert registry.endpoints(REVIEWS.key, "grpc") == registry.endpoints(REVIEWS.key, 90)
    assert registry.endpoints(REVIEWS.key, 81) == ()
    assert registry.endpoints(RATINGS.key, 80) == ()


def test_bad_changes_raise_registry_error_and_change_nothing(registry):
    recorder = Recorder(registry)
    with pytest.raises(RegistryError, match=r"no service default/reviews\.default\S* in registry 'test'"):
        registry.set_endpoints(REVIEWS.key, [])
    registry.upsert_service(REVIEWS)
    registry.set_endpoints(REVIEWS.key, [Endpoint("10.0.0.1")])
    recorder.take()
    with pytest.raises(RegistryError, match=r"expected Endpoint values for default/reviews\S*, got str"):
        registry.set_endpoints(REVIEWS.key, [Endpoint("10.0.0.2"), "10.0.0.3"])
    with pytest.raises(RegistryError, match="iterable of Endpoint values"):
        registry.set_endpoints(REVIEWS.key, Endpoint("10.0.0.2"))
    assert [e.address for e in registry.endpoints(REVIEWS.key, 80)] == ["10.0.0.1"]
    with pytest.raises(RegistryError, match="expected a Service, got Workload"):
        registry.upsert_service(wl("a", "10.0.0.1"))
    with pytest.raises(RegistryError, match="expected a Workload, got Service"):
        registry.upsert_workload(REVIEWS)
    assert recorder.take() == []


def test_service_and_endpoint_events(registry):
    recorder = Recorder(registry)
    registry.upsert_service(REVIEWS)
    registry.set_endpoints(REVIEWS.key, [Endpoint("10.0.0.1")])
    registry.remove_service(REVIEWS.key)
    registry.remove_service(REVIEWS.key)
    assert recorder.seen[1].only("Endpoints"), "an endpoints-only change allows an EDS-only push"
    assert recorder.take() == [changed(REVIEWS), {endpoints_key(REVIEWS.key)}, changed(REVIEWS)]


def test_workload_events_name_the_services_it_backs_and_stopped_backing(registry):
    other_ns = svc("reviews", namespace="other", selector={"app": "reviews"})
    for service in (REVIEWS, RATINGS, other_ns):
        registry.upsert_service(service)
    recorder = Recorder(registry)
    first = wl("w", "10.0.0.1", labels={"app": "reviews"})
    registry.upsert_workload(first)
    relabelled = wl("w", "10.0.0.1", labels={"app": "ratings"}, services=[other_ns.key])
    registry.upsert_workload(relabelled)
    registry.remove_workload(first.key)
    registry.remove_workload(first.key)
    key = workload_key(first.key)
    assert recorder.take() == [
        {key, endpoints_key(REVIEWS.key)},
        {key, endpoints_key(REVIEWS.key), endpoints_key(RATINGS.key), endpoints_key(other_ns.key)},
        {key, endpoints_key(RATINGS.key), endpoints_key(other_ns.key)},
    ]


def test_batch_emits_once_with_the_union_even_when_nested(registry):
    recorder = Recorder(registry)
    with registry.batch():
        registry.upsert_service(REVIEWS)
        with registry.batch():
            registry.upsert_workload(wl("w", "10.0.0.1", labels={"app": "reviews"}))
        assert recorder.seen == []
        registry.set_endpoints(REVIEWS.key, [])
    assert recorder.take() == [changed(REVIEWS) | {workload_key(registry.workloads()[0].key)}]
    with registry.batch():
        pass
    assert recorder.seen == []


def test_batch_emits_what_changed_before_an_error(registry):
    recorder = Recorder(registry)

    def fail_halfway() -> None:
        with registry.batch():
            registry.upsert_service(REVIEWS)
            raise KeyError("boom")

    with pytest.raises(KeyError):
        fail_halfway()
    assert recorder.take() == [changed(REVIEWS)]
    registry.upsert_service(RATINGS)
    assert recorder.take() == [changed(RATINGS)], "the batch must be over after the error"


def test_cancel_stops_delivery_and_is_idempotent(registry):
    calls: list[ChangeSet] = []
    first = registry.subscribe(calls.append)
    second = registry.subscribe(calls.append)
    assert isinstance(first, Subscription)
    registry.upsert_service(REVIEWS)
    assert len(calls) == 2
    first.cancel()
    first.cancel()
    registry.upsert_service(RATINGS)
    assert len(calls) == 3, "cancelling one registration twice must not end the other"
    second.cancel()
    registry.remove_service(RATINGS.key)
    assert len(calls) == 3


def test_a_failing_handler_is_logged_and_others_still_run(registry, caplog):
    def broken(changes: ChangeSet) -> None:
        raise RuntimeError("handler broke")

    registry.subscribe(broken)
    recorder = Recorder(registry)
    with caplog.at_level(logging.ERROR, logger="mesh_model.registry"):
        registry.upsert_service(REVIEWS)
    assert recorder.take() == [changed(REVIEWS)]
    [record] = [r for r in caplog.records if r.name == "mesh_model.registry"]
    assert "failed on 2 changes" in record.getMessage()
    assert record.exc_info is not None
    assert "handler broke" in str(record.exc_info[1])


def test_concurrent_workload_upserts_while_reading(registry):
    registry.upsert_service(REVIEWS)
    seen_keys: set = set()
    registry.subscribe(lambda changes: seen_keys.update(changes.keys))
    writers, per_writer = 6, 40
    errors: list[BaseException] = []
    done = threading.Event()
    counts: list[int] = []

    def guarded(work, *args) -> threading.Thread:
        def run() -> None:
            try:
                work(*args)
            except BaseException as error:
                errors.append(error)

        return threading.Thread(target=run)

    def write(index: int) -> None:
        for n in range(per_writer):
            registry.upsert_workload(wl(f"w{index}-{n}", f"10.{index}.0.{n + 1}", labels={"app": "reviews"}))

    def read() -> None:
        while not done.is_set():
            found = registry.endpoints(REVIEWS.key, 80)
            assert len({e.address for e in found}) == len(found)
            counts.append(len(found))

    reader, threads = guarded(read), [guarded(write, i) for i in range(writers)]
    for thread in [reader, *threads]:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    done.set()
    reader.join(timeout=60)
    assert not any(t.is_alive() for t in [*threads, reader])
    assert errors == []
    assert counts == sorted(counts), "a reader must never see endpoints disappear"
    assert len(registry.endpoints(REVIEWS.key, 80)) == writers * per_writer
    assert {workload_key(w.key) for w in registry.workloads()} <= seen_keys


def test_aggregate_precedence_and_endpoint_merge():
    first, second = InMemoryRegistry("first"), InMemoryRegistry("second")
    mine, theirs = svc("reviews", labels={"from": "first"}), svc("reviews", labels={"from": "second"})
    first.upsert_service(mine)
    second.upsert_service(theirs)
    second.upsert_service(RATINGS)
    first.set_endpoints(mine.key, [Endpoint("10.0.0.1")])
    second.set_endpoints(theirs.key, [Endpoint("10.0.0.2"), Endpoint("10.0.0.3")])
    first.upsert_workload(wl("w", "10.1.0.1", labels={"from": "first"}))
    second.upsert_workload(wl("w", "10.2.0.1", labels={"from": "second"}))
    second.upsert_workload(wl("x", "10.2.0.2"))
    aggregate = AggregateRegistry([first, second], name="all")
    assert aggregate.name == "all"
    assert aggregate.registries == (first, second)
    assert aggregate.services() == (RATINGS, mine)
    assert aggregate.service(mine.key) is mine
    assert aggregate.service(RATINGS.key) is RATINGS
    assert aggregate.service(svc("nope").key) is None
    assert [w.labels.get("from") for w in aggregate.workloads()] == ["first", None]
    assert [e.address for e in aggregate.endpoints(mine.key, 80)] == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    third = InMemoryRegistry("third")
    aggregate.add_registry(third, index=0)
    assert aggregate.registries == (third, first, second)
    third.upsert_service(svc("reviews", labels={"from": "third"}))
    assert aggregate.service(mine.key).labels["from"] == "third"


def test_aggregate_forwards_member_events_and_announces_members():
    member = InMemoryRegistry("member")
    member.upsert_service(REVIEWS)
    worker = wl("w", "10.0.0.1")
    member.upsert_workload(worker)
    aggregate = AggregateRegistry()
    recorder = Recorder(aggregate)
    everything = changed(REVIEWS) | {workload_key(worker.key)}
    aggregate.add_registry(member)
    member.upsert_service(RATINGS)
    assert recorder.take() == [everything, changed(RATINGS)]
    assert aggregate.remove_registry(member)
    assert not aggregate.remove_registry(member)
    member.remove_service(RATINGS.key)
    assert recorder.take() == [everything | changed(RATINGS)]
    aggregate.add_registry(InMemoryRegistry("empty"))
    assert recorder.take() == []


def test_aggregate_refuses_bad_members():
    member = InMemoryRegistry("member")
    aggregate = AggregateRegistry([member], name="agg")
    with pytest.raises(RegistryError, match="registry 'member' is already a member of 'agg'"):
        aggregate.add_registry(member)
    with pytest.raises(RegistryError, match="dict does not implement ServiceRegistry"):
        aggregate.add_registry({})
    with pytest.raises(RegistryError, match="is or contains 'agg'"):
        aggregate.add_registry(aggregate)
    outer = AggregateRegistry([aggregate], name="outer")
    with pytest.raises(RegistryError, match="registry 'outer' is or contains 'agg'"):
        aggregate.add_registry(outer)
    assert aggregate.registries == (member,)
    assert isinstance(member, ServiceRegistry)
    assert isinstance(aggregate, ServiceRegistry)
    assert not isinstance(object(), ServiceRegistry)


SERVICE_NAMES, WORKLOAD_NAMES = st.sampled_from(["a", "b"]), st.sampled_from(["w1", "w2", "w3"])
NAMESPACES = st.sampled_from(["x", "y"])


class RegistryMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.registry = InMemoryRegistry()
        self.recorder = Recorder(self.registry)
        self.services: dict[ServiceKey, Service] = {}
        self.workloads: dict = {}
        self.explicit: dict[ServiceKey, tuple[Endpoint, ...]] = {}

    def backs(self, workload: Workload | None, service: Service) -> bool:
        if workload is None:
            return False
        same_ns = workload.namespace == service.namespace
        selected = service.selector is not None and same_ns and service.selector.matches(workload.labels)
        return service.key in workload.services or selected

    def expect(self, keys: set) -> None:
        assert self.recorder.take() == [keys]

    @rule(name=SERVICE_NAMES, ns=NAMESPACES, app=st.sampled_from([None, "1", "2"]))
    def upsert_service(self, name, ns, app):
        service = svc(name, ns, selector=None if app is None else {"app": app})
        self.registry.upsert_service(service)
        self.services[service.key] = service
        self.expect(changed(service))

    @rule(name=SERVICE_NAMES, ns=NAMESPACES)
    def remove_service(self, name, ns):
        key = svc(name, ns).key
        assert self.registry.remove_service(key) == (key in self.services)
        if self.services.pop(key, None) is not None:
            self.explicit.pop(key, None)
            self.expect({service_key(key), endpoints_key(key)})
        assert self.recorder.take() == []

    @rule(data=st.data(), count=st.integers(0, 2))
    def set_endpoints(self, data, count):
        if not self.services:
            return
        key = data.draw(st.sampled_from(sorted(self.services)))
        endpoints = tuple(Endpoint(f"10.9.0.{n + 1}") for n in range(count))
        self.registry.set_endpoints(key, endpoints)
        self.explicit[key] = endpoints
        self.expect({endpoints_key(key)})

    @rule(name=WORKLOAD_NAMES, ns=NAMESPACES, app=st.sampled_from(["1", "2"]), named=st.booleans())
    def upsert_workload(self, name, ns, app, named):
        address = f"10.0.{int(ns == 'x')}.{name[-1]}"
        workload = wl(name, address, ns, {"app": app}, services=[svc("a", "x").key] if named else [])
        previous = self.workloads.get(workload.key)
        self.registry.upsert_workload(workload)
        self.workloads[workload.key] = workload
        touched = [s.key for s in self.services.values() if self.backs(workload, s) or self.backs(previous, s)]
        self.expect({workload_key(workload.key), *map(endpoints_key, touched)})

    @rule(name=WORKLOAD_NAMES, ns=NAMESPACES)
    def remove_workload(self, name, ns):
        previous = self.workloads.pop(wl(name, "", ns).key, None)
        assert self.registry.remove_workload(wl(name, "", ns).key) == (previous is not None)
        if previous is not None:
            touched = [s.key for s in self.services.values() if self.backs(previous, s)]
            self.expect({workload_key(previous.key), *map(endpoints_key, touched)})
        assert self.recorder.take() == []

    @invariant()
    def contents_match_the_model(self):
        assert self.registry.services() == tuple(self.services[k] for k in sorted(self.services))
        assert self.registry.workloads() == tuple(self.workloads[k] for k in sorted(self.workloads))
        for key, service in self.services.items():
            workloads = [self.workloads[k] for k in sorted(self.workloads)]
            backing = [w.to_endpoint() for w in workloads if self.backs(w, service)]
            assert self.registry.endpoints(key, 80) == (*self.explicit.get(key, ()), *backing)


TestRegistryMachine = RegistryMachine.TestCase
TestRegistryMachine.settings = settings(max_examples=60, stateful_step_count=25, deadline=None)
