"""The demo's steps: an Istio config to apply, the traffic to drive after it, and what to expect of the answers.

The configs are Istio's bookinfo samples (``configs/``); each step applies one while the mesh runs, on top of
the ones before, as Istio's tasks do: request routing, traffic shifting, fault injection, mutual TLS and
authorization.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Final, final

import attrs

from mesh_demo.report import Check, binomial_bounds, counts
from mesh_harness import Mesh, Response, send

__all__ = ["CONFIGS", "STEPS", "Step"]

CONFIGS: Final = Path(__file__).resolve().parent / "configs"
"""The Istio YAML the steps apply."""
PRODUCTPAGE_IDENTITY: Final = "spiffe://cluster.local/ns/default/sa/bookinfo-productpage"
JASON: Final = {"end-user": "jason"}

Observe = Callable[[Mesh, int], Awaitable[list[Check]]]


@final
@attrs.frozen
class Step:
    """One step of the demo.

    Attributes:
        title: what the step shows.
        config: the file of ``configs/`` it applies.
        name: the name it is applied under (a later step with the same name replaces it).
        observe: drives traffic through the mesh (given the number of requests) and checks the answers.
    """

    title: str
    config: str
    name: str
    observe: Observe


async def _through_ingress(mesh: Mesh, requests: int, headers: dict[str, str] | None = None) -> list[Response]:
    return [await mesh.ingress("/productpage", headers=headers) for _ in range(requests)]


def _status(answer: Response, *calls: str) -> int | None:
    """The status a chain of calls got, ``None`` when it was not made."""
    hop = answer.hop(*calls)
    return None if hop is None else hop.status


def _versions(answers: list[Response]) -> list[str | None]:
    return [None if (hop := answer.hop("reviews")) is None else hop.version for answer in answers]


def _ratings(answers: list[Response]) -> list[int | None]:
    return [_status(answer, "reviews", "ratings") for answer in answers]


def _productpage(answers: list[Response], label: str = "productpage") -> Check:
    statuses = [answer.status if answer.service == "productpage" else answer.summary() for answer in answers]
    return Check(f"{label} answers", f"200: {len(answers)}", counts(statuses), set(statuses) == {200})


def _only(what: str, values: Sequence[object], expected: object) -> Check:
    return Check(what, f"{expected}: {len(values)}", counts(values), set(values) == {expected})


def _ratings_by_version(answers: list[Response]) -> Check:
    pairs = [
        f"{version}->{rating or 'no call'}"
        for version, rating in zip(_versions(answers), _ratings(answers), strict=True)
    ]
    good = all(pair in ("v1->no call", "v2->200", "v3->200") for pair in pairs)
    return Check("reviews' calls to ratings", "v1 none; v2, v3 200", counts(pairs), good)


async def _every_version(mesh: Mesh, requests: int) -> list[Check]:
    answers = await _through_ingress(mesh, requests)
    versions = _versions(answers)
    return [
        _productpage(answers),
        _only("productpage's calls to details", [_status(answer, "details") for answer in answers], 200),
        Check("reviews versions", "v1, v2 and v3 all serve", counts(versions), set(versions) == {"v1", "v2", "v3"}),
        _ratings_by_version(answers),
    ]


async def _all_v1(mesh: Mesh, requests: int) -> list[Check]:
    answers = await _through_ingress(mesh, requests)
    return [
        _productpage(answers),
        _only("reviews versions", _versions(answers), "v1"),
        Check(
            "reviews' calls to ratings",
            "none (v1 does not call)",
            counts(_ratings(answers)),
            not any(_ratings(answers)),
        ),
    ]


async def _split(mesh: Mesh, requests: int) -> list[Check]:
    answers = await _through_ingress(mesh, requests)
    versions = _versions(answers)
    low, high = binomial_bounds(requests, 0.5)
    within = set(versions) <= {"v1", "v3"} and low <= versions.count("v3") <= high
    return [
        _productpage(answers),
        Check("reviews versions", f"v1 and v3 only, v3 {low}..{high}", counts(versions), within),
        _ratings_by_version(answers),
    ]


async def _jason(mesh: Mesh, requests: int) -> list[Check]:
    half = max(1, requests // 2)
    jason, others = await _through_ingress(mesh, half, JASON), await _through_ingress(mesh, half)
    return [
        _only("reviews versions for end-user jason", _versions(jason), "v2"),
        _only("reviews versions for everyone else", _versions(others), "v1"),
    ]


async def _fault(mesh: Mesh, requests: int) -> list[Check]:
    half = max(1, requests // 2)
    jason, others = await _through_ingress(mesh, half, JASON), await _through_ingress(mesh, half)
    return [
        _only("ratings calls for jason (abort 500)", _ratings(jason), 500),
        _productpage(jason, "productpage for jason"),
        _only("reviews versions for everyone else", _versions(others), "v1"),
        Check(
            "ratings calls for everyone else",
            "none (v1 does not call)",
            counts(_ratings(others)),
            not any(_ratings(others)),
        ),
    ]


async def _strict(mesh: Mesh, requests: int) -> list[Check]:
    answers = await _through_ingress(mesh, requests)
    peers = [None if (hop := answer.hop("reviews")) is None else hop.peer for answer in answers]
    reviews = mesh.workload("reviews-v1")
    plaintext = await asyncio.to_thread(send, reviews.inbound, reviews.port, "/", host="reviews")
    return [
        _productpage(answers),
        Check(
            "caller identity reviews saw",
            f"{PRODUCTPAGE_IDENTITY.rpartition('/')[2]}: {requests}",
            counts(peer and peer.rpartition("/")[2] for peer in peers),
            set(peers) == {PRODUCTPAGE_IDENTITY},
        ),
        Check(
            "plaintext request to reviews v1",
            "refused",
            f"refused: {plaintext.error.rpartition('] ')[2]}" if plaintext.status == 0 else plaintext.summary(),
            plaintext.status == 0,
        ),
    ]


async def _authorization(mesh: Mesh, requests: int) -> list[Check]:
    answers = await _through_ingress(mesh, requests)
    reviews = [_status(answer, "reviews") for answer in answers]
    direct = [await mesh.request("details", "reviews") for _ in range(5)]
    return [
        _productpage(answers),
        _only("productpage's calls to reviews", reviews, 200),
        _only("details' calls to reviews (its sidecar)", [answer.status for answer in direct], 403),
    ]


STEPS: Final = (
    Step(
        "no routing rules: reviews v1, v2 and v3 share the traffic",
        "destination-rule-all.yaml",
        "destination-rules",
        _every_version,
    ),
    Step("request routing: all traffic to reviews v1", "virtual-service-reviews-v1.yaml", "reviews", _all_v1),
    Step("traffic shifting: 50% to reviews v1, 50% to v3", "virtual-service-reviews-50-v3.yaml", "reviews", _split),
    Step("header routing: end-user jason to reviews v2", "virtual-service-reviews-jason-v2.yaml", "reviews", _jason),
    Step(
        "fault injection: ratings aborts jason's calls with 500",
        "virtual-service-ratings-abort.yaml",
        "ratings",
        _fault,
    ),
    Step("mutual TLS: STRICT for the whole mesh", "peer-authentication-strict.yaml", "peer-authentication", _strict),
    Step(
        "authorization: only productpage may call reviews",
        "authorization-policy-reviews.yaml",
        "reviews-authz",
        _authorization,
    ),
)
"""The steps, in order; each keeps the config of the steps before it."""
