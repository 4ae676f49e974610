"""Config written straight as protobuf wire bytes is byte for byte what the protobuf messages serialize to.

Load assignments, most outbound clusters and their Istio mTLS sockets are written as bytes rather than built as
messages; each writer is checked here against the message built field by field with the protobuf API (and
serialized with ``deterministic=True``, as resources are), for varied inputs.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
import yaml
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2
from envoy.type.matcher.v3 import string_pb2
from google.protobuf import duration_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from mesh_config import (
    PushContext,
    ServiceEntryRegistry,
    default_mesh_config,
    load_mesh_config,
    load_registry_text,
    load_text,
)
from mesh_config.networking.traffic_policy import ClientTLSMode, ClientTLSSettings
from mesh_model import (
    AggregateRegistry,
    Endpoint,
    HealthStatus,
    InMemoryRegistry,
    Locality,
    NodeType,
    Protocol,
    Proxy,
    Service,
    ServicePort,
    TlsMode,
)
from mesh_xds import _wire
from mesh_xds._wire import split_fields
from mesh_xds.generate import GenerationContext
from mesh_xds.generate._cluster_tls import (
    ALPN_IN_MESH,
    ALPN_IN_MESH_H2,
    IstioMutualContexts,
    istio_mtls_sockets,
    sds_secret_config,
)
from mesh_xds.generate._cluster_wire import ClusterShape
from mesh_xds.generate._endpoint_wire import AssignmentWriter, lb_endpoint_field, metadata
from mesh_xds.generate._endpoints import DRAINING_LABEL, LocalityGroup, Member, lb_endpoint, to_protos
from mesh_xds.generate.cds import build_clusters, shared_cluster_resources
from mesh_xds.generate.eds import eds_cluster_names, load_assignment_resources, locality_lb_endpoints
from mesh_xds.generate.names import parse_outbound_cluster, parse_outbound_sni
from mesh_xds.generate.rds import (
    _route_configuration,
    _SidecarRoutes,
    build_routes,
    outbound_http_ports,
    route_resources,
)
from mesh_xds.resource import CLUSTER_TYPE, pack, references, unpack

GOLDEN = Path(__file__).parent / "golden"

_LABEL_VALUE = st.from_regex(r"[a-z0-9]([-a-z0-9.]{0,20}[a-z0-9])?", fullmatch=True)
_ADDRESSES = st.one_of(
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
    st.text(min_size=1, max_size=300).filter(lambda path: "\x00" not in path).map(lambda path: f"unix://{path}"),
    st.from_regex(r"[a-z]{1,20}(\.[a-z]{1,20}){0,3}", fullmatch=True),
)
_CANONICAL_LABELS = st.fixed_dictionaries(
    {},
    optional={
        "service.istio.io/canonical-name": _LABEL_VALUE,
        "service.istio.io/canonical-revision": st.one_of(_LABEL_VALUE, st.just("latest")),
        "app.kubernetes.io/name": _LABEL_VALUE,
        "app.kubernetes.io/version": _LABEL_VALUE,
        "app": _LABEL_VALUE,
        "version": st.one_of(_LABEL_VALUE, st.just("latest")),
        DRAINING_LABEL: st.just("true"),
    },
)


@st.composite
def _endpoints(draw: st.DrawFn) -> Endpoint:
    return Endpoint(
        draw(_ADDRESSES),
        ports=draw(st.dictionaries(st.sampled_from(["http", "grpc"]), st.integers(1, 65535), max_size=2)),
        labels=draw(_CANONICAL_LABELS),
        locality=draw(st.sampled_from(["", "us-east1", "us-east1/us-east1-b", "us-east1/us-east1-b/rack7"])),
        weight=draw(st.integers(1, 2**32 - 1)),
        health=draw(st.sampled_from([HealthStatus.HEALTHY, HealthStatus.DRAINING, HealthStatus.UNHEALTHY])),
        tls_mode=draw(st.sampled_from(list(TlsMode))),
        cluster_id=draw(st.text(max_size=40)),
        workload_name=draw(st.text(max_size=150)),
        namespace=draw(st.text(max_size=40)),
    )


_PORTS = st.builds(
    ServicePort,
    st.sampled_from(["http", "grpc", ""]),
    st.integers(1, 65535),
    st.just(Protocol.HTTP),
    target_port=st.one_of(st.none(), st.integers(1, 65535)),
)


@settings(max_examples=300, deadline=None)
@given(endpoint=_endpoints(), port=_PORTS, mtls=st.booleans())
def test_an_endpoint_written_as_bytes_is_the_lb_endpoint_message(endpoint: Endpoint, port: ServicePort, mtls: bool):
    expected = endpoint_components_pb2.LocalityLbEndpoints()
    expected.lb_endpoints.append(lb_endpoint(endpoint, port, mtls=mtls))

    written = lb_endpoint_field(endpoint, endpoint.target_port(port), mtls and endpoint.tls_mode is TlsMode.ISTIO)

    assert written == expected.SerializeToString(deterministic=True)


_SOURCES = st.one_of(
    st.none(),
    st.just({"istio": {"config": "/apis/networking.istio.io/v1/namespaces/default/destination-rule/reviews"}}),
    st.just({"istio": {"config": "/a", "configs": ["/a", "/b"]}}),
)


@st.composite
def _groups(draw: st.DrawFn) -> list[LocalityGroup]:
    port = ServicePort("http", 9080, Protocol.HTTP)
    groups = []
    for locality in draw(st.lists(st.sampled_from(["", "r", "r/z", "r/z/s", "other/zone"]), max_size=4)):
        endpoints = draw(st.lists(_endpoints(), max_size=4))
        members = [Member(endpoint, endpoint.target_port(port), draw(st.booleans())) for endpoint in endpoints]
        weight = draw(st.integers(0, 2**32 - 1))
        groups.append(LocalityGroup(Locality.parse(locality), members, weight, draw(st.integers(0, 6))))
    return groups


@settings(max_examples=150, deadline=None)
@given(name=st.text(max_size=200), groups=_groups(), values=_SOURCES)
def test_a_load_assignment_written_as_bytes_is_the_message_of_its_groups(name, groups, values):
    expected = endpoint_pb2.ClusterLoadAssignment(cluster_name=name, endpoints=to_protos(groups, values))
    writer = AssignmentWriter()

    assert writer.cluster_load_assignment(name, groups, metadata(values)) == expected.SerializeToString(
        deterministic=True
    )
    if all(group.priority == 0 for group in groups):
        written = [
            (group.locality, [lb_endpoint_field(*member) for member in group.members], group.weight) for group in groups
        ]
        assert writer.written(name, written, metadata(values)) == expected.SerializeToString(deterministic=True)


def _shape_message(kind: int, *, eds: bool) -> cluster_pb2.Cluster:
    shape = cluster_pb2.Cluster(type=kind)
    shape.connect_timeout.CopyFrom(duration_pb2.Duration(seconds=10))
    shape.lb_policy = cluster_pb2.Cluster.LEAST_REQUEST
    shape.circuit_breakers.thresholds.add().max_connections.value = 2**32 - 1
    shape.common_lb_config.healthy_panic_threshold.value = 0
    shape.typed_extension_protocol_options["b"].type_url = "type.googleapis.com/x"
    shape.typed_extension_protocol_options["a"].value = b"\x08\x01"
    shape.upstream_connection_options.tcp_keepalive.keepalive_probes.value = 3
    shape.respect_dns_ttl = True
    if eds:
        shape.eds_cluster_config.eds_config.ads.SetInParent()
        shape.eds_cluster_config.eds_config.initial_fetch_timeout.SetInParent()
    return shape


@settings(max_examples=150, deadline=None)
@given(
    name=st.text(min_size=1, max_size=300),
    services=st.lists(st.text(max_size=80), max_size=3),
    eds=st.booleans(),
    matches=st.booleans(),
    sni=st.text(max_size=200),
)
def test_a_cluster_written_around_its_shape_is_the_cluster_message(name, services, eds, matches, sni):
    shape = _shape_message(cluster_pb2.Cluster.EDS if eds else cluster_pb2.Cluster.ORIGINAL_DST, eds=eds)
    own = base_pb2.Metadata()
    for service in services:
        own.filter_metadata["istio"].fields["services"].list_value.values.add().string_value = service
    sockets = cluster_pb2.Cluster()
    if matches:
        sockets.transport_socket_matches.add(name=sni)
        sockets.transport_socket_matches.add(name="plain").match.SetInParent()
    else:
        sockets.transport_socket.name = sni
    fields = split_fields(sockets.SerializeToString(deterministic=True))
    socket_fields = tuple(b"".join(whole for number, whole, _ in fields if number == wanted) for wanted in (24, 43))
    expected = cluster_pb2.Cluster()
    expected.CopyFrom(shape)
    expected.MergeFrom(sockets)
    expected.name = name
    expected.alt_stat_name = f"{name};"
    expected.metadata.CopyFrom(own)
    if eds:
        expected.eds_cluster_config.service_name = name

    written = ClusterShape(shape.SerializeToString(deterministic=True)).cluster(
        name, f"{name};", own.SerializeToString(deterministic=True), socket_fields
    )

    assert written == expected.SerializeToString(deterministic=True)


def test_a_cluster_shape_has_none_of_the_fields_of_a_cluster_of_its_own():
    with pytest.raises(ValueError, match="no fields"):
        ClusterShape(cluster_pb2.Cluster(name="reviews").SerializeToString())


@given(data=st.binary(max_size=40))
def test_fields_split_back_into_the_same_bytes(data: bytes):
    message = cluster_pb2.Cluster(name="a", alt_stat_name="b", type=cluster_pb2.Cluster.EDS)
    message.metadata.filter_metadata["x"].fields["y"].string_value = data.hex()
    message.ring_hash_lb_config.minimum_ring_size.value = len(data)
    serialized = message.SerializeToString(deterministic=True)

    fields = split_fields(serialized)

    assert b"".join(whole for _, whole, _ in fields) == serialized
    assert [number for number, _, _ in fields] == [1, 2, 23, 25, 28]


@given(value=st.integers(0, 2**64 - 1))
def test_varints_are_protobufs(value: int):
    expected = bytearray()
    rest = value
    while rest > 0x7F:
        expected.append((rest & 0x7F) | 0x80)
        rest >>= 7
    expected.append(rest)

    assert _wire.varint(value) == bytes(expected)


@given(field=st.one_of(st.integers(1, 70), st.integers(1, 2**29 - 1)), size=st.integers(0, 2**22))
def test_field_headers_are_the_tag_and_length_varints(field: int, size: int):
    assert _wire.header(field, size) == _wire.varint((field << 3) | 2) + _wire.varint(size)


def _san_type(name: str) -> int:
    if "://" in name:
        return common_pb2.SubjectAltNameMatcher.URI
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return common_pb2.SubjectAltNameMatcher.EMAIL if "@" in name else common_pb2.SubjectAltNameMatcher.DNS
    return common_pb2.SubjectAltNameMatcher.IP_ADDRESS


def _istio_mutual_socket(sni: str, sans: list[str], *, http2: bool) -> base_pb2.TransportSocket:
    """Istio's mTLS transport socket, built field by field."""
    context = tls_pb2.UpstreamTlsContext(sni=sni)
    common = context.common_tls_context
    common.tls_params.tls_minimum_protocol_version = common_pb2.TlsParameters.TLSv1_2
    common.tls_params.tls_maximum_protocol_version = common_pb2.TlsParameters.TLSv1_3
    common.tls_certificate_sds_secret_configs.append(sds_secret_config("default"))
    common.alpn_protocols.extend(ALPN_IN_MESH_H2 if http2 else ALPN_IN_MESH)
    validation = common.combined_validation_context
    validation.default_validation_context.SetInParent()
    for san in sans:
        validation.default_validation_context.match_typed_subject_alt_names.add(
            san_type=_san_type(san), matcher=string_pb2.StringMatcher(exact=san)
        )
    validation.validation_context_sds_secret_config.CopyFrom(sds_secret_config("ROOTCA"))
    socket = base_pb2.TransportSocket(name="envoy.transport_sockets.tls")
    socket.typed_config.Pack(context)
    return socket


_ACCOUNTS = st.lists(
    st.one_of(
        st.from_regex(r"spiffe://cluster\.local/ns/[a-z]{1,8}/sa/[a-z]{1,8}", fullmatch=True),
        st.sampled_from(["10.0.0.1", "a@b.c", "reviews.default.svc"]),
    ),
    max_size=4,
    unique=True,
)


@settings(max_examples=150, deadline=None)
@given(
    sni=st.text(max_size=120),
    accounts=_ACCOUNTS,
    http2=st.booleans(),
    original_dst=st.booleans(),
    mode=st.sampled_from(["auto", "istio", "istio-own", "disable", "off"]),
)
def test_istio_mtls_sockets_written_as_bytes_are_istios(sni, accounts, http2, original_dst, mode):
    cluster_type = cluster_pb2.Cluster.ORIGINAL_DST if original_dst else cluster_pb2.Cluster.EDS
    tls = {
        "auto": None,
        "off": None,
        "istio": ClientTLSSettings(mode=ClientTLSMode.ISTIO_MUTUAL),
        "istio-own": ClientTLSSettings(
            mode=ClientTLSMode.ISTIO_MUTUAL, sni="own.example", subject_alt_names=("spiffe://x/own",)
        ),
        "disable": ClientTLSSettings(mode=ClientTLSMode.DISABLE),
    }[mode]
    expected = cluster_pb2.Cluster(type=cluster_type)
    if mode != "disable" and mode != "off":
        own = mode == "istio-own"
        socket = _istio_mutual_socket(
            "own.example" if own else sni, ["spiffe://x/own"] if own else sorted(set(accounts)), http2=http2
        )
        if mode == "auto" and not original_dst:
            istio = expected.transport_socket_matches.add(name="tlsMode-istio", transport_socket=socket)
            istio.match.fields["tlsMode"].string_value = "istio"
            plain = expected.transport_socket_matches.add(name="tlsMode-disabled")
            plain.match.SetInParent()
            plain.transport_socket.name = "envoy.transport_sockets.raw_buffer"
            plain.transport_socket.typed_config.type_url = (
                "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"
            )
        else:
            expected.transport_socket.CopyFrom(socket)
    made = IstioMutualContexts()

    sockets = istio_mtls_sockets(
        cluster_type,
        tls=tls,
        sni=sni,
        service_accounts=accounts,
        auto_mtls=mode != "off",
        http2=http2,
        mesh=default_mesh_config(),
        made=made,
    )

    assert cluster_pb2.Cluster(type=cluster_type).SerializeToString() + b"".join(sockets) == (
        expected.SerializeToString(deterministic=True)
    )
    if any(sockets):
        with_sockets = cluster_pb2.Cluster.FromString(b"".join(sockets))
        assert made.references(sockets, http2=http2) == references(with_sockets)


# ------------------------------------------------------------------------------------------ whole proxies

_CONFIG = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 5}
    loadBalancer:
      consistentHash: {httpHeaderName: x-user}
      localityLbSetting:
        failover: [{from: us-east1, to: us-west1}]
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}, trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings, namespace: default}
spec:
  host: ratings
  trafficPolicy:
    loadBalancer:
      localityLbSetting:
        distribute: [{from: "us-east1/*", to: {"us-east1/*": 70, "us-west1/*": 30}}]
    tls: {mode: SIMPLE, sni: ratings.example}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: details, namespace: default}
spec:
  host: details
  trafficPolicy: {tls: {mode: DISABLE}, loadBalancer: {simple: PASSTHROUGH}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: external, namespace: default}
spec:
  hosts: [api.example.com]
  location: MESH_EXTERNAL
  resolution: DNS
  ports: [{number: 443, name: https, protocol: TLS}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: inside, namespace: default}
spec:
  hosts: [db.internal]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 5432, name: tcp, protocol: TCP}]
  endpoints: [{address: 10.9.0.1}, {address: 10.9.0.2, labels: {version: v1}}]
"""


def _endpoint(address: str, version: str, locality: str, **fields: object) -> Endpoint:
    fields.setdefault("tls_mode", TlsMode.ISTIO)
    return Endpoint(
        address,
        ports={"http": 9080},
        labels={"app": "reviews", "version": version},
        locality=locality,
        namespace="default",
        workload_name=f"reviews-{version}",
        **fields,
    )


def _context() -> GenerationContext:
    registry = InMemoryRegistry()
    endpoints = [
        _endpoint("10.0.0.1", "v1", "us-east1/us-east1-b"),
        _endpoint("10.0.0.2", "v2", "us-east1/us-east1-c", weight=3),
        _endpoint("10.0.0.3", "v1", "us-west1/us-west1-a"),
        _endpoint("10.0.0.4", "v2", "", health=HealthStatus.DRAINING),
        _endpoint("unix:///var/run/reviews.sock", "v1", "us-east1/us-east1-b"),
        _endpoint("reviews-3.example", "v1", "us-east1"),
        _endpoint("fd00::5", "v2", "eu/eu-1", tls_mode=TlsMode.DISABLED),
    ]
    for name, ports in (("reviews", 9080), ("ratings", 9080), ("details", 9080)):
        service = Service(
            f"{name}.default.svc.cluster.local",
            "default",
            ports=[ServicePort("http", ports, Protocol.HTTP), ServicePort("grpc", 7070, Protocol.GRPC)],
        )
        registry.upsert_service(service)
        registry.set_endpoints(service.key, endpoints)
    resources = load_text(_CONFIG, default_namespace="default").raise_for_errors().resources
    services = AggregateRegistry([registry, ServiceEntryRegistry(resources)])
    push = PushContext.build(resources, services)
    proxy = Proxy.parse(
        "sidecar~10.0.1.1~productpage.default~default.svc.cluster.local",
        {"NAMESPACE": "default", "LABELS": {"app": "productpage"}},
        locality="us-east1/us-east1-b",
    )
    return GenerationContext(proxy, push, services)


def test_cluster_resources_written_as_bytes_are_the_packed_cluster_messages():
    ctx = _context()
    messages = [cluster for cluster in build_clusters(ctx) if not cluster.name.startswith("inbound|")]

    resources, eds_names = shared_cluster_resources(ctx)

    expected = [pack(message) for message in messages]
    assert [(r.name, r.any_bytes, r.references) for r in resources] == [
        (r.name, r.any_bytes, r.references) for r in expected
    ]
    assert eds_names == eds_cluster_names(messages)
    assert all(resource.references == references(unpack(resource)) for resource in resources)
    assert {resource.type_url for resource in resources} == {CLUSTER_TYPE}


def test_load_assignments_written_as_bytes_are_the_messages_of_their_locality_groups():
    ctx = _context()
    _, names = shared_cluster_resources(ctx)
    assert len(names) > 6

    resources = load_assignment_resources(ctx, names)

    visible = {service.hostname.value: service for service in ctx.push.visible_services(ctx.workload)}
    by_name = {}
    for name in names:
        number, subset_name, host = parse_outbound_cluster(name) or parse_outbound_sni(name)
        service = visible[host]
        rule = ctx.push.destination_rule(ctx.workload, service)
        subset = next((s for s in rule.value.spec.subsets if s.name == subset_name), None) if subset_name else None
        groups = locality_lb_endpoints(ctx, service, service.port(number), rule, subset)
        by_name[name] = endpoint_pb2.ClusterLoadAssignment(cluster_name=name, endpoints=groups)
    assert [resource.any_bytes for resource in resources] == [pack(by_name[name]).any_bytes for name in names]
    reviews = by_name["outbound|9080||reviews.default.svc.cluster.local"]
    assert [group.priority for group in reviews.endpoints] == [3, 0, 1, 2]  # locality failover
    assert sum(len(group.lb_endpoints) for group in reviews.endpoints) == 5  # not the host name nor the draining one


def _golden_sidecars() -> list[GenerationContext]:
    contexts = []
    for directory in sorted(path for path in GOLDEN.iterdir() if (path / "proxies.yaml").is_file()):
        text = (directory / "config.yaml").read_text()
        resources = load_text(text, default_namespace="default").raise_for_errors().resources
        registry = load_registry_text((directory / "registry.yaml").read_text()).raise_for_errors().to_registry()
        mesh = default_mesh_config()
        if (directory / "mesh.yaml").is_file():
            loaded = load_mesh_config((directory / "mesh.yaml").read_text()).raise_for_errors().config
            assert loaded is not None
            mesh = loaded
        services = AggregateRegistry(
            [registry, ServiceEntryRegistry(resources, default_export_to=mesh.default_service_export_to)]
        )
        push = PushContext.build(resources, services, root_namespace=mesh.root_namespace)
        for proxy in yaml.safe_load((directory / "proxies.yaml").read_text())["proxies"]:
            parsed = Proxy.parse(proxy["node"], proxy.get("metadata") or {}, locality=proxy.get("locality"))
            if parsed.type is NodeType.SIDECAR and parsed.metadata.generator != "grpc":
                contexts.append(GenerationContext(parsed, push, services, mesh))
    return contexts


@pytest.mark.parametrize("case", ["mesh", "golden"])
def test_route_configurations_written_as_bytes_are_the_messages_of_their_virtual_hosts(case):
    contexts = [_context()] if case == "mesh" else _golden_sidecars()
    assert contexts
    for ctx in contexts:
        builder = _SidecarRoutes(ctx)
        for port in outbound_http_ports(ctx):
            expected = _route_configuration(str(port), [*builder.virtual_hosts(port), builder.catch_all()])

            data, found = builder.written(port)

            assert data == expected.SerializeToString(deterministic=True), (ctx.proxy.id, port)
            assert found == references(expected)
    resources = route_resources(_context())
    assert [resource.any_bytes for resource in resources] == [
        pack(message).any_bytes for message in build_routes(_context())
    ]
