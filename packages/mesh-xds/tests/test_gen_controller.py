"""XdsController: bookinfo from a config store and a registry, served over ADS, pushed as Istio pushes."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

import attrs
import pytest

from mesh_config import InMemoryConfigStore, load_text
from mesh_model import InMemoryRegistry, Proxy, Service
from mesh_xds import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    PUSH_ORDER,
    ROUTE_TYPE,
    SECRET_TYPE,
    InMemorySecretProvider,
    NodeInfo,
    TlsSecret,
    XdsServer,
    unpack,
)
from mesh_xds.generate import ManualClock, SidecarAddresses, XdsController, generator
from mesh_xds.testing import AdsClient

DOMAIN = "default.svc.cluster.local"
REVIEWS = f"reviews.{DOMAIN}"
RATINGS = f"ratings.{DOMAIN}"
PRODUCTPAGE = f"sidecar~127.0.10.1~productpage-v1-1.default~{DOMAIN}"
GATEWAY = "router~127.0.20.1~ingressgateway-1.istio-system~istio-system.svc.cluster.local"
CONFIG = """
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
  - port: {number: 8443, name: https, protocol: HTTPS}
    hosts: ["bookinfo.example.com"]
    tls: {mode: SIMPLE, credentialName: bookinfo-cert}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bookinfo}
spec:
  hosts: ["bookinfo.example.com"]
  gateways: [bookinfo-gateway]
  http:
  - route:
    - destination: {host: productpage}
"""
EXTERNAL = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: payments}
spec:
  hosts: [payments.example.com]
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 127.0.9.1}]
"""


def _resources(text: str = CONFIG):
    return load_text(text, default_namespace="default").raise_for_errors().resources


def _addresses(proxy: Proxy) -> SidecarAddresses:
    last = proxy.ip_addresses[0].rsplit(".", 1)[1]
    return SidecarAddresses(f"127.0.10.{last}", f"127.0.11.{last}", f"127.0.12.{last}")


def _node(node_id: str = PRODUCTPAGE, **labels: str) -> NodeInfo:
    namespace = "istio-system" if node_id.startswith("router") else "default"
    return NodeInfo(node_id, metadata={"NAMESPACE": namespace, "LABELS": labels or {"app": "productpage"}})


@attrs.define
class _World:
    store: InMemoryConfigStore
    registry: InMemoryRegistry
    secrets: InMemorySecretProvider
    clock: ManualClock
    controller: XdsController
    server: XdsServer

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    @contextlib.asynccontextmanager
    async def connect(self, node: NodeInfo) -> AsyncIterator[AdsClient]:
        async with AdsClient(self.target, node) as client:
            await client.subscribe(CLUSTER_TYPE)
            await client.subscribe(LISTENER_TYPE)
            await client.wait_for_resources(LISTENER_TYPE, timeout=30)  # the first view is generated off the loop
            await self.synced(node.id)
            yield client

    async def synced(self, node_id: str) -> None:
        await self.server.wait_synced(node_id, view=self.controller.views()[node_id], timeout=30)

    async def push(self, node_id: str = PRODUCTPAGE) -> None:
        await self.controller.flush()
        await self.synced(node_id)


@pytest.fixture
async def world(bookinfo_registry) -> AsyncIterator[_World]:
    store = InMemoryConfigStore(_resources())
    registry = bookinfo_registry()
    secrets = InMemorySecretProvider()
    secrets.set_secret("kubernetes://bookinfo-cert", TlsSecret(certificate_chain=b"chain", private_key=b"key"))
    clock = ManualClock()
    controller = XdsController(store, registry, addresses_for=_addresses, secrets=secrets, clock=clock)
    await controller.start()
    server = XdsServer(controller)
    await server.start("127.0.0.1:0")
    yield _World(store, registry, secrets, clock, controller, server)
    await server.stop(grace=0)
    await controller.close()


def _counts(client: AdsClient) -> dict[str, int]:
    return {type_url: len(client.received(type_url)) for type_url in PUSH_ORDER}


def _pushed(client: AdsClient, before: dict[str, int]) -> set[str]:
    return {type_url for type_url, count in _counts(client).items() if count > before[type_url]}


async def test_a_sidecar_receives_a_consistent_snapshot(world):
    async with world.connect(_node()) as client:
        assert f"outbound|9080|v1|{REVIEWS}" in client.resources(CLUSTER_TYPE)
        assert set(client.resources(LISTENER_TYPE)) == {"127.0.10.1_9080", "127.0.12.1_9080"}
        assert set(client.resources(ROUTE_TYPE)) == {"9080"}
        eds = {name for name, c in client.messages(CLUSTER_TYPE).items() if c.HasField("eds_cluster_config")}
        assert set(client.resources(ENDPOINT_TYPE)) == eds
    await world.server.wait_until(lambda statuses: not statuses, node_id=PRODUCTPAGE, timeout=30)
    assert world.controller.stats.proxies == 0  # the stream ended: its watch was cancelled


async def test_a_virtual_service_change_pushes_only_the_routes(world):
    async with world.connect(_node()) as client:
        before = _counts(client)
        world.store.update(_resources(CONFIG.replace("subset: v1}", "subset: v2}"))[1])
        await world.push()
        assert _pushed(client, before) == {ROUTE_TYPE}
        (route,) = client.messages(ROUTE_TYPE).values()
        clusters = {r.route.cluster for vh in route.virtual_hosts for r in vh.routes}
        assert f"outbound|9080|v2|{REVIEWS}" in clusters
    assert world.controller.stats.full_pushes == 1


async def test_an_endpoint_change_pushes_only_eds(bookinfo_endpoint, world):
    async with world.connect(_node()) as client:
        before = _counts(client)
        reviews = Service(REVIEWS, "default").key
        world.registry.set_endpoints(
            reviews, [bookinfo_endpoint("127.0.4.1", "reviews"), bookinfo_endpoint("127.0.4.2", "reviews")]
        )
        await world.push()
        assert _pushed(client, before) == {ENDPOINT_TYPE}
        assignment = client.messages(ENDPOINT_TYPE)[f"outbound|9080|v1|{REVIEWS}"]
        assert len(assignment.endpoints[0].lb_endpoints) == 2
    stats = world.controller.stats
    assert (stats.incremental_pushes, stats.full_pushes) == (1, 0)


async def test_an_endpoint_with_a_new_service_account_pushes_the_clusters_too(bookinfo_endpoint, world):
    async with world.connect(_node()) as client:
        before = _counts(client)
        reviews = Service(REVIEWS, "default").key
        new = bookinfo_endpoint("127.0.4.2", "reviews", account="reviews-canary")
        world.registry.set_endpoints(reviews, [bookinfo_endpoint("127.0.4.1", "reviews"), new])
        await world.push()
        assert {CLUSTER_TYPE, ENDPOINT_TYPE} <= _pushed(client, before)
        assert "reviews-canary" in str(client.messages(CLUSTER_TYPE)[f"outbound|9080||{REVIEWS}"])
    assert world.controller.stats.full_pushes == 1


async def test_changes_are_debounced_into_one_push(bookinfo_endpoint, world):
    async with world.connect(_node()) as client:
        before = _counts(client)
        world.store.update(_resources(CONFIG.replace("subset: v1}", "subset: v2}"))[1])
        world.registry.set_endpoints(Service(RATINGS, "default").key, [bookinfo_endpoint("127.0.3.2", "ratings")])
        assert await world.clock.wait_for_sleeper() == pytest.approx(0.1)
        assert world.controller.stats.pushes == 0
        assert len(world.controller.pending) == 2
        world.clock.advance(0.1)
        await world.controller.wait_idle()
        assert world.controller.stats.pushes == 1
        await world.synced(PRODUCTPAGE)
        assert _pushed(client, before) == {ENDPOINT_TYPE, ROUTE_TYPE}


async def test_a_service_entry_in_the_store_becomes_clusters_and_endpoints(world):
    async with world.connect(_node()) as client:
        world.store.create(_resources(EXTERNAL)[0])
        await world.push()
        assignment = client.messages(ENDPOINT_TYPE)["outbound|9080||payments.example.com"]
        assert assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.address == "127.0.9.1"


async def test_proxies_of_one_scope_share_resource_objects(world):
    second = _node(f"sidecar~127.0.10.2~productpage-v1-2.default~{DOMAIN}")
    async with world.connect(_node()), world.connect(second):
        views = world.controller.views()
        first_view, second_view = views[PRODUCTPAGE], views[second.id]
        assert first_view.resources(ENDPOINT_TYPE) is second_view.resources(ENDPOINT_TYPE)
        assert first_view.resources(ROUTE_TYPE) is second_view.resources(ROUTE_TYPE)
        name = f"outbound|9080||{RATINGS}"
        assert first_view.resources(CLUSTER_TYPE)[name] is second_view.resources(CLUSTER_TYPE)[name]
        assert set(second_view.resources(LISTENER_TYPE).names) == {"127.0.10.2_9080", "127.0.12.2_9080"}
        assert world.controller.stats.proxies == 2


async def test_a_gateway_gets_its_credential_and_a_rotation_pushes_only_sds(world):
    node = _node(GATEWAY, istio="ingressgateway")
    async with world.connect(node) as client:
        await client.wait_for_resources(SECRET_TYPE, {"kubernetes://bookinfo-cert"})
        before = _counts(client)
        world.secrets.set_secret("kubernetes://bookinfo-cert", TlsSecret(certificate_chain=b"new", private_key=b"key"))
        await world.push(GATEWAY)
        assert _pushed(client, before) == {SECRET_TYPE}
        (secret,) = client.messages(SECRET_TYPE).values()
        assert secret.tls_certificate.certificate_chain.inline_bytes == b"new"


async def test_a_broken_snapshot_is_not_served_and_the_proxy_keeps_its_config(world, monkeypatch, caplog):
    async with world.connect(_node()) as client:
        before = _counts(client)
        view = world.controller.views()[PRODUCTPAGE]
        monkeypatch.setattr(generator, "route_resources", lambda ctx: [])
        world.store.update(_resources(CONFIG.replace("subset: v1}", "subset: v2}"))[1])
        with caplog.at_level(logging.WARNING, "mesh_xds.generate.controller"):
            await world.controller.flush()
        assert world.controller.views()[PRODUCTPAGE] is view
        assert world.controller.stats.rejected_views == 1
        assert "keeps its config: the config of 'productpage-v1-1.default' lacks 1 resource" in caplog.text
        assert "RouteConfiguration '9080'" in caplog.text
        await client.round_trip()
        assert _pushed(client, before) <= {"type.googleapis.com/envoy.service.runtime.v3.Runtime"}


def test_a_node_that_does_not_parse_gets_no_view_and_the_log_says_why(caplog):
    controller = XdsController(InMemoryConfigStore(), InMemoryRegistry())
    views: list[object] = []
    with caplog.at_level(logging.WARNING, "mesh_xds.generate.controller"):
        subscription = controller.watch(NodeInfo("envoy-1"), views.append)
    subscription.cancel()
    assert views == []
    assert controller.stats.proxies == 0
    assert "node 'envoy-1' gets no config: node id 'envoy-1' has 1 '~'-separated parts" in caplog.text


def test_a_waypoint_gets_no_view_and_the_log_says_what_is_served(caplog):
    controller = XdsController(InMemoryConfigStore(), InMemoryRegistry())
    views: list[object] = []
    with caplog.at_level(logging.WARNING, "mesh_xds.generate.controller"):
        controller.watch(_node(f"waypoint~127.0.40.1~waypoint.default~{DOMAIN}"), views.append)
    assert views == []
    assert controller.stats.proxies == 0
    assert "is a waypoint; only sidecars, gateways (router) and proxyless gRPC clients" in caplog.text


def test_without_an_event_loop_the_first_view_is_delivered_before_watch_returns(bookinfo_registry):
    controller = XdsController(InMemoryConfigStore(_resources()), bookinfo_registry(), addresses_for=_addresses)
    views: list[object] = []
    subscription = controller.watch(_node(), views.append)
    assert len(views) == 1
    assert controller.views()[PRODUCTPAGE] is views[0]
    subscription.cancel()
    assert controller.stats.proxies == 0


def test_bad_arguments_are_refused_with_what_is_wrong():
    with pytest.raises(ValueError, match="store must be a ConfigStore, not"):
        XdsController(object(), InMemoryRegistry())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="registry must be a ServiceRegistry"):
        XdsController(InMemoryConfigStore(), [])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="quiet must be at least 0 seconds"):
        XdsController(InMemoryConfigStore(), InMemoryRegistry(), quiet=-1)


async def test_after_close_changes_are_not_pushed(world):
    async with world.connect(_node()) as client:
        before = _counts(client)
        await world.controller.close()
        world.store.update(_resources(CONFIG.replace("subset: v1}", "subset: v2}"))[1])
        assert not world.controller.pending
        await client.round_trip()
        assert _pushed(client, before) <= {"type.googleapis.com/envoy.service.runtime.v3.Runtime"}
        assert unpack(client.resources(ROUTE_TYPE)["9080"]).name == "9080"
