"""End to end, security and operations: mTLS modes, authorization, bad config, meshd restarts, ingress TLS.

In the shared mesh, ``client`` and ``other`` (each with a service account of its own) call ``backend`` through
their sidecars; a plaintext client outside the mesh connects straight to backend's inbound listener. Each test
applies its config and removes it again. The meshd restart and the ingress TLS tests stop meshd, so each runs
a small mesh of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mesh_harness import Mesh, Response, ServiceSpec, Topology, send
from mesh_xds import SyncState

TOPOLOGY = Topology(
    services=(
        ServiceSpec("client"),
        ServiceSpec("other"),
        ServiceSpec("backend", versions=("v1", "v2"), port=8000),
    ),
)
STRICT = """\
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: default}
spec:
  mtls: {mode: STRICT}
"""
PERMISSIVE = STRICT.replace("STRICT", "PERMISSIVE")
ONLY_CLIENT = """\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: backend}
spec:
  selector: {matchLabels: {app: backend}}
  action: ALLOW
  rules:
  - from: [{source: {principals: [cluster.local/ns/default/sa/client]}}]
"""
DENY_ADMIN_AND_DELETE = """\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: backend}
spec:
  selector: {matchLabels: {app: backend}}
  action: DENY
  rules:
  - to: [{operation: {paths: ["/admin*"]}}]
  - to: [{operation: {methods: [DELETE]}}]
"""
BACKEND_V1 = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: backend}
spec:
  host: backend
  subsets:
  - {name: v1, labels: {version: v1}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: backend}
spec:
  hosts: [backend]
  http:
  - route: [{destination: {host: backend, subset: v1}}]
"""
NEGATIVE_WEIGHT = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: broken}
spec:
  hosts: [backend]
  http:
  - route: [{destination: {host: backend}, weight: -5}]
"""

module_loop = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def mesh() -> AsyncIterator[Mesh]:
    running = Mesh(TOPOLOGY)
    await running.start()
    try:
        yield running
    finally:
        left = await running.stop()
    assert left == (), f"left behind after the teardown: {left}"


async def _plaintext(mesh: Mesh, version: str = "v1") -> Response:
    """A request from outside the mesh, in plaintext, straight to a backend workload's inbound listener."""
    backend = mesh.workload(f"backend-{version}")
    return await asyncio.to_thread(
        send, backend.inbound, backend.port, "/", host="backend.default.svc.cluster.local", timeout=10.0
    )


@module_loop
async def test_strict_mtls_refuses_a_plaintext_client_and_serves_the_mesh(mesh, config):
    config.append(await mesh.apply(STRICT))
    for version in ("v1", "v2"):
        refused = await _plaintext(mesh, version)
        assert refused.status == 0, refused.summary()  # the TLS-only listener drops the connection
    answer = await mesh.request("client", "backend")
    assert (answer.status, answer.service) == (200, "backend")
    assert answer.peer == mesh.workload("client").identity


@module_loop
async def test_permissive_mtls_accepts_plaintext_and_mutual_tls(mesh, config):
    config.append(await mesh.apply(PERMISSIVE))
    plain = await _plaintext(mesh)
    assert (plain.status, plain.service, plain.peer) == (200, "backend", None)
    meshed = await mesh.request("client", "backend")
    assert (meshed.status, meshed.peer) == (200, mesh.workload("client").identity)


@module_loop
async def test_authorization_allows_by_principal(mesh, config):
    config.append(await mesh.apply(ONLY_CLIENT))
    for _ in range(4):
        allowed = await mesh.request("client", "backend")
        assert (allowed.status, allowed.service) == (200, "backend")
        denied = await mesh.request("other", "backend")
        assert denied.status == 403, denied.summary()
        assert denied.echo is None
        assert "RBAC: access denied" in denied.text


@module_loop
async def test_authorization_denies_by_path_and_method(mesh, config):
    config.append(await mesh.apply(DENY_ADMIN_AND_DELETE))
    for source in ("client", "other"):
        assert (await mesh.request(source, "backend", "/admin/users")).status == 403
        assert (await mesh.request(source, "backend", "/", method="DELETE")).status == 403
        assert (await mesh.request(source, "backend", "/users")).status == 200
        assert (await mesh.request(source, "backend", "/", method="POST", body=b"x")).status == 200


def _configz(mesh: Mesh) -> Any:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"{mesh.control_plane.debug_url}/debug/configz", timeout=10) as answer:
        return json.loads(answer.read())


def _errors_about(configz: Any, file_name: str) -> list[str]:
    diagnostics = configz.get("diagnostics", {}) if isinstance(configz, dict) else {}
    return [
        str(item.get("message"))
        for items in diagnostics.values()
        for item in items
        if item.get("severity") == "error" and str(item.get("file", "")).endswith(file_name)
    ]


async def _wait_for(what: str, check, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = await check()
        if found:
            return found
        assert time.monotonic() < deadline, f"waited {timeout:g} s for {what}"
        await asyncio.sleep(0.1)


@module_loop
async def test_a_bad_config_file_at_runtime_is_refused_while_traffic_continues(mesh, config):
    config.append(await mesh.apply(BACKEND_V1))
    stop = asyncio.Event()
    seen: Counter[str] = Counter()

    async def traffic() -> None:
        while not stop.is_set():
            seen[(await mesh.request("client", "backend")).summary()] += 1

    running = asyncio.create_task(traffic())
    bad = mesh.config_dir / "broken.yaml"
    try:
        bad.write_text(NEGATIVE_WEIGHT)

        async def refused() -> list[str]:
            return _errors_about(await asyncio.to_thread(_configz, mesh), "broken.yaml")

        errors = await _wait_for("meshd to report broken.yaml", refused)
        assert any("weight -5 < 0" in error for error in errors), errors
        served = {item["metadata"]["name"] for item in (await asyncio.to_thread(_configz, mesh))["resources"]}
        assert "broken" not in served
        await mesh.wait_synced()
        requests_so_far = sum(seen.values())
        await _wait_for("more traffic after the refusal", lambda: _more(seen, requests_so_far + 10))
    finally:
        bad.unlink(missing_ok=True)
        stop.set()
        await running
    assert seen == {"200 backend v1": sum(seen.values())}  # every request, before and after, as configured


async def _more(seen: Counter[str], count: int) -> bool:
    return sum(seen.values()) >= count


# ------------------------------------------------------------------------------------------ meshd restart


def _meshd_pid(mesh: Mesh) -> tuple[int, list[str]]:
    """The pid and command line of the meshd serving ``mesh`` (the one following its config directory)."""
    wanted = str(mesh.config_dir)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode().split("\0")[:-1]
        except OSError:
            continue
        if "meshd" in argv and wanted in argv:
            return int(entry.name), argv
    raise AssertionError(f"no meshd process follows {wanted}")


def _ready(mesh: Mesh) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"{mesh.control_plane.debug_url}/ready", timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


async def _all_synced(mesh: Mesh) -> bool:
    try:
        statuses = {status.node.id: status for status in await mesh.proxy_statuses()}
    except Exception:  # meshd is not serving CSDS yet
        return False
    for workload in mesh.workloads.values():
        status = statuses.get(workload.node_id)
        states = set() if status is None else {state.state for state in status.types.values()}
        if SyncState.SYNCED not in states or not states <= {SyncState.SYNCED, SyncState.NOT_SENT}:
            return False
    return True


async def test_traffic_flows_while_meshd_restarts_and_the_proxies_reconnect(tmp_path):
    mesh = Mesh(Topology(services=(ServiceSpec("client"), ServiceSpec("backend", versions=("v1", "v2"), port=8000))))
    await mesh.start()
    restarted: subprocess.Popen[bytes] | None = None
    try:
        await mesh.apply(BACKEND_V1)
        pid, argv = _meshd_pid(mesh)
        os.kill(pid, signal.SIGTERM)
        await _wait_for("meshd to stop serving", lambda: asyncio.to_thread(lambda: not _ready(mesh)))
        down = [await mesh.request("client", "backend") for _ in range(5)]
        assert [answer.summary() for answer in down] == ["200 backend v1"] * 5  # the Envoys keep their config
        with (tmp_path / "meshd-again.log").open("wb") as log:
            restarted = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        await _wait_for("the new meshd to serve", lambda: asyncio.to_thread(_ready, mesh), timeout=60)
        await _wait_for("every proxy to reconnect and be SYNCED", lambda: _all_synced(mesh), timeout=60)
        again = [await mesh.request("client", "backend") for _ in range(5)]
        assert [answer.summary() for answer in again] == ["200 backend v1"] * 5
    finally:
        if restarted is not None:
            restarted.terminate()
            try:
                restarted.wait(10)
            except subprocess.TimeoutExpired:
                restarted.kill()
                restarted.wait()
        left = await mesh.stop()
    assert left == ()


# ------------------------------------------------------------------------------------------ ingress TLS

SECURE_HOST = "secure.example.com"
SECURE_PORT = 8443


def _secure_gateway(target: str) -> str:
    return f"""\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: secure, namespace: istio-system}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {SECURE_PORT}, name: https, protocol: HTTPS}}
    hosts: ["{SECURE_HOST}"]
    tls: {{mode: SIMPLE, credentialName: secure-cert}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: secure, namespace: istio-system}}
spec:
  hosts: ["{SECURE_HOST}"]
  gateways: [secure]
  http:
  - route: [{{destination: {{host: {target}}}}}]
"""


def _certificate() -> tuple[bytes, bytes]:
    """A new self-signed certificate for ``SECURE_HOST`` and its key, PEM.

    Each has a subject of its own: a client trusting two self-signed certificates with the same subject looks
    the issuer up by name and may check the newer one against the older one's key.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    serial = x509.random_serial_number()
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, SECURE_HOST),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, f"certificate {serial:x}"),
        ]
    )
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(SECURE_HOST)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem_key = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return certificate.public_bytes(serialization.Encoding.PEM), pem_key


def _write_credential(credential: Path, certificate: bytes, key: bytes) -> None:
    """Write a credential's key and certificate, each file replaced at once (never seen half-written)."""
    credential.mkdir(parents=True, exist_ok=True)
    for name, data in (("tls.key", key), ("tls.crt", certificate)):
        (credential / f".{name}.new").write_bytes(data)
        os.replace(credential / f".{name}.new", credential / name)


def _https_get(address: str, roots: Path) -> tuple[int, bytes, bytes] | str:
    """GET / over TLS with SNI ``SECURE_HOST``, trusting ``roots``: status, body and the server's certificate (DER)."""
    context = ssl.create_default_context(cafile=str(roots))
    try:
        with (
            socket.create_connection((address, SECURE_PORT), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname=SECURE_HOST) as tls,
        ):
            served = tls.getpeercert(binary_form=True) or b""
            tls.sendall(f"GET / HTTP/1.1\r\nhost: {SECURE_HOST}\r\nconnection: close\r\n\r\n".encode())
            data = b""
            while chunk := tls.recv(65536):
                data += chunk
    except (OSError, ssl.SSLError) as error:
        return f"{type(error).__name__}: {error}"
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body, served


def _der(pem: bytes) -> bytes:
    return x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)


@contextlib.asynccontextmanager
async def _secure_ingress(tmp_path: Path, certificate: bytes, key: bytes) -> AsyncIterator[tuple[Mesh, Path]]:
    """A mesh whose gateway serves ``SECURE_HOST`` over TLS from the credential ``secure-cert``.

    The harness starts meshd without gateway credentials, so meshd is started again with them (same flags,
    plus ``--credentials-dir``). Yields the mesh and the credential's folder.
    """
    mesh = Mesh(Topology(services=(ServiceSpec("web"),), ingress="web"))
    await mesh.start()
    restarted: subprocess.Popen[bytes] | None = None
    try:
        credential = tmp_path / "credentials" / "secure-cert"
        _write_credential(credential, certificate, key)
        pid, argv = _meshd_pid(mesh)
        os.kill(pid, signal.SIGTERM)
        await _wait_for("meshd to stop serving", lambda: asyncio.to_thread(lambda: not _ready(mesh)))
        (mesh.config_dir / "secure.yaml").write_text(_secure_gateway(mesh.topology.resolve("web").host))
        with (tmp_path / "meshd-again.log").open("wb") as log:
            restarted = subprocess.Popen(
                [*argv, "--credentials-dir", str(tmp_path / "credentials")],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        await _wait_for("the new meshd to serve", lambda: asyncio.to_thread(_ready, mesh), timeout=60)
        yield mesh, credential
    finally:
        if restarted is not None:
            restarted.terminate()
            try:
                restarted.wait(10)
            except subprocess.TimeoutExpired:
                restarted.kill()
                restarted.wait()
        left = await mesh.stop()
    assert left == (), f"left behind after the teardown: {left}"


async def _serves(mesh: Mesh, roots: Path, certificate: bytes) -> tuple[int, bytes, bytes] | None:
    """The gateway's HTTPS answer when it presents ``certificate``, else ``None``."""
    gateway = mesh.gateway
    assert gateway is not None
    found = await asyncio.to_thread(_https_get, gateway.address, roots)
    return found if isinstance(found, tuple) and found[2] == _der(certificate) else None


async def test_the_ingress_gateway_serves_simple_tls_from_a_credential(tmp_path):
    certificate, key = _certificate()
    roots = tmp_path / "roots.pem"
    roots.write_bytes(certificate)
    async with _secure_ingress(tmp_path, certificate, key) as (mesh, _):
        answer = await _wait_for("the gateway to serve HTTPS", lambda: _serves(mesh, roots, certificate), timeout=60)
        status, body, _ = answer
        assert status == 200
        assert json.loads(body)["service"] == "web"
        plain = await mesh.ingress("/")  # the harness's plain HTTP server still serves too
        assert (plain.status, plain.service) == (200, "web")


async def test_a_rotated_gateway_credential_is_served_without_failing_a_request(tmp_path):
    first, second = _certificate(), _certificate()
    roots = tmp_path / "roots.pem"  # the client trusts both, so that the rotation never fails a request
    roots.write_bytes(first[0] + second[0])
    async with _secure_ingress(tmp_path, *first) as (mesh, credential):
        await _wait_for("the gateway to serve HTTPS", lambda: _serves(mesh, roots, first[0]), timeout=60)
        gateway = mesh.gateway
        assert gateway is not None
        stop = asyncio.Event()
        seen: Counter[object] = Counter()

        async def traffic() -> None:
            while not stop.is_set():
                found = await asyncio.to_thread(_https_get, gateway.address, roots)
                seen[found[0] if isinstance(found, tuple) else found] += 1

        running = asyncio.create_task(traffic())
        try:
            _write_credential(credential, *second)
            await _wait_for("the rotated certificate", lambda: _serves(mesh, roots, second[0]), timeout=60)
            so_far = sum(seen.values())
            await _wait_for("more traffic after the rotation", lambda: _more(seen, so_far + 5))
        finally:
            stop.set()
            await running
        assert seen == {200: sum(seen.values())}
