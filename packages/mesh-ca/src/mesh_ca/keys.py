"""Private keys: the algorithms the CA works with, generating them, and keeping them in 0600 files.

ECDSA P-256 is the default everywhere: it signs about twice as fast as RSA-2048 in Python and its keys are
generated a hundred times faster. RSA 2048/3072/4096 and ECDSA P-384 are there for plugged-in CAs and
policies that require them.

Example::

    from mesh_ca import KeyAlgorithm, generate_private_key, load_private_key, write_private_key

    key = generate_private_key(KeyAlgorithm.EC_P256)
    write_private_key(directory / "ca-key.pem", key)  # created 0600, replaced atomically
    assert load_private_key(directory / "ca-key.pem").public_key() == key.public_key()
"""

from __future__ import annotations

import enum
import os
from pathlib import Path
from typing import TypeAlias

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from mesh_ca._files import read_limited, write_atomically
from mesh_ca._text import describe
from mesh_ca.errors import KeyFileError, UnsupportedKeyError

__all__ = [
    "KeyAlgorithm",
    "PrivateKey",
    "PublicKey",
    "generate_private_key",
    "load_private_key",
    "write_private_key",
]

PrivateKey: TypeAlias = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
"""A private key the CA can sign with: ECDSA or RSA."""

PublicKey: TypeAlias = ec.EllipticCurvePublicKey | rsa.RSAPublicKey
"""A public key the CA can certify: ECDSA or RSA."""

_PRIVATE_KEY_MODE = 0o600
_RSA_EXPONENT = 65537
_MIN_RSA_BITS = 2048
_MAX_RSA_BITS = 8192
_CURVES = frozenset({"secp256r1", "secp384r1"})


class KeyAlgorithm(enum.Enum):
    """A key type and size. ``EC_P256`` is the default of every function that takes one."""

    EC_P256 = "EC_P256"
    """ECDSA on NIST P-256 (``prime256v1``), signed with SHA-256."""
    EC_P384 = "EC_P384"
    """ECDSA on NIST P-384 (``secp384r1``), signed with SHA-384."""
    RSA_2048 = "RSA_2048"
    """RSA with a 2048-bit modulus, signed with SHA-256 (Istio's default CA key)."""
    RSA_3072 = "RSA_3072"
    """RSA with a 3072-bit modulus, signed with SHA-256."""
    RSA_4096 = "RSA_4096"
    """RSA with a 4096-bit modulus, signed with SHA-256."""

    @property
    def is_rsa(self) -> bool:
        """Whether this is one of the RSA algorithms."""
        return self.value.startswith("RSA")

    @classmethod
    def of(cls, key: PrivateKey | PublicKey) -> KeyAlgorithm:
        """The algorithm of an existing key.

        Raises:
            UnsupportedKeyError: the key is neither ECDSA P-256/P-384 nor RSA 2048/3072/4096.
        """
        if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
            for algorithm, curve in ((cls.EC_P256, "secp256r1"), (cls.EC_P384, "secp384r1")):
                if key.curve.name == curve:
                    return algorithm
            raise UnsupportedKeyError(f"ECDSA curve {key.curve.name} is not supported (use P-256 or P-384)")
        if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
            for algorithm in (cls.RSA_2048, cls.RSA_3072, cls.RSA_4096):
                if key.key_size == int(algorithm.value.removeprefix("RSA_")):
                    return algorithm
            raise UnsupportedKeyError(f"RSA keys of {key.key_size} bits are not supported (use 2048, 3072 or 4096)")
        raise UnsupportedKeyError(f"{type(key).__name__} keys are not supported (use ECDSA P-256/P-384 or RSA)")


def generate_private_key(algorithm: KeyAlgorithm = KeyAlgorithm.EC_P256) -> PrivateKey:
    """Generate a new private key.

    Args:
        algorithm: the key type and size; ECDSA P-256 by default.

    Raises:
        UnsupportedKeyError: ``algorithm`` is not a :class:`KeyAlgorithm`.
    """
    if not isinstance(algorithm, KeyAlgorithm):
        raise UnsupportedKeyError(f"key algorithm must be a KeyAlgorithm, not {describe(algorithm)}")
    if algorithm.is_rsa:
        bits = int(algorithm.value.removeprefix("RSA_"))
        return rsa.generate_private_key(public_exponent=_RSA_EXPONENT, key_size=bits)
    curve = ec.SECP256R1() if algorithm is KeyAlgorithm.EC_P256 else ec.SECP384R1()
    return ec.generate_private_key(curve)


def check_workload_key(key: object) -> PublicKey:
    """Return ``key`` if the CA may certify it: ECDSA P-256/P-384, or RSA of 2048 to 8192 bits.

    Raises:
        UnsupportedKeyError: any other key, with what would be accepted.
    """
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in _CURVES:
            raise UnsupportedKeyError(f"ECDSA curve {key.curve.name} is not supported (use P-256 or P-384)")
        return key
    if isinstance(key, rsa.RSAPublicKey):
        if not _MIN_RSA_BITS <= key.key_size <= _MAX_RSA_BITS:
            raise UnsupportedKeyError(
                f"RSA key of {key.key_size} bits is not supported (use {_MIN_RSA_BITS} to {_MAX_RSA_BITS} bits)"
            )
        return key
    raise UnsupportedKeyError(
        f"{type(key).__name__} is not a supported public key (use ECDSA P-256/P-384 or RSA of 2048+ bits)"
    )


def write_private_key(path: str | os.PathLike[str], key: PrivateKey) -> None:
    """Write ``key`` to ``path`` as unencrypted PKCS#8 PEM, readable by its owner only (mode 0600).

    The file is replaced atomically: a reader sees the old key or the new one, never a mix, and the key is
    never readable by others, not even for a moment.

    Raises:
        UnsupportedKeyError: ``key`` is not a key the CA works with.
        KeyFileError: the file cannot be written (the directory is missing or not writable).
    """
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise UnsupportedKeyError(f"expected an ECDSA or RSA private key, not {type(key).__name__}")
    KeyAlgorithm.of(key)
    data = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    target = Path(path)
    try:
        write_atomically(target, data, _PRIVATE_KEY_MODE)
    except OSError as error:
        raise KeyFileError(f"cannot write private key file {target}: {error.strerror or error}") from None


def load_private_key(path: str | os.PathLike[str]) -> PrivateKey:
    """Read a PEM private key (PKCS#8, SEC 1 or PKCS#1) that only its owner can read.

    Raises:
        KeyFileError: the file is missing or unreadable; it is readable or writable by group or others
            (run ``chmod 600`` on it); it is encrypted; it holds no PEM private key; or the key is not one
            of the :class:`KeyAlgorithm` types.
    """
    source = Path(path)
    try:
        data, mode = read_limited(source)
    except FileNotFoundError:
        raise KeyFileError(f"private key file {source} does not exist") from None
    except OSError as error:
        raise KeyFileError(f"cannot read private key file {source}: {error.strerror or error}") from None
    if mode & 0o077:
        raise KeyFileError(
            f"private key file {source} is accessible by group or others (mode {mode:04o}); "
            f"it must be readable by its owner only: chmod 600 {source}"
        )
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise KeyFileError(f"private key file {source} is encrypted; the CA needs an unencrypted key") from None
    except (ValueError, UnsupportedAlgorithm):
        raise KeyFileError(f"private key file {source} does not hold a PEM private key the CA can read") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise KeyFileError(f"private key file {source} holds a {type(key).__name__}; use ECDSA P-256/P-384 or RSA")
    try:
        KeyAlgorithm.of(key)
    except UnsupportedKeyError as error:
        raise KeyFileError(f"private key file {source}: {error}") from None
    return key
