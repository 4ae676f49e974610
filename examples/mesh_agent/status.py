"""The agent's status port (Istio's 15020): ``/healthz/ready`` answers 200 when the workload can take traffic.

:class:`StatusServer` is a small HTTP/1.1 server on asyncio that asks a readiness function on every request
and answers with a JSON body saying why (``{"ready": false, "reasons": [...], ...}``), 200 when ready and
503 otherwise, as a Kubernetes readiness probe expects. :func:`envoy_admin_ready` asks Envoy's admin
interface whether Envoy itself is ``LIVE``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, final

import attrs

__all__ = ["READY_PATH", "Readiness", "StatusServer", "envoy_admin_ready"]

_log = logging.getLogger("mesh_agent.status")

READY_PATH: Final = "/healthz/ready"
"""The readiness path, as Istio's agent serves it on port 15020."""
_MAX_HEAD: Final = 16 * 1024
_READ_TIMEOUT: Final = 10.0
_NO_PROXY: Final = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_REASONS: Final = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    503: "Service Unavailable",
}


@final
@attrs.frozen
class Readiness:
    """Whether the workload is ready, and why not.

    Attributes:
        reasons: what keeps it from being ready; empty when ready.
        details: more facts for the JSON body (Envoy's state, the certificate's identity and expiry, ...).
    """

    reasons: tuple[str, ...] = ()
    details: Mapping[str, Any] = attrs.field(factory=dict)

    @property
    def ready(self) -> bool:
        """True when nothing keeps the workload from being ready."""
        return not self.reasons

    def to_json(self) -> dict[str, Any]:
        """The JSON body of a readiness answer."""
        return {"ready": self.ready, "reasons": list(self.reasons), **self.details}


ReadinessCheck = Callable[[], Awaitable[Readiness]]


def _admin_get(url: str, timeout: float) -> tuple[int, str]:
    try:
        with _NO_PROXY.open(urllib.request.Request(url), timeout=timeout) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read().decode("utf-8", "replace")


async def envoy_admin_ready(admin_address: str, *, timeout: float = 2.0) -> str | None:
    """Ask Envoy's admin ``/ready``; ``None`` when Envoy is ``LIVE``, else why it is not.

    Args:
        admin_address: the admin interface's ``host:port``.
        timeout: seconds to wait for the answer.
    """
    try:
        status, body = await asyncio.to_thread(_admin_get, f"http://{admin_address}/ready", timeout)
    except (OSError, ValueError) as error:
        reason = getattr(error, "reason", None) or error
        return f"Envoy's admin interface at {admin_address} does not answer: {reason}"
    state = body.strip() or "no state"
    if status == 200 and state == "LIVE":
        return None
    return f"Envoy is not ready: its admin /ready answered {status} {state}"


@final
class StatusServer:
    """Serves ``/healthz/ready`` over HTTP/1.1 from a readiness function.

    Args:
        check: called on every readiness request.
        host: the address to bind.
        port: the port to bind; 0 picks a free one.
    """

    def __init__(self, check: ReadinessCheck, *, host: str, port: int) -> None:
        self._check = check
        self._host = host
        self._port = port
        self._server: asyncio.Server | None = None

    @property
    def address(self) -> str:
        """``host:port`` served (the bound port once started)."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"{host}:{self._port}"

    async def start(self) -> None:
        """Bind and serve.

        Raises:
            OSError: the address cannot be bound.
        """
        self._server = await asyncio.start_server(self._serve, self._host, self._port, limit=_MAX_HEAD)
        self._port = self._server.sockets[0].getsockname()[1]
        _log.info("serving readiness on http://%s%s", self.address, READY_PATH)

    async def stop(self) -> None:
        """Stop serving; idempotent."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 5.0)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _READ_TIMEOUT)
            status, body, method = await self._answer(head)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
            writer.close()
            return
        payload = json.dumps(body, indent=2).encode() + b"\n"
        header = (
            f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"
        )
        try:
            writer.write(header.encode() + (b"" if method == "HEAD" else payload))
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def _answer(self, head: bytes) -> tuple[int, dict[str, Any], str]:
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = request_line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            return 400, {"error": "not an HTTP/1.x request"}, "GET"
        method, target, _version = parts
        path = target.split("?", 1)[0]
        if path != READY_PATH:
            return 404, {"error": f"no such path {path!r}; try {READY_PATH}"}, method
        if method not in ("GET", "HEAD"):
            return 405, {"error": f"{READY_PATH} answers GET and HEAD, not {method}"}, method
        try:
            readiness = await self._check()
        except Exception as error:
            _log.exception("the readiness check failed")
            readiness = Readiness((f"the readiness check failed: {type(error).__name__}: {error}",))
        return (200 if readiness.ready else 503), readiness.to_json(), method
