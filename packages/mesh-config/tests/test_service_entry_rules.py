"""ServiceEntry: Istio's webhook rules (hosts, addresses, ports, resolution modes, selector, exportTo)."""

import ipaddress

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

import mesh_config

HTTP = {"number": 80, "name": "http", "protocol": "HTTP"}


def load(spec: dict, *, namespace: str = "default", **metadata) -> mesh_config.LoadResult:
    document = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": "se", "namespace": namespace, **metadata},
        "spec": spec,
    }
    return mesh_config.load_text(yaml.safe_dump(document, sort_keys=False))


def errors(result: mesh_config.LoadResult) -> list[tuple[str, str]]:
    return [(d.field, d.message) for d in result.errors]


def warnings(result: mesh_config.LoadResult) -> list[tuple[str, str]]:
    return [(d.field, d.message) for d in result.warnings]


@pytest.mark.parametrize("host", ["-bad.com", "a..b.com", "foo.*.com", "exa_mple.com", "a.123", "x" * 64 + ".com"])
def test_hosts_must_be_domain_names(host):
    found = errors(load({"hosts": [host], "addresses": ["240.0.0.1"]}))
    assert len(found) == 1
    field, message = found[0]
    assert field == "spec.hosts[0]"
    assert host[:20] in message or repr(host)[:20] in message


def test_partial_wildcards_warn_except_for_dynamic_dns():
    result = load({"hosts": ["*x.com"], "addresses": ["240.0.0.1"]})
    assert result.ok
    assert warnings(result) == [
        ("spec.hosts[0]", "partial wildcard '*x.com' not allowed; use '*.' followed by a domain")
    ]
    dynamic = load({"hosts": ["*x.com"], "resolution": "DYNAMIC_DNS", "ports": [HTTP]})
    assert dynamic.ok
    assert warnings(dynamic) == []


@given(st.ip_addresses().map(str) | st.tuples(st.ip_addresses(v=4), st.integers(0, 32)).map(lambda t: f"{t[0]}/{t[1]}"))
def test_ips_and_cidr_blocks_are_addresses(address):
    assert load({"hosts": ["a.com"], "addresses": [address]}).ok


@pytest.mark.parametrize("address", ["1.2.3.4/33", "example.com", "1.2.3", "::g"])
def test_other_addresses_are_refused(address):
    found = errors(load({"hosts": ["a.com"], "addresses": [address]}))
    assert [field for field, _ in found] == ["spec.addresses[0]"]
    assert address in found[0][1]


@given(st.integers(1, 65535), st.sampled_from(["HTTP", "http", "GRPC", "grpc-web", "TLS", "Mongo", "TCP", ""]))
def test_valid_ports_and_protocols(number, protocol):
    port = {"number": number, "name": "p", "protocol": protocol}
    assert errors(load({"hosts": ["a.com"], "addresses": ["240.0.0.1"], "ports": [port]})) == []


def test_port_names_must_be_dns_labels_and_protocols_known():
    ports = [{"number": 1, "name": "bad_name"}, {"number": 2, "name": "ok", "protocol": "SMTP"}]
    found = errors(load({"hosts": ["a.com"], "addresses": ["240.0.0.1"], "ports": ports}))
    assert [field for field, _ in found] == ["spec.ports[0].name", "spec.ports[1].protocol"]
    assert "'bad_name'" in found[0][1]
    assert "'SMTP'" in found[1][1]
    assert load({"hosts": ["a.com"], "addresses": ["240.0.0.1"], "ports": [{"number": 1, "name": "HTTP-Web"}]}).ok


def test_tcp_ports_without_addresses_warn_unless_istio_allocates_addresses():
    tcp = {"number": 5432, "name": "db", "protocol": "TCP"}
    passthrough = load({"hosts": ["db.example.com"], "ports": [tcp]})
    assert passthrough.ok
    assert [field for field, _ in warnings(passthrough)] == ["spec.ports[0]"]
    assert "'db'" in warnings(passthrough)[0][1]
    allocated = load({"hosts": ["db.example.com"], "ports": [tcp], "resolution": "DNS"})
    assert warnings(allocated) == []
    opted_out = load(
        {"hosts": ["db.example.com"], "ports": [tcp], "resolution": "DNS"},
        labels={"networking.istio.io/enable-autoallocate-ip": "False"},
    )
    assert [field for field, _ in warnings(opted_out)] == ["spec.ports[0]"]
    assert warnings(load({"hosts": ["db.example.com"], "ports": [HTTP]})) == []


def test_static_endpoints_are_ips_or_sockets_with_declared_ports():
    endpoints = [
        {"address": "10.0.0.1", "ports": {"http": 8080}},
        {"address": "backend.example.com"},
        {"address": "10.0.0.2", "ports": {"grpc": 9090}},
        {"address": "10.0.0.3", "labels": {"bad key": "x"}},
        {"address": "", "network": "remote"},
        {"address": ""},
    ]
    result = load({"hosts": ["a.com"], "resolution": "STATIC", "ports": [HTTP], "endpoints": endpoints})
    assert errors(result) == [
        ("spec.endpoints[1].address", "endpoint address 'backend.example.com' is not a valid IP address"),
        ("spec.endpoints[2].ports.grpc", "endpoint port 'grpc' (9090) is not defined by the service entry"),
        ("spec.endpoints[3].labels['bad key']", "invalid label key 'bad key'"),
        ("spec.endpoints[5].address", "address is required"),
    ]
    assert warnings(result) == [("spec.endpoints[4].address", "address is unset with network 'remote'")]


def test_unix_endpoints_need_exactly_one_service_port():
    endpoints = [{"address": "unix:///var/run/app.sock"}]
    one = load({"hosts": ["a.com"], "resolution": "STATIC", "ports": [HTTP], "endpoints": endpoints})
    assert one.ok
    two = load(
        {
            "hosts": ["a.com"],
            "resolution": "STATIC",
            "ports": [HTTP, {**HTTP, "number": 81, "name": "b"}],
            "endpoints": endpoints,
        }
    )
    assert [field for field, _ in errors(two)] == ["spec.endpoints[0].address"]
    assert "exactly 1 service port" in errors(two)[0][1]


@pytest.mark.parametrize("resolution", ["DNS", "DNS_ROUND_ROBIN"])
def test_dns_without_endpoints_needs_fully_qualified_hosts(resolution):
    result = load({"hosts": ["ok.example.com", "*.example.com"], "resolution": resolution, "ports": [HTTP]})
    assert [field for field, _ in errors(result)] == ["spec.hosts[1]"]
    assert "'*.example.com'" in errors(result)[0][1]
    with_endpoint = {"hosts": ["*.example.com"], "resolution": resolution, "endpoints": [{"address": "gw.example.com"}]}
    assert load({**with_endpoint, "ports": [HTTP]}).ok


def test_dns_endpoints_are_ips_or_names():
    endpoints = [
        {"address": "10.0.0.1"},
        {"address": "gw.example.com", "ports": {"http": 8080}},
        {"address": "bad_name"},
    ]
    result = load({"hosts": ["a.com"], "resolution": "DNS", "ports": [HTTP], "endpoints": endpoints})
    assert errors(result) == [
        ("spec.endpoints[2].address", "endpoint address 'bad_name' is not a valid FQDN or an IP address")
    ]


def test_dns_with_addresses_and_tcp_ports_warns_about_several_hosts():
    spec = {"hosts": ["a.com", "b.com"], "addresses": ["240.0.0.1"], "resolution": "DNS", "ports": [HTTP]}
    assert warnings(load(spec)) == []
    tls = {"number": 443, "name": "tls", "protocol": "TLS"}
    found = warnings(load({**spec, "ports": [tls]}))
    assert [field for field, _ in found] == ["spec.hosts"]
    assert "'tls'" in found[0][1]


def test_multiple_hosts_need_http_or_tls_ports_unless_resolution_is_none():
    spec = {
        "hosts": ["a.com", "b.com"],
        "addresses": ["240.0.0.1"],
        "ports": [{"number": 22, "name": "ssh", "protocol": "TCP"}],
    }
    assert load(spec).ok
    found = errors(load({**spec, "resolution": "STATIC"}))
    assert [field for field, _ in found] == ["spec.hosts"]
    assert "'ssh'" in found[0][1]
    assert load({**spec, "resolution": "STATIC", "ports": [HTTP, {"number": 443, "name": "s", "protocol": "HTTPS"}]}).ok


def test_dynamic_dns_rules():
    good = {
        "hosts": ["*.example.com"],
        "resolution": "DYNAMIC_DNS",
        "ports": [HTTP, {"number": 443, "name": "tls", "protocol": "TLS"}],
    }
    assert load(good).ok
    bad = {
        "hosts": ["*.example.com", "plain.example.com"],
        "addresses": ["240.0.0.1"],
        "resolution": "DYNAMIC_DNS",
        "ports": [{"number": 5432, "name": "db", "protocol": "TCP"}],
        "endpoints": [{"address": "10.0.0.1"}],
    }
    fields = [field for field, _ in errors(load(bad))]
    assert {"spec.hosts[1]", "spec.addresses", "spec.endpoints", "spec.ports[0].protocol"} <= set(fields)
    waypoint = load({**good, "location": "MESH_INTERNAL"}, labels={"istio.io/use-waypoint": "egress"})
    assert [field for field, _ in errors(waypoint)] == ["spec.location"]
    assert load({**good, "location": "MESH_INTERNAL"}).ok


def test_selector_rules():
    empty = load({"hosts": ["a.com"], "resolution": "STATIC", "workloadSelector": {}})
    assert empty.ok
    assert [field for field, _ in warnings(empty)] == ["spec.workloadSelector"]
    key = load({"hosts": ["a.com"], "resolution": "STATIC", "workloadSelector": {"labels": {"app*": "x"}}})
    assert errors(key) == [("spec.workloadSelector.labels['app*']", "wildcard is not supported in selector: 'app*'")]
    for resolution in ("NONE", "DNS"):
        found = warnings(
            load({"hosts": ["a.com"], "resolution": resolution, "workloadSelector": {"labels": {"a": "b"}}})
        )
        assert (
            "spec.workloadSelector",
            f"workloadSelector should not be set when resolution mode is {resolution}",
        ) in found


@pytest.mark.parametrize(
    ("export_to", "ok"),
    [
        (["~"], True),
        (["*"], True),
        ([".", "other"], True),
        (["~", "other"], False),
        (["*", "."], False),
        ([".", "default"], False),
        (["bad_ns"], False),
    ],
)
def test_export_to(export_to, ok):
    result = load({"hosts": ["a.com"], "addresses": ["240.0.0.1"], "exportTo": export_to})
    assert result.ok is ok
    assert all(field.startswith("spec.exportTo") for field, _ in errors(result))


def test_all_problems_are_reported_together():
    spec = {
        "hosts": ["*", "bad_host"],
        "addresses": ["nope"],
        "ports": [{"number": 1, "name": "a_b", "protocol": "FOO"}],
        "exportTo": ["~", "x"],
    }
    fields = {field for field, _ in errors(load(spec))}
    assert {
        "spec.hosts[0]",
        "spec.hosts[1]",
        "spec.addresses[0]",
        "spec.ports[0].name",
        "spec.ports[0].protocol",
        "spec.exportTo",
    } <= fields


@given(st.ip_addresses(v=4))
def test_even_a_single_address_block_counts_as_cidr_for_dns(ip):
    assert load({"hosts": ["a.com"], "resolution": "DNS", "addresses": [f"{ip}"], "ports": [HTTP]}).ok
    assert not load(
        {"hosts": ["a.com"], "resolution": "DNS", "addresses": [str(ipaddress.ip_network(f"{ip}/32"))], "ports": [HTTP]}
    ).ok
