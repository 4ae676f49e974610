"""mesh_ca's certificates on real Envoys: mutual TLS over SDS, renewal under traffic, and a root rotation.

Two workloads, ``sleep`` (the client) and ``httpbin`` (the server), each have a node agent: a
:class:`mesh_ca.CertificateClient` that gets the workload's certificate from a :class:`mesh_ca.CaServer`
(authenticated with a service account token) and hands it to the workload's own Envoy through a
:class:`mesh_xds.SdsServer` on a Unix socket (secrets ``default`` and ``ROOTCA``). One
:class:`mesh_xds.XdsServer` configures both Envoys::

    app --TCP--> sleep's Envoy (outbound, tcp_proxy) ==mTLS==> httpbin's Envoy (inbound, HTTP) --> backend

sleep's Envoy presents ``default`` and accepts only a server certificate that chains to ``ROOTCA`` and names
httpbin's SPIFFE id. httpbin's Envoy requires a client certificate that chains to ``ROOTCA``, and tells the
backend who the client is in ``x-forwarded-client-cert`` (the client's SPIFFE id and the SHA-256 of its
certificate); the backend answers with that header. The outbound listener proxies TCP, so each app
connection is one mTLS connection, and the hash in its answers names the client certificate it was opened
with. A Python TLS client also talks to httpbin's Envoy directly, to see the certificate it serves and to
present certificates of its own.
"""

import asyncio
import base64
import contextlib
import itertools
import json
import socket
import ssl
import tempfile
import time
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from envoy.config.core.v3 import address_pb2, base_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2, tls_pb2
from envoy.type.matcher.v3 import string_pb2
from google.protobuf import any_pb2

from mesh_ca import (
    CaServer,
    CertificateAuthority,
    CertificateClient,
    JwtAuthenticator,
    JwtIssuer,
    RenewalPolicy,
    generate_private_key,
)
from mesh_model import SpiffeId
from mesh_xds import SdsServer, Snapshot, SnapshotCache, XdsServer
from mesh_xds.bootstrap import ApiType, DiscoveryAddress, EnvoyBootstrapOptions, NodeIdentity, envoy_bootstrap
from mesh_xds.testing.envoy import EnvoyProcess, free_loopback_address
from mesh_xds.testing.resources import (
    downstream_tls_context,
    eds_cluster,
    load_assignment,
    route_configuration,
    sds_config_source,
    tcp_listener,
)

TRUST_DOMAIN = "cluster.local"
ISSUER = "https://kubernetes.default.svc.cluster.local"
CLIENT = SpiffeId(TRUST_DOMAIN, "default", "sleep")
SERVER = SpiffeId(TRUST_DOMAIN, "default", "httpbin")
OUTBOUND_PORT = 15001
INBOUND_PORT = 15006
DEADLINE = 30.0  # generous: only a failing test waits this long
REFUSED = (ssl.SSLError, ConnectionError)  # a TLS alert, or the connection closed or reset after one
FAST_RETRIES = RenewalPolicy(retry_initial=timedelta(milliseconds=100), retry_max=timedelta(milliseconds=500))


# ------------------------------------------------------------------------------------------ helpers


def _any(message):
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def _sha256(certificate):
    return certificate.fingerprint(hashes.SHA256()).hex()


def _uris(certificate):
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return names.get_values_for_type(x509.UniformResourceIdentifier)


def _xfcc(answer):
    """The fields of the one element of an ``x-forwarded-client-cert`` header: ``By``, ``Hash``, ``URI``."""
    header = answer["xfcc"]
    assert "," not in header, f"one client certificate expected, got {header!r}"
    return dict(field.split("=", 1) for field in header.split(";"))


def _issued_by(certificate, root):
    try:
        certificate.verify_directly_issued_by(root)
    except (ValueError, InvalidSignature):
        return False
    return True


def _active_secrets(envoy):
    """What Envoy holds now, from its config dump: the ``default`` chain and the ``ROOTCA`` roots, PEM."""
    found = {}
    for entry in envoy.config_dump(resource="dynamic_active_secrets").get("configs", []):
        secret = entry.get("secret", {})
        if "tls_certificate" in secret:
            found[entry["name"]] = base64.b64decode(secret["tls_certificate"]["certificate_chain"]["inline_bytes"])
        elif "validation_context" in secret:
            found[entry["name"]] = base64.b64decode(secret["validation_context"]["trusted_ca"]["inline_bytes"])
    return found


def _trusted_roots(envoy):
    """The roots in the ``ROOTCA`` secret Envoy holds now."""
    roots = _active_secrets(envoy).get("ROOTCA")
    return set(x509.load_pem_x509_certificates(roots)) if roots else set()


async def _eventually(check, what, timeout=DEADLINE):
    """Run ``check`` in a worker thread until it returns something truthy (``OSError`` counts as not yet)."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            result = await asyncio.to_thread(check)
        except OSError as error:
            result, last = None, error
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s (last error: {last})")
        await asyncio.sleep(0.05)


class HttpConnection:
    """One HTTP/1.1 keep-alive connection on a plain socket, so that it is never silently reopened."""

    def __init__(self, address, port, *, context=None):
        raw = socket.create_connection((address, port), timeout=10)
        try:
            self._socket = context.wrap_socket(raw) if context is not None else raw
        except BaseException:
            raw.close()
            raise
        self._buffer = b""

    def close(self):
        self._socket.close()

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.close()

    def peer_certificate(self):
        return x509.load_der_x509_certificate(self._socket.getpeercert(binary_form=True))

    def _read_until(self, marker):
        while marker not in self._buffer:
            chunk = self._socket.recv(65536)
            if not chunk:
                raise ConnectionError("the connection was closed")
            self._buffer += chunk
        head, _, self._buffer = self._buffer.partition(marker)
        return head

    def get(self):
        """``GET /`` and the backend's JSON answer; ``OSError`` if the connection fails or is closed."""
        self._socket.sendall(b"GET / HTTP/1.1\r\nhost: httpbin\r\n\r\n")
        status, *lines = self._read_until(b"\r\n\r\n").decode("latin-1").split("\r\n")
        headers = {name.lower(): value for name, value in (line.split(": ", 1) for line in lines)}
        length = int(headers.get("content-length", "0"))
        while len(self._buffer) < length:
            chunk = self._socket.recv(65536)
            if not chunk:
                raise ConnectionError("the connection was closed in the middle of an answer")
            self._buffer += chunk
        body, self._buffer = self._buffer[:length], self._buffer[length:]
        if not status.startswith("HTTP/1.1 200"):
            raise ConnectionError(f"answered {status!r}: {body!r}")
        return json.loads(body)


# ------------------------------------------------------------------------------------------ Envoy resources


def _server_listener(address):
    """httpbin's inbound listener: mTLS with SDS secrets, and the client's identity in x-forwarded-client-cert."""
    manager = hcm_pb2.HttpConnectionManager(
        stat_prefix="inbound",
        route_config=route_configuration("inbound", {"*": "backend"}),
        forward_client_cert_details=hcm_pb2.HttpConnectionManager.SANITIZE_SET,
        set_current_client_cert_details=hcm_pb2.HttpConnectionManager.SetCurrentClientCertDetails(uri=True),
        http_filters=[hcm_pb2.HttpFilter(name="envoy.filters.http.router", typed_config=_any(router_pb2.Router()))],
    )
    context = downstream_tls_context(require_client_certificate=True, sds_source=sds_config_source())
    return listener_pb2.Listener(
        name="inbound",
        address=address_pb2.Address(socket_address=address_pb2.SocketAddress(address=address, port_value=INBOUND_PORT)),
        filter_chains=[
            listener_components_pb2.FilterChain(
                filters=[
                    listener_components_pb2.Filter(
                        name="envoy.filters.network.http_connection_manager", typed_config=_any(manager)
                    )
                ],
                transport_socket=base_pb2.TransportSocket(
                    name="envoy.transport_sockets.tls", typed_config=_any(context)
                ),
            )
        ],
    )


def _server_cluster():
    """sleep's cluster to httpbin: mTLS with SDS secrets, accepting only httpbin's SPIFFE id."""
    source = sds_config_source()
    validation = tls_pb2.CommonTlsContext.CombinedCertificateValidationContext(
        default_validation_context=common_pb2.CertificateValidationContext(
            match_typed_subject_alt_names=[
                common_pb2.SubjectAltNameMatcher(
                    san_type=common_pb2.SubjectAltNameMatcher.URI, matcher=string_pb2.StringMatcher(exact=SERVER.uri)
                )
            ]
        ),
        validation_context_sds_secret_config=secret_pb2.SdsSecretConfig(name="ROOTCA", sds_config=source),
    )
    context = tls_pb2.UpstreamTlsContext(
        common_tls_context=tls_pb2.CommonTlsContext(
            tls_certificate_sds_secret_configs=[secret_pb2.SdsSecretConfig(name="default", sds_config=source)],
            combined_validation_context=validation,
        )
    )
    cluster = eds_cluster("httpbin")
    cluster.transport_socket.CopyFrom(
        base_pb2.TransportSocket(name="envoy.transport_sockets.tls", typed_config=_any(context))
    )
    return cluster


# ------------------------------------------------------------------------------------------ the node agents


class Workload:
    """A workload's node agent (certificate client and SDS server) and its Envoy."""

    def __init__(self, identity, client, address):
        self.identity = identity
        self.client = client
        self.address = address
        self.node_id = ""
        self.envoy = None
        self.certificates = []  # every certificate the client got, in order
        client.subscribe(self._changed)

    def _changed(self, name):
        if name == "default":
            self.certificates.append(self.client.certificate)

    def by_hash(self, digest):
        """The certificate the client got whose SHA-256 is ``digest``, or ``None``."""
        return next((cert for cert in self.certificates if _sha256(cert.leaf()) == digest), None)

    def bootstrap(self, ads_port, sds_socket):
        options = EnvoyBootstrapOptions(
            node=NodeIdentity(
                ip=self.address,
                name=f"{self.identity.service_account}-0",
                labels={"app": self.identity.service_account},
                service_account=self.identity.service_account,
            ),
            discovery=DiscoveryAddress(host="127.0.0.1", port=ads_port),
            api_type=ApiType.DELTA_GRPC,
            sds_socket=sds_socket,
            admin_address=self.address,
            admin_port=0,
            readiness_port=None,
            stats_port=None,
        )
        self.node_id = options.node.node_id()
        return envoy_bootstrap(options)


class Mesh:
    """sleep and httpbin, each with its node agent and its Envoy, and the way to talk to them."""

    def __init__(self, client, server, authority):
        self.client = client
        self.server = server
        self.authority = authority
        self.inbound_tls_stats = f"listener.{server.address}_{INBOUND_PORT}.ssl"  # httpbin's Envoy's TLS counters

    def connect(self):
        """An app connection to httpbin through sleep's Envoy (blocking; run it in a worker thread)."""
        return HttpConnection(self.client.address, OUTBOUND_PORT)

    def request(self):
        """One request on a new app connection: the XFCC fields httpbin's Envoy sent to the backend."""
        with self.connect() as connection:
            return _xfcc(connection.get())

    def direct(self, chain_pem=None, key_pem=None):
        """A TLS connection from Python straight to httpbin's Envoy, presenting ``chain_pem`` if given."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False  # workload certificates name a SPIFFE id, not a host: checked below
        context.load_verify_locations(cadata=self.authority.trust_bundle().pem())
        if chain_pem is not None:
            with tempfile.TemporaryDirectory(prefix="mesh-tls-") as directory:
                with open(f"{directory}/chain.pem", "wb") as chain, open(f"{directory}/key.pem", "wb") as key:
                    chain.write(chain_pem)
                    key.write(key_pem)
                context.load_cert_chain(f"{directory}/chain.pem", f"{directory}/key.pem")
        connection = HttpConnection(self.server.address, INBOUND_PORT, context=context)
        assert _uris(connection.peer_certificate()) == [SERVER.uri]
        return connection

    def direct_as_client(self, certificate=None):
        """A direct TLS request presenting sleep's certificate: the served certificate and the XFCC fields."""
        certificate = certificate or self.client.client.certificate
        with self.direct(certificate.certificate_chain_pem, certificate.private_key_pem) as connection:
            return connection.peer_certificate(), _xfcc(connection.get())


def _token(key, identity):
    claims = {
        "iss": ISSUER,
        "aud": "istio-ca",
        "sub": f"system:serviceaccount:{identity.namespace}:{identity.service_account}",
        "exp": int(time.time()) + 3600,
    }
    return jwt.encode(claims, key, algorithm="ES256")


# ------------------------------------------------------------------------------------------ fixtures


@pytest.fixture
def authority():
    return CertificateAuthority.self_signed(None)


@pytest.fixture
def token_key():
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
async def ca_server(authority, token_key):
    public = token_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    authenticator = JwtAuthenticator([JwtIssuer(ISSUER, public_keys=[public])], trust_domain=TRUST_DOMAIN)
    server = CaServer(authority, authenticators=[authenticator])
    await server.start("127.0.0.1:0")
    yield server
    await server.stop(grace=0)


@pytest.fixture
async def backend():
    """An HTTP/1.1 server on loopback answering every request with the XFCC header it got; yields its port."""
    writers = set()

    async def answer(reader, writer):
        writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")[1:]
                fields = (line.split(": ", 1) for line in lines if line)
                headers = {name.lower(): value for name, value in fields}
                body = json.dumps({"xfcc": headers.get("x-forwarded-client-cert", "")}).encode()
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n")
                writer.write(b"content-length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writers.discard(writer)
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    for writer in list(writers):
        writer.close()
    await server.wait_closed()


@pytest.fixture
async def ads():
    cache = SnapshotCache()
    server = XdsServer(cache)
    await server.start("127.0.0.1:0")
    yield cache, server.port
    await server.stop(grace=0)


@pytest.fixture
async def start_mesh(authority, ca_server, token_key, backend, ads):
    """``await start_mesh(ttl=...)``: both workloads up, traffic flowing; all stopped afterwards."""
    cache, ads_port = ads
    roots = authority.trust_bundle().pem().encode()

    async def workload(stack, identity, port, *, ttl):
        """The workload's node agent, up with its first certificate, and the path of its SDS socket."""
        client = CertificateClient(
            ca_server.address,
            identity,
            root_certificates=roots,
            token=lambda: _token(token_key, identity),
            ttl=ttl,
            renewal=FAST_RETRIES,
        )
        started = Workload(identity, client, free_loopback_address((port,)))
        await stack.enter_async_context(client)
        await client.wait_for_certificate(timeout=DEADLINE)
        # A short path: Unix socket paths may not exceed 107 bytes, and pytest's tmp_path can.
        directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="sds-"))
        sds = SdsServer(client)
        await sds.start(f"unix:{directory}/sds.sock")
        stack.push_async_callback(sds.stop, 0)
        return started, f"{directory}/sds.sock"

    async with contextlib.AsyncExitStack() as stack:

        async def start(*, ttl):
            server, server_sds = await workload(stack, SERVER, INBOUND_PORT, ttl=ttl)
            client, client_sds = await workload(stack, CLIENT, OUTBOUND_PORT, ttl=ttl)
            server_config = server.bootstrap(ads_port, server_sds)
            client_config = client.bootstrap(ads_port, client_sds)
            cache.set_snapshot(
                server.node_id,
                Snapshot.from_messages(
                    [
                        eds_cluster("backend"),
                        load_assignment("backend", [("127.0.0.1", backend)]),
                        _server_listener(server.address),
                    ]
                ),
            )
            cache.set_snapshot(
                client.node_id,
                Snapshot.from_messages(
                    [
                        _server_cluster(),
                        load_assignment("httpbin", [(server.address, INBOUND_PORT)]),
                        tcp_listener("outbound", client.address, OUTBOUND_PORT, cluster="httpbin"),
                    ]
                ),
            )
            server.envoy = await stack.enter_async_context(EnvoyProcess(server_config))
            client.envoy = await stack.enter_async_context(EnvoyProcess(client_config))
            mesh = Mesh(client, server, authority)
            await _eventually(mesh.request, "a first request through both Envoys")
            return mesh

        yield start


# ------------------------------------------------------------------------------------------ tests


def _key_pem(key):
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


async def test_two_envoys_talk_mtls_with_certificates_from_the_ca_and_a_foreign_certificate_is_refused(
    start_mesh, authority
):
    mesh = await start_mesh(ttl=timedelta(hours=1))
    bundle = authority.trust_bundle()

    # app -> sleep's Envoy ==mTLS==> httpbin's Envoy -> backend, and httpbin's Envoy saw sleep's identity.
    fields = await asyncio.to_thread(mesh.request)
    presented = mesh.client.client.certificate
    assert fields == {"By": SERVER.uri, "Hash": _sha256(presented.leaf()), "URI": CLIENT.uri}
    assert bundle.verify(presented.certificate_chain_pem.decode()) == (CLIENT,)

    # Each Envoy holds what its node agent got from the CA, delivered over SDS.
    for workload in (mesh.client, mesh.server):
        secrets = await asyncio.to_thread(_active_secrets, workload.envoy)
        assert secrets["default"] == workload.client.certificate.certificate_chain_pem
        assert set(x509.load_pem_x509_certificates(secrets["ROOTCA"])) == {authority.root_certificate}

    # A Python client presenting sleep's certificate reaches the backend, and is served httpbin's certificate.
    served, direct = await asyncio.to_thread(mesh.direct_as_client)
    assert served.serial_number == mesh.server.client.certificate.serial_number
    assert direct["URI"] == CLIENT.uri

    # The same identity certified by another CA is refused, and so is a client without a certificate.
    stranger = CertificateAuthority.self_signed(None, trust_domain=TRUST_DOMAIN)
    key = generate_private_key()
    forged = stranger.sign_key(key.public_key(), [CLIENT])
    for chain, key_pem, counter in (
        (forged.certificate_pem.encode(), _key_pem(key), "fail_verify_error"),
        (None, None, "fail_verify_no_cert"),
    ):

        def attempt(chain=chain, key_pem=key_pem):
            with mesh.direct(chain, key_pem) as connection:
                return connection.get()

        with pytest.raises(REFUSED):
            await asyncio.to_thread(attempt)
        await mesh.server.envoy.wait_for_stat_async(f"{mesh.inbound_tls_stats}.{counter}", timeout=DEADLINE)
    assert await asyncio.to_thread(mesh.request) == fields  # the mesh still works


async def _until_past(moment):
    """Wait until the clock has passed ``moment`` (a certificate's expiry)."""
    while (left := (moment - datetime.now(UTC)).total_seconds()) >= 0:
        await asyncio.sleep(min(left + 0.05, 0.5))


async def test_short_lived_certificates_renew_under_traffic(start_mesh):
    mesh = await start_mesh(ttl=timedelta(seconds=6))  # renewed after about 3 s
    live = await asyncio.to_thread(mesh.connect)
    try:
        first = _xfcc(await asyncio.to_thread(live.get))
        opened_with = mesh.client.by_hash(first["Hash"])
        assert opened_with is not None, "the live connection was opened with a certificate from sleep's agent"
        served_then = mesh.server.client.certificate

        # Both agents renew, and the certificate the live connection was opened with expires.
        await mesh.client.client.wait_for_certificate(newer_than=opened_with, timeout=DEADLINE)
        await mesh.server.client.wait_for_certificate(newer_than=served_then, timeout=DEADLINE)
        await _until_past(opened_with.not_after)

        # The live mTLS connection keeps working: it is the one opened with the old certificate.
        assert _xfcc(await asyncio.to_thread(live.get)) == first
    finally:
        live.close()

    # New connections are opened with a renewed certificate, on both sides.
    def renewed_request():
        fields = mesh.request()
        held = mesh.client.by_hash(fields["Hash"])
        return fields if held is not None and held.received_at > opened_with.received_at else None

    fields = await _eventually(renewed_request, "a new connection with sleep's renewed certificate")
    assert fields["URI"] == CLIENT.uri

    def served_renewed():
        served, _ = mesh.direct_as_client()
        renewed = [
            cert.serial_number for cert in mesh.server.certificates if cert.received_at > served_then.received_at
        ]
        return served.serial_number in renewed

    await _eventually(served_renewed, "httpbin's Envoy serving its renewed certificate")

    # Every renewal came before the certificate it replaced expired.
    for workload in (mesh.client, mesh.server):
        held = workload.certificates
        assert len(held) >= 2
        for old, new in itertools.pairwise(held):
            assert new.received_at < old.not_after, f"{workload.identity} renewed after its certificate expired"
            assert new.serial_number != old.serial_number


async def test_a_root_rotation_keeps_workloads_on_the_old_and_the_new_root_talking(start_mesh, authority):
    mesh = await start_mesh(ttl=timedelta(hours=1))
    old_root = authority.root_certificate
    client_old = mesh.client.client.certificate
    live = await asyncio.to_thread(mesh.connect)
    try:
        before = _xfcc(await asyncio.to_thread(live.get))
        assert before["Hash"] == _sha256(client_old.leaf())

        # A new root signs from now on. Each node agent is handed the CA's trust bundle (both roots), before
        # either has renewed, and its SDS server pushes the new ROOTCA to its Envoy.
        new_root = authority.rotate_root()
        for workload in (mesh.client, mesh.server):
            assert workload.client.set_trusted_roots(authority.trust_bundle().pem())
        for workload in (mesh.client, mesh.server):
            await workload.envoy.wait_until_async(
                lambda envoy=workload.envoy: _trusted_roots(envoy) == {old_root, new_root},
                timeout=DEADLINE,
                what="ROOTCA with both roots",
            )

        # httpbin renews on the new root; sleep is still on the old one. They keep talking, both ways verified.
        server_new = await mesh.server.client.renew(timeout=DEADLINE)
        assert _issued_by(server_new.leaf(), new_root)
        assert _issued_by(client_old.leaf(), old_root)

        def serves_new_root():
            served, fields = mesh.direct_as_client(client_old)
            return served.serial_number == server_new.serial_number and fields["URI"] == CLIENT.uri

        await _eventually(serves_new_root, "httpbin's Envoy serving its new-root certificate to an old-root client")
        assert await asyncio.to_thread(mesh.request) == before  # sleep's Envoy (old root) -> httpbin's (new root)
        assert _xfcc(await asyncio.to_thread(live.get)) == before  # the connection of before the rotation
    finally:
        live.close()

    # sleep renews on the new root too.
    client_new = await mesh.client.client.renew(timeout=DEADLINE)
    assert _issued_by(client_new.leaf(), new_root)
    fields = await _eventually(
        lambda: (found := mesh.request())["Hash"] == _sha256(client_new.leaf()) and found,
        "a connection with sleep's new-root certificate",
    )
    assert fields["URI"] == CLIENT.uri

    # Once the old root is retired, the Envoys stop trusting it: sleep's old certificate, still valid, is refused.
    authority.retire_root(old_root)
    for workload in (mesh.client, mesh.server):
        assert workload.client.set_trusted_roots(authority.trust_bundle().pem())
    for workload in (mesh.client, mesh.server):
        await workload.envoy.wait_until_async(
            lambda envoy=workload.envoy: _trusted_roots(envoy) == {new_root},
            timeout=DEADLINE,
            what="ROOTCA without the old root",
        )
    assert client_old.not_after > datetime.now(UTC)
    refusals = mesh.server.envoy.stat(f"{mesh.inbound_tls_stats}.fail_verify_error") or 0
    with pytest.raises(REFUSED):
        await asyncio.to_thread(mesh.direct_as_client, client_old)
    await mesh.server.envoy.wait_for_stat_async(
        f"{mesh.inbound_tls_stats}.fail_verify_error", at_least=refusals + 1, timeout=DEADLINE
    )
    assert (await asyncio.to_thread(mesh.request))["Hash"] == _sha256(client_new.leaf())
