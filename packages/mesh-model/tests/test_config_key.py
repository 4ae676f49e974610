import pytest
from hypothesis import given
from hypothesis import strategies as st

from mesh_model import ChangeSet, ConfigKey, InvalidValueError, Kind

VS = ConfigKey(Kind.VIRTUAL_SERVICE, "default", "reviews")
DR = ConfigKey(Kind.DESTINATION_RULE, "default", "reviews")
EP = ConfigKey(Kind.ENDPOINTS, "default", "reviews.default.svc.cluster.local")
EP2 = ConfigKey(Kind.ENDPOINTS, "other", "ratings.other.svc.cluster.local")
MESH = ConfigKey(Kind.MESH_CONFIG, "", "mesh")


def test_str_forms():
    assert str(VS) == "VirtualService default/reviews"
    assert str(MESH) == "MeshConfig mesh"
    assert str(ConfigKey("MyKind", "ns", "x")) == "MyKind ns/x"


def test_kind_values_are_istio_names_and_equal_plain_strings():
    assert Kind.SERVICE_ENTRY == "ServiceEntry"
    assert ConfigKey("ServiceEntry", "a", "b") == ConfigKey(Kind.SERVICE_ENTRY, "a", "b")
    assert hash(ConfigKey("ServiceEntry", "a", "b")) == hash(ConfigKey(Kind.SERVICE_ENTRY, "a", "b"))
    assert len({ConfigKey("Service", "a", "b"), ConfigKey(Kind.SERVICE, "a", "b")}) == 1


def test_keys_order_by_kind_then_namespace_then_name():
    keys = [
        ConfigKey("B", "a", "a"),
        ConfigKey("A", "b", "a"),
        ConfigKey("A", "a", "b"),
        ConfigKey("A", "a", "a"),
    ]
    assert sorted(keys) == [keys[3], keys[2], keys[1], keys[0]]


@pytest.mark.parametrize("fields", [(None, "ns", "n"), ("Kind", 1, "n"), ("Kind", "ns", b"n")])
def test_key_fields_must_be_strings(fields):
    with pytest.raises(InvalidValueError, match="must be a string"):
        ConfigKey(*fields)


def test_keys_are_hashable_values():
    assert ConfigKey("A", "b", "c") == ConfigKey("A", "b", "c")
    assert len({ConfigKey("A", "b", "c"), ConfigKey("A", "b", "c"), ConfigKey("A", "b", "d")}) == 2


# ---------------------------------------------------------------- ChangeSet


def test_empty_change_set_is_falsy():
    assert not ChangeSet()
    assert not ChangeSet.of()
    assert len(ChangeSet()) == 0
    assert list(ChangeSet()) == []
    assert ChangeSet.of(VS)


def test_of_and_constructor_agree():
    assert ChangeSet.of(VS, DR) == ChangeSet([DR, VS]) == ChangeSet(frozenset({VS, DR}))
    assert ChangeSet.of(VS, VS).keys == frozenset({VS})
    assert len(ChangeSet.of(VS, VS, DR)) == 2


def test_membership():
    changes = ChangeSet.of(VS, EP)
    assert VS in changes
    assert DR not in changes
    assert "VirtualService default/reviews" not in changes


def test_iteration_is_sorted():
    changes = ChangeSet.of(VS, MESH, EP2, DR, EP)
    assert list(changes) == [DR, EP, EP2, MESH, VS]
    assert list(changes) == sorted(changes.keys)


def test_merge_union_and_or():
    left, right = ChangeSet.of(VS, EP), ChangeSet.of(EP, DR)
    assert left.merge(right) == ChangeSet.of(VS, EP, DR)
    assert left | right == ChangeSet.of(VS, EP, DR)
    assert left.merge([MESH]) == ChangeSet.of(VS, EP, MESH)
    assert left.merge(()) == left
    assert ChangeSet() | left == left
    assert left == ChangeSet.of(VS, EP), "merge must not change its operands"


def test_or_with_another_type_is_a_type_error():
    with pytest.raises(TypeError):
        ChangeSet.of(VS) | {DR}
    with pytest.raises(TypeError):
        ChangeSet.of(VS) | [DR]


def test_change_sets_hold_only_config_keys():
    with pytest.raises(InvalidValueError, match="ConfigKey values, not 'VirtualService'"):
        ChangeSet(["VirtualService"])
    with pytest.raises(InvalidValueError, match="ConfigKey values"):
        ChangeSet.of(VS).merge([("VirtualService", "default", "reviews")])


def test_kinds_and_of_kind():
    changes = ChangeSet.of(VS, EP, EP2)
    assert changes.kinds == frozenset({"VirtualService", "Endpoints"})
    assert changes.of_kind(Kind.ENDPOINTS) == frozenset({EP, EP2})
    assert changes.of_kind("Endpoints", Kind.VIRTUAL_SERVICE) == frozenset({VS, EP, EP2})
    assert changes.of_kind(Kind.GATEWAY) == frozenset()
    assert changes.of_kind() == frozenset()


def test_only_tells_an_endpoint_only_change():
    assert ChangeSet.of(EP, EP2).only(Kind.ENDPOINTS)
    assert not ChangeSet.of(EP, VS).only(Kind.ENDPOINTS)
    assert ChangeSet.of(EP, VS).only(Kind.ENDPOINTS, Kind.VIRTUAL_SERVICE)
    assert not ChangeSet().only(Kind.ENDPOINTS)
    assert not ChangeSet.of(EP).only()


def test_change_sets_are_hashable_values():
    assert hash(ChangeSet.of(VS, DR)) == hash(ChangeSet.of(DR, VS))
    assert {ChangeSet.of(VS), ChangeSet.of(VS)} == {ChangeSet.of(VS)}


_keys = st.builds(
    ConfigKey,
    st.sampled_from([*Kind, "Custom"]),
    st.sampled_from(["", "default", "other"]),
    st.text(max_size=5),
)
_sets = st.lists(_keys, max_size=8).map(ChangeSet)


@given(_sets, _sets, _sets)
def test_merge_is_a_set_union(a, b, c):
    assert (a | b).keys == a.keys | b.keys
    assert a | b == b | a
    assert (a | b) | c == a | (b | c)
    assert a | a == a
    assert list(a | b) == sorted(a.keys | b.keys)


@given(_sets)
def test_of_kind_partitions_the_set(changes):
    parts = [changes.of_kind(kind) for kind in changes.kinds]
    assert frozenset().union(*parts) == changes.keys
    assert sum(len(part) for part in parts) == len(changes)
    assert changes.only(*changes.kinds) == bool(changes)
