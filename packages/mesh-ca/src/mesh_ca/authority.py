"""The certificate authority: it signs workload certificates for authenticated callers.

The identity in a certificate always comes from the caller's authenticated identities, never from the CSR:
a CSR that asks for any other name is refused (:class:`~mesh_ca.IdentityMismatchError`). The CA signs with
a self-signed root it creates and keeps (``CertificateAuthority.self_signed``), or with an intermediate
plugged in from Istio's ``cacerts`` layout (``CertificateAuthority.from_cacerts``).

Example::

    from mesh_ca import CertificateAuthority
    from mesh_model import SpiffeId

    authority = CertificateAuthority.self_signed(Path("/var/lib/mesh/ca"))  # created on first start
    caller = SpiffeId("cluster.local", "default", "reviews")  # from the caller's authenticated token
    issued = authority.sign_csr(csr_pem, [caller])
    issued.chain_pem  # (leaf, root): Istio's CreateCertificate answer
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import final

import attrs
from cryptography import x509

from mesh_ca import _self_signed, _x509
from mesh_ca._csr import check_requested_names, parse_csr, server_names
from mesh_ca._text import describe
from mesh_ca.cacerts import CaCerts, load_cacerts
from mesh_ca.errors import (
    CaConfigError,
    CaNotReadyError,
    IdentityError,
    TrustBundleError,
)
from mesh_ca.issued import IssuedCertificate
from mesh_ca.keys import KeyAlgorithm, PublicKey, check_workload_key
from mesh_ca.policy import SigningPolicy
from mesh_ca.trust_bundle import TrustBundle, check_aliases, check_trust_domain, fingerprint, normalize_fingerprint
from mesh_model import SpiffeId, Subscription

__all__ = ["CertificateAuthority", "TrustBundleHandler"]

_log = logging.getLogger("mesh_ca.authority")

TrustBundleHandler = Callable[[TrustBundle], None]
"""Called with the CA's new trust bundle after its roots or its signing certificate changed."""

_DEFAULT_ROOT_TTL = timedelta(days=3650)


@final
@attrs.frozen
class _Signer:
    """Everything one signature needs, swapped as a whole when the CA's material changes."""

    material: CaCerts
    chain_pem: tuple[str, ...]
    authority_key_id: x509.AuthorityKeyIdentifier
    not_before: datetime
    not_after: datetime

    @classmethod
    def of(cls, material: CaCerts) -> _Signer:
        return cls(
            material=material,
            chain_pem=tuple(_x509.pem(cert) for cert in material.chain),
            authority_key_id=_x509.authority_key_identifier(material.signing_certificate),
            not_before=max(cert.not_valid_before_utc for cert in material.chain),
            not_after=min(cert.not_valid_after_utc for cert in material.chain),
        )


@final
class _Registration:
    def __init__(self, owner: CertificateAuthority, handler: TrustBundleHandler) -> None:
        self._owner = owner
        self.handler = handler

    def cancel(self) -> None:
        self._owner._unsubscribe(self)


@final
class CertificateAuthority:
    """Signs workload certificates with SPIFFE identities, and keeps the roots workloads must trust.

    Build one with :meth:`self_signed` or :meth:`from_cacerts`, or from material already in memory. Signing is
    thread-safe, and may run while another thread rotates the root.

    Args:
        cacerts: the signing key, its chain up to the root, and the trusted roots.
        trust_domain: the trust domain of the identities this CA certifies.
        trust_domain_aliases: other trust domains it also certifies identities in (Istio's
            ``trustDomainAliases``); they are verified with the same roots.
        policy: lifetimes and backdating of the certificates it issues.

    Raises:
        CaConfigError: an argument has the wrong type, or a trust domain is malformed.
    """

    def __init__(
        self,
        cacerts: CaCerts,
        *,
        trust_domain: str = "cluster.local",
        trust_domain_aliases: Iterable[str] = (),
        policy: SigningPolicy = SigningPolicy(),  # noqa: B008 - an immutable value
    ) -> None:
        if not isinstance(cacerts, CaCerts):
            raise CaConfigError(f"cacerts must be a CaCerts (see load_cacerts), not {describe(cacerts)}")
        if not isinstance(policy, SigningPolicy):
            raise CaConfigError(f"policy must be a SigningPolicy, not {describe(policy)}")
        try:
            bundle = TrustBundle(trust_domain, {trust_domain: cacerts.roots}, trust_domain_aliases)
        except TrustBundleError as error:
            raise CaConfigError(str(error)) from None
        self._trust_domain = bundle.trust_domain
        self._aliases = bundle.aliases
        self._policy = policy
        self._signer = _Signer.of(cacerts)
        self._lock = threading.Lock()
        self._registrations: list[_Registration] = []
        self._root_settings: _self_signed.RootSettings | None = None
        self._cacerts_directory: Path | None = None

    @classmethod
    def self_signed(
        cls,
        directory: str | os.PathLike[str] | None,
        *,
        trust_domain: str = "cluster.local",
        trust_domain_aliases: Iterable[str] = (),
        algorithm: KeyAlgorithm = KeyAlgorithm.EC_P256,
        root_ttl: timedelta = _DEFAULT_ROOT_TTL,
        policy: SigningPolicy = SigningPolicy(),  # noqa: B008 - an immutable value
    ) -> CertificateAuthority:
        """A CA that signs with its own self-signed root, as istiod does without a plugged-in CA.

        Args:
            directory: where the root is kept, in the ``cacerts`` layout (``ca-key.pem`` mode 0600). The root
                is created there on first use and loaded afterwards. ``None`` keeps it in memory only.
            trust_domain: the trust domain of the identities it certifies; the root's organization.
            trust_domain_aliases: other trust domains it also certifies identities in.
            algorithm: the key type of a root it creates (now or by :meth:`rotate_root`); an existing root
                keeps its key.
            root_ttl: the lifetime of a root it creates (10 years, Istio's default).
            policy: lifetimes and backdating of the certificates it issues.

        Raises:
            CaConfigError: the directory holds an incomplete or inconsistent set of files, its key is not that
                of a self-signed root (a plugged-in directory is loaded with :meth:`from_cacerts`), the root
                has expired, or a file cannot be written.
            KeyFileError: ``ca-key.pem`` is unreadable, not a key, or readable by group or others.
        """
        if not isinstance(algorithm, KeyAlgorithm):
            raise CaConfigError(f"algorithm must be a KeyAlgorithm, not {describe(algorithm)}")
        if not isinstance(root_ttl, timedelta) or root_ttl < timedelta(days=1):
            raise CaConfigError(f"root_ttl must be a timedelta of at least one day, not {describe(root_ttl)}")
        if not isinstance(policy, SigningPolicy):
            raise CaConfigError(f"policy must be a SigningPolicy, not {describe(policy)}")
        trust_domain, aliases = _trust_domains(trust_domain, trust_domain_aliases)
        settings = _self_signed.RootSettings(
            directory=None if directory is None else Path(directory),
            trust_domain=trust_domain,
            algorithm=algorithm,
            ttl=root_ttl,
            backdate=policy.backdate,
        )
        authority = cls(
            _self_signed.load_or_create(settings),
            trust_domain=trust_domain,
            trust_domain_aliases=aliases,
            policy=policy,
        )
        authority._root_settings = settings
        return authority

    @classmethod
    def from_cacerts(
        cls,
        directory: str | os.PathLike[str],
        *,
        trust_domain: str = "cluster.local",
        trust_domain_aliases: Iterable[str] = (),
        policy: SigningPolicy = SigningPolicy(),  # noqa: B008 - an immutable value
    ) -> CertificateAuthority:
        """A CA that signs with a plugged-in certificate from a directory in Istio's ``cacerts`` layout.

        See :func:`~mesh_ca.load_cacerts` for the files. The CA never writes to the directory: its roots
        change there, and :meth:`reload` picks them up.

        Raises:
            CaConfigError: a file is missing or malformed, or the material is inconsistent or expired.
            KeyFileError: ``ca-key.pem`` is unreadable, not a key, or readable by group or others.
        """
        authority = cls(
            load_cacerts(directory),
            trust_domain=trust_domain,
            trust_domain_aliases=trust_domain_aliases,
            policy=policy,
        )
        authority._cacerts_directory = Path(directory)
        return authority

    def __repr__(self) -> str:
        kind = "self-signed" if self._root_settings is not None else "plugged-in"
        root = fingerprint(self._signer.material.root)[:16]
        return f"<CertificateAuthority {kind} trust_domain={self._trust_domain!r} root={root}>"

    @property
    def trust_domain(self) -> str:
        """The trust domain of the identities this CA certifies."""
        return self._trust_domain

    @property
    def trust_domain_aliases(self) -> frozenset[str]:
        """Other trust domains this CA also certifies identities in."""
        return self._aliases

    @property
    def policy(self) -> SigningPolicy:
        """Lifetimes and backdating of the certificates this CA issues."""
        return self._policy

    @property
    def is_self_signed(self) -> bool:
        """Whether this CA signs with a root it made (and may rotate), rather than a plugged-in certificate."""
        return self._root_settings is not None

    @property
    def signing_certificate(self) -> x509.Certificate:
        """The certificate that signs workload certificates now (the root itself when self-signed)."""
        return self._signer.material.signing_certificate

    @property
    def root_certificate(self) -> x509.Certificate:
        """The root the signing certificate chains to."""
        return self._signer.material.root

    @property
    def intermediates(self) -> tuple[x509.Certificate, ...]:
        """The certificates between a workload certificate and the root: the signing chain without its root.

        Empty for a self-signed CA. A client presenting only its leaf (as TLS does) is verified through them.
        """
        return self._signer.material.chain[:-1]

    @property
    def roots(self) -> tuple[x509.Certificate, ...]:
        """Every trusted root of the local trust domain, the current one first."""
        return self._signer.material.roots

    def trust_bundle(self) -> TrustBundle:
        """The roots workloads must trust to verify the certificates this CA issued (and still trusts)."""
        return TrustBundle(self._trust_domain, {self._trust_domain: self._signer.material.roots}, self._aliases)

    def sign_csr(
        self, csr_pem: bytes | str, identities: Sequence[SpiffeId], *, ttl: timedelta | None = None
    ) -> IssuedCertificate:
        """Issue a certificate for the key of a CSR, naming the caller's authenticated ``identities``.

        Only the CSR's public key is used. Its signature must verify (the caller holds the key), and every
        name it asks for (URI, DNS, IP or email SAN, or a SPIFFE id in its subject) must be one of
        ``identities``; a CSR that asks for nothing gets ``identities``.

        Args:
            csr_pem: the PEM certificate signing request (``-----BEGIN CERTIFICATE REQUEST-----``).
            identities: who the caller was authenticated as; they all go into the certificate.
            ttl: the lifetime asked for; the policy's ``default_ttl`` when ``None``.

        Raises:
            CsrError: the CSR is not PEM, is malformed, its signature does not verify, or its key is not
                ECDSA P-256/P-384 or RSA of 2048 bits or more.
            IdentityMismatchError: the CSR asks for a name the caller was not authenticated as.
            IdentityError: ``identities`` is empty, holds something other than :class:`~mesh_model.SpiffeId`, or
                an identity outside the CA's trust domain and aliases.
            TtlError: ``ttl`` is not positive or is over the policy's ``max_ttl``.
            CaNotReadyError: the signing certificate has expired.
        """
        granted = self._check_identities(identities)
        lifetime = self._policy.lifetime(ttl)
        request, public_key = parse_csr(csr_pem)
        check_requested_names(request, granted)
        return self._issue(public_key, granted, lifetime)

    def sign_key(
        self, public_key: PublicKey, identities: Sequence[SpiffeId], *, ttl: timedelta | None = None
    ) -> IssuedCertificate:
        """Issue a certificate for ``public_key`` naming ``identities``, without a CSR (in-process signing).

        Raises:
            UnsupportedKeyError: the key is not ECDSA P-256/P-384 or RSA of 2048 bits or more.
            IdentityError: as for :meth:`sign_csr`.
            TtlError: ``ttl`` is not positive or is over the policy's ``max_ttl``.
            CaNotReadyError: the signing certificate has expired.
        """
        granted = self._check_identities(identities)
        lifetime = self._policy.lifetime(ttl)
        return self._issue(check_workload_key(public_key), granted, lifetime)

    def sign_server_key(
        self,
        public_key: PublicKey,
        dns_names: Sequence[str],
        *,
        ip_addresses: Sequence[str] = (),
        ttl: timedelta | None = None,
    ) -> IssuedCertificate:
        """Issue a TLS server certificate for ``public_key`` naming host names and addresses, not identities.

        This is how the CA's own server (istiod's ``istiod.istio-system.svc``) gets a certificate its
        workloads verify with the trust bundle. The certificate's ``identities`` are empty.

        Raises:
            UnsupportedKeyError: the key is not ECDSA P-256/P-384 or RSA of 2048 bits or more.
            IdentityError: no name at all, or a malformed DNS name or IP address.
            TtlError: ``ttl`` is not positive or is over the policy's ``max_ttl``.
            CaNotReadyError: the signing certificate has expired.
        """
        names = server_names(dns_names, ip_addresses)
        lifetime = self._policy.lifetime(ttl)
        return self._issue(check_workload_key(public_key), (), lifetime, names=names)

    def rotate_root(self, *, algorithm: KeyAlgorithm | None = None, ttl: timedelta | None = None) -> x509.Certificate:
        """Make a new self-signed root and sign with it from now on; the old roots stay trusted.

        Certificates issued before keep verifying against :meth:`trust_bundle`, which now holds the new root
        first and the old ones after it. Retire an old root with :meth:`retire_root` once every certificate
        it signed has expired or been renewed. Subscribers are told of the new bundle.

        Args:
            algorithm: the key type of the new root; the CA's ``algorithm`` by default.
            ttl: the new root's lifetime; the CA's ``root_ttl`` by default.

        Returns:
            The new root certificate.

        Raises:
            CaConfigError: the CA signs with a plugged-in certificate (its roots change in its directory), an
                argument is unusable, or the new files cannot be written.
        """
        settings = self._require_self_signed("rotated")
        if algorithm is not None and not isinstance(algorithm, KeyAlgorithm):
            raise CaConfigError(f"algorithm must be a KeyAlgorithm, not {describe(algorithm)}")
        if ttl is not None and (not isinstance(ttl, timedelta) or ttl < timedelta(days=1)):
            raise CaConfigError(f"root ttl must be a timedelta of at least one day, not {describe(ttl)}")
        with self._lock:
            material = _self_signed.rotated(settings, self._signer.material, algorithm=algorithm, ttl=ttl)
            self._signer = _Signer.of(material)
        _log.info("new root %s signs from now on (%d roots trusted)", fingerprint(material.root), len(material.roots))
        self._notify()
        return material.root

    def retire_root(self, root: str | x509.Certificate) -> None:
        """Stop trusting an old root, named by its certificate or its SHA-256 fingerprint (hex, colons allowed).

        Raises:
            TrustBundleError: the root is not trusted, or it is the root that signs now.
            CaConfigError: the CA signs with a plugged-in certificate, or the files cannot be written.
        """
        settings = self._require_self_signed("retired")
        wanted = fingerprint(root) if isinstance(root, x509.Certificate) else normalize_fingerprint(root)
        with self._lock:
            material = self._signer.material
            if fingerprint(material.root) == wanted:
                raise TrustBundleError(f"root {wanted} signs certificates now: rotate_root() first, then retire it")
            kept = [cert for cert in material.roots if fingerprint(cert) != wanted]
            if len(kept) == len(material.roots):
                trusted = ", ".join(fingerprint(cert) for cert in material.roots)
                raise TrustBundleError(f"root {wanted} is not trusted by this CA (it trusts {trusted})")
            self._signer = _Signer.of(_self_signed.with_roots(settings, material, kept))
        _log.info("root %s retired", wanted)
        self._notify()

    def reload(self) -> bool:
        """Read the CA's directory again, and sign with what it holds now.

        Returns:
            Whether anything changed (then subscribers are told); ``False`` for a CA kept in memory.

        Raises:
            CaConfigError: the directory's content is unusable now; the CA keeps signing with what it had.
        """
        if self._cacerts_directory is not None:
            material = load_cacerts(self._cacerts_directory)
        elif self._root_settings is not None and self._root_settings.directory is not None:
            material = _self_signed.load_existing(self._root_settings)
        else:
            return False
        with self._lock:
            current = self._signer.material
            if material.chain == current.chain and material.roots == current.roots:
                return False
            self._signer = _Signer.of(material)
        _log.info("reloaded: root %s signs", fingerprint(material.root))
        self._notify()
        return True

    def subscribe(self, handler: TrustBundleHandler) -> Subscription:
        """Call ``handler(bundle)`` after every change of roots or signing certificate, until cancelled.

        Handlers run on the thread that made the change; one that raises is logged and the others still run.
        """
        registration = _Registration(self, handler)
        with self._lock:
            self._registrations.append(registration)
        return registration

    def _unsubscribe(self, registration: _Registration) -> None:
        with self._lock:
            self._registrations = [kept for kept in self._registrations if kept is not registration]

    def _notify(self) -> None:
        with self._lock:
            registrations = list(self._registrations)
        bundle = self.trust_bundle()
        for registration in registrations:
            try:
                registration.handler(bundle)
            except Exception:
                _log.exception("trust bundle handler %r failed", registration.handler)

    def _require_self_signed(self, verb: str) -> _self_signed.RootSettings:
        if self._root_settings is None:
            raise CaConfigError(
                f"the roots of a plugged-in CA are not {verb} here: change root-cert.pem in its cacerts "
                "directory, then call reload()"
            )
        return self._root_settings

    def _check_identities(self, identities: Sequence[SpiffeId]) -> tuple[SpiffeId, ...]:
        if isinstance(identities, str | bytes | SpiffeId) or not isinstance(identities, Iterable):
            raise IdentityError(f"identities must be a sequence of SpiffeId, not {describe(identities)}")
        granted = tuple(dict.fromkeys(identities))
        if not granted:
            raise IdentityError("no identity to certify: the caller's authenticated identities are empty")
        served = {self._trust_domain, *self._aliases}
        for identity in granted:
            if not isinstance(identity, SpiffeId):
                raise IdentityError(
                    f"identities must be SpiffeId values (see SpiffeId.parse), not {describe(identity)}"
                )
            if identity.trust_domain not in served:
                raise IdentityError(
                    f"identity {identity} is in trust domain {identity.trust_domain!r}, which this CA does not "
                    f"certify (it certifies {', '.join(repr(domain) for domain in sorted(served))})"
                )
        return granted

    def _issue(
        self,
        public_key: PublicKey,
        identities: tuple[SpiffeId, ...],
        lifetime: timedelta,
        *,
        names: Sequence[x509.GeneralName] = (),
    ) -> IssuedCertificate:
        signer = self._signer
        now = datetime.now(UTC).replace(microsecond=0)
        if now < signer.not_before:
            raise CaNotReadyError(
                f"the CA cannot issue certificates yet: its signing chain is valid from {signer.not_before.isoformat()}"
            )
        if now >= signer.not_after:
            raise CaNotReadyError(
                f"the CA cannot issue certificates: its signing chain expired at {signer.not_after.isoformat()}"
            )
        certificate = _x509.build_leaf(
            public_key,
            names=[*(x509.UniformResourceIdentifier(identity.uri) for identity in identities), *names],
            issuer=signer.material.signing_certificate,
            issuer_key=signer.material.signing_key,
            not_before=now - self._policy.backdate,
            not_after=min(now + lifetime, signer.not_after),
            authority_key_id=signer.authority_key_id,
        )
        leaf = _x509.pem(certificate)
        return IssuedCertificate(
            certificate_pem=leaf,
            chain_pem=(leaf, *signer.chain_pem),
            not_before=certificate.not_valid_before_utc,
            not_after=certificate.not_valid_after_utc,
            serial_number=certificate.serial_number,
            identities=identities,
        )


def _trust_domains(name: str, aliases: Iterable[str]) -> tuple[str, frozenset[str]]:
    try:
        return check_trust_domain(name, "trust domain"), check_aliases(aliases)
    except TrustBundleError as error:
        raise CaConfigError(str(error)) from None
