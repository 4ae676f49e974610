"""Telemetry (telemetry.istio.io): metrics, access logs and tracing settings."""

from __future__ import annotations

import enum
from typing import final

import attrs

from mesh_config._attachment import check_attachment_choice, check_target_refs_count
from mesh_config.common import PolicyTargetReference, WorkloadSelector
from mesh_config.extensions._cel import CelSyntaxError, check_cel
from mesh_config.kinds import KindSpec, register_kind
from mesh_config.rules import check_selector, check_target_ref, check_target_refs
from mesh_config.types import Duration, FrozenDict, enum_value, mapping, optional, repeated, string
from mesh_config.validation import ValidationContext

__all__ = [
    "TELEMETRY",
    "AccessLogFilter",
    "AccessLogging",
    "CustomTag",
    "CustomTagEnvironment",
    "CustomTagFormatter",
    "CustomTagHeader",
    "CustomTagLiteral",
    "IstioMetric",
    "LogSelector",
    "MetricSelector",
    "Metrics",
    "MetricsOverrides",
    "ProviderRef",
    "TagOperation",
    "TagOverride",
    "Telemetry",
    "TelemetryWorkloadMode",
    "Tracing",
    "TracingSelector",
    "validate_telemetry",
]


class TelemetryWorkloadMode(enum.Enum):
    """``istio.telemetry.v1alpha1.WorkloadMode``: the direction of traffic a setting applies to."""

    CLIENT_AND_SERVER = "CLIENT_AND_SERVER"
    """Both directions (the default)."""
    CLIENT = "CLIENT"
    """Outbound traffic."""
    SERVER = "SERVER"
    """Inbound traffic."""


class IstioMetric(enum.Enum):
    """``MetricSelector.IstioMetric``: one of Istio's standard metrics."""

    ALL_METRICS = "ALL_METRICS"
    REQUEST_COUNT = "REQUEST_COUNT"
    REQUEST_DURATION = "REQUEST_DURATION"
    REQUEST_SIZE = "REQUEST_SIZE"
    RESPONSE_SIZE = "RESPONSE_SIZE"
    TCP_OPENED_CONNECTIONS = "TCP_OPENED_CONNECTIONS"
    TCP_CLOSED_CONNECTIONS = "TCP_CLOSED_CONNECTIONS"
    TCP_SENT_BYTES = "TCP_SENT_BYTES"
    TCP_RECEIVED_BYTES = "TCP_RECEIVED_BYTES"
    GRPC_REQUEST_MESSAGES = "GRPC_REQUEST_MESSAGES"
    GRPC_RESPONSE_MESSAGES = "GRPC_RESPONSE_MESSAGES"


class TagOperation(enum.Enum):
    """``MetricsOverrides.TagOverride.Operation``."""

    UPSERT = "UPSERT"
    """Add the tag or replace its value (the default)."""
    REMOVE = "REMOVE"
    """Drop the tag."""


@final
@attrs.frozen
class ProviderRef:
    """``ProviderRef``: an extension provider of MeshConfig, by name."""

    name: str = string(required=True)


@final
@attrs.frozen
class TracingSelector:
    """``Tracing.TracingSelector``: which traffic a tracing setting applies to."""

    mode: TelemetryWorkloadMode = enum_value(TelemetryWorkloadMode.CLIENT_AND_SERVER)


@final
@attrs.frozen
class CustomTagLiteral:
    """``Tracing.Literal``: a fixed tag value."""

    value: str = string(required=True)


@final
@attrs.frozen
class CustomTagEnvironment:
    """``Tracing.Environment``: a tag value from the proxy's environment."""

    name: str = string(required=True)
    default_value: str = string()


@final
@attrs.frozen
class CustomTagHeader:
    """``Tracing.RequestHeader``: a tag value from a request header."""

    name: str = string(required=True)
    default_value: str = string()


@final
@attrs.frozen
class CustomTagFormatter:
    """``Tracing.Formatter``: a tag value from an access-log style formatter (``%REQ(:path)%``)."""

    value: str = string(required=True)


@final
@attrs.frozen
class CustomTag:
    """``Tracing.CustomTag``: where a custom span tag takes its value from (one of four)."""

    literal: CustomTagLiteral | None = optional(oneof="type")
    environment: CustomTagEnvironment | None = optional(oneof="type")
    header: CustomTagHeader | None = optional(oneof="type")
    formatter: CustomTagFormatter | None = optional(oneof="type")


@final
@attrs.frozen
class Tracing:
    """``Tracing``: tracing settings for the selected workloads.

    Attributes:
        match: which traffic the settings apply to.
        providers: the tracing provider (Istio uses only the first).
        random_sampling_percentage: the share of requests traced, 0..100.
        disable_span_reporting: do not report spans (headers are still propagated).
        custom_tags: tags added to every span, by name.
        use_request_id_for_trace_sampling: sample by the request id.
        enable_istio_tags: add Istio's own tags to spans.
        disable_context_propagation: do not propagate trace headers.
    """

    match: TracingSelector | None = optional()
    providers: tuple[ProviderRef, ...] = repeated()
    random_sampling_percentage: float | None = optional()
    disable_span_reporting: bool | None = optional()
    custom_tags: FrozenDict[str, CustomTag] = mapping()
    use_request_id_for_trace_sampling: bool | None = optional()
    enable_istio_tags: bool | None = optional()
    disable_context_propagation: bool | None = optional()


@final
@attrs.frozen
class MetricSelector:
    """``MetricSelector``: a standard metric or a custom one, and the traffic direction."""

    metric: IstioMetric = enum_value(IstioMetric.ALL_METRICS, oneof="metric_match")
    custom_metric: str = string(oneof="metric_match")
    mode: TelemetryWorkloadMode = enum_value(TelemetryWorkloadMode.CLIENT_AND_SERVER)


@final
@attrs.frozen
class TagOverride:
    """``MetricsOverrides.TagOverride``: add, replace or drop one metric tag."""

    operation: TagOperation = enum_value(TagOperation.UPSERT)
    value: str = string()


@final
@attrs.frozen
class MetricsOverrides:
    """``MetricsOverrides``: changes to the metrics a selector matches."""

    match: MetricSelector | None = optional()
    disabled: bool | None = optional()
    tag_overrides: FrozenDict[str, TagOverride] = mapping()


@final
@attrs.frozen
class Metrics:
    """``Metrics``: metric settings for some providers."""

    providers: tuple[ProviderRef, ...] = repeated()
    overrides: tuple[MetricsOverrides, ...] = repeated()
    reporting_interval: Duration | None = optional()


@final
@attrs.frozen
class LogSelector:
    """``AccessLogging.LogSelector``: which traffic an access log setting applies to."""

    mode: TelemetryWorkloadMode = enum_value(TelemetryWorkloadMode.CLIENT_AND_SERVER)


@final
@attrs.frozen
class AccessLogFilter:
    """``AccessLogging.Filter``: a CEL expression choosing which requests are logged."""

    expression: str = string()


@final
@attrs.frozen
class AccessLogging:
    """``AccessLogging``: access log settings for some providers."""

    match: LogSelector | None = optional()
    providers: tuple[ProviderRef, ...] = repeated()
    disabled: bool | None = optional()
    filter: AccessLogFilter | None = optional()


@final
@attrs.frozen
class Telemetry:
    """The spec of a Telemetry.

    Attributes:
        selector: the workloads it applies to (exclusive with ``target_ref``/``target_refs``).
        target_ref: the Gateway or Service it attaches to (deprecated in favour of ``target_refs``).
        target_refs: the Gateways, GatewayClasses, Services or ServiceEntries it attaches to.
        tracing: tracing settings (Istio supports one).
        metrics: metrics settings.
        access_logging: access log settings.
    """

    selector: WorkloadSelector | None = optional()
    target_ref: PolicyTargetReference | None = optional()
    target_refs: tuple[PolicyTargetReference, ...] = repeated()
    tracing: tuple[Tracing, ...] = repeated()
    metrics: tuple[Metrics, ...] = repeated()
    access_logging: tuple[AccessLogging, ...] = repeated()


def validate_telemetry(spec: Telemetry, ctx: ValidationContext) -> None:
    """The CRD rules and Istio's webhook rules for Telemetry.

    Where the CRD and the webhook check the same thing, only the CRD's message is given (the API server
    rejects before the webhook runs).
    """
    check_attachment_choice(ctx, "only one of targetRefs or selector can be set", "selector", "targetRef", "targetRefs")
    check_selector(ctx, spec.selector, "selector")
    check_target_ref(ctx, spec.target_ref, "targetRef")
    check_target_refs(ctx, spec.target_refs, "targetRefs")
    check_target_refs_count(ctx, spec.target_refs, "targetRefs")
    if len(spec.tracing) > 1:
        ctx.warning(f"multiple tracing is not currently supported ({len(spec.tracing)} given)", "tracing")
    for index, tracing in enumerate(spec.tracing):
        _check_tracing(tracing, ctx.at("tracing", index))
    for index, metrics in enumerate(spec.metrics):
        _check_metrics(metrics, ctx.at("metrics", index))
    for index, logging in enumerate(spec.access_logging):
        _check_access_logging(logging, ctx.at("accessLogging", index))


def _check_providers(providers: tuple[ProviderRef, ...], ctx: ValidationContext) -> None:
    for index, provider in enumerate(providers):
        if not provider.name and ctx.has("providers", index, "name"):
            ctx.at("providers", index).min_length(1, "name")


def _check_tracing(tracing: Tracing, ctx: ValidationContext) -> None:
    _check_providers(tracing.providers, ctx)
    if len(tracing.providers) > 1:
        names = ", ".join(repr(provider.name) for provider in tracing.providers)
        ctx.warning(f"multiple providers is not currently supported ({names})", "providers")
    percentage = tracing.random_sampling_percentage
    if percentage is not None and percentage < 0:
        ctx.minimum(0, "randomSamplingPercentage")
    elif percentage is not None and percentage > 100:
        ctx.maximum(100, "randomSamplingPercentage")
    for name, tag in tracing.custom_tags.items():
        here = ctx.at("customTags", name)
        if not name:
            ctx.error("tag name may not be empty", "customTags")
        for field, kind, value in (
            ("literal", "value", tag.literal.value if tag.literal else None),
            ("environment", "name", tag.environment.name if tag.environment else None),
            ("header", "name", tag.header.name if tag.header else None),
            ("formatter", "value", tag.formatter.value if tag.formatter else None),
        ):
            if value == "" and here.has(field, kind):
                here.at(field).min_length(1, kind)


def _check_metrics(metrics: Metrics, ctx: ValidationContext) -> None:
    _check_providers(metrics.providers, ctx)
    interval = metrics.reporting_interval
    if interval is not None and interval.nanos < 1_000_000:
        ctx.rule("must be a valid duration greater than 1ms", "reportingInterval", json_type="string")
    for index, override in enumerate(metrics.overrides):
        here = ctx.at("overrides", index)
        if override.match is not None and not override.match.custom_metric and here.has("match", "customMetric"):
            here.at("match").min_length(1, "customMetric")
        for name, tag in override.tag_overrides.items():
            _check_tag_override(name, tag, here.at("tagOverrides", name))


def _check_tag_override(name: str, tag: TagOverride, ctx: ValidationContext) -> None:
    if not name:
        ctx.warning("tagOverrides.name may not be empty")
    explicit = ctx.has("operation")
    if tag.operation is TagOperation.UPSERT and not tag.value:
        if explicit:
            ctx.rule("value must be set when operation is UPSERT")
        else:
            # The CRD rule only looks at an explicit UPSERT; the webhook also applies it to the default.
            ctx.error(f"tagOverrides.value must be set when operation is UPSERT (tag {name!r})")
    elif tag.operation is TagOperation.REMOVE and ctx.has("value"):
        ctx.rule("value must not be set when operation is REMOVE")


def _check_access_logging(logging: AccessLogging, ctx: ValidationContext) -> None:
    _check_providers(logging.providers, ctx)
    if logging.filter is not None:
        try:
            check_cel(logging.filter.expression)
        except CelSyntaxError as error:
            expression = logging.filter.expression
            ctx.error(f"must be a valid CEL expression, {error} (expression {expression!r})", "filter", "expression")


TELEMETRY = register_kind(
    KindSpec(
        kind="Telemetry",
        group="telemetry.istio.io",
        versions=("v1", "v1alpha1"),
        spec_type=Telemetry,
        validate=validate_telemetry,
        plural="telemetries",
    )
)
