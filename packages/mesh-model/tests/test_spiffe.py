"""SPIFFE ids of Istio workloads: spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mesh_model import SPIFFE_SCHEME, InvalidSpiffeIdError, InvalidValueError, SpiffeId

_TRUST_DOMAINS = st.from_regex(r"[a-z0-9._-]{1,40}", fullmatch=True)
_SEGMENTS = st.from_regex(r"[A-Za-z0-9._-]{1,40}", fullmatch=True).filter(lambda s: s not in (".", ".."))

_REVIEWS = "spiffe://cluster.local/ns/default/sa/bookinfo-reviews"


# ---------------------------------------------------------------- parsing and formatting


def test_parse_istio_identity() -> None:
    identity = SpiffeId.parse(_REVIEWS)
    assert identity.trust_domain == "cluster.local"
    assert identity.namespace == "default"
    assert identity.service_account == "bookinfo-reviews"
    assert identity == SpiffeId("cluster.local", "default", "bookinfo-reviews")
    assert str(identity) == _REVIEWS
    assert identity.uri == _REVIEWS
    assert SPIFFE_SCHEME == "spiffe://"


@pytest.mark.parametrize(
    "text",
    [
        "spiffe://td/ns/a/sa/b",
        "spiffe://example.org/ns/Mixed.Case_ns/sa/Account-1",
        "spiffe://my_domain-1.example.com/ns/..a/sa/a..",
        "spiffe://cluster.local/ns/ns/sa/sa",
    ],
)
def test_valid_ids_round_trip(text: str) -> None:
    assert str(SpiffeId.parse(text)) == text


@given(_TRUST_DOMAINS, _SEGMENTS, _SEGMENTS)
def test_format_then_parse_round_trip(trust_domain: str, namespace: str, account: str) -> None:
    identity = SpiffeId(trust_domain, namespace, account)
    text = str(identity)
    assert text == f"spiffe://{trust_domain}/ns/{namespace}/sa/{account}"
    assert SpiffeId.parse(text) == identity
    assert str(SpiffeId.parse(text)) == text
    assert hash(SpiffeId.parse(text)) == hash(identity)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "cluster.local/ns/a/sa/b",
        "http://cluster.local/ns/a/sa/b",
        "spiffe:/cluster.local/ns/a/sa/b",
        "spiffe:cluster.local/ns/a/sa/b",
        "SPIFFE://cluster.local/ns/a/sa/b",
        " spiffe://cluster.local/ns/a/sa/b",
        "spiffe://cluster.local/ns/a/sa/b ",
        "spiffe://cluster.local",
        "spiffe://cluster.local/",
        "spiffe://cluster.local/ns/a",
        "spiffe://cluster.local/ns/a/sa",
        "spiffe://cluster.local/ns/a/sa/b/c",
        "spiffe://cluster.local/ns/a/sa/b/",
        "spiffe://cluster.local//ns/a/sa/b",
        "spiffe://cluster.local/namespace/a/sa/b",
        "spiffe://cluster.local/NS/a/sa/b",
        "spiffe://cluster.local/ns/a/serviceaccount/b",
        "spiffe://cluster.local/ns/a/SA/b",
        "spiffe://cluster.local/sa/b/ns/a",
        "spiffe:///ns/a/sa/b",
        "spiffe://cluster.local/ns//sa/b",
        "spiffe://cluster.local/ns/a/sa/",
        "spiffe://cluster.local/ns/./sa/b",
        "spiffe://cluster.local/ns/a/sa/..",
        "spiffe://cluster.local/ns/a/sa/b?x=1",
        "spiffe://cluster.local/ns/a/sa/b#frag",
        "spiffe://cluster.local/ns/a%2Fb/sa/c",
        "spiffe://Cluster.Local/ns/a/sa/b",
        "spiffe://cluster.local:8080/ns/a/sa/b",
        "spiffe://user@cluster.local/ns/a/sa/b",
        "spiffe://cluster.local/ns/a b/sa/c",
        "spiffe://cluster.local/ns/ä/sa/c",
        "spiffe://cluster.local/ns/a/sa/b\n",
        "spiffe://" + "a" * 256 + "/ns/a/sa/b",
    ],
)
def test_parse_rejects_and_quotes_the_value(text: str) -> None:
    with pytest.raises(InvalidSpiffeIdError) as caught:
        SpiffeId.parse(text)
    quoted = repr(text)
    assert (quoted if len(quoted) <= 80 else quoted[:30]) in str(caught.value)


def test_huge_input_is_rejected_with_a_short_message() -> None:
    text = "spiffe://cluster.local/ns/" + "a" * 1_000_000 + "/sa/b"
    with pytest.raises(InvalidSpiffeIdError) as caught:
        SpiffeId.parse(text)
    message = str(caught.value)
    assert "spiffe://cluster.local/ns/aaaa" in message
    assert len(message) < 300


def test_longest_accepted_id() -> None:
    prefix = "spiffe://cluster.local/ns/default/sa/"
    account = "a" * (2048 - len(prefix))
    assert SpiffeId.parse(prefix + account).service_account == account
    with pytest.raises(InvalidSpiffeIdError, match="2048"):
        SpiffeId.parse(prefix + account + "a")


@pytest.mark.parametrize("value", [None, 42, b"spiffe://cluster.local/ns/a/sa/b", ["spiffe://td/ns/a/sa/b"]])
def test_parse_rejects_non_strings(value: object) -> None:
    with pytest.raises(InvalidSpiffeIdError, match=type(value).__name__):
        SpiffeId.parse(value)  # type: ignore[arg-type]


def test_spiffe_errors_are_value_errors() -> None:
    assert issubclass(InvalidSpiffeIdError, InvalidValueError)
    with pytest.raises(ValueError, match="spiffe://"):
        SpiffeId.parse("https://cluster.local/ns/a/sa/b")


@given(st.one_of(st.text(), st.text().map(lambda rest: "spiffe://" + rest)))
def test_arbitrary_text_parses_or_raises_invalid_spiffe_id_error(text: str) -> None:
    try:
        identity = SpiffeId.parse(text)
    except InvalidSpiffeIdError:
        return
    assert str(identity) == text


# ---------------------------------------------------------------- the constructor and with_trust_domain


@pytest.mark.parametrize(
    ("trust_domain", "namespace", "account", "complaint"),
    [
        ("", "default", "sa", "trust domain"),
        ("Cluster.local", "default", "sa", "'Cluster.local'"),
        ("cluster.local/x", "default", "sa", "trust domain"),
        ("a" * 256, "default", "sa", "255"),
        ("cluster.local", "", "sa", "namespace"),
        ("cluster.local", "de/fault", "sa", "'de/fault'"),
        ("cluster.local", "..", "sa", "namespace"),
        ("cluster.local", "default", "", "service account"),
        ("cluster.local", "default", "s a", "'s a'"),
        (None, "default", "sa", "trust domain must be a string"),
        ("cluster.local", 1, "sa", "namespace must be a string"),
        ("cluster.local", "default", b"sa", "service account must be a string"),
    ],
)
def test_constructor_validates(trust_domain: object, namespace: object, account: object, complaint: str) -> None:
    with pytest.raises(InvalidSpiffeIdError, match=complaint):
        SpiffeId(trust_domain, namespace, account)  # type: ignore[arg-type]


def test_with_trust_domain() -> None:
    identity = SpiffeId.parse(_REVIEWS)
    moved = identity.with_trust_domain("example.org")
    assert moved == SpiffeId("example.org", "default", "bookinfo-reviews")
    assert str(moved) == "spiffe://example.org/ns/default/sa/bookinfo-reviews"
    assert identity.trust_domain == "cluster.local"
    assert identity.with_trust_domain("cluster.local") == identity
    with pytest.raises(InvalidSpiffeIdError):
        identity.with_trust_domain("Example.org")
    with pytest.raises(InvalidSpiffeIdError):
        identity.with_trust_domain("")


@given(_TRUST_DOMAINS, _TRUST_DOMAINS, _SEGMENTS, _SEGMENTS)
def test_with_trust_domain_keeps_the_workload(first: str, second: str, namespace: str, account: str) -> None:
    identity = SpiffeId(first, namespace, account)
    moved = identity.with_trust_domain(second)
    assert (moved.trust_domain, moved.namespace, moved.service_account) == (second, namespace, account)
    assert moved.with_trust_domain(first) == identity


def test_ids_are_frozen_values() -> None:
    identity = SpiffeId.parse(_REVIEWS)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        identity.namespace = "other"  # type: ignore[misc]
    assert {identity, SpiffeId.parse(_REVIEWS)} == {identity}
