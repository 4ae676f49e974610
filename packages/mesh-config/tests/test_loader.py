"""Loading texts, files and trees: Kubernetes documents, namespaces, skipped and refused kinds, results."""

import io
import textwrap

import pytest

from mesh_config import (
    ConfigError,
    InvalidConfigError,
    LoadResult,
    Position,
    Severity,
    load_file,
    load_paths,
    load_text,
)

PA = """\
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: {name}
{namespace}spec:
  selector:
    matchLabels:
      app: {name}
  mtls:
    mode: STRICT
  portLevelMtls:
    "8080":
      mode: {mode}
"""


def pa(name="web", *, namespace="shop", mode="DISABLE"):
    ns = f"  namespace: {namespace}\n" if namespace else ""
    return PA.format(name=name, namespace=ns, mode=mode)


DEPLOYMENT = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 1\n"


def test_a_kubernetes_document_becomes_a_typed_resource():
    (resource,) = load_text(pa()).raise_for_errors().resources
    assert (resource.api_version, resource.group, resource.version) == (
        "security.istio.io/v1",
        "security.istio.io",
        "v1",
    )
    assert (resource.kind, resource.namespace, resource.name) == ("PeerAuthentication", "shop", "web")
    assert dict(resource.spec.selector.match_labels) == {"app": "web"}
    assert resource.spec.mtls.mode.value == "STRICT"
    assert resource.spec.port_level_mtls[8080].mode.value == "DISABLE"
    assert str(resource.key) == "PeerAuthentication shop/web"


def test_default_namespace_applies_only_to_objects_without_one():
    text = pa("a", namespace="") + "---\n" + pa("b", namespace="other")
    assert [r.namespace for r in load_text(text).resources] == ["", "other"]
    assert [r.namespace for r in load_text(text, default_namespace="default").resources] == ["default", "other"]


def test_other_kinds_are_skipped_and_unknown_istio_kinds_refused():
    text = DEPLOYMENT + "---\napiVersion: networking.istio.io/v1\nkind: Frobnicator\nmetadata:\n  name: f\n"
    text += "  namespace: shop\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\n"
    result = load_text(text, source="mixed.yaml")
    assert result.skipped == (("mixed.yaml", "Deployment"), ("mixed.yaml", "HTTPRoute"))
    (error,) = result.diagnostics
    assert error.format() == (
        "mixed.yaml:9:1: error: Frobnicator shop/f: kind: unknown kind 'Frobnicator' in 'networking.istio.io/v1'"
    )
    assert [(d.kind, d.skipped, d.ok) for d in result.documents] == [
        ("Deployment", True, True),
        ("Frobnicator", False, False),
        ("HTTPRoute", True, True),
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("just a string\n", [("", "a config document must be a map with apiVersion and kind")]),
        ("- a\n", [("", "a config document must be a map with apiVersion and kind")]),
        ("kind: X\nmetadata: {name: n}\n", [("apiVersion", "apiVersion is missing or not a string")]),
        (
            "apiVersion: 1\nkind: [a]\n",
            [("apiVersion", "apiVersion is missing or not a string"), ("kind", "kind is missing or not a string")],
        ),
        (
            "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: x}\nspec: {}\nstatus2: {}\n",
            [("status2", 'unknown field "status2"')],
        ),
    ],
)
def test_malformed_documents(text, expected):
    result = load_text(text, source="m.yaml")
    assert [(d.field, d.message) for d in result.diagnostics] == expected
    assert all(d.position.line >= 1 for d in result.diagnostics)


def test_every_diagnostic_carries_file_position_object_and_field():
    text = pa("ok") + "---\n" + pa("bad", mode="NOISY").replace("  mtls:", "  mtlz:")
    result = load_text(text, source="policies.yaml")
    assert [d.format() for d in result.errors] == [
        'policies.yaml:25:3: error: PeerAuthentication shop/bad: spec.mtlz: unknown field "mtlz"; did you mean "mtls"?',
        "policies.yaml:29:7: error: PeerAuthentication shop/bad: spec.portLevelMtls.8080.mode: "
        'Unsupported value: "NOISY": supported values: "UNSET", "DISABLE", "PERMISSIVE", "STRICT"',
    ]
    first = result.errors[0]
    assert (first.kind, first.namespace, first.name, first.path) == (
        "PeerAuthentication",
        "shop",
        "bad",
        ("spec", "mtlz"),
    )
    assert [r.name for r in result.resources] == ["ok"]


def test_metadata_rules_apply_to_every_kind():
    text = pa("Bad_Name", namespace="Not.A.Label").replace("metadata:\n", "metadata:\n  labels: {'-x': y}\n")
    result = load_text(text)
    assert sorted(d.field for d in result.errors) == ["metadata.labels.-x", "metadata.name", "metadata.namespace"]


def test_documents_know_their_source_index_and_start():
    result = load_text("# header\n" + pa("a") + "---\n" + DEPLOYMENT, source="f.yaml")
    (first, second) = result.documents
    assert (first.source, first.index, first.position) == ("f.yaml", 0, Position("f.yaml", 2, 1))
    assert (first.kind, first.api_version, first.namespace, first.name) == (
        "PeerAuthentication",
        "security.istio.io/v1",
        "shop",
        "a",
    )
    assert (second.index, second.skipped, second.resource, second.name) == (1, True, None, "web")


def test_result_helpers():
    warning_text = (
        pa("w")
        .replace("    matchLabels:\n      app: w\n", "    matchLabels: {}\n")
        .replace('  portLevelMtls:\n    "8080":\n      mode: DISABLE\n', "")
    )
    result = load_text(warning_text) + load_text(pa("e", mode="X"))
    assert isinstance(result, LoadResult)
    assert not result.ok
    assert [d.severity for d in result.diagnostics] == [Severity.WARNING, Severity.ERROR]
    assert len(result.warnings) == len(result.errors) == 1
    assert len(result.documents) == 2
    with pytest.raises(InvalidConfigError) as raised:
        result.raise_for_errors()
    assert isinstance(raised.value, ConfigError)
    assert isinstance(raised.value, ValueError)
    assert raised.value.diagnostics == result.diagnostics
    assert str(raised.value) == result.errors[0].format()
    assert load_text(warning_text).raise_for_errors().ok


def test_load_file_and_trees(tmp_path):
    (tmp_path / "a.yaml").write_text(pa("a"))
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.yml").write_text(pa("b"))
    (tmp_path / "sub" / "c.json").write_text(
        '{"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication", "metadata": {"name": "c"}}'
    )
    (tmp_path / "sub" / "notes.txt").write_text("not config")
    (tmp_path / ".hidden.yaml").write_text("broken: [")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "x.yaml").write_text("broken: [")
    result = load_paths([tmp_path], default_namespace="default")
    assert result.ok, [d.format() for d in result.diagnostics]
    assert [(r.namespace, r.name) for r in result.resources] == [("shop", "a"), ("shop", "b"), ("default", "c")]
    assert [d.source for d in result.documents] == [
        str(tmp_path / "a.yaml"),
        str(tmp_path / "sub" / "b.yml"),
        str(tmp_path / "sub" / "c.json"),
    ]
    assert [r.name for r in load_file(tmp_path / "sub" / "b.yml").resources] == ["b"]
    # A file named explicitly is read whatever its suffix.
    assert (
        load_paths([tmp_path / "sub" / "notes.txt"]).errors[0].message
        == "a config document must be a map with apiVersion and kind"
    )


def test_missing_and_unreadable_paths(tmp_path):
    missing = tmp_path / "nope.yaml"
    (error,) = load_paths([missing]).diagnostics
    assert error.format() == f"{missing}: error: no such file or directory"
    (error,) = load_file(missing).diagnostics
    assert error.message.startswith("cannot read: ")
    assert "a directory" not in error.message
    (error,) = load_file(tmp_path).diagnostics
    assert error.message in ("not a regular file", "cannot read: Is a directory")


@pytest.mark.parametrize("stream", [io.StringIO(pa("in")), io.TextIOWrapper(io.BytesIO(pa("in").encode()))])
def test_standard_input(stream):
    result = load_paths(["-"], stdin=stream)
    assert [(r.name, d.source) for r, d in zip(result.resources, result.documents, strict=True)] == [("in", "-")]


def test_standard_input_with_invalid_utf8_is_a_diagnostic():
    stream = io.TextIOWrapper(io.BytesIO(b"apiVersion: v1\nkind: \xff\n"))
    (error,) = load_paths(["-"], stdin=stream).diagnostics
    assert error.format() == "-:2:7: error: input is not UTF-8 text (byte 21 is invalid)"


def test_text_and_bytes_load_the_same():
    text = textwrap.dedent(pa("same"))
    assert load_text(text) == load_text(text.encode("utf-8"))
