"""Fixtures shared by the tests of mesh_ca: identities, CSRs, and the two independent chain verifiers."""

import shutil
import subprocess
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import PolicyBuilder, Store

from mesh_ca import CertificateAuthority
from mesh_model import SpiffeId


@pytest.fixture
def identity():
    return SpiffeId("cluster.local", "default", "reviews")


@pytest.fixture
def workload_key():
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def authority():
    return CertificateAuthority.self_signed(None)


def build_csr(key, *, uris=(), dns=(), common_name=None, critical=False):
    """A PEM CSR for ``key`` asking for ``uris`` and ``dns`` names."""
    names = [x509.UniformResourceIdentifier(uri) for uri in uris] + [x509.DNSName(name) for name in dns]
    subject = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)] if common_name else []
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(subject))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=critical)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


@pytest.fixture
def make_csr(workload_key):
    def make(*, key=None, uris=(), dns=(), common_name=None):
        return build_csr(key or workload_key, uris=uris, dns=dns, common_name=common_name)

    return make


@pytest.fixture
def openssl_verify(tmp_path):
    """Run ``openssl verify`` (strict X.509 checks, TLS client and server purposes) on a leaf-first chain."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is not installed")
    counter = iter(range(1_000_000))

    def verify(chain: Sequence[str], roots: str) -> subprocess.CompletedProcess[str]:
        name = next(counter)
        leaf, untrusted, trusted = (tmp_path / f"{kind}-{name}.pem" for kind in ("leaf", "untrusted", "roots"))
        leaf.write_text(chain[0])
        untrusted.write_text("".join(chain[1:]))
        trusted.write_text(roots)
        results = []
        for purpose in ("sslclient", "sslserver"):
            command = [openssl, "verify", "-x509_strict", "-purpose", purpose, "-CAfile", str(trusted)]
            if len(chain) > 1:
                command += ["-untrusted", str(untrusted)]
            results.append(subprocess.run([*command, str(leaf)], capture_output=True, text=True, timeout=60))
        failed = [result for result in results if result.returncode != 0]
        return failed[0] if failed else results[0]

    return verify


@pytest.fixture
def cryptography_verify():
    """Verify a leaf-first PEM chain with cryptography's client verifier; return the verified chain."""

    def verify(chain: Sequence[str], roots: Sequence[x509.Certificate], *, at=None) -> list[x509.Certificate]:
        certificates = [x509.load_pem_x509_certificate(pem.encode()) for pem in chain]
        verifier = PolicyBuilder().store(Store(list(roots))).time(at or datetime.now(UTC)).build_client_verifier()
        return verifier.verify(certificates[0], certificates[1:]).chain

    return verify
