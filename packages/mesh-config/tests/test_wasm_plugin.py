"""WasmPlugin: the typed spec, its served version and its rules (CRD and webhook)."""

import json
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

import mesh_config
from mesh_config.extensions.wasm_plugin import (
    EnvValueSource,
    FailStrategy,
    PluginPhase,
    PluginType,
    PullPolicy,
    WasmPlugin,
    WorkloadMode,
)

SHA = "1ef0c9a92b0420cf25f7fe5d481b231464bc88f486ca3b9c83ed5cc21d2f6210"


def load(spec, *, version="v1alpha1"):
    text = (
        f"apiVersion: extensions.istio.io/{version}\nkind: WasmPlugin\nmetadata: {{name: wp, namespace: ns}}\n"
        f"spec: {json.dumps(spec)}\n"
    )
    return mesh_config.load_text(text)


def plugin(**fields):
    return load({"url": "oci://registry.example.com/filters/auth:1.0", **fields})


def errors(result, field):
    return [d.message for d in result.errors if d.field == field]


FULL = {
    "selector": {"matchLabels": {"istio": "ingressgateway"}},
    "url": "oci://private-registry:5000/openid-connect/openid:latest",
    "sha256": SHA,
    "imagePullPolicy": "IfNotPresent",
    "imagePullSecret": "pull-secret",
    "verificationKey": "key",
    "pluginConfig": {"openid_server": "authn", "scopes": ["a", "b"], "nested": {"x": 1}},
    "pluginName": "openid",
    "phase": "AUTHN",
    "priority": 10,
    "failStrategy": "FAIL_OPEN",
    "vmConfig": {"env": [{"name": "POD_NAME", "valueFrom": "HOST"}, {"name": "TRUST", "value": "x"}]},
    "match": [{"mode": "SERVER", "ports": [{"number": 8080}, {"number": 9090}]}],
    "type": "HTTP",
}


def test_a_full_plugin_is_typed():
    result = load(FULL)
    assert result.ok, [d.format() for d in result.diagnostics]
    spec = result.resources[0].spec
    assert isinstance(spec, WasmPlugin)
    assert (spec.phase, spec.image_pull_policy, spec.fail_strategy, spec.type) == (
        PluginPhase.AUTHN,
        PullPolicy.IF_NOT_PRESENT,
        FailStrategy.FAIL_OPEN,
        PluginType.HTTP,
    )
    assert spec.priority == 10
    assert spec.plugin_config["nested"]["x"] == 1
    assert [env.value_from for env in spec.vm_config.env] == [EnvValueSource.HOST, EnvValueSource.INLINE]
    assert spec.match[0].mode is WorkloadMode.SERVER
    assert [port.number for port in spec.match[0].ports] == [8080, 9090]


def test_a_full_plugin_round_trips():
    resource = load(FULL).resources[0]
    assert mesh_config.load_text(mesh_config.to_yaml(resource)).resources == (resource,)


def test_only_v1alpha1_is_served():
    assert not load(FULL, version="v1").ok


def test_url_is_required():
    result = load({"pluginName": "x"})
    assert errors(result, "spec.url") == ["Required value"]
    assert errors(load({"url": ""}), "spec.url") == ["in body should be at least 1 chars long"]


@pytest.mark.parametrize(
    "url",
    [
        "oci://registry.example.com/filter:1",
        "http://example.com/filter.wasm",
        "HTTPS://example.com/filter.wasm",
        "file:///opt/filters/openid.wasm",
        "registry.example.com/filter:1",
        "test",
        "[::1]:5000/filter",
        # Kubernetes' CEL tries "http://" + url when url alone does not parse: these parse that way.
        "http://a b/x",
        "oci://h:x/y",
    ],
)
def test_urls_with_an_allowed_scheme_are_accepted(url):
    assert plugin(url=url).ok


@pytest.mark.parametrize("url", ["fake://example.com", "ftp://example.com/x", "#%blah$#@", "%zz", "mailto:someone"])
def test_urls_without_an_allowed_scheme_are_refused(url):
    message = 'Invalid value: "string": url must have schema one of [http, https, file, oci]'
    assert errors(plugin(url=url), "spec.url") == [message]


@given(st.sampled_from(["ftp", "gs", "s3", "git", "docker"]), st.from_regex(r"[a-z]{1,10}\.[a-z]{2,5}", fullmatch=True))
def test_any_other_scheme_is_refused(scheme, host):
    assert not plugin(url=f"{scheme}://{host}/module.wasm").ok


@given(
    st.sampled_from(["http", "https", "oci", "file"]), st.from_regex(r"[a-z0-9-]{1,10}(\.[a-z]{2,5})?", fullmatch=True)
)
def test_every_allowed_scheme_is_accepted(scheme, host):
    assert plugin(url=f"{scheme}://{host}/module.wasm").ok


@given(st.text(alphabet="0123456789abcdefABCDEFg", min_size=0, max_size=70))
def test_sha256_is_64_lower_case_hex_digits_or_empty(sha):
    ok = sha == "" or (len(sha) == 64 and all(ch in string.hexdigits.lower() for ch in sha))
    result = plugin(sha256=sha)
    assert result.ok == ok
    if not ok:
        assert errors(result, "spec.sha256") == ["in body should match '(^$|^[a-f0-9]{64}$)'"]


@pytest.mark.parametrize(("field", "longest"), [("imagePullSecret", 253), ("pluginName", 256)])
def test_string_lengths(field, longest):
    assert plugin(**{field: "x" * longest}).ok
    assert errors(plugin(**{field: "x" * (longest + 1)}), f"spec.{field}") == [
        f"in body may not be longer than {longest}"
    ]
    assert errors(plugin(**{field: ""}), f"spec.{field}") == ["in body should be at least 1 chars long"]


def env(*entries):
    return plugin(vmConfig={"env": list(entries)})


def test_env_names_are_unique():
    result = env({"name": "a"}, {"name": "a"})
    assert errors(result, "spec.vmConfig.env[1]") == ['Duplicate value: map[string]interface {}{"name":"a"}']


def test_env_names_are_required_and_not_empty():
    assert errors(env({"value": "x"}), "spec.vmConfig.env[0].name") == ["Required value"]
    assert errors(env({"name": ""}), "spec.vmConfig.env[0].name") == ["in body should be at least 1 chars long"]
    assert errors(env({"name": "n" * 257}), "spec.vmConfig.env[0].name") == ["in body may not be longer than 256"]


def test_a_value_only_with_inline():
    message = 'Invalid value: "object": value may only be set when valueFrom is INLINE'
    assert errors(env({"name": "a", "valueFrom": "HOST", "value": "v"}), "spec.vmConfig.env[0]") == [message]
    # CEL's has(): an explicitly empty value counts as set.
    assert errors(env({"name": "a", "valueFrom": "HOST", "value": ""}), "spec.vmConfig.env[0]") == [message]
    assert env({"name": "a", "valueFrom": "INLINE", "value": "v"}, {"name": "b", "value": "w"}).ok


def test_env_values_and_counts_are_limited():
    assert errors(env({"name": "a", "value": "v" * 2049}), "spec.vmConfig.env[0].value") == [
        "in body may not be longer than 2048"
    ]
    many = [{"name": f"v{index}"} for index in range(257)]
    assert errors(env(*many), "spec.vmConfig.env") == ["in body should have at most 256 items"]


def test_match_ports_need_a_number():
    result = plugin(match=[{"ports": [{}]}])
    assert errors(result, "spec.match[0].ports[0].number") == ["Required value"]


@given(st.integers(min_value=0, max_value=70000))
def test_match_ports_are_1_to_65535(port):
    assert plugin(match=[{"ports": [{"number": port}]}]).ok == (1 <= port <= 65535)


def test_match_ports_are_unique():
    result = plugin(match=[{"ports": [{"number": 80}, {"number": 80}]}])
    assert errors(result, "spec.match[0].ports[1]") == ['Duplicate value: map[string]interface {}{"number":80}']


def test_selector_and_target_refs_are_exclusive():
    ref = {"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "gw"}
    result = plugin(selector={"matchLabels": {"a": "b"}}, targetRefs=[ref])
    assert errors(result, "spec") == ['Invalid value: "object": only one of targetRefs or selector can be set']
    assert plugin(targetRefs=[ref]).ok
    assert plugin(targetRef=ref).ok


def test_target_ref_rules():
    ref = {"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "gw", "namespace": "other"}
    assert errors(plugin(targetRef=ref), "spec.targetRef.namespace") == [
        'Invalid value: "string": cross namespace referencing is not currently supported'
    ]
    assert errors(plugin(targetRefs=[{**ref, "namespace": "", "name": ""}]), "spec.targetRefs[0].name") == [
        "in body should be at least 1 chars long"
    ]
    assert not plugin(targetRef={"kind": "Deployment", "group": "apps", "name": "d"}).ok
    many = [{"kind": "Service", "name": f"s{index}"} for index in range(17)]
    assert errors(plugin(targetRefs=many), "spec.targetRefs") == ["in body should have at most 16 items"]


def test_selector_wildcards_are_refused():
    assert errors(plugin(selector={"matchLabels": {"istio": "bar*"}}), "spec.selector.matchLabels.istio")
    assert errors(plugin(selector={"matchLabels": {"istio*": "bar"}}), "spec.selector.matchLabels")


def test_enums_name_their_values():
    message = errors(plugin(phase="LATE"), "spec.phase")[0]
    assert message.startswith('Unsupported value: "LATE"')
    assert '"AUTHZ"' in message


def test_a_null_spec_is_refused_with_the_kubernetes_wording():
    text = "apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata: {name: wp}\nspec:\n"
    result = mesh_config.load_text(text)
    assert 'spec in body must be of type object: "null"' in result.errors[0].format()


def test_a_wasm_plugin_without_spec_is_refused_as_the_crd_requires_it():
    result = mesh_config.load_text(
        "apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata: {name: p, namespace: default}\n"
    )
    assert [d.format().partition(": error: ")[2] for d in result.errors] == [
        "WasmPlugin default/p: spec: Required value"
    ]
