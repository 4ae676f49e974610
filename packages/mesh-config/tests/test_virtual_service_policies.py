"""VirtualService HTTP policies: timeouts and other durations, retries, fault injection, mirroring, CORS."""

import textwrap

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mesh_config import load_text

DESTINATION = "route: [{destination: {host: reviews}}]"
GO_STATUS_CODES = {100, 101, 102, 103, *range(200, 209), 226, *range(300, 306), 307, 308, *range(400, 419)}
GO_STATUS_CODES |= {*range(421, 427), 428, 429, 431, 451, *range(500, 509), 510, 511}
CEL_DURATION = 'Invalid value: "string": must be a valid duration greater than 1ms'


def load(route):
    """A VirtualService whose only HTTP route forwards to reviews and has ``route`` (YAML mapping lines)."""
    body = textwrap.indent(f"{DESTINATION}\n{textwrap.dedent(route).strip()}", "    ").lstrip()
    spec = f"  hosts: [reviews]\n  http:\n  - {body}\n"
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


# -- durations


DURATION_FIELDS = [
    ("timeout: {}", "spec.http[0].timeout"),
    ("retries: {{attempts: 1, perTryTimeout: {}}}", "spec.http[0].retries.perTryTimeout"),
    ("retries: {{attempts: 1, backoff: {}}}", "spec.http[0].retries.backoff"),
    ("fault: {{delay: {{fixedDelay: {}}}}}", "spec.http[0].fault.delay.fixedDelay"),
    ("corsPolicy: {{maxAge: {}}}", "spec.http[0].corsPolicy.maxAge"),
]


@pytest.mark.parametrize(("template", "field"), DURATION_FIELDS)
def test_durations_below_1ms_break_the_crd_rule(template, field):
    assert_error(load(template.format("0.5ms")), field, CEL_DURATION)
    assert_error(load(template.format("0s")), field, CEL_DURATION)
    assert_error(load(template.format("-1s")), field, CEL_DURATION)
    assert_clean(load(template.format("1s")))


@given(nanos=st.integers(0, 10**11))
def test_a_timeout_is_at_least_1ms_in_whole_milliseconds(nanos):
    result = load(f"timeout: {nanos}ns")
    if nanos < 1_000_000:
        assert_error(result, "spec.http[0].timeout", CEL_DURATION)
    elif nanos % 1_000_000:
        assert_error(result, "spec.http[0].timeout", "whole number of milliseconds")
    else:
        assert_clean(result)


def test_a_cors_max_age_is_in_whole_seconds():
    assert_error(load("corsPolicy: {maxAge: 1500ms}"), "spec.http[0].corsPolicy.maxAge", "seconds precision", "1.5s")


def test_exponential_delay_is_not_supported():
    result = load("fault: {delay: {exponentialDelay: 1s}}")
    assert_error(result, "spec.http[0].fault.delay.exponentialDelay", "exponentialDelay not supported yet")


# -- retries


def test_a_retry_policy_needs_attempts():
    for policy in ("perTryTimeout: 1s", "retryOn: 5xx", "retryRemoteLocalities: false"):
        result = load(f"retries: {{attempts: 0, {policy}}}")
        assert_error(result, "spec.http[0].retries.attempts", "configured when attempts are set to 0")
    assert_clean(load("retries: {attempts: 0, retryIgnorePreviousHosts: true}"))
    assert_error(load("retries: {attempts: -1}"), "spec.http[0].retries.attempts", "cannot be negative")


def test_retry_on_names_envoy_policies():
    assert_clean(load("retries: {attempts: 2, retryOn: 'gateway-error,connect-failure,refused-stream,unavailable'}"))
    result = load("retries: {attempts: 2, retryOn: '5xx,timeouts, reset'}")
    assert_error(result, "spec.http[0].retries.retryOn", '"timeouts" is not a valid retryOn policy')
    assert_error(result, "spec.http[0].retries.retryOn", '" reset"')


@given(code=st.integers(0, 999))
def test_retry_on_takes_status_codes_go_knows(code):
    result = load(f"retries: {{attempts: 2, retryOn: '5xx,{code}'}}")
    if code in GO_STATUS_CODES:
        assert_clean(result)
    else:
        assert_error(result, "spec.http[0].retries.retryOn", f'"{code}" is not a valid retryOn policy')


# -- fault injection


def test_a_fault_injects_something():
    assert_error(load("fault: {}"), "spec.http[0].fault", "must have an abort and/or a delay")


@given(status=st.integers(-10, 1000))
def test_an_aborting_http_status_is_200_to_600(status):
    result = load(f"fault: {{abort: {{httpStatus: {status}}}}}")
    if 200 <= status <= 600:
        assert_clean(result)
    else:
        assert_error(result, "spec.http[0].fault.abort.httpStatus", f"HTTP status {status} is not in range")


def test_an_aborting_grpc_status_is_a_grpc_code_name():
    assert_clean(load("fault: {abort: {grpcStatus: DEADLINE_EXCEEDED}}"))
    result = load("fault: {abort: {grpcStatus: deadline_exceeded}}")
    assert_error(result, "spec.http[0].fault.abort.grpcStatus", 'gRPC status "deadline_exceeded" is not supported')


def test_http2_aborts_are_not_supported_and_a_bare_abort_warns():
    result = load("fault: {abort: {http2Error: PROTOCOL_ERROR}}")
    assert_error(result, "spec.http[0].fault.abort.http2Error", "HTTP/2 abort fault injection not supported")
    result = load("fault: {abort: {percentage: {value: 10}}}")
    assert result.ok
    assert_warning(result, "spec.http[0].fault.abort", "abort configured, but error type not set")


@given(value=st.floats(-200, 200, allow_nan=False))
def test_fault_percentages_are_0_or_0_0001_to_100(value):
    result = load(f"fault: {{delay: {{fixedDelay: 1s, percentage: {{value: {value!r}}}}}}}")
    if value == 0 or 0.0001 <= value <= 100:
        assert_clean(result)
    else:
        assert_error(result, "spec.http[0].fault.delay.percentage.value", "is neither 0.0, nor in range")


# -- mirroring


def test_mirror_destinations_are_checked_like_routes():
    result = load("mirror: {host: '*'}\n")
    assert_error(result, "spec.http[0].mirror.host", "invalid destination host *")
    result = load("mirrors: [{destination: {host: a, subset: x_y}}]")
    assert_error(result, "spec.http[0].mirrors[0].destination.subset", "x_y")
    assert_error(load("mirrors: [{percentage: {value: 5}}]"), "spec.http[0].mirrors[0].destination", "Required")


@pytest.mark.parametrize(
    ("route", "field", "message"),
    [
        ("mirror: {host: a}\nmirrorPercentage: {value: 100.5}", "spec.http[0].mirrorPercentage.value", "max value"),
        ("mirror: {host: a}\nmirrorPercentage: {value: -1}", "spec.http[0].mirrorPercentage.value", "min value"),
        (
            "mirrors: [{destination: {host: a}, percentage: {value: 101}}]",
            "spec.http[0].mirrors[0].percentage.value",
            "101",
        ),
        ("mirror: {host: a}\nmirrorPercent: 101", "spec.http[0].mirrorPercent", "max value of 100 (it has 101)"),
        ("mirror: {host: a}\nmirror_percent: 101", "spec.http[0].mirror_percent", "(it has 101)"),
    ],
)
def test_mirror_shares_are_percentages(route, field, message):
    assert_error(load(route), field, message)


@pytest.mark.parametrize("spelling", ["mirrorPercent", "mirror_percent"])
def test_the_integer_mirror_percent_is_deprecated(spelling):
    result = load(f"mirror: {{host: a}}\n{spelling}: 50")
    assert result.ok
    assert_warning(result, f"spec.http[0].{spelling}", 'deprecated setting "mirrorPercent"')


# -- CORS


def test_cors_methods_come_from_a_fixed_set():
    assert_clean(
        load("corsPolicy: {allowMethods: [GET, HEAD, POST, PUT, PATCH, DELETE, CONNECT, OPTIONS, TRACE, '*']}")
    )
    result = load("corsPolicy: {allowMethods: [GET, get, PURGE]}")
    assert_error(result, "spec.http[0].corsPolicy.allowMethods[1]", '"get" is not a supported HTTP method')
    assert_error(result, "spec.http[0].corsPolicy.allowMethods[2]", '"PURGE"')


def test_cors_headers_are_tokens_or_a_star():
    assert_clean(load("corsPolicy: {allowHeaders: ['*', x-token], exposeHeaders: [x-id]}"))
    result = load("corsPolicy: {allowHeaders: ['x token'], exposeHeaders: ['']}")
    assert_error(result, "spec.http[0].corsPolicy.allowHeaders[0]", "header name x token is not a valid header name")
    assert_error(result, "spec.http[0].corsPolicy.exposeHeaders[0]", "header name cannot be empty")


def test_cors_origins_are_non_empty_matches_with_valid_regexes():
    assert_clean(load("corsPolicy: {allowOrigins: [{exact: 'https://a.com'}, {prefix: 'https://'}, {regex: '.*'}]}"))
    result = load("corsPolicy: {allowOrigins: [{exact: ''}, {}, {regex: '[a-'}]}")
    assert_error(result, "spec.http[0].corsPolicy.allowOrigins[0]", "not a valid match type for CORS allow origins")
    assert_error(result, "spec.http[0].corsPolicy.allowOrigins[1]", "not a valid match type")
    assert_error(result, "spec.http[0].corsPolicy.allowOrigins[2].regex", "[a-")


def test_unmatched_preflights_is_an_enum():
    assert_clean(load("corsPolicy: {unmatchedPreflights: FORWARD}"))
    result = load("corsPolicy: {unmatchedPreflights: DROP}")
    assert_error(result, "spec.http[0].corsPolicy.unmatchedPreflights", 'Unsupported value: "DROP"')
