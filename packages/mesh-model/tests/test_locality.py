"""Locality parsing, formatting, Istio's locality patterns and shared levels."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mesh_model import InvalidLocalityError, InvalidValueError, Locality

# A level: printable, no white space, no '/'. Unicode is allowed.
_LEVEL = st.text(
    st.characters(blacklist_categories=("Z", "C"), blacklist_characters="/"),
    min_size=1,
    max_size=20,
)
_LOCALITIES = st.lists(_LEVEL, max_size=3).map(lambda levels: Locality(*levels))


# ---------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("text", "region", "zone", "subzone"),
    [
        ("us-east1/us-east1-b/rack7", "us-east1", "us-east1-b", "rack7"),
        ("us-east1/us-east1-b", "us-east1", "us-east1-b", ""),
        ("us-east1", "us-east1", "", ""),
        ("", "", "", ""),
        ("*/*/*", "*", "*", "*"),
        ("europe-west4/europe-west4-a/ü", "europe-west4", "europe-west4-a", "ü"),
    ],
)
def test_parse(text: str, region: str, zone: str, subzone: str) -> None:
    locality = Locality.parse(text)
    assert (locality.region, locality.zone, locality.subzone) == (region, zone, subzone)
    assert locality == Locality(region, zone, subzone)
    assert str(locality) == text


def test_empty_text_is_the_unknown_locality() -> None:
    unknown = Locality.parse("")
    assert unknown == Locality()
    assert unknown.is_empty
    assert str(unknown) == ""
    assert not Locality.parse("us-east1").is_empty


@pytest.mark.parametrize(
    "text",
    [
        "a/b/c/d",
        "us-east1/us-east1-b/rack7/",
        "/zone",
        "/zone/subzone",
        "region//subzone",
        "//subzone",
        "us east1",
        " us-east1",
        "us-east1/us-east1-b ",
        "us-east1/\tb",
        "us-east1/zone\n",
        "us-east1\x00",
        "us-east1/\x7f",
        "us-east1/\u200b",
    ],
)
def test_parse_rejects_and_names_the_value(text: str) -> None:
    with pytest.raises(InvalidLocalityError) as caught:
        Locality.parse(text)
    assert repr(text) in str(caught.value)


def test_parse_rejects_huge_text_with_a_short_message() -> None:
    text = "r" * 100_000
    with pytest.raises(InvalidLocalityError) as caught:
        Locality.parse(text)
    message = str(caught.value)
    assert "rrrrrrrrrr" in message
    assert len(message) < 300


@pytest.mark.parametrize("value", [None, 7, b"us-east1"])
def test_parse_rejects_non_strings(value: object) -> None:
    with pytest.raises(InvalidLocalityError, match=type(value).__name__):
        Locality.parse(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("region", "zone", "subzone"),
    [
        ("", "zone", ""),
        ("", "", "subzone"),
        ("region", "", "subzone"),
        ("reg/ion", "", ""),
        ("region", "zo ne", ""),
        ("region", "zone", "sub\nzone"),
    ],
)
def test_constructor_checks_levels(region: str, zone: str, subzone: str) -> None:
    with pytest.raises(InvalidLocalityError):
        Locality(region, zone, subzone)


@pytest.mark.parametrize("levels", [(1,), ("region", None), ("region", "zone", b"subzone")])
def test_constructor_rejects_non_string_levels(levels: tuple[object, ...]) -> None:
    with pytest.raises(InvalidLocalityError, match="strings"):
        Locality(*levels)  # type: ignore[arg-type]


def test_locality_errors_are_value_errors() -> None:
    assert issubclass(InvalidLocalityError, InvalidValueError)
    with pytest.raises(ValueError, match="'/zone'"):
        Locality.parse("/zone")


def test_localities_are_hashable_values() -> None:
    assert {Locality.parse("a/b"), Locality("a", "b")} == {Locality("a", "b", "")}
    assert Locality("a", "b") != Locality("a", "b", "c")


@given(_LOCALITIES)
def test_str_round_trip(locality: Locality) -> None:
    text = str(locality)
    assert Locality.parse(text) == locality
    assert str(Locality.parse(text)) == text


@given(st.lists(_LEVEL, max_size=3).map("/".join))
def test_parse_round_trip(text: str) -> None:
    assert str(Locality.parse(text)) == text


@given(st.one_of(st.text(), st.text(alphabet="ab/ *\t\x00", max_size=12)))
def test_arbitrary_text_parses_or_raises_invalid_locality_error(text: str) -> None:
    try:
        locality = Locality.parse(text)
    except InvalidLocalityError:
        return
    assert Locality.parse(str(locality)) == locality


# ---------------------------------------------------------------- patterns and shared levels

_HERE = Locality("us-east1", "us-east1-b", "rack7")


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("us-east1/us-east1-b/rack7", True),
        ("us-east1/us-east1-b", True),
        ("us-east1", True),
        ("us-east1/*", True),
        ("us-east1/*/rack7", True),
        ("us-east1/us-east1-b/*", True),
        ("*", True),
        ("*/*/*", True),
        ("*/us-east1-b", True),
        ("*/*/rack7", True),
        ("us-west1", False),
        ("us-west1/*", False),
        ("us-east1/us-east1-c", False),
        ("us-east1/*/rack8", False),
        ("*/us-east1-c", False),
        ("*/*/rack8", False),
        ("us-east1/us-east1-b/rack7x", False),
        ("us-east", False),
        ("", False),
    ],
)
def test_matches(pattern: str, expected: bool) -> None:
    assert _HERE.matches(pattern) is expected


def test_partial_locality_against_patterns() -> None:
    region_only = Locality("us-east1")
    assert region_only.matches("us-east1")
    assert region_only.matches("us-east1/*")
    assert not region_only.matches("us-east1/us-east1-b")
    assert Locality().matches("*")
    assert not Locality().matches("us-east1")


@given(_LOCALITIES)
def test_a_locality_matches_its_own_text_and_wildcards(locality: Locality) -> None:
    if locality.is_empty:
        return
    assert locality.matches(str(locality))
    assert locality.matches("*/*/*")
    assert locality.matches(locality.region)
    assert locality.matches(f"{locality.region}/*")


@pytest.mark.parametrize(
    ("other", "shared"),
    [
        (Locality("us-east1", "us-east1-b", "rack7"), 3),
        (Locality("us-east1", "us-east1-b", "rack8"), 2),
        (Locality("us-east1", "us-east1-b"), 2),
        (Locality("us-east1", "us-east1-c", "rack7"), 1),
        (Locality("us-east1"), 1),
        (Locality("us-west1", "us-east1-b", "rack7"), 0),
        (Locality(), 0),
    ],
)
def test_shared_levels(other: Locality, shared: int) -> None:
    assert _HERE.shared_levels(other) == shared
    assert other.shared_levels(_HERE) == shared


def test_unknown_localities_share_nothing() -> None:
    assert Locality().shared_levels(Locality()) == 0
    assert Locality("a", "b").shared_levels(Locality("a", "b")) == 2


@given(_LOCALITIES, _LOCALITIES)
def test_shared_levels_is_symmetric_and_bounded(a: Locality, b: Locality) -> None:
    shared = a.shared_levels(b)
    assert shared == b.shared_levels(a)
    assert 0 <= shared <= 3
    assert a.shared_levels(a) == len([level for level in (a.region, a.zone, a.subzone) if level])
