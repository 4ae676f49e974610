"""Gateway listeners: what Istio's Gateways give a router proxy, checked field by field and by a real Envoy.

Every scenario is also validated by ``envoy --mode validate`` in a static bootstrap where RDS names become
inline route configurations, referenced clusters STATIC stubs and SDS secrets static secrets holding test
certificates, so that Envoy builds every TLS context for real.
"""

from __future__ import annotations

import datetime
from typing import Any

import attrs
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from envoy.config.route.v3 import route_components_pb2, route_pb2
from google.protobuf import json_format

from mesh_config import PushContext, default_mesh_config, load_text
from mesh_config.meshconfig import ForwardClientCertDetails, Topology
from mesh_model import InMemoryRegistry, Protocol, Proxy, Service, ServicePort
from mesh_xds.generate import GenerationContext
from mesh_xds.generate._gateway_merge import merge_gateways
from mesh_xds.generate.gateway_lds import build_gateway_listeners, gateway_secret_names
from mesh_xds.testing.envoy import validate_config
from mesh_xds.testing.render import static_bootstrap

GATEWAY_IP = "127.0.4.1"
GATEWAY_PATH = "/apis/networking.istio.io/v1/namespaces/istio-system/gateway/{}"
REVIEWS = "outbound|9080||reviews.default.svc.cluster.local"
MYSQL = "outbound|3306||mysql.db.svc.cluster.local"
NGINX = "outbound|443||nginx.default.svc.cluster.local"
ADS_SOURCE = {"ads": {}, "resource_api_version": "V3"}


def _registry() -> InMemoryRegistry:
    registry = InMemoryRegistry()
    http = [ServicePort("http", 9080, Protocol.HTTP)]
    registry.upsert_service(Service("reviews.default.svc.cluster.local", "default", ports=http))
    registry.upsert_service(Service("ratings.default.svc.cluster.local", "default", ports=http))
    registry.upsert_service(Service("mysql.db.svc.cluster.local", "db", ports=[ServicePort("tcp", 3306, Protocol.TCP)]))
    registry.upsert_service(
        Service("nginx.default.svc.cluster.local", "default", ports=[ServicePort("https", 443, Protocol.HTTPS)])
    )
    return registry


def _context(config: str, *, kind: str = "router", labels: dict[str, str] | None = None) -> GenerationContext:
    resources = load_text(config, default_namespace="istio-system").raise_for_errors().resources
    registry = _registry()
    push = PushContext.build(resources, registry)
    metadata = {"NAMESPACE": "istio-system", "LABELS": labels or {"istio": "ingressgateway"}}
    node = f"{kind}~{GATEWAY_IP}~ingress-1.istio-system~istio-system.svc.cluster.local"
    return GenerationContext(Proxy.parse(node, metadata), push, registry)


def _gateway(name: str, servers: str, selector: str = "istio: ingressgateway") -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: {name}}}
spec:
  selector: {{{selector}}}
  servers:
{servers}
---
"""


def _virtual_service(name: str, body: str, namespace: str = "default") -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}, namespace: {namespace}}}
spec:
{body}
---
"""


HTTP_SERVER = """
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*/bookinfo.example.com"]
"""

BOOKINFO_ROUTES = _virtual_service(
    "bookinfo",
    """
  hosts: [bookinfo.example.com]
  gateways: [istio-system/bookinfo-gateway]
  http:
  - route: [{destination: {host: reviews}}]
""",
)


# --- helpers: readable dicts, and a real Envoy's verdict ------------------------------------------------------


def _dicts(listeners: list[Any]) -> dict[str, dict[str, Any]]:
    return {item.name: json_format.MessageToDict(item, preserving_proto_field_name=True) for item in listeners}


def _listeners(ctx: GenerationContext) -> dict[str, dict[str, Any]]:
    return _dicts(build_gateway_listeners(ctx))


def _config(chain: dict[str, Any], index: int = -1) -> dict[str, Any]:
    return chain["filters"][index]["typed_config"]


def _tls(chain: dict[str, Any]) -> dict[str, Any]:
    assert chain["transport_socket"]["name"] == "envoy.transport_sockets.tls"
    return chain["transport_socket"]["typed_config"]


def _walk(value: Any):
    if isinstance(value, dict):
        yield value
        for item in value.values():
            yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)


def _route_names(listeners: list[dict[str, Any]]) -> set[str]:
    return {node["rds"]["route_config_name"] for node in _walk(listeners) if isinstance(node.get("rds"), dict)}


def _clusters(listeners: list[dict[str, Any]]) -> set[str]:
    found = {node["cluster"] for node in _walk(listeners) if isinstance(node.get("cluster"), str)}
    for node in _walk(listeners):
        if isinstance(node.get("weighted_clusters"), dict):
            found.update(entry["name"] for entry in node["weighted_clusters"]["clusters"])
    return found


@pytest.fixture(scope="module")
def pki() -> dict[str, str]:
    """A CA and a server certificate it signed (PEM), made once for the module."""
    now = datetime.datetime.now(datetime.UTC)

    def build(subject: str, key: Any, issuer: str, signer: Any, *, ca: bool) -> str:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
        builder = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False)
        return builder.sign(signer, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()

    ca_key = ec.generate_private_key(ec.SECP256R1())
    server_key = ec.generate_private_key(ec.SECP256R1())
    key_pem = server_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return {
        "ca": build("test-ca", ca_key, "test-ca", ca_key, ca=True),
        "cert": build("bookinfo.example.com", server_key, "test-ca", ca_key, ca=False),
        "key": key_pem,
    }


@pytest.fixture
def pki_files(pki, tmp_path) -> dict[str, str]:
    paths = {}
    for name, pem in pki.items():
        path = tmp_path / f"{name}.pem"
        path.write_text(pem)
        paths[name] = str(path)
    return paths


def _static_secret(name: str, pki: dict[str, str]) -> dict[str, Any]:
    if name.endswith("-cacert") or name == "ROOTCA":
        return {"name": name, "validation_context": {"trusted_ca": {"inline_string": pki["ca"]}}}
    certificate = {"certificate_chain": {"inline_string": pki["cert"]}, "private_key": {"inline_string": pki["key"]}}
    return {"name": name, "tls_certificate": certificate}


def _validate(listeners: list[Any], pki: dict[str, str]) -> None:
    rendered = list(_dicts(listeners).values())
    routes = [
        route_pb2.RouteConfiguration(
            name=name, virtual_hosts=[route_components_pb2.VirtualHost(name="blackhole:80", domains=["*"])]
        )
        for name in sorted(_route_names(rendered))
    ]
    config = static_bootstrap(listeners=listeners, routes=routes, stub_clusters=sorted(_clusters(rendered)))
    secrets = set()
    for node in _walk(config["static_resources"]["listeners"]):
        if "sds_config" in node and "name" in node:
            del node["sds_config"]  # a static secret of that name, below
            secrets.add(node["name"])
    config["static_resources"]["secrets"] = [_static_secret(name, pki) for name in sorted(secrets)]
    validate_config(config, check=True)


# --- selection and merging -------------------------------------------------------------------------------------


def test_a_gateway_that_does_not_select_the_proxy_gives_it_nothing():
    config = _gateway("egress", HTTP_SERVER, selector="istio: egressgateway") + BOOKINFO_ROUTES
    assert build_gateway_listeners(_context(config)) == []
    assert gateway_secret_names(_context(config)) == set()


def test_a_sidecar_gets_no_gateway_listener_even_when_selected():
    config = _gateway("bookinfo-gateway", HTTP_SERVER) + BOOKINFO_ROUTES
    assert build_gateway_listeners(_context(config, kind="sidecar")) == []


def test_a_gateway_without_selector_selects_every_gateway_proxy():
    config = _gateway("everywhere", HTTP_SERVER, selector="") + BOOKINFO_ROUTES
    assert list(_listeners(_context(config, labels={"app": "anything"}))) == [f"{GATEWAY_IP}_80"]


def test_http_servers_on_one_port_share_one_listener_and_route_configuration(pki):
    other = """
  - port: {number: 80, name: http-ratings, protocol: HTTP}
    hosts: ["default/ratings.example.com"]
"""
    config = _gateway("bookinfo-gateway", HTTP_SERVER) + _gateway("ratings-gateway", other) + BOOKINFO_ROUTES
    listeners = build_gateway_listeners(_context(config))
    listener = _dicts(listeners)[f"{GATEWAY_IP}_80"]
    assert len(listener["filter_chains"]) == 1
    chain = listener["filter_chains"][0]
    assert "filter_chain_match" not in chain
    assert _config(chain)["rds"]["route_config_name"] == "http.80"
    paths = [GATEWAY_PATH.format("bookinfo-gateway"), GATEWAY_PATH.format("ratings-gateway")]
    assert chain["metadata"]["filter_metadata"]["istio"]["configs"] == paths
    assert listener["metadata"]["filter_metadata"]["istio"]["configs"] == paths
    _validate(listeners, pki)


def test_https_servers_on_one_port_get_a_chain_and_a_route_configuration_each(pki):
    servers = """
  - port: {number: 443, name: https-bookinfo, protocol: HTTPS}
    hosts: [bookinfo.example.com]
    tls: {mode: SIMPLE, credentialName: bookinfo-credential}
  - port: {number: 443, name: https-ratings, protocol: HTTPS}
    hosts: [ratings.example.com, "*.ratings.example.com"]
    tls: {mode: SIMPLE, credentialName: ratings-credential}
"""
    listeners = build_gateway_listeners(_context(_gateway("bookinfo-gateway", servers)))
    chains = _dicts(listeners)[f"{GATEWAY_IP}_443"]["filter_chains"]
    assert [c["filter_chain_match"]["server_names"] for c in chains] == [
        ["bookinfo.example.com"],
        ["*.ratings.example.com", "ratings.example.com"],
    ]
    assert [_config(c)["rds"]["route_config_name"] for c in chains] == [
        "https.443.https-bookinfo.bookinfo-gateway.istio-system",
        "https.443.https-ratings.bookinfo-gateway.istio-system",
    ]
    assert gateway_secret_names(_context(_gateway("bookinfo-gateway", servers))) == {
        "kubernetes://bookinfo-credential",
        "kubernetes://ratings-credential",
    }
    _validate(listeners, pki)


def test_servers_that_cannot_merge_are_left_out():
    first = """
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: [bookinfo.example.com]
    tls: {mode: SIMPLE, credentialName: first}
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: ["*"]
"""
    second = """
  - port: {number: 443, name: https-again, protocol: HTTPS}
    hosts: [bookinfo.example.com]
    tls: {mode: SIMPLE, credentialName: second}
  - port: {number: 8080, name: tcp, protocol: TCP}
    hosts: ["*"]
"""
    config = _gateway("a-first", first) + _gateway("b-second", second)
    listeners = _listeners(_context(config))
    https = listeners[f"{GATEWAY_IP}_443"]["filter_chains"]
    assert len(https) == 1  # the same TLS host on the same port is served once
    assert _tls(https[0])["common_tls_context"]["tls_certificate_sds_secret_configs"][0]["name"] == "kubernetes://first"
    http = listeners[f"{GATEWAY_IP}_8080"]["filter_chains"]
    assert len(http) == 1  # TCP cannot join an HTTP port
    assert _config(http[0])["rds"]["route_config_name"] == "http.8080"


def test_a_server_with_bind_gets_its_own_listener_and_route_names(pki):
    servers = """
  - port: {number: 8080, name: http, protocol: HTTP}
    bind: 127.0.4.9
    hosts: ["*"]
"""
    listeners = build_gateway_listeners(_context(_gateway("bound", servers)))
    listener = _dicts(listeners)["127.0.4.9_8080"]
    assert listener["address"] == {"socket_address": {"address": "127.0.4.9", "port_value": 8080}}
    assert _config(listener["filter_chains"][0])["rds"]["route_config_name"] == "http.8080.127.0.4.9"
    _validate(listeners, pki)


def test_tcp_servers_on_one_port_with_different_binds_get_a_listener_each(pki):
    servers = """
  - port: {number: 31400, name: tcp-a, protocol: TCP}
    bind: 127.0.4.8
    hosts: ["*"]
  - port: {number: 31400, name: tcp-b, protocol: TCP}
    bind: 127.0.4.9
    hosts: ["*"]
"""
    route = _virtual_service(
        "mysql",
        """
  hosts: ["*"]
  gateways: [istio-system/tcp-gateway]
  tcp: [{route: [{destination: {host: mysql.db.svc.cluster.local}}]}]
""",
    )
    ctx = _context(_gateway("tcp-gateway", servers) + route)
    listeners = build_gateway_listeners(ctx)
    assert list(_dicts(listeners)) == ["127.0.4.8_31400", "127.0.4.9_31400"]
    assert dict(merge_gateways(ctx).servers_by_route) == {}  # TCP servers have no route configuration
    _validate(listeners, pki)


# --- HTTP ----------------------------------------------------------------------------------------------------


def test_http_server_gets_a_connection_manager_with_routes_from_rds(pki):
    listeners = build_gateway_listeners(_context(_gateway("bookinfo-gateway", HTTP_SERVER) + BOOKINFO_ROUTES))
    listener = _dicts(listeners)[f"{GATEWAY_IP}_80"]
    assert listener["address"] == {"socket_address": {"address": GATEWAY_IP, "port_value": 80}}
    assert listener["traffic_direction"] == "OUTBOUND"
    assert "listener_filters" not in listener
    chain = listener["filter_chains"][0]
    assert "transport_socket" not in chain
    assert chain["metadata"]["filter_metadata"]["istio"] == {"config": GATEWAY_PATH.format("bookinfo-gateway")}
    manager = _config(chain)
    assert chain["filters"][0]["name"] == "envoy.filters.network.http_connection_manager"
    assert manager["stat_prefix"] == f"outbound_{GATEWAY_IP}_80"
    assert manager["rds"] == {
        "config_source": {"ads": {}, "initial_fetch_timeout": "0s", "resource_api_version": "V3"},
        "route_config_name": "http.80",
    }
    assert [f["name"] for f in manager["http_filters"]] == [
        "envoy.filters.http.grpc_stats",
        "envoy.filters.http.fault",
        "envoy.filters.http.cors",
        "envoy.filters.http.router",
    ]
    assert manager["use_remote_address"] is True
    assert manager["forward_client_cert_details"] == "SANITIZE_SET"
    assert manager["set_current_client_cert_details"] == {"subject": True, "cert": True, "dns": True, "uri": True}
    assert manager["server_name"] == "istio-envoy"
    assert manager["normalize_path"] is True
    assert manager["upgrade_configs"] == [{"upgrade_type": "websocket"}]
    _validate(listeners, pki)


def test_https_redirect_leaves_the_http_listener_plain_text(pki):
    servers = """
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: [bookinfo.example.com]
    tls: {httpsRedirect: true}
"""
    listeners = build_gateway_listeners(_context(_gateway("bookinfo-gateway", servers)))
    chain = _dicts(listeners)[f"{GATEWAY_IP}_80"]["filter_chains"][0]
    assert "transport_socket" not in chain
    assert "filter_chain_match" not in chain
    assert _config(chain)["rds"]["route_config_name"] == "http.80"
    _validate(listeners, pki)


def test_gateway_topology_sets_trusted_hops_and_client_certificate_forwarding():
    mesh = default_mesh_config()
    assert mesh.default_config is not None
    topology = Topology(num_trusted_proxies=2, forward_client_cert_details=ForwardClientCertDetails.APPEND_FORWARD)
    mesh = attrs.evolve(mesh, default_config=attrs.evolve(mesh.default_config, gateway_topology=topology))
    ctx = attrs.evolve(_context(_gateway("bookinfo-gateway", HTTP_SERVER)), mesh=mesh)
    manager = _config(_listeners(ctx)[f"{GATEWAY_IP}_80"]["filter_chains"][0])
    assert manager["xff_num_trusted_hops"] == 2
    assert manager["forward_client_cert_details"] == "APPEND_FORWARD"


def test_authorization_policies_of_the_gateway_run_before_the_router(pki):
    policy = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  action: DENY
  rules: [{to: [{operation: {paths: [/admin]}}]}]
"""
    listeners = build_gateway_listeners(_context(_gateway("bookinfo-gateway", HTTP_SERVER) + policy))
    chain = _dicts(listeners)[f"{GATEWAY_IP}_80"]["filter_chains"][0]
    names = [f["name"] for f in _config(chain)["http_filters"]]
    assert names[0] == "envoy.filters.http.rbac"
    assert names[-1] == "envoy.filters.http.router"
    assert "/security.istio.io/v1/namespaces/istio-system/authorization-policy/deny-admin" in str(chain["metadata"])
    _validate(listeners, pki)


# --- terminated TLS --------------------------------------------------------------------------------------------


def test_simple_tls_with_a_credential_fetches_it_over_ads(pki):
    servers = """
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: ["./bookinfo.example.com"]
    tls:
      mode: SIMPLE
      credentialName: bookinfo-credential
      minProtocolVersion: TLSV1_2
      maxProtocolVersion: TLSV1_3
      cipherSuites: [ECDHE-ECDSA-AES256-GCM-SHA384, NOT-A-CIPHER, ECDHE-ECDSA-AES256-GCM-SHA384]
"""
    ctx = _context(_gateway("bookinfo-gateway", servers))
    listeners = build_gateway_listeners(ctx)
    listener = _dicts(listeners)[f"{GATEWAY_IP}_443"]
    assert [f["name"] for f in listener["listener_filters"]] == ["envoy.filters.listener.tls_inspector"]
    chain = listener["filter_chains"][0]
    assert chain["filter_chain_match"] == {"server_names": ["bookinfo.example.com"]}
    assert chain["transport_socket_connect_timeout"] == "15s"
    context = _tls(chain)
    assert context["require_client_certificate"] is False
    common = context["common_tls_context"]
    assert common["alpn_protocols"] == ["h2", "http/1.1"]
    assert common["tls_certificate_sds_secret_configs"] == [
        {"name": "kubernetes://bookinfo-credential", "sds_config": ADS_SOURCE}
    ]
    assert "combined_validation_context" not in common
    assert common["tls_params"] == {
        "tls_minimum_protocol_version": "TLSv1_2",
        "tls_maximum_protocol_version": "TLSv1_3",
        "cipher_suites": ["ECDHE-ECDSA-AES256-GCM-SHA384"],
    }
    manager = _config(chain)
    assert manager["rds"]["route_config_name"] == "https.443.https.bookinfo-gateway.istio-system"
    assert gateway_secret_names(ctx) == {"kubernetes://bookinfo-credential"}
    assert gateway_secret_names(ctx, listeners) == {"kubernetes://bookinfo-credential"}
    _validate(listeners, pki)


def test_a_wildcard_host_matches_any_server_name(pki):
    servers = """
  - port: {number: 443, name: https, protocol: HTTPS, }
    hosts: ["*"]
    name: public
    tls: {mode: SIMPLE, credentialName: wildcard}
"""
    listeners = build_gateway_listeners(_context(_gateway("bookinfo-gateway", servers)))
    listener = _dicts(listeners)[f"{GATEWAY_IP}_443"]
    chain = listener["filter_chains"][0]
    assert "filter_chain_match" not in chain
    assert [f["name"] for f in listener["listener_filters"]] == ["envoy.filters.listener.tls_inspector"]
    assert _config(chain)["stat_prefix"] == "public"  # the server's name
    _validate(listeners, pki)


def test_mutual_tls_with_a_credential_validates_clients_against_its_ca(pki):
    servers = """
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: [bookinfo.example.com]
    tls:
      mode: MUTUAL
      credentialName: bookinfo-credential
      subjectAltNames: [client.example.com]
"""
    ctx = _context(_gateway("bookinfo-gateway", servers))
    listeners = build_gateway_listeners(ctx)
    context = _tls(_dicts(listeners)[f"{GATEWAY_IP}_443"]["filter_chains"][0])
    assert context["require_client_certificate"] is True
    combined = context["common_tls_context"]["combined_validation_context"]
    assert combined == {
        "default_validation_context": {"match_subject_alt_names": [{"exact": "client.example.com"}]},
        "validation_context_sds_secret_config": {
            "name": "kubernetes://bookinfo-credential-cacert",
            "sds_config": ADS_SOURCE,
        },
    }
    assert gateway_secret_names(ctx) == {
        "kubernetes://bookinfo-credential",
        "kubernetes://bookinfo-credential-cacert",
    }
    _validate(listeners, pki)


def test_mutual_tls_from_files_reads_them_inline(pki, pki_files):
    servers = f"""
  - port: {{number: 443, name: https, protocol: HTTPS}}
    hosts: [bookinfo.example.com]
    tls:
      mode: MUTUAL
      serverCertificate: {pki_files["cert"]}
      privateKey: {pki_files["key"]}
      caCertificates: {pki_files["ca"]}
"""
    ctx = _context(_gateway("bookinfo-gateway", servers))
    listeners = build_gateway_listeners(ctx)
    common = _tls(_dicts(listeners)[f"{GATEWAY_IP}_443"]["filter_chains"][0])["common_tls_context"]
    assert common["tls_certificates"] == [
        {"certificate_chain": {"filename": pki_files["cert"]}, "private_key": {"filename": pki_files["key"]}}
    ]
    assert common["validation_context"] == {"trusted_ca": {"filename": pki_files["ca"]}}
    assert gateway_secret_names(ctx) == set()
    _validate(listeners, pki)


def test_istio_mutual_uses_the_workload_certificate_from_the_node_agent(pki):
    servers = """
  - port: {number: 15443, name: tls-mesh, protocol: HTTPS}
    hosts: ["*.global"]
    tls: {mode: ISTIO_MUTUAL}
"""
    ctx = _context(_gateway("mesh-gateway", servers))
    listeners = build_gateway_listeners(ctx)
    context = _tls(_dicts(listeners)[f"{GATEWAY_IP}_15443"]["filter_chains"][0])
    assert context["require_client_certificate"] is True
    common = context["common_tls_context"]
    certificate = common["tls_certificate_sds_secret_configs"][0]
    assert certificate["name"] == "default"
    source = certificate["sds_config"]["api_config_source"]
    assert source["grpc_services"] == [{"envoy_grpc": {"cluster_name": "sds-grpc"}}]
    assert common["combined_validation_context"]["validation_context_sds_secret_config"]["name"] == "ROOTCA"
    assert "tls_params" not in common
    assert gateway_secret_names(ctx) == set()
    _validate(listeners, pki)


def test_tls_server_terminating_tls_proxies_tcp_routes(pki):
    servers = """
  - port: {number: 3307, name: tls-mysql, protocol: TLS}
    hosts: [mysql.example.com]
    tls: {mode: SIMPLE, credentialName: mysql-credential}
"""
    route = _virtual_service(
        "mysql",
        """
  hosts: [mysql.example.com]
  gateways: [istio-system/mysql-gateway]
  tcp:
  - match: [{port: 3307}]
    route: [{destination: {host: mysql.db.svc.cluster.local}}]
""",
    )
    listeners = build_gateway_listeners(_context(_gateway("mysql-gateway", servers) + route))
    chain = _dicts(listeners)[f"{GATEWAY_IP}_3307"]["filter_chains"][0]
    assert chain["filter_chain_match"] == {"server_names": ["mysql.example.com"]}
    assert _tls(chain)["common_tls_context"]["alpn_protocols"] == ["h2", "http/1.1"]
    assert _config(chain)["cluster"] == MYSQL
    _validate(listeners, pki)


# --- passthrough and TCP ---------------------------------------------------------------------------------------


def test_passthrough_routes_each_sni_to_its_virtual_service_destination(pki):
    servers = """
  - port: {number: 443, name: tls, protocol: TLS}
    hosts: [nginx.example.com, other.example.com]
    tls: {mode: PASSTHROUGH}
"""
    route = _virtual_service(
        "nginx",
        """
  hosts: [nginx.example.com]
  gateways: [istio-system/passthrough]
  tls:
  - match: [{port: 443, sniHosts: [nginx.example.com]}]
    route: [{destination: {host: nginx}}]
""",
    )
    listeners = build_gateway_listeners(_context(_gateway("passthrough", servers) + route))
    listener = _dicts(listeners)[f"{GATEWAY_IP}_443"]
    assert [f["name"] for f in listener["listener_filters"]] == ["envoy.filters.listener.tls_inspector"]
    [chain] = listener["filter_chains"]
    assert chain["filter_chain_match"] == {"server_names": ["nginx.example.com"]}
    assert "transport_socket" not in chain
    assert chain["filters"][-1]["name"] == "envoy.filters.network.tcp_proxy"
    assert _config(chain)["cluster"] == NGINX
    assert _config(chain)["stat_prefix"] == NGINX
    assert chain["metadata"]["filter_metadata"]["istio"]["configs"] == [
        "/apis/networking.istio.io/v1/namespaces/default/virtual-service/nginx",
        GATEWAY_PATH.format("passthrough"),
    ]
    _validate(listeners, pki)


def test_virtual_services_of_another_namespace_than_the_server_host_are_ignored():
    servers = """
  - port: {number: 443, name: tls, protocol: TLS}
    hosts: ["other/nginx.example.com"]
    tls: {mode: PASSTHROUGH}
"""
    route = _virtual_service(
        "nginx",
        """
  hosts: [nginx.example.com]
  gateways: [istio-system/passthrough]
  tls:
  - match: [{sniHosts: [nginx.example.com]}]
    route: [{destination: {host: nginx}}]
""",
    )
    assert build_gateway_listeners(_context(_gateway("passthrough", servers) + route)) == []


def test_tcp_server_proxies_to_the_first_matching_tcp_route(pki):
    servers = """
  - port: {number: 31400, name: tcp, protocol: TCP}
    hosts: ["*"]
"""
    route = _virtual_service(
        "mysql",
        """
  hosts: ["*"]
  gateways: [istio-system/tcp-gateway]
  tcp:
  - match: [{port: 9999}]
    route: [{destination: {host: reviews.default.svc.cluster.local}}]
  - match: [{port: 31400, gateways: [istio-system/tcp-gateway]}]
    route: [{destination: {host: mysql.db.svc.cluster.local, port: {number: 3306}}}]
""",
        namespace="db",
    )
    listeners = build_gateway_listeners(_context(_gateway("tcp-gateway", servers) + route))
    listener = _dicts(listeners)[f"{GATEWAY_IP}_31400"]
    assert "listener_filters" not in listener
    [chain] = listener["filter_chains"]
    assert "filter_chain_match" not in chain
    assert _config(chain) == {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
        "stat_prefix": MYSQL,
        "cluster": MYSQL,
    }
    _validate(listeners, pki)


def test_tcp_routes_with_several_destinations_split_by_weight(pki):
    servers = """
  - port: {number: 31400, name: tcp, protocol: TCP}
    hosts: ["*"]
"""
    route = _virtual_service(
        "split",
        """
  hosts: ["*"]
  gateways: [istio-system/tcp-gateway]
  tcp:
  - route:
    - {destination: {host: reviews}, weight: 80}
    - {destination: {host: ratings}, weight: 20}
""",
    )
    listeners = build_gateway_listeners(_context(_gateway("tcp-gateway", servers) + route))
    proxy = _config(_dicts(listeners)[f"{GATEWAY_IP}_31400"]["filter_chains"][0])
    assert proxy["stat_prefix"] == "split.default"
    assert proxy["weighted_clusters"]["clusters"] == [
        {"name": REVIEWS, "weight": 80},
        {"name": "outbound|9080||ratings.default.svc.cluster.local", "weight": 20},
    ]
    _validate(listeners, pki)


def test_a_tcp_server_without_route_gets_no_listener():
    servers = """
  - port: {number: 31400, name: tcp, protocol: TCP}
    hosts: ["*"]
"""
    assert build_gateway_listeners(_context(_gateway("tcp-gateway", servers))) == []


def test_auto_passthrough_routes_istio_mtls_sni_to_the_same_named_cluster(pki):
    servers = """
  - port: {number: 15443, name: tls, protocol: TLS}
    hosts: ["*.default.svc.cluster.local"]
    tls: {mode: AUTO_PASSTHROUGH}
"""
    rule = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  subsets: [{name: v1, labels: {version: v1}}]
"""
    ctx = _context(_gateway("cross-network", servers) + rule)
    assert merge_gateways(ctx).auto_passthrough_hosts == {"*.default.svc.cluster.local"}  # for CDS
    listeners = build_gateway_listeners(ctx)
    chains = _dicts(listeners)[f"{GATEWAY_IP}_15443"]["filter_chains"]
    snis = [chain["filter_chain_match"]["server_names"] for chain in chains]
    assert snis == [
        ["outbound_.443_._.nginx.default.svc.cluster.local"],
        ["outbound_.9080_._.ratings.default.svc.cluster.local"],
        ["outbound_.9080_._.reviews.default.svc.cluster.local"],
        ["outbound_.9080_.v1_.reviews.default.svc.cluster.local"],
    ]
    assert all(_config(chain)["cluster"] == chain["filter_chain_match"]["server_names"][0] for chain in chains)
    assert chains[0]["filter_chain_match"]["application_protocols"] == [
        "istio",
        "istio-peer-exchange",
        "istio-http/1.0",
        "istio-http/1.1",
        "istio-h2",
    ]
    _validate(listeners, pki)
