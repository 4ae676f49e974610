import ipaddress
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import DNSName, PolicyBuilder, Store

from mesh_ca import (
    CaCerts,
    CaConfigError,
    CaError,
    CaNotReadyError,
    CertificateAuthority,
    CsrError,
    ErrorKind,
    IdentityError,
    IdentityMismatchError,
    KeyAlgorithm,
    SigningPolicy,
    TtlError,
    UnsupportedKeyError,
)
from mesh_ca.testing import OfflineRoot
from mesh_model import SpiffeId


def _now():
    return datetime.now(UTC).replace(microsecond=0)


def test_an_issued_chain_verifies_with_openssl_and_cryptography(
    authority, make_csr, identity, openssl_verify, cryptography_verify
):
    issued = authority.sign_csr(make_csr(uris=[identity.uri]), [identity])
    assert issued.chain_pem[0] == issued.certificate_pem
    assert len(issued.chain_pem) == 2
    result = openssl_verify(issued.chain_pem, authority.trust_bundle().pem())
    assert result.returncode == 0, result.stdout + result.stderr
    chain = cryptography_verify(issued.chain_pem, authority.roots)
    assert chain[-1] == authority.root_certificate


def test_the_certificate_carries_istios_profile(authority, make_csr, identity, workload_key):
    issued = authority.sign_csr(make_csr(uris=[identity.uri]), [identity])
    cert = issued.certificate
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical, "the SPIFFE URI SAN is critical, as the subject is empty"
    assert san.value.get_values_for_type(x509.UniformResourceIdentifier) == [identity.uri]
    assert cert.subject == x509.Name([])
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical
    assert not constraints.value.ca
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature
    assert not usage.key_cert_sign
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH,
        ExtendedKeyUsageOID.CLIENT_AUTH,
    ]
    assert cert.public_key() == workload_key.public_key()
    assert cert.issuer == authority.signing_certificate.subject
    assert issued.identities == (identity,)
    assert issued.serial_number == cert.serial_number


def test_the_identity_comes_from_the_caller_when_the_csr_asks_for_nothing(authority, make_csr, identity):
    other = SpiffeId("cluster.local", "default", "ratings")
    issued = authority.sign_csr(make_csr(), [identity, other])
    names = issued.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.UniformResourceIdentifier) == [identity.uri, other.uri]
    assert issued.identities == (identity, other)


def test_a_csr_asking_for_someone_elses_identity_is_refused(authority, make_csr, identity):
    victim = SpiffeId("cluster.local", "istio-system", "istiod")
    with pytest.raises(IdentityMismatchError) as caught:
        authority.sign_csr(make_csr(uris=[victim.uri]), [identity])
    assert victim.uri in str(caught.value)
    assert identity.uri in str(caught.value)
    assert caught.value.kind is ErrorKind.IDENTITY
    assert isinstance(caught.value, CaError)


def test_a_csr_asking_for_its_own_identity_and_another_is_refused(authority, make_csr, identity):
    victim = SpiffeId("cluster.local", "default", "ratings")
    with pytest.raises(IdentityMismatchError, match="ratings"):
        authority.sign_csr(make_csr(uris=[identity.uri, victim.uri]), [identity])


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"dns": ["reviews.default.svc.cluster.local"]}, "DNS name 'reviews.default.svc.cluster.local'"),
        ({"uris": ["https://example.com/"]}, "https://example.com/"),
        ({"common_name": "spiffe://cluster.local/ns/default/sa/ratings"}, "subject names"),
    ],
)
def test_a_csr_asking_for_other_names_is_refused(authority, make_csr, identity, options, expected):
    with pytest.raises(IdentityMismatchError, match=expected):
        authority.sign_csr(make_csr(**options), [identity])


def test_a_subject_common_name_that_is_no_identity_is_ignored(authority, make_csr, identity):
    issued = authority.sign_csr(make_csr(common_name="reviews"), [identity])
    assert issued.certificate.subject == x509.Name([])


def _tamper(csr_pem: bytes) -> bytes:
    der = x509.load_pem_x509_csr(csr_pem).public_bytes(serialization.Encoding.DER)
    position = der.index(b"tamper-me")
    forged = der[:position] + b"TAMPER-ME" + der[position + len(b"tamper-me") :]
    body = x509.load_der_x509_csr(forged).public_bytes(serialization.Encoding.PEM)
    return body


def test_a_csr_with_a_bad_signature_is_refused(authority, make_csr, identity):
    forged = _tamper(make_csr(common_name="tamper-me"))
    with pytest.raises(CsrError, match="signature does not verify") as caught:
        authority.sign_csr(forged, [identity])
    assert caught.value.kind is ErrorKind.CSR


@pytest.mark.parametrize(
    ("csr", "expected"),
    [
        (b"", "not a PEM certificate request"),
        ("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n", "not a PEM"),
        (42, "must be PEM text"),
        (b"x" * 70_000, "over the limit"),
    ],
)
def test_malformed_csrs_are_refused(authority, identity, csr, expected):
    with pytest.raises(CsrError, match=expected):
        authority.sign_csr(csr, [identity])


def test_a_certificate_is_not_a_csr(authority, make_csr, identity):
    issued = authority.sign_csr(make_csr(), [identity])
    with pytest.raises(CsrError, match="not a PEM certificate request"):
        authority.sign_csr(issued.certificate_pem, [identity])


def test_a_csr_given_as_text_is_accepted(authority, make_csr, identity):
    assert authority.sign_csr(make_csr().decode(), [identity]).identities == (identity,)


def test_a_csr_with_an_unsupported_key_is_refused(authority, identity):
    key = ed25519.Ed25519PrivateKey.generate()
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(key, None)
    with pytest.raises(CsrError, match="Ed25519"):
        authority.sign_csr(csr.public_bytes(serialization.Encoding.PEM), [identity])


@pytest.mark.parametrize(
    ("identities", "expected"),
    [
        ([], "no identity to certify"),
        (["spiffe://cluster.local/ns/default/sa/reviews"], "SpiffeId.parse"),
        ("spiffe://cluster.local/ns/default/sa/reviews", "sequence of SpiffeId"),
        ([SpiffeId("other.domain", "default", "reviews")], "trust domain 'other.domain'"),
    ],
)
def test_unusable_identities_are_refused(authority, make_csr, identities, expected):
    with pytest.raises(IdentityError, match=expected):
        authority.sign_csr(make_csr(), identities)


def test_identities_in_an_alias_trust_domain_are_certified(make_csr):
    authority = CertificateAuthority.self_signed(None, trust_domain="new.domain", trust_domain_aliases=["old.domain"])
    legacy = SpiffeId("old.domain", "default", "reviews")
    assert authority.sign_csr(make_csr(uris=[legacy.uri]), [legacy]).identities == (legacy,)
    assert authority.trust_bundle().verify(authority.sign_csr(make_csr(), [legacy]).chain_pem) == (legacy,)


def test_not_before_is_backdated_for_clock_skew(authority, make_csr, identity):
    before = _now()
    issued = authority.sign_csr(make_csr(), [identity])
    after = _now()
    assert before - timedelta(minutes=2) <= issued.not_before <= after - timedelta(minutes=2)
    assert issued.certificate.not_valid_before_utc == issued.not_before


def test_the_backdate_follows_the_policy(make_csr, identity):
    authority = CertificateAuthority.self_signed(None, policy=SigningPolicy(backdate=timedelta(minutes=10)))
    before = _now()
    issued = authority.sign_csr(make_csr(), [identity])
    assert issued.not_before <= before - timedelta(minutes=10) + timedelta(seconds=1)
    assert issued.not_before >= before - timedelta(minutes=10)


def test_the_lifetime_is_24_hours_by_default_and_the_request_otherwise(authority, make_csr, identity):
    default = authority.sign_csr(make_csr(), [identity])
    assert default.not_after - default.not_before == timedelta(hours=24, minutes=2)
    short = authority.sign_csr(make_csr(), [identity], ttl=timedelta(hours=1))
    assert short.not_after - short.not_before == timedelta(hours=1, minutes=2)
    assert short.certificate.not_valid_after_utc == short.not_after


def test_lifetimes_over_the_maximum_are_refused(make_csr, identity):
    authority = CertificateAuthority.self_signed(None, policy=SigningPolicy(max_ttl=timedelta(days=30)))
    assert authority.sign_csr(make_csr(), [identity], ttl=timedelta(days=30)).identities == (identity,)
    with pytest.raises(TtlError, match="over the maximum of 30 days") as caught:
        authority.sign_csr(make_csr(), [identity], ttl=timedelta(days=31))
    assert caught.value.kind is ErrorKind.TTL
    with pytest.raises(TtlError, match="positive"):
        authority.sign_csr(make_csr(), [identity], ttl=timedelta(0))


def test_serial_numbers_are_random_and_positive(authority, workload_key, identity):
    serials = [authority.sign_key(workload_key.public_key(), [identity]).serial_number for _ in range(32)]
    assert len(set(serials)) == len(serials)
    assert all(0 < serial < 2**159 for serial in serials)
    assert max(serial.bit_length() for serial in serials) > 100, "serials carry about 159 random bits"


def test_sign_key_certifies_a_public_key_without_a_csr(authority, workload_key, identity, cryptography_verify):
    issued = authority.sign_key(workload_key.public_key(), [identity], ttl=timedelta(hours=2))
    assert issued.certificate.public_key() == workload_key.public_key()
    assert issued.not_after - issued.not_before == timedelta(hours=2, minutes=2)
    cryptography_verify(issued.chain_pem, authority.roots)


@pytest.mark.parametrize(
    "key",
    [
        ed25519.Ed25519PrivateKey.generate().public_key(),
        ec.generate_private_key(ec.SECP521R1()).public_key(),
        rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key(),
        b"not a key",
    ],
)
def test_sign_key_refuses_unsupported_keys(authority, identity, key):
    with pytest.raises(UnsupportedKeyError):
        authority.sign_key(key, [identity])


def test_rsa_workload_keys_get_key_encipherment(authority, identity):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    usage = authority.sign_key(key.public_key(), [identity]).certificate.extensions.get_extension_for_class(
        x509.KeyUsage
    )
    assert usage.value.key_encipherment


def test_an_rsa_4096_root_signs_chains_openssl_accepts(make_csr, identity, openssl_verify):
    authority = CertificateAuthority.self_signed(None, algorithm=KeyAlgorithm.RSA_4096)
    assert KeyAlgorithm.of(authority.root_certificate.public_key()) is KeyAlgorithm.RSA_4096
    issued = authority.sign_csr(make_csr(), [identity])
    result = openssl_verify(issued.chain_pem, authority.trust_bundle().pem())
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_p384_root_signs_with_sha384(make_csr, identity, openssl_verify, cryptography_verify):
    authority = CertificateAuthority.self_signed(None, algorithm=KeyAlgorithm.EC_P384)
    issued = authority.sign_csr(make_csr(), [identity])
    assert isinstance(issued.certificate.signature_hash_algorithm, hashes.SHA384)
    assert openssl_verify(issued.chain_pem, authority.trust_bundle().pem()).returncode == 0
    cryptography_verify(issued.chain_pem, authority.roots)


def test_the_self_signed_root_lives_ten_years_by_default(authority):
    root = authority.root_certificate
    lifetime = root.not_valid_after_utc - root.not_valid_before_utc
    assert timedelta(days=3650) <= lifetime <= timedelta(days=3650, minutes=3)
    assert root.issuer == root.subject
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert authority.is_self_signed
    assert authority.signing_certificate == root


def test_the_repr_shows_no_key_material(authority):
    text = repr(authority)
    assert "self-signed" in text
    assert "PRIVATE" not in text


def test_a_server_certificate_names_hosts_and_addresses(authority, workload_key, openssl_verify):
    issued = authority.sign_server_key(
        workload_key.public_key(), ["istiod.istio-system.svc", "localhost"], ip_addresses=["127.0.0.1"]
    )
    names = issued.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["istiod.istio-system.svc", "localhost"]
    assert names.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert names.get_values_for_type(x509.UniformResourceIdentifier) == []
    assert issued.identities == ()
    verifier = PolicyBuilder().store(Store(list(authority.roots))).build_server_verifier(DNSName("localhost"))
    verifier.verify(issued.certificate, [])
    assert openssl_verify(issued.chain_pem, authority.trust_bundle().pem()).returncode == 0


@pytest.mark.parametrize(
    ("dns_names", "ip_addresses", "expected"),
    [
        ([], [], "at least one DNS name or IP address"),
        ("localhost", [], "sequences of names"),
        (["bad name"], [], "is not a DNS name"),
        (["a" * 64 + ".example"], [], "is not a DNS name"),
        ([], ["256.0.0.1"], "is not an IP address"),
    ],
)
def test_unusable_server_names_are_refused(authority, workload_key, dns_names, ip_addresses, expected):
    with pytest.raises(IdentityError, match=expected):
        authority.sign_server_key(workload_key.public_key(), dns_names, ip_addresses=ip_addresses)


def test_an_authority_built_from_material_in_memory_signs(workload_key, identity):
    root = OfflineRoot.create()
    authority = CertificateAuthority(root.intermediate(), trust_domain="cluster.local")
    issued = authority.sign_key(workload_key.public_key(), [identity])
    assert authority.trust_bundle().verify(issued.chain_pem) == (identity,)
    assert not authority.is_self_signed
    assert authority.reload() is False
    with pytest.raises(CaConfigError, match="not the key of the first certificate"):
        CaCerts(signing_key=workload_key, chain=[root.certificate], roots=[root.certificate])
    with pytest.raises(CaConfigError, match="must be a CaCerts"):
        CertificateAuthority("/etc/cacerts")  # type: ignore[arg-type]


def test_an_expired_or_future_signing_chain_is_not_ready(workload_key, identity):
    root = OfflineRoot.create()
    expired = root.intermediate(not_before=_now() - timedelta(days=3), ttl=timedelta(days=1))
    with pytest.raises(CaNotReadyError, match="expired") as caught:
        CertificateAuthority(expired).sign_key(workload_key.public_key(), [identity])
    assert caught.value.kind is ErrorKind.NOT_READY
    future = root.intermediate(not_before=_now() + timedelta(hours=1))
    with pytest.raises(CaNotReadyError, match="valid from"):
        CertificateAuthority(future).sign_key(workload_key.public_key(), [identity])


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (CsrError, ErrorKind.CSR),
        (TtlError, ErrorKind.TTL),
        (IdentityError, ErrorKind.IDENTITY),
        (IdentityMismatchError, ErrorKind.IDENTITY),
        (UnsupportedKeyError, ErrorKind.INVALID_ARGUMENT),
        (CaNotReadyError, ErrorKind.NOT_READY),
        (CaConfigError, ErrorKind.ILLEGAL_CONFIG),
    ],
)
def test_every_error_carries_its_kind(error, kind):
    assert error.kind is kind
    assert issubclass(error, CaError)
