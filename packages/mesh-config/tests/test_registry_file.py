"""Registry files: services and workloads in YAML, every problem with its line and field; FileRegistry follows them."""

import os
import queue
import uuid

import pytest

from mesh_config import FileRegistry, InvalidConfigError, LoadError, load_registry_file, load_registry_text
from mesh_model import ChangeSet, Kind, Locality, Protocol, ServiceKey, ServiceRegistry

REGISTRY = """\
services:
- hostname: reviews
  ports:
  - {name: http, number: 9080, targetPort: 8080}
  - {name: grpc-api, number: 9090}
  - {name: metrics, number: 9100, protocol: tcp}
  addresses: [240.240.0.10]
  labels: {app: reviews}
  serviceAccounts: [spiffe://cluster.local/ns/default/sa/bookinfo-reviews]
- hostname: db.example.com
  namespace: data
  ports: [{name: tcp, number: 5432}]
  selector: {app: postgres}
workloads:
- name: reviews-v1
  address: 127.0.10.1
  labels: {app: reviews, version: v1}
  serviceAccount: bookinfo-reviews
  locality: us-east/zone-a
  ports: {http: 8081}
- {name: reviews-v2, address: 127.0.10.2, labels: {app: reviews, version: v2}}
- {name: postgres-0, namespace: data, address: 127.0.20.1, labels: {app: postgres}}
- {name: stray, namespace: other, address: 127.0.30.1, labels: {app: reviews}}
"""
REVIEWS = ServiceKey("default", "reviews.default.svc.cluster.local")


def write(path, text):
    """Replace a file atomically, as an editor saving it does."""
    temporary = path.parent / f".tmp-{uuid.uuid4().hex}"
    temporary.write_text(text)
    os.replace(temporary, path)


def test_services_and_the_workloads_their_selectors_match():
    result = load_registry_text(REGISTRY).raise_for_errors()
    registry = result.to_registry()
    assert isinstance(registry, ServiceRegistry)
    reviews = registry.service(REVIEWS)
    assert reviews is not None
    assert [(port.name, port.number, port.protocol, port.target_port) for port in reviews.ports] == [
        ("http", 9080, Protocol.HTTP, 8080),
        ("grpc-api", 9090, Protocol.GRPC, None),
        ("metrics", 9100, Protocol.TCP, None),
    ]
    assert reviews.addresses == ("240.240.0.10",)
    assert reviews.service_accounts == ("spiffe://cluster.local/ns/default/sa/bookinfo-reviews",)
    endpoints = registry.endpoints(REVIEWS, 9080)
    assert [endpoint.address for endpoint in endpoints] == ["127.0.10.1", "127.0.10.2"]  # not the other namespace
    first = endpoints[0]
    assert (first.service_account, first.locality, first.target_port(reviews.ports[0])) == (
        "bookinfo-reviews",
        Locality("us-east", "zone-a"),
        8081,
    )
    database = registry.service(ServiceKey("data", "db.example.com"))
    assert database is not None
    assert database.labels == {}
    assert [endpoint.address for endpoint in registry.endpoints(database.key, 5432)] == ["127.0.20.1"]


def test_an_empty_file_is_an_empty_registry():
    assert load_registry_text("") == load_registry_text("services: []\nworkloads:\n") == load_registry_text("# none\n")


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        ("- a\n", "<registry>:1:1", "must be a map, not a list"),
        ("service: []\n", "<registry>:1:1: error: service", "unknown field 'service'"),
        ("services: {}\n", "services", "must be a list"),
        ("services:\n- {ports: []}\n", "<registry>:2:3: error: Service: services[0].hostname", "is required"),
        (
            "services:\n- hostname: a\n  ports: [{name: http, number: '80'}]\n",
            "<registry>:3:24: error: Service default/a.default.svc.cluster.local: services[0].ports[0].number",
            "must be an integer, not a string",
        ),
        ("services:\n- hostname: a\n  ports: [{number: 80, protocol: htp}]\n", "ports[0].protocol", "unknown protocol"),
        ("services:\n- hostname: a\n  ports: [{number: 70000}]\n", "services[0].ports[0]", "70000"),
        ("services:\n- hostname: 'a b'\n", "services[0].hostname", "a b"),
        ("services:\n- hostname: a\n  labels: {app: 3}\n", "services[0].labels.app", "must be a string"),
        ("services:\n- hostname: a\n  addresses: [nope]\n", "services[0]", "nope"),
        ("workloads:\n- {name: w}\n", "Workload default/w: workloads[0].address", "is required"),
        ("workloads:\n- {name: w, address: 1.2.3.4, colour: red}\n", "workloads[0].colour", "unknown field"),
        ("workloads:\n- {name: w, address: 1.2.3.4, locality: a//b}\n", "workloads[0].locality", "a//b"),
        ("workloads:\n- {name: w, address: 1.2.3.4, ports: {http: x}}\n", "workloads[0].ports.http", "integer"),
        ("services: [\n", "<registry>:2:1", "YAML syntax error"),
        ("services: []\n---\nworkloads: []\n", "<registry>:2:1", "one YAML document"),
    ],
)
def test_problems_name_their_line_and_field(text, where, message):
    result = load_registry_text(text)
    [diagnostic] = result.errors
    assert where in diagnostic.format()
    assert message in diagnostic.message
    with pytest.raises(InvalidConfigError):
        result.raise_for_errors()


def test_an_entry_with_an_error_is_left_out_and_its_neighbours_kept():
    text = "services:\n- {hostname: a}\n- {hostname: a}\n- {hostname: b, ports: [{number: 0}]}\n- {hostname: c}\n"
    result = load_registry_text(text)
    assert [service.hostname.value for service in result.services] == [
        "a.default.svc.cluster.local",
        "c.default.svc.cluster.local",
    ]
    duplicate, bad_port = result.errors
    assert "already defined at services[0]" in duplicate.message
    assert duplicate.position is not None
    assert duplicate.position.line == 3
    assert bad_port.field == "services[2].ports[0]"


def test_a_file_that_cannot_be_read_is_a_diagnostic(tmp_path):
    [missing] = load_registry_file(tmp_path / "none.yaml").errors
    assert "cannot read" in missing.message
    [directory] = load_registry_file(tmp_path).errors
    assert "not a regular file" in directory.message
    (tmp_path / "binary.yaml").write_bytes(b"services: \xff\n")
    [binary] = load_registry_file(tmp_path / "binary.yaml").errors
    assert "not UTF-8" in binary.message


# ---------------------------------------------------------------------------------------- FileRegistry


@pytest.fixture
def path(tmp_path):
    target = tmp_path / "registry.yaml"
    target.write_text(REGISTRY)
    return target


def test_file_registry_serves_the_file(path):
    registry = FileRegistry(path)
    assert isinstance(registry, ServiceRegistry)
    assert [service.hostname.value for service in registry.services()] == [
        "db.example.com",
        "reviews.default.svc.cluster.local",
    ]
    assert len(registry.workloads()) == 4
    assert registry.diagnostics() == ()


def test_file_registry_needs_a_file(tmp_path):
    with pytest.raises(LoadError, match="does not exist"):
        FileRegistry(tmp_path / "none.yaml")


def test_a_workload_change_tells_only_endpoints_and_workloads(path):
    registry = FileRegistry(path)
    changes: list[ChangeSet] = []
    registry.subscribe(changes.append)
    write(path, REGISTRY.replace("127.0.10.2", "127.0.10.3"))
    assert registry.refresh() is True
    [change] = changes
    assert change.kinds == {Kind.ENDPOINTS, Kind.WORKLOAD}
    assert [endpoint.address for endpoint in registry.endpoints(REVIEWS, 9080)] == ["127.0.10.1", "127.0.10.3"]
    assert registry.refresh() is False  # the same file again: nothing to tell
    assert len(changes) == 1


def test_removed_entries_go(path):
    registry = FileRegistry(path)
    write(path, REGISTRY.split("- hostname: db.example.com")[0] + "workloads: []\n")
    assert registry.refresh() is True
    assert [service.key for service in registry.services()] == [REVIEWS]
    assert registry.workloads() == ()
    assert registry.endpoints(REVIEWS, 9080) == ()


def test_a_broken_version_keeps_the_last_valid_content(path, caplog):
    registry = FileRegistry(path)
    before = (registry.services(), registry.workloads())
    write(path, REGISTRY.replace("number: 9090", "number: nine"))
    assert registry.refresh() is False
    assert (registry.services(), registry.workloads()) == before
    [problem] = registry.diagnostics()
    assert problem.field == "services[0].ports[1].number"
    assert f"{path}:5:22: error" in caplog.text
    write(path, REGISTRY.replace("127.0.10.2", "127.0.10.3"))
    assert registry.refresh() is True
    assert registry.diagnostics() == ()


def test_a_file_that_goes_away_changes_nothing(path):
    registry = FileRegistry(path)
    path.unlink()
    assert registry.refresh() is False
    assert len(registry.services()) == 2
    assert "cannot be read" in registry.diagnostics()[0].message


def test_the_watcher_applies_a_change_once_the_file_is_stable(path):
    changes: queue.Queue[ChangeSet] = queue.Queue()
    with FileRegistry(path, poll_interval=0.02) as registry:
        registry.subscribe(changes.put)
        write(path, REGISTRY.replace("127.0.10.2", "127.0.10.3"))
        change = changes.get(timeout=30)
    assert Kind.ENDPOINTS in change.kinds
    assert "127.0.10.3" in repr(registry.workloads())
