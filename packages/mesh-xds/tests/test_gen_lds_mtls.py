"""Generated inbound listeners served over ADS to a real Envoy, its certificates over SDS: mutual TLS hands
the peer's SPIFFE id to RBAC, so an AuthorizationPolicy on ``principals`` lets one client in and keeps
another out, and plaintext (allowed by PERMISSIVE) carries no identity at all."""

from __future__ import annotations

import asyncio
import datetime
import socket
import ssl
import tempfile
import textwrap

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mesh_config import PushContext, load_text
from mesh_model import InMemoryRegistry, Protocol, Proxy, Service, ServicePort
from mesh_xds import InMemorySecretProvider, SdsServer, Snapshot, TlsSecret
from mesh_xds.bootstrap import DiscoveryAddress, EnvoyBootstrapOptions, NodeIdentity, envoy_bootstrap
from mesh_xds.generate import GenerationContext, SidecarAddresses
from mesh_xds.generate.cds import build_clusters
from mesh_xds.generate.lds import build_listeners
from mesh_xds.testing.envoy import EnvoyProcess, free_loopback_address

STRICT, PERMISSIVE = 18443, 18444
DEADLINE = 30.0
CLIENT = "spiffe://cluster.local/ns/default/sa/client"
OTHER = "spiffe://cluster.local/ns/default/sa/other"
CONFIG = """\
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: app, namespace: default}
spec:
  selector: {matchLabels: {app: app}}
  mtls: {mode: STRICT}
  portLevelMtls: {18444: {mode: PERMISSIVE}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: only-client, namespace: default}
spec:
  selector: {matchLabels: {app: app}}
  rules: [{from: [{source: {principals: [cluster.local/ns/default/sa/client]}}]}]
"""


class _Ca:
    """A root (ECDSA P-256) issuing SPIFFE certificates."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(x509.NameOID.ORGANIZATION_NAME, "cluster.local")])
        basic = x509.BasicConstraints(ca=True, path_length=None)
        self.certificate = self._builder(self.name, self.key.public_key(), basic).sign(self.key, hashes.SHA256())
        self.roots = self.certificate.public_bytes(serialization.Encoding.PEM)

    def _builder(self, subject, public_key, basic):
        now = datetime.datetime.now(datetime.UTC)
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.name)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(basic, critical=True)
        )

    def issue(self, spiffe_id: str) -> tuple[bytes, bytes]:
        key = ec.generate_private_key(ec.SECP256R1())
        san = x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe_id)])
        builder = self._builder(x509.Name([]), key.public_key(), x509.BasicConstraints(ca=False, path_length=None))
        certificate = builder.add_extension(san, critical=True).sign(self.key, hashes.SHA256())
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return certificate.public_bytes(serialization.Encoding.PEM), key_pem

    def client(self, spiffe_id: str, directory: str, *, alpn: list[str] | None = None) -> ssl.SSLContext:
        chain, key = self.issue(spiffe_id)
        name = spiffe_id.rpartition("/")[2]
        with open(f"{directory}/{name}.pem", "wb") as out:
            out.write(chain)
        with open(f"{directory}/{name}-key.pem", "wb") as out:
            out.write(key)
        context = ssl.create_default_context(cadata=self.roots.decode())
        context.check_hostname = False  # the server's identity is a SPIFFE id, not a DNS name
        context.load_cert_chain(f"{directory}/{name}.pem", f"{directory}/{name}-key.pem")
        if alpn:
            context.set_alpn_protocols(alpn)
        return context


def _status(address: str, port: int, context: ssl.SSLContext | None) -> int:
    """The HTTP status of ``GET /`` through the listener (0 when the connection is refused or reset)."""
    request = b"GET / HTTP/1.1\r\nhost: app\r\nconnection: close\r\n\r\n"
    try:
        with socket.create_connection((address, port), timeout=5) as raw:
            stream = context.wrap_socket(raw) if context is not None else raw
            with stream:
                stream.sendall(request)
                reply = stream.recv(64)
    except (OSError, ssl.SSLError):
        return 0
    return int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/1.1 ") else 0


async def _backend(address: str, ports: tuple[int, ...]) -> list[asyncio.Server]:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while (await reader.readline()) not in (b"\r\n", b""):
                pass
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
            await writer.drain()
        finally:
            writer.close()

    return [await asyncio.start_server(answer, address, port) for port in ports]


@pytest.fixture
def sds_socket():
    with tempfile.TemporaryDirectory(prefix="sds-") as directory:
        yield f"{directory}/sds.sock"


async def test_rbac_sees_the_spiffe_id_of_the_mutual_tls_peer(cache, ads_server, sds_socket, tmp_path):
    ca = _Ca()
    inbound = free_loopback_address((STRICT, PERMISSIVE))
    application = free_loopback_address((STRICT, PERMISSIVE))
    identity = NodeIdentity(ip=inbound, name="app-0", labels={"app": "app"}, service_account="app")
    proxy = Proxy.parse(identity.node_id(), identity.metadata())
    registry = InMemoryRegistry()
    ports = [ServicePort("http", STRICT, Protocol.HTTP), ServicePort("http-plain", PERMISSIVE, Protocol.HTTP)]
    registry.upsert_service(Service("app.default.svc.cluster.local", "default", ports, selector={"app": "app"}))
    resources = load_text(textwrap.dedent(CONFIG)).raise_for_errors().resources
    addresses = SidecarAddresses(inbound=inbound, application=application, outbound=application)
    ctx = GenerationContext(proxy, PushContext.build(resources, registry), registry, addresses=addresses)
    listeners = [listener for listener in build_listeners(ctx) if listener.name.startswith(f"{inbound}_")]
    clusters = [cluster for cluster in build_clusters(ctx) if cluster.name.startswith("inbound|")]
    cache.set_snapshot(identity.node_id(), Snapshot.from_messages([*listeners, *clusters]))

    secrets = InMemorySecretProvider()
    chain, key = ca.issue("spiffe://cluster.local/ns/default/sa/app")
    secrets.set_secret("default", TlsSecret(certificate_chain=chain, private_key=key))
    secrets.set_secret("ROOTCA", TlsSecret(trusted_ca=ca.roots))
    sds = SdsServer(secrets)
    await sds.start(f"unix:{sds_socket}")
    servers = await _backend(application, (STRICT, PERMISSIVE))
    options = EnvoyBootstrapOptions(
        node=identity,
        discovery=DiscoveryAddress(host="127.0.0.1", port=ads_server.port),
        sds_socket=sds_socket,
        admin_address=inbound,
        admin_port=0,
        readiness_port=None,
        stats_port=None,
    )
    client = ca.client(CLIENT, str(tmp_path), alpn=["istio", "http/1.1"])
    other = ca.client(OTHER, str(tmp_path), alpn=["istio", "http/1.1"])
    try:
        async with EnvoyProcess(envoy_bootstrap(options), log_level="warning") as envoy:

            def served():
                return _status(inbound, STRICT, client) == 200 or None

            await envoy.wait_until_async(served, timeout=DEADLINE, what="the mutual TLS listener")
            statuses = await asyncio.gather(
                asyncio.to_thread(_status, inbound, STRICT, other),
                asyncio.to_thread(_status, inbound, STRICT, None),
                asyncio.to_thread(_status, inbound, PERMISSIVE, client),
                asyncio.to_thread(_status, inbound, PERMISSIVE, other),
                asyncio.to_thread(_status, inbound, PERMISSIVE, None),
            )
            # STRICT: another identity is denied by RBAC; plaintext finds no filter chain.
            # PERMISSIVE: mutual TLS carries the identity; plaintext is accepted by the listener but has none.
            assert statuses == [403, 0, 200, 403, 403]
    finally:
        for server in servers:
            server.close()
        await sds.stop(grace=0)
