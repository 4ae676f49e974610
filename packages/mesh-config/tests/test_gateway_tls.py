"""Gateway server TLS: modes, certificate sources, the CRD rules, ciphers and protocol versions."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mesh_config import load_text
from mesh_config.networking.server_tls import VALID_CIPHER_SUITES, is_valid_cipher_suite


def load(tls, *, protocol="HTTPS"):
    text = (
        "apiVersion: networking.istio.io/v1\n"
        "kind: Gateway\n"
        "metadata: {name: ingress, namespace: istio-system}\n"
        "spec:\n"
        "  servers:\n"
        f"  - port: {{number: 443, name: port, protocol: {protocol}}}\n"
        "    hosts: ['*/bookinfo.example.com']\n"
        f"    tls: {tls}\n"
    )
    return load_text(text)


def errors(result):
    return [(d.field, d.message) for d in result.errors]


def warnings(result):
    return [(d.field, d.message) for d in result.warnings]


def has(found, field, *words):
    return any(path == field and all(word in message for word in words) for path, message in found)


TLS = "spec.servers[0].tls"


@pytest.mark.parametrize(
    "tls",
    [
        "{mode: SIMPLE, credentialName: cert}",
        "{mode: SIMPLE, serverCertificate: /c.pem, privateKey: /k.pem}",
        "{mode: MUTUAL, credentialName: cert}",
        "{mode: MUTUAL, serverCertificate: /c.pem, privateKey: /k.pem, caCertificates: /ca.pem}",
        "{mode: OPTIONAL_MUTUAL, credentialNames: [rsa, ecdsa]}",
        "{mode: PASSTHROUGH}",
        "{mode: AUTO_PASSTHROUGH}",
        "{mode: ISTIO_MUTUAL}",
        "{mode: SIMPLE, tlsCertificates: [{serverCertificate: /a, privateKey: /b}]}",
    ],
)
def test_valid_tls_settings(tls):
    result = load(tls)
    assert result.ok, errors(result)
    assert result.warnings == ()


def test_https_and_tls_ports_need_tls_settings():
    text = load_text(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: g}\nspec:\n  servers:\n"
        "  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: ['*']\n"
    )
    assert has(errors(text), "spec.servers[0].port", "must have TLS settings", "'HTTPS'")


def test_plain_http_may_only_redirect():
    assert load("{httpsRedirect: true}", protocol="HTTP").ok
    found = errors(load("{mode: SIMPLE, credentialName: c}", protocol="HTTP"))
    assert has(found, TLS, "plain text HTTP ports")
    found = errors(load("{mode: SIMPLE, credentialName: c}", protocol="TCP"))
    assert has(found, TLS, "non HTTPS/TLS ports", "'TCP'")


def test_https_redirect_on_a_non_http_server_warns():
    result = load("{httpsRedirect: true, mode: SIMPLE, credentialName: c}")
    assert result.ok
    assert has(warnings(result), f"{TLS}.httpsRedirect", "only be used with http servers")


def test_simple_and_mutual_need_certificates_without_a_credential():
    found = errors(load("{mode: SIMPLE}"))
    assert has(found, f"{TLS}.serverCertificate", "SIMPLE TLS requires a server certificate")
    assert has(found, f"{TLS}.privateKey", "SIMPLE TLS requires a private key")
    found = errors(load("{mode: MUTUAL, serverCertificate: /c, privateKey: /k}"))
    assert has(found, f"{TLS}.caCertificates", "MUTUAL TLS requires a client CA bundle")
    found = errors(load("{mode: OPTIONAL_MUTUAL, tlsCertificates: [{serverCertificate: /c}], caCertificates: /ca}"))
    assert has(found, f"{TLS}.tlsCertificates[0].privateKey", "MUTUAL TLS requires a private key")


def test_istio_mutual_takes_no_certificates_or_credentials():
    found = errors(load("{mode: ISTIO_MUTUAL, serverCertificate: /c, credentialName: x, credentialNames: [y]}"))
    assert has(found, f"{TLS}.serverCertificate", "ISTIO_MUTUAL TLS cannot have associated server certificate")
    assert has(found, f"{TLS}.credentialName", "ISTIO_MUTUAL TLS cannot have associated credentialName")
    assert has(found, f"{TLS}.credentialNames", "ISTIO_MUTUAL TLS cannot have associated credentialNames")


def test_passthrough_ignores_certificates_with_a_warning():
    result = load("{mode: PASSTHROUGH, credentialName: c}")
    assert result.ok
    assert has(warnings(result), TLS, "PASSTHROUGH mode does not use certificates")


def test_only_one_certificate_source():
    found = errors(load("{mode: SIMPLE, credentialName: c, serverCertificate: /c, privateKey: /k}"))
    assert has(found, TLS, "only one of credential_name, credential_names")


def test_the_crd_rules_on_certificate_sources():
    found = errors(load("{mode: SIMPLE, credentialName: a, credentialNames: [b]}"))
    assert has(found, TLS, 'Invalid value: "object"', "only one of credentialName or credentialNames can be set")
    found = errors(
        load("{mode: SIMPLE, credentialNames: [b], tlsCertificates: [{serverCertificate: /c, privateKey: /k}]}")
    )
    assert has(found, TLS, "only one of credentialNames or tlsCertificates can be set")
    assert has(found, TLS, "only one of credentialName or tlsCertificates can be set")


def test_credential_names_and_certificates_hold_one_or_two_items():
    assert has(errors(load("{mode: SIMPLE, credentialNames: []}")), f"{TLS}.credentialNames", "at least 1 items")
    assert has(errors(load("{mode: SIMPLE, credentialNames: [a, b, c]}")), f"{TLS}.credentialNames", "at most 2 items")
    certificate = "{serverCertificate: /c, privateKey: /k}"
    found = errors(load(f"{{mode: SIMPLE, tlsCertificates: [{certificate}, {certificate}, {certificate}]}}"))
    assert has(found, f"{TLS}.tlsCertificates", "at most 2 items")


def test_a_crl_is_refused_with_simple_tls():
    found = errors(load("{mode: SIMPLE, serverCertificate: /c, privateKey: /k, caCrl: /crl.pem}"))
    assert has(found, f"{TLS}.caCrl", "CRL is not supported with SIMPLE TLS")
    assert load("{mode: MUTUAL, serverCertificate: /c, privateKey: /k, caCertificates: /ca, caCrl: /crl}").ok


def test_old_protocol_versions_without_ciphers_warn():
    result = load("{mode: SIMPLE, credentialName: c, minProtocolVersion: TLSV1_1}")
    assert result.ok
    assert has(warnings(result), f"{TLS}.minProtocolVersion", "TLSV1_1", "compatible ciphers")
    assert (
        load("{mode: SIMPLE, credentialName: c, minProtocolVersion: TLSV1_0, cipherSuites: [AES128-SHA]}").warnings
        == ()
    )
    assert not load("{mode: SIMPLE, credentialName: c, minProtocolVersion: SSLV3}").ok


def test_invalid_and_duplicate_cipher_suites_warn():
    result = load("{mode: SIMPLE, credentialName: c, cipherSuites: [AES128-SHA, AES128-SHA, NOT-A-CIPHER]}")
    assert result.ok
    assert has(warnings(result), f"{TLS}.cipherSuites", "invalid cipher suites", "'NOT-A-CIPHER'")
    assert has(warnings(result), f"{TLS}.cipherSuites", "duplicate cipher suites", "'AES128-SHA'")


@given(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-+!", min_size=1, max_size=30))
def test_cipher_suites_are_known_names_or_expressions(name):
    expected = name == "ALL" or not name[0].isalnum() or name in VALID_CIPHER_SUITES
    assert is_valid_cipher_suite(name) == expected
    result = load(f"{{mode: SIMPLE, credentialName: c, cipherSuites: ['{name}']}}")
    assert result.ok
    assert has(warnings(result), f"{TLS}.cipherSuites", "invalid cipher suites") == (not expected)
