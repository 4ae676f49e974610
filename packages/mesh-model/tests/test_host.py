"""Hostname parsing, Istio's wildcard matching, specificity and short-name resolution."""

from __future__ import annotations

import itertools
from random import Random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mesh_model import (
    Hostname,
    InvalidHostError,
    InvalidValueError,
    most_specific_first,
    most_specific_match,
    resolve_short_name,
)

# ---------------------------------------------------------------- strategies

_LABEL = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,8}[a-z0-9])?", fullmatch=True)
_TLD = st.from_regex(r"[a-z]([-a-z0-9]{0,8}[a-z0-9])?", fullmatch=True)
# Valid DNS names: any labels, then a top-level label that is not all digits.
_NAMES = st.builds(lambda labels, tld: ".".join([*labels, tld]), st.lists(_LABEL, max_size=4), _TLD)

# Hosts over a tiny alphabet, so that random pairs and triples often cover one another.
_SMALL_NAMES = st.lists(st.sampled_from(["a", "b", "ab"]), min_size=1, max_size=3).map(".".join)
_SMALL_HOSTS = st.one_of(
    _SMALL_NAMES,
    _SMALL_NAMES.map(lambda name: "*." + name),
    _SMALL_NAMES.map(lambda name: "*" + name),  # a first label such as "*ab"
    st.just("*"),
).map(Hostname.parse)

# Arbitrary text, with the shapes most likely to break a parser.
_ANY_TEXT = st.one_of(
    st.text(),
    st.text(alphabet=" \t\n.-_*:%[]/abcXYZ0129é\x00", max_size=40),
    st.binary().map(lambda raw: raw.decode("latin-1")),
    st.binary().map(lambda raw: raw.decode("utf-8", errors="surrogateescape")),
    st.builds(
        lambda chunk, count: chunk * count, st.sampled_from(["a", "a.", "*.", "é", " ", "9."]), st.integers(1, 5000)
    ),
    st.from_regex(r"[0-9a-fA-F:.%]{1,45}", fullmatch=True),  # IP-like text
)


def _shown_in(text: str, message: str) -> bool:
    """The message quotes the value, whole when it is short, else at least its beginning."""
    quoted = repr(text)
    return quoted in message if len(quoted) <= 60 else quoted[:20] in message


# ---------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("reviews.default.svc.cluster.local", "reviews.default.svc.cluster.local"),
        ("Reviews.Default.SVC.Cluster.Local", "reviews.default.svc.cluster.local"),
        ("example.com.", "example.com"),
        ("*.Example.COM.", "*.example.com"),
        ("*", "*"),
        ("*-foo.example.com", "*-foo.example.com"),
        ("reviews", "reviews"),
        ("10.0.0.1", "10.0.0.1"),
        ("2001:DB8:0:0:0:0:0:0001", "2001:db8::1"),
        ("a" * 63 + ".com", "a" * 63 + ".com"),
        (".".join(["a" * 63] * 4), ".".join(["a" * 63] * 4)),  # exactly 255 characters
    ],
)
def test_parse_normalises(text: str, expected: str) -> None:
    host = Hostname.parse(text)
    assert host.value == expected
    assert str(host) == expected
    assert host == Hostname(expected)


@pytest.mark.parametrize(
    "text",
    [
        "",
        " example.com",
        "example.com ",
        "exa mple.com",
        "\texample.com",
        "example.com\n",
        "bücher.de",
        "例え.jp",
        ".",
        "..",
        "example.com..",
        ".example.com",
        "a..example.com",
        "a.*.example.com",
        "foo*.example.com",
        "example.*",
        "**.example.com",
        "*.*.example.com",
        "example.123",
        "1.2.3",
        "a" * 64 + ".com",
        "*" + "a" * 63 + ".com",
        "-a.com",
        "a-.com",
        "under_score.com",
        "[::1]",
        "fe80::1%eth0",
        "fe80::1%\nx",
        ".".join(["a" * 50] * 6),  # valid labels, 305 characters
    ],
)
def test_parse_rejects_and_quotes_the_value(text: str) -> None:
    with pytest.raises(InvalidHostError) as caught:
        Hostname.parse(text)
    assert _shown_in(text, str(caught.value))


def test_error_for_a_huge_host_is_short_but_recognisable() -> None:
    text = "x" * 10_000_000
    with pytest.raises(InvalidHostError) as caught:
        Hostname.parse(text)
    message = str(caught.value)
    assert len(message) < 300
    assert "xxxxxxxxxx" in message
    assert "10000000" in message


def test_host_errors_are_value_errors() -> None:
    with pytest.raises(ValueError, match="empty"):
        Hostname.parse("")
    assert issubclass(InvalidHostError, InvalidValueError)


@pytest.mark.parametrize("value", [None, 42, b"example.com", ["example.com"]])
def test_non_strings_are_rejected(value: object) -> None:
    with pytest.raises(InvalidHostError, match=type(value).__name__):
        Hostname.parse(value)  # type: ignore[arg-type]
    with pytest.raises(InvalidHostError, match=type(value).__name__):
        Hostname(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["Example.com", "example.com.", "0:0:0:0:0:0:0:1", "::0001"])
def test_constructor_refuses_values_parse_would_change(text: str) -> None:
    with pytest.raises(InvalidHostError, match="normalised"):
        Hostname(text)
    assert Hostname(Hostname.parse(text).value) == Hostname.parse(text)


def test_properties_of_kinds_of_host() -> None:
    wildcard, name, ip = Hostname.parse("*.example.com"), Hostname.parse("a.example.com"), Hostname.parse("::1")
    assert (wildcard.is_wildcard, name.is_wildcard, ip.is_wildcard) == (True, False, False)
    assert (wildcard.is_ip, name.is_ip, ip.is_ip) == (False, False, True)
    assert wildcard.suffix == ".example.com"
    assert name.suffix == "a.example.com"
    assert Hostname.parse("*").suffix == ""
    assert repr(name) == "Hostname('a.example.com')"


# ---------------------------------------------------------------- covers and matches


@pytest.mark.parametrize(
    ("rule", "host", "expected"),
    [
        ("*.example.com", "a.example.com", True),
        ("*.example.com", "a.b.example.com", True),
        ("*.example.com", "example.com", False),
        ("*.example.com", "aexample.com", False),
        ("*.example.com", "*.b.example.com", True),
        ("*.example.com", "*.example.com", True),
        ("*.b.example.com", "*.example.com", False),
        ("*.com", "*.foo.com", True),
        ("*.foo.com", "*.com", False),
        ("*.com", "*", False),
        ("*", "anything.org", True),
        ("*", "*.com", True),
        ("*", "10.0.0.1", True),
        ("*", "*", True),
        ("a.example.com", "a.example.com", True),
        ("a.example.com", "b.example.com", False),
        ("a.example.com", "*.example.com", False),
        ("*foo.com", "barfoo.com", True),
        ("*foo.com", "bar.com", False),
        ("10.0.0.1", "10.0.0.1", True),
    ],
)
def test_covers(rule: str, host: str, expected: bool) -> None:
    assert Hostname.parse(rule).covers(Hostname.parse(host)) is expected


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        ("*.example.com", "a.example.com", True),
        ("*.example.com", "a.b.example.com", True),
        ("*.example.com", "example.com", False),
        ("*.com", "*.foo.com", True),
        ("*.foo.com", "*.bar.com", False),
        ("*", "example.com", True),
        ("a.example.com", "b.example.com", False),
    ],
)
def test_matches_in_both_directions(first: str, second: str, expected: bool) -> None:
    a, b = Hostname.parse(first), Hostname.parse(second)
    assert a.matches(b) is expected
    assert b.matches(a) is expected


@given(_SMALL_HOSTS, _SMALL_HOSTS)
def test_matches_is_symmetric(a: Hostname, b: Hostname) -> None:
    assert a.matches(b) == b.matches(a)


@given(_SMALL_HOSTS, _SMALL_HOSTS)
def test_covers_implies_matches(a: Hostname, b: Hostname) -> None:
    if a.covers(b):
        assert a.matches(b)
    if a.covers(b) and b.covers(a):
        assert a == b


@given(_SMALL_HOSTS)
def test_covers_is_reflexive(a: Hostname) -> None:
    assert a.covers(a)
    assert a.matches(a)


@given(_SMALL_HOSTS, _SMALL_HOSTS, _SMALL_HOSTS)
def test_covers_is_transitive(a: Hostname, b: Hostname, c: Hostname) -> None:
    if a.covers(b) and b.covers(c):
        assert a.covers(c)


@given(_NAMES, st.lists(_LABEL, min_size=1, max_size=3))
def test_wildcard_covers_every_name_under_its_suffix(suffix: str, prefix: list[str]) -> None:
    wildcard = Hostname.parse("*." + suffix)
    name = Hostname.parse(".".join([*prefix, suffix]))
    assert wildcard.covers(name)
    assert wildcard.matches(name)
    assert wildcard.covers(Hostname.parse("*." + name.value))
    assert not wildcard.covers(Hostname.parse(suffix))
    assert not name.covers(wildcard)


# ---------------------------------------------------------------- specificity


def test_most_specific_match_prefers_exact_then_longest_wildcard() -> None:
    candidates = [Hostname.parse(h) for h in ["*", "*.com", "*.example.com", "a.example.com", "other.org"]]
    best = {
        "a.example.com": "a.example.com",
        "b.example.com": "*.example.com",
        "a.b.example.com": "*.example.com",
        "*.sub.example.com": "*.example.com",
        "example.com": "*.com",
        "example.net": "*",
    }
    for host, expected in best.items():
        assert most_specific_match(Hostname.parse(host), candidates) == Hostname.parse(expected), host
        assert most_specific_match(Hostname.parse(host), reversed(candidates)) == Hostname.parse(expected), host


def test_most_specific_match_without_a_covering_candidate() -> None:
    candidates = [Hostname.parse("*.example.com"), Hostname.parse("b.org")]
    assert most_specific_match(Hostname.parse("example.com"), candidates) is None
    assert most_specific_match(Hostname.parse("a.org"), []) is None


def test_most_specific_first_orders_names_then_wildcards_longest_first() -> None:
    hosts = [Hostname.parse(h) for h in ["*", "*.example.com", "b.com", "a.example.com", "*.com", "a.com"]]
    expected = ["a.example.com", "a.com", "b.com", "*.example.com", "*.com", "*"]
    for order in itertools.permutations(hosts):
        assert [h.value for h in most_specific_first(order)] == expected


@given(_SMALL_HOSTS, st.lists(_SMALL_HOSTS, max_size=8))
def test_most_specific_match_is_the_most_specific_covering_candidate(
    host: Hostname, candidates: list[Hostname]
) -> None:
    best = most_specific_match(host, candidates)
    covering = [c for c in candidates if c.covers(host)]
    if best is None:
        assert not covering
        return
    assert best in candidates
    assert best.covers(host)
    assert all(not c.specificity() < best.specificity() for c in covering)
    assert most_specific_first(covering)[0] == best
    if host in candidates:
        assert best == host


@given(st.lists(_SMALL_HOSTS, max_size=10), st.randoms(use_true_random=False))
def test_specificity_is_a_total_order(hosts: list[Hostname], random: Random) -> None:
    ordered = most_specific_first(hosts)
    shuffled = list(hosts)
    random.shuffle(shuffled)
    assert most_specific_first(shuffled) == ordered
    assert sorted(ordered, key=Hostname.specificity) == ordered
    for a, b in itertools.combinations(ordered, 2):
        assert a.specificity() <= b.specificity()
        assert (a.specificity() == b.specificity()) == (a == b)
        if not a.is_wildcard and b.is_wildcard:
            continue
        assert a.is_wildcard == b.is_wildcard
        assert len(a.value) >= len(b.value)


# ---------------------------------------------------------------- round trips and robustness


@given(st.one_of(_NAMES, _NAMES.map(lambda n: "*." + n), st.ip_addresses().map(str), st.just("*")))
def test_parse_is_idempotent(text: str) -> None:
    host = Hostname.parse(text)
    assert Hostname.parse(str(host)) == host
    assert Hostname.parse(text.upper() + ".") == host
    assert Hostname(host.value) == host
    assert hash(Hostname.parse(str(host))) == hash(host)


@given(_ANY_TEXT)
def test_arbitrary_text_parses_or_raises_invalid_host_error(text: str) -> None:
    try:
        host = Hostname.parse(text)
    except InvalidHostError as error:
        message = str(error)
    else:
        assert isinstance(host, Hostname)
        assert host.value.isascii()
        assert host.value == host.value.lower()
        assert 1 <= len(host.value) <= 255
        assert not any(ch.isspace() for ch in host.value)
        assert Hostname.parse(str(host)) == host
        return
    assert _shown_in(text, message)
    assert len(message) < 500


# ---------------------------------------------------------------- short names


@pytest.mark.parametrize(
    ("name", "namespace", "expected"),
    [
        ("reviews", "default", "reviews.default.svc.cluster.local"),
        ("Reviews", "bookinfo", "reviews.bookinfo.svc.cluster.local"),
        ("reviews.prod", "default", "reviews.prod"),
        ("reviews.prod.svc.cluster.local", "default", "reviews.prod.svc.cluster.local"),
        ("reviews.", "default", "reviews"),  # the trailing dot makes it fully qualified
        ("10.0.0.1", "default", "10.0.0.1"),
        ("::1", "default", "::1"),
        ("*", "default", "*"),
        ("*.example.com", "default", "*.example.com"),
        ("reviews.prod", "", "reviews.prod"),
    ],
)
def test_resolve_short_name(name: str, namespace: str, expected: str) -> None:
    assert resolve_short_name(name, namespace) == Hostname.parse(expected)


def test_resolve_short_name_with_a_custom_domain_suffix() -> None:
    assert resolve_short_name("reviews", "default", domain_suffix="example.org").value == (
        "reviews.default.svc.example.org"
    )
    assert resolve_short_name("reviews", "default", domain_suffix="").value == "reviews.default"
    assert resolve_short_name("reviews.prod", "default", domain_suffix="example.org").value == "reviews.prod"


def test_resolve_short_name_needs_a_namespace() -> None:
    with pytest.raises(InvalidHostError, match=r"'reviews'.*namespace"):
        resolve_short_name("reviews", "")


@pytest.mark.parametrize(("name", "namespace"), [("re views", "default"), ("", "default"), ("reviews", "bad ns")])
def test_resolve_short_name_rejects_invalid_hosts(name: str, namespace: str) -> None:
    with pytest.raises(InvalidHostError):
        resolve_short_name(name, namespace)
