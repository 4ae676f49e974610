"""Bootstrap tokens: meshd's own JWT issuer, trusted by its CA, for workloads' first certificates.

Without Kubernetes there are no service account tokens, so meshd signs its own: it keeps an ECDSA P-256 key
in ``<workdir>/token-key.pem`` (mode 0600, created on first start), its CA trusts tokens signed with it
(issuer ``meshd``, audience ``istio-ca``), and ``meshd token`` prints one for an identity. The claims are
those of a Kubernetes service account token, as the CA's :class:`~mesh_ca.JwtAuthenticator` reads them:
``sub = system:serviceaccount:<namespace>:<account>``, plus ``iss``, ``aud``, ``iat`` and ``exp``.
"""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Final

import jwt
from cryptography.hazmat.primitives import serialization

from mesh_ca import JwtIssuer, KeyAlgorithm, PrivateKey, generate_private_key, load_private_key, write_private_key
from mesh_model import SpiffeId

__all__ = ["TOKEN_AUDIENCE", "TOKEN_ISSUER", "TOKEN_KEY_FILE", "load_token_key", "mint_token", "token_issuer"]

TOKEN_ISSUER: Final = "meshd"
"""The ``iss`` of meshd's tokens."""
TOKEN_AUDIENCE: Final = "istio-ca"
"""The ``aud`` of meshd's tokens: Istio's CA audience."""
TOKEN_KEY_FILE: Final = "token-key.pem"
"""The signing key's file name in the work directory."""
_ALGORITHM: Final = "ES256"


def load_token_key(workdir: Path, *, create: bool) -> PrivateKey:
    """The token signing key of a work directory, created (mode 0600) when missing and ``create`` is set.

    Raises:
        KeyFileError: the key cannot be read or written, is readable by others, or (``create`` unset) is
            missing.
    """
    path = workdir / TOKEN_KEY_FILE
    if create and not path.exists():
        write_private_key(path, generate_private_key(KeyAlgorithm.EC_P256))
    return load_private_key(path)


def token_issuer(key: PrivateKey) -> JwtIssuer:
    """The issuer the CA trusts: meshd's, with the public half of ``key``."""
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return JwtIssuer(TOKEN_ISSUER, audiences=(TOKEN_AUDIENCE,), public_keys=(public,), algorithms=(_ALGORITHM,))


def mint_token(key: PrivateKey, identity: SpiffeId, *, ttl: timedelta, now: float | None = None) -> str:
    """A token for the namespace and service account of ``identity``, valid for ``ttl`` from ``now``."""
    issued = int(time.time() if now is None else now)
    claims = {
        "iss": TOKEN_ISSUER,
        "aud": TOKEN_AUDIENCE,
        "sub": f"system:serviceaccount:{identity.namespace}:{identity.service_account}",
        "iat": issued,
        "exp": issued + max(1, int(ttl.total_seconds())),
    }
    return jwt.encode(claims, key, algorithm=_ALGORITHM)
