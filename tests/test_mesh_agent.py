"""mesh-agent on real Envoy: the CA's certificate over SDS, readiness, restarts, clean stops, and its flags.

Each test runs a CA (token authentication with a test key, mutual TLS renewals) and an ADS server whose
snapshot gives the workload's Envoy a TLS listener with its certificate and roots from SDS (``default`` and
``ROOTCA``), proxying to a TCP backend.
"""

import asyncio
import json
import os
import signal
import socket
import ssl
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mesh_agent import Agent, AgentError, AgentOptions, EnvoySupervisor
from mesh_agent.__main__ import main
from mesh_ca import CaServer, CertificateAuthenticator, CertificateAuthority, JwtAuthenticator, JwtIssuer, RenewalPolicy
from mesh_model import NodeType
from mesh_xds import Snapshot, SnapshotCache, XdsServer
from mesh_xds.bootstrap import DiscoveryAddress, NodeIdentity
from mesh_xds.testing.envoy import free_loopback_address, http_get
from mesh_xds.testing.resources import (
    downstream_tls_context,
    eds_cluster,
    load_assignment,
    sds_config_source,
    tls_tcp_listener,
)

ISSUER = "https://kubernetes.default.svc.cluster.local"
POD = "reviews-v1-0"
IDENTITY = "spiffe://cluster.local/ns/default/sa/reviews"
INBOUND_PORT = 15006
PORTS = (15000, INBOUND_PORT, 15020, 15021, 15090)
BACKEND = "backend"
DEADLINE = 60.0
FAST = RenewalPolicy(retry_initial=timedelta(milliseconds=100), retry_max=timedelta(milliseconds=400))


# ------------------------------------------------------------------------------------------ the pieces


@pytest.fixture
def token_key():
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def token_file(tmp_path, token_key):
    claims = {
        "iss": ISSUER,
        "aud": "istio-ca",
        "sub": "system:serviceaccount:default:reviews",
        "exp": int(time.time()) + 3600,
    }
    path = tmp_path / "istio-token"
    path.write_text(jwt.encode(claims, token_key, algorithm="ES256"))
    return path


@pytest.fixture
def authority():
    return CertificateAuthority.self_signed(None)


@pytest.fixture
def roots(authority):
    return authority.trust_bundle().pem().encode()


def _ca_server(authority, token_key):
    public = token_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    authenticators = [
        CertificateAuthenticator(authority.trust_bundle),
        JwtAuthenticator([JwtIssuer(ISSUER, public_keys=public)], trust_domain="cluster.local"),
    ]
    return CaServer(authority, authenticators=authenticators)


@pytest.fixture
async def ca(authority, token_key):
    server = _ca_server(authority, token_key)
    await server.start("127.0.0.1:0", mtls_address="127.0.0.1:0")
    yield server
    await server.stop(grace=0)


@pytest.fixture
def cache():
    return SnapshotCache()


@pytest.fixture
async def xds(cache):
    server = XdsServer(cache)
    await server.start("127.0.0.1:0")
    yield server
    await server.stop(grace=0)


@pytest.fixture
async def backend():
    """A TCP server on loopback answering one line with ``backend: <line>``; yields its port."""

    async def answer(reader, writer):
        try:
            writer.write(b"backend: " + await reader.readline())
            await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


@pytest.fixture
def ip():
    return free_loopback_address(PORTS)


@pytest.fixture
def workdir():
    """A short directory: a Unix socket path may not exceed 107 bytes, and pytest's tmp_path can."""
    with tempfile.TemporaryDirectory(prefix="agent-") as directory:
        yield Path(directory)


def _snapshot(ip, backend_port):
    context = downstream_tls_context(sds_source=sds_config_source())
    return Snapshot.from_messages(
        [
            eds_cluster(BACKEND),
            load_assignment(BACKEND, [("127.0.0.1", backend_port)]),
            tls_tcp_listener("inbound", ip, INBOUND_PORT, cluster=BACKEND, context=context),
        ]
    )


def _options(ip, token_file, roots, xds, ca_address, workdir, **changes):
    node = NodeIdentity(ip=ip, name=POD, labels={"app": "reviews"}, service_account="reviews")
    fields = {
        "node": node,
        "root_certificates": roots,
        "token_file": token_file,
        "discovery": DiscoveryAddress(host="127.0.0.1", port=xds.port),
        "ca_address": ca_address,
        "workdir": workdir,
        "renewal": FAST,
        "restart_delay": 0.1,
        "max_restart_delay": 1.0,
        **changes,
    }
    return AgentOptions(**fields)


# ------------------------------------------------------------------------------------------ helpers


async def _readiness(address):
    """The status and JSON body of ``/healthz/ready``; ``(None, None)`` while nothing listens."""
    try:
        status, body = await asyncio.to_thread(http_get, f"http://{address}/healthz/ready")
    except OSError:
        return None, None
    return status, json.loads(body)


async def _eventually(check, what, timeout=DEADLINE):
    """Await ``check()`` until it returns something truthy, and return that; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    interval = 0.01
    while True:
        result = await check()
        if result:
            return result
        assert time.monotonic() < deadline, f"no {what} within {timeout}s (last: {result!r})"
        await asyncio.sleep(interval)
        interval = min(interval * 2, 0.2)


def _exchange(ip, roots):
    """Connect over TLS trusting the CA's roots, send a line; return Envoy's certificate and the reply."""
    context = ssl.create_default_context(cadata=roots.decode())
    context.check_hostname = False  # a SPIFFE certificate names a URI, not a host
    with socket.create_connection((ip, INBOUND_PORT), timeout=10) as raw, context.wrap_socket(raw) as tls:
        served = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))
        tls.sendall(b"ping\n")
        reply = b""
        while not reply.endswith(b"\n") and (chunk := tls.recv(1024)):
            reply += chunk
    return served, reply


def _uris(certificate):
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return names.get_values_for_type(x509.UniformResourceIdentifier)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _closed_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# ------------------------------------------------------------------------------------------ in process


async def test_the_agent_serves_the_ca_certificate_to_envoy_and_restarts_envoy_when_it_dies(
    ca, cache, xds, backend, ip, token_file, roots, workdir
):
    options = _options(ip, token_file, roots, xds, ca.address, workdir, ca_renewal_address=ca.mtls_address)
    cache.set_snapshot(options.node_id, _snapshot(ip, backend))
    agent = Agent(options)
    pids = []
    try:
        await agent.start()
        await agent.wait_ready(timeout=DEADLINE)
        status, body = await _readiness(agent.status_address)
        assert status == 200, body
        assert body["ready"] is True
        assert body["reasons"] == []
        assert body["identity"] == IDENTITY
        assert body["node"] == f"sidecar~{ip}~{POD}.default~default.svc.cluster.local"

        # Envoy terminates TLS with the certificate the CA issued for the workload's SPIFFE id.
        async def served():
            try:
                return await asyncio.to_thread(_exchange, ip, roots)
            except ConnectionRefusedError:
                return None

        certificate, reply = await _eventually(served, "TLS listener")
        assert _uris(certificate) == [IDENTITY]
        assert certificate.serial_number == agent.certificate.serial_number
        assert reply == b"backend: ping\n"

        # Envoy killed from outside: the supervisor starts a new one, which gets ready again.
        pids.append(agent.envoy.pid)
        os.kill(pids[0], signal.SIGKILL)

        async def restarted():
            pid = agent.envoy.pid
            status, body = await _readiness(agent.status_address)
            return pid not in (None, pids[0]) and status == 200 and body["envoy"]["pid"] == pid and pid

        pids.append(await _eventually(restarted, "restarted Envoy"))
        assert agent.envoy.restarts == 1
        assert agent.envoy.last_exit == -signal.SIGKILL
        certificate, reply = await _eventually(served, "TLS listener after the restart")
        assert _uris(certificate) == [IDENTITY]
        assert reply == b"backend: ping\n"
        shared_memory = agent.envoy.shared_memory_path
    finally:
        await agent.stop()

    assert not any(_alive(pid) for pid in pids)
    assert not agent.sds_socket.exists()
    assert not shared_memory.exists()
    assert (workdir / "envoy.log").is_file()  # a working directory that was given is kept, with the log
    assert await _readiness(f"{ip}:15020") == (None, None)


async def test_readiness_says_why_while_the_ca_is_down_and_the_agent_retries_until_it_is_up(
    authority, token_key, cache, xds, backend, ip, token_file, roots, workdir
):
    port = _closed_port()
    options = _options(ip, token_file, roots, xds, f"127.0.0.1:{port}", workdir)
    cache.set_snapshot(options.node_id, _snapshot(ip, backend))
    async with Agent(options) as agent:

        async def reported():
            status, body = await _readiness(agent.status_address)
            return status == 503 and any("UNAVAILABLE" in reason for reason in body["reasons"]) and body

        body = await _eventually(reported, "503 naming the CA")
        assert body["ready"] is False
        assert f"no workload certificate yet from the CA at 127.0.0.1:{port}" in body["reasons"][0]
        assert body["certificate"] is None
        assert agent.envoy is None  # Envoy waits for the certificate

        server = _ca_server(authority, token_key)
        await server.start(f"127.0.0.1:{port}")
        try:
            await agent.wait_ready(timeout=DEADLINE)
            assert agent.certificate.identity.service_account == "reviews"
        finally:
            await server.stop(grace=0)


async def test_a_part_that_cannot_start_fails_the_agent_with_its_name(ca, xds, ip, token_file, roots, workdir):
    (workdir / "sds.sock").mkdir()  # the socket's path is taken by a directory that cannot be removed
    (workdir / "sds.sock" / "keep").touch()
    async with Agent(_options(ip, token_file, roots, xds, ca.address, workdir)) as agent:
        with pytest.raises(AgentError, match="SDS server: cannot bind 'unix:"):
            await asyncio.wait_for(agent.wait(), DEADLINE)
        status, body = await _readiness(agent.status_address)
        assert status == 503
        assert any(reason.startswith("the agent failed: SDS server") for reason in body["reasons"])
        assert agent.envoy is None


async def test_an_envoy_that_keeps_failing_is_restarted_with_a_reason_and_stopped_without_leftovers(tmp_path):
    fake = tmp_path / "envoy"
    fake.write_text(
        f"#!{sys.executable}\nimport sys\nprint('[1][critical][main] [x.cc:1] bad bootstrap')\nsys.exit(1)\n"
    )
    fake.chmod(0o755)
    supervisor = EnvoySupervisor(tmp_path / "envoy.json", workdir=tmp_path, envoy=fake, restart_delay=0.05)
    await supervisor.start()
    try:

        async def failed_twice():
            return supervisor.restarts >= 2 and not supervisor.running and supervisor.status()

        status = await _eventually(failed_twice, "two restarts")
        assert status.startswith("exited with status 1 (bad bootstrap); restarting in ")
        assert supervisor.last_exit == 1
        assert supervisor.log_tail().count("bad bootstrap") >= 2
    finally:
        await supervisor.stop()
    assert supervisor.status() == "stopped"


async def test_an_envoy_that_ignores_sigterm_is_killed_on_stop(tmp_path):
    fake = tmp_path / "envoy"
    fake.write_text(
        f"#!{sys.executable}\nimport signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ready', flush=True)\ntime.sleep(120)\n"
    )
    fake.chmod(0o755)
    supervisor = EnvoySupervisor(tmp_path / "envoy.json", workdir=tmp_path, envoy=fake, stop_timeout=0.5)
    await supervisor.start()

    async def started():
        return "ready" in supervisor.log_tail()

    await _eventually(started, "the fake Envoy")
    pid = supervisor.pid
    await supervisor.stop()
    assert not _alive(pid)
    assert supervisor.pid is None


# ------------------------------------------------------------------------------------------ the command


async def test_mesh_agent_runs_a_gateway_from_its_flags_and_stops_cleanly_on_sigterm(
    ca, cache, xds, backend, ip, token_file, roots, workdir, tmp_path
):
    root_file = tmp_path / "root-cert.pem"
    root_file.write_bytes(roots)
    node_id = f"{NodeType.ROUTER.value}~{ip}~{POD}.default~default.svc.cluster.local"
    cache.set_snapshot(node_id, _snapshot(ip, backend))
    command = [
        str(Path(sys.executable).parent / "mesh-agent"),
        *("--xds-address", f"127.0.0.1:{xds.port}", "--ca-address", ca.address),
        *("--ca-renewal-address", ca.mtls_address, "--root-cert", str(root_file), "--token-file", str(token_file)),
        *("--pod-name", POD, "--namespace", "default", "--service-account", "reviews"),
        *("--labels", "app=reviews,version=v1", "--ip", ip, "--workdir", str(workdir), "--gateway", "--sotw"),
        *("--log-level", "warning"),
    ]
    with (tmp_path / "agent.log").open("wb") as log:
        agent = await asyncio.create_subprocess_exec(*command, stdout=log, stderr=log)
    try:

        async def ready():
            assert agent.returncode is None, (tmp_path / "agent.log").read_text()
            status, body = await _readiness(f"{ip}:15020")
            return status == 200 and body

        body = await _eventually(ready, "readiness 200")
        assert body["node"] == node_id
        bootstrap = json.loads((workdir / "envoy.json").read_text())
        metadata = bootstrap["node"]["metadata"]
        assert metadata["LABELS"] == {"app": "reviews", "version": "v1"}
        assert (metadata["NAMESPACE"], metadata["SERVICE_ACCOUNT"], metadata["INSTANCE_IPS"]) == (
            "default",
            "reviews",
            ip,
        )
        assert bootstrap["dynamic_resources"]["ads_config"]["api_type"] == "GRPC"
        certificate, _ = await asyncio.to_thread(_exchange, ip, roots)
        assert _uris(certificate) == [IDENTITY]
    finally:
        if agent.returncode is None:
            agent.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(agent.wait(), DEADLINE)
    output = (tmp_path / "agent.log").read_text()
    assert code == 0, output
    assert not _alive(body["envoy"]["pid"])
    assert not (workdir / "sds.sock").exists()
    assert not Path(f"/dev/shm/envoy_shared_memory_{body['envoy']['base_id'] * 10}").exists()


BASE = ["--root-cert", "roots.pem", "--token-file", "token", "--pod-name", POD]


@pytest.mark.parametrize(
    "argv",
    [
        [],
        [*BASE, "--bogus"],
        [*BASE, "--labels", "app"],
        [*BASE, "--labels", "app=not valid!"],
        [*BASE, "--xds-address", "nowhere"],
        [*BASE, "--ca-address", "127.0.0.1:99999"],
        [*BASE, "--status-address", "localhost:15020"],
        [*BASE, "--admin-address", "10.1.2.3:15000"],
        [*BASE, "--namespace", "Not_A_Namespace"],
        [*BASE, "--pod-name", "a~b"],
        [*BASE, "--log-level", "loud"],
    ],
    ids=lambda argv: " ".join(argv[len(BASE) :]) or "no flags",
)
def test_bad_flags_are_a_usage_error(argv, capsys):
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert "usage: mesh-agent" in error
    assert "error:" in error


def test_an_unreadable_root_certificate_is_a_failure_naming_the_file(tmp_path, capsys):
    missing = tmp_path / "missing.pem"
    assert main(["--root-cert", str(missing), "--token-file", "token", "--pod-name", POD]) == 1
    assert f"cannot read --root-cert '{missing}'" in capsys.readouterr().err


def test_a_missing_envoy_is_a_failure_naming_it(tmp_path, token_file, roots, capsys):
    (tmp_path / "roots.pem").write_bytes(roots)
    argv = [*("--root-cert", str(tmp_path / "roots.pem"), "--token-file", str(token_file), "--pod-name", POD)]
    argv += ["--envoy-path", str(tmp_path / "no-envoy"), "--ip", free_loopback_address(PORTS)]
    assert main(argv) == 1
    assert f"the Envoy binary '{tmp_path / 'no-envoy'}' is not an executable file" in capsys.readouterr().err
