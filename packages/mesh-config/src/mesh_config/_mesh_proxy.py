"""MeshConfig's ``defaultConfig``: ``istio.mesh.v1alpha1.ProxyConfig`` and its messages (private).

The public names are re-exported by :mod:`mesh_config.meshconfig`.
"""

from __future__ import annotations

import enum
from typing import final

import attrs

from mesh_config.networking.destination_rule import ClientTLSSettings, TcpKeepalive
from mesh_config.networking.proxy_config import ProxyImage
from mesh_config.networking.workload_group import ReadinessProbe
from mesh_config.types import (
    Duration,
    FrozenDict,
    Int32,
    Int64,
    JsonObject,
    UInt32,
    boolean,
    enum_value,
    integer,
    mapping,
    number,
    optional,
    repeated,
    string,
)


class AuthenticationPolicy(enum.Enum):
    """``AuthenticationPolicy``: how a proxy's connection to the control plane is secured."""

    NONE = "NONE"
    """Plain text."""
    MUTUAL_TLS = "MUTUAL_TLS"
    """Mutual TLS (the default)."""
    INHERIT = "INHERIT"
    """Use the parent scope's policy (not valid for the mesh)."""


class TracingServiceName(enum.Enum):
    """``ProxyConfig.TracingServiceName``: how the service name of trace spans is made."""

    APP_LABEL_AND_NAMESPACE = "APP_LABEL_AND_NAMESPACE"
    CANONICAL_NAME_ONLY = "CANONICAL_NAME_ONLY"
    CANONICAL_NAME_AND_NAMESPACE = "CANONICAL_NAME_AND_NAMESPACE"


class InterceptionMode(enum.Enum):
    """``ProxyConfig.InboundInterceptionMode``: how inbound traffic is redirected to the proxy."""

    REDIRECT = "REDIRECT"
    TPROXY = "TPROXY"
    NONE = "NONE"


class OpenCensusTraceContext(enum.Enum):
    """``Tracing.OpenCensusAgent.TraceContext``: trace context propagation headers."""

    UNSPECIFIED = "UNSPECIFIED"
    W3C_TRACE_CONTEXT = "W3C_TRACE_CONTEXT"
    GRPC_BIN = "GRPC_BIN"
    CLOUD_TRACE_CONTEXT = "CLOUD_TRACE_CONTEXT"
    B3 = "B3"


class ForwardClientCertDetails(enum.Enum):
    """``Topology.ForwardClientCertDetails``: how a gateway handles the XFCC header."""

    UNDEFINED = "UNDEFINED"
    SANITIZE = "SANITIZE"
    FORWARD_ONLY = "FORWARD_ONLY"
    APPEND_FORWARD = "APPEND_FORWARD"
    SANITIZE_SET = "SANITIZE_SET"
    ALWAYS_FORWARD_ONLY = "ALWAYS_FORWARD_ONLY"


@final
@attrs.frozen
class TracingZipkin:
    """``Tracing.Zipkin``: a Zipkin collector (``host:port``)."""

    address: str = string()


@final
@attrs.frozen
class TracingLightstep:
    """``Tracing.Lightstep`` (deprecated): a Lightstep satellite pool and its access token."""

    address: str = string()
    access_token: str = string()


@final
@attrs.frozen
class TracingDatadog:
    """``Tracing.Datadog``: a Datadog agent (``host:port``)."""

    address: str = string()


@final
@attrs.frozen
class TracingStackdriver:
    """``Tracing.Stackdriver``: Stackdriver tracing limits."""

    debug: bool = boolean()
    max_number_of_attributes: Int64 | None = optional()
    max_number_of_annotations: Int64 | None = optional()
    max_number_of_message_events: Int64 | None = optional()


@final
@attrs.frozen
class TracingOpenCensusAgent:
    """``Tracing.OpenCensusAgent``: an OpenCensus agent and the propagation headers."""

    address: str = string()
    context: tuple[OpenCensusTraceContext, ...] = repeated()


@final
@attrs.frozen
class TracingLiteral:
    """``Tracing.Literal``: a fixed tag value."""

    value: str = string()


@final
@attrs.frozen
class TracingEnvironment:
    """``Tracing.Environment``: a tag value from the proxy's environment."""

    name: str = string()
    default_value: str = string()


@final
@attrs.frozen
class TracingRequestHeader:
    """``Tracing.RequestHeader``: a tag value from a request header."""

    name: str = string()
    default_value: str = string()


@final
@attrs.frozen
class TracingCustomTag:
    """``Tracing.CustomTag``: where a span tag's value comes from."""

    literal: TracingLiteral | None = optional(oneof="type")
    environment: TracingEnvironment | None = optional(oneof="type")
    header: TracingRequestHeader | None = optional(oneof="type")


@final
@attrs.frozen
class ProxyTracing:
    """``istio.mesh.v1alpha1.Tracing``: the proxy's tracer and sampling (one tracer at most)."""

    zipkin: TracingZipkin | None = optional(oneof="tracer")
    lightstep: TracingLightstep | None = optional(oneof="tracer")
    datadog: TracingDatadog | None = optional(oneof="tracer")
    stackdriver: TracingStackdriver | None = optional(oneof="tracer")
    open_census_agent: TracingOpenCensusAgent | None = optional(oneof="tracer")
    custom_tags: FrozenDict[str, TracingCustomTag] = mapping()
    max_path_tag_length: UInt32 = integer()
    sampling: float = number()
    tls_settings: ClientTLSSettings | None = optional()


@final
@attrs.frozen
class ProxySds:
    """``SDS`` (deprecated): secret discovery settings."""

    enabled: bool = boolean()
    k8s_sa_jwt_path: str = string()


@final
@attrs.frozen
class TopologyProxyProtocol:
    """``Topology.ProxyProtocolConfiguration``: accept the PROXY protocol on gateways (no fields)."""


@final
@attrs.frozen
class Topology:
    """``Topology``: where a gateway sits relative to trusted proxies and clients."""

    num_trusted_proxies: UInt32 = integer()
    forward_client_cert_details: ForwardClientCertDetails = enum_value(ForwardClientCertDetails.UNDEFINED)
    proxy_protocol: TopologyProxyProtocol | None = optional()


@final
@attrs.frozen
class RemoteService:
    """``RemoteService``: an access log or metrics service the proxy sends to."""

    address: str = string()
    tls_settings: ClientTLSSettings | None = optional()
    tcp_keepalive: TcpKeepalive | None = optional()


@final
@attrs.frozen
class ProxyStatsMatcher:
    """``ProxyConfig.ProxyStatsMatcher``: extra Envoy stats to create, by prefix, suffix or regex."""

    inclusion_prefixes: tuple[str, ...] = repeated()
    inclusion_suffixes: tuple[str, ...] = repeated()
    inclusion_regexps: tuple[str, ...] = repeated()


@final
@attrs.frozen
class PollDelayProvider:
    """``PrivateKeyProvider.CryptoMb`` and ``.QAT``: the queue's poll delay (must be non-zero)."""

    poll_delay: Duration | None = optional()


@final
@attrs.frozen
class PrivateKeyProvider:
    """``PrivateKeyProvider``: hardware-accelerated private key operations."""

    cryptomb: PollDelayProvider | None = optional(oneof="provider")
    qat: PollDelayProvider | None = optional(oneof="provider")


@final
@attrs.frozen
class MeshProxyConfig:
    """``istio.mesh.v1alpha1.ProxyConfig``: proxy settings (MeshConfig's ``defaultConfig``).

    Not the ProxyConfig kind (:class:`mesh_config.ProxyConfig`), which sets a few of these per workload.
    ``proxy_headers`` is kept as JSON: its schema is not modelled yet.
    """

    config_path: str = string()
    binary_path: str = string()
    service_cluster: str = string(oneof="cluster_name")
    tracing_service_name: TracingServiceName = enum_value(
        TracingServiceName.APP_LABEL_AND_NAMESPACE, oneof="cluster_name"
    )
    drain_duration: Duration | None = optional()
    parent_shutdown_duration: Duration | None = optional()
    discovery_address: str = string()
    discovery_refresh_delay: Duration | None = optional()
    zipkin_address: str = string()
    statsd_udp_address: str = string()
    envoy_metrics_service_address: str = string()
    proxy_admin_port: Int32 = integer()
    availability_zone: str = string()
    control_plane_auth_policy: AuthenticationPolicy = enum_value(AuthenticationPolicy.NONE)
    custom_config_file: str = string()
    stat_name_length: Int32 = integer()
    concurrency: Int32 | None = optional()
    proxy_bootstrap_template_path: str = string()
    interception_mode: InterceptionMode = enum_value(InterceptionMode.REDIRECT)
    tracing: ProxyTracing | None = optional()
    sds: ProxySds | None = optional()
    envoy_access_log_service: RemoteService | None = optional()
    envoy_metrics_service: RemoteService | None = optional()
    proxy_metadata: FrozenDict[str, str] = mapping()
    runtime_values: FrozenDict[str, str] = mapping()
    status_port: Int32 = integer()
    extra_stat_tags: tuple[str, ...] = repeated()
    gateway_topology: Topology | None = optional()
    termination_drain_duration: Duration | None = optional()
    mesh_id: str = string()
    readiness_probe: ReadinessProbe | None = optional()
    proxy_stats_matcher: ProxyStatsMatcher | None = optional()
    hold_application_until_proxy_starts: bool | None = optional()
    ca_certificates_pem: tuple[str, ...] = repeated()
    image: ProxyImage | None = optional()
    private_key_provider: PrivateKeyProvider | None = optional()
    proxy_headers: JsonObject | None = optional()


def default_proxy_config() -> MeshProxyConfig:
    """Istio's ``DefaultProxyConfig`` (``pkg/config/mesh/mesh.go``)."""
    return MeshProxyConfig(
        config_path="./etc/istio/proxy",
        binary_path="/usr/local/bin/envoy",
        service_cluster="istio-proxy",
        drain_duration=Duration.of(seconds=45),
        parent_shutdown_duration=Duration.of(seconds=60),
        termination_drain_duration=Duration.of(seconds=5),
        proxy_admin_port=15000,
        concurrency=2,
        control_plane_auth_policy=AuthenticationPolicy.MUTUAL_TLS,
        discovery_address="istiod.istio-system.svc:15012",
        tracing=ProxyTracing(zipkin=TracingZipkin(address="zipkin.istio-system:9411")),
        stat_name_length=189,
        status_port=15020,
    )
