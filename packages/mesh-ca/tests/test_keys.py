import os
import stat

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from mesh_ca import (
    CaError,
    KeyAlgorithm,
    KeyFileError,
    UnsupportedKeyError,
    generate_private_key,
    load_private_key,
    write_private_key,
)


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_the_default_algorithm_is_ecdsa_p256():
    key = generate_private_key()
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.curve.name == "secp256r1"


@pytest.mark.parametrize(
    ("algorithm", "kind", "size"),
    [
        (KeyAlgorithm.EC_P256, ec.EllipticCurvePrivateKey, 256),
        (KeyAlgorithm.EC_P384, ec.EllipticCurvePrivateKey, 384),
        (KeyAlgorithm.RSA_2048, rsa.RSAPrivateKey, 2048),
        (KeyAlgorithm.RSA_3072, rsa.RSAPrivateKey, 3072),
    ],
)
def test_generated_keys_have_the_algorithm_asked_for_and_survive_a_file(tmp_path, algorithm, kind, size):
    key = generate_private_key(algorithm)
    assert isinstance(key, kind)
    assert key.key_size == size
    assert KeyAlgorithm.of(key) is algorithm
    assert KeyAlgorithm.of(key.public_key()) is algorithm
    write_private_key(tmp_path / "key.pem", key)
    loaded = load_private_key(tmp_path / "key.pem")
    assert loaded.public_key() == key.public_key()


def test_generate_refuses_what_is_not_an_algorithm():
    with pytest.raises(UnsupportedKeyError, match="KeyAlgorithm"):
        generate_private_key("EC_P256")  # type: ignore[arg-type]


def test_key_files_are_created_readable_by_their_owner_only_whatever_the_umask(tmp_path):
    previous = os.umask(0)
    try:
        write_private_key(tmp_path / "ca-key.pem", generate_private_key())
    finally:
        os.umask(previous)
    assert _mode(tmp_path / "ca-key.pem") == 0o600
    assert list(tmp_path.iterdir()) == [tmp_path / "ca-key.pem"], "no temporary file is left behind"


def test_writing_replaces_an_existing_open_file_with_a_private_one(tmp_path):
    path = tmp_path / "ca-key.pem"
    path.write_text("old content")
    path.chmod(0o644)
    key = generate_private_key()
    write_private_key(path, key)
    assert _mode(path) == 0o600
    assert path.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert load_private_key(path).public_key() == key.public_key()


def test_writing_into_a_missing_directory_is_a_key_file_error(tmp_path):
    with pytest.raises(KeyFileError, match="cannot write private key file"):
        write_private_key(tmp_path / "missing" / "key.pem", generate_private_key())


def test_writing_an_unsupported_key_is_refused(tmp_path):
    with pytest.raises(UnsupportedKeyError, match="Ed25519"):
        write_private_key(tmp_path / "key.pem", ed25519.Ed25519PrivateKey.generate())  # type: ignore[arg-type]
    assert not (tmp_path / "key.pem").exists()


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o620, 0o666])
def test_key_files_open_to_group_or_others_are_refused(tmp_path, mode):
    path = tmp_path / "ca-key.pem"
    write_private_key(path, generate_private_key())
    path.chmod(mode)
    with pytest.raises(KeyFileError) as caught:
        load_private_key(path)
    message = str(caught.value)
    assert f"{mode:04o}" in message
    assert f"chmod 600 {path}" in message


def test_a_read_only_owner_file_is_accepted(tmp_path):
    path = tmp_path / "ca-key.pem"
    key = generate_private_key()
    write_private_key(path, key)
    path.chmod(0o400)
    assert load_private_key(path).public_key() == key.public_key()


def _write(path, data: bytes, mode=0o600):
    path.write_bytes(data)
    path.chmod(mode)
    return path


def test_traditional_sec1_and_pkcs1_files_are_read(tmp_path):
    ec_key = generate_private_key(KeyAlgorithm.EC_P256)
    sec1 = ec_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    assert sec1.startswith(b"-----BEGIN EC PRIVATE KEY-----")
    assert load_private_key(_write(tmp_path / "ec.pem", sec1)).public_key() == ec_key.public_key()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "does not hold a PEM private key"),
        (b"not a key at all", "does not hold a PEM private key"),
        (b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "does not hold a PEM private key"),
    ],
)
def test_files_without_a_key_are_refused(tmp_path, content, expected):
    with pytest.raises(KeyFileError, match=expected):
        load_private_key(_write(tmp_path / "key.pem", content))


def test_encrypted_keys_are_refused_with_the_reason(tmp_path):
    data = generate_private_key().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    with pytest.raises(KeyFileError, match="encrypted"):
        load_private_key(_write(tmp_path / "key.pem", data))


@pytest.mark.parametrize(
    ("make_key", "expected"),
    [
        (ed25519.Ed25519PrivateKey.generate, "Ed25519"),
        (lambda: ec.generate_private_key(ec.SECP521R1()), "secp521r1"),
        (lambda: rsa.generate_private_key(public_exponent=65537, key_size=1024), "1024 bits"),
    ],
)
def test_keys_of_unsupported_types_are_refused(tmp_path, make_key, expected):
    data = make_key().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(KeyFileError, match=expected):
        load_private_key(_write(tmp_path / "key.pem", data))


def test_missing_and_unreadable_files_are_key_file_errors(tmp_path):
    with pytest.raises(KeyFileError, match="does not exist"):
        load_private_key(tmp_path / "absent.pem")
    with pytest.raises(KeyFileError, match="cannot read"):
        load_private_key(tmp_path)
    assert issubclass(KeyFileError, CaError)


def test_unsupported_public_keys_are_named():
    with pytest.raises(UnsupportedKeyError, match="secp521r1"):
        KeyAlgorithm.of(ec.generate_private_key(ec.SECP521R1()).public_key())  # type: ignore[arg-type]
