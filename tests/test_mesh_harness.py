"""mesh_harness: a topology in; meshd, echo apps, agents and Envoy sidecars up and SYNCED; traffic; a clean teardown.

One small mesh serves most tests: ``frontend`` (v1) calls ``backend`` (v1 and v2) on every request, and the
ingress gateway sends every request to ``frontend``. Tests that change the config put it back.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
import pytest_asyncio

from mesh_harness import (
    ConfigRejectedError,
    HarnessError,
    Mesh,
    ServiceSpec,
    StartError,
    Topology,
    TopologyError,
    bookinfo,
)
from mesh_xds import SyncState

TOPOLOGY = Topology(
    services=(ServiceSpec("frontend", calls=("backend",)), ServiceSpec("backend", versions=("v1", "v2"), port=8000)),
    ingress="frontend",
)
BACKEND_V2 = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: backend}
spec:
  host: backend
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: backend}
spec:
  hosts: [backend]
  http:
  - route: [{destination: {host: backend, subset: v2}}]
"""
NEGATIVE_WEIGHT = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: backend}
spec:
  hosts: [backend]
  http:
  - route: [{destination: {host: backend}, weight: -5}]
"""

module_loop = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def mesh() -> AsyncIterator[Mesh]:
    async with Mesh(TOPOLOGY) as running:
        yield running


# ------------------------------------------------------------------------------------------ the running mesh


@module_loop
async def test_every_proxy_is_synced_over_csds(mesh):
    statuses = {status.node.id: status for status in await mesh.proxy_statuses()}
    gateway = mesh.gateway
    assert gateway is not None
    expected = {workload.node_id for workload in mesh.workloads.values()} | {gateway.node_id}
    assert set(statuses) >= expected
    for node in expected:
        states = {status.state for status in statuses[node].types.values()}
        assert SyncState.SYNCED in states
        assert states <= {SyncState.SYNCED, SyncState.NOT_SENT}, (node, states)


@module_loop
async def test_workloads_get_addresses_of_their_own_on_loopback(mesh):
    assert set(mesh.workloads) == {"frontend-v1", "backend-v1", "backend-v2"}
    addresses = [
        address
        for workload in mesh.workloads.values()
        for address in (workload.inbound, workload.application, workload.outbound)
    ]
    assert len(set(addresses)) == len(addresses) == 9
    assert all(address.startswith("127.") for address in addresses)
    assert mesh.control_plane.address.startswith("127.")


@module_loop
async def test_a_request_through_a_sidecar_reaches_the_service_over_mutual_tls(mesh):
    answers = [await mesh.request("frontend", "backend", "/hello?x=1") for _ in range(10)]
    assert {(answer.status, answer.service) for answer in answers} == {(200, "backend")}
    assert {answer.version for answer in answers} <= {"v1", "v2"}
    assert {answer.peer for answer in answers} == {mesh.workload("frontend").identity}
    assert answers[0].echo["path"] == "/hello"
    assert answers[0].echo["host"] == "backend.default.svc.cluster.local"


@module_loop
async def test_the_ingress_reaches_the_entry_service_and_its_calls(mesh):
    answer = await mesh.ingress("/", headers={"end-user": "jason"})
    assert (answer.status, answer.service, answer.version) == (200, "frontend", "v1")
    backend = answer.hop("backend")
    assert backend is not None
    assert (backend.status, backend.service) == (200, "backend")
    assert backend.echo["headers"]["end-user"] == "jason"  # propagated by the app
    assert answer.hop("backend", "nothing") is None


@module_loop
async def test_config_applied_at_runtime_changes_routing_and_removing_it_restores_it(mesh):
    name = await mesh.apply(BACKEND_V2, name="backend-v2")
    assert mesh.applied == ("backend-v2",)
    assert (mesh.config_dir / "backend-v2.yaml").is_file()
    answers = [await mesh.request("frontend", "backend") for _ in range(10)]
    assert {answer.version for answer in answers} == {"v2"}
    await mesh.remove(name)
    assert mesh.applied == ()
    versions = Counter([(await mesh.request("frontend", "backend")).version for _ in range(24)])
    assert set(versions) == {"v1", "v2"}  # both serve again; one missing happens once in 8 million runs


@module_loop
async def test_bad_config_is_refused_with_its_problems_and_changes_nothing(mesh):
    with pytest.raises(ConfigRejectedError) as refused:
        await mesh.apply(NEGATIVE_WEIGHT, name="bad")
    assert "bad.yaml:7:44: error: VirtualService default/backend: spec.http[0].route[0].weight: weight -5 < 0" in str(
        refused.value
    )
    assert not (mesh.config_dir / "bad.yaml").exists()
    assert mesh.applied == ()
    with pytest.raises(ConfigRejectedError, match="holds no Istio config"):
        await mesh.apply("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    with pytest.raises(ConfigRejectedError, match="config name"):
        await mesh.apply(BACKEND_V2, name="../escape")


@module_loop
async def test_unknown_workloads_and_services_are_named(mesh):
    with pytest.raises(HarnessError, match="has 2 workloads; name one"):
        mesh.workload("backend")
    with pytest.raises(HarnessError, match=r"no workload 'nobody' \(workloads: backend-v1, backend-v2, frontend-v1\)"):
        await mesh.request("nobody", "backend")
    with pytest.raises(TopologyError, match="no service 'nowhere'"):
        await mesh.request("frontend", "nowhere")


# ------------------------------------------------------------------------------------------ start and stop


def _readiness(url: str) -> dict:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=10) as answer:
        return json.loads(answer.read())


async def test_teardown_leaves_no_process_socket_or_shared_memory_file(tmp_path):
    workdir = tmp_path / "m"
    mesh = Mesh(Topology(services=(ServiceSpec("solo"),)), workdir=workdir)
    await mesh.start()
    try:
        solo = mesh.workload("solo")
        answer = await mesh.request("solo", "solo")  # the sidecar routes to its own service too
        readiness = await asyncio.to_thread(_readiness, solo.status_url)
    finally:
        left = await mesh.stop()
    assert left == ()
    assert (answer.status, answer.service) == (200, "solo")
    envoy = readiness["envoy"]
    assert not Path(f"/proc/{envoy['pid']}").exists()
    assert not Path(f"/dev/shm/envoy_shared_memory_{envoy['base_id'] * 10}").exists()
    assert not (workdir / solo.key / "sds.sock").exists()
    assert (workdir / "logs" / "meshd.log").is_file()  # a given workdir is kept, with the logs
    assert await mesh.stop() == ()  # idempotent


async def test_a_bad_initial_config_fails_the_start_naming_the_file_and_line(tmp_path):
    config = tmp_path / "config"
    config.mkdir()
    (config / "backend.yaml").write_text(NEGATIVE_WEIGHT)
    mesh = Mesh(TOPOLOGY, config_dir=config)
    with pytest.raises(
        ConfigRejectedError,
        match=r"line 7: VirtualService default/backend: spec.http\[0\].route\[0\].weight: weight -5 < 0",
    ):
        await mesh.start()
    assert await mesh.stop() == ()


def test_topologies_that_cannot_run_are_refused_before_anything_starts():
    with pytest.raises(TopologyError, match="no service 'ratings'"):
        Topology(services=(ServiceSpec("reviews", calls=("ratings",)),))
    with pytest.raises(TopologyError, match="services listed twice"):
        Topology(services=(ServiceSpec("a"), ServiceSpec("a")))
    with pytest.raises(TopologyError, match="reserved"):
        ServiceSpec("a", port=15000)
    with pytest.raises(TopologyError, match="DNS-1123"):
        ServiceSpec("Not_A_Name")
    with pytest.raises(TopologyError, match="versions it does not have"):
        ServiceSpec("a", version_calls={"v9": ()})
    with pytest.raises(HarnessError, match="must be a Topology"):
        Mesh("bookinfo")  # type: ignore[arg-type]
    with pytest.raises(HarnessError, match="certificate_ttl must be a timedelta of at least 2 seconds"):
        Mesh(bookinfo(), certificate_ttl=timedelta(seconds=1))
    shape = bookinfo()
    assert [(service.name, service.versions) for service in shape.services] == [
        ("productpage", ("v1",)),
        ("details", ("v1",)),
        ("reviews", ("v1", "v2", "v3")),
        ("ratings", ("v1",)),
    ]
    reviews = shape.resolve("reviews")
    assert (reviews.calls_of("v1"), reviews.calls_of("v2")) == ((), ("ratings",))


async def test_a_part_that_dies_is_named_with_the_end_of_its_log(tmp_path):
    mesh = Mesh(TOPOLOGY, workdir=tmp_path / "m", start_timeout=60)
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "meshd").write_text("a file where meshd wants its work directory")
    with pytest.raises(
        StartError, match=r"(?s)meshd exited with status 1; the end of .*meshd.log:.*cannot create --workdir"
    ):
        await mesh.start()
    assert await mesh.stop() == ()
