"""meshd: Istio YAML and a registry file in; ADS, gateway credentials, certificates and debug pages out."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import attrs
import pytest
from cryptography.hazmat.primitives import serialization

from mesh_ca import CertificateClient
from mesh_ca.testing import OfflineRoot
from mesh_model import SpiffeId
from mesh_xds import CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE, SECRET_TYPE, NodeInfo
from mesh_xds.testing import AdsClient
from mesh_xds.testing.envoy import free_loopback_address, http_get
from meshd import Meshd, MeshdOptions, mint_token
from meshd.__main__ import main
from meshd.flags import build_parser, options_from_args
from meshd.pages import redact
from meshd.tokens import load_token_key

DOMAIN = "default.svc.cluster.local"
REVIEWS = f"reviews.{DOMAIN}"
CONFIG = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: SUBSET}
"""
GATEWAY = """\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: bookinfo, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8443, name: https, protocol: HTTPS}
    hosts: ["bookinfo.example.com"]
    tls: {mode: SIMPLE, credentialName: bookinfo-cert}
"""
REGISTRY = """\
services:
- hostname: reviews
  ports: [{name: http, number: 9080}]
  labels: {app: reviews}
- hostname: productpage
  ports: [{name: http, number: 9080}]
  labels: {app: productpage}
workloads:
- {name: reviews-v1, address: 127.0.10.1, labels: {app: reviews, version: v1}, serviceAccount: bookinfo-reviews}
- {name: reviews-v2, address: 127.0.10.2, labels: {app: reviews, version: v2}, serviceAccount: bookinfo-reviews}
- name: productpage-v1
  address: 127.0.10.3
  labels: {app: productpage, version: v1}
  serviceAccount: bookinfo-productpage
"""
BROKEN = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
      weight: -5
"""
EXTRA = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: productpage, namespace: default}
spec:
  host: productpage
  trafficPolicy: {connectionPool: {tcp: {maxConnections: 10}}}
"""
PRODUCTPAGE = f"sidecar~127.0.10.3~productpage-v1-1.default~{DOMAIN}"
INGRESS = "router~127.0.20.1~ingressgateway-1.istio-system~istio-system.svc.cluster.local"


def _write(path: Path, text: str) -> None:
    """Replace a file in one step, as an editor saving it would (the watcher never sees half a file)."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


@pytest.fixture
def layout(tmp_path):
    config = tmp_path / "config"
    config.mkdir()
    (config / "reviews.yaml").write_text(CONFIG.replace("SUBSET", "v1"))
    (config / "gateway.yaml").write_text(GATEWAY)
    (tmp_path / "registry.yaml").write_text(REGISTRY)
    root = OfflineRoot.create()
    credential = tmp_path / "credentials" / "bookinfo-cert"
    credential.mkdir(parents=True)
    (credential / "tls.crt").write_bytes(root.certificate.public_bytes(serialization.Encoding.PEM))
    (credential / "tls.key").write_bytes(
        root.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return tmp_path


def _options(layout: Path, ip: str) -> MeshdOptions:
    return MeshdOptions(
        config_dir=layout / "config",
        registry_file=layout / "registry.yaml",
        credentials_dir=layout / "credentials",
        workdir=layout / "work",
        xds_address=f"{ip}:15010",
        ca_address=f"{ip}:15012",
        debug_address=f"{ip}:15014",
        poll_interval=0.1,
    )


@pytest.fixture
async def meshd(layout):
    ip = free_loopback_address((15010, 15012, 15014))
    async with Meshd(_options(layout, ip)) as daemon:
        yield daemon


def _sidecar(node_id: str = PRODUCTPAGE) -> NodeInfo:
    metadata = {
        "NAMESPACE": "default",
        "LABELS": {"app": "productpage", "version": "v1"},
        "MESH_INBOUND_ADDRESS": "127.0.10.3",
        "MESH_APPLICATION_ADDRESS": "127.0.11.3",
        "MESH_OUTBOUND_ADDRESS": "127.0.12.3",
    }
    return NodeInfo(node_id, metadata=metadata)


async def _get(meshd: Meshd, path: str) -> tuple[int, str]:
    return await asyncio.to_thread(http_get, f"http://{meshd.debug_address}{path}", timeout=10)


@contextlib.asynccontextmanager
async def _sidecar_client(meshd: Meshd) -> AsyncIterator[AdsClient]:
    async with AdsClient(meshd.xds_address, _sidecar(), delta=True) as client:
        await client.subscribe(CLUSTER_TYPE)
        await client.subscribe(LISTENER_TYPE)
        await meshd.xds_server.wait_synced(PRODUCTPAGE, type_urls=[CLUSTER_TYPE, LISTENER_TYPE], timeout=30)
        yield client


def _route_subsets(client: AdsClient) -> set[str]:
    route = client.messages(ROUTE_TYPE)["9080"]
    return {
        route_entry.route.cluster
        for host in route.virtual_hosts
        if REVIEWS in host.domains
        for route_entry in host.routes
    }


def _endpoint_addresses(client: AdsClient, cluster: str) -> set[str]:
    assignment = client.messages(ENDPOINT_TYPE)[cluster]
    return {
        endpoint.endpoint.address.socket_address.address
        for locality in assignment.endpoints
        for endpoint in locality.lb_endpoints
    }


async def test_a_sidecar_gets_consistent_config_under_istio_names(meshd):
    async with _sidecar_client(meshd) as client:
        clusters = client.resources(CLUSTER_TYPE)
        assert {f"outbound|9080||{REVIEWS}", f"outbound|9080|v1|{REVIEWS}", f"outbound|9080|v2|{REVIEWS}"} <= set(
            clusters
        )
        assert "inbound|9080||" in clusters
        assert _endpoint_addresses(client, f"outbound|9080|v1|{REVIEWS}") == {"127.0.10.1"}
        assert _endpoint_addresses(client, f"outbound|9080||{REVIEWS}") == {"127.0.10.1", "127.0.10.2"}
        listeners = client.messages(LISTENER_TYPE)
        bound = {listener.address.socket_address.address for listener in listeners.values()}
        assert {"127.0.10.3", "127.0.12.3"} <= bound  # inbound on the endpoint, outbound where the app calls
        assert _route_subsets(client) == {f"outbound|9080|v1|{REVIEWS}"}


async def test_config_and_registry_edits_are_pushed(meshd, layout):
    async with _sidecar_client(meshd) as client:
        _write(layout / "config" / "reviews.yaml", CONFIG.replace("SUBSET", "v2"))
        await client.wait_for(lambda: _route_subsets(client) == {f"outbound|9080|v2|{REVIEWS}"}, timeout=30)
        registry = (layout / "registry.yaml").read_text().replace("127.0.10.2", "127.0.10.4")
        _write(layout / "registry.yaml", registry)
        cluster = f"outbound|9080|v2|{REVIEWS}"
        await client.wait_for(lambda: _endpoint_addresses(client, cluster) == {"127.0.10.4"}, timeout=30)


async def test_a_broken_file_is_reported_and_skipped_while_the_rest_serves(meshd, layout, caplog):
    async with _sidecar_client(meshd) as client:
        caplog.set_level(logging.WARNING, logger="mesh_config.store")
        _write(layout / "config" / "reviews.yaml", BROKEN)
        _write(layout / "config" / "extra.yaml", EXTRA)
        path = str(layout / "config" / "reviews.yaml")

        def reported() -> bool:
            return any(path in item["file"] for item in _configz_diagnostics(meshd))

        await _until(reported)
        logged = [record.getMessage() for record in caplog.records]
        assert any(f"{path}:9:" in line and "spec.http[0].route[0].weight" in line for line in logged), logged
        [problem] = [item for item in _configz_diagnostics(meshd) if item["file"] == path]
        assert (problem["line"], problem["field"]) == (9, "spec.http[0].route[0].weight")
        # The other file is served (its DestinationRule limits productpage's connections), and the broken
        # file's last valid objects stay served.
        await client.wait_for(lambda: _max_connections(client, f"outbound|9080||productpage.{DOMAIN}") == 10)
        assert _route_subsets(client) == {f"outbound|9080|v1|{REVIEWS}"}
        status, body = await _get(meshd, "/debug/configz")
        assert status == 200
        names = {(item["kind"], item["metadata"]["name"]) for item in json.loads(body)["resources"]}
        assert {("VirtualService", "reviews"), ("DestinationRule", "productpage"), ("Gateway", "bookinfo")} <= names


def _max_connections(client: AdsClient, cluster: str) -> int:
    thresholds = client.messages(CLUSTER_TYPE)[cluster].circuit_breakers.thresholds
    return thresholds[0].max_connections.value if thresholds else 0


def _configz_diagnostics(meshd: Meshd) -> list[dict]:
    return [item for found in meshd.config_dump()["diagnostics"].values() for item in found]


async def _until(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition did not hold in time"
        await asyncio.sleep(0.05)


async def test_debug_pages(meshd):
    async with _sidecar_client(meshd) as client:
        status, body = await _get(meshd, "/ready")
        assert (status, json.loads(body)["ready"]) == (200, True)
        status, body = await _get(meshd, "/metrics")
        assert status == 200
        assert 'pilot_xds{version="unknown"} 1.0' in body
        assert 'pilot_xds_pushes_total{type="cds"}' in body
        status, body = await _get(meshd, "/debug/syncz")
        streams = [item for item in json.loads(body) if item["node_id"] == PRODUCTPAGE]
        [stream] = streams
        cds = stream["types"]["cds"]
        assert cds["state"] == "SYNCED"
        assert cds["acked"]["nonce"] == cds["sent"]["nonce"]
        assert cds["sent"]["resources"] == len(client.resources(CLUSTER_TYPE))
        assert cds["nacked"] is None
        status, body = await _get(meshd, "/debug/push")
        assert status == 200
        assert json.loads(body)["proxies"] == 1
        status, body = await _get(meshd, "/nope")
        assert status == 404


async def test_a_nack_shows_in_syncz_with_its_error(meshd):
    async with AdsClient(meshd.xds_address, _sidecar(), delta=True) as client:
        client.nack_next(CLUSTER_TYPE, "cluster rejected: bad weight")
        await client.subscribe(CLUSTER_TYPE)

        def nacked() -> bool:
            streams = [item for item in meshd.xds_server.status() if item.node.id == PRODUCTPAGE]
            return any(item.types[CLUSTER_TYPE].last_nack is not None for item in streams if CLUSTER_TYPE in item.types)

        await _until(nacked)
        status, body = await _get(meshd, "/debug/syncz")
        assert status == 200
        [stream] = json.loads(body)
        assert stream["types"]["cds"]["nacked"]["error"] == "cluster rejected: bad weight"


async def test_gateway_credentials_go_over_ads_and_never_into_configz(meshd, layout):
    node = NodeInfo(INGRESS, metadata={"NAMESPACE": "istio-system", "LABELS": {"istio": "ingressgateway"}})
    async with AdsClient(meshd.xds_address, node) as client:
        await client.subscribe(CLUSTER_TYPE)
        await client.subscribe(LISTENER_TYPE)
        secrets = await client.wait_for_resources(SECRET_TYPE, {"kubernetes://bookinfo-cert"}, timeout=30)
        first = secrets["kubernetes://bookinfo-cert"]
        assert b"PRIVATE KEY" in first.any_bytes
        # A renewed certificate is pushed to the gateway.
        renewed = OfflineRoot.create().certificate.public_bytes(serialization.Encoding.PEM)
        _write(layout / "credentials" / "bookinfo-cert" / "tls.crt", renewed.decode())
        name = "kubernetes://bookinfo-cert"
        await client.wait_for(lambda: client.resources(SECRET_TYPE)[name].version != first.version, timeout=30)
        assert renewed in client.resources(SECRET_TYPE)[name].any_bytes
    status, body = await _get(meshd, "/debug/configz")
    assert status == 200
    assert "PRIVATE KEY" not in body
    key = (layout / "credentials" / "bookinfo-cert" / "tls.key").read_text()
    assert key.splitlines()[1] not in body
    assert json.loads(body)["credentials"]["served"] == ["kubernetes://bookinfo-cert"]


async def test_a_token_from_meshd_token_gets_a_certificate_from_the_ca(meshd, layout, capsys):
    argv = ["token", "--workdir", str(layout / "work"), "--namespace", "default", "--service-account", "reviews"]
    assert await asyncio.to_thread(main, argv) == 0
    token = capsys.readouterr().out.strip()
    identity = SpiffeId("cluster.local", "default", "reviews")
    client = CertificateClient(
        meshd.ca_address, identity, root_certificates=meshd.root_cert_path.read_bytes(), token=token
    )
    async with client:
        certificate = await client.wait_for_certificate(timeout=30)
    assert certificate.identity == identity
    assert meshd.authority.trust_bundle().verify(certificate.certificate_chain_pem) == (identity,)


async def test_a_plugged_in_ca_renews_over_mutual_tls(layout):
    root = OfflineRoot.create()
    root.issue_cacerts(layout / "cacerts")
    ip = free_loopback_address((15010, 15012, 15013, 15014))
    options = attrs.evolve(_options(layout, ip), cacerts=layout / "cacerts", ca_renewal_address=f"{ip}:15013")
    async with Meshd(options) as meshd:
        assert meshd.ca_renewal_address == f"{ip}:15013"
        roots = meshd.root_cert_path.read_bytes()
        assert roots == root.certificate.public_bytes(serialization.Encoding.PEM)
        identity = SpiffeId("cluster.local", "default", "reviews")
        key = load_token_key(options.workdir, create=False)
        tokens = [mint_token(key, identity, ttl=timedelta(minutes=5))]

        def token() -> str:
            return tokens.pop() if tokens else "spent"  # only the first certificate may use the token

        client = CertificateClient(
            meshd.ca_address, identity, root_certificates=roots, token=token, renewal_address=meshd.ca_renewal_address
        )
        async with client:
            first = await client.wait_for_certificate(timeout=30)
            renewed = await client.renew(timeout=30)
    assert renewed.serial_number != first.serial_number
    assert meshd.authority.trust_bundle().verify(renewed.certificate_chain_pem) == (identity,)


def test_meshd_token_without_a_workdir_fails(tmp_path, capsys):
    argv = ["token", "--workdir", str(tmp_path), "--namespace", "default", "--service-account", "reviews"]
    assert main(argv) == 1
    assert "token-key.pem" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["serve"],
        ["--config-dir", "x", "--xds-address", "localhost"],
        ["--config-dir", "x", "--ca-dir", "a", "--cacerts", "b"],
        ["--config-dir", "x", "--frobnicate"],
        ["--config-dir", "x", "--trust-domain", "not a domain"],
        ["--config-dir", "x", "--poll-interval", "0"],
        ["--config-dir", "x", "--poll-interval", "nan"],
        ["--config-dir", "x", "--poll-interval", "soon"],
        ["token", "--namespace", "bad/namespace", "--service-account", "sa"],
        ["token", "--namespace", "default", "--service-account", "sa", "--ttl", "soon"],
    ],
)
def test_bad_flags_are_usage_errors(argv, capsys):
    assert main(argv) == 2
    assert "usage: meshd" in capsys.readouterr().err


def test_meshd_looks_at_its_files_every_second_unless_told_otherwise():
    parser = build_parser()
    assert options_from_args(parser.parse_args(["serve", "--config-dir", "x"])).poll_interval == 1.0
    faster = parser.parse_args(["serve", "--config-dir", "x", "--poll-interval", "0.25"])
    assert options_from_args(faster).poll_interval == 0.25


def test_startup_failures_exit_1_naming_what(layout, capsys):
    ip = free_loopback_address((15010, 15012, 15014))
    argv = ["serve", "--workdir", str(layout / "work"), "--debug-address", f"{ip}:15014"]
    assert main([*argv, "--config-dir", str(layout / "missing")]) == 1
    assert "--config-dir" in capsys.readouterr().err
    with socket.socket() as busy:
        busy.bind((ip, 15010))
        busy.listen()
        code = main([*argv, "--config-dir", str(layout / "config"), "--xds-address", f"{ip}:15010"])
    assert code == 1
    assert f"--xds-address {ip}:15010" in capsys.readouterr().err


def test_meshd_serve_answers_ready_and_stops_cleanly_on_sigterm(layout):
    ip = free_loopback_address((15010, 15012, 15014))
    command = [sys.executable, "-m", "meshd", "serve", "--config-dir", str(layout / "config")]
    command += ["--registry", str(layout / "registry.yaml"), "--workdir", str(layout / "work")]
    command += [f"--{flag}-address={ip}:{port}" for flag, port in (("xds", 15010), ("ca", 15012), ("debug", 15014))]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.communicate()[1]
            try:
                if http_get(f"http://{ip}:15014/ready", timeout=5)[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "meshd did not become ready"
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert f"xDS on {ip}:15010" in out
    assert (layout / "work" / "root-cert.pem").read_text().startswith("-----BEGIN CERTIFICATE-----")


def test_configz_redacts_any_private_key_in_config():
    key = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n-----END EC PRIVATE KEY-----\n"
    dump = {"spec": {"configPatches": [{"value": {"inline_string": key, "port": 443}}]}, "name": "x"}
    expected = {"spec": {"configPatches": [{"value": {"inline_string": "[redacted]", "port": 443}}]}, "name": "x"}
    assert redact(dump) == expected
