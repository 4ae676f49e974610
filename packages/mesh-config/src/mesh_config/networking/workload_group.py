"""WorkloadGroup (networking.istio.io): a template for WorkloadEntries.

A WorkloadGroup describes a set of VM workloads: the metadata and WorkloadEntry template that istiod uses
when a VM registers itself (auto-registration), and the readiness probe its istio-agent runs.
"""

from __future__ import annotations

import re
from typing import final

import attrs

from mesh_config.kinds import KindSpec, register_kind
from mesh_config.networking._workload_rules import PORT_RANGE, check_labels, written
from mesh_config.networking.workload_entry import WorkloadEntry, check_workload_entry_schema
from mesh_config.types import FrozenDict, Int32, UInt32, integer, mapping, optional, repeated, string
from mesh_config.validation import ValidationContext

__all__ = [
    "WORKLOAD_GROUP",
    "ExecHealthCheckConfig",
    "GrpcHealthCheckConfig",
    "HttpHeader",
    "HttpHealthCheckConfig",
    "ReadinessProbe",
    "TcpHealthCheckConfig",
    "WorkloadGroup",
    "WorkloadGroupMetadata",
    "validate_workload_group",
]

_HEADER_NAME = re.compile(r"[-_A-Za-z0-9]+\Z")
_HEADER_NAME_PATTERN = "^[-_A-Za-z0-9]+$"
_METHODS = ("httpGet", "tcpSocket", "exec", "grpc")


@final
@attrs.frozen
class WorkloadGroupMetadata:
    """``WorkloadGroup.ObjectMeta``: labels and annotations given to every WorkloadEntry of the group."""

    labels: FrozenDict[str, str] = mapping()
    annotations: FrozenDict[str, str] = mapping()


@final
@attrs.frozen
class HttpHeader:
    """``HTTPHeader``: a header an HTTP probe sends."""

    name: str = string()
    value: str = string()


@final
@attrs.frozen
class HttpHealthCheckConfig:
    """``HTTPHealthCheckConfig``: an HTTP GET whose status tells the health.

    Attributes:
        path: the path to request.
        port: the port to call, 1..65535.
        host: the host to connect to (the workload's address when empty).
        scheme: ``HTTP`` (the default) or ``HTTPS``.
        http_headers: headers to send.
    """

    path: str = string()
    port: UInt32 = integer(required=True)
    host: str = string()
    scheme: str = string()
    http_headers: tuple[HttpHeader, ...] = repeated()


@final
@attrs.frozen
class TcpHealthCheckConfig:
    """``TCPHealthCheckConfig``: healthy when a TCP connection opens."""

    host: str = string()
    port: UInt32 = integer(required=True)


@final
@attrs.frozen
class ExecHealthCheckConfig:
    """``ExecHealthCheckConfig``: healthy when a command exits with status 0."""

    command: tuple[str, ...] = repeated(required=True)


@final
@attrs.frozen
class GrpcHealthCheckConfig:
    """``GrpcHealthCheckConfig``: a call to the gRPC health service."""

    port: UInt32 = integer()
    service: str = string()


@final
@attrs.frozen
class ReadinessProbe:
    """``ReadinessProbe``: how istio-agent checks the workload; at most one method may be set.

    Attributes:
        initial_delay_seconds: the wait before the first probe.
        timeout_seconds: the time after which a probe fails.
        period_seconds: the time between probes.
        success_threshold: consecutive successes to become ready.
        failure_threshold: consecutive failures to become unready.
        http_get: an HTTP probe.
        tcp_socket: a TCP connect probe.
        exec: a command probe.
        grpc: a gRPC health probe.
    """

    initial_delay_seconds: Int32 = integer()
    timeout_seconds: Int32 = integer()
    period_seconds: Int32 = integer()
    success_threshold: Int32 = integer()
    failure_threshold: Int32 = integer()
    http_get: HttpHealthCheckConfig | None = optional(oneof="health_check_method")
    tcp_socket: TcpHealthCheckConfig | None = optional(oneof="health_check_method")
    exec: ExecHealthCheckConfig | None = optional(oneof="health_check_method")
    grpc: GrpcHealthCheckConfig | None = optional(oneof="health_check_method")


@final
@attrs.frozen
class WorkloadGroup:
    """The spec of a WorkloadGroup.

    Attributes:
        metadata: labels and annotations of the group's WorkloadEntries.
        template: the WorkloadEntry the group's entries start from (address and the like are filled in at
            registration).
        probe: the readiness probe.
    """

    metadata: WorkloadGroupMetadata | None = optional()
    template: WorkloadEntry | None = optional(required=True)
    probe: ReadinessProbe | None = optional()


def _check_probe_schema(probe: ReadinessProbe, ctx: ValidationContext) -> None:
    for field, value in (
        ("initialDelaySeconds", probe.initial_delay_seconds),
        ("timeoutSeconds", probe.timeout_seconds),
        ("periodSeconds", probe.period_seconds),
        ("successThreshold", probe.success_threshold),
        ("failureThreshold", probe.failure_threshold),
    ):
        if value < 0:
            ctx.minimum(0, field)
    for name, config in (("httpGet", probe.http_get), ("tcpSocket", probe.tcp_socket), ("grpc", probe.grpc)):
        if config is not None and written(ctx, config.port, name, "port") and not 0 < config.port <= 65535:
            ctx.rule(PORT_RANGE, name, "port", json_type="integer")
    http = probe.http_get
    if http is not None:
        if http.scheme not in ("", "HTTP", "HTTPS"):
            ctx.rule("scheme must be one of [HTTP, HTTPS]", "httpGet", "scheme", json_type="string")
        for index, header in enumerate(http.http_headers):
            here = ctx.at("httpGet", "httpHeaders", index)
            if written(here, header.name, "name") and not _HEADER_NAME.match(header.name):
                here.pattern(_HEADER_NAME_PATTERN, "name")
    if probe.exec is not None:
        for index, argument in enumerate(probe.exec.command):
            if not argument:
                ctx.min_length(1, "exec", "command", index)


def _check_probe(probe: ReadinessProbe, ctx: ValidationContext) -> None:
    """Istio's ``validateReadinessProbe`` (what the CRD does not already cover)."""
    if probe.http_get is not None:
        for index, header in enumerate(probe.http_get.http_headers):
            here = ctx.at("httpGet", "httpHeaders", index)
            if not header.name and not here.has("name"):
                here.error("header name cannot be empty", "name")
    elif probe.exec is not None:
        if not probe.exec.command:
            ctx.error("exec.command is required: give the command to run", "exec", "command")
    elif probe.tcp_socket is None and probe.grpc is None:
        ctx.error(f"probe has no health check method: set one of {', '.join(_METHODS)}")


def validate_workload_group(spec: WorkloadGroup, ctx: ValidationContext) -> None:
    """The CRD rules and Istio's webhook rules for a WorkloadGroup.

    The template is required; metadata labels have Kubernetes syntax; probe counters are not negative;
    probe ports are 1..65535; an HTTP probe's scheme is HTTP or HTTPS and its header names are tokens; an
    exec probe has a command; a probe sets one method.
    """
    metadata = spec.metadata
    if metadata is not None:
        for field, values in (("labels", metadata.labels), ("annotations", metadata.annotations)):
            if len(values) > 256:
                ctx.error("in body should have at most 256 properties", "metadata", field)
        check_labels(ctx.at("metadata"), metadata.labels, "labels")
    if spec.template is not None:
        check_workload_entry_schema(spec.template, ctx.at("template"), address_required=False)
    if spec.probe is not None:
        _check_probe_schema(spec.probe, ctx.at("probe"))
        _check_probe(spec.probe, ctx.at("probe"))


WORKLOAD_GROUP = register_kind(
    KindSpec(
        kind="WorkloadGroup",
        group="networking.istio.io",
        versions=("v1", "v1alpha3", "v1beta1"),
        spec_type=WorkloadGroup,
        validate=validate_workload_group,
        plural="workloadgroups",
        spec_required=True,
    )
)
