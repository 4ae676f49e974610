"""Who is calling the CA: authenticators, the identity they establish, and who may impersonate whom.

A call to the CA carries credentials (:class:`CallerCredentials`): its gRPC metadata and, on a mutual TLS
connection, the client certificate. Authenticators are tried in order and the first that recognises its
kind of credential decides, as in Istio:

* :class:`CertificateAuthenticator`: a workload certificate issued by this CA (mutual TLS, for renewals);
  its SPIFFE URI SANs are the caller's identities.
* :class:`JwtAuthenticator`: ``authorization: Bearer <JWT>`` signed by a configured issuer (keys inline or
  in a JWKS file), with an accepted audience; the namespace and service account claims give the identity.

Each returns ``None`` when the call carries no credential of its kind, and raises
:class:`AuthenticationError` when it does but the credential is not valid. Impersonation (a node agent asking
for a pod's certificate through the ``ImpersonatedIdentity`` metadata) is allowed only to callers on an
:class:`ImpersonationAllowList`.

Example::

    authenticators = [
        CertificateAuthenticator(authority.trust_bundle),
        JwtAuthenticator(
            [JwtIssuer("https://kubernetes.default.svc", jwks_file="/etc/mesh/jwks.json")],
            trust_domain="cluster.local",
        ),
    ]
    caller = authenticate(authenticators, credentials)  # raises AuthenticationError
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Final, Protocol, final, runtime_checkable

import attrs
from cryptography import x509

from mesh_ca._jwt import JwtIssuer, JwtVerifier, TokenError
from mesh_ca._text import describe
from mesh_ca.errors import CaConfigError, CaError, ErrorKind, VerificationError
from mesh_ca.trust_bundle import TrustBundle
from mesh_model import InvalidSpiffeIdError, SpiffeId

__all__ = [
    "AuthSource",
    "AuthenticationError",
    "Authenticator",
    "Caller",
    "CallerCredentials",
    "CertificateAuthenticator",
    "ImpersonationAllowList",
    "ImpersonationError",
    "JwtAuthenticator",
    "JwtIssuer",
    "authenticate",
]

_log = logging.getLogger("mesh_ca.authn")

AUTHORIZATION_KEY: Final = "authorization"
_BEARER: Final = "bearer "


class AuthenticationError(CaError):
    """A call's credentials are missing or not valid (gRPC ``UNAUTHENTICATED``).

    The message says what is wrong with the credentials, for the caller to fix; it never describes the
    CA's own keys or configuration.
    """

    kind = ErrorKind.VERIFICATION


class ImpersonationError(CaError):
    """An authenticated caller asked for another identity without being allowed to (``PERMISSION_DENIED``)."""

    kind = ErrorKind.IDENTITY


class AuthSource(enum.Enum):
    """How a caller proved its identity."""

    CLIENT_CERTIFICATE = "client certificate"
    """A workload certificate presented on a mutual TLS connection."""
    JWT = "JWT"
    """A bearer token in the call's metadata."""


def _identities(values: Iterable[SpiffeId]) -> tuple[SpiffeId, ...]:
    identities = tuple(values)
    if not all(isinstance(identity, SpiffeId) for identity in identities):
        raise AuthenticationError(f"caller identities must be SpiffeId values, not {describe(identities)}")
    return identities


def _pairs(values: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    return tuple(values)


@final
@attrs.frozen
class Caller:
    """An authenticated caller.

    Attributes:
        identities: the SPIFFE ids the caller proved (at least one).
        source: how it proved them.
        detail: what it proved them with, for logs: the certificate's serial number, or the token's issuer
            and subject.
    """

    identities: tuple[SpiffeId, ...] = attrs.field(converter=_identities)
    source: AuthSource
    detail: str = ""

    def __attrs_post_init__(self) -> None:
        if not self.identities:
            raise AuthenticationError("an authenticated caller needs at least one identity")


@final
@attrs.frozen
class CallerCredentials:
    """What a call presents to the CA.

    Attributes:
        metadata: the call's metadata as ``(key, value)`` pairs; keys are compared in lower case.
        peer_certificate: the client certificate of a mutual TLS connection, PEM (empty without one).
        peer: the caller's address, for logs.
    """

    metadata: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=_pairs)
    peer_certificate: bytes = attrs.field(default=b"", repr=False)
    peer: str = ""

    @classmethod
    def of(
        cls,
        metadata: Mapping[str, str] | Iterable[tuple[str, str]] = (),
        *,
        peer_certificate: bytes = b"",
        peer: str = "",
    ) -> CallerCredentials:
        """Credentials from a mapping or pairs of text metadata (binary values are left out)."""
        pairs = metadata.items() if isinstance(metadata, Mapping) else metadata
        text = tuple((str(key).lower(), value) for key, value in pairs if isinstance(value, str))
        return cls(text, peer_certificate, peer)

    def get(self, key: str) -> str | None:
        """The first value of metadata ``key`` (case-insensitive), or ``None``."""
        wanted = key.lower()
        return next((value for name, value in self.metadata if name.lower() == wanted), None)


@runtime_checkable
class Authenticator(Protocol):
    """One way of establishing who is calling."""

    def authenticate(self, credentials: CallerCredentials) -> Caller | None:
        """The caller, or ``None`` when the call carries no credential of this authenticator's kind.

        Called on the server's event loop: it must not block for long.

        Raises:
            AuthenticationError: the call carries such a credential, but it is not valid.
        """


def authenticate(authenticators: Sequence[Authenticator], credentials: CallerCredentials) -> Caller:
    """Try ``authenticators`` in order; the first that accepts the call decides.

    Raises:
        AuthenticationError: none accepted it; the message has each authenticator's reason, or says that
            the call carried no credential at all.
    """
    reasons: list[str] = []
    for authenticator in authenticators:
        try:
            caller = authenticator.authenticate(credentials)
        except AuthenticationError as error:
            reasons.append(str(error))
            continue
        if caller is not None:
            return caller
    if reasons:
        raise AuthenticationError("; ".join(reasons))
    raise AuthenticationError(
        "the call carries no credentials: present a workload certificate (mutual TLS) "
        "or an 'authorization: Bearer <token>' header"
    )


def _intermediates(value: object) -> tuple[x509.Certificate, ...]:
    if isinstance(value, bytes | str):
        data = value.encode("ascii", "replace") if isinstance(value, str) else value
        try:
            return tuple(x509.load_pem_x509_certificates(data)) if data.strip() else ()
        except ValueError:
            raise CaConfigError("the intermediate certificates are not PEM certificates") from None
    if isinstance(value, Sequence) and all(isinstance(item, x509.Certificate) for item in value):
        return tuple(value)
    raise CaConfigError(f"intermediates must be PEM or certificates, not {describe(value)}")


@final
class CertificateAuthenticator:
    """Authenticates a caller by the workload certificate it presented on a mutual TLS connection.

    The certificate must chain to a root of the trust bundle (through the CA's ``intermediates``, if any),
    be valid now, allow client authentication, and name SPIFFE ids of the bundle's own trust domain (or its
    aliases): a federated domain's workloads are not this CA's callers. Those ids are the caller's
    identities. This is how a workload renews its certificate without a token.

    Args:
        trust_bundle: the CA's trust bundle, or a function returning it (called on each use, so that a
            rotated bundle takes effect at once).
        intermediates: the CA's intermediate certificates (PEM or parsed), for workload certificates issued
            by a plugged-in intermediate: TLS hands over only the client's leaf.
        clock: the current time (UTC); for tests.
    """

    def __init__(
        self,
        trust_bundle: TrustBundle | Callable[[], TrustBundle],
        *,
        intermediates: bytes | str | Sequence[x509.Certificate] = (),
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if isinstance(trust_bundle, TrustBundle):
            bundle = trust_bundle
            self._bundle: Callable[[], TrustBundle] = lambda: bundle
        elif callable(trust_bundle):
            self._bundle = trust_bundle
        else:
            raise CaConfigError(f"trust_bundle must be a TrustBundle or a function, not {describe(trust_bundle)}")
        self._intermediates = _intermediates(intermediates)
        self._clock = clock if clock is not None else (lambda: datetime.now(UTC))

    def authenticate(self, credentials: CallerCredentials) -> Caller | None:
        """The identities of the client certificate, or ``None`` without one.

        Raises:
            AuthenticationError: the certificate is malformed, not issued by this CA, expired, not for
                client authentication, or names no SPIFFE id of the CA's trust domain.
        """
        if not credentials.peer_certificate:
            return None
        try:
            presented = x509.load_pem_x509_certificates(credentials.peer_certificate)
        except ValueError:
            raise AuthenticationError("the client certificate is not a PEM certificate") from None
        bundle = self._bundle()
        try:
            identities = bundle.verify([*presented, *self._intermediates], at=self._clock())
        except VerificationError as error:
            _log.info("client certificate of %s refused: %s", credentials.peer or "a caller", error)
            raise AuthenticationError(
                "the client certificate is not a valid workload certificate of this CA "
                "(not issued by it, expired, not for client authentication, or without a SPIFFE id)"
            ) from None
        foreign = [
            identity for identity in identities if bundle.canonical(identity.trust_domain) != bundle.trust_domain
        ]
        if foreign:
            raise AuthenticationError(f"the client certificate is for another trust domain ({foreign[0]})")
        detail = f"certificate serial {presented[0].serial_number:x}"
        return Caller(identities, AuthSource.CLIENT_CERTIFICATE, detail)


@final
class JwtAuthenticator:
    """Authenticates a caller by a JWT bearer token (``authorization: Bearer <token>`` metadata).

    The token's ``iss`` selects one of ``issuers``; its signature must verify with one of that issuer's
    keys, its ``aud`` must name one of the issuer's audiences, and it must carry ``exp`` and not be expired.
    Its claims give the namespace and service account (Kubernetes service account tokens by default:
    ``sub = system:serviceaccount:<namespace>:<account>``, or the ``kubernetes.io`` claim), and the caller's
    identity is ``spiffe://<trust_domain>/ns/<namespace>/sa/<account>``.

    Args:
        issuers: the trusted issuers, each with its keys and audiences.
        trust_domain: the trust domain of the identities built from tokens.

    Raises:
        CaConfigError: no issuers, two with the same ``iss``, or an issuer whose keys cannot be loaded.
    """

    def __init__(
        self,
        issuers: Sequence[JwtIssuer],
        *,
        trust_domain: str,
    ) -> None:
        try:
            SpiffeId(trust_domain, "ns", "sa")
        except InvalidSpiffeIdError as error:
            raise CaConfigError(f"JwtAuthenticator trust_domain: {error}") from None
        self._trust_domain = trust_domain
        self._verifier = JwtVerifier(issuers)

    @property
    def issuers(self) -> tuple[JwtIssuer, ...]:
        """The trusted issuers."""
        return self._verifier.issuers

    def authenticate(self, credentials: CallerCredentials) -> Caller | None:
        """The identity named by the bearer token, or ``None`` when the call has no ``authorization``.

        Raises:
            AuthenticationError: the header is not ``Bearer <token>``, or the token is malformed, from an
                unknown issuer, badly signed, expired, for another audience, or names no service account.
        """
        header = credentials.get(AUTHORIZATION_KEY)
        if header is None:
            return None
        if not header[: len(_BEARER)].lower() == _BEARER or not header[len(_BEARER) :].strip():
            raise AuthenticationError("the 'authorization' metadata is not of the form 'Bearer <token>'")
        token = header[len(_BEARER) :].strip()
        try:
            claims = self._verifier.verify(token)
        except TokenError as error:
            raise AuthenticationError(f"bearer token refused: {error}") from None
        try:
            identity = SpiffeId(self._trust_domain, claims.namespace, claims.service_account)
        except InvalidSpiffeIdError as error:
            raise AuthenticationError(f"bearer token refused: its claims give no valid identity ({error})") from None
        return Caller((identity,), AuthSource.JWT, f"token of {claims.issuer} for {claims.subject}")


def _spiffe_id(value: SpiffeId | str) -> SpiffeId:
    if isinstance(value, SpiffeId):
        return value
    try:
        return SpiffeId.parse(value)
    except InvalidSpiffeIdError as error:
        raise CaConfigError(f"impersonation allow-list: {error}") from None


@final
class ImpersonationAllowList:
    """The callers allowed to ask for a certificate for another identity (Istio's ``CA_TRUSTED_NODE_ACCOUNTS``).

    A node agent such as ztunnel authenticates as itself and names the workload it acts for in the
    ``ImpersonatedIdentity`` metadata of the request. Only a caller with an identity on this list may do that;
    the list is empty by default, so nobody can.

    Args:
        callers: the SPIFFE ids (or their ``spiffe://`` strings) trusted to impersonate.

    Raises:
        CaConfigError: an entry is not a SPIFFE id.
    """

    def __init__(self, callers: Iterable[SpiffeId | str] = ()) -> None:
        self._callers = frozenset(_spiffe_id(caller) for caller in callers)

    @property
    def callers(self) -> frozenset[SpiffeId]:
        """The trusted callers."""
        return self._callers

    def __contains__(self, identity: object) -> bool:
        return identity in self._callers

    def authorize(self, caller: Caller, requested: SpiffeId) -> SpiffeId:
        """Return ``requested`` if ``caller`` may ask for it.

        Asking for one's own identity is always allowed.

        Raises:
            ImpersonationError: the caller is not on the list.
        """
        if requested in caller.identities or any(identity in self._callers for identity in caller.identities):
            return requested
        raise ImpersonationError(
            f"{caller.identities[0]} may not request certificates for other identities ({requested}); "
            "only callers on the CA's impersonation allow-list may"
        )
