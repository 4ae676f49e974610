"""EnvoyFilter: what a patch needs, the rules of WAYPOINT patches, and the checks on patch values."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

import mesh_config

INTERNALS = "EnvoyFilter exposes internal implementation details"
HCM = "envoy.filters.network.http_connection_manager"
PATCH = "spec.configPatches[0]"
HCM_TYPE = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"


def patched(*patches):
    text = (
        "apiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\nmetadata: {name: ef, namespace: ns}\n"
        f"spec: {json.dumps({'configPatches': list(patches)})}\n"
    )
    return mesh_config.load_text(text)


def errors(result, field):
    return [d.message for d in result.errors if d.field == field]


def warnings(result):
    return [(d.field, d.message) for d in result.warnings if INTERNALS not in d.message]


# What a patch needs.


def test_a_patch_needs_apply_to_a_patch_an_operation_and_a_value():
    assert errors(patched({"patch": {"operation": "REMOVE"}}), f"{PATCH}.applyTo") == ["Envoy filter: missing applyTo"]
    assert errors(patched({"applyTo": "INVALID"}), f"{PATCH}.applyTo") == ["Envoy filter: missing applyTo"]
    assert errors(patched({"applyTo": "LISTENER"}), f"{PATCH}.patch") == ["Envoy filter: missing patch"]
    assert errors(patched({"applyTo": "LISTENER", "patch": {}}), f"{PATCH}.patch.operation") == [
        "Envoy filter: missing patch operation"
    ]
    assert errors(patched({"applyTo": "LISTENER", "patch": {"operation": "ADD"}}), f"{PATCH}.patch.value") == [
        "Envoy filter: missing patch value for non-remove operation ADD"
    ]
    assert patched({"applyTo": "LISTENER", "patch": {"operation": "REMOVE"}}).ok


def test_every_patch_is_checked():
    result = patched({"applyTo": "LISTENER"}, {"applyTo": "CLUSTER", "patch": {"operation": "MERGE"}})
    assert [d.field for d in result.errors] == ["spec.configPatches[0].patch", "spec.configPatches[1].patch.value"]


@given(
    st.sampled_from(["LISTENER", "FILTER_CHAIN", "NETWORK_FILTER", "HTTP_FILTER", "ROUTE_CONFIGURATION", "CLUSTER"]),
    st.sampled_from(
        ["MERGE", "ADD", "INSERT_BEFORE", "INSERT_AFTER", "INSERT_FIRST", "REPLACE", "MERGE_AND_REPLACE_LIST"]
    ),
)
def test_every_operation_but_remove_needs_a_value(apply_to, operation):
    assert not patched({"applyTo": apply_to, "patch": {"operation": operation}}).ok
    assert patched({"applyTo": apply_to, "patch": {"operation": operation, "value": {"name": "x"}}}).ok


def test_values_must_be_objects():
    result = patched({"applyTo": "CLUSTER", "patch": {"operation": "ADD", "value": "cluster"}})
    assert errors(result, f"{PATCH}.patch.value") == ['in body must be of type object: "string"']


# WAYPOINT patches.


def waypoint(apply_to, waypoint_match=None):
    match = {"context": "WAYPOINT", "waypoint": waypoint_match if waypoint_match is not None else {}}
    return patched({"applyTo": apply_to, "match": match, "patch": {"operation": "REMOVE"}})


@pytest.mark.parametrize("apply_to", ["LISTENER", "LISTENER_FILTER", "EXTENSION_CONFIG", "BOOTSTRAP"])
def test_some_objects_cannot_be_patched_on_waypoints(apply_to):
    assert errors(waypoint(apply_to), f"{PATCH}.applyTo") == [
        f"Envoy filter: applyTo {apply_to} is not supported for waypoint"
    ]


def test_waypoint_http_filters_need_a_sub_filter_of_the_http_connection_manager():
    assert errors(waypoint("HTTP_FILTER"), f"{PATCH}.match") == [
        "Envoy filter: applyTo HTTP_FILTER for waypoint must have filter match"
    ]
    other = waypoint("HTTP_FILTER", {"filter": {"name": "envoy.filters.network.tcp_proxy"}})
    assert errors(other, f"{PATCH}.match.waypoint.filter.name") == [
        f"Envoy filter: applyTo HTTP_FILTER for waypoint requires name with {HCM}, "
        "not 'envoy.filters.network.tcp_proxy'"
    ]
    assert errors(waypoint("HTTP_FILTER", {"filter": {"name": HCM}}), f"{PATCH}.match.waypoint.filter") == [
        "Envoy filter: applyTo HTTP_FILTER for waypoint must have subfilter name to match on"
    ]
    assert waypoint("HTTP_FILTER", {"filter": {"name": HCM, "subFilter": {"name": "envoy.filters.http.router"}}}).ok


@pytest.mark.parametrize(
    ("apply_to", "match", "field", "kind"),
    [
        ("ROUTE_CONFIGURATION", {"filter": {"name": HCM}}, "filter", "filter"),
        ("HTTP_ROUTE", {"filter": {"name": HCM}}, "filter", "filter"),
        ("CLUSTER", {"filter": {"name": HCM}}, "filter", "filter"),
        ("CLUSTER", {"route": {"name": "default"}}, "route", "route"),
        ("FILTER_CHAIN", {"route": {"name": "default"}}, "route", "route"),
        ("NETWORK_FILTER", {"route": {"name": "default"}}, "route", "route"),
    ],
)
def test_waypoint_matches_must_fit_the_object(apply_to, match, field, kind):
    assert errors(waypoint(apply_to, match), f"{PATCH}.match.waypoint.{field}") == [
        f"Envoy filter: applyTo {apply_to} for waypoint cannot have {kind} match"
    ]


def test_fitting_waypoint_matches_are_accepted():
    assert waypoint("HTTP_ROUTE", {"route": {"name": "default"}, "portNumber": 8080}).ok
    assert waypoint("NETWORK_FILTER", {"filter": {"name": HCM}}).ok
    assert waypoint("CLUSTER").ok


# Patch values: @type names and filters without typed_config.


def value_of(apply_to, value, operation="ADD"):
    return patched({"applyTo": apply_to, "patch": {"operation": operation, "value": value}})


def http_filter(at_type, **config):
    return value_of("HTTP_FILTER", {"name": "f", "typed_config": {"@type": at_type, **config}}, "INSERT_FIRST")


def test_v3_types_are_accepted_silently():
    result = http_filter("type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit", domain="d")
    assert result.ok
    assert warnings(result) == []


@pytest.mark.parametrize(
    "type_url",
    [
        "type.googleapis.com/envoy.config.filter.network.ext_authz.v2.ExtAuthz",
        "type.googleapis.com/envoy.config.filter.http.lua.v2.Lua",
        "type.googleapis.com/envoy.config.filter.http.wasm.v2alpha.Wasm",
        "envoy.api.v2.Cluster",
    ],
)
def test_v2_types_are_refused(type_url):
    result = http_filter(type_url)
    assert errors(result, f"{PATCH}.patch.value.typed_config['@type']") == [
        f"Envoy filter: referenced type unknown (hint: try using the v3 XDS API): {type_url!r}"
    ]


def test_deprecated_and_unknown_types_warn():
    typed_struct = http_filter(
        "type.googleapis.com/udpa.type.v1.TypedStruct",
        type_url="type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
        value={"stat_prefix": "x", "nested": {"@type": "not.checked.Inside"}},
    )
    assert typed_struct.ok
    assert warnings(typed_struct) == [
        (
            f"{PATCH}.patch.value.typed_config['@type']",
            "using deprecated type_url 'type.googleapis.com/udpa.type.v1.TypedStruct': use xds.type.v3.TypedStruct",
        )
    ]
    unknown = http_filter("type.googleapis.com/acme.filters.Custom")
    assert unknown.ok
    [(field, message)] = warnings(unknown)
    assert field == f"{PATCH}.patch.value.typed_config['@type']"
    assert "'type.googleapis.com/acme.filters.Custom' is not a known Envoy v3 type" in message


def test_nested_types_are_checked():
    hcm = {
        "name": HCM,
        "typed_config": {
            "@type": HCM_TYPE,
            "http_filters": [
                {
                    "name": "x",
                    "typed_config": {"@type": "type.googleapis.com/envoy.config.filter.http.router.v2.Router"},
                }
            ],
        },
    }
    result = value_of("NETWORK_FILTER", hcm, "MERGE")
    field = f"{PATCH}.patch.value.typed_config.http_filters[0].typed_config['@type']"
    assert len(errors(result, field)) == 1


def test_type_urls_must_be_strings():
    result = http_filter(12)
    assert errors(result, f"{PATCH}.patch.value.typed_config['@type']") == [
        "Envoy filter: @type must be a string, not 12"
    ]


def test_filters_by_name_without_typed_config_warn():
    result = value_of("HTTP_FILTER", {"name": "envoy.filters.http.cors"}, "INSERT_FIRST")
    assert result.ok
    assert warnings(result) == [
        (f"{PATCH}.patch.value", "using deprecated types by name without typed_config; 'envoy.filters.http.cors'")
    ]
    listener = {"name": "l", "filter_chains": [{"filters": [{"name": "envoy.filters.network.tcp_proxy"}]}]}
    assert warnings(value_of("LISTENER", listener)) == [
        (
            f"{PATCH}.patch.value",
            "using deprecated types by name without typed_config; 'envoy.filters.network.tcp_proxy'",
        )
    ]
    ecds = {
        "name": "ecds",
        "config_discovery": {"type_urls": ["type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"]},
    }
    assert warnings(value_of("HTTP_FILTER", ecds, "INSERT_FIRST")) == []
    assert warnings(value_of("CLUSTER", {"name": "c", "connect_timeout": "1s"})) == []
