"""SPIFFE ids of Istio workloads: ``spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>``."""

from __future__ import annotations

import re
from typing import final

import attrs

from mesh_model._text import describe
from mesh_model.errors import InvalidSpiffeIdError

__all__ = ["SPIFFE_SCHEME", "SpiffeId"]

SPIFFE_SCHEME = "spiffe://"
"""The scheme every SPIFFE id starts with."""

_MAX_LENGTH = 2048
_TRUST_DOMAIN = re.compile(r"[a-z0-9._-]+\Z")
_SEGMENT = re.compile(r"[A-Za-z0-9._-]+\Z")


def _check_trust_domain(trust_domain: str) -> None:
    if not isinstance(trust_domain, str):
        raise InvalidSpiffeIdError(f"trust domain must be a string, not {type(trust_domain).__name__}")
    if not trust_domain:
        raise InvalidSpiffeIdError("trust domain is empty")
    if len(trust_domain) > 255 or not _TRUST_DOMAIN.match(trust_domain):
        raise InvalidSpiffeIdError(
            f"trust domain {describe(trust_domain)} must be at most 255 lower-case letters, digits, '.', '-' or '_'"
        )


def _check_segment(what: str, value: str) -> None:
    if not isinstance(value, str):
        raise InvalidSpiffeIdError(f"{what} must be a string, not {type(value).__name__}")
    if not value:
        raise InvalidSpiffeIdError(f"{what} is empty")
    if value in (".", "..") or not _SEGMENT.match(value):
        raise InvalidSpiffeIdError(
            f"{what} {describe(value)} must be letters, digits, '.', '-' or '_' (and not '.' or '..')"
        )


@final
@attrs.frozen
class SpiffeId:
    """An Istio workload identity.

    ``str(SpiffeId("cluster.local", "default", "bookinfo-reviews"))`` is
    ``"spiffe://cluster.local/ns/default/sa/bookinfo-reviews"``.

    Attributes:
        trust_domain: e.g. ``"cluster.local"``.
        namespace: the workload's namespace.
        service_account: the workload's service account.
    """

    trust_domain: str
    namespace: str
    service_account: str

    def __attrs_post_init__(self) -> None:
        _check_trust_domain(self.trust_domain)
        _check_segment("namespace", self.namespace)
        _check_segment("service account", self.service_account)

    @classmethod
    def parse(cls, text: str) -> SpiffeId:
        """Parse ``spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>``.

        Raises:
            InvalidSpiffeIdError: not a SPIFFE URI, or not of Istio's ``/ns/.../sa/...`` form.
        """
        if not isinstance(text, str):
            raise InvalidSpiffeIdError(f"SPIFFE id must be a string, not {type(text).__name__}")
        if len(text) > _MAX_LENGTH:
            raise InvalidSpiffeIdError(f"SPIFFE id {describe(text)} is longer than {_MAX_LENGTH} characters")
        # Case-sensitive, as in Istio and go-spiffe: an identity has exactly one spelling.
        if not text.startswith(SPIFFE_SCHEME):
            raise InvalidSpiffeIdError(f"SPIFFE id {describe(text)} does not start with {SPIFFE_SCHEME!r}")
        rest = text[len(SPIFFE_SCHEME) :]
        if any(ch in rest for ch in "?#%"):
            raise InvalidSpiffeIdError(f"SPIFFE id {describe(text)} may not have a query, fragment or escapes")
        trust_domain, _, path = rest.partition("/")
        segments = path.split("/")
        if len(segments) != 4 or segments[0] != "ns" or segments[2] != "sa":
            raise InvalidSpiffeIdError(
                f"SPIFFE id {describe(text)} is not of the form spiffe://<trust-domain>/ns/<namespace>/sa/<account>"
            )
        try:
            return cls(trust_domain, segments[1], segments[3])
        except InvalidSpiffeIdError as error:
            raise InvalidSpiffeIdError(f"SPIFFE id {describe(text)}: {error}") from None

    def __str__(self) -> str:
        return f"{SPIFFE_SCHEME}{self.trust_domain}/ns/{self.namespace}/sa/{self.service_account}"

    @property
    def uri(self) -> str:
        """The id as a URI string, as it goes into a certificate's URI SAN."""
        return str(self)

    def with_trust_domain(self, trust_domain: str) -> SpiffeId:
        """The same workload in another trust domain (for trust domain aliases)."""
        return SpiffeId(trust_domain, self.namespace, self.service_account)
