"""WorkloadGroup: fields, versions, round trip, the CRD rules and Istio's webhook rules."""

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

import mesh_config
from mesh_config.networking.workload_group import (
    WORKLOAD_GROUP,
    ExecHealthCheckConfig,
    HttpHeader,
    HttpHealthCheckConfig,
    ReadinessProbe,
    WorkloadGroup,
    WorkloadGroupMetadata,
)

FULL = """\
apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata:
  name: reviews
  namespace: bookinfo
spec:
  metadata:
    labels: {app: reviews, version: v3}
    annotations: {team: books}
  template:
    ports: {http: 9080}
    serviceAccount: reviews
    network: vm-net
    locality: eu/eu-1
    weight: 2
  probe:
    initialDelaySeconds: 5
    timeoutSeconds: 3
    periodSeconds: 4
    successThreshold: 2
    failureThreshold: 3
    httpGet:
      path: /ready
      port: 9080
      host: 127.0.0.1
      scheme: HTTPS
      httpHeaders:
      - {name: X-Probe, value: "1"}
"""


def load(spec: dict | None, *, version: str = "v1") -> mesh_config.LoadResult:
    document: dict = {
        "apiVersion": f"networking.istio.io/{version}",
        "kind": "WorkloadGroup",
        "metadata": {"name": "wg", "namespace": "default"},
    }
    if spec is not None:
        document["spec"] = spec
    return mesh_config.load_text(yaml.safe_dump(document, sort_keys=False))


def probe(**fields) -> mesh_config.LoadResult:
    return load({"template": {}, "probe": fields})


def errors(result: mesh_config.LoadResult) -> list[tuple[str, str]]:
    return [(d.field, d.message) for d in result.errors]


def test_full_group_loads_and_round_trips():
    result = mesh_config.load_text(FULL)
    assert result.diagnostics == ()
    (resource,) = result.resources
    spec = resource.spec
    assert isinstance(spec, WorkloadGroup)
    assert spec.metadata == WorkloadGroupMetadata(
        labels={"app": "reviews", "version": "v3"}, annotations={"team": "books"}
    )
    assert spec.template is not None
    assert spec.template.ports == {"http": 9080}
    assert spec.probe == ReadinessProbe(
        initial_delay_seconds=5,
        timeout_seconds=3,
        period_seconds=4,
        success_threshold=2,
        failure_threshold=3,
        http_get=HttpHealthCheckConfig(
            path="/ready",
            port=9080,
            host="127.0.0.1",
            scheme="HTTPS",
            http_headers=(HttpHeader(name="X-Probe", value="1"),),
        ),
    )
    (again,) = mesh_config.load_text(mesh_config.to_yaml(resource)).resources
    assert again == resource


@pytest.mark.parametrize("version", ["v1", "v1beta1", "v1alpha3"])
def test_every_served_version_is_accepted(version):
    assert load({"template": {"serviceAccount": "sa"}}, version=version).ok
    assert WORKLOAD_GROUP.plural == "workloadgroups"


def test_spec_and_template_are_required():
    assert ("spec", "Required value") in errors(load(None))
    assert errors(load({"metadata": {"labels": {"a": "b"}}})) == [("spec.template", "Required value")]


def test_template_needs_no_address_but_keeps_the_other_entry_rules():
    assert load({"template": {}}).ok
    found = errors(load({"template": {"address": "unix://@x", "ports": {"http": 0}}}))
    assert found == [
        ("spec.template.ports.http", 'Invalid value: "integer": port must be between 1-65535'),
        ("spec.template", 'Invalid value: "object": UDS may not include ports'),
    ]


def test_group_labels_must_have_kubernetes_syntax():
    result = load({"template": {}, "metadata": {"labels": {"bad key": "v"}}})
    assert errors(result) == [("spec.metadata.labels['bad key']", "invalid label key 'bad key'")]


@pytest.mark.parametrize("method", ["httpGet", "tcpSocket", "grpc"])
@given(port=st.integers(1, 65535))
def test_probe_ports_in_range_are_accepted(method, port):
    assert probe(**{method: {"port": port}}).ok


@pytest.mark.parametrize("method", ["httpGet", "tcpSocket", "grpc"])
@pytest.mark.parametrize("port", [0, 65536])
def test_probe_ports_out_of_range_are_refused(method, port):
    assert errors(probe(**{method: {"port": port}})) == [
        (f"spec.probe.{method}.port", 'Invalid value: "integer": port must be between 1-65535')
    ]


def test_http_and_tcp_probes_need_a_port():
    assert errors(probe(httpGet={"path": "/"})) == [("spec.probe.httpGet.port", "Required value")]
    assert errors(probe(tcpSocket={"host": "h"})) == [("spec.probe.tcpSocket.port", "Required value")]


def test_http_probe_scheme_and_headers():
    found = errors(
        probe(httpGet={"port": 80, "scheme": "http", "httpHeaders": [{"name": "**"}, {"value": "v"}, {"name": ""}]})
    )
    assert found == [
        ("spec.probe.httpGet.scheme", 'Invalid value: "string": scheme must be one of [HTTP, HTTPS]'),
        ("spec.probe.httpGet.httpHeaders[0].name", "in body should match '^[-_A-Za-z0-9]+$'"),
        ("spec.probe.httpGet.httpHeaders[2].name", "in body should match '^[-_A-Za-z0-9]+$'"),
        ("spec.probe.httpGet.httpHeaders[1].name", "header name cannot be empty"),
    ]


def test_exec_probe_needs_a_command():
    assert probe(exec={"command": ["/bin/check", "--ready"]}).ok
    assert errors(probe(exec={})) == [("spec.probe.exec.command", "Required value")]
    assert errors(probe(exec={"command": []})) == [
        ("spec.probe.exec.command", "exec.command is required: give the command to run")
    ]
    assert errors(probe(exec={"command": ["/bin/check", ""]})) == [
        ("spec.probe.exec.command[1]", "in body should be at least 1 chars long")
    ]
    (resource,) = probe(exec={"command": ["a"]}).resources
    assert resource.spec.probe.exec == ExecHealthCheckConfig(command=("a",))


def test_probe_sets_exactly_one_method():
    assert errors(probe(periodSeconds=5)) == [
        ("spec.probe", "probe has no health check method: set one of httpGet, tcpSocket, exec, grpc")
    ]
    both = errors(probe(httpGet={"port": 80}, tcpSocket={"port": 81}))
    assert len(both) == 1
    assert both[0][0].startswith("spec.probe.")
    assert "only one of" in both[0][1]


@pytest.mark.parametrize(
    "field", ["initialDelaySeconds", "timeoutSeconds", "periodSeconds", "successThreshold", "failureThreshold"]
)
def test_probe_counters_are_not_negative(field):
    assert errors(probe(tcpSocket={"port": 80}, **{field: -1})) == [
        (f"spec.probe.{field}", "in body should be greater than or equal to 0")
    ]
    assert probe(tcpSocket={"port": 80}, **{field: 0}).ok
