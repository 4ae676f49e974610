"""Telemetry: the typed spec, its served versions and its rules (CRD and webhook)."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

import mesh_config
from mesh_config.extensions.telemetry import IstioMetric, TagOperation, Telemetry, TelemetryWorkloadMode

FULL = {
    "selector": {"matchLabels": {"app": "reviews"}},
    "tracing": [
        {
            "match": {"mode": "CLIENT"},
            "providers": [{"name": "otel"}],
            "randomSamplingPercentage": 54.5,
            "disableSpanReporting": False,
            "customTags": {
                "env": {"environment": {"name": "NAME", "defaultValue": "none"}},
                "hdr": {"header": {"name": "x-user", "defaultValue": "anonymous"}},
                "lit": {"literal": {"value": "fixed"}},
                "fmt": {"formatter": {"value": "%REQ(:path)%"}},
            },
            "useRequestIdForTraceSampling": True,
            "enableIstioTags": True,
            "disableContextPropagation": False,
        }
    ],
    "metrics": [
        {
            "providers": [{"name": "prometheus"}],
            "reportingInterval": "15s",
            "overrides": [
                {
                    "match": {"metric": "REQUEST_COUNT", "mode": "SERVER"},
                    "disabled": False,
                    "tagOverrides": {"request_host": {"value": "request.host"}, "x": {"operation": "REMOVE"}},
                },
                {"match": {"customMetric": "my_metric"}, "disabled": True},
            ],
        }
    ],
    "accessLogging": [
        {
            "match": {"mode": "CLIENT_AND_SERVER"},
            "providers": [{"name": "envoy"}],
            "disabled": False,
            "filter": {"expression": "response.code >= 400 || request.headers['x-debug'] == 'true'"},
        }
    ],
}


def load(spec, *, version="v1"):
    text = (
        f"apiVersion: telemetry.istio.io/{version}\nkind: Telemetry\nmetadata: {{name: t, namespace: ns}}\n"
        f"spec: {json.dumps(spec)}\n"
    )
    return mesh_config.load_text(text)


def errors(result, field):
    return [d.message for d in result.errors if d.field == field]


def warnings(result, field):
    return [d.message for d in result.warnings if d.field == field]


@pytest.mark.parametrize("version", ["v1", "v1alpha1"])
def test_a_full_telemetry_is_accepted_in_every_served_version(version):
    result = load(FULL, version=version)
    assert result.ok, [d.format() for d in result.diagnostics]
    assert not result.diagnostics
    assert result.resources[0].api_version == f"telemetry.istio.io/{version}"


def test_the_storage_version_comes_first():
    assert mesh_config.kind_for("telemetry.istio.io/v1", "Telemetry").api_versions == (
        "telemetry.istio.io/v1",
        "telemetry.istio.io/v1alpha1",
    )
    assert mesh_config.kind_for("telemetry.istio.io/v1beta1", "Telemetry") is None


def test_a_full_telemetry_is_typed():
    spec = load(FULL).resources[0].spec
    assert isinstance(spec, Telemetry)
    tracing = spec.tracing[0]
    assert tracing.match.mode is TelemetryWorkloadMode.CLIENT
    assert tracing.random_sampling_percentage == 54.5
    assert tracing.custom_tags["hdr"].header.default_value == "anonymous"
    override = spec.metrics[0].overrides[0]
    assert override.match.metric is IstioMetric.REQUEST_COUNT
    assert override.tag_overrides["x"].operation is TagOperation.REMOVE
    assert spec.metrics[0].reporting_interval == mesh_config.Duration.of(seconds=15)
    assert spec.access_logging[0].filter.expression.startswith("response.code")


def test_a_full_telemetry_round_trips():
    resource = load(FULL).resources[0]
    assert mesh_config.load_text(mesh_config.to_yaml(resource)).resources == (resource,)


@pytest.mark.parametrize("section", ["tracing", "metrics", "accessLogging"])
def test_provider_names_are_not_empty(section):
    result = load({section: [{"providers": [{"name": ""}]}]})
    assert errors(result, f"spec.{section}[0].providers[0].name") == ["in body should be at least 1 chars long"]
    assert errors(load({section: [{"providers": [{}]}]}), f"spec.{section}[0].providers[0].name") == ["Required value"]


def test_more_than_one_tracing_or_provider_warns():
    result = load({"tracing": [{"providers": [{"name": "a"}, {"name": "b"}]}, {}]})
    assert result.ok
    assert warnings(result, "spec.tracing") == ["multiple tracing is not currently supported (2 given)"]
    assert warnings(result, "spec.tracing[0].providers") == ["multiple providers is not currently supported ('a', 'b')"]


@given(st.floats(min_value=-1000, max_value=1000, allow_nan=False))
def test_sampling_percentage_is_0_to_100(percentage):
    result = load({"tracing": [{"randomSamplingPercentage": percentage}]})
    assert result.ok == (0 <= percentage <= 100)


def test_sampling_percentage_messages():
    field = "spec.tracing[0].randomSamplingPercentage"
    assert errors(load({"tracing": [{"randomSamplingPercentage": 100.5}]}), field) == [
        "in body should be less than or equal to 100"
    ]
    assert errors(load({"tracing": [{"randomSamplingPercentage": -1}]}), field) == [
        "in body should be greater than or equal to 0"
    ]


@pytest.mark.parametrize(
    ("tag", "field", "message"),
    [
        ({"literal": {"value": ""}}, "literal.value", "in body should be at least 1 chars long"),
        ({"literal": {}}, "literal.value", "Required value"),
        ({"environment": {"name": ""}}, "environment.name", "in body should be at least 1 chars long"),
        ({"header": {"defaultValue": "x"}}, "header.name", "Required value"),
        ({"formatter": {"value": ""}}, "formatter.value", "in body should be at least 1 chars long"),
    ],
)
def test_custom_tag_values(tag, field, message):
    result = load({"tracing": [{"customTags": {"t": tag}}]})
    assert errors(result, f"spec.tracing[0].customTags.t.{field}") == [message]


def test_a_custom_tag_has_one_source_and_a_name():
    both = {"literal": {"value": "a"}, "header": {"name": "b"}}
    assert not load({"tracing": [{"customTags": {"t": both}}]}).ok
    result = load({"tracing": [{"customTags": {"": {"literal": {"value": "a"}}}}]})
    assert errors(result, "spec.tracing[0].customTags") == ["tag name may not be empty"]


def overrides(*entries):
    return load({"metrics": [{"overrides": list(entries)}]})


def test_tag_override_upsert_needs_a_value():
    field = "spec.metrics[0].overrides[0].tagOverrides.foo"
    explicit = overrides({"tagOverrides": {"foo": {"operation": "UPSERT"}}})
    assert errors(explicit, field) == ['Invalid value: "object": value must be set when operation is UPSERT']
    # UPSERT is the default operation: the webhook refuses an override with neither operation nor value.
    implicit = overrides({"tagOverrides": {"foo": {}}})
    assert errors(implicit, field) == ["tagOverrides.value must be set when operation is UPSERT (tag 'foo')"]
    assert overrides({"tagOverrides": {"foo": {"value": "request.host"}}}).ok


def test_tag_override_remove_takes_no_value():
    field = "spec.metrics[0].overrides[0].tagOverrides.foo"
    message = 'Invalid value: "object": value must not be set when operation is REMOVE'
    assert errors(overrides({"tagOverrides": {"foo": {"operation": "REMOVE", "value": "x"}}}), field) == [message]
    assert errors(overrides({"tagOverrides": {"foo": {"operation": "REMOVE", "value": ""}}}), field) == [message]
    assert overrides({"tagOverrides": {"foo": {"operation": "REMOVE"}}}).ok


def test_an_empty_tag_override_name_warns():
    result = overrides({"tagOverrides": {"": {"value": "x"}}})
    assert result.ok
    assert [d.message for d in result.warnings] == ["tagOverrides.name may not be empty"]


def test_metric_selector_is_a_metric_or_a_custom_metric():
    field = "spec.metrics[0].overrides[0].match.customMetric"
    assert errors(overrides({"match": {"customMetric": ""}}), field) == ["in body should be at least 1 chars long"]
    assert not overrides({"match": {"metric": "REQUEST_SIZE", "customMetric": "x"}}).ok


@given(st.integers(min_value=0, max_value=5_000_000))
def test_reporting_interval_is_at_least_1ms(nanos):
    result = load({"metrics": [{"reportingInterval": f"{nanos}ns"}]})
    assert result.ok == (nanos >= 1_000_000)
    if nanos < 1_000_000:
        assert errors(result, "spec.metrics[0].reportingInterval") == [
            'Invalid value: "string": must be a valid duration greater than 1ms'
        ]


@pytest.mark.parametrize(
    "expression",
    [
        "true",
        "response.code >= 400",
        "request.headers['x-user'] != '' && !(response.code in [200, 204])",
        "has(request.headers.foo) ? size(request.url_path) > 10u : false",
        "xds.cluster_name.startsWith('outbound') || connection.mtls",
        "response.flags.exists(f, f == 'UH')",
        "1.5e3 > double(response.duration) // a comment",
    ],
)
def test_access_log_filters_that_parse_as_cel_are_accepted(expression):
    assert load({"accessLogging": [{"filter": {"expression": expression}}]}).ok


@pytest.mark.parametrize(
    "expression",
    ["", "response.code >=", "response.code = 400", "has(response)", "x.all(a.b, true)", "'open", "(a", "if"],
)
def test_access_log_filters_must_parse_as_cel(expression):
    result = load({"accessLogging": [{"filter": {"expression": expression}}]})
    [message] = errors(result, "spec.accessLogging[0].filter.expression")
    assert message.startswith("must be a valid CEL expression, ")
    assert repr(expression) in message


def test_selector_and_target_refs_are_exclusive():
    ref = {"kind": "Service", "name": "reviews"}
    result = load({"selector": {"matchLabels": {"a": "b"}}, "targetRef": ref})
    assert errors(result, "spec") == ['Invalid value: "object": only one of targetRefs or selector can be set']
    assert load({"targetRefs": [ref]}).ok


def test_target_refs_are_checked():
    field = "spec.targetRefs[0].namespace"
    result = load({"targetRefs": [{"kind": "Service", "name": "reviews", "namespace": "other"}]})
    assert errors(result, field) == ['Invalid value: "string": cross namespace referencing is not currently supported']
    assert not load({"targetRef": {"kind": "Pod", "name": "p"}}).ok
