"""The Istio CA API: ``istio.v1.auth.IstioCertificateService/CreateCertificate`` on ``grpc.aio``, over TLS.

:class:`CaServer` answers Istio's node agents (and :class:`~mesh_ca.CertificateClient`) as istiod does on
port 15012: it authenticates the caller, takes the identity from the authentication (or from the
``ImpersonatedIdentity`` metadata, for callers on the allow-list), signs the CSR's key, and answers with the
chain, leaf first and root last, one PEM per element.

Its TLS certificate is issued by the CA itself for the server's DNS names and IP addresses, and replaced at
half of its lifetime or when the CA's roots change, without a restart. It listens on up to two addresses:

* ``address``, plain TLS: callers authenticate with a bearer token (or whatever the authenticators accept);
* ``mtls_address``, mutual TLS: a client certificate issued by the CA is required, and renewals authenticate
  with it. (gRPC in Python cannot ask for an optional client certificate, so the two are separate ports.)

Errors map to gRPC status codes with a message the caller can act on, never describing the CA's internals:
``UNAUTHENTICATED`` (no or bad credentials), ``PERMISSION_DENIED`` (a name or impersonation the caller may
not have), ``INVALID_ARGUMENT`` (a malformed request, CSR or TTL), ``UNAVAILABLE`` (the CA cannot sign now).

Example::

    authority = CertificateAuthority.self_signed(None)
    server = CaServer(
        authority,
        authenticators=[
            CertificateAuthenticator(authority.trust_bundle),
            JwtAuthenticator(
                [JwtIssuer("https://issuer.example", jwks_file="jwks.json")], trust_domain="cluster.local"
            ),
        ],
    )
    port = await server.start("127.0.0.1:15012", mtls_address="127.0.0.1:15013")
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, Final, final

import grpc
from cryptography import x509
from google.protobuf.message import DecodeError

from mesh_ca import _proto
from mesh_ca._serving import ServingIdentity, check_names
from mesh_ca._text import describe
from mesh_ca._x509 import pem
from mesh_ca.authn import (
    Authenticator,
    Caller,
    CallerCredentials,
    CertificateAuthenticator,
    ImpersonationAllowList,
    authenticate,
)
from mesh_ca.authority import CertificateAuthority
from mesh_ca.errors import CaConfigError, CaError, CsrError, ErrorKind, TtlError
from mesh_model import InvalidSpiffeIdError, SpiffeId

__all__ = ["CaServer", "status_code"]

_log = logging.getLogger("mesh_ca.server")

IMPERSONATED_IDENTITY: Final = "ImpersonatedIdentity"
CERT_SIGNER: Final = "CertSigner"
DEFAULT_MAX_REQUEST_BYTES: Final = 64 * 1024
"""A CSR is about 1 KB; a request over this size ends with ``RESOURCE_EXHAUSTED``."""
_MAX_TTL_SECONDS: Final = 100 * 365 * 86400

_CODES: Final = {
    ErrorKind.CSR: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorKind.TTL: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorKind.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorKind.IDENTITY: grpc.StatusCode.PERMISSION_DENIED,
    ErrorKind.VERIFICATION: grpc.StatusCode.UNAUTHENTICATED,
    ErrorKind.NOT_READY: grpc.StatusCode.UNAVAILABLE,
    ErrorKind.ILLEGAL_CONFIG: grpc.StatusCode.INTERNAL,
}


class _RequestError(CaError):
    """The request itself is malformed (``INVALID_ARGUMENT``)."""

    kind = ErrorKind.INVALID_ARGUMENT


def status_code(error: CaError) -> grpc.StatusCode:
    """The gRPC status code for a CA error, from its :class:`~mesh_ca.ErrorKind`."""
    return _CODES.get(error.kind, grpc.StatusCode.INTERNAL)


def _public_message(error: CaError) -> str:
    if error.kind is ErrorKind.ILLEGAL_CONFIG:
        return "the CA cannot issue certificates at the moment"
    return str(error)


def _credentials(context: Any) -> CallerCredentials:
    metadata = tuple((str(key), value) for key, value in (context.invocation_metadata() or ()))
    certificates = (context.auth_context() or {}).get("x509_pem_cert") or []
    return CallerCredentials.of(
        metadata, peer_certificate=certificates[0] if certificates else b"", peer=context.peer()
    )


@final
class CaServer:
    """Serves Istio's ``IstioCertificateService`` for a :class:`~mesh_ca.CertificateAuthority`.

    Args:
        authority: the CA that signs.
        authenticators: tried in order, the first to accept a call decides; by default only
            :class:`~mesh_ca.CertificateAuthenticator` (renewals over mutual TLS). Add a
            :class:`~mesh_ca.JwtAuthenticator` for first certificates.
        impersonation: the callers allowed to ask for another identity; nobody by default.
        dns_names: the names clients dial the server by, for its certificate.
        ip_addresses: the IP addresses clients dial, for its certificate.
        server_certificate_ttl: the lifetime of the server's certificate (renewed at half of it).
        max_request_bytes: the largest request accepted.
        grpc_options: more options for ``grpc.aio.server``.

    Raises:
        CaConfigError: an argument is unusable.
    """

    def __init__(
        self,
        authority: CertificateAuthority,
        *,
        authenticators: Sequence[Authenticator] | None = None,
        impersonation: ImpersonationAllowList | None = None,
        dns_names: Sequence[str] = ("localhost",),
        ip_addresses: Sequence[str] = ("127.0.0.1",),
        server_certificate_ttl: timedelta = timedelta(hours=24),
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        grpc_options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        if not isinstance(authority, CertificateAuthority):
            raise CaConfigError(f"authority must be a CertificateAuthority, not {describe(authority)}")
        if authenticators is None:
            authenticators = (CertificateAuthenticator(authority.trust_bundle, intermediates=authority.intermediates),)
        bad = [item for item in authenticators if not isinstance(item, Authenticator)]
        if bad:
            raise CaConfigError(f"authenticators must have an authenticate() method; {describe(bad[0])} has none")
        if impersonation is not None and not isinstance(impersonation, ImpersonationAllowList):
            raise CaConfigError(f"impersonation must be an ImpersonationAllowList, not {describe(impersonation)}")
        if not isinstance(max_request_bytes, int) or max_request_bytes < 1024:
            raise CaConfigError(f"max_request_bytes must be at least 1024, not {describe(max_request_bytes)}")
        if not isinstance(server_certificate_ttl, timedelta) or server_certificate_ttl < timedelta(seconds=2):
            raise CaConfigError(
                f"server_certificate_ttl must be at least 2 seconds, not {describe(server_certificate_ttl)}"
            )
        self._authority = authority
        self._authenticators = tuple(authenticators)
        self._impersonation = impersonation if impersonation is not None else ImpersonationAllowList()
        self._dns_names, self._ip_addresses = check_names(dns_names, ip_addresses)
        self._server_certificate_ttl = server_certificate_ttl
        self._max_request_bytes = max_request_bytes
        self._grpc_options = tuple(grpc_options)
        self._server: grpc.aio.Server | None = None
        self._serving: ServingIdentity | None = None
        self._address = ""
        self._mtls_address = ""
        self._stopped = False
        self._roots: tuple[tuple[x509.Certificate, ...], tuple[str, ...]] = ((), ())  # the roots, and in PEM

    # ---------------------------------------------------------------- properties

    @property
    def authority(self) -> CertificateAuthority:
        """The CA that signs."""
        return self._authority

    @property
    def address(self) -> str:
        """The TLS address served, with its bound port (empty before :meth:`start`)."""
        return self._address

    @property
    def mtls_address(self) -> str:
        """The mutual TLS address served, with its bound port (empty when not served)."""
        return self._mtls_address

    @property
    def port(self) -> int:
        """The bound TLS port (0 before :meth:`start`)."""
        return int(self._address.rpartition(":")[2] or 0)

    @property
    def mtls_port(self) -> int:
        """The bound mutual TLS port (0 when not served)."""
        return int(self._mtls_address.rpartition(":")[2] or 0)

    @property
    def server_certificate_chain(self) -> bytes:
        """The server's current certificate chain, PEM, leaf first (empty before :meth:`start`)."""
        return self._serving.chain_pem if self._serving is not None else b""

    # ---------------------------------------------------------------- lifecycle

    async def start(self, address: str = "127.0.0.1:0", *, mtls_address: str | None = None) -> int:
        """Serve on ``address`` (TLS) and, if given, ``mtls_address`` (mutual TLS); return the TLS port.

        Args:
            address: ``host:port``; port 0 picks a free one.
            mtls_address: ``host:port`` for renewals with a client certificate; not served when ``None``.

        Raises:
            CaConfigError: the server was started before, or an address cannot be bound.
        """
        if self._server is not None or self._stopped:
            raise CaConfigError("a CaServer can be started once")
        serving = ServingIdentity(
            self._authority,
            dns_names=self._dns_names,
            ip_addresses=self._ip_addresses,
            ttl=self._server_certificate_ttl,
        )
        options = [
            ("grpc.max_receive_message_length", self._max_request_bytes),
            ("grpc.so_reuseport", 0),
            *self._grpc_options,
        ]
        server = grpc.aio.server(options=options)
        # Bytes in, bytes out: the request is decoded in the handler, so that garbage gets INVALID_ARGUMENT.
        handler: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_unary_rpc_method_handler(self._handle)
        server.add_generic_rpc_handlers(
            [grpc.method_handlers_generic_handler(_proto.SERVICE_NAME, {"CreateCertificate": handler})]
        )
        bound: list[tuple[str, int]] = []
        try:
            for target, mutual in ((address, False), (mtls_address, True)):
                if target is None:
                    continue
                credentials = serving.credentials(require_client_certificate=mutual)
                try:
                    port = server.add_secure_port(target, credentials)
                except RuntimeError as error:
                    raise CaConfigError(f"cannot bind {describe(target)}: {error}") from None
                bound.append((target, port))
        except BaseException:
            serving.close()
            raise
        await server.start()
        self._server, self._serving = server, serving
        self._address = f"{address.rpartition(':')[0]}:{bound[0][1]}"
        if mtls_address is not None:
            self._mtls_address = f"{mtls_address.rpartition(':')[0]}:{bound[1][1]}"
        _log.info("serving %s on %s (TLS) %s", _proto.SERVICE_NAME, self._address, self._mtls_address or "")
        return self.port

    async def stop(self, grace: float | None = 1.0) -> None:
        """Stop serving; calls in progress get ``grace`` seconds. Idempotent."""
        self._stopped = True
        server, self._server = self._server, None
        if self._serving is not None:
            self._serving.close()
        if server is not None:
            await server.stop(grace)

    async def __aenter__(self) -> CaServer:
        if self._server is None:
            await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    # ---------------------------------------------------------------- the API

    async def _handle(self, request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        try:
            credentials = _credentials(context)
            response = self.create_certificate(request, credentials)
        except CaError as error:
            code = status_code(error)
            _log.warning("CreateCertificate from %s refused (%s): %s", context.peer(), code.name, error)
            await context.abort(code, _public_message(error))
        except Exception:
            _log.exception("CreateCertificate from %s failed", context.peer())
            await context.abort(grpc.StatusCode.INTERNAL, "the CA failed to handle the request")
        serialized: bytes = response.SerializeToString()
        return serialized

    def create_certificate(self, request: bytes | Any, credentials: CallerCredentials) -> Any:
        """Handle one ``CreateCertificate`` call, without the transport.

        Args:
            request: an ``IstioCertificateRequest``, or its serialized bytes.
            credentials: what the call presented.

        Returns:
            The ``IstioCertificateResponse``.

        Raises:
            CaError: the call is refused; :func:`status_code` gives its gRPC code. An
                :class:`~mesh_ca.AuthenticationError` comes first, before anything of the request is read.
        """
        caller = authenticate(self._authenticators, credentials)
        message = _parse(request)
        identities = self._identities(caller, message)
        ttl = _ttl(message.validity_duration)
        if not message.csr:
            raise CsrError("the request has no CSR (field 'csr' is empty)")
        issued = self._authority.sign_csr(message.csr, identities, ttl=ttl)
        if _log.isEnabledFor(logging.INFO):  # the arguments take time to build: only when the line is logged
            _log.info(
                "issued certificate %x for %s to %s (%s: %s), valid until %s",
                issued.serial_number,
                ", ".join(str(identity) for identity in identities),
                credentials.peer or "a caller",
                caller.source.value,
                caller.detail,
                issued.not_after.isoformat(),
            )
        return _proto.IstioCertificateResponse(cert_chain=self._answer(issued.chain_pem))

    def _answer(self, chain: tuple[str, ...]) -> list[str]:
        """The chain with every other trusted root before its own root, which stays last (as Istio's answer)."""
        roots = self._authority.roots
        if roots is not self._roots[0]:  # the roots changed (or this is the first call): encode them once
            self._roots = (roots, tuple(pem(cert) for cert in roots))
        others = [root for root in self._roots[1] if root not in chain]
        return [*chain[:-1], *others, chain[-1]]

    def _identities(self, caller: Caller, message: Any) -> tuple[SpiffeId, ...]:
        fields = message.metadata.fields if message.HasField("metadata") else {}
        if CERT_SIGNER in fields:
            raise _RequestError(f"this CA has no named signers: leave the {CERT_SIGNER!r} metadata out")
        if IMPERSONATED_IDENTITY not in fields:
            return caller.identities
        value = fields[IMPERSONATED_IDENTITY]
        if value.WhichOneof("kind") != "string_value":
            raise _RequestError(f"the {IMPERSONATED_IDENTITY!r} metadata must be a string (a SPIFFE id)")
        try:
            requested = SpiffeId.parse(value.string_value)
        except InvalidSpiffeIdError as error:
            raise _RequestError(f"the {IMPERSONATED_IDENTITY!r} metadata: {error}") from None
        return (self._impersonation.authorize(caller, requested),)


def _parse(request: bytes | Any) -> Any:
    if isinstance(request, bytes):
        try:
            return _proto.IstioCertificateRequest.FromString(request)
        except DecodeError:
            raise _RequestError("the request is not an istio.v1.auth.IstioCertificateRequest") from None
    if getattr(request, "DESCRIPTOR", None) is not _proto.IstioCertificateRequest.DESCRIPTOR:
        raise _RequestError(f"expected an IstioCertificateRequest, not {describe(request)}")
    return request


def _ttl(seconds: int) -> timedelta | None:
    if seconds == 0:
        return None  # Istio: no requested lifetime means the CA's default
    if seconds < 0:
        raise TtlError(f"validity_duration must not be negative, got {seconds} seconds")
    if seconds > _MAX_TTL_SECONDS:
        raise TtlError(f"validity_duration of {seconds} seconds is far over any lifetime the CA issues")
    return timedelta(seconds=seconds)
