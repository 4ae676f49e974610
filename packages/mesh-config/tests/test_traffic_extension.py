"""TrafficExtension: the typed spec, its served version and its rules (CRD and webhook)."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

import mesh_config
from mesh_config.extensions import (
    TRAFFIC_EXTENSION,
    EnvValueSource,
    ExecutionPhase,
    FailStrategy,
    LuaConfig,
    PluginType,
    PullPolicy,
    TrafficExtension,
    WasmConfig,
    WorkloadMode,
)

SHA = "1ef0c9a92b0420cf25f7fe5d481b231464bc88f486ca3b9c83ed5cc21d2f6210"
CODE = 'function envoy_on_request(request_handle)\n  request_handle:headers():add("x-lua", "1")\nend\n'
GATEWAY = {"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "gw"}


def load(spec, *, version="v1alpha1"):
    text = (
        f"apiVersion: extensions.istio.io/{version}\nkind: TrafficExtension\nmetadata: {{name: te, namespace: ns}}\n"
        f"spec: {json.dumps(spec)}\n"
    )
    return mesh_config.load_text(text)


def lua(**fields):
    return load({"lua": {"inlineCode": CODE}, **fields})


def wasm(**fields):
    return load({"wasm": {"url": "oci://registry.example.com/filters/auth:1.0", **fields}})


def errors(result, field):
    return [d.message for d in result.errors if d.field == field]


def warnings(result):
    return [(d.field, d.message) for d in result.warnings]


FULL_WASM = {
    "targetRefs": [GATEWAY],
    "phase": "AUTHZ",
    "priority": 1000,
    "match": [{"mode": "CLIENT", "ports": [{"number": 8080}, {"number": 8081}]}],
    "wasm": {
        "url": "oci://private-registry:5000/openid-connect/openid:latest",
        "sha256": SHA,
        "imagePullPolicy": "Always",
        "imagePullSecret": "pull-secret",
        "verificationKey": "key",
        "pluginConfig": {"openid_server": "authn", "scopes": ["a", "b"], "nested": {"x": 1}},
        "pluginName": "openid",
        "failStrategy": "FAIL_RELOAD",
        "vmConfig": {"env": [{"name": "POD_NAME", "valueFrom": "HOST"}, {"name": "TRUST", "value": "x"}]},
        "type": "NETWORK",
    },
}

FULL_LUA = {
    "selector": {"matchLabels": {"istio": "ingressgateway"}},
    "phase": "AUTHN",
    "priority": -5,
    "match": [{"mode": "SERVER"}],
    "lua": {"inlineCode": CODE},
}


def test_a_full_wasm_extension_is_typed():
    result = load(FULL_WASM)
    assert result.ok, [d.format() for d in result.diagnostics]
    spec = result.resources[0].spec
    assert isinstance(spec, TrafficExtension)
    assert isinstance(spec.wasm, WasmConfig)
    assert spec.lua is None
    assert (spec.phase, spec.priority) == (ExecutionPhase.AUTHZ, 1000)
    assert spec.target_refs[0].kind == "Gateway"
    assert spec.match[0].mode is WorkloadMode.CLIENT
    assert [port.number for port in spec.match[0].ports] == [8080, 8081]
    module = spec.wasm
    assert (module.image_pull_policy, module.fail_strategy, module.type) == (
        PullPolicy.ALWAYS,
        FailStrategy.FAIL_RELOAD,
        PluginType.NETWORK,
    )
    assert module.plugin_config["nested"]["x"] == 1
    assert [env.value_from for env in module.vm_config.env] == [EnvValueSource.HOST, EnvValueSource.INLINE]


def test_a_full_lua_extension_is_typed():
    result = load(FULL_LUA)
    assert result.ok, [d.format() for d in result.diagnostics]
    spec = result.resources[0].spec
    assert spec.lua == LuaConfig(inline_code=CODE)
    assert spec.wasm is None
    assert spec.selector.match_labels == {"istio": "ingressgateway"}
    assert (spec.phase, spec.priority, spec.match[0].mode) == (ExecutionPhase.AUTHN, -5, WorkloadMode.SERVER)


def test_defaults():
    spec = lua().resources[0].spec
    assert (spec.phase, spec.priority, spec.match, spec.target_refs) == (ExecutionPhase.UNSPECIFIED, None, (), ())
    module = wasm().resources[0].spec.wasm
    assert (module.image_pull_policy, module.fail_strategy, module.type) == (
        PullPolicy.UNSPECIFIED_POLICY,
        FailStrategy.FAIL_CLOSE,
        PluginType.UNSPECIFIED_PLUGIN_TYPE,
    )


@pytest.mark.parametrize("spec", [FULL_WASM, FULL_LUA])
def test_extensions_round_trip(spec):
    resource = load(spec).resources[0]
    text = mesh_config.to_yaml(resource)
    assert mesh_config.load_text(text).resources == (resource,)


def test_the_kind_is_registered_and_exported():
    assert mesh_config.TrafficExtension is TrafficExtension
    assert mesh_config.kind_for("extensions.istio.io/v1alpha1", "TrafficExtension") is TRAFFIC_EXTENSION
    assert TRAFFIC_EXTENSION.plural == "trafficextensions"
    assert not load(FULL_LUA, version="v1").ok


def test_spec_is_required():
    text = "apiVersion: extensions.istio.io/v1alpha1\nkind: TrafficExtension\nmetadata: {name: te, namespace: ns}\n"
    result = mesh_config.load_text(text)
    assert [(d.field, d.message) for d in result.errors] == [("spec", "Required value")]


def test_exactly_one_of_wasm_or_lua():
    assert errors(load({"phase": "AUTHN"}), "spec") == [
        'Invalid value: "object": exactly one of wasm or lua must be set'
    ]
    both = load({"wasm": {"url": "oci://r/f:1"}, "lua": {"inlineCode": CODE}})
    assert [(d.field, d.message) for d in both.errors] == [("spec.lua", "only one of 'wasm' and 'lua' may be set")]


def test_lua_code_is_required_and_not_empty():
    assert errors(load({"lua": {}}), "spec.lua.inlineCode") == ["Required value"]
    assert errors(load({"lua": {"inlineCode": ""}}), "spec.lua.inlineCode") == [
        "in body should be at least 1 chars long"
    ]


def test_lua_code_is_at_most_64_kib():
    padding = "-- " + "x" * 65536
    fits = CODE + padding[: 65536 - len(CODE)]
    assert load({"lua": {"inlineCode": fits}}).ok
    assert errors(load({"lua": {"inlineCode": fits + "x"}}), "spec.lua.inlineCode") == [
        "in body may not be longer than 65536"
    ]
    # Kubernetes counts characters, not bytes.
    assert load({"lua": {"inlineCode": CODE + "-- " + "é" * (65536 - len(CODE) - 3)}}).ok


def test_lua_code_without_an_entry_point_is_a_warning_only():
    result = load({"lua": {"inlineCode": 'print("loaded")'}})
    assert result.ok
    assert result.errors == ()
    assert warnings(result) == [
        (
            "spec.lua.inlineCode",
            "the Lua code defines neither envoy_on_request nor envoy_on_response, so Envoy never runs it",
        )
    ]
    response_only = "function envoy_on_response(response_handle) end"
    assert warnings(load({"lua": {"inlineCode": response_only}})) == []


def test_wasm_url_is_required_and_has_an_allowed_scheme():
    assert errors(load({"wasm": {"pluginName": "x"}}), "spec.wasm.url") == ["Required value"]
    assert errors(load({"wasm": {"url": ""}}), "spec.wasm.url") == ["in body should be at least 1 chars long"]
    for url in ("oci://r/f:1", "https://example.com/f.wasm", "file:///opt/f.wasm", "registry.example.com/f:1"):
        assert load({"wasm": {"url": url}}).ok, url
    message = 'Invalid value: "string": url must have schema one of [http, https, file, oci]'
    for url in ("ftp://example.com/f.wasm", "%zz", "mailto:someone"):
        assert errors(load({"wasm": {"url": url}}), "spec.wasm.url") == [message], url


@given(st.text(alphabet="0123456789abcdefABCDEFg", min_size=0, max_size=70))
def test_sha256_is_64_lower_case_hex_digits_or_empty(sha):
    ok = sha == "" or (len(sha) == 64 and all(ch in "0123456789abcdef" for ch in sha))
    result = wasm(sha256=sha)
    assert result.ok == ok
    if not ok:
        assert errors(result, "spec.wasm.sha256") == ["in body should match '(^$|^[a-f0-9]{64}$)'"]


@pytest.mark.parametrize(("field", "longest"), [("imagePullSecret", 253), ("pluginName", 256)])
def test_wasm_string_lengths(field, longest):
    assert wasm(**{field: "x" * longest}).ok
    assert errors(wasm(**{field: "x" * (longest + 1)}), f"spec.wasm.{field}") == [
        f"in body may not be longer than {longest}"
    ]
    assert errors(wasm(**{field: ""}), f"spec.wasm.{field}") == ["in body should be at least 1 chars long"]


def test_wasm_vm_env_follows_the_wasm_plugin_rules():
    def env(*entries):
        return wasm(vmConfig={"env": list(entries)})

    assert errors(env({"name": "a"}, {"name": "a"}), "spec.wasm.vmConfig.env[1]") == [
        'Duplicate value: map[string]interface {}{"name":"a"}'
    ]
    assert errors(env({"name": "a", "valueFrom": "HOST", "value": ""}), "spec.wasm.vmConfig.env[0]") == [
        'Invalid value: "object": value may only be set when valueFrom is INLINE'
    ]
    assert errors(env({"value": "x"}), "spec.wasm.vmConfig.env[0].name") == ["Required value"]
    many = [{"name": f"v{index}"} for index in range(257)]
    assert errors(env(*many), "spec.wasm.vmConfig.env") == ["in body should have at most 256 items"]


def test_wasm_takes_no_placement_fields():
    # phase, priority, match and the selector belong to the extension, not to its Wasm module.
    result = wasm(phase="AUTHN")
    assert errors(result, "spec.wasm.phase") == ['unknown field "phase"']


def test_match_ports_need_a_number():
    assert errors(lua(match=[{"ports": [{}]}]), "spec.match[0].ports[0].number") == ["Required value"]


@given(st.integers(min_value=-1, max_value=70000))
def test_match_ports_are_1_to_65535(port):
    assert lua(match=[{"ports": [{"number": port}]}]).ok == (1 <= port <= 65535)


def test_match_ports_are_a_map_keyed_by_number():
    result = lua(match=[{"ports": [{"number": 80}, {"number": 80}]}])
    assert errors(result, "spec.match[0].ports[1]") == ['Duplicate value: map[string]interface {}{"number":80}']
    assert lua(match=[{"ports": [{"number": 80}]}, {"ports": [{"number": 80}]}]).ok


def test_match_mode_is_an_enum():
    message = errors(lua(match=[{"mode": "INBOUND"}]), "spec.match[0].mode")[0]
    assert message.startswith('Unsupported value: "INBOUND"')


def test_phase_takes_the_execution_phase_names():
    for phase in ("UNSPECIFIED", "AUTHN", "AUTHZ", "STATS"):
        assert lua(phase=phase).ok, phase
    assert errors(lua(phase="UNSPECIFIED_PHASE"), "spec.phase") == [
        'Unsupported value: "UNSPECIFIED_PHASE": supported values: "UNSPECIFIED", "AUTHN", "AUTHZ", "STATS"'
    ]


def test_priority_is_a_nullable_int32():
    assert lua(priority=None).resources[0].spec.priority is None
    assert lua(priority="7").resources[0].spec.priority == 7
    assert lua(priority=-(2**31)).ok
    assert errors(lua(priority=2**31), "spec.priority")


def test_selector_and_target_refs_are_exclusive():
    result = lua(selector={"matchLabels": {"a": "b"}}, targetRefs=[GATEWAY])
    assert errors(result, "spec") == ['Invalid value: "object": only one of targetRefs or selector can be set']
    # CEL's has(): an empty list still counts as set.
    assert errors(lua(selector={"matchLabels": {"a": "b"}}, targetRefs=[]), "spec")
    assert lua(targetRefs=[GATEWAY]).ok


def test_there_is_no_singular_target_ref():
    assert errors(lua(targetRef=GATEWAY), "spec.targetRef") == ['unknown field "targetRef"; did you mean "targetRefs"?']


def test_target_ref_rules():
    cross = {**GATEWAY, "namespace": "other"}
    assert errors(lua(targetRefs=[cross]), "spec.targetRefs[0].namespace") == [
        'Invalid value: "string": cross namespace referencing is not currently supported'
    ]
    assert errors(lua(targetRefs=[{**GATEWAY, "name": ""}]), "spec.targetRefs[0].name") == [
        "in body should be at least 1 chars long"
    ]
    assert errors(lua(targetRefs=[{"kind": "Service"}]), "spec.targetRefs[0].name") == ["Required value"]
    many = [{"kind": "Service", "name": f"s{index}"} for index in range(17)]
    assert errors(lua(targetRefs=many), "spec.targetRefs") == ["in body should have at most 16 items"]


def test_the_webhook_accepts_only_known_target_kinds():
    for ref in (
        GATEWAY,
        {"kind": "GatewayClass", "group": "gateway.networking.k8s.io", "name": "istio"},
        {"kind": "Service", "name": "reviews"},
        {"kind": "ServiceEntry", "group": "networking.istio.io", "name": "ext"},
    ):
        assert lua(targetRefs=[ref]).ok, ref
    result = lua(targetRefs=[{"kind": "Deployment", "group": "apps", "name": "d"}])
    assert errors(result, "spec.targetRefs[0]")[0].startswith("targetRef apps/Deployment is not supported")


def test_selector_wildcards_are_refused():
    assert errors(lua(selector={"matchLabels": {"istio": "bar*"}}), "spec.selector.matchLabels.istio")
    assert errors(lua(selector={"matchLabels": {"istio*": "bar"}}), "spec.selector.matchLabels")


def test_an_empty_selector_is_a_warning_only():
    result = lua(selector={})
    assert result.ok
    assert warnings(result) == [
        ("spec.selector", "selector has no labels and so selects every workload of the namespace")
    ]


def test_problems_are_all_reported_together():
    result = load(
        {"phase": "LATE", "wasm": {"url": "ftp://x", "sha256": "nope"}, "match": [{"ports": [{"number": 0}]}]}
    )
    fields = {d.field for d in result.errors}
    assert fields == {"spec.phase", "spec.wasm.url", "spec.wasm.sha256", "spec.match[0].ports[0].number"}
