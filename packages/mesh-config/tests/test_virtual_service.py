"""VirtualService: the kind as a whole (versions, typed access, round trip, hosts, gateways, delegates)."""

import string
import textwrap

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mesh_config import Duration, ValidationContext, load_text, to_yaml
from mesh_config.networking.virtual_service import (
    Destination,
    HTTPRoute,
    HTTPRouteDestination,
    RedirectPortSelection,
    StringMatch,
    UnmatchedPreflights,
    VirtualService,
    validate_virtual_service,
)

ROUTE = "http:\n- route:\n  - destination:\n      host: reviews\n"


def load(spec, *, api_version="networking.istio.io/v1", namespace="default", annotations=None):
    meta = f"  name: vs\n  namespace: {namespace}\n"
    if annotations:
        meta += "  annotations:\n" + "".join(f"    {key}: {value}\n" for key, value in annotations.items())
    body = textwrap.indent(textwrap.dedent(spec), "  ")
    return load_text(f"apiVersion: {api_version}\nkind: VirtualService\nmetadata:\n{meta}spec:\n{body}")


def describe(result):
    return "\n".join(d.format() for d in result.diagnostics) or "no diagnostics"


def assert_error(result, field, *fragments):
    found = [d for d in result.errors if d.field == field and all(f in d.message for f in fragments)]
    assert found, f"no error at {field} with {fragments}:\n{describe(result)}"
    assert not result.resources


def assert_warning(result, field, *fragments):
    found = [d for d in result.warnings if d.field == field and all(f in d.message for f in fragments)]
    assert found, f"no warning at {field} with {fragments}:\n{describe(result)}"


def assert_clean(result):
    assert not result.diagnostics, describe(result)
    assert len(result.resources) == 1


@pytest.mark.parametrize("version", ["v1", "v1beta1", "v1alpha3"])
def test_every_served_version_loads_into_the_same_spec(version):
    result = load(f"hosts: [reviews]\n{ROUTE}", api_version=f"networking.istio.io/{version}")
    assert_clean(result)
    resource = result.resources[0]
    assert resource.version == version
    assert isinstance(resource.spec, VirtualService)
    assert resource.spec.http[0].route[0].destination.host == "reviews"


def test_an_unserved_version_is_refused():
    result = load(f"hosts: [reviews]\n{ROUTE}", api_version="networking.istio.io/v2")
    assert not result.ok
    assert not result.resources
    assert "networking.istio.io/v2" in result.errors[0].message


FULL = """\
hosts: [reviews.prod.svc.cluster.local, "*.example.com"]
gateways: [mesh, istio-system/public]
exportTo: ["."]
http:
- name: main
  match:
  - name: api
    uri: {prefix: /api}
    scheme: {exact: https}
    method: {regex: "GET|POST"}
    authority: {prefix: api.example.com}
    headers: {x-user: {exact: ""}, x-any: {}}
    withoutHeaders: {x-debug: {regex: "*"}}
    queryParams: {v: {exact: "2"}}
    port: 8080
    sourceLabels: {app: web}
    gateways: [istio-system/public]
    ignoreUriCase: true
    sourceNamespace: frontend
    statPrefix: api
  route:
  - destination: {host: reviews.prod.svc.cluster.local, subset: v2, port: {number: 9080}}
    weight: 75
    headers:
      request: {set: {x-version: v2}, add: {x-trace: "%REQ(x-request-id)%"}, remove: [x-internal]}
      response: {set: {cache-control: no-store}, remove: [server]}
  - destination: {host: reviews.prod.svc.cluster.local, subset: v1}
    weight: 25
  rewrite:
    uriRegexRewrite: {match: "^/api/(.*)", rewrite: "/\\\\1"}
    authority: internal.example.com
  retries: {attempts: 3, retryOn: "5xx,reset,503", retryRemoteLocalities: true, retryIgnorePreviousHosts: false}
  fault:
    abort: {grpcStatus: UNAVAILABLE, percentage: {value: 1}}
  mirror: {host: shadow, subset: v9}
  mirrorPercentage: {value: 12.5}
  corsPolicy:
    allowOrigins: [{exact: "https://a.example.com"}, {regex: "https://.*\\\\.example\\\\.com"}]
    allowMethods: [GET, POST]
    allowHeaders: [x-token]
    exposeHeaders: ["*"]
    allowCredentials: false
    unmatchedPreflights: IGNORE
  headers: {response: {add: {x-served-by: mesh}}}
- name: legacy
  match: [{uri: {exact: /old}}]
  redirect: {uri: /new, authority: new.example.com, derivePort: FROM_REQUEST_PORT, scheme: https, redirectCode: 308}
- name: moved
  match: [{uri: {prefix: /moved}}]
  redirect: {prefixRewrite: /here, port: 8443}
- name: teapot
  match: [{uri: {exact: /tea}}]
  directResponse: {status: 418, body: {bytes: aGVsbG8=}}
- name: delegated
  match: [{uri: {prefix: /shop}}]
  delegate: {name: shop, namespace: shop}
- name: rest
  route: [{destination: {host: reviews.prod.svc.cluster.local}}]
  mirrors:
  - destination: {host: shadow-a}
    percentage: {value: 5}
  - destination: {host: shadow-b}
tls:
- match: [{sniHosts: [a.example.com], port: 443, destinationSubnets: [10.0.0.0/8], sourceLabels: {app: x},
           gateways: [mesh], sourceNamespace: edge}]
  route: [{destination: {host: a.internal}, weight: 100}]
tcp:
- match: [{port: 3306, destinationSubnets: [10.1.0.0/16], sourceSubnet: 10.2.0.0/16, sourceNamespace: db}]
  route: [{destination: {host: mysql, port: {number: 3306}}}]
"""


TIMED = """\
hosts: [reviews]
http:
- route: [{destination: {host: reviews}}]
  timeout: 10s
  retries: {attempts: 3, perTryTimeout: 2s, backoff: 25ms}
  fault: {delay: {fixedDelay: 5s, percentage: {value: 0.5}}}
  corsPolicy: {maxAge: 24h}
"""


def test_a_full_featured_virtual_service_is_accepted_and_typed():
    result = load(FULL)
    assert_clean(result)
    spec = result.resources[0].spec
    main = spec.http[0]
    assert isinstance(main, HTTPRoute)
    assert main.match[0].headers["x-user"] == StringMatch(exact="")
    assert main.match[0].headers["x-any"] == StringMatch()
    assert main.retries.retry_ignore_previous_hosts is False
    assert main.cors_policy.unmatched_preflights is UnmatchedPreflights.IGNORE
    assert spec.http[1].redirect.derive_port is RedirectPortSelection.FROM_REQUEST_PORT
    assert spec.http[2].redirect.port == 8443
    assert spec.http[3].direct_response.body.bytes == "aGVsbG8="
    assert spec.tcp[0].match[0].source_subnet == "10.2.0.0/16"


def test_durations_load_as_durations():
    result = load(TIMED)
    assert_clean(result)
    route = result.resources[0].spec.http[0]
    assert route.timeout == Duration.of(seconds=10)
    assert route.retries.per_try_timeout == Duration.of(seconds=2)
    assert route.retries.backoff == Duration.of(millis=25)
    assert route.fault.delay.fixed_delay == Duration.of(seconds=5)
    assert route.cors_policy.max_age == Duration.of(seconds=86400)


def test_a_full_featured_virtual_service_round_trips_through_yaml():
    first = load(FULL).resources[0]
    again = load_text(to_yaml(first))
    assert again.ok, describe(again)
    assert again.resources == (first,)


def test_durations_round_trip_through_yaml():
    first = load(TIMED).resources[0]
    again = load_text(to_yaml(first))
    assert again.resources == (first,), describe(again)


def test_nullable_wrapper_fields_take_null_as_unset():
    result = load(
        """\
        hosts: [reviews]
        http:
        - route: [{destination: {host: reviews}}]
          mirrorPercent: null
          retries: {attempts: 2, retryRemoteLocalities: null, retryIgnorePreviousHosts: null}
          corsPolicy: {allowCredentials: null}
        """
    )
    assert_clean(result)
    route = result.resources[0].spec.http[0]
    assert route.mirror_percent is None
    assert route.retries.retry_remote_localities is None
    assert route.cors_policy.allow_credentials is None


def test_one_of_http_tcp_or_tls_is_required():
    assert_error(load("hosts: [reviews]\n"), "spec", "http, tcp or tls must be provided")


def test_every_problem_is_reported_not_just_the_first():
    result = load(
        """\
        hosts: [reviews]
        http:
        - route: [{destination: {host: "*"}, weight: -1}]
          timeout: 1.5ms
        """
    )
    fields = {d.field for d in result.errors}
    assert fields == {"spec.http[0].route[0].destination.host", "spec.http[0].route[0].weight", "spec.http[0].timeout"}


def test_a_schema_error_does_not_bring_misleading_follow_up_errors():
    result = load("hosts: [a.com]\nhttp: [{route: [{destination: {host: b}, weight: heavy}]}]")
    assert [d.field for d in result.errors] == ["spec.http[0].route[0].weight"]
    result = load(
        "hosts: [7]\ngateways: [ns/gw]\ntls: [{match: [{sniHosts: [a.com]}], route: [{destination: {host: a}}]}]"
    )
    assert [d.field for d in result.errors] == ["spec.hosts[0]"]


def test_the_rules_run_on_specs_built_in_python():
    spec = VirtualService(
        hosts=("a.com",),
        http=(HTTPRoute(route=(HTTPRouteDestination(destination=Destination(host="*")),)),),
    )
    ctx = ValidationContext()
    validate_virtual_service(spec, ctx)
    assert [(path, message) for _, path, message in ctx.findings] == [
        (("spec", "http", 0, "route", 0, "destination", "host"), "invalid destination host *")
    ]


# -- hosts


def test_hosts_must_be_domains_or_ips():
    result = load(f"hosts: [reviews, 10.0.0.1, '2001:db8::1', bad_host, 'foo.*.com']\n{ROUTE}")
    assert {d.field for d in result.errors} == {"spec.hosts[3]", "spec.hosts[4]"}
    assert "bad_host" in result.errors[0].message


def test_a_bare_wildcard_host_is_refused_on_the_mesh_and_allowed_on_a_gateway():
    assert_error(load(f"hosts: ['*']\n{ROUTE}"), "spec.hosts[0]", "wildcard host * is not allowed")
    assert_error(load(f"hosts: ['*']\ngateways: [mesh, ns/gw]\n{ROUTE}"), "spec.hosts[0]", "mesh gateway")
    assert_clean(load(f"hosts: ['*']\ngateways: [ns/gw]\n{ROUTE}"))


def test_overlapping_hosts_are_duplicates():
    result = load(f"hosts: ['*.bar', '*.foo.bar', a.com, a.com]\n{ROUTE}")
    assert_error(result, "spec.hosts[1]", "duplicate hosts in virtual service: *.bar & *.foo.bar")
    assert_error(result, "spec.hosts[3]", "a.com & a.com")
    assert_clean(load(f"hosts: ['*.foo.bar', '*.bar.foo', foo.bar]\n{ROUTE}"))


_LABEL = st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=12)


@given(name=_LABEL, suffix=st.lists(_LABEL, min_size=1, max_size=3).map(".".join))
def test_a_wildcard_host_overlaps_every_name_below_it(name, suffix):
    if suffix.rsplit(".", 1)[-1].isdigit():
        suffix += ".io"  # an all-numeric top-level domain is a host error of its own
    result = load(f"hosts: ['*.{suffix}', '{name}.{suffix}']\n{ROUTE}")
    assert_error(result, "spec.hosts[1]", "duplicate hosts")


def _is_dns_label(text):
    return bool(text) and text[0].isalnum() and text[-1].isalnum() and all(c.isalnum() or c == "-" for c in text)


@given(label=st.text(string.ascii_letters + string.digits + "-_*!", min_size=1, max_size=20))
def test_a_host_label_is_valid_exactly_when_it_is_a_dns_or_wildcard_label(label):
    result = load(f"hosts: ['{label}.example.com']\ngateways: [ns/gw]\n{ROUTE}")
    wildcard = label.startswith("*") and (label == "*" or _is_dns_label(label[1:].removeprefix("-")))
    assert result.ok == (_is_dns_label(label) or wildcard), describe(result)


# -- gateways


def test_gateway_names_are_namespace_slash_name():
    result = load(
        f"hosts: [a.com]\ngateways: [ns/gw, ns/Gw-1, mesh, plain, 'ns/bad_name', '/gw', 'bad_ns!/gw']\n{ROUTE}"
    )
    assert_error(result, "spec.gateways[4]", 'invalid value for gateway name: "bad_name"')
    assert_error(result, "spec.gateways[5]", "cannot be empty")
    assert_error(result, "spec.gateways[6]", 'invalid value for namespace: "bad_ns!"')
    assert {d.field for d in result.errors} == {"spec.gateways[4]", "spec.gateways[5]", "spec.gateways[6]"}


def test_the_legacy_name_dot_namespace_gateway_warns():
    result = load(f"hosts: [a.com]\ngateways: [public.istio-system]\n{ROUTE}")
    assert result.ok
    assert_warning(
        result, "spec.gateways[0]", 'legacy gatewayName format "public.istio-system"', '"istio-system/public"'
    )


def test_converted_gateway_api_routes_may_name_gateways_freely():
    gateway_api = {"internal.istio.io/route-semantics": "gateway"}
    assert load(f"hosts: [a.com]\ngateways: [ns/My_Gateway]\n{ROUTE}", annotations=gateway_api).ok
    assert not load(f"hosts: [a.com]\ngateways: [ns/My_Gateway]\n{ROUTE}").ok


# -- delegates


def test_a_delegate_virtual_service_has_only_http_routes_and_no_gateways():
    result = load(
        """\
        gateways: [mesh]
        http: [{route: [{destination: {host: a}}]}]
        tls: [{match: [{sniHosts: [a.com]}], route: [{destination: {host: a}}]}]
        tcp: [{route: [{destination: {host: a}}]}]
        """
    )
    assert_error(result, "spec.gateways", "delegate virtual service must have no gateways specified")
    assert_error(result, "spec.tls", "no tls route specified")
    assert_error(result, "spec.tcp", "no tcp route specified")
    assert_clean(load("http: [{route: [{destination: {host: a}}]}]"))


def test_a_root_route_delegates_and_does_nothing_else():
    result = load(
        """\
        hosts: [a.com]
        http:
        - name: shop
          delegate: {name: shop, namespace: shop}
          route: [{destination: {host: a}}]
          redirect: {uri: /x}
        """
    )
    assert_error(result, "spec.http[0].route", "root HTTP route shop must not specify route")
    assert_error(result, "spec.http[0].redirect", "root HTTP route shop must not specify redirect")
    assert_clean(load("hosts: [a.com]\nhttp: [{delegate: {name: shop}}]"))


def test_a_delegated_route_may_not_delegate_again():
    result = load("http: [{delegate: {name: other}, route: [{destination: {host: a}}]}]")
    assert_error(result, "spec.http[0].delegate", "delegate HTTP route cannot contain delegate")


# -- exportTo


def test_export_to_follows_istio_rules():
    assert_clean(load(f"hosts: [a.com]\nexportTo: ['.', other]\n{ROUTE}"))
    assert_error(load(f"hosts: [a.com]\nexportTo: ['*', other]\n{ROUTE}"), "spec.exportTo", "'*' must be the only")
    assert_error(load(f"hosts: [a.com]\nexportTo: ['~']\n{ROUTE}"), "spec.exportTo[0]", "'~'")
    assert_error(load(f"hosts: [a.com]\nexportTo: ['.', default]\n{ROUTE}"), "spec.exportTo[1]", "repeated")
