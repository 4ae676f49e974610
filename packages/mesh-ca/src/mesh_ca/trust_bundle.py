"""Trust bundles: the roots workloads trust, per trust domain, with trust domain aliases.

A bundle has a local trust domain (the mesh's own, ``cluster.local`` by default), its aliases (other names
for the same domain, Istio's ``trustDomainAliases``: identities in an alias are verified with the local
roots), and the roots of each trust domain it knows, local and federated. During a root rotation the local
domain has two roots, the old and the new, until the old one is retired.

A bundle is an immutable value: the ``with_*`` and ``without_*`` methods return new bundles.

Example::

    from mesh_ca import CertificateAuthority

    authority = CertificateAuthority.self_signed(None)
    bundle = authority.trust_bundle()
    issued = authority.sign_key(workload_key.public_key(), [identity])
    assert bundle.verify(issued.chain_pem) == (identity,)
    root_cert_pem = bundle.pem()  # what Istio's ROOTCA secret and root-cert.pem hold
"""

from __future__ import annotations

import types
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import final

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509 import verification

from mesh_ca import _x509
from mesh_ca._text import describe
from mesh_ca.errors import TrustBundleError, VerificationError
from mesh_model import InvalidSpiffeIdError, SpiffeId

__all__ = ["TrustBundle", "fingerprint"]

_MAX_CHAIN_DEPTH = 8


def fingerprint(certificate: x509.Certificate) -> str:
    """The SHA-256 fingerprint of ``certificate``'s DER encoding, as 64 lower-case hex digits."""
    if not isinstance(certificate, x509.Certificate):
        raise TrustBundleError(f"expected an x509.Certificate, not {describe(certificate)}")
    return certificate.fingerprint(hashes.SHA256()).hex()


def normalize_fingerprint(text: str) -> str:
    """``text`` as :func:`fingerprint` spells it (colons and spaces removed, lower case).

    Raises:
        TrustBundleError: ``text`` is not 64 hex digits.
    """
    if not isinstance(text, str):
        raise TrustBundleError(f"a root is named by its certificate or its fingerprint, not {describe(text)}")
    digits = text.replace(":", "").replace(" ", "").lower()
    if len(digits) != 64 or any(ch not in "0123456789abcdef" for ch in digits):
        raise TrustBundleError(f"{describe(text)} is not a SHA-256 fingerprint (64 hex digits)")
    return digits


def check_trust_domain(name: object, what: str) -> str:
    """Return ``name`` if it is a well-formed trust domain name, else raise :class:`TrustBundleError`."""
    if not isinstance(name, str):
        raise TrustBundleError(f"{what} must be a string, not {describe(name)}")
    try:
        SpiffeId(name, "ns", "sa")
    except InvalidSpiffeIdError:
        raise TrustBundleError(
            f"{what} {describe(name)} is not a trust domain (lower-case letters, digits, '.', '-' and '_')"
        ) from None
    return name


def _local_trust_domain(name: str) -> str:
    return check_trust_domain(name, "trust domain")


def _roots(value: Mapping[str, Iterable[x509.Certificate]]) -> Mapping[str, tuple[x509.Certificate, ...]]:
    if not isinstance(value, Mapping):
        raise TrustBundleError(f"roots must map trust domains to certificates, not {describe(value)}")
    converted: dict[str, tuple[x509.Certificate, ...]] = {}
    for domain, certificates in value.items():
        check_trust_domain(domain, "trust domain")
        if isinstance(certificates, str | bytes) or not isinstance(certificates, Iterable):
            raise TrustBundleError(
                f"the roots of {domain!r} must be x509.Certificate objects, not {describe(certificates)}"
            )
        certs = tuple(dict.fromkeys(certificates))
        for cert in certs:
            if not isinstance(cert, x509.Certificate):
                raise TrustBundleError(f"a root of {domain!r} is not an x509.Certificate: {describe(cert)}")
        if not certs:
            raise TrustBundleError(f"trust domain {domain!r} has no root")
        converted[domain] = certs
    return types.MappingProxyType(converted)


def check_aliases(value: Iterable[str]) -> frozenset[str]:
    """``value`` as a set of well-formed trust domain names, else raise :class:`TrustBundleError`."""
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise TrustBundleError(f"aliases must be a collection of trust domains, not {describe(value)}")
    return frozenset(check_trust_domain(alias, "trust domain alias") for alias in value)


@final
@attrs.frozen
class TrustBundle:
    """The roots a workload trusts, per trust domain.

    Attributes:
        trust_domain: the local trust domain; it must have at least one root.
        roots: the roots of each trust domain (the local one and any federated ones), in order of
            preference: during a rotation the current root comes first.
        aliases: other names of the local trust domain; identities in them are checked against the local
            roots. An alias may not also have roots of its own.

    Raises:
        TrustBundleError: a trust domain name is malformed, a root is not a certificate, the local trust
            domain has no root, or an alias is also the local trust domain or has roots of its own.
    """

    trust_domain: str = attrs.field(converter=_local_trust_domain)
    roots: Mapping[str, tuple[x509.Certificate, ...]] = attrs.field(converter=_roots, hash=False)
    aliases: frozenset[str] = attrs.field(default=frozenset(), converter=check_aliases)

    def __attrs_post_init__(self) -> None:
        if self.trust_domain not in self.roots:
            raise TrustBundleError(f"the local trust domain {self.trust_domain!r} has no root")
        if self.trust_domain in self.aliases:
            raise TrustBundleError(f"trust domain {self.trust_domain!r} cannot be an alias of itself")
        with_roots = sorted(self.aliases & self.roots.keys())
        if with_roots:
            raise TrustBundleError(f"trust domain alias {with_roots[0]!r} also has roots of its own")

    @classmethod
    def from_pem(cls, trust_domain: str, pem: str | bytes, *, aliases: Iterable[str] = ()) -> TrustBundle:
        """A bundle of the roots in a PEM text (such as Istio's ``root-cert.pem``) for ``trust_domain``.

        Raises:
            TrustBundleError: the text holds no certificate or a malformed one.
        """
        data = pem.encode("ascii", "replace") if isinstance(pem, str) else pem
        if not isinstance(data, bytes):
            raise TrustBundleError(f"PEM roots must be str or bytes, not {describe(pem)}")
        try:
            certificates = _x509.parse_pem_certificates(data)
        except ValueError:
            raise TrustBundleError("the PEM roots hold a malformed certificate") from None
        if not certificates:
            raise TrustBundleError("the PEM text holds no certificate")
        return cls(trust_domain, {trust_domain: certificates}, aliases)

    @property
    def trust_domains(self) -> tuple[str, ...]:
        """Every trust domain with roots: the local one first, then the others in name order."""
        return (self.trust_domain, *sorted(domain for domain in self.roots if domain != self.trust_domain))

    def canonical(self, trust_domain: str) -> str:
        """The trust domain whose roots apply to ``trust_domain`` (the local one for an alias)."""
        return self.trust_domain if trust_domain in self.aliases else trust_domain

    def roots_for(self, trust_domain: str) -> tuple[x509.Certificate, ...]:
        """The roots to verify identities of ``trust_domain`` with (none for a domain the bundle lacks)."""
        return self.roots.get(self.canonical(trust_domain), ())

    def all_roots(self) -> tuple[x509.Certificate, ...]:
        """Every root of every trust domain, once each, the local domain's first."""
        return tuple(dict.fromkeys(cert for domain in self.trust_domains for cert in self.roots[domain]))

    def fingerprints(self) -> tuple[str, ...]:
        """The :func:`fingerprint` of each of :meth:`all_roots`."""
        return tuple(fingerprint(cert) for cert in self.all_roots())

    def pem(self, trust_domain: str | None = None) -> str:
        """The roots as concatenated PEM: all of them, or those that verify ``trust_domain``."""
        certificates = self.all_roots() if trust_domain is None else self.roots_for(trust_domain)
        return "".join(_x509.pem(cert) for cert in certificates)

    def with_roots(self, trust_domain: str, roots: Iterable[x509.Certificate]) -> TrustBundle:
        """This bundle with the roots of ``trust_domain`` replaced by ``roots`` (a federated domain is added)."""
        domain = self.canonical(check_trust_domain(trust_domain, "trust domain"))
        return attrs.evolve(self, roots={**self.roots, domain: tuple(roots)})

    def without_trust_domain(self, trust_domain: str) -> TrustBundle:
        """This bundle without a federated trust domain (the local one cannot be removed)."""
        if trust_domain == self.trust_domain or trust_domain in self.aliases:
            raise TrustBundleError(f"the local trust domain {trust_domain!r} cannot be removed from its bundle")
        if trust_domain not in self.roots:
            raise TrustBundleError(f"trust domain {trust_domain!r} is not in the bundle")
        return attrs.evolve(self, roots={domain: r for domain, r in self.roots.items() if domain != trust_domain})

    def with_aliases(self, *aliases: str) -> TrustBundle:
        """This bundle with more aliases of the local trust domain."""
        return attrs.evolve(self, aliases=self.aliases | check_aliases(aliases))

    def without_root(self, root: str | x509.Certificate) -> TrustBundle:
        """This bundle without one root, named by its certificate or its SHA-256 fingerprint.

        Raises:
            TrustBundleError: no trust domain has this root, or it is the last root of its trust domain.
        """
        wanted = fingerprint(root) if isinstance(root, x509.Certificate) else normalize_fingerprint(root)
        for domain, certificates in self.roots.items():
            kept = tuple(cert for cert in certificates if fingerprint(cert) != wanted)
            if len(kept) == len(certificates):
                continue
            if not kept:
                raise TrustBundleError(f"root {wanted} is the last root of trust domain {domain!r}")
            return attrs.evolve(self, roots={**self.roots, domain: kept})
        raise TrustBundleError(f"root {wanted} is not in the bundle (its roots are {', '.join(self.fingerprints())})")

    def verify(
        self, chain: str | bytes | Sequence[x509.Certificate], *, at: datetime | None = None
    ) -> tuple[SpiffeId, ...]:
        """Check a workload's certificate chain and return the SPIFFE ids it proves.

        The leaf (the first certificate) must name SPIFFE ids of a single trust domain (or of the local domain
        and its aliases), and the chain must verify up to a root of that domain, at ``at`` (now by default),
        with the web PKI rules of ``cryptography.x509.verification`` for client certificates.

        Raises:
            VerificationError: the chain is empty or malformed, its SPIFFE ids are missing, malformed or span
                trust domains with different roots, the bundle has no root for them, or the chain does not
                verify (expired, wrong issuer, bad signature, missing ``clientAuth`` usage).
        """
        certificates = _parse_chain(chain)
        leaf = certificates[0]
        identities = _spiffe_ids(leaf)
        domains = {self.canonical(identity.trust_domain) for identity in identities}
        if len(domains) > 1:
            raise VerificationError(f"the certificate names SPIFFE ids of several trust domains: {sorted(domains)}")
        (domain,) = domains
        roots = self.roots_for(domain)
        if not roots:
            raise VerificationError(f"the trust bundle has no root for trust domain {domain!r}")
        verifier = (
            verification.PolicyBuilder()
            .store(verification.Store(list(roots)))
            .time(at or datetime.now(UTC))
            .max_chain_depth(_MAX_CHAIN_DEPTH)
            .build_client_verifier()
        )
        try:
            verifier.verify(leaf, certificates[1:])
        except verification.VerificationError as error:
            raise VerificationError(f"the certificate chain does not verify: {error}") from None
        return identities


def _parse_chain(chain: str | bytes | Sequence[x509.Certificate]) -> list[x509.Certificate]:
    if isinstance(chain, str | bytes):
        data = chain.encode("ascii", "replace") if isinstance(chain, str) else chain
        try:
            certificates = _x509.parse_pem_certificates(data)
        except ValueError:
            raise VerificationError("the certificate chain holds a malformed PEM certificate") from None
    elif isinstance(chain, Sequence):
        certificates = []
        for item in chain:
            if isinstance(item, x509.Certificate):
                certificates.append(item)
            elif isinstance(item, str | bytes):
                certificates.extend(_parse_chain(item))
            else:
                raise VerificationError(f"a chain element is not a certificate: {describe(item)}")
    else:
        raise VerificationError(f"a certificate chain must be PEM text or certificates, not {describe(chain)}")
    if not certificates:
        raise VerificationError("the certificate chain is empty")
    return certificates


def _spiffe_ids(leaf: x509.Certificate) -> tuple[SpiffeId, ...]:
    try:
        names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise VerificationError("the certificate has no subject alternative names, so no SPIFFE id") from None
    except ValueError:
        raise VerificationError("the certificate has malformed extensions") from None
    uris = [uri for uri in names.get_values_for_type(x509.UniformResourceIdentifier) if uri.startswith("spiffe://")]
    if not uris:
        raise VerificationError("the certificate names no spiffe:// URI")
    try:
        return tuple(dict.fromkeys(SpiffeId.parse(uri) for uri in uris))
    except InvalidSpiffeIdError as error:
        raise VerificationError(f"the certificate names a malformed SPIFFE id: {error}") from None
