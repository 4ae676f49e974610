"""PeerAuthentication: the typed spec, mutual TLS modes and port-level settings."""

import textwrap

import pytest
from hypothesis import given
from hypothesis import strategies as st

import mesh_config
from mesh_config.security.peer_authentication import MutualTls, MutualTlsMode, PeerAuthentication

FULL = """
selector:
  matchLabels: {app: reviews, version: v2}
mtls: {mode: STRICT}
portLevelMtls:
  "8080": {mode: PERMISSIVE}
  9090: {mode: DISABLE}
"""


def load(spec, *, version="v1"):
    text = (
        f"apiVersion: security.istio.io/{version}\nkind: PeerAuthentication\n"
        "metadata: {name: mtls, namespace: ns}\n"
        f"spec:\n{textwrap.indent(textwrap.dedent(spec).strip() or '{}', '  ')}\n"
    )
    return mesh_config.load_text(text)


def messages(result, field, *, errors=True):
    pool = result.errors if errors else result.warnings
    return [d.message for d in pool if d.field == field]


def test_a_full_policy_is_accepted_as_typed_values():
    result = load(FULL)
    assert result.ok, [d.format() for d in result.diagnostics]
    assert not result.warnings
    spec = result.resources[0].spec
    assert isinstance(spec, PeerAuthentication)
    assert spec.mtls == MutualTls(mode=MutualTlsMode.STRICT)
    assert spec.port_level_mtls == {
        8080: MutualTls(mode=MutualTlsMode.PERMISSIVE),
        9090: MutualTls(mode=MutualTlsMode.DISABLE),
    }


@pytest.mark.parametrize("version", ["v1", "v1beta1"])
def test_every_served_version_is_accepted(version):
    assert load(FULL, version=version).ok


def test_an_unserved_version_is_refused():
    result = load(FULL, version="v1alpha1")
    assert not result.ok
    assert any("v1alpha1" in d.message for d in result.errors)


def test_a_full_policy_round_trips_through_yaml():
    first = load(FULL).resources
    again = mesh_config.load_text(mesh_config.to_yaml(first))
    assert again.ok
    assert again.resources == first


@pytest.mark.parametrize("spec", ["", "mtls: {}", "mtls: {mode: UNSET}", "mtls: {mode: DISABLE}"])
def test_namespace_and_mesh_wide_policies(spec):
    result = load(spec)
    assert result.ok
    assert not result.warnings


def test_modes_are_an_enum():
    result = load("mtls: {mode: BLAH}")
    assert messages(result, "spec.mtls.mode") == [
        'Unsupported value: "BLAH": supported values: "UNSET", "DISABLE", "PERMISSIVE", "STRICT"'
    ]
    port_level = load('selector: {matchLabels: {a: b}}\nportLevelMtls: {"80": {mode: strict}}')
    assert messages(port_level, "spec.portLevelMtls.80.mode")[0].startswith('Unsupported value: "strict"')


@pytest.mark.parametrize("selector", ["", "selector: {}\n", "selector: {matchLabels: {}}\n"])
def test_port_level_mtls_requires_a_selector_with_labels(selector):
    result = load(f'{selector}portLevelMtls: {{"80": {{mode: STRICT}}}}')
    assert messages(result, "spec") == ['Invalid value: "object": portLevelMtls requires selector']


def test_port_level_mtls_may_not_be_empty():
    result = load("selector: {matchLabels: {a: b}}\nportLevelMtls: {}")
    assert messages(result, "spec.portLevelMtls") == ["in body should have at least 1 properties"]


@pytest.mark.parametrize("port", ["0", "65536", "42949672"])
def test_ports_are_1_to_65535(port):
    result = load(f'selector: {{matchLabels: {{a: b}}}}\nportLevelMtls: {{"{port}": {{mode: STRICT}}}}')
    assert messages(result, "spec.portLevelMtls") == ['Invalid value: "object": port must be between 1-65535']


@pytest.mark.parametrize("port", ["acd", "-1", "8o"])
def test_port_keys_are_numbers(port):
    result = load(f'selector: {{matchLabels: {{a: b}}}}\nportLevelMtls: {{"{port}": {{mode: STRICT}}}}')
    assert not result.ok
    assert any(d.field.startswith("spec.portLevelMtls") for d in result.errors)


@given(st.integers(1, 65535), st.sampled_from(list(MutualTlsMode)))
def test_every_port_and_mode_is_accepted(port, mode):
    result = load(f'selector: {{matchLabels: {{a: b}}}}\nportLevelMtls: {{"{port}": {{mode: {mode.value}}}}}')
    assert result.ok
    assert result.resources[0].spec.port_level_mtls == {port: MutualTls(mode=mode)}


def test_an_empty_selector_warns_and_is_accepted():
    result = load("selector: {}")
    assert result.ok
    assert "selects every workload" in messages(result, "spec.selector", errors=False)[0]


def test_selector_labels_follow_the_crd():
    result = load("selector: {matchLabels: {'app*': 'x', 'v': 'a*'}}")
    assert messages(result, "spec.selector.matchLabels") == [
        'Invalid value: "object": wildcard not allowed in label key match'
    ]
    assert messages(result, "spec.selector.matchLabels.v") == [
        'Invalid value: "string": wildcard not allowed in label value match'
    ]
    long_value = load(f"selector: {{matchLabels: {{app: {'x' * 64}}}}}")
    assert messages(long_value, "spec.selector.matchLabels.app") == ["in body may not be longer than 63"]


def test_at_most_4096_selector_labels():
    labels = ", ".join(f"l{index}: v" for index in range(4097))
    result = load(f"selector: {{matchLabels: {{{labels}}}}}")
    assert messages(result, "spec.selector.matchLabels") == ["in body should have at most 4096 properties"]


def test_unknown_fields_are_refused():
    assert messages(load("mtls: {mode: STRICT, level: 2}"), "spec.mtls.level")
