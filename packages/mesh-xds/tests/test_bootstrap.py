"""Bootstrap generation: every variant is accepted by the real Envoy, and reads back as the node it describes."""

import json
import math
import os
import queue
import shutil
import stat
import subprocess
import sys
from concurrent import futures

import grpc
import pytest
from envoy.service.discovery.v3 import discovery_pb2

from mesh_model import InterceptionMode, Locality, NodeType, Proxy, Workload
from mesh_xds.bootstrap import (
    GRPC_SERVER_LISTENER_TEMPLATE,
    PROMETHEUS_CLUSTER,
    READINESS_LISTENER,
    SDS_CLUSTER,
    STATS_LISTENER,
    XDS_CLUSTER,
    ApiType,
    DiscoveryAddress,
    EnvoyBootstrapOptions,
    GrpcBootstrapOptions,
    InvalidBootstrapError,
    NodeIdentity,
    TlsFiles,
    envoy_bootstrap,
    grpc_bootstrap,
    write_bootstrap,
)
from mesh_xds.errors import XdsError
from mesh_xds.testing.envoy import free_loopback_address, validate_config

H2_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def _node(**changes):
    fields = {
        "ip": "127.0.20.1",
        "name": "reviews-v1-0",
        "namespace": "bookinfo",
        "labels": {"app": "reviews", "version": "v1"},
        "service_account": "bookinfo-reviews",
        "locality": "us-east/zone-a/rack-1",
    }
    return NodeIdentity(**{**fields, **changes})


def _options(**changes):
    fields = {
        "node": _node(),
        "discovery": DiscoveryAddress(host="127.0.20.250", port=15010),
        "admin_address": "127.0.20.1",
        "sds_socket": "/tmp/mesh-test/reviews-v1-0/sds.sock",
    }
    return EnvoyBootstrapOptions(**{**fields, **changes})


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    directory = tmp_path_factory.mktemp("tls")
    command = [
        *("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"),
        *("-keyout", str(directory / "key.pem"), "-out", str(directory / "cert.pem"), "-days", "1"),
        *("-subj", "/CN=istiod.istio-system.svc", "-addext", "subjectAltName=DNS:istiod.istio-system.svc"),
    ]
    subprocess.run(command, check=True, capture_output=True, timeout=60)
    return directory


def _tls(directory, *, mutual=True, server_name="istiod.istio-system.svc"):
    if not mutual:
        return TlsFiles(ca_certificate=directory / "cert.pem", server_name=server_name)
    return TlsFiles(
        ca_certificate=directory / "cert.pem",
        certificate_chain=directory / "cert.pem",
        private_key=directory / "key.pem",
        server_name=server_name,
    )


VARIANTS = {
    "sidecar-delta": {},
    "sidecar-sotw": {"api_type": ApiType.GRPC},
    "gateway": {"node_type": NodeType.ROUTER},
    "gateway-sotw-no-sds": {"node_type": NodeType.ROUTER, "api_type": ApiType.GRPC, "sds_socket": None},
    "dns-discovery": {"discovery": DiscoveryAddress(host="istiod.istio-system.svc", port=15012)},
    "no-status-listeners-free-admin-port": {"readiness_port": None, "stats_port": None, "admin_port": 0},
    "free-listener-ports": {"readiness_port": 0, "stats_port": 0},
    "status-on-all-addresses": {"status_address": "0.0.0.0"},
    "ipv6-loopback": {"admin_address": "::1", "discovery": DiscoveryAddress(host="::1", port=15010)},
    "tuned": {
        "initial_fetch_timeout": 0.25,
        "stats_flush_interval": 1,
        "runtime": {"re2.max_program_size.error_level": 32768},
    },
    "minimal-node": {"node": NodeIdentity(ip="127.0.20.2", name="app")},
}


@pytest.mark.parametrize("changes", VARIANTS.values(), ids=VARIANTS.keys())
def test_every_envoy_variant_is_accepted_by_envoy(changes):
    result = validate_config(envoy_bootstrap(_options(**changes)))
    assert result.ok, result.error
    assert result.error == ""


@pytest.mark.parametrize("mutual", [True, False], ids=["mtls", "tls"])
def test_tls_to_the_control_plane_is_accepted_by_envoy(tls_files, mutual):
    options = _options(discovery=DiscoveryAddress(host="127.0.20.250", port=15012, tls=_tls(tls_files, mutual=mutual)))
    config = envoy_bootstrap(options)
    validate_config(config, check=True)
    xds = config["static_resources"]["clusters"][0]
    context = xds["transport_socket"]["typed_config"]
    assert context["sni"] == "istiod.istio-system.svc"
    assert context["common_tls_context"]["alpn_protocols"] == ["h2"]
    assert ("tls_certificates" in context["common_tls_context"]) is mutual


def test_the_node_reads_back_as_the_proxy_it_describes():
    config = envoy_bootstrap(_options(node=_node(network="net-1", workload_name="reviews-v1", extra_ips=["::1"])))
    node = config["node"]
    assert node["id"] == "sidecar~127.0.20.1~reviews-v1-0.bookinfo~bookinfo.svc.cluster.local"
    assert node["cluster"] == "reviews.bookinfo"
    assert node["locality"] == {"region": "us-east", "zone": "zone-a", "sub_zone": "rack-1"}
    proxy = Proxy.parse(node["id"], node["metadata"], locality="us-east/zone-a/rack-1")
    assert proxy.type is NodeType.SIDECAR
    assert proxy.ip_addresses == ("127.0.20.1", "::1")
    assert proxy.id == "reviews-v1-0.bookinfo"
    assert proxy.namespace == "bookinfo"
    assert dict(proxy.labels) == {"app": "reviews", "version": "v1"}
    metadata = proxy.metadata
    assert metadata.service_account == "bookinfo-reviews"
    assert metadata.cluster_id == "Kubernetes"
    assert metadata.istio_version == (1, 32, 0)
    assert metadata.interception_mode is InterceptionMode.NONE
    assert (metadata.network, metadata.workload_name, metadata.mesh_id) == ("net-1", "reviews-v1", "cluster.local")
    assert metadata.generator == ""
    assert node["metadata"]["ENVOY_STATUS_PORT"] == 15021
    assert node["metadata"]["ENVOY_PROMETHEUS_PORT"] == 15090
    assert proxy.identity("cluster.local").uri == "spiffe://cluster.local/ns/bookinfo/sa/bookinfo-reviews"


def test_a_gateway_is_a_router_node():
    node_id = envoy_bootstrap(_options(node_type=NodeType.ROUTER))["node"]["id"]
    assert Proxy.parse(node_id).is_gateway


def test_a_node_identity_round_trips_through_a_parsed_proxy():
    original = _node(workload_name="reviews-v1", extra_metadata={"OWNER": "kubernetes://apis/apps/v1/x"})
    proxy = Proxy.parse(original.node_id(), original.metadata(), locality=original.locality)
    again = NodeIdentity.from_proxy(proxy, extra_metadata={"OWNER": "kubernetes://apis/apps/v1/x"})
    assert again == original
    assert NodeIdentity.from_proxy(proxy, namespace="other").namespace == "other"


def test_a_node_identity_from_a_workload():
    workload = Workload(
        name="ratings-v1-0",
        namespace="bookinfo",
        addresses=["127.0.21.1"],
        labels={"app": "ratings"},
        service_account="ratings",
        locality=Locality("eu", "b"),
    )
    node = NodeIdentity.from_workload(workload)
    assert node.node_id(NodeType.SIDECAR) == "sidecar~127.0.21.1~ratings-v1-0.bookinfo~bookinfo.svc.cluster.local"
    assert node.metadata()["SERVICE_ACCOUNT"] == "ratings"
    assert node.locality_json == {"region": "eu", "zone": "b"}
    with pytest.raises(InvalidBootstrapError, match="has no address"):
        NodeIdentity.from_workload(Workload(name="w", namespace="ns"))


def test_the_envoy_bootstrap_has_istio_shape():
    config = envoy_bootstrap(_options(api_type=ApiType.GRPC))
    dynamic = config["dynamic_resources"]
    assert dynamic["ads_config"] == {
        "api_type": "GRPC",
        "transport_api_version": "V3",
        "set_node_on_first_message_only": True,
        "grpc_services": [{"envoy_grpc": {"cluster_name": XDS_CLUSTER}}],
    }
    for key in ("lds_config", "cds_config"):
        assert dynamic[key] == {"ads": {}, "initial_fetch_timeout": "0s", "resource_api_version": "V3"}
    clusters = {cluster["name"]: cluster for cluster in config["static_resources"]["clusters"]}
    assert set(clusters) == {XDS_CLUSTER, SDS_CLUSTER, PROMETHEUS_CLUSTER}
    for name in (XDS_CLUSTER, SDS_CLUSTER):
        options = clusters[name]["typed_extension_protocol_options"][H2_OPTIONS]
        assert options["explicit_http_config"] == {"http2_protocol_options": {}}

    def address(cluster):
        return cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]

    assert address(clusters[XDS_CLUSTER])["socket_address"] == {"address": "127.0.20.250", "port_value": 15010}
    assert address(clusters[SDS_CLUSTER]) == {"pipe": {"path": "/tmp/mesh-test/reviews-v1-0/sds.sock"}}
    assert address(clusters[PROMETHEUS_CLUSTER])["socket_address"] == {"address": "127.0.20.1", "port_value": 15000}
    assert config["admin"]["address"]["socket_address"] == {"address": "127.0.20.1", "port_value": 15000}
    listeners = {
        listener["name"]: listener["address"]["socket_address"] for listener in config["static_resources"]["listeners"]
    }
    assert listeners == {
        STATS_LISTENER: {"address": "127.0.20.1", "port_value": 15090},
        READINESS_LISTENER: {"address": "127.0.20.1", "port_value": 15021},
    }
    assert [layer["name"] for layer in config["layered_runtime"]["layers"]] == ["admin"]


def test_options_that_change_the_bootstrap():
    config = envoy_bootstrap(
        _options(
            status_address="127.0.20.9",
            sds_socket=None,
            stats_port=None,
            initial_fetch_timeout=1.5,
            stats_flush_interval=0.25,
            runtime={"a.b": 1},
        )
    )
    assert [cluster["name"] for cluster in config["static_resources"]["clusters"]] == [XDS_CLUSTER]
    (listener,) = config["static_resources"]["listeners"]
    assert listener["address"]["socket_address"] == {"address": "127.0.20.9", "port_value": 15021}
    assert config["dynamic_resources"]["cds_config"]["initial_fetch_timeout"] == "1.5s"
    assert config["stats_flush_interval"] == "0.25s"
    assert config["layered_runtime"]["layers"][0] == {"name": "global config", "static_layer": {"a.b": 1}}
    assert "ENVOY_PROMETHEUS_PORT" not in config["node"]["metadata"]
    dns = envoy_bootstrap(_options(discovery=DiscoveryAddress(host="istiod.istio-system.svc")))
    assert dns["static_resources"]["clusters"][0]["type"] == "STRICT_DNS"


def _invalid_cases():
    long_path = "/tmp/" + "s" * 200
    return {
        "port out of range": (lambda: _options(readiness_port=70000), "70000"),
        "port is a bool": (lambda: DiscoveryAddress(port=True), "True"),
        "discovery port 0": (lambda: DiscoveryAddress(port=0), "discovery port 0"),
        "admin off loopback": (lambda: _options(admin_address="10.0.0.1"), "'10.0.0.1' is not a loopback"),
        "admin not an address": (lambda: _options(admin_address="localhost"), "'localhost' is not an IP"),
        "status not an address": (lambda: _options(status_address="nowhere"), "'nowhere'"),
        "sds path too long": (lambda: _options(sds_socket=long_path), "longer than the 107 bytes"),
        "sds path with NUL": (lambda: _options(sds_socket="/tmp/a\x00b"), "not a usable file path"),
        "sds path empty": (lambda: _options(sds_socket=""), "not a usable file path"),
        "node ip": (lambda: _node(ip="pod-1"), "'pod-1' is not an IP"),
        "node name with ~": (lambda: _node(name="a~b"), "may not contain '~'"),
        "node name empty": (lambda: _node(name=""), "node name is empty"),
        "namespace": (lambda: _node(namespace="Book_Info"), "'Book_Info'"),
        "labels": (lambda: _node(labels={"bad key!": "x"}), "bad key!"),
        "locality": (lambda: _node(locality="a/b/c/d"), "a/b/c/d"),
        "metadata not JSON": (lambda: _node(extra_metadata={"X": {1, 2}}), "not JSON"),
        "metadata keys": (lambda: _node(extra_metadata={1: "x"}), "string keys"),
        "waypoint": (lambda: _options(node_type=NodeType.WAYPOINT), "NodeType.WAYPOINT"),
        "api type as text": (lambda: _options(api_type="GRPC"), "'GRPC' is not an ApiType"),
        "free admin port with stats": (lambda: _options(admin_port=0), "admin_port 0 cannot be combined"),
        "port clash": (
            lambda: _options(stats_port=15021),
            "stats_port 15021 on 127.0.20.1 clashes with readiness_port",
        ),
        "port clash on wildcard": (
            lambda: _options(status_address="0.0.0.0", readiness_port=15000),
            "readiness_port 15000 on 0.0.0.0 clashes with admin_port",
        ),
        "negative timeout": (lambda: _options(initial_fetch_timeout=-1), "-1"),
        "nan timeout": (lambda: _options(initial_fetch_timeout=math.nan), "nan"),
        "zero flush interval": (lambda: _options(stats_flush_interval=0), "more than zero"),
        "runtime keys": (lambda: _options(runtime={("a",): 1}), "string keys"),
        "connection limit": (lambda: _options(max_downstream_connections=0), "max_downstream_connections 0"),
        "chain without key": (
            lambda: TlsFiles(ca_certificate="/ca.pem", certificate_chain="/cert.pem"),
            "give both or neither",
        ),
        "server name with space": (lambda: TlsFiles(ca_certificate="/ca.pem", server_name="a b"), "'a b'"),
        "grpc server name": (
            lambda: GrpcBootstrapOptions(
                node=_node(), discovery=DiscoveryAddress(tls=TlsFiles(ca_certificate="/ca.pem", server_name="x"))
            ),
            "no place for it",
        ),
        "grpc feature": (lambda: GrpcBootstrapOptions(node=_node(), server_features=[""]), "server feature is empty"),
        "options type": (lambda: envoy_bootstrap(_node()), "is not an EnvoyBootstrapOptions"),
        "node type": (lambda: EnvoyBootstrapOptions(node="sidecar~1.2.3.4~a.b~c"), "is not a NodeIdentity"),
    }


@pytest.mark.parametrize(("make", "fragment"), _invalid_cases().values(), ids=_invalid_cases().keys())
def test_invalid_options_raise_clear_errors(make, fragment):
    with pytest.raises(InvalidBootstrapError) as caught:
        make()
    assert fragment in str(caught.value)
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, XdsError)


def test_write_bootstrap_writes_json_atomically(tmp_path):
    config = envoy_bootstrap(_options())
    path = write_bootstrap(config, tmp_path / "envoy.json")
    assert json.loads(path.read_text()) == config
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    write_bootstrap({"node": {"id": "replaced"}}, os.fspath(path))
    assert json.loads(path.read_text()) == {"node": {"id": "replaced"}}
    assert [entry.name for entry in tmp_path.iterdir()] == ["envoy.json"]
    with pytest.raises(InvalidBootstrapError, match="not JSON"):
        write_bootstrap({"x": object()}, tmp_path / "bad.json")
    assert [entry.name for entry in tmp_path.iterdir()] == ["envoy.json"]
    with pytest.raises(InvalidBootstrapError, match="not a JSON object"):
        write_bootstrap([1, 2], tmp_path / "list.json")


def test_the_grpc_bootstrap_has_what_grpc_and_istio_need():
    config = grpc_bootstrap(GrpcBootstrapOptions(node=_node(), discovery=DiscoveryAddress(host="::1", port=15010)))
    (server,) = config["xds_servers"]
    assert server == {
        "server_uri": "[::1]:15010",
        "channel_creds": [{"type": "insecure"}],
        "server_features": ["xds_v3"],
    }
    assert config["server_listener_resource_name_template"] == GRPC_SERVER_LISTENER_TEMPLATE
    assert GRPC_SERVER_LISTENER_TEMPLATE == "xds.istio.io/grpc/lds/inbound/%s"
    node = config["node"]
    proxy = Proxy.parse(node["id"], node["metadata"])
    assert proxy.metadata.generator == "grpc"
    assert proxy.namespace == "bookinfo"
    assert node["locality"] == {"region": "us-east", "zone": "zone-a", "sub_zone": "rack-1"}
    assert "certificate_providers" not in config


def test_the_grpc_bootstrap_with_tls_and_certificates(tmp_path):
    tls = TlsFiles(
        ca_certificate=tmp_path / "ca.pem", certificate_chain=tmp_path / "c.pem", private_key=tmp_path / "k.pem"
    )
    options = GrpcBootstrapOptions(
        node=_node(), discovery=DiscoveryAddress(tls=tls), certificate_dir=tmp_path / "certs"
    )
    config = grpc_bootstrap(options)
    assert config["xds_servers"][0]["channel_creds"] == [
        {
            "type": "tls",
            "config": {
                "ca_certificate_file": str(tmp_path / "ca.pem"),
                "certificate_file": str(tmp_path / "c.pem"),
                "private_key_file": str(tmp_path / "k.pem"),
            },
        }
    ]
    provider = config["certificate_providers"]["default"]
    assert provider["plugin_name"] == "file_watcher"
    assert provider["config"]["certificate_file"] == str(tmp_path / "certs" / "cert-chain.pem")
    assert provider["config"]["ca_certificate_file"] == str(tmp_path / "certs" / "root-cert.pem")


_GRPC_CLIENT = """
import grpc
channel = grpc.insecure_channel("xds:///reviews.bookinfo.svc.cluster.local:9080")
grpc.channel_ready_future(channel).result(timeout=120)
"""


def test_grpcio_reads_the_grpc_bootstrap_and_sends_its_node(tmp_path):
    """A grpcio client in a subprocess, given the bootstrap, opens ADS to our address with our node."""
    requests = queue.Queue()

    def stream(request_iterator, context):
        for request in request_iterator:
            requests.put(request)
        yield from ()

    handler = grpc.method_handlers_generic_handler(
        "envoy.service.discovery.v3.AggregatedDiscoveryService",
        {
            "StreamAggregatedResources": grpc.stream_stream_rpc_method_handler(
                stream,
                request_deserializer=discovery_pb2.DiscoveryRequest.FromString,
                response_serializer=discovery_pb2.DiscoveryResponse.SerializeToString,
            )
        },
    )
    address = free_loopback_address(ports=())
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port(f"{address}:0")
    server.start()
    node = NodeIdentity(ip=address, name="productpage-v1-0", namespace="bookinfo")
    config = grpc_bootstrap(GrpcBootstrapOptions(node=node, discovery=DiscoveryAddress(host=address, port=port)))
    path = write_bootstrap(config, tmp_path / "grpc-bootstrap.json")
    env = {**os.environ, "GRPC_XDS_BOOTSTRAP": str(path)}
    client = subprocess.Popen(
        [sys.executable, "-c", _GRPC_CLIENT], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        try:
            first = requests.get(timeout=60)
        except queue.Empty:
            client.kill()
            pytest.fail(f"grpcio sent no ADS request: {client.communicate()[1].decode()[-2000:]}")
    finally:
        client.kill()
        client.communicate()
        server.stop(grace=None)
    assert first.type_url == "type.googleapis.com/envoy.config.listener.v3.Listener"
    assert list(first.resource_names) == ["reviews.bookinfo.svc.cluster.local:9080"]
    assert first.node.id == f"sidecar~{address}~productpage-v1-0.bookinfo~bookinfo.svc.cluster.local"
    assert first.node.metadata["GENERATOR"] == "grpc"
    assert first.node.metadata["NAMESPACE"] == "bookinfo"
