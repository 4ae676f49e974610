"""Fixtures of the mesh-xds tests: an ADS server on loopback with its cache and metrics."""

import pytest

from mesh_xds import SnapshotCache, XdsMetrics, XdsServer


@pytest.fixture
def cache():
    return SnapshotCache()


@pytest.fixture
def metrics():
    return XdsMetrics()


@pytest.fixture
async def ads_server(cache, metrics):
    server = XdsServer(cache, metrics=metrics)
    await server.start("127.0.0.1:0")
    yield server
    await server.stop(grace=0)


@pytest.fixture
def ads_target(ads_server):
    return f"127.0.0.1:{ads_server.port}"
