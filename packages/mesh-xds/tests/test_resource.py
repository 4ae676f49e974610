import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2, config_source_pb2
from envoy.config.listener.v3 import api_listener_pb2, listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2, scoped_route_pb2
from envoy.extensions.clusters.aggregate.v3 import cluster_pb2 as aggregate_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2, tls_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2, wrappers_pb2
from hypothesis import given
from hypothesis import strategies as st

from mesh_xds import CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE, SECRET_TYPE, InvalidResourceError, _wire
from mesh_xds.resource import (
    EXTENSION_CONFIG_TYPE,
    PUSH_ORDER,
    RUNTIME_TYPE,
    Reference,
    Resource,
    is_wildcard_type,
    pack,
    push_order,
    references,
    resource_name,
    short_type,
    type_url_of,
    unpack,
)
from mesh_xds.testing.resources import (
    ads_config_source,
    eds_cluster,
    http_listener,
    load_assignment,
    route_configuration,
    tcp_listener,
)


def _any(message):
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def test_type_urls_are_envoys():
    assert CLUSTER_TYPE == "type.googleapis.com/envoy.config.cluster.v3.Cluster"
    assert ENDPOINT_TYPE == "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
    assert LISTENER_TYPE == "type.googleapis.com/envoy.config.listener.v3.Listener"
    assert ROUTE_TYPE == "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
    assert SECRET_TYPE == "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
    assert type_url_of(cluster_pb2.Cluster()) == CLUSTER_TYPE


def test_push_order_is_cds_eds_lds_rds_sds_then_the_rest_sorted():
    assert PUSH_ORDER == (CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE, SECRET_TYPE)
    mixed = [SECRET_TYPE, RUNTIME_TYPE, ROUTE_TYPE, EXTENSION_CONFIG_TYPE, LISTENER_TYPE, ENDPOINT_TYPE, CLUSTER_TYPE]
    assert push_order(mixed) == (*PUSH_ORDER, EXTENSION_CONFIG_TYPE, RUNTIME_TYPE)


def test_short_types_and_wildcard_types():
    assert [short_type(url) for url in PUSH_ORDER] == ["cds", "eds", "lds", "rds", "sds"]
    assert short_type("type.googleapis.com/example.Thing") == "thing"
    assert is_wildcard_type(CLUSTER_TYPE)
    assert is_wildcard_type(LISTENER_TYPE)
    assert is_wildcard_type("type.googleapis.com/example.Thing")
    assert not any(is_wildcard_type(url) for url in (ENDPOINT_TYPE, ROUTE_TYPE, SECRET_TYPE))


def test_pack_names_versions_and_round_trips():
    cluster = eds_cluster("reviews")
    resource = pack(cluster)
    assert (resource.type_url, resource.name) == (CLUSTER_TYPE, "reviews")
    assert unpack(resource) == cluster
    assert pack(eds_cluster("reviews")) == resource  # same content, same version
    assert pack(eds_cluster("reviews")).version == resource.version
    assert pack(eds_cluster("reviews", connect_timeout=2)).version != resource.version
    assert pack(load_assignment("reviews")).name == "reviews"  # ClusterLoadAssignment.cluster_name
    assert pack(cluster, name="other").name == "other"
    assert pack(_any(cluster)) == resource


def test_a_resource_refuses_what_it_cannot_be():
    with pytest.raises(InvalidResourceError, match="needs a name"):
        pack(cluster_pb2.Cluster())
    with pytest.raises(InvalidResourceError, match="not a serialized Any"):
        Resource(CLUSTER_TYPE, "a", b"\x0a\x03abc")
    with pytest.raises(InvalidResourceError, match="does not look like"):
        Resource("envoy.config.cluster.v3.Cluster", "a", b"")
    with pytest.raises(InvalidResourceError, match="no name field"):
        resource_name(hcm_pb2.Rds())
    with pytest.raises(InvalidResourceError, match="names no known message"):
        pack(any_pb2.Any(type_url="type.googleapis.com/no.such.Message", value=b""))


def test_from_value_packs_serialized_messages():
    cluster = eds_cluster("a")
    resource = Resource.from_value(CLUSTER_TYPE, "a", cluster.SerializeToString(deterministic=True))
    assert resource == pack(cluster)
    assert unpack(resource) == cluster


def _names(found, type_url, *, via_ads=True):
    return {ref.name for ref in found if ref.type_url == type_url and ref.via_ads == via_ads}


def test_listener_references_rds_tcp_proxy_and_inline_routes():
    assert references(http_listener("l", "127.0.0.1", 80, route_name="r")) == {Reference(ROUTE_TYPE, "r")}
    assert references(tcp_listener("t", "127.0.0.1", 81, cluster="c")) == {Reference(CLUSTER_TYPE, "c")}
    weighted = tcp_proxy_pb2.TcpProxy(
        stat_prefix="w",
        weighted_clusters=tcp_proxy_pb2.TcpProxy.WeightedCluster(
            clusters=[tcp_proxy_pb2.TcpProxy.WeightedCluster.ClusterWeight(name=n, weight=1) for n in "xy"]
        ),
    )
    inline = hcm_pb2.HttpConnectionManager(stat_prefix="i", route_config=route_configuration("in", {"*": "z"}))
    external = hcm_pb2.HttpConnectionManager(
        stat_prefix="e",
        rds=hcm_pb2.Rds(
            route_config_name="far",
            config_source=config_source_pb2.ConfigSource(
                path_config_source=config_source_pb2.PathConfigSource(path="/r")
            ),
        ),
    )
    listener = listener_pb2.Listener(
        name="many",
        filter_chains=[
            listener_components_pb2.FilterChain(
                filters=[listener_components_pb2.Filter(name="w", typed_config=_any(weighted))]
            ),
            listener_components_pb2.FilterChain(
                filters=[listener_components_pb2.Filter(name="i", typed_config=_any(inline))]
            ),
        ],
        default_filter_chain=listener_components_pb2.FilterChain(
            filters=[listener_components_pb2.Filter(name="e", typed_config=_any(external))]
        ),
    )
    found = references(listener)
    assert _names(found, CLUSTER_TYPE) == {"x", "y", "z"}
    assert _names(found, ROUTE_TYPE, via_ads=False) == {"far"}
    api = listener_pb2.Listener(
        name="grpc-target", api_listener=api_listener_pb2.ApiListener(api_listener=_any(external))
    )
    assert _names(references(api), ROUTE_TYPE, via_ads=False) == {"far"}


def test_route_references_single_weighted_and_mirror_clusters():
    action = route_components_pb2.RouteAction(
        weighted_clusters=route_components_pb2.WeightedCluster(
            clusters=[
                route_components_pb2.WeightedCluster.ClusterWeight(name="v1"),
                route_components_pb2.WeightedCluster.ClusterWeight(name="v2"),
            ]
        ),
        request_mirror_policies=[route_components_pb2.RouteAction.RequestMirrorPolicy(cluster="shadow")],
    )
    host = route_components_pb2.VirtualHost(
        name="h",
        domains=["*"],
        routes=[
            route_components_pb2.Route(match=route_components_pb2.RouteMatch(prefix="/a"), route=action),
            route_components_pb2.Route(
                match=route_components_pb2.RouteMatch(prefix="/b"),
                route=route_components_pb2.RouteAction(cluster="one"),
            ),
            route_components_pb2.Route(
                match=route_components_pb2.RouteMatch(prefix="/c"),
                direct_response=route_components_pb2.DirectResponseAction(status=200),
            ),
        ],
    )
    assert _names(references(route_pb2.RouteConfiguration(name="r", virtual_hosts=[host])), CLUSTER_TYPE) == {
        "v1",
        "v2",
        "shadow",
        "one",
    }
    assert _names(references(host), CLUSTER_TYPE) == {"v1", "v2", "shadow", "one"}
    scoped = scoped_route_pb2.ScopedRouteConfiguration(name="s", route_configuration_name="r")
    assert references(scoped) == {Reference(ROUTE_TYPE, "r")}


def _tls_socket(context, names_by_source):
    common = context.common_tls_context
    for name, source in names_by_source:
        config = common.tls_certificate_sds_secret_configs.add(name=name)
        if source is not None:
            config.sds_config.CopyFrom(source)
    return base_pb2.TransportSocket(name="tls", typed_config=_any(context))


def test_cluster_references_endpoints_secrets_and_aggregated_clusters():
    assert references(eds_cluster("a")) == {Reference(ENDPOINT_TYPE, "a")}
    assert references(eds_cluster("a", service_name="svc")) == {Reference(ENDPOINT_TYPE, "svc")}
    not_ads = cluster_pb2.Cluster(name="b", type=cluster_pb2.Cluster.EDS)
    assert references(not_ads) == {Reference(ENDPOINT_TYPE, "b", via_ads=False)}
    assert references(cluster_pb2.Cluster(name="static", type=cluster_pb2.Cluster.STATIC)) == frozenset()

    upstream = tls_pb2.UpstreamTlsContext()
    upstream.common_tls_context.validation_context_sds_secret_config.name = "ROOTCA"
    upstream.common_tls_context.validation_context_sds_secret_config.sds_config.CopyFrom(ads_config_source())
    secured = eds_cluster("c")
    secured.transport_socket.CopyFrom(_tls_socket(upstream, [("default", ads_config_source()), ("file-cert", None)]))
    found = references(secured)
    assert _names(found, SECRET_TYPE) == {"default", "ROOTCA"}
    assert _names(found, SECRET_TYPE, via_ads=False) == {"file-cert"}

    aggregate = cluster_pb2.Cluster(name="agg")
    aggregate.cluster_type.name = "envoy.clusters.aggregate"
    aggregate.cluster_type.typed_config.Pack(aggregate_pb2.ClusterConfig(clusters=["p", "q"]))
    assert _names(references(aggregate), CLUSTER_TYPE) == {"p", "q"}


def test_listener_tls_and_combined_validation_secrets():
    downstream = tls_pb2.DownstreamTlsContext()
    combined = downstream.common_tls_context.combined_validation_context
    combined.default_validation_context.CopyFrom(common_pb2.CertificateValidationContext())
    combined.validation_context_sds_secret_config.name = "roots"
    combined.validation_context_sds_secret_config.sds_config.CopyFrom(ads_config_source())
    listener = http_listener("l", "127.0.0.1", 443, route_name="r")
    listener.filter_chains[0].transport_socket.CopyFrom(_tls_socket(downstream, [("cert", ads_config_source())]))
    assert _names(references(listener), SECRET_TYPE) == {"cert", "roots"}


def test_other_messages_refer_to_nothing():
    assert references(secret_pb2.Secret(name="s")) == frozenset()
    assert references(load_assignment("a", [("127.0.0.1", 1)])) == frozenset()


_names_strategy = st.text(min_size=1, max_size=20)


@given(
    version=st.text(max_size=20),
    nonce=st.text(max_size=10),
    names=st.lists(_names_strategy, max_size=4, unique=True),
    removed=st.lists(st.text(max_size=8), max_size=3),
)
def test_encoded_responses_parse_as_protobuf_builds_them(version, nonce, names, removed):
    resources = [pack(eds_cluster(name)) for name in names]
    sotw = _wire.sotw_response(
        version, CLUSTER_TYPE, nonce, [part for r in resources for part in r.sotw_parts()], _wire.control_plane("cp")
    )
    expected = discovery_pb2.DiscoveryResponse(version_info=version, type_url=CLUSTER_TYPE, nonce=nonce)
    expected.resources.extend(any_pb2.Any.FromString(r.any_bytes) for r in resources)
    expected.control_plane.identifier = "cp"
    assert discovery_pb2.DiscoveryResponse.FromString(sotw) == expected

    delta = _wire.delta_response(version, CLUSTER_TYPE, nonce, [p for r in resources for p in r.delta_parts()], removed)
    parsed = discovery_pb2.DeltaDiscoveryResponse.FromString(delta)
    assert parsed.system_version_info == version
    assert parsed.nonce == nonce
    assert list(parsed.removed_resources) == removed
    assert [(item.name, item.version) for item in parsed.resources] == [(r.name, r.version) for r in resources]
    assert [item.resource.SerializeToString() for item in parsed.resources] == [r.any_bytes for r in resources]


@given(st.integers(min_value=1, max_value=2**64 - 1), st.integers(min_value=0, max_value=400))
def test_varints_and_strings_match_protobuf(value, length):
    assert _wire.varint(value) == wrappers_pb2.UInt64Value(value=value).SerializeToString()[1:]
    message = discovery_pb2.DiscoveryResponse(version_info="x" * length)
    assert _wire.text(1, message.version_info) == message.SerializeToString()
