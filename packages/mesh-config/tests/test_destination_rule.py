"""DestinationRule: loading, versions, round trip, host, subsets, exportTo, selector, TLS, tunnel."""

import textwrap

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mesh_config import load_text, to_yaml
from mesh_config.networking.destination_rule import (
    ClientTLSMode,
    DestinationRule,
    LocalityLoadBalancerSetting,
    SimpleLB,
    Subset,
)


def load(spec, *, version="v1", namespace="bookinfo", metadata=""):
    text = (
        f"apiVersion: networking.istio.io/{version}\n"
        "kind: DestinationRule\n"
        "metadata:\n"
        "  name: reviews\n"
        f"  namespace: {namespace}\n"
        f"{textwrap.indent(textwrap.dedent(metadata), '  ')}"
        "spec:\n"
        f"{textwrap.indent(textwrap.dedent(spec), '  ')}"
    )
    return load_text(text)


def errors(result):
    return [(d.field, d.message) for d in result.errors]


def warnings(result):
    return [(d.field, d.message) for d in result.warnings]


def has(found, field, *words):
    return any(path == field and all(word in message for word in words) for path, message in found)


FULL = """\
host: reviews.bookinfo.svc.cluster.local
exportTo: ["."]
trafficPolicy:
  loadBalancer:
    consistentHash:
      httpCookie:
        name: session
        path: /
        ttl: 30s
        attributes:
        - name: SameSite
          value: Strict
      ringHash:
        minimumRingSize: 1024
    localityLbSetting:
      failover:
      - from: us-east
        to: us-west
      failoverPriority: [topology.istio.io/network]
      enabled: true
    warmup:
      duration: 60s
      minimumPercent: 10
      aggression: 2
  connectionPool:
    tcp:
      maxConnections: 100
      connectTimeout: 30ms
      tcpKeepalive: {probes: 3, time: 7200s, interval: 75s}
      maxConnectionDuration: 1h
      idleTimeout: 0s
    http:
      http1MaxPendingRequests: 10
      http2MaxRequests: 100
      maxRequestsPerConnection: 5
      maxRetries: 3
      idleTimeout: 5m
      h2UpgradePolicy: UPGRADE
      maxConcurrentStreams: 64
      http2KeepAlive: {interval: 15s, timeout: 5s}
  outlierDetection:
    consecutive5xxErrors: 7
    consecutiveGatewayErrors: 3
    splitExternalLocalOriginErrors: true
    consecutiveLocalOriginFailures: 2
    interval: 5m
    baseEjectionTime: 15m
    maxEjectionPercent: 50
    minHealthPercent: 20
    outlierDetectionHttpErrorCodes: [503, 504]
  tls:
    mode: SIMPLE
    caCertificates: /etc/certs/ca.pem
    subjectAltNames: [reviews.example.com]
    sni: reviews.example.com
  portLevelSettings:
  - port: {number: 9080}
    loadBalancer: {simple: LEAST_REQUEST}
  retryBudget: {percent: 25.5, minRetryConcurrency: 3, budgetInterval: 10s}
  tunnel: {protocol: CONNECT, targetHost: proxy.example.com, targetPort: 8443}
subsets:
- name: v1
  labels: {version: v1}
- name: v2
  labels: {version: v2}
  trafficPolicy:
    loadBalancer:
      simple: ROUND_ROBIN
      zoneAwareLbSetting: {enabled: true, minClusterSize: 3}
      warmupDurationSecs: 30s
    proxyProtocol: {version: V2}
workloadSelector:
  matchLabels: {app: productpage}
"""


def test_a_full_featured_rule_is_accepted_and_typed():
    result = load(FULL)
    assert result.ok, errors(result)
    spec = result.resources[0].spec
    assert isinstance(spec, DestinationRule)
    policy = spec.traffic_policy
    assert policy.load_balancer.consistent_hash.http_cookie.attributes[0].value == "Strict"
    assert policy.load_balancer.consistent_hash.ring_hash.minimum_ring_size == 1024
    assert isinstance(policy.load_balancer.locality_lb_setting, LocalityLoadBalancerSetting)
    assert policy.load_balancer.locality_lb_setting.enabled is True
    assert policy.connection_pool.tcp.idle_timeout.nanos == 0
    assert policy.outlier_detection.consecutive_5xx_errors == 7
    assert policy.tls.mode is ClientTLSMode.SIMPLE
    assert policy.retry_budget.percent == 25.5
    assert spec.subsets[1] == Subset(name="v2", labels={"version": "v2"}, traffic_policy=spec.subsets[1].traffic_policy)
    assert spec.subsets[1].traffic_policy.load_balancer.simple is SimpleLB.ROUND_ROBIN
    assert result.warnings == ()


WITHOUT_DURATIONS = """\
host: reviews.bookinfo.svc.cluster.local
exportTo: ["."]
trafficPolicy:
  loadBalancer:
    consistentHash:
      httpCookie: {name: session, path: /, attributes: [{name: SameSite, value: Strict}]}
      maglev: {tableSize: 65537}
    localityLbSetting:
      distribute:
      - from: us-west/zone1/*
        to: {"us-west/zone1/*": 80, "us-west/zone2/*": 20}
      enabled: false
  connectionPool:
    tcp: {maxConnections: 100, tcpKeepalive: {probes: 3}}
    http: {http1MaxPendingRequests: 10, useClientProtocol: true, h2UpgradePolicy: DO_NOT_UPGRADE}
  outlierDetection: {consecutive5xxErrors: 0, maxEjectionPercent: 50, outlierDetectionHttpErrorCodes: [503]}
  tls: {mode: MUTUAL, clientCertificate: /c.pem, privateKey: /k.pem, insecureSkipVerify: false}
  portLevelSettings:
  - port: {number: 9080}
    loadBalancer: {simple: LEAST_REQUEST}
  proxyProtocol: {version: V2}
  retryBudget: {percent: 25.5, minRetryConcurrency: 3}
subsets:
- name: v1
  labels: {version: v1}
  trafficPolicy:
    loadBalancer: {backendUtilization: {errorUtilizationPenaltyPercent: 10, metricNamesForComputingUtilization: [cpu]}}
workloadSelector:
  matchLabels: {app: productpage}
"""


def test_a_full_featured_rule_without_durations_round_trips_through_yaml():
    first = load(WITHOUT_DURATIONS)
    assert first.ok, errors(first)
    again = load_text(to_yaml(first.resources))
    assert again.ok, errors(again)
    assert again.resources == first.resources


def test_a_full_featured_rule_round_trips_through_yaml():
    first = load(FULL)
    again = load_text(to_yaml(first.resources))
    assert again.ok, errors(again)
    assert again.resources == first.resources


@pytest.mark.parametrize("version", ["v1", "v1beta1", "v1alpha3"])
def test_every_served_version_is_accepted(version):
    result = load("host: reviews\n", version=version)
    assert result.ok
    assert result.resources[0].api_version == f"networking.istio.io/{version}"


def test_host_is_required_and_must_be_a_domain():
    assert has(errors(load("subsets: []\n")), "spec.host", "Required value")
    assert has(errors(load("host: 'reviews..bookinfo'\n")), "spec.host", "reviews..bookinfo")
    assert has(errors(load("host: ''\n")), "spec.host", "empty")
    assert load("host: '*.bookinfo.svc.cluster.local'\n").ok


@given(label=st.from_regex(r"[a-z][a-z0-9]{0,10}", fullmatch=True), wildcard=st.booleans())
def test_dns_hosts_are_accepted(label, wildcard):
    host = f"*.{label}.example.com" if wildcard else f"{label}.example.com"
    assert load(f"host: '{host}'\n").ok


@given(bad=st.sampled_from(["-a.com", "a_b.com", "a.*.com", "foo.123", "a..b"]))
def test_malformed_hosts_are_refused_with_the_host_quoted(bad):
    assert has(errors(load(f"host: '{bad}'\n")), "spec.host", bad)


def test_subset_names_are_unique_dns_labels_with_valid_labels():
    result = load(
        """\
        host: reviews
        subsets:
        - name: v1
        - name: v1
        - name: v_2
          labels: {"bad key!": x, version: "no spaces"}
        - name: ''
        """
    )
    found = errors(result)
    assert has(found, "spec.subsets[1].name", "duplicate subset names", "'v1'")
    assert has(found, "spec.subsets[2].name", "subset name is invalid", "'v_2'")
    assert has(found, "spec.subsets[2].labels['bad key!']", "invalid tag key")
    assert has(found, "spec.subsets[2].labels.version", "invalid tag value", "'no spaces'")
    assert has(found, "spec.subsets[3].name", "subset name cannot be empty")
    assert has(errors(load("host: r\nsubsets:\n- labels: {a: b}\n")), "spec.subsets[0].name", "Required value")


def test_a_subset_name_may_use_upper_case_as_in_istio():
    assert load("host: r\nsubsets:\n- name: V1\n").ok


def test_an_empty_traffic_policy_is_refused():
    assert has(errors(load("host: r\ntrafficPolicy: {}\n")), "spec.trafficPolicy", "at least one field")
    found = errors(load("host: r\nsubsets:\n- name: v1\n  trafficPolicy: {}\n"))
    assert has(found, "spec.subsets[0].trafficPolicy", "at least one field")
    assert load("host: r\ntrafficPolicy: {retryBudget: {percent: 10}}\n").ok


def test_a_policy_whose_only_field_is_malformed_reports_only_that_field():
    found = errors(load("host: r\ntrafficPolicy:\n  connectionPool: {tcp: {maxConnections: many}}\n"))
    assert found == [
        ("spec.trafficPolicy.connectionPool.tcp.maxConnections", 'in body must be of type integer: "string"')
    ]


def test_tunnel_and_proxy_protocol_are_exclusive_and_tunnel_is_checked():
    result = load(
        """\
        host: r
        trafficPolicy:
          tunnel: {protocol: GET, targetHost: 'bad host', targetPort: 0}
          proxyProtocol: {version: V1}
        """
    )
    found = errors(result)
    assert has(found, "spec.trafficPolicy", "tunnel and proxyProtocol must not be set together")
    assert has(found, "spec.trafficPolicy.tunnel.protocol", "CONNECT", "'GET'")
    assert has(found, "spec.trafficPolicy.tunnel.targetHost", "FQDN or IP", "bad host")
    assert has(found, "spec.trafficPolicy.tunnel.targetPort", "port number 0")
    assert load("host: r\ntrafficPolicy:\n  tunnel: {targetHost: 10.0.0.1, targetPort: 3128}\n").ok
    assert has(
        errors(load("host: r\ntrafficPolicy:\n  tunnel: {targetPort: 1}\n")), "spec.trafficPolicy.tunnel.targetHost"
    )


def test_port_level_settings_need_a_port_and_a_policy():
    found = errors(
        load("host: r\ntrafficPolicy:\n  portLevelSettings:\n  - tls: {mode: ISTIO_MUTUAL}\n  - port: {number: 80}\n")
    )
    assert has(found, "spec.trafficPolicy.portLevelSettings[0].port", "must have valid port")
    assert has(found, "spec.trafficPolicy.portLevelSettings[1]", "port traffic policy must have at least one field")


def test_retry_budget_percent_is_bounded_by_the_schema():
    found = errors(load("host: r\ntrafficPolicy:\n  retryBudget: {percent: 120}\n"))
    assert has(found, "spec.trafficPolicy.retryBudget.percent", "Invalid value: 120", "less than or equal to 100")


class TestClientTls:
    def tls(self, body, namespace="bookinfo"):
        return load(f"host: r\ntrafficPolicy:\n  tls: {body}\n", namespace=namespace)

    def test_mutual_without_a_credential_needs_a_certificate_and_key(self):
        found = errors(self.tls("{mode: MUTUAL}"))
        assert has(found, "spec.trafficPolicy.tls.clientCertificate", "client certificate required")
        assert has(found, "spec.trafficPolicy.tls.privateKey", "private key required")
        assert self.tls("{mode: MUTUAL, credentialName: client-cert}").ok
        assert self.tls("{mode: MUTUAL, clientCertificate: /c.pem, privateKey: /k.pem}").ok

    def test_a_credential_name_excludes_certificate_files(self):
        found = errors(self.tls("{mode: SIMPLE, credentialName: cred, caCertificates: /ca.pem}"))
        assert has(found, "spec.trafficPolicy.tls", "credentialName is set", "'cred'")

    def test_insecure_skip_verify_conflicts_with_verification_settings(self):
        found = errors(self.tls("{mode: SIMPLE, insecureSkipVerify: true, subjectAltNames: [a.com]}"))
        assert has(found, "spec.trafficPolicy.tls.insecureSkipVerify", "InsecureSkipVerify")
        found = errors(self.tls("{mode: MUTUAL, insecureSkipVerify: true, credentialName: c, caCertificates: /ca}"))
        assert has(found, "spec.trafficPolicy.tls.insecureSkipVerify", "CaCertificates or SubjectAltNames")
        assert self.tls("{mode: SIMPLE, insecureSkipVerify: true}").ok

    def test_a_configmap_credential_must_be_in_the_rule_namespace(self):
        assert self.tls("{mode: SIMPLE, credentialName: 'configmap://bookinfo/ca'}").ok
        found = errors(self.tls("{mode: SIMPLE, credentialName: 'configmap://other/ca'}"))
        assert has(found, "spec.trafficPolicy.tls.credentialName", "namespace must match", "'bookinfo'")
        found = errors(self.tls("{mode: SIMPLE, credentialName: 'configmap://ca'}"))
        assert has(found, "spec.trafficPolicy.tls.credentialName", "configmap://ca")

    def test_an_unknown_mode_is_refused(self):
        assert has(errors(self.tls("{mode: STRICT}")), "spec.trafficPolicy.tls.mode", 'Unsupported value: "STRICT"')


class TestExportTo:
    def test_namespaces_dot_and_star_are_accepted(self):
        assert load("host: r\nexportTo: ['.']\n").ok
        assert load("host: r\nexportTo: ['*']\n").ok
        assert load("host: r\nexportTo: [bookinfo, istio-system]\n").ok

    def test_duplicates_tilde_and_star_with_others_are_refused(self):
        assert not load("host: r\nexportTo: ['.', bookinfo]\n").ok
        assert not load("host: r\nexportTo: ['~']\n").ok
        assert not load("host: r\nexportTo: ['*', bookinfo]\n").ok
        assert not load("host: r\nexportTo: [Not_A_Namespace]\n").ok

    def test_a_rule_with_a_workload_selector_stays_in_its_namespace(self):
        selector = "workloadSelector: {matchLabels: {app: a}}\n"
        assert load(f"host: r\nexportTo: ['.']\n{selector}").ok
        assert load(f"host: r\nexportTo: [bookinfo]\n{selector}").ok
        found = errors(load(f"host: r\nexportTo: ['*']\n{selector}"))
        assert has(found, "spec.exportTo", "beyond current namespace", "'*'")
        found = errors(load(f"host: r\nexportTo: [other]\n{selector}"))
        assert has(found, "spec.exportTo", "beyond current namespace", "'other'")
        found = errors(load(f"host: r\nexportTo: ['.', other]\n{selector}"))
        assert has(found, "spec.exportTo", "multiple entries", "'other'")


class TestWorkloadSelector:
    def test_an_empty_selector_warns(self):
        result = load("host: r\nworkloadSelector: {}\n")
        assert result.ok
        assert any(field == "spec.workloadSelector" for field, _ in warnings(result))

    def test_wildcards_and_empty_keys_are_refused_with_the_crd_messages(self):
        found = errors(load("host: r\nworkloadSelector: {matchLabels: {'*': a, app: 'b*'}}\n"))
        assert has(found, "spec.workloadSelector.matchLabels", "wildcard not allowed in label key match")
        assert has(found, "spec.workloadSelector.matchLabels.app", "wildcard not allowed in label value match")
