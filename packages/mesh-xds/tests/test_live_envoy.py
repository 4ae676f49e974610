"""A real Envoy 1.40 on the ADS server, state of the world and Delta: config, updates, NACKs, restarts, removals.

Each test runs one Envoy sidecar on a loopback address of its own, with an Istio-shaped bootstrap that
points at an :class:`~mesh_xds.XdsServer` on another loopback address, and Python HTTP backends on
addresses of their own whose answers name them. The snapshot is hand-built: EDS clusters, their load
assignments, one HTTP listener and its route configuration.
"""

import asyncio
import http.server
import threading

import pytest
from envoy.config.core.v3 import address_pb2
from envoy.config.listener.v3 import listener_pb2

from mesh_xds import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    Snapshot,
    SnapshotCache,
    StreamKind,
    SyncState,
    XdsMetrics,
    XdsServer,
)
from mesh_xds.bootstrap import ApiType, DiscoveryAddress, EnvoyBootstrapOptions, NodeIdentity, envoy_bootstrap
from mesh_xds.testing.envoy import EnvoyProcess, free_loopback_address, http_get
from mesh_xds.testing.resources import eds_cluster, http_listener, load_assignment, route_configuration

ADS_TYPES = [CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE]
KINDS = {ApiType.GRPC: StreamKind.SOTW, ApiType.DELTA_GRPC: StreamKind.DELTA}
DISCOVERY_PORT = 15010
LISTENER_PORT = 9080
BACKEND_PORT = 8080
LISTENER = "http"
ROUTE = "9080"
DEADLINE = 30.0  # generous: only a failing test waits this long


# ------------------------------------------------------------------------------------------ the pieces


class Backend:
    """An HTTP server on a loopback address of its own, answering every GET with ``backend <name>``."""

    def __init__(self, name):
        self.name = name
        self.body = f"backend {name}"
        self.endpoint = (free_loopback_address((BACKEND_PORT,)), BACKEND_PORT)
        body = self.body.encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format, *args):
                pass

        self._server = http.server.ThreadingHTTPServer(self.endpoint, Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"backend-{name}", daemon=True)
        self._thread.start()

    def close(self):
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


class ControlPlane:
    """A snapshot cache and an ADS server on a fixed loopback address, so that a new server can take its place."""

    def __init__(self):
        self.cache = SnapshotCache()
        self.metrics = XdsMetrics()
        self.host = free_loopback_address((DISCOVERY_PORT,))
        self.server = None

    async def start(self):
        self.server = XdsServer(self.cache, metrics=self.metrics)
        await self.server.start(f"{self.host}:{DISCOVERY_PORT}")
        return self.server

    async def stop(self):
        await self.server.stop(grace=0)

    def rejects(self, short_type):
        return self.metrics.registry.get_sample_value("pilot_total_xds_rejects_total", {"type": short_type}) or 0


class Sidecar:
    """An Envoy sidecar on a loopback address of its own, speaking SotW or Delta ADS to the control plane."""

    def __init__(self, control_plane, api_type):
        self.address = free_loopback_address((15000, 15021, 15090, LISTENER_PORT))
        identity = NodeIdentity(ip=self.address, name="productpage-v1-0", labels={"app": "productpage"})
        self.node_id = identity.node_id()
        self.url = f"http://{self.address}:{LISTENER_PORT}/"
        options = EnvoyBootstrapOptions(
            node=identity,
            discovery=DiscoveryAddress(host=control_plane.host, port=DISCOVERY_PORT),
            api_type=api_type,
            admin_address=self.address,
        )
        config = envoy_bootstrap(options)
        # Reconnect to a restarted control plane within a fraction of a second (by default Envoy waits about
        # half a second before its first retry, and longer after each failure).
        [service] = config["dynamic_resources"]["ads_config"]["grpc_services"]
        service["envoy_grpc"]["retry_policy"] = {"retry_back_off": {"base_interval": "0.05s", "max_interval": "0.2s"}}
        self.envoy = EnvoyProcess(config)

    async def start(self):
        """Start Envoy and wait until it is ready: until it has taken its first clusters and listeners."""
        return await self.envoy.start_async()

    async def get(self):
        return await asyncio.to_thread(http_get, self.url, timeout=5.0)

    async def wait_for_backend(self, backend):
        """Wait until a request through Envoy's listener is answered by ``backend``."""

        def answered():
            return http_get(self.url, timeout=2.0) == (200, backend.body)

        await self.envoy.wait_until_async(answered, timeout=DEADLINE, what=f"an answer from {backend.body!r}")

    def snapshot(self, endpoints, *, route_to, listener=None):
        """A snapshot of one EDS cluster per ``endpoints`` entry and one HTTP listener routing all to ``route_to``.

        Args:
            endpoints: cluster name to its backend.
            route_to: the cluster the route sends every request to.
            listener: the listener to serve instead of the sidecar's HTTP listener.
        """
        messages = [eds_cluster(name) for name in endpoints]
        messages += [load_assignment(name, [backend.endpoint]) for name, backend in endpoints.items()]
        messages.append(listener or http_listener(LISTENER, self.address, LISTENER_PORT, route_name=ROUTE))
        messages.append(route_configuration(ROUTE, {"*": route_to}))
        return Snapshot.from_messages(messages)


@pytest.fixture(params=[ApiType.GRPC, ApiType.DELTA_GRPC], ids=["sotw", "delta"])
def api_type(request):
    return request.param


@pytest.fixture
def backends():
    started = {}

    def start(name):
        started[name] = Backend(name)
        return started[name]

    yield start
    for backend in started.values():
        backend.close()


@pytest.fixture
async def control_plane():
    plane = ControlPlane()
    await plane.start()
    yield plane
    await plane.stop()


@pytest.fixture
def sidecar(control_plane, api_type):
    proxy = Sidecar(control_plane, api_type)
    yield proxy
    proxy.envoy.stop()


def _responses(status):
    """How many responses of each type the stream was sent."""
    return {type_url: status.types[type_url].responses for type_url in ADS_TYPES}


async def _synced(control_plane, sidecar, snapshot):
    """Wait until the sidecar's stream has ACKed every type of ``snapshot``, and return its record."""
    server = control_plane.server
    return await server.wait_synced(sidecar.node_id, type_urls=ADS_TYPES, view=snapshot, timeout=DEADLINE)


# ------------------------------------------------------------------------------------------ the tests


async def test_envoy_takes_its_config_acks_every_type_and_proxies_to_the_backend(
    control_plane, sidecar, backends, api_type
):
    reviews = backends("reviews")
    snapshot = sidecar.snapshot({"reviews": reviews}, route_to="reviews")
    control_plane.cache.set_snapshot(sidecar.node_id, snapshot)
    envoy = await sidecar.start()

    status = await _synced(control_plane, sidecar, snapshot)
    assert status.kind is KINDS[api_type]
    for type_url in ADS_TYPES:
        record = status.types[type_url]
        assert record.state is SyncState.SYNCED
        assert record.acked_version == snapshot.resources(type_url).version
        assert record.last_nack is None
    assert status.types[CLUSTER_TYPE].wildcard
    assert status.types[LISTENER_TYPE].wildcard
    assert status.types[ENDPOINT_TYPE].names == ("reviews",)
    assert status.types[ROUTE_TYPE].names == (ROUTE,)
    assert await sidecar.get() == (200, "backend reviews")
    cluster = envoy.clusters()["reviews"]
    assert cluster["added_via_api"]
    [host] = cluster["host_statuses"]
    assert host["address"]["socket_address"] == {"address": reviews.endpoint[0], "port_value": BACKEND_PORT}
    assert envoy.listeners()[LISTENER] == f"{sidecar.address}:{LISTENER_PORT}"


async def test_route_and_endpoint_changes_apply_without_a_restart(control_plane, sidecar, backends):
    reviews, ratings, details = backends("reviews"), backends("ratings"), backends("details")
    first = sidecar.snapshot({"reviews": reviews, "ratings": ratings}, route_to="reviews")
    control_plane.cache.set_snapshot(sidecar.node_id, first)
    envoy = await sidecar.start()
    pid = envoy.pid
    await sidecar.wait_for_backend(reviews)
    before = _responses(await _synced(control_plane, sidecar, first))

    # A route change (RDS): requests go to the other cluster; nothing else is pushed.
    rerouted = sidecar.snapshot({"reviews": reviews, "ratings": ratings}, route_to="ratings")
    control_plane.cache.set_snapshot(sidecar.node_id, rerouted)
    await sidecar.wait_for_backend(ratings)
    status = await _synced(control_plane, sidecar, rerouted)
    assert status.types[ROUTE_TYPE].acked_version == rerouted.resources(ROUTE_TYPE).version
    assert _responses(status) == {**before, ROUTE_TYPE: before[ROUTE_TYPE] + 1}

    # An endpoint change (EDS): the same cluster now reaches another backend; nothing else is pushed.
    moved = sidecar.snapshot({"reviews": reviews, "ratings": details}, route_to="ratings")
    control_plane.cache.set_snapshot(sidecar.node_id, moved)
    await sidecar.wait_for_backend(details)
    status = await _synced(control_plane, sidecar, moved)
    assert status.types[ENDPOINT_TYPE].acked_version == moved.resources(ENDPOINT_TYPE).version
    assert _responses(status) == {
        **before,
        ROUTE_TYPE: before[ROUTE_TYPE] + 1,
        ENDPOINT_TYPE: before[ENDPOINT_TYPE] + 1,
    }

    assert envoy.pid == pid
    assert envoy.returncode is None
    assert envoy.stat("listener_manager.listener_modified") == 0  # no listener was drained for these changes


def _listener_without_filter_chains(sidecar):
    """The sidecar's HTTP listener with its filter chains left out: Envoy refuses such a listener."""
    address = address_pb2.Address(
        socket_address=address_pb2.SocketAddress(address=sidecar.address, port_value=LISTENER_PORT)
    )
    return listener_pb2.Listener(name=LISTENER, address=address)


async def test_a_listener_envoy_rejects_is_nacked_and_envoy_keeps_its_last_good_config(
    control_plane, sidecar, backends
):
    reviews, ratings = backends("reviews"), backends("ratings")
    good = sidecar.snapshot({"reviews": reviews}, route_to="reviews")
    control_plane.cache.set_snapshot(sidecar.node_id, good)
    envoy = await sidecar.start()
    await _synced(control_plane, sidecar, good)
    assert control_plane.rejects("lds") == 0

    bad = sidecar.snapshot({"reviews": reviews}, route_to="reviews", listener=_listener_without_filter_chains(sidecar))
    control_plane.cache.set_snapshot(sidecar.node_id, bad)

    def lds_nacked(statuses):
        return any(status.types[LISTENER_TYPE].state is SyncState.NACKED for status in statuses)

    [status] = await control_plane.server.wait_until(lds_nacked, node_id=sidecar.node_id, timeout=DEADLINE)
    record = status.types[LISTENER_TYPE]
    assert record.last_nack.version == bad.resources(LISTENER_TYPE).version
    assert record.last_nack.nonce == record.last_sent.nonce
    assert record.last_nack.code == 13
    assert f"Error adding/updating listener(s) {LISTENER}:" in record.last_nack.message
    assert "no filter chains specified" in record.last_nack.message
    assert record.acked_version == good.resources(LISTENER_TYPE).version
    assert control_plane.rejects("lds") == 1
    assert await envoy.wait_for_stat_async("listener_manager.lds.update_rejected") == 1
    # Envoy still serves the listener it had.
    assert await sidecar.get() == (200, "backend reviews")
    assert envoy.listeners()[LISTENER] == f"{sidecar.address}:{LISTENER_PORT}"

    # A good config after the rejected one is taken.
    fixed = sidecar.snapshot({"reviews": reviews, "ratings": ratings}, route_to="ratings")
    control_plane.cache.set_snapshot(sidecar.node_id, fixed)
    await sidecar.wait_for_backend(ratings)
    status = await _synced(control_plane, sidecar, fixed)
    assert status.types[LISTENER_TYPE].acked_version == fixed.resources(LISTENER_TYPE).version
    assert control_plane.rejects("lds") == 1


async def test_envoy_reconnects_to_a_restarted_server_and_converges(control_plane, sidecar, backends, api_type):
    reviews = backends("reviews")
    snapshot = sidecar.snapshot({"reviews": reviews}, route_to="reviews")
    control_plane.cache.set_snapshot(sidecar.node_id, snapshot)
    envoy = await sidecar.start()
    pid = envoy.pid
    await _synced(control_plane, sidecar, snapshot)
    connections = await envoy.wait_for_stat_async("cluster.xds-grpc.upstream_cx_total")

    await control_plane.stop()
    await envoy.wait_until_async(
        lambda: envoy.stat("control_plane.connected_state") == 0, timeout=DEADLINE, what="the loss of the server"
    )
    assert await sidecar.get() == (200, "backend reviews")  # the data plane outlives the control plane

    server = await control_plane.start()
    status = await _synced(control_plane, sidecar, snapshot)
    assert status.kind is KINDS[api_type]
    for type_url in ADS_TYPES:
        assert status.types[type_url].acked_version == snapshot.resources(type_url).version
    if api_type is ApiType.DELTA_GRPC:
        # Envoy named what it holds (initial_resource_versions): nothing is sent again.
        for type_url in ADS_TYPES:
            assert status.types[type_url].last_sent.names == ()
    await envoy.wait_for_stat_async("control_plane.connected_state")
    assert envoy.stat("cluster.xds-grpc.upstream_cx_total") > connections
    assert len(server.status_of(sidecar.node_id)) == 1
    assert await sidecar.get() == (200, "backend reviews")
    assert envoy.pid == pid


async def test_a_removed_cluster_disappears_from_envoy(control_plane, sidecar, backends, api_type):
    reviews, ratings = backends("reviews"), backends("ratings")
    both = sidecar.snapshot({"reviews": reviews, "ratings": ratings}, route_to="reviews")
    control_plane.cache.set_snapshot(sidecar.node_id, both)
    envoy = await sidecar.start()
    await _synced(control_plane, sidecar, both)
    assert {"reviews", "ratings"} <= set(envoy.clusters())

    one = sidecar.snapshot({"reviews": reviews}, route_to="reviews")
    control_plane.cache.set_snapshot(sidecar.node_id, one)
    await envoy.wait_until_async(
        lambda: "ratings" not in envoy.clusters(), timeout=DEADLINE, what="the removal of cluster 'ratings'"
    )
    status = await _synced(control_plane, sidecar, one)
    assert status.types[CLUSTER_TYPE].acked_version == one.resources(CLUSTER_TYPE).version
    if api_type is ApiType.DELTA_GRPC:
        assert status.types[CLUSTER_TYPE].last_sent.removed == ("ratings",)
    dumped = envoy.config_dump(resource="dynamic_active_clusters")["configs"]
    assert [entry["cluster"]["name"] for entry in dumped] == ["reviews"]
    assert "reviews" in envoy.clusters()
    assert await sidecar.get() == (200, "backend reviews")
