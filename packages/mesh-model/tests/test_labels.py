"""Labels as an immutable mapping, label validation, and label selectors."""

from __future__ import annotations

import copy
import pickle
from collections.abc import Mapping

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mesh_model import (
    InvalidLabelError,
    InvalidValueError,
    Labels,
    LabelSelector,
    validate_label_key,
    validate_label_value,
)

# Few keys and values, so that generated label sets and selectors often overlap.
_KEYS = st.sampled_from(["app", "version", "tier", "app.kubernetes.io/name", "istio.io/rev"])
_VALUES = st.sampled_from(["", "reviews", "v1", "v2", "backend"])
_DICTS = st.dictionaries(_KEYS, _VALUES, max_size=5)


# ---------------------------------------------------------------- Labels as a mapping


def test_labels_behave_as_a_read_only_mapping() -> None:
    labels = Labels({"app": "reviews", "version": "v1"})
    assert isinstance(labels, Mapping)
    assert labels["app"] == "reviews"
    assert labels.get("tier") is None
    assert "version" in labels
    assert len(labels) == 2
    assert sorted(labels) == ["app", "version"]
    assert dict(labels) == {"app": "reviews", "version": "v1"}
    assert labels == {"app": "reviews", "version": "v1"}
    assert {"version": "v1", "app": "reviews"} == labels  # noqa: SIM300 - the reflected comparison
    assert labels != {"app": "reviews"}
    assert labels != {"app": "reviews", "version": "v2"}
    assert labels != [("app", "reviews"), ("version", "v1")]
    assert Labels() == {} == Labels(None)
    assert not Labels()
    with pytest.raises(KeyError):
        labels["tier"]


def test_labels_are_immutable() -> None:
    labels = Labels({"app": "reviews"})
    with pytest.raises(TypeError):
        labels["app"] = "ratings"  # type: ignore[index]
    with pytest.raises(TypeError):
        del labels["app"]  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        labels._items = {}
    with pytest.raises(AttributeError):
        del labels._items
    with pytest.raises(AttributeError):
        labels.extra = 1
    assert labels == {"app": "reviews"}


def test_labels_copy_their_input() -> None:
    source = {"app": "reviews"}
    labels = Labels(source)
    source["app"] = "ratings"
    source["tier"] = "backend"
    assert labels == {"app": "reviews"}


def test_labels_are_hashable_by_content() -> None:
    first = Labels({"app": "reviews", "version": "v1"})
    second = Labels({"version": "v1", "app": "reviews"})
    assert first == second
    assert hash(first) == hash(second)
    assert len({first, second, Labels(first)}) == 1
    assert {first: "x"}[second] == "x"
    assert first != Labels({"app": "reviews", "version": "v2"})


def test_labels_survive_copy_and_pickle() -> None:
    labels = Labels({"app": "reviews", "app.kubernetes.io/name": "reviews"})
    selector = LabelSelector(labels)
    for clone in (copy.copy(labels), copy.deepcopy(labels), pickle.loads(pickle.dumps(labels))):
        assert isinstance(clone, Labels)
        assert clone == labels
        assert hash(clone) == hash(labels)
    assert copy.deepcopy(selector) == selector
    assert pickle.loads(pickle.dumps(selector)) == selector


def test_is_superset_of_and_merged() -> None:
    labels = Labels({"app": "reviews", "version": "v1"})
    assert labels.is_superset_of({})
    assert labels.is_superset_of({"app": "reviews"})
    assert labels.is_superset_of(labels)
    assert not labels.is_superset_of({"app": "ratings"})
    assert not labels.is_superset_of({"app": "reviews", "tier": "backend"})
    merged = labels.merged({"version": "v2", "tier": "backend"})
    assert merged == {"app": "reviews", "version": "v2", "tier": "backend"}
    assert isinstance(merged, Labels)
    assert labels == {"app": "reviews", "version": "v1"}
    with pytest.raises(InvalidLabelError, match="'bad key'"):
        labels.merged({"bad key": "x"})


def test_repr_shows_the_items() -> None:
    assert repr(Labels({"app": "reviews"})) == "Labels({'app': 'reviews'})"


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "key",
    [
        "app",
        "a",
        "app.kubernetes.io/name",
        "istio.io/rev",
        "Version_2.x-y",
        "x" * 63,
        "example.com/" + "x" * 63,
        ".".join(["a" * 63] * 3 + ["a" * 61]) + "/name",  # a prefix of exactly 253 characters
    ],
)
def test_valid_keys(key: str) -> None:
    validate_label_key(key)
    assert Labels({key: "v"})[key] == "v"


@pytest.mark.parametrize(
    "key",
    [
        "",
        "*",
        "app*",
        "x" * 64,
        "example.com/" + "x" * 64,
        "-app",
        "app-",
        "_app",
        "app name",
        "/name",
        "example.com/",
        "Example.com/name",
        "example..com/name",
        "a/b/c",
        "appé",
        ".".join(["a" * 63] * 4) + "/name",  # a prefix of 255 characters
    ],
)
def test_invalid_keys_are_named_in_the_error(key: str) -> None:
    with pytest.raises(InvalidLabelError) as caught:
        validate_label_key(key)
    assert (repr(key)[:30] if key else "empty") in str(caught.value)
    with pytest.raises(InvalidLabelError):
        Labels({key: "v"})
    with pytest.raises(InvalidLabelError):
        LabelSelector({key: "v"})


@pytest.mark.parametrize("value", ["", "v1", "1.2_3-x", "A", "x" * 63])
def test_valid_values(value: str) -> None:
    validate_label_value("app", value)
    assert Labels({"app": value})["app"] == value


@pytest.mark.parametrize("value", ["*", "v*", "x" * 64, "-v1", "v1-", ".v1", "v 1", "v1\n", "ü", "a/b"])
def test_invalid_values_name_their_key(value: str) -> None:
    with pytest.raises(InvalidLabelError, match="'version'"):
        validate_label_value("version", value)
    with pytest.raises(InvalidLabelError, match="'version'"):
        Labels({"version": value})
    with pytest.raises(InvalidLabelError, match="'version'"):
        LabelSelector({"version": value})


@pytest.mark.parametrize("items", [{1: "v"}, {"app": 1}, {"app": None}, [("app", "v")], "app=v"])
def test_non_string_labels_are_rejected(items: object) -> None:
    with pytest.raises(InvalidLabelError):
        Labels(items)  # type: ignore[arg-type]


def test_label_errors_are_value_errors() -> None:
    assert issubclass(InvalidLabelError, InvalidValueError)
    with pytest.raises(ValueError, match="'\\*'"):
        Labels({"*": "v"})


@given(st.text(max_size=300), st.text(max_size=100))
def test_arbitrary_text_is_valid_or_an_invalid_label_error(key: str, value: str) -> None:
    try:
        labels = Labels({key: value})
    except InvalidLabelError:
        return
    assert labels[key] == value
    assert key.isascii()
    assert value.isascii()


# ---------------------------------------------------------------- selectors


def test_empty_selector_matches_everything() -> None:
    for selector in (LabelSelector(), LabelSelector({}), LabelSelector(Labels())):
        assert selector.is_empty
        assert selector.matches({})
        assert selector.matches(Labels())
        assert selector.matches({"app": "reviews", "version": "v1"})


def test_selector_needs_every_label_with_the_same_value() -> None:
    selector = LabelSelector({"app": "reviews", "version": "v1"})
    assert not selector.is_empty
    assert selector.matches({"app": "reviews", "version": "v1"})
    assert selector.matches(Labels({"app": "reviews", "version": "v1", "tier": "backend"}))
    assert not selector.matches({"app": "reviews"})
    assert not selector.matches({"app": "reviews", "version": "v2"})
    assert not selector.matches({"app": "Reviews", "version": "v1"})
    assert not selector.matches({})


def test_selector_with_an_empty_value_needs_the_key() -> None:
    selector = LabelSelector({"canary": ""})
    assert selector.matches({"canary": ""})
    assert not selector.matches({})
    assert not selector.matches({"canary": "true"})


def test_selector_converts_and_compares_by_content() -> None:
    selector = LabelSelector({"app": "reviews"})
    assert isinstance(selector.match_labels, Labels)
    assert selector == LabelSelector(Labels({"app": "reviews"}))
    assert hash(selector) == hash(LabelSelector({"app": "reviews"}))
    assert selector != LabelSelector({"app": "ratings"})
    with pytest.raises(InvalidLabelError, match="'\\*'"):
        LabelSelector({"app": "*"})


@given(_DICTS, _DICTS)
def test_selector_matches_iff_superset(selected: dict[str, str], carried: dict[str, str]) -> None:
    selector = LabelSelector(selected)
    labels = Labels(carried)
    expected = all(key in carried and carried[key] == value for key, value in selected.items())
    assert selector.matches(labels) == labels.is_superset_of(selector.match_labels) == expected
    assert selector.matches(carried) == expected


@given(_DICTS, _DICTS)
def test_adding_labels_keeps_a_match(carried: dict[str, str], extra: dict[str, str]) -> None:
    selector = LabelSelector(carried)
    assert selector.matches(carried)
    added = {key: value for key, value in extra.items() if key not in carried}
    assert selector.matches(Labels(carried).merged(added))


@given(_DICTS, _DICTS)
def test_hash_and_equality_agree(first: dict[str, str], second: dict[str, str]) -> None:
    a, b = Labels(first), Labels(second)
    assert (a == b) == (first == second)
    assert a == first
    if a == b:
        assert hash(a) == hash(b)
        assert LabelSelector(a) == LabelSelector(b)
        assert hash(LabelSelector(a)) == hash(LabelSelector(b))
    assert Labels(dict(reversed(list(first.items())))) == a
    assert hash(Labels(dict(reversed(list(first.items()))))) == hash(a)
