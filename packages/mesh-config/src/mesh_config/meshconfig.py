"""MeshConfig: mesh-wide settings with Istio's defaults.

MeshConfig is not a Kubernetes kind: it is the YAML of istiod's mesh config (the ``mesh`` key of the
``istio`` ConfigMap, or ``meshConfig`` of an install). :func:`load_mesh_config` reads it with the same
engine as config objects (unknown fields are errors, every problem is reported with its line and field),
applies Istio's defaults the way istiod does, and checks the result with Istio's mesh config rules::

    from mesh_config import load_mesh_config

    result = load_mesh_config(pathlib.Path("mesh.yaml"))  # or the YAML text itself
    mesh = result.raise_for_errors().config
    print(mesh.trust_domain, mesh.default_config.discovery_address)
"""

from __future__ import annotations

import os
import pathlib
from typing import Any, final

import attrs

from mesh_config._mesh_merge import apply_mesh_config
from mesh_config._mesh_messages import (
    AccessLogEncoding,
    CertificateData,
    ConfigResource,
    ConfigSource,
    DefaultProviders,
    InboundMode,
    IngressControllerMode,
    LabelSelector,
    LabelSelectorRequirement,
    MeshCA,
    MeshCertificate,
    MeshConfig,
    MeshH2UpgradePolicy,
    MeshInboundTrafficPolicy,
    MeshOutboundTrafficPolicy,
    MeshTLSConfig,
    MeshTLSProtocol,
    OutboundMode,
    PathNormalization,
    ProxyPathNormalization,
    ServiceSettings,
    ServiceSettingsValues,
)
from mesh_config._mesh_providers import (
    DatadogTracingProvider,
    DynatraceResourceDetector,
    EnvironmentResourceDetector,
    EnvoyExtAuthzGrpcProvider,
    EnvoyExtAuthzHttpProvider,
    EnvoyFileAccessLogProvider,
    EnvoyHttpGrpcV3LogProvider,
    EnvoyOpenTelemetryLogProvider,
    EnvoyTcpGrpcV3LogProvider,
    ExtAuthzRequestBody,
    ExtensionProvider,
    FileAccessLogFormat,
    LightstepTracingProvider,
    OpenCensusAgentTracingProvider,
    OpenTelemetryTracingProvider,
    OtelLogFormat,
    PrometheusMetricsProvider,
    ProviderGrpcService,
    ProviderHttpHeader,
    ProviderHttpService,
    ProviderKind,
    ResourceDetectors,
    SkyWalkingTracingProvider,
    StackdriverLogging,
    StackdriverProvider,
    ZipkinTracingProvider,
    default_extension_providers,
)
from mesh_config._mesh_proxy import (
    AuthenticationPolicy,
    ForwardClientCertDetails,
    InterceptionMode,
    MeshProxyConfig,
    OpenCensusTraceContext,
    PollDelayProvider,
    PrivateKeyProvider,
    ProxySds,
    ProxyStatsMatcher,
    ProxyTracing,
    RemoteService,
    Topology,
    TopologyProxyProtocol,
    TracingCustomTag,
    TracingDatadog,
    TracingEnvironment,
    TracingLightstep,
    TracingLiteral,
    TracingOpenCensusAgent,
    TracingRequestHeader,
    TracingServiceName,
    TracingStackdriver,
    TracingZipkin,
    default_proxy_config,
)
from mesh_config._mesh_rules import validate_mesh_config
from mesh_config._outcome import Outcome
from mesh_config._structure import Problems, structure
from mesh_config._yaml import YamlProblem, parse_single_document
from mesh_config.diagnostics import Diagnostic, FieldPath, Position, Severity
from mesh_config.limits import LoadLimits
from mesh_config.networking.destination_rule import LocalityLoadBalancerSetting
from mesh_config.types import Duration
from mesh_config.validation import ValidationContext

__all__ = [
    "AccessLogEncoding",
    "AuthenticationPolicy",
    "CertificateData",
    "ConfigResource",
    "ConfigSource",
    "DatadogTracingProvider",
    "DefaultProviders",
    "DynatraceResourceDetector",
    "EnvironmentResourceDetector",
    "EnvoyExtAuthzGrpcProvider",
    "EnvoyExtAuthzHttpProvider",
    "EnvoyFileAccessLogProvider",
    "EnvoyHttpGrpcV3LogProvider",
    "EnvoyOpenTelemetryLogProvider",
    "EnvoyTcpGrpcV3LogProvider",
    "ExtAuthzRequestBody",
    "ExtensionProvider",
    "FileAccessLogFormat",
    "ForwardClientCertDetails",
    "InboundMode",
    "IngressControllerMode",
    "InterceptionMode",
    "LabelSelector",
    "LabelSelectorRequirement",
    "LightstepTracingProvider",
    "MeshCA",
    "MeshCertificate",
    "MeshConfig",
    "MeshConfigResult",
    "MeshH2UpgradePolicy",
    "MeshInboundTrafficPolicy",
    "MeshOutboundTrafficPolicy",
    "MeshProxyConfig",
    "MeshTLSConfig",
    "MeshTLSProtocol",
    "OpenCensusAgentTracingProvider",
    "OpenCensusTraceContext",
    "OpenTelemetryTracingProvider",
    "OtelLogFormat",
    "OutboundMode",
    "PathNormalization",
    "PollDelayProvider",
    "PrivateKeyProvider",
    "PrometheusMetricsProvider",
    "ProviderGrpcService",
    "ProviderHttpHeader",
    "ProviderHttpService",
    "ProviderKind",
    "ProxyPathNormalization",
    "ProxySds",
    "ProxyStatsMatcher",
    "ProxyTracing",
    "RemoteService",
    "ResourceDetectors",
    "ServiceSettings",
    "ServiceSettingsValues",
    "SkyWalkingTracingProvider",
    "StackdriverLogging",
    "StackdriverProvider",
    "Topology",
    "TopologyProxyProtocol",
    "TracingCustomTag",
    "TracingDatadog",
    "TracingEnvironment",
    "TracingLightstep",
    "TracingLiteral",
    "TracingOpenCensusAgent",
    "TracingRequestHeader",
    "TracingServiceName",
    "TracingStackdriver",
    "TracingZipkin",
    "ZipkinTracingProvider",
    "default_mesh_config",
    "default_proxy_config",
    "load_mesh_config",
    "validate_mesh_config",
]

_KIND = "MeshConfig"
_FILE_SUFFIXES = (".yaml", ".yml", ".json")


def default_mesh_config() -> MeshConfig:
    """Istio's ``DefaultMeshConfig`` (``pkg/config/mesh/mesh.go``): what an empty mesh config means."""
    return MeshConfig(
        enable_tracing=True,
        access_log_encoding=AccessLogEncoding.TEXT,
        protocol_detection_timeout=Duration(0),
        ingress_service="istio-ingressgateway",
        ingress_controller_mode=IngressControllerMode.STRICT,
        ingress_class="istio",
        trust_domain="cluster.local",
        enable_auto_mtls=True,
        outbound_traffic_policy=MeshOutboundTrafficPolicy(mode=OutboundMode.ALLOW_ANY),
        inbound_traffic_policy=MeshInboundTrafficPolicy(mode=InboundMode.PASSTHROUGH),
        locality_lb_setting=LocalityLoadBalancerSetting(enabled=True),
        default_config=default_proxy_config(),
        root_namespace="istio-system",
        proxy_listen_port=15001,
        proxy_inbound_listen_port=15006,
        connect_timeout=Duration.of(seconds=10),
        default_service_export_to=("*",),
        default_virtual_service_export_to=("*",),
        default_destination_rule_export_to=("*",),
        dns_refresh_rate=Duration.of(seconds=60),
        enable_prometheus_merge=True,
        default_providers=DefaultProviders(),
        extension_providers=default_extension_providers(),
    )


@final
@attrs.frozen
class MeshConfigResult(Outcome):
    """The outcome of :func:`load_mesh_config`.

    Attributes:
        config: the mesh config with Istio's defaults applied, or ``None`` when there is an error.
        diagnostics: every problem found, errors and warnings, with positions and field paths.
    """

    config: MeshConfig | None
    diagnostics: tuple[Diagnostic, ...] = ()


def load_mesh_config(
    source: str | bytes | os.PathLike[str], *, limits: LoadLimits | None = None, name: str = "<mesh config>"
) -> MeshConfigResult:
    """Load a MeshConfig from YAML (or JSON) text or a file, apply Istio's defaults and validate it.

    Args:
        source: the YAML text (``str`` or ``bytes``), or a path. A ``str`` is read as a path when it is one
            line ending in ``.yaml``, ``.yml`` or ``.json``, or names an existing file; otherwise it is the
            text itself. Empty text means Istio's defaults.
        limits: bounds on size, depth and alias expansion.
        name: what diagnostics call text given directly.
    """
    bounds = limits or LoadLimits()
    if isinstance(source, os.PathLike) or (isinstance(source, str) and _looks_like_path(source)):
        path = pathlib.Path(source)
        try:
            size = path.stat().st_size
            if size > bounds.max_bytes:
                return _failed(str(path), f"file is {size} bytes; the limit is {bounds.max_bytes}")
            data = path.read_bytes()
        except OSError as error:
            return _failed(str(path), f"cannot read: {error.strerror or error}")
        return _load_bytes(data, str(path), bounds)
    if isinstance(source, bytes):
        return _load_bytes(source, name, bounds)
    return _load_text(source, name, bounds)


def _looks_like_path(text: str) -> bool:
    if "\n" in text or not text.strip():
        return False
    return text.strip().endswith(_FILE_SUFFIXES) or os.path.isfile(text)


def _failed(source: str, message: str, position: Position | None = None) -> MeshConfigResult:
    diagnostic = Diagnostic(Severity.ERROR, message, position or Position(source), kind=_KIND)
    return MeshConfigResult(None, (diagnostic,))


def _load_bytes(data: bytes, source: str, bounds: LoadLimits) -> MeshConfigResult:
    if len(data) > bounds.max_bytes:
        return _failed(source, f"input is {len(data)} bytes; the limit is {bounds.max_bytes}")
    return _load_text(data, source, bounds)


def _load_text(text: str | bytes, source: str, bounds: LoadLimits) -> MeshConfigResult:
    try:
        document = parse_single_document(text, source, bounds, what="a mesh config")
    except YamlProblem as problem:
        return _failed(source, problem.message, problem.position)
    data: Any = document.data if document is not None else {}
    locate = document.position if document is not None else (lambda _path: Position(source))
    if not isinstance(data, dict):
        return _failed(source, "a mesh config must be a map of settings (trustDomain, defaultConfig, ...)", locate(()))
    problems: Problems = []
    user = structure(MeshConfig, data, (), problems)
    merged = apply_mesh_config(default_mesh_config(), user, data)
    context = ValidationContext(path=(), raw=data)
    validate_mesh_config(merged, context, written=user)
    broken = [path for path, _ in problems]
    findings = [(Severity.ERROR, path, message) for path, message in problems] + [
        finding for finding in context.findings if not any(_follows(finding[1], path) for path in broken)
    ]
    diagnostics = tuple(
        Diagnostic(severity, message, locate(path), kind=_KIND, path=path) for severity, path, message in findings
    )
    ok = not any(severity is Severity.ERROR for severity, _, _ in findings)
    return MeshConfigResult(merged if ok else None, diagnostics)


def _follows(finding: FieldPath, broken: FieldPath) -> bool:
    """True when a finding is about a field that already failed the schema, or something inside it."""
    return finding[: len(broken)] == broken
