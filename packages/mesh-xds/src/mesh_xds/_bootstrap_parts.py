"""Checks of bootstrap options and the JSON fragments of an Envoy bootstrap (private to mesh_xds.bootstrap)."""

from __future__ import annotations

import ipaddress
import json
import math
import os
from collections.abc import Mapping
from typing import Any

from mesh_model import InvalidValueError, Labels, Locality
from mesh_xds.errors import XdsError

MAX_PORT = 65535
MAX_UNIX_PATH = 107  # sun_path holds 108 bytes with the terminating NUL
_MAX_SHOWN = 80
_TYPED_H2 = {
    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
        "explicit_http_config": {"http2_protocol_options": {}},
    }
}
_HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
_CONNECTIONS = (
    "type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig"
)
# Istio's tag extraction (envoy_bootstrap.json), so that Prometheus labels read the same as Istio's.
_ADDRESS = r"(((?:[_.[:digit:]]*|[_\[\]aAbBcCdDeEfF[:digit:]]*))\.)"
_STATS_TAGS = (
    ("cluster_name", r"^cluster\.((.+?(\..+?\.svc\.cluster\.local)?)\.)"),
    ("tcp_prefix", r"^tcp\.((.*?)\.)\w+?$"),
    ("response_code", r"_rq(_(\d{3}))$"),
    ("response_code_class", r"_rq(_(\dxx))$"),
    ("http_conn_manager_listener_prefix", r"^listener(?=\.).*?\.http\." + _ADDRESS),
    ("http_conn_manager_prefix", r"^http\." + _ADDRESS),
    ("listener_address", r"^listener\." + _ADDRESS),
    ("cache", r"(cache\.(.+?)\.)"),
    ("component", r"(component\.(.+?)\.)"),
    ("tag", r"(tag\.(.+?);\.)"),
    ("authz_enforce_result", r"rbac(\.(allowed|denied))"),
    ("authz_dry_run_action", r"(\.istio_dry_run_(allow|deny)_)"),
    ("authz_dry_run_result", r"(\.shadow_(allowed|denied))"),
)


class InvalidBootstrapError(XdsError, ValueError):
    """A bootstrap option is malformed, or two options contradict each other."""


def describe(value: object) -> str:
    """Quote ``value`` for an error message, shortened in the middle when long."""
    text = repr(value)
    half = _MAX_SHOWN // 2
    return text if len(text) <= _MAX_SHOWN else f"{text[:half]}...{text[-half:]}"


def check_text(what: str, value: object, *, allow_empty: bool = False, forbidden: str = "") -> None:
    """Raise unless ``value`` is a printable string without the ``forbidden`` characters."""
    if not isinstance(value, str):
        raise InvalidBootstrapError(f"{what} must be a string, not {describe(value)}")
    if not value and not allow_empty:
        raise InvalidBootstrapError(f"{what} is empty")
    bad = [char for char in value if char in forbidden or not char.isprintable()]
    if bad:
        raise InvalidBootstrapError(f"{what} {describe(value)} may not contain {describe(bad[0])}")


def check_port(what: str, value: object, *, allow_zero: bool = False) -> None:
    """Raise unless ``value`` is a port number (0 only when ``allow_zero``: a free port)."""
    low = 0 if allow_zero else 1
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= MAX_PORT:
        raise InvalidBootstrapError(f"{what} {describe(value)} is not a port number in {low}..{MAX_PORT}")


def check_ip(what: str, value: object, *, loopback: bool = False) -> None:
    """Raise unless ``value`` is an IP address (a loopback one when ``loopback``)."""
    if not isinstance(value, str):
        raise InvalidBootstrapError(f"{what} must be a string, not {describe(value)}")
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        raise InvalidBootstrapError(f"{what} {describe(value)} is not an IP address") from None
    if loopback and not address.is_loopback:
        raise InvalidBootstrapError(f"{what} {describe(value)} is not a loopback address (127.0.0.0/8 or ::1)")


def check_path(what: str, value: object, *, max_bytes: int | None = None) -> None:
    """Raise unless ``value`` is a non-empty path without NUL (and at most ``max_bytes`` long)."""
    if not isinstance(value, str | os.PathLike):
        raise InvalidBootstrapError(f"{what} must be a path, not {describe(value)}")
    text = os.fspath(value)
    if not isinstance(text, str) or not text or "\x00" in text:
        raise InvalidBootstrapError(f"{what} {describe(value)} is not a usable file path")
    if max_bytes is not None and len(text.encode()) > max_bytes:
        raise InvalidBootstrapError(f"{what} {describe(text)} is longer than the {max_bytes} bytes a socket allows")


def check_seconds(what: str, value: object, *, allow_zero: bool) -> None:
    """Raise unless ``value`` is a finite number of seconds, positive (or zero when ``allow_zero``)."""
    number = value if isinstance(value, int | float) and not isinstance(value, bool) else math.nan
    if not math.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
        bound = "zero or more" if allow_zero else "more than zero"
        raise InvalidBootstrapError(f"{what} {describe(value)} is not a number of seconds, {bound}")


def check_json_map(what: str, value: object) -> None:
    """Raise unless ``value`` is a mapping with string keys and JSON values."""
    if not isinstance(value, Mapping) or not all(isinstance(key, str) for key in value):
        raise InvalidBootstrapError(f"{what} {describe(value)} is not a map with string keys")
    try:
        json.dumps(dict(value), allow_nan=False)
    except (TypeError, ValueError) as error:
        raise InvalidBootstrapError(f"{what} {describe(value)} is not JSON: {error}") from None


def duration(seconds: float) -> str:
    """A protobuf JSON Duration: ``0.25s``, ``15s``."""
    return f"{seconds:.6f}".rstrip("0").rstrip(".") + "s"


def to_labels(value: Mapping[str, str] | None) -> Labels:
    """Labels from a mapping, checked as Kubernetes labels."""
    try:
        return value if isinstance(value, Labels) else Labels(value or {})
    except (InvalidValueError, TypeError, AttributeError) as error:
        raise InvalidBootstrapError(f"node labels {describe(value)}: {error}") from None


def to_locality(value: Locality | str) -> Locality:
    """A Locality from itself or a ``region/zone/subzone`` string."""
    if isinstance(value, Locality):
        return value
    try:
        return Locality.parse(value)
    except (InvalidValueError, TypeError, AttributeError) as error:
        raise InvalidBootstrapError(f"node locality {describe(value)}: {error}") from None


def to_tuple(value: object) -> tuple[str, ...]:
    """A tuple of strings from one string or a collection of them."""
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list | tuple | frozenset | set):
        raise InvalidBootstrapError(f"expected a sequence of strings, not {describe(value)}")
    return tuple(value)


def socket_address(address: str, port: int) -> dict[str, Any]:
    """An Envoy ``Address`` on TCP."""
    return {"socket_address": {"address": address, "port_value": port}}


def static_cluster(name: str, address: dict[str, Any], *, http2: bool, connect_timeout: str) -> dict[str, Any]:
    """A STATIC cluster of one endpoint; ``http2`` for gRPC."""
    endpoint = {"endpoint": {"address": address}}
    cluster: dict[str, Any] = {
        "name": name,
        "type": "STATIC",
        "connect_timeout": connect_timeout,
        "lb_policy": "ROUND_ROBIN",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [endpoint]}]},
    }
    if http2:
        cluster["typed_extension_protocol_options"] = _TYPED_H2
    return cluster


def tls_socket(ca: str, chain: str | None, key: str | None, server_name: str) -> dict[str, Any]:
    """An upstream TLS transport socket from PEM files; h2 by ALPN, SNI and SAN check when named."""
    validation: dict[str, Any] = {"trusted_ca": {"filename": ca}}
    if server_name:
        validation["match_typed_subject_alt_names"] = [{"san_type": "DNS", "matcher": {"exact": server_name}}]
    common: dict[str, Any] = {"alpn_protocols": ["h2"], "validation_context": validation}
    if chain is not None and key is not None:
        common["tls_certificates"] = [{"certificate_chain": {"filename": chain}, "private_key": {"filename": key}}]
    context: dict[str, Any] = {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
        "common_tls_context": common,
    }
    if server_name:
        context["sni"] = server_name
    return {"name": "envoy.transport_sockets.tls", "typed_config": context}


def xds_cluster(name: str, host: str, port: int, *, is_ip: bool, transport: dict[str, Any] | None) -> dict[str, Any]:
    """The cluster to the control plane: HTTP/2, keepalive, no circuit breaking (as Istio's)."""
    cluster = static_cluster(name, socket_address(host, port), http2=True, connect_timeout="1s")
    if not is_ip:
        cluster["type"] = "STRICT_DNS"
        cluster["dns_lookup_family"] = "V4_PREFERRED"
    limits = {"max_connections": 100000, "max_pending_requests": 100000, "max_requests": 100000}
    cluster["circuit_breakers"] = {"thresholds": [{"priority": "DEFAULT", **limits}, {"priority": "HIGH", **limits}]}
    cluster["upstream_connection_options"] = {"tcp_keepalive": {"keepalive_time": 300}}
    if transport is not None:
        cluster["transport_socket"] = transport
    return cluster


def _http_listener(
    name: str, address: str, port: int, routes: list[dict[str, Any]], filters: list[dict[str, Any]]
) -> dict[str, Any]:
    router = {
        "name": "envoy.filters.http.router",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
    }
    manager = {
        "@type": _HCM,
        "codec_type": "AUTO",
        "stat_prefix": name,
        "route_config": {"name": name, "virtual_hosts": [{"name": "backend", "domains": ["*"], "routes": routes}]},
        "http_filters": [*filters, router],
    }
    network_filter = {"name": "envoy.filters.network.http_connection_manager", "typed_config": manager}
    return {"name": name, "address": socket_address(address, port), "filter_chains": [{"filters": [network_filter]}]}


def readiness_listener(name: str, address: str, port: int) -> dict[str, Any]:
    """Istio's 15021: ``/healthz/ready`` answered by Envoy's health check filter (503 once draining)."""
    health_check = {
        "name": "envoy.filters.http.health_check",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.health_check.v3.HealthCheck",
            "pass_through_mode": False,
            "headers": [{"name": ":path", "string_match": {"exact": "/healthz/ready"}}],
        },
    }
    not_found = [{"match": {"prefix": "/"}, "direct_response": {"status": 404}}]
    return _http_listener(name, address, port, not_found, [health_check])


def stats_listener(name: str, address: str, port: int, cluster: str) -> dict[str, Any]:
    """Istio's 15090: ``/stats/prometheus`` routed to the admin interface through ``cluster``."""
    routes = [{"match": {"prefix": "/stats/prometheus"}, "route": {"cluster": cluster}}]
    return _http_listener(name, address, port, routes, [])


def admin(address: str, port: int) -> dict[str, Any]:
    """The admin interface, access log discarded (as Istio's)."""
    log = {
        "name": "envoy.access_loggers.file",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": "/dev/null",
        },
    }
    return {"address": socket_address(address, port), "access_log": [log]}


def stats_config() -> dict[str, Any]:
    """Istio's stats tags (without its inclusion list: every stat stays visible)."""
    tags = [{"tag_name": name, "regex": regex} for name, regex in _STATS_TAGS]
    return {"use_all_default_tags": False, "stats_tags": tags}


def overload_manager(max_connections: int) -> dict[str, Any]:
    """A limit on downstream connections (Envoy warns at startup without one)."""
    monitor = {
        "name": "envoy.resource_monitors.global_downstream_max_connections",
        "typed_config": {"@type": _CONNECTIONS, "max_active_downstream_connections": max_connections},
    }
    return {"resource_monitors": [monitor]}
