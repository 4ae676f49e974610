"""End to end, routing: real meshd, agents, Envoy sidecars and echo apps on loopback, driven by Istio config.

``client`` calls ``backend`` (v1 and v2), ``flaky`` (one version, for retries) and ``shadow`` (the mirror
target) through its sidecar. Each test applies its config, checks the traffic, and removes the config again.
"""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from mesh_harness import Mesh, ServiceSpec, Topology

TOPOLOGY = Topology(
    services=(
        ServiceSpec("client"),
        ServiceSpec("backend", versions=("v1", "v2"), port=8000),
        ServiceSpec("flaky", port=8100),
        ServiceSpec("shadow", port=8200),
    ),
)
SUBSETS = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: backend}
spec:
  host: backend
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
"""


def _backend_routes(http: str) -> str:
    """The backend's subsets and a VirtualService for it with the given ``http`` rules (YAML flow list)."""
    return (
        SUBSETS
        + f"""\
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: backend}}
spec:
  hosts: [backend]
  http: {http}
"""
    )


def _flaky_routes(http: str) -> str:
    return f"""\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: flaky}}
spec:
  hosts: [flaky]
  http: {http}
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


async def _versions(mesh: Mesh, count: int, **kwargs: object) -> Counter[str | None]:
    answers = [await mesh.request("client", "backend", **kwargs) for _ in range(count)]  # type: ignore[arg-type]
    assert {answer.status for answer in answers} == {200}, [answer.summary() for answer in answers]
    return Counter(answer.version for answer in answers)


@module_loop
async def test_without_config_both_versions_serve(mesh):
    versions = await _versions(mesh, 24)
    assert set(versions) == {"v1", "v2"}  # one missing happens once in 8 million runs


@module_loop
async def test_destination_rule_subsets_pin_the_version(mesh, config):
    config.append(await mesh.apply(_backend_routes("[{route: [{destination: {host: backend, subset: v1}}]}]")))
    assert await _versions(mesh, 10) == {"v1": 10}
    await mesh.apply(_backend_routes("[{route: [{destination: {host: backend, subset: v2}}]}]"), name=config[0])
    assert await _versions(mesh, 10) == {"v2": 10}


@module_loop
async def test_weighted_routing_splits_traffic_by_weight(mesh, config):
    routes = (
        "[{route: [{destination: {host: backend, subset: v1}, weight: 80},"
        " {destination: {host: backend, subset: v2}, weight: 20}]}]"
    )
    config.append(await mesh.apply(_backend_routes(routes)))
    versions = await _versions(mesh, 100)
    assert set(versions) == {"v1", "v2"}  # v2 missing: 0.8**100, about 2e-10
    assert versions["v1"] > 2 * versions["v2"]  # 80/20 split; failing this takes 34 v2 answers (p < 1e-4)


@module_loop
async def test_header_match_routes_one_user_to_another_version(mesh, config):
    routes = (
        "[{match: [{headers: {end-user: {exact: jason}}}], route: [{destination: {host: backend, subset: v2}}]},"
        " {route: [{destination: {host: backend, subset: v1}}]}]"
    )
    config.append(await mesh.apply(_backend_routes(routes)))
    assert await _versions(mesh, 8, headers={"end-user": "jason"}) == {"v2": 8}
    assert await _versions(mesh, 8, headers={"end-user": "someone-else"}) == {"v1": 8}
    assert await _versions(mesh, 8) == {"v1": 8}


async def _statuses(mesh: Mesh, service: str, path: str, count: int) -> Counter[int]:
    return Counter([(await mesh.request("client", service, path)).status for _ in range(count)])


@module_loop
async def test_retries_hide_a_flaky_backend(mesh, config):
    # The echo app fails every other request with fail=1/2: without retries half the answers are 503.
    config.append(await mesh.apply(_flaky_routes("[{route: [{destination: {host: flaky}}], retries: {attempts: 0}}]")))
    without = await _statuses(mesh, "flaky", "/?fail=1/2", 10)
    assert without == {200: 5, 503: 5}
    retries = "[{route: [{destination: {host: flaky}}], retries: {attempts: 3, retryOn: 5xx}}]"
    await mesh.apply(_flaky_routes(retries), name=config[0])
    assert await _statuses(mesh, "flaky", "/?fail=1/2", 10) == {200: 10}


@module_loop
async def test_a_route_timeout_cuts_a_slow_answer(mesh, config):
    config.append(await mesh.apply(_flaky_routes("[{route: [{destination: {host: flaky}}], timeout: 0.5s}]")))
    slow = await mesh.request("client", "flaky", "/?delay=5s")
    assert slow.status == 504, slow.summary()
    assert "upstream request timeout" in slow.text
    fast = await mesh.request("client", "flaky", "/")
    assert (fast.status, fast.service) == (200, "flaky")


@module_loop
async def test_fault_injection_aborts_requests(mesh, config):
    fault = "[{fault: {abort: {httpStatus: 418, percentage: {value: 100}}}, route: [{destination: {host: flaky}}]}]"
    config.append(await mesh.apply(_flaky_routes(fault)))
    answer = await mesh.request("client", "flaky")
    assert answer.status == 418, answer.summary()
    assert answer.echo is None  # Envoy answered; the app never saw it
    assert "fault filter abort" in answer.text


@module_loop
async def test_fault_injection_delays_requests(mesh, config):
    fault = "[{fault: {delay: {fixedDelay: 1s, percentage: {value: 100}}}, route: [{destination: {host: flaky}}]}]"
    config.append(await mesh.apply(_flaky_routes(fault)))
    injected = _delays_injected(mesh.workload("client").admin_url)
    began = time.monotonic()
    answer = await mesh.request("client", "flaky")
    elapsed = time.monotonic() - began
    assert (answer.status, answer.service) == (200, "flaky")
    assert _delays_injected(mesh.workload("client").admin_url) == injected + 1
    # A lower bound only, less Envoy's timer granularity (its timers may fire a millisecond early).
    assert elapsed >= 0.95


def _counters(admin_url: str, text_filter: str) -> dict[str, int]:
    """A sidecar's counters whose names contain ``text_filter``, by name (Envoy's tag markers removed)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"{admin_url}/stats?filter={text_filter}", timeout=10) as answer:
        lines = answer.read().decode().splitlines()
    found = {}
    for line in lines:
        name, _, value = line.partition(": ")
        if value.isdigit():  # histograms are not counters
            found[name.replace(";", "")] = int(value)  # Envoy marks where a tag ends in a cluster name
    return found


def _delays_injected(admin_url: str) -> int:
    """How many requests the client's sidecar delayed with a fault, over all its HTTP connection managers."""
    return sum(_counters(admin_url, "fault.delays_injected").values())


def _inbound_requests(admin_url: str, port: int) -> int:
    """How many requests a sidecar sent on to its app: its ``inbound|<port>||`` cluster's request total."""
    return _counters(admin_url, "upstream_rq_total").get(f"cluster.inbound|{port}||.upstream_rq_total", 0)


async def _wait_for(what: str, check, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"waited {timeout:g} s for {what}"
        await asyncio.sleep(0.1)


@module_loop
async def test_mirroring_sends_a_copy_to_the_mirror_target(mesh, config):
    shadow = mesh.workload("shadow")
    before = await asyncio.to_thread(_inbound_requests, shadow.admin_url, shadow.port)
    mirror = "[{route: [{destination: {host: flaky}}], mirror: {host: shadow}, mirrorPercentage: {value: 100}}]"
    config.append(await mesh.apply(_flaky_routes(mirror)))
    answers = [await mesh.request("client", "flaky") for _ in range(5)]
    assert {(answer.status, answer.service) for answer in answers} == {(200, "flaky")}  # the answer is the primary's

    async def copies_arrived() -> bool:
        return await asyncio.to_thread(_inbound_requests, shadow.admin_url, shadow.port) >= before + 5

    await _wait_for("shadow's sidecar to pass on the 5 mirrored requests", copies_arrived)
