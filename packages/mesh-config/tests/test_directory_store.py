"""DirectoryConfigStore: a tree of files served as objects, last valid content kept, exact change events."""

import logging
import os
import queue
import uuid

import pytest

from mesh_config import LoadError, StoreError
from mesh_config.directory_store import DirectoryConfigStore
from mesh_config.store import ConfigStore
from mesh_model import ChangeSet, ConfigKey

PA = """\
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: {name}
  namespace: {namespace}
spec:
  mtls:
    mode: {mode}
"""


def pa(name, mode="STRICT", namespace="shop"):
    return PA.format(name=name, mode=mode, namespace=namespace)


def key(name, namespace="shop"):
    return ConfigKey("PeerAuthentication", namespace, name)


def write(path, *documents):
    """Replace a file atomically (a new inode, as editors and ConfigMap updates do)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.parent / f".tmp-{uuid.uuid4().hex}"
    temporary.write_text("---\n".join(documents))
    os.replace(temporary, path)


def mode_of(store, name):
    return store.get("PeerAuthentication", "shop", name).spec.mtls.mode.value


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "config"
    write(root / "a.yaml", pa("one"), pa("two"))
    write(root / "nested" / "b.yaml", pa("three"))
    return root


def test_the_tree_is_loaded_when_the_store_is_made(tree):
    store = DirectoryConfigStore(tree)
    assert isinstance(store, ConfigStore)
    assert [r.name for r in store.list("PeerAuthentication")] == ["one", "three", "two"]
    assert store.source_of("PeerAuthentication", "shop", "three") == str(tree / "nested" / "b.yaml")
    assert store.diagnostics() == ()
    assert sorted(r.metadata.resource_version for r in store.list("PeerAuthentication")) == ["1", "2", "3"]
    assert store.refresh() == ChangeSet()


def test_added_changed_and_deleted_files_change_exactly_their_keys(tree):
    store = DirectoryConfigStore(tree)
    write(tree / "c.yaml", pa("four"))
    assert store.refresh() == ChangeSet.of(key("four"))
    before = store.get("PeerAuthentication", "shop", "one")
    write(tree / "a.yaml", pa("one"), pa("two", mode="DISABLE"))
    assert store.refresh() == ChangeSet.of(key("two"))
    assert store.get("PeerAuthentication", "shop", "one") is before
    assert mode_of(store, "two") == "DISABLE"
    write(tree / "a.yaml", pa("one"), pa("two", mode="DISABLE"))  # same content, new inode
    assert store.refresh() == ChangeSet()
    (tree / "a.yaml").unlink()
    assert store.refresh() == ChangeSet.of(key("one"), key("two"))
    assert store.get("PeerAuthentication", "shop", "one") is None


def test_changed_objects_get_new_resource_versions(tree):
    store = DirectoryConfigStore(tree)
    versions = {r.name: r.metadata.resource_version for r in store.list("PeerAuthentication")}
    write(tree / "a.yaml", pa("one", mode="PERMISSIVE"), pa("two"))
    store.refresh()
    after = {r.name: r.metadata.resource_version for r in store.list("PeerAuthentication")}
    assert after["two"] == versions["two"]
    assert int(after["one"]) > max(int(v) for v in versions.values())


@pytest.mark.parametrize(
    "broken",
    [
        [pa("one"), "spec: [unclosed\n"],
        [pa("one"), pa("two", mode="LOUD")],
        [pa("one")[:40]],
        ["\x00binary"],
    ],
    ids=["syntax-error", "invalid-object", "half-written", "binary"],
)
def test_a_file_that_stops_validating_keeps_its_last_valid_objects(tree, caplog, broken):
    store = DirectoryConfigStore(tree)
    caplog.set_level(logging.WARNING, logger="mesh_config.store")
    write(tree / "a.yaml", *broken)
    assert store.refresh() == ChangeSet()
    assert [r.name for r in store.list("PeerAuthentication")] == ["one", "three", "two"]
    problems = store.diagnostics(tree / "a.yaml")
    assert problems
    assert all(d.position.source == str(tree / "a.yaml") for d in problems)
    assert store.diagnostics() == problems
    assert f"{tree / 'a.yaml'} does not validate (keeping its last 2 valid objects)" in caplog.text
    assert problems[0].format() in caplog.text
    write(tree / "a.yaml", pa("one", mode="DISABLE"))
    assert store.refresh() == ChangeSet.of(key("one"), key("two"))
    assert store.diagnostics() == ()
    assert mode_of(store, "one") == "DISABLE"


def test_a_new_file_that_does_not_validate_loads_nothing(tree):
    store = DirectoryConfigStore(tree)
    write(tree / "new.yaml", pa("five"), pa("six", mode="LOUD"))
    assert store.refresh() == ChangeSet()
    assert store.get("PeerAuthentication", "shop", "five") is None
    (error,) = store.diagnostics()
    assert error.format().startswith(f"{tree / 'new.yaml'}:17:")


def test_warnings_do_not_stop_a_file(tree):
    store = DirectoryConfigStore(tree)
    write(tree / "w.yaml", pa("five").replace("spec:\n", "spec:\n  selector: {matchLabels: {}}\n"))
    assert store.refresh() == ChangeSet.of(key("five"))
    (warning,) = store.diagnostics()
    assert not warning.is_error


def test_an_object_in_two_files_is_an_error_naming_both_and_the_first_stays(tree):
    write(tree / "z.yaml", pa("one", mode="DISABLE"))
    store = DirectoryConfigStore(tree)
    assert mode_of(store, "one") == "STRICT"
    (error,) = store.diagnostics()
    assert error.format() == (
        f"{tree / 'z.yaml'}:1:1: error: PeerAuthentication shop/one: "
        f"PeerAuthentication shop/one is also defined in {tree / 'a.yaml'}, which is served; this one is ignored"
    )
    # A newer file never takes an object from an older one, whatever their names.
    write(tree / "0.yaml", pa("three", mode="DISABLE"))
    assert store.refresh() == ChangeSet()
    assert store.source_of("PeerAuthentication", "shop", "three") == str(tree / "nested" / "b.yaml")
    assert len(store.diagnostics()) == 2
    # When the served one goes, the other takes over, and that is a change.
    write(tree / "a.yaml", pa("two"))
    assert store.refresh() == ChangeSet.of(key("one"))
    assert mode_of(store, "one") == "DISABLE"
    assert store.source_of("PeerAuthentication", "shop", "one") == str(tree / "z.yaml")
    assert len(store.diagnostics()) == 1


def test_an_object_twice_in_one_file(tree):
    write(tree / "a.yaml", pa("one"), pa("two"), pa("one", mode="DISABLE"))
    store = DirectoryConfigStore(tree)
    assert mode_of(store, "one") == "STRICT"
    (error,) = store.diagnostics()
    assert "is also defined earlier in the same file" in error.message
    assert error.position.line == 19


def test_an_object_that_moves_between_files_unchanged_is_no_change(tree):
    store = DirectoryConfigStore(tree)
    write(tree / "a.yaml", pa("one"))
    write(tree / "nested" / "b.yaml", pa("three"), pa("two"))
    assert store.refresh() == ChangeSet()
    assert store.source_of("PeerAuthentication", "shop", "two") == str(tree / "nested" / "b.yaml")
    assert store.diagnostics() == ()


def test_hidden_files_and_other_suffixes_are_ignored(tree):
    store = DirectoryConfigStore(tree)
    write(tree / ".hidden.yaml", pa("hidden"))
    write(tree / ".git" / "x.yaml", pa("git"))
    write(tree / "notes.txt", "not: config")
    assert store.refresh() == ChangeSet()


def test_a_mounted_configmap_swaps_its_data_folder(tmp_path):
    root = tmp_path / "mount"
    write(root / "..v1" / "policy.yaml", pa("one"))
    os.symlink("..v1", root / "..data")
    os.symlink("..data/policy.yaml", root / "policy.yaml")
    store = DirectoryConfigStore(root)
    assert mode_of(store, "one") == "STRICT"
    write(root / "..v2" / "policy.yaml", pa("one", mode="DISABLE"))
    os.symlink("..v2", root / "..data.new")
    os.replace(root / "..data.new", root / "..data")
    assert store.refresh() == ChangeSet.of(key("one"))
    assert mode_of(store, "one") == "DISABLE"


def test_a_root_that_disappears_keeps_everything(tree, caplog):
    store = DirectoryConfigStore(tree)
    moved = tree.parent / "elsewhere"
    tree.rename(moved)
    assert store.refresh() == ChangeSet()
    assert len(store.list("PeerAuthentication")) == 3
    (problem,) = store.diagnostics()
    assert problem.format() == f"{tree}: error: the config directory cannot be read; serving what was loaded"
    assert problem.format() in caplog.text
    moved.rename(tree)
    (tree / "a.yaml").unlink()
    assert store.refresh() == ChangeSet.of(key("one"), key("two"))
    assert store.diagnostics() == ()


def test_the_store_is_read_only(tree):
    store = DirectoryConfigStore(tree)
    resource = store.get("PeerAuthentication", "shop", "one")
    for attempt in (
        lambda: store.create(resource),
        lambda: store.update(resource),
        lambda: store.delete("PeerAuthentication", "shop", "one"),
    ):
        with pytest.raises(StoreError, match="is read-only: change its files instead"):
            attempt()


def test_bad_arguments(tmp_path):
    with pytest.raises(LoadError, match="is not a directory"):
        DirectoryConfigStore(tmp_path / "missing")
    for options in ({"poll_interval": 0}, {"debounce": -1}, {"max_delay": float("nan")}):
        with pytest.raises(StoreError, match="must be a positive number of seconds"):
            DirectoryConfigStore(tmp_path, **options)


def test_the_watcher_applies_changes_in_the_background(tree):
    changes: queue.Queue = queue.Queue()
    with DirectoryConfigStore(tree, poll_interval=0.02, debounce=0.05) as store:
        store.subscribe(changes.put)
        store.start()  # already started: nothing happens
        write(tree / "c.yaml", pa("four"))
        assert changes.get(timeout=30) == ChangeSet.of(key("four"))
        write(tree / "c.yaml", pa("four"), pa("five"))
        assert changes.get(timeout=30) == ChangeSet.of(key("five"))
        store.stop()
        write(tree / "c.yaml", pa("four"))
        assert store.refresh() == ChangeSet.of(key("five"))
        assert changes.get(timeout=30) == ChangeSet.of(key("five"))  # a refresh tells the subscribers too
        store.start()
        (tree / "c.yaml").unlink()
        assert changes.get(timeout=30) == ChangeSet.of(key("four"))
    with pytest.raises(StoreError, match="closed"):
        store.start()
    assert store.get("PeerAuthentication", "shop", "one") is not None


def test_a_handler_may_stop_the_watcher(tree):
    store = DirectoryConfigStore(tree, poll_interval=0.02, debounce=0)
    done: queue.Queue = queue.Queue()

    def stop_on_change(changes):
        store.stop()
        done.put(changes)

    store.subscribe(stop_on_change)
    store.start()
    write(tree / "c.yaml", pa("four"))
    assert done.get(timeout=30) == ChangeSet.of(key("four"))
    store.close()


def test_refresh_does_not_wait_for_the_debounce(tree):
    store = DirectoryConfigStore(tree, poll_interval=3600, debounce=3600)
    store.start()
    write(tree / "c.yaml", pa("four"))
    assert store.refresh() == ChangeSet.of(key("four"))
    store.close()
