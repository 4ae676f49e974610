"""Errors raised by mesh_ca.

Every error the package raises derives from one root, so a caller can catch them all::

    CaError
     +-- CsrError (also a ValueError): a CSR is malformed, its signature does not verify, or its key is unsupported
     +-- IdentityError (also a ValueError): the identities to certify are unusable
     |    +-- IdentityMismatchError: a CSR names an identity the caller was not authenticated as
     +-- TtlError (also a ValueError): a requested lifetime is not positive, or is over the maximum
     +-- UnsupportedKeyError (also a ValueError): a key of a type or size the CA does not work with
     +-- TrustBundleError (also a ValueError): a root to add or retire is unknown, malformed or still signing
     +-- VerificationError: a certificate chain does not verify against a trust bundle
     +-- CaNotReadyError: the CA cannot sign now (its signing certificate expired)
     +-- CaConfigError: the CA's files or settings are unusable (a cacerts directory, a root directory)
          +-- KeyFileError: a private key file is missing, unreadable, open to others, or not a key

Each class carries an :class:`ErrorKind` in ``kind``, which a network edge maps to a status code (the
gRPC code suggested for each kind is in its docstring). Messages say what is wrong with the request in
terms the caller can act on; they never include key material.
"""

from __future__ import annotations

import enum
from typing import ClassVar

__all__ = [
    "CaConfigError",
    "CaError",
    "CaNotReadyError",
    "CsrError",
    "ErrorKind",
    "IdentityError",
    "IdentityMismatchError",
    "KeyFileError",
    "TrustBundleError",
    "TtlError",
    "UnsupportedKeyError",
    "VerificationError",
]


class ErrorKind(enum.Enum):
    """What went wrong, in the categories of Istio's CA errors (``security/pkg/pki/error``)."""

    CSR = "csr"
    """The certificate signing request is unusable (gRPC ``INVALID_ARGUMENT``)."""
    TTL = "ttl"
    """The requested lifetime is not allowed (gRPC ``INVALID_ARGUMENT``)."""
    IDENTITY = "identity"
    """The caller may not have a certificate for what it asked (gRPC ``PERMISSION_DENIED``)."""
    INVALID_ARGUMENT = "invalid-argument"
    """Any other unusable argument (gRPC ``INVALID_ARGUMENT``)."""
    VERIFICATION = "verification"
    """A presented certificate chain is not trusted (gRPC ``UNAUTHENTICATED``)."""
    NOT_READY = "not-ready"
    """The CA cannot sign at the moment (gRPC ``UNAVAILABLE``)."""
    ILLEGAL_CONFIG = "illegal-config"
    """The CA's own configuration or key material is unusable (gRPC ``INTERNAL``)."""


class CaError(Exception):
    """The root of every error raised by mesh_ca."""

    kind: ClassVar[ErrorKind] = ErrorKind.INVALID_ARGUMENT
    """The category of the error, for mapping it to a status code."""


class CsrError(CaError, ValueError):
    """A certificate signing request is malformed, its signature does not verify, or its key is unsupported."""

    kind = ErrorKind.CSR


class IdentityError(CaError, ValueError):
    """The identities to certify are unusable: none given, not SPIFFE ids, or outside the CA's trust domains."""

    kind = ErrorKind.IDENTITY


class IdentityMismatchError(IdentityError):
    """A CSR asks for an identity (or another name) that the caller was not authenticated as.

    The CA refuses such a request rather than silently issuing a certificate for the caller's own identities:
    a client asking for someone else's name is either misconfigured or malicious.
    """


class TtlError(CaError, ValueError):
    """A requested certificate lifetime is not positive, or is over the policy's maximum."""

    kind = ErrorKind.TTL


class UnsupportedKeyError(CaError, ValueError):
    """A key of a type or size the CA does not work with (it takes ECDSA P-256/P-384 and RSA >= 2048)."""

    kind = ErrorKind.INVALID_ARGUMENT


class TrustBundleError(CaError, ValueError):
    """A root to add to or retire from a trust bundle is unknown, malformed, or still the signing root."""

    kind = ErrorKind.INVALID_ARGUMENT


class VerificationError(CaError):
    """A certificate chain does not verify against a trust bundle, or carries no usable SPIFFE id."""

    kind = ErrorKind.VERIFICATION


class CaNotReadyError(CaError):
    """The CA cannot sign now, for instance because its signing certificate has expired."""

    kind = ErrorKind.NOT_READY


class CaConfigError(CaError):
    """The CA's files or settings are unusable: an incomplete or inconsistent cacerts or root directory."""

    kind = ErrorKind.ILLEGAL_CONFIG


class KeyFileError(CaConfigError):
    """A private key file is missing, unreadable, readable by group or others, or does not hold a usable key."""
