"""The mesh the xDS benchmarks serve: many services seen from a sidecar, as Istio would describe them.

Every service ``svc-NNNN.ns-NN.svc.cluster.local`` on port 8080 gives an outbound EDS cluster shaped like
Istio's (circuit breakers, auto-mTLS transport socket matches with SDS from the agent, Istio metadata), its
ClusterLoadAssignment (endpoints with locality and metadata), and a virtual host in the route
configuration ``8080`` of the listener ``0.0.0.0_8080``. A *generation* number changes every cluster and
every load assignment (a new connect timeout and circuit-breaker limit, endpoints on new addresses), while
the names, the listener and the route configuration stay the same: a push of CDS and EDS to every proxy.
"""

from __future__ import annotations

from typing import Any, Final

from envoy.config.cluster.v3 import circuit_breaker_pb2, cluster_pb2
from envoy.config.core.v3 import (
    address_pb2,
    base_pb2,
    config_source_pb2,
    grpc_service_pb2,
    health_check_pb2,
)
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.retry.host.previous_hosts.v3 import previous_hosts_pb2
from envoy.extensions.transport_sockets.raw_buffer.v3 import raw_buffer_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2, tls_pb2
from envoy.type.matcher.v3 import string_pb2
from google.protobuf import any_pb2, duration_pb2, struct_pb2, wrappers_pb2

from mesh_xds import CLUSTER_TYPE, ENDPOINT_TYPE, ResourceSet, Snapshot, pack

PORT: Final = 8080
ROUTE_NAME: Final = str(PORT)
LISTENER_NAME: Final = f"0.0.0.0_{PORT}"
ENDPOINTS_PER_CLUSTER: Final = 3
_MAX: Final = 2**32 - 1  # Istio's default circuit-breaker limits
_ZONES: Final = ("us-east1-b", "us-east1-c", "us-east1-d")

_Proto = Any  # Envoy's messages have no type stubs


def host(index: int) -> str:
    """The host name of service ``index``."""
    return f"svc-{index:04d}.ns-{index % 20:02d}.svc.cluster.local"


def cluster_name(index: int) -> str:
    """The outbound cluster of service ``index`` (Istio's ``outbound|port|subset|host``)."""
    return f"outbound|{PORT}||{host(index)}"


def node_id(index: int) -> str:
    """The node id of simulated proxy ``index``, a sidecar id as Istio's agent builds it."""
    return f"sidecar~10.200.{index // 250}.{index % 250 + 1}~client-{index:03d}.bench~bench.svc.cluster.local"


def _any(message: _Proto) -> _Proto:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def _duration(seconds: float) -> _Proto:
    value = duration_pb2.Duration()
    value.FromNanoseconds(int(seconds * 1e9))
    return value


def _ads() -> _Proto:
    return config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(), resource_api_version=config_source_pb2.V3
    )


def _agent_sds(name: str) -> _Proto:
    """A secret from Istio's agent over its own gRPC cluster (not over ADS)."""
    source = config_source_pb2.ConfigSource(
        api_config_source=config_source_pb2.ApiConfigSource(
            api_type=config_source_pb2.ApiConfigSource.GRPC,
            transport_api_version=config_source_pb2.V3,
            grpc_services=[
                grpc_service_pb2.GrpcService(envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(cluster_name="sds-grpc"))
            ],
            set_node_on_first_message_only=True,
        ),
        initial_fetch_timeout=_duration(0),
        resource_api_version=config_source_pb2.V3,
    )
    return secret_pb2.SdsSecretConfig(name=name, sds_config=source)


def _istio_metadata(index: int) -> _Proto:
    metadata = struct_pb2.Struct()
    service = metadata.get_or_create_list("services").add_struct()
    service.update({"host": host(index), "name": f"svc-{index:04d}", "namespace": f"ns-{index % 20:02d}"})
    return base_pb2.Metadata(filter_metadata={"istio": metadata})


def _mtls_socket(index: int) -> _Proto:
    context = tls_pb2.UpstreamTlsContext(
        common_tls_context=tls_pb2.CommonTlsContext(
            tls_params=common_pb2.TlsParameters(tls_minimum_protocol_version=common_pb2.TlsParameters.TLSv1_2),
            tls_certificate_sds_secret_configs=[_agent_sds("default")],
            combined_validation_context=tls_pb2.CommonTlsContext.CombinedCertificateValidationContext(
                default_validation_context=common_pb2.CertificateValidationContext(
                    match_typed_subject_alt_names=[
                        common_pb2.SubjectAltNameMatcher(
                            san_type=common_pb2.SubjectAltNameMatcher.URI,
                            matcher=string_pb2.StringMatcher(
                                exact=f"spiffe://cluster.local/ns/ns-{index % 20:02d}/sa/svc-{index:04d}"
                            ),
                        )
                    ]
                ),
                validation_context_sds_secret_config=_agent_sds("ROOTCA"),
            ),
            alpn_protocols=["istio-peer-exchange", "istio"],
        ),
        sni=f"outbound_.{PORT}_._.{host(index)}",
    )
    return base_pb2.TransportSocket(name="envoy.transport_sockets.tls", typed_config=_any(context))


def cluster(index: int, generation: int) -> _Proto:
    """The outbound cluster of service ``index``; ``generation`` varies its timeout and limits."""
    name = cluster_name(index)
    thresholds = circuit_breaker_pb2.CircuitBreakers.Thresholds(
        max_connections=wrappers_pb2.UInt32Value(value=_MAX),
        max_pending_requests=wrappers_pb2.UInt32Value(value=_MAX),
        max_requests=wrappers_pb2.UInt32Value(value=_MAX - generation),
        max_retries=wrappers_pb2.UInt32Value(value=_MAX),
        track_remaining=True,
    )
    return cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.EDS,
        eds_cluster_config=cluster_pb2.Cluster.EdsClusterConfig(eds_config=_ads(), service_name=name),
        connect_timeout=_duration(10 + generation / 1000),
        lb_policy=cluster_pb2.Cluster.LEAST_REQUEST,
        circuit_breakers=circuit_breaker_pb2.CircuitBreakers(thresholds=[thresholds]),
        common_lb_config=cluster_pb2.Cluster.CommonLbConfig(
            locality_weighted_lb_config=cluster_pb2.Cluster.CommonLbConfig.LocalityWeightedLbConfig()
        ),
        metadata=_istio_metadata(index),
        transport_socket_matches=[
            cluster_pb2.Cluster.TransportSocketMatch(
                name="tlsMode-istio",
                match=_match({"tlsMode": "istio"}),
                transport_socket=_mtls_socket(index),
            ),
            cluster_pb2.Cluster.TransportSocketMatch(
                name="tlsMode-disabled",
                match=struct_pb2.Struct(),
                transport_socket=base_pb2.TransportSocket(
                    name="envoy.transport_sockets.raw_buffer", typed_config=_any(raw_buffer_pb2.RawBuffer())
                ),
            ),
        ],
    )


def _match(values: dict[str, str]) -> _Proto:
    match = struct_pb2.Struct()
    match.update(values)
    return match


def load_assignment(index: int, generation: int) -> _Proto:
    """The endpoints of service ``index``: pods in three zones; ``generation`` moves them."""
    localities = []
    for zone_index, zone in enumerate(_ZONES[:ENDPOINTS_PER_CLUSTER]):
        address = f"10.{(generation + zone_index) % 250}.{index // 250}.{index % 250 + 1}"
        metadata = struct_pb2.Struct()
        metadata.update({"workload": f"svc-{index:04d}-v1;ns-{index % 20:02d};svc-{index:04d};v1;Kubernetes"})
        endpoint = endpoint_components_pb2.LbEndpoint(
            endpoint=endpoint_components_pb2.Endpoint(
                address=address_pb2.Address(socket_address=address_pb2.SocketAddress(address=address, port_value=PORT))
            ),
            health_status=health_check_pb2.HEALTHY,
            metadata=base_pb2.Metadata(filter_metadata={"envoy.transport_socket_match": _match({"tlsMode": "istio"})}),
            load_balancing_weight=wrappers_pb2.UInt32Value(value=1),
        )
        endpoint.metadata.filter_metadata["istio"].CopyFrom(metadata)
        localities.append(
            endpoint_components_pb2.LocalityLbEndpoints(
                locality=base_pb2.Locality(region="us-east1", zone=zone),
                lb_endpoints=[endpoint],
                load_balancing_weight=wrappers_pb2.UInt32Value(value=1),
            )
        )
    return endpoint_pb2.ClusterLoadAssignment(cluster_name=cluster_name(index), endpoints=localities)


def _virtual_host(index: int) -> _Proto:
    name = host(index)
    short, namespace = name.split(".")[0], name.split(".")[1]
    domains = [name, short, f"{short}.{namespace}", f"{short}.{namespace}.svc"]
    retry = route_components_pb2.RetryPolicy(
        retry_on="connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
        num_retries=wrappers_pb2.UInt32Value(value=2),
        retry_host_predicate=[
            route_components_pb2.RetryPolicy.RetryHostPredicate(
                name="envoy.retry_host_predicates.previous_hosts",
                typed_config=_any(previous_hosts_pb2.PreviousHostsPredicate()),
            )
        ],
        host_selection_retry_max_attempts=5,
        retriable_status_codes=[503],
    )
    route = route_components_pb2.Route(
        name="default",
        match=route_components_pb2.RouteMatch(prefix="/"),
        route=route_components_pb2.RouteAction(
            cluster=cluster_name(index),
            timeout=_duration(0),
            retry_policy=retry,
            max_stream_duration=route_components_pb2.RouteAction.MaxStreamDuration(
                max_stream_duration=_duration(0), grpc_timeout_header_max=_duration(0)
            ),
        ),
        decorator=route_components_pb2.Decorator(operation=f"{name}:{PORT}/*"),
    )
    return route_components_pb2.VirtualHost(
        name=f"{name}:{PORT}",
        domains=[domain for plain in domains for domain in (plain, f"{plain}:{PORT}")],
        routes=[route],
        include_request_attempt_count=True,
    )


def route_configuration(services: int) -> _Proto:
    """The route configuration ``8080``: one virtual host per service, every path to its cluster."""
    return route_pb2.RouteConfiguration(
        name=ROUTE_NAME,
        virtual_hosts=[_virtual_host(index) for index in range(services)],
        validate_clusters=wrappers_pb2.BoolValue(value=False),
        max_direct_response_body_size_bytes=wrappers_pb2.UInt32Value(value=1_048_576),
    )


def listener() -> _Proto:
    """The outbound HTTP listener on port 8080, whose routes come over ADS."""
    manager = hcm_pb2.HttpConnectionManager(
        stat_prefix=f"outbound_0.0.0.0_{PORT}",
        rds=hcm_pb2.Rds(route_config_name=ROUTE_NAME, config_source=_ads()),
        http_filters=[hcm_pb2.HttpFilter(name="envoy.filters.http.router", typed_config=_any(router_pb2.Router()))],
        use_remote_address=wrappers_pb2.BoolValue(value=False),
        normalize_path=wrappers_pb2.BoolValue(value=True),
    )
    return listener_pb2.Listener(
        name=LISTENER_NAME,
        address=address_pb2.Address(socket_address=address_pb2.SocketAddress(address="0.0.0.0", port_value=PORT)),
        filter_chains=[
            listener_components_pb2.FilterChain(
                filters=[
                    listener_components_pb2.Filter(
                        name="envoy.filters.network.http_connection_manager", typed_config=_any(manager)
                    )
                ]
            )
        ],
        traffic_direction=base_pb2.OUTBOUND,
    )


def snapshot(services: int, generation: int) -> Snapshot:
    """The view of every proxy: ``services`` clusters and load assignments, the listener and its routes."""
    clusters, endpoints = changed_sets(services, generation)
    return Snapshot([clusters, endpoints, pack(listener()), pack(route_configuration(services))])


def changed_sets(services: int, generation: int) -> tuple[ResourceSet, ResourceSet]:
    """The clusters and the load assignments of a generation: a change of every one of them."""
    clusters = ResourceSet(CLUSTER_TYPE, [pack(cluster(index, generation)) for index in range(services)])
    endpoints = ResourceSet(ENDPOINT_TYPE, [pack(load_assignment(index, generation)) for index in range(services)])
    return clusters, endpoints
