"""The route configurations of proxyless gRPC clients (private).

Istio names a gRPC client's route configuration after the default cluster of the service port it calls,
``outbound|<port>||<host>``, and fills it with the sidecar's virtual hosts of that port. Here it holds the
one virtual host of that service, with the sidecar's routes (VirtualService matches, weighted subsets,
timeouts as ``max_stream_duration``, retries, faults, consistent-hash policies) and the domain ``*``: a
listener names the configuration only for that service, whatever short name the client dialled.

What gRPC would reject or cannot act on is left out of the routes: per-route configs of filters other than
the fault filter (gRPC refuses a config for a filter it does not know, and CORS is not one it knows) and
mirror policies (gRPC does not mirror). A port the registry does not declare as HTTP (``tcp``, say) gets
one default route to the service's cluster: a gRPC client always speaks HTTP/2.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final, final

from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from google.protobuf import wrappers_pb2

from mesh_model import Service, ServicePort
from mesh_xds.generate import _route_features as features
from mesh_xds.generate._route import consistent_hash_for
from mesh_xds.generate.context import GenerationContext
from mesh_xds.generate.names import DEFAULT_ROUTE, outbound_cluster, virtual_host_name
from mesh_xds.generate.rds import build_routes

__all__ = ["GrpcRoutes", "route_configuration"]

_KEPT_FILTER_CONFIGS: Final = frozenset({features.FAULT_FILTER})
"""The per-route filter configs a gRPC client accepts (it only runs the fault filter and the router)."""


def route_configuration(name: str, hosts: list[Any]) -> Any:
    """A RouteConfiguration named ``name`` holding ``hosts``."""
    return route_pb2.RouteConfiguration(
        name=name, virtual_hosts=hosts, validate_clusters=wrappers_pb2.BoolValue(value=False)
    )


def _trimmed_route(route: Any) -> Any:
    """A copy of a sidecar route without what gRPC refuses or ignores on purpose."""
    out = rc.Route()
    out.CopyFrom(route)
    for name in list(out.typed_per_filter_config):
        if name not in _KEPT_FILTER_CONFIGS:
            del out.typed_per_filter_config[name]
    if out.WhichOneof("action") == "route":
        del out.route.request_mirror_policies[:]
    return out


def _grpc_virtual_host(host: Any) -> Any:
    out = rc.VirtualHost(name=host.name, domains=["*"], routes=[_trimmed_route(route) for route in host.routes])
    for name, config in host.typed_per_filter_config.items():
        if name in _KEPT_FILTER_CONFIGS:
            out.typed_per_filter_config[name].CopyFrom(config)
    return out


@final
class GrpcRoutes:
    """Builds the gRPC virtual hosts of a proxy from its sidecar routes of ``ports``, built once."""

    def __init__(self, ctx: GenerationContext, ports: Iterable[int]) -> None:
        self.ctx = ctx
        self._hosts: dict[int, dict[str, Any]] = {}
        wanted = sorted(set(ports))
        for configuration in build_routes(ctx, [str(port) for port in wanted]) if wanted else ():
            hosts = self._hosts.setdefault(int(configuration.name), {})  # type: ignore[attr-defined]
            for host in configuration.virtual_hosts:  # type: ignore[attr-defined]
                hosts.setdefault(host.name, host)

    def default_virtual_host(self, service: Service, port: ServicePort) -> Any:
        """Every call to the service's cluster, with Istio's default retries and no timeout."""
        host = service.hostname.value
        action = rc.RouteAction(cluster=outbound_cluster(port.number, host))
        features.set_timeout(action, None, grpc=True)
        retries = features.retry_policy(self.ctx.mesh.default_http_retry_policy)
        if retries is not None:
            action.retry_policy.CopyFrom(retries)
        hashing = features.hash_policy(consistent_hash_for(self.ctx, service, port.number))
        if hashing is not None:
            action.hash_policy.append(hashing)
        route = rc.Route(name=DEFAULT_ROUTE, match=rc.RouteMatch(prefix="/"), route=action)
        route.decorator.operation = f"{host}:{port.number}/*"
        return rc.VirtualHost(name=virtual_host_name(host, port.number), domains=["*"], routes=[route])

    def virtual_host(self, service: Service, port: ServicePort) -> Any:
        """The virtual host of a service port as a gRPC client gets it."""
        name = virtual_host_name(service.hostname.value, port.number)
        sidecar = self._hosts.get(port.number, {}).get(name)
        if sidecar is None:
            return self.default_virtual_host(service, port)
        return _grpc_virtual_host(sidecar)
