"""What a request through the mesh got back, and where it went on the way.

Every app of a harness mesh is ``mesh-echo``: its answer says which service and version served, the peer
identity its sidecar saw, the headers that arrived, and what each call it made to its dependencies got back
(docs/echo.md). :class:`Response` reads those answers, hop by hop::

    response = await mesh.ingress("/productpage", headers={"end-user": "jason"})
    response.status                                # 200
    response.service, response.version             # ("productpage", "v1")
    response.hop("reviews").version                # "v2": productpage's call to reviews
    response.hop("reviews", "ratings").status      # 500: reviews' call to ratings
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Mapping
from typing import Any, Final, final

import attrs

__all__ = ["Response", "send"]

_MAX_BODY: Final = 4 * 1024 * 1024


def _decode(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


@final
@attrs.frozen
class Response:
    """An HTTP answer, or what a call made by an echo app got.

    Attributes:
        status: the status code; 0 when no answer came (the connection was refused, reset or timed out).
        body: the body.
        headers: the response headers, names in lower case (empty for a hop read from an echo answer).
        error: why there is no answer, when ``status`` is 0.
    """

    status: int
    body: bytes = b""
    headers: Mapping[str, str] = attrs.field(factory=dict)
    error: str = ""

    @property
    def json(self) -> Any:
        """The body as JSON, ``None`` when it is not JSON."""
        return _decode(self.body)

    @property
    def echo(self) -> Mapping[str, Any] | None:
        """The echo app's answer, ``None`` when the body is not one (an Envoy local reply, say)."""
        found = self.json
        return found if isinstance(found, dict) and "service" in found and "version" in found else None

    @property
    def service(self) -> str | None:
        """The service that answered, ``None`` when no echo app did."""
        echo = self.echo
        return None if echo is None else str(echo["service"])

    @property
    def version(self) -> str | None:
        """The version that answered, ``None`` when no echo app did."""
        echo = self.echo
        return None if echo is None else str(echo["version"])

    @property
    def peer(self) -> str | None:
        """The caller's identity the answering app's sidecar saw (``spiffe://...``), ``None`` without mTLS."""
        echo = self.echo
        peer = None if echo is None else echo.get("peer")
        return peer if isinstance(peer, str) else None

    @property
    def text(self) -> str:
        """The body as text (UTF-8, errors replaced)."""
        return self.body.decode("utf-8", "replace")

    def hop(self, *names: str) -> Response | None:
        """What a chain of calls got: ``hop("reviews", "ratings")`` is reviews' call to ratings.

        Returns:
            The call's answer (``status`` 0 and ``error`` when the call could not be made), or ``None`` when
            an app on the way did not make that call.
        """
        current: Response | None = self
        for name in names:
            echo = None if current is None else current.echo
            calls = None if echo is None else echo.get("calls")
            call = calls.get(name) if isinstance(calls, dict) else None
            if not isinstance(call, dict):
                return None
            current = _from_call(call)
        return current

    def summary(self) -> str:
        """``200 reviews v2``, ``503 fault filter abort`` or ``refused: ...``, for messages."""
        if self.status == 0:
            return f"no answer: {self.error}"
        if self.echo is not None:
            return f"{self.status} {self.service} {self.version}"
        text = self.text.strip().splitlines()[0][:80] if self.text.strip() else ""
        return f"{self.status} {text}".rstrip()


def _from_call(call: Mapping[str, Any]) -> Response:
    if "code" not in call:
        return Response(0, error=str(call.get("error", "the call was not made")))
    body = call.get("body")
    data = json.dumps(body).encode() if isinstance(body, dict | list) else str(body or "").encode()
    return Response(int(call["code"]), data)


def send(
    address: str,
    port: int,
    path: str,
    *,
    host: str,
    headers: Mapping[str, str] | None = None,
    method: str = "GET",
    body: bytes | None = None,
    timeout: float = 10.0,
) -> Response:
    """One HTTP/1.1 request on a new connection; blocking. No answer is a :class:`Response` with status 0.

    Args:
        address: the IP address to connect to.
        port: the port.
        path: the request target (``/productpage?x=1``).
        host: the ``Host`` header: the sidecar and the gateway route on it.
        headers: more request headers.
        method: the method.
        body: the request body.
        timeout: seconds to wait for the connection and for the answer.
    """
    connection = http.client.HTTPConnection(address, port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers={"host": host, **(headers or {})})
        answer = connection.getresponse()
        data = answer.read(_MAX_BODY)
        found = {name.lower(): value for name, value in answer.getheaders()}
        return Response(answer.status, data, found)
    except (OSError, http.client.HTTPException) as error:
        return Response(0, error=f"{type(error).__name__}: {error}".rstrip(": "))
    finally:
        connection.close()
