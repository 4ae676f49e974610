"""Secrets for SDS: the :class:`SecretProvider` protocol, and an in-memory provider.

``mesh_xds`` never imports ``mesh_ca``: a certificate client satisfies :class:`SecretProvider`
structurally. It answers :meth:`~SecretProvider.get_secret` with anything that has the three byte-string
attributes of :class:`SecretData` (or with a ready ``envoy...tls.v3.Secret`` message), and tells its
subscribers "secret X changed" when it rotates a certificate; the SDS server then pushes the new secret
to every client that asked for it.

Istio's names: ``default`` is the workload's certificate and key, ``ROOTCA`` the trusted roots.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol, final, runtime_checkable

import attrs
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from google.protobuf.message import Message

from mesh_model import Subscription
from mesh_model.subscribers import Handlers
from mesh_xds._text import describe
from mesh_xds.errors import InvalidResourceError
from mesh_xds.resource import SECRET_TYPE, Resource, pack

__all__ = [
    "InMemorySecretProvider",
    "SecretChangeHandler",
    "SecretData",
    "SecretProvider",
    "TlsSecret",
    "secret_resource",
]

_log = logging.getLogger("mesh_xds.secret")

SecretChangeHandler = Callable[[str], None]
"""Called with the name of a secret that changed (appeared, rotated or went away)."""


@runtime_checkable
class SecretData(Protocol):
    """Key material in PEM: a certificate chain with its key, or trusted roots (one of the two)."""

    @property
    def certificate_chain(self) -> bytes:
        """The certificate chain, leaf first; empty for a roots-only secret."""

    @property
    def private_key(self) -> bytes:
        """The leaf's private key; empty for a roots-only secret."""

    @property
    def trusted_ca(self) -> bytes:
        """Trusted root certificates; empty for a certificate secret."""


@runtime_checkable
class SecretProvider(Protocol):
    """Where an SDS server gets secrets from (a certificate client, a file watcher, ...)."""

    def get_secret(self, name: str) -> SecretData | Message | None:
        """The secret called ``name`` now, or ``None`` when there is none (yet).

        Called on the server's event loop: it must not block. A provider that must first create the
        secret (sign a CSR) returns ``None``, starts the work, and tells its subscribers when it is ready.
        """

    def subscribe(self, handler: SecretChangeHandler) -> Subscription:
        """Call ``handler(name)`` whenever a secret changes, from any thread, until cancelled."""


@final
@attrs.frozen
class TlsSecret:
    """A :class:`SecretData` value.

    Attributes:
        certificate_chain: PEM certificates, leaf first.
        private_key: the PEM private key of the leaf.
        trusted_ca: PEM trusted roots.
    """

    certificate_chain: bytes = attrs.field(default=b"", repr=False)
    private_key: bytes = attrs.field(default=b"", repr=False)
    trusted_ca: bytes = attrs.field(default=b"", repr=False)

    def __repr__(self) -> str:  # never show key material
        parts = [name for name in ("certificate_chain", "private_key", "trusted_ca") if getattr(self, name)]
        return f"TlsSecret({', '.join(parts) or 'empty'})"


def secret_resource(name: str, secret: SecretData | Message) -> Resource:
    """Pack a secret as an SDS resource called ``name``.

    A :class:`SecretData` with a certificate chain and a key becomes a ``tls_certificate`` secret; one with
    only trusted roots becomes a ``validation_context`` secret. A ``Secret`` message is packed as it is,
    renamed to ``name``.

    Raises:
        InvalidResourceError: the secret has both or neither kinds of material, a chain without a key, or
            is a message of another type.
    """
    if isinstance(secret, Message):
        if secret.DESCRIPTOR.full_name != secret_pb2.Secret.DESCRIPTOR.full_name:
            raise InvalidResourceError(
                f"secret {describe(name)}: expected an {SECRET_TYPE} message, got a {secret.DESCRIPTOR.full_name}"
            )
        message: Any = secret_pb2.Secret()
        message.CopyFrom(secret)
        message.name = name
        return pack(message)
    chain, key, roots = bytes(secret.certificate_chain), bytes(secret.private_key), bytes(secret.trusted_ca)
    message = secret_pb2.Secret(name=name)
    if chain and key and not roots:
        message.tls_certificate.certificate_chain.inline_bytes = chain
        message.tls_certificate.private_key.inline_bytes = key
    elif roots and not chain and not key:
        message.validation_context.trusted_ca.inline_bytes = roots
    else:
        given = [label for label, value in (("a chain", chain), ("a key", key), ("roots", roots)) if value]
        raise InvalidResourceError(
            f"secret {describe(name)} has {' and '.join(given) or 'nothing'}; "
            "expected a certificate chain with its key, or trusted roots alone"
        )
    return pack(message)


@final
class InMemorySecretProvider:
    """A :class:`SecretProvider` whose secrets are set by calling its methods (thread-safe).

    Example::

        secrets = InMemorySecretProvider()
        secrets.set_secret("default", TlsSecret(certificate_chain=chain_pem, private_key=key_pem))
        secrets.set_secret("ROOTCA", TlsSecret(trusted_ca=roots_pem))
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._secrets: dict[str, SecretData | Message] = {}
        self._handlers = Handlers[str](logger=_log, source="secret", describe=describe)

    def set_secret(self, name: str, secret: SecretData | Message) -> None:
        """Add or replace a secret and tell the subscribers.

        Raises:
            InvalidResourceError: the secret cannot be served (see :func:`secret_resource`).
        """
        secret_resource(name, secret)  # refuse what could not be served, here rather than in the server
        with self._lock:
            self._secrets[name] = secret
        self._handlers.emit(name)

    def remove_secret(self, name: str) -> bool:
        """Remove a secret and tell the subscribers; return whether it existed."""
        with self._lock:
            existed = self._secrets.pop(name, None) is not None
        if existed:
            self._handlers.emit(name)
        return existed

    def get_secret(self, name: str) -> SecretData | Message | None:
        """The secret called ``name``, or ``None``."""
        with self._lock:
            return self._secrets.get(name)

    def subscribe(self, handler: SecretChangeHandler) -> Subscription:
        """Call ``handler(name)`` after every change, until the subscription is cancelled."""
        return self._handlers.add(handler)
