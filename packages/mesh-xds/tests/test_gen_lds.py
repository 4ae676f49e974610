"""LDS generation for sidecars: the outbound layout, inbound chains per mTLS mode, the HTTP filters in Istio's
order, path normalization, CUSTOM authorization; every scenario accepted by a real Envoy."""

from __future__ import annotations

import logging

import attrs
import pytest
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from google.protobuf import json_format

from mesh_config import PushContext, ServiceEntryRegistry, default_mesh_config, load_text
from mesh_config.meshconfig import (
    EnvoyExtAuthzGrpcProvider,
    EnvoyExtAuthzHttpProvider,
    ExtensionProvider,
    PathNormalization,
    ProxyPathNormalization,
)
from mesh_model import AggregateRegistry, InMemoryRegistry, Protocol, Proxy, Service, ServicePort
from mesh_xds import CLUSTER_TYPE, references
from mesh_xds.generate import GenerationContext, SidecarAddresses
from mesh_xds.generate.lds import build_listeners
from mesh_xds.generate.rds import build_routes
from mesh_xds.testing.envoy import validate_config
from mesh_xds.testing.render import static_bootstrap

INBOUND, APPLICATION, OUTBOUND = "127.0.3.1", "127.0.3.2", "127.0.3.3"
ISTIO_ALPN = ["istio", "istio-peer-exchange", "istio-http/1.0", "istio-http/1.1", "istio-h2"]


def _registry() -> InMemoryRegistry:
    registry = InMemoryRegistry()
    http = ServicePort("http", 9080, Protocol.HTTP)
    for name in ("reviews", "details"):
        registry.upsert_service(Service(f"{name}.default.svc.cluster.local", "default", ports=[http]))
    registry.upsert_service(
        Service(
            "productpage.default.svc.cluster.local",
            "default",
            ports=[http, ServicePort("tcp-db", 5432, Protocol.TCP, target_port=15432)],
            selector={"app": "productpage"},
        )
    )
    for name in ("db", "cache"):
        registry.upsert_service(
            Service(f"{name}.default.svc.cluster.local", "default", ports=[ServicePort("tcp", 6379, Protocol.TCP)])
        )
    registry.upsert_service(
        Service("dns.default.svc.cluster.local", "default", ports=[ServicePort("udp", 53, Protocol.UDP)])
    )
    registry.upsert_service(Service("api.example.com", "default", ports=[ServicePort("tls", 443, Protocol.TLS)]))
    registry.upsert_service(Service("*.example.org", "default", ports=[ServicePort("https", 443, Protocol.HTTPS)]))
    registry.upsert_service(
        Service("ext-authz.auth.svc.cluster.local", "auth", ports=[ServicePort("grpc", 9000, Protocol.GRPC)])
    )
    return registry


def _context(config: str = "", *, mesh=None, addresses=None, kind: str = "sidecar") -> GenerationContext:
    resources = load_text(config, default_namespace="default").raise_for_errors().resources
    services = AggregateRegistry([_registry(), ServiceEntryRegistry(resources)])
    metadata = {"NAMESPACE": "default", "LABELS": {"app": "productpage"}}
    proxy = Proxy.parse(f"{kind}~{INBOUND}~productpage-v1.default~default.svc.cluster.local", metadata)
    return GenerationContext(
        proxy,
        PushContext.build(resources, services),
        services,
        mesh=mesh or default_mesh_config(),
        addresses=addresses or SidecarAddresses(INBOUND, APPLICATION, OUTBOUND),
    )


def _dict(message) -> dict:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def _listeners(ctx: GenerationContext) -> dict:
    return {listener.name: listener for listener in build_listeners(ctx)}


def _hcm(chain) -> hcm_pb2.HttpConnectionManager:
    (network_filter,) = chain.filters
    manager = hcm_pb2.HttpConnectionManager()
    assert network_filter.name == "envoy.filters.network.http_connection_manager"
    assert network_filter.typed_config.Unpack(manager)
    return manager


def _tcp_cluster(chain) -> str:
    proxy = tcp_proxy_pb2.TcpProxy()
    assert chain.filters[-1].name == "envoy.filters.network.tcp_proxy"
    assert chain.filters[-1].typed_config.Unpack(proxy)
    assert proxy.stat_prefix == proxy.cluster
    return proxy.cluster


def _tls(chain) -> dict:
    context = tls_pb2.DownstreamTlsContext()
    assert chain.transport_socket.name == "envoy.transport_sockets.tls"
    assert chain.transport_socket.typed_config.Unpack(context)
    return _dict(context)


def _validate(ctx: GenerationContext, *, extra_stubs=()) -> None:
    listeners = build_listeners(ctx)
    routes = build_routes(ctx)
    stubs = {
        ref.name for message in [*listeners, *routes] for ref in references(message) if ref.type_url == CLUSTER_TYPE
    }
    config = static_bootstrap(listeners=listeners, routes=routes, stub_clusters=sorted({*stubs, *extra_stubs}))
    validate_config(config, check=True)


# ---------------------------------------------------------------------------------------------- outbound


def test_outbound_http_port_routes_over_rds_named_after_the_port(caplog):
    listener = _listeners(_context())[f"{OUTBOUND}_9080"]
    assert _dict(listener.address) == {"socket_address": {"address": OUTBOUND, "port_value": 9080}}
    assert listener.traffic_direction == 2  # OUTBOUND
    (chain,) = listener.filter_chains
    manager = _hcm(chain)
    assert manager.rds.route_config_name == "9080"
    assert manager.rds.config_source.WhichOneof("config_source_specifier") == "ads"
    assert manager.stat_prefix == f"outbound_{OUTBOUND}_9080"
    assert [f.name for f in manager.http_filters] == [
        "envoy.filters.http.fault",
        "envoy.filters.http.cors",
        "envoy.filters.http.router",
    ]
    assert manager.forward_client_cert_details == hcm_pb2.HttpConnectionManager.SANITIZE  # the default: not forwarded
    assert not manager.server_name
    assert [u.upgrade_type for u in manager.upgrade_configs] == ["websocket"]


def test_outbound_tcp_port_proxies_to_the_first_service_by_name_and_warns_about_the_others(caplog):
    with caplog.at_level(logging.WARNING, logger="mesh_xds.generate.lds"):
        listener = _listeners(_context())[f"{OUTBOUND}_6379"]
    (chain,) = listener.filter_chains
    assert _tcp_cluster(chain) == "outbound|6379||cache.default.svc.cluster.local"
    assert "db.default.svc.cluster.local" in caplog.text
    assert not listener.listener_filters


def test_outbound_tls_ports_pass_tls_through_by_sni():
    listener = _listeners(_context())[f"{OUTBOUND}_443"]
    assert [f.name for f in listener.listener_filters] == ["envoy.filters.listener.tls_inspector"]
    chains = {tuple(chain.filter_chain_match.server_names): _tcp_cluster(chain) for chain in listener.filter_chains}
    assert chains == {
        ("*.example.org",): "outbound|443||*.example.org",
        ("api.example.com",): "outbound|443||api.example.com",
    }
    assert all(not chain.HasField("transport_socket") for chain in listener.filter_chains)


def test_udp_ports_get_no_listener_and_names_are_sorted():
    names = [listener.name for listener in build_listeners(_context())]
    assert names == sorted(names)
    assert f"{OUTBOUND}_53" not in names
    assert names == [
        f"{INBOUND}_15432",
        f"{INBOUND}_9080",
        f"{OUTBOUND}_443",
        f"{OUTBOUND}_5432",
        f"{OUTBOUND}_6379",
        f"{OUTBOUND}_9000",
        f"{OUTBOUND}_9080",
    ]


def test_an_outbound_listener_on_an_inbound_address_and_port_is_left_out_with_a_warning(caplog):
    same = SidecarAddresses(INBOUND, APPLICATION, INBOUND)
    with caplog.at_level(logging.WARNING, logger="mesh_xds.generate.lds"):
        listeners = _listeners(_context(addresses=same))
    assert listeners[f"{INBOUND}_9080"].traffic_direction == 1  # INBOUND kept
    assert "outbound port 9080" in caplog.text


GATEWAY = """\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  selector: {app: productpage}
  servers: [{port: {number: 8080, name: http, protocol: HTTP}, hosts: ["*"]}]
"""


def test_gateways_get_their_gateway_listeners_and_proxyless_clients_none():
    assert [listener.name for listener in build_listeners(_context(GATEWAY, kind="router"))] == [f"{INBOUND}_8080"]
    sidecar = _context()
    metadata = attrs.evolve(sidecar.proxy.metadata, generator="grpc")
    assert build_listeners(attrs.evolve(sidecar, proxy=attrs.evolve(sidecar.proxy, metadata=metadata))) == []


# ----------------------------------------------------------------------------------------------- inbound

PEER = """\
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: pa, namespace: default}}
spec:
  selector: {{matchLabels: {{app: productpage}}}}
  mtls: {{mode: {mode}}}
"""


def _chains(listener) -> list[tuple[str, str, list[str], bool]]:
    return [
        (
            chain.name,
            chain.filter_chain_match.transport_protocol,
            list(chain.filter_chain_match.application_protocols),
            chain.HasField("transport_socket"),
        )
        for chain in listener.filter_chains
    ]


def test_inbound_strict_has_only_a_mutual_tls_chain():
    listeners = _listeners(_context(PEER.format(mode="STRICT")))
    http = listeners[f"{INBOUND}_9080"]
    assert _dict(http.address) == {"socket_address": {"address": INBOUND, "port_value": 9080}}
    assert [f.name for f in http.listener_filters] == ["envoy.filters.listener.tls_inspector"]
    assert _chains(http) == [(f"{INBOUND}_9080", "tls", [], True)]
    context = _tls(http.filter_chains[0])
    assert context["require_client_certificate"] is True
    common = context["common_tls_context"]
    assert [s["name"] for s in common["tls_certificate_sds_secret_configs"]] == ["default"]
    root = common["combined_validation_context"]["validation_context_sds_secret_config"]
    assert root["name"] == "ROOTCA"
    grpc = root["sds_config"]["api_config_source"]["grpc_services"][0]["envoy_grpc"]
    assert grpc == {"cluster_name": "sds-grpc"}
    assert common["alpn_protocols"] == ["h2", "http/1.1"]
    assert common["tls_params"]["tls_minimum_protocol_version"] == "TLSv1_2"
    # The TCP port (target port 15432 of service port 5432) has the same mode.
    tcp = listeners[f"{INBOUND}_15432"]
    assert _chains(tcp) == [(f"{INBOUND}_15432", "tls", [], True)]
    assert _tls(tcp.filter_chains[0])["common_tls_context"]["alpn_protocols"] == [
        "istio-peer-exchange",
        "h2",
        "http/1.1",
    ]
    assert _tcp_cluster(tcp.filter_chains[0]) == "inbound|15432||"


def test_inbound_permissive_tells_mesh_tls_from_plaintext():
    listeners = _listeners(_context())  # no PeerAuthentication: PERMISSIVE
    assert _chains(listeners[f"{INBOUND}_9080"]) == [
        (f"{INBOUND}_9080", "tls", ISTIO_ALPN, True),
        (f"{INBOUND}_9080_plaintext", "raw_buffer", [], False),
    ]
    assert _chains(listeners[f"{INBOUND}_15432"]) == [
        (f"{INBOUND}_15432", "tls", ISTIO_ALPN, True),
        (f"{INBOUND}_15432_tls", "tls", [], False),  # other TLS passes through to the application
        (f"{INBOUND}_15432_plaintext", "raw_buffer", [], False),
    ]


def test_inbound_disable_is_plaintext_and_port_level_modes_override():
    config = PEER.format(mode="DISABLE") + "  portLevelMtls: {15432: {mode: STRICT}}\n"
    listeners = _listeners(_context(config))
    http = listeners[f"{INBOUND}_9080"]
    assert _chains(http) == [(f"{INBOUND}_9080_plaintext", "", [], False)]
    assert not http.listener_filters
    assert _chains(listeners[f"{INBOUND}_15432"]) == [(f"{INBOUND}_15432", "tls", [], True)]


def test_trust_domain_aliases_restrict_client_certificates_to_the_mesh_and_its_aliases():
    mesh = attrs.evolve(default_mesh_config(), trust_domain="new.td", trust_domain_aliases=("old.td",))
    listener = _listeners(_context(PEER.format(mode="STRICT"), mesh=mesh))[f"{INBOUND}_9080"]
    validation = _tls(listener.filter_chains[0])["common_tls_context"]["combined_validation_context"]
    assert validation["default_validation_context"]["match_typed_subject_alt_names"] == [
        {"san_type": "URI", "matcher": {"prefix": "spiffe://new.td/"}},
        {"san_type": "URI", "matcher": {"prefix": "spiffe://old.td/"}},
    ]


POLICIES = """\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-get, namespace: default}
spec:
  selector: {matchLabels: {app: productpage}}
  rules: [{to: [{operation: {methods: [GET]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-admin, namespace: istio-system}
spec:
  action: DENY
  rules: [{to: [{operation: {paths: ["/admin*"]}}]}]
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: default}
spec:
  jwtRules: [{issuer: "https://issuer.example.com", jwksUri: "https://issuer.example.com/keys"}]
"""


def test_inbound_http_chain_runs_jwt_then_rbac_then_the_router_to_the_inbound_cluster():
    listener = _listeners(_context(POLICIES))[f"{INBOUND}_9080"]
    manager = _hcm(listener.filter_chains[0])
    assert [f.name for f in manager.http_filters] == [
        "envoy.filters.http.jwt_authn",
        "envoy.filters.http.rbac",  # DENY
        "envoy.filters.http.rbac",  # ALLOW
        "envoy.filters.http.fault",
        "envoy.filters.http.cors",
        "envoy.filters.http.router",
    ]
    route = manager.route_config
    assert route.name == "inbound|9080||"
    assert [host.name for host in route.virtual_hosts] == ["inbound|http|9080"]
    assert route.virtual_hosts[0].routes[0].route.cluster == "inbound|9080||"
    assert manager.stat_prefix == f"inbound_{INBOUND}_9080"
    assert manager.forward_client_cert_details == hcm_pb2.HttpConnectionManager.APPEND_FORWARD
    assert manager.set_current_client_cert_details.uri
    assert manager.server_name == "istio-envoy"
    # Every chain records the config objects it came from.
    metadata = _dict(listener.filter_chains[0].metadata)["filter_metadata"]["istio"]
    assert metadata["configs"] == [
        "/apis/security.istio.io/v1/namespaces/default/authorization-policy/allow-get",
        "/apis/security.istio.io/v1/namespaces/default/request-authentication/jwt",
        "/apis/security.istio.io/v1/namespaces/istio-system/authorization-policy/no-admin",
    ]


def test_inbound_tcp_chain_has_network_rbac_before_the_tcp_proxy():
    listener = _listeners(_context(POLICIES))[f"{INBOUND}_15432"]
    for chain in listener.filter_chains:
        assert [f.name for f in chain.filters] == [
            "envoy.filters.network.rbac",
            "envoy.filters.network.rbac",
            "envoy.filters.network.tcp_proxy",
        ]
        assert _tcp_cluster(chain) == "inbound|15432||"
    metadata = _dict(listener.filter_chains[0].metadata)["filter_metadata"]["istio"]
    assert "/apis/security.istio.io/v1/namespaces/default/request-authentication/jwt" not in metadata["configs"]


@pytest.mark.parametrize(
    ("normalization", "expected"),
    [
        (None, (True, False, "KEEP_UNCHANGED")),
        (PathNormalization.NONE, (False, False, "KEEP_UNCHANGED")),
        (PathNormalization.BASE, (True, False, "KEEP_UNCHANGED")),
        (PathNormalization.MERGE_SLASHES, (True, True, "KEEP_UNCHANGED")),
        (PathNormalization.DECODE_AND_MERGE_SLASHES, (True, True, "UNESCAPE_AND_FORWARD")),
    ],
)
def test_paths_are_normalized_before_routing_and_rbac_as_mesh_config_says(normalization, expected):
    setting = None if normalization is None else ProxyPathNormalization(normalization=normalization)
    mesh = attrs.evolve(default_mesh_config(), path_normalization=setting)
    listeners = _listeners(_context(POLICIES, mesh=mesh))
    for name in (f"{INBOUND}_9080", f"{OUTBOUND}_9080"):
        manager = _hcm(listeners[name].filter_chains[0])
        action = hcm_pb2.HttpConnectionManager.PathWithEscapedSlashesAction.Name(
            manager.path_with_escaped_slashes_action
        )
        assert (manager.normalize_path.value, manager.merge_slashes, action) == expected


# ------------------------------------------------------------------------------------------------ custom

CUSTOM = """\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext, namespace: default}
spec:
  action: CUSTOM
  provider: {name: my-authz}
  rules: [{to: [{operation: {paths: ["/secure/*"]}}]}]
"""


def _mesh_with(provider: ExtensionProvider):
    mesh = default_mesh_config()
    return attrs.evolve(mesh, extension_providers=(*mesh.extension_providers, provider))


def test_custom_policies_tag_requests_in_shadow_rbac_for_ext_authz():
    grpc = EnvoyExtAuthzGrpcProvider(service="auth/ext-authz.auth.svc.cluster.local", port=9000)
    ctx = _context(CUSTOM, mesh=_mesh_with(ExtensionProvider(name="my-authz", envoy_ext_authz_grpc=grpc)))
    listener = _listeners(ctx)[f"{INBOUND}_9080"]
    filters = {f.name: _dict(f)["typed_config"] for f in _hcm(listener.filter_chains[0]).http_filters}
    shadow = filters["envoy.filters.http.rbac"]
    assert list(shadow["shadow_rules"]["policies"]) == ["istio-ext-authz-ns[default]-policy[ext]-rule[0]"]
    assert shadow["shadow_rules_stat_prefix"] == "istio_ext_authz_"
    authz = filters["envoy.filters.http.ext_authz"]
    assert authz["grpc_service"]["envoy_grpc"]["cluster_name"] == "outbound|9000||ext-authz.auth.svc.cluster.local"
    assert authz["filter_enabled_metadata"]["path"] == [{"key": "istio_ext_authz_shadow_effective_policy_id"}]
    tcp = [f.name for f in _listeners(ctx)[f"{INBOUND}_15432"].filter_chains[0].filters]
    assert tcp == ["envoy.filters.network.rbac", "envoy.filters.network.ext_authz", "envoy.filters.network.tcp_proxy"]
    _validate(ctx)


def test_custom_policies_with_an_unknown_provider_deny_what_they_match(caplog):
    with caplog.at_level(logging.WARNING):
        listener = _listeners(_context(CUSTOM))[f"{INBOUND}_9080"]
    (rbac, *_) = _hcm(listener.filter_chains[0]).http_filters
    rules = _dict(rbac)["typed_config"]["rules"]
    assert rules["action"] == "DENY"
    assert list(rules["policies"]) == ["ns[default]-policy[ext]-rule[0]-deny-due-to-bad-CUSTOM-action"]
    assert "my-authz" in caplog.text


# --------------------------------------------------------------------------------------------- by Envoy


@pytest.mark.parametrize("mode", ["STRICT", "PERMISSIVE", "DISABLE"])
def test_envoy_accepts_the_listeners_in_every_mode(mode):
    http = EnvoyExtAuthzHttpProvider(
        service="ext-authz.auth.svc.cluster.local",
        port=9000,
        path_prefix="/check",
        include_request_headers_in_check=("authorization",),
        headers_to_upstream_on_allow=("x-user",),
    )
    mesh = _mesh_with(ExtensionProvider(name="my-authz", envoy_ext_authz_http=http))
    ctx = _context(PEER.format(mode=mode) + "---\n" + POLICIES + "---\n" + CUSTOM, mesh=mesh)
    _validate(ctx, extra_stubs=["outbound|443||issuer.example.com"])
