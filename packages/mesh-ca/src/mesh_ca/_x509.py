"""Certificate builders: roots, intermediates and workload leaves, with the extensions Istio sets (private).

A workload leaf carries Istio's profile (``security/pkg/pki/util/generate_cert.go``): an empty subject, the
SPIFFE ids as URI SANs in a *critical* extension (critical because the subject is empty, RFC 5280
4.2.1.6), ``BasicConstraints CA:FALSE``, key usage ``digitalSignature`` (plus ``keyEncipherment`` for RSA
keys), extended key usage ``serverAuth`` and ``clientAuth``, an authority key identifier, and a random
159-bit serial number.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mesh_ca.keys import PrivateKey, PublicKey

_CA_KEY_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)
_EXTENDED_KEY_USAGE = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH])


def _leaf_key_usage(public_key: PublicKey) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=isinstance(public_key, rsa.RSAPublicKey),
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def signature_hash(key: PrivateKey) -> hashes.SHA256 | hashes.SHA384:
    """The digest to sign with ``key``: SHA-384 for P-384, SHA-256 otherwise (as Go's x509 picks)."""
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size >= 384:
        return hashes.SHA384()
    return hashes.SHA256()


def pem(certificate: x509.Certificate) -> str:
    """The PEM text of ``certificate``, ending with a newline."""
    return certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")


def parse_pem_certificates(data: bytes) -> list[x509.Certificate]:
    """Every certificate in a PEM text, in order (``ValueError`` when one is malformed)."""
    if b"-----BEGIN" not in data:
        return []
    return x509.load_pem_x509_certificates(data)


def same_public_key(first: PrivateKey | PublicKey, second: x509.Certificate) -> bool:
    """Whether ``first`` (a private or public key) is the key certified by ``second``."""
    public = first.public_key() if isinstance(first, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) else first
    encoding, layout = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return bool(public.public_bytes(encoding, layout) == second.public_key().public_bytes(encoding, layout))


def is_self_signed(certificate: x509.Certificate) -> bool:
    """Whether ``certificate`` names itself as issuer and its signature verifies with its own key."""
    if certificate.issuer != certificate.subject:
        return False
    try:
        certificate.verify_directly_issued_by(certificate)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def build_root(key: PrivateKey, *, organization: str, not_before: datetime, not_after: datetime) -> x509.Certificate:
    """A self-signed root CA certificate for ``key``, named ``O=<organization>, CN=mesh root <key id>``.

    The key id in the common name tells two roots of one trust domain apart (during a rotation both are
    trusted, and tools that match issuers by name pick the right one).
    """
    subject_key_id = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COMMON_NAME, f"mesh root {subject_key_id.digest.hex()[:16]}"),
        ]
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_CA_KEY_USAGE, critical=True)
        .add_extension(subject_key_id, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(subject_key_id), critical=False)
    )
    return builder.sign(key, signature_hash(key))


def build_intermediate(
    public_key: PublicKey,
    *,
    subject: x509.Name,
    issuer: x509.Certificate,
    issuer_key: PrivateKey,
    not_before: datetime,
    not_after: datetime,
    path_length: int | None = 0,
) -> x509.Certificate:
    """An intermediate CA certificate for ``public_key``, signed by ``issuer``."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(_CA_KEY_USAGE, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(authority_key_identifier(issuer), critical=False)
    )
    return builder.sign(issuer_key, signature_hash(issuer_key))


def build_leaf(
    public_key: PublicKey,
    *,
    names: Sequence[x509.GeneralName],
    issuer: x509.Certificate,
    issuer_key: PrivateKey,
    not_before: datetime,
    not_after: datetime,
    authority_key_id: x509.AuthorityKeyIdentifier | None = None,
) -> x509.Certificate:
    """A leaf for ``public_key`` naming ``names`` (SPIFFE URIs, or a server's DNS names), signed by ``issuer``."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(issuer.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName(names), critical=True)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_leaf_key_usage(public_key), critical=True)
        .add_extension(_EXTENDED_KEY_USAGE, critical=False)
        .add_extension(authority_key_id or authority_key_identifier(issuer), critical=False)
    )
    return builder.sign(issuer_key, signature_hash(issuer_key))


def authority_key_identifier(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    """The authority key identifier of certificates ``issuer`` signs (its subject key id, or one derived)."""
    try:
        subject_key_id = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        public_key = issuer.public_key()
        if not isinstance(public_key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
            raise ValueError(f"issuer key {type(public_key).__name__} is not ECDSA or RSA") from None
        subject_key_id = x509.SubjectKeyIdentifier.from_public_key(public_key)
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(subject_key_id)
