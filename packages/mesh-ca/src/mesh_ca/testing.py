"""Helpers for tests and demos: an offline root that issues plugged-in ``cacerts`` directories.

Istio's multi-cluster guide keeps one root offline and gives each cluster an intermediate signed by it, in a
``cacerts`` directory. :class:`OfflineRoot` does the same in a few milliseconds, so that tests can exercise
:meth:`~mesh_ca.CertificateAuthority.from_cacerts` without ``openssl`` command lines.

Example::

    from mesh_ca import CertificateAuthority
    from mesh_ca.testing import OfflineRoot

    root = OfflineRoot.create()
    root.issue_cacerts(tmp_path / "cluster-1")
    authority = CertificateAuthority.from_cacerts(tmp_path / "cluster-1")
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import final

import attrs
from cryptography import x509
from cryptography.x509.oid import NameOID

from mesh_ca import _x509
from mesh_ca.cacerts import CaCerts, write_cacerts
from mesh_ca.keys import KeyAlgorithm, PrivateKey, generate_private_key

__all__ = ["OfflineRoot"]

_BACKDATE = timedelta(minutes=5)


@final
@attrs.frozen
class OfflineRoot:
    """A root CA key and certificate kept outside the mesh, which signs intermediates for it.

    Attributes:
        key: the root's private key.
        certificate: the self-signed root certificate.
    """

    key: PrivateKey = attrs.field(repr=False)
    certificate: x509.Certificate

    @classmethod
    def create(
        cls,
        *,
        organization: str = "cluster.local",
        algorithm: KeyAlgorithm = KeyAlgorithm.EC_P256,
        ttl: timedelta = timedelta(days=3650),
    ) -> OfflineRoot:
        """A new root, valid from a few minutes ago for ``ttl``."""
        key = generate_private_key(algorithm)
        now = datetime.now(UTC).replace(microsecond=0)
        root = _x509.build_root(key, organization=organization, not_before=now - _BACKDATE, not_after=now + ttl)
        return cls(key=key, certificate=root)

    def intermediate(
        self,
        *,
        name: str = "intermediate",
        algorithm: KeyAlgorithm = KeyAlgorithm.EC_P256,
        ttl: timedelta = timedelta(days=365),
        not_before: datetime | None = None,
        path_length: int | None = 0,
        extra_roots: Sequence[x509.Certificate] = (),
    ) -> CaCerts:
        """A new intermediate signed by this root (``CN=<name>``), as the material of a signing CA.

        ``not_before`` defaults to a few minutes ago; ``extra_roots`` are trusted besides this root.
        """
        key = generate_private_key(algorithm)
        start = not_before or datetime.now(UTC).replace(microsecond=0) - _BACKDATE
        certificate = _x509.build_intermediate(
            key.public_key(),
            subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]),
            issuer=self.certificate,
            issuer_key=self.key,
            not_before=start,
            not_after=start + ttl,
            path_length=path_length,
        )
        return CaCerts(signing_key=key, chain=(certificate, self.certificate), roots=(self.certificate, *extra_roots))

    def issue_cacerts(
        self,
        directory: str | os.PathLike[str],
        *,
        name: str = "intermediate",
        algorithm: KeyAlgorithm = KeyAlgorithm.EC_P256,
        ttl: timedelta = timedelta(days=365),
        extra_roots: Sequence[x509.Certificate] = (),
    ) -> CaCerts:
        """Write a new :meth:`intermediate` to ``directory`` in Istio's ``cacerts`` layout, and return it."""
        material = self.intermediate(name=name, algorithm=algorithm, ttl=ttl, extra_roots=extra_roots)
        write_cacerts(directory, material)
        return material
