"""ProxyConfig: the typed spec, its served version and its rules (CRD and webhook)."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

import mesh_config
from mesh_config.common import WorkloadSelector
from mesh_config.networking.proxy_config import ProxyConfig, ProxyImage


def load(spec, *, version="v1beta1"):
    text = (
        f"apiVersion: networking.istio.io/{version}\nkind: ProxyConfig\nmetadata: {{name: pc, namespace: ns}}\n"
        f"spec: {json.dumps(spec)}\n"
    )
    return mesh_config.load_text(text)


def errors(result, field):
    return [d.message for d in result.errors if d.field == field]


FULL = {
    "selector": {"matchLabels": {"app": "ratings"}},
    "concurrency": 4,
    "environmentVariables": {"ISTIO_META_DNS_CAPTURE": "true"},
    "image": {"imageType": "distroless"},
}


def test_a_full_proxy_config_is_typed():
    result = load(FULL)
    assert result.ok, [d.format() for d in result.diagnostics]
    assert not result.diagnostics
    assert result.resources[0].spec == ProxyConfig(
        selector=WorkloadSelector(match_labels=mesh_config.FrozenDict({"app": "ratings"})),
        concurrency=4,
        environment_variables=mesh_config.FrozenDict({"ISTIO_META_DNS_CAPTURE": "true"}),
        image=ProxyImage(image_type="distroless"),
    )


def test_a_full_proxy_config_round_trips():
    resource = load(FULL).resources[0]
    again = mesh_config.load_text(mesh_config.to_yaml(resource))
    assert again.resources == (resource,)


def test_an_unset_concurrency_differs_from_zero():
    assert load({}).resources[0].spec.concurrency is None
    assert load({"concurrency": 0}).resources[0].spec.concurrency == 0


def test_only_v1beta1_is_served():
    assert load(FULL).ok
    for version in ("v1", "v1alpha3"):
        result = load(FULL, version=version)
        assert not result.ok
        assert not result.resources
        assert "ProxyConfig" in result.errors[0].message


def test_negative_concurrency_is_refused_with_the_crd_wording():
    result = load({"concurrency": -1})
    assert errors(result, "spec.concurrency") == ["in body should be greater than or equal to 0"]
    assert "spec.concurrency in body should be greater than or equal to 0" in result.errors[0].format()


@given(st.integers(min_value=-(2**31), max_value=2**31 - 1))
def test_concurrency_is_accepted_exactly_when_not_negative(concurrency):
    assert load({"concurrency": concurrency}).ok == (concurrency >= 0)


@pytest.mark.parametrize("concurrency", [2**31, "many", 1.5])
def test_concurrency_must_be_an_int32(concurrency):
    assert errors(load({"concurrency": concurrency}), "spec.concurrency")


def test_environment_values_are_limited_to_2048_characters():
    assert load({"environmentVariables": {"A": "x" * 2048}}).ok
    result = load({"environmentVariables": {"A": "x" * 2049}})
    assert errors(result, "spec.environmentVariables.A") == ["in body may not be longer than 2048"]


@pytest.mark.parametrize(
    ("labels", "field", "message"),
    [
        ({"": "bar"}, "spec.selector.matchLabels", 'Invalid value: "object": key must not be empty'),
        (
            {"app*": "bar"},
            "spec.selector.matchLabels",
            'Invalid value: "object": wildcard not allowed in label key match',
        ),
        (
            {"app": "ba*"},
            "spec.selector.matchLabels.app",
            'Invalid value: "string": wildcard not allowed in label value match',
        ),
        ({"app": "x" * 64}, "spec.selector.matchLabels.app", "in body may not be longer than 63"),
    ],
)
def test_selector_rules(labels, field, message):
    assert errors(load({"selector": {"matchLabels": labels}}), field) == [message]


def test_a_selector_without_labels_is_accepted_with_a_warning():
    result = load({"selector": {"matchLabels": {}}})
    assert result.ok
    assert [d.field for d in result.warnings] == ["spec.selector"]


def test_unknown_fields_are_refused():
    result = load({"concurrency": 1, "concurency": 2})
    assert errors(result, "spec.concurency") == ['unknown field "concurency"; did you mean "concurrency"?']
