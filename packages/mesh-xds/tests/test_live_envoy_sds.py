"""A real Envoy 1.40 terminates TLS with certificates from the SDS server, and picks up a rotation live.

The listener's DownstreamTlsContext names the secrets ``default`` (certificate and key) and ``ROOTCA``
(the roots client certificates must chain to), fetched over the bootstrap's ``sds-grpc`` cluster from an
:class:`~mesh_xds.SdsServer` on a Unix socket; the listener, its cluster and the backend's endpoint come
from an :class:`~mesh_xds.XdsServer`. A Python TLS client in a worker thread (the event loop keeps serving
xDS and the backend) checks which certificate Envoy presents.
"""

import asyncio
import datetime
import socket
import ssl
import tempfile

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mesh_xds import SECRET_TYPE, InMemorySecretProvider, SdsServer, Snapshot, StreamKind, TlsSecret
from mesh_xds.bootstrap import ApiType, DiscoveryAddress, EnvoyBootstrapOptions, NodeIdentity, envoy_bootstrap
from mesh_xds.testing.envoy import EnvoyProcess, free_loopback_address
from mesh_xds.testing.resources import (
    downstream_tls_context,
    eds_cluster,
    load_assignment,
    sds_config_source,
    tls_tcp_listener,
)

TRUST_DOMAIN = "cluster.local"
SERVER_NAME = "app.default.svc.cluster.local"
SERVER_ID = f"spiffe://{TRUST_DOMAIN}/ns/default/sa/app"
CLIENT_ID = f"spiffe://{TRUST_DOMAIN}/ns/default/sa/client"
INBOUND_PORT = 15006
LISTENER = "inbound"
BACKEND = "backend"
DEADLINE = 30.0


# ------------------------------------------------------------------------------------------ certificates


def _pem(certificate):
    return certificate.public_bytes(serialization.Encoding.PEM)


def _key_pem(key):
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


class RootCa:
    """A small root CA (ECDSA P-256) that signs SPIFFE workload certificates."""

    def __init__(self):
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, TRUST_DOMAIN)])
        now = datetime.datetime.now(datetime.UTC)
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        self.roots = _pem(self.certificate)

    def issue(self, spiffe_id, dns_names=()):
        """A leaf for ``spiffe_id`` (and DNS names): its serial, certificate PEM and key PEM."""
        key = ec.generate_private_key(ec.SECP256R1())
        serial = x509.random_serial_number()
        now = datetime.datetime.now(datetime.UTC)
        names = [x509.UniformResourceIdentifier(spiffe_id), *(x509.DNSName(name) for name in dns_names)]
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=True,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .add_extension(x509.SubjectAlternativeName(names), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        return serial, _pem(certificate), _key_pem(key)

    def workload_secret(self):
        """A ``default`` secret for the server's identity; returns its serial and the secret."""
        serial, chain, key = self.issue(SERVER_ID, [SERVER_NAME])
        return serial, TlsSecret(certificate_chain=chain, private_key=key)


@pytest.fixture(scope="module")
def ca():
    return RootCa()


@pytest.fixture
def client_context(ca, tmp_path):
    """A TLS client that trusts the test root and presents a certificate of its own (mutual TLS)."""
    _, chain, key = ca.issue(CLIENT_ID)
    (tmp_path / "client.pem").write_bytes(chain)
    (tmp_path / "client-key.pem").write_bytes(key)
    context = ssl.create_default_context(cadata=ca.roots.decode())
    context.load_cert_chain(tmp_path / "client.pem", tmp_path / "client-key.pem")
    return context


# ------------------------------------------------------------------------------------------ the pieces


@pytest.fixture
def sds_socket():
    """A short socket path: Unix socket paths may not exceed 107 bytes, and pytest's tmp_path can."""
    with tempfile.TemporaryDirectory(prefix="sds-") as directory:
        yield f"{directory}/sds.sock"


@pytest.fixture
def secrets():
    return InMemorySecretProvider()


@pytest.fixture
async def sds(secrets, sds_socket):
    server = SdsServer(secrets)
    await server.start(f"unix:{sds_socket}")
    yield server
    await server.stop(grace=0)


@pytest.fixture
async def backend():
    """A TCP server on loopback answering each line with ``backend: <line>``; yields its port."""

    async def answer(reader, writer):
        try:
            line = await reader.readline()
            writer.write(b"backend: " + line)
            await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


@pytest.fixture
def address():
    return free_loopback_address((INBOUND_PORT,))


def _bootstrap(address, ads_port, sds_socket):
    options = EnvoyBootstrapOptions(
        node=NodeIdentity(ip=address, name="app-0", labels={"app": "app"}, service_account="app"),
        discovery=DiscoveryAddress(host="127.0.0.1", port=ads_port),
        api_type=ApiType.DELTA_GRPC,
        sds_socket=sds_socket,
        admin_address=address,
        admin_port=0,
        readiness_port=None,
        stats_port=None,
    )
    return options.node.node_id(), envoy_bootstrap(options)


def _snapshot(address, backend_port, *, delta, with_listener=True):
    messages = [eds_cluster(BACKEND), load_assignment(BACKEND, [("127.0.0.1", backend_port)])]
    if with_listener:
        context = downstream_tls_context(require_client_certificate=True, sds_source=sds_config_source(delta=delta))
        messages.append(tls_tcp_listener(LISTENER, address, INBOUND_PORT, cluster=BACKEND, context=context))
    return Snapshot.from_messages(messages)


def _exchange(address, context, line=b"ping\n"):
    """Connect over TLS, send a line through Envoy to the backend; return the served serial and the reply."""
    with (
        socket.create_connection((address, INBOUND_PORT), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=SERVER_NAME) as tls,
    ):
        served = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))
        tls.sendall(line)
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = tls.recv(1024)
            if not chunk:
                break
            reply += chunk
    return served, reply


def _uris(certificate):
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return names.get_values_for_type(x509.UniformResourceIdentifier)


# ------------------------------------------------------------------------------------------ tests


@pytest.mark.parametrize("delta", [False, True], ids=["sotw", "delta"])
async def test_envoy_serves_the_sds_certificate_and_picks_up_a_rotation(
    ca, client_context, secrets, sds, sds_socket, cache, ads_server, backend, address, delta
):
    serial, secret = ca.workload_secret()
    secrets.set_secret("default", secret)
    secrets.set_secret("ROOTCA", TlsSecret(trusted_ca=ca.roots))
    node_id, config = _bootstrap(address, ads_server.port, sds_socket)
    cache.set_snapshot(node_id, _snapshot(address, backend, delta=delta))

    async with EnvoyProcess(config) as envoy:
        pid = envoy.pid
        await envoy.wait_until_async(lambda: LISTENER in envoy.listeners(), timeout=DEADLINE, what="the TLS listener")
        served, reply = await asyncio.to_thread(_exchange, address, client_context)
        assert served.serial_number == serial
        assert _uris(served) == [SERVER_ID]
        assert reply == b"backend: ping\n"

        # Envoy fetched both secrets from the SDS server, over the protocol the listener asked for.
        kind = StreamKind.DELTA if delta else StreamKind.SOTW
        streams = await sds.wait_until(
            lambda found: {name for status in found if status.synced for name in status.type(SECRET_TYPE).names}
            == {"default", "ROOTCA"},
            node_id=node_id,
            timeout=DEADLINE,
        )
        assert {status.kind for status in streams} == {kind}
        assert all(status.type(SECRET_TYPE).nacks == 0 for status in streams)

        # The roots from SDS are enforced: a client without a certificate does not reach the backend.
        anonymous = ssl.create_default_context(cadata=ca.roots.decode())
        try:
            _, refused = await asyncio.to_thread(_exchange, address, anonymous)
        except OSError:
            refused = b""
        assert refused == b""

        # Rotation: a new certificate from the provider is served on new connections, without a restart.
        new_serial, new_secret = ca.workload_secret()
        secrets.set_secret("default", new_secret)

        def rotated():
            served, reply = _exchange(address, client_context)
            return reply if served.serial_number == new_serial else None

        assert await envoy.wait_until_async(rotated, timeout=DEADLINE, what="the rotated certificate") == (
            b"backend: ping\n"
        )
        assert envoy.pid == pid
        assert envoy.returncode is None


def _listener_state(envoy):
    """``active``, ``warming`` or ``None``: where the dynamic listener stands in Envoy's config dump."""
    for entry in envoy.config_dump(resource="dynamic_listeners").get("configs", []):
        if entry.get("name") == LISTENER:
            return "active" if "active_state" in entry else "warming" if "warming_state" in entry else None
    return None


def _answered(names):
    """A predicate on SDS stream records: Envoy has ACKed or NACKed an answer about each of ``names``."""

    def check(statuses):
        seen = set()
        for status in statuses:
            secret = status.type(SECRET_TYPE)
            if secret is not None and secret.acks + secret.nacks > 0:
                seen.update(secret.names)
        return seen >= set(names)

    return check


@pytest.mark.parametrize("delta", [False, True], ids=["sotw", "delta"])
async def test_a_listener_waits_for_a_secret_that_is_not_ready_and_comes_up_when_it_arrives(
    ca, client_context, secrets, sds, sds_socket, cache, ads_server, backend, address, delta
):
    secrets.set_secret("ROOTCA", TlsSecret(trusted_ca=ca.roots))  # the roots are there, the certificate is not
    node_id, config = _bootstrap(address, ads_server.port, sds_socket)
    cache.set_snapshot(node_id, _snapshot(address, backend, delta=delta, with_listener=False))

    async with EnvoyProcess(config) as envoy:
        cache.set_snapshot(node_id, _snapshot(address, backend, delta=delta))
        # Once Envoy has taken the SDS server's answers for both names, the listener still waits for its certificate.
        await sds.wait_until(_answered({"default", "ROOTCA"}), node_id=node_id, timeout=DEADLINE)
        assert await asyncio.to_thread(_listener_state, envoy) == "warming"
        assert LISTENER not in await asyncio.to_thread(envoy.listeners)

        serial, secret = ca.workload_secret()
        secrets.set_secret("default", secret)
        await envoy.wait_until_async(
            lambda: _listener_state(envoy) == "active", timeout=DEADLINE, what="the listener to leave warming"
        )
        served, reply = await asyncio.to_thread(_exchange, address, client_context)
        assert served.serial_number == serial
        assert reply == b"backend: ping\n"
        assert all(status.type(SECRET_TYPE).nacks == 0 for status in sds.status_of(node_id))
