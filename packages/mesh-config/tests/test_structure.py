"""The schema layer, on a kind made for the test: types, protobuf JSON, unknown fields, paths and positions."""

# ruff: noqa: RUF009  (API message fields are declared with the typed field helpers, as in the kinds)

import contextlib
import enum

import attrs
import pytest

from mesh_config import Duration, FrozenDict, KindSpec, ValidationContext, kinds, load_object, load_text, register_kind
from mesh_config.types import (
    Int32,
    Int64,
    JsonObject,
    JsonValue,
    UInt32,
    UInt64,
    boolean,
    enum_value,
    integer,
    mapping,
    number,
    optional,
    repeated,
    string,
)


class Mode(enum.Enum):
    UNSET = "UNSET"
    FAST = "FAST"
    SAFE = "SAFE"


@attrs.frozen
class Destination:
    host: str = string(required=True)
    port: UInt32 | None = optional()


@attrs.frozen
class Route:
    destination: Destination | None = optional()
    weight: Int32 = integer()


@attrs.frozen
class Http:
    name: str = string()
    route: tuple[Route, ...] = repeated()
    timeout: Duration | None = optional()
    redirect: str = string(oneof="action")
    direct_response: str = string(oneof="action")


@attrs.frozen
class Spec:
    hosts: tuple[str, ...] = repeated()
    http: tuple[Http, ...] = repeated()
    mode: Mode = enum_value(Mode.UNSET)
    count: Int64 = integer()
    big: UInt64 = integer()
    ratio: float = number()
    enabled: bool = boolean()
    ports: FrozenDict[UInt32, str] = mapping()
    labels: FrozenDict[str, str] = mapping()
    extra: JsonValue | None = optional()
    config: JsonObject | None = optional()
    from_: str = string()
    consecutive_5xx_errors: UInt32 | None = optional()


def validate(spec, ctx: ValidationContext):
    for h, http in enumerate(spec.http):
        total = sum(route.weight for route in http.route)
        for r, route in enumerate(http.route):
            if route.weight < 0:
                ctx.at("http", h, "route", r).error("weight must not be negative", "weight")
        if len(http.route) > 1 and total != 100:
            ctx.at("http", h).error(f"weights add up to {total}, not 100", "route")
    if spec.count == 13:
        ctx.warning("13 is unlucky", "count")


SPEC = KindSpec(
    kind="TestRoute",
    group="test.mesh.example",
    versions=("v1", "v1beta1"),
    spec_type=Spec,
    validate=validate,
    plural="testroutes",
)


@contextlib.contextmanager
def registered(spec):
    """Register a kind for the test only (the registry is global)."""
    key = (spec.group, spec.kind)
    before = kinds._KINDS.get(key)
    register_kind(spec)
    try:
        yield spec
    finally:
        if before is None:
            kinds._KINDS.pop(key, None)
        else:
            kinds._KINDS[key] = before


@pytest.fixture(autouse=True, scope="module")
def test_kind():
    with registered(SPEC):
        yield


HEAD = "apiVersion: test.mesh.example/v1\nkind: TestRoute\nmetadata:\n  name: r\n  namespace: shop\nspec:\n"


def load(spec_yaml, **options):
    return load_text(HEAD + spec_yaml, source="t.yaml", **options)


def test_a_full_object_converts_to_typed_values():
    result = load(
        """\
  hosts: [a.example.com]
  http:
  - name: main
    timeout: 1.5s
    route:
    - destination: {host: a, port: 8080}
      weight: 90
    - destination: {host: b}
      weight: "10"
  mode: SAFE
  count: "-9223372036854775808"
  big: "18446744073709551615"
  ratio: "2.5"
  enabled: true
  ports: {"80": http, "443": https}
  labels: {app: web}
  extra: [1, {a: [true, null]}]
  config: {k: v}
  from: somewhere
  consecutive5xxErrors: 0
"""
    )
    assert result.ok, [d.format() for d in result.diagnostics]
    (resource,) = result.resources
    spec = resource.spec
    assert spec.http[0].timeout == Duration.parse("1500ms") == Duration(1_500_000_000)
    assert [route.weight for route in spec.http[0].route] == [90, 10]
    assert spec.http[0].route[0].destination == Destination(host="a", port=8080)
    assert spec.mode is Mode.SAFE
    assert (spec.count, spec.big, spec.ratio, spec.enabled) == (-(2**63), 2**64 - 1, 2.5, True)
    assert dict(spec.ports) == {80: "http", 443: "https"}
    assert spec.extra == (1, FrozenDict({"a": (True, None)}))
    assert spec.config == {"k": "v"}
    assert spec.from_ == "somewhere"
    assert spec.consecutive_5xx_errors == 0  # a wrapper set to zero is not unset
    assert resource.key.kind == "TestRoute"


@pytest.mark.parametrize(
    ("text", "nanos"),
    [("1.5s", 1_500_000_000), ("100ms", 100_000_000), ("1h30m", 5_400 * 10**9), ("2m", 120 * 10**9), ("1us", 1_000)],
)
def test_durations_in_go_syntax(text, nanos):
    result = load(f"  http:\n  - timeout: {text}\n")
    assert result.ok
    assert result.resources[0].spec.http[0].timeout.nanos == nanos


def test_deep_paths_name_the_field_as_written():
    result = load(
        """\
  http:
  - route:
    - destination: {host: a}
      weight: 50
    - destination: {host: b}
      weight: -50
"""
    )
    (first, second) = result.diagnostics
    assert first.field == "spec.http[0].route[1].weight"
    assert first.format() == (
        "t.yaml:12:7: error: TestRoute shop/r: spec.http[0].route[1].weight: weight must not be negative"
    )
    assert second.format() == "t.yaml:8:5: error: TestRoute shop/r: spec.http[0].route: weights add up to 0, not 100"


def test_every_problem_of_a_document_is_reported_at_once():
    result = load(
        """\
  hosts: example.com
  http:
  - route:
    - destination: {port: 5000000000}
      weigth: 10
    timeout: soon
    redirect: /a
    directResponse: gone
  mode: TURBO
  count: 1.5
  big: -1
  ratio: fast
  enabled: "yes"
  ports: {http: x}
  labels: {app: 7}
  config: [1]
  unknownField: 1
"""
    )
    assert not result.resources
    found = {(d.field, d.message) for d in result.diagnostics}
    (timeout,) = [message for field, message in found if field == "spec.http[0].timeout"]
    assert "'soon'" in timeout
    assert found - {("spec.http[0].timeout", timeout)} == {
        ("spec.hosts", 'in body must be of type array: "string"'),
        ("spec.http[0].route[0].destination.port", "in body should be less than or equal to 4294967295"),
        ("spec.http[0].route[0].destination.host", "Required value"),
        ("spec.http[0].route[0].weigth", 'unknown field "weigth"; did you mean "weight"?'),
        ("spec.http[0].directResponse", "only one of 'redirect' and 'directResponse' may be set"),
        ("spec.mode", 'Unsupported value: "TURBO": supported values: "UNSET", "FAST", "SAFE"'),
        ("spec.count", 'in body must be of type integer: "number"'),
        ("spec.big", "in body should be greater than or equal to 0"),
        ("spec.ratio", 'in body must be of type number: "string"'),
        ("spec.enabled", 'in body must be of type boolean: "string"'),
        ("spec.ports.http", "type conversion error from 'http' to uint32"),
        ("spec.labels.app", 'in body must be of type string: "integer"'),
        ("spec.config", 'in body must be of type object: "array"'),
        ("spec.unknownField", 'unknown field "unknownField"'),
    }
    for diagnostic in result.diagnostics:
        assert diagnostic.position.source == "t.yaml"
        assert diagnostic.position.line > 6
        assert (diagnostic.kind, diagnostic.namespace, diagnostic.name) == ("TestRoute", "shop", "r")


def test_unknown_fields_are_errors_at_every_level():
    result = load_text(
        HEAD.replace("metadata:\n", "extra: 1\nmetadata:\n  nickname: x\n") + "  http:\n  - nmae: x\n",
        source="t.yaml",
    )
    assert sorted(d.field for d in result.errors) == ["extra", "metadata.nickname", "spec.http[0].nmae"]
    assert 'did you mean "name"?' in next(d.message for d in result.errors if d.field == "spec.http[0].nmae")


def test_null_leaves_metadata_fields_unset_but_not_spec_fields():
    result = load_text(HEAD.replace("  namespace: shop\n", "  namespace: shop\n  labels: null\n") + "  hosts: null\n")
    (error,) = result.diagnostics
    assert error.field == "spec.hosts"
    assert error.message == 'in body must be of type array: "null"'


def test_protobuf_json_integers_as_strings_and_floats_as_integers():
    result = load('  count: "42"\n  big: 7.0\n  ratio: 3\n  ports: {" 8080 ": a}\n')
    assert result.ok, [d.format() for d in result.diagnostics]
    spec = result.resources[0].spec
    assert (spec.count, spec.big, spec.ratio, dict(spec.ports)) == (42, 7, 3.0, {8080: "a"})


def test_warnings_do_not_reject():
    result = load("  count: 13\n")
    assert result.ok
    assert [d.format() for d in result.warnings] == ["t.yaml:7:3: warning: TestRoute shop/r: spec.count: 13 is unlucky"]
    assert len(result.resources) == 1


def test_served_versions_and_unknown_kinds():
    assert load_text(HEAD.replace("/v1\n", "/v1beta1\n") + "  count: 1\n").ok
    (error,) = load_text(HEAD.replace("/v1\n", "/v2\n") + "  count: 1\n").diagnostics
    assert error.message == "TestRoute is not served in 'test.mesh.example/v2' (versions served: v1, v1beta1)"
    assert error.field == "apiVersion"


def test_load_object_takes_python_data_as_kubernetes_would_see_it():
    data = {
        "apiVersion": "test.mesh.example/v1",
        "kind": "TestRoute",
        "metadata": {"name": "py", "namespace": "shop"},
        "spec": {
            "ports": {80: "http"},
            "hosts": ("a", "b"),
            "extra": {"when": __import__("datetime").date(2024, 1, 2)},
        },
    }
    result = load_object(data)
    assert result.ok, [d.format() for d in result.diagnostics]
    assert result.resource.spec.hosts == ("a", "b")
    assert result.resource.spec.extra == {"when": "2024-01-02"}
    assert dict(result.resource.spec.ports) == {80: "http"}


def test_load_object_reports_values_with_no_json_form():
    data = {"apiVersion": "test.mesh.example/v1", "kind": "TestRoute", "metadata": {"name": "py"}}
    result = load_object({**data, "spec": {"extra": {b"k": 1, "v": {1, 2}}}}, source="py")
    assert sorted((d.field, d.message) for d in result.diagnostics) == [
        ("spec.extra", "map key b'k' is not a string or number"),
        ("spec.extra.v", "a value of type set has no JSON form"),
    ]
    assert (result.kind, result.name) == ("TestRoute", "py")


def test_load_object_bounds_nesting_of_python_data():
    deep: list = []
    for _ in range(5000):
        deep = [deep]
    data = {
        "apiVersion": "test.mesh.example/v1",
        "kind": "TestRoute",
        "metadata": {"name": "d"},
        "spec": {"extra": deep},
    }
    (error,) = load_object(data).diagnostics
    assert error.message == "nesting is too deep"


def test_a_rule_that_raises_is_reported_not_raised(caplog):
    def broken(spec, ctx):
        raise ZeroDivisionError("boom")

    with registered(attrs.evolve(SPEC, validate=broken)):
        result = load("  count: 1\n")
    (error,) = result.diagnostics
    assert "internal error while validating: ZeroDivisionError" in error.message
    assert error.kind == "TestRoute"
    assert "validating a TestRoute raised" in caplog.text
