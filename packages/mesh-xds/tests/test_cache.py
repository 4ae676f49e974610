import threading

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, rule

from mesh_xds import (
    ClusterHash,
    ConfigWatcher,
    InconsistentSnapshotError,
    InvalidResourceError,
    NodeHash,
    NodeIdHash,
    NodeInfo,
    Snapshot,
    SnapshotCache,
)
from mesh_xds.testing.resources import eds_cluster, http_listener, load_assignment, route_configuration

NODE = NodeInfo("sidecar~127.0.0.1~a.default~default.svc.cluster.local", cluster="a")


def snapshot_of(*names):
    messages = [eds_cluster(name) for name in names] + [load_assignment(name) for name in names]
    return Snapshot.from_messages(messages)


class Recorder:
    def __init__(self):
        self.seen = []

    def __call__(self, snapshot):
        self.seen.append(snapshot)


def test_the_cache_is_a_config_watcher_and_the_hashes_are_node_hashes():
    assert isinstance(SnapshotCache(), ConfigWatcher)
    assert isinstance(NodeIdHash(), NodeHash)
    assert isinstance(ClusterHash(), NodeHash)
    assert NodeIdHash().key(NODE) == NODE.id
    assert ClusterHash().key(NODE) == "a"


def test_a_snapshot_set_before_the_watch_is_delivered_at_once_then_every_replacement():
    cache = SnapshotCache()
    first, second = snapshot_of("a"), snapshot_of("a", "b")
    cache.set_snapshot(NODE.id, first)
    recorder = Recorder()
    watch = cache.watch(NODE, recorder)
    assert recorder.seen == [first]
    cache.set_snapshot(NODE.id, second)
    cache.set_snapshot("someone-else", first)
    assert recorder.seen == [first, second]
    assert cache.clear_snapshot(NODE.id)
    assert not cache.clear_snapshot(NODE.id)
    assert recorder.seen == [first, second, None]
    watch.cancel()
    watch.cancel()
    cache.set_snapshot(NODE.id, first)
    assert recorder.seen == [first, second, None]
    assert cache.watched_keys() == {}
    assert cache.keys() == (NODE.id, "someone-else")
    assert cache.snapshot(NODE.id) is first


def test_a_watch_before_any_snapshot_waits_for_one():
    cache = SnapshotCache()
    recorder = Recorder()
    cache.watch(NODE, recorder)
    assert recorder.seen == []
    assert cache.watched_keys() == {NODE.id: 1}
    snapshot = snapshot_of("a")
    cache.set_snapshot(NODE.id, snapshot)
    assert recorder.seen == [snapshot]


def test_nodes_share_a_view_under_a_cluster_hash():
    cache = SnapshotCache(ClusterHash())
    recorders = [Recorder(), Recorder()]
    for index, recorder in enumerate(recorders):
        cache.watch(NodeInfo(f"node-{index}", cluster="reviews"), recorder)
    snapshot = snapshot_of("a")
    cache.set_snapshot("reviews", snapshot)
    assert [recorder.seen for recorder in recorders] == [[snapshot], [snapshot]]
    assert cache.node_key(NodeInfo("x", cluster="reviews")) == "reviews"


def test_an_inconsistent_snapshot_is_refused_and_the_old_one_kept():
    cache = SnapshotCache()
    good = snapshot_of("a")
    cache.set_snapshot("n", good)
    broken = Snapshot.from_messages([http_listener("l", "127.0.0.1", 80, route_name="r"), eds_cluster("c")])
    with pytest.raises(InconsistentSnapshotError) as raised:
        cache.set_snapshot("n", broken)
    assert {(item.type_url.rpartition(".")[2], item.name) for item in raised.value.missing} == {
        ("RouteConfiguration", "r"),
        ("ClusterLoadAssignment", "c"),
    }
    assert cache.snapshot("n") is good
    SnapshotCache(check=False).set_snapshot("n", broken)  # unchecked caches take anything
    with pytest.raises(InvalidResourceError, match="takes a Snapshot"):
        cache.set_snapshot("n", "not a snapshot")


def test_static_clusters_satisfy_the_check():
    cache = SnapshotCache(static_clusters=["outbound"])
    cache.set_snapshot("n", Snapshot.from_messages([route_configuration("r", {"x": "outbound"})]))


def test_a_failing_handler_is_logged_and_the_others_still_run(caplog):
    cache = SnapshotCache()

    def fail(_snapshot):
        raise RuntimeError("boom")

    recorder = Recorder()
    cache.watch(NODE, fail)
    cache.watch(NODE, recorder)
    cache.set_snapshot(NODE.id, snapshot_of("a"))
    assert len(recorder.seen) == 1
    assert "view handler" in caplog.text


def test_watchers_see_changes_from_many_threads_in_the_order_they_were_made():
    cache = SnapshotCache()
    recorder = Recorder()
    cache.watch(NODE, recorder)
    snapshots = [snapshot_of(f"c{index}") for index in range(40)]

    def setter(batch):
        for snapshot in batch:
            cache.set_snapshot(NODE.id, snapshot)

    threads = [threading.Thread(target=setter, args=(snapshots[index::4],)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(recorder.seen) == 40
    assert set(map(id, recorder.seen)) == set(map(id, snapshots))
    assert recorder.seen[-1] is cache.snapshot(NODE.id)


NAMES = st.sampled_from(["a", "b", "c"])
KEYS = st.sampled_from(["n1", "n2", "n3"])


class CacheMachine(RuleBasedStateMachine):
    """Random sets, clears, watches and cancels: every watcher's last delivery is its key's snapshot."""

    watches = Bundle("watches")

    def __init__(self):
        super().__init__()
        self.cache = SnapshotCache()
        self.model = {}
        self.live = {}

    @rule(key=KEYS, names=st.sets(NAMES, max_size=3))
    def set_consistent(self, key, names):
        snapshot = snapshot_of(*sorted(names))
        self.cache.set_snapshot(key, snapshot)
        self.model[key] = snapshot

    @rule(key=KEYS, name=NAMES)
    def set_inconsistent(self, key, name):
        with pytest.raises(InconsistentSnapshotError):
            self.cache.set_snapshot(key, Snapshot.from_messages([eds_cluster(name)]))

    @rule(key=KEYS)
    def clear(self, key):
        assert self.cache.clear_snapshot(key) == (key in self.model)
        self.model.pop(key, None)

    @rule(target=watches, key=KEYS)
    def watch(self, key):
        recorder = Recorder()
        handle = self.cache.watch(NodeInfo(key), recorder)
        self.live[id(handle)] = (key, recorder)
        return handle

    @rule(handle=consumes(watches))
    def cancel(self, handle):
        handle.cancel()
        del self.live[id(handle)]

    @invariant()
    def every_watcher_holds_its_keys_view(self):
        for key, recorder in self.live.values():
            last = recorder.seen[-1] if recorder.seen else None
            assert last is self.model.get(key)

    @invariant()
    def the_cache_matches_the_model(self):
        assert self.cache.keys() == tuple(sorted(self.model))
        counts = {}
        for key, _ in self.live.values():
            counts[key] = counts.get(key, 0) + 1
        assert self.cache.watched_keys() == dict(sorted(counts.items()))


TestCacheMachine = CacheMachine.TestCase
TestCacheMachine.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
