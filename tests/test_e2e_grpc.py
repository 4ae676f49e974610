"""End to end, proxyless gRPC: grpcio's own xDS client configured by a real meshd, no sidecar on either side.

The backends are two plain gRPC servers (``v1`` and ``v2``) that meshd knows from a ServiceEntry; the client is
grpcio in a process of its own, its bootstrap printed by ``meshctl bootstrap --grpc``. A VirtualService applied
to meshd at runtime moves the client's calls from one subset to the other without restarting it, and meshd
records the client's ACKs like any proxy's.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from mesh_harness import Mesh, ServiceSpec, Topology
from mesh_xds import CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE, SyncState
from mesh_xds.testing.proxyless import ProxylessClient, WhoamiServer

HOST = "greeter.example.com"
PORT = 50051
TARGET = f"xds:///{HOST}:{PORT}"
NODE_ID = "sidecar~127.0.0.1~grpc-client-0.default~default.svc.cluster.local"

module_loop = pytest.mark.asyncio(loop_scope="module")


def _service(servers: dict[str, WhoamiServer]) -> str:
    """A ServiceEntry for the backends (each with its own address and port) and a DestinationRule of subsets."""
    endpoints = "\n".join(
        f"  - {{address: {server.address[0]}, ports: {{grpc: {server.address[1]}}}, labels: {{version: {version}}}}}"
        for version, server in servers.items()
    )
    return f"""\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: greeter}}
spec:
  hosts: [{HOST}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: {PORT}, name: grpc, protocol: GRPC}}]
  endpoints:
{endpoints}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: greeter}}
spec:
  host: {HOST}
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
"""


def _route_to(subset: str) -> str:
    return f"""\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: greeter}}
spec:
  hosts: [{HOST}]
  http:
  - route: [{{destination: {{host: {HOST}, subset: {subset}}}}}]
"""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def servers() -> AsyncIterator[dict[str, WhoamiServer]]:
    started = {version: await WhoamiServer.start(version) for version in ("v1", "v2")}
    yield started
    for server in started.values():
        await server.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def mesh(servers: dict[str, WhoamiServer]) -> AsyncIterator[Mesh]:
    running = Mesh(Topology(services=(ServiceSpec("client"),)))
    await running.start()
    try:
        await running.apply(_service(servers), name="greeter")
        yield running
    finally:
        left = await running.stop()
    assert left == (), f"left behind after the teardown: {left}"


@pytest_asyncio.fixture(loop_scope="module")
async def client(mesh: Mesh) -> AsyncIterator[ProxylessClient]:
    printed = subprocess.run(
        [
            sys.executable,
            "-m",
            "meshctl",
            "bootstrap",
            "--grpc",
            "--node-id",
            NODE_ID,
            "--xds-address",
            mesh.control_plane.xds_address,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    async with await ProxylessClient.start(TARGET, json.loads(printed.stdout)) as started:
        yield started


@module_loop
async def test_a_proxyless_client_calls_every_backend_without_a_virtual_service(client):
    answers = {await client.call() for _ in range(20)}
    assert answers == {"ok v1", "ok v2"}  # round robin over the ServiceEntry's two endpoints


@module_loop
async def test_a_virtual_service_applied_at_runtime_moves_the_client_between_subsets(mesh, client):
    try:
        await mesh.apply(_route_to("v1"), name="route")
        await client.call_until("ok v1")
        assert [await client.call() for _ in range(5)] == ["ok v1"] * 5
        await mesh.apply(_route_to("v2"), name="route")
        await client.call_until("ok v2")
        assert [await client.call() for _ in range(5)] == ["ok v2"] * 5
    finally:
        await mesh.remove("route")


async def _client_states(mesh: Mesh) -> dict[str, SyncState]:
    for status in await mesh.proxy_statuses():
        if status.node.id == NODE_ID:
            return {type_url: record.state for type_url, record in status.types.items()}
    return {}


@module_loop
async def test_meshd_records_the_client_acks_like_a_proxys(mesh, client):
    assert await client.call() in {"ok v1", "ok v2"}
    wanted = dict.fromkeys((LISTENER_TYPE, ROUTE_TYPE, CLUSTER_TYPE, ENDPOINT_TYPE), SyncState.SYNCED)
    deadline = time.monotonic() + 30
    while (states := await _client_states(mesh)) != wanted:  # an ACK may follow the first call by a moment
        assert time.monotonic() < deadline, f"meshd's view of the gRPC client: {states}"
        await asyncio.sleep(0.1)
