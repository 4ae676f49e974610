"""EnvoyFilter: the typed spec, its served version, where it applies and its matches (patches: next file)."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

import mesh_config
from mesh_config.networking.envoy_filter import ApplyTo, EnvoyFilter, PatchContext, PatchOperation, RouteAction

INTERNALS = "EnvoyFilter exposes internal implementation details"
HCM = "envoy.filters.network.http_connection_manager"

FULL = {
    "workloadSelector": {"labels": {"app": "productpage"}},
    "priority": -5,
    "configPatches": [
        {
            "applyTo": "HTTP_FILTER",
            "match": {
                "context": "SIDECAR_INBOUND",
                "proxy": {"proxyVersion": r"^1\.2[0-9].*", "metadata": {"ROUTER": "yes"}},
                "listener": {
                    "portNumber": 8080,
                    "portName": "http",
                    "name": "virtualInbound",
                    "listenerFilter": "envoy.filters.listener.tls_inspector",
                    "filterChain": {
                        "name": "inbound",
                        "sni": "example.com",
                        "transportProtocol": "raw_buffer",
                        "applicationProtocols": "h2c",
                        "destinationPort": 8080,
                        "transportSocket": "tls",
                        "filter": {"name": HCM, "subFilter": {"name": "envoy.filters.http.router"}},
                    },
                },
            },
            "patch": {
                "operation": "INSERT_BEFORE",
                "filterClass": "AUTHZ",
                "value": {
                    "name": "envoy.filters.http.lua",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
                        "default_source_code": {"inline_string": "function envoy_on_request(h) end"},
                    },
                },
            },
        },
        {
            "applyTo": "HTTP_ROUTE",
            "match": {
                "context": "SIDECAR_OUTBOUND",
                "routeConfiguration": {
                    "portNumber": 9080,
                    "portName": "http",
                    "gateway": "ns/gw",
                    "name": "9080",
                    "vhost": {
                        "name": "reviews:9080",
                        "domainName": "reviews",
                        "route": {"name": "r", "action": "ROUTE"},
                    },
                },
            },
            "patch": {"operation": "MERGE", "value": {"decorator": {"operation": "reviews"}}},
        },
        {
            "applyTo": "CLUSTER",
            "match": {
                "context": "GATEWAY",
                "cluster": {"portNumber": 9080, "service": "reviews.ns.svc.cluster.local", "subset": "v1", "name": "c"},
            },
            "patch": {"operation": "MERGE", "value": {"connect_timeout": "1s"}},
        },
        {
            "applyTo": "CLUSTER",
            "match": {"context": "WAYPOINT", "waypoint": {"portNumber": 80}},
            "patch": {"operation": "REMOVE"},
        },
        {"applyTo": "BOOTSTRAP", "patch": {"operation": "MERGE", "value": {"stats_flush_interval": "10s"}}},
    ],
}


def load(spec, *, version="v1alpha3"):
    text = (
        f"apiVersion: networking.istio.io/{version}\nkind: EnvoyFilter\nmetadata: {{name: ef, namespace: ns}}\n"
        f"spec: {json.dumps(spec)}\n"
    )
    return mesh_config.load_text(text)


def patched(*patches, **spec):
    return load({"configPatches": list(patches), **spec})


def errors(result, field):
    return [d.message for d in result.errors if d.field == field]


def warnings(result, field):
    return [d.message for d in result.warnings if d.field == field and INTERNALS not in d.message]


def test_a_full_envoy_filter_is_typed_and_warns_that_it_exposes_internals():
    result = load(FULL)
    assert result.ok, [d.format() for d in result.diagnostics]
    assert [d.field for d in result.diagnostics] == ["spec"]
    assert result.warnings[0].message.startswith(INTERNALS)
    spec = result.resources[0].spec
    assert isinstance(spec, EnvoyFilter)
    assert spec.priority == -5
    first = spec.config_patches[0]
    assert (first.apply_to, first.match.context, first.patch.operation) == (
        ApplyTo.HTTP_FILTER,
        PatchContext.SIDECAR_INBOUND,
        PatchOperation.INSERT_BEFORE,
    )
    assert first.match.listener.filter_chain.filter.sub_filter.name == "envoy.filters.http.router"
    assert first.patch.value["typed_config"]["default_source_code"]["inline_string"].startswith("function")
    assert spec.config_patches[1].match.route_configuration.vhost.route.action is RouteAction.ROUTE
    assert spec.config_patches[3].match.waypoint.port_number == 80


def test_a_full_envoy_filter_round_trips():
    resource = load(FULL).resources[0]
    assert mesh_config.load_text(mesh_config.to_yaml(resource)).resources == (resource,)


def test_an_empty_envoy_filter_is_accepted_with_the_warning():
    result = load({})
    assert result.ok
    assert [d.message for d in result.warnings] == [
        INTERNALS + " that may change at any time. Prefer other APIs if possible, and exercise extreme caution, "
        "especially around upgrades."
    ]


@pytest.mark.parametrize("version", ["v1", "v1beta1"])
def test_only_v1alpha3_is_served(version):
    assert load({}).ok
    assert not load({}, version=version).ok


def test_a_match_has_one_object_type():
    result = patched({"applyTo": "CLUSTER", "match": {"cluster": {}, "listener": {}}, "patch": {"operation": "REMOVE"}})
    assert not result.ok


def test_waypoint_matches_only_with_the_waypoint_context():
    message = 'Invalid value: "object": only support waypointMatch when context is WAYPOINT'
    for match in ({"context": "SIDECAR_INBOUND", "waypoint": {}}, {"waypoint": {}}, {"context": "WAYPOINT"}):
        result = patched({"applyTo": "CLUSTER", "match": match, "patch": {"operation": "REMOVE"}})
        assert message in errors(result, "spec.configPatches[0].match")
    good = {"context": "WAYPOINT", "waypoint": {}}
    assert patched({"applyTo": "CLUSTER", "match": good, "patch": {"operation": "REMOVE"}}).ok


@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_waypoint_ports_are_1_to_65535(port):
    match = {"context": "WAYPOINT", "waypoint": {"portNumber": port}}
    result = patched({"applyTo": "CLUSTER", "match": match, "patch": {"operation": "REMOVE"}})
    assert result.ok == (1 <= port <= 65535)
    if not result.ok:
        assert errors(result, "spec.configPatches[0].match.waypoint.portNumber") == [
            'Invalid value: "integer": port must be between 1-65535'
        ]


def test_workload_selector_rules():
    empty = load({"workloadSelector": {}})
    assert empty.ok
    assert warnings(empty, "spec.workloadSelector") == [
        "Envoy filter: workload selector specified without labels, will be applied to all services in namespace"
    ]
    value = load({"workloadSelector": {"labels": {"app": "a*"}}})
    assert errors(value, "spec.workloadSelector.labels.app") == [
        'Invalid value: "string": wildcard is not supported in selector'
    ]
    key = load({"workloadSelector": {"labels": {"app*": "a"}}})
    assert errors(key, "spec.workloadSelector.labels['app*']") == ["wildcard is not supported in selector: 'app*=a'"]
    assert errors(load({"workloadSelector": {"labels": {"": "a"}}}), "spec.workloadSelector.labels") == [
        "empty key is not supported in selector: '=a'"
    ]
    assert errors(load({"workloadSelector": {"labels": {"a": "x" * 64}}}), "spec.workloadSelector.labels.a") == [
        "in body may not be longer than 63"
    ]
    many = {f"l{index}": "v" for index in range(257)}
    assert errors(load({"workloadSelector": {"labels": many}}), "spec.workloadSelector.labels")


def test_target_refs_and_workload_selector_are_exclusive():
    ref = {"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "gw"}
    result = load({"workloadSelector": {"labels": {"a": "b"}}, "targetRefs": [ref]})
    assert errors(result, "spec") == ['Invalid value: "object": only one of targetRefs or workloadSelector can be set']
    assert load({"targetRefs": [ref]}).ok


def test_target_refs_follow_the_schema():
    ref = {"kind": "Gateway", "group": "Not_A_Group", "name": "gw", "namespace": "other"}
    result = load({"targetRefs": [ref]})
    assert errors(result, "spec.targetRefs[0].namespace") == [
        'Invalid value: "string": cross namespace referencing is not currently supported'
    ]
    assert errors(result, "spec.targetRefs[0].group")[0].startswith("in body should match '^$|^[a-z0-9]")
    assert errors(load({"targetRefs": [{"kind": "Gateway"}]}), "spec.targetRefs[0].name") == ["Required value"]
    many = [{"kind": "Service", "name": f"s{index}"} for index in range(17)]
    assert errors(load({"targetRefs": many}), "spec.targetRefs") == ["in body should have at most 16 items"]


@pytest.mark.parametrize(
    ("apply_to", "match", "message"),
    [
        ("LISTENER", {"cluster": {}}, "applyTo for listener class objects cannot have non listener match"),
        (
            "HTTP_FILTER",
            {"routeConfiguration": {}},
            "applyTo for listener class objects cannot have non listener match",
        ),
        ("VIRTUAL_HOST", {"cluster": {}}, "applyTo for http route class objects cannot have non route configuration"),
        ("HTTP_ROUTE", {"listener": {}}, "applyTo for http route class objects cannot have non route configuration"),
        ("CLUSTER", {"listener": {}}, "applyTo for cluster class objects cannot have non cluster match"),
    ],
)
def test_apply_to_and_the_match_object_must_agree(apply_to, match, message):
    result = patched({"applyTo": apply_to, "match": match, "patch": {"operation": "REMOVE"}})
    [error] = errors(result, "spec.configPatches[0].match")
    assert error.startswith(f"Envoy filter: {message}")


def filter_match(apply_to, filter_, operation="REMOVE"):
    match = {"listener": {"filterChain": {"filter": filter_}}}
    return patched({"applyTo": apply_to, "match": match, "patch": {"operation": operation}})


FILTER = "spec.configPatches[0].match.listener.filterChain.filter"


def test_filter_matches_need_a_name_and_sub_filters_need_the_http_connection_manager():
    assert errors(filter_match("NETWORK_FILTER", {}), FILTER) == ["Envoy filter: filter match has no name to match on"]
    assert errors(filter_match("NETWORK_FILTER", {"name": HCM, "subFilter": {"name": "x"}}), f"{FILTER}.subFilter") == [
        "Envoy filter: subfilter match can be used with applyTo HTTP_FILTER only"
    ]
    tcp = filter_match("HTTP_FILTER", {"name": "envoy.filters.network.tcp_proxy", "subFilter": {"name": "x"}})
    assert errors(tcp, f"{FILTER}.name") == [
        f"Envoy filter: subfilter match requires filter match with {HCM}, not 'envoy.filters.network.tcp_proxy'"
    ]
    assert errors(filter_match("HTTP_FILTER", {"name": HCM, "subFilter": {}}), f"{FILTER}.subFilter") == [
        "Envoy filter: subfilter match has no name to match on"
    ]
    assert filter_match("HTTP_FILTER", {"name": HCM, "subFilter": {"name": "envoy.filters.http.router"}}).ok


def test_a_filter_match_on_a_listener_or_chain_has_no_effect_and_warns():
    result = filter_match("FILTER_CHAIN", {"name": HCM})
    assert result.ok
    assert warnings(result, FILTER) == ["Envoy filter: filter match has no effect when used with FILTER_CHAIN"]


def test_deprecated_filter_names_warn():
    result = filter_match(
        "HTTP_FILTER", {"name": "envoy.http_connection_manager", "subFilter": {"name": "envoy.router"}}
    )
    assert result.ok
    assert warnings(result, f"{FILTER}.name") == [
        f"using deprecated filter name 'envoy.http_connection_manager'; use '{HCM}' instead"
    ]
    assert warnings(result, f"{FILTER}.subFilter.name") == [
        "using deprecated filter name 'envoy.router'; use 'envoy.filters.http.router' instead"
    ]


def test_proxy_version_must_be_an_re2_regex():
    def with_version(version):
        match = {"proxy": {"proxyVersion": version}}
        return patched({"applyTo": "LISTENER", "match": match, "patch": {"operation": "REMOVE"}})

    assert with_version(r"^1\.2[0-9].*").ok
    [message] = errors(with_version("%#@~++==`24c234`"), "spec.configPatches[0].match.proxy.proxyVersion")
    assert message.startswith("Envoy filter: invalid regex for proxy version '%#@~++==`24c234`'")
    assert not with_version("(?=lookahead)").ok
