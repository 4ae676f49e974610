"""A plugged-in intermediate in Istio's cacerts layout."""

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from mesh_ca import (
    CaCerts,
    CaConfigError,
    CertificateAuthority,
    KeyAlgorithm,
    KeyFileError,
    load_cacerts,
    write_cacerts,
    write_private_key,
)
from mesh_ca.testing import OfflineRoot


@pytest.fixture(scope="module")
def offline_root():
    return OfflineRoot.create()


def _pem(*certificates):
    return b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in certificates)


def test_a_plugged_in_intermediate_signs_chains_both_verifiers_accept(
    tmp_path, offline_root, make_csr, identity, openssl_verify, cryptography_verify
):
    material = offline_root.issue_cacerts(tmp_path)
    authority = CertificateAuthority.from_cacerts(tmp_path)
    issued = authority.sign_csr(make_csr(uris=[identity.uri]), [identity])

    chain = [x509.load_pem_x509_certificate(pem.encode()) for pem in issued.chain_pem]
    assert chain[1:] == [material.signing_certificate, offline_root.certificate], "leaf, intermediate, root last"
    assert chain[0].issuer == material.signing_certificate.subject
    result = openssl_verify(issued.chain_pem, authority.trust_bundle().pem())
    assert result.returncode == 0, result.stdout + result.stderr
    assert cryptography_verify(issued.chain_pem, [offline_root.certificate])[-1] == offline_root.certificate
    assert authority.trust_bundle().verify(issued.chain_pem) == (identity,)


@pytest.mark.parametrize(
    "chain_file",
    ["intermediate and root (Istio's samples)", "intermediate only", "root only", "missing"],
)
def test_every_usual_spelling_of_cert_chain_pem_is_understood(tmp_path, offline_root, chain_file):
    material = offline_root.issue_cacerts(tmp_path)
    intermediate, root = material.signing_certificate, offline_root.certificate
    contents = {
        "intermediate and root (Istio's samples)": _pem(intermediate, root),
        "intermediate only": _pem(intermediate),
        "root only": _pem(root),
    }
    if chain_file == "missing":
        (tmp_path / "cert-chain.pem").unlink()
    else:
        (tmp_path / "cert-chain.pem").write_bytes(contents[chain_file])
    assert load_cacerts(tmp_path).chain == (intermediate, root)


def test_two_levels_of_intermediates_are_chained_in_order(
    tmp_path, offline_root, workload_key, identity, openssl_verify
):
    upper = offline_root.intermediate(name="upper", path_length=1)
    lower = OfflineRoot(key=upper.signing_key, certificate=upper.signing_certificate).intermediate(name="lower")
    write_cacerts(
        tmp_path,
        CaCerts(
            signing_key=lower.signing_key,
            chain=(lower.signing_certificate, upper.signing_certificate, offline_root.certificate),
            roots=(offline_root.certificate,),
        ),
    )
    authority = CertificateAuthority.from_cacerts(tmp_path)
    issued = authority.sign_key(workload_key.public_key(), [identity])
    assert len(issued.chain_pem) == 4
    assert openssl_verify(issued.chain_pem, authority.trust_bundle().pem()).returncode == 0
    assert authority.trust_bundle().verify(issued.chain_pem) == (identity,)


def test_a_path_length_constraint_the_chain_breaks_is_refused(tmp_path, offline_root):
    upper = offline_root.intermediate(name="upper", path_length=0)
    lower = OfflineRoot(key=upper.signing_key, certificate=upper.signing_certificate).intermediate(name="lower")
    (tmp_path / "ca-cert.pem").write_bytes(_pem(lower.signing_certificate))
    (tmp_path / "cert-chain.pem").write_bytes(_pem(lower.signing_certificate, upper.signing_certificate))
    (tmp_path / "root-cert.pem").write_bytes(_pem(offline_root.certificate))
    write_private_key(tmp_path / "ca-key.pem", lower.signing_key)
    with pytest.raises(CaConfigError, match="allows 0 intermediate CAs below it"):
        load_cacerts(tmp_path)


def test_several_roots_in_root_cert_pem_are_all_trusted(tmp_path, offline_root, workload_key, identity):
    other = OfflineRoot.create()
    offline_root.issue_cacerts(tmp_path, extra_roots=[other.certificate])
    authority = CertificateAuthority.from_cacerts(tmp_path)
    assert authority.roots == (offline_root.certificate, other.certificate)
    foreign = CertificateAuthority(other.intermediate()).sign_key(workload_key.public_key(), [identity])
    assert authority.trust_bundle().verify(foreign.chain_pem) == (identity,)


@pytest.mark.parametrize("name", ["ca-cert.pem", "ca-key.pem", "root-cert.pem"])
def test_a_missing_file_is_named(tmp_path, offline_root, name):
    offline_root.issue_cacerts(tmp_path)
    (tmp_path / name).unlink()
    with pytest.raises(CaConfigError, match=f"{name} does not exist"):
        CertificateAuthority.from_cacerts(tmp_path)


def test_a_missing_directory_is_named(tmp_path):
    with pytest.raises(CaConfigError, match="does not exist or is not a directory"):
        CertificateAuthority.from_cacerts(tmp_path / "absent")


def test_a_key_readable_by_others_is_refused(tmp_path, offline_root):
    offline_root.issue_cacerts(tmp_path)
    (tmp_path / "ca-key.pem").chmod(0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        CertificateAuthority.from_cacerts(tmp_path)


def test_a_key_that_is_not_the_certificates_is_refused(tmp_path, offline_root):
    offline_root.issue_cacerts(tmp_path)
    write_private_key(tmp_path / "ca-key.pem", offline_root.intermediate().signing_key)
    with pytest.raises(CaConfigError, match="is not the key of the certificate"):
        load_cacerts(tmp_path)


def test_a_chain_to_another_root_is_refused(tmp_path, offline_root):
    offline_root.issue_cacerts(tmp_path)
    (tmp_path / "root-cert.pem").write_bytes(_pem(OfflineRoot.create().certificate))
    (tmp_path / "cert-chain.pem").unlink()
    with pytest.raises(CaConfigError, match="does not chain to a root in"):
        load_cacerts(tmp_path)


def test_a_stray_certificate_in_the_chain_file_is_refused(tmp_path, offline_root):
    material = offline_root.issue_cacerts(tmp_path)
    stray = OfflineRoot.create(organization="elsewhere").certificate
    (tmp_path / "cert-chain.pem").write_bytes(_pem(material.signing_certificate, stray, offline_root.certificate))
    with pytest.raises(CaConfigError, match="not on the path"):
        load_cacerts(tmp_path)


def test_an_expired_intermediate_is_refused(tmp_path, offline_root):
    long_ago = datetime.now(UTC) - timedelta(days=10)
    material = offline_root.intermediate(not_before=long_ago, ttl=timedelta(days=1))
    write_cacerts(tmp_path, material)
    with pytest.raises(CaConfigError, match="expired at"):
        CertificateAuthority.from_cacerts(tmp_path)


def test_a_leaf_is_not_a_signing_certificate(tmp_path, offline_root, workload_key, identity):
    authority = CertificateAuthority.self_signed(None)
    leaf = authority.sign_key(workload_key.public_key(), [identity])
    offline_root.issue_cacerts(tmp_path)
    (tmp_path / "ca-cert.pem").write_text(leaf.certificate_pem)
    (tmp_path / "root-cert.pem").write_text(leaf.root_pem)
    (tmp_path / "cert-chain.pem").unlink()
    write_private_key(tmp_path / "ca-key.pem", workload_key)
    with pytest.raises(CaConfigError, match="not a CA certificate"):
        load_cacerts(tmp_path)


def test_a_signing_file_with_several_certificates_is_refused(tmp_path, offline_root):
    material = offline_root.issue_cacerts(tmp_path)
    (tmp_path / "ca-cert.pem").write_bytes(_pem(material.signing_certificate, offline_root.certificate))
    with pytest.raises(CaConfigError, match="holds 2 certificates"):
        load_cacerts(tmp_path)


def test_malformed_pem_is_named(tmp_path, offline_root):
    offline_root.issue_cacerts(tmp_path)
    (tmp_path / "root-cert.pem").write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    with pytest.raises(CaConfigError, match=r"root-cert\.pem holds a malformed PEM certificate"):
        load_cacerts(tmp_path)


def test_leaves_never_outlive_the_intermediate(tmp_path, offline_root, workload_key, identity):
    material = offline_root.intermediate(ttl=timedelta(hours=3))
    write_cacerts(tmp_path, material)
    authority = CertificateAuthority.from_cacerts(tmp_path)
    issued = authority.sign_key(workload_key.public_key(), [identity], ttl=timedelta(days=30))
    assert issued.not_after == material.signing_certificate.not_valid_after_utc


def test_the_authority_never_writes_to_a_plugged_in_directory(tmp_path, offline_root, workload_key, identity):
    offline_root.issue_cacerts(tmp_path)
    before = {path.name: (path.read_bytes(), path.stat().st_mtime_ns) for path in tmp_path.iterdir()}
    authority = CertificateAuthority.from_cacerts(tmp_path)
    authority.sign_key(workload_key.public_key(), [identity])
    authority.reload()
    assert {path.name: (path.read_bytes(), path.stat().st_mtime_ns) for path in tmp_path.iterdir()} == before


def test_reload_picks_up_a_new_intermediate(tmp_path, offline_root, workload_key, identity):
    offline_root.issue_cacerts(tmp_path, name="first")
    authority = CertificateAuthority.from_cacerts(tmp_path)
    heard = []
    authority.subscribe(heard.append)
    assert authority.reload() is False
    offline_root.issue_cacerts(tmp_path, name="second", algorithm=KeyAlgorithm.EC_P384)
    assert authority.reload() is True
    assert authority.signing_certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "second"
    assert len(heard) == 1
    issued = authority.sign_key(workload_key.public_key(), [identity])
    assert authority.trust_bundle().verify(issued.chain_pem) == (identity,)


def test_a_failed_reload_keeps_the_authority_signing(tmp_path, offline_root, workload_key, identity):
    offline_root.issue_cacerts(tmp_path)
    authority = CertificateAuthority.from_cacerts(tmp_path)
    (tmp_path / "ca-key.pem").unlink()
    with pytest.raises(CaConfigError):
        authority.reload()
    assert authority.sign_key(workload_key.public_key(), [identity]).identities == (identity,)
