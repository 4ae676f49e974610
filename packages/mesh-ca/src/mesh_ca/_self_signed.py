"""Self-signed roots: created on first start, kept in a directory in the ``cacerts`` layout (private).

The directory holds the same four files as a plugged-in ``cacerts`` directory (as Istio's
``istio-ca-secret`` does), with ``ca-cert.pem`` being the root itself and ``root-cert.pem`` every trusted
root: the signing root first, then older roots still trusted during a rotation. The signing root is the one
in ``root-cert.pem`` whose key is ``ca-key.pem``; files are written roots first, key next, so that a crash
in the middle of a rotation leaves a directory that loads (with the old or the new root signing).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import final

import attrs
from cryptography import x509

from mesh_ca import _x509
from mesh_ca.cacerts import CA_CERT, CA_KEY, CERT_CHAIN, ROOT_CERT, CaCerts, assemble, read_certificates, write_cacerts
from mesh_ca.errors import CaConfigError
from mesh_ca.keys import KeyAlgorithm, generate_private_key, load_private_key

_FILES = (CA_CERT, CA_KEY, CERT_CHAIN, ROOT_CERT)


@final
@attrs.frozen
class RootSettings:
    """How to make a self-signed root, and where to keep it (``None``: in memory only)."""

    directory: Path | None
    trust_domain: str
    algorithm: KeyAlgorithm
    ttl: timedelta
    backdate: timedelta


def new_root(settings: RootSettings, *, algorithm: KeyAlgorithm | None = None, ttl: timedelta | None = None) -> CaCerts:
    """A new key and a self-signed root for it; the root is the whole chain and the only trusted root."""
    key = generate_private_key(algorithm or settings.algorithm)
    now = datetime.now(UTC).replace(microsecond=0)
    root = _x509.build_root(
        key,
        organization=settings.trust_domain,
        not_before=now - settings.backdate,
        not_after=now + (ttl or settings.ttl),
    )
    return CaCerts(signing_key=key, chain=(root,), roots=(root,))


def load_or_create(settings: RootSettings) -> CaCerts:
    """The root kept in ``settings.directory``, created there on first use (or in memory without directory).

    Raises:
        CaConfigError: the directory holds some of the files but not the key and the roots, the key is not
            that of a self-signed root in ``root-cert.pem``, or the signing root has expired.
    """
    base = settings.directory
    if base is None:
        return new_root(settings)
    if base.exists() and not base.is_dir():
        raise CaConfigError(f"root directory {base} is not a directory")
    present = [name for name in _FILES if (base / name).exists()]
    if not present:
        material = new_root(settings)
        write_cacerts(base, material)
        return material
    return load_existing(settings)


def load_existing(settings: RootSettings) -> CaCerts:
    """The root kept in ``settings.directory``, which must hold at least ``ca-key.pem`` and ``root-cert.pem``.

    Raises:
        CaConfigError: as :func:`load_or_create`.
    """
    base = settings.directory
    if base is None:
        raise CaConfigError("a root kept in memory cannot be loaded")
    present = [name for name in _FILES if (base / name).exists()]
    missing = [name for name in (CA_KEY, ROOT_CERT) if name not in present]
    if missing:
        raise CaConfigError(
            f"root directory {base} holds {', '.join(present) or 'none of the CA files'} but not {', '.join(missing)}: "
            "restore the missing "
            "files, or remove the others to have a new root created (workloads will then need the new root)"
        )
    key = load_private_key(base / CA_KEY)
    roots = read_certificates(base / ROOT_CERT)
    signing = next((root for root in roots if _x509.same_public_key(key, root)), None)
    if signing is None or not _x509.is_self_signed(signing):
        raise CaConfigError(
            f"{base / CA_KEY} is not the key of a self-signed root in {base / ROOT_CERT}; a directory with a "
            "plugged-in intermediate is loaded with CertificateAuthority.from_cacerts"
        )
    material = assemble(key, signing, [], roots, source=base)
    if not _files_agree(base, material):
        write_cacerts(base, material)
    return material


def rotated(
    settings: RootSettings, current: CaCerts, *, algorithm: KeyAlgorithm | None, ttl: timedelta | None
) -> CaCerts:
    """A new signing root, with every root trusted so far still trusted after it; persisted when kept on disk."""
    fresh = new_root(settings, algorithm=algorithm, ttl=ttl)
    material = attrs.evolve(fresh, roots=(fresh.root, *current.roots))
    save(settings, material)
    return material


def with_roots(settings: RootSettings, current: CaCerts, roots: Sequence[x509.Certificate]) -> CaCerts:
    """``current`` trusting exactly ``roots`` (the signing root among them); persisted when kept on disk."""
    material = attrs.evolve(current, roots=tuple(roots))
    save(settings, material)
    return material


def save(settings: RootSettings, material: CaCerts) -> None:
    """Write ``material`` to the settings' directory, if it has one."""
    if settings.directory is not None:
        write_cacerts(settings.directory, material)


def _files_agree(base: Path, material: CaCerts) -> bool:
    """Whether ``ca-cert.pem`` and ``cert-chain.pem`` name the signing root (a rotation may have been cut short)."""
    try:
        ca_cert = read_certificates(base / CA_CERT)
        chain = read_certificates(base / CERT_CHAIN)
    except CaConfigError:
        return False
    return ca_cert == [material.root] and chain in ([], [material.root])
