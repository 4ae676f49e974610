"""What the CA hands back when it signs: the workload certificate and the chain up to the root."""

from __future__ import annotations

from datetime import datetime
from typing import final

import attrs
from cryptography import x509

from mesh_model import SpiffeId

__all__ = ["IssuedCertificate"]


@final
@attrs.frozen
class IssuedCertificate:
    """A certificate the CA issued, with its chain.

    ``chain_pem`` is the answer of Istio's ``CreateCertificate`` (``IstioCertificateResponse.cert_chain``):
    the leaf first, then the intermediates, the root last; each element is one PEM certificate ending with
    a newline.

    Attributes:
        certificate_pem: the workload certificate (the leaf), PEM.
        chain_pem: the leaf, the intermediates and the root, one PEM each.
        not_before: the start of validity (backdated by the policy's ``backdate``), UTC.
        not_after: the end of validity, UTC; never after the end of the signing certificate's validity.
        serial_number: the certificate's random serial number.
        identities: the SPIFFE ids in the certificate's URI SANs, in order.
    """

    certificate_pem: str
    chain_pem: tuple[str, ...]
    not_before: datetime
    not_after: datetime
    serial_number: int
    identities: tuple[SpiffeId, ...]

    @property
    def certificate(self) -> x509.Certificate:
        """The leaf, parsed."""
        return x509.load_pem_x509_certificate(self.certificate_pem.encode("ascii"))

    @property
    def root_pem(self) -> str:
        """The root the chain ends at (its last element)."""
        return self.chain_pem[-1]

    @property
    def full_chain_pem(self) -> str:
        """The whole chain as one PEM text, leaf first (what a TLS stack's certificate chain file holds)."""
        return "".join(self.chain_pem)
