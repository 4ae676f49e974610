"""VirtualService HTTP routes: actions, destinations, redirects, responses, rewrites, retries, faults, CORS."""

import json
import textwrap

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mesh_config import load_text

DESTINATION = "route: [{destination: {host: reviews}}]"


def load(route, *, hosts="[reviews]", more=""):
    """A VirtualService whose first HTTP route is ``route`` (YAML mapping lines)."""
    body = textwrap.indent(textwrap.dedent(route).strip(), "    ")
    spec = f"  hosts: {hosts}\n  http:\n  - {body.lstrip()}\n{more}"
    return load_text(f"apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: vs\nspec:\n{spec}")


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


# -- what a route does


@pytest.mark.parametrize(
    ("route", "field", "message"),
    [
        ("redirect: {uri: /x}\n" + DESTINATION, "spec.http[0].redirect", "both route and redirect"),
        ("redirect: {uri: /x}\nfault: {abort: {httpStatus: 500}}", "spec.http[0].redirect", "both fault and redirect"),
        ("redirect: {uri: /x}\nrewrite: {uri: /y}", "spec.http[0].redirect", "both rewrite and redirect"),
        ("redirect: {uri: /x}\ndirectResponse: {status: 200}", "spec.http[0].redirect", "direct_response and redirect"),
        ("directResponse: {status: 200}\n" + DESTINATION, "spec.http[0].directResponse", "route and direct_response"),
        ("directResponse: {status: 200}\nrewrite: {uri: /y}", "spec.http[0].directResponse", "rewrite and direct"),
        ("directResponse: {status: 200}\nfault: {abort: {httpStatus: 500}}", "spec.http[0].directResponse", "fault"),
        ("name: nothing", "spec.http[0]", "HTTP route, redirect or direct_response is required"),
        (
            f"{DESTINATION}\nmirror: {{host: a}}\nmirrors: [{{destination: {{host: b}}}}]",
            "spec.http[0].mirrors",
            "mirror",
        ),
    ],
)
def test_a_route_does_exactly_one_thing(route, field, message):
    assert_error(load(route), field, message)


def test_each_action_alone_is_accepted():
    assert_clean(load(DESTINATION))
    assert_clean(load("redirect: {uri: /x}"))
    assert_clean(load("directResponse: {status: 503, body: {string: unavailable}}"))


# -- destinations and weights


def test_destination_host_subset_and_port_are_checked():
    result = load("route: [{destination: {host: '*', subset: v_1, port: {number: 0}}}]")
    assert_error(result, "spec.http[0].route[0].destination.host", "invalid destination host *")
    assert_error(result, "spec.http[0].route[0].destination.subset", "subset name is invalid: v_1")
    assert_error(result, "spec.http[0].route[0].destination.port.number", "0")
    assert_clean(load("route: [{destination: {host: '*.example.com', subset: V1-canary, port: {number: 8080}}}]"))


def test_a_destination_needs_a_host():
    assert_error(load("route: [{destination: {subset: v1}}]"), "spec.http[0].route[0].destination.host", "Required")
    assert_error(load("route: [{weight: 100}]"), "spec.http[0].route[0].destination", "Required")


@given(weights=st.lists(st.integers(0, 1000), min_size=1, max_size=5))
def test_weights_may_be_anything_but_all_zero_with_several_destinations(weights):
    routes = ", ".join(f"{{destination: {{host: d{i}}}, weight: {w}}}" for i, w in enumerate(weights))
    result = load(f"route: [{routes}]")
    if len(weights) > 1 and sum(weights) == 0:
        assert_error(result, "spec.http[0].route", "total destination weight = 0")
    else:
        assert_clean(result)


def test_a_negative_weight_is_refused():
    assert_error(load("route: [{destination: {host: a}, weight: -5}]"), "spec.http[0].route[0].weight", "weight -5 < 0")


@given(port=st.integers(0, 2**32 - 1))
def test_a_destination_port_is_1_to_65535(port):
    result = load(f"route: [{{destination: {{host: a, port: {{number: {port}}}}}}}]")
    assert result.ok == (1 <= port <= 65535), describe(result)


def test_gateway_api_routes_skip_destination_checks():
    text = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: vs\n  annotations:\n"
    text += "    internal.istio.io/route-semantics: gateway\nspec:\n  hosts: [a.com]\n  gateways: [ns/gw]\n"
    text += "  http: [{route: [{destination: {host: 'bad_host.svc'}}]}]\n"
    assert load_text(text).ok


# -- redirect


def test_a_redirect_must_change_something():
    assert_error(load("redirect: {redirectCode: 301}"), "spec.http[0].redirect", "must specify URI")
    for redirect in ("uri: /x", "authority: a.com", "scheme: https", "port: 8080", "derivePort: FROM_REQUEST_PORT"):
        assert_clean(load(f"redirect: {{{redirect}}}"))


@given(code=st.integers(1, 999))
def test_a_redirect_code_is_3xx(code):
    result = load(f"redirect: {{uri: /x, redirectCode: {code}}}")
    if 300 <= code <= 399:
        assert_clean(result)
    else:
        assert_error(result, "spec.http[0].redirect.redirectCode", f"{code} is not a valid redirect code")


def test_redirect_scheme_and_port():
    assert_error(load("redirect: {scheme: ftp}"), "spec.http[0].redirect.scheme", '"http" or "https"', '"ftp"')
    assert_error(load("redirect: {port: 70000}"), "spec.http[0].redirect.port", "70000")
    result = load("redirect: {port: 80, derivePort: FROM_REQUEST_PORT}")
    assert_error(result, "spec.http[0].redirect.derivePort", "only one of")


def test_redirect_prefix_rewrite_needs_prefix_matches_and_no_uri():
    assert_clean(load("match: [{uri: {prefix: /old}}]\nredirect: {prefixRewrite: /new}"))
    result = load("match: [{uri: {prefix: /old}}, {uri: {exact: /x}}]\nredirect: {prefixRewrite: /new, uri: /y}")
    assert_error(result, "spec.http[0].redirect.prefixRewrite", "one of uri or prefixRewrite")
    assert_error(result, "spec.http[0].match[1]", 'prefixRewrite "/new" requires a uri prefix match')


# -- direct response


@given(status=st.integers(0, 1000))
def test_a_direct_response_status_is_200_to_600(status):
    result = load(f"directResponse: {{status: {status}}}")
    if 200 <= status <= 600:
        assert_clean(result)
    else:
        assert_error(result, "spec.http[0].directResponse.status", f"HTTP status {status} is not in range")


def test_a_direct_response_needs_a_status():
    assert_error(load("directResponse: {body: {string: x}}"), "spec.http[0].directResponse.status", "Required")


@pytest.mark.parametrize(
    ("size", "outcome"), [(100 * 1024, "clean"), (100 * 1024 + 1, "warning"), (1024 * 1024 + 1, "error")]
)
def test_large_direct_response_bodies_warn_then_fail(size, outcome):
    result = load(f"directResponse: {{status: 200, body: {{string: '{'x' * size}'}}}}")
    if outcome == "clean":
        assert_clean(result)
    elif outcome == "warning":
        assert result.ok
        assert_warning(result, "spec.http[0].directResponse.body", "large direct_responses", f"{size} bytes")
    else:
        assert_error(result, "spec.http[0].directResponse.body", "must be less than 1MB")


def test_direct_response_bytes_are_base64():
    assert_clean(load("directResponse: {status: 200, body: {bytes: aGVsbG8=}}"))
    result = load("directResponse: {status: 200, body: {bytes: 'not base64!'}}")
    assert_error(result, "spec.http[0].directResponse.body.bytes", "must be of type byte", "not base64!")


# -- rewrite and authority


def test_rewrite_rules():
    assert_error(load(f"{DESTINATION}\nrewrite: {{}}"), "spec.http[0].rewrite", "at least one of URI")
    result = load(f"{DESTINATION}\nrewrite: {{uri: /a, uriRegexRewrite: {{match: a, rewrite: b}}}}")
    assert_error(result, "spec.http[0].rewrite.uriRegexRewrite", "only contain one of URI or UriRegexRewrite")
    result = load(f"{DESTINATION}\nrewrite: {{uriRegexRewrite: {{match: '^/a'}}}}")
    assert_error(result, "spec.http[0].rewrite.uriRegexRewrite", "requires both Rewrite and Match")
    result = load(f"{DESTINATION}\nrewrite: {{uriRegexRewrite: {{match: '(', rewrite: x}}}}")
    assert_error(result, "spec.http[0].rewrite.uriRegexRewrite.match", "'('")


def test_the_authority_is_rewritten_in_one_place_only():
    result = load(f"{DESTINATION}\nrewrite: {{authority: a.com}}\nheaders: {{request: {{set: {{Host: b.com}}}}}}")
    assert_error(result, "spec.http[0].headers.request.set.Host", 'have "a.com", attempting to set "b.com"')
    assert_clean(load(f"{DESTINATION}\nheaders: {{request: {{set: {{':authority': b.com}}}}}}"))


# -- header manipulation


@pytest.mark.parametrize(
    ("headers", "field", "message"),
    [
        ("{request: {set: {':path': /x}}}", "spec.http[0].headers.request.set[':path']", 'cannot have ":" prefix'),
        ("{request: {remove: [Host]}}", "spec.http[0].headers.request.remove[0]", "cannot set Host header"),
        ("{response: {add: {host: x}}}", "spec.http[0].headers.response.add.host", "cannot set Host header"),
        ("{response: {set: {':authority': x}}}", "spec.http[0].headers.response.set[':authority']", '":" prefix'),
        ("{request: {add: {'': x}}}", "spec.http[0].headers.request.add['']", "header name cannot be empty"),
    ],
)
def test_headers_envoy_does_not_let_a_route_change_are_refused(headers, field, message):
    assert_error(load(f"{DESTINATION}\nheaders: {headers}"), field, message)


@pytest.mark.parametrize(
    "value", ["plain", "100%%", "%HOSTNAME%", "a %REQ(x-id)% b", '%PER_REQUEST_STATE(["a", "b"])%', "%VAR( x)%"]
)
def test_header_values_in_envoy_syntax_are_accepted(value):
    result = load(f"route: [{{destination: {{host: a}}, headers: {{request: {{set: {{x: '{value}'}}}}}}}}]")
    assert_clean(result)


@pytest.mark.parametrize(("value", "message"), [("50%", "Un-escaped %"), ("%START_TIME", "Un-terminated")])
def test_malformed_header_values_are_refused(value, message):
    result = load(f"route: [{{destination: {{host: a}}, headers: {{response: {{add: {{x: '{value}'}}}}}}}}]")
    assert_error(result, "spec.http[0].route[0].headers.response.add.x", message)


@given(text=st.text(st.characters(max_codepoint=0xFFFF, exclude_categories=("Cc", "Cs"), exclude_characters="%")))
def test_header_values_are_literal_text_with_percent_signs_doubled(text):
    value = json.dumps(text + " 100%%")
    assert_clean(load(f"{DESTINATION}\nheaders: {{request: {{set: {{x: {value}}}}}}}"))


def test_control_characters_in_header_values_are_refused():
    result = load(f'{DESTINATION}\nheaders: {{request: {{set: {{x: "a\\x01b"}}}}}}')
    assert_error(result, "spec.http[0].headers.request.set.x", "header value configuration")
