"""RDS generation for gateways: route configurations per server, VirtualServices bound to gateways, checked by Envoy."""

from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from google.protobuf import any_pb2
from google.protobuf.json_format import MessageToDict

from mesh_config import PushContext, load_text
from mesh_model import InMemoryRegistry, Protocol, Proxy, Service, ServicePort
from mesh_xds.generate import GenerationContext
from mesh_xds.generate.gateway_rds import build_gateway_routes, gateway_route_names
from mesh_xds.generate.rds import build_routes
from mesh_xds.resource import references
from mesh_xds.testing.envoy import validate_config
from mesh_xds.testing.render import static_bootstrap
from mesh_xds.testing.resources import ads_config_source

PRODUCTPAGE = "outbound|9080||productpage.default.svc.cluster.local"
HTTPS_ROUTE = "https.443.https.bookinfo-gateway.default"

GATEWAY = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: bookinfo-gateway, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*"]
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: [bookinfo.example.com]
    tls: {mode: SIMPLE, credentialName: bookinfo-cert}
  - port: {number: 8080, name: http-redirect, protocol: HTTP}
    hosts: [./secure.example.com]
    tls: {httpsRedirect: true}
  - port: {number: 15443, name: tls, protocol: TLS}
    hosts: ["*.global"]
    tls: {mode: AUTO_PASSTHROUGH}
"""

BOOKINFO = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bookinfo, namespace: default}
spec:
  hosts: ["*"]
  gateways: [bookinfo-gateway]
  http:
  - match:
    - uri: {exact: /productpage}
    - uri: {prefix: /static}
    - uri: {prefix: /api/v1/products}
    route:
    - destination: {host: productpage, port: {number: 9080}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api, namespace: default}
spec:
  hosts: [bookinfo.example.com]
  gateways: [default/bookinfo-gateway]
  http:
  - match:
    - uri: {prefix: /admin}
      headers:
        "@request.auth.claims.groups": {exact: admin}
      gateways: [bookinfo-gateway]
    route: [{destination: {host: details}}]
  - route: [{destination: {host: reviews}}]
"""


def _context(config, *, labels=None):
    loaded = load_text(config, default_namespace="default")
    assert loaded.ok, [d.format() for d in loaded.errors]
    registry = InMemoryRegistry()
    for name in ("productpage", "reviews", "details"):
        registry.upsert_service(
            Service(f"{name}.default.svc.cluster.local", "default", [ServicePort("http", 9080, Protocol.HTTP)])
        )
    proxy = Proxy.parse(
        "router~127.0.0.1~istio-ingressgateway-1.istio-system~istio-system.svc.cluster.local",
        {"NAMESPACE": "istio-system", "LABELS": labels or {"istio": "ingressgateway"}},
    )
    return GenerationContext(proxy, PushContext.build(loaded.resources, registry), registry)


def _by_name(items, name):
    found = [item for item in items if item.name == name]
    assert found, f"{name!r} not among {[item.name for item in items]}"
    return found[0]


def _as_dict(message):
    return MessageToDict(message, preserving_proto_field_name=True)


def test_one_route_configuration_per_http_port_and_terminated_https_server():
    ctx = _context(GATEWAY + "---" + BOOKINFO)
    assert gateway_route_names(ctx) == ("http.80", "http.8080", HTTPS_ROUTE)
    assert [rc.name for rc in build_gateway_routes(ctx)] == ["http.80", "http.8080", HTTPS_ROUTE]
    assert [rc.name for rc in build_routes(ctx)] == ["http.80", "http.8080", HTTPS_ROUTE]


def test_virtual_hosts_are_the_hosts_servers_and_virtual_services_share():
    http = _by_name(build_gateway_routes(_context(GATEWAY + "---" + BOOKINFO)), "http.80")
    assert http.ignore_port_in_host_matching
    assert [(host.name, list(host.domains)) for host in http.virtual_hosts] == [
        ("*:80", ["*"]),
        ("bookinfo.example.com:80", ["bookinfo.example.com"]),
    ]
    everyone = _by_name(http.virtual_hosts, "*:80")
    assert [route.match.WhichOneof("path_specifier") for route in everyone.routes] == ["path", "prefix", "prefix"]
    assert {route.route.cluster for route in everyone.routes} == {PRODUCTPAGE}


def test_routes_of_several_virtual_services_merge_with_catch_all_last():
    https = _by_name(build_gateway_routes(_context(GATEWAY + "---" + BOOKINFO)), HTTPS_ROUTE)
    (host,) = https.virtual_hosts
    assert (host.name, list(host.domains)) == ("bookinfo.example.com:443", ["bookinfo.example.com"])
    # Equally old VirtualServices go by name: api, then bookinfo; api's catch-all moves to the end.
    clusters = [route.route.cluster for route in host.routes]
    assert clusters == [
        "outbound|9080||details.default.svc.cluster.local",
        *[PRODUCTPAGE] * 3,
        "outbound|9080||reviews.default.svc.cluster.local",
    ]


def test_routing_on_jwt_claims_reads_the_jwt_filters_payload():
    https = _by_name(build_gateway_routes(_context(GATEWAY + "---" + BOOKINFO)), HTTPS_ROUTE)
    admin = _as_dict(https.virtual_hosts[0].routes[0])
    assert admin["match"]["dynamic_metadata"] == [
        {
            "filter": "envoy.filters.http.jwt_authn",
            "path": [{"key": "payload"}, {"key": "groups"}],
            "value": {
                "or_match": {
                    "value_matchers": [
                        {"list_match": {"one_of": {"string_match": {"exact": "admin"}}}},
                        {"string_match": {"exact": "admin"}},
                    ]
                }
            },
        }
    ]


def test_https_redirect_requires_tls_on_the_servers_hosts():
    redirect = _by_name(build_gateway_routes(_context(GATEWAY + "---" + BOOKINFO)), "http.8080")
    (host,) = redirect.virtual_hosts
    assert (host.name, list(host.domains), host.require_tls) == (
        "secure.example.com:8080",
        ["secure.example.com"],
        host.ALL,
    )


def test_hosts_with_the_same_routes_share_a_virtual_host():
    config = (
        GATEWAY.replace('hosts: ["*"]', "hosts: [a.example.com, b.example.com]")
        + """---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: both, namespace: default}
spec:
  hosts: [a.example.com, b.example.com]
  gateways: [bookinfo-gateway]
  http:
  - route: [{destination: {host: productpage}}]
"""
    )
    http = _by_name(build_gateway_routes(_context(config)), "http.80")
    assert [(host.name, list(host.domains)) for host in http.virtual_hosts] == [
        ("a.example.com:80", ["a.example.com", "b.example.com"])
    ]


def test_without_virtual_services_a_blackhole_answers():
    routes = build_gateway_routes(_context(GATEWAY), ["http.80", "http.9999"])
    assert _as_dict(routes[0])["virtual_hosts"] == [{"name": "blackhole:80", "domains": ["*"]}]
    assert _as_dict(routes[1]) == {"name": "http.9999", "validate_clusters": False}


def test_a_gateway_not_selecting_the_proxy_gives_nothing():
    assert build_gateway_routes(_context(GATEWAY + "---" + BOOKINFO, labels={"istio": "egressgateway"})) == []


def _pack(message):
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def test_envoy_accepts_the_gateway_routes():
    configurations = build_gateway_routes(_context(GATEWAY + "---" + BOOKINFO))
    listeners = []
    for index, configuration in enumerate(configurations):
        manager = hcm_pb2.HttpConnectionManager(
            stat_prefix=f"gateway{index}",
            rds=hcm_pb2.Rds(route_config_name=configuration.name, config_source=ads_config_source()),
            http_filters=[
                hcm_pb2.HttpFilter(name="envoy.filters.http.router", typed_config=_pack(router_pb2.Router()))
            ],
        )
        listener = listener_pb2.Listener(name=f"gateway{index}")
        listener.address.socket_address.address = "127.0.0.1"
        listener.address.socket_address.port_value = 10000 + index
        listener.filter_chains.append(
            listener_components_pb2.FilterChain(
                filters=[
                    listener_components_pb2.Filter(
                        name="envoy.filters.network.http_connection_manager", typed_config=_pack(manager)
                    )
                ]
            )
        )
        listeners.append(listener)
    clusters = sorted({ref.name for rc in configurations for ref in references(rc)})
    result = validate_config(static_bootstrap(listeners=listeners, routes=configurations, stub_clusters=clusters))
    assert result.ok, result.error
