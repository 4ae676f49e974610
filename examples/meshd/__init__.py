"""meshd: the control plane of a mesh, as istiod: Istio config in, xDS, certificates and debug pages out.

It reads a directory of Istio YAML (its ServiceEntries and WorkloadEntries are services too) and an optional
registry file of services and workloads, serves ADS (and CSDS) to Envoy sidecars, gateways and proxyless
gRPC clients, serves gateway credentials over ADS, runs the CA (self-signed, or plugged in from a
``cacerts`` directory), and answers readiness, Prometheus metrics and debug pages on a port of its own.
Run it as ``meshd`` (see ``meshd --help``) or embed :class:`Meshd` in a program or a test.
"""

from meshd.daemon import ROOT_CERT_FILE, Meshd
from meshd.options import (
    DEFAULT_CA_ADDRESS,
    DEFAULT_DEBUG_ADDRESS,
    DEFAULT_WORKDIR,
    DEFAULT_XDS_ADDRESS,
    MeshdConfigError,
    MeshdError,
    MeshdOptions,
)
from meshd.tokens import TOKEN_AUDIENCE, TOKEN_ISSUER, mint_token

__all__ = [
    "DEFAULT_CA_ADDRESS",
    "DEFAULT_DEBUG_ADDRESS",
    "DEFAULT_WORKDIR",
    "DEFAULT_XDS_ADDRESS",
    "ROOT_CERT_FILE",
    "TOKEN_AUDIENCE",
    "TOKEN_ISSUER",
    "Meshd",
    "MeshdConfigError",
    "MeshdError",
    "MeshdOptions",
    "mint_token",
]
