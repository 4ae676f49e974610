"""Fixtures of the mesh-xds tests: an ADS server on loopback with its cache and metrics, and the builders the
generator tests share (each a fixture that returns a function)."""

import pytest
from google.protobuf.json_format import MessageToDict

from mesh_config import PushContext, ServiceEntryRegistry, default_mesh_config, load_text
from mesh_model import (
    AggregateRegistry,
    Endpoint,
    InMemoryRegistry,
    Protocol,
    Proxy,
    Service,
    ServicePort,
    TlsMode,
    Workload,
)
from mesh_xds import SnapshotCache, XdsMetrics, XdsServer
from mesh_xds.generate import GenerationContext, SidecarAddresses
from mesh_xds.generate.cds import build_clusters
from mesh_xds.generate.eds import build_load_assignments, eds_cluster_names
from mesh_xds.resource import references
from mesh_xds.testing.envoy import validate_config
from mesh_xds.testing.render import static_bootstrap
from mesh_xds.testing.resources import http_listener


@pytest.fixture
def cache():
    return SnapshotCache()


@pytest.fixture
def metrics():
    return XdsMetrics()


@pytest.fixture
async def ads_server(cache, metrics):
    server = XdsServer(cache, metrics=metrics)
    await server.start("127.0.0.1:0")
    yield server
    await server.stop(grace=0)


@pytest.fixture
def ads_target(ads_server):
    return f"127.0.0.1:{ads_server.port}"


# ---------------------------------------------------------------- route generation (test_gen_rds*)

_BOOKINFO_NAMES = ("productpage", "reviews", "ratings", "details")


def _http_service(name, namespace="default", *, ports=((9080, Protocol.HTTP),), addresses=()):
    return Service(
        f"{name}.{namespace}.svc.cluster.local",
        namespace,
        [ServicePort(f"{protocol.value.lower()}-{number}", number, protocol) for number, protocol in ports],
        addresses=addresses,
    )


def _bookinfo_services(namespace="default"):
    return [_http_service(name, namespace) for name in _BOOKINFO_NAMES]


def _route_context(
    yaml_text="",
    *,
    services=None,
    namespace="default",
    labels=None,
    node_type="sidecar",
    mesh=None,
    metadata=None,
):
    """A GenerationContext for a proxy of ``namespace`` with ``labels``, from YAML and services."""
    loaded = load_text(yaml_text, default_namespace="default")
    assert loaded.ok, [d.format() for d in loaded.errors]
    registry = InMemoryRegistry()
    for service in _bookinfo_services() if services is None else services:
        registry.upsert_service(service)
    push = PushContext.build(loaded.resources, registry)
    node_metadata = {"NAMESPACE": namespace, "LABELS": labels or {"app": "productpage", "version": "v1"}}
    node_metadata.update(metadata or {})
    proxy = Proxy.parse(f"{node_type}~127.0.0.1~pod.{namespace}~{namespace}.svc.cluster.local", node_metadata)
    extra = {"mesh": mesh} if mesh is not None else {}
    return GenerationContext(proxy, push, registry, **extra)


def _as_dict(message):
    return MessageToDict(message, preserving_proto_field_name=True)


def _by_name(items, name):
    found = [item for item in items if item.name == name]
    assert found, f"{name!r} not among {[item.name for item in items]}"
    return found[0]


def _virtual_host(configurations, name, route="9080"):
    return _by_name(_by_name(configurations, route).virtual_hosts, name)


def _render_routes(configurations):
    """A static bootstrap with one listener per route configuration and the clusters they name as stubs."""
    listeners = [
        http_listener(f"l{index}", "127.0.0.1", 10000 + index, route_name=rc.name)
        for index, rc in enumerate(configurations)
    ]
    clusters = sorted({ref.name for rc in configurations for ref in references(rc)})
    return static_bootstrap(listeners=listeners, routes=configurations, stub_clusters=clusters)


def _assert_envoy_accepts(configurations):
    result = validate_config(_render_routes(configurations))
    assert result.ok, result.error


@pytest.fixture
def http_service():
    """``http_service(name, namespace="default", *, ports=..., addresses=())``: a Service with HTTP ports."""
    return _http_service


@pytest.fixture
def bookinfo_services():
    """``bookinfo_services(namespace="default")``: productpage, reviews, ratings and details on HTTP 9080."""
    return _bookinfo_services


@pytest.fixture
def route_context():
    """``route_context(yaml_text, *, services, namespace, labels, node_type, mesh, metadata)``: a context."""
    return _route_context


@pytest.fixture
def as_dict():
    """``as_dict(message)``: a message as a dict with the proto field names."""
    return _as_dict


@pytest.fixture
def by_name():
    """``by_name(items, name)``: the item with that name (the assertion lists the names there are)."""
    return _by_name


@pytest.fixture
def virtual_host():
    """``virtual_host(configurations, name, route="9080")``: a virtual host of a route configuration."""
    return _virtual_host


@pytest.fixture
def assert_envoy_accepts():
    """``assert_envoy_accepts(configurations)``: Envoy validates the route configurations, behind listeners."""
    return _assert_envoy_accepts


# ---------------------------------------------------------------- cluster generation (test_gen_cds*)


def _cluster_registry() -> InMemoryRegistry:
    registry = InMemoryRegistry()
    http = [ServicePort("http", 9080, Protocol.HTTP)]
    registry.upsert_service(
        Service("reviews.default.svc.cluster.local", "default", ports=http, selector={"app": "reviews"})
    )
    registry.upsert_service(
        Service("productpage.default.svc.cluster.local", "default", ports=http, selector={"app": "productpage"})
    )
    registry.upsert_service(
        Service(
            "ratings.default.svc.cluster.local",
            "default",
            ports=[
                ServicePort("grpc", 9090, Protocol.GRPC),
                ServicePort("tcp-raw", 9091),
                ServicePort("udp", 53, Protocol.UDP),
            ],
            selector={"app": "ratings"},
        )
    )
    for index, version in enumerate(("v1", "v2", "v3"), start=1):
        registry.upsert_workload(
            Workload(
                f"reviews-{version}",
                "default",
                addresses=[f"127.0.1.{index}"],
                labels={"app": "reviews", "version": version},
                service_account="bookinfo-reviews",
            )
        )
    registry.upsert_workload(Workload("ratings-v1", "default", addresses=["127.0.2.1"], labels={"app": "ratings"}))
    return registry


def _cluster_context(
    config: str = "",
    *,
    kind: str = "sidecar",
    labels: dict[str, str] | None = None,
    mesh: object = None,
    registry: InMemoryRegistry | None = None,
) -> GenerationContext:
    resources = load_text(config, default_namespace="default").raise_for_errors().resources
    services = AggregateRegistry([registry or _cluster_registry(), ServiceEntryRegistry(resources)])
    push = PushContext.build(resources, services)
    metadata = {"NAMESPACE": "default", "LABELS": labels if labels is not None else {"app": "productpage"}}
    proxy = Proxy.parse(f"{kind}~127.0.3.1~productpage-v1.default~default.svc.cluster.local", metadata)
    addresses = SidecarAddresses(inbound="127.0.3.1", application="127.0.3.2", outbound="127.0.3.3")
    return GenerationContext(proxy, push, services, mesh=mesh or default_mesh_config(), addresses=addresses)


def _cluster_dicts(ctx: GenerationContext) -> dict[str, dict]:
    return {c.name: MessageToDict(c, preserving_proto_field_name=True) for c in build_clusters(ctx)}


def _validate_clusters(ctx: GenerationContext) -> None:
    clusters = build_clusters(ctx)
    assignments = build_load_assignments(ctx, eds_cluster_names(clusters))
    validate_config(static_bootstrap(clusters=clusters, load_assignments=assignments), check=True)


def _destination_rule(policy: str, host: str = "reviews", extra: str = "") -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: {host}}}
spec:
  host: {host}
  trafficPolicy:
{policy}
{extra}
"""


@pytest.fixture
def cluster_registry():
    """``cluster_registry()``: reviews (three versions), productpage and ratings (gRPC, TCP, UDP ports)."""
    return _cluster_registry


@pytest.fixture
def cluster_context():
    """``cluster_context(config, *, kind, labels, mesh, registry)``: a productpage proxy's context, with addresses."""
    return _cluster_context


@pytest.fixture
def cluster_dicts():
    """``cluster_dicts(ctx)``: the context's clusters as dicts, by name."""
    return _cluster_dicts


@pytest.fixture
def validate_clusters():
    """``validate_clusters(ctx)``: Envoy validates the context's clusters with their load assignments."""
    return _validate_clusters


@pytest.fixture
def destination_rule():
    """``destination_rule(policy, host="reviews", extra="")``: a DestinationRule with that indented traffic policy."""
    return _destination_rule


# ---------------------------------------------------------------- whole proxies (test_gen_controller, _generator)

_BOOKINFO_DOMAIN = "default.svc.cluster.local"


def _bookinfo_endpoint(address: str, app: str, version: str = "v1", account: str = "") -> Endpoint:
    return Endpoint(
        address,
        ports={"http": 9080},
        labels={"app": app, "version": version},
        namespace="default",
        tls_mode=TlsMode.ISTIO,
        service_account=account or f"bookinfo-{app}",
    )


def _bookinfo_registry() -> InMemoryRegistry:
    registry = InMemoryRegistry()
    http = ServicePort("http", 9080, Protocol.HTTP)
    for index, name in enumerate(("details", "productpage", "ratings", "reviews"), start=1):
        service = Service(f"{name}.{_BOOKINFO_DOMAIN}", "default", ports=[http], selector={"app": name})
        registry.upsert_service(service)
        registry.set_endpoints(service.key, [_bookinfo_endpoint(f"127.0.{index}.1", name)])
    return registry


@pytest.fixture
def bookinfo_endpoint():
    """``bookinfo_endpoint(address, app, version="v1", account="")``: an mTLS endpoint on HTTP 9080."""
    return _bookinfo_endpoint


@pytest.fixture
def bookinfo_registry():
    """``bookinfo_registry()``: details, productpage, ratings, reviews, one endpoint each at 127.0.<n>.1."""
    return _bookinfo_registry
