"""The server side of Istio mutual TLS (private): what an inbound filter chain presents and requires.

A sidecar's inbound TLS chains present the workload certificate (SDS secret ``default``) and require a client
certificate that chains to the mesh roots (SDS secret ``ROOTCA``), both fetched from the node agent through
the bootstrap cluster ``sds-grpc`` (ISTIO.md 2.8). The peer's SPIFFE id (its URI SAN) is what RBAC's
``authenticated.principal_name`` matches.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2
from envoy.type.matcher.v3 import string_pb2
from google.protobuf import wrappers_pb2

from mesh_config import MeshConfig
from mesh_xds.generate._cluster_tls import sds_secret_config
from mesh_xds.generate.names import SDS_DEFAULT, SDS_ROOT

__all__ = [
    "ALPN_ISTIO_MTLS",
    "TLS_TRANSPORT_SOCKET",
    "istio_mutual_server_context",
    "sds_secret",
    "transport_socket",
]

TLS_TRANSPORT_SOCKET = "envoy.transport_sockets.tls"

ALPN_ISTIO_MTLS = ("istio", "istio-peer-exchange", "istio-http/1.0", "istio-http/1.1", "istio-h2")
"""The ALPN values an Istio client offers over mutual TLS; PERMISSIVE chains tell mesh traffic by them."""

_ALPN_HTTP = ("h2", "http/1.1")
_ALPN_TCP = ("istio-peer-exchange", "h2", "http/1.1")

_CIPHER_SUITES = (
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "AES256-GCM-SHA384",
    "AES128-GCM-SHA256",
)
"""Istio's default cipher suites for sidecar mutual TLS (TLS 1.2; TLS 1.3 suites are not configurable)."""

_TLS_VERSIONS = {
    "TLS_AUTO": common_pb2.TlsParameters.TLSv1_2,
    "TLSV1_2": common_pb2.TlsParameters.TLSv1_2,
    "TLSV1_3": common_pb2.TlsParameters.TLSv1_3,
}


def sds_secret(name: str) -> Any:
    """An SDS secret fetched from the node agent through the bootstrap cluster ``sds-grpc``."""
    return sds_secret_config(name)


def istio_mutual_server_context(mesh: MeshConfig, *, http: bool) -> Any:
    """The DownstreamTlsContext of an inbound mutual TLS chain.

    It presents ``default``, requires a client certificate validated against ``ROOTCA`` and, when MeshConfig
    names trust domain aliases, one whose SPIFFE id is in the trust domain or an alias. HTTP chains offer
    ``h2`` and ``http/1.1``; TCP chains also ``istio-peer-exchange``.

    Args:
        mesh: the mesh settings (trust domain and aliases, ``meshMTLS`` version and ciphers).
        http: whether the chain carries HTTP.
    """
    settings = mesh.mesh_mtls
    version = _TLS_VERSIONS.get(settings.min_protocol_version.value if settings else "TLS_AUTO")
    params = common_pb2.TlsParameters(
        tls_minimum_protocol_version=version,
        cipher_suites=list(settings.cipher_suites if settings and settings.cipher_suites else _CIPHER_SUITES),
        ecdh_curves=list(settings.ecdh_curves if settings else ()),
    )
    validation = common_pb2.CertificateValidationContext(
        match_typed_subject_alt_names=_trust_domain_sans(mesh.trust_domain, mesh.trust_domain_aliases)
    )
    common = tls_pb2.CommonTlsContext(
        tls_params=params,
        alpn_protocols=list(_ALPN_HTTP if http else _ALPN_TCP),
        tls_certificate_sds_secret_configs=[sds_secret_config(SDS_DEFAULT)],
        combined_validation_context=tls_pb2.CommonTlsContext.CombinedCertificateValidationContext(
            default_validation_context=validation,
            validation_context_sds_secret_config=sds_secret_config(SDS_ROOT),
        ),
    )
    return tls_pb2.DownstreamTlsContext(
        common_tls_context=common, require_client_certificate=wrappers_pb2.BoolValue(value=True)
    )


def transport_socket(context: Any) -> Any:
    """A TLS transport socket holding a (Downstream or Upstream) TLS context."""
    socket = base_pb2.TransportSocket(name=TLS_TRANSPORT_SOCKET)
    socket.typed_config.Pack(context)
    return socket


def _trust_domain_sans(trust_domain: str, aliases: Sequence[str]) -> list[Any]:
    if not aliases:
        return []
    domains = list(dict.fromkeys([trust_domain or "cluster.local", *aliases]))
    return [
        common_pb2.SubjectAltNameMatcher(
            san_type=common_pb2.SubjectAltNameMatcher.URI,
            matcher=string_pb2.StringMatcher(prefix=f"spiffe://{domain}/"),
        )
        for domain in domains
    ]
