"""A workload's certificate as the client holds it: the CSR it sends and the answer it accepts (private)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import final

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import verification

from mesh_ca import _x509
from mesh_ca.errors import CaError
from mesh_ca.keys import PrivateKey
from mesh_model import SpiffeId

_MAX_CHAIN_DEPTH = 8


class CertificateClientError(CaError):
    """A :class:`~mesh_ca.CertificateClient` is misconfigured, or what the CA answered is unusable."""


@final
@attrs.frozen
class WorkloadSecret:
    """Key material in PEM, in the shape an SDS server reads (``mesh_xds.SecretData``).

    Either a certificate chain with its key (the ``default`` secret) or trusted roots (``ROOTCA``).

    Attributes:
        certificate_chain: the certificates, leaf first (empty for roots).
        private_key: the leaf's private key (empty for roots).
        trusted_ca: the trusted roots (empty for a certificate).
    """

    certificate_chain: bytes = attrs.field(default=b"", repr=False)
    private_key: bytes = attrs.field(default=b"", repr=False)
    trusted_ca: bytes = attrs.field(default=b"", repr=False)

    def __repr__(self) -> str:  # never show key material
        parts = [name for name in ("certificate_chain", "private_key", "trusted_ca") if getattr(self, name)]
        return f"WorkloadSecret({', '.join(parts) or 'empty'})"


@final
@attrs.frozen
class WorkloadCertificate:
    """A certificate the client holds, with its key.

    Attributes:
        identity: the SPIFFE id it certifies.
        private_key_pem: the key, PKCS#8 PEM (never shown in ``repr``).
        certificate_chain_pem: the leaf, then the intermediates up to (not including) the root.
        roots_pem: the CA's roots, as its answer ended with.
        not_before: the start of validity (the CA sets it a little in the past).
        not_after: the end of validity.
        serial_number: the leaf's serial number.
        received_at: when the client got it; the renewal time counts from here.
    """

    identity: SpiffeId
    private_key_pem: bytes = attrs.field(repr=False)
    certificate_chain_pem: bytes = attrs.field(repr=False)
    roots_pem: bytes = attrs.field(repr=False)
    not_before: datetime
    not_after: datetime
    serial_number: int
    received_at: datetime

    @property
    def lifetime(self) -> timedelta:
        """How long it is valid from when it arrived."""
        return self.not_after - max(self.received_at, self.not_before)

    def leaf(self) -> x509.Certificate:
        """The leaf certificate, parsed."""
        return x509.load_pem_x509_certificate(self.certificate_chain_pem)

    def tls_secret(self) -> WorkloadSecret:
        """The ``default`` SDS secret: the chain and the key."""
        return WorkloadSecret(certificate_chain=self.certificate_chain_pem, private_key=self.private_key_pem)

    def root_secret(self) -> WorkloadSecret:
        """The ``ROOTCA`` SDS secret: the roots."""
        return WorkloadSecret(trusted_ca=self.roots_pem)


def build_csr(key: PrivateKey, identity: SpiffeId) -> bytes:
    """A PEM CSR for ``key`` naming ``identity`` as a URI SAN (with an empty subject, as Istio's agent)."""
    builder = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity.uri)]), critical=True)
    )
    return builder.sign(key, _x509.signature_hash(key)).public_bytes(serialization.Encoding.PEM)


def _split_roots(certificates: list[x509.Certificate]) -> int:
    """How many certificates at the end of an answer are roots (self-signed; at least the last one)."""
    count = 0
    for certificate in reversed(certificates[1:]):
        if not _x509.is_self_signed(certificate):
            break
        count += 1
    return max(count, 1)


def accept_response(
    cert_chain: list[str], *, key: PrivateKey, identity: SpiffeId, received_at: datetime
) -> WorkloadCertificate:
    """Check the CA's ``cert_chain`` (leaf first, roots last) for a request made with ``key``, and keep it.

    Raises:
        CertificateClientError: no certificates, not PEM, a leaf for another key or identity, or a chain
            that does not lead to the roots at its end.
    """
    if len(cert_chain) < 2:
        raise CertificateClientError(f"the CA answered {len(cert_chain)} certificates; expected a leaf and a root")
    try:
        certificates = x509.load_pem_x509_certificates("".join(cert_chain).encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise CertificateClientError("the CA's answer holds something other than PEM certificates") from None
    if len(certificates) < 2:
        raise CertificateClientError("the CA's answer has no root after the leaf")
    leaf = certificates[0]
    if not _x509.same_public_key(key, leaf):
        raise CertificateClientError("the CA's certificate is not for the key this client generated")
    try:
        names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = names.get_values_for_type(x509.UniformResourceIdentifier)
    except x509.ExtensionNotFound:
        uris = []
    if identity.uri not in uris:
        raise CertificateClientError(f"the CA's certificate is not for {identity} (it names {uris or 'nothing'})")
    roots_count = _split_roots(certificates)
    roots = certificates[-roots_count:]
    intermediates = certificates[1:-roots_count]
    verifier = (
        verification.PolicyBuilder()
        .store(verification.Store(roots))
        .time(received_at)
        .max_chain_depth(_MAX_CHAIN_DEPTH)
        .build_client_verifier()
    )
    try:
        verifier.verify(leaf, intermediates)
    except verification.VerificationError as error:
        raise CertificateClientError(f"the CA's chain does not verify against its own root: {error}") from None
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return WorkloadCertificate(
        identity=identity,
        private_key_pem=key_pem,
        certificate_chain_pem="".join(_x509.pem(item) for item in (leaf, *intermediates)).encode("ascii"),
        roots_pem="".join(_x509.pem(item) for item in roots).encode("ascii"),
        not_before=leaf.not_valid_before_utc,
        not_after=leaf.not_valid_after_utc,
        serial_number=leaf.serial_number,
        received_at=received_at,
    )
