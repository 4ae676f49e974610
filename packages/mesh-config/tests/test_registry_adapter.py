"""ServiceEntry and WorkloadEntry resources as mesh_model services, endpoints, workloads and a registry."""

import logging
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mesh_config
from mesh_config.registry_adapter import (
    ServiceEntryRegistry,
    service_entry_endpoints,
    service_entry_services,
    workload_entry_workload,
)
from mesh_model import (
    AggregateRegistry,
    ConfigKey,
    Endpoint,
    HealthStatus,
    Kind,
    LabelSelector,
    Locality,
    MeshLocation,
    Protocol,
    Resolution,
    ServiceKey,
    ServicePort,
    ServiceRegistry,
    TlsMode,
    endpoints_key,
    service_key,
    workload_key,
)


def resources(text: str) -> tuple:
    result = mesh_config.load_text(textwrap.dedent(text), default_namespace="shop")
    assert result.ok, [d.format() for d in result.errors]
    return result.resources


def se(name: str, spec: str, metadata: str = "") -> str:
    body = textwrap.indent(textwrap.dedent(spec), "  ")
    extra = textwrap.indent(textwrap.dedent(metadata), "  ")
    return (
        f"---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: {name}\n{extra}spec:\n{body}"
    )


def we(name: str, spec: str, metadata: str = "") -> str:
    body = textwrap.indent(textwrap.dedent(spec), "  ")
    extra = textwrap.indent(textwrap.dedent(metadata), "  ")
    return (
        f"---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  name: {name}\n{extra}spec:\n{body}"
    )


PAYMENTS = se(
    "payments",
    """\
    hosts: [api.example.com]
    addresses: [240.0.0.1/32, 10.0.0.0/24]
    ports:
    - {number: 443, name: HTTPS, protocol: https}
    - {number: 8080, name: http-alt, targetPort: 9090}
    - {number: 3306, name: db}
    location: MESH_INTERNAL
    resolution: STATIC
    subjectAltNames: [spiffe://cluster.local/ns/shop/sa/payments]
    endpoints:
    - address: 10.0.0.5
      ports: {HTTPS: 8443}
      labels: {version: v1}
      serviceAccount: payments
      network: net-a
      locality: us/us-1
    - address: 10.0.0.6
      weight: 7
      labels: {security.istio.io/tlsMode: disabled, istio-locality: eu.eu-2}
      serviceAccount: payments
    - network: remote
    """,
    "labels: {team: pay}\n",
)

SELECTING = se(
    "web",
    """\
    hosts: [web.example.com]
    ports: [{number: 80, name: http, protocol: HTTP}]
    location: MESH_INTERNAL
    resolution: STATIC
    workloadSelector: {labels: {app: web}}
    """,
)

VM = we(
    "vm-1",
    """\
    address: 10.1.0.1
    ports: {http: 8080}
    labels: {app: web, version: v1}
    serviceAccount: web
    weight: 0
    """,
    "labels: {version: v2}\n",
)


def test_one_service_per_host():
    (entry,) = resources(
        se(
            "m",
            "hosts: [payments, api.example.org, API.example.org.]\nports: [{number: 80, name: web, protocol: HTTP}]\n",
        )
    )
    services = service_entry_services(entry)
    assert [s.hostname.value for s in services] == ["payments.shop.svc.cluster.local", "api.example.org"]
    assert all(s.ports == (ServicePort("web", 80, Protocol.HTTP),) for s in services)
    assert all(s.resolution is Resolution.NONE and s.location is MeshLocation.MESH_EXTERNAL for s in services)


def test_service_conversions_follow_istio():
    (entry,) = resources(PAYMENTS)
    (api,) = service_entry_services(entry)
    assert api.hostname.value == "api.example.com"
    assert api.namespace == "shop"
    assert api.addresses == ("240.0.0.1", "10.0.0.0/24")
    assert api.ports == (
        ServicePort("https", 443, Protocol.HTTPS),
        ServicePort("http-alt", 8080, Protocol.HTTP, target_port=9090),
        ServicePort("db", 3306, Protocol.TCP),
    )
    assert api.resolution is Resolution.STATIC
    assert api.location is MeshLocation.MESH_INTERNAL
    assert api.export_to == frozenset({"*"})
    assert api.service_accounts == ("spiffe://cluster.local/ns/shop/sa/payments",)
    assert api.labels == {"team": "pay"}
    assert api.selector is None
    assert api.origin == ConfigKey(Kind.SERVICE_ENTRY, "shop", "payments")


def test_export_to_defaults_to_the_callers_mesh_default():
    (entry,) = resources(se("a", "hosts: [a.com]\naddresses: [240.0.0.1]\n"))
    assert service_entry_services(entry, default_export_to=["."])[0].export_to == frozenset({"."})
    (private,) = resources(se("a", "hosts: [a.com]\naddresses: [240.0.0.1]\nexportTo: ['~']\n"))
    assert service_entry_services(private, default_export_to=["."])[0].export_to == frozenset({"~"})


def test_short_hosts_resolve_with_the_domain_suffix():
    (entry,) = resources(se("a", "hosts: [db]\naddresses: [240.0.0.1]\n"))
    assert service_entry_services(entry, domain_suffix="corp.internal")[0].hostname.value == "db.shop.svc.corp.internal"


def test_inline_endpoints():
    (entry,) = resources(PAYMENTS)
    (service,) = service_entry_services(entry)
    first, second = service_entry_endpoints(entry, service)
    assert first == Endpoint(
        address="10.0.0.5",
        ports={"https": 8443},
        labels={"version": "v1"},
        service_account="payments",
        locality=Locality("us", "us-1"),
        tls_mode=TlsMode.ISTIO,
        network="net-a",
    )
    assert (first.workload_name, first.namespace) == ("", "")  # as in Istio: no workload, no namespace
    assert first.target_port(service.port(443)) == 8443
    assert first.target_port(service.port(8080)) == 9090
    assert first.target_port(service.port(3306)) == 3306
    assert second.weight == 7
    assert second.tls_mode is TlsMode.DISABLED
    assert second.locality == Locality("eu", "eu-2")


def test_tls_mode_follows_the_label_then_the_service_account():
    (entry,) = resources(
        se(
            "t",
            """\
            hosts: [t.com]
            resolution: STATIC
            endpoints:
            - {address: 10.0.0.1}
            - {address: 10.0.0.2, labels: {security.istio.io/tlsMode: istio}}
            """,
        )
    )
    modes = [e.tls_mode for e in service_entry_endpoints(entry, service_entry_services(entry)[0])]
    assert modes == [TlsMode.DISABLED, TlsMode.ISTIO]


def test_dns_entries_without_endpoints_resolve_their_host():
    (entry,) = resources(se("d", "hosts: [d.example.com, '*.w.com']\nresolution: DNS\nendpoints: [{address: w.com}]\n"))
    assert [e.address for e in service_entry_endpoints(entry, service_entry_services(entry)[0])] == ["w.com"]
    (plain,) = resources(se("d", "hosts: [d.example.com]\nresolution: DNS\n"))
    (endpoint,) = service_entry_endpoints(plain, service_entry_services(plain)[0])
    assert (endpoint.address, endpoint.tls_mode, endpoint.ports) == ("d.example.com", TlsMode.DISABLED, ())
    (static,) = resources(se("s", "hosts: [s.example.com]\nresolution: STATIC\n"))
    assert service_entry_endpoints(static, service_entry_services(static)[0]) == ()


def test_workload_entry_becomes_a_workload():
    (entry,) = resources(VM)
    workload = workload_entry_workload(entry)
    assert workload.key.namespace == "shop"
    assert workload.addresses == ("10.1.0.1",)
    assert workload.labels == {"app": "web", "version": "v2"}, "metadata labels win"
    assert workload.ports == (("http", 8080),)
    assert workload.weight == 1
    assert workload.tls_mode is TlsMode.ISTIO


def test_registry_answers_the_service_registry_protocol():
    registry = ServiceEntryRegistry(resources(PAYMENTS + SELECTING + VM), name="se")
    assert isinstance(registry, ServiceRegistry)
    assert registry.name == "se"
    assert [s.hostname.value for s in registry.services()] == ["api.example.com", "web.example.com"]
    api = ServiceKey("shop", "api.example.com")
    assert len(registry.endpoints(api, 443)) == 2, "the endpoint without an address is left out"
    assert registry.endpoints(api, 1) == ()
    assert registry.endpoints(ServiceKey("shop", "nope.com"), 443) == ()
    web = ServiceKey("shop", "web.example.com")
    assert registry.service(web).selector == LabelSelector({"app": "web"})
    (endpoint,) = registry.endpoints(web, 80)
    assert (endpoint.address, endpoint.workload_name, endpoint.target_port(registry.service(web).port(80))) == (
        "10.1.0.1",
        "vm-1",
        8080,
    )
    (workload,) = registry.workloads()
    assert workload.services == frozenset({web})


def test_selection_follows_istio():
    text = (
        se("empty", "hosts: [e.com]\nports: [{number: 80, name: http}]\nresolution: STATIC\nworkloadSelector: {}\n")
        + se(
            "dns",
            "hosts: [d.com]\nports: [{number: 80, name: http}]\nresolution: DNS\n"
            "workloadSelector: {labels: {app: web}}\n",
        )
        + SELECTING
        + we("by-name", "address: vm.example.com\nlabels: {app: web}\n")
        + we("elsewhere", "address: 10.2.0.1\nlabels: {app: web}\n", "namespace: other\n")
        + we("gateway-only", "network: remote\nlabels: {app: web}\n")
    )
    registry = ServiceEntryRegistry(resources(text))
    assert registry.endpoints(ServiceKey("shop", "e.com"), 80) == (), "an empty selector selects nothing"
    assert [e.address for e in registry.endpoints(ServiceKey("shop", "d.com"), 80)] == ["vm.example.com"]
    assert registry.endpoints(ServiceKey("shop", "web.example.com"), 80) == (), "DNS-named workloads back DNS services"


def test_health_checked_workloads_need_a_healthy_condition():
    checked = "annotations: {proxy.istio.io/health-checks-enabled: 'true'}\n"
    text = (
        SELECTING
        + we("up", "address: 10.0.0.1\nlabels: {app: web}\n", checked)
        + "status:\n  conditions: [{type: Healthy, status: 'True'}]\n"
    )
    text += we("unknown", "address: 10.0.0.2\nlabels: {app: web}\n", checked)
    text += we("plain", "address: 10.0.0.3\nlabels: {app: web}\n")
    registry = ServiceEntryRegistry(resources(text))
    health = {e.address: e.health for e in registry.endpoints(ServiceKey("shop", "web.example.com"), 80)}
    assert health == {
        "10.0.0.1": HealthStatus.HEALTHY,
        "10.0.0.2": HealthStatus.UNHEALTHY,
        "10.0.0.3": HealthStatus.HEALTHY,
    }


def test_the_older_entry_defines_a_shared_host_and_both_give_endpoints():
    spec = "hosts: [x.com]\nresolution: STATIC\nports: [{number: 80, name: http, protocol: HTTP}]\n"
    old = se("b-old", spec + "endpoints: [{address: 10.0.0.1}]\n", "creationTimestamp: '2020-01-01T00:00:00Z'\n")
    new = se(
        "a-new",
        spec + "location: MESH_INTERNAL\nendpoints: [{address: 10.0.0.2}]\n",
        "creationTimestamp: '2024-01-01T00:00:00Z'\n",
    )
    registry = ServiceEntryRegistry(resources(new + old))
    (service,) = registry.services()
    assert service.origin.name == "b-old"
    assert service.location is MeshLocation.MESH_EXTERNAL
    assert [e.address for e in registry.endpoints(service.key, 80)] == ["10.0.0.1", "10.0.0.2"]


class Recorder:
    def __init__(self, registry) -> None:
        self.seen: list[set] = []
        self.subscription = registry.subscribe(lambda changes: self.seen.append(set(changes.keys)))


def test_update_tells_what_changed():
    registry = ServiceEntryRegistry()
    recorder = Recorder(registry)
    web = ServiceKey("shop", "web.example.com")
    first = registry.update(resources(SELECTING))
    assert set(first.keys) == {service_key(web), endpoints_key(web)}
    registry.update(resources(SELECTING + VM))
    vm = workload_key(registry.workloads()[0].key)
    assert recorder.seen[-1] == {vm, endpoints_key(web)}, "a new backing workload changes only endpoints"
    assert not registry.update(resources(SELECTING + VM)), "nothing changed"
    registry.update(resources(SELECTING.replace("protocol: HTTP", "protocol: HTTP2") + VM))
    assert recorder.seen[-1] == {service_key(web), endpoints_key(web)}
    registry.update(())
    assert recorder.seen[-1] == {service_key(web), endpoints_key(web), vm}
    assert registry.services() == ()
    assert registry.workloads() == ()
    assert len(recorder.seen) == 4
    recorder.subscription.cancel()
    recorder.subscription.cancel()
    registry.update(resources(SELECTING))
    assert len(recorder.seen) == 4


def test_a_failing_handler_does_not_stop_the_others(caplog):
    registry = ServiceEntryRegistry()

    def broken(_changes):
        raise RuntimeError("boom")

    registry.subscribe(broken)
    recorder = Recorder(registry)
    with caplog.at_level(logging.ERROR, logger="mesh_config.registry_adapter"):
        registry.update(resources(SELECTING))
    assert len(recorder.seen) == 1
    assert "boom" in caplog.text


def test_entries_that_break_model_rules_are_left_out_and_listed():
    bad_locality = se(
        "loc",
        "hosts: [l.com]\nresolution: STATIC\n"
        "endpoints: [{address: 10.0.0.1, locality: a/b/c/d}, {address: 10.0.0.2}]\n",
    )
    unresolvable = se("short", "hosts: [db]\naddresses: [240.0.0.1]\n", "namespace: ''\n")
    items = resources(bad_locality) + mesh_config.load_text(textwrap.dedent(unresolvable)).resources
    registry = ServiceEntryRegistry(items)
    assert [s.hostname.value for s in registry.services()] == ["l.com"]
    assert [e.address for e in registry.endpoints(ServiceKey("shop", "l.com"), 80)] == []
    problems = dict(registry.problems)
    assert "endpoints[0]" in problems[ConfigKey(Kind.SERVICE_ENTRY, "shop", "loc")]
    assert "db" in problems[ConfigKey(Kind.SERVICE_ENTRY, "", "short")]


def test_other_kinds_are_ignored_and_the_registry_joins_an_aggregate():
    other = mesh_config.load_text(
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: p, namespace: shop}\nspec: {}\n"
    ).resources
    registry = ServiceEntryRegistry(other + resources(SELECTING + VM))
    aggregate = AggregateRegistry([registry])
    web = ServiceKey("shop", "web.example.com")
    assert [e.address for e in aggregate.endpoints(web, 80)] == ["10.1.0.1"]
    seen = []
    aggregate.subscribe(seen.append)
    registry.update(resources(SELECTING))
    assert endpoints_key(web) in seen[-1]


HOSTS = st.sampled_from(["a.com", "b.com", "c.com"])
ENTRY = st.tuples(
    st.sampled_from(["e1", "e2", "e3"]),
    HOSTS,
    st.sampled_from(["10.0.0.1", "10.0.0.2"]),
    st.sampled_from(["HTTP", "TCP"]),
)


def _text(entries) -> str:
    chosen = {entry[0]: entry for entry in entries}.values()
    return "".join(
        se(
            name,
            f"hosts: [{host}]\nresolution: STATIC\nports: [{{number: 80, name: p, protocol: {protocol}}}]\n"
            f"endpoints: [{{address: {address}}}]\n",
        )
        for name, host, address, protocol in chosen
    )


@settings(max_examples=40, deadline=None)
@given(st.lists(ENTRY, max_size=4), st.lists(ENTRY, max_size=4))
def test_updates_end_where_a_fresh_registry_starts_and_report_exactly_the_differences(before, after):
    registry = ServiceEntryRegistry(resources(_text(before)) if before else ())
    old_services = {s.key: s for s in registry.services()}
    old_endpoints = {key: registry.endpoints(key, 80) for key in old_services}
    changes = registry.update(resources(_text(after)) if after else ())
    fresh = ServiceEntryRegistry(resources(_text(after)) if after else ())
    assert registry.services() == fresh.services()
    new_services = {s.key: s for s in fresh.services()}
    for key in old_services.keys() | new_services.keys():
        service_changed = old_services.get(key) != new_services.get(key)
        endpoints_changed = old_endpoints.get(key, ()) != (fresh.endpoints(key, 80) if key in new_services else ())
        assert (service_key(key) in changes) is service_changed
        assert (endpoints_key(key) in changes) is (service_changed or endpoints_changed)


@pytest.mark.parametrize(
    ("protocol", "name", "expected"),
    [("", "grpc-api", Protocol.GRPC), ("", "x", Protocol.UNSUPPORTED), ("mongo", "x", Protocol.MONGO)],
)
def test_port_protocol_is_declared_or_implied_by_the_name(protocol, name, expected):
    port = f"{{number: 1234, name: {name}, protocol: '{protocol}'}}" if protocol else f"{{number: 1234, name: {name}}}"
    (entry,) = resources(se("p", f"hosts: [p.com]\naddresses: [240.0.0.1]\nports: [{port}]\n"))
    assert service_entry_services(entry)[0].ports[0].protocol is expected
