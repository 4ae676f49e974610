"""The workload side: a certificate client that keeps a node agent's certificate fresh.

:class:`CertificateClient` does what Istio's node agent does for its Envoy: it generates a key (ECDSA P-256
by default), builds a CSR for the workload's SPIFFE id, calls the CA's ``CreateCertificate`` over TLS with a
bearer token, keeps the key and chain in memory (and, if asked, in 0600 files), renews at half of the
lifetime with a little jitter, retries with exponential backoff while the CA is unreachable, and tells its
subscribers about every new certificate.

It is a secret provider for an SDS server (``mesh_xds.SdsServer``) without depending on it: Envoy's
``default`` secret is the certificate chain with its key, ``ROOTCA`` the trusted roots. The roots come from
the CA's answers, or from the mesh's trust bundle when one is given (:meth:`CertificateClient.set_trusted_roots`
or a followed ``root_certificates_file``), so that a workload trusts a new root before its own renewal.

Example::

    client = CertificateClient(
        "127.0.0.1:15012",
        SpiffeId("cluster.local", "default", "reviews"),
        root_certificates=root_pem,
        token_file="/var/run/secrets/tokens/istio-token",
        server_name="istiod.istio-system.svc",
    )
    async with client:
        certificate = await client.wait_for_certificate()
        sds = SdsServer(client)  # serves "default" and "ROOTCA", pushes every renewal
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, final

import grpc
from cryptography import x509
from google.protobuf.message import DecodeError

from mesh_ca import _proto
from mesh_ca._files import read_limited, write_atomically
from mesh_ca._renewal import MIN_DELAY, RenewalPolicy
from mesh_ca._text import describe
from mesh_ca._trusted_roots import RootFile, Roots, combine, issuing_root, parse_roots, to_pem
from mesh_ca._workload import (
    CertificateClientError,
    WorkloadCertificate,
    WorkloadSecret,
    accept_response,
    build_csr,
)
from mesh_ca.errors import CaError, UnsupportedKeyError
from mesh_ca.keys import KeyAlgorithm, generate_private_key
from mesh_model import InvalidSpiffeIdError, SpiffeId

__all__ = [
    "DEFAULT_SECRET",
    "ROOT_SECRET",
    "CertificateClient",
    "CertificateClientError",
    "RenewalPolicy",
    "WorkloadCertificate",
    "WorkloadSecret",
]

_log = logging.getLogger("mesh_ca.client")

DEFAULT_SECRET: Final = "default"
"""The SDS name of the workload's certificate chain and key."""
ROOT_SECRET: Final = "ROOTCA"
"""The SDS name of the trusted roots."""

IMPERSONATED_IDENTITY: Final = "ImpersonatedIdentity"
_FILE_MODE: Final = 0o600
_DIRECTORY_MODE: Final = 0o700


SecretChangeHandler = Callable[[str], None]


@final
class _Registration:
    def __init__(self, owner: CertificateClient, handler: SecretChangeHandler) -> None:
        self._owner = owner
        self.handler = handler

    def cancel(self) -> None:
        self._owner._unsubscribe(self)


def _identity(value: object) -> SpiffeId:
    if isinstance(value, SpiffeId):
        return value
    if isinstance(value, str):
        try:
            return SpiffeId.parse(value)
        except InvalidSpiffeIdError as error:
            raise CertificateClientError(f"CertificateClient identity: {error}") from None
    raise CertificateClientError(f"CertificateClient identity must be a SpiffeId, not {describe(value)}")


def _roots(value: object) -> bytes:
    if not isinstance(value, bytes):
        raise CertificateClientError(f"root_certificates must be PEM bytes, not {describe(value)}")
    try:
        if not x509.load_pem_x509_certificates(value):
            raise ValueError
    except ValueError:
        raise CertificateClientError("root_certificates holds no PEM certificate") from None
    return value


@final
class CertificateClient:
    """Gets a workload certificate from the CA and keeps it fresh; a secret provider for SDS.

    Args:
        address: the CA's ``host:port``.
        identity: the workload's SPIFFE id (the one its token or certificate proves, unless ``impersonate``).
        root_certificates: PEM roots that the CA's server certificate must chain to.
        token: the bearer token, or a function returning it (called for each request).
        token_file: a file holding the bearer token, read for each request (a projected token rotates).
        server_name: the name to verify in the CA's server certificate, when ``address`` does not carry
            it (e.g. ``istiod.istio-system.svc`` when dialing an IP address).
        renewal_address: the CA's mutual TLS address; once it holds a valid certificate, the client renews by
            presenting it there instead of a token (and falls back to the token on failure).
        metadata: more gRPC metadata for every request, e.g. ``{"clusterid": "Kubernetes"}``.
        impersonate: ask for ``identity`` on behalf of a workload (the caller must be on the CA's
            impersonation allow-list); the ``ImpersonatedIdentity`` metadata of the request names it.
        key_algorithm: the key type generated for each certificate (ECDSA P-256 by default).
        ttl: the lifetime asked for (24 hours, Istio's ``SECRET_TTL``); ``None`` lets the CA choose.
        directory: if given, ``key.pem``, ``cert-chain.pem`` and ``root-cert.pem`` are written there (mode
            0600, replaced atomically) on every renewal, as Istio's ``OUTPUT_CERTS``; ``root-cert.pem`` holds
            what ``ROOTCA`` holds, and is written again whenever that changes.
        renewal: when to renew and how to retry.
        root_certificates_file: a PEM file of the mesh's trusted roots (Istio's ``istio-ca-root-cert``
            ConfigMap, mounted), read now and again whenever it changes while the client runs, as if handed
            to :meth:`set_trusted_roots`. A file that becomes unusable (missing, unreadable, no certificate)
            is logged and the roots trusted before are kept.
        root_poll_interval: seconds between two looks at ``root_certificates_file`` (its inode,
            modification time and size).

    Raises:
        CertificateClientError: an argument is unusable, there is neither a token nor a token file, or
            ``root_certificates_file`` cannot be read or holds no certificate.
    """

    def __init__(
        self,
        address: str,
        identity: SpiffeId | str,
        *,
        root_certificates: bytes,
        token: str | Callable[[], str] | None = None,
        token_file: str | os.PathLike[str] | None = None,
        server_name: str | None = None,
        renewal_address: str | None = None,
        metadata: Mapping[str, str] | None = None,
        impersonate: bool = False,
        key_algorithm: KeyAlgorithm = KeyAlgorithm.EC_P256,
        ttl: timedelta | None = timedelta(hours=24),
        directory: str | os.PathLike[str] | None = None,
        renewal: RenewalPolicy | None = None,
        root_certificates_file: str | os.PathLike[str] | None = None,
        root_poll_interval: float = 1.0,
    ) -> None:
        if not isinstance(address, str) or not address:
            raise CertificateClientError(f"CertificateClient address must be 'host:port', not {describe(address)}")
        if token is None and token_file is None:
            raise CertificateClientError("a CertificateClient needs a token or a token_file for its first certificate")
        if token is not None and not (callable(token) or (isinstance(token, str) and token)):
            raise CertificateClientError("token must be a non-empty string or a function returning one")
        if not isinstance(key_algorithm, KeyAlgorithm):
            raise CertificateClientError(f"key_algorithm must be a KeyAlgorithm, not {describe(key_algorithm)}")
        if ttl is not None and (not isinstance(ttl, timedelta) or ttl < timedelta(seconds=1)):
            raise CertificateClientError(
                f"ttl must be a timedelta of at least one second, or None, not {describe(ttl)}"
            )
        if isinstance(root_poll_interval, bool) or not isinstance(root_poll_interval, int | float):
            raise CertificateClientError(
                f"root_poll_interval must be a number of seconds, not {describe(root_poll_interval)}"
            )
        if not 0.01 <= root_poll_interval <= 3600:
            raise CertificateClientError(
                f"root_poll_interval must be between 0.01 and 3600 seconds, not {root_poll_interval}"
            )
        extra = dict(metadata or {})
        for key, value in extra.items():
            if not isinstance(key, str) or not isinstance(value, str) or key.lower() == "authorization":
                raise CertificateClientError(f"metadata entry {describe(key)} must map a name to a text value")
        self._address = address
        self._identity = _identity(identity)
        self._roots = _roots(root_certificates)
        self._token = token
        self._token_file = Path(token_file) if token_file is not None else None
        self._server_name = server_name
        self._renewal_address = renewal_address
        self._metadata = tuple((key.lower(), value) for key, value in extra.items())
        self._impersonate = bool(impersonate)
        self._key_algorithm = key_algorithm
        self._ttl = ttl
        self._directory = Path(directory) if directory is not None else None
        self._policy = renewal if renewal is not None else RenewalPolicy()
        self._lock = threading.Lock()
        self._handlers: list[_Registration] = []
        self._current: WorkloadCertificate | None = None
        self._secrets: dict[str, WorkloadSecret] = {}
        self._last_error: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._files_lock = threading.Lock()
        self._configured: Roots | None = None
        self._own_root: x509.Certificate | None = None
        self._root_poll_interval = float(root_poll_interval)
        self._root_file = RootFile(Path(root_certificates_file)) if root_certificates_file is not None else None
        if self._root_file is not None:
            self._publish(configured=self._root_file.read())
        self._wake = asyncio.Event()
        self._changed = asyncio.Event()
        self._stopped = False

    # ---------------------------------------------------------------- state

    @property
    def identity(self) -> SpiffeId:
        """The workload's SPIFFE id."""
        return self._identity

    @property
    def certificate(self) -> WorkloadCertificate | None:
        """The current certificate, or ``None`` before the first one arrived."""
        return self._current

    @property
    def last_error(self) -> str | None:
        """Why the last request failed, or ``None`` when it succeeded."""
        return self._last_error

    # ---------------------------------------------------------------- SecretProvider

    def get_secret(self, name: str) -> WorkloadSecret | None:
        """``default`` (chain and key) or ``ROOTCA`` (roots), or ``None`` when there is none yet.

        ``default`` comes with the first certificate; ``ROOTCA`` with the first certificate, or as soon as
        trusted roots are set (:meth:`set_trusted_roots`, ``root_certificates_file``).
        """
        return self._secrets.get(name)

    def subscribe(self, handler: SecretChangeHandler) -> _Registration:
        """Call ``handler(name)`` when ``default`` or ``ROOTCA`` changes, until the registration is cancelled.

        ``default`` changes with every new certificate; ``ROOTCA`` whenever what it holds changes (see
        :meth:`set_trusted_roots`). Handlers must not block. They run on the client's event loop, except those
        called by :meth:`set_trusted_roots`, which run on the thread that called it.
        """
        registration = _Registration(self, handler)
        with self._lock:
            self._handlers.append(registration)
        return registration

    def _unsubscribe(self, registration: _Registration) -> None:
        with self._lock:
            self._handlers = [kept for kept in self._handlers if kept is not registration]

    def set_trusted_roots(self, pem: bytes | str) -> bool:
        """Trust these roots from now on (the mesh's trust bundle), and tell subscribers if ``ROOTCA`` changed.

        Call it whenever the mesh's roots change, as Istio's agents follow the ``istio-ca-root-cert``
        ConfigMap: during a root rotation a workload must trust the new root before its peers present
        certificates signed by it, which may be before its own renewal, and it must stop trusting a retired
        root. Without trusted roots, ``ROOTCA`` is the roots at the end of the CA's last answer. Once they are
        set, ``ROOTCA`` is exactly these roots, followed by the root that the client's current certificate
        chains to when they lack it (so that the workload always trusts peers certified as it is); the CA's
        answers no longer add their other roots. Each call replaces the roots of the one before, and so does a
        change of ``root_certificates_file``: the last one wins. The roots also verify the CA's server.

        Args:
            pem: one or more PEM certificates (bytes, or ASCII text such as ``TrustBundle.pem()``).

        Returns:
            Whether ``ROOTCA`` changed (subscribers were then told once, and ``root-cert.pem`` was written).

        Raises:
            CertificateClientError: ``pem`` is not PEM text, holds no certificate, or a malformed one; the
                roots trusted before are kept.
        """
        roots = parse_roots(pem, "trusted roots")
        changed = self._publish(configured=roots)
        if changed:
            self._write_roots()
            self._emit(ROOT_SECRET)
        return changed

    def _publish(self, *, certificate: WorkloadCertificate | None = None, configured: Roots | None = None) -> bool:
        """Update the secrets with a new certificate or new trusted roots; return whether ``ROOTCA`` changed."""
        own_root = issuing_root(certificate) if certificate is not None else None
        with self._lock:
            if configured is not None:
                self._configured = configured
            secrets = dict(self._secrets)
            if certificate is not None:
                self._current, self._own_root = certificate, own_root
                secrets[DEFAULT_SECRET] = certificate.tls_secret()
            if self._configured is not None:
                roots: bytes | None = combine(self._configured, self._own_root)
            else:
                roots = self._current.roots_pem if self._current is not None else None
            before = secrets.get(ROOT_SECRET)
            changed = roots is not None and (before is None or before.trusted_ca != roots)
            if roots is not None and changed:
                secrets[ROOT_SECRET] = WorkloadSecret(trusted_ca=roots)
            self._secrets = secrets
        if changed and roots is not None and configured is not None:
            _log.info("%s trusts %d roots now", self._identity, roots.count(b"-----BEGIN CERTIFICATE-----"))
        return changed

    def _write_roots(self) -> None:
        """Write what ``ROOTCA`` holds now into the directory, if there is one (errors are logged)."""
        directory = self._directory
        if directory is None:
            return
        with self._files_lock:
            secret = self._secrets.get(ROOT_SECRET)
            if secret is None:
                return
            try:
                directory.mkdir(mode=_DIRECTORY_MODE, parents=True, exist_ok=True)
                write_atomically(directory / "root-cert.pem", secret.trusted_ca, _FILE_MODE)
            except OSError as error:
                _log.error("cannot write the trusted roots into %s: %s", directory, error)

    def _emit(self, name: str) -> None:
        with self._lock:
            handlers = list(self._handlers)
        for registration in handlers:
            try:
                registration.handler(name)
            except Exception:
                _log.exception("certificate subscriber %r failed on %s", registration.handler, name)

    # ---------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> CertificateClient:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Start getting and renewing the certificate in the background (returns at once).

        Raises:
            CertificateClientError: the client was started before.
        """
        if self._task is not None or self._stopped:
            raise CertificateClientError("a CertificateClient can be started once")
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._run(), name=f"certificate client {self._identity}")
        if self._root_file is not None:
            self._watcher = loop.create_task(
                self._follow(self._root_file), name=f"root file of certificate client {self._identity}"
            )

    async def stop(self) -> None:
        """Stop renewing; the current certificate stays readable. Idempotent."""
        self._stopped = True
        tasks = [task for task in (self._task, self._watcher) if task is not None]
        self._task = self._watcher = None
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def wait_for_certificate(
        self, *, newer_than: WorkloadCertificate | None = None, timeout: float = 30.0
    ) -> WorkloadCertificate:
        """Wait until the client holds a certificate (other than ``newer_than``, when given) and return it.

        Raises:
            TimeoutError: none arrived within ``timeout`` seconds; the message has the last error.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (current := self._current) is None or current is newer_than:
            remaining = deadline - loop.time()
            if remaining <= 0:
                reason = f": {self._last_error}" if self._last_error else ""
                raise TimeoutError(f"no new certificate for {self._identity} within {timeout}s{reason}")
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)
        return current

    async def renew(self, *, timeout: float = 30.0) -> WorkloadCertificate:
        """Renew now, without waiting for the renewal time; return the new certificate.

        Raises:
            CertificateClientError: the client is not running.
            TimeoutError: no new certificate within ``timeout`` seconds.
        """
        if self._task is None:
            raise CertificateClientError("the CertificateClient is not running: call start() first")
        previous = self._current
        self._wake.set()
        return await self.wait_for_certificate(newer_than=previous, timeout=timeout)

    # ---------------------------------------------------------------- the loop

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                certificate = await self._request(failures)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                failures += 1
                self._last_error = _reason(error)
                delay = self._policy.retry_delay(failures)
                _log.warning(
                    "certificate request for %s failed (attempt %d, retrying in %.1fs): %s",
                    self._identity,
                    failures,
                    delay,
                    self._last_error,
                )
            else:
                failures = 0
                self._last_error = None
                await self._install(certificate)
                renew_at = self._policy.renewal_time(issued=certificate.received_at, not_after=certificate.not_after)
                delay = max(MIN_DELAY, (renew_at - datetime.now(UTC)).total_seconds())
                _log.info(
                    "certificate for %s valid until %s; renewing in %.1fs",
                    self._identity,
                    certificate.not_after.isoformat(),
                    delay,
                )
            # A renew() during the request was answered by it: only one from now on asks for another.
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    async def _follow(self, root_file: RootFile) -> None:
        while True:
            await asyncio.sleep(self._root_poll_interval)
            try:
                roots = await asyncio.to_thread(root_file.poll)
                if roots is not None and self._publish(configured=roots):
                    await asyncio.to_thread(self._write_roots)
                    self._emit(ROOT_SECRET)
            except asyncio.CancelledError:
                raise
            except Exception:
                _log.exception("following root_certificates_file %s failed; trying again", root_file.path)

    async def _request(self, failures: int) -> WorkloadCertificate:
        key, csr = await asyncio.to_thread(self._key_and_csr)
        request = _proto.IstioCertificateRequest(csr=csr.decode("ascii"))
        if self._ttl is not None:
            request.validity_duration = max(1, round(self._ttl.total_seconds()))
        if self._impersonate:
            request.metadata.update({IMPERSONATED_IDENTITY: str(self._identity)})
        current = self._current
        # The CA's server is trusted with root_certificates, the trusted roots, and the roots of the last answer
        # (which came over a verified connection), so that the client follows a root rotation.
        configured = self._configured
        roots = self._roots + (to_pem(configured) if configured is not None else b"")
        if current is not None:
            roots += current.roots_pem
        renewal_address = self._renewal_address
        if (
            renewal_address is not None
            and current is not None
            and current.not_after > datetime.now(UTC)
            and failures % 2 == 0  # after a failure with the certificate, try the token
        ):
            target = renewal_address
            credentials = grpc.ssl_channel_credentials(roots, current.private_key_pem, current.certificate_chain_pem)
            metadata = self._metadata
        else:
            target = self._address
            credentials = grpc.ssl_channel_credentials(roots)
            metadata = (*self._metadata, ("authorization", f"Bearer {await self._bearer_token()}"))
        options: list[tuple[str, Any]] = []
        if self._server_name:
            options.append(("grpc.ssl_target_name_override", self._server_name))
        timeout = self._policy.call_timeout.total_seconds()
        async with grpc.aio.secure_channel(target, credentials, options=options) as channel:
            call = channel.unary_unary(
                _proto.CREATE_CERTIFICATE_METHOD,
                request_serializer=_proto.IstioCertificateRequest.SerializeToString,
                response_deserializer=_proto.IstioCertificateResponse.FromString,
            )
            response = await call(request, metadata=metadata, timeout=timeout)
        return accept_response(
            list(response.cert_chain),
            key=key,
            identity=self._identity,
            received_at=datetime.now(UTC),
        )

    def _key_and_csr(self) -> tuple[Any, bytes]:
        try:
            key = generate_private_key(self._key_algorithm)
        except UnsupportedKeyError as error:
            raise CertificateClientError(str(error)) from None
        return key, build_csr(key, self._identity)

    async def _bearer_token(self) -> str:
        if self._token_file is not None:
            path = self._token_file
            try:
                data, _mode = await asyncio.to_thread(read_limited, path)
            except OSError as error:
                raise CertificateClientError(f"cannot read token file {path}: {error.strerror or error}") from None
            text = data.decode("utf-8", "replace").strip()
            if not text:
                raise CertificateClientError(f"token file {path} is empty")
            return text
        token = self._token() if callable(self._token) else self._token
        if not isinstance(token, str) or not token.strip():
            raise CertificateClientError("the token function returned no token")
        return token.strip()

    async def _install(self, certificate: WorkloadCertificate) -> None:
        roots_changed = self._publish(certificate=certificate)
        if self._directory is not None:
            try:
                await asyncio.to_thread(_write_files, self._directory, certificate)
            except OSError as error:
                _log.error("cannot write the certificate files into %s: %s", self._directory, error)
            await asyncio.to_thread(self._write_roots)
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        self._emit(DEFAULT_SECRET)
        if roots_changed:
            self._emit(ROOT_SECRET)


def _write_files(directory: Path, certificate: WorkloadCertificate) -> None:
    directory.mkdir(mode=_DIRECTORY_MODE, parents=True, exist_ok=True)
    write_atomically(directory / "key.pem", certificate.private_key_pem, _FILE_MODE)
    write_atomically(directory / "cert-chain.pem", certificate.certificate_chain_pem, _FILE_MODE)


def _reason(error: BaseException) -> str:
    if isinstance(error, grpc.aio.AioRpcError):
        return f"the CA answered {error.code().name}: {error.details() or 'no details'}"
    if isinstance(error, DecodeError):
        return "the CA's answer is not an IstioCertificateResponse"
    if isinstance(error, CaError):
        return str(error)
    return f"{type(error).__name__}: {error}"
