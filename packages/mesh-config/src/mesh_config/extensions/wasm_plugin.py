"""WasmPlugin (extensions.istio.io): Wasm filters added to proxies."""

from __future__ import annotations

import enum
from typing import final

import attrs

from mesh_config._attachment import check_attachment_choice, check_target_refs_count
from mesh_config.common import PolicyTargetReference, PortSelector, WorkloadSelector
from mesh_config.extensions._urls import url_problem
from mesh_config.kinds import KindSpec, register_kind
from mesh_config.rules import check_selector, check_target_ref, check_target_refs
from mesh_config.types import Int32, JsonObject, enum_value, optional, repeated, string
from mesh_config.validation import ValidationContext

__all__ = [
    "WASM_PLUGIN",
    "EnvValueSource",
    "EnvVar",
    "FailStrategy",
    "PluginPhase",
    "PluginType",
    "PullPolicy",
    "VmConfig",
    "WasmPlugin",
    "WasmTrafficSelector",
    "WorkloadMode",
    "validate_wasm_plugin",
]

SHA256_PATTERN = "(^$|^[a-f0-9]{64}$)"
"""The CRD's pattern for ``sha256``."""

MAX_ENV = 256
"""The CRD's ``maxItems`` on ``vmConfig.env``."""


class PluginType(enum.Enum):
    """``PluginType``: the kind of filter the module is."""

    UNSPECIFIED_PLUGIN_TYPE = "UNSPECIFIED_PLUGIN_TYPE"
    """HTTP, the default."""
    HTTP = "HTTP"
    """An HTTP filter."""
    NETWORK = "NETWORK"
    """A network (TCP) filter."""


class PluginPhase(enum.Enum):
    """``PluginPhase``: where in the filter chain the plugin goes."""

    UNSPECIFIED_PHASE = "UNSPECIFIED_PHASE"
    """At the end of the chain, before the router."""
    AUTHN = "AUTHN"
    """Before Istio's authentication filters."""
    AUTHZ = "AUTHZ"
    """Before Istio's authorization filters, after authentication."""
    STATS = "STATS"
    """Before Istio's stats filter, after authorization."""


class PullPolicy(enum.Enum):
    """``PullPolicy``: when the module is fetched again."""

    UNSPECIFIED_POLICY = "UNSPECIFIED_POLICY"
    """``IfNotPresent``, or ``Always`` for an image tagged ``latest``."""
    IF_NOT_PRESENT = "IfNotPresent"
    """Reuse a cached module."""
    ALWAYS = "Always"
    """Fetch on every change of the resource."""


class EnvValueSource(enum.Enum):
    """``EnvValueSource``: where an environment variable's value comes from."""

    INLINE = "INLINE"
    """The ``value`` field."""
    HOST = "HOST"
    """The proxy's own environment."""


class FailStrategy(enum.Enum):
    """``FailStrategy``: what happens when the plugin fails fatally."""

    FAIL_CLOSE = "FAIL_CLOSE"
    """Requests fail (503 for HTTP)."""
    FAIL_OPEN = "FAIL_OPEN"
    """The plugin is skipped."""
    FAIL_RELOAD = "FAIL_RELOAD"
    """The VM is reloaded."""


class WorkloadMode(enum.Enum):
    """``istio.type.v1beta1.WorkloadMode``: the direction of traffic a selector matches."""

    UNDEFINED = "UNDEFINED"
    """Not set: both directions."""
    CLIENT = "CLIENT"
    """Outbound traffic."""
    SERVER = "SERVER"
    """Inbound traffic."""
    CLIENT_AND_SERVER = "CLIENT_AND_SERVER"
    """Both directions."""


@final
@attrs.frozen
class EnvVar:
    """``EnvVar``: one environment variable of the plugin's VM."""

    name: str = string(required=True)
    value_from: EnvValueSource = enum_value(EnvValueSource.INLINE)
    value: str = string()


@final
@attrs.frozen
class VmConfig:
    """``VmConfig``: settings of the Wasm VM."""

    env: tuple[EnvVar, ...] = repeated()


@final
@attrs.frozen
class WasmTrafficSelector:
    """``WasmPlugin.TrafficSelector``: which traffic the plugin runs on."""

    mode: WorkloadMode = enum_value(WorkloadMode.UNDEFINED)
    ports: tuple[PortSelector, ...] = repeated()


@final
@attrs.frozen
class WasmPlugin:
    """The spec of a WasmPlugin.

    Attributes:
        selector: the workloads it applies to (exclusive with ``target_ref``/``target_refs``).
        target_ref: the Gateway or Service it attaches to (deprecated in favour of ``target_refs``).
        target_refs: the Gateways, GatewayClasses, Services or ServiceEntries it attaches to.
        url: where the module is: ``oci://``, ``http(s)://`` or ``file://`` (no scheme means ``oci``).
        sha256: the module's SHA-256, lower-case hex.
        image_pull_policy: when an OCI image is fetched again.
        image_pull_secret: the pull secret for an OCI image.
        verification_key: the public key to verify the module's signature.
        plugin_config: the configuration given to the plugin.
        plugin_name: the plugin's name in the module (``root_id``).
        phase: where in the filter chain it goes.
        priority: its order among plugins of the same phase (higher first).
        fail_strategy: what happens on a fatal error.
        vm_config: the VM's settings.
        match: which traffic it runs on; empty means all.
        type: HTTP or network filter.
    """

    selector: WorkloadSelector | None = optional()
    target_ref: PolicyTargetReference | None = optional()
    target_refs: tuple[PolicyTargetReference, ...] = repeated()
    url: str = string(required=True)
    sha256: str = string()
    image_pull_policy: PullPolicy = enum_value(PullPolicy.UNSPECIFIED_POLICY)
    image_pull_secret: str = string()
    verification_key: str = string()
    plugin_config: JsonObject | None = optional()
    plugin_name: str = string()
    phase: PluginPhase = enum_value(PluginPhase.UNSPECIFIED_PHASE)
    priority: Int32 | None = optional()
    fail_strategy: FailStrategy = enum_value(FailStrategy.FAIL_CLOSE)
    vm_config: VmConfig | None = optional()
    match: tuple[WasmTrafficSelector, ...] = repeated()
    type: PluginType = enum_value(PluginType.UNSPECIFIED_PLUGIN_TYPE)


def validate_wasm_plugin(spec: WasmPlugin, ctx: ValidationContext) -> None:
    """The CRD rules and Istio's webhook rules for WasmPlugin.

    Where the CRD and the webhook check the same thing, only the CRD's message is given (the API server
    rejects before the webhook runs).
    """
    check_attachment_choice(ctx, "only one of targetRefs or selector can be set", "selector", "targetRef", "targetRefs")
    check_selector(ctx, spec.selector, "selector")
    check_target_ref(ctx, spec.target_ref, "targetRef")
    check_target_refs(ctx, spec.target_refs, "targetRefs")
    check_target_refs_count(ctx, spec.target_refs, "targetRefs")
    _check_url(spec.url, ctx)
    _check_strings(spec, ctx)
    if spec.vm_config is not None:
        _check_env(spec.vm_config, ctx.at("vmConfig"))
    for index, selector in enumerate(spec.match):
        _check_traffic_selector(selector, ctx.at("match", index))


def _check_url(url: str, ctx: ValidationContext) -> None:
    if not url:
        if ctx.has("url"):
            ctx.min_length(1, "url")
        return
    scheme, problem = url_problem(url)
    if problem is None and scheme in ("", "http", "https", "oci", "file"):
        return
    # The CEL rule only asks that the text parse as a URL (alone or after "http://") with an allowed scheme.
    ctx.rule("url must have schema one of [http, https, file, oci]", "url", json_type="string")


def _check_strings(spec: WasmPlugin, ctx: ValidationContext) -> None:
    if spec.sha256 and not (len(spec.sha256) == 64 and all(ch in "0123456789abcdef" for ch in spec.sha256)):
        ctx.pattern(SHA256_PATTERN, "sha256")
    for field, value, longest in (
        ("imagePullSecret", spec.image_pull_secret, 253),
        ("pluginName", spec.plugin_name, 256),
    ):
        if not value and ctx.has(field):
            ctx.min_length(1, field)
        elif len(value) > longest:
            ctx.max_length(longest, field)


def _check_env(vm: VmConfig, ctx: ValidationContext) -> None:
    if len(vm.env) > MAX_ENV:
        ctx.max_items(MAX_ENV, "env")
    seen: set[str] = set()
    for index, env in enumerate(vm.env):
        here = ctx.at("env", index)
        if not env.name:
            if here.has("name"):
                here.min_length(1, "name")
        elif len(env.name) > 256:
            here.max_length(256, "name")
        elif env.name in seen:
            here.error(f'Duplicate value: map[string]interface {{}}{{"name":"{env.name}"}}')
        seen.add(env.name)
        if len(env.value) > 2048:
            here.max_length(2048, "value")
        if env.value_from is EnvValueSource.HOST and here.has("value"):
            here.rule("value may only be set when valueFrom is INLINE")


def _check_traffic_selector(selector: WasmTrafficSelector, ctx: ValidationContext) -> None:
    seen: set[int] = set()
    for index, port in enumerate(selector.ports):
        here = ctx.at("ports", index)
        if not here.has("number"):
            here.required("number")
            continue
        if port.number < 1:
            here.minimum(1, "number")
        elif port.number > 65535:
            here.maximum(65535, "number")
        elif port.number in seen:
            here.error(f'Duplicate value: map[string]interface {{}}{{"number":{port.number}}}')
        seen.add(port.number)


WASM_PLUGIN = register_kind(
    KindSpec(
        kind="WasmPlugin",
        group="extensions.istio.io",
        versions=("v1alpha1",),
        spec_type=WasmPlugin,
        validate=validate_wasm_plugin,
        plural="wasmplugins",
        spec_required=True,
    )
)
