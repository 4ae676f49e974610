"""``istio.mesh.v1alpha1.MeshConfig`` and its own nested messages (private).

The public names are re-exported by :mod:`mesh_config.meshconfig`.
"""

from __future__ import annotations

import enum
from typing import final

import attrs

from mesh_config._mesh_providers import ExtensionProvider
from mesh_config._mesh_proxy import MeshProxyConfig
from mesh_config.networking.destination_rule import ClientTLSSettings, LocalityLoadBalancerSetting, TcpKeepalive
from mesh_config.networking.virtual_service import HTTPRetry
from mesh_config.types import (
    Duration,
    FrozenDict,
    Int32,
    boolean,
    enum_value,
    integer,
    mapping,
    optional,
    repeated,
    string,
)


class IngressControllerMode(enum.Enum):
    """``MeshConfig.IngressControllerMode``: which Kubernetes Ingress resources Istio handles."""

    UNSPECIFIED = "UNSPECIFIED"
    OFF = "OFF"
    DEFAULT = "DEFAULT"
    STRICT = "STRICT"


class AccessLogEncoding(enum.Enum):
    """``MeshConfig.AccessLogEncoding``: the format of ``accessLogFile``."""

    TEXT = "TEXT"
    JSON = "JSON"


class OutboundMode(enum.Enum):
    """``MeshConfig.OutboundTrafficPolicy.Mode``: traffic to destinations outside the registry."""

    REGISTRY_ONLY = "REGISTRY_ONLY"
    ALLOW_ANY = "ALLOW_ANY"


class InboundMode(enum.Enum):
    """``MeshConfig.InboundTrafficPolicy.Mode``: where inbound traffic is sent."""

    PASSTHROUGH = "PASSTHROUGH"
    LOCALHOST = "LOCALHOST"


class MeshH2UpgradePolicy(enum.Enum):
    """``MeshConfig.H2UpgradePolicy``: whether HTTP/1.1 connections are upgraded to HTTP/2 by default."""

    DO_NOT_UPGRADE = "DO_NOT_UPGRADE"
    UPGRADE = "UPGRADE"


class ConfigResource(enum.Enum):
    """``Resource``: what a config source provides."""

    SERVICE_REGISTRY = "SERVICE_REGISTRY"


class PathNormalization(enum.Enum):
    """``MeshConfig.ProxyPathNormalization.NormalizationType``."""

    DEFAULT = "DEFAULT"
    NONE = "NONE"
    BASE = "BASE"
    MERGE_SLASHES = "MERGE_SLASHES"
    DECODE_AND_MERGE_SLASHES = "DECODE_AND_MERGE_SLASHES"


class MeshTLSProtocol(enum.Enum):
    """``MeshConfig.TLSConfig.TLSProtocol``: the minimum TLS version."""

    TLS_AUTO = "TLS_AUTO"
    TLSV1_2 = "TLSV1_2"
    TLSV1_3 = "TLSV1_3"


@final
@attrs.frozen
class MeshOutboundTrafficPolicy:
    """``MeshConfig.OutboundTrafficPolicy``."""

    mode: OutboundMode = enum_value(OutboundMode.REGISTRY_ONLY)


@final
@attrs.frozen
class MeshInboundTrafficPolicy:
    """``MeshConfig.InboundTrafficPolicy``."""

    mode: InboundMode = enum_value(InboundMode.PASSTHROUGH)


@final
@attrs.frozen
class ConfigSource:
    """``ConfigSource``: a config store (``xds://``, ``k8s://``, ``fs:///``)."""

    address: str = string()
    tls_settings: ClientTLSSettings | None = optional()
    subscribed_resources: tuple[ConfigResource, ...] = repeated()


@final
@attrs.frozen
class CertificateData:
    """``MeshConfig.CertificateData``: an extra trust anchor (PEM or a SPIFFE bundle URL)."""

    pem: str = string(oneof="certificate_data")
    spiffe_bundle_url: str = string(oneof="certificate_data")
    cert_signers: tuple[str, ...] = repeated()
    trust_domains: tuple[str, ...] = repeated()


@final
@attrs.frozen
class MeshCertificate:
    """``Certificate`` (deprecated): a DNS certificate to provision."""

    secret_name: str = string()
    dns_names: tuple[str, ...] = repeated()


@final
@attrs.frozen
class ServiceSettingsValues:
    """``MeshConfig.ServiceSettings.Settings``."""

    cluster_local: bool = boolean()


@final
@attrs.frozen
class ServiceSettings:
    """``MeshConfig.ServiceSettings``: settings for services matched by host."""

    settings: ServiceSettingsValues | None = optional()
    hosts: tuple[str, ...] = repeated()


@final
@attrs.frozen
class MeshCA:
    """``MeshConfig.CA``: an external CA that istiod forwards CSRs to."""

    address: str = string()
    tls_settings: ClientTLSSettings | None = optional()
    request_timeout: Duration | None = optional()
    istiod_side: bool = boolean()


@final
@attrs.frozen
class DefaultProviders:
    """``MeshConfig.DefaultProviders``: providers used when a Telemetry names none."""

    tracing: tuple[str, ...] = repeated()
    metrics: tuple[str, ...] = repeated()
    access_logging: tuple[str, ...] = repeated()


@final
@attrs.frozen
class LabelSelectorRequirement:
    """A Kubernetes ``LabelSelectorRequirement``: ``key``, ``operator`` (In, NotIn, Exists, ...) and values."""

    key: str = string()
    operator: str = string()
    values: tuple[str, ...] = repeated()


@final
@attrs.frozen
class LabelSelector:
    """A Kubernetes ``LabelSelector`` (``discoverySelectors``)."""

    match_labels: FrozenDict[str, str] = mapping()
    match_expressions: tuple[LabelSelectorRequirement, ...] = repeated()


@final
@attrs.frozen
class ProxyPathNormalization:
    """``MeshConfig.ProxyPathNormalization``."""

    normalization: PathNormalization = enum_value(PathNormalization.DEFAULT)


@final
@attrs.frozen
class MeshTLSConfig:
    """``MeshConfig.TLSConfig``: TLS version, curves and ciphers (``meshMTLS``, ``tlsDefaults``)."""

    min_protocol_version: MeshTLSProtocol = enum_value(MeshTLSProtocol.TLS_AUTO)
    ecdh_curves: tuple[str, ...] = repeated()
    cipher_suites: tuple[str, ...] = repeated()


@final
@attrs.frozen
class MeshConfig:
    """``istio.mesh.v1alpha1.MeshConfig``: mesh-wide settings.

    Loaded with :func:`mesh_config.load_mesh_config`, which applies Istio's defaults; a field left
    unset here is unset in the source and has no default.
    """

    proxy_listen_port: Int32 = integer()
    proxy_inbound_listen_port: Int32 = integer()
    proxy_http_port: Int32 = integer()
    connect_timeout: Duration | None = optional()
    protocol_detection_timeout: Duration | None = optional()
    tcp_keepalive: TcpKeepalive | None = optional()
    ingress_class: str = string()
    ingress_service: str = string()
    ingress_controller_mode: IngressControllerMode = enum_value(IngressControllerMode.UNSPECIFIED)
    ingress_selector: str = string()
    enable_tracing: bool = boolean()
    access_log_file: str = string()
    access_log_format: str = string()
    access_log_encoding: AccessLogEncoding = enum_value(AccessLogEncoding.TEXT)
    enable_envoy_access_log_service: bool = boolean()
    disable_envoy_listener_log: bool = boolean()
    default_config: MeshProxyConfig | None = optional()
    outbound_traffic_policy: MeshOutboundTrafficPolicy | None = optional()
    inbound_traffic_policy: MeshInboundTrafficPolicy | None = optional()
    config_sources: tuple[ConfigSource, ...] = repeated()
    enable_auto_mtls: bool | None = optional()
    trust_domain: str = string()
    trust_domain_aliases: tuple[str, ...] = repeated()
    ca_certificates: tuple[CertificateData, ...] = repeated()
    default_service_export_to: tuple[str, ...] = repeated()
    default_virtual_service_export_to: tuple[str, ...] = repeated()
    default_destination_rule_export_to: tuple[str, ...] = repeated()
    root_namespace: str = string()
    locality_lb_setting: LocalityLoadBalancerSetting | None = optional()
    dns_refresh_rate: Duration | None = optional()
    h2_upgrade_policy: MeshH2UpgradePolicy = enum_value(MeshH2UpgradePolicy.DO_NOT_UPGRADE)
    inbound_cluster_stat_name: str = string()
    outbound_cluster_stat_name: str = string()
    certificates: tuple[MeshCertificate, ...] = repeated()
    service_settings: tuple[ServiceSettings, ...] = repeated()
    enable_prometheus_merge: bool | None = optional()
    verify_certificate_at_client: bool | None = optional()
    ca: MeshCA | None = optional()
    extension_providers: tuple[ExtensionProvider, ...] = repeated()
    default_providers: DefaultProviders | None = optional()
    discovery_selectors: tuple[LabelSelector, ...] = repeated()
    path_normalization: ProxyPathNormalization | None = optional()
    default_http_retry_policy: HTTPRetry | None = optional()
    mesh_mtls: MeshTLSConfig | None = optional(json="meshMTLS")
    tls_defaults: MeshTLSConfig | None = optional()
    compliance_policy: str = string()
