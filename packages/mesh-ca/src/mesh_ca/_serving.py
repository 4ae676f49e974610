"""The CA server's own TLS certificate: issued by the CA for its DNS names, renewed in place (private).

gRPC asks for the server's certificate configuration before every TLS handshake; :class:`ServingIdentity`
answers with a new one when the serving certificate is past half of its lifetime, and when the CA's trusted
roots changed (the mutual TLS listener verifies client certificates with them).

After a root rotation the serving certificate keeps its old root until its next renewal, so that clients
have time to learn the new root from the answers to their own renewals; it is replaced at once only when
its root is no longer trusted.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Final, cast, final

import grpc
from cryptography.hazmat.primitives import serialization

from mesh_ca._csr import server_names
from mesh_ca.authority import CertificateAuthority
from mesh_ca.errors import CaConfigError, CaError, IdentityError
from mesh_ca.keys import KeyAlgorithm, generate_private_key
from mesh_ca.trust_bundle import TrustBundle
from mesh_model import Subscription

_log = logging.getLogger("mesh_ca.server")

_RENEW_AT: Final = 0.5
"""The share of the serving certificate's lifetime after which it is replaced."""


def check_names(dns_names: Sequence[str], ip_addresses: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The server's DNS names and IP addresses, checked as the CA checks them when it signs.

    Raises:
        CaConfigError: no name at all, or a malformed one.
    """
    try:
        server_names(dns_names, ip_addresses)
    except IdentityError as error:
        raise CaConfigError(f"CA server names: {error}") from None
    return tuple(dns_names), tuple(ip_addresses)


@final
class ServingIdentity:
    """The serving certificate and key, renewed when due; one gRPC credentials object per listener."""

    def __init__(
        self,
        authority: CertificateAuthority,
        *,
        dns_names: tuple[str, ...],
        ip_addresses: tuple[str, ...],
        ttl: timedelta,
    ) -> None:
        self._authority = authority
        self._dns_names = dns_names
        self._ip_addresses = ip_addresses
        self._ttl = ttl
        self._lock = threading.Lock()
        self._generation = 0
        self._key_pem = b""
        self._chain_pem = b""
        self._roots_pem = b""
        self._serving_root = b""
        self._renew_at = datetime.min.replace(tzinfo=UTC)
        self._stale = True
        self._subscription: Subscription | None = authority.subscribe(self._roots_changed)
        self._refresh()

    @property
    def chain_pem(self) -> bytes:
        """The serving certificate chain, leaf first."""
        return self._chain_pem

    def close(self) -> None:
        """Stop following the CA's root changes."""
        if self._subscription is not None:
            self._subscription.cancel()
            self._subscription = None

    def _roots_changed(self, bundle: TrustBundle) -> None:
        roots_pem = bundle.pem().encode("ascii")
        with self._lock:
            self._roots_pem = roots_pem
            self._generation += 1
            if self._serving_root not in roots_pem:
                self._stale = True

    def _refresh(self) -> bool:
        """Issue a new serving certificate if due; return whether the configuration changed."""
        with self._lock:
            now = datetime.now(UTC)
            if not self._stale and now < self._renew_at:
                return False
            key = generate_private_key(KeyAlgorithm.EC_P256)
            issued = self._authority.sign_server_key(
                key.public_key(), self._dns_names, ip_addresses=self._ip_addresses, ttl=self._ttl
            )
            self._key_pem = key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            self._chain_pem = "".join(issued.chain_pem[:-1] or issued.chain_pem).encode("ascii")
            self._serving_root = issued.chain_pem[-1].encode("ascii")
            self._roots_pem = self._authority.trust_bundle().pem().encode("ascii")
            start = max(issued.not_before, now)
            self._renew_at = start + (issued.not_after - start) * _RENEW_AT
            self._stale = False
            self._generation += 1
            _log.info(
                "serving certificate for %s issued, valid until %s",
                ", ".join((*self._dns_names, *self._ip_addresses)),
                issued.not_after.isoformat(),
            )
            return True

    def _configuration(self, *, client_roots: bool) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration(
            [(self._key_pem, self._chain_pem)], root_certificates=self._roots_pem if client_roots else None
        )

    def credentials(self, *, require_client_certificate: bool) -> grpc.ServerCredentials:
        """Server credentials that follow renewals; with a required, CA-issued client certificate if asked."""
        with self._lock:
            seen = self._generation
            initial = self._configuration(client_roots=require_client_certificate)

        def fetch() -> grpc.ServerCertificateConfiguration | None:
            nonlocal seen
            try:
                self._refresh()
            except CaError as error:  # keep serving the old certificate; the CA may recover
                _log.error("cannot renew the serving certificate: %s", error)
            except Exception:
                _log.exception("cannot renew the serving certificate")
            with self._lock:
                if seen == self._generation:
                    return None
                seen = self._generation
                return self._configuration(client_roots=require_client_certificate)

        # The fetcher may return None ("no change"), which the type stubs do not say.
        fetcher = cast("Callable[[], grpc.ServerCertificateConfiguration]", fetch)
        return grpc.dynamic_ssl_server_credentials(
            initial,
            fetcher,
            require_client_authentication=require_client_certificate,
        )
