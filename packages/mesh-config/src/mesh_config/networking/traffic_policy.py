"""Traffic policies of a DestinationRule (``TrafficPolicy`` of ``destination_rule.proto``) and their rules."""

from __future__ import annotations

import enum
from typing import final

import attrs

from mesh_config.common import PortSelector
from mesh_config.networking._checks import cel_duration, check_port_number, is_ip, out_of_range, too_many, written
from mesh_config.networking.connection_pool import ConnectionPoolSettings, validate_connection_pool
from mesh_config.networking.load_balancer import LoadBalancerSettings, validate_load_balancer
from mesh_config.rules import check_fqdn
from mesh_config.types import Duration, Int32, UInt32, boolean, enum_value, integer, optional, repeated, string
from mesh_config.validation import ValidationContext

__all__ = [
    "ClientTLSMode",
    "ClientTLSSettings",
    "OutlierDetection",
    "PortTrafficPolicy",
    "ProxyProtocol",
    "ProxyProtocolVersion",
    "RetryBudget",
    "TrafficPolicy",
    "TunnelSettings",
    "validate_client_tls",
    "validate_traffic_policy",
]

_CONFIGMAP = "configmap://"
_POLICY_FIELDS = (
    "loadBalancer",
    "connectionPool",
    "outlierDetection",
    "tls",
    "portLevelSettings",
    "tunnel",
    "proxyProtocol",
    "retryBudget",
)
_MAX_PORT_LEVEL_SETTINGS = 4096


@final
@attrs.frozen
class OutlierDetection:
    """Circuit breaking: ejects hosts that keep failing (``outlierDetection``)."""

    consecutive_errors: Int32 = integer()
    split_external_local_origin_errors: bool = boolean()
    consecutive_local_origin_failures: UInt32 | None = optional()
    consecutive_gateway_errors: UInt32 | None = optional()
    consecutive_5xx_errors: UInt32 | None = optional()
    interval: Duration | None = optional()
    base_ejection_time: Duration | None = optional()
    max_ejection_percent: Int32 = integer()
    min_health_percent: Int32 = integer()
    outlier_detection_http_error_codes: tuple[UInt32, ...] = repeated()


class ClientTLSMode(enum.Enum):
    """``ClientTLSSettings.TLSmode``: how connections to the upstream are secured."""

    DISABLE = "DISABLE"
    """Plain text."""
    SIMPLE = "SIMPLE"
    """TLS to the upstream."""
    MUTUAL = "MUTUAL"
    """Mutual TLS with a client certificate given here."""
    ISTIO_MUTUAL = "ISTIO_MUTUAL"
    """Mutual TLS with Istio's workload certificates."""


@final
@attrs.frozen
class ClientTLSSettings:
    """``ClientTLSSettings``: TLS for connections to the upstream (``tls``).

    Attributes:
        mode: the TLS mode.
        client_certificate: client certificate file (MUTUAL without ``credentialName``).
        private_key: the client's private key file.
        ca_certificates: CA bundle file to verify the server's certificate.
        credential_name: a Secret (or ``configmap://``) holding the certificates, instead of files.
        subject_alt_names: names the server certificate must carry.
        sni: the SNI to present.
        insecure_skip_verify: do not verify the server's certificate.
        ca_crl: certificate revocation list file.
    """

    mode: ClientTLSMode = enum_value(ClientTLSMode.DISABLE)
    client_certificate: str = string()
    private_key: str = string()
    ca_certificates: str = string()
    credential_name: str = string()
    subject_alt_names: tuple[str, ...] = repeated()
    sni: str = string()
    insecure_skip_verify: bool | None = optional()
    ca_crl: str = string()


@final
@attrs.frozen
class PortTrafficPolicy:
    """``TrafficPolicy.PortTrafficPolicy``: policies for one port of the destination."""

    port: PortSelector | None = optional()
    load_balancer: LoadBalancerSettings | None = optional()
    connection_pool: ConnectionPoolSettings | None = optional()
    outlier_detection: OutlierDetection | None = optional()
    tls: ClientTLSSettings | None = optional()


@final
@attrs.frozen
class TunnelSettings:
    """``TrafficPolicy.TunnelSettings``: tunnel TCP through an HTTP proxy (CONNECT or POST)."""

    protocol: str = string()
    target_host: str = string(required=True)
    target_port: UInt32 = integer(required=True)


class ProxyProtocolVersion(enum.Enum):
    """``TrafficPolicy.ProxyProtocol.VERSION``."""

    V1 = "V1"
    """The human-readable PROXY protocol, version 1."""
    V2 = "V2"
    """The binary PROXY protocol, version 2."""


@final
@attrs.frozen
class ProxyProtocol:
    """``TrafficPolicy.ProxyProtocol``: send a PROXY protocol header upstream."""

    version: ProxyProtocolVersion = enum_value(ProxyProtocolVersion.V1)


@final
@attrs.frozen
class RetryBudget:
    """``TrafficPolicy.RetryBudget``: a cap on concurrent retries relative to active requests."""

    percent: float | None = optional()
    min_retry_concurrency: UInt32 = integer()
    budget_interval: Duration | None = optional()


@final
@attrs.frozen
class TrafficPolicy:
    """Policies for traffic to a destination (``trafficPolicy``).

    Attributes:
        load_balancer: the load-balancing algorithm.
        connection_pool: connection limits.
        outlier_detection: ejection of failing hosts.
        tls: TLS to the upstream.
        port_level_settings: overrides per port.
        tunnel: tunnelling through an HTTP proxy.
        proxy_protocol: a PROXY protocol header upstream.
        retry_budget: a cap on concurrent retries.
    """

    load_balancer: LoadBalancerSettings | None = optional()
    connection_pool: ConnectionPoolSettings | None = optional()
    outlier_detection: OutlierDetection | None = optional()
    tls: ClientTLSSettings | None = optional()
    port_level_settings: tuple[PortTrafficPolicy, ...] = repeated()
    tunnel: TunnelSettings | None = optional()
    proxy_protocol: ProxyProtocol | None = optional()
    retry_budget: RetryBudget | None = optional()


def validate_traffic_policy(policy: TrafficPolicy | None, ctx: ValidationContext) -> None:
    """The CRD rules and Istio's ``validateTrafficPolicy``, with ``ctx`` at the ``trafficPolicy`` field."""
    if policy is None:
        return
    if (
        policy.load_balancer is None
        and policy.connection_pool is None
        and policy.outlier_detection is None
        and policy.tls is None
        and not policy.port_level_settings
        and policy.tunnel is None
        and policy.proxy_protocol is None
        and policy.retry_budget is None
    ):
        if not written(ctx, *_POLICY_FIELDS):
            ctx.error("traffic policy must have at least one field")
        return
    if policy.tunnel is not None and policy.proxy_protocol is not None:
        ctx.error("tunnel and proxyProtocol must not be set together")
    _check_outlier(policy.outlier_detection, ctx.at("outlierDetection"))
    validate_connection_pool(policy.connection_pool, ctx.at("connectionPool"))
    has_outlier = policy.outlier_detection is not None
    validate_load_balancer(policy.load_balancer, ctx.at("loadBalancer"), has_outlier=has_outlier)
    validate_client_tls(policy.tls, ctx.at("tls"))
    if len(policy.port_level_settings) > _MAX_PORT_LEVEL_SETTINGS:
        too_many(ctx, len(policy.port_level_settings), _MAX_PORT_LEVEL_SETTINGS, "portLevelSettings")
    for index, port_policy in enumerate(policy.port_level_settings):
        _check_port_policy(port_policy, ctx.at("portLevelSettings", index))
    _check_tunnel(policy.tunnel, ctx.at("tunnel"))
    if (budget := policy.retry_budget) is not None and budget.percent is not None:
        if budget.percent < 0:
            out_of_range(ctx, budget.percent, "should be greater than or equal to 0", "retryBudget", "percent")
        elif budget.percent > 100:
            out_of_range(ctx, budget.percent, "should be less than or equal to 100", "retryBudget", "percent")


def _check_port_policy(policy: PortTrafficPolicy, ctx: ValidationContext) -> None:
    if policy.port is None:
        ctx.error("portTrafficPolicy must have valid port", "port")
    fields = (policy.outlier_detection, policy.connection_pool, policy.load_balancer, policy.tls)
    if all(field is None for field in fields):
        if not written(ctx, *_POLICY_FIELDS[:4]):
            ctx.error("port traffic policy must have at least one field")
        return
    _check_outlier(policy.outlier_detection, ctx.at("outlierDetection"))
    validate_connection_pool(policy.connection_pool, ctx.at("connectionPool"))
    has_outlier = policy.outlier_detection is not None
    validate_load_balancer(policy.load_balancer, ctx.at("loadBalancer"), has_outlier=has_outlier)
    validate_client_tls(policy.tls, ctx.at("tls"))


def _check_outlier(outlier: OutlierDetection | None, ctx: ValidationContext) -> None:
    if outlier is None:
        return
    cel_duration(ctx, outlier.base_ejection_time, "baseEjectionTime")
    cel_duration(ctx, outlier.interval, "interval")
    if outlier.consecutive_errors:
        ctx.warning(
            "outlier detection consecutive errors is deprecated, use consecutiveGatewayErrors or "
            "consecutive5xxErrors instead",
            "consecutiveErrors",
        )
    if not outlier.split_external_local_origin_errors and (outlier.consecutive_local_origin_failures or 0) > 0:
        ctx.error(
            "outlier detection consecutive local origin failures is specified, but split external local origin "
            "errors is set to false",
            "consecutiveLocalOriginFailures",
        )
    percents = (("maxEjectionPercent", outlier.max_ejection_percent), ("minHealthPercent", outlier.min_health_percent))
    for field, value in percents:
        if not 0 <= value <= 100:
            ctx.error(f"percentage {value} is not in range 0..100", field)
    for index, code in enumerate(outlier.outlier_detection_http_error_codes):
        if code < 100:
            out_of_range(ctx, code, "should be greater than or equal to 100", "outlierDetectionHttpErrorCodes", index)
        elif code > 599:
            out_of_range(ctx, code, "should be less than or equal to 599", "outlierDetectionHttpErrorCodes", index)


def validate_client_tls(tls: ClientTLSSettings | None, ctx: ValidationContext) -> None:
    """Istio's ``ValidateTLS`` for upstream TLS, with ``ctx`` at the ``tls`` field."""
    if tls is None:
        return
    name = tls.credential_name
    if name.startswith(_CONFIGMAP):
        namespace, slash, configmap = name[len(_CONFIGMAP) :].partition("/")
        if not slash or not namespace or not configmap:
            ctx.error(
                f"invalid configmap:// credentialName {name!r}: expected configmap://<namespace>/<name>",
                "credentialName",
            )
        elif ctx.namespace and namespace != ctx.namespace:
            ctx.error(
                f"invalid configmap:// credentialName {name!r}: namespace must match the configuration namespace "
                f"{ctx.namespace!r}",
                "credentialName",
            )
    if tls.insecure_skip_verify:
        if tls.mode is ClientTLSMode.SIMPLE and (tls.ca_certificates or tls.credential_name or tls.subject_alt_names):
            ctx.error(
                "cannot specify CaCertificates or CredentialName or SubjectAltNames when InsecureSkipVerify is set "
                "true",
                "insecureSkipVerify",
            )
        if tls.mode is ClientTLSMode.MUTUAL and (tls.ca_certificates or tls.subject_alt_names):
            ctx.error(
                "cannot specify CaCertificates or SubjectAltNames when InsecureSkipVerify is set true",
                "insecureSkipVerify",
            )
    if tls.mode in (ClientTLSMode.SIMPLE, ClientTLSMode.MUTUAL) and tls.credential_name:
        if tls.client_certificate or tls.ca_certificates or tls.private_key or tls.ca_crl:
            ctx.error(
                f"cannot specify client certificates or CA certificate or CA CRL If credentialName is set "
                f"(credentialName {tls.credential_name!r})"
            )
        return
    if tls.mode is ClientTLSMode.MUTUAL:
        if not tls.client_certificate:
            ctx.error("client certificate required for mutual tls", "clientCertificate")
        if not tls.private_key:
            ctx.error("private key required for mutual tls", "privateKey")


def _check_tunnel(tunnel: TunnelSettings | None, ctx: ValidationContext) -> None:
    if tunnel is None:
        return
    if tunnel.protocol not in ("", "CONNECT", "POST"):
        ctx.error(f'tunnel protocol must be "CONNECT" or "POST", not {tunnel.protocol!r}', "protocol")
    probe = ValidationContext()
    if not is_ip(tunnel.target_host) and not check_fqdn(probe, tunnel.target_host):
        problem = probe.findings[0][2]
        ctx.error(f"tunnel target host must be valid FQDN or IP address: {problem}", "targetHost")
    check_port_number(ctx, tunnel.target_port, "targetPort")
