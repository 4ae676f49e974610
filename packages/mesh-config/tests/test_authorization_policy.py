"""AuthorizationPolicy: the typed spec, where it applies, actions and rules (values: test_authorization_values)."""

import textwrap

import pytest

import mesh_config
from mesh_config.security.authorization_policy import (
    AuthorizationAction,
    AuthorizationPolicy,
    AuthorizationProvider,
)

FULL = """
selector:
  matchLabels: {app: httpbin, version: v1}
action: DENY
rules:
- from:
  - source:
      principals: ["cluster.local/ns/default/sa/sleep", "*-suffix"]
      notPrincipals: ["cluster.local/ns/default/sa/evil"]
      requestPrincipals: ["https://issuer.example.com/*"]
      notRequestPrincipals: ["prefix-*"]
      namespaces: ["default", "team-*"]
      notNamespaces: ["kube-system"]
      ipBlocks: ["10.0.0.1", "10.1.0.0/16", "2001:db8::/32"]
      notIpBlocks: ["10.1.2.3"]
      remoteIpBlocks: ["203.0.113.0/24"]
      notRemoteIpBlocks: ["203.0.113.7"]
      trustDomains: ["cluster.local"]
      notTrustDomains: ["other.local"]
  - source:
      serviceAccounts: ["default/sleep", "reviews"]
      notServiceAccounts: ["default/evil"]
  to:
  - operation:
      hosts: ["example.com", "*.example.com"]
      notHosts: ["admin.example.com"]
      ports: ["8080"]
      notPorts: ["9090"]
      methods: ["GET", "HEAD"]
      notMethods: ["DELETE"]
      paths: ["/api/*", "/v1/{*}/items/{**}"]
      notPaths: ["/admin"]
  when:
  - key: request.headers[X-Tenant]
    values: ["a", "b"]
  - key: source.ip
    notValues: ["10.9.0.0/16"]
  - key: request.auth.claims[groups]
    values: ["admins"]
  - key: destination.port
    values: ["8080"]
"""


def load(spec, *, version="v1", annotations=None):
    lines = [f"apiVersion: security.istio.io/{version}", "kind: AuthorizationPolicy", "metadata:"]
    lines += ["  name: policy", "  namespace: ns"]
    if annotations:
        lines += ["  annotations:"] + [f"    {key}: {value!r}" for key, value in annotations.items()]
    lines += ["spec:", textwrap.indent(textwrap.dedent(spec).strip() or "{}", "  ")]
    return mesh_config.load_text("\n".join(lines) + "\n")


def found(result, field, *fragments, errors=True):
    pool = result.errors if errors else result.warnings
    matches = [d for d in pool if d.field == field and all(fragment in d.message for fragment in fragments)]
    assert matches, f"no {'error' if errors else 'warning'} at {field} with {fragments}: " + "\n".join(
        d.format() for d in result.diagnostics
    )
    return matches


def test_a_full_policy_is_accepted_as_typed_values():
    result = load(FULL)
    assert result.ok, [d.format() for d in result.diagnostics]
    assert not result.warnings
    spec = result.resources[0].spec
    assert isinstance(spec, AuthorizationPolicy)
    assert spec.action is AuthorizationAction.DENY
    rule = spec.rules[0]
    assert rule.from_[0].source.principals == ("cluster.local/ns/default/sa/sleep", "*-suffix")
    assert rule.from_[1].source.service_accounts == ("default/sleep", "reviews")
    assert rule.to[0].operation.paths == ("/api/*", "/v1/{*}/items/{**}")
    assert rule.when[1].not_values == ("10.9.0.0/16",)
    assert spec.selector.match_labels == {"app": "httpbin", "version": "v1"}


@pytest.mark.parametrize("version", ["v1", "v1beta1"])
def test_every_served_version_is_accepted(version):
    result = load(FULL, version=version)
    assert result.ok
    assert result.resources[0].api_version == f"security.istio.io/{version}"


def test_an_unserved_version_is_refused():
    result = load(FULL, version="v1alpha1")
    assert not result.ok
    assert not result.resources
    assert any("v1alpha1" in d.message for d in result.errors)


def test_a_full_policy_round_trips_through_yaml():
    first = load(FULL).resources
    again = mesh_config.load_text(mesh_config.to_yaml(first))
    assert again.ok
    assert again.resources == first


def test_a_custom_policy_round_trips_with_its_provider():
    first = load("action: CUSTOM\nprovider: {name: ext-authz}\nrules: [{}]").resources
    assert first[0].spec.provider == AuthorizationProvider(name="ext-authz")
    assert mesh_config.load_text(mesh_config.to_yaml(first)).resources == first


def test_an_empty_policy_is_the_allow_nothing_policy():
    result = load("")
    assert result.ok
    assert result.resources[0].spec == AuthorizationPolicy()


def test_unknown_fields_and_actions_are_refused():
    found(load("action: PERMIT"), "spec.action", 'Unsupported value: "PERMIT"')
    found(load("rules: [{frm: []}]"), "spec.rules[0].frm", 'unknown field "frm"')


# Where the policy applies.


@pytest.mark.parametrize(
    "spec",
    [
        "selector: {matchLabels: {app: a}}\ntargetRefs: [{kind: Service, name: a}]",
        "selector: {matchLabels: {app: a}}\ntargetRef: {kind: Service, name: a}",
        "targetRef: {kind: Service, name: a}\ntargetRefs: [{kind: Service, name: a}]",
        "selector: {matchLabels: {app: a}}\ntargetRefs: []",
    ],
)
def test_only_one_of_selector_target_ref_and_target_refs(spec):
    found(load(spec), "spec", "only one of targetRefs or selector can be set")


def test_target_refs_name_a_supported_kind_in_the_same_namespace():
    result = load(
        """
        targetRefs:
        - {group: gateway.networking.k8s.io, kind: Gateway, name: ingress}
        - {kind: Service, name: reviews, namespace: other}
        - {group: apps, kind: Deployment, name: web}
        - {kind: Service, name: ""}
        """
    )
    found(result, "spec.targetRefs[1].namespace", "cross namespace referencing is not currently supported")
    found(result, "spec.targetRefs[2]", "apps/Deployment is not supported")
    found(result, "spec.targetRefs[3].name", "at least 1 chars long")
    assert not [d for d in result.errors if d.field.startswith("spec.targetRefs[0]")]


def test_at_most_sixteen_target_refs():
    refs = "\n".join(f"- {{kind: Service, name: s{index}}}" for index in range(17))
    found(load(f"targetRefs:\n{refs}"), "spec.targetRefs", "at most 16 items")


def test_selector_labels_follow_the_crd_and_an_empty_selector_warns():
    result = load("selector: {matchLabels: {'app': 'web*'}}")
    found(result, "spec.selector.matchLabels.app", "wildcard not allowed in label value match")
    warned = load("selector: {}")
    assert warned.ok
    found(warned, "spec.selector", "selects every workload", errors=False)


# Actions and providers.


def test_deny_needs_rules():
    found(load("action: DENY"), "spec.rules", "DENY policy without rules")
    found(load("action: DENY\nrules: []"), "spec.rules", "DENY policy without rules")
    assert load("action: DENY\nrules: [{}]").ok


def test_custom_needs_rules_and_a_provider_name():
    found(load("action: CUSTOM\nprovider: {name: ext}"), "spec.rules", "CUSTOM policy without rules")
    found(load("action: CUSTOM\nrules: [{}]"), "spec.provider", "needs a provider")
    found(load("action: CUSTOM\nprovider: {}\nrules: [{}]"), "spec.provider.name", "provider.name")
    assert load("action: CUSTOM\nprovider: {name: ext}\nrules: [{}]").ok


@pytest.mark.parametrize("action", ["ALLOW", "DENY", "AUDIT"])
def test_a_provider_is_only_for_custom(action):
    result = load(f"action: {action}\nprovider: {{name: ext}}\nrules: [{{}}]")
    found(result, "spec.provider", f"only with action CUSTOM, not {action}")


@pytest.mark.parametrize(
    "field", ["principals", "notPrincipals", "requestPrincipals", "namespaces", "serviceAccounts", "trustDomains"]
)
def test_custom_cannot_match_identities(field):
    result = load(f"action: CUSTOM\nprovider: {{name: ext}}\nrules:\n- from:\n  - source: {{{field}: [a]}}")
    found(result, f"spec.rules[0].from[0].source.{field}", "not supported with action CUSTOM")


@pytest.mark.parametrize(
    "key", ["source.namespace", "source.principal", "source.serviceAccount", "request.auth.claims[iss]"]
)
def test_custom_cannot_use_identity_conditions(key):
    result = load(f"action: CUSTOM\nprovider: {{name: ext}}\nrules:\n- when: [{{key: '{key}', values: [a]}}]")
    found(result, "spec.rules[0].when[0].key", repr(key), "not supported with action CUSTOM")


def test_custom_may_match_addresses_and_operations():
    result = load(
        """
        action: CUSTOM
        provider: {name: ext}
        rules:
        - from: [{source: {ipBlocks: [10.0.0.0/8]}}]
          to: [{operation: {paths: [/admin]}}]
          when: [{key: remote.ip, values: [1.2.3.4]}]
        """
    )
    assert result.ok, [d.format() for d in result.diagnostics]


@pytest.mark.parametrize(("action", "ok"), [("ALLOW", True), ("DENY", True), ("AUDIT", False), ("CUSTOM", False)])
def test_dry_run_only_with_allow_or_deny(action, ok):
    spec = f"action: {action}\nrules: [{{}}]" + ("\nprovider: {name: ext}" if action == "CUSTOM" else "")
    result = load(spec, annotations={"istio.io/dry-run": "true"})
    assert result.ok is ok
    if not ok:
        found(result, "metadata.annotations['istio.io/dry-run']", f"not {action}")


# Rules: from, to and when as structures.


def test_from_and_to_may_be_left_out_but_not_empty():
    result = load("rules:\n- from: []\n  to: []")
    found(result, "spec.rules[0].from", "from must not be empty")
    found(result, "spec.rules[0].to", "to must not be empty")
    assert load("rules:\n- when: [{key: source.ip, values: [10.0.0.1]}]").ok


def test_entries_need_a_non_empty_source_or_operation():
    result = load("rules:\n- from: [{}, {source: {}}]\n  to: [{}, {operation: {}}]")
    found(result, "spec.rules[0].from[0].source", "needs a source")
    found(result, "spec.rules[0].from[1].source", "at least one field")
    found(result, "spec.rules[0].to[0].operation", "needs an operation")
    found(result, "spec.rules[0].to[1].operation", "at least one field")


def test_null_entries_are_refused_by_the_schema():
    found(load("rules: [null]"), "spec.rules[0]", "must be of type object")
    found(load("rules: [{from: [null]}]"), "spec.rules[0].from[0]", "must be of type object")


@pytest.mark.parametrize("other", ["principals", "notPrincipals", "namespaces", "notNamespaces"])
@pytest.mark.parametrize("accounts", ["serviceAccounts", "notServiceAccounts"])
def test_service_accounts_exclude_namespaces_and_principals(accounts, other):
    result = load(f"rules:\n- from:\n  - source: {{{accounts}: [ns/sa], {other}: [x]}}")
    found(result, "spec.rules[0].from[0].source", "Cannot set serviceAccounts with namespaces or principals")


def test_written_but_empty_lists_count_for_the_service_account_rule():
    result = load("rules:\n- from:\n  - source: {serviceAccounts: [ns/sa], namespaces: []}")
    found(result, "spec.rules[0].from[0].source", "Cannot set serviceAccounts with namespaces or principals")


def test_service_accounts_may_be_split_across_sources():
    assert load("rules:\n- from:\n  - source: {serviceAccounts: [ns/sa]}\n  - source: {namespaces: [ns]}").ok


def test_a_condition_needs_a_key_and_values():
    found(load("rules:\n- when: [{key: source.ip}]"), "spec.rules[0].when[0]", "needs values or notValues")
    found(load("rules:\n- when: [{values: [a]}]"), "spec.rules[0].when[0].key", "Required value")
    found(load("rules:\n- when: [{key: '', values: [a]}]"), "spec.rules[0].when[0].key", "key must not be empty")


def test_every_problem_is_reported_at_once():
    result = load("action: DENY\nrules:\n- from: [{source: {ipBlocks: [bad]}}]\n  to: [{operation: {ports: [x]}}]")
    fields = {d.field for d in result.errors}
    assert {"spec.rules[0].from[0].source.ipBlocks[0]", "spec.rules[0].to[0].operation.ports[0]"} <= fields


# The DENY-with-HTTP-attributes warning.


@pytest.mark.parametrize(
    "rule",
    [
        "to: [{operation: {methods: [GET]}}]",
        "from: [{source: {requestPrincipals: ['*']}}]",
        "from: [{source: {principals: [a]}}]\n  to: [{operation: {paths: [/x]}}]",
    ],
)
def test_deny_with_only_http_attributes_warns(rule):
    result = load(f"action: DENY\nrules:\n- {rule}")
    assert result.ok
    found(result, "spec.rules[0]", "denies all traffic to TCP ports", errors=False)


@pytest.mark.parametrize(
    "rule",
    [
        "to: [{operation: {methods: [GET], ports: ['8080']}}]",
        "from: [{source: {ipBlocks: [10.0.0.0/8]}}]",
        "when: [{key: 'request.headers[x]', values: [a]}]",
    ],
)
def test_deny_rules_with_tcp_attributes_do_not_warn(rule):
    result = load(f"action: DENY\nrules:\n- {rule}")
    assert result.ok
    assert not result.warnings


def test_allow_with_http_attributes_does_not_warn():
    assert not load("rules:\n- to: [{operation: {methods: [GET]}}]").warnings


@pytest.mark.parametrize(("value", "ok"), [("true", True), ("1", True), ("F", True), ("False", True), ("yes", False)])
def test_dry_run_takes_the_spellings_istio_parses_as_booleans(value, ok):
    result = load("action: ALLOW\nrules: [{}]", annotations={"istio.io/dry-run": value})
    assert result.ok is ok, [d.format() for d in result.diagnostics]
    if not ok:
        found(result, "metadata.annotations['istio.io/dry-run']", "must be 'true' or 'false'")
