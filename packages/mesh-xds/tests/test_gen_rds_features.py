"""RDS generation: each HTTPRoute feature of a VirtualService as Envoy route fields, checked by Envoy."""

import pytest

from mesh_xds.generate.rds import build_routes

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


def test_fault_timeout_and_retries(as_dict, route_context, virtual_host):
    host = virtual_host(build_routes(route_context(RATINGS_ROUTING)), RATINGS_VH)
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
def test_retry_settings(as_dict, route_context, virtual_host, retries, expected):
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
    action = as_dict(virtual_host(build_routes(route_context(config)), DETAILS_VH).routes[0])["route"]
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


def test_match_translation(as_dict, route_context, virtual_host):
    host = virtual_host(build_routes(route_context(MATCHES)), DETAILS_VH)
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


def test_matches_are_kept_per_proxy_by_port_source_and_gateway(route_context, virtual_host):
    reviews = route_context(MATCHES, labels={"app": "reviews"})
    prefixes = [route.match.prefix for route in virtual_host(build_routes(reviews), DETAILS_VH).routes]
    assert "/from-reviews" in prefixes
    assert "/from-shop" not in prefixes
    shop = route_context(MATCHES, namespace="shop", labels={"app": "web"})
    prefixes = [route.match.prefix for route in virtual_host(build_routes(shop), DETAILS_VH).routes]
    assert "/from-shop" in prefixes
    assert "/from-reviews" not in prefixes
    assert "/other-port" not in prefixes
    assert "/from-gateway" not in prefixes


def test_a_virtual_service_with_no_route_for_this_proxy_leaves_the_default_route(route_context, virtual_host):
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
    assert virtual_host(build_routes(route_context(config)), DETAILS_VH).routes[0].name == "default"
    reviews = route_context(config, labels={"app": "reviews"})
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


def test_redirect_direct_response_and_rewrite(as_dict, route_context, virtual_host):
    routes = [as_dict(route) for route in virtual_host(build_routes(route_context(ACTIONS)), DETAILS_VH).routes]
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


def test_mirrors_with_their_shares(as_dict, route_context, virtual_host):
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
        for route in virtual_host(build_routes(route_context(config)), REVIEWS_VH).routes
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


def test_cors_policy(as_dict, route_context, virtual_host):
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
    route = virtual_host(build_routes(route_context(config)), "productpage.default.svc.cluster.local:9080").routes[0]
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


def test_header_operations_on_the_route_and_on_each_destination(as_dict, route_context, virtual_host):
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
    route = as_dict(virtual_host(build_routes(route_context(config)), REVIEWS_VH).routes[0])
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


def test_envoy_accepts_every_feature(assert_envoy_accepts, route_context):
    configurations = []
    for config in (RATINGS_ROUTING, MATCHES, ACTIONS):
        configurations += build_routes(route_context(config))
    for index, configuration in enumerate(configurations):
        configuration.name = f"{configuration.name}-{index}"
    assert_envoy_accepts(configurations)
