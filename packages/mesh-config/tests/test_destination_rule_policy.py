"""DestinationRule connection pools, outlier detection and the CRD duration rules."""

import textwrap

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mesh_config import load_text


def load(policy):
    text = (
        "apiVersion: networking.istio.io/v1\n"
        "kind: DestinationRule\n"
        "metadata: {name: reviews, namespace: bookinfo}\n"
        "spec:\n"
        "  host: reviews\n"
        "  trafficPolicy:\n" + textwrap.indent(textwrap.dedent(policy), "    ")
    )
    return load_text(text)


def errors(result):
    return [(d.field, d.message) for d in result.errors]


def warnings(result):
    return [(d.field, d.message) for d in result.warnings]


def has(found, field, *words):
    return any(path == field and all(word in message for word in words) for path, message in found)


POOL = "spec.trafficPolicy.connectionPool"
OUTLIER = "spec.trafficPolicy.outlierDetection"

# Every duration field with the CRD rule ``duration(self) >= duration('1ms')``, as (policy YAML, field path).
CEL_DURATIONS = [
    ("connectionPool: {tcp: {connectTimeout: %s}}", f"{POOL}.tcp.connectTimeout"),
    ("connectionPool: {tcp: {maxConnectionDuration: %s}}", f"{POOL}.tcp.maxConnectionDuration"),
    ("connectionPool: {tcp: {tcpKeepalive: {time: %s}}}", f"{POOL}.tcp.tcpKeepalive.time"),
    ("connectionPool: {tcp: {tcpKeepalive: {interval: %s}}}", f"{POOL}.tcp.tcpKeepalive.interval"),
    ("connectionPool: {http: {idleTimeout: %s}}", f"{POOL}.http.idleTimeout"),
    ("connectionPool: {http: {http2KeepAlive: {interval: %s, timeout: 1s}}}", f"{POOL}.http.http2KeepAlive.interval"),
    ("connectionPool: {http: {http2KeepAlive: {interval: 1s, timeout: %s}}}", f"{POOL}.http.http2KeepAlive.timeout"),
    ("outlierDetection: {interval: %s}", f"{OUTLIER}.interval"),
    ("outlierDetection: {baseEjectionTime: %s}", f"{OUTLIER}.baseEjectionTime"),
    ("loadBalancer: {warmupDurationSecs: %s}", "spec.trafficPolicy.loadBalancer.warmupDurationSecs"),
    ("loadBalancer: {warmup: {duration: %s}}", "spec.trafficPolicy.loadBalancer.warmup.duration"),
    (
        "portLevelSettings: [{port: {number: 80}, outlierDetection: {interval: %s}}]",
        "spec.trafficPolicy.portLevelSettings[0].outlierDetection.interval",
    ),
]


@given(field=st.sampled_from(CEL_DURATIONS), nanos=st.integers(min_value=-(10**12), max_value=10**12))
def test_durations_must_be_whole_milliseconds_of_at_least_one(field, nanos):
    template, path = field
    result = load(template % f"{nanos}ns" + "\n")
    found = errors(result)
    if nanos < 1_000_000:
        assert has(found, path, "Invalid value", "must be a valid duration greater than 1ms")
    elif nanos % 1_000_000:
        assert has(found, path, "whole number of milliseconds")
    else:
        assert result.ok, found


def test_the_tcp_idle_timeout_may_be_zero_to_disable_it():
    assert load("connectionPool: {tcp: {idleTimeout: 0s}}\n").ok
    assert load("connectionPool: {tcp: {idleTimeout: 1h}}\n").ok
    assert has(errors(load("connectionPool: {tcp: {idleTimeout: 1.5ms}}\n")), f"{POOL}.tcp.idleTimeout", "0.0015s")


def test_a_connection_pool_needs_tcp_or_http():
    assert has(errors(load("connectionPool: {}\n")), POOL, "at least one field")


@pytest.mark.parametrize(
    "field",
    ["http1MaxPendingRequests", "http2MaxRequests", "maxRequestsPerConnection", "maxRetries", "maxConcurrentStreams"],
)
def test_http_limits_must_not_be_negative(field):
    assert has(
        errors(load(f"connectionPool: {{http: {{{field}: -1}}}}\n")), f"{POOL}.http.{field}", "non-negative", "-1"
    )
    assert load(f"connectionPool: {{http: {{{field}: 0}}}}\n").ok


def test_tcp_limits_must_not_be_negative_and_fit_int32():
    assert has(errors(load("connectionPool: {tcp: {maxConnections: -5}}\n")), f"{POOL}.tcp.maxConnections", "-5")
    assert not load("connectionPool: {tcp: {maxConnections: 2147483648}}\n").ok


def test_upgrade_excludes_the_client_protocol():
    found = errors(load("connectionPool: {http: {h2UpgradePolicy: UPGRADE, useClientProtocol: true}}\n"))
    assert has(found, f"{POOL}.http.useClientProtocol", "UPGRADE")
    assert load("connectionPool: {http: {h2UpgradePolicy: DO_NOT_UPGRADE, useClientProtocol: true}}\n").ok


def test_http2_keep_alive_needs_an_interval_and_a_timeout():
    found = errors(load("connectionPool: {http: {http2KeepAlive: {interval: 10s}}}\n"))
    assert has(found, f"{POOL}.http.http2KeepAlive", "timeout is missing")


class TestOutlierDetection:
    def test_consecutive_errors_is_deprecated(self):
        result = load("outlierDetection: {consecutiveErrors: 5}\n")
        assert result.ok
        assert has(warnings(result), f"{OUTLIER}.consecutiveErrors", "deprecated")

    def test_local_origin_failures_need_split_errors(self):
        found = errors(load("outlierDetection: {consecutiveLocalOriginFailures: 3}\n"))
        assert has(found, f"{OUTLIER}.consecutiveLocalOriginFailures", "split external local origin errors")
        assert load("outlierDetection: {consecutiveLocalOriginFailures: 3, splitExternalLocalOriginErrors: true}\n").ok

    @given(st.integers(min_value=-1000, max_value=1000))
    def test_percentages_are_0_to_100(self, percent):
        result = load(f"outlierDetection: {{maxEjectionPercent: {percent}, minHealthPercent: 0}}\n")
        assert result.ok == (0 <= percent <= 100)
        if not result.ok:
            assert has(errors(result), f"{OUTLIER}.maxEjectionPercent", f"percentage {percent}")

    def test_error_codes_are_100_to_599_and_counts_are_uint32(self):
        found = errors(load("outlierDetection: {outlierDetectionHttpErrorCodes: [503, 99, 600]}\n"))
        assert has(found, f"{OUTLIER}.outlierDetectionHttpErrorCodes[1]", "Invalid value: 99")
        assert has(found, f"{OUTLIER}.outlierDetectionHttpErrorCodes[2]", "Invalid value: 600")
        assert not load("outlierDetection: {consecutive5xxErrors: -1}\n").ok

    def test_port_level_outlier_detection_is_checked_too(self):
        found = errors(
            load("portLevelSettings:\n- port: {number: 80}\n  outlierDetection: {maxEjectionPercent: 101}\n")
        )
        assert has(found, "spec.trafficPolicy.portLevelSettings[0].outlierDetection.maxEjectionPercent", "101")
