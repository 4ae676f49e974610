"""The self-signed root kept in a directory: created once, loaded afterwards, never readable by others."""

import stat

import pytest

from mesh_ca import CaConfigError, CertificateAuthority, KeyFileError, load_cacerts
from mesh_ca.testing import OfflineRoot

FILES = ["ca-cert.pem", "ca-key.pem", "cert-chain.pem", "root-cert.pem"]


def test_the_root_is_created_on_first_start_in_the_cacerts_layout(tmp_path):
    directory = tmp_path / "ca"
    authority = CertificateAuthority.self_signed(directory)
    assert sorted(path.name for path in directory.iterdir()) == FILES
    assert stat.S_IMODE((directory / "ca-key.pem").stat().st_mode) == 0o600
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    material = load_cacerts(directory)
    assert material.chain == (authority.root_certificate,)
    assert material.roots == (authority.root_certificate,)


def test_the_root_is_loaded_on_later_starts(tmp_path, identity, workload_key):
    first = CertificateAuthority.self_signed(tmp_path)
    issued = first.sign_key(workload_key.public_key(), [identity])
    second = CertificateAuthority.self_signed(tmp_path)
    assert second.root_certificate == first.root_certificate
    assert second.trust_bundle().verify(issued.chain_pem) == (identity,)


def test_an_existing_directory_may_be_empty(tmp_path):
    CertificateAuthority.self_signed(tmp_path)
    assert (tmp_path / "ca-key.pem").exists()


def test_an_in_memory_authority_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    CertificateAuthority.self_signed(None)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("left", [["ca-cert.pem"], ["ca-key.pem"], ["ca-cert.pem", "cert-chain.pem"]])
def test_an_incomplete_directory_is_refused_rather_than_overwritten(tmp_path, left):
    CertificateAuthority.self_signed(tmp_path)
    for name in FILES:
        if name not in left:
            (tmp_path / name).unlink()
    with pytest.raises(CaConfigError, match="restore the missing files"):
        CertificateAuthority.self_signed(tmp_path)


def test_a_key_readable_by_others_is_refused(tmp_path):
    CertificateAuthority.self_signed(tmp_path)
    (tmp_path / "ca-key.pem").chmod(0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        CertificateAuthority.self_signed(tmp_path)


def test_a_plugged_in_directory_is_not_taken_for_a_self_signed_root(tmp_path):
    OfflineRoot.create().issue_cacerts(tmp_path)
    with pytest.raises(CaConfigError, match="from_cacerts"):
        CertificateAuthority.self_signed(tmp_path)


def test_a_path_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(CaConfigError, match="not a directory"):
        CertificateAuthority.self_signed(tmp_path / "file")


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"trust_domain": "Not A Domain"}, "not a trust domain"),
        ({"trust_domain_aliases": "old.domain"}, "aliases must be a collection"),
        ({"algorithm": "EC_P256"}, "algorithm must be a KeyAlgorithm"),
        ({"root_ttl": 3650}, "root_ttl must be a timedelta"),
        ({"policy": {}}, "policy must be a SigningPolicy"),
    ],
)
def test_unusable_options_are_refused_before_anything_is_written(tmp_path, options, expected):
    with pytest.raises(CaConfigError, match=expected):
        CertificateAuthority.self_signed(tmp_path / "ca", **options)
    assert not (tmp_path / "ca").exists()
