"""TLS of Gateway servers and Sidecar ingress listeners (``ServerTLSSettings`` of ``gateway.proto``)."""

from __future__ import annotations

import enum
from typing import final

import attrs

from mesh_config.networking._checks import quoted_list
from mesh_config.types import boolean, enum_value, optional, repeated, string
from mesh_config.validation import ValidationContext

__all__ = [
    "ServerTLSMode",
    "ServerTLSSettings",
    "TLSCertificate",
    "TLSProtocol",
    "is_valid_cipher_suite",
    "validate_server_tls",
]

VALID_CIPHER_SUITES = frozenset(
    {
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
        "ECDHE-ECDSA-AES128-SHA",
        "ECDHE-RSA-AES128-SHA",
        "ECDHE-ECDSA-AES256-SHA",
        "ECDHE-RSA-AES256-SHA",
        "AES128-GCM-SHA256",
        "AES256-GCM-SHA384",
        "AES128-SHA",
        "AES256-SHA",
        "DES-CBC3-SHA",
    }
)
"""The cipher suites Envoy (BoringSSL) accepts in ``cipherSuites``, by their OpenSSL names."""

_TERMINATING = frozenset({"SIMPLE", "MUTUAL", "OPTIONAL_MUTUAL"})
_MAX_CERTIFICATES = 2


class ServerTLSMode(enum.Enum):
    """``ServerTLSSettings.TLSmode``: how a server handles TLS."""

    PASSTHROUGH = "PASSTHROUGH"
    """Forward the TLS connection as is, routed by SNI."""
    SIMPLE = "SIMPLE"
    """Terminate TLS with a server certificate."""
    MUTUAL = "MUTUAL"
    """Terminate TLS and require a client certificate."""
    AUTO_PASSTHROUGH = "AUTO_PASSTHROUGH"
    """Passthrough routed by the SNI alone (no VirtualService needed)."""
    ISTIO_MUTUAL = "ISTIO_MUTUAL"
    """Mutual TLS with Istio's workload certificates."""
    OPTIONAL_MUTUAL = "OPTIONAL_MUTUAL"
    """Terminate TLS; a client certificate is verified when presented."""


class TLSProtocol(enum.Enum):
    """``ServerTLSSettings.TLSProtocol``: a TLS protocol version."""

    TLS_AUTO = "TLS_AUTO"
    """Envoy's default."""
    TLSV1_0 = "TLSV1_0"
    """TLS 1.0."""
    TLSV1_1 = "TLSV1_1"
    """TLS 1.1."""
    TLSV1_2 = "TLSV1_2"
    """TLS 1.2."""
    TLSV1_3 = "TLSV1_3"
    """TLS 1.3."""


@final
@attrs.frozen
class TLSCertificate:
    """``ServerTLSSettings.TLSCertificate``: one certificate of a server (RSA and ECDSA may both be given)."""

    server_certificate: str = string()
    private_key: str = string()
    ca_certificates: str = string()


@final
@attrs.frozen
class ServerTLSSettings:
    """``ServerTLSSettings``: TLS of a Gateway server or a Sidecar ingress listener (``tls``).

    Certificates come from one source: ``credentialName``, ``credentialNames``,
    ``serverCertificate``/``privateKey`` files, or ``tlsCertificates``.
    """

    https_redirect: bool = boolean()
    mode: ServerTLSMode = enum_value(ServerTLSMode.PASSTHROUGH)
    server_certificate: str = string()
    private_key: str = string()
    ca_certificates: str = string()
    ca_crl: str = string()
    credential_name: str = string()
    credential_names: tuple[str, ...] = repeated()
    ca_cert_credential_name: str = string()
    tls_certificates: tuple[TLSCertificate, ...] = repeated()
    subject_alt_names: tuple[str, ...] = repeated()
    verify_certificate_spki: tuple[str, ...] = repeated()
    verify_certificate_hash: tuple[str, ...] = repeated()
    min_protocol_version: TLSProtocol = enum_value(TLSProtocol.TLS_AUTO)
    max_protocol_version: TLSProtocol = enum_value(TLSProtocol.TLS_AUTO)
    cipher_suites: tuple[str, ...] = repeated()
    insecure_skip_verify: bool | None = optional()
    ecdh_curves: tuple[str, ...] = repeated()


def is_valid_cipher_suite(name: str) -> bool:
    """Istio's ``IsValidCipherSuite``: a known suite, ``ALL``, empty, or an expression (``-RC4``, ``+AES``)."""
    if name in ("", "ALL"):
        return True
    if not name[0].isalnum():
        return True
    return name in VALID_CIPHER_SUITES


def validate_server_tls(tls: ServerTLSSettings | None, ctx: ValidationContext) -> None:
    """The CRD rules and Istio's ``validateTLSOptions``, with ``ctx`` at the ``tls`` field."""
    if tls is None:
        return
    _check_schema(tls, ctx)
    if tls.min_protocol_version in (TLSProtocol.TLSV1_0, TLSProtocol.TLSV1_1) and not tls.cipher_suites:
        ctx.warning(
            f"TLS version below TLSV1_2 ({tls.min_protocol_version.value}) require setting compatible ciphers as by "
            "default they no longer include compatible ciphers.",
            "minProtocolVersion",
        )
    invalid = {suite for suite in tls.cipher_suites if not is_valid_cipher_suite(suite)}
    duplicates = {suite for index, suite in enumerate(tls.cipher_suites) if suite in tls.cipher_suites[:index]}
    if invalid:
        ctx.warning(f"ignoring invalid cipher suites: {quoted_list(invalid)}", "cipherSuites")
    if duplicates - invalid:
        ctx.warning(f"ignoring duplicate cipher suites: {quoted_list(duplicates - invalid)}", "cipherSuites")
    mode = tls.mode
    if mode is ServerTLSMode.ISTIO_MUTUAL:
        for present, field, what in (
            (tls.server_certificate, "serverCertificate", "server certificate"),
            (tls.private_key, "privateKey", "private key"),
            (tls.ca_certificates, "caCertificates", "CA bundle"),
            (tls.tls_certificates, "tlsCertificates", "tlsCertificates"),
            (tls.credential_name, "credentialName", "credentialName"),
            (tls.credential_names, "credentialNames", "credentialNames"),
        ):
            if present:
                ctx.error(f"ISTIO_MUTUAL TLS cannot have associated {what}", field)
        return
    if mode in (ServerTLSMode.PASSTHROUGH, ServerTLSMode.AUTO_PASSTHROUGH) and (
        tls.ca_crl
        or tls.server_certificate
        or tls.private_key
        or tls.ca_certificates
        or tls.tls_certificates
        or tls.credential_name
        or tls.credential_names
    ):
        ctx.warning(f"{mode.value} mode does not use certificates, they will be ignored")
    sources = [
        bool(tls.server_certificate and tls.private_key),
        bool(tls.credential_name),
        bool(tls.credential_names),
        bool(tls.tls_certificates),
    ]
    if sum(sources) > 1:
        ctx.error(
            "only one of credential_name, credential_names, server_certificate/private_key, tls_certificates "
            "should be specified"
        )
    terminating = mode.value in _TERMINATING
    if terminating and (tls.credential_name or tls.credential_names):
        return  # The certificates come from the credential.
    if terminating:
        prefix = "SIMPLE TLS" if mode is ServerTLSMode.SIMPLE else "MUTUAL TLS"
        if mode is not ServerTLSMode.SIMPLE and not tls.ca_certificates:
            ctx.error(f"{prefix} requires a client CA bundle", "caCertificates")
        if tls.tls_certificates:
            for index, certificate in enumerate(tls.tls_certificates):
                _check_certificate(ctx.at("tlsCertificates", index), certificate, prefix)
        else:
            _check_certificate(
                ctx, TLSCertificate(server_certificate=tls.server_certificate, private_key=tls.private_key), prefix
            )
    if tls.ca_crl:
        if tls.credential_name:
            ctx.error("CRL is not supported with credentialName. CRL has to be specified in the credential", "caCrl")
        if mode is ServerTLSMode.SIMPLE:
            ctx.error("CRL is not supported with SIMPLE TLS", "caCrl")


def _check_certificate(ctx: ValidationContext, certificate: TLSCertificate, prefix: str) -> None:
    if not certificate.server_certificate:
        ctx.error(f"{prefix} requires a server certificate", "serverCertificate")
    if not certificate.private_key:
        ctx.error(f"{prefix} requires a private key", "privateKey")


def _check_schema(tls: ServerTLSSettings, ctx: ValidationContext) -> None:
    """The CRD's list bounds and its three rules on the certificate sources."""
    for field, values in (("credentialNames", tls.credential_names), ("tlsCertificates", tls.tls_certificates)):
        if ctx.has(field) and not values:
            ctx.min_items(1, field)
        elif len(values) > _MAX_CERTIFICATES:
            ctx.max_items(_MAX_CERTIFICATES, field)
    has_names, has_certificates = ctx.has("credentialNames"), ctx.has("tlsCertificates")
    if has_names and has_certificates:
        ctx.rule("only one of credentialNames or tlsCertificates can be set")
    if ctx.has("credentialName") and has_names:
        ctx.rule("only one of credentialName or credentialNames can be set")
    if has_names and has_certificates:
        # The CRD's third rule repeats the first under another message; Kubernetes reports both.
        ctx.rule("only one of credentialName or tlsCertificates can be set")
