"""Generated inbound listeners on a real Envoy with real requests: a DENY rule on ``/admin`` holds against
``//admin``, ``%2F`` and ``..`` tricks when paths are normalized (CVE-2021-31920), and not when MeshConfig
turns normalization off; an ALLOW rule on a header lets only matching requests through."""

from __future__ import annotations

import contextlib
import http.server
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator

import attrs
import pytest

from mesh_config import PushContext, default_mesh_config, load_text
from mesh_config.meshconfig import PathNormalization, ProxyPathNormalization
from mesh_model import InMemoryRegistry, Protocol, Proxy, Service, ServicePort
from mesh_xds.generate import GenerationContext, SidecarAddresses
from mesh_xds.generate.cds import build_clusters
from mesh_xds.generate.lds import build_listeners
from mesh_xds.testing.envoy import EnvoyProcess, free_loopback_address, http_get
from mesh_xds.testing.render import static_bootstrap

NORMALIZED, RAW = 18081, 18082

POLICIES = """\
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: plaintext, namespace: shop}
spec: {mtls: {mode: DISABLE}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-admin, namespace: shop}
spec:
  action: DENY
  rules: [{to: [{operation: {paths: [/admin, "/admin/*"]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: tenants, namespace: shop}
spec:
  rules: [{when: [{key: "request.headers[x-tenant]", values: [blue]}]}]
"""


class _Echo(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = self.path.encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def _backends(address: str, ports: tuple[int, ...]) -> Iterator[None]:
    servers = [http.server.ThreadingHTTPServer((address, port), _Echo) for port in ports]
    threads = [threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True) for server in servers]
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


def _inbound(app: str, port: int, normalization: PathNormalization, addresses: SidecarAddresses):
    resources = load_text(POLICIES, default_namespace="shop").raise_for_errors().resources
    registry = InMemoryRegistry()
    service = Service(
        f"{app}.shop.svc.cluster.local", "shop", [ServicePort("http", port, Protocol.HTTP)], selector={"app": app}
    )
    registry.upsert_service(service)
    mesh = attrs.evolve(default_mesh_config(), path_normalization=ProxyPathNormalization(normalization=normalization))
    proxy = Proxy.parse(
        f"sidecar~{addresses.inbound}~{app}.shop~shop.svc.cluster.local", {"NAMESPACE": "shop", "LABELS": {"app": app}}
    )
    ctx = GenerationContext(proxy, PushContext.build(resources, registry), registry, mesh=mesh, addresses=addresses)
    listeners = [listener for listener in build_listeners(ctx) if listener.name == f"{addresses.inbound}_{port}"]
    clusters = [cluster for cluster in build_clusters(ctx) if cluster.name == f"inbound|{port}||"]
    assert len(listeners) == len(clusters) == 1
    return listeners, clusters


@pytest.fixture(scope="module")
def sidecar() -> Iterator[str]:
    inbound = free_loopback_address((NORMALIZED, RAW))
    application = free_loopback_address((NORMALIZED, RAW))
    addresses = SidecarAddresses(inbound=inbound, application=application, outbound=inbound)
    normalized = _inbound("normalized", NORMALIZED, PathNormalization.DECODE_AND_MERGE_SLASHES, addresses)
    raw = _inbound("raw", RAW, PathNormalization.NONE, addresses)
    config = static_bootstrap(listeners=[*normalized[0], *raw[0]], clusters=[*normalized[1], *raw[1]])
    config["admin"] = {"address": {"socket_address": {"address": inbound, "port_value": 0}}}
    with _backends(application, (NORMALIZED, RAW)), EnvoyProcess(config, log_level="warning"):
        yield inbound


def _get(url: str, tenant: str = "blue") -> int:
    request = urllib.request.Request(url, headers={"x-tenant": tenant})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        with error:
            return int(error.code)


@pytest.mark.parametrize(
    "path", ["/admin", "//admin", "/%2Fadmin", "/shop/../admin", "/admin/./users", "/ADMIN/../admin"]
)
def test_normalized_paths_cannot_slip_past_a_deny_rule(sidecar, path):
    assert _get(f"http://{sidecar}:{NORMALIZED}{path}") == 403


def test_without_normalization_the_same_tricks_get_through(sidecar):
    assert _get(f"http://{sidecar}:{RAW}/admin") == 403
    assert _get(f"http://{sidecar}:{RAW}//admin") == 200
    assert http_get(f"http://{sidecar}:{RAW}/shop")[0] == 403  # no x-tenant header: the ALLOW rule denies


def test_allowed_requests_reach_the_application(sidecar):
    assert _get(f"http://{sidecar}:{NORMALIZED}/shop") == 200
    assert _get(f"http://{sidecar}:{NORMALIZED}/shop", tenant="red") == 403
