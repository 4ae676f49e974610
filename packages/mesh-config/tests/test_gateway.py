"""Gateway: servers, ports, hosts, binds, versions and round trip (TLS is in test_gateway_tls.py)."""

import textwrap

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mesh_config import load_text, to_yaml
from mesh_config.networking.gateway import Gateway, ServerTLSMode, TLSProtocol


def load(spec, *, version="v1", name="ingress", annotations=""):
    text = (
        f"apiVersion: networking.istio.io/{version}\n"
        "kind: Gateway\n"
        "metadata:\n"
        f"  name: {name}\n"
        "  namespace: istio-system\n"
        f"{annotations}"
        "spec:\n"
        f"{textwrap.indent(textwrap.dedent(spec), '  ')}"
    )
    return load_text(text)


def server(port="{number: 80, name: http, protocol: HTTP}", hosts="['*/bookinfo.example.com']", extra=""):
    return f"servers:\n- port: {port}\n  hosts: {hosts}\n{textwrap.indent(extra, '  ')}"


def errors(result):
    return [(d.field, d.message) for d in result.errors]


def warnings(result):
    return [(d.field, d.message) for d in result.warnings]


def has(found, field, *words):
    return any(path == field and all(word in message for word in words) for path, message in found)


FULL = """\
selector: {istio: ingressgateway}
servers:
- port: {number: 80, name: http, protocol: HTTP}
  hosts: ["bookinfo/reviews.example.com", "*/*.example.com"]
  tls: {httpsRedirect: true}
  name: plain
- port: {number: 443, name: https, protocol: HTTPS}
  bind: 10.0.0.1
  hosts: ["./bookinfo.example.com", "10.1.2.3"]
  tls:
    mode: MUTUAL
    credentialName: bookinfo-cert
    caCertCredentialName: bookinfo-ca
    subjectAltNames: [client.example.com]
    verifyCertificateSpki: [abc]
    verifyCertificateHash: [def]
    minProtocolVersion: TLSV1_2
    maxProtocolVersion: TLSV1_3
    cipherSuites: [ECDHE-RSA-AES128-GCM-SHA256, "-AES128-SHA"]
    ecdhCurves: [X25519]
    insecureSkipVerify: false
- port: {number: 8443, name: tls-files, protocol: TLS}
  hosts: ["*.files.example.com"]
  tls:
    mode: SIMPLE
    tlsCertificates:
    - {serverCertificate: /rsa.pem, privateKey: /rsa.key}
    - {serverCertificate: /ec.pem, privateKey: /ec.key, caCertificates: /ca.pem}
"""

UNIX_SOCKET_SERVER = """\
servers:
- port: {number: 0, name: uds, protocol: GRPC}
  bind: unix:///var/run/gateway.sock
  hosts: ["*"]
"""


def test_a_full_featured_gateway_is_accepted_and_typed():
    result = load(FULL)
    assert result.ok, errors(result)
    assert result.warnings == ()
    spec = result.resources[0].spec
    assert isinstance(spec, Gateway)
    assert spec.selector == {"istio": "ingressgateway"}
    assert spec.servers[1].tls.mode is ServerTLSMode.MUTUAL
    assert spec.servers[1].tls.max_protocol_version is TLSProtocol.TLSV1_3
    assert spec.servers[2].tls.tls_certificates[1].ca_certificates == "/ca.pem"


def test_a_full_featured_gateway_round_trips_through_yaml():
    first = load(FULL)
    again = load_text(to_yaml(first.resources))
    assert again.ok, errors(again)
    assert again.resources == first.resources


def test_a_unix_socket_server_has_port_zero():
    result = load(UNIX_SOCKET_SERVER)
    assert result.ok, errors(result)
    assert result.resources[0].spec.servers[0].port.number == 0


def test_a_unix_socket_server_round_trips_through_yaml():
    first = load(UNIX_SOCKET_SERVER)
    again = load_text(to_yaml(first.resources))
    assert again.ok, errors(again)
    assert again.resources == first.resources


@pytest.mark.parametrize("version", ["v1", "v1beta1", "v1alpha3"])
def test_every_served_version_is_accepted(version):
    assert load(server(), version=version).ok


def test_the_corpus_gateway_with_a_bare_host_is_accepted():
    assert load(server(port="{number: 31400, protocol: TCP, name: tcp}", hosts="[a.istio-system.svc.cluster.local]")).ok


def test_a_gateway_needs_servers_and_a_dns_label_name():
    assert has(errors(load("selector: {app: gw}\n")), "spec.servers", "at least one server")
    assert has(errors(load(server(), name="my.gateway")), "metadata.name", "invalid gateway name", "'my.gateway'")
    translated = "  annotations: {internal.istio.io/gateway-semantics: gateway}\n"
    assert load(server(), name="my.gateway", annotations=translated).ok


def test_a_server_needs_a_port_and_hosts():
    found = errors(load("servers:\n- hosts: ['*/a.com']\n- port: {number: 80, name: h, protocol: HTTP}\n"))
    assert has(found, "spec.servers[0].port", "Required value")
    assert has(found, "spec.servers[1].hosts", "Required value")
    found = errors(load(server(hosts="[]")))
    assert has(found, "spec.servers[0].hosts", "at least one host")


def test_port_fields_are_required_by_the_schema():
    found = errors(load(server(port="{number: 80}")))
    assert has(found, "spec.servers[0].port.protocol", "Required value")
    assert has(found, "spec.servers[0].port.name", "Required value")


def test_port_problems_are_reported():
    found = errors(load(server(port="{number: 70000, name: '', protocol: QUIC, targetPort: 8080}")))
    assert has(found, "spec.servers[0].port.number", "70000")
    assert has(found, "spec.servers[0].port.name", "port name must be set")
    assert has(found, "spec.servers[0].port.protocol", "invalid protocol", "'QUIC'")
    assert has(found, "spec.servers[0].port.targetPort", "targetPort has no impact on Gateways")


@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_port_numbers_are_1_to_65535(number):
    result = load(server(port=f"{{number: {number}, name: http, protocol: HTTP}}"))
    assert result.ok == (1 <= number <= 65535)


def test_port_names_are_unique_across_servers():
    text = server() + "- port: {number: 81, name: http, protocol: HTTP}\n  hosts: ['*/a.com']\n"
    assert has(errors(load(text)), "spec.servers[1].port.name", "must be unique", "'http'")


def test_a_bind_is_an_ip_or_a_unix_socket_with_port_zero():
    found = errors(load(server(extra="bind: not-an-ip\n")))
    assert has(found, "spec.servers[0].bind", "'not-an-ip'")
    found = errors(load(server(extra="bind: unix://relative/path\n")))
    assert has(found, "spec.servers[0].bind", "absolute path")
    assert has(found, "spec.servers[0].port.number", "must be 0 for unix domain socket")
    assert load(server(port="{number: 0, name: u, protocol: HTTP}", extra="bind: 'unix://@abstract'\n")).ok
    assert not load(server(port="{number: 0, name: u, protocol: HTTP}")).ok


class TestHosts:
    @pytest.mark.parametrize(
        "host", ["*/*", "./a.example.com", "bookinfo/*.example.com", "*.example.com", "a.example.com", "1.2.3.4", "*"]
    )
    def test_valid_hosts(self, host):
        assert load(server(hosts=f"['{host}']")).ok

    @pytest.mark.parametrize(
        ("host", "words"),
        [
            ("bookinfo/reviews", "short names"),
            ("Bad_NS/a.example.com", "invalid namespace value"),
            ("~/a.example.com", "invalid namespace value"),
            ("*/*foo.example.com", "partial wildcard"),
            ("*/a.*.com", "only the first label"),
            ("/a.example.com", "cannot be empty"),
            ("reviews", "short names"),
        ],
    )
    def test_invalid_hosts_are_refused_with_the_host_quoted(self, host, words):
        found = errors(load(server(hosts=f"['{host}']")))
        assert has(found, "spec.servers[0].hosts[0]", words)

    def test_a_tilde_namespace_is_allowed_for_translated_gateway_api_gateways(self):
        translated = "  annotations: {internal.istio.io/gateway-semantics: gateway}\n"
        assert load(server(hosts="['~/a.example.com']"), annotations=translated).ok

    @given(labels=st.lists(st.from_regex(r"[a-z][a-z0-9-]{0,8}[a-z0-9]", fullmatch=True), min_size=2, max_size=4))
    def test_namespaced_fqdns_are_accepted(self, labels):
        host = ".".join(labels)
        assert load(server(hosts=f"['bookinfo/{host}', '*/*.{host}']")).ok
