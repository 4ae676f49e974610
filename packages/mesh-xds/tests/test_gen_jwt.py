"""RequestAuthentication -> the jwt_authn filter: providers, where keys come from, token locations and outputs,
the requirement (a missing token is let through unless required), and Envoy's acceptance."""

from __future__ import annotations

import json
import logging
import textwrap

from envoy.extensions.filters.http.jwt_authn.v3 import config_pb2 as jwt_pb2
from google.protobuf import json_format

from mesh_config import PushContext, load_text
from mesh_model import InMemoryRegistry, Protocol, Proxy, Service, ServicePort
from mesh_xds import CLUSTER_TYPE, references
from mesh_xds.generate import GenerationContext, SidecarAddresses
from mesh_xds.generate.jwt import UNUSABLE_JWKS, build_jwt_filter, jwks_cluster
from mesh_xds.generate.lds import build_listeners
from mesh_xds.testing.envoy import validate_config
from mesh_xds.testing.render import static_bootstrap

JWKS = json.dumps(json.loads(UNUSABLE_JWKS))  # a valid public key set, written differently


def _resources(rules: str):
    text = textwrap.dedent(
        """\
        apiVersion: security.istio.io/v1
        kind: RequestAuthentication
        metadata: {name: jwt, namespace: foo}
        spec:
          jwtRules:
        """
    )
    return (
        load_text(text + textwrap.indent(textwrap.dedent(rules), "  "), default_namespace="foo")
        .raise_for_errors()
        .resources
    )


def _config(rules: str) -> dict:
    built = build_jwt_filter(_resources(rules))
    assert built is not None
    assert built.name == "envoy.filters.http.jwt_authn"
    config = jwt_pb2.JwtAuthentication()
    assert built.typed_config.Unpack(config)
    return json_format.MessageToDict(config, preserving_proto_field_name=True)


def test_a_rule_becomes_a_provider_whose_token_is_checked_if_present():
    config = _config(
        f"""\
        - issuer: https://accounts.example.com
          audiences: [shop, admin]
          jwks: '{JWKS}'
          fromHeaders: [{{name: x-jwt, prefix: "Bearer "}}]
          fromParams: [token]
          fromCookies: [session]
          forwardOriginalToken: true
          outputPayloadToHeader: x-jwt-payload
          outputClaimToHeaders: [{{header: x-sub, claim: sub}}]
          spaceDelimitedClaims: [roles]
        """
    )
    assert config["providers"] == {
        "origins-0": {
            "issuer": "https://accounts.example.com",
            "audiences": ["shop", "admin"],
            "local_jwks": {"inline_string": JWKS},
            "forward": True,
            "from_headers": [{"name": "x-jwt", "value_prefix": "Bearer "}],
            "from_params": ["token"],
            "from_cookies": ["session"],
            "forward_payload_header": "x-jwt-payload",
            "payload_in_metadata": "payload",
            "normalize_payload_in_metadata": {"space_delimited_claims": ["permission", "roles", "scope"]},
            "claim_to_headers": [{"header_name": "x-sub", "claim_name": "sub"}],
        }
    }
    assert config["rules"] == [
        {
            "match": {"prefix": "/"},
            "requires": {"requires_any": {"requirements": [{"provider_name": "origins-0"}, {"allow_missing": {}}]}},
        }
    ]
    assert config["bypass_cors_preflight"] is True


def test_a_jwks_uri_is_fetched_by_envoy_through_the_outbound_cluster_of_its_host():
    config = _config(
        """\
        - {issuer: a, jwksUri: "https://keys.example.com/jwks.json", timeout: 2s}
        - {issuer: b, jwksUri: "http://keys.example.com:8080/jwks.json"}
        """
    )
    assert config["providers"]["origins-0"]["remote_jwks"] == {
        "http_uri": {
            "uri": "https://keys.example.com/jwks.json",
            "cluster": "outbound|443||keys.example.com",
            "timeout": "2s",
        },
        "cache_duration": "300s",
    }
    remote = config["providers"]["origins-1"]["remote_jwks"]["http_uri"]
    assert (remote["cluster"], remote["timeout"]) == ("outbound|8080||keys.example.com", "5s")
    assert jwks_cluster("http://keys.example.com/k") == "outbound|80||keys.example.com"


def test_an_issuer_without_keys_is_refused_rather_than_trusted(caplog):
    with caplog.at_level(logging.WARNING, logger="mesh_xds.generate.jwt"):
        config = _config("- issuer: https://unknown.example.com\n")
    assert config["providers"]["origins-0"]["local_jwks"] == {"inline_string": UNUSABLE_JWKS}
    assert "https://unknown.example.com" in caplog.text


def test_several_issuers_accept_any_one_valid_token_and_refuse_invalid_ones():
    config = _config(
        f"""\
        - {{issuer: z-issuer, jwks: '{JWKS}'}}
        - {{issuer: a-issuer, jwks: '{JWKS}'}}
        """
    )
    assert [config["providers"][name]["issuer"] for name in ("origins-0", "origins-1")] == ["a-issuer", "z-issuer"]
    optional = [
        {"requires_any": {"requirements": [{"provider_name": name}, {"allow_missing": {}}]}}
        for name in ("origins-0", "origins-1")
    ]
    assert config["rules"][0]["requires"] == {
        "requires_any": {
            "requirements": [
                {"provider_name": "origins-0"},
                {"provider_name": "origins-1"},
                {"requires_all": {"requirements": optional}},
            ]
        }
    }


def test_a_required_issuer_refuses_requests_without_its_token():
    config = _config(f"- {{issuer: a, jwks: '{JWKS}', presence: REQUIRED}}\n")
    assert config["rules"][0]["requires"] == {"provider_name": "origins-0"}


def test_no_rules_no_filter():
    assert build_jwt_filter([]) is None


def test_envoy_accepts_the_filter_in_an_inbound_listener():
    resources = _resources(
        f"""\
        - issuer: https://accounts.example.com
          jwks: '{JWKS}'
          fromHeaders: [{{name: x-jwt}}]
          outputClaimToHeaders: [{{header: x-sub, claim: sub}}]
        - {{issuer: remote, jwksUri: "https://keys.example.com/jwks.json"}}
        - {{issuer: nowhere}}
        """
    )
    registry = InMemoryRegistry()
    ports = [ServicePort("http", 8080, Protocol.HTTP)]
    registry.upsert_service(Service("app.foo.svc.cluster.local", "foo", ports=ports, selector={"app": "app"}))
    proxy = Proxy.parse(
        "sidecar~127.0.5.1~app.foo~foo.svc.cluster.local", {"NAMESPACE": "foo", "LABELS": {"app": "app"}}
    )
    addresses = SidecarAddresses(inbound="127.0.5.1", application="127.0.5.2", outbound="127.0.5.3")
    ctx = GenerationContext(proxy, PushContext.build(resources, registry), registry, addresses=addresses)
    listeners = [listener for listener in build_listeners(ctx) if listener.name == "127.0.5.1_8080"]
    assert listeners
    stubs = {ref.name for ref in references(listeners[0]) if ref.type_url == CLUSTER_TYPE}
    stubs.add("outbound|443||keys.example.com")
    validate_config(static_bootstrap(listeners=listeners, stub_clusters=sorted(stubs)), check=True)
