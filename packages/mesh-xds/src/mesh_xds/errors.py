"""Errors raised by mesh_xds.

Every error the package raises derives from one root, so a caller can catch them all::

    XdsError
     +-- InvalidResourceError (also a ValueError): a resource, type URL, resource set or secret is malformed
     +-- InconsistentSnapshotError (also a ValueError): a snapshot refers to resources it does not hold
     +-- ProtocolError: a client broke the xDS protocol; carries the gRPC status the server answers with
     +-- ServerError: a server was used out of order (started twice, an address it cannot bind)
     +-- ClientError: the test client's stream ended or was used wrongly (``mesh_xds.testing``)

Messages always quote the offending value (shortened when it is very long), so that the user can find it.
Waiting helpers raise the builtin :class:`TimeoutError` with a description of what was awaited.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc

if TYPE_CHECKING:
    from mesh_xds.snapshot import MissingReference

__all__ = [
    "ClientError",
    "InconsistentSnapshotError",
    "InvalidResourceError",
    "ProtocolError",
    "ServerError",
    "XdsError",
]


class XdsError(Exception):
    """The root of every error raised by mesh_xds."""


class InvalidResourceError(XdsError, ValueError):
    """A resource, a type URL, a set of resources or a secret is malformed."""


class InconsistentSnapshotError(XdsError, ValueError):
    """A snapshot refers to resources it does not hold.

    Attributes:
        missing: every missing reference, with the resources that make it.
    """

    def __init__(self, message: str, missing: tuple[MissingReference, ...]) -> None:
        super().__init__(message)
        self.missing = missing


class ProtocolError(XdsError):
    """A client broke the xDS protocol; the server ends its stream with :attr:`code`.

    Attributes:
        code: the gRPC status code the stream ends with.
    """

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class ServerError(XdsError):
    """A server was used out of order, or could not bind its address."""


class ClientError(XdsError):
    """The test client's stream ended, or the client was used wrongly.

    Attributes:
        code: the gRPC status the stream ended with, ``None`` when it did not end with one.
    """

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.code = code
