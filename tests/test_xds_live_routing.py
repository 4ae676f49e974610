"""Traffic goes where the VirtualService says: real Envoy sidecars configured by an XdsController over ADS.

The live mesh of conftest.py with reviews v1, v2 and v3 behind productpage's sidecar, under Istio's default
MeshConfig: weights, header matches, faults, timeouts and retries, each checked on the answers of the echo
apps (which version answered, what it saw) and on the counters of the Envoys that acted.
"""

from __future__ import annotations

import math
from collections import Counter

import pytest
import pytest_asyncio

from mesh_config import default_mesh_config

pytestmark = pytest.mark.asyncio(loop_scope="module")

PORT = 9080
REVIEWS = "reviews.default.svc.cluster.local"


def _virtual_service(http: str, host: str = "reviews") -> str:
    return f"""\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {host}}}
spec:
  hosts: [{host}]
  http: {http}
"""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def mesh(live_mesh):
    async with live_mesh(default_mesh_config(), ("v1", "v2", "v3")) as mesh:
        yield mesh


# ------------------------------------------------------------------------------------------ routing


async def test_without_a_virtual_service_every_version_serves(mesh, apply):
    answers = await mesh.call(count=30)
    assert {answer.status for answer in answers} == {200}
    assert {answer.version for answer in answers} == {"v1", "v2", "v3"}


async def test_weights_split_traffic_80_20_within_binomial_bounds(mesh, apply):
    routes = """
  - route:
    - {destination: {host: reviews, subset: v1}, weight: 80}
    - {destination: {host: reviews, subset: v3}, weight: 20}"""
    await apply(_virtual_service(routes))
    requests, share = 200, 0.2
    answers = await mesh.call(count=requests)
    assert {answer.status for answer in answers} == {200}
    versions = Counter(answer.version for answer in answers)
    assert set(versions) == {"v1", "v3"}
    sigma = math.sqrt(requests * share * (1 - share))  # 5.7: the bounds below fail once in 16,000 runs
    assert abs(versions["v3"] - requests * share) <= 4 * sigma, versions


async def test_a_header_match_sends_jason_to_v2_and_everyone_else_to_v1(mesh, apply):
    routes = """
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - route: [{destination: {host: reviews, subset: v1}}]"""
    await apply(_virtual_service(routes))
    jason = await mesh.call(count=10, headers={"end-user": "jason"})
    assert {(answer.status, answer.version) for answer in jason} == {(200, "v2")}
    assert jason[0].echo["headers"]["end-user"] == "jason"
    for headers in ({"end-user": "mary"}, {"end-user": "Jason"}, {}):
        answers = await mesh.call(count=10, headers=headers)
        assert {(answer.status, answer.version) for answer in answers} == {(200, "v1")}, headers


async def test_an_abort_fault_answers_503_without_reaching_reviews(mesh, apply):
    routes = """
  - fault: {abort: {httpStatus: 503, percentage: {value: 100}}}
    route: [{destination: {host: reviews, subset: v1}}]"""
    await apply(_virtual_service(routes))
    v1 = f"outbound|{PORT}|v1|{REVIEWS}"
    aborted, sent = (
        mesh.counter("productpage", "fault.aborts_injected"),
        mesh.counter("productpage", "upstream_rq_total", cluster=v1),
    )
    answers = await mesh.call(count=10)
    assert {(answer.status, answer.body) for answer in answers} == {(503, b"fault filter abort")}
    assert mesh.counter("productpage", "fault.aborts_injected") - aborted == 10
    assert mesh.counter("productpage", "upstream_rq_total", cluster=v1) == sent


async def test_a_delayed_dependency_makes_the_callers_route_time_out(mesh, apply):
    """Istio's request-timeouts task: ratings is delayed 2 s by reviews' sidecar, reviews times out at 0.5 s."""
    reviews = """
  - route: [{destination: {host: reviews, subset: v2}}]
    timeout: 0.5s"""
    ratings = """
  - fault: {delay: {fixedDelay: 2s, percentage: {value: 100}}}
    route: [{destination: {host: ratings}}]"""
    await apply(_virtual_service(reviews) + "---\n" + _virtual_service(ratings, host="ratings"))
    [fast] = await mesh.call("/")
    assert (fast.status, fast.version) == (200, "v2")
    before = mesh.counter("productpage", "upstream_rq_timeout", cluster=f"outbound|{PORT}|v2|{REVIEWS}")
    [slow] = await mesh.call("/?call=ratings")
    assert (slow.status, slow.body) == (504, b"upstream request timeout")
    assert mesh.counter("productpage", "upstream_rq_timeout", cluster=f"outbound|{PORT}|v2|{REVIEWS}") - before == 1
    await mesh.wait_for_counter("reviews-v2", "fault.delays_injected")  # the delay was reviews v2's sidecar's


async def test_retries_on_5xx_hide_a_backend_that_fails_every_other_request(mesh, apply):
    without = """
  - route: [{destination: {host: reviews, subset: v1}}]
    retries: {attempts: 0}"""
    await apply(_virtual_service(without))
    answers = await mesh.call("/?fail=0.5", count=4)
    assert Counter(answer.status for answer in answers) == {200: 2, 503: 2}  # 1st, 3rd, 5th... fail

    with_retries = """
  - route: [{destination: {host: reviews, subset: v1}}]
    retries: {attempts: 2, retryOn: 5xx}"""
    await apply(_virtual_service(with_retries))
    before = mesh.counter("productpage", "upstream_rq_retry", cluster=f"outbound|{PORT}|v1|{REVIEWS}")
    answers = await mesh.call("/?fail=0.5", count=10)
    assert {(answer.status, answer.version) for answer in answers} == {(200, "v1")}
    # Each request but perhaps the first meets a failure first, then succeeds on its retry.
    assert mesh.counter("productpage", "upstream_rq_retry", cluster=f"outbound|{PORT}|v1|{REVIEWS}") - before >= 9
