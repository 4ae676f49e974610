"""TrafficExtension (extensions.istio.io): Wasm or Lua filters added to proxies.

TrafficExtension supersedes WasmPlugin: the same attachment (``selector`` or ``targetRefs``), ordering
(``phase``, ``priority``) and traffic selection (``match``), with the filter itself given as exactly one of
``wasm`` (a Wasm module, with WasmPlugin's module settings) or ``lua`` (inline Lua code).
"""

from __future__ import annotations

import enum
import re
from typing import final

import attrs

from mesh_config._attachment import check_attachment_choice, check_target_refs_count
from mesh_config.common import PolicyTargetReference, WorkloadSelector
from mesh_config.extensions.wasm_plugin import (
    SHA256_PATTERN,
    FailStrategy,
    PluginType,
    PullPolicy,
    VmConfig,
    WasmTrafficSelector,
    _check_env,
    _check_traffic_selector,
    _check_url,
)
from mesh_config.kinds import KindSpec, register_kind
from mesh_config.rules import check_selector, check_target_refs
from mesh_config.types import Int32, JsonObject, enum_value, optional, repeated, string
from mesh_config.validation import ValidationContext

__all__ = [
    "TRAFFIC_EXTENSION",
    "ExecutionPhase",
    "LuaConfig",
    "TrafficExtension",
    "WasmConfig",
    "validate_traffic_extension",
]

MAX_LUA_CODE = 65536
"""The CRD's ``maxLength`` on ``lua.inlineCode`` (64 KiB, counted in characters as Kubernetes counts)."""

_LUA_ENTRY_POINT = re.compile(r"\benvoy_on_(?:request|response)\b")
_SHA256 = re.compile(r"[a-f0-9]{64}\Z")


class ExecutionPhase(enum.Enum):
    """``TrafficExtension.ExecutionPhase``: where in the filter chain the extension goes."""

    UNSPECIFIED = "UNSPECIFIED"
    """At the end of the chain, before the router."""
    AUTHN = "AUTHN"
    """Before Istio's authentication filters."""
    AUTHZ = "AUTHZ"
    """Before Istio's authorization filters, after authentication."""
    STATS = "STATS"
    """Before Istio's stats filter, after authorization."""


@final
@attrs.frozen
class WasmConfig:
    """``WasmConfig``: a Wasm module and its settings (WasmPlugin's module fields).

    Attributes:
        url: where the module is: ``oci://``, ``http(s)://`` or ``file://`` (no scheme means ``oci``).
        sha256: the module's SHA-256, lower-case hex.
        image_pull_policy: when an OCI image or remote module is fetched again.
        image_pull_secret: the pull secret for an OCI image, in the extension's namespace.
        verification_key: the public key to verify the module's signature.
        plugin_config: the configuration given to the plugin.
        plugin_name: the plugin's name in the module (``root_id``).
        fail_strategy: what happens on a fatal error.
        vm_config: the VM's settings.
        type: HTTP or network filter.
    """

    url: str = string(required=True)
    sha256: str = string()
    image_pull_policy: PullPolicy = enum_value(PullPolicy.UNSPECIFIED_POLICY)
    image_pull_secret: str = string()
    verification_key: str = string()
    plugin_config: JsonObject | None = optional()
    plugin_name: str = string()
    fail_strategy: FailStrategy = enum_value(FailStrategy.FAIL_CLOSE)
    vm_config: VmConfig | None = optional()
    type: PluginType = enum_value(PluginType.UNSPECIFIED_PLUGIN_TYPE)


@final
@attrs.frozen
class LuaConfig:
    """``LuaConfig``: a Lua filter given inline.

    Attributes:
        inline_code: the Lua script, defining ``envoy_on_request`` and/or ``envoy_on_response``
            (1 to 65,536 characters).
    """

    inline_code: str = string(required=True)


@final
@attrs.frozen
class TrafficExtension:
    """The spec of a TrafficExtension.

    Attributes:
        selector: the workloads it applies to (exclusive with ``target_refs``).
        target_refs: the Gateways, GatewayClasses, Services or ServiceEntries it attaches to.
        phase: where in the filter chain it goes.
        priority: its order among extensions of the same phase (higher first).
        match: which traffic it runs on; empty means all.
        wasm: a Wasm filter (exactly one of ``wasm`` and ``lua`` is set).
        lua: a Lua filter.
    """

    selector: WorkloadSelector | None = optional()
    target_refs: tuple[PolicyTargetReference, ...] = repeated()
    phase: ExecutionPhase = enum_value(ExecutionPhase.UNSPECIFIED)
    priority: Int32 | None = optional()
    match: tuple[WasmTrafficSelector, ...] = repeated()
    wasm: WasmConfig | None = optional(oneof="filter_config")
    lua: LuaConfig | None = optional(oneof="filter_config")


def validate_traffic_extension(spec: TrafficExtension, ctx: ValidationContext) -> None:
    """The CRD rules and Istio's webhook rules for TrafficExtension.

    The Wasm module and the traffic selectors follow WasmPlugin's rules. Where the CRD and the webhook
    check the same thing, only the CRD's message is given (the API server rejects before the webhook runs).
    A Lua script that names neither ``envoy_on_request`` nor ``envoy_on_response`` gets a warning: Envoy
    would load it and never run it.
    """
    check_attachment_choice(ctx, "only one of targetRefs or selector can be set", "selector", "targetRefs")
    if ctx.has("wasm") == ctx.has("lua"):
        ctx.rule("exactly one of wasm or lua must be set")
    check_selector(ctx, spec.selector, "selector")
    check_target_refs(ctx, spec.target_refs, "targetRefs")
    check_target_refs_count(ctx, spec.target_refs, "targetRefs")
    for index, selector in enumerate(spec.match):
        _check_traffic_selector(selector, ctx.at("match", index))
    if spec.wasm is not None:
        _check_wasm(spec.wasm, ctx.at("wasm"))
    if spec.lua is not None:
        _check_lua(spec.lua, ctx.at("lua"))


def _check_wasm(wasm: WasmConfig, ctx: ValidationContext) -> None:
    _check_url(wasm.url, ctx)
    if wasm.sha256 and not _SHA256.match(wasm.sha256):
        ctx.pattern(SHA256_PATTERN, "sha256")
    for field, value, longest in (
        ("imagePullSecret", wasm.image_pull_secret, 253),
        ("pluginName", wasm.plugin_name, 256),
    ):
        if not value and ctx.has(field):
            ctx.min_length(1, field)
        elif len(value) > longest:
            ctx.max_length(longest, field)
    if wasm.vm_config is not None:
        _check_env(wasm.vm_config, ctx.at("vmConfig"))


def _check_lua(lua: LuaConfig, ctx: ValidationContext) -> None:
    code = lua.inline_code
    if not code:
        if ctx.has("inlineCode"):
            ctx.min_length(1, "inlineCode")
    elif len(code) > MAX_LUA_CODE:
        ctx.max_length(MAX_LUA_CODE, "inlineCode")
    elif not _LUA_ENTRY_POINT.search(code):
        ctx.warning(
            "the Lua code defines neither envoy_on_request nor envoy_on_response, so Envoy never runs it",
            "inlineCode",
        )


TRAFFIC_EXTENSION = register_kind(
    KindSpec(
        kind="TrafficExtension",
        group="extensions.istio.io",
        versions=("v1alpha1",),
        spec_type=TrafficExtension,
        validate=validate_traffic_extension,
        plural="trafficextensions",
        spec_required=True,
    )
)
