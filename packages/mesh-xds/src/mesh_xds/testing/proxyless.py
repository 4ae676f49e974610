"""A proxyless gRPC client to test with: grpcio's own xDS client in a subprocess, and a backend that says who it is.

grpcio reads ``GRPC_XDS_BOOTSTRAP`` when it creates its process-wide xDS client, which every ``xds:`` channel of
the process shares while one is open. A test that wants its own node, bootstrap and control plane therefore
runs the client in a process of its own: :class:`ProxylessClient` starts one on a target and makes one unary
call at a time on request. :class:`WhoamiServer` is a plain gRPC server whose one method
(:data:`WHOAMI_METHOD`) answers with a name, so that a call tells which backend served it::

    async with await WhoamiServer.start("v1") as v1:
        ...  # serve config whose endpoints include v1.address
        async with await ProxylessClient.start("xds:///echo.default.svc.cluster.local:8080", bootstrap) as client:
            assert await client.call() == "ok v1"

A call's answer is ``"ok <name>"`` or ``"error <STATUS_CODE> <details>"``, one line each, so that a test can
compare answers without a gRPC stub of its own.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Self, final

import grpc

from mesh_xds.testing.envoy import free_loopback_address

__all__ = ["WHOAMI_METHOD", "ProxylessClient", "ProxylessClientError", "WhoamiServer"]

WHOAMI_METHOD: Final = "/mesh.test.Echo/Whoami"
"""The full name of the one method of :class:`WhoamiServer`: empty request, the server's name as answer."""

# One call per line read from stdin (the line is the call's timeout in seconds); one line out per call.
_CLIENT: Final = """
import sys
import grpc

channel = grpc.insecure_channel(sys.argv[1])
call = channel.unary_unary(sys.argv[2])
for line in sys.stdin:
    try:
        print("ok", call(b"", timeout=float(line), wait_for_ready=True).decode(), flush=True)
    except grpc.RpcError as error:
        print("error", error.code().name, (error.details() or "").replace("\\n", " "), flush=True)
"""
_BOOTSTRAP_VARIABLES: Final = frozenset({"GRPC_XDS_BOOTSTRAP", "GRPC_XDS_BOOTSTRAP_CONFIG"})
_GRACE: Final = 30.0  # how long past a call's own deadline the client may take to print its answer


class ProxylessClientError(Exception):
    """The client process stopped or did not answer, or calls did not give the answer waited for."""


@final
class WhoamiServer:
    """A gRPC server (plaintext) on its own loopback address whose :data:`WHOAMI_METHOD` answers ``name``."""

    def __init__(self, name: str, server: grpc.aio.Server, address: tuple[str, int]) -> None:
        """Wrap a started server; use :meth:`start`."""
        self._name = name
        self._server = server
        self._address = address

    @classmethod
    async def start(cls, name: str, *, host: str | None = None) -> WhoamiServer:
        """Start a server answering ``name`` on ``host`` (a free loopback address by default), any free port.

        Raises:
            RuntimeError: the address could not be bound.
        """

        async def whoami(_request: bytes, _context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
            return name.encode()

        handler: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_unary_rpc_method_handler(whoami)
        service, _, method = WHOAMI_METHOD.lstrip("/").partition("/")
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, {method: handler}),))
        host = host or free_loopback_address(ports=())
        port = server.add_insecure_port(f"{host}:0")
        await server.start()
        return cls(name, server, (host, port))

    @property
    def name(self) -> str:
        """What its method answers."""
        return self._name

    @property
    def address(self) -> tuple[str, int]:
        """The host and port it listens on."""
        return self._address

    async def stop(self) -> None:
        """Stop at once, failing calls in flight."""
        await self._server.stop(grace=None)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()


@final
class ProxylessClient:
    """grpcio's xDS client in a subprocess, calling ``method`` on an ``xds:///`` target one call at a time."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        """Wrap a started client process; use :meth:`start`."""
        self._process = process

    @classmethod
    async def start(
        cls, target: str, bootstrap: str | os.PathLike[str] | Mapping[str, Any], *, method: str = WHOAMI_METHOD
    ) -> ProxylessClient:
        """Start the client process; it connects to the control plane on its first call.

        Args:
            target: the channel's target, ``xds:///HOST:PORT``.
            bootstrap: the path of the bootstrap file, or the bootstrap itself (written next to nothing: it is
                passed in ``GRPC_XDS_BOOTSTRAP_CONFIG``).
            method: the full name of the unary method to call with an empty request; it must answer bytes of
                UTF-8 text.
        """
        if isinstance(bootstrap, Mapping):
            settings = {"GRPC_XDS_BOOTSTRAP_CONFIG": json.dumps(bootstrap)}
        else:
            settings = {"GRPC_XDS_BOOTSTRAP": os.fspath(Path(bootstrap))}
        environment = {
            name: value
            for name, value in os.environ.items()
            if name not in {"GRPC_XDS_BOOTSTRAP", "GRPC_XDS_BOOTSTRAP_CONFIG"}
        }
        process = await asyncio.create_subprocess_exec(
            *(sys.executable, "-c", _CLIENT, target, method),
            env={**environment, **settings},
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(process)

    async def call(self, timeout: float = 30.0) -> str:
        """Make one call that waits for the channel to be ready; return its answer line.

        Args:
            timeout: the call's deadline in seconds.

        Returns:
            ``"ok <answer>"`` or ``"error <STATUS_CODE> <details>"``.

        Raises:
            ProxylessClientError: the process exited, or printed nothing well past the call's deadline.
        """
        stdin, stdout = self._process.stdin, self._process.stdout
        assert stdin is not None  # the process was started with pipes
        assert stdout is not None
        try:
            stdin.write(f"{timeout}\n".encode())
            await stdin.drain()
            line = await asyncio.wait_for(stdout.readline(), timeout + _GRACE)
        except TimeoutError:
            problem = f"the gRPC client did not answer in {timeout + _GRACE}s: {await self._stderr()}"
            raise ProxylessClientError(problem) from None
        except ConnectionError:
            line = b""
        if not line:
            raise ProxylessClientError(f"the gRPC client exited: {await self._stderr()}")
        return line.decode().strip()

    async def call_until(self, expected: str, *, timeout: float = 30.0) -> list[str]:
        """Call until a call answers ``expected``, as after a config change that takes a moment to arrive.

        Returns:
            The answers before the expected one.

        Raises:
            ProxylessClientError: ``timeout`` seconds passed first (the message lists the answers seen), or the
                client stopped.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        seen: list[str] = []
        while (left := deadline - loop.time()) > 0:
            answer = await self.call(max(1.0, left))
            if answer == expected:
                return seen
            seen.append(answer)
        raise ProxylessClientError(f"no call answered {expected!r} in {timeout}s; answers: {sorted(set(seen))}")

    async def _stderr(self) -> str:
        await self.close()
        stderr = self._process.stderr
        assert stderr is not None  # the process was started with pipes
        return (await stderr.read()).decode(errors="replace")[-2000:]

    async def close(self) -> None:
        """Stop the process (at once: it holds no state worth a clean exit)."""
        if self._process.returncode is None:
            self._process.kill()
        await self._process.wait()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()
