"""meshd's debug port: a small HTTP/1.1 server on asyncio that answers GET (and HEAD) from a table of pages.

Each page is a function called on every request, returning a :class:`Page`; a page that fails answers 500
and is logged. Unknown paths answer 404 with the list of pages.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any, Final, final

import attrs

__all__ = ["DebugServer", "Page", "json_page"]

_log = logging.getLogger("meshd.debug")

_MAX_HEAD: Final = 16 * 1024
_READ_TIMEOUT: Final = 10.0
_REASONS: Final = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


@final
@attrs.frozen
class Page:
    """An answer: its status, content type and body."""

    status: int
    content_type: str
    body: bytes


def json_page(data: Any, status: int = 200) -> Page:
    """A JSON answer."""
    return Page(status, "application/json", json.dumps(data, indent=2, sort_keys=False).encode() + b"\n")


Handler = Callable[[], Page]


@final
class DebugServer:
    """Serves ``pages`` (path to handler) over HTTP/1.1, one request per connection.

    Args:
        pages: the handler of each path (``/ready``, ``/metrics``, ...).
    """

    def __init__(self, pages: Mapping[str, Handler]) -> None:
        self._pages = dict(pages)
        self._server: asyncio.Server | None = None
        self._address = ""

    @property
    def address(self) -> str:
        """``host:port`` served, with the bound port (empty before :meth:`start`)."""
        return self._address

    async def start(self, host: str, port: int) -> str:
        """Bind and serve; return the address served.

        Raises:
            OSError: the address cannot be bound.
        """
        self._server = await asyncio.start_server(self._serve, host, port, limit=_MAX_HEAD)
        bound = self._server.sockets[0].getsockname()[1]
        self._address = f"[{host}]:{bound}" if ":" in host else f"{host}:{bound}"
        _log.info("serving debug pages on http://%s", self._address)
        return self._address

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
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
            writer.close()
            return
        method, page = self._answer(head)
        header = (
            f"HTTP/1.1 {page.status} {_REASONS.get(page.status, 'Unknown')}\r\n"
            f"Content-Type: {page.content_type}\r\nContent-Length: {len(page.body)}\r\n"
            "Cache-Control: no-store\r\nConnection: close\r\n\r\n"
        )
        try:
            writer.write(header.encode() + (b"" if method == "HEAD" else page.body))
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    def _answer(self, head: bytes) -> tuple[str, Page]:
        parts = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            return "GET", json_page({"error": "not an HTTP/1.x request"}, 400)
        method, target, _version = parts
        if method not in ("GET", "HEAD"):
            return method, json_page({"error": f"method {method} is not allowed: use GET"}, 405)
        path = target.split("?", 1)[0]
        handler = self._pages.get(path)
        if handler is None:
            return method, json_page({"error": f"no page {path}", "pages": sorted(self._pages)}, 404)
        try:
            return method, handler()
        except Exception:
            _log.exception("debug page %s failed", path)
            return method, json_page({"error": f"page {path} failed; see meshd's log"}, 500)
