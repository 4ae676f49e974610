"""Reading the control plane's view of its proxies: CSDS into ProxyStatus, config dumps, summaries, redaction."""

import asyncio
import socket

import pytest
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from google.protobuf import any_pb2

from mesh_xds import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    SECRET_TYPE,
    NodeInfo,
    ProxyStatus,
    Snapshot,
    StatusUnavailableError,
    SyncState,
    UnknownProxyError,
    fetch_proxy_statuses,
    find_proxy,
)
from mesh_xds._json import message_to_json, redact_key_material
from mesh_xds.config_summary import (
    summarize_cluster,
    summarize_cluster_status,
    summarize_listener,
    summarize_load_assignment,
    summarize_route_configuration,
    summarize_secret,
)
from mesh_xds.envoy_admin import admin_url, config_dump_status
from mesh_xds.testing import AdsClient
from mesh_xds.testing.resources import eds_cluster, load_assignment, sample_snapshot

VIRTUAL_SERVICE = "/apis/networking.istio.io/v1/namespaces/default/virtual-service/reviews"
NODE = NodeInfo("sidecar~127.0.0.1~reviews-v1.default~default.svc.cluster.local", metadata={"CLUSTER_ID": "east"})


async def fetch(target, **options):
    return await asyncio.to_thread(fetch_proxy_statuses, target, **options)


async def test_csds_is_read_into_one_status_per_proxy_with_states_versions_and_configs(cache, ads_server, ads_target):
    snapshot = sample_snapshot()
    cache.set_snapshot(NODE.id, snapshot)
    async with AdsClient(ads_target, NODE) as client:
        await client.subscribe(CLUSTER_TYPE)
        await client.subscribe(LISTENER_TYPE)
        await ads_server.wait_synced(NODE.id, type_urls=[CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE])
        [proxy] = await fetch(ads_target)
        [bare] = await fetch(ads_target, contents=False)
    assert (proxy.name, proxy.cluster_id, proxy.node.id) == ("reviews-v1.default", "east", NODE.id)
    assert list(proxy.types) == [CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE]
    clusters = proxy.types[CLUSTER_TYPE]
    assert (clusters.state, clusters.resources) == (SyncState.SYNCED, 2)
    assert clusters.version == snapshot.resources(CLUSTER_TYPE).version
    assert proxy.state(SECRET_TYPE) is SyncState.NOT_SENT
    assert proxy.last_nack is None
    [reviews] = [r for r in proxy.resources_of(CLUSTER_TYPE) if r.name == "reviews"]
    assert reviews.config["type"] == "EDS"
    assert reviews.config["eds_cluster_config"]["eds_config"] == {"ads": {}, "resource_api_version": "V3"}
    assert all(resource.config is None for resource in bare.resources)
    assert [r.name for r in bare.resources] == [r.name for r in proxy.resources]


async def test_a_type_answered_with_nothing_and_acked_is_synced_not_unsent(cache, ads_server, ads_target):
    cache.set_snapshot(NODE.id, Snapshot.from_messages([eds_cluster("reviews"), load_assignment("reviews")]))
    async with AdsClient(ads_target, NODE) as client:
        await client.subscribe(LISTENER_TYPE)
        await ads_server.wait_synced(NODE.id, type_urls=[LISTENER_TYPE])
        [proxy] = await fetch(ads_target)
    assert proxy.types[LISTENER_TYPE].state is SyncState.SYNCED
    assert proxy.types[LISTENER_TYPE].resources == 0
    assert proxy.resources_of(LISTENER_TYPE) == ()


def _nacked(statuses):
    listeners = statuses[0].type(LISTENER_TYPE) if statuses else None
    return listeners is not None and listeners.state is SyncState.NACKED


async def test_a_nack_carries_the_clients_message_and_the_rejected_version(cache, ads_server, ads_target):
    cache.set_snapshot(NODE.id, sample_snapshot())
    async with AdsClient(
        ads_target, NODE, rejector=lambda r: "bad listener" if r.type_url == LISTENER_TYPE else None
    ) as c:
        await c.subscribe(LISTENER_TYPE)
        await ads_server.wait_until(_nacked)
        [proxy] = await fetch(ads_target, contents=False)
    nacked = proxy.last_nack
    assert nacked is not None
    assert nacked.type_url == LISTENER_TYPE
    assert (nacked.state, nacked.nack) == (SyncState.NACKED, "bad listener")
    assert nacked.nack_version == sample_snapshot().resources(LISTENER_TYPE).version
    assert proxy.to_json()["types"]["lds"]["nack"]["message"] == "bad listener"


def test_an_unreachable_server_is_a_clear_error_naming_the_address():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(StatusUnavailableError, match=f"cannot reach the xDS server at 127.0.0.1:{port}"):
        fetch_proxy_statuses(f"127.0.0.1:{port}", timeout=10)


def _proxy(node_id, scope="ads/sotw/1"):
    return ProxyStatus(node=NodeInfo(node_id), client_scope=scope)


def test_find_proxy_by_id_name_or_unique_prefix_and_the_newest_stream():
    reviews = "sidecar~127.0.0.1~reviews-v1.default~default.svc.cluster.local"
    ratings = "sidecar~127.0.0.2~ratings-v1.default~default.svc.cluster.local"
    statuses = [_proxy(reviews, "ads/sotw/3"), _proxy(reviews, "ads/delta/12"), _proxy(ratings)]
    assert find_proxy(statuses, reviews).client_scope == "ads/delta/12"
    assert find_proxy(statuses, "ratings-v1.default").node.id == ratings
    assert find_proxy(statuses, "rat").node.id == ratings
    assert find_proxy(statuses, "sidecar~127.0.0.1").node.id == reviews
    with pytest.raises(UnknownProxyError, match="'r' matches 2 proxies") as ambiguous:
        find_proxy(statuses, "r")
    assert ambiguous.value.candidates == (reviews, ratings)
    with pytest.raises(UnknownProxyError, match="no proxy matches 'details' \\(2 connected"):
        find_proxy(statuses, "details")
    with pytest.raises(UnknownProxyError, match="no proxy is connected"):
        find_proxy([], "details")


def test_any_types_are_resolved_and_unknown_ones_named_not_fatal():
    listener = listener_pb2.Listener(name="zk")
    chain = listener.filter_chains.add()
    zookeeper = any_pb2.Any(
        type_url="type.googleapis.com/envoy.extensions.filters.network.zookeeper_proxy.v3.ZooKeeperProxy",
        value=b"\x0a\x02zk",  # stat_prefix: "zk"
    )
    unknown = any_pb2.Any(type_url="type.googleapis.com/example.v1.Unknown", value=b"\x08\x01")
    chain.filters.extend(
        [
            listener_components_pb2.Filter(name="zookeeper", typed_config=zookeeper),
            listener_components_pb2.Filter(name="mystery", typed_config=unknown),
        ]
    )
    filters = message_to_json(listener)["filter_chains"][0]["filters"]
    assert filters[0]["typed_config"] == {"@type": zookeeper.type_url, "stat_prefix": "zk"}
    assert filters[1]["typed_config"]["value"] == {"unknown_type": unknown.type_url, "bytes": 2}


def test_key_material_is_redacted_wherever_it_appears():
    secret = {
        "name": "gateway-cert",
        "tls_certificate": {
            "certificate_chain": {"inline_string": "CHAIN"},
            "private_key": {"inline_bytes": "S0VZ"},
            "password": {"environment_variable": "KEY_PASSWORD"},
        },
    }
    files = {"tls_certificate": {"private_key": {"filename": "/etc/certs/key.pem"}, "pkcs12": {"inline_string": "P"}}}
    tickets = {"session_ticket_keys": {"keys": [{"inline_bytes": "a2V5"}]}}
    generic = {"generic_secret": {"secret": {"inline_string": "token"}, "secrets": {"a": {"inline_string": "b"}}}}
    listener = {
        "filter_chains": [
            {
                "transport_socket": {
                    "typed_config": {"common_tls_context": {"tls_certificates": [secret["tls_certificate"]]}}
                }
            }
        ]
    }
    redacted = redact_key_material([secret, files, tickets, generic, listener])
    assert redacted[0]["tls_certificate"] == {
        "certificate_chain": {"inline_string": "CHAIN"},
        "private_key": {"inline_bytes": "[redacted]"},
        "password": {"environment_variable": "[redacted]"},
    }
    assert redacted[1]["tls_certificate"] == {
        "private_key": {"filename": "/etc/certs/key.pem"},
        "pkcs12": {"inline_string": "[redacted]"},
    }
    assert redacted[2] == {"session_ticket_keys": {"keys": [{"inline_bytes": "[redacted]"}]}}
    assert redacted[3] == {
        "generic_secret": {"secret": {"inline_string": "[redacted]"}, "secrets": {"a": {"inline_string": "[redacted]"}}}
    }
    assert "S0VZ" not in repr(redacted)
    assert "token" not in repr(redacted)
    assert secret["tls_certificate"]["private_key"] == {"inline_bytes": "S0VZ"}  # the input is left alone


def test_summaries_read_istio_names_and_provenance():
    cluster = summarize_cluster(
        {
            "name": "outbound|9080|v1|reviews.default.svc.cluster.local",
            "type": "EDS",
            "metadata": {
                "filter_metadata": {
                    "istio": {"config": "/apis/networking.istio.io/v1/namespaces/shop/destination-rule/reviews"}
                }
            },
        }
    )
    assert (cluster.service_fqdn, cluster.port, cluster.subset, cluster.direction) == (
        "reviews.default.svc.cluster.local",
        9080,
        "v1",
        "outbound",
    )
    assert (cluster.type, cluster.destination_rule) == ("EDS", "reviews.shop")
    assert summarize_cluster({"name": "BlackHoleCluster"}).type == "STATIC"  # the default is left out of JSON
    assert summarize_cluster({"name": "agg", "cluster_type": {"name": "envoy.clusters.aggregate"}}).type == (
        "envoy.clusters.aggregate"
    )
    [inbound] = summarize_listener(
        {
            "name": "virtualInbound",
            "address": {"socket_address": {"address": "127.0.10.1", "port_value": 15006}},
            "filter_chains": [
                {
                    "filter_chain_match": {
                        "destination_port": 9080,
                        "transport_protocol": "tls",
                        "application_protocols": ["istio-peer-exchange", "istio"],
                        "server_names": ["outbound_.9080_._.reviews.default.svc.cluster.local"],
                    },
                    "filters": [
                        {
                            "typed_config": {
                                "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                                "cluster": "inbound|9080||",
                            }
                        }
                    ],
                }
            ],
        }
    )
    assert inbound.match == (
        "Port: 9080; SNI: outbound_.9080_._.reviews.default.svc.cluster.local; Trans: tls; "
        "App: istio-peer-exchange,istio"
    )
    assert (inbound.addresses, inbound.port, inbound.destination) == (("127.0.10.1",), 15006, "Cluster: inbound|9080||")
    routes = summarize_route_configuration(
        {
            "name": "9080",
            "virtual_hosts": [
                {
                    "name": "reviews.default.svc.cluster.local:9080",
                    "domains": ["reviews.default.svc.cluster.local", "reviews"],
                    "routes": [
                        {
                            "match": {"path": "/v1"},
                            "metadata": {"filter_metadata": {"istio": {"config": VIRTUAL_SERVICE}}},
                        },
                        {"match": {"prefix": "/api"}},
                        {"match": {"safe_regex": {"regex": "/v[0-9]+"}}},
                    ],
                },
                {"name": "empty", "domains": ["*"]},
            ],
        }
    )
    assert [(r.match, r.virtual_service) for r in routes] == [
        ("/v1", "reviews.default"),
        ("/api*", ""),
        ("/v[0-9]+", ""),
        ("", ""),
    ]


def test_endpoint_summaries_from_a_load_assignment_and_from_envoys_cluster_list():
    [endpoint] = summarize_load_assignment(
        {
            "cluster_name": "outbound|9080||reviews.default.svc.cluster.local",
            "endpoints": [
                {
                    "locality": {"region": "eu", "zone": "a"},
                    "lb_endpoints": [
                        {
                            "endpoint": {"address": {"socket_address": {"address": "127.0.10.1", "port_value": 9080}}},
                            "health_status": "HEALTHY",
                            "load_balancing_weight": 3,
                        }
                    ],
                }
            ],
        }
    )
    assert (endpoint.endpoint, endpoint.status, endpoint.locality, endpoint.weight) == (
        "127.0.10.1:9080",
        "HEALTHY",
        "eu/a",
        3,
    )
    hosts = summarize_cluster_status(
        {
            "name": "reviews",
            "host_statuses": [
                {
                    "address": {"socket_address": {"address": "::1", "port_value": 80}},
                    "health_status": {"eds_health_status": "HEALTHY"},
                },
                {
                    "address": {"socket_address": {"address": "127.0.0.2", "port_value": 80}},
                    "health_status": {"eds_health_status": "HEALTHY", "failed_outlier_check": True},
                },
                {
                    "address": {"socket_address": {"address": "127.0.0.3", "port_value": 80}},
                    "health_status": {"eds_health_status": "HEALTHY", "failed_active_health_check": True},
                },
            ],
        }
    )
    assert [(h.endpoint, h.status, h.outlier_check) for h in hosts] == [
        ("[::1]:80", "HEALTHY", "OK"),
        ("127.0.0.2:80", "HEALTHY", "FAILED"),
        ("127.0.0.3:80", "UNHEALTHY", "OK"),
    ]


def test_a_secret_summary_holds_public_certificates_only():
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"
    chain = summarize_secret(
        {
            "name": "default",
            "tls_certificate": {
                "certificate_chain": {"inline_string": f"{pem}\n{pem}\n"},
                "private_key": {"inline_string": "-----BEGIN PRIVATE KEY-----\nX\n-----END PRIVATE KEY-----"},
            },
        }
    )
    assert (chain.kind, chain.certificates) == ("Cert Chain", (pem + "\n", pem + "\n"))
    roots = summarize_secret({"name": "ROOTCA", "validation_context": {"trusted_ca": {"filename": "/etc/root.pem"}}})
    assert (roots.kind, roots.certificates, roots.files) == ("CA", (), ("/etc/root.pem",))


def test_a_config_dump_is_read_into_the_same_status():
    dump = {
        "configs": [
            {
                "@type": "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump",
                "bootstrap": {
                    "node": {
                        "id": NODE.id,
                        "user_agent_name": "envoy",
                        "user_agent_build_version": {"version": {"major_number": 1, "minor_number": 40}},
                    }
                },
            },
            {
                "@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump",
                "static_clusters": [{"cluster": {"name": "xds-grpc"}, "last_updated": "2026-01-01T00:00:00Z"}],
                "dynamic_active_clusters": [{"version_info": "v1", "cluster": {"@type": "x", "name": "reviews"}}],
                "dynamic_warming_clusters": [{"version_info": "v2", "cluster": {"name": "ratings"}}],
            },
            {
                "@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump",
                "dynamic_listeners": [
                    {
                        "name": "http",
                        "active_state": {"version_info": "v1", "listener": {"name": "http"}},
                        "error_state": {"details": "bad port", "failed_configuration": {"name": "http"}},
                    },
                    {"name": "never", "error_state": {"details": "no", "failed_configuration": {"name": "never"}}},
                ],
            },
            {
                "@type": "type.googleapis.com/envoy.admin.v3.SecretsConfigDump",
                "dynamic_active_secrets": [
                    {
                        "name": "default",
                        "version_info": "s1",
                        "secret": {"name": "default", "tls_certificate": {"private_key": {"inline_string": "KEY"}}},
                    }
                ],
            },
        ]
    }
    proxy = config_dump_status(dump)
    assert (proxy.node.id, proxy.version) == (NODE.id, "1.40.0")
    clusters = {r.name: r for r in proxy.resources_of(CLUSTER_TYPE)}
    assert [r.name for r in proxy.resources_of(CLUSTER_TYPE)] == ["xds-grpc", "ratings", "reviews"]
    assert clusters["xds-grpc"].static
    assert clusters["xds-grpc"].last_updated.year == 2026
    assert (clusters["reviews"].state, clusters["reviews"].version, clusters["reviews"].config) == (
        SyncState.SYNCED,
        "v1",
        {"name": "reviews"},
    )
    assert clusters["ratings"].state is SyncState.STALE
    assert proxy.types[CLUSTER_TYPE].state is SyncState.STALE
    listeners = {r.name: r for r in proxy.resources_of(LISTENER_TYPE)}
    assert (listeners["http"].state, listeners["http"].error) == (SyncState.NACKED, "bad port")
    assert listeners["never"].state is SyncState.NACKED
    assert proxy.types[LISTENER_TYPE].nack == "bad port"
    [secret] = proxy.resources_of(SECRET_TYPE)
    assert secret.config["tls_certificate"]["private_key"] == {"inline_string": "[redacted]"}
    with pytest.raises(ValueError, match="not an Envoy config dump"):
        config_dump_status({"clusters": []})


@pytest.mark.parametrize(
    ("given", "expected"),
    [("127.0.0.1:15000", "http://127.0.0.1:15000"), ("http://[::1]:15000/", "http://[::1]:15000")],
)
def test_admin_urls(given, expected):
    assert admin_url(given) == expected


@pytest.mark.parametrize("given", ["127.0.0.1", "ftp://127.0.0.1:21", "http://:15000", "127.0.0.1:port"])
def test_bad_admin_urls_are_refused(given):
    with pytest.raises(ValueError, match="is not an admin address"):
        admin_url(given)
