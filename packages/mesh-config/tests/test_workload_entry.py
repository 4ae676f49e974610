"""WorkloadEntry: fields, versions, round trip, the CRD rules and Istio's webhook rules."""

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

import mesh_config
from mesh_config.networking.workload_entry import WORKLOAD_ENTRY, WorkloadEntry

FULL = """\
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: vm-1
  namespace: shop
spec:
  address: 10.1.2.3
  ports: {http: 8080, grpc: 9090}
  labels: {app: payments, version: v2}
  network: vpc-1
  locality: us-east1/us-east1-b
  weight: 5
  serviceAccount: payments
"""


def load(spec: dict | None, *, version: str = "v1") -> mesh_config.LoadResult:
    document: dict = {
        "apiVersion": f"networking.istio.io/{version}",
        "kind": "WorkloadEntry",
        "metadata": {"name": "we", "namespace": "default"},
    }
    if spec is not None:
        document["spec"] = spec
    return mesh_config.load_text(yaml.safe_dump(document, sort_keys=False))


def errors(result: mesh_config.LoadResult) -> list[tuple[str, str]]:
    return [(d.field, d.message) for d in result.errors]


def test_full_entry_loads_and_round_trips():
    result = mesh_config.load_text(FULL)
    assert result.diagnostics == ()
    (resource,) = result.resources
    assert resource.spec == WorkloadEntry(
        address="10.1.2.3",
        ports={"http": 8080, "grpc": 9090},
        labels={"app": "payments", "version": "v2"},
        network="vpc-1",
        locality="us-east1/us-east1-b",
        weight=5,
        service_account="payments",
    )
    (again,) = mesh_config.load_text(mesh_config.to_yaml(resource)).resources
    assert again == resource


@pytest.mark.parametrize("version", ["v1", "v1beta1", "v1alpha3"])
def test_every_served_version_is_accepted(version):
    assert load({"address": "1.2.3.4"}, version=version).ok
    assert WORKLOAD_ENTRY.versions[0] == "v1"
    assert WORKLOAD_ENTRY.plural == "workloadentries"


def test_spec_is_required():
    assert errors(load(None)) == [("spec", "Required value")]


def test_address_is_required_unless_a_network_is_set():
    assert errors(load({})) == [("spec", 'Invalid value: "object": Address is required')]
    assert errors(load({"address": ""})) == [("spec.address", "address is required")]
    networked = load({"network": "remote"})
    assert networked.ok
    assert [(d.field, d.message) for d in networked.warnings] == [
        ("spec.address", "address is unset with network 'remote'")
    ]


@given(st.ip_addresses().map(str))
def test_ip_addresses_are_accepted(address):
    assert load({"address": address, "ports": {"http": 80}}).ok


@pytest.mark.parametrize(
    "address", ["vm-1.example.com", "db.internal.", "unix:///var/run/app.sock", "unix://@abstract"]
)
def test_names_and_sockets_are_accepted(address):
    assert load({"address": address}).ok


@pytest.mark.parametrize("address", ["not a host", "-bad.com", "foo.*.com", "a..b"])
def test_other_addresses_are_refused(address):
    assert errors(load({"address": address})) == [
        ("spec.address", f"endpoint address {address!r} is not a valid FQDN or an IP address")
    ]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"address": "unix:///dir/"}, ("spec.address", 'Invalid value: "string": UDS may not be a dir')),
        (
            {"address": "unix://relative"},
            ("spec.address", 'Invalid value: "string": UDS must be an absolute path or abstract socket'),
        ),
        (
            {"address": "unix://@foo", "ports": {"http": 80}},
            ("spec", 'Invalid value: "object": UDS may not include ports'),
        ),
        ({"address": "unix://@foo", "ports": {}}, ("spec", 'Invalid value: "object": UDS may not include ports')),
    ],
)
def test_unix_socket_rules(spec, expected):
    assert errors(load(spec)) == [expected]


@given(st.integers(1, 65535))
def test_port_numbers_in_range_are_accepted(number):
    assert load({"address": "1.1.1.1", "ports": {"http": number}}).ok


@pytest.mark.parametrize("number", [0, 65536, 99999])
def test_port_numbers_out_of_range_are_refused(number):
    assert errors(load({"address": "1.1.1.1", "ports": {"http": number}})) == [
        ("spec.ports.http", 'Invalid value: "integer": port must be between 1-65535')
    ]


@pytest.mark.parametrize("name", ["@", "-http", "http-", "a" * 63, "a_b"])
def test_port_names_must_be_valid(name):
    assert errors(load({"address": "1.1.1.1", "ports": {name: 80}})) == [
        ("spec.ports", 'Invalid value: "object": port name must be valid')
    ]


def test_labels_must_have_kubernetes_syntax():
    result = load({"address": "1.1.1.1", "labels": {"app": "ok", "bad key": "v", "k": "bad value!"}})
    assert errors(result) == [
        ("spec.labels['bad key']", "invalid label key 'bad key'"),
        ("spec.labels.k", "invalid value 'bad value!' of label 'k'"),
    ]


def test_an_empty_socket_path_breaks_both_socket_rules():
    assert errors(load({"address": "unix://"})) == [
        ("spec.address", 'Invalid value: "string": UDS must be an absolute path or abstract socket'),
        ("spec.address", 'Invalid value: "string": UDS may not be a dir'),
    ]


def test_string_and_map_bounds():
    ports = {f"p{i}": 80 for i in range(129)}
    found = errors(load({"address": "1.1.1.1", "ports": ports, "serviceAccount": "s" * 254, "locality": "l" * 2049}))
    assert ("spec.ports", "in body should have at most 128 properties") in found
    assert ("spec.serviceAccount", "in body may not be longer than 253") in found
    assert ("spec.locality", "in body may not be longer than 2048") in found
    assert ("spec.address", "in body may not be longer than 256") in errors(load({"address": "a" * 257}))


def test_weight_is_a_uint32():
    assert load({"address": "1.1.1.1", "weight": 2**32 - 1}).ok
    assert [field for field, _ in errors(load({"address": "1.1.1.1", "weight": -1}))] == ["spec.weight"]
