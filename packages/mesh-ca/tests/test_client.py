"""The workload certificate client: first certificate, rotation, retries, files, and the SDS provider shape."""

import asyncio
import random
import socket
import stat
import time
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mesh_ca import CaConfigError, CertificateAuthority, KeyAlgorithm
from mesh_ca._workload import accept_response
from mesh_ca.authn import CertificateAuthenticator, ImpersonationAllowList, JwtAuthenticator, JwtIssuer
from mesh_ca.client import (
    CertificateClient,
    CertificateClientError,
    RenewalPolicy,
    WorkloadCertificate,
)
from mesh_ca.server import CaServer
from mesh_model import SpiffeId

ISSUER = "https://kubernetes.default.svc.cluster.local"
REVIEWS = SpiffeId("cluster.local", "default", "reviews")
FAST = RenewalPolicy(retry_initial=timedelta(milliseconds=100), retry_max=timedelta(milliseconds=400))


@pytest.fixture
def token_key():
    return ec.generate_private_key(ec.SECP256R1())


def _token(key, namespace="default", account="reviews", *, expires_in=3600):
    claims = {
        "iss": ISSUER,
        "aud": "istio-ca",
        "sub": f"system:serviceaccount:{namespace}:{account}",
        "exp": int(time.time()) + expires_in,
    }
    return jwt.encode(claims, key, algorithm="ES256")


@pytest.fixture
def authority():
    return CertificateAuthority.self_signed(None)


@pytest.fixture
def roots(authority):
    return authority.trust_bundle().pem().encode()


def _server(authority, token_key, **kwargs):
    public = token_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    authenticators = [
        CertificateAuthenticator(authority.trust_bundle),
        JwtAuthenticator([JwtIssuer(ISSUER, public_keys=public)], trust_domain="cluster.local"),
    ]
    return CaServer(authority, authenticators=authenticators, **kwargs)


@pytest.fixture
async def server(authority, token_key):
    ca_server = _server(authority, token_key)
    await ca_server.start("127.0.0.1:0", mtls_address="127.0.0.1:0")
    yield ca_server
    await ca_server.stop(grace=0)


async def test_the_client_gets_a_p256_certificate_and_serves_it_as_sds_secrets(server, roots, token_key):
    client = CertificateClient(server.address, REVIEWS, root_certificates=roots, token=_token(token_key))
    assert client.get_secret("default") is None  # not yet: the SDS server waits for a change
    changed = []
    client.subscribe(changed.append)
    async with client:
        certificate = await client.wait_for_certificate(timeout=30)
    leaf = certificate.leaf()
    assert isinstance(leaf.public_key(), ec.EllipticCurvePublicKey)
    assert leaf.public_key().curve.name == "secp256r1"
    assert certificate.identity == REVIEWS
    assert certificate.not_after - certificate.received_at > timedelta(hours=23)
    default, root = client.get_secret("default"), client.get_secret("ROOTCA")
    assert default.certificate_chain == certificate.certificate_chain_pem
    assert default.trusted_ca == b""
    key = serialization.load_pem_private_key(default.private_key, None)
    assert key.public_key() == leaf.public_key()
    assert root.trusted_ca == roots
    assert root.certificate_chain == root.private_key == b""
    assert client.get_secret("other") is None
    assert sorted(changed) == ["ROOTCA", "default"]
    assert "PRIVATE" not in repr(default)
    assert "PRIVATE" not in repr(certificate)


async def test_a_short_lived_certificate_is_renewed_before_it_expires(server, roots, token_key):
    changed = []
    client = CertificateClient(
        server.address,
        REVIEWS,
        root_certificates=roots,
        token=lambda: _token(token_key),
        ttl=timedelta(seconds=3),
        renewal=FAST,
    )
    client.subscribe(changed.append)
    async with client:
        first = await client.wait_for_certificate(timeout=30)
        second = await client.wait_for_certificate(newer_than=first, timeout=30)
        third = await client.wait_for_certificate(newer_than=second, timeout=30)
    for old, new in ((first, second), (second, third)):
        assert new.serial_number != old.serial_number
        assert new.received_at < old.not_after, "renewed only after the old certificate expired"
        assert new.leaf().public_key() != old.leaf().public_key(), "each certificate has a new key"
    assert changed.count("default") >= 3
    assert changed.count("ROOTCA") == 1, "the roots did not change"


async def test_renewals_present_the_current_certificate_when_the_token_is_gone(server, roots, token_key):
    tokens = [_token(token_key)]

    def token():
        return tokens.pop() if tokens else "expired.or.missing"

    client = CertificateClient(
        server.address,
        REVIEWS,
        root_certificates=roots,
        token=token,
        renewal_address=server.mtls_address,
        ttl=timedelta(seconds=3),
        renewal=FAST,
    )
    async with client:
        first = await client.wait_for_certificate(timeout=30)
        second = await client.wait_for_certificate(newer_than=first, timeout=30)
    assert second.identity == REVIEWS
    assert client.last_error is None


async def test_the_client_retries_until_the_ca_comes_up(authority, roots, token_key):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = CertificateClient(
        f"127.0.0.1:{port}", REVIEWS, root_certificates=roots, token=_token(token_key), renewal=FAST
    )
    async with client:
        deadline = asyncio.get_running_loop().time() + 30
        while client.last_error is None:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.05)
        assert "UNAVAILABLE" in client.last_error
        assert client.certificate is None
        ca_server = _server(authority, token_key)
        await ca_server.start(f"127.0.0.1:{port}")
        try:
            certificate = await client.wait_for_certificate(timeout=30)
        finally:
            await ca_server.stop(grace=0)
    assert certificate.identity == REVIEWS
    assert client.last_error is None


async def test_a_refusal_is_reported_and_retried(server, roots, token_key):
    client = CertificateClient(
        server.address, REVIEWS, root_certificates=roots, token=_token(token_key, "other"), renewal=FAST
    )
    async with client:
        deadline = asyncio.get_running_loop().time() + 30
        while client.last_error is None:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.05)
        assert "PERMISSION_DENIED" in client.last_error
        assert "ns/other" in client.last_error
        with pytest.raises(TimeoutError, match="PERMISSION_DENIED"):
            await client.wait_for_certificate(timeout=0.2)
    assert client.certificate is None
    assert client.get_secret("default") is None


async def test_key_and_chain_are_written_readable_by_the_owner_only(server, roots, token_key, tmp_path):
    directory = tmp_path / "certs"
    client = CertificateClient(
        server.address,
        REVIEWS,
        root_certificates=roots,
        token_file=_write(tmp_path / "token", _token(token_key)),
        directory=directory,
        key_algorithm=KeyAlgorithm.EC_P384,
    )
    async with client:
        certificate = await client.wait_for_certificate(timeout=30)
    assert (directory / "key.pem").read_bytes() == certificate.private_key_pem
    assert (directory / "cert-chain.pem").read_bytes() == certificate.certificate_chain_pem
    assert (directory / "root-cert.pem").read_bytes() == roots
    for name in ("key.pem", "cert-chain.pem", "root-cert.pem"):
        assert stat.S_IMODE((directory / name).stat().st_mode) == 0o600
    assert certificate.leaf().public_key().curve.name == "secp384r1"


def _write(path, text):
    path.write_text(text + "\n")
    return path


async def test_a_node_agent_asks_for_a_workload_it_is_allowed_to_impersonate(authority, roots, token_key):
    agent = SpiffeId("cluster.local", "istio-system", "ztunnel")
    ca_server = _server(authority, token_key, impersonation=ImpersonationAllowList([agent]))
    async with ca_server:
        client = CertificateClient(
            ca_server.address,
            REVIEWS,
            root_certificates=roots,
            token=_token(token_key, "istio-system", "ztunnel"),
            impersonate=True,
        )
        async with client:
            certificate = await client.wait_for_certificate(timeout=30)
    assert certificate.identity == REVIEWS


async def test_renew_asks_for_a_new_certificate_at_once(server, roots, token_key):
    client = CertificateClient(server.address, REVIEWS, root_certificates=roots, token=_token(token_key))
    with pytest.raises(CertificateClientError, match="not running"):
        await client.renew()
    async with client:
        first = await client.wait_for_certificate(timeout=30)
        second = await client.renew(timeout=30)
    assert second.serial_number != first.serial_number
    with pytest.raises(CertificateClientError, match="started once"):
        await client.start()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"token": None}, "token or a token_file"),
        ({"identity": "reviews"}, "identity"),
        ({"root_certificates": b"junk"}, "no PEM certificate"),
        ({"ttl": timedelta(0)}, "ttl"),
        ({"metadata": {"authorization": "x"}}, "metadata"),
        ({"address": ""}, "address"),
    ],
)
def test_unusable_client_settings_are_refused(roots, arguments, message):
    settings = {"address": "127.0.0.1:1", "identity": REVIEWS, "root_certificates": roots, "token": "t"}
    settings.update(arguments)
    address, identity = settings.pop("address"), settings.pop("identity")
    with pytest.raises(CertificateClientError, match=message):
        CertificateClient(address, identity, **settings)


def test_an_answer_for_another_key_or_identity_is_not_accepted(authority):
    key, other = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    chain = list(authority.sign_key(other.public_key(), [REVIEWS]).chain_pem)
    with pytest.raises(CertificateClientError, match="not for the key"):
        accept_response(chain, key=key, identity=REVIEWS, received_at=now)
    ratings = SpiffeId("cluster.local", "default", "ratings")
    chain = list(authority.sign_key(key.public_key(), [ratings]).chain_pem)
    with pytest.raises(CertificateClientError, match=r"not for spiffe://cluster\.local/ns/default/sa/reviews"):
        accept_response(chain, key=key, identity=REVIEWS, received_at=now)
    stranger_root = CertificateAuthority.self_signed(None).root_certificate.public_bytes(serialization.Encoding.PEM)
    chain = [authority.sign_key(key.public_key(), [REVIEWS]).certificate_pem, stranger_root.decode()]
    with pytest.raises(CertificateClientError, match="does not verify"):
        accept_response(chain, key=key, identity=REVIEWS, received_at=now)
    accepted = accept_response(
        list(authority.sign_key(key.public_key(), [REVIEWS]).chain_pem), key=key, identity=REVIEWS, received_at=now
    )
    assert isinstance(accepted, WorkloadCertificate)
    assert x509.load_pem_x509_certificates(accepted.roots_pem) == [authority.root_certificate]


def test_renewal_happens_at_half_the_lifetime_give_or_take_the_jitter():
    policy = RenewalPolicy()
    issued = datetime(2026, 1, 1, tzinfo=UTC)
    expiry = issued + timedelta(hours=24)
    rng = random.Random(7)
    times = [policy.renewal_time(issued=issued, not_after=expiry, rng=rng) for _ in range(200)]
    assert all(issued + timedelta(hours=11.75) <= when <= issued + timedelta(hours=12.25) for when in times)
    assert len(set(times)) > 100, "the renewal time is jittered"


def test_retries_back_off_exponentially_up_to_the_maximum():
    policy = RenewalPolicy(retry_initial=timedelta(seconds=1), retry_max=timedelta(seconds=30))
    rng = random.Random(3)
    delays = [policy.retry_delay(failures, rng=rng) for failures in range(1, 10)]
    assert 0.5 <= delays[0] <= 1.0
    assert 4.0 <= delays[3] <= 8.0
    assert all(15.0 <= delay <= 30.0 for delay in delays[6:])


@pytest.mark.parametrize(
    "arguments",
    [
        {"grace_ratio": 1.0},
        {"grace_ratio": 0.995},
        {"retry_initial": timedelta(0)},
        {"retry_max": timedelta(seconds=0.5)},
    ],
    ids=str,
)
def test_unusable_renewal_policies_are_refused(arguments):
    with pytest.raises(CaConfigError):
        RenewalPolicy(**arguments)


async def test_the_client_follows_a_root_rotation(authority, roots, token_key):
    ca_server = _server(authority, token_key, server_certificate_ttl=timedelta(seconds=2))
    changed = []
    async with ca_server:
        client = CertificateClient(ca_server.address, REVIEWS, root_certificates=roots, token=_token(token_key))
        client.subscribe(changed.append)
        async with client:
            await client.wait_for_certificate(timeout=30)
            new_root = authority.rotate_root()
            renewed = await client.renew(timeout=30)
            assert renewed.leaf().issuer == new_root.subject
            trusted = x509.load_pem_x509_certificates(client.get_secret("ROOTCA").trusted_ca)
            assert set(trusted) == {new_root, *x509.load_pem_x509_certificates(roots)}
            assert changed.count("ROOTCA") == 2
            # The server's certificate moves to the new root when it renews (after about a second); the
            # client, configured with the old root only, still reaches it through the roots it learned.
            first_serving = ca_server.server_certificate_chain
            deadline = asyncio.get_running_loop().time() + 30
            while x509.load_pem_x509_certificate(ca_server.server_certificate_chain).issuer != new_root.subject:
                assert asyncio.get_running_loop().time() < deadline, "the server certificate was never renewed"
                await client.renew(timeout=30)
                await asyncio.sleep(0.1)
            assert ca_server.server_certificate_chain != first_serving
            assert (await client.renew(timeout=30)).leaf().issuer == new_root.subject
