"""Authenticators: client certificates, JWT bearer tokens, the order they are tried in, and impersonation."""

import base64
import json
import os
import time
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from mesh_ca import CaConfigError, CertificateAuthority
from mesh_ca.authn import (
    AuthenticationError,
    Authenticator,
    AuthSource,
    Caller,
    CallerCredentials,
    CertificateAuthenticator,
    ImpersonationAllowList,
    ImpersonationError,
    JwtAuthenticator,
    JwtIssuer,
    authenticate,
)
from mesh_ca.testing import OfflineRoot
from mesh_model import SpiffeId

ISSUER = "https://kubernetes.default.svc.cluster.local"
REVIEWS = SpiffeId("cluster.local", "default", "reviews")


def _public_pem(key):
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def _token(key, *, algorithm="ES256", headers=None, **overrides):
    claims = {
        "iss": ISSUER,
        "aud": ["istio-ca"],
        "sub": "system:serviceaccount:default:reviews",
        "exp": int(time.time()) + 3600,
        "iat": int(time.time()),
    }
    claims.update(overrides)
    claims = {name: value for name, value in claims.items() if value is not None}
    return jwt.encode(claims, key, algorithm=algorithm, headers=headers)


def _bearer(token):
    return CallerCredentials.of({"authorization": f"Bearer {token}"})


def _jwks(*keys_with_ids):
    entries = []
    for key, kid in keys_with_ids:
        algorithm = jwt.algorithms.ECAlgorithm if isinstance(key, ec.EllipticCurvePrivateKey) else None
        algorithm = algorithm or jwt.algorithms.RSAAlgorithm
        entry = algorithm.to_jwk(key.public_key(), as_dict=True)
        entry["kid"] = kid
        entries.append(entry)
    return json.dumps({"keys": entries})


@pytest.fixture
def signing_key():
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def jwt_authenticator(signing_key):
    return JwtAuthenticator([JwtIssuer(ISSUER, public_keys=_public_pem(signing_key))], trust_domain="cluster.local")


# ---------------------------------------------------------------- JWT


def test_a_kubernetes_service_account_token_gives_the_spiffe_identity(jwt_authenticator, signing_key):
    caller = jwt_authenticator.authenticate(_bearer(_token(signing_key)))
    assert caller.identities == (REVIEWS,)
    assert caller.source is AuthSource.JWT
    assert ISSUER in caller.detail


def test_the_kubernetes_io_claim_names_the_account_too(jwt_authenticator, signing_key):
    claims = {"namespace": "shop", "serviceaccount": {"name": "cart", "uid": "1"}}
    caller = jwt_authenticator.authenticate(_bearer(_token(signing_key, sub="some-id", **{"kubernetes.io": claims})))
    assert caller.identities == (SpiffeId("cluster.local", "shop", "cart"),)


def test_sub_and_kubernetes_io_claims_must_agree(jwt_authenticator, signing_key):
    claims = {"namespace": "other", "serviceaccount": {"name": "reviews"}}
    with pytest.raises(AuthenticationError, match="different service accounts"):
        jwt_authenticator.authenticate(_bearer(_token(signing_key, **{"kubernetes.io": claims})))


def test_custom_claims_name_namespace_and_account(signing_key):
    issuer = JwtIssuer(
        "https://idp.example",
        public_keys=[_public_pem(signing_key)],
        audiences=("mesh",),
        namespace_claim="ns",
        service_account_claim="account",
    )
    authenticator = JwtAuthenticator([issuer], trust_domain="example.org")
    token = _token(signing_key, iss="https://idp.example", aud="mesh", sub="user-1", ns="web", account="frontend")
    assert authenticator.authenticate(_bearer(token)).identities == (SpiffeId("example.org", "web", "frontend"),)
    with pytest.raises(AuthenticationError, match="'account'"):
        authenticator.authenticate(_bearer(_token(signing_key, iss="https://idp.example", aud="mesh", ns="web")))


def test_a_call_without_authorization_is_not_for_the_jwt_authenticator(jwt_authenticator):
    assert jwt_authenticator.authenticate(CallerCredentials.of({"clusterid": "Kubernetes"})) is None


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer   ", "token abc"])
def test_an_authorization_that_is_not_a_bearer_token_is_refused(jwt_authenticator, header):
    with pytest.raises(AuthenticationError, match="Bearer <token>"):
        jwt_authenticator.authenticate(CallerCredentials.of({"authorization": header}))


def test_an_expired_token_is_refused(jwt_authenticator, signing_key):
    token = _token(signing_key, exp=int(time.time()) - 3600, iat=int(time.time()) - 7200)
    with pytest.raises(AuthenticationError, match="expired"):
        jwt_authenticator.authenticate(_bearer(token))


def test_a_token_signed_by_another_key_is_refused(jwt_authenticator):
    intruder = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(AuthenticationError, match="signature does not verify"):
        jwt_authenticator.authenticate(_bearer(_token(intruder)))


def test_a_token_for_another_audience_is_refused(jwt_authenticator, signing_key):
    with pytest.raises(AuthenticationError, match=r"audience is not accepted \(expected one of \['istio-ca'\]\)"):
        jwt_authenticator.authenticate(_bearer(_token(signing_key, aud="kubernetes")))


def test_a_token_without_expiry_is_refused(jwt_authenticator, signing_key):
    with pytest.raises(AuthenticationError, match="required claim"):
        jwt_authenticator.authenticate(_bearer(_token(signing_key, exp=None)))


def test_a_token_of_an_unknown_issuer_is_refused(jwt_authenticator, signing_key):
    with pytest.raises(AuthenticationError, match=r"issuer 'https://evil\.example' is not trusted"):
        jwt_authenticator.authenticate(_bearer(_token(signing_key, iss="https://evil.example")))


def test_a_token_naming_no_service_account_is_refused(jwt_authenticator, signing_key):
    with pytest.raises(AuthenticationError, match="names no service account"):
        jwt_authenticator.authenticate(_bearer(_token(signing_key, sub="alice")))


def test_unsigned_and_shared_secret_tokens_are_refused(jwt_authenticator, signing_key):
    unsigned = jwt.encode(
        {"iss": ISSUER, "aud": "istio-ca", "sub": "system:serviceaccount:default:reviews"}, None, "none"
    )
    with pytest.raises(AuthenticationError, match="algorithm 'none' is not accepted"):
        jwt_authenticator.authenticate(_bearer(unsigned))
    # The classic confusion: an HMAC token keyed with the issuer's public key.
    forged = jwt.api_jws.PyJWS(algorithms=["HS256"], options={"enforce_minimum_key_length": False}).encode(
        json.dumps({"iss": ISSUER, "aud": "istio-ca", "sub": "system:serviceaccount:default:reviews"}).encode(),
        b"not-the-public-key-but-a-shared-secret",
        algorithm="HS256",
    )
    with pytest.raises(AuthenticationError, match="algorithm 'HS256' is not accepted"):
        jwt_authenticator.authenticate(_bearer(forged))


def _segment(value):
    text = value if isinstance(value, bytes) else json.dumps(value).encode()
    return base64.urlsafe_b64encode(text).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "token",
    [
        "not.a.jwt",
        "two.segments",
        "a.b.c.d",
        f"{_segment({'alg': 'ES256'})}.{_segment({'iss': ISSUER})}.sig+nature",
        f"{_segment({'alg': 'ES256'})}.{_segment([ISSUER])}.c2ln",
        f"{_segment({'alg': 'ES256'})}.{_segment(b'not json')}.c2ln",
        f"{_segment({'alg': 'ES256', 'kid': 7})}.{_segment({'iss': ISSUER})}.c2ln",
        f"{_segment(b'[' * 5000)}.{_segment({'iss': ISSUER})}.c2ln",
        "é.é.é",
    ],
    ids=["garbage", "two-parts", "four-parts", "bad-base64", "list", "not-json", "kid", "deep", "non-ascii"],
)
def test_garbage_is_not_a_token(jwt_authenticator, token):
    with pytest.raises(AuthenticationError, match="not a well-formed JWT"):
        jwt_authenticator.authenticate(_bearer(token))


def test_keys_come_from_a_jwks_file_chosen_by_kid_and_reloaded_when_it_changes(tmp_path):
    first, second = ec.generate_private_key(ec.SECP256R1()), rsa.generate_private_key(65537, 2048)
    path = tmp_path / "jwks.json"
    path.write_text(_jwks((first, "one")))
    authenticator = JwtAuthenticator([JwtIssuer(ISSUER, jwks_file=path)], trust_domain="cluster.local")
    assert authenticator.authenticate(_bearer(_token(first, headers={"kid": "one"}))).identities == (REVIEWS,)
    rotated = _token(second, algorithm="RS256", headers={"kid": "two"})
    with pytest.raises(AuthenticationError, match="no key of issuer"):
        authenticator.authenticate(_bearer(rotated))
    path.write_text(_jwks((first, "one"), (second, "two")))
    stamp = time.time_ns() + 1_000_000_000  # a distinct mtime even on coarse file system clocks
    os.utime(path, ns=(stamp, stamp))
    assert authenticator.authenticate(_bearer(rotated)).identities == (REVIEWS,)


def test_a_broken_jwks_file_keeps_the_old_keys(tmp_path, signing_key):
    path = tmp_path / "jwks.json"
    path.write_text(_jwks((signing_key, "one")))
    authenticator = JwtAuthenticator([JwtIssuer(ISSUER, jwks_file=path)], trust_domain="cluster.local")
    path.write_text("{ not json")
    stamp = time.time_ns() + 1_000_000_000
    os.utime(path, ns=(stamp, stamp))
    assert authenticator.authenticate(_bearer(_token(signing_key))).identities == (REVIEWS,)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"public_keys": b"x", "algorithms": ("HS256",)}, "asymmetric"),
        ({}, "has no keys"),
        ({"public_keys": b"x", "audiences": ()}, "audiences"),
        ({"public_keys": b"x", "namespace_claim": "ns"}, "give both or none"),
    ],
)
def test_unusable_issuer_settings_are_refused(arguments, message):
    with pytest.raises(CaConfigError, match=message):
        JwtIssuer(ISSUER, **arguments)


def test_unusable_keys_are_refused_when_the_authenticator_is_made(tmp_path, signing_key):
    with pytest.raises(CaConfigError, match="not a PEM public key"):
        JwtAuthenticator([JwtIssuer(ISSUER, public_keys=b"garbage")], trust_domain="cluster.local")
    with pytest.raises(CaConfigError, match="cannot use"):
        JwtAuthenticator([JwtIssuer(ISSUER, jwks_file=tmp_path / "missing.json")], trust_domain="cluster.local")
    issuer = JwtIssuer(ISSUER, public_keys=_public_pem(signing_key))
    with pytest.raises(CaConfigError, match="given twice"):
        JwtAuthenticator([issuer, issuer], trust_domain="cluster.local")
    with pytest.raises(CaConfigError, match="trust_domain"):
        JwtAuthenticator([issuer], trust_domain="Not A Domain")


# ---------------------------------------------------------------- client certificates


def _workload_pem(authority, identity=REVIEWS):
    key = ec.generate_private_key(ec.SECP256R1())
    return authority.sign_key(key.public_key(), [identity]).certificate_pem.encode()


def test_a_workload_certificate_of_the_ca_authenticates_its_identity():
    authority = CertificateAuthority.self_signed(None)
    authenticator = CertificateAuthenticator(authority.trust_bundle)
    caller = authenticator.authenticate(CallerCredentials(peer_certificate=_workload_pem(authority)))
    assert caller.identities == (REVIEWS,)
    assert caller.source is AuthSource.CLIENT_CERTIFICATE


def test_a_certificate_of_a_plugged_in_intermediate_needs_the_intermediate(tmp_path):
    root = OfflineRoot.create()
    root.issue_cacerts(tmp_path / "cacerts")
    authority = CertificateAuthority.from_cacerts(tmp_path / "cacerts")
    pem = _workload_pem(authority)
    with pytest.raises(AuthenticationError):
        CertificateAuthenticator(authority.trust_bundle).authenticate(CallerCredentials(peer_certificate=pem))
    with_chain = CertificateAuthenticator(authority.trust_bundle, intermediates=[authority.signing_certificate])
    assert with_chain.authenticate(CallerCredentials(peer_certificate=pem)).identities == (REVIEWS,)
    assert authority.intermediates == (authority.signing_certificate,)
    from_authority = CertificateAuthenticator(authority.trust_bundle, intermediates=authority.intermediates)
    assert from_authority.authenticate(CallerCredentials(peer_certificate=pem)).identities == (REVIEWS,)


def test_a_self_signed_ca_has_no_intermediates():
    assert CertificateAuthority.self_signed(None).intermediates == ()


def test_a_certificate_of_another_ca_is_refused():
    ours, theirs = CertificateAuthority.self_signed(None), CertificateAuthority.self_signed(None)
    with pytest.raises(AuthenticationError, match="not a valid workload certificate of this CA"):
        CertificateAuthenticator(ours.trust_bundle()).authenticate(
            CallerCredentials(peer_certificate=_workload_pem(theirs))
        )


def test_an_expired_certificate_is_refused():
    authority = CertificateAuthority.self_signed(None)
    later = datetime.now(UTC) + timedelta(days=2)
    authenticator = CertificateAuthenticator(authority.trust_bundle, clock=lambda: later)
    with pytest.raises(AuthenticationError, match="expired"):
        authenticator.authenticate(CallerCredentials(peer_certificate=_workload_pem(authority)))


def test_a_server_certificate_without_spiffe_id_is_refused():
    authority = CertificateAuthority.self_signed(None)
    key = ec.generate_private_key(ec.SECP256R1())
    server = authority.sign_server_key(key.public_key(), ["localhost"]).certificate_pem.encode()
    with pytest.raises(AuthenticationError):
        CertificateAuthenticator(authority.trust_bundle).authenticate(CallerCredentials(peer_certificate=server))


def test_a_certificate_of_a_federated_trust_domain_is_not_a_caller():
    local, foreign = (
        CertificateAuthority.self_signed(None),
        CertificateAuthority.self_signed(None, trust_domain="other"),
    )
    bundle = local.trust_bundle().with_roots("other", foreign.roots)
    pem = _workload_pem(foreign, SpiffeId("other", "default", "reviews"))
    with pytest.raises(AuthenticationError, match="another trust domain"):
        CertificateAuthenticator(bundle).authenticate(CallerCredentials(peer_certificate=pem))


def test_no_client_certificate_is_not_for_the_certificate_authenticator():
    authority = CertificateAuthority.self_signed(None)
    assert CertificateAuthenticator(authority.trust_bundle).authenticate(CallerCredentials()) is None
    with pytest.raises(AuthenticationError, match="not a PEM certificate"):
        CertificateAuthenticator(authority.trust_bundle).authenticate(CallerCredentials(peer_certificate=b"junk"))


# ---------------------------------------------------------------- order and impersonation


def test_authenticators_are_tried_in_order_and_the_first_to_accept_decides(jwt_authenticator, signing_key):
    authority = CertificateAuthority.self_signed(None)
    authenticators = [CertificateAuthenticator(authority.trust_bundle), jwt_authenticator]
    assert isinstance(authenticators[0], Authenticator)
    token_caller = authenticate(authenticators, _bearer(_token(signing_key, sub="system:serviceaccount:a:b")))
    assert token_caller.source is AuthSource.JWT
    both = CallerCredentials.of(
        {"authorization": f"Bearer {_token(signing_key, sub='system:serviceaccount:a:b')}"},
        peer_certificate=_workload_pem(authority),
    )
    assert authenticate(authenticators, both).identities == (REVIEWS,)


def test_every_reason_is_reported_when_nobody_accepts(jwt_authenticator):
    authority = CertificateAuthority.self_signed(None)
    authenticators = [CertificateAuthenticator(authority.trust_bundle), jwt_authenticator]
    credentials = CallerCredentials.of({"authorization": "Bearer x.y.z"}, peer_certificate=b"junk")
    with pytest.raises(AuthenticationError, match="not a PEM certificate; bearer token refused"):
        authenticate(authenticators, credentials)
    with pytest.raises(AuthenticationError, match="carries no credentials"):
        authenticate(authenticators, CallerCredentials())


def test_metadata_keys_are_case_insensitive_and_binary_values_are_left_out():
    credentials = CallerCredentials.of([("Authorization", "Bearer t"), ("trace-bin", b"\x00")])
    assert credentials.get("AUTHORIZATION") == "Bearer t"
    assert credentials.get("trace-bin") is None


def test_only_callers_on_the_allow_list_may_impersonate():
    agent = SpiffeId("cluster.local", "istio-system", "ztunnel")
    allow = ImpersonationAllowList([str(agent)])
    pod = SpiffeId("cluster.local", "default", "reviews")
    assert allow.authorize(Caller((agent,), AuthSource.JWT), pod) == pod
    with pytest.raises(ImpersonationError, match="may not request certificates for other identities"):
        allow.authorize(Caller((SpiffeId("cluster.local", "default", "ratings"),), AuthSource.JWT), pod)
    assert ImpersonationAllowList().authorize(Caller((pod,), AuthSource.JWT), pod) == pod
    with pytest.raises(CaConfigError, match="impersonation allow-list"):
        ImpersonationAllowList(["ztunnel"])
