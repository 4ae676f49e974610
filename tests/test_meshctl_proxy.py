"""``meshctl proxy-status``, ``proxy-config`` and ``bootstrap`` against a live ADS server, an admin API and Envoy.

Each test starts an XdsServer with a SnapshotCache on loopback, connects test clients that behave like
Envoy (one of them NACKs), and runs meshctl's ``main()`` in a worker thread so that the server keeps
serving on the test's event loop. One test runs a real Envoy from ``meshctl bootstrap``'s output.
"""

import asyncio
import datetime
import http.server
import json
import re
import socket
import threading

import grpc
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from envoy.service.discovery.v3 import discovery_pb2

from mesh_xds import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    SECRET_TYPE,
    NodeInfo,
    Snapshot,
    SnapshotCache,
    SyncState,
    TlsSecret,
    XdsServer,
    pack,
    secret_resource,
)
from mesh_xds.testing import AdsClient
from mesh_xds.testing.envoy import EnvoyProcess, free_loopback_address, validate_config
from mesh_xds.testing.resources import eds_cluster, http_listener, load_assignment, route_configuration, tcp_listener
from meshctl.cli import main

REVIEWS = "outbound|9080|v1|reviews.default.svc.cluster.local"
MYSQL = "outbound|3306||mysql.default.svc.cluster.local"
DESTINATION_RULE = "/apis/networking.istio.io/v1/namespaces/default/destination-rule/reviews"
VIRTUAL_SERVICE = "/apis/networking.istio.io/v1/namespaces/default/virtual-service/reviews"
METADATA = {"CLUSTER_ID": "Kubernetes", "ISTIO_VERSION": "1.32.0"}
REVIEWS_NODE = NodeInfo("sidecar~127.0.0.1~reviews-v1.default~default.svc.cluster.local", metadata=METADATA)
RATINGS_NODE = NodeInfo("sidecar~127.0.0.2~ratings-v1.default~default.svc.cluster.local", metadata=METADATA)
ALL_TYPES = [CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE]
NACK = "Error adding/updating listener(s) 0.0.0.0_9080: cannot bind to 127.0.0.1:9080\nsecond line"
DEADLINE = 30.0


def certificate(identity="spiffe://cluster.local/ns/default/sa/reviews"):
    """A self-signed ECDSA certificate with a SPIFFE URI SAN, and its key, in PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cluster.local")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(0x1234ABCD)
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem.decode(), cert


def istio_snapshot(host="127.0.0.1", secrets=()):
    """Istio-named resources: two outbound clusters, an HTTP and a TCP listener, a route, endpoints."""
    reviews = eds_cluster(REVIEWS)
    reviews.metadata.filter_metadata["istio"].update({"config": DESTINATION_RULE})
    listener = http_listener("0.0.0.0_9080", host, 9080, route_name="9080")
    match = listener.filter_chains[0].filter_chain_match
    match.transport_protocol = "raw_buffer"
    match.application_protocols.extend(["http/1.1", "h2c"])
    route = route_configuration("9080", {"reviews.default.svc.cluster.local": REVIEWS})
    route.virtual_hosts[0].routes[0].metadata.filter_metadata["istio"].update({"config": VIRTUAL_SERVICE})
    messages = [
        reviews,
        eds_cluster(MYSQL),
        load_assignment(REVIEWS, [("127.0.10.1", 9080), ("127.0.10.2", 9080)]),
        load_assignment(MYSQL, [("127.0.10.3", 3306)]),
        listener,
        tcp_listener("0.0.0.0_3306", host, 3306, cluster=MYSQL),
        route,
    ]
    return Snapshot([*map(pack, messages), *secrets])


@pytest.fixture
async def control_plane():
    cache = SnapshotCache()
    server = XdsServer(cache)
    await server.start("127.0.0.1:0")
    yield cache, server, server.address
    await server.stop(grace=0)


async def meshctl(capsys, *argv):
    code = await asyncio.to_thread(main, [str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return code, out, err


def rows(table):
    """The cells of an aligned table (columns are apart by three spaces or more)."""
    return [re.split(r" {3,}", line) for line in table.splitlines()]


def nack_listeners(response):
    return NACK if response.type_url == LISTENER_TYPE else None


def listeners_nacked(statuses):
    listeners = statuses[0].type(LISTENER_TYPE) if statuses else None
    return listeners is not None and listeners.state is SyncState.NACKED


async def connect(client, *type_urls):
    await client.connect()
    for type_url in type_urls:
        await client.subscribe(type_url)
    return client


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# ------------------------------------------------------------------------------------------ proxy-status


async def test_proxy_status_lists_every_proxy_with_each_types_state_and_the_last_nack(control_plane, capsys):
    cache, server, address = control_plane
    for node in (REVIEWS_NODE, RATINGS_NODE):
        cache.set_snapshot(node.id, istio_snapshot())
    reviews = await connect(AdsClient(address, REVIEWS_NODE), CLUSTER_TYPE, LISTENER_TYPE)
    ratings = await connect(AdsClient(address, RATINGS_NODE, rejector=nack_listeners), CLUSTER_TYPE, LISTENER_TYPE)
    try:
        await server.wait_synced(REVIEWS_NODE.id, type_urls=ALL_TYPES)
        await server.wait_until(listeners_nacked, node_id=RATINGS_NODE.id)
        code, out, err = await meshctl(capsys, "proxy-status", "--xds-address", address)
        json_code, as_json, _ = await meshctl(capsys, "proxy-status", "--xds-address", address, "-o", "json")
        _, as_yaml, _ = await meshctl(capsys, "proxy-status", "--xds-address", address, "--output", "yaml")
    finally:
        await reviews.close()
        await ratings.close()
    assert (code, err) == (0, "")
    header, *lines = out.splitlines()
    assert rows(out) == [
        ["NAME", "CLUSTER", "CDS", "LDS", "EDS", "RDS", "ECDS", "ISTIOD", "VERSION", "LAST NACK"],
        [
            *("ratings-v1.default", "Kubernetes", "SYNCED", "NACKED", "SYNCED", "NOT SENT", "NOT SENT", address),
            *("1.32.0", "LDS: Error adding/updating listener(s) 0.0.0.0_9080: cannot bind to 127.0.0.1:9080"),
        ],
        [
            "reviews-v1.default",
            "Kubernetes",
            "SYNCED",
            "SYNCED",
            "SYNCED",
            "SYNCED",
            "NOT SENT",
            address,
            "1.32.0",
            "-",
        ],
    ]
    assert header.index("LDS") == lines[0].index("NACKED")
    assert header.index("RDS") == lines[0].index("NOT SENT")
    assert header.index("LAST NACK") == lines[0].index("LDS: ") == lines[1].rindex("-")
    assert json_code == 0
    report = json.loads(as_json)
    assert report == yaml.safe_load(as_yaml)
    assert [(proxy["name"], proxy["node_id"]) for proxy in report] == [
        ("ratings-v1.default", RATINGS_NODE.id),
        ("reviews-v1.default", REVIEWS_NODE.id),
    ]
    ratings_types = report[0]["types"]
    assert {name: status["state"] for name, status in ratings_types.items()} == {
        "cds": "SYNCED",
        "eds": "SYNCED",
        "lds": "NACKED",
    }
    assert ratings_types["lds"]["nack"]["message"] == NACK
    assert ratings_types["lds"]["nack"]["version"] == istio_snapshot().resources(LISTENER_TYPE).version
    assert report[1]["types"]["rds"]["resources"] == 1
    assert report[1]["istiod"] == address


async def test_a_response_sent_but_not_acked_is_stale(control_plane, capsys):
    cache, _, address = control_plane
    cache.set_snapshot(REVIEWS_NODE.id, istio_snapshot())
    async with grpc.aio.insecure_channel(address) as channel:
        call = channel.stream_stream(
            "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources",
            request_serializer=discovery_pb2.DiscoveryRequest.SerializeToString,
            response_deserializer=discovery_pb2.DiscoveryResponse.FromString,
        )()
        await call.write(discovery_pb2.DiscoveryRequest(node=REVIEWS_NODE.to_proto(), type_url=CLUSTER_TYPE))
        response = await call.read()  # the clusters, never ACKed
        assert len(response.resources) == 2
        code, out, _ = await meshctl(capsys, "proxy-status", "--xds-address", address)
        call.cancel()
    assert code == 0
    assert rows(out)[1][:5] == ["reviews-v1.default", "Kubernetes", "STALE", "NOT SENT", "NOT SENT"]


async def test_no_proxy_connected_prints_the_header_only(control_plane, capsys):
    _, _, address = control_plane
    code, out, _ = await meshctl(capsys, "proxy-status", "--xds-address", address)
    assert code == 0
    assert rows(out) == [["NAME", "CLUSTER", "CDS", "LDS", "EDS", "RDS", "ECDS", "ISTIOD", "VERSION", "LAST NACK"]]
    assert await meshctl(capsys, "proxy-status", "--xds-address", address, "-o", "json") == (0, "[]\n", "")


@pytest.mark.parametrize(
    "argv", [["proxy-status"], ["proxy-config", "cluster", "reviews"], ["proxy-config", "secret", "reviews"]]
)
def test_an_unreachable_server_exits_1_naming_the_address(capsys, argv):
    address = f"127.0.0.1:{free_port()}"
    assert main([*argv, "--xds-address", address]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"meshctl: cannot reach the xDS server at {address}: UNAVAILABLE")


# ------------------------------------------------------------------------------------------ proxy-config (CSDS)


async def test_proxy_config_shows_what_the_control_plane_sent_in_istioctls_columns(control_plane, capsys):
    cache, server, address = control_plane
    cache.set_snapshot(REVIEWS_NODE.id, istio_snapshot())
    async with AdsClient(address, REVIEWS_NODE) as client:
        await client.subscribe(CLUSTER_TYPE)
        await client.subscribe(LISTENER_TYPE)
        await server.wait_synced(REVIEWS_NODE.id, type_urls=ALL_TYPES)
        outputs = {}
        for kind in ("cluster", "listener", "route", "endpoint"):
            code, outputs[kind], err = await meshctl(capsys, "proxy-config", kind, "reviews", "--xds-address", address)
            assert (code, err) == (0, "")
        code, as_json, _ = await meshctl(
            capsys, "proxy-config", "cluster", REVIEWS_NODE.id, "--xds-address", address, "-o", "json"
        )
    assert outputs["cluster"] == (
        "SERVICE FQDN                        PORT   SUBSET   DIRECTION   TYPE   DESTINATION RULE\n"
        "mysql.default.svc.cluster.local     3306   -        outbound    EDS    -\n"
        "reviews.default.svc.cluster.local   9080   v1       outbound    EDS    reviews.default\n"
    )
    assert outputs["listener"] == (
        "ADDRESSES   PORT   MATCH                                  DESTINATION\n"
        "127.0.0.1   3306   ALL                                    Cluster: " + MYSQL + "\n"
        "127.0.0.1   9080   Trans: raw_buffer; App: http/1.1,h2c   Route: 9080\n"
    )
    assert outputs["route"] == (
        "NAME   VHOST NAME                          DOMAINS                             MATCH   VIRTUAL SERVICE\n"
        "9080   reviews.default.svc.cluster.local   reviews.default.svc.cluster.local   /*      reviews.default\n"
    )
    assert rows(outputs["endpoint"]) == [
        ["ENDPOINT", "STATUS", "OUTLIER CHECK", "CLUSTER"],
        ["127.0.10.3:3306", "UNKNOWN", "-", MYSQL],
        ["127.0.10.1:9080", "UNKNOWN", "-", REVIEWS],
        ["127.0.10.2:9080", "UNKNOWN", "-", REVIEWS],
    ]
    assert code == 0
    clusters = json.loads(as_json)
    assert [(c["name"], c["status"]) for c in clusters] == [(MYSQL, "SYNCED"), (REVIEWS, "SYNCED")]
    assert clusters[1]["version"] == istio_snapshot().resources(CLUSTER_TYPE).version
    assert clusters[1]["config"]["metadata"] == {"filter_metadata": {"istio": {"config": DESTINATION_RULE}}}


async def test_proxy_config_names_an_unknown_or_ambiguous_proxy_and_the_server(control_plane, capsys):
    cache, server, address = control_plane
    clients = []
    for node in (REVIEWS_NODE, RATINGS_NODE):
        cache.set_snapshot(node.id, istio_snapshot())
        clients.append(await connect(AdsClient(address, node), CLUSTER_TYPE))
    try:
        await server.wait_until(lambda statuses: len(statuses) == 2)
        unknown = await meshctl(capsys, "proxy-config", "cluster", "details", "--xds-address", address)
        ambiguous = await meshctl(capsys, "proxy-config", "route", "sidecar~127.0.0", "--xds-address", address)
        prefix = await meshctl(capsys, "proxy-config", "cluster", "rat", "--xds-address", address)
    finally:
        for client in clients:
            await client.close()
    assert unknown[:2] == (1, "")
    assert unknown[2].startswith("meshctl: no proxy matches 'details' (2 connected: ")
    assert unknown[2].endswith(f" on the xDS server at {address}\n")
    assert ambiguous[:2] == (1, "")
    assert ambiguous[2].startswith("meshctl: 'sidecar~127.0.0' matches 2 proxies: ")
    assert prefix[0] == 0
    assert "reviews.default.svc.cluster.local   9080" in prefix[1]


async def test_secrets_over_csds_show_names_and_state_never_keys(control_plane, capsys):
    cache, server, address = control_plane
    chain, key, _ = certificate()
    secret = secret_resource("default", TlsSecret(certificate_chain=chain.encode(), private_key=key.encode()))
    cache.set_snapshot(REVIEWS_NODE.id, istio_snapshot(secrets=[secret]))
    async with AdsClient(address, REVIEWS_NODE, follow_references=False) as client:
        await client.subscribe(SECRET_TYPE, ["default"])
        await server.wait_synced(REVIEWS_NODE.id, type_urls=[SECRET_TYPE])
        table = await meshctl(capsys, "proxy-config", "secret", "reviews", "--xds-address", address)
        as_json = await meshctl(capsys, "proxy-config", "secret", "reviews", "--xds-address", address, "-o", "json")
    assert table[0] == as_json[0] == 0
    assert rows(table[1])[1] == ["default", "-", "ACTIVE", "-", "-", "-", "-", "-"]
    [entry] = json.loads(as_json[1])
    assert (entry["name"], entry["status"], entry["certificates"]) == ("default", "SYNCED", [])
    for output in (table[1], as_json[1]):
        assert "PRIVATE KEY" not in output
        assert key.splitlines()[1] not in output


# ------------------------------------------------------------------------------------------ proxy-config --admin


class FakeAdmin:
    """An HTTP server answering ``/config_dump`` and ``/clusters`` like an admin API that does not redact keys."""

    def __init__(self, dump, clusters):
        answers = {"/config_dump": json.dumps(dump).encode(), "/clusters": json.dumps(clusters).encode()}

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = answers.get(self.path.partition("?")[0])
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, format, *args):
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def close(self):
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


@pytest.fixture
def leaky_admin():
    chain, key, cert = certificate()
    secret = {
        "name": "default",
        "tls_certificate": {"certificate_chain": {"inline_string": chain}, "private_key": {"inline_string": key}},
    }
    roots = {"name": "ROOTCA", "validation_context": {"trusted_ca": {"inline_string": chain}}}
    dump = {
        "configs": [
            {
                "@type": "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump",
                "bootstrap": {"node": {"id": REVIEWS_NODE.id}},
            },
            {
                "@type": "type.googleapis.com/envoy.admin.v3.SecretsConfigDump",
                "dynamic_active_secrets": [
                    {"name": "default", "version_info": "v1", "secret": secret},
                    {"name": "ROOTCA", "version_info": "v1", "secret": roots},
                ],
                "dynamic_warming_secrets": [{"name": "gateway", "secret": {"name": "gateway", "generic_secret": {}}}],
            },
        ]
    }
    admin = FakeAdmin(dump, {"cluster_statuses": []})
    yield admin, key, cert
    admin.close()


def test_secrets_from_an_admin_api_show_validity_serial_and_sans_and_never_a_key(leaky_admin, capsys):
    admin, key, cert = leaky_admin
    assert main(["proxy-config", "secret", "reviews-v1", "--admin", admin.url]) == 0
    table, _ = capsys.readouterr()
    assert main(["proxy-config", "secret", "--admin", admin.url, "-o", "json"]) == 0
    as_json, _ = capsys.readouterr()
    assert main(["proxy-config", "secret", "--admin", admin.url, "-o", "yaml"]) == 0
    as_yaml, _ = capsys.readouterr()
    not_after = cert.not_valid_after_utc.isoformat().replace("+00:00", "Z")
    not_before = cert.not_valid_before_utc.isoformat().replace("+00:00", "Z")
    spiffe = "URI:spiffe://cluster.local/ns/default/sa/reviews"
    assert rows(table) == [
        ["RESOURCE NAME", "TYPE", "STATUS", "VALID CERT", "SERIAL NUMBER", "NOT AFTER", "NOT BEFORE", "SANS"],
        ["ROOTCA", "CA", "ACTIVE", "true", "1234abcd", not_after, not_before, spiffe],
        ["default", "Cert Chain", "ACTIVE", "true", "1234abcd", not_after, not_before, spiffe],
        ["gateway", "Generic", "WARMING", "-", "-", "-", "-", "-"],
    ]
    secrets = json.loads(as_json)
    assert secrets == yaml.safe_load(as_yaml)
    default = secrets[1]
    assert default["config"]["tls_certificate"]["private_key"] == {"inline_string": "[redacted]"}
    assert default["certificates"][0]["sans"] == [spiffe]
    assert default["certificates"][0]["serial_number"] == "1234abcd"
    for output in (table, as_json, as_yaml):
        assert "PRIVATE KEY" not in output
        assert key.splitlines()[1] not in output


def test_an_admin_api_of_another_proxy_or_none_at_all_exits_1(leaky_admin, capsys):
    admin, _, _ = leaky_admin
    assert main(["proxy-config", "cluster", "ratings", "--admin", admin.url]) == 1
    assert capsys.readouterr().err == (
        f"meshctl: the proxy at {admin.url} is {REVIEWS_NODE.id!r}, which 'ratings' does not name\n"
    )
    url = f"http://127.0.0.1:{free_port()}"
    assert main(["proxy-config", "endpoint", "--admin", url]) == 1
    assert capsys.readouterr().err.startswith(f"meshctl: cannot reach the Envoy admin interface at {url}: ")


# ------------------------------------------------------------------------------------------ usage errors


@pytest.mark.parametrize(
    "argv",
    [
        ["proxy-config", "clusterz", "reviews"],
        ["proxy-config", "cluster"],
        ["proxy-config", "cluster", "reviews", "--admin", "ftp://127.0.0.1:15000"],
        ["proxy-config", "cluster", "reviews", "-o", "xml"],
        ["proxy-status", "--xds-address", "127.0.0.1"],
        ["proxy-status", "--xds-address", "127.0.0.1:99999"],
        ["bootstrap"],
        ["bootstrap", "--node-id", "sidecar~127.0.0.1~reviews.default~default.svc.cluster.local", "-o", "table"],
        ["bootstrap", "--node-id", "x", "--xds-address", "unix:/tmp/xds.sock"],
        ["bootstrap", "--node-id", "sidecar~127.0.0.1~a.default~default.svc.cluster.local", "--grpc", "--gateway"],
    ],
)
def test_usage_errors_exit_2(capsys, argv):
    assert main(argv) == 2
    assert "usage: meshctl" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("node_id", "message"),
    [
        ("reviews", "meshctl: bootstrap: node id 'reviews' has 1 '~'-separated parts"),
        ("sidecar~127.0.0.1~reviews.BAD~x", "meshctl: bootstrap: node namespace 'BAD'"),
        (
            "router~127.0.0.1~ingress.istio-system~istio-system.svc.cluster.local --grpc",
            "meshctl: bootstrap: --grpc: a gRPC client's node id is of type sidecar, not router",
        ),
    ],
)
def test_a_bad_node_id_is_a_usage_error_with_a_clear_message(capsys, node_id, message):
    assert main(["bootstrap", "--node-id", *node_id.split()]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(message)


# ------------------------------------------------------------------------------------------ bootstrap


def test_bootstrap_prints_a_config_envoy_accepts(tmp_path, capsys):
    sidecar = "sidecar~127.0.10.1~reviews-v1.default~default.svc.cluster.local"
    assert main(["bootstrap", "--node-id", sidecar, "--xds-address", "127.0.0.5:15012", "--admin-port", "15100"]) == 0
    config = json.loads(capsys.readouterr().out)
    assert config["node"]["id"] == sidecar
    assert config["node"]["metadata"]["NAMESPACE"] == "default"
    assert config["admin"]["address"]["socket_address"] == {"address": "127.0.10.1", "port_value": 15100}
    [xds] = [c for c in config["static_resources"]["clusters"] if c["name"] == "xds-grpc"]
    [endpoint] = xds["load_assignment"]["endpoints"][0]["lb_endpoints"]
    assert endpoint["endpoint"]["address"]["socket_address"] == {"address": "127.0.0.5", "port_value": 15012}
    validate_config(config, check=True)

    gateway = "sidecar~10.0.0.7~ingress.istio-system~istio-system.svc.cluster.local"
    socket_path = tmp_path / "sds.sock"
    argv = ["bootstrap", "--node-id", gateway, "--gateway", "--sds-socket", socket_path, "-o", "yaml"]
    assert main([str(arg) for arg in argv]) == 0
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["node"]["id"] == "router~10.0.0.7~ingress.istio-system~istio-system.svc.cluster.local"
    assert config["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"  # not on a routable address
    assert "sds-grpc" in {cluster["name"] for cluster in config["static_resources"]["clusters"]}
    validate_config(config, check=True)


def test_bootstrap_grpc_prints_what_a_proxyless_client_reads_from_grpc_xds_bootstrap(capsys):
    client = "sidecar~127.0.10.2~greeter-client-0.shop~shop.svc.cluster.local"
    assert main(["bootstrap", "--grpc", "--node-id", client, "--xds-address", "127.0.0.5:15010"]) == 0
    config = json.loads(capsys.readouterr().out)
    assert config["node"]["id"] == client
    assert config["node"]["metadata"]["GENERATOR"] == "grpc"  # meshd answers it with gRPC's resources
    assert config["node"]["metadata"]["NAMESPACE"] == "shop"
    (server,) = config["xds_servers"]
    assert server["server_uri"] == "127.0.0.5:15010"
    assert server["channel_creds"] == [{"type": "insecure"}]
    assert "admin" not in config


# ------------------------------------------------------------------------------------------ a real Envoy


async def test_a_real_envoy_from_meshctl_bootstrap_shows_in_every_view(capsys):
    cache = SnapshotCache()
    xds_host = free_loopback_address((15010,))
    ads = XdsServer(cache)
    await ads.start(f"{xds_host}:15010")
    host = free_loopback_address((15000, 15021, 15090, 9080, 3306))
    node_id = f"sidecar~{host}~productpage-v1-0.default~default.svc.cluster.local"
    code, out, _ = await meshctl(capsys, "bootstrap", "--node-id", node_id, "--xds-address", f"{xds_host}:15010")
    assert code == 0
    config = json.loads(out)
    chain, key, _ = certificate()
    config["static_resources"]["secrets"] = [
        {
            "name": "static-cert",
            "tls_certificate": {"certificate_chain": {"inline_string": chain}, "private_key": {"inline_string": key}},
        }
    ]
    snapshot = istio_snapshot(host)
    cache.set_snapshot(node_id, snapshot)
    try:
        async with EnvoyProcess(config) as envoy:
            await ads.wait_synced(node_id, type_urls=ALL_TYPES, view=snapshot, timeout=DEADLINE)
            status = await meshctl(capsys, "proxy-status", "--xds-address", f"{xds_host}:15010")
            admin = ["--admin", envoy.admin_url]
            clusters = await meshctl(capsys, "proxy-config", "cluster", "productpage", *admin)
            endpoints = await meshctl(capsys, "proxy-config", "endpoint", *admin)
            listeners = await meshctl(capsys, "proxy-config", "listener", *admin, "-o", "json")
            secrets = await meshctl(capsys, "proxy-config", "secret", *admin, "-o", "json")
    finally:
        await ads.stop(grace=0)
    assert status[0] == 0
    assert rows(status[1])[1][:9] == [
        "productpage-v1-0.default",
        "Kubernetes",
        *["SYNCED"] * 4,
        "NOT SENT",
        f"{xds_host}:15010",
        "1.32.0",
    ]
    assert clusters[0] == 0
    cluster_rows = rows(clusters[1])
    assert ["reviews.default.svc.cluster.local", "9080", "v1", "outbound", "EDS", "reviews.default"] in cluster_rows
    assert ["xds-grpc", "-", "-", "-", "STATIC", "-"] in cluster_rows
    assert endpoints[0] == 0
    assert ["127.0.10.1:9080", "HEALTHY", "OK", REVIEWS] in rows(endpoints[1])
    assert listeners[0] == 0
    by_name = {listener["name"]: listener for listener in json.loads(listeners[1])}
    assert by_name["0.0.0.0_9080"]["status"] == "SYNCED"
    assert by_name["0.0.0.0_9080"]["version"] == snapshot.resources(LISTENER_TYPE)["0.0.0.0_9080"].version
    assert by_name["readiness"]["static"] is True
    assert secrets[0] == 0
    [secret] = json.loads(secrets[1])
    assert (secret["name"], secret["type"], secret["static"]) == ("static-cert", "Cert Chain", True)
    assert secret["certificates"][0]["serial_number"] == "1234abcd"
    assert "PRIVATE KEY" not in secrets[1]
