"""DestinationRule load balancing: simple, consistent hash, Maglev, locality, zone-aware, warmup."""

import textwrap

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mesh_config import ValidationContext, load_text
from mesh_config.networking.load_balancer import (
    MAGLEV_TABLE_SIZE_LIMIT,
    LocalityDistribute,
    LocalityFailover,
    LocalityLoadBalancerSetting,
    is_maglev_prime,
    validate_locality_lb_setting,
)


def load(load_balancer, *, outlier=True):
    policy = "loadBalancer:\n" + textwrap.indent(textwrap.dedent(load_balancer), "  ")
    if outlier:
        policy += "outlierDetection: {consecutive5xxErrors: 5}\n"
    text = (
        "apiVersion: networking.istio.io/v1\n"
        "kind: DestinationRule\n"
        "metadata: {name: reviews, namespace: bookinfo}\n"
        "spec:\n"
        "  host: reviews\n"
        "  trafficPolicy:\n" + textwrap.indent(policy, "    ")
    )
    return load_text(text)


def errors(result):
    return [(d.field, d.message) for d in result.errors]


def warnings(result):
    return [(d.field, d.message) for d in result.warnings]


def has(found, field, *words):
    return any(path == field and all(word in message for word in words) for path, message in found)


LB = "spec.trafficPolicy.loadBalancer"


@pytest.mark.parametrize(
    "simple", ["UNSPECIFIED", "LEAST_CONN", "RANDOM", "PASSTHROUGH", "ROUND_ROBIN", "LEAST_REQUEST"]
)
def test_simple_algorithms_are_accepted(simple):
    assert load(f"simple: {simple}\n").ok


def test_an_unknown_algorithm_and_two_policies_are_refused():
    assert has(errors(load("simple: FASTEST\n")), f"{LB}.simple", 'Unsupported value: "FASTEST"')
    assert not load("simple: RANDOM\nconsistentHash: {useSourceIp: true}\n").ok


class TestConsistentHash:
    def test_one_hash_key_and_one_algorithm(self):
        assert load("consistentHash: {httpHeaderName: x-user, ringHash: {minimumRingSize: 64}}\n").ok
        assert load("consistentHash: {httpQueryParameterName: user, maglev: {tableSize: 1009}}\n").ok
        assert not load("consistentHash: {httpHeaderName: x, useSourceIp: true}\n").ok
        assert not load("consistentHash: {useSourceIp: true, ringHash: {}, maglev: {tableSize: 7}}\n").ok

    def test_a_cookie_needs_a_name_and_unique_attributes(self):
        found = errors(load("consistentHash: {httpCookie: {ttl: 0s}}\n"))
        assert has(found, f"{LB}.consistentHash.httpCookie.name", "Required value")
        found = errors(load("consistentHash: {httpCookie: {name: ''}}\n"))
        assert has(found, f"{LB}.consistentHash.httpCookie.name", "name required for HttpCookie")
        found = errors(load("consistentHash: {httpCookie: {name: c, attributes: [{name: a}, {name: a, value: b}]}}\n"))
        assert has(found, f"{LB}.consistentHash.httpCookie.attributes[1]", "duplicate cookie attribute", "'a'")

    def test_minimum_ring_size_is_deprecated_and_exclusive_with_an_algorithm(self):
        result = load("consistentHash: {useSourceIp: true, minimumRingSize: 1024}\n")
        assert result.ok
        assert has(warnings(result), f"{LB}.consistentHash.minimumRingSize", "deprecated")
        found = errors(load("consistentHash: {useSourceIp: true, minimumRingSize: 1024, ringHash: {}}\n"))
        assert has(found, f"{LB}.consistentHash.minimumRingSize", "only one of MinimumRingSize")

    def test_a_maglev_table_size_is_needed(self):
        found = errors(load("consistentHash: {useSourceIp: true, maglev: {}}\n"))
        assert has(found, f"{LB}.consistentHash.maglev.tableSize", "tableSize must be set")
        found = errors(
            load(f"consistentHash: {{useSourceIp: true, maglev: {{tableSize: {MAGLEV_TABLE_SIZE_LIMIT}}}}}\n")
        )
        assert has(found, f"{LB}.consistentHash.maglev.tableSize", "less than 5000011", str(MAGLEV_TABLE_SIZE_LIMIT))


def _is_prime(value):
    return value == 1 or (value > 1 and all(value % factor for factor in range(2, int(value**0.5) + 1)))


@given(st.integers(min_value=1, max_value=MAGLEV_TABLE_SIZE_LIMIT - 1))
def test_maglev_table_sizes_must_be_prime(size):
    result = load(f"consistentHash: {{useSourceIp: true, maglev: {{tableSize: {size}}}}}\n")
    assert is_maglev_prime(size) == _is_prime(size)
    assert result.ok == _is_prime(size)
    if not result.ok:
        assert has(errors(result), f"{LB}.consistentHash.maglev.tableSize", "prime", str(size))


class TestLocality:
    def test_distribute_and_failover_are_exclusive(self):
        found = errors(
            load(
                """\
                localityLbSetting:
                  distribute: [{from: us-east/*, to: {us-east/*: 100}}]
                  failover: [{from: us-east, to: us-west}]
                """
            )
        )
        assert has(found, f"{LB}.localityLbSetting", "'distribute' and 'failover'")

    def test_a_weight_outside_1_to_100_is_refused(self):
        found = errors(load("localityLbSetting:\n  distribute: [{from: a/*, to: {b/*: 0, c/*: 100}}]\n"))
        assert has(found, f"{LB}.localityLbSetting.distribute[0].to['b/*']", "[1, 100]", "'b/*'")

    def test_failover_must_name_two_distinct_regions_without_wildcards(self):
        found = errors(
            load("localityLbSetting:\n  failover: [{from: a, to: a}, {from: a/z, to: b}, {from: '*', to: b}]\n")
        )
        assert has(found, f"{LB}.localityLbSetting.failover[0]", "different regions", "'a'")
        assert has(found, f"{LB}.localityLbSetting.failover[1]", "only specify region", "'a/z'")
        assert has(found, f"{LB}.localityLbSetting.failover[2]", "'*' wildcard")

    def test_failover_with_a_topology_label_priority_is_refused(self):
        found = errors(
            load(
                "localityLbSetting:\n  failover: [{from: a, to: b}]\n"
                "  failoverPriority: [topology.kubernetes.io/zone]\n"
            )
        )
        assert has(found, f"{LB}.localityLbSetting.failoverPriority[0]", "topology.kubernetes.io/zone")

    def test_failover_without_outlier_detection_warns(self):
        result = load("localityLbSetting:\n  failover: [{from: a, to: b}]\n", outlier=False)
        assert result.ok
        assert has(warnings(result), f"{LB}.localityLbSetting", "outlier detection")
        assert load("localityLbSetting:\n  failover: [{from: a, to: b}]\n").warnings == ()

    @pytest.mark.parametrize(
        ("localities", "problem"),
        [
            (["a/*", "a/b"], "overlap"),
            (["a", "a/b"], "overlap"),
            (["a/b/c", "a/b/c"], "overlap"),
            (["*", "a"], "overlap"),
            (["a/*/c"], "must be in the end"),
            (["a//c"], "empty region/zone/subzone"),
        ],
    )
    def test_source_localities_must_not_overlap(self, localities, problem):
        entries = "".join(f"  - {{from: '{source}', to: {{x: 100}}}}\n" for source in localities)
        found = errors(load(f"localityLbSetting:\n  distribute:\n{entries}"))
        assert has(found, f"{LB}.localityLbSetting.distribute", problem)

    def test_meshconfig_can_call_the_rules_directly(self):
        setting = LocalityLoadBalancerSetting(
            distribute=(LocalityDistribute(from_="a/*", to={"b/*": 60, "c/*": 30}),),
            failover=(LocalityFailover(from_="a", to="b"),),
        )
        ctx = ValidationContext(path=("localityLbSetting",))
        validate_locality_lb_setting(setting, ctx)
        messages = [message for _, _, message in ctx.findings]
        assert any("'distribute' and 'failover'" in message for message in messages)
        assert any("total locality weight 90 != 100" in message for message in messages)


@given(st.lists(st.integers(min_value=1, max_value=100), min_size=1, max_size=5))
def test_distribute_weights_must_total_100(weights):
    targets = ", ".join(f"r{index}/*: {weight}" for index, weight in enumerate(weights))
    result = load(f"localityLbSetting:\n  distribute: [{{from: src/*, to: {{{targets}}}}}]\n")
    assert result.ok == (sum(weights) == 100)
    if sum(weights) != 100:
        assert has(errors(result), f"{LB}.localityLbSetting.distribute[0].to", f"total locality weight {sum(weights)}")


def test_zone_aware_is_exclusive_with_locality_and_needs_a_cluster_size():
    found = errors(load("localityLbSetting: {enabled: true}\nzoneAwareLbSetting: {enabled: true}\n"))
    assert has(found, LB, "only one of localityLbSetting or zoneAwareLbSetting")
    found = errors(load("zoneAwareLbSetting: {minClusterSize: 0}\n"))
    assert has(found, f"{LB}.zoneAwareLbSetting.minClusterSize", "Invalid value: 0")
    assert load("zoneAwareLbSetting: {enabled: true, failover: [{from: a, to: b}], minClusterSize: 2}\n").ok


class TestWarmup:
    def test_the_corpus_cases(self):
        assert load("warmup: {duration: 300s, minimumPercent: 5.0, aggression: 5.0}\n").ok
        found = errors(load("warmup: {duration: 300s, minimumPercent: 150.0}\n"))
        assert has(found, f"{LB}.warmup.minimumPercent", "Invalid value: 150")
        found = errors(load("warmup: {minimumPercent: 5.0}\n"))
        assert has(found, f"{LB}.warmup.duration", "Required value")
        found = errors(load("warmup: {duration: 300s, aggression: -0.1}\n"))
        assert has(found, f"{LB}.warmup.aggression", "Invalid value: -0.1")

    def test_an_aggression_below_one_is_refused_by_istio(self):
        found = errors(load("warmup: {duration: 10s, aggression: 0.5}\n"))
        assert has(found, f"{LB}.warmup.aggression", "greater than or equal to 1", "0.5")

    def test_the_durations_must_be_at_least_a_millisecond(self):
        found = errors(load("warmup: {duration: 0.5ms}\nwarmupDurationSecs: 0s\n"))
        assert has(found, f"{LB}.warmup.duration", "must be a valid duration greater than 1ms")
        assert has(found, f"{LB}.warmupDurationSecs", "must be a valid duration greater than 1ms")
