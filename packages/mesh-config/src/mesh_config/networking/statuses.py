"""The HTTP and gRPC status tables Istio checks routes against and translates them with.

Validation checks ``retryOn`` and fault ``grpcStatus`` against them; mesh_xds translates routes with them.
"""

from __future__ import annotations

from typing import Final

HTTP_STATUS_CODES: Final = frozenset(
    (100, 101, 102, 103, *range(200, 209), 226, *range(300, 306), 307, 308, *range(400, 419), *range(421, 427))
) | {428, 429, 431, 451, *range(500, 509), 510, 511}
"""The status codes Go's net/http names (``http.StatusText``): the integers Istio accepts in ``retryOn``."""

GRPC_STATUS_NAMES: Final = (
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
)
"""The gRPC status names, at the index of their code (``grpc.SupportedGRPCStatus``)."""
