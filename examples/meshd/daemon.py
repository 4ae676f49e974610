"""The control plane, wired: config and registry in, ADS, the CA and the debug pages out.

:class:`Meshd` starts the parts in order and stops them in reverse; a part that fails to start stops the
ones already started, and :meth:`Meshd.start` raises :class:`~meshd.MeshdError` naming what failed::

    async with Meshd(MeshdOptions(config_dir="config", registry_file="registry.yaml")) as meshd:
        print(meshd.xds_address, meshd.ca_address, meshd.debug_address)
        await stop_requested.wait()
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any, final

from mesh_ca import (
    Authenticator,
    CaError,
    CaServer,
    CertificateAuthenticator,
    CertificateAuthority,
    JwtAuthenticator,
    TrustBundle,
)
from mesh_config import (
    ConfigError,
    Diagnostic,
    DirectoryConfigStore,
    FileRegistry,
    MeshConfig,
    default_mesh_config,
    load_mesh_config,
)
from mesh_model import InMemoryRegistry, ServiceRegistry
from mesh_xds import ServerError, XdsError, XdsMetrics, XdsServer
from mesh_xds.file_secrets import DirectorySecretProvider
from mesh_xds.generate import XdsController, addresses_from_metadata
from meshd import pages
from meshd.debug import DebugServer, Page, json_page
from meshd.options import MeshdError, MeshdOptions, parse_address
from meshd.tokens import load_token_key, token_issuer

__all__ = ["ROOT_CERT_FILE", "Meshd"]

_log = logging.getLogger("meshd")

ROOT_CERT_FILE = "root-cert.pem"
"""The CA's roots, for agents (``mesh-agent --root-cert``), in the work directory."""
_CA_NAMES = ("localhost", "istiod.istio-system.svc", "meshd")


def _write_public(path: Path, text: str) -> None:
    """Replace a public file atomically (readers see the old content or the new one)."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="ascii")
    os.chmod(temporary, 0o644)
    os.replace(temporary, path)


@final
class Meshd:
    """The control plane of one mesh: :meth:`start` it, :meth:`stop` it (or use it as an async context).

    Args:
        options: what to serve and where.
    """

    def __init__(self, options: MeshdOptions) -> None:
        self._options = options
        self._stack = contextlib.AsyncExitStack()
        self._mesh: MeshConfig = default_mesh_config()
        self._mesh_diagnostics: tuple[Diagnostic, ...] = ()
        self._store: DirectoryConfigStore | None = None
        self._registry: ServiceRegistry | None = None
        self._secrets: DirectorySecretProvider | None = None
        self._authority: CertificateAuthority | None = None
        self._metrics = XdsMetrics()
        self._controller: XdsController | None = None
        self._xds: XdsServer | None = None
        self._ca: CaServer | None = None
        self._debug = DebugServer(
            {
                "/ready": self._ready_page,
                "/metrics": lambda: pages.metrics_page(self._metrics),
                "/debug/syncz": lambda: json_page(pages.sync_status(self._xds.status() if self._xds else ())),
                "/debug/configz": lambda: json_page(self.config_dump()),
                "/debug/push": lambda: json_page(pages.push_status(self.controller)),
            }
        )
        self._started = False
        self._stopped = False

    # ---------------------------------------------------------------- what programs and pages read

    @property
    def options(self) -> MeshdOptions:
        """The options."""
        return self._options

    @property
    def xds_address(self) -> str:
        """The ADS address served, with its bound port (empty before :meth:`start`)."""
        return self._xds.address if self._xds is not None else ""

    @property
    def ca_address(self) -> str:
        """The CA's TLS address, with its bound port (empty before :meth:`start`)."""
        return self._ca.address if self._ca is not None else ""

    @property
    def ca_renewal_address(self) -> str:
        """The CA's mutual TLS address, with its bound port (empty when not served)."""
        return self._ca.mtls_address if self._ca is not None else ""

    @property
    def debug_address(self) -> str:
        """The debug pages' address, with its bound port (empty before :meth:`start`)."""
        return self._debug.address

    @property
    def root_cert_path(self) -> Path:
        """The CA's roots, for agents."""
        return self._options.workdir / ROOT_CERT_FILE

    @property
    def controller(self) -> XdsController:
        """The xDS controller (after :meth:`start`)."""
        if self._controller is None:
            raise MeshdError("meshd is not started")
        return self._controller

    @property
    def xds_server(self) -> XdsServer:
        """The ADS server (after :meth:`start`)."""
        if self._xds is None:
            raise MeshdError("meshd is not started")
        return self._xds

    @property
    def authority(self) -> CertificateAuthority:
        """The CA (after :meth:`start`)."""
        if self._authority is None:
            raise MeshdError("meshd is not started")
        return self._authority

    def readiness(self) -> list[str]:
        """What keeps meshd from being ready; empty when the config is loaded and every server serves."""
        reasons = []
        if self._store is None or self._registry is None:
            reasons.append("the config is not loaded")
        if self._controller is None:
            reasons.append("the xDS controller is not started")
        if not self.xds_address:
            reasons.append("the xDS server is not serving")
        if not self.ca_address:
            reasons.append("the CA server is not serving")
        if self._stopped:
            reasons = ["meshd is stopping"]
        return reasons

    def config_dump(self) -> dict[str, Any]:
        """The accepted config and the current problems, without key material (``/debug/configz``)."""
        if self._store is None:
            return {"resources": [], "diagnostics": {}}
        found = [(str(self._options.config_dir), self._store.diagnostics())]
        if isinstance(self._registry, FileRegistry):
            found.append((str(self._registry.path), self._registry.diagnostics()))
        if self._mesh_diagnostics:
            found.append((str(self._options.mesh_config), self._mesh_diagnostics))
        extra: dict[str, Any] = {
            "mesh": {"trust_domain": self._mesh.trust_domain, "root_namespace": self._mesh.root_namespace},
        }
        if self._secrets is not None:
            extra["credentials"] = {"served": list(self._secrets.names()), "problems": self._secrets.problems()}
        return pages.config_dump(self._store, diagnostics=found, extra=extra)

    def _ready_page(self) -> Page:
        reasons = self.readiness()
        return json_page({"ready": not reasons, "reasons": reasons}, 200 if not reasons else 503)

    # ---------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> Meshd:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Load the config and the registry, start the CA and the servers, and follow the files.

        Raises:
            MeshdError: something cannot be loaded or bound; the message names it. What was started is
                stopped again.
        """
        if self._started:
            raise MeshdError("meshd can be started once")
        self._started = True
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop following the files and stop every server; idempotent."""
        running, self._stopped = self._started and not self._stopped, True
        await self._stack.aclose()
        if running:
            _log.info("meshd stopped")

    async def _start(self) -> None:
        options = self._options
        self._workdir()
        self._load_mesh_config()
        trust_domain = options.trust_domain or self._mesh.trust_domain or "cluster.local"
        try:
            self._store = DirectoryConfigStore(options.config_dir, poll_interval=options.poll_interval)
        except ConfigError as error:
            raise MeshdError(f"--config-dir: {error}") from None
        self._stack.callback(self._store.close)
        self._registry = self._load_registry()
        if options.credentials_dir is not None:
            try:
                self._secrets = DirectorySecretProvider(options.credentials_dir, poll_interval=options.poll_interval)
            except XdsError as error:
                raise MeshdError(f"--credentials-dir: {error}") from None
            self._stack.callback(self._secrets.stop)
        self._authority = self._load_authority(trust_domain)
        controller = XdsController(
            self._store, self._registry, mesh=self._mesh, addresses_for=addresses_from_metadata, secrets=self._secrets
        )
        self._stack.push_async_callback(controller.close)
        await controller.start()
        self._controller = controller
        await self._start_xds(controller)
        await self._start_ca(trust_domain)
        await self._start_debug()
        self._store.start()
        if isinstance(self._registry, FileRegistry):
            self._registry.start()
        if self._secrets is not None:
            self._secrets.start()
        _log.info("meshd is ready (trust domain %s)", trust_domain)

    def _workdir(self) -> None:
        workdir = self._options.workdir
        try:
            workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as error:
            raise MeshdError(f"cannot create --workdir {str(workdir)!r}: {error.strerror or error}") from None
        if not os.access(workdir, os.W_OK | os.X_OK):
            raise MeshdError(f"--workdir {str(workdir)!r} is not a writable directory")

    def _load_mesh_config(self) -> None:
        path = self._options.mesh_config
        if path is None:
            return
        if not path.is_file():
            raise MeshdError(f"--mesh-config {str(path)!r} is not a readable file")
        result = load_mesh_config(path)
        if result.config is None:
            shown = "\n  ".join(diagnostic.format() for diagnostic in result.errors)
            raise MeshdError(f"--mesh-config {str(path)!r} does not validate:\n  {shown}")
        for warning in result.warnings:
            _log.warning("%s", warning.format())
        self._mesh, self._mesh_diagnostics = result.config, result.diagnostics

    def _load_registry(self) -> ServiceRegistry:
        path = self._options.registry_file
        if path is None:
            return InMemoryRegistry("meshd")
        try:
            registry = FileRegistry(path, name="registry-file", poll_interval=self._options.poll_interval)
        except ConfigError as error:
            raise MeshdError(f"--registry: {error}") from None
        self._stack.callback(registry.stop)
        return registry

    def _load_authority(self, trust_domain: str) -> CertificateAuthority:
        options = self._options
        try:
            if options.cacerts is not None:
                authority = CertificateAuthority.from_cacerts(options.cacerts, trust_domain=trust_domain)
            else:
                authority = CertificateAuthority.self_signed(options.self_signed_dir, trust_domain=trust_domain)
        except CaError as error:
            flag = "--cacerts" if options.cacerts is not None else "--ca-dir"
            raise MeshdError(f"{flag}: the CA cannot start: {error}") from None
        self._write_roots(authority.trust_bundle())
        subscription = authority.subscribe(self._write_roots)
        self._stack.callback(subscription.cancel)
        return authority

    def _write_roots(self, bundle: TrustBundle) -> None:
        try:
            _write_public(self.root_cert_path, bundle.pem())
        except OSError as error:
            raise MeshdError(f"cannot write {self.root_cert_path}: {error.strerror or error}") from None

    async def _start_xds(self, controller: XdsController) -> None:
        server = XdsServer(controller, metrics=self._metrics, control_plane_id="meshd")
        address = self._options.xds_address
        try:
            await server.start(address)
        except ServerError as error:
            raise MeshdError(f"--xds-address {address}: {error} (is the address in use?)") from None
        self._stack.push_async_callback(server.stop)
        self._xds = server

    async def _start_ca(self, trust_domain: str) -> None:
        options = self._options
        authority = self.authority
        try:
            key = load_token_key(options.workdir, create=True)
        except CaError as error:
            raise MeshdError(f"the token signing key: {error}") from None
        authenticators: list[Authenticator] = [
            CertificateAuthenticator(authority.trust_bundle, intermediates=authority.intermediates),
            JwtAuthenticator([token_issuer(key)], trust_domain=trust_domain),
        ]
        addresses = (options.ca_address, options.ca_renewal_address)
        hosts = {parse_address(address, "CA address")[0] for address in addresses if address}
        server = CaServer(
            authority,
            authenticators=authenticators,
            dns_names=_CA_NAMES,
            ip_addresses=sorted(hosts | {"127.0.0.1"}),
        )
        try:
            await server.start(options.ca_address, mtls_address=options.ca_renewal_address)
        except CaError as error:
            flags = "--ca-address" + (" or --ca-renewal-address" if options.ca_renewal_address else "")
            raise MeshdError(f"{flags}: {error} (is the address in use?)") from None
        self._stack.push_async_callback(server.stop)
        self._ca = server

    async def _start_debug(self) -> None:
        address = self._options.debug_address
        host, port = parse_address(address, "--debug-address")
        try:
            await self._debug.start(host, port)
        except OSError as error:
            raise MeshdError(f"--debug-address {address}: cannot bind: {error.strerror or error}") from None
        self._stack.push_async_callback(self._debug.stop)
