import re

import pytest

from mesh_model import (
    ConfigKey,
    Endpoint,
    HealthStatus,
    Hostname,
    InvalidHostError,
    InvalidLabelError,
    InvalidServiceError,
    Labels,
    LabelSelector,
    Locality,
    MeshLocation,
    Protocol,
    Resolution,
    Service,
    ServiceKey,
    ServicePort,
    SpiffeId,
    TlsMode,
    Workload,
    WorkloadKey,
)

HOST = "reviews.default.svc.cluster.local"
HTTP = ServicePort("http", 9080, Protocol.HTTP)


def fails(fragment: str):
    return pytest.raises(InvalidServiceError, match=re.escape(fragment))


def service(**changes) -> Service:
    return Service(**{"hostname": HOST, "namespace": "default", "ports": [HTTP], **changes})


# ---------------------------------------------------------------- ServicePort


def test_service_port_fields():
    port = ServicePort("grpc-api", 8080, Protocol.GRPC, target_port=18080)
    assert (port.name, port.number, port.protocol, port.target_port) == ("grpc-api", 8080, Protocol.GRPC, 18080)
    assert ServicePort("", 80).protocol is Protocol.UNSUPPORTED


@pytest.mark.parametrize("number", [0, -1, 65536, True, False, 80.0, "80", None])
def test_port_numbers_must_be_in_range(number):
    with fails(f"port http number {number!r} is not a port number in 1..65535"):
        ServicePort("http", number)


@pytest.mark.parametrize("target", [0, 70000, True, "8080"])
def test_target_ports_must_be_in_range(target):
    with fails(f"target port {target!r} is not a port number"):
        ServicePort("http", 80, target_port=target)


@pytest.mark.parametrize("name", ["HTTP", "http_web", "-http", "http-", "a" * 64, "h ttp"])
def test_bad_port_names_are_refused(name):
    with fails(f"port name {name!r}"[:60]):
        ServicePort(name, 80)


def test_port_name_and_protocol_types_are_checked():
    with fails("port name must be a string, not int"):
        ServicePort(80, 80)
    with fails("protocol must be a Protocol"):
        ServicePort("http", 80, "HTTP")


# ---------------------------------------------------------------- Service


def test_service_from_plain_values():
    svc = Service(
        HOST.upper() + ".",
        "default",
        ports=(p for p in [HTTP]),
        addresses="10.96.0.10",
        labels={"app": "reviews"},
        export_to=".",
        selector={"app": "reviews"},
    )
    assert svc.hostname == Hostname(HOST)
    assert svc.ports == (HTTP,)
    assert svc.addresses == ("10.96.0.10",)
    assert svc.labels == Labels({"app": "reviews"})
    assert svc.export_to == frozenset({"."})
    assert svc.selector == LabelSelector({"app": "reviews"})
    assert svc.key == ServiceKey("default", Hostname(HOST))
    assert svc.resolution is Resolution.STATIC
    assert svc.location is MeshLocation.MESH_INTERNAL


def test_a_lone_port_is_one_port():
    assert service(ports=HTTP).ports == (HTTP,)


def test_bad_host_and_labels_are_refused():
    with pytest.raises(InvalidHostError, match="bad_host"):
        service(hostname="bad_host.example.com")
    with pytest.raises(InvalidLabelError, match="not ok"):
        service(labels={"app": "not ok"})


def test_duplicate_port_numbers_are_refused():
    with fails(f"service {HOST}: port number 9080 is declared twice"):
        service(ports=[HTTP, ServicePort("grpc", 9080)])


def test_duplicate_port_names_are_refused_but_unnamed_ports_may_repeat():
    with fails("port name 'http' is declared twice"):
        service(ports=[HTTP, ServicePort("http", 9081)])
    assert len(service(ports=[ServicePort("", 1), ServicePort("", 2)]).ports) == 2


@pytest.mark.parametrize("ports", [["http"], [("http", 80)], 80, "http"])
def test_ports_must_be_service_ports(ports):
    with fails("ports must be"):
        service(ports=ports)


@pytest.mark.parametrize("address", ["10.0.0.300", "reviews", "10.0.0.0/33", "", "fe80::/129"])
def test_bad_addresses_are_refused(address):
    with fails(f"address {address!r} is not an IP address or CIDR block"):
        service(addresses=[address])


def test_addresses_may_be_ips_or_cidrs():
    assert service(addresses=["10.0.0.1", "10.1.0.0/16", "2001:db8::/32"]).addresses[1] == "10.1.0.0/16"
    with fails("address must be a string, not int"):
        service(addresses=[167772161])


@pytest.mark.parametrize("namespace", ["Default", "ns_1", "-ns", "n" * 64, "a.b"])
def test_bad_namespaces_are_refused(namespace):
    with fails(f"namespace {namespace!r}"):
        service(namespace=namespace)


@pytest.mark.parametrize(("namespace", "message"), [("", "namespace is empty"), (None, "not None"), (3, "not 3")])
def test_missing_namespaces_are_refused(namespace, message):
    with fails(message):
        service(namespace=namespace)


@pytest.mark.parametrize("entry", ["Bad", "a_b", ""])
def test_bad_export_to_entries_are_refused(entry):
    with fails("exportTo entry"):
        service(export_to=[entry])


def test_resolution_location_and_selector_types_are_checked():
    with fails("resolution 'DNS' is not a Resolution"):
        service(resolution="DNS")
    with fails("location 'MESH_EXTERNAL' is not a MeshLocation"):
        service(location="MESH_EXTERNAL")
    with fails("selector must be a LabelSelector or a mapping of labels, not 'app=reviews'"):
        service(selector="app=reviews")


def test_port_by_number_and_by_name():
    grpc = ServicePort("grpc", 9090, Protocol.GRPC)
    svc = service(ports=[HTTP, grpc])
    assert svc.port(9080) is HTTP
    assert svc.port("grpc") is grpc
    assert svc.port(9091) is None
    assert svc.port("tcp") is None
    assert svc.port("9080") is None


@pytest.mark.parametrize(
    ("export_to", "visible_in"),
    [
        (["*"], {"default", "other", "third", "istio-system"}),
        (["."], {"default"}),
        (["~"], set()),
        (["other", "third"], {"other", "third"}),
        ([".", "other"], {"default", "other"}),
        ([], set()),
    ],
)
def test_is_visible_from(export_to, visible_in):
    svc = service(export_to=export_to)
    for namespace in ("default", "other", "third", "istio-system"):
        assert svc.is_visible_from(namespace) == (namespace in visible_in), namespace


def test_special_export_to_entries_are_not_namespace_names():
    assert not service(export_to=["~"]).is_visible_from("~")
    assert not service(export_to=["."]).is_visible_from(".")


def test_services_are_hashable_values():
    first = service(labels={"a": "b"}, selector={"app": "x"}, origin=ConfigKey("ServiceEntry", "default", "se"))
    second = service(labels=Labels({"a": "b"}), selector=LabelSelector({"app": "x"}), origin=first.origin)
    assert first == second
    assert hash(first) == hash(second)
    assert len({first, second, service()}) == 2


# ---------------------------------------------------------------- ServiceKey


def test_service_key_str_order_and_string_host():
    key = ServiceKey("default", HOST)
    assert key == ServiceKey("default", Hostname.parse(HOST.upper()))
    assert str(key) == f"default/{HOST}"
    keys = [ServiceKey("b", "a.example.com"), ServiceKey("a", "z.example.com"), ServiceKey("a", "b.example.com")]
    assert [str(k) for k in sorted(keys)] == ["a/b.example.com", "a/z.example.com", "b/a.example.com"]
    with pytest.raises(InvalidHostError):
        ServiceKey("default", "not a host")
    with fails("namespace must be a string"):
        ServiceKey(None, HOST)


# ---------------------------------------------------------------- Endpoint


def test_endpoint_defaults_and_plain_values():
    endpoint = Endpoint("10.1.1.1", ports={"http": 9080}, labels={"app": "r"}, locality="us/us-a")
    assert endpoint.ports == (("http", 9080),)
    assert endpoint.port_map == {"http": 9080}
    assert endpoint.labels == Labels({"app": "r"})
    assert endpoint.locality == Locality("us", "us-a")
    assert (endpoint.weight, endpoint.health, endpoint.tls_mode) == (1, HealthStatus.HEALTHY, TlsMode.DISABLED)
    assert not endpoint.is_unix_socket
    assert Endpoint("unix:///var/run/app.sock").is_unix_socket
    assert Endpoint("reviews.example.com").address == "reviews.example.com"


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("", "endpoint address is empty"),
        (None, "endpoint address must be a string, not None"),
        ("unix://", "'unix://' is not a valid unix socket path"),
        ("*.example.com", "may not be a wildcard"),
        ("bad host", "'bad host' is not an IP, unix:// path or host"),
        ("fe80::1% x", "may not carry an IPv6 zone"),
    ],
)
def test_bad_endpoint_addresses_are_refused(address, message):
    with fails(message):
        Endpoint(address)


@pytest.mark.parametrize(
    ("ports", "message"),
    [
        ({"http": 0}, "port 'http' 0 is not a port number"),
        ({"http": True}, "port 'http' True is not a port number"),
        ([("http", 80), ("http", 81)], "port name 'http' is given twice"),
        ([("http", 80), ("http", "x")], "port name 'http' is given twice"),
        ({"": 80}, "port name '' is not a non-empty string"),
        ({1: 80}, "port name 1 is not a non-empty string"),
        ([("http",)], "is not a (name, number) pair"),
        (80, "ports must be a mapping"),
    ],
)
def test_bad_endpoint_ports_are_refused(ports, message):
    with fails(message):
        Endpoint("10.1.1.1", ports=ports)


@pytest.mark.parametrize("weight", [0, -1, 2**32, True, 1.5])
def test_endpoint_weight_limits(weight):
    with fails(f"weight {weight!r}"):
        Endpoint("10.1.1.1", weight=weight)


def test_endpoint_weight_bounds_are_inclusive():
    assert Endpoint("10.1.1.1", weight=2**32 - 1).weight == 2**32 - 1


def test_endpoint_enum_fields_are_checked():
    with fails("health 'HEALTHY' is not a HealthStatus"):
        Endpoint("10.1.1.1", health="HEALTHY")
    with fails("tls_mode 'istio' is not a TlsMode"):
        Endpoint("10.1.1.1", tls_mode="istio")


def test_target_port_precedence():
    named = ServicePort("http", 80, target_port=8080)
    assert Endpoint("10.1.1.1", ports={"http": 9080}).target_port(named) == 9080
    assert Endpoint("10.1.1.1", ports={"grpc": 9090}).target_port(named) == 8080
    assert Endpoint("10.1.1.1").target_port(ServicePort("http", 80)) == 80
    unnamed = ServicePort("", 81, target_port=8181)
    assert Endpoint("10.1.1.1", ports={"http": 1}).target_port(unnamed) == 8181


def test_serves():
    http, grpc, unnamed = ServicePort("http", 80), ServicePort("grpc", 90), ServicePort("", 100)
    assert all(Endpoint("10.1.1.1").serves(p) for p in (http, grpc, unnamed))
    named = Endpoint("10.1.1.1", ports={"http": 8080})
    assert named.serves(http)
    assert not named.serves(grpc)
    assert named.serves(unnamed)


def test_endpoints_are_hashable_values():
    first = Endpoint("10.1.1.1", ports={"b": 2, "a": 1}, labels={"x": "y"})
    second = Endpoint("10.1.1.1", ports=[("a", 1), ("b", 2)], labels=Labels({"x": "y"}))
    assert first == second
    assert hash(first) == hash(second)
    assert first != Endpoint("10.1.1.2", ports={"a": 1, "b": 2}, labels={"x": "y"})


# ---------------------------------------------------------------- Workload


def workload(**changes) -> Workload:
    values = {
        "name": "reviews-v1",
        "namespace": "default",
        "addresses": ["10.1.1.1", "10.1.1.2"],
        "labels": {"app": "reviews"},
        "ports": {"http": 9080},
        **changes,
    }
    return Workload(**values)


def test_workload_to_endpoint_copies_its_fields():
    wl = workload(service_account="bookinfo", locality="us/us-a/r1", network="n1", cluster_id="c1", weight=3)
    endpoint = wl.to_endpoint()
    assert endpoint == Endpoint(
        "10.1.1.1",
        ports={"http": 9080},
        labels={"app": "reviews"},
        service_account="bookinfo",
        locality=Locality("us", "us-a", "r1"),
        weight=3,
        tls_mode=TlsMode.ISTIO,
        network="n1",
        cluster_id="c1",
        workload_name="reviews-v1",
        namespace="default",
    )


def test_workload_without_address_has_no_endpoint():
    with fails("workload default/reviews-v1 has no address to serve on"):
        workload(addresses=()).to_endpoint()


def test_workload_identity_and_key():
    assert workload().identity("cluster.local") == SpiffeId("cluster.local", "default", "default")
    assert str(workload(service_account="sa").identity("td")) == "spiffe://td/ns/default/sa/sa"
    assert workload().key == WorkloadKey("default", "reviews-v1")
    assert str(workload().key) == "default/reviews-v1"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"name": ""}, "workload name is empty"),
        ({"name": 7}, "workload name must be a string, not 7"),
        ({"namespace": "Bad"}, "namespace 'Bad'"),
        ({"addresses": ["bad host"]}, "address 'bad host'"),
        ({"ports": {"http": 70000}}, "port 'http' 70000 is not a port number"),
        ({"weight": 0}, "weight 0 is not in 1.."),
        ({"tls_mode": "istio"}, "tls_mode 'istio' is not a TlsMode"),
        ({"services": [HOST]}, f"workload services must be ServiceKey values, not {HOST!r}"),
    ],
)
def test_bad_workloads_are_refused(changes, message):
    with fails(message):
        workload(**changes)


def test_workload_services_accept_one_key_or_many():
    key = ServiceKey("default", HOST)
    assert workload(services=key).services == frozenset({key})
    assert workload(services=[key, key]).services == frozenset({key})


def test_workloads_are_hashable_values():
    assert workload() == workload(labels=Labels({"app": "reviews"}), ports=[("http", 9080)])
    assert hash(workload()) == hash(workload(addresses=("10.1.1.1", "10.1.1.2")))
    assert workload() != workload(addresses=["10.1.1.2", "10.1.1.1"])
