"""AuthorizationPolicy -> Envoy RBAC: a table of rules and the principals and permissions they become, the
filter order, dry-run, TCP variants and trust domain aliases; everything accepted by a real Envoy."""

from __future__ import annotations

import textwrap

import attrs
import pytest
from envoy.config.rbac.v3 import rbac_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac_pb2
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as network_rbac_pb2
from google.protobuf import json_format

from mesh_config import PushContext, default_mesh_config, load_text
from mesh_config.security import AuthorizationCondition, AuthorizationRule
from mesh_model import InMemoryRegistry, Protocol, Proxy, Service, ServicePort
from mesh_xds import CLUSTER_TYPE, references
from mesh_xds.generate import GenerationContext, SidecarAddresses
from mesh_xds.generate.lds import build_listeners
from mesh_xds.generate.rbac import build_http_rbac, build_network_rbac, build_rbac, trust_domains
from mesh_xds.testing.envoy import validate_config
from mesh_xds.testing.render import static_bootstrap

JWT = "envoy.filters.http.jwt_authn"


def _policies(text: str):
    return load_text(textwrap.dedent(text), default_namespace="foo").raise_for_errors().resources


def _policy(rule: str, *, action: str = "ALLOW", name: str = "p"):
    return _policies(
        f"""\
        apiVersion: security.istio.io/v1
        kind: AuthorizationPolicy
        metadata: {{name: {name}, namespace: foo}}
        spec:
          action: {action}
          rules:
          - {rule}
        """
    )


def _dict(message) -> dict:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def _rules(policies, action=rbac_pb2.RBAC.ALLOW, *, for_tcp=False, domains=("cluster.local",)) -> dict:
    built = build_rbac(policies, action, for_tcp=for_tcp, trust_domains=domains)
    assert built is not None
    rules, _ = built
    return _dict(rules).get("policies", {})


def _spiffe(name: dict) -> dict:
    return {"authenticated": {"principal_name": name}}


def _jwt(path: list[str], value: dict) -> dict:
    return {"metadata": {"filter": JWT, "path": [{"key": "payload"}, *({"key": k} for k in path)], "value": value}}


# One rule each: the AND terms of its principal (from ``from`` and ``when``) and of its permission (``to``).
PRINCIPALS = [
    (
        "from: [{source: {principals: [cluster.local/ns/a/sa/b]}}]",
        [{"or_ids": {"ids": [_spiffe({"exact": "spiffe://cluster.local/ns/a/sa/b"})]}}],
    ),
    ('from: [{source: {principals: ["*"]}}]', [{"or_ids": {"ids": [_spiffe({"safe_regex": {"regex": ".+"}})]}}]),
    (
        'from: [{source: {principals: ["cluster.local/ns/a/*"]}}]',
        [{"or_ids": {"ids": [_spiffe({"prefix": "spiffe://cluster.local/ns/a/"})]}}],
    ),
    (
        # CVE-2020-16844: a suffix under the spiffe:// prefix is a regex, not a suffix that includes the prefix.
        'from: [{source: {principals: ["*/ns/a/sa/b"]}}]',
        [{"or_ids": {"ids": [_spiffe({"safe_regex": {"regex": "spiffe://.*/ns/a/sa/b"}})]}}],
    ),
    (
        "from: [{source: {notPrincipals: [cluster.local/ns/a/sa/b]}}]",
        [{"not_id": {"or_ids": {"ids": [_spiffe({"exact": "spiffe://cluster.local/ns/a/sa/b"})]}}}],
    ),
    (
        'from: [{source: {namespaces: [bar, "te*"]}}]',
        [
            {
                "or_ids": {
                    "ids": [
                        _spiffe({"safe_regex": {"regex": ".*/ns/bar/.*"}}),
                        _spiffe({"safe_regex": {"regex": ".*/ns/te.*/.*"}}),
                    ]
                }
            }
        ],
    ),
    (
        # CVE-2026-39350: the dot of a service account name is escaped; a name alone is in the policy's namespace.
        "from: [{source: {serviceAccounts: [my.sa, other/app]}}]",
        [
            {
                "or_ids": {
                    "ids": [
                        _spiffe({"safe_regex": {"regex": r"spiffe://.+/ns/foo/(.+/|)sa/my\.sa(/.+)?"}}),
                        _spiffe({"safe_regex": {"regex": r"spiffe://.+/ns/other/(.+/|)sa/app(/.+)?"}}),
                    ]
                }
            }
        ],
    ),
    (
        'from: [{source: {ipBlocks: ["10.0.0.0/8", 192.168.1.1], notRemoteIpBlocks: ["2001:db8::/32"]}}]',
        [
            {"not_id": {"or_ids": {"ids": [{"remote_ip": {"address_prefix": "2001:db8::", "prefix_len": 32}}]}}},
            {
                "or_ids": {
                    "ids": [
                        {"direct_remote_ip": {"address_prefix": "10.0.0.0", "prefix_len": 8}},
                        {"direct_remote_ip": {"address_prefix": "192.168.1.1", "prefix_len": 32}},
                    ]
                }
            },
        ],
    ),
    (
        "from: [{source: {requestPrincipals: [https://accounts.example.com/alice]}}]",
        [
            {
                "and_ids": {
                    "ids": [
                        _jwt(["iss"], {"string_match": {"exact": "https://accounts.example.com"}}),
                        _jwt(["sub"], {"string_match": {"exact": "alice"}}),
                    ]
                }
            }
        ],
    ),
    (
        'when: [{key: "request.headers[X-Tenant]", values: ["blue"], notValues: ["red*"]}]',
        [
            {"or_ids": {"ids": [{"header": {"name": "X-Tenant", "string_match": {"exact": "blue"}}}]}},
            {"not_id": {"or_ids": {"ids": [{"header": {"name": "X-Tenant", "string_match": {"prefix": "red"}}}]}}},
        ],
    ),
    (
        'when: [{key: "request.auth.claims[groups][team]", values: ["a"]}]',
        [
            _jwt(
                ["groups", "team"],
                {
                    "or_match": {
                        "value_matchers": [
                            {"string_match": {"exact": "a"}},
                            {"list_match": {"one_of": {"string_match": {"exact": "a"}}}},
                        ]
                    }
                },
            )
        ],
    ),
    (
        "when: [{key: source.namespace, notValues: [evil]}]",
        [{"not_id": {"or_ids": {"ids": [_spiffe({"safe_regex": {"regex": ".*/ns/evil/.*"}})]}}}],
    ),
]

PERMISSIONS = [
    (
        "to: [{operation: {hosts: [Example.com]}}]",
        [
            {
                "or_rules": {
                    "rules": [
                        {
                            "header": {
                                "name": ":authority",
                                "string_match": {"exact": "Example.com", "ignore_case": True},
                            }
                        },
                        {
                            "header": {
                                "name": ":authority",
                                "string_match": {"safe_regex": {"regex": r"(?i)Example\.com:[0-9]+"}},
                            }
                        },
                    ]
                }
            }
        ],
    ),
    (
        "to: [{operation: {methods: [GET, HEAD]}}]",
        [
            {
                "or_rules": {
                    "rules": [
                        {"header": {"name": ":method", "string_match": {"exact": "GET"}}},
                        {"header": {"name": ":method", "string_match": {"exact": "HEAD"}}},
                    ]
                }
            }
        ],
    ),
    (
        'to: [{operation: {paths: [/exact, "/prefix/*", "*.png", "*"]}}]',
        [
            {
                "or_rules": {
                    "rules": [
                        {"url_path": {"path": {"exact": "/exact"}}},
                        {"url_path": {"path": {"prefix": "/prefix/"}}},
                        {"url_path": {"path": {"suffix": ".png"}}},
                        {"url_path": {"path": {"safe_regex": {"regex": ".+"}}}},
                    ]
                }
            }
        ],
    ),
    (
        'to: [{operation: {paths: ["/store/{*}/items/{**}"]}}]',
        [
            {
                "or_rules": {
                    "rules": [
                        {
                            "uri_template": {
                                "name": "uri-template",
                                "typed_config": {
                                    "@type": "type.googleapis.com/envoy.extensions.path.match.uri_template.v3."
                                    "UriTemplateMatchConfig",
                                    "path_template": "/store/*/items/**",
                                },
                            }
                        }
                    ]
                }
            }
        ],
    ),
    (
        'to: [{operation: {ports: ["8080"], notPaths: ["/admin*"]}}]',
        [
            {"not_rule": {"or_rules": {"rules": [{"url_path": {"path": {"prefix": "/admin"}}}]}}},
            {"or_rules": {"rules": [{"destination_port": 8080}]}},
        ],
    ),
    (
        'when: [{key: destination.port, values: ["9080"]}, {key: connection.sni, values: ["*.example.com"]}]',
        [
            {"or_rules": {"rules": [{"destination_port": 9080}]}},
            {"or_rules": {"rules": [{"requested_server_name": {"suffix": ".example.com"}}]}},
        ],
    ),
]


@pytest.mark.parametrize(("rule", "expected"), PRINCIPALS, ids=[rule for rule, _ in PRINCIPALS])
def test_rule_sources_and_conditions_become_principals(rule, expected):
    policy = _rules(_policy(rule))["ns[foo]-policy[p]-rule[0]"]
    assert policy["principals"] == [{"and_ids": {"ids": expected}}]
    assert policy["permissions"] == [{"and_rules": {"rules": [{"any": True}]}}]


@pytest.mark.parametrize(("rule", "expected"), PERMISSIONS, ids=[rule for rule, _ in PERMISSIONS])
def test_rule_operations_and_conditions_become_permissions(rule, expected):
    policy = _rules(_policy(rule))["ns[foo]-policy[p]-rule[0]"]
    assert policy["permissions"] == [{"and_rules": {"rules": expected}}]
    assert policy["principals"] == [{"and_ids": {"ids": [{"any": True}]}}]


def test_each_from_and_to_entry_is_one_alternative():
    rule = "{from: [{source: {namespaces: [a]}}, {source: {namespaces: [b]}}], to: [{operation: {ports: ['1']}}]}"
    policy = _rules(_policy(rule))["ns[foo]-policy[p]-rule[0]"]
    assert len(policy["principals"]) == 2
    assert len(policy["permissions"]) == 1


def test_allow_without_rules_allows_nothing_and_an_empty_rule_allows_everything():
    policies = _policies(
        """\
        apiVersion: security.istio.io/v1
        kind: AuthorizationPolicy
        metadata: {name: nothing, namespace: foo}
        spec: {}
        ---
        apiVersion: security.istio.io/v1
        kind: AuthorizationPolicy
        metadata: {name: everything, namespace: bar}
        spec: {rules: [{}]}
        """
    )
    rules = _rules(policies)
    assert rules["ns[foo]-policy[nothing]-rule[0]"] == {
        "permissions": [{"not_rule": {"any": True}}],
        "principals": [{"not_id": {"any": True}}],
    }
    assert rules["ns[bar]-policy[everything]-rule[0]"] == {
        "permissions": [{"and_rules": {"rules": [{"any": True}]}}],
        "principals": [{"and_ids": {"ids": [{"any": True}]}}],
    }


def test_filters_come_in_istio_order_audit_deny_allow_and_custom_is_left_to_ext_authz():
    policies = [
        *_policy("{}", name="allow"),
        *_policy("{}", action="DENY", name="deny"),
        *_policy("{}", action="AUDIT", name="audit"),
        *_policies(
            """\
            apiVersion: security.istio.io/v1
            kind: AuthorizationPolicy
            metadata: {name: custom, namespace: foo}
            spec: {action: CUSTOM, provider: {name: authz}, rules: [{}]}
            """
        ),
    ]
    actions = []
    for http_filter in build_http_rbac(policies):
        config = http_rbac_pb2.RBAC()
        assert http_filter.name == "envoy.filters.http.rbac"
        assert http_filter.typed_config.Unpack(config)
        actions.append((rbac_pb2.RBAC.Action.Name(config.rules.action), sorted(config.rules.policies)))
    assert actions == [
        ("LOG", ["ns[foo]-policy[audit]-rule[0]"]),
        ("DENY", ["ns[foo]-policy[deny]-rule[0]"]),
        ("ALLOW", ["ns[foo]-policy[allow]-rule[0]"]),
    ]
    assert build_http_rbac([]) == []


def test_dry_run_policies_are_shadow_rules_that_never_enforce():
    policies = _policies(
        """\
        apiVersion: security.istio.io/v1
        kind: AuthorizationPolicy
        metadata: {name: trial, namespace: foo, annotations: {istio.io/dry-run: "true"}}
        spec: {action: DENY, rules: [{to: [{operation: {paths: [/admin]}}]}]}
        """
    )
    (http_filter,) = build_http_rbac(policies)
    config = http_rbac_pb2.RBAC()
    http_filter.typed_config.Unpack(config)
    assert not config.HasField("rules")
    assert list(config.shadow_rules.policies) == ["ns[foo]-policy[trial]-rule[0]"]
    assert config.shadow_rules.action == rbac_pb2.RBAC.DENY
    assert config.shadow_rules_stat_prefix == "istio_dry_run_deny_"


def _network(policies) -> dict:
    (network_filter,) = build_network_rbac(policies)
    config = network_rbac_pb2.RBAC()
    assert network_filter.name == "envoy.filters.network.rbac"
    assert network_filter.typed_config.Unpack(config)
    assert config.stat_prefix == "tcp."
    return _dict(config.rules).get("policies", {})


def test_on_tcp_an_allow_rule_that_needs_http_never_matches():
    rule = "{from: [{source: {namespaces: [a]}}], to: [{operation: {methods: [GET]}}]}"
    assert _network(_policy(rule)) == {}  # nothing is allowed: every TCP connection is denied
    assert "ns[foo]-policy[p]-rule[0]" in _rules(_policy(rule))


def test_on_tcp_a_deny_rule_drops_its_http_attributes_and_denies_more():
    rule = "to: [{operation: {methods: [GET], ports: ['5432']}}]"
    policy = _network(_policy(rule, action="DENY"))["ns[foo]-policy[p]-rule[0]"]
    assert policy["permissions"] == [{"and_rules": {"rules": [{"or_rules": {"rules": [{"destination_port": 5432}]}}]}}]
    only_http = _network(_policy("to: [{operation: {paths: [/admin]}}]", action="DENY"))
    assert only_http["ns[foo]-policy[p]-rule[0]"]["permissions"] == [{"and_rules": {"rules": [{"any": True}]}}]


def test_principals_are_expanded_to_every_trust_domain_alias():
    mesh = attrs.evolve(default_mesh_config(), trust_domain="new.td", trust_domain_aliases=("old.td",))
    domains = trust_domains(mesh)
    assert domains == ("new.td", "old.td")
    rule = 'from: [{source: {principals: [cluster.local/ns/a/sa/b, other.td/ns/a/sa/c, "*/ns/a/sa/d"]}}]'
    policy = _rules(_policy(rule), domains=domains)["ns[foo]-policy[p]-rule[0]"]
    names = [
        entry["authenticated"]["principal_name"]
        for entry in policy["principals"][0]["and_ids"]["ids"][0]["or_ids"]["ids"]
    ]
    assert names == [
        {"exact": "spiffe://new.td/ns/a/sa/b"},
        {"exact": "spiffe://old.td/ns/a/sa/b"},
        {"exact": "spiffe://other.td/ns/a/sa/c"},  # a foreign trust domain stays as written
        {"safe_regex": {"regex": "spiffe://.*/ns/a/sa/d"}},
    ]


def test_a_rule_with_an_unknown_attribute_is_skipped_the_others_kept():
    (policy,) = _policy("{}", action="DENY")
    unknown = AuthorizationRule(when=(AuthorizationCondition(key="destination.labels[app]", values=("x",)),))
    policy = attrs.evolve(policy, spec=attrs.evolve(policy.spec, rules=(unknown, AuthorizationRule())))
    assert list(_rules([policy], rbac_pb2.RBAC.DENY)) == ["ns[foo]-policy[p]-rule[1]"]


def test_every_translation_is_accepted_by_envoy_on_http_and_tcp_chains():
    """All the rules of the tables on one workload: Envoy loads the HTTP and the TCP RBAC filters."""
    rules = "\n".join(f"  - {rule}" for rule, _ in [*PRINCIPALS, *PERMISSIONS])
    text = (
        textwrap.dedent(
            """\
        apiVersion: security.istio.io/v1
        kind: PeerAuthentication
        metadata: {name: plain, namespace: foo}
        spec: {mtls: {mode: DISABLE}}
        ---
        apiVersion: security.istio.io/v1
        kind: AuthorizationPolicy
        metadata: {name: deny, namespace: foo}
        spec:
          action: DENY
          rules:
        """
        )
        + rules
        + "\n"
        + textwrap.dedent(
            """\
        ---
        apiVersion: security.istio.io/v1
        kind: AuthorizationPolicy
        metadata: {name: allow, namespace: foo}
        spec:
          rules:
        """
        )
        + rules
        + "\n"
    )
    resources = load_text(text, default_namespace="foo").raise_for_errors().resources
    registry = InMemoryRegistry()
    ports = [ServicePort("http", 8080, Protocol.HTTP), ServicePort("tcp", 5432, Protocol.TCP)]
    registry.upsert_service(Service("app.foo.svc.cluster.local", "foo", ports=ports, selector={"app": "app"}))
    proxy = Proxy.parse(
        "sidecar~127.0.4.1~app.foo~foo.svc.cluster.local", {"NAMESPACE": "foo", "LABELS": {"app": "app"}}
    )
    addresses = SidecarAddresses(inbound="127.0.4.1", application="127.0.4.2", outbound="127.0.4.3")
    ctx = GenerationContext(proxy, PushContext.build(resources, registry), registry, addresses=addresses)
    listeners = [listener for listener in build_listeners(ctx) if listener.name.startswith("127.0.4.1_")]
    assert [listener.name for listener in listeners] == ["127.0.4.1_5432", "127.0.4.1_8080"]
    stubs = {ref.name for listener in listeners for ref in references(listener) if ref.type_url == CLUSTER_TYPE}
    validate_config(static_bootstrap(listeners=listeners, stub_clusters=sorted(stubs)), check=True)
