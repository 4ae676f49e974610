"""One-line summaries of Envoy resources, in the words of ``istioctl proxy-config``.

Each function reads a resource in Envoy's JSON form (as :class:`~mesh_xds.status_client.ProxyResource`
holds it, or as ``/config_dump`` shows it) and returns frozen rows: a cluster's service, port, subset,
direction, type and DestinationRule; a listener's addresses, port, filter chain match and destination; a
route's virtual host, domains, match and VirtualService; an endpoint's address, health and cluster; a
secret's kind and its public certificates (never a key)::

    for resource in proxy.resources_of(CLUSTER_TYPE):
        row = summarize_cluster(resource.config)
        print(row.service_fqdn, row.port, row.subset, row.direction, row.type, row.destination_rule)

Names follow Istio: a cluster ``outbound|9080|v1|reviews.default.svc.cluster.local`` is service
``reviews.default.svc.cluster.local``, port 9080, subset ``v1``, direction ``outbound``; the config object a
resource came from is read from its ``filter_metadata.istio.config`` path and shown as ``name.namespace``.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final, final

import attrs

__all__ = [
    "ClusterSummary",
    "EndpointSummary",
    "ListenerSummary",
    "RouteSummary",
    "SecretSummary",
    "summarize_cluster",
    "summarize_cluster_status",
    "summarize_listener",
    "summarize_load_assignment",
    "summarize_route_configuration",
    "summarize_secret",
]

_CONFIG_PATH = re.compile(r"/namespaces/([^/]+)/[^/]+/([^/]+)\Z")
_PEM_CERTIFICATE = re.compile(r"-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\s]*-----END CERTIFICATE-----")
_HCM: Final = "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
_TCP_PROXY: Final = "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"


def _map(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: object) -> Sequence[Any]:
    return value if isinstance(value, list) else ()


def _int(value: object) -> int | None:
    try:
        return int(value) if isinstance(value, int | str) and not isinstance(value, bool) else None
    except ValueError:
        return None


def _config_object(metadata: object) -> str:
    """``name.namespace`` of the Istio config object in ``filter_metadata.istio.config``, else empty."""
    path = _map(_map(_map(metadata).get("filter_metadata")).get("istio")).get("config")
    match = _CONFIG_PATH.search(path) if isinstance(path, str) else None
    return f"{match.group(2)}.{match.group(1)}" if match else ""


@final
@attrs.frozen
class ClusterSummary:
    """A cluster as ``istioctl proxy-config cluster`` shows it.

    Attributes:
        name: the cluster's name.
        service_fqdn: the service host of an Istio cluster name, else the whole name.
        port: the service port, ``None`` when the name has none.
        subset: the DestinationRule subset, empty for none.
        direction: ``outbound`` or ``inbound`` for Istio names, else empty.
        type: the discovery type (``EDS``, ``STATIC``, ``STRICT_DNS``, ``ORIGINAL_DST``...) or the custom
            cluster type's name.
        destination_rule: the DestinationRule it came from, ``name.namespace``, empty when none.
    """

    name: str
    service_fqdn: str
    port: int | None
    subset: str
    direction: str
    type: str
    destination_rule: str


def summarize_cluster(config: Mapping[str, Any]) -> ClusterSummary:
    """Summarize a Cluster given in Envoy's JSON form."""
    name = str(config.get("name", ""))
    parts = name.split("|")
    if len(parts) == 4 and parts[0] in ("inbound", "outbound") and parts[1].isdigit():
        direction, port, subset, host = parts[0], int(parts[1]), parts[2], parts[3]
    else:
        direction, port, subset, host = "", None, "", name
    custom = _map(config.get("cluster_type")).get("name")
    kind = str(custom) if custom else str(config.get("type", "STATIC"))
    return ClusterSummary(name, host, port, subset, direction, kind, _config_object(config.get("metadata")))


@final
@attrs.frozen
class ListenerSummary:
    """One filter chain of a listener, as ``istioctl proxy-config listener`` shows it.

    Attributes:
        name: the listener's name.
        addresses: the addresses it binds (``ip``, ``unix:path`` or an internal listener's name).
        port: the port, ``None`` for a pipe or an internal listener.
        match: the filter chain match (``ALL`` when it matches everything), e.g.
            ``SNI: a.example.com; Trans: tls; App: h2``.
        destination: where the chain sends traffic: ``Route: <name>``, ``Inline Route: <name>``,
            ``Cluster: <name>``, or the last network filter's name.
    """

    name: str
    addresses: tuple[str, ...]
    port: int | None
    match: str
    destination: str


def _address(address: Mapping[str, Any]) -> tuple[str, int | None]:
    socket = _map(address.get("socket_address"))
    if socket:
        return str(socket.get("address", "")), _int(socket.get("port_value"))
    pipe = _map(address.get("pipe"))
    if pipe:
        return f"unix:{pipe.get('path', '')}", None
    internal = _map(address.get("envoy_internal_address"))
    return str(internal.get("server_listener_name", "")), None


def _chain_match(match: Mapping[str, Any]) -> str:
    parts = []
    ranges = [f"{r.get('address_prefix', '')}/{r.get('prefix_len', 0)}" for r in _list(match.get("prefix_ranges"))]
    if ranges:
        parts.append("Addr: " + ",".join(ranges))
    if match.get("destination_port") is not None:
        parts.append(f"Port: {match['destination_port']}")
    if _list(match.get("server_names")):
        parts.append("SNI: " + ",".join(map(str, match["server_names"])))
    if match.get("transport_protocol"):
        parts.append(f"Trans: {match['transport_protocol']}")
    if _list(match.get("application_protocols")):
        parts.append("App: " + ",".join(map(str, match["application_protocols"])))
    return "; ".join(parts) or "ALL"


def _chain_destination(chain: Mapping[str, Any]) -> str:
    filters = [_map(item) for item in _list(chain.get("filters"))]
    for network_filter in reversed(filters):
        config = _map(network_filter.get("typed_config"))
        kind = str(config.get("@type", "")).rpartition("/")[2]
        if kind == _HCM:
            if _map(config.get("rds")):
                return f"Route: {_map(config['rds']).get('route_config_name', '')}"
            if _map(config.get("route_config")):
                return f"Inline Route: {_map(config['route_config']).get('name', '')}".rstrip()
            return "Route: (scoped)" if config.get("scoped_routes") else "HTTP"
        if kind == _TCP_PROXY:
            if config.get("cluster"):
                return f"Cluster: {config['cluster']}"
            weighted = [
                str(_map(c).get("name", "")) for c in _list(_map(config.get("weighted_clusters")).get("clusters"))
            ]
            return "Cluster: " + ", ".join(weighted) if weighted else "TCP"
    return str(filters[-1].get("name", "")) if filters else "Non-HTTP/Non-TCP"


def summarize_listener(config: Mapping[str, Any]) -> tuple[ListenerSummary, ...]:
    """Summarize a Listener given in Envoy's JSON form: one row per filter chain (the default chain last)."""
    name = str(config.get("name", ""))
    host, port = _address(_map(config.get("address")))
    addresses = [host] + [
        _address(_map(_map(extra).get("address")))[0] for extra in _list(config.get("additional_addresses"))
    ]
    chains = [_map(chain) for chain in _list(config.get("filter_chains"))]
    rows = [
        ListenerSummary(
            name, tuple(addresses), port, _chain_match(_map(chain.get("filter_chain_match"))), _chain_destination(chain)
        )
        for chain in chains
    ]
    default = _map(config.get("default_filter_chain"))
    if default:
        rows.append(ListenerSummary(name, tuple(addresses), port, "(default)", _chain_destination(default)))
    if not rows:
        rows.append(ListenerSummary(name, tuple(addresses), port, "ALL", "Non-HTTP/Non-TCP"))
    return tuple(rows)


@final
@attrs.frozen
class RouteSummary:
    """One route of a route configuration, as ``istioctl proxy-config route`` shows it.

    Attributes:
        name: the route configuration's name.
        virtual_host: the virtual host's name.
        domains: the virtual host's domains.
        match: the route's match: ``/*`` for every path, ``/api*`` for a prefix, ``/exact`` for a path,
            the regular expression of a regex; empty for a virtual host without routes.
        virtual_service: the VirtualService the route came from, ``name.namespace``, empty when none.
    """

    name: str
    virtual_host: str
    domains: tuple[str, ...]
    match: str
    virtual_service: str


def _route_match(match: Mapping[str, Any]) -> str:
    if "prefix" in match:
        return f"{match['prefix'] or '/'}*"
    if "path" in match:
        return str(match["path"])
    if "safe_regex" in match:
        return str(_map(match["safe_regex"]).get("regex", ""))
    if "path_separated_prefix" in match:
        return f"{match['path_separated_prefix']}/*"
    if "connect_matcher" in match:
        return "CONNECT"
    return "/*" if not match else "(custom)"


def summarize_route_configuration(config: Mapping[str, Any]) -> tuple[RouteSummary, ...]:
    """Summarize a RouteConfiguration given in Envoy's JSON form: one row per route of each virtual host."""
    name = str(config.get("name", ""))
    rows = []
    for host in map(_map, _list(config.get("virtual_hosts"))):
        domains = tuple(map(str, _list(host.get("domains"))))
        routes = [_map(route) for route in _list(host.get("routes"))]
        vhost = str(host.get("name", ""))
        for route in routes:
            rows.append(
                RouteSummary(
                    name, vhost, domains, _route_match(_map(route.get("match"))), _config_object(route.get("metadata"))
                )
            )
        if not routes:
            rows.append(RouteSummary(name, vhost, domains, "", ""))
    return tuple(rows)


@final
@attrs.frozen
class EndpointSummary:
    """One endpoint of a cluster, as ``istioctl proxy-config endpoint`` shows it.

    Attributes:
        endpoint: ``ip:port``, ``unix:path`` or an internal listener's name.
        status: the health status (``HEALTHY``, ``UNHEALTHY``, ``DRAINING``, ``UNKNOWN``...): the one EDS
            gave, or ``UNHEALTHY`` when the proxy's own health checking failed the host.
        outlier_check: ``OK`` or ``FAILED`` (outlier detection, from a proxy's ``/clusters``), empty when not
            known.
        cluster: the cluster (or load assignment) it belongs to.
        locality: ``region/zone/subzone``, empty when not set.
        weight: its load balancing weight, ``None`` when not set.
    """

    endpoint: str
    status: str
    outlier_check: str
    cluster: str
    locality: str = ""
    weight: int | None = None


def _endpoint_text(address: Mapping[str, Any]) -> str:
    host, port = _address(address)
    if port is None:
        return host
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _locality(locality: Mapping[str, Any]) -> str:
    return "/".join(str(locality.get(key, "")) for key in ("region", "zone", "sub_zone")).rstrip("/")


def summarize_load_assignment(config: Mapping[str, Any]) -> tuple[EndpointSummary, ...]:
    """Summarize a ClusterLoadAssignment given in Envoy's JSON form: one row per endpoint."""
    cluster = str(config.get("cluster_name", ""))
    rows = []
    for group in map(_map, _list(config.get("endpoints"))):
        locality = _locality(_map(group.get("locality")))
        for item in map(_map, _list(group.get("lb_endpoints"))):
            address = _map(_map(item.get("endpoint")).get("address"))
            status = str(item.get("health_status", "UNKNOWN"))
            rows.append(
                EndpointSummary(
                    _endpoint_text(address), status, "", cluster, locality, _int(item.get("load_balancing_weight"))
                )
            )
    return tuple(rows)


def summarize_cluster_status(status: Mapping[str, Any]) -> tuple[EndpointSummary, ...]:
    """Summarize one cluster of an Envoy's ``/clusters?format=json``: one row per host, with its outlier check."""
    cluster = str(status.get("name", ""))
    rows = []
    for host in map(_map, _list(status.get("host_statuses"))):
        health = _map(host.get("health_status"))
        failed = any(value for key, value in health.items() if key.startswith("failed_") and "outlier" not in key)
        outlier = "FAILED" if health.get("failed_outlier_check") else "OK"
        state = "UNHEALTHY" if failed else str(health.get("eds_health_status", "HEALTHY"))
        rows.append(
            EndpointSummary(
                _endpoint_text(_map(host.get("address"))),
                state,
                outlier,
                cluster,
                _locality(_map(host.get("locality"))),
                _int(host.get("weight")),
            )
        )
    return tuple(rows)


@final
@attrs.frozen
class SecretSummary:
    """A secret as ``istioctl proxy-config secret`` shows it: what it holds, never a key.

    Attributes:
        name: the secret's name.
        kind: ``Cert Chain`` (a certificate and its key), ``CA`` (a validation context),
            ``Session Ticket Keys``, ``Generic`` or ``Unknown``.
        certificates: the PEM certificates it holds inline (the chain of a ``Cert Chain``, the roots of a
            ``CA``), public material only.
        files: the files it names instead of inline data (certificates, keys, roots).
    """

    name: str
    kind: str
    certificates: tuple[str, ...] = ()
    files: tuple[str, ...] = ()


def _source_text(source: Mapping[str, Any]) -> str:
    if isinstance(source.get("inline_string"), str):
        return str(source["inline_string"])
    if isinstance(source.get("inline_bytes"), str):
        try:
            return base64.b64decode(source["inline_bytes"], validate=True).decode("ascii", "replace")
        except (binascii.Error, ValueError):
            return ""
    return ""


def summarize_secret(config: Mapping[str, Any]) -> SecretSummary:
    """Summarize a Secret given in Envoy's JSON form; private keys are never read."""
    name = str(config.get("name", ""))
    certificates: list[str] = []
    files: list[str] = []

    def take(source: object) -> None:
        source = _map(source)
        certificates.extend(match.group(0) + "\n" for match in _PEM_CERTIFICATE.finditer(_source_text(source)))
        if isinstance(source.get("filename"), str):
            files.append(source["filename"])

    if "tls_certificate" in config:
        kind = "Cert Chain"
        take(_map(config["tls_certificate"]).get("certificate_chain"))
    elif "validation_context" in config:
        kind = "CA"
        take(_map(config["validation_context"]).get("trusted_ca"))
    elif "session_ticket_keys" in config:
        kind = "Session Ticket Keys"
    elif "generic_secret" in config:
        kind = "Generic"
    else:
        kind = "Unknown"
    return SecretSummary(name, kind, tuple(certificates), tuple(files))
