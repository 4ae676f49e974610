"""The Istio CA API over TLS on loopback: wire compatibility, issuance, renewal, and every refusal."""

import asyncio
import base64
import time
from datetime import timedelta

import grpc
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from google.protobuf import descriptor_pb2, struct_pb2

from mesh_ca import CaConfigError, CertificateAuthority, SigningPolicy
from mesh_ca._proto import (
    CREATE_CERTIFICATE_METHOD,
    IstioCertificateRequest,
    IstioCertificateResponse,
    file_descriptor_proto,
)
from mesh_ca.authn import CertificateAuthenticator, ImpersonationAllowList, JwtAuthenticator, JwtIssuer
from mesh_ca.server import CaServer
from mesh_model import SpiffeId

ISSUER = "https://kubernetes.default.svc.cluster.local"
REVIEWS = SpiffeId("cluster.local", "default", "reviews")
ZTUNNEL = SpiffeId("cluster.local", "istio-system", "ztunnel")


# ---------------------------------------------------------------- wire compatibility


def _varint(value):
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number, wire_type, payload):
    key = _varint(number << 3 | wire_type)
    return key + (_varint(payload) if wire_type == 0 else _varint(len(payload)) + payload)


def test_a_request_made_by_hand_from_the_field_numbers_decodes():
    # Struct{fields: {"ImpersonatedIdentity": Value{string_value: ...}}}: map entry key=1, value=2; string_value=3.
    value = _field(3, 2, b"spiffe://cluster.local/ns/default/sa/reviews")
    entry = _field(1, 2, b"ImpersonatedIdentity") + _field(2, 2, value)
    raw = _field(1, 2, b"-----BEGIN CERTIFICATE REQUEST-----") + _field(3, 0, 86400) + _field(4, 2, _field(1, 2, entry))
    request = IstioCertificateRequest.FromString(raw)
    assert request.csr == "-----BEGIN CERTIFICATE REQUEST-----"
    assert request.validity_duration == 86400
    assert request.metadata["ImpersonatedIdentity"] == str(REVIEWS)
    assert isinstance(request.metadata, struct_pb2.Struct)
    assert request.SerializeToString(deterministic=True) == raw


def test_a_response_is_the_bytes_istio_expects():
    response = IstioCertificateResponse(cert_chain=["leaf\n", "root\n"])
    assert response.SerializeToString() == _field(1, 2, b"leaf\n") + _field(1, 2, b"root\n")


def test_the_descriptor_matches_istios_ca_proto():
    proto = file_descriptor_proto()
    assert (proto.name, proto.package, proto.syntax) == ("security/v1alpha1/ca.proto", "istio.v1.auth", "proto3")
    assert list(proto.dependency) == ["google/protobuf/struct.proto"]
    fields = {
        message.name: [(f.name, f.number, f.type, f.label) for f in message.field] for message in proto.message_type
    }
    f = descriptor_pb2.FieldDescriptorProto
    assert fields == {
        "IstioCertificateRequest": [
            ("csr", 1, f.TYPE_STRING, f.LABEL_OPTIONAL),
            ("validity_duration", 3, f.TYPE_INT64, f.LABEL_OPTIONAL),
            ("metadata", 4, f.TYPE_MESSAGE, f.LABEL_OPTIONAL),
        ],
        "IstioCertificateResponse": [("cert_chain", 1, f.TYPE_STRING, f.LABEL_REPEATED)],
    }
    assert CREATE_CERTIFICATE_METHOD == "/istio.v1.auth.IstioCertificateService/CreateCertificate"


# ---------------------------------------------------------------- a CA server with a JWT issuer


@pytest.fixture
def token_key():
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def make_token(token_key):
    def make(namespace="default", account="reviews", *, key=None, expires_in=3600):
        claims = {
            "iss": ISSUER,
            "aud": "istio-ca",
            "sub": f"system:serviceaccount:{namespace}:{account}",
            "exp": int(time.time()) + expires_in,
        }
        return jwt.encode(claims, key or token_key, algorithm="ES256")

    return make


@pytest.fixture
def authority():
    return CertificateAuthority.self_signed(None, policy=SigningPolicy(max_ttl=timedelta(days=7)))


@pytest.fixture
async def server(authority, token_key):
    public = token_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    ca_server = CaServer(
        authority,
        authenticators=[
            CertificateAuthenticator(authority.trust_bundle),
            JwtAuthenticator([JwtIssuer(ISSUER, public_keys=public)], trust_domain="cluster.local"),
        ],
        impersonation=ImpersonationAllowList([ZTUNNEL]),
    )
    await ca_server.start("127.0.0.1:0", mtls_address="127.0.0.1:0")
    yield ca_server
    await ca_server.stop(grace=0)


def _csr(key, *uris):
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    if uris:
        names = [x509.UniformResourceIdentifier(uri) for uri in uris]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=True)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


def _request(csr, *, ttl=0, **metadata):
    request = IstioCertificateRequest(csr=csr, validity_duration=ttl)
    if metadata:
        request.metadata.update(metadata)
    return request


async def _call(server, request, *, token=None, client=None, mtls=False, raw=False, roots=None):
    roots = roots or server.authority.trust_bundle().pem().encode()
    credentials = grpc.ssl_channel_credentials(roots, *(client or (None, None)))
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    address = server.mtls_address if mtls else server.address
    async with grpc.aio.secure_channel(address, credentials) as channel:
        method = channel.unary_unary(
            CREATE_CERTIFICATE_METHOD,
            request_serializer=None if raw else IstioCertificateRequest.SerializeToString,
            response_deserializer=IstioCertificateResponse.FromString,
        )
        return await method(request, metadata=metadata, timeout=10)


async def _refused(server, request, **kwargs):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _call(server, request, **kwargs)
    return caught.value.code(), caught.value.details()


def _leaf_uris(pem):
    leaf = x509.load_pem_x509_certificate(pem.encode())
    return leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.UniformResourceIdentifier
    )


async def test_a_token_gets_a_certificate_chain_leaf_first_root_last(server, make_token):
    key = ec.generate_private_key(ec.SECP256R1())
    response = await _call(server, _request(_csr(key, REVIEWS.uri), ttl=3600), token=make_token())
    chain = list(response.cert_chain)
    assert len(chain) == 2
    assert all(element.endswith("-----END CERTIFICATE-----\n") and element.count("BEGIN") == 1 for element in chain)
    assert _leaf_uris(chain[0]) == [REVIEWS.uri]
    leaf = x509.load_pem_x509_certificate(chain[0].encode())
    assert leaf.public_key() == key.public_key()
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc <= timedelta(hours=1, minutes=2)
    assert x509.load_pem_x509_certificate(chain[-1].encode()) == server.authority.root_certificate
    assert server.authority.trust_bundle().verify(chain) == (REVIEWS,)


async def test_a_csr_without_names_gets_the_callers_identity_and_the_default_ttl(server, make_token):
    response = await _call(server, _request(_csr(ec.generate_private_key(ec.SECP256R1()))), token=make_token())
    leaf = x509.load_pem_x509_certificate(response.cert_chain[0].encode())
    assert _leaf_uris(response.cert_chain[0]) == [REVIEWS.uri]
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc >= timedelta(hours=24)


async def test_a_workload_certificate_renews_over_mutual_tls(server, make_token):
    old_key = ec.generate_private_key(ec.SECP256R1())
    first = await _call(server, _request(_csr(old_key, REVIEWS.uri)), token=make_token())
    key_pem = old_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    new_key = ec.generate_private_key(ec.SECP256R1())
    renewed = await _call(
        server, _request(_csr(new_key, REVIEWS.uri)), client=(key_pem, first.cert_chain[0].encode()), mtls=True
    )
    assert _leaf_uris(renewed.cert_chain[0]) == [REVIEWS.uri]
    assert x509.load_pem_x509_certificate(renewed.cert_chain[0].encode()).public_key() == new_key.public_key()


async def test_the_mutual_tls_port_turns_away_clients_without_a_certificate_of_the_ca(server, make_token):
    code, _ = await _refused(server, _request(_csr(ec.generate_private_key(ec.SECP256R1()))), mtls=True)
    assert code is grpc.StatusCode.UNAVAILABLE
    stranger = CertificateAuthority.self_signed(None)
    key = ec.generate_private_key(ec.SECP256R1())
    pem = stranger.sign_key(key.public_key(), [REVIEWS]).certificate_pem.encode()
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    code, _ = await _refused(server, _request(_csr(key)), client=(key_pem, pem), mtls=True)
    assert code is grpc.StatusCode.UNAVAILABLE


async def test_an_allowed_node_agent_gets_a_certificate_for_the_workload_it_names(server, make_token):
    request = _request(_csr(ec.generate_private_key(ec.SECP256R1())), ImpersonatedIdentity=str(REVIEWS))
    response = await _call(server, request, token=make_token("istio-system", "ztunnel"))
    assert _leaf_uris(response.cert_chain[0]) == [REVIEWS.uri]


# ---------------------------------------------------------------- refusals


async def test_a_call_without_credentials_is_unauthenticated(server):
    code, details = await _refused(server, _request(_csr(ec.generate_private_key(ec.SECP256R1()))))
    assert code is grpc.StatusCode.UNAUTHENTICATED
    assert "Bearer <token>" in details


async def test_a_csr_for_another_identity_is_permission_denied(server, make_token):
    csr = _csr(ec.generate_private_key(ec.SECP256R1()), "spiffe://cluster.local/ns/default/sa/ratings")
    code, details = await _refused(server, _request(csr), token=make_token())
    assert code is grpc.StatusCode.PERMISSION_DENIED
    assert "ratings" in details
    assert str(REVIEWS) in details


async def test_a_token_for_another_namespace_is_permission_denied(server, make_token):
    csr = _csr(ec.generate_private_key(ec.SECP256R1()), REVIEWS.uri)
    code, details = await _refused(server, _request(csr), token=make_token("other"))
    assert code is grpc.StatusCode.PERMISSION_DENIED
    assert "spiffe://cluster.local/ns/other/sa/reviews" in details


@pytest.mark.parametrize(
    ("token_arguments", "reason"),
    [({"expires_in": -3600}, "expired"), ({"key": ec.generate_private_key(ec.SECP256R1())}, "signature")],
    ids=["expired", "wrongly-signed"],
)
async def test_an_expired_or_wrongly_signed_token_is_unauthenticated(server, make_token, token_arguments, reason):
    csr = _csr(ec.generate_private_key(ec.SECP256R1()), REVIEWS.uri)
    code, details = await _refused(server, _request(csr), token=make_token(**token_arguments))
    assert code is grpc.StatusCode.UNAUTHENTICATED
    assert reason in details


async def test_a_csr_with_a_bad_signature_is_invalid(server, make_token):
    pem = _csr(ec.generate_private_key(ec.SECP256R1()), REVIEWS.uri)
    der = bytearray(x509.load_pem_x509_csr(pem.encode()).public_bytes(serialization.Encoding.DER))
    der[-3] ^= 0x01  # inside the signature
    body = base64.encodebytes(bytes(der)).decode()
    tampered = f"-----BEGIN CERTIFICATE REQUEST-----\n{body}-----END CERTIFICATE REQUEST-----\n"
    code, details = await _refused(server, _request(tampered), token=make_token())
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert "signature" in details


async def test_a_too_long_ttl_is_invalid(server, make_token):
    csr = _csr(ec.generate_private_key(ec.SECP256R1()), REVIEWS.uri)
    code, details = await _refused(server, _request(csr, ttl=8 * 86400), token=make_token())
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert "7 days" in details
    code, _ = await _refused(server, _request(csr, ttl=-5), token=make_token())
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    code, _ = await _refused(server, _request(csr, ttl=2**62), token=make_token())
    assert code is grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("payload", [b"\xff\xff\xff\xff", b"\x0a\x05ab", b"\x0a\x02\xc3\x28"], ids=str)
async def test_garbage_bytes_are_invalid(server, make_token, payload):
    code, details = await _refused(server, payload, token=make_token(), raw=True)
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert "IstioCertificateRequest" in details


@pytest.mark.parametrize("csr", ["", "garbage", "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n"], ids=repr)
async def test_a_missing_or_garbage_csr_is_invalid(server, make_token, csr):
    code, details = await _refused(server, _request(csr), token=make_token())
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert "CSR" in details


async def test_impersonation_by_a_caller_not_on_the_allow_list_is_permission_denied(server, make_token):
    request = _request(_csr(ec.generate_private_key(ec.SECP256R1())), ImpersonatedIdentity=str(ZTUNNEL))
    code, details = await _refused(server, request, token=make_token())
    assert code is grpc.StatusCode.PERMISSION_DENIED
    assert "allow-list" in details


@pytest.mark.parametrize(
    ("metadata", "reason"),
    [
        ({"ImpersonatedIdentity": "reviews"}, "SPIFFE id"),
        ({"ImpersonatedIdentity": 7}, "string"),
        ({"CertSigner": "x"}, "signers"),
    ],
    ids=["not-spiffe", "not-a-string", "cert-signer"],
)
async def test_unusable_metadata_is_invalid(server, make_token, metadata, reason):
    request = _request(_csr(ec.generate_private_key(ec.SECP256R1())), **metadata)
    code, details = await _refused(server, request, token=make_token("istio-system", "ztunnel"))
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert reason in details


async def test_an_oversized_request_is_refused_before_it_is_read(server, make_token):
    code, _ = await _refused(server, _request("x" * 200_000), token=make_token())
    assert code is grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_refusals_say_nothing_of_the_cas_keys(server, make_token):
    for request, token in [
        (_request("garbage"), make_token()),
        (_request(_csr(ec.generate_private_key(ec.SECP256R1()))), make_token(expires_in=-60)),
    ]:
        _, details = await _refused(server, request, token=token)
        assert "PRIVATE KEY" not in details
        assert "BEGIN CERTIFICATE-----" not in details


# ---------------------------------------------------------------- the server's own certificate


async def test_the_server_certificate_is_issued_by_the_ca_for_its_names(server):
    leaf = x509.load_pem_x509_certificate(server.server_certificate_chain)
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert leaf.issuer == server.authority.signing_certificate.subject


async def test_a_client_with_other_roots_does_not_reach_the_server(server, make_token):
    stranger_roots = CertificateAuthority.self_signed(None).trust_bundle().pem().encode()
    code, _ = await _refused(server, _request("x"), token=make_token(), roots=stranger_roots)
    assert code is grpc.StatusCode.UNAVAILABLE


async def test_the_server_certificate_is_renewed_without_a_restart(authority, make_token, token_key):
    public = token_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    authenticators = [JwtAuthenticator([JwtIssuer(ISSUER, public_keys=public)], trust_domain="cluster.local")]
    async with CaServer(authority, authenticators=authenticators, server_certificate_ttl=timedelta(seconds=2)) as ca:
        first = ca.server_certificate_chain
        request = _request(_csr(ec.generate_private_key(ec.SECP256R1())))
        deadline = asyncio.get_running_loop().time() + 30
        while ca.server_certificate_chain == first:  # each new connection checks whether renewal is due
            assert asyncio.get_running_loop().time() < deadline, "the server certificate was never renewed"
            await _call(ca, request, token=make_token())
            await asyncio.sleep(0.2)
        await _call(ca, request, token=make_token())  # served with the new certificate


def test_unusable_server_settings_are_refused(authority):
    with pytest.raises(CaConfigError, match="DNS name"):
        CaServer(authority, dns_names=["not a name"])
    with pytest.raises(CaConfigError, match="authenticate"):
        CaServer(authority, authenticators=["nope"])
    with pytest.raises(CaConfigError, match="CertificateAuthority"):
        CaServer("authority")


async def test_a_server_starts_once_and_stops_twice(authority):
    server = CaServer(authority)
    await server.start()
    with pytest.raises(CaConfigError, match="started once"):
        await server.start()
    await server.stop()
    await server.stop()


async def test_after_a_root_rotation_answers_carry_every_trusted_root_with_their_own_root_last(server, make_token):
    old_root = server.authority.root_certificate
    serving_before = server.server_certificate_chain
    new_root = server.authority.rotate_root()
    response = await _call(server, _request(_csr(ec.generate_private_key(ec.SECP256R1()))), token=make_token())
    chain = [x509.load_pem_x509_certificate(element.encode()) for element in response.cert_chain]
    assert chain[-1] == new_root
    assert old_root in chain[1:-1]
    assert chain[0].issuer == new_root.subject
    # The server keeps its certificate from the old, still trusted root until it renews it: clients that
    # have not heard of the new root yet can still connect.
    assert server.server_certificate_chain == serving_before
