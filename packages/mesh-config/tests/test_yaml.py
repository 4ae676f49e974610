"""YAML and JSON as Kubernetes reads them: multi-document streams, JSON, positions, anchors and merge keys."""

import json
import textwrap

import pytest

from mesh_config import Position, load_text

PA = """\
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: {name}
  namespace: shop
spec:
  mtls:
    mode: {mode}
"""


def pa(name="a", mode="STRICT"):
    return PA.format(name=name, mode=mode)


def load(text, **options):
    return load_text(textwrap.dedent(text), source="in.yaml", **options)


def messages(result):
    return [d.format() for d in result.diagnostics]


def test_multi_document_stream_keeps_order_and_ignores_empty_documents():
    text = "---\n" + pa("one") + "---\n---\n# only a comment\n---\n" + pa("two") + "...\n---\n" + pa("three")
    result = load(text)
    assert result.ok, messages(result)
    assert [r.name for r in result.resources] == ["one", "two", "three"]
    assert [d.index for d in result.documents] == [0, 1, 2]
    assert [d.position.line for d in result.documents] == [2, 14, 24]  # where each object starts


def test_json_documents_load_like_yaml():
    document = {
        "apiVersion": "security.istio.io/v1beta1",
        "kind": "PeerAuthentication",
        "metadata": {"name": "from-json", "namespace": "shop", "annotations": {"note": "caf\u00e9 \U0001f600"}},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "portLevelMtls": {"8080": {"mode": "DISABLE"}}},
    }
    for text in (json.dumps(document), json.dumps(document, indent="\t"), json.dumps(document, indent=2)):
        result = load_text(text, source="in.json")
        assert result.ok, messages(result)
        (resource,) = result.resources
        assert resource.api_version == "security.istio.io/v1beta1"
        assert dict(resource.spec.port_level_mtls) == {8080: resource.spec.port_level_mtls[8080]}


def test_json_escaped_surrogate_pairs_are_one_character():
    # json.dumps writes characters outside the BMP as surrogate pairs, which YAML escapes cannot spell.
    document = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"k": "\U0001f600"}}
    result = load_text(json.dumps(document))
    assert result.ok, messages(result)
    assert result.skipped == (("<string>", "ConfigMap"),)


def test_json_error_positions_point_into_the_json():
    text = '{"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",\n "metadata": {"name": "j"},\n'
    text += ' "spec": {"mtls": {"mode": "NOPE"}}}'
    (error,) = load_text(text, source="in.json").diagnostics
    assert error.position == Position("in.json", 3, 20)
    assert error.field == "spec.mtls.mode"


def test_positions_of_nested_fields_in_block_and_flow_style():
    result = load(
        """\
        apiVersion: security.istio.io/v1
        kind: PeerAuthentication
        metadata: {name: pos, namespace: shop}
        spec:
          selector:
            matchLabels: {app: web}
          portLevelMtls:
            "9080": {mode: LOUD}
            "9090":
              mode: QUIET
        """
    )
    assert [(d.position.line, d.position.column, d.field) for d in result.diagnostics] == [
        (8, 14, "spec.portLevelMtls.9080.mode"),  # a value's position is its key's
        (10, 7, "spec.portLevelMtls.9090.mode"),
    ]


def test_timestamps_stay_strings_and_plain_keys_become_strings():
    result = load(
        """\
        apiVersion: security.istio.io/v1
        kind: PeerAuthentication
        metadata:
          name: keys
          namespace: shop
          creationTimestamp: 2024-05-01T10:00:00Z
          labels: {1: one, true: "yes", null: nothing}
        spec:
          selector: {matchLabels: {app: web}}
          portLevelMtls:
            80: {mode: STRICT}
        """
    )
    assert result.ok, messages(result)
    (resource,) = result.resources
    assert resource.metadata.creation_timestamp == "2024-05-01T10:00:00Z"
    assert dict(resource.metadata.labels) == {"1": "one", "true": "yes", "null": "nothing"}
    assert set(resource.spec.port_level_mtls) == {80}


def test_anchors_aliases_and_merge_keys():
    result = load(
        """\
        apiVersion: security.istio.io/v1
        kind: PeerAuthentication
        metadata:
          name: merged
          namespace: shop
          labels: &common {team: a, tier: web}
          annotations:
            <<: *common
            tier: overridden
        spec:
          selector:
            matchLabels: *common
        """
    )
    assert result.ok, messages(result)
    (resource,) = result.resources
    assert dict(resource.metadata.annotations) == {"team": "a", "tier": "overridden"}
    assert dict(resource.spec.selector.match_labels) == {"team": "a", "tier": "web"}


def test_merge_of_a_list_prefers_earlier_maps_and_explicit_keys():
    result = load(
        """\
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: m}
        data:
          a: &a {x: "1", y: "1"}
          b: &b {y: "2", z: "2"}
          c:
            <<: [*a, *b]
            z: "3"
        """
    )
    assert result.ok, messages(result)


@pytest.mark.parametrize(
    ("text", "message", "line", "column"),
    [
        ("a: 1\nb: 2\na: 3\n", "duplicate key 'a'", 3, 1),
        ("x: &m {a: 1}\ny:\n  <<: *m\n  a: 2\n  a: 3\n", "duplicate key 'a'", 5, 3),
        ("a: !!binary aGVsbG8=\n", "unsupported YAML tag 'tag:yaml.org,2002:binary'", 1, 4),
        ("a: !custom x\n", "unsupported YAML tag '!custom'", 1, 4),
        ("a: *nowhere\n", "unknown alias *nowhere", 1, 4),
        ("a: [1, 2\n", "YAML syntax error", 2, 1),
        ("a: b: c\n", "YAML syntax error", 1, 5),
        ("a:\n\t- b\n", "YAML syntax error", 2, 1),
        ("x: {<<: 5}\n", "a merge key (<<) needs a map or a list of maps", 1, 9),
        ("? [a]\n: b\n", "a map key must be a plain value, not a list or map", 1, 3),
    ],
)
def test_yaml_problems_are_diagnostics_with_positions(text, message, line, column):
    (diagnostic,) = load_text(text, source="bad.yaml").diagnostics
    assert diagnostic.is_error
    assert message in diagnostic.message
    assert (diagnostic.position.source, diagnostic.position.line, diagnostic.position.column) == (
        "bad.yaml",
        line,
        column,
    )


def test_documents_before_a_syntax_error_are_kept():
    text = pa("first") + "---\n" + pa("second") + "---\nspec: [unclosed\n---\n" + pa("never")
    result = load_text(text, source="in.yaml")
    assert [r.name for r in result.resources] == ["first", "second"]
    (error,) = result.errors
    assert error.message.startswith("YAML syntax error")
    assert error.position.line == 20


def test_ipv6_addresses_that_end_in_a_colon_inside_flow_lists():
    # libyaml refuses "2001:db8::]"; Kubernetes (go-yaml) reads the colon as part of the scalar.
    result = load(
        """\
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: v6}
        data: {a: [1.2.3.4, 2001:db8::, fe80::], b: [x::]}
        extra: {c: !!binary bad}
        """
    )
    (error,) = result.diagnostics
    assert error.position == Position("in.yaml", 5, 12)  # columns as written, before any quoting


def test_yaml_1_1_scalars_resolve_as_kubernetes_reads_them():
    result = load(
        """\
        apiVersion: security.istio.io/v1
        kind: PeerAuthentication
        metadata: {name: scalars, namespace: shop, labels: {a: "yes", b: "0x1F"}}
        spec:
          mtls: {mode: yes}
        """
    )
    (error,) = result.diagnostics
    assert error.message == 'in body must be of type string: "boolean"'


def test_byte_order_marks_and_utf16():
    text = pa("bom")
    assert load_text("\ufeff" + text).ok
    assert load_text(b"\xef\xbb\xbf" + text.encode()).ok
    assert [r.name for r in load_text(("\ufeff" + text).encode("utf-16-le")).resources] == ["bom"]


def test_long_scalar_values_are_shortened_in_messages():
    (error,) = load_text("a: " + "9" * 5000 + "\n").diagnostics
    assert "too long" in error.message
    assert len(error.message) < 200
