"""Istio's ``cacerts`` directory: a plugged-in signing certificate, its key, its chain and the roots.

The layout is the one istiod reads from its ``cacerts`` secret (``security/pkg/pki/ca/ca.go``):

=================  ==========================================================================
``ca-cert.pem``    the signing certificate (an intermediate CA, or the root itself)
``ca-key.pem``     its private key (must be mode 0600: readable by its owner only)
``cert-chain.pem`` the chain from the signing certificate up to the root (optional when the
                   signing certificate is issued directly by a root)
``root-cert.pem``  the trusted roots; may hold several (old and new root during a rotation)
=================  ==========================================================================

:func:`load_cacerts` checks everything a signing CA needs before it signs anything: the key matches the
certificate, the certificate is a CA allowed to sign certificates and is valid now, and the chain leads
to a root in ``root-cert.pem``. Errors name the file and what is wrong with it.

Example::

    from mesh_ca import load_cacerts

    material = load_cacerts("/etc/cacerts")
    print(material.signing_certificate.subject.rfc4514_string(), len(material.chain))
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import final

import attrs
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from mesh_ca import _x509
from mesh_ca._files import read_limited, write_atomically
from mesh_ca._text import describe
from mesh_ca.errors import CaConfigError
from mesh_ca.keys import PrivateKey, load_private_key, write_private_key

__all__ = ["CaCerts", "load_cacerts", "write_cacerts"]

CA_CERT = "ca-cert.pem"
CA_KEY = "ca-key.pem"
CERT_CHAIN = "cert-chain.pem"
ROOT_CERT = "root-cert.pem"
_MAX_CHAIN_LENGTH = 8
_CERTIFICATE_MODE = 0o644


def _certificates(value: Iterable[x509.Certificate]) -> tuple[x509.Certificate, ...]:
    return tuple(value)


@final
@attrs.frozen
class CaCerts:
    """The material a signing CA needs, checked for consistency.

    Attributes:
        signing_key: the private key that signs workload certificates.
        chain: the signing certificate first, then each issuer up to and including the root.
        roots: every trusted root: the root ``chain`` ends at first, then the others (during a rotation).
    """

    signing_key: PrivateKey = attrs.field(repr=False)
    chain: tuple[x509.Certificate, ...] = attrs.field(converter=_certificates)
    roots: tuple[x509.Certificate, ...] = attrs.field(converter=_certificates)

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.signing_key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise CaConfigError(
                f"the signing key must be an ECDSA or RSA private key, not {describe(self.signing_key)}"
            )
        for what, certificates in (("chain", self.chain), ("roots", self.roots)):
            if not certificates:
                raise CaConfigError(f"CA material needs at least one certificate in its {what}")
            if not all(isinstance(cert, x509.Certificate) for cert in certificates):
                raise CaConfigError(f"the {what} of CA material must be x509.Certificate objects")
        if not _x509.same_public_key(self.signing_key, self.chain[0]):
            raise CaConfigError("the signing key is not the key of the first certificate of the chain")
        if self.chain[-1] != self.roots[0]:
            raise CaConfigError("the chain must end at the first of the roots")

    @property
    def signing_certificate(self) -> x509.Certificate:
        """The certificate of :attr:`signing_key` (the first of :attr:`chain`)."""
        return self.chain[0]

    @property
    def root(self) -> x509.Certificate:
        """The root the chain ends at."""
        return self.chain[-1]


def load_cacerts(directory: str | os.PathLike[str], *, now: datetime | None = None) -> CaCerts:
    """Read and check a ``cacerts`` directory.

    Args:
        directory: the directory holding ``ca-cert.pem``, ``ca-key.pem``, ``root-cert.pem`` and, unless the
            signing certificate is a root or is issued directly by one, ``cert-chain.pem``.
        now: the time at which the certificates must be valid; the current time by default.

    Raises:
        CaConfigError: a file is missing or malformed, the key does not match ``ca-cert.pem``, a certificate
            is not a CA or has expired, or the chain does not lead to a root in ``root-cert.pem``.
            (:class:`~mesh_ca.KeyFileError`, a subclass, for problems with ``ca-key.pem``: among them a
            file readable by group or others.)
    """
    base = Path(directory)
    if not base.is_dir():
        raise CaConfigError(f"cacerts directory {base} does not exist or is not a directory")
    key = load_private_key(base / CA_KEY)
    signing = read_certificates(base / CA_CERT)
    if len(signing) != 1:
        raise CaConfigError(
            f"{base / CA_CERT} holds {len(signing)} certificates; it must hold only the signing certificate "
            f"(the chain up to the root goes in {CERT_CHAIN})"
        )
    chain_file = read_certificates(base / CERT_CHAIN) if (base / CERT_CHAIN).exists() else []
    roots = read_certificates(base / ROOT_CERT)
    if not roots:
        raise CaConfigError(f"{base / ROOT_CERT} holds no certificate")
    if not _x509.same_public_key(key, signing[0]):
        raise CaConfigError(f"{base / CA_KEY} is not the key of the certificate in {base / CA_CERT}")
    return assemble(key, signing[0], chain_file, roots, source=base, now=now)


def read_certificates(path: Path) -> list[x509.Certificate]:
    """Every certificate of a PEM file.

    Raises:
        CaConfigError: the file is missing, unreadable or holds something other than PEM certificates.
    """
    try:
        data, _mode = read_limited(path)
    except FileNotFoundError:
        raise CaConfigError(f"{path} does not exist") from None
    except OSError as error:
        raise CaConfigError(f"cannot read {path}: {error.strerror or error}") from None
    try:
        return _x509.parse_pem_certificates(data)
    except ValueError:
        raise CaConfigError(f"{path} holds a malformed PEM certificate") from None


def assemble(
    key: PrivateKey,
    signing: x509.Certificate,
    chain_file: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    *,
    source: Path,
    now: datetime | None = None,
) -> CaCerts:
    """Build the chain from ``signing`` to a root of ``roots`` through ``chain_file``, and check it.

    ``chain_file`` may start with ``signing`` and may end with the root, as Istio's ``cert-chain.pem``
    usually does; every certificate in it must be on the path.

    Raises:
        CaConfigError: the chain is broken or longer than 8, a certificate in it is not a CA or not valid at
            ``now``, or ``chain_file`` holds a certificate off the path.
    """
    moment = now or datetime.now(UTC)
    trusted = _unique(roots)
    for root in trusted:
        _check_ca(root, f"{source / ROOT_CERT} ({_name(root)})", None)
    pending = [cert for cert in _unique(chain_file) if cert != signing]
    path = [signing]
    while path[-1] not in trusted:
        if len(path) >= _MAX_CHAIN_LENGTH:
            raise CaConfigError(f"the chain from {source / CA_CERT} is longer than {_MAX_CHAIN_LENGTH} certificates")
        issuer = _find_issuer(path[-1], [*pending, *trusted])
        if issuer is None:
            raise CaConfigError(
                f"{source / CA_CERT} does not chain to a root in {source / ROOT_CERT}: no certificate in "
                f"{source / CERT_CHAIN} or {source / ROOT_CERT} issued {_name(path[-1])!r}"
            )
        if issuer in path:
            raise CaConfigError(f"the chain from {source / CA_CERT} loops at {_name(issuer)!r}")
        path.append(issuer)
        if issuer in pending:
            pending.remove(issuer)
    if pending:
        raise CaConfigError(
            f"{source / CERT_CHAIN} holds {_name(pending[0])!r}, which is not on the path from {CA_CERT} to the root"
        )
    for index, cert in enumerate(path):
        what = f"{source / CA_CERT}" if index == 0 else f"{_name(cert)!r} in the chain of {source / CA_CERT}"
        _check_ca(cert, what, moment)
        limit = _path_length(cert)
        if limit is not None and index > limit:
            # pathLenConstraint counts the CA certificates below this one, down to the signing certificate.
            raise CaConfigError(f"{_name(cert)!r} allows {limit} intermediate CAs below it, the chain has {index}")
    anchor = path[-1]
    return CaCerts(signing_key=key, chain=tuple(path), roots=(anchor, *(r for r in trusted if r != anchor)))


def write_cacerts(directory: str | os.PathLike[str], material: CaCerts) -> None:
    """Write ``material`` in the ``cacerts`` layout, each file replaced atomically.

    The roots are written first and the key before its certificate, so that a reader never trusts less than
    before; ``ca-key.pem`` is created 0600. The directory is created (0700) when missing.

    Raises:
        CaConfigError: a file cannot be written.
    """
    base = Path(directory)
    try:
        base.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomically(base / ROOT_CERT, _pem_text(material.roots), _CERTIFICATE_MODE)
        write_private_key(base / CA_KEY, material.signing_key)
        write_atomically(base / CA_CERT, _pem_text(material.chain[:1]), _CERTIFICATE_MODE)
        write_atomically(base / CERT_CHAIN, _pem_text(material.chain), _CERTIFICATE_MODE)
    except OSError as error:
        raise CaConfigError(f"cannot write the CA files in {base}: {error.strerror or error}") from None


def _pem_text(certificates: Sequence[x509.Certificate]) -> bytes:
    return "".join(_x509.pem(cert) for cert in certificates).encode("ascii")


def _unique(certificates: Sequence[x509.Certificate]) -> list[x509.Certificate]:
    return list(dict.fromkeys(certificates))


def _find_issuer(cert: x509.Certificate, candidates: Sequence[x509.Certificate]) -> x509.Certificate | None:
    for candidate in candidates:
        if candidate.subject != cert.issuer:
            continue
        try:
            cert.verify_directly_issued_by(candidate)
        except (InvalidSignature, ValueError, TypeError):
            continue
        return candidate
    return None


def _check_ca(cert: x509.Certificate, what: str, now: datetime | None) -> None:
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    except ValueError:
        raise CaConfigError(f"{what} has malformed extensions") from None
    if constraints is None or not constraints.ca:
        raise CaConfigError(f"{what} is not a CA certificate (its basic constraints do not say CA:TRUE)")
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if usage is not None and not usage.key_cert_sign:
        raise CaConfigError(f"{what} may not sign certificates (its key usage lacks keyCertSign)")
    if now is None:
        return
    if now < cert.not_valid_before_utc:
        raise CaConfigError(f"{what} is not valid before {cert.not_valid_before_utc.isoformat()}")
    if now >= cert.not_valid_after_utc:
        raise CaConfigError(f"{what} expired at {cert.not_valid_after_utc.isoformat()}")


def _path_length(cert: x509.Certificate) -> int | None:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length
    except x509.ExtensionNotFound:
        return None


def _name(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string() or f"serial {cert.serial_number:x}"
