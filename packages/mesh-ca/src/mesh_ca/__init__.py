"""A certificate authority for SPIFFE workload identities.

The CA signs workload certificates (X.509-SVIDs) for identities its caller has authenticated, never for
names a CSR asks for. It signs with a self-signed root it creates and keeps, or with an intermediate plugged
in from Istio's ``cacerts`` directory layout, and it keeps the trust bundle workloads need, through root
rotations. :class:`CaServer` serves it as Istio's CA API (``istio.v1.auth.IstioCertificateService``) to
callers its authenticators accept, and :class:`CertificateClient` is the node agent's side: it keeps a
workload's key and certificate fresh and hands them to an SDS server. It depends on mesh_model only, never
on mesh_xds.

Example::

    from mesh_ca import CertificateAuthority
    from mesh_model import SpiffeId

    authority = CertificateAuthority.self_signed(None)  # in memory; pass a directory to keep the root
    identity = SpiffeId("cluster.local", "default", "reviews")
    issued = authority.sign_csr(csr_pem, [identity])
    assert authority.trust_bundle().verify(issued.chain_pem) == (identity,)
"""

from mesh_ca._version import __version__
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
from mesh_ca.authority import CertificateAuthority, TrustBundleHandler
from mesh_ca.cacerts import CaCerts, load_cacerts, write_cacerts
from mesh_ca.client import (
    CertificateClient,
    CertificateClientError,
    RenewalPolicy,
    WorkloadCertificate,
    WorkloadSecret,
)
from mesh_ca.errors import (
    CaConfigError,
    CaError,
    CaNotReadyError,
    CsrError,
    ErrorKind,
    IdentityError,
    IdentityMismatchError,
    KeyFileError,
    TrustBundleError,
    TtlError,
    UnsupportedKeyError,
    VerificationError,
)
from mesh_ca.issued import IssuedCertificate
from mesh_ca.keys import (
    KeyAlgorithm,
    PrivateKey,
    PublicKey,
    generate_private_key,
    load_private_key,
    write_private_key,
)
from mesh_ca.policy import SigningPolicy
from mesh_ca.server import CaServer, status_code
from mesh_ca.trust_bundle import TrustBundle, fingerprint

__all__ = [
    "AuthSource",
    "AuthenticationError",
    "Authenticator",
    "CaCerts",
    "CaConfigError",
    "CaError",
    "CaNotReadyError",
    "CaServer",
    "Caller",
    "CallerCredentials",
    "CertificateAuthenticator",
    "CertificateAuthority",
    "CertificateClient",
    "CertificateClientError",
    "CsrError",
    "ErrorKind",
    "IdentityError",
    "IdentityMismatchError",
    "ImpersonationAllowList",
    "ImpersonationError",
    "IssuedCertificate",
    "JwtAuthenticator",
    "JwtIssuer",
    "KeyAlgorithm",
    "KeyFileError",
    "PrivateKey",
    "PublicKey",
    "RenewalPolicy",
    "SigningPolicy",
    "TrustBundle",
    "TrustBundleError",
    "TrustBundleHandler",
    "TtlError",
    "UnsupportedKeyError",
    "VerificationError",
    "WorkloadCertificate",
    "WorkloadSecret",
    "__version__",
    "authenticate",
    "fingerprint",
    "generate_private_key",
    "load_cacerts",
    "load_private_key",
    "status_code",
    "write_cacerts",
    "write_private_key",
]
