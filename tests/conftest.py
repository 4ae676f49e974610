"""A live mesh for end-to-end tests: real Envoy sidecars configured by an XdsController, echo apps behind them.

A bookinfo-like mesh on loopback. ``productpage`` is a client sidecar (the test plays its application), and
``reviews`` runs in the versions asked for, each an Envoy sidecar in front of an echo app. ``ratings`` is an
echo app without a sidecar, which each reviews app can call through its own sidecar. Every workload has three
addresses (docs/architecture.md), which its node metadata names: its Envoy's inbound listeners bind the first,
its app listens on the second, and its outbound listeners bind the third::

    test -> productpage's Envoy <outbound>:9080 =mTLS=> reviews-vN's Envoy <inbound>:9080 -> app <application>:9080
                                           reviews-vN's app -> its Envoy <outbound>:9080 -> ratings (no sidecar)

One XdsController serves every Envoy from an InMemoryConfigStore (which starts with a DestinationRule naming
the subsets v1, v2 and v3 of reviews) and an InMemoryRegistry, over Delta ADS; each workload has its own SDS
server on a Unix socket, with a certificate that mesh_ca signs for its SPIFFE id. A test module opens a mesh
in a module-scoped fixture (``live_mesh(mesh_config, versions)``), and its tests change the config with
``await apply(yaml)``, which returns once the config is pushed, ACKed and in force: no listener or cluster of
any Envoy is warming or draining.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http.client
import json
import re
import ssl
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mesh_ca import CertificateAuthority
from mesh_config import InMemoryConfigStore, MeshConfig, load_text
from mesh_harness import Mesh as HarnessMesh
from mesh_model import Endpoint, InMemoryRegistry, Protocol, Service, ServicePort, SpiffeId, TlsMode
from mesh_xds import InMemorySecretProvider, SdsServer, TlsSecret, XdsServer
from mesh_xds.bootstrap import DiscoveryAddress, EnvoyBootstrapOptions, NodeIdentity, envoy_bootstrap
from mesh_xds.generate import XdsController, addresses_from_metadata
from mesh_xds.generate.addresses import APPLICATION_ADDRESS_KEY, INBOUND_ADDRESS_KEY, OUTBOUND_ADDRESS_KEY
from mesh_xds.testing.envoy import EnvoyProcess, free_loopback_address
from meshecho import Dependency, EchoApp

PORT = 9080
DOMAIN = "default.svc.cluster.local"
TRUST_DOMAIN = "cluster.local"
DEADLINE = 30.0  # generous: only a failing test waits this long
# An in-place filter chain update drains the old chains' connections for --drain-time-s (600 s by default),
# and until then they keep the old policy; with 0 they are closed as soon as the new chains serve.
ENVOY_ARGS = ("--drain-time-s", "0", "--drain-strategy", "immediate")
SETTLED = (
    "listener_manager.total_listeners_warming",
    "listener_manager.total_listeners_draining",
    "listener_manager.total_filter_chains_draining",
    "cluster_manager.warming_clusters",
)
SUBSETS = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
  - {name: v3, labels: {version: v3}}
"""


def _resources(text: str) -> list[Any]:
    return list(load_text(text, default_namespace="default").raise_for_errors().resources) if text.strip() else []


# ------------------------------------------------------------------------------------------ requests


@attrs.frozen
class Answer:
    """An HTTP answer: from an echo app when ``echo`` is set, else from Envoy itself (a local reply)."""

    status: int
    body: bytes

    @property
    def echo(self) -> dict[str, Any] | None:
        try:
            answer = json.loads(self.body)
        except ValueError:
            return None
        return answer if isinstance(answer, dict) and "service" in answer else None

    @property
    def version(self) -> str | None:
        return None if self.echo is None else self.echo["version"]


def _send(
    address: str,
    path: str,
    *,
    count: int = 1,
    host: str = "reviews",
    method: str = "GET",
    headers: dict[str, str] | None = None,
    context: ssl.SSLContext | None = None,
) -> list[Answer]:
    """``count`` requests on one keep-alive connection (reopened when Envoy closes it); blocking."""
    if context is None:
        connection = http.client.HTTPConnection(address, PORT, timeout=10)
    else:
        connection = http.client.HTTPSConnection(address, PORT, timeout=10, context=context)
    answers = []
    try:
        for _ in range(count):
            connection.request(method, path, headers={"host": host, **(headers or {})})
            response = connection.getresponse()
            answers.append(Answer(response.status, response.read()))
    finally:
        connection.close()
    return answers


# ------------------------------------------------------------------------------------------ the mesh


@attrs.define
class Workload:
    """A workload's three loopback addresses, its identity and its Envoy."""

    app: str
    version: str
    inbound: str
    application: str
    outbound: str
    envoy: EnvoyProcess | None = None

    @classmethod
    def create(cls, app: str, version: str, taken: set[str]) -> Workload:
        addresses: list[str] = []
        while len(addresses) < 3:
            address = free_loopback_address((PORT,))
            if address not in taken:
                taken.add(address)
                addresses.append(address)
        inbound, application, outbound = addresses
        return cls(app, version, inbound, application, outbound)

    @property
    def identity(self) -> SpiffeId:
        return SpiffeId(TRUST_DOMAIN, "default", f"bookinfo-{self.app}")

    @property
    def node(self) -> NodeIdentity:
        return NodeIdentity(
            ip=self.inbound,
            name=f"{self.app}-{self.version}-0",
            labels={"app": self.app, "version": self.version},
            service_account=self.identity.service_account,
            extra_metadata={
                INBOUND_ADDRESS_KEY: self.inbound,
                APPLICATION_ADDRESS_KEY: self.application,
                OUTBOUND_ADDRESS_KEY: self.outbound,
            },
        )

    @property
    def node_id(self) -> str:
        return self.node.node_id()

    def endpoint(self) -> Endpoint:
        return Endpoint(
            self.inbound,
            ports={"http": PORT},
            labels={"app": self.app, "version": self.version},
            namespace="default",
            tls_mode=TlsMode.ISTIO,
            service_account=self.identity.service_account,
        )


def _settled(envoy: EnvoyProcess) -> bool:
    """No listener or cluster of the Envoy is warming, and no old listener or filter chain is draining."""
    stats = envoy.stats("^(" + "|".join(re.escape(name) for name in SETTLED) + ")$")
    return len(stats) == len(SETTLED) and not any(stats.values())


class Mesh:
    """The control plane, the workloads and their Envoys, and the ways to send them requests."""

    def __init__(self, directory: str) -> None:
        self.authority = CertificateAuthority.self_signed(None)
        self.store = InMemoryConfigStore(_resources(SUBSETS))
        self.registry = InMemoryRegistry()
        self.workloads: dict[str, Workload] = {}
        self.controller: XdsController
        self.server: XdsServer
        self._directory = directory  # short: Unix socket paths may not exceed 107 bytes
        self._applied: list[Any] = []
        self._contexts: dict[str, ssl.SSLContext] = {}

    @property
    def productpage(self) -> Workload:
        return self.workloads["productpage"]

    def certificate(self, identity: SpiffeId) -> TlsSecret:
        """A new key and a certificate for ``identity``, signed by the mesh's CA."""
        key = ec.generate_private_key(ec.SECP256R1())
        issued = self.authority.sign_key(key.public_key(), [identity])
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return TlsSecret(certificate_chain=issued.full_chain_pem.encode(), private_key=pem)

    def roots(self) -> TlsSecret:
        return TlsSecret(trusted_ca=self.authority.trust_bundle().pem().encode())

    async def converge(self) -> None:
        """Push what changed, and wait until every Envoy ACKed its view and put it in force."""
        await self.controller.flush()
        await self.controller.wait_idle(timeout=DEADLINE)
        views = self.controller.views()
        for workload in self.workloads.values():
            await self.server.wait_synced(workload.node_id, view=views[workload.node_id], timeout=DEADLINE)
        for workload in self.workloads.values():
            envoy = workload.envoy
            assert envoy is not None
            await envoy.wait_until_async(functools.partial(_settled, envoy), timeout=DEADLINE, what="settled config")

    async def apply(self, text: str = "") -> None:
        """Replace the config added since the start with ``text`` (Istio YAML), and wait until it is in force."""
        with self.store.batch():
            for key in self._applied:
                self.store.delete(key.kind, key.namespace, key.name)
            self._applied = [self.store.create(resource).key for resource in _resources(text)]
        await self.converge()

    async def call(self, path: str = "/", **options: Any) -> list[Answer]:
        """Requests from productpage's app to its sidecar's outbound listener, by default with Host ``reviews``."""
        return await asyncio.to_thread(_send, self.productpage.outbound, path, **options)

    async def direct(
        self, workload: str, path: str = "/", *, tls: bool = True, identity: SpiffeId | None = None, **options: Any
    ) -> Answer:
        """One request straight to a workload's inbound listener, in plaintext or over TLS.

        Over TLS the client offers an Istio ALPN, as a sidecar does, and presents ``identity``'s certificate
        (signed by the mesh's CA) when one is given.
        """
        context = self._tls_context(identity) if tls else None
        [answer] = await asyncio.to_thread(_send, self.workloads[workload].inbound, path, context=context, **options)
        return answer

    def _tls_context(self, identity: SpiffeId | None) -> ssl.SSLContext:
        name = str(identity)
        if name not in self._contexts:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False  # workload certificates name SPIFFE ids, not hosts
            context.load_verify_locations(cadata=self.roots().trusted_ca.decode())
            context.set_alpn_protocols(["istio-http/1.1", "http/1.1"])
            if identity is not None:
                secret = self.certificate(identity)
                chain, key = Path(self._directory, "chain.pem"), Path(self._directory, "key.pem")
                chain.write_bytes(secret.certificate_chain)
                key.write_bytes(secret.private_key)
                context.load_cert_chain(chain, key)
            self._contexts[name] = context
        return self._contexts[name]

    def counter(self, workload: str, name: str, *, cluster: str | None = None) -> int:
        """The sum of a workload's Envoy's counters called ``name`` (of one cluster, when given)."""
        envoy = self.workloads[workload].envoy
        assert envoy is not None
        # Cluster stats are named by the cluster's alt_stat_name, Istio's "<name>;".
        prefix = "" if cluster is None else "^" + re.escape(f"cluster.{cluster}") + ";?"
        stats = envoy.stats(prefix + re.escape(f".{name}") + "$")
        return sum(value for value in stats.values() if isinstance(value, int))

    async def wait_for_counter(self, workload: str, name: str, *, at_least: int = 1) -> int:
        """Wait until :meth:`counter` reaches ``at_least``, and return it."""
        envoy = self.workloads[workload].envoy
        assert envoy is not None

        def reached() -> int | None:
            value = self.counter(workload, name)
            return value if value >= at_least else None

        return await envoy.wait_until_async(reached, timeout=DEADLINE, what=f"{name} >= {at_least}")


async def _start_sidecar(stack: contextlib.AsyncExitStack, mesh: Mesh, workload: Workload, ads_port: int) -> None:
    secrets = InMemorySecretProvider()
    secrets.set_secret("default", mesh.certificate(workload.identity))
    secrets.set_secret("ROOTCA", mesh.roots())
    sds = SdsServer(secrets)
    socket = f"{mesh._directory}/{workload.app}-{workload.version}.sock"
    await sds.start(f"unix:{socket}")
    stack.push_async_callback(sds.stop, 0)
    options = EnvoyBootstrapOptions(
        node=workload.node,
        discovery=DiscoveryAddress(host="127.0.0.1", port=ads_port),
        sds_socket=socket,
        admin_address=workload.inbound,
        admin_port=0,
        readiness_port=None,
        stats_port=None,
    )
    workload.envoy = EnvoyProcess(envoy_bootstrap(options), log_level="warning", extra_args=ENVOY_ARGS)
    stack.callback(workload.envoy.stop)


async def _start_app(stack: contextlib.AsyncExitStack, app: EchoApp) -> EchoApp:
    await app.start()
    stack.push_async_callback(app.close)
    return app


@contextlib.asynccontextmanager
async def open_live_mesh(mesh_config: MeshConfig, versions: tuple[str, ...]) -> AsyncIterator[Mesh]:
    """The mesh, with ``reviews`` in ``versions``, up and settled; everything stopped when the block ends."""
    async with contextlib.AsyncExitStack() as stack:
        mesh = Mesh(stack.enter_context(tempfile.TemporaryDirectory(prefix="mesh-live-")))
        taken: set[str] = set()
        mesh.workloads["productpage"] = Workload.create("productpage", "v1", taken)
        for version in versions:
            mesh.workloads[f"reviews-{version}"] = Workload.create("reviews", version, taken)
        reviews = [workload for workload in mesh.workloads.values() if workload.app == "reviews"]

        ratings = await _start_app(stack, EchoApp("ratings", host=free_loopback_address((PORT,)), port=PORT))
        for workload in reviews:
            calls = {"ratings": Dependency(f"http://{workload.outbound}:{PORT}/", f"ratings.{DOMAIN}")}
            app = EchoApp("reviews", version=workload.version, host=workload.application, port=PORT, dependencies=calls)
            await _start_app(stack, app)
        plain = Endpoint(ratings.address[0], ports={"http": PORT}, labels={"app": "ratings"}, namespace="default")
        for name, endpoints in (("reviews", [workload.endpoint() for workload in reviews]), ("ratings", [plain])):
            port = ServicePort("http", PORT, Protocol.HTTP)
            service = Service(f"{name}.{DOMAIN}", "default", [port], selector={"app": name})
            mesh.registry.upsert_service(service)
            mesh.registry.set_endpoints(service.key, endpoints)

        mesh.controller = XdsController(
            mesh.store, mesh.registry, mesh=mesh_config, addresses_for=addresses_from_metadata
        )
        await mesh.controller.start()
        stack.push_async_callback(mesh.controller.close)
        mesh.server = XdsServer(mesh.controller)
        ads_port = await mesh.server.start("127.0.0.1:0")
        stack.push_async_callback(mesh.server.stop, 0)

        for workload in mesh.workloads.values():
            await _start_sidecar(stack, mesh, workload, ads_port)
        await asyncio.gather(*(workload.envoy.start_async() for workload in mesh.workloads.values() if workload.envoy))
        for workload in mesh.workloads.values():
            await mesh.server.wait_synced(workload.node_id, timeout=DEADLINE)
        await mesh.converge()
        yield mesh


@pytest.fixture(scope="session")
def live_mesh() -> Callable[[MeshConfig, tuple[str, ...]], contextlib.AbstractAsyncContextManager[Mesh]]:
    """``async with live_mesh(mesh_config, ("v1", "v2")) as mesh:`` a live mesh (see the module's docstring)."""
    return open_live_mesh


@pytest_asyncio.fixture(loop_scope="module")
async def apply(mesh: Mesh) -> AsyncIterator[Callable[[str], Awaitable[None]]]:
    """``await apply(yaml)``: the test's config on the module's ``mesh``, in force; removed after the test."""
    yield mesh.apply
    await mesh.apply("")


@pytest_asyncio.fixture(loop_scope="module")
async def config(mesh: HarnessMesh) -> AsyncIterator[list[str]]:
    """Names of configs a test applies to a :class:`mesh_harness.Mesh`; removed (and pushed) after the test."""
    names: list[str] = []
    yield names
    for name in reversed(names):
        if name in mesh.applied:
            await mesh.remove(name)
