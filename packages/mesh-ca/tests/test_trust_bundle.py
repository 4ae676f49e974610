"""Trust bundles: roots per trust domain, aliases, federation, and chain verification."""

from datetime import timedelta

import pytest
from cryptography import x509

from mesh_ca import CertificateAuthority, TrustBundle, TrustBundleError, VerificationError, fingerprint
from mesh_model import SpiffeId


@pytest.fixture(scope="module")
def local():
    return CertificateAuthority.self_signed(None)


@pytest.fixture(scope="module")
def partner():
    return CertificateAuthority.self_signed(None, trust_domain="partner.example")


def test_the_authoritys_bundle_holds_its_roots(local):
    bundle = local.trust_bundle()
    assert bundle.trust_domain == "cluster.local"
    assert bundle.roots == {"cluster.local": (local.root_certificate,)}
    assert bundle.trust_domains == ("cluster.local",)
    assert x509.load_pem_x509_certificates(bundle.pem().encode()) == [local.root_certificate]
    assert bundle == local.trust_bundle()


def test_a_federated_trust_domain_verifies_its_own_identities_only(local, partner, workload_key):
    bundle = local.trust_bundle().with_roots("partner.example", partner.roots)
    assert bundle.trust_domains == ("cluster.local", "partner.example")
    theirs = SpiffeId("partner.example", "shop", "cart")
    issued = partner.sign_key(workload_key.public_key(), [theirs])
    assert bundle.verify(issued.chain_pem) == (theirs,)
    assert x509.load_pem_x509_certificates(bundle.pem().encode()) == [local.root_certificate, partner.root_certificate]
    assert bundle.pem("partner.example") == partner.trust_bundle().pem()


def test_a_foreign_ca_cannot_vouch_for_local_identities(local, workload_key):
    impostor = CertificateAuthority.self_signed(None)  # same trust domain name, a different root
    bundle = local.trust_bundle()
    forged = impostor.sign_key(workload_key.public_key(), [SpiffeId("cluster.local", "istio-system", "istiod")])
    with pytest.raises(VerificationError, match="does not verify"):
        bundle.verify(forged.chain_pem)


def test_a_federated_ca_cannot_vouch_for_local_identities(local, workload_key):
    rogue = CertificateAuthority.self_signed(
        None, trust_domain="partner.example", trust_domain_aliases=["cluster.local"]
    )
    bundle = local.trust_bundle().with_roots("partner.example", rogue.roots)
    forged = rogue.sign_key(workload_key.public_key(), [SpiffeId("cluster.local", "default", "reviews")])
    with pytest.raises(VerificationError, match="does not verify"):
        bundle.verify(forged.chain_pem)


def test_identities_in_an_alias_verify_with_the_local_roots(workload_key):
    authority = CertificateAuthority.self_signed(None, trust_domain="new.domain", trust_domain_aliases=["old.domain"])
    bundle = authority.trust_bundle()
    assert bundle.aliases == frozenset({"old.domain"})
    assert bundle.roots_for("old.domain") == authority.roots
    assert bundle.canonical("old.domain") == "new.domain"
    legacy = SpiffeId("old.domain", "default", "reviews")
    assert bundle.verify(authority.sign_key(workload_key.public_key(), [legacy]).chain_pem) == (legacy,)
    assert bundle.with_aliases("older.domain").roots_for("older.domain") == authority.roots


def test_a_bundle_round_trips_through_pem(local):
    bundle = TrustBundle.from_pem("cluster.local", local.trust_bundle().pem(), aliases=["legacy.local"])
    assert bundle.roots["cluster.local"] == local.roots
    assert bundle.aliases == frozenset({"legacy.local"})


def test_roots_are_removed_by_certificate_or_fingerprint(local, partner):
    bundle = local.trust_bundle().with_roots("cluster.local", [local.root_certificate, partner.root_certificate])
    assert bundle.fingerprints() == (fingerprint(local.root_certificate), fingerprint(partner.root_certificate))
    assert bundle.without_root(fingerprint(partner.root_certificate)).roots_for("cluster.local") == local.roots
    assert bundle.without_root(partner.root_certificate) == local.trust_bundle()
    with pytest.raises(TrustBundleError, match="last root"):
        local.trust_bundle().without_root(local.root_certificate)
    with pytest.raises(TrustBundleError, match="not in the bundle"):
        local.trust_bundle().without_root(partner.root_certificate)


def test_a_federated_domain_may_be_dropped_but_not_the_local_one(local, partner):
    bundle = local.trust_bundle().with_roots("partner.example", partner.roots)
    assert bundle.without_trust_domain("partner.example") == local.trust_bundle()
    with pytest.raises(TrustBundleError, match="cannot be removed"):
        bundle.without_trust_domain("cluster.local")


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (("cluster.local", {}), "has no root"),
        (("Cluster Local", {"Cluster Local": ()}), "is not a trust domain"),
        (("cluster.local", {"cluster.local": ()}), "has no root"),
        (("cluster.local", {"cluster.local": ["PEM text"]}), "not an x509.Certificate"),
        (("cluster.local", {"cluster.local": "PEM text"}), "must be x509.Certificate objects"),
        (("cluster.local", ["root"]), "must map trust domains"),
    ],
)
def test_malformed_bundles_are_refused(arguments, expected):
    with pytest.raises(TrustBundleError, match=expected):
        TrustBundle(*arguments)


def test_aliases_may_not_contradict_the_roots(local, partner):
    roots = {"cluster.local": local.roots, "partner.example": partner.roots}
    with pytest.raises(TrustBundleError, match="roots of its own"):
        TrustBundle("cluster.local", roots, aliases=["partner.example"])
    with pytest.raises(TrustBundleError, match="alias of itself"):
        TrustBundle("cluster.local", roots, aliases=["cluster.local"])
    with pytest.raises(TrustBundleError, match="collection of trust domains"):
        TrustBundle("cluster.local", roots, aliases="partner.example")


def test_from_pem_refuses_text_without_certificates():
    with pytest.raises(TrustBundleError, match="no certificate"):
        TrustBundle.from_pem("cluster.local", "nothing here")


def test_verification_checks_time(local, workload_key, identity):
    issued = local.sign_key(workload_key.public_key(), [identity], ttl=timedelta(hours=1))
    bundle = local.trust_bundle()
    assert bundle.verify(issued.chain_pem, at=issued.not_after - timedelta(seconds=1)) == (identity,)
    with pytest.raises(VerificationError, match="does not verify"):
        bundle.verify(issued.chain_pem, at=issued.not_after + timedelta(seconds=1))


def test_verification_accepts_pem_text_and_certificates(local, workload_key, identity):
    issued = local.sign_key(workload_key.public_key(), [identity])
    bundle = local.trust_bundle()
    assert bundle.verify(issued.full_chain_pem) == (identity,)
    assert bundle.verify(issued.full_chain_pem.encode()) == (identity,)
    assert bundle.verify([issued.certificate]) == (identity,)


def test_a_certificate_without_a_spiffe_id_proves_nothing(local, workload_key):
    server = local.sign_server_key(workload_key.public_key(), ["localhost"])
    with pytest.raises(VerificationError, match="no spiffe:// URI"):
        local.trust_bundle().verify(server.chain_pem)


@pytest.mark.parametrize(
    ("chain", "expected"),
    [
        ("", "empty"),
        ([], "empty"),
        ("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "malformed"),
        ([42], "not a certificate"),
        (42, "must be PEM text or certificates"),
    ],
)
def test_malformed_chains_are_refused(local, chain, expected):
    with pytest.raises(VerificationError, match=expected):
        local.trust_bundle().verify(chain)


def test_a_bundle_without_roots_for_the_domain_says_so(local, partner, workload_key):
    issued = partner.sign_key(workload_key.public_key(), [SpiffeId("partner.example", "shop", "cart")])
    with pytest.raises(VerificationError, match=r"no root for trust domain 'partner\.example'"):
        local.trust_bundle().verify(issued.chain_pem)
