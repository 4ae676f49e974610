"""ServiceEntry: typed fields, served versions, round trips, and the CRD (schema and CEL) rules."""

import textwrap

import pytest
import yaml

import mesh_config
from mesh_config.networking.service_entry import (
    SERVICE_ENTRY,
    ServiceEntry,
    ServiceEntryLocation,
    ServiceEntryResolution,
    ServicePort,
    WorkloadLabelSelector,
    service_entry_status,
    validate_service_entry,
)
from mesh_config.networking.workload_entry import WorkloadEntry

FULL = """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: full
  namespace: shop
  labels: {team: payments}
spec:
  hosts: [api.example.com, api.example.org]
  addresses: [240.0.0.10, "2001:db8::10"]
  ports:
  - {number: 443, name: https, protocol: HTTPS}
  - {number: 8080, name: http-alt, protocol: HTTP, targetPort: 9090}
  location: MESH_INTERNAL
  resolution: STATIC
  endpoints:
  - address: 10.0.0.1
    ports: {https: 8443, http-alt: 9091}
    labels: {version: v1, security.istio.io/tlsMode: istio}
    network: net-a
    locality: us-east1/us-east1-b/rack1
    weight: 3
    serviceAccount: payments
  - address: 10.0.0.2
  exportTo: [".", other]
  subjectAltNames: ["spiffe://cluster.local/ns/shop/sa/payments"]
status:
  addresses:
  - {value: 240.240.0.1, host: api.example.com}
  observedGeneration: "3"
"""


def load(text: str, **options) -> mesh_config.LoadResult:
    return mesh_config.load_text(textwrap.dedent(text), **options)


def entry(spec: dict, *, name: str = "se", namespace: str = "default", version: str = "v1", **metadata) -> str:
    document = {
        "apiVersion": f"networking.istio.io/{version}",
        "kind": "ServiceEntry",
        "metadata": {"name": name, "namespace": namespace, **metadata},
        "spec": spec,
    }
    return yaml.safe_dump(document, sort_keys=False)


def errors(result: mesh_config.LoadResult) -> list[tuple[str, str]]:
    return [(d.field, d.message) for d in result.errors]


def warnings(result: mesh_config.LoadResult) -> list[tuple[str, str]]:
    return [(d.field, d.message) for d in result.warnings]


def test_full_entry_loads_into_typed_fields():
    result = load(FULL)
    assert errors(result) == []
    (resource,) = result.resources
    spec = resource.spec
    assert isinstance(spec, ServiceEntry)
    assert spec.hosts == ("api.example.com", "api.example.org")
    assert spec.ports[1] == ServicePort(number=8080, name="http-alt", protocol="HTTP", target_port=9090)
    assert spec.location is ServiceEntryLocation.MESH_INTERNAL
    assert spec.resolution is ServiceEntryResolution.STATIC
    first = spec.endpoints[0]
    assert isinstance(first, WorkloadEntry)
    assert first.ports == {"https": 8443, "http-alt": 9091}
    assert (first.network, first.locality, first.weight, first.service_account) == (
        "net-a",
        "us-east1/us-east1-b/rack1",
        3,
        "payments",
    )
    assert spec.export_to == (".", "other")
    assert spec.subject_alt_names == ("spiffe://cluster.local/ns/shop/sa/payments",)


def test_defaults_are_istios():
    (resource,) = load(entry({"hosts": ["example.com"], "ports": [{"number": 80, "name": "http"}]})).resources
    assert resource.spec.location is ServiceEntryLocation.MESH_EXTERNAL
    assert resource.spec.resolution is ServiceEntryResolution.NONE
    assert resource.spec.workload_selector is None
    assert resource.spec.ports[0].protocol == ""


def test_status_is_kept_and_readable_but_never_validated():
    (resource,) = load(FULL).resources
    status = service_entry_status(resource.status)
    assert status.addresses[0].value == "240.240.0.1"
    assert status.addresses[0].host == "api.example.com"
    assert status.observed_generation == "3"
    odd = load(FULL.replace('observedGeneration: "3"', "observedGeneration: 3\n  surprise: [1]"))
    assert odd.ok
    assert service_entry_status(odd.resources[0].status).observed_generation == 3
    assert service_entry_status(None).addresses == ()


@pytest.mark.parametrize("version", ["v1", "v1beta1", "v1alpha3"])
def test_every_served_version_is_accepted(version):
    result = load(entry({"hosts": ["example.com"], "addresses": ["240.0.0.1"]}, version=version))
    assert errors(result) == []
    assert result.resources[0].api_version == f"networking.istio.io/{version}"


def test_kind_registration():
    assert SERVICE_ENTRY.api_version == "networking.istio.io/v1"
    assert SERVICE_ENTRY.plural == "serviceentries"
    assert SERVICE_ENTRY.spec_required
    assert mesh_config.kind_for("networking.istio.io/v1alpha2", "ServiceEntry") is None


def test_full_entry_round_trips():
    (resource,) = load(FULL).resources
    (again,) = load(mesh_config.to_yaml(resource)).resources
    assert again == resource


def test_spec_and_hosts_are_required():
    no_spec = load("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: a}\n")
    assert ("spec", "Required value") in errors(no_spec)
    assert errors(load(entry({}))) == [("spec.hosts", "Required value")]
    assert ("spec.hosts", "in body should have at least 1 items") in errors(load(entry({"hosts": []})))


def test_full_wildcard_host_is_refused_by_the_crd():
    result = load(entry({"hosts": ["example.com", "*"]}))
    assert errors(result) == [("spec.hosts[1]", 'Invalid value: "string": hostname cannot be wildcard')]


@pytest.mark.parametrize(
    ("port", "field"),
    [
        ({"number": 99999, "name": "a"}, "number"),
        ({"number": 0, "name": "a"}, "number"),
        ({"number": 1, "name": "a", "targetPort": 0}, "targetPort"),
        ({"number": 1, "name": "a", "targetPort": 70000}, "targetPort"),
    ],
)
def test_port_numbers_must_be_ports(port, field):
    result = load(entry({"hosts": ["example.com"], "addresses": ["240.0.0.1"], "ports": [port]}))
    assert (f"spec.ports[0].{field}", 'Invalid value: "integer": port must be between 1-65535') in errors(result)


def test_port_names_and_numbers_are_unique():
    names = load(entry({"hosts": ["a.com"], "ports": [{"number": 1, "name": "a"}, {"number": 2, "name": "a"}]}))
    assert ("spec.ports[1].name", 'Duplicate value: "a"') in errors(names)
    numbers = load(entry({"hosts": ["a.com"], "ports": [{"number": 1, "name": "a"}, {"number": 1, "name": "b"}]}))
    assert ("spec.ports", 'Invalid value: "array": port number cannot be duplicated') in errors(numbers)


def test_port_name_and_number_are_required():
    result = load(entry({"hosts": ["a.com"], "ports": [{"protocol": "HTTP"}]}))
    assert set(errors(result)) >= {("spec.ports[0].number", "Required value"), ("spec.ports[0].name", "Required value")}


def test_selector_and_endpoints_are_exclusive_even_when_empty():
    both = {"hosts": ["a.com"], "resolution": "STATIC", "workloadSelector": {}, "endpoints": []}
    message = 'Invalid value: "object": only one of WorkloadSelector or Endpoints can be set'
    assert ("spec", message) in errors(load(entry(both)))
    assert errors(load(entry({"hosts": ["a.com"], "resolution": "STATIC", "workloadSelector": {}}))) == []


def test_selector_values_may_not_hold_wildcards():
    result = load(entry({"hosts": ["a.com"], "resolution": "STATIC", "workloadSelector": {"labels": {"app": "web*"}}}))
    assert errors(result) == [
        ("spec.workloadSelector.labels.app", 'Invalid value: "string": wildcard is not supported in selector')
    ]
    long = load(entry({"hosts": ["a.com"], "resolution": "STATIC", "workloadSelector": {"labels": {"app": "x" * 64}}}))
    assert ("spec.workloadSelector.labels.app", "in body may not be longer than 63") in errors(long)


@pytest.mark.parametrize("resolution", ["DNS", "DNS_ROUND_ROBIN", "DYNAMIC_DNS"])
def test_cidr_addresses_only_with_none_or_static(resolution):
    spec = {"hosts": ["*.a.com"], "addresses": ["10.0.0.0/16"], "resolution": resolution}
    message = 'Invalid value: "object": CIDR addresses are allowed only for NONE/STATIC resolution types'
    assert ("spec", message) in errors(load(entry(spec)))
    for allowed in ("NONE", "STATIC"):
        assert errors(load(entry({**spec, "resolution": allowed}))) == []


def test_none_resolution_cannot_set_endpoints():
    result = load(entry({"hosts": ["a.com"], "endpoints": [{"address": "10.0.0.1"}]}))
    assert errors(result) == [("spec", 'Invalid value: "object": NONE mode cannot set endpoints')]


def test_dns_round_robin_takes_at_most_one_endpoint():
    two = [{"address": "a.example.com"}, {"address": "b.example.com"}]
    result = load(entry({"hosts": ["a.com"], "resolution": "DNS_ROUND_ROBIN", "endpoints": two}))
    assert errors(result) == [("spec", 'Invalid value: "object": DNS_ROUND_ROBIN mode cannot have multiple endpoints')]
    assert errors(load(entry({"hosts": ["a.com"], "resolution": "DNS_ROUND_ROBIN", "endpoints": two[:1]}))) == []


def test_endpoint_crd_rules_apply_inside_service_entries():
    endpoints = [
        {"labels": {"a": "b"}},
        {"address": "unix:///var/run/app.sock/"},
        {"address": "unix://relative.sock"},
        {"address": "unix:///var/run/app.sock", "ports": {}},
        {"address": "10.0.0.1", "ports": {"http": 70000}},
    ]
    spec = {
        "hosts": ["a.com"],
        "resolution": "STATIC",
        "ports": [{"number": 80, "name": "http"}],
        "endpoints": endpoints,
    }
    found = errors(load(entry(spec)))
    assert ("spec.endpoints[0]", 'Invalid value: "object": Address is required') in found
    assert ("spec.endpoints[1].address", 'Invalid value: "string": UDS may not be a dir') in found
    assert (
        "spec.endpoints[2].address",
        'Invalid value: "string": UDS must be an absolute path or abstract socket',
    ) in found
    assert ("spec.endpoints[3]", 'Invalid value: "object": UDS may not include ports') in found
    assert ("spec.endpoints[4].ports.http", 'Invalid value: "integer": port must be between 1-65535') in found


def test_list_and_string_bounds():
    spec = {"hosts": [f"h{i}.com" for i in range(257)], "addresses": ["1" * 65]}
    found = errors(load(entry(spec)))
    assert ("spec.hosts", "in body should have at most 256 items") in found
    assert ("spec.addresses[0]", "in body may not be longer than 64") in found
    long_name = load(entry({"hosts": ["a.com"], "ports": [{"number": 1, "name": "n" * 257}]}))
    assert ("spec.ports[0].name", "in body may not be longer than 256") in errors(long_name)


def test_typed_values_are_checked_by_the_engine():
    result = load(entry({"hosts": ["a.com"], "resolution": "MAGIC", "location": 3, "ports": [{"number": "x"}]}))
    fields = {field for field, _ in errors(result)}
    assert {"spec.resolution", "spec.location", "spec.ports[0].number"} <= fields
    assert any("MAGIC" in message for _, message in errors(result))


def test_selector_type_is_labels_not_match_labels():
    ok = load(entry({"hosts": ["a.com"], "resolution": "STATIC", "workloadSelector": {"labels": {"app": "a"}}}))
    assert ok.resources[0].spec.workload_selector == WorkloadLabelSelector(labels={"app": "a"})
    wrong = load(entry({"hosts": ["a.com"], "workloadSelector": {"matchLabels": {"app": "a"}}}))
    assert any(field == "spec.workloadSelector.matchLabels" for field, _ in errors(wrong))


def test_specs_built_in_code_get_the_same_rules():
    spec = ServiceEntry(
        hosts=(),
        ports=(ServicePort(number=0, name="a"),),
        endpoints=(WorkloadEntry(address="unix:///sock", ports={"a": 1}),),
        workload_selector=WorkloadLabelSelector(labels={"a": "b"}),
    )
    ctx = mesh_config.ValidationContext()
    validate_service_entry(spec, ctx)
    found = {(mesh_config.format_path(path), message) for _, path, message in ctx.findings}
    assert {
        ("spec.hosts", "in body should have at least 1 items"),
        ("spec.ports[0].number", 'Invalid value: "integer": port must be between 1-65535'),
        ("spec.endpoints[0]", 'Invalid value: "object": UDS may not include ports'),
        ("spec", 'Invalid value: "object": only one of WorkloadSelector or Endpoints can be set'),
        ("spec", 'Invalid value: "object": NONE mode cannot set endpoints'),
    } <= found
