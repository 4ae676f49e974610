"""InMemoryConfigStore: validation on the way in, optimistic concurrency, and exact change events."""

import queue
import threading

import attrs
import pytest

from mesh_config import (
    AlreadyExistsError,
    ConflictError,
    InvalidConfigError,
    NotFoundError,
    StoreError,
    load_text,
)
from mesh_config.memory_store import InMemoryConfigStore
from mesh_config.store import ConfigStore
from mesh_model import ChangeSet, ConfigKey

PA = """\
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: {name}
  namespace: {namespace}
spec:
  selector:
    matchLabels: {{app: {name}}}
  mtls: {{mode: {mode}}}
"""


def pa(name="web", namespace="shop", mode="STRICT"):
    (resource,) = load_text(PA.format(name=name, namespace=namespace, mode=mode)).raise_for_errors().resources
    return resource


def key(name="web", namespace="shop"):
    return ConfigKey("PeerAuthentication", namespace, name)


def with_mode(resource, mode):
    return attrs.evolve(resource, spec=attrs.evolve(resource.spec, mtls=pa(mode=mode).spec.mtls))


@pytest.fixture
def store():
    return InMemoryConfigStore()


@pytest.fixture
def events(store):
    received = []
    store.subscribe(received.append)
    return received


def test_it_is_a_config_store(store):
    assert isinstance(store, ConfigStore)


def test_create_get_list(store, events):
    created = store.create(pa("b"))
    store.create(pa("a"))
    store.create(pa("c", namespace="zoo"))
    assert created.metadata.resource_version == "1"
    assert created.metadata.generation == 1
    assert store.get("PeerAuthentication", "shop", "b") == created
    assert store.get("PeerAuthentication", "shop", "zzz") is None
    assert store.get("VirtualService", "shop", "b") is None
    assert [r.name for r in store.list("PeerAuthentication")] == ["a", "b", "c"]
    assert [r.name for r in store.list("PeerAuthentication", "shop")] == ["a", "b"]
    assert store.list("PeerAuthentication", "none") == ()
    assert events == [ChangeSet.of(key("b")), ChangeSet.of(key("a")), ChangeSet.of(key("c", "zoo"))]
    assert len(store) == 3


def test_create_of_an_existing_key_is_refused(store, events):
    store.create(pa())
    with pytest.raises(AlreadyExistsError, match="PeerAuthentication shop/web already exists"):
        store.create(pa(mode="DISABLE"))
    assert store.get("PeerAuthentication", "shop", "web").spec.mtls.mode.value == "STRICT"
    assert len(events) == 1


def test_create_replaces_a_given_resource_version(store):
    assert store.create(pa().with_metadata(resource_version="99")).metadata.resource_version == "1"


def test_invalid_objects_raise_with_diagnostics_and_change_nothing(store, events):
    store.create(pa())
    bad = pa("bad").with_metadata(name="Not_A_Name")
    with pytest.raises(InvalidConfigError) as raised:
        store.create(bad)
    (error,) = raised.value.diagnostics
    assert error.format() == (
        "<memory>: error: PeerAuthentication shop/Not_A_Name: metadata.name: "
        "name 'Not_A_Name' must be a lower-case DNS subdomain (letters, digits, '-' and '.')"
    )
    current = store.get("PeerAuthentication", "shop", "web")
    broken = attrs.evolve(current, spec=attrs.evolve(current.spec, port_level_mtls={70000: current.spec.mtls}))
    with pytest.raises(InvalidConfigError, match="port must be between 1-65535"):
        store.update(broken)
    assert store.get("PeerAuthentication", "shop", "web") == current
    assert [r.name for r in store.list("PeerAuthentication")] == ["web"]
    assert len(events) == 1


def test_objects_without_a_name_are_refused(store):
    with pytest.raises(InvalidConfigError, match="does not generate names") as raised:
        store.create(pa().with_metadata(name="", generate_name="web-"))
    assert raised.value.diagnostics[0].field == "metadata.name"


def test_kinds_mesh_config_does_not_know_are_refused(store):
    alien = attrs.evolve(pa(), api_version="apps/v1", kind="Deployment")
    with pytest.raises(InvalidConfigError, match="Deployment of 'apps/v1' is not a kind mesh_config knows"):
        store.create(alien)
    with pytest.raises(StoreError, match="not dict"):
        store.create({"kind": "PeerAuthentication"})


def test_update_with_optimistic_concurrency(store, events):
    first = store.create(pa())
    second = store.update(with_mode(first, "DISABLE"))
    assert second.metadata.resource_version == "2"
    assert second.metadata.generation == 2
    with pytest.raises(ConflictError, match="resourceVersion '2', not '1'"):
        store.update(with_mode(first, "PERMISSIVE"))
    assert store.get("PeerAuthentication", "shop", "web") == second
    # No resourceVersion: an unconditional update.
    third = store.update(with_mode(first, "PERMISSIVE").with_metadata(resource_version=""))
    assert third.metadata.resource_version == "3"
    assert third.metadata.generation == 3
    # A label change is a new resourceVersion but not a new generation.
    fourth = store.update(third.with_metadata(labels={"team": "a"}))
    assert (fourth.metadata.resource_version, fourth.metadata.generation) == ("4", 3)
    assert events == [ChangeSet.of(key())] * 4


def test_an_update_that_changes_nothing_tells_no_one(store, events):
    created = store.create(pa())
    assert store.update(created) is store.get("PeerAuthentication", "shop", "web")
    assert store.update(pa()) == created  # same content, no resourceVersion
    assert len(events) == 1


def test_update_of_a_missing_object(store):
    with pytest.raises(NotFoundError, match="PeerAuthentication shop/web does not exist"):
        store.update(pa())


def test_delete(store, events):
    created = store.create(pa())
    store.update(with_mode(created, "DISABLE"))
    with pytest.raises(ConflictError):
        store.delete("PeerAuthentication", "shop", "web", resource_version="1")
    store.delete("PeerAuthentication", "shop", "web", resource_version="2")
    assert store.get("PeerAuthentication", "shop", "web") is None
    with pytest.raises(NotFoundError) as raised:
        store.delete("PeerAuthentication", "shop", "web")
    assert isinstance(raised.value, KeyError)
    assert str(raised.value) == "PeerAuthentication shop/web does not exist"
    assert events == [ChangeSet.of(key())] * 3


def test_batch_tells_once(store, events):
    with store.batch():
        store.create(pa("a"))
        with store.batch():
            store.create(pa("b"))
        store.delete("PeerAuthentication", "shop", "a")
        assert events == []
    assert events == [ChangeSet.of(key("a"), key("b"))]


def test_initial_objects_are_validated(events):
    store = InMemoryConfigStore([pa("a"), pa("b")])
    assert [r.metadata.resource_version for r in store.list("PeerAuthentication")] == ["1", "2"]
    with pytest.raises(InvalidConfigError):
        InMemoryConfigStore([pa().with_metadata(namespace="UPPER")])


def test_subscriptions_cancel_and_a_failing_handler_does_not_stop_the_others(store, caplog):
    received = []

    def broken(changes):
        raise RuntimeError("handler bug")

    store.subscribe(broken)
    subscription = store.subscribe(received.append)
    store.create(pa("a"))
    subscription.cancel()
    subscription.cancel()
    store.create(pa("b"))
    assert received == [ChangeSet.of(key("a"))]
    assert "config change handler" in caplog.text
    assert "handler bug" in caplog.text


def test_concurrent_writers_get_distinct_versions_and_every_event(store):
    received: queue.Queue = queue.Queue()
    store.subscribe(received.put)
    names = [f"w{index}" for index in range(40)]
    barrier = threading.Barrier(4)

    def writer(part):
        barrier.wait(timeout=30)
        for name in part:
            created = store.create(pa(name))
            store.update(with_mode(created, "DISABLE"))

    threads = [threading.Thread(target=writer, args=(names[index::4],)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    stored = store.list("PeerAuthentication")
    assert sorted(r.name for r in stored) == sorted(names)
    assert all(r.spec.mtls.mode.value == "DISABLE" for r in stored)
    assert len({r.metadata.resource_version for r in stored}) == len(names)
    keys = [received.get(timeout=30) for _ in range(2 * len(names))]
    assert sorted(k for changes in keys for k in changes) == sorted([key(n) for n in names] * 2)
    assert received.empty()
