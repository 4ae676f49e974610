"""Root rotation: the new root signs, the old one stays trusted until it is retired."""

import threading
import time

import pytest
from cryptography import x509

from mesh_ca import (
    CaConfigError,
    CertificateAuthority,
    KeyAlgorithm,
    TrustBundleError,
    VerificationError,
    fingerprint,
    load_cacerts,
)
from mesh_ca.testing import OfflineRoot


def test_after_a_rotation_both_roots_are_trusted(
    authority, workload_key, identity, openssl_verify, cryptography_verify
):
    old_root = authority.root_certificate
    before = authority.sign_key(workload_key.public_key(), [identity])
    new_root = authority.rotate_root()
    after = authority.sign_key(workload_key.public_key(), [identity])

    assert new_root != old_root
    assert authority.root_certificate == new_root
    assert after.root_pem != before.root_pem
    assert x509.load_pem_x509_certificate(after.root_pem.encode()) == new_root
    bundle = authority.trust_bundle()
    assert bundle.roots["cluster.local"] == (new_root, old_root)
    for issued in (before, after):
        assert bundle.verify(issued.chain_pem) == (identity,)
        result = openssl_verify(issued.chain_pem, bundle.pem())
        assert result.returncode == 0, result.stdout + result.stderr
        cryptography_verify(issued.chain_pem, authority.roots)


def test_retiring_the_old_root_ends_trust_in_what_it_signed(authority, workload_key, identity, openssl_verify):
    old_root = authority.root_certificate
    before = authority.sign_key(workload_key.public_key(), [identity])
    authority.rotate_root()
    after = authority.sign_key(workload_key.public_key(), [identity])
    authority.retire_root(old_root)

    bundle = authority.trust_bundle()
    assert bundle.roots["cluster.local"] == (authority.root_certificate,)
    assert bundle.verify(after.chain_pem) == (identity,)
    with pytest.raises(VerificationError):
        bundle.verify(before.chain_pem)
    assert openssl_verify(before.chain_pem, bundle.pem()).returncode != 0


def test_a_root_may_be_retired_by_fingerprint_in_any_spelling(authority):
    old_root = authority.root_certificate
    authority.rotate_root()
    digits = fingerprint(old_root).upper()
    authority.retire_root(":".join(digits[i : i + 2] for i in range(0, 64, 2)))
    assert old_root not in authority.roots


def test_the_signing_root_cannot_be_retired(authority):
    with pytest.raises(TrustBundleError, match="rotate_root"):
        authority.retire_root(authority.root_certificate)


def test_an_unknown_root_cannot_be_retired(authority):
    stranger = CertificateAuthority.self_signed(None).root_certificate
    with pytest.raises(TrustBundleError, match="not trusted"):
        authority.retire_root(stranger)
    with pytest.raises(TrustBundleError, match="64 hex digits"):
        authority.retire_root("abc")


def test_rotation_is_persisted(tmp_path, workload_key, identity):
    authority = CertificateAuthority.self_signed(tmp_path)
    old_root = authority.root_certificate
    new_root = authority.rotate_root()
    restarted = CertificateAuthority.self_signed(tmp_path)
    assert restarted.root_certificate == new_root
    assert restarted.roots == (new_root, old_root)
    assert load_cacerts(tmp_path).chain == (new_root,)

    restarted.retire_root(old_root)
    assert CertificateAuthority.self_signed(tmp_path).roots == (new_root,)


def test_a_rotation_cut_short_between_key_and_certificate_still_loads(tmp_path):
    authority = CertificateAuthority.self_signed(tmp_path)
    old_certificate = (tmp_path / "ca-cert.pem").read_bytes()
    new_root = authority.rotate_root()
    (tmp_path / "ca-cert.pem").write_bytes(old_certificate)  # the new key and roots, the old ca-cert.pem

    restarted = CertificateAuthority.self_signed(tmp_path)
    assert restarted.root_certificate == new_root
    assert load_cacerts(tmp_path).signing_certificate == new_root, "ca-cert.pem is repaired"


def test_a_rotation_may_change_the_key_algorithm(authority, workload_key, identity):
    new_root = authority.rotate_root(algorithm=KeyAlgorithm.EC_P384)
    assert KeyAlgorithm.of(new_root.public_key()) is KeyAlgorithm.EC_P384
    issued = authority.sign_key(workload_key.public_key(), [identity])
    assert authority.trust_bundle().verify(issued.chain_pem) == (identity,)


def test_subscribers_hear_of_rotations_until_they_cancel(authority):
    heard = []
    subscription = authority.subscribe(heard.append)
    old_root = authority.root_certificate
    authority.rotate_root()
    assert [bundle.fingerprints() for bundle in heard] == [authority.trust_bundle().fingerprints()]
    subscription.cancel()
    authority.retire_root(old_root)
    assert len(heard) == 1


def test_a_failing_subscriber_does_not_stop_the_others(authority, caplog):
    heard = []

    def broken(_bundle):
        raise RuntimeError("boom")

    authority.subscribe(broken)
    authority.subscribe(heard.append)
    authority.rotate_root()
    assert len(heard) == 1
    assert "boom" in caplog.text


def test_a_plugged_in_root_is_not_rotated_here(tmp_path):
    OfflineRoot.create().issue_cacerts(tmp_path)
    authority = CertificateAuthority.from_cacerts(tmp_path)
    assert not authority.is_self_signed
    with pytest.raises(CaConfigError, match="cacerts directory"):
        authority.rotate_root()
    with pytest.raises(CaConfigError, match="cacerts directory"):
        authority.retire_root(authority.root_certificate)


def test_unusable_rotation_options_are_refused(authority):
    root = authority.root_certificate
    with pytest.raises(CaConfigError, match="KeyAlgorithm"):
        authority.rotate_root(algorithm="EC_P384")  # type: ignore[arg-type]
    with pytest.raises(CaConfigError, match="at least one day"):
        authority.rotate_root(ttl=3600)  # type: ignore[arg-type]
    assert authority.root_certificate == root


def test_a_root_is_named_by_certificate_or_fingerprint_only(authority):
    with pytest.raises(TrustBundleError, match="by its certificate or its fingerprint"):
        authority.retire_root(42)  # type: ignore[arg-type]


def test_signing_while_the_root_rotates_yields_only_consistent_chains(authority, workload_key, identity):
    issued = []
    done = threading.Event()

    def sign():
        while not done.is_set():
            issued.append(authority.sign_key(workload_key.public_key(), [identity]))

    signers = [threading.Thread(target=sign) for _ in range(3)]
    for thread in signers:
        thread.start()
    try:
        for _ in range(5):
            _wait_for_more(issued)
            authority.rotate_root()
        _wait_for_more(issued)
    finally:
        done.set()
        for thread in signers:
            thread.join(timeout=60)
    bundle = authority.trust_bundle()
    assert len(bundle.roots["cluster.local"]) == 6
    assert len({certificate.root_pem for certificate in issued}) > 1, "certificates came from several roots"
    for certificate in issued:
        assert bundle.verify(certificate.chain_pem) == (identity,)


def _wait_for_more(issued, count=3, timeout=30.0):
    """Wait until ``count`` more certificates were issued (the signing threads are making progress)."""
    target = len(issued) + count
    deadline = time.monotonic() + timeout
    while len(issued) < target:
        assert time.monotonic() < deadline, "the signing threads made no progress"
        time.sleep(0.001)
