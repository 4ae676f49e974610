"""The echo app: an HTTP server that answers with who it is and what it saw, and calls its dependencies."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import math
import re
import urllib.parse
from collections.abc import Iterable, Mapping
from fractions import Fraction
from typing import Any, Self, final

from meshecho._controls import parse_controls
from meshecho._http import MAX_HEAD, HttpError, Request, fetch, read_request, render_response
from meshecho.xfcc import parse_xfcc

PROPAGATED_HEADERS = frozenset(
    ["end-user", "x-request-id", "b3", "traceparent", "tracestate", "x-ot-span-context", "x-cloud-trace-context", "sw8"]
)
"""Headers an app copies from the request it serves to the requests it makes, as Istio's bookinfo apps do."""
PROPAGATED_PREFIXES = ("x-b3-", "x-datadog-")
"""Header name prefixes propagated like :data:`PROPAGATED_HEADERS` (Zipkin B3 and Datadog tracing)."""


@final
@dataclasses.dataclass(frozen=True)
class Dependency:
    """A service the app calls: where to send the request, and the Host header that names the service.

    Through a sidecar, ``url`` is the sidecar's outbound listener and ``host`` the service's name, on which the
    sidecar routes: ``Dependency("http://127.0.0.1:15001/", "reviews.default.svc.cluster.local")``. The URL's path
    and query are sent as they are, so ``http://127.0.0.1:15001/call/ratings?fail=0.5`` works too.

    Raises:
        ValueError: ``url`` is not an ``http://`` URL with a host, or ``host`` is not a plain host name.
    """

    url: str
    host: str | None = None

    def __post_init__(self) -> None:
        parts = urllib.parse.urlsplit(self.url)
        try:
            valid = parts.scheme == "http" and bool(parts.hostname) and (parts.port or 0) >= 0
        except ValueError:  # a port that is not a number from 0 to 65535
            valid = False
        if not valid:
            raise ValueError(f"dependency URL {self.url!r} is not an http:// URL with a host (and a valid port)")
        if self.host is not None and not re.fullmatch(r"[\w.:\[\]-]+", self.host, re.ASCII):
            raise ValueError(f"dependency Host {self.host!r} is not a host name")

    @classmethod
    def parse(cls, text: str) -> Dependency:
        """A dependency written ``URL[,HOST]``, as ``mesh-echo --call NAME=URL[,HOST]`` takes it.

        The last comma starts the Host, unless what follows it cannot be a host name (it holds ``/``, ``?``,
        ``=`` or ``&``), in which case the whole text is the URL.

        Raises:
            ValueError: see the class.
        """
        url, comma, host = text.strip().rpartition(",")
        if not comma or any(char in host for char in "/?=&"):  # the comma was part of the URL
            return cls(text.strip())
        return cls(url, host.strip())


@final
class EchoApp:
    """An echo server like Istio's test echo, standing in for every app of a mesh demo.

    Every request, on any path and with any method, gets a JSON answer with the app's ``service``, ``version``
    and ``namespace``; the ``peer`` identity the sidecar saw (``URI=`` of the last ``x-forwarded-client-cert``
    element) and the sidecar's own identity (``by``); the request's ``host``, ``method``, ``path``, ``query``,
    ``headers`` and ``body``; and the ``code`` it answers with. Requests steer the answer with query parameters or
    ``x-echo-*`` headers (the query wins): ``status=503``, ``delay=200ms``, ``fail=0.5`` (of the requests with
    that share, ``0.5`` fails the 1st, 3rd, 5th..., ``1/3`` the 1st, 4th, 7th...), ``call=NAME`` or the path
    ``/call/NAME``, which calls the dependency NAME and puts its answer under ``calls``. Calls carry the
    :data:`PROPAGATED_HEADERS` on. ``/healthz`` always answers 200. A control the app cannot honour gets a 400
    with an ``error``.

    Args:
        service: the service name the app answers with, such as ``reviews``.
        version: the version it answers with, such as ``v2``.
        namespace: the namespace it answers with.
        host: the address to listen on.
        port: the port to listen on; 0 picks a free one (see :attr:`address`).
        dependencies: the services it can call, by name.
        always_call: names of dependencies called on every request, as bookinfo's reviews v2 calls ratings.
        call_timeout: seconds a call may take before it is reported as failed.

    Raises:
        ValueError: ``service`` is empty, or ``always_call`` names a dependency that is not given.
    """

    def __init__(
        self,
        service: str,
        *,
        version: str = "v1",
        namespace: str = "default",
        host: str = "127.0.0.1",
        port: int = 0,
        dependencies: Mapping[str, Dependency] | None = None,
        always_call: Iterable[str] = (),
        call_timeout: float = 30.0,
    ) -> None:
        self._dependencies = dict(dependencies or {})
        self._always = tuple(always_call)
        if not service:
            raise ValueError("service: the app needs a service name")
        if missing := [name for name in self._always if name not in self._dependencies]:
            raise ValueError(f"always_call: {missing[0]!r} is not a dependency of the app")
        self._identity = {"service": service, "version": version, "namespace": namespace}
        self._listen = (host, port)
        self._call_timeout = call_timeout
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[Any]] = set()
        self._closing = False
        self._flaky_counts: dict[Fraction, int] = {}

    @property
    def address(self) -> tuple[str, int]:
        """The host and port the app listens on.

        Raises:
            RuntimeError: the app is not started.
        """
        if self._server is None:
            raise RuntimeError("the echo app is not started")
        host, port = self._server.sockets[0].getsockname()[:2]
        return host, port

    async def start(self) -> None:
        """Listen; requests are served from then on, concurrently and with keep-alive.

        Raises:
            OSError: the address cannot be bound.
        """
        self._closing = False
        self._server = await asyncio.start_server(self._serve_connection, *self._listen, limit=MAX_HEAD)

    async def close(self) -> None:
        """Stop listening and drop open connections, including those of requests still being answered."""
        self._closing = True  # a connection accepted but not yet served is dropped when its task starts
        if self._server is not None:
            # Stop accepting first and let the connections already accepted get their transports: Python 3.11's
            # server.close() makes those fail to attach and leaves their sockets open, a client hanging.
            loop = asyncio.get_running_loop()
            for sock in self._server.sockets:
                loop.remove_reader(sock.fileno())
            for _ in range(2):
                await asyncio.sleep(0)
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None  # always true in a callback of asyncio.start_server
        if self._closing:
            writer.close()
            return
        self._connections.add(task)
        try:
            while (request := await read_request(reader)) is not None:
                status, payload = await self._answer(request)
                writer.write(
                    render_response(status, payload, keep_alive=request.keep_alive, head=request.method == "HEAD")
                )
                await writer.drain()
                if not request.keep_alive:
                    break
        except HttpError as error:
            writer.write(render_response(error.status, {"error": str(error)}, keep_alive=False))
            with contextlib.suppress(ConnectionError):
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away
        except asyncio.CancelledError:
            pass  # close() dropped the connection; a cancelled task would make Python 3.11's asyncio log an error
        except Exception as error:  # a fault of the app: the client still gets JSON, not a dropped connection
            writer.write(render_response(500, {"error": f"{type(error).__name__}: {error}"}, keep_alive=False))
        finally:
            self._connections.discard(task)
            writer.close()

    async def _answer(self, request: Request) -> tuple[int, dict[str, Any]]:
        # An origin-form target is a path: "//admin" is the path "//admin", not a reference to the host "admin".
        url = urllib.parse.urlsplit(
            f"http://echo{request.target}" if request.target.startswith("/") else request.target
        )
        if url.path == "/healthz":
            return 200, {**self._identity, "ready": True}
        try:
            query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
            controls = parse_controls(url.path, query, request.headers, self._dependencies)
            certs = parse_xfcc(request.headers.get("x-forwarded-client-cert", ""))
        except ValueError as error:
            return 400, {**self._identity, "error": str(error)}
        await asyncio.sleep(controls.delay)
        failed = controls.fail > 0 and self._next_fails(controls.fail)
        status = 503 if failed else controls.status
        payload: dict[str, Any] = {
            **self._identity,
            "peer": certs[-1].uri if certs else None,
            "by": certs[-1].by if certs else None,
            "host": request.headers.get("host"),
            "method": request.method,
            "path": url.path,
            "query": url.query,
            "headers": request.headers,
            "body": request.body.decode("utf-8", "replace"),
            "code": status,
        }
        names = tuple(dict.fromkeys(self._always + controls.calls))
        if names and not failed:
            answers = await asyncio.gather(*(self._call(name, request.headers) for name in names))
            payload["calls"] = dict(zip(names, answers, strict=True))
        return status, payload

    def _next_fails(self, share: Fraction) -> bool:
        count = self._flaky_counts[share] = self._flaky_counts.get(share, 0) + 1
        return math.ceil(count * share) > math.ceil((count - 1) * share)

    async def _call(self, name: str, incoming: Mapping[str, str]) -> dict[str, Any]:
        dependency = self._dependencies[name]
        url = urllib.parse.urlsplit(dependency.url)
        headers = {"host": dependency.host or url.netloc, "user-agent": f"mesh-echo/{self._identity['service']}"}
        headers |= {key: value for key, value in incoming.items() if _propagated(key)}
        target = urllib.parse.urlunsplit(("", "", url.path or "/", url.query, ""))
        try:
            status, body = await fetch(url.hostname or "", url.port or 80, target, headers, timeout=self._call_timeout)
        except (OSError, TimeoutError, HttpError, asyncio.IncompleteReadError) as error:
            return {"url": dependency.url, "error": f"{type(error).__name__}: {error}".rstrip(": ")}
        text = body.decode("utf-8", "replace")
        try:
            return {"url": dependency.url, "code": status, "body": json.loads(text)}
        except ValueError:
            return {"url": dependency.url, "code": status, "body": text}


def _propagated(header: str) -> bool:
    return header in PROPAGATED_HEADERS or header.startswith(PROPAGATED_PREFIXES)
