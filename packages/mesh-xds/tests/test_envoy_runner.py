"""The real-Envoy runner: validation, startup to readiness, the admin API, waits, and cleanup in every case."""

import asyncio
import json
import os
import socket
import threading
from pathlib import Path

import pytest

from mesh_model import NodeType
from mesh_xds.bootstrap import (
    READINESS_LISTENER,
    STATS_LISTENER,
    DiscoveryAddress,
    EnvoyBootstrapOptions,
    NodeIdentity,
    envoy_bootstrap,
)
from mesh_xds.errors import XdsError
from mesh_xds.testing.envoy import (
    EnvoyConfigError,
    EnvoyError,
    EnvoyExitedError,
    EnvoyProcess,
    EnvoyTimeoutError,
    ValidationResult,
    envoy_binary,
    free_loopback_address,
    http_get,
    validate_config,
)


@pytest.fixture
def address():
    """A loopback address of this test's own, with Istio's well-known proxy ports free on it."""
    return free_loopback_address()


def _bootstrap(address, *, node_type=NodeType.SIDECAR, **changes):
    """A bootstrap whose control plane is unreachable (nothing listens on 15010), ready after 0.1 s without it."""
    fields = {
        "node": NodeIdentity(ip=address, name="reviews-v1-0", labels={"app": "reviews"}),
        "node_type": node_type,
        "discovery": DiscoveryAddress(host=address, port=15010),
        "admin_address": address,
        "sds_socket": f"/tmp/mesh-no-sds-{address}.sock",
        "initial_fetch_timeout": 0.1,
    }
    return envoy_bootstrap(EnvoyBootstrapOptions(**{**fields, **changes}))


def _broken(config):
    """The config with a route to a cluster that does not exist: Envoy rejects it."""
    broken = json.loads(json.dumps(config))
    listener = broken["static_resources"]["listeners"][0]
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    manager["route_config"]["virtual_hosts"][0]["routes"][0]["route"]["cluster"] = "no-such-cluster"
    return broken


def _is_running(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _assert_cleaned_up(envoy):
    assert envoy.returncode is not None
    assert not _is_running(envoy.pid)
    assert not envoy.workdir.exists()
    assert not Path(f"/dev/shm/envoy_shared_memory_{envoy.base_id * 10}").exists()


def test_the_binary_is_envoy_1_40():
    path = envoy_binary()
    assert path.name == "envoy"
    assert os.access(path, os.X_OK)


def test_validate_accepts_a_good_config(address, tmp_path):
    config = _bootstrap(address)
    result = validate_config(config)
    assert result == ValidationResult(ok=True, error="", output=result.output)
    assert "OK" in result.output
    result.check()
    path = tmp_path / "envoy.json"
    path.write_text(json.dumps(config))
    assert validate_config(path).ok


def test_validate_rejects_a_broken_config_with_envoys_words(address):
    result = validate_config(_broken(_bootstrap(address)))
    assert not result.ok
    assert result.error == "route: unknown cluster 'no-such-cluster'"
    with pytest.raises(EnvoyConfigError, match="unknown cluster 'no-such-cluster'") as caught:
        validate_config(_broken(_bootstrap(address)), check=True)
    assert "no-such-cluster" in caught.value.output
    assert isinstance(caught.value, XdsError)


def test_validate_reports_unknown_fields_and_bad_json(tmp_path):
    result = validate_config({"static_resources": {"clusterz": []}})
    assert not result.ok
    assert "clusterz" in result.error
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    assert "Unable to parse JSON" in validate_config(path).error


def test_a_sidecar_without_a_control_plane_comes_up_ready_and_serves_its_listeners(address):
    with EnvoyProcess(_bootstrap(address)) as envoy:
        assert envoy.admin_url == f"http://{address}:15000"
        assert envoy.listeners() == {STATS_LISTENER: f"{address}:15090", READINESS_LISTENER: f"{address}:15021"}
        assert http_get(f"http://{address}:15021/healthz/ready") == (200, "")
        assert http_get(f"http://{address}:15021/other")[0] == 404
        status, metrics = http_get(f"http://{address}:15090/stats/prometheus")
        assert status == 200
        assert "envoy_server_live{} 1" in metrics
        assert 'envoy_cluster_upstream_cx_total{cluster_name="xds-grpc"}' in metrics  # Istio's tag names
        assert envoy.stat("server.live") == 1
        assert envoy.stat("control_plane.connected_state") == 0
        assert envoy.wait_for_stat("cluster_manager.cds.init_fetch_timeout") == 1
        assert set(envoy.clusters()) == {"xds-grpc", "sds-grpc", "prometheus_stats"}
        assert envoy.wait_for_cluster("xds-grpc")["name"] == "xds-grpc"
        bootstrap = envoy.config_dump()["configs"][0]["bootstrap"]
        assert bootstrap["node"]["id"].startswith(f"sidecar~{address}~reviews-v1-0.default~")
        # The readiness listener is Envoy's own health check: it fails once Envoy is told to drain.
        assert envoy.request("/healthcheck/fail", method="POST")[0] == 200
        assert http_get(f"http://{address}:15021/healthz/ready")[0] == 503
    _assert_cleaned_up(envoy)


async def test_a_gateway_on_free_ports_runs_as_an_async_context_manager(address):
    config = _bootstrap(address, node_type=NodeType.ROUTER, admin_port=0, readiness_port=0, stats_port=None)
    loop_ran = threading.Event()

    async def tick():
        await asyncio.sleep(0)
        loop_ran.set()

    async with EnvoyProcess(config) as envoy:
        host, _, port = envoy.admin_url.removeprefix("http://").rpartition(":")
        assert host == address
        assert int(port) > 0
        readiness = envoy.listeners()[READINESS_LISTENER]
        assert not readiness.endswith(":0")
        assert http_get(f"http://{readiness}/healthz/ready")[0] == 200
        # The wait polls from a worker thread: the event loop keeps running other tasks meanwhile.
        task = asyncio.create_task(tick())
        assert await envoy.wait_until_async(lambda: loop_ran.is_set(), timeout=30, what="another task") is True
        await task
        cluster = await envoy.wait_for_cluster_async("xds-grpc")
        assert cluster["name"] == "xds-grpc"
        assert await envoy.wait_for_stat_async("server.live") == 1
        node = envoy.config_dump()["configs"][0]["bootstrap"]["node"]
        assert node["id"].startswith("router~")
    _assert_cleaned_up(envoy)


def test_a_config_envoy_rejects_at_startup_fails_fast_with_the_log(address):
    envoy = EnvoyProcess(_broken(_bootstrap(address)))
    with pytest.raises(EnvoyExitedError, match="unknown cluster 'no-such-cluster'") as caught:
        envoy.start()
    assert caught.value.returncode != 0
    assert "--- log tail ---" in str(caught.value)
    _assert_cleaned_up(envoy)


def test_a_port_in_use_fails_fast(address):
    with socket.socket() as taken:
        taken.bind((address, 15000))
        taken.listen()
        envoy = EnvoyProcess(_bootstrap(address))
        with pytest.raises(EnvoyExitedError, match="15000"):
            envoy.start()
    _assert_cleaned_up(envoy)


def test_envoy_waiting_for_its_control_plane_is_not_ready_and_times_out(address):
    # initial_fetch_timeout 0 (Istio's choice): Envoy stays unready until the control plane answers.
    envoy = EnvoyProcess(_bootstrap(address, initial_fetch_timeout=0), startup_timeout=0.5)
    with pytest.raises(EnvoyTimeoutError, match=r"readiness \(admin /ready\) within 0.5 s") as caught:
        envoy.start()
    assert isinstance(caught.value, TimeoutError)
    assert "--- log tail ---" in str(caught.value)
    _assert_cleaned_up(envoy)


def test_waits_time_out_with_a_description_and_envoy_is_stopped_when_a_test_fails(address):
    envoy = EnvoyProcess(_bootstrap(address))
    with pytest.raises(EnvoyTimeoutError, match=r"stat no\.such\.stat >= 1 within 0\.2 s"), envoy:  # noqa: PT012
        assert envoy.stat("no.such.stat") is None
        envoy.wait_for_stat("no.such.stat", timeout=0.2)
    _assert_cleaned_up(envoy)


def test_envoy_exiting_while_a_test_waits_is_reported(address):
    with EnvoyProcess(_bootstrap(address)) as envoy:
        envoy.request("/quitquitquit", method="POST")
        with pytest.raises(EnvoyExitedError, match=r"Envoy exited with status 0 while waiting for cluster 'x'"):
            envoy.wait_for_cluster("x", timeout=60)
    _assert_cleaned_up(envoy)


def test_a_given_workdir_is_kept_with_the_log(address, tmp_path):
    envoy = EnvoyProcess(_bootstrap(address), workdir=tmp_path / "envoy")
    with envoy:
        assert envoy.log_path == tmp_path / "envoy" / "envoy.log"
        assert json.loads((tmp_path / "envoy" / "envoy.json").read_text())["node"]["id"].startswith("sidecar~")
    assert "starting main dispatch loop" in envoy.log_path.read_text()
    assert envoy.stop() == 0  # stopping again is harmless
    assert not _is_running(envoy.pid)


def test_misuse_is_refused(address):
    envoy = EnvoyProcess(_bootstrap(address))
    with pytest.raises(EnvoyError, match="not ready"):
        _ = envoy.admin_url
    with envoy, pytest.raises(EnvoyError, match="already started"):
        envoy.start()
    _assert_cleaned_up(envoy)


def test_free_loopback_addresses_are_apart_from_127_0_0():
    addresses = {free_loopback_address() for _ in range(5)}
    for address in addresses:
        assert address.startswith("127.")
        assert not address.startswith("127.0.0.")
