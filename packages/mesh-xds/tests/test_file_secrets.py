"""DirectorySecretProvider: gateway credentials from folders, pushed when they change, never shown."""

import logging
import os
import queue
import uuid

import pytest

from mesh_xds import SecretProvider, TlsSecret, XdsError, secret_resource
from mesh_xds.file_secrets import DirectorySecretProvider

CERT = b"-----BEGIN CERTIFICATE-----\nMIIBcert\n-----END CERTIFICATE-----\n"
OTHER_CERT = b"-----BEGIN CERTIFICATE-----\nMIIBother\n-----END CERTIFICATE-----\n"
KEY = b"-----BEGIN PRIVATE KEY-----\nMIGHsecretkeymaterial\n-----END PRIVATE KEY-----\n"
ROOTS = b"-----BEGIN CERTIFICATE-----\nMIIBroot\n-----END CERTIFICATE-----\n"


def write(path, data: bytes):
    """Replace a file atomically, as a Secret volume update does."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.parent / f".tmp-{uuid.uuid4().hex}"
    temporary.write_bytes(data)
    os.replace(temporary, path)


@pytest.fixture
def root(tmp_path):
    write(tmp_path / "bookinfo-cert" / "tls.crt", CERT)
    write(tmp_path / "bookinfo-cert" / "tls.key", KEY)
    write(tmp_path / "bookinfo-cert" / "ca.crt", ROOTS)
    write(tmp_path / "generic" / "cert", OTHER_CERT)
    write(tmp_path / "generic" / "key", KEY)
    write(tmp_path / "client-ca" / "ca.crt", ROOTS)
    write(tmp_path / ".hidden" / "tls.crt", CERT)
    return tmp_path


def test_serves_istio_credential_names(root):
    secrets = DirectorySecretProvider(root)
    assert isinstance(secrets, SecretProvider)
    assert secrets.names() == (
        "kubernetes://bookinfo-cert",
        "kubernetes://bookinfo-cert-cacert",
        "kubernetes://client-ca",
        "kubernetes://client-ca-cacert",
        "kubernetes://generic",
    )
    assert secrets.get_secret("kubernetes://bookinfo-cert") == TlsSecret(certificate_chain=CERT, private_key=KEY)
    assert secrets.get_secret("kubernetes://bookinfo-cert-cacert") == TlsSecret(trusted_ca=ROOTS)
    assert secrets.get_secret("kubernetes://generic") == TlsSecret(certificate_chain=OTHER_CERT, private_key=KEY)
    assert secrets.get_secret("kubernetes://client-ca") == TlsSecret(trusted_ca=ROOTS)
    assert secrets.get_secret("bookinfo-cert") is None
    for name in secrets.names():
        secret = secrets.get_secret(name)
        assert secret is not None
        secret_resource(name, secret)  # each one can be served


def test_changes_are_told_by_name(root):
    secrets = DirectorySecretProvider(root)
    told: list[str] = []
    secrets.subscribe(told.append)
    write(root / "bookinfo-cert" / "tls.crt", OTHER_CERT)
    assert secrets.refresh() == {"kubernetes://bookinfo-cert"}
    assert told == ["kubernetes://bookinfo-cert"]
    assert secrets.refresh() == frozenset()
    (root / "client-ca" / "ca.crt").unlink()
    (root / "client-ca").rmdir()
    assert secrets.refresh() == {"kubernetes://client-ca", "kubernetes://client-ca-cacert"}
    assert secrets.get_secret("kubernetes://client-ca") is None


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda folder: (folder / "tls.key").unlink(), "has tls.crt but no tls.key"),
        (lambda folder: write(folder / "tls.crt", b"half a certif"), "tls.crt holds no PEM certificate"),
        (lambda folder: write(folder / "tls.key", CERT), "tls.key holds no PEM private key"),
        (lambda folder: write(folder / "ca.crt", b"nothing"), "ca.crt holds no PEM certificate"),
    ],
)
def test_a_broken_credential_keeps_its_last_valid_secrets(root, change, problem, caplog):
    secrets = DirectorySecretProvider(root)
    told: list[str] = []
    secrets.subscribe(told.append)
    with caplog.at_level(logging.WARNING):
        change(root / "bookinfo-cert")
        assert secrets.refresh() == frozenset()
    assert told == []
    assert secrets.get_secret("kubernetes://bookinfo-cert") == TlsSecret(certificate_chain=CERT, private_key=KEY)
    assert secrets.problems() == {"bookinfo-cert": problem}
    assert problem in caplog.text
    assert b"secretkeymaterial" not in caplog.text.encode()


def test_a_broken_new_credential_serves_nothing(tmp_path):
    write(tmp_path / "half" / "tls.crt", CERT)
    secrets = DirectorySecretProvider(tmp_path)
    assert secrets.names() == ()
    assert secrets.problems() == {"half": "has tls.crt but no tls.key"}


def test_a_root_that_goes_away_changes_nothing(tmp_path):
    folder = tmp_path / "credentials"
    write(folder / "a" / "ca.crt", ROOTS)
    secrets = DirectorySecretProvider(folder)
    (folder / "a" / "ca.crt").unlink()
    (folder / "a").rmdir()
    folder.rmdir()
    assert secrets.refresh() == frozenset()
    assert secrets.names() == ("kubernetes://a", "kubernetes://a-cacert")
    assert "cannot be read" in secrets.problems()[""]


def test_refuses_what_is_not_a_directory(tmp_path):
    with pytest.raises(XdsError, match="not a directory"):
        DirectorySecretProvider(tmp_path / "none")
    with pytest.raises(XdsError, match="poll_interval"):
        DirectorySecretProvider(tmp_path, poll_interval=0)


def test_key_material_is_never_shown(root):
    secrets = DirectorySecretProvider(root)
    shown = repr(secrets) + repr(secrets.get_secret("kubernetes://bookinfo-cert")) + repr(secrets.problems())
    assert "secretkeymaterial" not in shown


def test_the_watcher_follows_the_files(root):
    told: queue.Queue[str] = queue.Queue()
    with DirectorySecretProvider(root, poll_interval=0.02) as secrets:
        secrets.subscribe(told.put)
        write(root / "bookinfo-cert" / "ca.crt", OTHER_CERT)
        assert told.get(timeout=30) == "kubernetes://bookinfo-cert-cacert"
    assert secrets.get_secret("kubernetes://bookinfo-cert-cacert") == TlsSecret(trusted_ca=OTHER_CERT)
