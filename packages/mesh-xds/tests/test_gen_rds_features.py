"""RDS generation: each HTTPRoute feature of a VirtualService as Envoy route fields, checked by Envoy."""

import pytest
from google.protobuf.json_format import MessageToDict

from mesh_config import PushContext, load_text
from mesh_model import InMemoryRegistry, Protocol, Proxy, Service, ServicePort
from mesh_xds.generate import GenerationContext
from mesh_xds.generate.rds import build_routes
from mesh_xds.resource import references
from mesh_xds.testing.envoy import validate_config
from mesh_xds.testing.render import static_bootstrap
from mesh_xds.testing.resources import http_listener

BOOKINFO = ("productpage", "reviews", "ratings", "details")


def http_service(name, namespace="default", *, ports=((9080, Protocol.HTTP),), addresses=()):
    return Service(
        f"{name}.{namespace}.svc.cluster.local",
        namespace,
        [ServicePort(f"{protocol.value.lower()}-{number}", number, protocol) for number, protocol in ports],
        addresses=addresses,
    )


def bookinfo(namespace="default"):
    return [http_service(name, namespace) for name in BOOKINFO]


def context(
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
    for service in bookinfo() if services is None else services:
        registry.upsert_service(service)
    push = PushContext.build(loaded.resources, registry)
    node_metadata = {"NAMESPACE": namespace, "LABELS": labels or {"app": "productpage", "version": "v1"}}
    node_metadata.update(metadata or {})
    proxy = Proxy.parse(f"{node_type}~127.0.0.1~pod.{namespace}~{namespace}.svc.cluster.local", node_metadata)
    extra = {"mesh": mesh} if mesh is not None else {}
    return GenerationContext(proxy, push, registry, **extra)


def as_dict(message):
    return MessageToDict(message, preserving_proto_field_name=True)


def by_name(items, name):
    found = [item for item in items if item.name == name]
    assert found, f"{name!r} not among {[item.name for item in items]}"
    return found[0]


def virtual_host(configurations, name, route="9080"):
    return by_name(by_name(configurations, route).virtual_hosts, name)


def render(configurations):
    """A static bootstrap with one listener per route configuration and the clusters they name as stubs."""
    listeners = [
        http_listener(f"l{index}", "127.0.0.1", 10000 + index, route_name=rc.name)
        for index, rc in enumerate(configurations)
    ]
    clusters = sorted({ref.name for rc in configurations for ref in references(rc)})
    return static_bootstrap(listeners=listeners, routes=configurations, stub_clusters=clusters)


def assert_envoy_accepts(configurations):
    result = validate_config(render(configurations))
    assert result.ok, result.error


PRIORITIES = "type.googleapis.com/envoy.extensions.retry.priority.previous_priorities.v3"
REVIEWS = "reviews.default.svc.cluster.local"
REVIEWS_VH = f"{REVIEWS}:9080"
RATINGS_VH = "ratings.default.svc.cluster.local:9080"
DETAILS_VH = "details.default.svc.cluster.local:9080"

RATINGS_ROUTING = """
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


def test_fault_timeout_and_retries():
    host = virtual_host(build_routes(context(RATINGS_ROUTING)), RATINGS_VH)
    faulty, slow = (as_dict(route) for route in host.routes)
    assert faulty["typed_per_filter_config"] == {
        "envoy.filters.http.fault": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault",
            "delay": {"fixed_delay": "7s", "percentage": {"numerator": 1000000, "denominator": "MILLION"}},
            "abort": {"http_status": 500, "percentage": {"numerator": 125000, "denominator": "MILLION"}},
        }
    }
    assert faulty["route"]["timeout"] == "0s"
    action = slow["route"]
    assert (action["timeout"], action["max_grpc_timeout"]) == ("1.500s", "1.500s")
    retry = action["retry_policy"]
    assert retry["num_retries"] == 3
    assert retry["per_try_timeout"] == "0.500s"
    assert retry["retry_on"] == "gateway-error,connect-failure,retriable-status-codes"
    assert retry["retriable_status_codes"] == [503]
    assert retry["retry_host_predicate"][0]["name"] == "envoy.retry_host_predicates.previous_hosts"


@pytest.mark.parametrize(
    ("retries", "expected"),
    [
        ("{attempts: 0}", None),
        (
            "{attempts: 4, retryIgnorePreviousHosts: false, retryRemoteLocalities: true, backoff: 25ms}",
            {
                "num_retries": 4,
                "retry_on": "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
                "host_selection_retry_max_attempts": "5",
                "retry_priority": {
                    "name": "envoy.retry_priorities.previous_priorities",
                    "typed_config": {
                        "@type": f"{PRIORITIES}.PreviousPrioritiesConfig",
                        "update_frequency": 2,
                    },
                },
                "retry_back_off": {"base_interval": "0.025s"},
            },
        ),
        ("{attempts: 1, retryOn: '500,502'}", "500,502"),
    ],
)
def test_retry_settings(retries, expected):
    config = f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: details}}
spec:
  hosts: [details]
  http:
  - retries: {retries}
    route:
    - destination: {{host: details}}
"""
    action = as_dict(virtual_host(build_routes(context(config)), DETAILS_VH).routes[0])["route"]
    if expected is None:
        assert "retry_policy" not in action
    elif isinstance(expected, str):
        assert action["retry_policy"]["retry_on"] == "retriable-status-codes"
        assert action["retry_policy"]["retriable_status_codes"] == [500, 502]
    else:
        assert action["retry_policy"] == expected


MATCHES = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: details}
spec:
  hosts: [details]
  http:
  - name: all
    match:
    - name: exact
      uri: {exact: /details/0}
      ignoreUriCase: true
      method: {exact: GET}
      authority: {prefix: details}
      scheme: {exact: http}
      headers:
        x-b: {prefix: pre}
        x-a: {regex: "v[0-9]+"}
        x-present: {}
      withoutHeaders:
        x-debug: {exact: "1"}
      queryParams:
        q: {exact: "1"}
        flag: {}
      statPrefix: exact-details
    - uri: {prefix: /api}
    - uri: {regex: "/v[12]/.*"}
    - port: 9999
      uri: {prefix: /other-port}
    - sourceLabels: {app: reviews}
      uri: {prefix: /from-reviews}
    - sourceNamespace: shop
      uri: {prefix: /from-shop}
    - gateways: [default/bookinfo-gateway]
      uri: {prefix: /from-gateway}
    route:
    - destination: {host: details}
"""


def test_match_translation():
    host = virtual_host(build_routes(context(MATCHES)), DETAILS_VH)
    exact, prefix, regex = (as_dict(route) for route in host.routes)
    assert exact["name"] == "all.exact"
    assert exact["stat_prefix"] == "exact-details"
    assert exact["match"] == {
        "path": "/details/0",
        "case_sensitive": False,
        "headers": [
            {"name": "x-a", "string_match": {"safe_regex": {"regex": "v[0-9]+"}}},
            {"name": "x-b", "string_match": {"prefix": "pre"}},
            {
                "name": "x-debug",
                "string_match": {"exact": "1"},
                "invert_match": True,
                "treat_missing_header_as_empty": True,
            },
            {"name": "x-present", "present_match": True},
            {"name": ":method", "string_match": {"exact": "GET"}},
            {"name": ":authority", "string_match": {"prefix": "details"}},
            {"name": ":scheme", "string_match": {"exact": "http"}},
        ],
        "query_parameters": [{"name": "flag", "present_match": True}, {"name": "q", "string_match": {"exact": "1"}}],
    }
    assert prefix["match"] == {"prefix": "/api", "case_sensitive": True}
    assert regex["match"] == {"safe_regex": {"regex": "/v[12]/.*"}, "case_sensitive": True}


def test_matches_are_kept_per_proxy_by_port_source_and_gateway():
    reviews = context(MATCHES, labels={"app": "reviews"})
    prefixes = [route.match.prefix for route in virtual_host(build_routes(reviews), DETAILS_VH).routes]
    assert "/from-reviews" in prefixes
    assert "/from-shop" not in prefixes
    shop = context(MATCHES, namespace="shop", labels={"app": "web"})
    prefixes = [route.match.prefix for route in virtual_host(build_routes(shop), DETAILS_VH).routes]
    assert "/from-shop" in prefixes
    assert "/from-reviews" not in prefixes
    assert "/other-port" not in prefixes
    assert "/from-gateway" not in prefixes


def test_a_virtual_service_with_no_route_for_this_proxy_leaves_the_default_route():
    config = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: details}
spec:
  hosts: [details]
  http:
  - match:
    - sourceLabels: {app: reviews}
    route:
    - destination: {host: details, subset: v2}
"""
    assert virtual_host(build_routes(context(config)), DETAILS_VH).routes[0].name == "default"
    reviews = context(config, labels={"app": "reviews"})
    assert virtual_host(build_routes(reviews), DETAILS_VH).routes[0].route.cluster.startswith("outbound|9080|v2|")


ACTIONS = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: details}
spec:
  hosts: [details]
  http:
  - match: [{uri: {exact: /old}}]
    redirect: {uri: /new, authority: new.example.com, redirectCode: 308, port: 8443, scheme: https}
  - match: [{uri: {exact: /moved}}]
    redirect: {uri: /here, derivePort: FROM_REQUEST_PORT}
  - match: [{uri: {exact: /teapot}}]
    directResponse: {status: 418, body: {string: "short and stout"}}
  - match: [{uri: {exact: /binary}}]
    directResponse: {status: 200, body: {bytes: aGVsbG8=}}
  - match: [{uri: {prefix: /v1}}]
    rewrite: {uri: /v2, authority: details.internal}
    route: [{destination: {host: details}}]
  - match: [{uri: {prefix: /re}}]
    rewrite: {uriRegexRewrite: {match: "^/re/(.*)$", rewrite: "/\\\\1"}}
    route: [{destination: {host: details}}]
"""


def test_redirect_direct_response_and_rewrite():
    routes = [as_dict(route) for route in virtual_host(build_routes(context(ACTIONS)), DETAILS_VH).routes]
    redirect, moved, teapot, binary, rewrite, regex = routes
    assert redirect["redirect"] == {
        "path_redirect": "/new",
        "host_redirect": "new.example.com",
        "response_code": "PERMANENT_REDIRECT",
        "port_redirect": 8443,
        "scheme_redirect": "https",
    }
    assert redirect["decorator"] == {"operation": "details:9080/old"}
    assert moved["redirect"] == {"path_redirect": "/here", "port_redirect": 9080}
    assert teapot["direct_response"] == {"status": 418, "body": {"inline_string": "short and stout"}}
    assert binary["direct_response"] == {"status": 200, "body": {"inline_bytes": "aGVsbG8="}}
    assert rewrite["route"]["prefix_rewrite"] == "/v2"
    assert rewrite["route"]["host_rewrite_literal"] == "details.internal"
    assert regex["route"]["regex_rewrite"] == {"pattern": {"regex": "^/re/(.*)$"}, "substitution": "/\\1"}


def test_mirrors_with_their_shares():
    config = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /one}}]
    mirror: {host: reviews, subset: v2}
    mirrorPercentage: {value: 25.5}
    route: [{destination: {host: reviews, subset: v1}}]
  - mirrors:
    - destination: {host: ratings}
    - destination: {host: details}
      percentage: {value: 0}
    - destination: {host: reviews, subset: v3}
      percentage: {value: 10}
    route: [{destination: {host: reviews, subset: v1}}]
"""
    one, many = (
        as_dict(route)["route"]["request_mirror_policies"]
        for route in virtual_host(build_routes(context(config)), REVIEWS_VH).routes
    )
    assert one == [
        {
            "cluster": f"outbound|9080|v2|{REVIEWS}",
            "runtime_fraction": {"default_value": {"numerator": 255000, "denominator": "MILLION"}},
            "trace_sampled": False,
        }
    ]
    assert [(m["cluster"], m["runtime_fraction"]["default_value"]) for m in many] == [
        ("outbound|9080||ratings.default.svc.cluster.local", {"numerator": 100}),
        (f"outbound|9080|v3|{REVIEWS}", {"numerator": 100000, "denominator": "MILLION"}),
    ]


def test_cors_policy():
    config = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: productpage}
spec:
  hosts: [productpage]
  http:
  - corsPolicy:
      allowOrigins: [{exact: "https://example.com"}, {prefix: "https://dev."}]
      allowMethods: [GET, POST]
      allowHeaders: [x-custom]
      exposeHeaders: [x-trace]
      maxAge: 24h
      allowCredentials: true
      unmatchedPreflights: IGNORE
    route: [{destination: {host: productpage}}]
"""
    route = virtual_host(build_routes(context(config)), "productpage.default.svc.cluster.local:9080").routes[0]
    assert as_dict(route)["typed_per_filter_config"]["envoy.filters.http.cors"] == {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy",
        "allow_origin_string_match": [{"exact": "https://example.com"}, {"prefix": "https://dev."}],
        "allow_methods": "GET,POST",
        "allow_headers": "x-custom",
        "expose_headers": "x-trace",
        "max_age": "86400",
        "allow_credentials": True,
        "filter_enabled": {"default_value": {"numerator": 100}},
        "forward_not_matching_preflights": False,
    }


def test_header_operations_on_the_route_and_on_each_destination():
    config = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - headers:
      request:
        set: {x-b: "2", x-a: "1", host: reviews.internal}
        add: {x-c: "3"}
        remove: [x-drop]
      response:
        set: {x-served-by: mesh}
        remove: [server]
    route:
    - destination: {host: reviews, subset: v1}
      weight: 90
      headers:
        request: {set: {x-subset: v1}}
    - destination: {host: reviews, subset: v2}
      weight: 10
      headers:
        response: {add: {x-canary: "yes"}}
"""
    route = as_dict(virtual_host(build_routes(context(config)), REVIEWS_VH).routes[0])
    overwrite, append = "OVERWRITE_IF_EXISTS_OR_ADD", None
    assert [(h["header"]["key"], h.get("append_action", append)) for h in route["request_headers_to_add"]] == [
        ("x-a", overwrite),
        ("x-b", overwrite),
        ("x-c", append),  # APPEND_IF_EXISTS_OR_ADD is the enum's default
    ]
    assert route["request_headers_to_remove"] == ["x-drop"]
    assert route["response_headers_to_remove"] == ["server"]
    assert route["route"]["host_rewrite_literal"] == "reviews.internal"
    v1, v2 = route["route"]["weighted_clusters"]["clusters"]
    assert v1["request_headers_to_add"] == [{"header": {"key": "x-subset", "value": "v1"}, "append_action": overwrite}]
    assert v2["response_headers_to_add"] == [{"header": {"key": "x-canary", "value": "yes"}}]


def test_envoy_accepts_every_feature():
    configurations = []
    for config in (RATINGS_ROUTING, MATCHES, ACTIONS):
        configurations += build_routes(context(config))
    for index, configuration in enumerate(configurations):
        configuration.name = f"{configuration.name}-{index}"
    assert_envoy_accepts(configurations)
