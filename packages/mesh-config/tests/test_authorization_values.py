"""AuthorizationPolicy: the values rules match on (IPs, ports, paths, service accounts, condition keys)."""

import ipaddress
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

import mesh_config


def load_rule(rule):
    """A policy with one rule, given as JSON-ready data (written as flow YAML)."""
    text = (
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: ns}\n"
        f"spec:\n  rules:\n  - {json.dumps(rule)}\n"
    )
    return mesh_config.load_text(text)


def source(**fields):
    return load_rule({"from": [{"source": fields}]})


def operation(**fields):
    return load_rule({"to": [{"operation": fields}]})


def condition(key, values=None, not_values=None):
    entry = {"key": key}
    if values is not None:
        entry["values"] = values
    if not_values is not None:
        entry["notValues"] = not_values
    return load_rule({"when": [entry]})


def messages(result, field):
    return [d.message for d in result.errors if d.field == field]


def warnings(result, field):
    return [d.message for d in result.warnings if d.field == field]


SOURCE = "spec.rules[0].from[0].source"
OPERATION = "spec.rules[0].to[0].operation"
WHEN = "spec.rules[0].when[0]"


# IP addresses and CIDR blocks.

GOOD_IPS = ["10.1.2.3", "10.1.0.0/16", "10.1.2.3/16", "0.0.0.0/0", "::1", "2001:db8::/32", "fe80::1%eth0"]
BAD_IPS = [
    "10.1.2",
    "010.1.2.3",
    "10.1.2.3/33",
    "10.1.0.0/016",
    "10.1.0.0/+8",
    "10.1.0.0/",
    "::1/129",
    "fe80::1%eth0/64",
]
IP_FIELDS = ["ipBlocks", "notIpBlocks", "remoteIpBlocks", "notRemoteIpBlocks"]


@pytest.mark.parametrize("field", IP_FIELDS)
def test_ip_blocks_accept_addresses_and_cidr_blocks(field):
    result = source(**{field: GOOD_IPS})
    assert result.ok, [d.format() for d in result.diagnostics]


@pytest.mark.parametrize("field", IP_FIELDS)
@pytest.mark.parametrize("value", BAD_IPS)
def test_ip_blocks_refuse_what_is_not_an_ip_or_block(field, value):
    found = messages(source(**{field: [value]}), f"{SOURCE}.{field}[0]")
    assert found
    assert repr(value) in found[0]


@pytest.mark.parametrize("key", ["source.ip", "remote.ip", "destination.ip"])
def test_ip_conditions_check_values_and_not_values(key):
    assert condition(key, GOOD_IPS, GOOD_IPS).ok
    result = condition(key, ["10.0.0.1", "nope"], ["10.0.0.0/99"])
    assert messages(result, f"{WHEN}.values[1]") == [f"{key}: 'nope' is not an IP address"]
    assert "prefix length 99" in messages(result, f"{WHEN}.notValues[0]")[0]


@given(st.ip_addresses())
def test_every_ip_address_is_accepted(address):
    assert source(ipBlocks=[str(address)]).ok


@given(st.ip_addresses(v=4), st.integers(0, 32))
def test_every_ipv4_block_is_accepted_host_bits_and_all(address, bits):
    assert source(ipBlocks=[f"{address}/{bits}"]).ok


@given(st.ip_addresses(v=6), st.integers(129, 999))
def test_prefix_lengths_longer_than_the_address_are_refused(address, bits):
    assert not source(ipBlocks=[f"{address}/{bits}"]).ok


@given(st.text(alphabet="0123456789abcdefxyz.:/%", max_size=20))
def test_ip_blocks_agree_with_the_ip_address_parser_on_plain_addresses(text):
    try:
        ipaddress.ip_address(text)
        is_address = True
    except ValueError:
        is_address = False
    if "/" not in text:
        assert source(ipBlocks=[text]).ok is (is_address and text != "")


# Ports.


@given(st.integers(0, 65535))
def test_every_port_number_is_accepted(port):
    assert operation(ports=[str(port)], notPorts=[str(port)]).ok
    assert condition("destination.port", [str(port)]).ok


@given(st.integers(65536, 10**12))
def test_port_numbers_above_65535_are_refused(port):
    result = operation(ports=[str(port)])
    assert messages(result, f"{OPERATION}.ports[0]") == [f"port '{port}' must be a number in the range 0..65535"]


@pytest.mark.parametrize("port", ["http", "+80", "-1", "8080 ", "80.0", "٨٠"])
def test_ports_are_decimal_digits(port):
    assert messages(operation(notPorts=[port]), f"{OPERATION}.notPorts[0]")
    assert messages(condition("destination.port", None, [port]), f"{WHEN}.notValues[0]")


# Paths and URI templates.


@pytest.mark.parametrize(
    "path", ["/exact", "/prefix/*", "*/suffix", "*", "/a/{*}/b", "/{**}/x/y", "/a/{*}/{**}", "/{*}/{*}"]
)
def test_supported_paths(path):
    assert operation(paths=[path], notPaths=[path]).ok, path


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("/{**}/a/{*}", "must be the last operator"),
        ("/{**}/{**}", "must be the last operator"),
        ("/a/{name}", "may appear only as"),
        ("/a/{*}b/c", "may appear only as"),
        ("/a/{}", "may appear only as"),
        ("/a/{*}/b c", "must be a literal"),
        ("/a//{*}", "must be a literal"),
        ("/*/{*}", "must be a literal"),
    ],
)
def test_unsupported_path_templates_are_refused(path, problem):
    for field in ("paths", "notPaths"):
        found = messages(operation(**{field: [path]}), f"{OPERATION}.{field}[0]")
        assert found
        assert problem in found[0]
        assert repr(path) in found[0]


# Service accounts.


@pytest.mark.parametrize("field", ["serviceAccounts", "notServiceAccounts"])
@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("", "must not be empty"),
        ("ns/*", "wildcards are not allowed"),
        ("a/b/c", "must be 'serviceAccount' or 'namespace/serviceAccount'"),
        ("/sa", "empty namespace"),
        ("ns/", "empty name"),
    ],
)
def test_service_account_formats(field, value, problem):
    found = messages(source(**{field: [value]}), f"{SOURCE}.{field}[0]")
    assert found
    assert problem in found[0]


def test_service_accounts_have_crd_limits():
    result = source(serviceAccounts=[f"sa{index}" for index in range(17)], notServiceAccounts=["n" * 321])
    assert messages(result, f"{SOURCE}.serviceAccounts") == ["in body should have at most 16 items"]
    assert messages(result, f"{SOURCE}.notServiceAccounts[0]") == ["in body may not be longer than 320"]


def test_service_account_conditions_use_the_same_format():
    assert condition("source.serviceAccount", ["ns/sa", "sa"]).ok
    assert messages(condition("source.serviceAccount", ["ns/sa/x"]), f"{WHEN}.values[0]")
    assert (
        "at most 16" in messages(condition("source.serviceAccount", [f"s{i}" for i in range(17)]), f"{WHEN}.values")[0]
    )


# Empty values.


@pytest.mark.parametrize(
    "field",
    [
        "principals",
        "notPrincipals",
        "requestPrincipals",
        "notRequestPrincipals",
        "namespaces",
        "notNamespaces",
        "trustDomains",
        "notTrustDomains",
        "ipBlocks",
        "remoteIpBlocks",
    ],
)
def test_source_values_may_not_be_empty(field):
    assert messages(source(**{field: ["ok", ""]}), f"{SOURCE}.{field}[1]") == ["value must not be empty"]


@pytest.mark.parametrize("field", ["hosts", "notHosts", "ports", "notPorts", "methods", "notMethods", "paths"])
def test_operation_values_may_not_be_empty(field):
    assert messages(operation(**{field: [""]}), f"{OPERATION}.{field}[0]") == ["value must not be empty"]


def test_condition_values_may_not_be_empty_whatever_the_key():
    assert messages(condition("request.headers[x]", ["a", ""]), f"{WHEN}.values[1]")
    assert messages(condition("connection.sni", None, [""]), f"{WHEN}.notValues[0]")


# Condition keys.


@pytest.mark.parametrize(
    "key",
    [
        "request.headers[User-Agent]",
        "request.experimental.inline.headers[x-b3]",
        "source.namespace",
        "source.serviceAccount",
        "source.principal",
        "source.trustDomain",
        "request.auth.principal",
        "request.auth.audiences",
        "request.auth.presenter",
        "request.auth.claims[iss]",
        "request.auth.claims[nested1][nested2]",
        "connection.sni",
        "experimental.envoy.filters.network.mysql_proxy[db.table]",
    ],
)
def test_supported_condition_keys(key):
    assert condition(key, ["value"]).ok, key


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("request.headers", "must have the form name[key]"),
        ("request.headers[]", "must have the form name[key]"),
        ("request.auth.claims[iss", "must have the form name[key]"),
        ("experimental.envoy.filters.a", "must have the form name[key]"),
        ("destination.namespace", "replaced by the policy's metadata.namespace"),
        ("destination.labels[app]", "replaced by the workload selector"),
        ("destination.name", "only in v1alpha1"),
        ("destination.user", "only in v1alpha1"),
        ("source.user", "unknown attribute 'source.user'"),
    ],
)
def test_unsupported_condition_keys(key, problem):
    found = messages(condition(key, ["value"]), f"{WHEN}.key")
    assert found
    assert problem in found[0]


# Where '*' is not a wildcard.


@pytest.mark.parametrize("value", ["a*b", "*a*", "**", "cluster.local/ns/*/sa/x"])
def test_a_star_inside_a_value_warns(value):
    result = load_rule({"from": [{"source": {"principals": [value], "requestPrincipals": [value]}}]})
    assert result.ok
    assert "matches a literal '*'" in warnings(result, f"{SOURCE}.principals[0]")[0]
    assert warnings(result, f"{SOURCE}.requestPrincipals[0]")
    assert warnings(operation(hosts=[value], methods=[value], paths=[value]), f"{OPERATION}.paths[0]")


def test_a_star_anywhere_in_a_namespace_is_a_wildcard():
    result = source(namespaces=["team-*-prod", "*"], notNamespaces=["a*b*c"])
    assert result.ok
    assert not result.warnings


# Formats Istio turns into regular expressions or prefixed matches.


@pytest.mark.parametrize("value", ["a(b", "team[", "x+*+"])
def test_a_namespace_that_breaks_istios_regex_is_refused(value):
    for result, field in (
        (source(namespaces=[value]), f"{SOURCE}.namespaces[0]"),
        (condition("source.namespace", [value]), f"{WHEN}.values[0]"),
    ):
        found = messages(result, field)
        assert found
        assert "invalid regular expression" in found[0]
        assert repr(value) in found[0]


@pytest.mark.parametrize("value", ["Default", "a.b", "ns_1", "cluster.local/ns/x"])
def test_a_namespace_that_is_not_a_namespace_name_warns(value):
    result = source(notNamespaces=[value])
    assert result.ok
    assert "is not a namespace name" in warnings(result, f"{SOURCE}.notNamespaces[0]")[0]


def test_service_accounts_that_are_not_kubernetes_names():
    result = source(serviceAccounts=["ns/sa(", "NS/Web"])
    assert "invalid regular expression" in messages(result, f"{SOURCE}.serviceAccounts[0]")[0]
    assert "is not a Kubernetes" in warnings(result, f"{SOURCE}.serviceAccounts[1]")[0]
    assert not source(serviceAccounts=["istio-system/istio-ingressgateway-service-account", "web.v2"]).warnings
    assert warnings(condition("source.serviceAccount", ["ns/Web"]), f"{WHEN}.values[0]")


def test_principals_are_written_without_the_spiffe_scheme():
    value = "spiffe://cluster.local/ns/default/sa/web"
    result = source(principals=[value])
    assert result.ok
    found = warnings(result, f"{SOURCE}.principals[0]")
    assert "never matches" in found[0]
    assert "'cluster.local/ns/default/sa/web'" in found[0]
    assert warnings(condition("source.principal", [value]), f"{WHEN}.values[0]")
    assert not source(principals=["cluster.local/ns/default/sa/web"]).warnings


@pytest.mark.parametrize("value", ["*", "*-suffix", "prefix-*", "exact"])
def test_leading_trailing_or_lone_stars_do_not_warn(value):
    assert not source(principals=[value]).warnings
    assert not operation(hosts=[value], paths=[value]).warnings


def test_path_templates_do_not_warn():
    assert not operation(paths=["/a/{*}/b", "/{**}"]).warnings
