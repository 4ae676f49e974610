"""Every example runs and shows what its docstring promises."""

import pathlib
import subprocess
import sys

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"

EXPECTED = {
    "config_validate.py": [
        "accepted PeerAuthentication bookinfo/reviews-strict",
        "  mtls STRICT, per port {9080: 'PERMISSIVE'}",
        "skipped Deployment in bookinfo.yaml (not an Istio kind)",
        "bookinfo.yaml:22:5: error: PeerAuthentication default/ratings-typo: spec.mtls.mode:"
        ' Unsupported value: "STRCT": supported values: "UNSET", "DISABLE", "PERMISSIVE", "STRICT"',
        'bookinfo.yaml:20:1: error: PeerAuthentication default/ratings-typo: spec: Invalid value: "object":'
        " portLevelMtls requires selector",
        "invalid: 2 errors",
    ],
    "model_tour.py": [
        "changed: Endpoints default/reviews.default.svc.cluster.local,"
        " Service default/reviews.default.svc.cluster.local,"
        " Workload default/reviews-v1, Workload default/reviews-v2",
        "endpoint 127.0.10.1:9080 {'app': 'reviews', 'version': 'v1'}",
        "endpoint 127.0.10.2:9080 {'app': 'reviews', 'version': 'v2'}",
        "proxy reviews-v1.default in default runs as spiffe://cluster.local/ns/default/sa/bookinfo-reviews",
        "rule for reviews.default.svc.cluster.local is reviews.default.svc.cluster.local",
        "protocol of port 'grpc-api': GRPC True",
        "dependencies of default/reviews-v1 are ['default/ratings.default.svc.cluster.local']",
    ],
    "xds_serve.py": [
        "envoy holds Cluster: reviews",
        "envoy holds ClusterLoadAssignment: reviews",
        "envoy holds Listener: reviews",
        "pushed after the endpoint change: ClusterLoadAssignment",
        "reviews endpoints: 127.0.10.1, 127.0.10.2",
        "status: cds SYNCED, eds SYNCED, lds SYNCED",
        "refused: the snapshot lacks 1 resource: Cluster 'postgres' (referred to by Listener 'db')",
    ],
}


def test_every_example_has_expectations():
    assert {path.name for path in EXAMPLES.glob("*.py")} == set(EXPECTED)


def test_meshctl_without_a_command_is_a_usage_error():
    result = subprocess.run([sys.executable, "-m", "meshctl"], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert "usage: meshctl" in result.stderr


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs(name):
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for expected in EXPECTED[name]:
        assert expected in lines, f"{expected!r} not in output:\n{result.stdout}"
