"""What a signing request may ask for: parsing CSRs, and the names a certificate may carry (private).

Only the CSR's public key is ever used. Its signature must verify (the caller holds the key), and every name
it asks for must be one the caller was authenticated as; anything else is refused, never rewritten.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm

from mesh_ca._text import describe
from mesh_ca.errors import CsrError, IdentityError, IdentityMismatchError, UnsupportedKeyError
from mesh_ca.keys import PublicKey, check_workload_key
from mesh_model import SPIFFE_SCHEME, SpiffeId

_MAX_CSR_BYTES = 64 * 1024
_DNS_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z")


def server_names(dns_names: Sequence[str], ip_addresses: Sequence[str]) -> list[x509.GeneralName]:
    """The SAN entries of a server certificate for ``dns_names`` and ``ip_addresses``.

    Raises:
        IdentityError: no name at all, a single string instead of a sequence, or a malformed name or address.
    """
    if isinstance(dns_names, str | bytes) or isinstance(ip_addresses, str | bytes):
        raise IdentityError("dns_names and ip_addresses must be sequences of names, not single strings")
    names: list[x509.GeneralName] = []
    for name in dns_names:
        if not _is_dns_name(name):
            raise IdentityError(f"{describe(name)} is not a DNS name (letters, digits, '-', '.', a leading '*.')")
        names.append(x509.DNSName(name))
    for address in ip_addresses:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(address)))
        except ValueError:
            raise IdentityError(f"{describe(address)} is not an IP address") from None
    if not names:
        raise IdentityError("a server certificate needs at least one DNS name or IP address")
    return names


def _is_dns_name(name: object) -> bool:
    if not isinstance(name, str) or not 0 < len(name) <= 253:
        return False
    labels = name.removeprefix("*.").split(".")
    return all(_DNS_LABEL.match(label) for label in labels)


def parse_csr(csr_pem: bytes | str) -> tuple[x509.CertificateSigningRequest, PublicKey]:
    """The CSR in ``csr_pem``, checked: its signature verifies and its key is one the CA certifies.

    Raises:
        CsrError: not PEM, malformed, too large, a bad signature, or an unsupported key.
    """
    if isinstance(csr_pem, str):
        data = csr_pem.encode("utf-8", "replace")
    elif isinstance(csr_pem, bytes | bytearray | memoryview):
        data = bytes(csr_pem)
    else:
        raise CsrError(f"the CSR must be PEM text (str or bytes), not {describe(csr_pem)}")
    if len(data) > _MAX_CSR_BYTES:
        raise CsrError(f"the CSR is {len(data)} bytes, over the limit of {_MAX_CSR_BYTES}")
    try:
        request = x509.load_pem_x509_csr(data)
    except ValueError:
        raise CsrError("the CSR is not a PEM certificate request ('-----BEGIN CERTIFICATE REQUEST-----')") from None
    try:
        valid = request.is_signature_valid
    except (ValueError, UnsupportedAlgorithm):
        raise CsrError("the CSR's signature cannot be checked (unsupported or malformed algorithm)") from None
    if not valid:
        raise CsrError("the CSR's signature does not verify: it was altered, or not signed with its own key")
    try:
        public_key = check_workload_key(request.public_key())
    except (UnsupportedKeyError, UnsupportedAlgorithm, ValueError) as error:
        raise CsrError(f"the CSR's key cannot be certified: {error}") from None
    return request, public_key


def check_requested_names(request: x509.CertificateSigningRequest, granted: Sequence[SpiffeId]) -> None:
    """Refuse a CSR that asks for any name (SAN, or SPIFFE id in its subject) outside ``granted``.

    Raises:
        IdentityMismatchError: the CSR asks for another SPIFFE id, or for a DNS name, IP address, ...
        CsrError: the CSR's extensions are malformed.
    """
    allowed = {identity.uri for identity in granted}
    caller = ", ".join(sorted(allowed))
    try:
        names = request.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        names = x509.SubjectAlternativeName([])
    except ValueError:
        raise CsrError("the CSR's extensions are malformed") from None
    for name in names:
        if isinstance(name, x509.UniformResourceIdentifier):
            if name.value not in allowed:
                raise IdentityMismatchError(
                    f"the CSR asks for {name.value!r}, but the caller is authenticated as {caller}"
                )
            continue
        kind = _NAME_KINDS.get(type(name), "name")
        raise IdentityMismatchError(
            f"the CSR asks for {kind} {describe(str(name.value))}; certificates name only the caller's "
            f"SPIFFE identities ({caller})"
        )
    for attribute in request.subject:
        value = attribute.value
        if isinstance(value, str) and value.startswith(SPIFFE_SCHEME) and value not in allowed:
            raise IdentityMismatchError(
                f"the CSR's subject names {value!r}, but the caller is authenticated as {caller}"
            )


_NAME_KINDS: dict[type[x509.GeneralName], str] = {
    x509.DNSName: "DNS name",
    x509.IPAddress: "IP address",
    x509.RFC822Name: "email address",
    x509.DirectoryName: "directory name",
    x509.RegisteredID: "registered id",
    x509.OtherName: "other name",
}
