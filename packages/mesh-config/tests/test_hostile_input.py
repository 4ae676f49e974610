"""Hostile input: every load ends in bounded time and memory with diagnostics, never an exception or a hang.

Each test carries a pytest-timeout far below the global one, so that a regression shows as a failure here
rather than as a stalled run.
"""

import json
import os
import pathlib
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mesh_config import LoadLimits, LoadResult, load_file, load_paths, load_text

FAST = pytest.mark.timeout(10)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check(result):
    """The invariants of any load: a LoadResult whose every diagnostic names its source."""
    assert isinstance(result, LoadResult)
    for diagnostic in result.diagnostics:
        assert diagnostic.position is not None
        assert diagnostic.position.source
        assert diagnostic.format()
    return result


def only_error(result):
    check(result)
    (error,) = result.errors
    assert not result.resources
    return error


def peak_mib(function):
    """Run ``function`` and return its result and its peak of traced allocations in MiB."""
    tracemalloc.start()
    try:
        result = function()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak / 2**20


def billion_laughs(levels=9, fan_out=9):
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, levels + 1):
        refs = ", ".join([f"*a{level - 1}"] * fan_out)
        lines.append(f"a{level}: &a{level} [{refs}]")
    return "\n".join(lines) + "\n"


@FAST
def test_billion_laughs_is_refused_quickly_and_in_little_memory():
    result, peak = peak_mib(lambda: load_text(billion_laughs()))
    error = only_error(result)
    assert "alias bomb" in error.message
    assert error.position.line > 1
    assert peak < 20


@FAST
def test_alias_bomb_through_merge_keys_is_counted():
    lines = ["a0: &a0 {" + ", ".join(f"k{i}: v" for i in range(50)) + "}"]
    for level in range(1, 6):
        lines.append(f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * 20) + "]")
    lines.append("m: {<<: *a0, x: *a5}")
    error = only_error(load_text("\n".join(lines)))
    assert "alias bomb" in error.message


OTHER_KIND = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n"


@FAST
def test_aliases_within_the_limit_load():
    result = check(load_text(OTHER_KIND + billion_laughs(levels=3), limits=LoadLimits(max_nodes=10_000)))
    assert result.ok
    assert result.skipped == (("<string>", "ConfigMap"),)
    error = only_error(load_text(OTHER_KIND + billion_laughs(levels=3), limits=LoadLimits(max_nodes=5_000)))
    assert "more than 5000 values" in error.message


@FAST
@pytest.mark.parametrize(
    "text",
    [
        "[" * 10_000,
        "{a: " * 10_000,
        '{"a": ' * 10_000,
        "- " * 10_000,
        "".join(" " * depth + "a:\n" for depth in range(3_000)),
        "a: " + "[" * 10_000 + "]" * 10_000,
    ],
    ids=["flow-lists", "flow-maps", "json-objects", "block-lists", "block-maps", "closed-lists"],
)
def test_deep_nesting_is_refused(text):
    result, peak = peak_mib(lambda: load_text(text, source="deep.yaml"))
    error = only_error(result)
    assert "nesting" in error.message or "depth" in error.message
    assert peak < 50


@FAST
def test_nesting_up_to_the_limit_loads():
    limits = LoadLimits(max_depth=8)
    assert check(load_text(OTHER_KIND + "data: " + "[" * 7 + "]" * 7, limits=limits)).ok
    error = only_error(load_text(OTHER_KIND + "data: " + "[" * 8 + "]" * 8, limits=limits))
    assert "nesting deeper than 8 levels" in error.message


@FAST
def test_huge_input_is_refused_before_parsing(tmp_path):
    limits = LoadLimits(max_bytes=1000)
    text = "a: " + "x" * 2000
    assert "limit is 1000" in only_error(load_text(text, limits=limits)).message
    assert "limit is 1000" in only_error(load_text(text.encode(), limits=limits)).message
    big = tmp_path / "big.yaml"
    big.write_text(text)
    assert "limit is 1000" in only_error(load_file(big, limits=limits)).message


@FAST
def test_default_limit_refuses_more_than_max_bytes():
    text = "#" * (LoadLimits().max_bytes + 1)
    error = only_error(load_text(text))
    assert f"the limit is {LoadLimits().max_bytes}" in error.message


@FAST
def test_too_many_documents():
    text = ("---\n" + OTHER_KIND) * 20
    error = only_error(load_text(text, limits=LoadLimits(max_documents=10)))
    assert "more than 10 documents" in error.message


@FAST
def test_base_60_numbers_cannot_cost_quadratic_time():
    error = only_error(load_text("a: 1" + ":1" * 2_000_000))
    assert "too long" in error.message


@FAST
@pytest.mark.parametrize(
    ("data", "line", "column"),
    [
        (b"a: \xff\xfe\n", 1, 4),
        (b"apiVersion: v1\nkind: \xc3\x28\n", 2, 7),
        (bytes(range(256)), 2, 118),
        (b"\x80", 1, 1),
    ],
)
def test_invalid_utf8_is_reported_where_it_is(data, line, column):
    error = only_error(load_text(data, source="bin"))
    assert "not UTF-8" in error.message
    assert (error.position.line, error.position.column) == (line, column)


@FAST
def test_nul_bytes_and_control_characters():
    error = only_error(load_text("a: b\nc: d\x00e\n"))
    assert "NUL" in error.message
    assert (error.position.line, error.position.column) == (2, 5)
    error = only_error(load_text("a: b\nc: \x07\n"))
    assert "control characters are not allowed" in error.message
    assert (error.position.line, error.position.column) == (2, 4)
    error = only_error(load_text("a: \u00e9\u00e9\x07\n"))
    assert (error.position.line, error.position.column) == (1, 6)


@FAST
def test_lone_surrogates_in_text():
    error = only_error(load_text("a: b\nc: \ud800\n"))
    assert "surrogate" in error.message
    assert (error.position.line, error.position.column) == (2, 4)


@FAST
def test_special_files_are_not_read(tmp_path):
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    assert "not a regular file" in only_error(load_file(fifo)).message
    assert "not a regular file" in only_error(load_paths([fifo])).message
    if pathlib.Path("/dev/zero").exists():
        assert "not a regular file" in only_error(load_file("/dev/zero")).message


@FAST
@FUZZ
@given(st.binary(max_size=2000))
def test_arbitrary_bytes(data):
    check(load_text(data))


@FAST
@FUZZ
@given(st.text(max_size=2000))
def test_arbitrary_text(text):
    check(load_text(text))


YAML_PIECES = st.sampled_from(
    [
        "[", "]", "{", "}", ",", ":", ": ", "- ", "? ", "\n", "\n  ", "\n    ", "---\n", "...\n", "&a ", "*a",
        "&b ", "*b", "<<: ", "!!str ", "!!int ", "!x ", "'", '"', "#", "|\n", ">\n", "%YAML 1.1\n", "\t",
        "apiVersion: security.istio.io/v1\n", "kind: PeerAuthentication\n", "metadata:\n  name: x\n",
        "spec:\n", "  mtls:\n    mode: STRICT\n", "  portLevelMtls:\n", '    "80": {mode: DISABLE}\n',
        "  selector: {matchLabels: {a: b}}\n", "1", "-1", "0x1F", "1e9", "null", "true", "~", "a", "é", "\U0001f600",
        "1:2", "2001:db8::", "\\u", "\\ud83d\\ude00",
    ]
)  # fmt: skip


@FAST
@FUZZ
@given(st.lists(YAML_PIECES, max_size=80).map("".join))
def test_yaml_shaped_garbage(text):
    check(load_text(text))
    check(load_text(text.encode("utf-8")))


@FAST
@FUZZ
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
        lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
        max_leaves=40,
    )
)
def test_arbitrary_json_spec_of_a_known_kind(spec):
    document = {
        "apiVersion": "security.istio.io/v1",
        "kind": "PeerAuthentication",
        "metadata": {"name": "fuzz"},
        "spec": spec,
    }
    check(load_text(json.dumps(document)))
