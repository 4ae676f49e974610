"""JWT verification for the CA: trusted issuers, their keys (inline or JWKS files), and claims (private).

Only asymmetric algorithms are accepted (RSA, RSA-PSS, ECDSA, EdDSA): a token signed with a shared secret,
or with ``alg: none``, is refused whatever the configuration. A JWKS file is read again when it changes on
disk, so rotating an issuer's keys needs no restart.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import threading
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, Final, final

import attrs
import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from mesh_ca._files import read_limited
from mesh_ca._text import describe
from mesh_ca.errors import CaConfigError

_log = logging.getLogger("mesh_ca.authn")

VerifyingKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey

ASYMMETRIC_ALGORITHMS: Final = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
_EC_ALGORITHMS: Final = {"ES256": "secp256r1", "ES384": "secp384r1", "ES512": "secp521r1"}
_SERVICE_ACCOUNT_PREFIX: Final = "system:serviceaccount:"
_MAX_TOKEN_LENGTH: Final = 16384
_BASE64URL: Final = re.compile(r"[A-Za-z0-9_-]*")


class TokenError(Exception):
    """A token is refused; the message says why, in terms of the token."""


def _audiences(value: object) -> tuple[str, ...]:
    items = (value,) if isinstance(value, str) else tuple(value) if isinstance(value, list | tuple) else None
    if not items or not all(isinstance(item, str) and item for item in items):
        raise CaConfigError(f"JwtIssuer audiences must be non-empty strings, not {describe(value)}")
    return items


def _algorithms(value: object) -> tuple[str, ...]:
    items = tuple(value) if isinstance(value, list | tuple | frozenset | set) else None
    if not items:
        raise CaConfigError(f"JwtIssuer algorithms must be a non-empty list, not {describe(value)}")
    unknown = sorted(str(item) for item in items if item not in ASYMMETRIC_ALGORITHMS)
    if unknown:
        raise CaConfigError(
            f"JwtIssuer algorithms {unknown} are not accepted; use asymmetric ones: {sorted(ASYMMETRIC_ALGORITHMS)}"
        )
    return tuple(sorted(items))


def _public_keys(value: object) -> tuple[bytes, ...]:
    if isinstance(value, bytes):
        return (value,)
    if isinstance(value, list | tuple) and all(isinstance(item, bytes) for item in value):
        return tuple(value)
    raise CaConfigError(f"JwtIssuer public_keys must be PEM bytes, not {describe(value)}")


@final
@attrs.frozen
class JwtIssuer:
    """A token issuer the CA trusts, with the keys its tokens are signed with.

    Give the keys as a JWKS file (``jwks_file``, read again when it changes), as JWKS text (``jwks``), as PEM
    public keys (``public_keys``), or any mix of these.

    Attributes:
        issuer: the ``iss`` claim of its tokens, e.g. ``https://kubernetes.default.svc.cluster.local``.
        audiences: the ``aud`` values accepted (one is enough); Istio's default is ``istio-ca``.
        jwks_file: a JSON Web Key Set file.
        jwks: a JSON Web Key Set, as JSON text.
        public_keys: PEM public keys.
        algorithms: the signature algorithms accepted (asymmetric only; RS256 and ES256 by default).
        leeway: the clock skew tolerated on ``exp``, ``nbf`` and ``iat``.
        namespace_claim: the claim holding the namespace, for tokens that are not Kubernetes service account
            tokens (with ``service_account_claim``); by default the namespace and account come from
            ``sub = system:serviceaccount:<namespace>:<account>`` or the ``kubernetes.io`` claim.
        service_account_claim: the claim holding the service account name.

    Raises:
        CaConfigError: no issuer, no audience, no key source, a non-asymmetric algorithm, or only one of
            the two claim names.
    """

    issuer: str
    audiences: tuple[str, ...] = attrs.field(default=("istio-ca",), converter=_audiences, kw_only=True)
    jwks_file: Path | None = attrs.field(default=None, converter=attrs.converters.optional(Path), kw_only=True)
    jwks: str | None = attrs.field(default=None, kw_only=True, repr=False)
    public_keys: tuple[bytes, ...] = attrs.field(default=(), converter=_public_keys, kw_only=True, repr=False)
    algorithms: tuple[str, ...] = attrs.field(default=("ES256", "RS256"), converter=_algorithms, kw_only=True)
    leeway: timedelta = attrs.field(default=timedelta(seconds=30), kw_only=True)
    namespace_claim: str | None = attrs.field(default=None, kw_only=True)
    service_account_claim: str | None = attrs.field(default=None, kw_only=True)

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.issuer, str) or not self.issuer:
            raise CaConfigError(f"JwtIssuer issuer must be a non-empty string, not {describe(self.issuer)}")
        if self.jwks_file is None and self.jwks is None and not self.public_keys:
            raise CaConfigError(f"JwtIssuer {describe(self.issuer)} has no keys: give jwks_file, jwks or public_keys")
        if self.jwks is not None and not isinstance(self.jwks, str):
            raise CaConfigError(f"JwtIssuer jwks must be JSON text, not {describe(self.jwks)}")
        if not isinstance(self.leeway, timedelta) or self.leeway < timedelta(0):
            raise CaConfigError(f"JwtIssuer leeway must be a timedelta of zero or more, not {describe(self.leeway)}")
        if (self.namespace_claim is None) != (self.service_account_claim is None):
            raise CaConfigError("JwtIssuer namespace_claim and service_account_claim go together: give both or none")


@final
@attrs.frozen
class TokenClaims:
    """What a verified token says about its holder."""

    issuer: str
    subject: str
    namespace: str
    service_account: str


@final
@attrs.frozen
class _Key:
    key: VerifyingKey
    kid: str | None
    algorithm: str | None


def _verifying_key(key: object, origin: str) -> VerifyingKey:
    if isinstance(key, VerifyingKey):
        return key
    raise CaConfigError(f"{origin} holds a {type(key).__name__}; JWT keys must be RSA, ECDSA or EdDSA public keys")


def _jwks_keys(text: str | bytes, origin: str) -> list[_Key]:
    try:
        document = json.loads(text)
    except ValueError as error:
        raise CaConfigError(f"{origin} is not JSON: {error}") from None
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise CaConfigError(f"{origin} is not a JSON Web Key Set (no 'keys' list)")
    keys: list[_Key] = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig" or entry.get("kty") == "oct":
            continue  # encryption keys and shared secrets never verify tokens here
        try:
            parsed = jwt.PyJWK(entry)
        except (jwt.PyJWTError, ValueError, TypeError, UnsupportedAlgorithm) as error:
            _log.warning("%s: key %d is skipped: %s", origin, index, error)
            continue
        kid, algorithm = entry.get("kid"), entry.get("alg")
        keys.append(
            _Key(
                _verifying_key(parsed.key, f"{origin} key {index}"),
                kid if isinstance(kid, str) else None,
                algorithm if isinstance(algorithm, str) else None,
            )
        )
    return keys


def _pem_keys(data: bytes, origin: str) -> list[_Key]:
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        raise CaConfigError(f"{origin} is not a PEM public key") from None
    return [_Key(_verifying_key(key, origin), None, None)]


def _compatible(algorithm: str, key: VerifyingKey) -> bool:
    if isinstance(key, rsa.RSAPublicKey):
        return algorithm[:2] in ("RS", "PS")
    if isinstance(key, ec.EllipticCurvePublicKey):
        return _EC_ALGORITHMS.get(algorithm) == key.curve.name
    return algorithm == "EdDSA"


@final
class _IssuerKeys:
    """An issuer's keys, reloading its JWKS file when the file changes."""

    def __init__(self, issuer: JwtIssuer) -> None:
        self.issuer = issuer
        self._lock = threading.Lock()
        self._fixed: list[_Key] = []
        if issuer.jwks is not None:
            self._fixed += _jwks_keys(issuer.jwks, f"JWKS of issuer {issuer.issuer}")
        for index, pem in enumerate(issuer.public_keys):
            self._fixed += _pem_keys(pem, f"public key {index} of issuer {issuer.issuer}")
        self._file_keys: list[_Key] = []
        self._file_stamp: tuple[int, int] | None = None
        if issuer.jwks_file is not None:
            self._reload(fail=True)
        if not self.current():
            raise CaConfigError(f"JwtIssuer {describe(issuer.issuer)} has no usable signing keys")

    def _reload(self, *, fail: bool) -> None:
        path = self.issuer.jwks_file
        assert path is not None
        try:
            status = os.stat(path)
            stamp = (status.st_mtime_ns, status.st_size)
            if stamp == self._file_stamp:
                return
            data, _mode = read_limited(path)
            keys = _jwks_keys(data, f"JWKS file {path}")
        except (OSError, CaConfigError) as error:
            if fail:
                raise CaConfigError(f"JwtIssuer {describe(self.issuer.issuer)}: cannot use {path}: {error}") from None
            _log.error(
                "JWKS file %s of issuer %s cannot be used (keeping its old keys): %s", path, self.issuer.issuer, error
            )
            return
        self._file_keys, self._file_stamp = keys, stamp

    def current(self) -> list[_Key]:
        if self.issuer.jwks_file is not None:
            with self._lock:
                self._reload(fail=False)
        return [*self._fixed, *self._file_keys]


def _identity_claims(issuer: JwtIssuer, claims: dict[str, Any]) -> tuple[str, str]:
    if issuer.namespace_claim is not None and issuer.service_account_claim is not None:
        values = []
        for claim in (issuer.namespace_claim, issuer.service_account_claim):
            value = claims.get(claim)
            if not isinstance(value, str) or not value:
                raise TokenError(f"it has no {claim!r} claim")
            values.append(value)
        return values[0], values[1]
    from_sub: tuple[str, str] | None = None
    subject = claims.get("sub")
    if isinstance(subject, str) and subject.startswith(_SERVICE_ACCOUNT_PREFIX):
        parts = subject[len(_SERVICE_ACCOUNT_PREFIX) :].split(":")
        if len(parts) == 2 and all(parts):
            from_sub = (parts[0], parts[1])
    from_kubernetes: tuple[str, str] | None = None
    kubernetes = claims.get("kubernetes.io")
    if isinstance(kubernetes, dict):
        namespace, account = kubernetes.get("namespace"), kubernetes.get("serviceaccount")
        name = account.get("name") if isinstance(account, dict) else None
        if isinstance(namespace, str) and isinstance(name, str):
            from_kubernetes = (namespace, name)
    if from_sub and from_kubernetes and from_sub != from_kubernetes:
        raise TokenError("its 'sub' and 'kubernetes.io' claims name different service accounts")
    found = from_sub or from_kubernetes
    if found is None:
        raise TokenError("it names no service account (expected 'sub' = 'system:serviceaccount:<namespace>:<name>')")
    return found


def _segment(text: str) -> dict[str, Any]:
    """A JSON object in one base64url segment of a JWT (no signature check: for routing only)."""
    if not _BASE64URL.fullmatch(text):
        raise ValueError("not base64url")
    value = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


def _unverified_parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and the claims of a token, before its signature is checked: they choose the issuer and key.

    The token is parsed here once (PyJWT's parser checks every character in Python, which costs more than the
    signature); PyJWT parses it again, strictly, when it verifies it with the chosen key.

    Raises:
        TokenError: the token is not three base64url segments whose first two are JSON objects.
    """
    parts = token.split(".")
    try:
        if len(parts) != 3 or not _BASE64URL.fullmatch(parts[2]):  # an unsigned token's signature is empty
            raise ValueError("not three segments")
        header, claims = _segment(parts[0]), _segment(parts[1])
        if not isinstance(header.get("kid", ""), str):
            raise ValueError("a key id that is not a string")
    except (ValueError, RecursionError):  # ValueError: also binascii.Error, UnicodeDecodeError, JSONDecodeError
        raise TokenError("it is not a well-formed JWT") from None
    return header, claims


_REASONS: Final[tuple[tuple[type[jwt.PyJWTError], str], ...]] = (
    (jwt.ExpiredSignatureError, "it has expired"),
    (jwt.ImmatureSignatureError, "it is not valid yet"),
    (jwt.InvalidIssuedAtError, "its 'iat' claim is not valid"),
    (jwt.InvalidIssuerError, "its issuer is not accepted"),
    (jwt.MissingRequiredClaimError, "it lacks a required claim (exp, iss and aud are required)"),
)


@final
class JwtVerifier:
    """Verifies tokens against a set of trusted issuers."""

    def __init__(self, issuers: Sequence[JwtIssuer]) -> None:
        if not issuers:
            raise CaConfigError("a JwtAuthenticator needs at least one JwtIssuer")
        self._issuers: dict[str, _IssuerKeys] = {}
        for issuer in issuers:
            if not isinstance(issuer, JwtIssuer):
                raise CaConfigError(f"expected JwtIssuer values, got {describe(issuer)}")
            if issuer.issuer in self._issuers:
                raise CaConfigError(f"JwtIssuer {describe(issuer.issuer)} is given twice")
            self._issuers[issuer.issuer] = _IssuerKeys(issuer)

    @property
    def issuers(self) -> tuple[JwtIssuer, ...]:
        return tuple(keys.issuer for keys in self._issuers.values())

    def verify(self, token: str) -> TokenClaims:
        """The claims of a valid token.

        Raises:
            TokenError: why the token is refused.
        """
        if len(token) > _MAX_TOKEN_LENGTH:
            raise TokenError(f"it is longer than {_MAX_TOKEN_LENGTH} characters")
        header, unverified = _unverified_parts(token)
        name = unverified.get("iss")
        if not isinstance(name, str):
            raise TokenError("it has no 'iss' claim")
        keys = self._issuers.get(name)
        if keys is None:
            raise TokenError(f"its issuer {describe(name)} is not trusted")
        issuer = keys.issuer
        algorithm, kid = header.get("alg"), header.get("kid")
        if algorithm not in issuer.algorithms:
            raise TokenError(
                f"its algorithm {describe(algorithm)} is not accepted (use one of {list(issuer.algorithms)})"
            )
        candidates = [
            key
            for key in keys.current()
            if (kid is None or key.kid is None or key.kid == kid)
            and key.algorithm in (None, algorithm)
            and _compatible(algorithm, key.key)
        ]
        if not candidates:
            raise TokenError(f"no key of issuer {describe(name)} matches it (kid {describe(kid)}, alg {algorithm})")
        for key in candidates:
            try:
                claims: dict[str, Any] = jwt.decode(
                    token,
                    key.key,
                    algorithms=[algorithm],
                    audience=list(issuer.audiences),
                    issuer=issuer.issuer,
                    leeway=issuer.leeway,
                    options={"require": ["exp", "iss", "aud"]},
                )
            except jwt.InvalidSignatureError:
                continue
            except jwt.InvalidAudienceError:
                raise TokenError(f"its audience is not accepted (expected one of {list(issuer.audiences)})") from None
            except jwt.PyJWTError as error:
                reason = next((text for kind, text in _REASONS if isinstance(error, kind)), None)
                raise TokenError(reason or "it is not valid") from None
            namespace, account = _identity_claims(issuer, claims)
            subject = claims.get("sub")
            return TokenClaims(name, subject if isinstance(subject, str) else "", namespace, account)
        raise TokenError(f"its signature does not verify with the keys of issuer {describe(name)}")
