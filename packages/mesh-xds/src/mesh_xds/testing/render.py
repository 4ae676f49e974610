"""Generated resources as one static Envoy config, for ``envoy --mode validate``.

Generators give Envoy clusters that fetch endpoints over ADS and listeners that fetch routes over RDS;
:func:`static_bootstrap` puts them into a bootstrap Envoy can check without a control plane::

    config = static_bootstrap(clusters=clusters, listeners=listeners, routes=routes, load_assignments=cla)
    validate_config(config, check=True)

* RDS references in HTTP connection managers are replaced by the route configuration of that name;
* an EDS cluster with a load assignment of its service name becomes a STATIC cluster holding it, so that
  Envoy checks the endpoints too; other EDS clusters keep fetching over ADS;
* the bootstrap clusters generated resources refer to (``xds-grpc``, ``sds-grpc``) and any names given as
  ``stub_clusters`` become STATIC clusters to an unused loopback port;
* secrets fetched over ADS (``credentialName``) are fetched from ``xds-grpc`` over gRPC instead: Envoy
  1.40 crashes when a static resource asks ADS for a secret, which a resource from CDS or LDS may do.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from google.protobuf import json_format
from google.protobuf.message import Message

from mesh_xds.generate.names import SDS_CLUSTER, XDS_CLUSTER

__all__ = ["DEFAULT_NODE_ID", "static_bootstrap", "to_json"]

DEFAULT_NODE_ID = "sidecar~127.0.0.1~render.default~default.svc.cluster.local"
"""The node id of a rendered bootstrap."""

_HTTP2_OPTIONS = {
    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
        "explicit_http_config": {"http2_protocol_options": {}},
    }
}


def to_json(message: Message) -> dict[str, Any]:
    """A message as Envoy's JSON (proto field names, ``@type`` in Any fields)."""
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def _without_ads_secrets(value: Any) -> Any:
    if isinstance(value, list):
        return [_without_ads_secrets(item) for item in value]
    if not isinstance(value, dict):
        return value
    out = {key: _without_ads_secrets(item) for key, item in value.items()}
    source = out.get("sds_config")
    if isinstance(source, dict) and "ads" in source:
        grpc = {"envoy_grpc": {"cluster_name": XDS_CLUSTER}}
        api = {"api_type": "GRPC", "transport_api_version": "V3", "grpc_services": [grpc]}
        out["sds_config"] = {"api_config_source": api, "resource_api_version": "V3"}
    return out


def _stub_cluster(name: str) -> dict[str, Any]:
    address = {"socket_address": {"address": "127.0.0.1", "port_value": 9}}
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "typed_extension_protocol_options": _HTTP2_OPTIONS,
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": address}}]}],
        },
    }


def _inline_cluster(cluster: Any, assignments: Mapping[str, Any]) -> Any:
    if cluster.type != cluster_pb2.Cluster.EDS:
        return cluster
    service = cluster.eds_cluster_config.service_name or cluster.name
    assignment = assignments.get(service)
    if assignment is None:
        return cluster
    static = cluster_pb2.Cluster()
    static.CopyFrom(cluster)
    static.ClearField("eds_cluster_config")
    static.type = cluster_pb2.Cluster.STATIC
    static.load_assignment.CopyFrom(assignment)
    static.load_assignment.cluster_name = cluster.name
    return static


def _inline_routes(listener: Any, routes: Mapping[str, Any]) -> Any:
    copy = listener_pb2.Listener()
    copy.CopyFrom(listener)
    chains = list(copy.filter_chains)
    if copy.HasField("default_filter_chain"):
        chains.append(copy.default_filter_chain)
    for chain in chains:
        for network_filter in chain.filters:
            manager = hcm_pb2.HttpConnectionManager()
            if not network_filter.typed_config.Unpack(manager) or not manager.HasField("rds"):
                continue
            name = manager.rds.route_config_name
            if name not in routes:
                raise ValueError(f"listener {listener.name!r} uses route configuration {name!r}, which was not given")
            manager.route_config.CopyFrom(routes[name])
            network_filter.typed_config.Pack(manager)
    return copy


def static_bootstrap(
    *,
    clusters: Iterable[Message] = (),
    listeners: Iterable[Message] = (),
    routes: Iterable[Message] = (),
    load_assignments: Iterable[Message] = (),
    stub_clusters: Iterable[str] = (),
    node_id: str = DEFAULT_NODE_ID,
) -> dict[str, Any]:
    """A bootstrap (JSON-ready) holding the resources as static ones.

    Args:
        clusters: Cluster messages.
        listeners: Listener messages; their RDS references must name one of ``routes``.
        routes: RouteConfiguration messages, inlined where listeners refer to them.
        load_assignments: ClusterLoadAssignment messages, inlined into the EDS clusters they serve.
        stub_clusters: names of clusters the resources refer to but that are not given.
        node_id: the node id Envoy runs with.

    Raises:
        ValueError: a listener refers to a route configuration that was not given.
    """
    by_route = {route.name: route for route in routes}  # type: ignore[attr-defined]
    by_service = {cla.cluster_name: cla for cla in load_assignments}  # type: ignore[attr-defined]
    rendered = [_without_ads_secrets(to_json(_inline_cluster(cluster, by_service))) for cluster in clusters]
    names = {cluster["name"] for cluster in rendered}
    for name in (XDS_CLUSTER, SDS_CLUSTER, *stub_clusters):
        if name not in names:
            rendered.append(_stub_cluster(name))
            names.add(name)
    ads = {
        "api_type": "GRPC",
        "transport_api_version": "V3",
        "grpc_services": [{"envoy_grpc": {"cluster_name": XDS_CLUSTER}}],
        "set_node_on_first_message_only": True,
    }
    return {
        "node": {"id": node_id, "cluster": "render"},
        "static_resources": {
            "clusters": rendered,
            "listeners": [_without_ads_secrets(to_json(_inline_routes(listener, by_route))) for listener in listeners],
        },
        "dynamic_resources": {"ads_config": ads},
    }
