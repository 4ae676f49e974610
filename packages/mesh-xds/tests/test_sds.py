"""Secrets: the provider protocol, packing, and the SDS server over TCP and Unix sockets."""

import tempfile
import threading

import grpc
import pytest
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from envoy.service.discovery.v3 import discovery_pb2

from mesh_xds import (
    SECRET_TYPE,
    InMemorySecretProvider,
    InvalidResourceError,
    SdsServer,
    SecretData,
    SecretProvider,
    TlsSecret,
    secret_resource,
    unpack,
)
from mesh_xds.testing import AdsClient

CHAIN = b"-----BEGIN CERTIFICATE-----\nleaf\n-----END CERTIFICATE-----\n"
KEY = b"-----BEGIN PRIVATE KEY-----\nkey\n-----END PRIVATE KEY-----\n"
ROOTS = b"-----BEGIN CERTIFICATE-----\nroot\n-----END CERTIFICATE-----\n"
NODE = "sidecar~127.0.0.1~reviews-v1.default~default.svc.cluster.local"


def test_secret_data_becomes_an_envoy_secret():
    certificate = unpack(secret_resource("default", TlsSecret(certificate_chain=CHAIN, private_key=KEY)))
    assert certificate.name == "default"
    assert certificate.tls_certificate.certificate_chain.inline_bytes == CHAIN
    assert certificate.tls_certificate.private_key.inline_bytes == KEY
    roots = unpack(secret_resource("ROOTCA", TlsSecret(trusted_ca=ROOTS)))
    assert roots.validation_context.trusted_ca.inline_bytes == ROOTS
    message = secret_pb2.Secret(name="ignored")
    message.validation_context.trusted_ca.inline_bytes = ROOTS
    assert unpack(secret_resource("renamed", message)).name == "renamed"
    assert isinstance(TlsSecret(), SecretData)
    assert isinstance(InMemorySecretProvider(), SecretProvider)


@pytest.mark.parametrize(
    "secret",
    [
        TlsSecret(),
        TlsSecret(certificate_chain=CHAIN),
        TlsSecret(certificate_chain=CHAIN, private_key=KEY, trusted_ca=ROOTS),
    ],
)
def test_half_secrets_are_refused(secret):
    with pytest.raises(InvalidResourceError, match="expected a certificate chain with its key, or trusted roots alone"):
        secret_resource("default", secret)
    with pytest.raises(InvalidResourceError):
        InMemorySecretProvider().set_secret("default", secret)


def test_secrets_never_show_their_key_material():
    shown = repr(TlsSecret(certificate_chain=CHAIN, private_key=KEY))
    assert "PRIVATE" not in shown
    assert "private_key" in shown
    with pytest.raises(InvalidResourceError, match="expected an"):
        secret_resource("x", discovery_pb2.DiscoveryRequest())


def test_the_in_memory_provider_tells_its_subscribers():
    provider = InMemorySecretProvider()
    seen = []
    subscription = provider.subscribe(seen.append)
    provider.set_secret("ROOTCA", TlsSecret(trusted_ca=ROOTS))
    assert provider.get_secret("ROOTCA") == TlsSecret(trusted_ca=ROOTS)
    assert provider.remove_secret("ROOTCA")
    assert not provider.remove_secret("ROOTCA")
    subscription.cancel()
    provider.set_secret("ROOTCA", TlsSecret(trusted_ca=ROOTS))
    assert seen == ["ROOTCA", "ROOTCA"]


@pytest.fixture
def provider():
    secrets = InMemorySecretProvider()
    secrets.set_secret("default", TlsSecret(certificate_chain=CHAIN, private_key=KEY))
    secrets.set_secret("ROOTCA", TlsSecret(trusted_ca=ROOTS))
    return secrets


@pytest.fixture
def tmp_path():
    """A short directory: Unix socket paths may not exceed 107 bytes."""
    with tempfile.TemporaryDirectory(prefix="sds-") as directory:
        yield directory


@pytest.fixture
async def sds(provider, tmp_path):
    server = SdsServer(provider)
    await server.start(f"unix:{tmp_path}/sds.sock")
    yield server
    await server.stop(grace=0)


@pytest.mark.parametrize("delta", [False, True])
async def test_secrets_are_served_over_a_unix_socket_and_rotated(sds, provider, tmp_path, delta):
    assert sds.port == 0
    assert sds.address.endswith("sds.sock")
    async with AdsClient(f"unix:{tmp_path}/sds.sock", NODE, service="sds", delta=delta) as client:
        await client.subscribe(SECRET_TYPE, ["default", "ROOTCA"])
        held = await client.wait_for_resources(SECRET_TYPE, {"default", "ROOTCA"})
        assert unpack(held["default"]).tls_certificate.private_key.inline_bytes == KEY
        await sds.wait_synced(NODE)
        rotated = CHAIN.replace(b"leaf", b"leaf-2")
        provider.set_secret("default", TlsSecret(certificate_chain=rotated, private_key=KEY))
        await client.wait_for(
            lambda: unpack(client.resources(SECRET_TYPE)["default"]).tls_certificate.certificate_chain.inline_bytes
            == rotated,
            what="the rotated certificate",
        )
        status = await sds.wait_synced(NODE)
        assert status.service == "sds"
        assert status.types[SECRET_TYPE].names == ("ROOTCA", "default")


async def test_a_secret_that_is_not_ready_is_pushed_when_it_is(sds, provider, tmp_path):
    async with AdsClient(f"unix:{tmp_path}/sds.sock", NODE, service="sds", delta=True) as client:
        await client.subscribe(SECRET_TYPE, ["file-cert"])
        first = await client.wait_for_response(SECRET_TYPE)
        # Not "removed": Envoy would take that as "go on without it" and end its listener's warming.
        assert first.removed == ()
        assert first.resources == ()
        provider.set_secret("file-cert", TlsSecret(trusted_ca=ROOTS))
        await client.wait_for_resources(SECRET_TYPE, {"file-cert"})
        provider.remove_secret("file-cert")
        await client.wait_for(lambda: not client.resources(SECRET_TYPE), what="the removal")


async def test_a_change_from_another_thread_is_pushed(provider):
    server = SdsServer(provider)
    port = await server.start("127.0.0.1:0")
    try:
        async with AdsClient(f"127.0.0.1:{port}", NODE, service="sds") as client:
            await client.subscribe(SECRET_TYPE, ["ROOTCA"])
            await client.wait_for_resources(SECRET_TYPE, {"ROOTCA"})
            new_roots = ROOTS + ROOTS
            thread = threading.Thread(target=provider.set_secret, args=("ROOTCA", TlsSecret(trusted_ca=new_roots)))
            thread.start()
            thread.join()
            await client.wait_for(
                lambda: unpack(client.resources(SECRET_TYPE)["ROOTCA"]).validation_context.trusted_ca.inline_bytes
                == new_roots,
                what="the new roots",
            )
    finally:
        await server.stop(grace=0)


async def test_a_failing_provider_is_logged_and_the_stream_lives_on(tmp_path, caplog):
    class Flaky:
        def __init__(self):
            self.inner = InMemorySecretProvider()

        def get_secret(self, name):
            if name == "broken":
                raise RuntimeError("the CA is down")
            if name == "unusable":
                return TlsSecret(certificate_chain=CHAIN)
            return self.inner.get_secret(name)

        def subscribe(self, handler):
            return self.inner.subscribe(handler)

    flaky = Flaky()
    flaky.inner.set_secret("ROOTCA", TlsSecret(trusted_ca=ROOTS))
    server = SdsServer(flaky)
    await server.start(f"unix:{tmp_path}/flaky.sock")
    try:
        async with AdsClient(f"unix:{tmp_path}/flaky.sock", NODE, service="sds") as client:
            await client.subscribe(SECRET_TYPE, ["broken", "unusable", "ROOTCA"])
            await client.wait_for_resources(SECRET_TYPE, {"ROOTCA"})
        assert "the CA is down" in caplog.text
        assert "unusable secret" in caplog.text
    finally:
        await server.stop(grace=0)


async def test_sds_serves_secrets_only(sds, tmp_path):
    async with grpc.aio.insecure_channel(f"unix:{tmp_path}/sds.sock") as channel:
        call = channel.stream_stream(
            "/envoy.service.secret.v3.SecretDiscoveryService/StreamSecrets",
            request_serializer=discovery_pb2.DiscoveryRequest.SerializeToString,
            response_deserializer=discovery_pb2.DiscoveryResponse.FromString,
        )()
        await call.write(discovery_pb2.DiscoveryRequest(node={"id": NODE}, resource_names=["ROOTCA"]))
        response = await call.read()
        assert response.type_url == SECRET_TYPE
        assert len(response.resources) == 1
        await call.write(discovery_pb2.DiscoveryRequest(type_url="type.googleapis.com/envoy.config.cluster.v3.Cluster"))
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call.read()
        assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "serves only" in raised.value.details()
