"""What a certificate says, for ``meshctl proxy-config secret``: serial, validity and SANs (public parts only)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from cryptography import x509


def _names(certificate: x509.Certificate) -> list[str]:
    try:
        extension = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except (x509.ExtensionNotFound, ValueError):
        return []
    names: list[str] = []
    for name in extension.value:
        if isinstance(name, x509.UniformResourceIdentifier):
            names.append(f"URI:{name.value}")
        elif isinstance(name, x509.DNSName):
            names.append(f"DNS:{name.value}")
        elif isinstance(name, x509.IPAddress):
            names.append(f"IP:{name.value}")
        elif isinstance(name, x509.RFC822Name):
            names.append(f"email:{name.value}")
    return names


def describe_certificate(pem: str, *, now: datetime | None = None) -> dict[str, Any]:
    """The serial number (hex), validity, SANs, subject and issuer of one PEM certificate.

    A certificate that does not parse is described by ``{"error": ...}``.
    """
    try:
        certificate = x509.load_pem_x509_certificate(pem.encode("ascii"))
    except ValueError as error:
        return {"error": f"the certificate does not parse: {error}"}
    moment = now or datetime.now(UTC)
    not_before, not_after = certificate.not_valid_before_utc, certificate.not_valid_after_utc
    return {
        "serial_number": format(certificate.serial_number, "x"),
        "not_before": not_before.isoformat().replace("+00:00", "Z"),
        "not_after": not_after.isoformat().replace("+00:00", "Z"),
        "valid": not_before <= moment <= not_after,
        "sans": _names(certificate),
        "subject": certificate.subject.rfc4514_string(),
        "issuer": certificate.issuer.rfc4514_string(),
    }
