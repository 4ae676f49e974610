"""MeshConfig's ``extensionProviders``: ``MeshConfig.ExtensionProvider`` and its providers (private).

The public names are re-exported by :mod:`mesh_config.meshconfig`.
"""

from __future__ import annotations

import enum
from typing import final

import attrs

from mesh_config._mesh_proxy import OpenCensusTraceContext
from mesh_config.types import (
    Duration,
    FrozenDict,
    Int64,
    JsonObject,
    UInt32,
    boolean,
    integer,
    mapping,
    optional,
    repeated,
    string,
)


@final
@attrs.frozen
class ExtAuthzRequestBody:
    """``EnvoyExternalAuthorizationRequestBody``: how much of the request body goes to the authorizer."""

    max_request_bytes: UInt32 = integer()
    allow_partial_message: bool = boolean()
    pack_as_bytes: bool = boolean()


@final
@attrs.frozen
class EnvoyExtAuthzHttpProvider:
    """``EnvoyExternalAuthorizationHttpProvider``: an ext_authz service over HTTP."""

    service: str = string()
    port: UInt32 = integer()
    timeout: Duration | None = optional()
    path_prefix: str = string()
    fail_open: bool = boolean()
    status_on_error: str = string()
    include_headers_in_check: tuple[str, ...] = repeated()
    include_request_headers_in_check: tuple[str, ...] = repeated()
    include_additional_headers_in_check: FrozenDict[str, str] = mapping()
    include_request_body_in_check: ExtAuthzRequestBody | None = optional()
    headers_to_upstream_on_allow: tuple[str, ...] = repeated()
    headers_to_downstream_on_deny: tuple[str, ...] = repeated()
    headers_to_downstream_on_allow: tuple[str, ...] = repeated()


@final
@attrs.frozen
class EnvoyExtAuthzGrpcProvider:
    """``EnvoyExternalAuthorizationGrpcProvider``: an ext_authz service over gRPC."""

    service: str = string()
    port: UInt32 = integer()
    timeout: Duration | None = optional()
    fail_open: bool = boolean()
    status_on_error: str = string()
    include_request_body_in_check: ExtAuthzRequestBody | None = optional()


@final
@attrs.frozen
class ZipkinTracingProvider:
    """``ZipkinTracingProvider``: a Zipkin collector service."""

    service: str = string()
    port: UInt32 = integer()
    max_tag_length: UInt32 = integer()
    enable_64bit_trace_id: bool = boolean()


@final
@attrs.frozen
class LightstepTracingProvider:
    """``LightstepTracingProvider`` (deprecated): a Lightstep collector service and its token."""

    service: str = string()
    port: UInt32 = integer()
    access_token: str = string()
    max_tag_length: UInt32 = integer()


@final
@attrs.frozen
class DatadogTracingProvider:
    """``DatadogTracingProvider``: a Datadog agent service."""

    service: str = string()
    port: UInt32 = integer()
    max_tag_length: UInt32 = integer()


@final
@attrs.frozen
class SkyWalkingTracingProvider:
    """``SkyWalkingTracingProvider``: a SkyWalking receiver service."""

    service: str = string()
    port: UInt32 = integer()
    access_token: str = string()


@final
@attrs.frozen
class StackdriverLogging:
    """``StackdriverProvider.Logging``: tags of Stackdriver log entries."""

    labels: FrozenDict[str, str] = mapping()


@final
@attrs.frozen
class StackdriverProvider:
    """``StackdriverProvider``: Stackdriver tracing and logging."""

    debug: bool = boolean()
    max_number_of_attributes: Int64 | None = optional()
    max_number_of_annotations: Int64 | None = optional()
    max_number_of_message_events: Int64 | None = optional()
    max_tag_length: UInt32 = integer()
    logging: StackdriverLogging | None = optional()


@final
@attrs.frozen
class OpenCensusAgentTracingProvider:
    """``OpenCensusAgentTracingProvider`` (deprecated): an OpenCensus agent service."""

    service: str = string()
    port: UInt32 = integer()
    context: tuple[OpenCensusTraceContext, ...] = repeated()
    max_tag_length: UInt32 = integer()


@final
@attrs.frozen
class PrometheusMetricsProvider:
    """``PrometheusMetricsProvider``: Prometheus metrics (no settings)."""


@final
@attrs.frozen
class FileAccessLogFormat:
    """``EnvoyFileAccessLogProvider.LogFormat``: a text format or JSON labels."""

    text: str = string(oneof="log_format")
    labels: JsonObject | None = optional(oneof="log_format")


@final
@attrs.frozen
class EnvoyFileAccessLogProvider:
    """``EnvoyFileAccessLogProvider``: access logs to a file (``/dev/stdout`` when empty)."""

    path: str = string()
    log_format: FileAccessLogFormat | None = optional()


@final
@attrs.frozen
class EnvoyHttpGrpcV3LogProvider:
    """``EnvoyHttpGrpcV3LogProvider``: HTTP access logs to an Envoy ALS service."""

    service: str = string()
    port: UInt32 = integer()
    log_name: str = string()
    filter_state_objects_to_log: tuple[str, ...] = repeated()
    additional_request_headers_to_log: tuple[str, ...] = repeated()
    additional_response_headers_to_log: tuple[str, ...] = repeated()
    additional_response_trailers_to_log: tuple[str, ...] = repeated()


@final
@attrs.frozen
class EnvoyTcpGrpcV3LogProvider:
    """``EnvoyTcpGrpcV3LogProvider``: TCP access logs to an Envoy ALS service."""

    service: str = string()
    port: UInt32 = integer()
    log_name: str = string()
    filter_state_objects_to_log: tuple[str, ...] = repeated()


@final
@attrs.frozen
class OtelLogFormat:
    """``EnvoyOpenTelemetryLogProvider.LogFormat``: the body text and attributes of log records."""

    text: str = string()
    labels: JsonObject | None = optional()


@final
@attrs.frozen
class EnvoyOpenTelemetryLogProvider:
    """``EnvoyOpenTelemetryLogProvider``: access logs to an OpenTelemetry collector."""

    service: str = string()
    port: UInt32 = integer()
    log_name: str = string()
    log_format: OtelLogFormat | None = optional()


@final
@attrs.frozen
class ProviderHttpHeader:
    """``ExtensionProvider.HttpHeader``: a header sent to a provider."""

    name: str = string()
    value: str = string()


@final
@attrs.frozen
class ProviderHttpService:
    """``ExtensionProvider.HttpService``: a provider reached over HTTP."""

    path: str = string()
    timeout: Duration | None = optional()
    headers: tuple[ProviderHttpHeader, ...] = repeated()


@final
@attrs.frozen
class ProviderGrpcService:
    """``ExtensionProvider.GrpcService``: gRPC settings of a provider."""

    timeout: Duration | None = optional()
    initial_metadata: tuple[ProviderHttpHeader, ...] = repeated()


@final
@attrs.frozen
class EnvironmentResourceDetector:
    """``ResourceDetectors.EnvironmentResourceDetector``: resource attributes from the environment."""


@final
@attrs.frozen
class DynatraceResourceDetector:
    """``ResourceDetectors.DynatraceResourceDetector``: resource attributes from Dynatrace files."""


@final
@attrs.frozen
class ResourceDetectors:
    """``ExtensionProvider.ResourceDetectors``: OpenTelemetry resource detectors."""

    environment: EnvironmentResourceDetector | None = optional()
    dynatrace: DynatraceResourceDetector | None = optional()


@final
@attrs.frozen
class OpenTelemetryTracingProvider:
    """``OpenTelemetryTracingProvider``: traces over OTLP (gRPC, or HTTP when ``http`` is set).

    ``dynatrace_sampler`` is kept as JSON: its schema is not modelled yet.
    """

    service: str = string()
    port: UInt32 = integer()
    max_tag_length: UInt32 = integer()
    http: ProviderHttpService | None = optional()
    resource_detectors: ResourceDetectors | None = optional()
    grpc: ProviderGrpcService | None = optional()
    dynatrace_sampler: JsonObject | None = optional()


class ProviderKind(enum.Enum):
    """Which kind of provider an :class:`ExtensionProvider` configures (not an Istio enum)."""

    NONE = "none"
    EXT_AUTHZ_HTTP = "envoyExtAuthzHttp"
    EXT_AUTHZ_GRPC = "envoyExtAuthzGrpc"
    ZIPKIN = "zipkin"
    LIGHTSTEP = "lightstep"
    DATADOG = "datadog"
    STACKDRIVER = "stackdriver"
    OPENCENSUS = "opencensus"
    SKYWALKING = "skywalking"
    OPENTELEMETRY = "opentelemetry"
    PROMETHEUS = "prometheus"
    FILE_ACCESS_LOG = "envoyFileAccessLog"
    HTTP_ALS = "envoyHttpAls"
    TCP_ALS = "envoyTcpAls"
    OTEL_ALS = "envoyOtelAls"


@final
@attrs.frozen
class ExtensionProvider:
    """``MeshConfig.ExtensionProvider``: a named authorizer, tracer, metrics or access log backend."""

    name: str = string()
    envoy_ext_authz_http: EnvoyExtAuthzHttpProvider | None = optional(oneof="provider")
    envoy_ext_authz_grpc: EnvoyExtAuthzGrpcProvider | None = optional(oneof="provider")
    zipkin: ZipkinTracingProvider | None = optional(oneof="provider")
    lightstep: LightstepTracingProvider | None = optional(oneof="provider")
    datadog: DatadogTracingProvider | None = optional(oneof="provider")
    stackdriver: StackdriverProvider | None = optional(oneof="provider")
    opencensus: OpenCensusAgentTracingProvider | None = optional(oneof="provider")
    skywalking: SkyWalkingTracingProvider | None = optional(oneof="provider")
    opentelemetry: OpenTelemetryTracingProvider | None = optional(oneof="provider")
    prometheus: PrometheusMetricsProvider | None = optional(oneof="provider")
    envoy_file_access_log: EnvoyFileAccessLogProvider | None = optional(oneof="provider")
    envoy_http_als: EnvoyHttpGrpcV3LogProvider | None = optional(oneof="provider")
    envoy_tcp_als: EnvoyTcpGrpcV3LogProvider | None = optional(oneof="provider")
    envoy_otel_als: EnvoyOpenTelemetryLogProvider | None = optional(oneof="provider")

    @property
    def kind(self) -> ProviderKind:
        """Which provider is set (``ProviderKind.NONE`` when none is)."""
        for kind in ProviderKind:
            if kind is not ProviderKind.NONE and getattr(self, _ATTRIBUTE[kind]) is not None:
                return kind
        return ProviderKind.NONE


_ATTRIBUTE = {
    ProviderKind.EXT_AUTHZ_HTTP: "envoy_ext_authz_http",
    ProviderKind.EXT_AUTHZ_GRPC: "envoy_ext_authz_grpc",
    ProviderKind.ZIPKIN: "zipkin",
    ProviderKind.LIGHTSTEP: "lightstep",
    ProviderKind.DATADOG: "datadog",
    ProviderKind.STACKDRIVER: "stackdriver",
    ProviderKind.OPENCENSUS: "opencensus",
    ProviderKind.SKYWALKING: "skywalking",
    ProviderKind.OPENTELEMETRY: "opentelemetry",
    ProviderKind.PROMETHEUS: "prometheus",
    ProviderKind.FILE_ACCESS_LOG: "envoy_file_access_log",
    ProviderKind.HTTP_ALS: "envoy_http_als",
    ProviderKind.TCP_ALS: "envoy_tcp_als",
    ProviderKind.OTEL_ALS: "envoy_otel_als",
}


def default_extension_providers() -> tuple[ExtensionProvider, ...]:
    """Istio's default providers: ``prometheus``, ``stackdriver`` and ``envoy`` (a file log to stdout)."""
    return (
        ExtensionProvider(name="prometheus", prometheus=PrometheusMetricsProvider()),
        ExtensionProvider(name="stackdriver", stackdriver=StackdriverProvider()),
        ExtensionProvider(name="envoy", envoy_file_access_log=EnvoyFileAccessLogProvider(path="/dev/stdout")),
    )
