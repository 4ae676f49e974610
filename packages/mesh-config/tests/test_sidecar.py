"""Sidecar: selector, ingress and egress listeners, hosts, outbound policy, versions and round trip."""

import textwrap

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mesh_config import load_text, to_yaml
from mesh_config.networking.sidecar import CaptureMode, OutboundTrafficPolicyMode, Sidecar


def load(spec, *, version="v1"):
    text = (
        f"apiVersion: networking.istio.io/{version}\n"
        "kind: Sidecar\n"
        "metadata: {name: default, namespace: bookinfo}\n"
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
workloadSelector:
  labels: {app: reviews}
ingress:
- port: {number: 9080, protocol: HTTP, name: http}
  defaultEndpoint: 127.0.0.1:8080
  captureMode: IPTABLES
  connectionPool:
    http: {http1MaxPendingRequests: 10}
- port: {number: 9443, protocol: HTTPS, name: https}
  bind: 0.0.0.0
  defaultEndpoint: unix:///var/run/app.sock
  tls: {mode: SIMPLE, serverCertificate: /c.pem, privateKey: /k.pem, minProtocolVersion: TLSV1_2}
egress:
- port: {number: 3306, protocol: MySQL, name: mysql}
  bind: 127.0.0.2
  hosts: [./mysql.bookinfo.svc.cluster.local]
- port: {number: 0, protocol: HTTP, name: uds}
  bind: unix:///var/run/egress.sock
  captureMode: NONE
  hosts: ["istio-system/*"]
- hosts: ["./*", "~/ratings.example.com"]
inboundConnectionPool:
  tcp: {maxConnections: 100}
outboundTrafficPolicy:
  mode: ALLOW_ANY
  egressProxy:
    host: egress.istio-system.svc.cluster.local
    subset: v1
    port: {number: 3128}
"""


def test_a_full_featured_sidecar_is_accepted_and_typed():
    result = load(FULL)
    assert result.ok, errors(result)
    assert result.warnings == ()
    spec = result.resources[0].spec
    assert isinstance(spec, Sidecar)
    assert spec.workload_selector.labels == {"app": "reviews"}
    assert spec.ingress[0].capture_mode is CaptureMode.IPTABLES
    assert spec.egress[2].port is None
    assert spec.outbound_traffic_policy.mode is OutboundTrafficPolicyMode.ALLOW_ANY
    assert spec.outbound_traffic_policy.egress_proxy.port.number == 3128


def test_a_full_featured_sidecar_round_trips_through_yaml():
    first = load(FULL)
    again = load_text(to_yaml(first.resources))
    assert again.ok, errors(again)
    assert again.resources == first.resources


@pytest.mark.parametrize("version", ["v1", "v1beta1", "v1alpha3"])
def test_every_served_version_is_accepted(version):
    assert load("egress:\n- hosts: ['abc/*']\n", version=version).ok


def test_an_empty_sidecar_is_refused():
    assert has(errors(load("{}\n")), "spec", "empty configuration")
    assert has(errors(load("egress: []\n")), "spec", "empty configuration")
    assert load("outboundTrafficPolicy: {mode: REGISTRY_ONLY}\n").ok


class TestSelector:
    def test_labels_without_wildcards(self):
        found = errors(load("workloadSelector: {labels: {app: 'rev*'}}\negress: [{hosts: ['*/*']}]\n"))
        assert has(found, "spec.workloadSelector.labels.app", 'Invalid value: "string"', "wildcard is not supported")
        found = errors(load("workloadSelector: {labels: {'a*': b}}\negress: [{hosts: ['*/*']}]\n"))
        assert has(found, "spec.workloadSelector.labels['a*']", "wildcard is not supported", "a*=b")

    def test_empty_labels_warn(self):
        result = load("workloadSelector: {labels: {}}\negress: [{hosts: ['*/*']}]\n")
        assert result.ok
        assert has(warnings(result), "spec.workloadSelector", "applied to all services")


class TestIngress:
    def ingress(self, listener):
        return load(f"ingress:\n- {listener}\n")

    def test_a_port_is_required_and_checked(self):
        assert has(errors(self.ingress("{defaultEndpoint: ':80'}")), "spec.ingress[0].port", "Required value")
        found = errors(self.ingress("{port: {number: 0, protocol: FOO, name: Bad_Name, targetPort: 1}}"))
        assert has(found, "spec.ingress[0].port.number", "port number 0")
        assert has(found, "spec.ingress[0].port.protocol", "unsupported protocol", "'FOO'")
        assert has(found, "spec.ingress[0].port.name", "invalid port name", "'Bad_Name'")
        assert has(found, "spec.ingress[0].port.targetPort", "no impact on Sidecars")

    def test_ports_are_unique(self):
        found = errors(load("ingress:\n- port: {number: 80}\n- port: {number: 80}\n"))
        assert has(found, "spec.ingress[1].port.number", "must be unique", "80")

    @pytest.mark.parametrize("endpoint", ["127.0.0.1:8080", "0.0.0.0:8080", "[::1]:8080", "[::]:8080", ":8080"])
    def test_local_default_endpoints_are_accepted(self, endpoint):
        assert self.ingress(f"{{port: {{number: 80}}, defaultEndpoint: '{endpoint}'}}").ok

    @pytest.mark.parametrize(
        ("endpoint", "words"),
        [
            ("10.0.0.1:8080", "must be of form"),
            ("127.0.0.1", "missing port"),
            ("127.0.0.1:http", "not a number"),
            ("127.0.0.1:70000", "70000"),
            ("unix://relative", "absolute path"),
        ],
    )
    def test_other_default_endpoints_are_refused(self, endpoint, words):
        found = errors(self.ingress(f"{{port: {{number: 80}}, defaultEndpoint: '{endpoint}'}}"))
        assert has(found, "spec.ingress[0].defaultEndpoint", words)

    def test_tls_is_limited_in_sidecars(self):
        found = errors(
            self.ingress(
                "{port: {number: 443, protocol: HTTPS}, tls: {mode: ISTIO_MUTUAL, credentialName: c, "
                "subjectAltNames: [a], httpsRedirect: true}}"
            )
        )
        for field, words in [
            ("mode", "cannot set mode to ISTIO_MUTUAL"),
            ("credentialName", "credentialName is not currently supported"),
            ("subjectAltNames", "subjectAltNames is not supported"),
            ("httpsRedirect", "httpsRedirect is not supported"),
        ]:
            assert has(found, f"spec.ingress[0].tls.{field}", words)
        found = errors(self.ingress("{port: {number: 80, protocol: HTTP}, tls: {mode: SIMPLE, credentialNames: [x]}}"))
        assert has(found, "spec.ingress[0].tls", "non HTTPS/TLS ports", "'HTTP'")
        assert has(found, "spec.ingress[0].tls.credentialNames", "not currently supported")

    def test_http_pool_settings_on_a_tcp_port_warn(self):
        result = self.ingress(
            "{port: {number: 5432, protocol: TCP, name: pg}, connectionPool: {http: {maxRetries: 1}}}"
        )
        assert result.ok
        assert has(warnings(result), "spec.ingress[0].connectionPool.http", "only TCP settings will apply", "5432")

    def test_connection_pools_are_checked(self):
        found = errors(self.ingress("{port: {number: 80}, connectionPool: {tcp: {connectTimeout: 0s}}}"))
        assert has(found, "spec.ingress[0].connectionPool.tcp.connectTimeout", "greater than 1ms")
        found = errors(load("egress: [{hosts: ['*/*']}]\ninboundConnectionPool: {http: {maxRetries: -1}}\n"))
        assert has(found, "spec.inboundConnectionPool.http.maxRetries", "non-negative")


class TestEgress:
    def test_only_the_last_listener_may_omit_the_port(self):
        found = errors(load("egress:\n- hosts: ['*/*']\n- port: {number: 80}\n  hosts: ['*/*']\n"))
        assert has(found, "spec.egress[0]", "should be the last listener")

    def test_ports_and_sockets_are_unique(self):
        found = errors(
            load(
                "egress:\n- port: {number: 80}\n  hosts: ['*/*']\n- port: {number: 80}\n  hosts: ['*/*']\n"
                "- {port: {number: 0}, bind: 'unix:///s', hosts: ['*/*']}\n"
                "- {port: {number: 0}, bind: 'unix:///s', hosts: ['*/*']}\n"
            )
        )
        assert has(found, "spec.egress[1].port.number", "must be unique")
        assert has(found, "spec.egress[3].bind", "must be unique", "unix:///s")

    def test_port_zero_needs_a_unix_socket_and_no_iptables(self):
        found = errors(load("egress:\n- {port: {number: 0}, captureMode: IPTABLES, hosts: ['*/*']}\n"))
        assert has(found, "spec.egress[0].bind", "unix domain socket bind address")
        assert has(found, "spec.egress[0].captureMode", "DEFAULT/NONE", "IPTABLES")

    def test_hosts_are_required(self):
        assert has(errors(load("egress:\n- port: {number: 80}\n")), "spec.egress[0].hosts", "Required value")
        assert has(errors(load("egress:\n- hosts: []\n")), "spec.egress[0].hosts", "at least one host")

    @pytest.mark.parametrize(
        ("host", "words"),
        [
            ("reviews.example.com", "namespace/dnsName"),
            ("bookinfo/reviews", "short names"),
            ("~bookinfo/a.example.com", "invalid namespace value"),
            ("*/*foo.com", "partial wildcard"),
            ("*/1.2.3.4", "all-numeric"),
        ],
    )
    def test_invalid_hosts_are_refused(self, host, words):
        assert has(errors(load(f"egress:\n- hosts: ['{host}']\n")), "spec.egress[0].hosts[0]", words)

    def test_duplicate_hosts_warn(self):
        result = load("egress:\n- hosts: ['bookinfo/*', './a.example.com', '*/*']\n")
        assert result.ok
        assert has(warnings(result), "spec.egress[0].hosts[1]", "duplicated egress host", "./a.example.com")
        assert has(warnings(result), "spec.egress[0].hosts", "`*/*` host select all resources")

    @given(
        namespace=st.sampled_from(["*", ".", "~", "bookinfo", "istio-system"]),
        name=st.from_regex(r"(\*\.)?[a-z][a-z0-9]{0,6}\.[a-z]{2,5}", fullmatch=True),
    )
    def test_namespaced_hosts_are_accepted(self, namespace, name):
        result = load(f"egress:\n- hosts: ['{namespace}/{name}', '{namespace}/*']\n")
        assert result.ok, errors(result)


class TestOutboundTrafficPolicy:
    def test_an_egress_proxy_needs_allow_any_and_a_port(self):
        found = errors(load("outboundTrafficPolicy: {egressProxy: {host: egress.example.com, port: {number: 80}}}\n"))
        assert has(found, "spec.outboundTrafficPolicy.egressProxy", "only with ALLOW_ANY", "REGISTRY_ONLY")
        found = errors(load("outboundTrafficPolicy: {mode: ALLOW_ANY, egressProxy: {host: egress.example.com}}\n"))
        assert has(found, "spec.outboundTrafficPolicy.egressProxy.port", "must be non-nil")

    def test_the_egress_proxy_is_a_valid_destination(self):
        found = errors(
            load(
                "outboundTrafficPolicy:\n  mode: ALLOW_ANY\n"
                "  egressProxy: {host: '*.example.com', subset: V_1, port: {number: 0}}\n"
            )
        )
        assert has(found, "spec.outboundTrafficPolicy.egressProxy.host", "*.example.com")
        assert has(found, "spec.outboundTrafficPolicy.egressProxy.subset", "'V_1'")
        assert has(found, "spec.outboundTrafficPolicy.egressProxy.port.number", "port number 0")

    def test_dynamic_dns_is_not_a_sidecar_mode(self):
        assert has(
            errors(load("outboundTrafficPolicy: {mode: ALLOW_ANY_DYNAMIC_DNS}\n")), "spec.outboundTrafficPolicy.mode"
        )
