"""The roots a workload trusts: checked PEM bundles, a followed root file, and the ``ROOTCA`` they make (private).

A certificate client learns roots from two places. The CA's answers end with the CA's roots, as they were when
the certificate was issued. The mesh's trust bundle, handed over by whatever carries it to the node (Istio's
``istio-ca-root-cert`` ConfigMap, a push from the control plane), says which roots every workload trusts now,
including that an old root is retired. When a bundle is configured, ``ROOTCA`` is that bundle plus the root
that the client's own certificate chains to, so that a workload keeps trusting peers certified the way it is
even when the bundle lags behind the CA.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Final, final

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from mesh_ca import _x509
from mesh_ca._files import read_limited
from mesh_ca._text import describe
from mesh_ca._workload import CertificateClientError, WorkloadCertificate

_log = logging.getLogger("mesh_ca.client")

_CERTIFICATE_MARKER: Final = b"-----BEGIN CERTIFICATE-----"

Roots = tuple[x509.Certificate, ...]


def parse_roots(value: object, what: str) -> Roots:
    """The certificates of the PEM text ``value`` (bytes, or ASCII text), in order and without duplicates.

    Raises:
        CertificateClientError: ``value`` is not PEM text, holds no certificate, or a malformed one.
    """
    if isinstance(value, str):
        try:
            value = value.encode("ascii")
        except UnicodeEncodeError:
            raise CertificateClientError(f"{what} is not PEM text: it holds characters other than ASCII") from None
    if not isinstance(value, bytes):
        raise CertificateClientError(f"{what} must be PEM bytes or text, not {describe(value)}")
    if _CERTIFICATE_MARKER not in value:
        raise CertificateClientError(f"{what} holds no PEM certificate")
    try:
        certificates = x509.load_pem_x509_certificates(value)
    except ValueError:
        raise CertificateClientError(f"{what} holds a malformed PEM certificate") from None
    return tuple(dict.fromkeys(certificates))


def to_pem(roots: Roots) -> bytes:
    """The roots as one PEM text, one certificate after the other."""
    return "".join(_x509.pem(root) for root in roots).encode("ascii")


def issuing_root(certificate: WorkloadCertificate) -> x509.Certificate | None:
    """The root among those of the CA's answer that ``certificate``'s chain leads to, or ``None``."""
    top = x509.load_pem_x509_certificates(certificate.certificate_chain_pem)[-1]
    for root in x509.load_pem_x509_certificates(certificate.roots_pem):
        try:
            top.verify_directly_issued_by(root)
        except (InvalidSignature, ValueError, TypeError):
            continue
        return root
    return None


def combine(configured: Roots, own_root: x509.Certificate | None) -> bytes:
    """``ROOTCA`` when roots are configured: those roots, then the client's own root if they lack it."""
    if own_root is None or own_root in configured:
        return to_pem(configured)
    return to_pem((*configured, own_root))


@final
class RootFile:
    """A PEM file of trusted roots, read again when its inode, modification time or size changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int, int] | None = None
        self._problem: str | None = None

    def read(self) -> Roots:
        """Read the file now.

        Raises:
            CertificateClientError: it cannot be read, or holds no usable certificate.
        """
        try:
            status = os.stat(self.path)
            self._stamp = (status.st_ino, status.st_mtime_ns, status.st_size)
            data, _mode = read_limited(self.path)
        except OSError as error:
            raise CertificateClientError(
                f"cannot read root_certificates_file {self.path}: {error.strerror or error}"
            ) from None
        return parse_roots(data, f"root_certificates_file {self.path}")

    def poll(self) -> Roots | None:
        """The file's roots if it changed since the last look and is usable; ``None`` otherwise.

        A file that is missing, unreadable or holds no usable certificate is logged (once, until the problem
        changes), and the caller keeps the roots it has.
        """
        try:
            status = os.stat(self.path)
        except OSError as error:
            self._stamp = None  # read it again whenever it comes back
            self._report(f"cannot read root_certificates_file {self.path}: {error.strerror or error}")
            return None
        stamp = (status.st_ino, status.st_mtime_ns, status.st_size)
        if stamp == self._stamp:
            return None
        try:
            roots = self.read()
        except CertificateClientError as error:
            self._report(str(error))
            return None
        if self._problem is not None:
            _log.info("root_certificates_file %s is usable again", self.path)
        self._problem = None
        return roots

    def _report(self, problem: str) -> None:
        if problem != self._problem:
            _log.warning("%s; keeping the roots trusted now", problem)
        self._problem = problem
