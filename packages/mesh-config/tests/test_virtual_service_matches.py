"""VirtualService matches: HTTP match requests, TLS and TCP routes, and unreachable rules (IST0130/IST0131)."""

import string
import textwrap

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mesh_config import load_text

DESTINATION = "route: [{destination: {host: reviews}}]"


def load(spec):
    body = textwrap.indent(textwrap.dedent(spec), "  ")
    return load_text(f"apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: vs\nspec:\n{body}")


def load_match(match, *, gateways="[]"):
    """A VirtualService with one HTTP route matching ``match`` (a YAML flow mapping)."""
    return load(f"hosts: [reviews]\ngateways: {gateways}\nhttp: [{{match: [{match}], {DESTINATION}}}]\n")


def describe(result):
    return "\n".join(d.format() for d in result.diagnostics) or "no diagnostics"


def assert_error(result, field, *fragments):
    found = [d for d in result.errors if d.field == field and all(f in d.message for f in fragments)]
    assert found, f"no error at {field} with {fragments}:\n{describe(result)}"
    assert not result.resources


def warnings_of(result):
    return [(d.field, d.message) for d in result.warnings]


def assert_clean(result):
    assert not result.diagnostics, describe(result)


MATCH = "spec.http[0].match[0]"


# -- string matches


def test_an_empty_uri_prefix_matches_everything_but_other_empty_prefixes_are_refused():
    assert_clean(load_match("{uri: {prefix: ''}}"))
    for field in ("scheme", "method", "authority"):
        assert_error(load_match(f"{{{field}: {{prefix: ''}}}}"), f"{MATCH}.{field}.prefix", "should not be empty")
    assert_error(load_match("{headers: {x: {prefix: ''}}}"), f"{MATCH}.headers.x.prefix", '"headers": prefix')
    assert_error(load_match("{queryParams: {q: {prefix: ''}}}"), f"{MATCH}.queryParams.q.prefix", "queryParams")


def test_an_empty_exact_match_and_an_empty_match_are_meaningful():
    assert_clean(load_match("{headers: {x-empty: {exact: ''}, x-present: {}}, uri: {exact: ''}}"))


def test_an_empty_regex_is_refused_everywhere():
    for field in ("uri", "scheme", "method", "authority"):
        assert_error(load_match(f"{{{field}: {{regex: ''}}}}"), f"{MATCH}.{field}.regex", "regex string match")


@pytest.mark.parametrize("field", ["uri", "authority", "headers: {x", "queryParams: {q", "withoutHeaders: {x"])
def test_regexes_must_compile_with_re2(field):
    closing = "}" if "{" in field else ""
    result = load_match(f"{{{field}: {{regex: 'a(?=b)'}}{closing}}}")
    path = f"{MATCH}.{field.replace(': {', '.')}.regex"
    assert_error(result, path, "a(?=b)")
    assert_clean(load_match(f"{{{field}: {{regex: '(?P<name>a)+[0-9]{{2,3}}'}}{closing}}}"))


@given(length=st.integers(1000, 1100))
def test_regexes_are_at_most_1024_characters(length):
    result = load_match(f"{{uri: {{regex: '{'a' * length}'}}}}")
    if length <= 1024:
        assert_clean(result)
    else:
        assert_error(result, f"{MATCH}.uri.regex", "1024")


def test_a_without_headers_star_is_a_presence_match_not_a_regex():
    assert_clean(load_match("{withoutHeaders: {x-debug: {regex: '*'}}}"))
    assert_error(load_match("{headers: {x-debug: {regex: '*'}}}"), f"{MATCH}.headers.x-debug.regex", "'*'")


def test_only_one_kind_of_string_match_is_allowed():
    result = load_match("{uri: {exact: /a, prefix: /b}}")
    assert_error(result, f"{MATCH}.uri.prefix", "only one of")


# -- header names and JWT claims


@given(name=st.text(string.ascii_letters + string.digits + "-_.!#$%&'*+^`|~ :@/", min_size=1, max_size=12))
def test_header_names_are_http_tokens_or_pseudo_headers(name):
    result = load_match(f"{{headers: {{{name!r}: {{exact: v}}}}}}")
    token = all(c not in " :@/" for c in name)
    assert result.ok == (token or name in (":method", ":scheme", ":authority", ":path", ":status")), describe(result)


def test_jwt_claim_routing_is_for_gateways_only():
    claim = "{headers: {'@request.auth.claims.groups': {exact: admin}}}"
    result = load_match(claim)
    assert_error(result, f"{MATCH}.headers['@request.auth.claims.groups']", "only supported for gateway")
    result = load_match("{withoutHeaders: {'@request.auth.claims[a][b]': {exact: x}}}", gateways="[mesh, ns/gw]")
    assert_error(result, f"{MATCH}.withoutHeaders['@request.auth.claims[a][b]']", "found no gateways: [mesh ns/gw]")
    assert_clean(load_match(claim, gateways="[istio-system/ingress]"))


# -- source, port and gateway conditions


def test_source_labels_are_kubernetes_labels():
    assert_clean(load_match("{sourceLabels: {app.kubernetes.io/name: web, version: ''}}"))
    result = load_match("{sourceLabels: {'bad key': v, good: 'bad value'}}")
    assert_error(result, f"{MATCH}.sourceLabels['bad key']", 'invalid tag key: "bad key"')
    assert_error(result, f"{MATCH}.sourceLabels.good", 'invalid tag value: "bad value"')


def test_source_namespace_is_a_dns_label():
    assert_clean(load_match("{sourceNamespace: front-end}"))
    assert_error(load_match("{sourceNamespace: front_end}"), f"{MATCH}.sourceNamespace", "front_end is invalid")


@given(port=st.integers(0, 2**32 - 1))
def test_a_match_port_is_0_for_any_or_1_to_65535(port):
    result = load_match(f"{{port: {port}}}")
    assert result.ok == (port <= 65535), describe(result)


def test_match_gateways_are_gateway_names():
    result = load_match("{gateways: [ns/gw, 'ns/bad_gw']}", gateways="[ns/gw]")
    assert_error(result, f"{MATCH}.gateways[1]", '"bad_gw"')


# -- TLS routes


def tls(match, *, hosts="['*.example.com']", gateways="[]", route="[{destination: {host: a}}]"):
    return load(f"hosts: {hosts}\ngateways: {gateways}\ntls: [{{match: [{match}], route: {route}}}]\n")


def test_a_tls_route_needs_matches_with_sni_hosts_and_a_route():
    assert_clean(tls("{sniHosts: [a.example.com]}"))
    assert_error(load("hosts: [a.com]\ntls: [{route: [{destination: {host: a}}]}]"), "spec.tls[0].match", "Required")
    result = load("hosts: [a.com]\ntls: [{match: [], route: [{destination: {host: a}}]}]")
    assert_error(result, "spec.tls[0].match", "at least one match condition")
    assert_error(tls("{port: 443}"), "spec.tls[0].match[0].sniHosts", "Required")
    assert_error(tls("{sniHosts: []}"), "spec.tls[0].match[0].sniHosts", "at least one SNI host")
    assert_error(tls("{sniHosts: [a.example.com]}", route="[]"), "spec.tls[0].route", "TLS route is required")


def test_sni_hosts_are_within_the_virtual_service_hosts():
    assert_clean(tls("{sniHosts: ['*.a.example.com', b.example.com]}"))
    result = tls("{sniHosts: ['*.com', other.org]}")
    assert_error(
        result, "spec.tls[0].match[0].sniHosts[0]", 'SNI host "*.com" is not a compatible subset', "[*.example.com]"
    )
    assert_error(result, "spec.tls[0].match[0].sniHosts[1]", '"other.org"')


def test_an_ip_sni_host_only_warns():
    result = tls("{sniHosts: [10.0.0.1]}")
    assert result.ok
    assert warnings_of(result) == [
        (
            "spec.tls[0].match[0].sniHosts[0]",
            'using an IP address ("10.0.0.1") goes against SNI spec and most clients do not support this',
        )
    ]


def test_auto_passthrough_sni_names_are_allowed_on_gateways():
    hosts = "['outbound_.8080_._.a.example.com']"
    assert_clean(tls("{sniHosts: ['outbound_.8080_._.a.example.com']}", hosts=hosts, gateways="[ns/gw]"))
    result = tls("{sniHosts: [outbound_.x_._.a.example.com]}", hosts=hosts, gateways="[ns/gw]")
    assert_error(result, "spec.tls[0].match[0].sniHosts[0]", 'label "x" invalid')


def test_tls_and_tcp_match_conditions():
    result = tls("{sniHosts: [a.example.com], destinationSubnets: [10.0.0.0/33, 10.0.0.1], port: 70000}")
    assert_error(result, "spec.tls[0].match[0].destinationSubnets[0]", "10.0.0.0/33")
    assert_error(result, "spec.tls[0].match[0].port", "70000")
    match = "{sourceLabels: {'a b': c}, gateways: ['x/y_z']}"
    result = load(f"hosts: [db]\ntcp: [{{match: [{match}], route: [{{destination: {{host: db}}}}]}}]")
    assert_error(result, "spec.tcp[0].match[0].sourceLabels['a b']", "invalid tag key")
    assert_error(result, "spec.tcp[0].match[0].gateways[0]", '"y_z"')
    assert_error(load("hosts: [db]\ntcp: [{match: [{port: 3306}]}]"), "spec.tcp[0].route", "TCP route is required")


# -- unreachable rules and ineffective matches (IST0130, IST0131)


def routes(*matches):
    rules = "".join(f"- {{{m + ', ' if m else ''}{DESTINATION}}}\n" for m in matches)
    return load(f"hosts: [reviews]\nhttp:\n{rules}")


def test_rules_after_a_catch_all_are_unreachable():
    result = routes("", "match: [{uri: {prefix: /a}}]", "")
    assert result.ok
    assert warnings_of(result) == [
        ("spec.http[1].match[0]", "virtualService rule #1 not used (route without matches defined before)"),
        ("spec.http[2]", "virtualService rule #2 not used (only the last rule can have no matches)"),
    ]


def test_repeated_matches_are_ineffective_and_a_rule_of_repeats_is_unreachable():
    result = routes("name: first, match: [{uri: {exact: /a}}]", "match: [{name: again, uri: {exact: /a}}]")
    assert warnings_of(result) == [
        (
            "spec.http[1].match[0]",
            'virtualService rule #1 match "again" is not used (duplicate/overlapping match in rule "first")',
        ),
        ("spec.http[1]", "virtualService rule #1 not used (all matches used by prior rules)"),
    ]


def test_a_longer_prefix_after_a_shorter_one_is_ineffective():
    result = routes("match: [{uri: {prefix: /api}}]", "match: [{uri: {prefix: /api/v1}}]")
    assert warnings_of(result) == [
        (
            "spec.http[1].match[0]",
            "virtualService rule #1 match #0 of prefix /api/v1 is not used "
            "(duplicate/overlapping match in rule #0 of prefix /api on #0)",
        )
    ]
    assert_clean(routes("match: [{uri: {prefix: /api/v1}}]", "match: [{uri: {prefix: /api}}]"))
    assert_clean(routes("match: [{uri: {prefix: /api}, port: 80}]", "match: [{uri: {prefix: /api/v1}}]"))


def test_tcp_and_tls_rules_are_checked_for_repeats_too():
    result = load(
        "hosts: [db]\ntcp:\n- {match: [{port: 1}], route: [{destination: {host: db}}]}\n"
        "- {match: [{port: 1}], route: [{destination: {host: db}}]}\n"
    )
    assert ("spec.tcp[1]", "virtualService rule #1 not used (all matches used by prior rules)") in warnings_of(result)
