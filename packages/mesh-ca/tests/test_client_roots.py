"""The certificate client's trusted roots: set at any time, followed in a file, and combined with its own root."""

import asyncio
import logging
import os
import re
import time

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mesh_ca import CertificateAuthority, JwtAuthenticator, JwtIssuer
from mesh_ca.client import CertificateClient, CertificateClientError
from mesh_ca.server import CaServer
from mesh_model import SpiffeId

ISSUER = "https://kubernetes.default.svc.cluster.local"
REVIEWS = SpiffeId("cluster.local", "default", "reviews")
UNREACHABLE = "127.0.0.1:1"
DEADLINE = 30.0  # generous: only a failing test waits this long


def _pem(*authorities):
    return b"".join(authority.root_certificate.public_bytes(serialization.Encoding.PEM) for authority in authorities)


def _trusted(client):
    secret = client.get_secret("ROOTCA")
    return None if secret is None else x509.load_pem_x509_certificates(secret.trusted_ca)


def _idle_client(roots, **settings):
    """A client that is never started, or whose CA is unreachable: only its roots matter."""
    return CertificateClient(UNREACHABLE, REVIEWS, root_certificates=roots, token="t", **settings)


async def _until(condition, what):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE
    while not condition():
        assert loop.time() < deadline, f"{what}: not within {DEADLINE} s"
        await asyncio.sleep(0.02)


def _replace(path, data):
    """Write ``data`` to ``path`` as a ConfigMap update does: a new file renamed over the old one."""
    temporary = path.with_name(f".{path.name}.new")
    temporary.write_bytes(data)
    os.replace(temporary, path)


@pytest.fixture
def other():
    return CertificateAuthority.self_signed(None)


@pytest.fixture
def roots(authority):
    return authority.trust_bundle().pem().encode()


def test_trusted_roots_become_rootca_and_subscribers_are_told_once(roots, authority, other):
    client = _idle_client(roots)
    assert client.get_secret("ROOTCA") is None
    changed = []
    client.subscribe(changed.append)

    assert client.set_trusted_roots(other.trust_bundle().pem()) is True  # text, as TrustBundle.pem() gives it
    assert client.get_secret("ROOTCA").trusted_ca == _pem(other)
    assert changed == ["ROOTCA"]
    assert client.get_secret("default") is None  # no certificate yet

    assert client.set_trusted_roots(_pem(other)) is False  # the same roots: nothing to push
    assert changed == ["ROOTCA"]

    assert client.set_trusted_roots(_pem(authority, other, authority)) is True  # duplicates kept once, in order
    assert _trusted(client) == [authority.root_certificate, other.root_certificate]
    assert changed == ["ROOTCA", "ROOTCA"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (b"", "trusted roots holds no PEM certificate"),
        (b"junk", "trusted roots holds no PEM certificate"),
        (b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "holds no PEM certificate"),
        ("TRUNCATED", "holds a malformed PEM certificate"),
        ("r\u00e9seau", "not PEM text: it holds characters other than ASCII"),
        (42, "trusted roots must be PEM bytes or text, not 42"),
    ],
    ids=["empty", "junk", "key", "truncated", "non-ascii", "number"],
)
def test_unusable_trusted_roots_are_refused_and_the_old_ones_kept(roots, other, value, message):
    client = _idle_client(roots)
    client.set_trusted_roots(_pem(other))
    changed = []
    client.subscribe(changed.append)
    if value == "TRUNCATED":
        value = _pem(other)[:300]
    with pytest.raises(CertificateClientError, match=message):
        client.set_trusted_roots(value)
    assert client.get_secret("ROOTCA").trusted_ca == _pem(other)
    assert changed == []


@pytest.fixture
def token_key():
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
async def server(authority, token_key):
    public = token_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    authenticator = JwtAuthenticator([JwtIssuer(ISSUER, public_keys=public)], trust_domain="cluster.local")
    ca_server = CaServer(authority, authenticators=[authenticator])
    await ca_server.start("127.0.0.1:0")
    yield ca_server
    await ca_server.stop(grace=0)


def _token(key):
    claims = {
        "iss": ISSUER,
        "aud": "istio-ca",
        "sub": "system:serviceaccount:default:reviews",
        "exp": int(time.time()) + 3600,
    }
    return jwt.encode(claims, key, algorithm="ES256")


async def test_rootca_is_the_trusted_roots_plus_the_root_of_the_clients_own_certificate(
    server, authority, other, roots, token_key, tmp_path
):
    directory = tmp_path / "certs"
    client = CertificateClient(
        server.address, REVIEWS, root_certificates=roots, token=lambda: _token(token_key), directory=directory
    )
    changed = []
    client.subscribe(changed.append)
    async with client:
        first = await client.wait_for_certificate(timeout=DEADLINE)
        old_root = authority.root_certificate
        assert _trusted(client) == [old_root]  # the CA's answer, while no roots are set

        # Roots that lack the client's own root: it is added after them, so peers certified alike still pass.
        changed.clear()
        assert client.set_trusted_roots(_pem(other)) is True
        assert _trusted(client) == [other.root_certificate, old_root]
        assert changed == ["ROOTCA"]

        # A rotation: the bundle with both roots is trusted at once, before the client renews.
        new_root = authority.rotate_root()
        assert client.set_trusted_roots(authority.trust_bundle().pem()) is True
        assert _trusted(client) == [new_root, old_root]
        assert (directory / "root-cert.pem").read_bytes() == client.get_secret("ROOTCA").trusted_ca

        # Renewed on the new root, which the bundle holds: ROOTCA stays as it is.
        changed.clear()
        renewed = await client.renew(timeout=DEADLINE)
        assert renewed.leaf().issuer == new_root.subject != first.leaf().issuer
        assert changed == ["default"]
        assert _trusted(client) == [new_root, old_root]

        # The old root retired: no longer trusted, although the last answer of the CA still listed it.
        authority.retire_root(old_root)
        assert client.set_trusted_roots(authority.trust_bundle().pem()) is True
        assert _trusted(client) == [new_root]
        assert set(x509.load_pem_x509_certificates(renewed.roots_pem)) == {new_root, old_root}
        assert x509.load_pem_x509_certificates((directory / "root-cert.pem").read_bytes()) == [new_root]


async def test_the_client_follows_its_root_file_and_keeps_its_roots_when_the_file_is_broken(
    roots, authority, other, tmp_path, caplog
):
    caplog.set_level(logging.INFO, logger="mesh_ca.client")
    root_file = tmp_path / "root-cert.pem"
    root_file.write_bytes(b"# the mesh's roots\n" + _pem(authority))
    client = _idle_client(roots, root_certificates_file=root_file, root_poll_interval=0.02)
    assert client.get_secret("ROOTCA").trusted_ca == _pem(authority)  # read at once, before any certificate
    changed = []
    client.subscribe(changed.append)

    def logged(text):
        return lambda: any(text in record.getMessage() for record in caplog.records)

    async with client:
        _replace(root_file, _pem(other, authority))
        await _until(lambda: _trusted(client) == [other.root_certificate, authority.root_certificate], "new roots")
        assert changed == ["ROOTCA"]

        root_file.write_bytes(b"not a certificate")  # in place, not renamed: its size changes
        await _until(logged(f"root_certificates_file {root_file} holds no PEM certificate"), "a logged broken file")
        root_file.unlink()
        await _until(logged(f"cannot read root_certificates_file {root_file}"), "a logged missing file")
        assert _trusted(client) == [other.root_certificate, authority.root_certificate]
        assert changed == ["ROOTCA"]

        _replace(root_file, _pem(other))
        await _until(lambda: _trusted(client) == [other.root_certificate], "the roots of the restored file")
        assert changed == ["ROOTCA", "ROOTCA"]
        assert logged("is usable again")()


def test_an_unusable_root_file_or_poll_interval_is_refused(roots, tmp_path):
    missing = tmp_path / "missing.pem"
    with pytest.raises(CertificateClientError, match=re.escape(f"cannot read root_certificates_file {missing}")):
        _idle_client(roots, root_certificates_file=missing)
    empty = tmp_path / "empty.pem"
    empty.write_bytes(b"")
    with pytest.raises(
        CertificateClientError, match=re.escape(f"root_certificates_file {empty} holds no PEM certificate")
    ):
        _idle_client(roots, root_certificates_file=empty)
    for interval in (0, True, "1"):
        with pytest.raises(CertificateClientError, match="root_poll_interval"):
            _idle_client(roots, root_poll_interval=interval)
