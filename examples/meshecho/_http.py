"""Just enough HTTP/1.1 for the echo app: reading requests, writing responses, and a one-shot client."""

from __future__ import annotations

import asyncio
import dataclasses
import http.client
import json
from collections.abc import Mapping
from typing import Any, final

MAX_HEAD = 64 * 1024
MAX_BODY = 1024 * 1024


@final
class HttpError(Exception):
    """A message that cannot be read; a server answers ``status`` with the message and closes the connection."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@final
@dataclasses.dataclass(frozen=True)
class Request:
    """One request: lower-cased header names, repeated headers joined with ``", "``."""

    method: str
    target: str
    version: str
    headers: dict[str, str]
    body: bytes

    @property
    def keep_alive(self) -> bool:
        """Whether the connection stays open after the answer (HTTP/1.1 unless ``Connection: close``)."""
        tokens = {token.strip().lower() for token in self.headers.get("connection", "").split(",")}
        return "keep-alive" in tokens if self.version == "HTTP/1.0" else "close" not in tokens


async def read_request(reader: asyncio.StreamReader) -> Request | None:
    """The next request on a connection, or None once the client closed it between requests.

    Raises:
        HttpError: the request is malformed or too large.
        asyncio.IncompleteReadError: the client went away in the middle of the body.
    """
    lines = await _read_head(reader)
    if lines is None:
        return None
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[0].isalpha() or parts[2] not in {"HTTP/1.0", "HTTP/1.1"}:
        raise HttpError(f"malformed request line {lines[0][:200]!r}: expected 'METHOD TARGET HTTP/1.1'")
    headers = _parse_headers(lines[1:])
    return Request(parts[0].upper(), parts[1], parts[2], headers, await _read_body(reader, headers))


def render_response(status: int, payload: Mapping[str, Any], *, keep_alive: bool, head: bool = False) -> bytes:
    """An HTTP/1.1 response carrying ``payload`` as JSON (no body for HEAD, 204 and 304)."""
    reason = http.client.responses.get(status, "Unknown")
    body = b"" if status in {204, 304} else json.dumps(payload, indent=2).encode() + b"\n"
    lines = [f"HTTP/1.1 {status} {reason}", "content-type: application/json", f"content-length: {len(body)}"]
    if not keep_alive:
        lines.append("connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (b"" if head else body)


async def fetch(host: str, port: int, target: str, headers: Mapping[str, str], *, timeout: float) -> tuple[int, bytes]:
    """Send one GET over a fresh connection (no proxy) and return the status and the body.

    Raises:
        OSError: no connection.
        TimeoutError: no complete answer within ``timeout`` seconds.
        HttpError: the answer is not HTTP/1.x.
        asyncio.IncompleteReadError: the server closed the connection in the middle of the answer.
    """
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(host, port, limit=MAX_HEAD)
        try:
            head = "".join(f"{name}: {value}\r\n" for name, value in {**headers, "connection": "close"}.items())
            writer.write(f"GET {target} HTTP/1.1\r\n{head}\r\n".encode("latin-1"))
            await writer.drain()
            lines = await _read_head(reader) or ["(nothing)"]
            status = lines[0].split(" ")
            if (
                len(status) < 2
                or not status[0].startswith("HTTP/1.")
                or not (status[1].isascii() and status[1].isdigit())
            ):
                raise HttpError(f"{host}:{port} answered {lines[0][:100]!r}, not HTTP/1.x", 502)
            response_headers = _parse_headers(lines[1:])
            if "content-length" in response_headers or "transfer-encoding" in response_headers:
                return int(status[1]), await _read_body(reader, response_headers)
            return int(status[1]), await reader.read(MAX_BODY)
        finally:
            writer.close()


async def _read_head(reader: asyncio.StreamReader) -> list[str] | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as error:
        if error.partial.strip():
            raise HttpError("the connection closed in the middle of the message head") from None
        return None
    except asyncio.LimitOverrunError:
        raise HttpError(f"the message head is larger than {MAX_HEAD} bytes", 431) from None
    return head.decode("latin-1").split("\r\n")[:-2]


def _parse_headers(lines: list[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in lines:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip() or "\r" in line or "\n" in line:
            raise HttpError(f"malformed header line {line[:200]!r}: expected 'Name: value'")
        name = name.lower()
        headers[name] = f"{headers[name]}, {value.strip()}" if name in headers else value.strip()
    return headers


async def _read_body(reader: asyncio.StreamReader, headers: Mapping[str, str]) -> bytes:
    if "transfer-encoding" in headers:
        if headers["transfer-encoding"].lower() != "chunked":
            raise HttpError(f"unsupported transfer-encoding {headers['transfer-encoding']!r}", 501)
        return await _read_chunked(reader)
    length = headers.get("content-length", "0")
    if not (length.isascii() and length.isdigit()):
        raise HttpError(f"content-length {length!r} is not a number of bytes")
    if int(length) > MAX_BODY:
        raise HttpError(f"the body is larger than {MAX_BODY} bytes", 413)
    return await reader.readexactly(int(length))


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while True:
        size_text = (await _read_line(reader)).split(b";")[0].strip()
        if not size_text or any(char not in b"0123456789abcdefABCDEF" for char in size_text):
            raise HttpError(f"malformed chunk size {size_text[:20]!r}")
        size = int(size_text, 16)
        if len(body) + size > MAX_BODY:
            raise HttpError(f"the body is larger than {MAX_BODY} bytes", 413)
        if size == 0:
            while await _read_line(reader):  # trailers, which the app ignores
                pass
            return bytes(body)
        body += await reader.readexactly(size)
        if await reader.readexactly(2) != b"\r\n":
            raise HttpError("a chunk does not end with CRLF")


async def _read_line(reader: asyncio.StreamReader) -> bytes:
    try:
        return (await reader.readuntil(b"\r\n"))[:-2]
    except asyncio.LimitOverrunError:
        raise HttpError(f"a chunk line is longer than {MAX_HEAD} bytes") from None
