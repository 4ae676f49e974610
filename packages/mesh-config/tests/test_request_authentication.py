"""RequestAuthentication: the typed spec, the CRD rules and Istio's webhook rules for JWT rules."""

import json
import textwrap

import pytest
from hypothesis import given
from hypothesis import strategies as st

import mesh_config
from mesh_config.security.request_authentication import JwtPresence, JwtRule, RequestAuthentication

FULL = """
selector:
  matchLabels: {app: httpbin}
jwtRules:
- issuer: https://accounts.example.com
  audiences: [httpbin, "api.example.com"]
  jwksUri: https://accounts.example.com/.well-known/jwks.json
  fromHeaders:
  - {name: x-jwt-assertion, prefix: "Bearer "}
  fromParams: [token]
  fromCookies: [session]
  outputPayloadToHeader: x-jwt-payload
  forwardOriginalToken: true
  outputClaimToHeaders:
  - {header: x-sub, claim: sub}
  timeout: 5s
  spaceDelimitedClaims: [custom_scope]
  presence: REQUIRED
- issuer: inline
  jwks: '{"keys": [{"kty": "EC", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
    "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0", "kid": "k1"}]}'
"""

RSA_KEY = {"kty": "RSA", "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4", "e": "AQAB", "kid": "r1"}


def load(spec, *, version="v1"):
    text = (
        f"apiVersion: security.istio.io/{version}\nkind: RequestAuthentication\n"
        "metadata: {name: jwt, namespace: ns}\n"
        f"spec:\n{textwrap.indent(textwrap.dedent(spec).strip() or '{}', '  ')}\n"
    )
    return mesh_config.load_text(text)


def load_rule(**rule):
    return load(f"jwtRules:\n- {json.dumps(rule)}")


def messages(result, field, *, errors=True):
    pool = result.errors if errors else result.warnings
    return [d.message for d in pool if d.field == field]


RULE = "spec.jwtRules[0]"


def test_a_full_policy_is_accepted_as_typed_values():
    result = load(FULL)
    assert result.ok, [d.format() for d in result.diagnostics]
    assert not result.warnings
    spec = result.resources[0].spec
    assert isinstance(spec, RequestAuthentication)
    rule = spec.jwt_rules[0]
    assert rule.jwks_uri == "https://accounts.example.com/.well-known/jwks.json"
    assert rule.from_headers[0].prefix == "Bearer "
    assert rule.timeout == mesh_config.Duration.parse("5s")
    assert rule.presence is JwtPresence.REQUIRED
    assert spec.jwt_rules[1].presence is JwtPresence.OPTIONAL


@pytest.mark.parametrize("version", ["v1", "v1beta1"])
def test_every_served_version_is_accepted(version):
    assert load(FULL, version=version).ok


def test_an_unserved_version_is_refused():
    result = load(FULL, version="v1alpha1")
    assert not result.ok
    assert any("v1alpha1" in d.message for d in result.errors)


def test_a_full_policy_round_trips_through_yaml():
    first = load(FULL.replace("  timeout: 5s\n", "")).resources
    again = mesh_config.load_text(mesh_config.to_yaml(first))
    assert again.ok
    assert again.resources == first


def test_a_timeout_round_trips_through_yaml():
    first = load_rule(issuer="a", timeout="5s").resources
    assert mesh_config.load_text(mesh_config.to_yaml(first)).resources == first


def test_the_protobuf_spelling_jwks_uri_is_the_same_field():
    result = load_rule(issuer="a", jwks_uri="https://a.example.com/jwks")
    assert result.ok
    rule = result.resources[0].spec.jwt_rules[0]
    assert rule == JwtRule(issuer="a", jwks_uri="https://a.example.com/jwks")
    assert "jwksUri: https://a.example.com/jwks" in mesh_config.to_yaml(result.resources)
    assert mesh_config.load_text(mesh_config.to_yaml(result.resources)).resources == result.resources


@pytest.mark.parametrize(
    "spec",
    [
        "selector: {matchLabels: {app: a}}\ntargetRef: {kind: Service, name: a}",
        "targetRef: {kind: Service, name: a}\ntargetRefs: [{kind: Service, name: b}]",
    ],
)
def test_only_one_way_to_choose_workloads(spec):
    assert messages(load(spec), "spec") == ['Invalid value: "object": only one of targetRefs or selector can be set']


def test_target_refs_are_checked():
    result = load(
        "targetRefs:\n- {kind: Service, name: a, namespace: other}\n- {group: apps, kind: Deployment, name: b}"
    )
    assert "cross namespace referencing" in messages(result, "spec.targetRefs[0].namespace")[0]
    assert "apps/Deployment is not supported" in messages(result, "spec.targetRefs[1]")[0]
    assert messages(load("targetRef: {kind: Service}"), "spec.targetRef.name") == ["Required value"]


# The CRD layer.


def test_only_one_of_jwks_and_jwks_uri():
    jwks = json.dumps({"keys": [RSA_KEY]})
    for extra in ({"jwks": jwks}, {"jwks_uri": "https://b.example.com/k"}):
        result = load_rule(issuer="a", jwksUri="https://a.example.com/k", **extra)
        assert messages(result, RULE) == ['Invalid value: "object": only one of jwks or jwksUri can be set']


@pytest.mark.parametrize("field", ["jwksUri", "jwks_uri"])
@pytest.mark.parametrize(
    "uri", ["ftp://a.example.com/jwks", "a.example.com/jwks", "/jwks", "http://a b/", "https:\x08x"]
)
def test_jwks_uri_needs_an_http_scheme(field, uri):
    result = load_rule(issuer="a", **{field: uri})
    assert messages(result, f"{RULE}.{field}") == ['Invalid value: "string": url must have scheme http:// or https://']


@pytest.mark.parametrize("uri", ["HTTPS://A.example.com/jwks", "http://[::1]:8080/k", "https://u@a.example.com/k?x#y"])
def test_jwks_uri_accepts_urls_as_go_parses_them(uri):
    assert load_rule(issuer="a", jwksUri=uri).ok


def test_jwks_uri_length_limits():
    result = load_rule(issuer="a", jwksUri="https://a.example.com/" + "x" * 2048)
    assert messages(result, f"{RULE}.jwksUri") == ["in body may not be longer than 2048"]
    assert "at least 1 chars" in messages(load_rule(issuer="a", jwksUri=""), f"{RULE}.jwksUri")[0]


@pytest.mark.parametrize("field", ["audiences", "fromParams", "fromCookies", "spaceDelimitedClaims"])
def test_list_items_may_not_be_empty(field):
    result = load_rule(issuer="a", **{field: ["ok", ""]})
    assert messages(result, f"{RULE}.{field}[1]") == ["in body should be at least 1 chars long"]


def test_an_empty_issuer_is_refused_by_the_schema():
    result = load_rule(issuer="", jwksUri="https://a.example.com/k")
    assert messages(result, f"{RULE}.issuer") == ["in body should be at least 1 chars long"]


def test_at_most_64_space_delimited_claims():
    result = load_rule(issuer="a", spaceDelimitedClaims=[f"c{i}" for i in range(65)])
    assert messages(result, f"{RULE}.spaceDelimitedClaims") == ["in body should have at most 64 items"]


def test_from_headers_need_a_name():
    assert messages(load_rule(issuer="a", fromHeaders=[{"prefix": "x"}]), f"{RULE}.fromHeaders[0].name") == [
        "Required value"
    ]
    assert messages(load_rule(issuer="a", fromHeaders=[{"name": ""}]), f"{RULE}.fromHeaders[0].name") == [
        "in body should be at least 1 chars long"
    ]


@pytest.mark.parametrize(
    ("entry", "field", "message"),
    [
        ({"header": "x-a"}, "claim", "Required value"),
        ({"claim": "sub"}, "header", "Required value"),
        ({"header": "x-a", "claim": ""}, "claim", "in body should be at least 1 chars long"),
        ({"header": "", "claim": "sub"}, "header", "in body should be at least 1 chars long"),
        ({"header": ":authority", "claim": "sub"}, "header", "in body should match '^[-_A-Za-z0-9]+$'"),
        ({"header": "x a", "claim": "sub"}, "header", "in body should match '^[-_A-Za-z0-9]+$'"),
    ],
)
def test_claims_to_headers(entry, field, message):
    result = load_rule(issuer="a", outputClaimToHeaders=[entry])
    assert messages(result, f"{RULE}.outputClaimToHeaders[0].{field}") == [message]


def test_presence_is_an_enum():
    result = load_rule(issuer="a", presence="MANDATORY")
    assert messages(result, f"{RULE}.presence")[0].startswith('Unsupported value: "MANDATORY"')


# Timeouts: the CRD wants at least 1ms, Istio whole milliseconds.


@given(st.integers(1, 10**7))
def test_whole_millisecond_timeouts_are_accepted(millis):
    assert load_rule(issuer="a", timeout=f"{millis}ms").ok


@given(st.integers(0, 999_999))
def test_timeouts_under_a_millisecond_are_refused(nanos):
    result = load_rule(issuer="a", timeout=f"{nanos}ns")
    assert messages(result, f"{RULE}.timeout") == ['Invalid value: "string": must be a valid duration greater than 1ms']


@given(st.integers(1, 10**6).filter(lambda micros: micros % 1000))
def test_timeouts_finer_than_a_millisecond_are_refused(micros):
    result = load_rule(issuer="a", timeout=f"{1000 + micros}us")
    assert "whole number of milliseconds" in messages(result, f"{RULE}.timeout")[0]


def test_negative_and_unparsable_timeouts_are_refused():
    assert messages(load_rule(issuer="a", timeout="-1s"), f"{RULE}.timeout")
    assert messages(load_rule(issuer="a", timeout="apple"), f"{RULE}.timeout")


# Istio's webhook layer.


def test_issuer_or_jwks_uri_is_required():
    assert messages(load_rule(audiences=["a"]), RULE) == ["issuer or jwksUri must be set"]
    assert load_rule(jwksUri="https://a.example.com/k").ok
    assert load_rule(jwks_uri="https://a.example.com/k").ok


@pytest.mark.parametrize(
    ("uri", "problem"),
    [("https:///jwks", "has no host"), ("https:a.example.com", "has no host"), ("https://a:0/k", "port 0")],
)
def test_jwks_uri_needs_a_host_and_a_real_port(uri, problem):
    found = messages(load_rule(issuer="a", jwksUri=uri), f"{RULE}.jwksUri")
    assert found
    assert problem in found[0]
    assert repr(uri) in found[0]


@given(
    st.sampled_from(["http", "https"]),
    st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z][a-z0-9-]{0,20}){0,3}", fullmatch=True),
    st.integers(1, 65535),
)
def test_http_urls_with_a_host_and_port_are_accepted(scheme, host, port):
    assert load_rule(issuer="a", jwksUri=f"{scheme}://{host}:{port}/jwks.json").ok


@given(st.integers(65536, 10**9))
def test_ports_beyond_65535_are_refused(port):
    assert not load_rule(issuer="a", jwksUri=f"https://a.example.com:{port}/k").ok


@pytest.mark.parametrize(
    ("jwks", "problem"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"keys": {}}', '"keys" must be a list'),
        ('{"keys": [1]}', "jwks key 0 must be a JSON object"),
        ('{"keys": [{"n": "AQAB"}]}', 'has no "kty"'),
        ('{"keys": [{"kty": "DSA"}]}', "'DSA'; supported"),
        ('{"keys": [{"kty": "RSA", "e": "AQAB"}]}', 'needs the member "n"'),
        ('{"keys": [{"kty": "RSA", "n": "A", "e": "AQAB"}]}', '"n" is not base64url'),
        ('{"keys": [{"kty": "RSA", "n": "AQ!B", "e": "AQAB"}]}', '"n" is not base64url'),
        ('{"keys": [{"kty": "EC", "crv": "P-999", "x": "AQAB", "y": "AQAB"}]}', "curve"),
        ('{"keys": [{"kty": "oct"}]}', 'needs the member "k"'),
        ('{"keys": [{"kty": "oct", "k": "AQAB", "kid": 7}]}', '"kid" must be a string'),
        ('{"kty": "OKP", "crv": "Ed25519"}', 'needs the member "x"'),
        ('{"keys": [{"kty": "RSA", "n": "AQAB", "e": NaN}]}', "not valid JSON"),
    ],
)
def test_inline_jwks_must_parse(jwks, problem):
    found = messages(load_rule(issuer="a", jwks=jwks), f"{RULE}.jwks")
    assert any(problem in message for message in found), found


def test_a_single_key_and_a_key_set_are_both_accepted():
    assert load_rule(issuer="a", jwks=json.dumps(RSA_KEY)).ok
    assert load_rule(issuer="a", jwks=json.dumps({"keys": [RSA_KEY, {"kty": "oct", "k": "c2VjcmV0"}]})).ok


def test_private_keys_and_empty_sets_warn():
    private = dict(RSA_KEY, d="AQAB", p="AQAB")
    result = load_rule(issuer="a", jwks=json.dumps({"keys": [private]}))
    assert result.ok
    assert 'private key material ("d", "p")' in messages(result, f"{RULE}.jwks", errors=False)[0]
    empty = load_rule(issuer="a", jwks='{"keys": []}')
    assert empty.ok
    assert "has no keys" in messages(empty, f"{RULE}.jwks", errors=False)[0]


def test_header_names_envoy_cannot_use():
    result = load_rule(issuer="a", fromHeaders=[{"name": "x\nb"}], outputPayloadToHeader="bad header")
    assert "NUL, CR or LF" in messages(result, f"{RULE}.fromHeaders[0].name")[0]
    assert "not a valid HTTP header name" in messages(result, f"{RULE}.outputPayloadToHeader", errors=False)[0]
    assert load_rule(issuer="a", fromHeaders=[{"name": "x-token", "prefix": "Bearer "}]).ok


def test_every_rule_and_problem_is_reported():
    result = load(
        """
        jwtRules:
        - {audiences: [""]}
        - {issuer: b, jwksUri: "ftp://b"}
        """
    )
    fields = {d.field for d in result.errors}
    assert {RULE, f"{RULE}.audiences[0]", "spec.jwtRules[1].jwksUri"} <= fields
