"""What can be checked of an EnvoyFilter patch value without Envoy's protos (private).

Istio converts each patch value to the Envoy message its ``applyTo`` names, which resolves every ``@type``
in it. mesh_config must not import Envoy's protos, so it checks what the names alone tell:

* ``@type`` names of Envoy's v2 API (``envoy.api.v2``, ``envoy.config.filter.*.v2``, ``...v2alpha``) no
  longer resolve in Istio and are errors, with Istio's hint to use the v3 API;
* names in a small table of deprecated or removed types are warnings that name the replacement;
* names of no known shape are warnings (Istio rejects a type it cannot resolve; mesh_config cannot tell);
* filters given by ``name`` without ``typed_config`` (or ``config_discovery``) are warnings, as in Istio;
* deprecated filter names in matches (``envoy.router``, ...) are warnings, as in Istio.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = [
    "DEPRECATED_FILTER_NAMES",
    "DEPRECATED_TYPES",
    "HTTP_CONNECTION_MANAGER",
    "TypeProblem",
    "missing_typed_config",
    "type_problems",
]

HTTP_CONNECTION_MANAGER = "envoy.filters.network.http_connection_manager"

DEPRECATED_FILTER_NAMES: Mapping[str, str] = {
    "envoy.buffer": "envoy.filters.http.buffer",
    "envoy.cors": "envoy.filters.http.cors",
    "envoy.csrf": "envoy.filters.http.csrf",
    "envoy.http_dynamo_filter": "envoy.filters.http.dynamo",
    "envoy.ext_authz": "envoy.filters.http.ext_authz",
    "envoy.fault": "envoy.filters.http.fault",
    "envoy.grpc_http1_bridge": "envoy.filters.http.grpc_http1_bridge",
    "envoy.grpc_json_transcoder": "envoy.filters.http.grpc_json_transcoder",
    "envoy.grpc_web": "envoy.filters.http.grpc_web",
    "envoy.gzip": "envoy.filters.http.gzip",
    "envoy.health_check": "envoy.filters.http.health_check",
    "envoy.ip_tagging": "envoy.filters.http.ip_tagging",
    "envoy.lua": "envoy.filters.http.lua",
    "envoy.rate_limit": "envoy.filters.http.ratelimit",
    "envoy.router": "envoy.filters.http.router",
    "envoy.squash": "envoy.filters.http.squash",
    "envoy.listener.http_inspector": "envoy.filters.listener.http_inspector",
    "envoy.listener.original_dst": "envoy.filters.listener.original_dst",
    "envoy.listener.original_src": "envoy.filters.listener.original_src",
    "envoy.listener.proxy_protocol": "envoy.filters.listener.proxy_protocol",
    "envoy.listener.tls_inspector": "envoy.filters.listener.tls_inspector",
    "envoy.client_ssl_auth": "envoy.filters.network.client_ssl_auth",
    "envoy.http_connection_manager": HTTP_CONNECTION_MANAGER,
    "envoy.mongo_proxy": "envoy.filters.network.mongo_proxy",
    "envoy.ratelimit": "envoy.filters.network.ratelimit",
    "envoy.redis_proxy": "envoy.filters.network.redis_proxy",
    "envoy.tcp_proxy": "envoy.filters.network.tcp_proxy",
}
"""Istio's table of deprecated Envoy filter names and their canonical names (``pkg/config/xds/deprecated.go``)."""

DEPRECATED_TYPES: Mapping[str, str] = {
    "udpa.type.v1.TypedStruct": "use xds.type.v3.TypedStruct",
    "envoy.extensions.filters.http.gzip.v3.Gzip": (
        "removed from Envoy; use envoy.extensions.filters.http.compressor.v3.Compressor"
    ),
    "envoy.extensions.filters.http.squash.v3.Squash": "removed from Envoy",
    "envoy.config.trace.v3.LightstepConfig": "removed from Envoy; use envoy.config.trace.v3.OpenTelemetryConfig",
    "envoy.config.trace.v3.OpenCensusConfig": "removed from Envoy; use envoy.config.trace.v3.OpenTelemetryConfig",
}
"""Type names that still appear in user config but are deprecated or gone, with what to do instead."""

_V2 = re.compile(r"\.v2(?:alpha\d*|beta\d*)?\.")
_KNOWN_SHAPE = re.compile(
    r"(?:envoy\.[a-z0-9_.]+\.v3(?:alpha)?\.[A-Z][A-Za-z0-9_.]*"
    r"|xds\.type\.v3\.TypedStruct|udpa\.type\.v1\.TypedStruct"
    r"|google\.protobuf\.[A-Z][A-Za-z0-9]*"
    r"|(?:istio|io\.istio)\.[a-z0-9_.]+\.[A-Z][A-Za-z0-9_]*|stats\.PluginConfig)\Z"
)
_TYPED_STRUCTS = frozenset({"udpa.type.v1.TypedStruct", "xds.type.v3.TypedStruct"})
_FILTER_LISTS = frozenset({"filters", "http_filters", "httpFilters", "listener_filters", "listenerFilters"})

Path = tuple[str | int, ...]


class TypeProblem:
    """One finding about an ``@type``: where it is, whether it is an error, and the message."""

    __slots__ = ("error", "message", "path")

    def __init__(self, path: Path, message: str, *, error: bool) -> None:
        self.path = path
        self.message = message
        self.error = error


def type_problems(value: object) -> list[TypeProblem]:
    """The findings about every ``@type`` inside a patch value (a JSON object; paths relative to it)."""
    found: list[TypeProblem] = []
    for path, type_url in _type_urls(value, ()):
        if not isinstance(type_url, str):
            found.append(TypeProblem(path, f"@type must be a string, not {type_url!r}", error=True))
            continue
        name = type_url.rpartition("/")[2]
        if name.startswith("envoy.") and _V2.search(name):
            message = f"referenced type unknown (hint: try using the v3 XDS API): {type_url!r}"
            found.append(TypeProblem(path, message, error=True))
        elif name in DEPRECATED_TYPES:
            found.append(
                TypeProblem(path, f"using deprecated type_url {type_url!r}: {DEPRECATED_TYPES[name]}", error=False)
            )
        elif not _KNOWN_SHAPE.match(name):
            message = (
                f"referenced type {type_url!r} is not a known Envoy v3 type; Istio rejects types it cannot resolve"
            )
            found.append(TypeProblem(path, message, error=False))
    return found


def _type_urls(node: object, path: Path) -> Iterator[tuple[Path, object]]:
    if isinstance(node, Mapping):
        type_url = node.get("@type")
        if type_url is not None:
            yield (*path, "@type"), type_url
        for key, item in node.items():
            # A TypedStruct's value is a plain Struct: its content is not resolved.
            if key == "value" and _is_typed_struct(node):
                continue
            yield from _type_urls(item, (*path, key))
    elif isinstance(node, tuple | list):
        for index, item in enumerate(node):
            yield from _type_urls(item, (*path, index))


def _is_typed_struct(node: Mapping[str, Any]) -> bool:
    type_url = node.get("@type")
    return isinstance(type_url, str) and type_url.rpartition("/")[2] in _TYPED_STRUCTS


def missing_typed_config(value: object, *, is_filter: bool) -> list[str]:
    """Names of filters in ``value`` configured by name only (no ``typed_config`` or ``config_discovery``).

    ``is_filter`` says whether ``value`` itself is a filter (HTTP_FILTER, NETWORK_FILTER, LISTENER_FILTER).
    """
    names: list[str] = []
    if is_filter and isinstance(value, Mapping):
        _note_untyped(value, names)
    _walk_filters(value, names)
    return names


def _note_untyped(node: Mapping[str, Any], names: list[str]) -> None:
    keys = ("typed_config", "typedConfig", "config_discovery", "configDiscovery")
    if not any(key in node for key in keys):
        name = node.get("name", "")
        names.append(name if isinstance(name, str) else repr(name))


def _walk_filters(node: object, names: list[str]) -> None:
    if isinstance(node, Mapping):
        opaque = _is_typed_struct(node)
        for key, item in node.items():
            if key in _FILTER_LISTS and isinstance(item, tuple | list):
                for element in item:
                    if isinstance(element, Mapping):
                        _note_untyped(element, names)
            if not (opaque and key == "value"):
                _walk_filters(item, names)
    elif isinstance(node, tuple | list):
        for item in node:
            _walk_filters(item, names)
