"""RDS generation for sidecars: VirtualServices to routes, domains, default and catch-all routes, checked by Envoy."""

import http.client
import http.server
import threading

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2

from mesh_config import load_mesh_config
from mesh_model import Protocol, Service, ServicePort
from mesh_xds.generate.rds import build_routes, inbound_route_configuration, outbound_http_ports
from mesh_xds.testing.envoy import EnvoyProcess, free_loopback_address
from mesh_xds.testing.render import static_bootstrap
from mesh_xds.testing.resources import http_listener

TYPE = "type.googleapis.com/"
REVIEWS = "reviews.default.svc.cluster.local"
REVIEWS_VH = f"{REVIEWS}:9080"
RATINGS_VH = "ratings.default.svc.cluster.local:9080"
DETAILS_VH = "details.default.svc.cluster.local:9080"

BOOKINFO_ROUTING = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - name: jason
    match:
    - headers:
        end-user: {exact: jason}
    route:
    - destination: {host: reviews, subset: v2}
  - name: split
    route:
    - destination: {host: reviews, subset: v1}
      weight: 50
    - destination: {host: reviews, subset: v3}
      weight: 50
  - name: never
    route:
    - destination: {host: reviews, subset: v2}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings, namespace: default}
spec:
  hosts: [ratings]
  http:
  - match:
    - headers:
        end-user: {exact: jason}
    fault:
      delay:
        fixedDelay: 7s
        percentage: {value: 100}
      abort:
        httpStatus: 500
        percentage: {value: 12.5}
    route:
    - destination: {host: ratings, subset: v1}
  - route:
    - destination: {host: ratings, subset: v1}
    timeout: 1.5s
    retries:
      attempts: 3
      perTryTimeout: 500ms
      retryOn: gateway-error,connect-failure,503
"""


# ------------------------------------------------------------------------------------ default routes


def test_each_http_port_gets_a_route_configuration_named_after_it(
    bookinfo_services, by_name, route_context, http_service
):
    services = [*bookinfo_services(), http_service("web", ports=((80, Protocol.HTTP), (5432, Protocol.TCP)))]
    routes = build_routes(route_context(services=services))
    assert [rc.name for rc in routes] == ["80", "9080"]
    assert outbound_http_ports(route_context(services=services)) == (80, 9080)
    names = [host.name for host in by_name(routes, "9080").virtual_hosts]
    assert names == [DETAILS_VH, "productpage.default.svc.cluster.local:9080", RATINGS_VH, REVIEWS_VH, "allow_any"]


def test_a_service_without_virtual_service_gets_the_default_route(as_dict, route_context, virtual_host):
    route = virtual_host(build_routes(route_context()), DETAILS_VH).routes[0]
    assert as_dict(route) == {
        "name": "default",
        "match": {"prefix": "/"},
        "decorator": {"operation": "details.default.svc.cluster.local:9080/*"},
        "route": {
            "cluster": "outbound|9080||details.default.svc.cluster.local",
            "timeout": "0s",
            "max_grpc_timeout": "0s",
            "retry_policy": {
                "retry_on": "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
                "num_retries": 2,
                "host_selection_retry_max_attempts": "5",
                "retry_host_predicate": [
                    {
                        "name": "envoy.retry_host_predicates.previous_hosts",
                        "typed_config": {
                            "@type": f"{TYPE}envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"
                        },
                    }
                ],
            },
        },
    }


def test_domains_in_the_proxys_namespace_include_short_names_and_vips(route_context, http_service, virtual_host):
    services = [http_service("reviews", addresses=("10.96.0.7",)), http_service("ratings")]
    host = virtual_host(build_routes(route_context(services=services)), REVIEWS_VH)
    assert list(host.domains) == [
        REVIEWS,
        f"{REVIEWS}:9080",
        "reviews",
        "reviews:9080",
        "reviews.default.svc",
        "reviews.default.svc:9080",
        "reviews.default",
        "reviews.default:9080",
        "10.96.0.7",
        "10.96.0.7:9080",
    ]


def test_domains_from_another_namespace_keep_the_namespace(route_context, virtual_host):
    host = virtual_host(build_routes(route_context(namespace="shop")), REVIEWS_VH)
    assert list(host.domains) == [
        REVIEWS,
        f"{REVIEWS}:9080",
        "reviews.default",
        "reviews.default:9080",
        "reviews.default.svc",
        "reviews.default.svc:9080",
    ]


def test_external_hosts_and_ipv6_vips_get_no_short_names(route_context, virtual_host):
    external = Service("api.example.com", "default", [ServicePort("http", 9080, Protocol.HTTP)], addresses=("fd00::7",))
    host = virtual_host(build_routes(route_context(services=[external])), "api.example.com:9080")
    assert list(host.domains) == ["api.example.com", "api.example.com:9080", "[fd00::7]", "[fd00::7]:9080"]


def test_a_name_two_services_share_goes_to_the_first_only(bookinfo_services, route_context, virtual_host):
    # reviews.default (a ServiceEntry host) is also the short name of reviews in namespace default.
    services = [*bookinfo_services(), Service("reviews.default", "default", [ServicePort("http", 9080, Protocol.HTTP)])]
    routes = build_routes(route_context(services=services))
    owner = virtual_host(routes, "reviews.default:9080")
    assert "reviews.default" in owner.domains
    assert "reviews.default" not in virtual_host(routes, REVIEWS_VH).domains


def test_allow_any_passes_unknown_hosts_through(as_dict, by_name, route_context):
    catch_all = by_name(build_routes(route_context()), "9080").virtual_hosts[-1]
    assert as_dict(catch_all) == {
        "name": "allow_any",
        "domains": ["*"],
        "include_request_attempt_count": True,
        "routes": [
            {
                "name": "allow_any",
                "match": {"prefix": "/"},
                "route": {"cluster": "PassthroughCluster", "timeout": "0s", "max_grpc_timeout": "0s"},
            }
        ],
    }


def test_registry_only_answers_unknown_hosts_with_502(as_dict, by_name, route_context):
    sidecar = """
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: default}
spec:
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
"""
    catch_all = by_name(build_routes(route_context(sidecar)), "9080").virtual_hosts[-1]
    assert catch_all.name == "block_all"
    assert as_dict(catch_all.routes[0]) == {
        "name": "block_all",
        "match": {"prefix": "/"},
        "direct_response": {"status": 502},
    }


def test_an_egress_proxy_receives_unknown_hosts(by_name, route_context):
    sidecar = """
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: default}
spec:
  outboundTrafficPolicy:
    mode: ALLOW_ANY
    egressProxy: {host: egress.istio-system.svc.cluster.local, port: {number: 443}}
"""
    catch_all = by_name(build_routes(route_context(sidecar)), "9080").virtual_hosts[-1]
    assert catch_all.routes[0].route.cluster == "outbound|443||egress.istio-system.svc.cluster.local"


def test_a_sidecar_scope_limits_the_virtual_hosts(by_name, route_context):
    sidecar = """
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: default}
spec:
  egress:
  - hosts: [./reviews.default.svc.cluster.local]
"""
    names = [host.name for host in by_name(build_routes(route_context(sidecar)), "9080").virtual_hosts]
    assert names == [REVIEWS_VH, "allow_any"]


# ------------------------------------------------------------------------------- VirtualService routes


def test_bookinfo_reviews_routes_by_header_then_splits_by_weight(as_dict, route_context, virtual_host):
    host = virtual_host(build_routes(route_context(BOOKINFO_ROUTING)), REVIEWS_VH)
    jason, split = (as_dict(route) for route in host.routes)  # nothing follows the catch-all split
    assert jason["name"] == "jason"
    assert jason["match"] == {
        "prefix": "/",
        "case_sensitive": True,
        "headers": [{"name": "end-user", "string_match": {"exact": "jason"}}],
    }
    assert jason["route"]["cluster"] == f"outbound|9080|v2|{REVIEWS}"
    assert split["route"]["weighted_clusters"] == {
        "clusters": [
            {"name": f"outbound|9080|v1|{REVIEWS}", "weight": 50},
            {"name": f"outbound|9080|v3|{REVIEWS}", "weight": 50},
        ]
    }
    assert split["decorator"] == {"operation": "reviews:9080/*"}
    path = "/apis/networking.istio.io/v1/namespaces/default/virtual-service/reviews"
    assert jason["metadata"] == split["metadata"] == {"filter_metadata": {"istio": {"config": path}}}


def test_delegated_routes_are_merged_and_resolved_in_the_delegates_namespace(
    as_dict, bookinfo_services, route_context, http_service, virtual_host
):
    config = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: productpage, namespace: default}
spec:
  hosts: [productpage]
  http:
  - match: [{uri: {prefix: /reviews}}]
    delegate: {name: reviews-routes, namespace: team}
  - route: [{destination: {host: productpage}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-routes, namespace: team}
spec:
  http:
  - match: [{uri: {prefix: /reviews/v2}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - route: [{destination: {host: reviews}}]
"""
    services = [*bookinfo_services(), http_service("reviews", "team")]
    host = virtual_host(
        build_routes(route_context(config, services=services)), "productpage.default.svc.cluster.local:9080"
    )
    v2, rest, own = (as_dict(route) for route in host.routes)
    assert v2["match"]["prefix"] == "/reviews/v2"
    assert v2["route"]["cluster"] == "outbound|9080|v2|reviews.team.svc.cluster.local"
    assert rest["match"]["prefix"] == "/reviews"
    assert rest["route"]["cluster"] == "outbound|9080||reviews.team.svc.cluster.local"
    assert own["route"]["cluster"] == "outbound|9080||productpage.default.svc.cluster.local"
    assert v2["metadata"]["filter_metadata"]["istio"]["configs"] == [
        "/apis/networking.istio.io/v1/namespaces/default/virtual-service/productpage",
        "/apis/networking.istio.io/v1/namespaces/team/virtual-service/reviews-routes",
    ]


def test_destination_port_defaults_to_the_services_only_port(
    bookinfo_services, route_context, http_service, virtual_host
):
    services = [*bookinfo_services(), http_service("legacy", ports=((8000, Protocol.HTTP),))]
    config = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: details}
spec:
  hosts: [details]
  http:
  - match: [{uri: {prefix: /legacy}}]
    route: [{destination: {host: legacy}}]
  - route: [{destination: {host: details, port: {number: 9080}}}]
"""
    legacy, details = virtual_host(build_routes(route_context(config, services=services)), DETAILS_VH).routes
    assert legacy.route.cluster == "outbound|8000||legacy.default.svc.cluster.local"
    assert details.route.cluster == "outbound|9080||details.default.svc.cluster.local"


def test_hosts_outside_the_registry_get_virtual_hosts_on_port_80(route_context, http_service, virtual_host):
    services = [http_service("web", ports=((80, Protocol.HTTP),))]
    config = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bookinfo}
spec:
  hosts: [bookinfo.com]
  http:
  - route: [{destination: {host: web}}]
"""
    host = virtual_host(build_routes(route_context(config, services=services)), "bookinfo.com:80", route="80")
    assert list(host.domains) == ["bookinfo.com", "bookinfo.com:80"]
    assert host.routes[0].route.cluster == "outbound|80||web.default.svc.cluster.local"


def test_a_wildcard_virtual_service_routes_the_services_it_covers(route_context, virtual_host):
    config = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: everything}
spec:
  hosts: ["*.default.svc.cluster.local"]
  http:
  - timeout: 3s
    route: [{destination: {host: details}}]
"""
    routes = build_routes(route_context(config))
    for name in (DETAILS_VH, REVIEWS_VH):
        assert virtual_host(routes, name).routes[0].route.timeout.seconds == 3


def test_a_consistent_hash_gives_a_hash_policy_and_keeps_retries_on_the_host(as_dict, route_context, virtual_host):
    config = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer:
      consistentHash: {httpHeaderName: x-user}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy:
      loadBalancer:
        consistentHash: {httpCookie: {name: session, ttl: 60s}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews, subset: v1}}]
"""
    routes = build_routes(route_context(config))
    action = as_dict(virtual_host(routes, REVIEWS_VH).routes[0])["route"]
    assert action["hash_policy"] == [{"cookie": {"name": "session", "ttl": "60s"}}]
    assert "retry_host_predicate" not in action["retry_policy"]
    no_vs = build_routes(route_context(config.split("---")[0]))
    assert as_dict(virtual_host(no_vs, REVIEWS_VH).routes[0])["route"]["hash_policy"] == [
        {"header": {"header_name": "x-user"}}
    ]


def test_the_mesh_default_retry_policy_replaces_istios(route_context, virtual_host):
    mesh = load_mesh_config("defaultHttpRetryPolicy: {attempts: 5, retryOn: 5xx}").raise_for_errors().config
    action = virtual_host(build_routes(route_context(mesh=mesh)), DETAILS_VH).routes[0].route
    assert (action.retry_policy.num_retries.value, action.retry_policy.retry_on) == (5, "5xx")


# ------------------------------------------------------------------------------------ names and inbound


def test_routes_asked_for_by_name(as_dict, route_context):
    routes = build_routes(route_context(), [f"{REVIEWS}:9080", "9080", "no-such-route"])
    assert [rc.name for rc in routes] == ["9080", "no-such-route", f"{REVIEWS}:9080"]
    sniffed = routes[2]
    assert [(host.name, list(host.domains)) for host in sniffed.virtual_hosts] == [(REVIEWS_VH, ["*"])]
    assert as_dict(routes[1]) == {"name": "no-such-route", "validate_clusters": False}


def test_names_must_be_a_collection_of_strings(route_context):
    with pytest.raises(TypeError, match="not the string '9080'"):
        build_routes(route_context(), "9080")
    with pytest.raises(TypeError, match="must be strings, not int"):
        build_routes(route_context(), [9080])


def test_inbound_route_configuration(as_dict):
    assert as_dict(inbound_route_configuration(9080, hostname=REVIEWS)) == {
        "name": "inbound|9080||",
        "validate_clusters": False,
        "virtual_hosts": [
            {
                "name": "inbound|http|9080",
                "domains": ["*"],
                "routes": [
                    {
                        "name": "default",
                        "match": {"prefix": "/"},
                        "decorator": {"operation": f"{REVIEWS}:9080/*"},
                        "route": {
                            "cluster": "inbound|9080||",
                            "timeout": "0s",
                            "max_stream_duration": {"max_stream_duration": "0s", "grpc_timeout_header_max": "0s"},
                            "retry_policy": {"retry_on": "reset-before-request", "num_retries": 2},
                        },
                    }
                ],
            }
        ],
    }


def test_proxyless_grpc_clients_get_max_stream_duration(route_context, virtual_host):
    ctx = route_context(BOOKINFO_ROUTING, metadata={"GENERATOR": "grpc"})
    action = virtual_host(build_routes(ctx), RATINGS_VH).routes[1].route
    assert action.max_stream_duration.max_stream_duration.nanos == 500_000_000
    assert not action.HasField("max_grpc_timeout")


# ------------------------------------------------------------------------------------------ real Envoy


def test_envoy_accepts_the_sidecar_routes(assert_envoy_accepts, route_context):
    registry_only = "outboundTrafficPolicy: {mode: REGISTRY_ONLY}"
    configurations = [
        *build_routes(route_context(BOOKINFO_ROUTING)),
        *build_routes(
            route_context(mesh=load_mesh_config(registry_only).raise_for_errors().config), [f"{REVIEWS}:9080"]
        ),
        inbound_route_configuration(9080, hostname=REVIEWS),
    ]
    assert_envoy_accepts(configurations)


# ---------------------------------------------------------------------------------- live traffic


LIVE_ROUTING = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - headers: {response: {set: {x-route: default}}}
    route: [{destination: {host: reviews, subset: v1}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings}
spec:
  hosts: [ratings]
  http:
  - fault: {abort: {httpStatus: 418, percentage: {value: 100}}}
    route: [{destination: {host: ratings}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: details}
spec:
  hosts: [details]
  http:
  - match: [{uri: {exact: /teapot}}]
    directResponse: {status: 418, body: {string: short and stout}}
  - route: [{destination: {host: details}}]
"""


class _Backend:
    """An HTTP server on a loopback address of its own, answering every GET with its name."""

    def __init__(self, name):
        body = name.encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format, *args):
                pass

        self.address = free_loopback_address((8080,))
        self._server = http.server.ThreadingHTTPServer((self.address, 8080), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"backend-{name}", daemon=True)
        self._thread.start()

    def cluster(self, name):
        cluster = cluster_pb2.Cluster(name=name, type=cluster_pb2.Cluster.STATIC)
        cluster.connect_timeout.FromSeconds(5)
        cluster.load_assignment.cluster_name = name
        endpoint = cluster.load_assignment.endpoints.add().lb_endpoints.add().endpoint
        endpoint.address.socket_address.address = self.address
        endpoint.address.socket_address.port_value = 8080
        return cluster

    def close(self):
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


@pytest.fixture
def backends():
    started = {name: _Backend(name) for name in ("reviews-v1", "reviews-v2", "details", "passthrough")}
    yield started
    for backend in started.values():
        backend.close()


def _listener_with_fault_filter(address):
    """The outbound HTTP listener, with Envoy's fault filter ahead of the router (as Istio's sidecars have)."""
    listener = http_listener("0.0.0.0_9080", address, 9080, route_name="9080")
    typed_config = listener.filter_chains[0].filters[0].typed_config
    manager = hcm_pb2.HttpConnectionManager()
    typed_config.Unpack(manager)
    manager.http_filters.insert(0, hcm_pb2.HttpFilter(name="envoy.filters.http.fault"))
    manager.http_filters[0].typed_config.Pack(fault_pb2.HTTPFault())
    typed_config.Pack(manager)
    return listener


def _get(address, host, path="/", headers=None):
    connection = http.client.HTTPConnection(address, 9080, timeout=10)
    try:
        connection.request("GET", path, headers={"Host": host, **(headers or {})})
        response = connection.getresponse()
        return response.status, response.read().decode(), response.getheader("x-route")
    finally:
        connection.close()


def test_envoy_routes_live_traffic_by_host_header_and_path(route_context, http_service, backends):
    services = [http_service("reviews", addresses=("10.96.0.7",)), http_service("ratings"), http_service("details")]
    (configuration,) = build_routes(route_context(LIVE_ROUTING, services=services))
    clusters = [
        backends["reviews-v1"].cluster(f"outbound|9080|v1|{REVIEWS}"),
        backends["reviews-v2"].cluster(f"outbound|9080|v2|{REVIEWS}"),
        backends["details"].cluster("outbound|9080||details.default.svc.cluster.local"),
        backends["passthrough"].cluster("PassthroughCluster"),
    ]
    address = free_loopback_address((9080,))
    config = static_bootstrap(
        clusters=clusters,
        listeners=[_listener_with_fault_filter(address)],
        routes=[configuration],
        stub_clusters=["outbound|9080||ratings.default.svc.cluster.local"],
    )
    config["admin"] = {"address": {"socket_address": {"address": address, "port_value": 0}}}
    with EnvoyProcess(config):
        assert _get(address, "reviews:9080", headers={"end-user": "jason"}) == (200, "reviews-v2", None)
        assert _get(address, "reviews.default.svc.cluster.local") == (200, "reviews-v1", "default")
        assert _get(address, "10.96.0.7:9080") == (200, "reviews-v1", "default")
        assert _get(address, "ratings.default")[:2] == (418, "fault filter abort")
        assert _get(address, "details", "/teapot")[:2] == (418, "short and stout")
        assert _get(address, "details.default.svc:9080", "/details/0")[:2] == (200, "details")
        assert _get(address, "unknown.example.com")[:2] == (200, "passthrough")
