"""ProxyGenerator: a proxy's whole snapshot, consistent, and shared between proxies of one scope."""

from __future__ import annotations

import logging

import attrs
import pytest

from mesh_config import PushContext, ServiceEntryRegistry, load_text
from mesh_model import (
    AggregateRegistry,
    ChangeSet,
    ConfigKey,
    InMemoryRegistry,
    Kind,
    Proxy,
    Service,
    endpoints_key,
)
from mesh_xds import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    SECRET_TYPE,
    InconsistentSnapshotError,
    InMemorySecretProvider,
    TlsSecret,
    unpack,
)
from mesh_xds.generate import (
    STATIC_CLUSTERS,
    GenerationContext,
    ProxyGenerator,
    SidecarAddresses,
    UnsupportedProxyError,
    generator,
)
from mesh_xds.testing.envoy import validate_config
from mesh_xds.testing.render import static_bootstrap

DOMAIN = "default.svc.cluster.local"
REVIEWS = f"reviews.{DOMAIN}"
BOOKINFO = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: bookinfo-gateway}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: ["*"]
  - port: {number: 8443, name: https, protocol: HTTPS}
    hosts: ["bookinfo.example.com"]
    tls: {mode: SIMPLE, credentialName: bookinfo-cert}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bookinfo}
spec:
  hosts: ["*"]
  gateways: [bookinfo-gateway]
  http:
  - route:
    - destination: {host: productpage, port: {number: 9080}}
"""


@attrs.define
class _Mesh:
    """A bookinfo push, and contexts for its proxies."""

    registry: InMemoryRegistry
    config: str = BOOKINFO
    push: PushContext = attrs.field(init=False)
    services: AggregateRegistry = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        resources = self.resources()
        self.services = AggregateRegistry([self.registry, ServiceEntryRegistry(resources)])
        self.push = PushContext.build(resources, self.services)

    def resources(self):
        return load_text(self.config, default_namespace="default").raise_for_errors().resources

    def rebuild(self, *keys: ConfigKey) -> None:
        self.push = self.push.rebuild(ChangeSet.of(*keys), self.resources(), self.services)

    def sidecar(self, app: str = "productpage", index: int = 1, **metadata: object) -> GenerationContext:
        node = f"sidecar~127.0.10.{index}~{app}-v1-{index}.default~{DOMAIN}"
        proxy = Proxy.parse(node, {"NAMESPACE": "default", "LABELS": {"app": app, "version": "v1"}, **metadata})
        addresses = SidecarAddresses(f"127.0.10.{index}", f"127.0.11.{index}", f"127.0.12.{index}")
        return GenerationContext(proxy, self.push, self.services, addresses=addresses)

    def proxy(self, node: str, **metadata: object) -> GenerationContext:
        return GenerationContext(Proxy.parse(node, {"NAMESPACE": "default", **metadata}), self.push, self.services)


@pytest.fixture
def mesh(bookinfo_registry) -> _Mesh:
    return _Mesh(bookinfo_registry())


def _names(snapshot, type_url: str) -> set[str]:
    return set(snapshot.resources(type_url).names)


def _messages(snapshot, type_url: str) -> list:
    return [unpack(resource) for resource in snapshot.resources(type_url).values()]


def test_a_sidecar_gets_a_consistent_snapshot_under_istios_names_that_envoy_accepts(mesh):
    snapshot = ProxyGenerator().generate(mesh.sidecar())
    assert snapshot.missing(static_clusters=STATIC_CLUSTERS) == ()
    clusters = _names(snapshot, CLUSTER_TYPE)
    assert {f"outbound|9080||{REVIEWS}", f"outbound|9080|v1|{REVIEWS}", f"outbound|9080|v2|{REVIEWS}"} <= clusters
    assert {"inbound|9080||", "BlackHoleCluster", "PassthroughCluster", "InboundPassthroughCluster"} <= clusters
    assert _names(snapshot, ENDPOINT_TYPE) == {name for name in clusters if name.startswith("outbound|")}
    assert _names(snapshot, LISTENER_TYPE) == {"127.0.10.1_9080", "127.0.12.1_9080"}
    assert _names(snapshot, ROUTE_TYPE) == {"9080"}
    (v1,) = [cla for cla in _messages(snapshot, ENDPOINT_TYPE) if cla.cluster_name == f"outbound|9080|v1|{REVIEWS}"]
    assert [lb.endpoint.address.socket_address.address for lb in v1.endpoints[0].lb_endpoints] == ["127.0.4.1"]
    config = static_bootstrap(
        clusters=_messages(snapshot, CLUSTER_TYPE),
        load_assignments=_messages(snapshot, ENDPOINT_TYPE),
        listeners=_messages(snapshot, LISTENER_TYPE),
        routes=_messages(snapshot, ROUTE_TYPE),
        node_id=mesh.sidecar().proxy.node_id,
    )
    validate_config(config, check=True)


def test_proxies_of_one_scope_share_their_outbound_resources(mesh):
    generate = ProxyGenerator()
    first = generate.generate(mesh.sidecar(index=1))
    second = generate.generate(mesh.sidecar(index=2))
    assert second.resources(ENDPOINT_TYPE) is first.resources(ENDPOINT_TYPE)
    assert second.resources(ROUTE_TYPE) is first.resources(ROUTE_TYPE)
    outbound = f"outbound|9080|v1|{REVIEWS}"
    assert second.resources(CLUSTER_TYPE)[outbound] is first.resources(CLUSTER_TYPE)[outbound]
    # what is bound to each proxy's own addresses is its own
    assert first.resources(CLUSTER_TYPE)["inbound|9080||"] != second.resources(CLUSTER_TYPE)["inbound|9080||"]
    assert _names(second, LISTENER_TYPE) == {"127.0.10.2_9080", "127.0.12.2_9080"}
    assert generate.stats.scopes == 1
    assert generate.stats.hits >= 3
    # another scope (other labels) still shares equal resources
    reviews = generate.generate(mesh.sidecar("reviews", index=3))
    details = f"outbound|9080||details.{DOMAIN}"
    assert reviews.resources(CLUSTER_TYPE)[details] is first.resources(CLUSTER_TYPE)[details]
    assert generate.stats.scopes == 2


def test_a_new_push_with_the_same_content_keeps_the_previous_snapshot(mesh):
    generate = ProxyGenerator()
    before = generate.generate(mesh.sidecar())
    mesh.rebuild(ConfigKey(Kind.VIRTUAL_SERVICE, "default", "reviews"))
    assert generate.generate(mesh.sidecar(), before) is before


def test_a_route_change_replaces_only_the_route_set(mesh):
    generate = ProxyGenerator()
    before = generate.generate(mesh.sidecar())
    mesh.config = BOOKINFO.replace("subset: v1}", "subset: v2}")
    mesh.rebuild(ConfigKey(Kind.VIRTUAL_SERVICE, "default", "reviews"))
    after = generate.generate(mesh.sidecar(), before)
    assert after.resources(ROUTE_TYPE) is not before.resources(ROUTE_TYPE)
    for type_url in (CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE):
        assert after.resources(type_url) is before.resources(type_url)


def test_refresh_regenerates_only_the_load_assignments(bookinfo_endpoint, mesh):
    generate = ProxyGenerator()
    before = generate.generate(mesh.sidecar())
    reviews = Service(REVIEWS, "default").key
    endpoints = [bookinfo_endpoint("127.0.4.1", "reviews", "v1"), bookinfo_endpoint("127.0.4.2", "reviews", "v2")]
    mesh.registry.set_endpoints(reviews, endpoints)
    mesh.rebuild(endpoints_key(reviews))
    after = generate.refresh(mesh.sidecar(), before, {ENDPOINT_TYPE})
    assert after.resources(ENDPOINT_TYPE) is not before.resources(ENDPOINT_TYPE)
    for type_url in (CLUSTER_TYPE, LISTENER_TYPE, ROUTE_TYPE):
        assert after.resources(type_url) is before.resources(type_url)
    v2 = unpack(after.resources(ENDPOINT_TYPE)[f"outbound|9080|v2|{REVIEWS}"])
    assert [lb.endpoint.address.socket_address.address for lb in v2.endpoints[0].lb_endpoints] == ["127.0.4.2"]
    mesh.rebuild(endpoints_key(reviews))
    assert generate.refresh(mesh.sidecar(), after, {ENDPOINT_TYPE}) is after  # nothing changed


def test_a_gateway_gets_its_listeners_routes_and_the_credentials_it_fetches_over_ads(mesh):
    secrets = InMemorySecretProvider()
    secrets.set_secret("kubernetes://bookinfo-cert", TlsSecret(certificate_chain=b"chain", private_key=b"key"))
    node = "router~127.0.20.1~ingressgateway-1.istio-system~istio-system.svc.cluster.local"
    ctx = mesh.proxy(node, LABELS={"istio": "ingressgateway"})
    snapshot = ProxyGenerator(secrets=secrets).generate(ctx)
    assert _names(snapshot, LISTENER_TYPE) == {"127.0.20.1_8080", "127.0.20.1_8443"}
    assert _names(snapshot, ROUTE_TYPE) == {"http.8080", "https.8443.https.bookinfo-gateway.default"}
    assert _names(snapshot, SECRET_TYPE) == {"kubernetes://bookinfo-cert"}
    assert not any(name.startswith("inbound|") for name in _names(snapshot, CLUSTER_TYPE))
    assert snapshot.missing(static_clusters=STATIC_CLUSTERS) == ()


def test_a_gateway_whose_credential_is_missing_is_served_and_the_log_says_what_it_waits_for(mesh, caplog):
    node = "router~127.0.20.1~ingressgateway-1.istio-system~istio-system.svc.cluster.local"
    with caplog.at_level(logging.WARNING, "mesh_xds.generate"):
        snapshot = ProxyGenerator().generate(mesh.proxy(node, LABELS={"istio": "ingressgateway"}))
    assert _names(snapshot, SECRET_TYPE) == set()
    assert "waits for a secret the control plane does not have: Secret 'kubernetes://bookinfo-cert'" in caplog.text


def test_a_proxyless_grpc_client_gets_listeners_for_the_names_it_may_dial(mesh):
    node = f"sidecar~127.0.30.1~grpc-client.default~{DOMAIN}"
    snapshot = ProxyGenerator().generate(mesh.proxy(node, GENERATOR="grpc"))
    listeners = _names(snapshot, LISTENER_TYPE)
    assert {f"{REVIEWS}:9080", "reviews.default.svc:9080", "reviews.default:9080", "reviews:9080"} <= listeners
    assert f"outbound|9080|v1|{REVIEWS}" in _names(snapshot, CLUSTER_TYPE)
    assert _names(snapshot, ENDPOINT_TYPE) == _names(snapshot, CLUSTER_TYPE)
    assert snapshot.missing() == ()


def test_a_waypoint_is_refused_with_what_is_served(mesh):
    ctx = mesh.proxy(f"waypoint~127.0.40.1~waypoint.default~{DOMAIN}")
    with pytest.raises(UnsupportedProxyError, match="is a waypoint; only sidecars, gateways"):
        ProxyGenerator().generate(ctx)


def test_a_snapshot_lacking_what_its_listeners_wait_for_is_refused(mesh, monkeypatch):
    monkeypatch.setattr(generator, "route_resources", lambda ctx: [])
    with pytest.raises(InconsistentSnapshotError, match="lacks 1 resource") as raised:
        ProxyGenerator().generate(mesh.sidecar())
    (missing,) = raised.value.missing
    assert (missing.type_url, missing.name) == (ROUTE_TYPE, "9080")


def test_a_route_to_a_subset_nobody_defines_is_served_with_a_warning(mesh, caplog):
    mesh.config = BOOKINFO.replace("subset: v1}", "subset: v9}")
    mesh.rebuild(ConfigKey(Kind.VIRTUAL_SERVICE, "default", "reviews"))
    with caplog.at_level(logging.WARNING, "mesh_xds.generate"):
        snapshot = ProxyGenerator().generate(mesh.sidecar())
    assert f"outbound|9080|v9|{REVIEWS}" not in snapshot.resources(CLUSTER_TYPE)
    assert f"no service makes Cluster 'outbound|9080|v9|{REVIEWS}'" in caplog.text


def test_bad_arguments_are_refused_with_what_is_wrong(mesh):
    with pytest.raises(ValueError, match="not the string 'sds-grpc'"):
        ProxyGenerator(static_clusters="sds-grpc")
    with pytest.raises(ValueError, match="max_scopes must be a positive integer"):
        ProxyGenerator(max_scopes=0)
    snapshot = ProxyGenerator().generate(mesh.sidecar())
    with pytest.raises(ValueError, match="only load assignments and secrets can be refreshed"):
        ProxyGenerator().refresh(mesh.sidecar(), snapshot, {LISTENER_TYPE})
