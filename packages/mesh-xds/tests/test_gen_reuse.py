"""What ProxyGenerator reuses between proxies and pushes is what it would make again: same answers, less work."""

import ipaddress

import pytest

from mesh_config import PushContext, ServiceEntryRegistry, load_text
from mesh_model import (
    AggregateRegistry,
    ChangeSet,
    Endpoint,
    InMemoryRegistry,
    Locality,
    Protocol,
    Proxy,
    Service,
    ServicePort,
    TlsMode,
    endpoints_key,
)
from mesh_xds import CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE, unpack
from mesh_xds.generate import GenerationContext, ProxyGenerator, SidecarAddresses
from mesh_xds.generate._endpoints import _is_ip

DOMAIN = "svc.cluster.local"
CONFIG = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: shop}
spec:
  host: reviews
  trafficPolicy: {connectionPool: {tcp: {maxConnections: CONNECTIONS}}}
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: shop}
spec:
  hosts: [reviews]
  http:
  - route:
    - {destination: {host: reviews, subset: v1}, weight: WEIGHT}
    - {destination: {host: reviews, subset: v2}, weight: REST}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: default, namespace: istio-system}
spec: {host: "*.local", trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}}
"""


def _endpoint(address: str, app: str, version: str) -> Endpoint:
    return Endpoint(
        address,
        ports={"http": 9080},
        labels={"app": app, "version": version},
        namespace="shop",
        tls_mode=TlsMode.ISTIO,
        locality=Locality("region", f"zone-{address[-1]}"),
        service_account=f"spiffe://cluster.local/ns/shop/sa/{app}",
    )


class _Mesh:
    def __init__(self) -> None:
        self.registry = InMemoryRegistry()
        http = ServicePort("http", 9080, Protocol.HTTP)
        for index, app in enumerate(("productpage", "reviews", "ratings"), start=1):
            service = Service(f"{app}.shop.{DOMAIN}", "shop", ports=[http], selector={"app": app})
            self.registry.upsert_service(service)
            endpoints = [_endpoint(f"127.0.{index}.{n}", app, f"v{n}") for n in (1, 2)]
            self.registry.set_endpoints(service.key, endpoints)
        self.resources = self._config(90, 10)
        self.services = AggregateRegistry([self.registry, ServiceEntryRegistry(self.resources)])
        self.push = PushContext.build(self.resources, self.services)

    @staticmethod
    def _config(weight: int, connections: int) -> tuple:
        text = CONFIG.replace("WEIGHT", str(weight)).replace("REST", str(100 - weight))
        text = text.replace("CONNECTIONS", str(connections))
        return load_text(text, default_namespace="shop").raise_for_errors().resources

    def change(self, weight: int = 90, connections: int = 10, *keys) -> None:
        """A new push after a change of the config; ``keys`` say what else changed, as a control plane's would."""
        resources = self._config(weight, connections)
        changed = (*keys, *(new.key for new in resources if new not in self.resources))
        self.resources = resources
        self.push = self.push.rebuild(ChangeSet.of(*changed), resources, self.services)

    def sidecar(self, index: int) -> GenerationContext:
        node = f"sidecar~127.0.10.{index}~productpage-{index}.shop~shop.{DOMAIN}"
        proxy = Proxy.parse(node, {"NAMESPACE": "shop", "LABELS": {"app": "productpage", "version": "v1"}})
        addresses = SidecarAddresses(f"127.0.10.{index}", f"127.0.11.{index}", f"127.0.12.{index}")
        return GenerationContext(proxy, self.push, self.services, addresses=addresses)


def _versions(snapshot) -> dict:
    return {
        url: {name: resource.version for name, resource in snapshot.resources(url).items()}
        for url in snapshot.type_urls
    }


@pytest.fixture
def mesh() -> _Mesh:
    return _Mesh()


def test_a_virtualservice_change_keeps_the_clusters_and_load_assignments_and_matches_a_fresh_generation(mesh):
    generator = ProxyGenerator()
    before = generator.generate(mesh.sidecar(1))
    mesh.change(50)
    misses = generator.stats.misses
    after = generator.generate(mesh.sidecar(1))
    assert generator.stats.misses == misses + 1  # only the routes were made again
    for type_url in (CLUSTER_TYPE, ENDPOINT_TYPE):
        for name, resource in after.resources(type_url).items():
            assert resource is before.resources(type_url)[name]
    assert after.resources(ROUTE_TYPE).digest != before.resources(ROUTE_TYPE).digest
    assert _versions(after) == _versions(ProxyGenerator().generate(mesh.sidecar(1)))


def test_a_destinationrule_change_makes_the_clusters_again(mesh):
    generator = ProxyGenerator()
    before = generator.generate(mesh.sidecar(1))
    mesh.change(connections=20)
    after = generator.generate(mesh.sidecar(1))
    reviews = f"outbound|9080||reviews.shop.{DOMAIN}"
    assert after.resources(CLUSTER_TYPE)[reviews].version != before.resources(CLUSTER_TYPE)[reviews].version
    assert unpack(after.resources(CLUSTER_TYPE)[reviews]).circuit_breakers.thresholds[0].max_connections.value == 20
    assert _versions(after) == _versions(ProxyGenerator().generate(mesh.sidecar(1)))


def test_an_endpoints_change_makes_the_load_assignments_again(mesh):
    generator = ProxyGenerator()
    generator.generate(mesh.sidecar(1))
    reviews = Service(f"reviews.shop.{DOMAIN}", "shop").key
    mesh.registry.set_endpoints(reviews, [_endpoint("127.0.2.7", "reviews", "v1")])
    mesh.change(90, 10, endpoints_key(reviews))
    after = generator.generate(mesh.sidecar(1))
    v1 = unpack(after.resources(ENDPOINT_TYPE)[f"outbound|9080|v1|reviews.shop.{DOMAIN}"])
    assert [lb.endpoint.address.socket_address.address for lb in v1.endpoints[0].lb_endpoints] == ["127.0.2.7"]
    assert _versions(after) == _versions(ProxyGenerator().generate(mesh.sidecar(1)))


def test_with_the_previous_snapshot_unchanged_sets_are_the_previous_ones(mesh):
    generator = ProxyGenerator()
    first = generator.generate(mesh.sidecar(1))
    mesh.change(50)
    again = generator.generate(mesh.sidecar(1), first)
    for type_url in (CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE):
        assert again.resources(type_url) is first.resources(type_url)
    assert _versions(again) == _versions(ProxyGenerator().generate(mesh.sidecar(1)))
    other = generator.generate(mesh.sidecar(2), first)  # another proxy: its own listeners and inbound clusters
    assert other.resources(CLUSTER_TYPE) is not first.resources(CLUSTER_TYPE)
    assert _versions(other) == _versions(ProxyGenerator().generate(mesh.sidecar(2)))


_ADDRESSES = (
    *("10.0.0.1", "0.0.0.0", "255.255.255.255", "256.1.1.1", "01.2.3.4", "1.2.3", "1.2.3.4.5", "1.2.3.04"),
    *("::1", "fe80::1", "2001:db8::8a2e:370:7334", "reviews.shop", "1.2.3.a", " 1.2.3.4", "1.2.3.4\n", ""),
    "\u0661.\u0662.\u0663.\u0664",  # digits of another script
)


@pytest.mark.parametrize("text", _ADDRESSES)
def test_the_ip_check_agrees_with_ipaddress(text):
    try:
        ipaddress.ip_address(text)
        expected = True
    except ValueError:
        expected = False
    assert _is_ip(text) is expected
