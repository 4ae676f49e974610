import pytest
from hypothesis import given
from hypothesis import strategies as st

from mesh_xds import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    InconsistentSnapshotError,
    InvalidResourceError,
    MissingReference,
    ResourceSet,
    Snapshot,
    pack,
)
from mesh_xds.testing.resources import eds_cluster, http_listener, load_assignment, route_configuration, tcp_listener


def full(names=("a",)):
    messages = [
        *(eds_cluster(name) for name in names),
        *(load_assignment(name, [("127.0.0.1", 8000)]) for name in names),
        http_listener("http", "127.0.0.1", 15001, route_name="http"),
        route_configuration("http", {f"{name}.example": name for name in names}),
    ]
    return Snapshot.from_messages(messages)


def test_resource_sets_are_sorted_immutable_mappings_that_share_resources():
    b, a = pack(eds_cluster("b")), pack(eds_cluster("a"))
    clusters = ResourceSet(CLUSTER_TYPE, [b, a])
    assert list(clusters) == ["a", "b"]
    assert clusters.names == ("a", "b")
    assert clusters["a"] is a
    assert clusters.get("z") is None
    assert "b" in clusters
    assert len(clusters) == 2
    assert clusters.sotw_body() is clusters.sotw_body()  # built once, shared
    assert clusters.version == ResourceSet(CLUSTER_TYPE, [a, b]).version
    assert clusters.version != ResourceSet(CLUSTER_TYPE, [a]).version
    assert "2 resources" in repr(clusters)


def test_resource_sets_refuse_duplicates_and_other_types():
    a = pack(eds_cluster("a"))
    with pytest.raises(InvalidResourceError, match="two Cluster resources are named 'a'"):
        ResourceSet(CLUSTER_TYPE, [a, pack(eds_cluster("a", connect_timeout=3))])
    with pytest.raises(InvalidResourceError, match="cannot join a set of"):
        ResourceSet(ENDPOINT_TYPE, [a])
    with pytest.raises(InvalidResourceError, match="holds Resource objects"):
        ResourceSet(CLUSTER_TYPE, [eds_cluster("a")])


def test_snapshots_group_resources_by_type_in_push_order():
    snapshot = full(["a", "b"])
    assert snapshot.type_urls == (CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE)
    assert len(snapshot) == 6
    assert list(snapshot.resources(ENDPOINT_TYPE)) == ["a", "b"]
    empty = snapshot.resources("type.googleapis.com/example.Other")
    assert len(empty) == 0
    assert empty is snapshot.resources("type.googleapis.com/example.Other")
    assert "2 Cluster" in repr(snapshot)
    with pytest.raises(InvalidResourceError, match="given twice"):
        Snapshot([ResourceSet(CLUSTER_TYPE), pack(eds_cluster("a"))])
    with pytest.raises(InvalidResourceError, match="holds Resources and ResourceSets"):
        Snapshot(["a"])


def test_replace_shares_the_other_sets():
    snapshot = full(["a"])
    endpoints = ResourceSet(ENDPOINT_TYPE, [pack(load_assignment("a", [("127.0.0.1", 9000)]))])
    updated = snapshot.replace(endpoints)
    assert updated.resources(ENDPOINT_TYPE) is endpoints
    assert updated.resources(CLUSTER_TYPE) is snapshot.resources(CLUSTER_TYPE)
    assert snapshot.resources(ENDPOINT_TYPE) is not endpoints
    with pytest.raises(InvalidResourceError):
        snapshot.replace(pack(eds_cluster("x")))


def test_a_consistent_snapshot_misses_nothing():
    assert full(["a", "b"]).missing() == ()
    full(["a"]).check()
    assert Snapshot().missing() == ()


def test_missing_references_name_what_refers_to_them():
    snapshot = Snapshot.from_messages(
        [
            eds_cluster("a"),
            http_listener("http", "127.0.0.1", 15001, route_name="http"),
            tcp_listener("tcp", "127.0.0.1", 15002, cluster="ghost"),
            route_configuration("other", {"x": "ghost"}),
        ]
    )
    assert snapshot.missing() == (
        MissingReference(CLUSTER_TYPE, "ghost", ((LISTENER_TYPE, "tcp"), (ROUTE_TYPE, "other"))),
        MissingReference(ENDPOINT_TYPE, "a", ((CLUSTER_TYPE, "a"),)),
        MissingReference(ROUTE_TYPE, "http", ((LISTENER_TYPE, "http"),)),
    )
    with pytest.raises(InconsistentSnapshotError) as raised:
        snapshot.check()
    message = str(raised.value)
    assert "lacks 3 resources" in message
    assert "Cluster 'ghost' (referred to by Listener 'tcp', RouteConfiguration 'other')" in message
    assert "ClusterLoadAssignment 'a' (referred to by Cluster 'a')" in message
    assert "RouteConfiguration 'http' (referred to by Listener 'http')" in message
    assert raised.value.missing == snapshot.missing()
    assert isinstance(raised.value, ValueError)


def test_static_clusters_count_as_present():
    snapshot = Snapshot.from_messages([tcp_listener("tcp", "127.0.0.1", 15002, cluster="prometheus_stats")])
    assert snapshot.missing(static_clusters={"prometheus_stats"}) == ()
    assert [item.name for item in snapshot.missing()] == ["prometheus_stats"]


@given(
    clusters=st.sets(st.sampled_from("abcdef"), max_size=6),
    assignments=st.sets(st.sampled_from("abcdef"), max_size=6),
    routed=st.sets(st.sampled_from("abcdefg"), max_size=4),
)
def test_missing_is_exactly_what_is_referred_to_and_absent(clusters, assignments, routed):
    messages = [eds_cluster(name) for name in clusters]
    messages += [load_assignment(name) for name in assignments]
    messages.append(route_configuration("r", {f"{name}.example": name for name in routed}))
    snapshot = Snapshot.from_messages(messages)
    expected = {(ENDPOINT_TYPE, name) for name in clusters - assignments}
    expected |= {(CLUSTER_TYPE, name) for name in routed - clusters}
    assert {(item.type_url, item.name) for item in snapshot.missing()} == expected
