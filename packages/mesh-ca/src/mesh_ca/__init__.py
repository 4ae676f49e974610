"""A certificate authority for SPIFFE workload identities.

What will live here: CA roots (self-signed or plugged in), CSR signing with the identity taken from the
authenticated caller, the Istio CA gRPC API (istio.v1.auth.IstioCertificateService), rotation, trust
bundles, and the workload-side certificate client. It depends on mesh_model only, never on mesh_xds.

This package is a skeleton at version 0.1.0: it reserves the name and the place in the dependency graph.
"""

from mesh_ca._version import __version__

__all__ = ["__version__"]
