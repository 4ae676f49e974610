"""The node agent of one workload: its certificate, its SDS server, its Envoy, and its readiness.

:class:`Agent` does what Istio's ``pilot-agent`` does beside one Envoy, in this order:

1. it serves readiness on the status address (503 until everything below is done, with the reasons);
2. it gets the workload's certificate from the CA with the bearer token in the token file (renewals present
   the current certificate on the CA's mutual TLS address, when there is one), retrying while the CA is down;
3. once the first certificate is there, it serves it over SDS on ``<workdir>/sds.sock`` (``default`` and
   ``ROOTCA``, every renewal pushed);
4. it writes Envoy's bootstrap (``<workdir>/envoy.json``: the node id and Istio's node metadata, ADS to
   the control plane, the SDS cluster, the admin interface, the readiness and Prometheus listeners);
5. it starts Envoy and keeps it running (:class:`~mesh_agent.EnvoySupervisor`).

Readiness is 200 when Envoy's admin interface says ``LIVE`` and a valid certificate is held. Stopping
stops Envoy (SIGTERM, then SIGKILL), the SDS server (its socket file removed), the certificate client and the
status server, and removes the working directory when the agent made it.

Example::

    node = NodeIdentity(ip="127.0.10.1", name="reviews-v1-0", namespace="default", service_account="reviews")
    agent = Agent(AgentOptions(node=node, root_certificates=roots, token_file="/var/run/token"))
    await agent.start()
    await agent.wait_ready(timeout=30)
    ...
    await agent.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, final

from mesh_agent.options import AgentError, AgentOptions
from mesh_agent.status import Readiness, StatusServer, envoy_admin_ready
from mesh_agent.supervisor import EnvoySupervisor, SupervisorError, find_envoy
from mesh_ca import CertificateClient, CertificateClientError, WorkloadCertificate
from mesh_xds import SdsServer, ServerError
from mesh_xds.bootstrap import EnvoyBootstrapOptions, InvalidBootstrapError, envoy_bootstrap, write_bootstrap

__all__ = ["Agent"]

_log = logging.getLogger("mesh_agent")
_CERTIFICATE_WAIT: Final = 60.0


@final
class Agent:
    """The node agent of one workload (see the module docstring for what it does).

    Args:
        options: what the agent needs to know.

    Raises:
        AgentError: ``options`` is not an AgentOptions.
    """

    def __init__(self, options: AgentOptions) -> None:
        if not isinstance(options, AgentOptions):
            raise AgentError(f"options must be an AgentOptions, not {options!r}")
        self._options = options
        self._workdir = options.workdir
        self._own_workdir = False
        self._client: CertificateClient | None = None
        self._status: StatusServer | None = None
        self._sds: SdsServer | None = None
        self._envoy: EnvoySupervisor | None = None
        self._task: asyncio.Task[None] | None = None
        self._failed = asyncio.Event()
        self._failure: AgentError | None = None
        self._started = False
        self._stopping = False

    # ---------------------------------------------------------------- state

    @property
    def options(self) -> AgentOptions:
        """The agent's options."""
        return self._options

    @property
    def workdir(self) -> Path:
        """The working directory (the bootstrap, the SDS socket, Envoy's log).

        Raises:
            AgentError: the agent was not started and was given no working directory.
        """
        if self._workdir is None:
            raise AgentError("the agent has no working directory before start()")
        return self._workdir

    @property
    def sds_socket(self) -> Path:
        """The SDS server's Unix socket."""
        return AgentOptions.sds_socket(self.workdir)

    @property
    def bootstrap_path(self) -> Path:
        """Envoy's bootstrap file."""
        return self.workdir / "envoy.json"

    @property
    def status_address(self) -> str:
        """The readiness server's ``host:port`` (with the bound port once started).

        Raises:
            AgentError: the agent is not started.
        """
        if self._status is None:
            raise AgentError("the agent is not started")
        return self._status.address

    @property
    def certificate(self) -> WorkloadCertificate | None:
        """The workload's current certificate, ``None`` before the first one."""
        return None if self._client is None else self._client.certificate

    @property
    def envoy(self) -> EnvoySupervisor | None:
        """Envoy's supervisor, ``None`` until Envoy is started."""
        return self._envoy

    # ---------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> Agent:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Serve readiness and start getting the certificate; Envoy follows in the background.

        Returns once the status server listens. A failure later on (the SDS socket, the bootstrap, Envoy's
        binary) stops the bring-up; :meth:`wait` raises it and readiness reports it.

        Raises:
            AgentError: the agent was started before, or a part cannot start (the message names it).
        """
        if self._started:
            raise AgentError("an Agent can be started once")
        self._started = True
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        options = self._options
        if not os.access(options.token_file, os.R_OK):
            raise AgentError(f"cannot read the token file {str(options.token_file)!r}")
        envoy_path = options.envoy_path
        try:
            binary = find_envoy() if envoy_path is None else envoy_path
        except SupervisorError as error:
            raise AgentError(str(error)) from None
        if not (binary.is_file() and os.access(binary, os.X_OK)):
            raise AgentError(f"the Envoy binary {str(binary)!r} is not an executable file")
        self._make_workdir()
        try:
            self._client = CertificateClient(
                options.ca_address,
                options.identity,
                root_certificates=options.root_certificates,
                token_file=options.token_file,
                server_name=options.ca_server_name,
                renewal_address=options.ca_renewal_address,
                renewal=options.renewal,
                ttl=options.secret_ttl,
            )
        except CertificateClientError as error:
            raise AgentError(f"certificate client: {error}") from None
        host, port = options.status
        self._status = StatusServer(self.readiness, host=host, port=port)
        try:
            await self._status.start()
        except OSError as error:
            raise AgentError(f"cannot serve readiness on {host}:{port}: {error.strerror or error}") from None
        await self._client.start()
        self._task = asyncio.get_running_loop().create_task(self._bring_up(binary), name="mesh-agent bring-up")

    def _make_workdir(self) -> None:
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="mesh-agent-"))
            self._own_workdir = True
            return
        try:
            self._workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as error:
            raise AgentError(f"cannot create the working directory {str(self._workdir)!r}: {error.strerror}") from None

    async def _bring_up(self, binary: Path) -> None:
        try:
            await self._wait_for_certificate()
            await self._serve_sds()
            self._write_bootstrap()
            options = self._options
            envoy = EnvoySupervisor(
                self.bootstrap_path,
                workdir=self.workdir,
                envoy=binary,
                log_level=options.envoy_log_level,
                restart_delay=options.restart_delay,
                max_restart_delay=options.max_restart_delay,
                extra_args=("--drain-time-s", str(options.drain_duration), "--drain-strategy", "immediate"),
            )
            self._envoy = envoy
            await envoy.start()
        except AgentError as error:
            self._fail(error)
        except SupervisorError as error:
            self._fail(AgentError(str(error)))

    def _fail(self, error: AgentError) -> None:
        _log.error("%s", error)
        self._failure = error
        self._failed.set()

    async def _wait_for_certificate(self) -> None:
        assert self._client is not None
        while True:
            try:
                certificate = await self._client.wait_for_certificate(timeout=_CERTIFICATE_WAIT)
            except TimeoutError as error:
                _log.warning("still waiting for the workload certificate: %s", error)
                continue
            _log.info("workload certificate for %s, valid until %s", certificate.identity, certificate.not_after)
            return

    async def _serve_sds(self) -> None:
        assert self._client is not None
        socket = self.sds_socket
        with contextlib.suppress(OSError):
            socket.unlink(missing_ok=True)  # left by an agent that was killed
        self._sds = SdsServer(self._client, reflection=False)
        try:
            await self._sds.start(f"unix:{socket}")
        except ServerError as error:
            raise AgentError(f"SDS server: {error}") from None

    def _write_bootstrap(self) -> None:
        options = self._options
        admin_host, admin_port = options.admin
        try:
            config = envoy_bootstrap(
                EnvoyBootstrapOptions(
                    node=options.node,
                    discovery=options.discovery,
                    node_type=options.node_type,
                    api_type=options.api_type,
                    sds_socket=self.sds_socket,
                    admin_address=admin_host,
                    admin_port=admin_port,
                    status_address=options.node.ip,
                    readiness_port=options.readiness_port,
                    stats_port=options.stats_port,
                )
            )
            write_bootstrap(config, self.bootstrap_path)
        except InvalidBootstrapError as error:
            raise AgentError(f"Envoy bootstrap: {error}") from None
        except OSError as error:
            raise AgentError(f"cannot write {str(self.bootstrap_path)!r}: {error.strerror or error}") from None

    async def wait(self) -> None:
        """Wait until the agent fails on its own.

        Raises:
            AgentError: why it failed.
        """
        await self._failed.wait()
        if self._failure is not None:
            raise self._failure

    async def stop(self) -> None:
        """Stop Envoy, the SDS server, the certificate client and the status server; idempotent."""
        self._stopping = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._envoy is not None:
            await self._envoy.stop()
        sds, self._sds = self._sds, None
        if sds is not None:
            await sds.stop(grace=0.5)
        if self._workdir is not None:
            with contextlib.suppress(OSError):
                self.sds_socket.unlink(missing_ok=True)
        if self._client is not None:
            await self._client.stop()
        status, self._status = self._status, None
        if status is not None:
            await status.stop()
        if self._own_workdir and self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
        self._failed.set()

    # ---------------------------------------------------------------- readiness

    async def readiness(self) -> Readiness:
        """Whether the workload is ready, and why not."""
        reasons: list[str] = []
        if self._stopping:
            reasons.append("the agent is stopping")
        reasons.extend(self._certificate_problems())
        envoy = self._envoy
        if self._failure is not None:
            reasons.append(f"the agent failed: {self._failure}")
        elif envoy is None:
            reasons.append("Envoy is not started yet: it starts once the workload certificate is there")
        elif not envoy.running:
            reasons.append(f"Envoy is not running: {envoy.status()}")
        elif (problem := await envoy_admin_ready(self._options.admin_target)) is not None:
            reasons.append(problem)
        return Readiness(tuple(reasons), self._details())

    async def wait_ready(self, *, timeout: float = 60.0) -> Readiness:
        """Wait until :meth:`readiness` says ready, and return it.

        Raises:
            TimeoutError: not ready within ``timeout`` seconds; the message has the reasons.
            AgentError: the agent failed meanwhile.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        interval = 0.01
        while True:
            readiness = await self.readiness()
            if readiness.ready:
                return readiness
            if self._failure is not None:
                raise self._failure
            if loop.time() >= deadline:
                raise TimeoutError(f"the agent was not ready within {timeout}s: {'; '.join(readiness.reasons)}")
            await asyncio.sleep(interval)
            interval = min(interval * 2, 0.2)

    def _certificate_problems(self) -> list[str]:
        client = self._client
        if client is None:
            return ["the certificate client is not started"]
        certificate = client.certificate
        error = f": {client.last_error}" if client.last_error else ""
        if certificate is None:
            return [f"no workload certificate yet from the CA at {self._options.ca_address}{error}"]
        if certificate.not_after <= datetime.now(UTC):
            return [f"the workload certificate expired at {certificate.not_after.isoformat()}{error}"]
        return []

    def _details(self) -> dict[str, Any]:
        certificate = self.certificate
        envoy = self._envoy
        return {
            "identity": str(self._options.identity),
            "node": self._options.node_id,
            "certificate": None
            if certificate is None
            else {"serial": f"{certificate.serial_number:x}", "not_after": certificate.not_after.isoformat()},
            "envoy": None
            if envoy is None
            else {"pid": envoy.pid, "status": envoy.status(), "restarts": envoy.restarts, "base_id": envoy.base_id},
        }
