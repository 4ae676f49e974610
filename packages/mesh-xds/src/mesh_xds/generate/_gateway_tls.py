"""The TLS a gateway server terminates with (private): Istio's ``BuildListenerTLSContext`` for Gateways.

Where the certificates come from:

* ``ISTIO_MUTUAL``: the gateway's workload certificate (SDS ``default``) and the mesh roots (SDS ``ROOTCA``),
  from the node agent through the bootstrap cluster ``sds-grpc``; a client certificate is required.
* ``credentialName`` (or ``credentialNames``): SDS secrets ``kubernetes://<name>`` served by the control plane
  over ADS; with ``MUTUAL`` or ``OPTIONAL_MUTUAL`` the client CA is ``kubernetes://<name>-cacert`` (or
  ``caCertCredentialName``).
* otherwise the files ``serverCertificate``/``privateKey`` (or ``tlsCertificates``) and ``caCertificates``,
  read by Envoy itself.

``SIMPLE``, ``MUTUAL`` and ``OPTIONAL_MUTUAL`` servers also get MeshConfig ``tlsDefaults``, then their own
``minProtocolVersion``, ``maxProtocolVersion``, ``cipherSuites`` (invalid and repeated names dropped) and
``ecdhCurves``. HTTP servers offer ALPN ``h2`` and ``http/1.1``; a TCP server terminating ``ISTIO_MUTUAL``
also offers ``istio-peer-exchange``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from envoy.config.core.v3 import base_pb2, config_source_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2, tls_pb2
from envoy.type.matcher.v3 import string_pb2
from google.protobuf import wrappers_pb2

from mesh_config import MeshConfig
from mesh_config.networking.server_tls import (
    ServerTLSMode,
    ServerTLSSettings,
    TLSCertificate,
    TLSProtocol,
    is_valid_cipher_suite,
)
from mesh_xds.generate import names
from mesh_xds.generate._cluster_tls import sds_secret_config as sds_secret

__all__ = ["ALPN_HTTP", "ALPN_TCP_ISTIO_MUTUAL", "credential_source", "gateway_tls_context"]

ALPN_HTTP: Final = ("h2", "http/1.1")
"""The ALPN a terminated HTTPS (or TLS) server offers."""
ALPN_TCP_ISTIO_MUTUAL: Final = ("istio-peer-exchange", "h2", "http/1.1")
"""The ALPN of a TCP server terminating Istio mutual TLS."""

_VERSIONS: Final = {
    "TLS_AUTO": common_pb2.TlsParameters.TLS_AUTO,
    "TLSV1_0": common_pb2.TlsParameters.TLSv1_0,
    "TLSV1_1": common_pb2.TlsParameters.TLSv1_1,
    "TLSV1_2": common_pb2.TlsParameters.TLSv1_2,
    "TLSV1_3": common_pb2.TlsParameters.TLSv1_3,
}
_TERMINATING_WITH_SETTINGS = frozenset({ServerTLSMode.SIMPLE, ServerTLSMode.MUTUAL, ServerTLSMode.OPTIONAL_MUTUAL})
_VALIDATING = frozenset({ServerTLSMode.MUTUAL, ServerTLSMode.ISTIO_MUTUAL, ServerTLSMode.OPTIONAL_MUTUAL})


def credential_source() -> Any:
    """The config source of gateway credentials: the control plane's ADS stream.

    Istio leaves ``initial_fetch_timeout`` at Envoy's default here, so that a missing Secret does not hold
    the whole listener back.
    """
    return config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(), resource_api_version=config_source_pb2.V3
    )


def _credential(name: str) -> Any:
    return secret_pb2.SdsSecretConfig(name=name, sds_config=credential_source())


def _exact(values: Iterable[str]) -> list[Any]:
    return [string_pb2.StringMatcher(exact=value) for value in values]


def _file(path: str) -> Any:
    return base_pb2.DataSource(filename=path)


def gateway_tls_context(tls: ServerTLSSettings, mesh: MeshConfig, *, http: bool) -> Any:
    """The DownstreamTlsContext of a server that terminates TLS (any mode but the passthrough ones).

    Args:
        tls: the server's TLS settings.
        mesh: the mesh settings (``tlsDefaults``).
        http: the server is served by an HTTP connection manager (HTTPS), rather than proxied as TCP.
    """
    mode = tls.mode
    alpn = ALPN_TCP_ISTIO_MUTUAL if mode is ServerTLSMode.ISTIO_MUTUAL and not http else ALPN_HTTP
    common = tls_pb2.CommonTlsContext(alpn_protocols=list(alpn))
    require = mode in (ServerTLSMode.MUTUAL, ServerTLSMode.ISTIO_MUTUAL)
    validate = mode in _VALIDATING
    if mode is ServerTLSMode.ISTIO_MUTUAL:
        _istio_certificates(common, tls, validate=validate)
    elif tls.credential_name or tls.credential_names:
        _credential_certificates(common, tls, validate=validate)
    else:
        _file_certificates(common, tls, validate=validate)
    if mode in _TERMINATING_WITH_SETTINGS:
        _apply_parameters(common, tls, mesh)
    return tls_pb2.DownstreamTlsContext(
        common_tls_context=common, require_client_certificate=wrappers_pb2.BoolValue(value=require)
    )


def _istio_certificates(common: Any, tls: ServerTLSSettings, *, validate: bool) -> None:
    common.tls_certificate_sds_secret_configs.append(sds_secret(names.SDS_DEFAULT))
    if validate:
        combined = common.combined_validation_context
        combined.default_validation_context.match_subject_alt_names.extend(_exact(tls.subject_alt_names))
        if tls.ca_crl:
            combined.default_validation_context.crl.CopyFrom(_file(tls.ca_crl))
        combined.validation_context_sds_secret_config.CopyFrom(sds_secret(names.SDS_ROOT))


def _credential_certificates(common: Any, tls: ServerTLSSettings, *, validate: bool) -> None:
    credentials = list(tls.credential_names) or [tls.credential_name]
    for credential in credentials:
        common.tls_certificate_sds_secret_configs.append(_credential(names.credential_secret(credential)))
    if validate:
        ca = (
            names.credential_secret(tls.ca_cert_credential_name)
            if tls.ca_cert_credential_name
            else names.credential_ca_secret(credentials[0])
        )
        combined = common.combined_validation_context
        default = combined.default_validation_context
        default.match_subject_alt_names.extend(_exact(tls.subject_alt_names))
        default.verify_certificate_spki.extend(tls.verify_certificate_spki)
        default.verify_certificate_hash.extend(tls.verify_certificate_hash)
        combined.validation_context_sds_secret_config.CopyFrom(_credential(ca))
    elif tls.subject_alt_names:
        common.validation_context.match_subject_alt_names.extend(_exact(tls.subject_alt_names))


def _file_certificates(common: Any, tls: ServerTLSSettings, *, validate: bool) -> None:
    certificates = tls.tls_certificates or (
        TLSCertificate(server_certificate=tls.server_certificate, private_key=tls.private_key),
    )
    for certificate in certificates:
        if certificate.server_certificate and certificate.private_key:
            common.tls_certificates.append(
                common_pb2.TlsCertificate(
                    certificate_chain=_file(certificate.server_certificate),
                    private_key=_file(certificate.private_key),
                )
            )
    ca = tls.ca_certificates or next((c.ca_certificates for c in certificates if c.ca_certificates), "")
    if validate and ca:
        validation = common.validation_context
        validation.trusted_ca.CopyFrom(_file(ca))
        validation.match_subject_alt_names.extend(_exact(tls.subject_alt_names))
        if tls.ca_crl:
            validation.crl.CopyFrom(_file(tls.ca_crl))


def _cipher_suites(suites: Iterable[str]) -> list[str]:
    """Istio's ``FilterCipherSuites``: known names (or expressions), each once."""
    return list(dict.fromkeys(suite for suite in suites if suite and is_valid_cipher_suite(suite)))


def _apply_parameters(common: Any, tls: ServerTLSSettings, mesh: MeshConfig) -> None:
    params = common_pb2.TlsParameters()
    defaults = mesh.tls_defaults
    if defaults is not None:
        params.ecdh_curves.extend(defaults.ecdh_curves)
        params.cipher_suites.extend(defaults.cipher_suites)
        params.tls_minimum_protocol_version = _VERSIONS[defaults.min_protocol_version.value]
    if tls.min_protocol_version is not TLSProtocol.TLS_AUTO:
        params.tls_minimum_protocol_version = _VERSIONS[tls.min_protocol_version.value]
    if tls.max_protocol_version is not TLSProtocol.TLS_AUTO:
        params.tls_maximum_protocol_version = _VERSIONS[tls.max_protocol_version.value]
    suites = _cipher_suites(tls.cipher_suites)
    if suites:
        del params.cipher_suites[:]
        params.cipher_suites.extend(suites)
    if tls.ecdh_curves:
        del params.ecdh_curves[:]
        params.ecdh_curves.extend(tls.ecdh_curves)
    if params.ByteSize():
        common.tls_params.CopyFrom(params)
