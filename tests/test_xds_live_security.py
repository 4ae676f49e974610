"""Mutual TLS and authorization between real Envoy sidecars configured by an XdsController over ADS.

The live mesh of conftest.py with reviews v1 behind productpage's sidecar. Requests go through productpage's
sidecar, as its app sends them, and also straight to reviews' inbound listener, as a client that is no
sidecar would: in plaintext, over TLS without a certificate, or with a certificate of the mesh's CA for some
identity. Paths are sent exactly as written (``//admin``, ``%2F``), so both the client sidecar's and the
server sidecar's path normalization are put to the test (CVE-2021-31920, PEERS.md 3.4).

Istio's path normalization (MeshConfig ``pathNormalization``) is ``BASE`` by default: RFC 3986 dot segments
are resolved and backslashes become slashes, but slashes are not merged and ``%2F`` and ``%5C`` are not
decoded, so a DENY rule on ``/admin`` does not hold against ``//admin`` unless the mesh chooses
``MERGE_SLASHES`` or ``DECODE_AND_MERGE_SLASHES`` (Istio's advice for DENY rules). Both are tested: the default
on the first mesh, ``DECODE_AND_MERGE_SLASHES`` on a second one. Paths are case-sensitive in Istio under
every setting: ``/ADMIN`` is another path.
"""

from __future__ import annotations

import ssl

import attrs
import pytest
import pytest_asyncio

from mesh_config import default_mesh_config
from mesh_config.meshconfig import PathNormalization, ProxyPathNormalization
from mesh_model import SpiffeId

pytestmark = pytest.mark.asyncio(loop_scope="module")

PRODUCTPAGE = SpiffeId("cluster.local", "default", "bookinfo-productpage")
REVIEWS = SpiffeId("cluster.local", "default", "bookinfo-reviews")
INTRUDER = SpiffeId("cluster.local", "default", "sleep")  # signed by the mesh's CA, but not allowed
REFUSED = (ssl.SSLError, ConnectionError)  # a TLS alert, or the connection reset or closed without an answer
DENIED = (403, b"RBAC: access denied")

STRICT_MTLS = """\
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default}
spec: {mtls: {mode: STRICT}}
"""
PRODUCTPAGE_READS_REVIEWS = """\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: reviews-readers}
spec:
  selector: {matchLabels: {app: reviews}}
  action: ALLOW
  rules:
  - from: [{source: {principals: [cluster.local/ns/default/sa/bookinfo-productpage]}}]
    to: [{operation: {methods: [GET], paths: ["/reviews*"]}}]
"""
NO_ADMIN = """\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-admin}
spec:
  selector: {matchLabels: {app: reviews}}
  action: DENY
  rules: [{to: [{operation: {paths: [/admin, "/admin/*"]}}]}]
"""
# Denied under every normalization but NONE: the dot segments resolve to /admin (%2e is an escaped dot, %61 an
# escaped "a"), and RBAC matches the path without its query.
ADMIN_AFTER_BASE = [
    "/admin",
    "/admin/",
    "/admin/users",
    "/./admin",
    "/%2e/admin",
    "/reviews/../admin",
    "/reviews/%2e%2e/admin",
    "/%61dmin",
    "/admin?x=1",
]
# The CVE-2021-31920 forms: /admin only once slashes are merged and escaped slashes decoded.
ADMIN_AFTER_DECODE_AND_MERGE = ["//admin", "///admin/users", "/%2Fadmin", "/%2fadmin", "/%5Cadmin", "/\\admin"]


async def _both_ways(mesh, path):
    """The answers to ``path`` through productpage's sidecar and straight from a client with its identity."""
    [through_sidecar] = await mesh.call(path)
    direct = await mesh.direct("reviews-v1", path, identity=PRODUCTPAGE)
    return through_sidecar, direct


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def mesh(live_mesh):
    async with live_mesh(default_mesh_config(), ("v1",)) as mesh:
        yield mesh


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def strict_mesh(live_mesh):
    """Another mesh, whose MeshConfig asks for DECODE_AND_MERGE_SLASHES, with the DENY rule on /admin."""
    normalization = ProxyPathNormalization(normalization=PathNormalization.DECODE_AND_MERGE_SLASHES)
    async with live_mesh(attrs.evolve(default_mesh_config(), path_normalization=normalization), ("v1",)) as mesh:
        await mesh.apply(NO_ADMIN)
        yield mesh


# ------------------------------------------------------------------------------------------ mutual TLS


async def test_sidecars_talk_mutual_tls_and_the_backend_sees_the_callers_spiffe_id(mesh, apply):
    [answer] = await mesh.call()
    assert answer.status == 200
    assert (answer.echo["peer"], answer.echo["by"]) == (PRODUCTPAGE.uri, REVIEWS.uri)
    plaintext = await mesh.direct("reviews-v1", tls=False)  # PERMISSIVE, Istio's default, takes plaintext too
    assert (plaintext.status, plaintext.echo["peer"]) == (200, None)


async def test_strict_mtls_refuses_plaintext_and_clients_without_a_certificate(mesh, apply):
    await apply(STRICT_MTLS)
    [answer] = await mesh.call()
    assert answer.status == 200
    assert (answer.echo["peer"], answer.echo["by"]) == (PRODUCTPAGE.uri, REVIEWS.uri)
    with pytest.raises(REFUSED):
        await mesh.direct("reviews-v1", tls=False)
    with pytest.raises(REFUSED):
        await mesh.direct("reviews-v1", identity=None)
    direct = await mesh.direct("reviews-v1", identity=INTRUDER)  # any certificate of the mesh's CA will do
    assert (direct.status, direct.echo["peer"]) == (200, INTRUDER.uri)


# ------------------------------------------------------------------------------------------ authorization


async def test_an_allow_policy_lets_only_productpage_get_reviews_paths(mesh, apply):
    await apply(PRODUCTPAGE_READS_REVIEWS)
    for path in ("/reviews", "/reviews/1", "/reviews/1?x=1"):
        [answer] = await mesh.call(path)
        assert (answer.status, answer.echo["peer"]) == (200, PRODUCTPAGE.uri), path
    for path in ("/", "/ratings", "/Reviews/1", "/admin"):
        [answer] = await mesh.call(path)
        assert (answer.status, answer.body) == DENIED, path
    [post] = await mesh.call("/reviews/1", method="POST")
    assert (post.status, post.body) == DENIED

    assert (await mesh.direct("reviews-v1", "/reviews/1", identity=PRODUCTPAGE)).status == 200
    intruder = await mesh.direct("reviews-v1", "/reviews/1", identity=INTRUDER)
    assert (intruder.status, intruder.body) == DENIED
    plaintext = await mesh.direct("reviews-v1", "/reviews/1", tls=False)  # no mTLS, no principal
    assert (plaintext.status, plaintext.body) == DENIED


@pytest.mark.parametrize("path", ADMIN_AFTER_BASE)
async def test_a_deny_policy_holds_against_dot_segments_and_escapes_under_the_default_normalization(mesh, apply, path):
    await apply(NO_ADMIN)
    for answer in await _both_ways(mesh, path):
        assert (answer.status, answer.body) == DENIED


async def test_under_the_default_normalization_unmatched_paths_reach_the_backend_as_normalized(mesh, apply):
    await apply(NO_ADMIN)
    cases = {
        "/reviews/1": "/reviews/1",
        "/admin/..": "/",  # the dot segment takes /admin away: the backend never sees it
        "/reviews/./1": "/reviews/1",
        "/ADMIN": "/ADMIN",  # case-sensitive, as in Istio: another path than /admin
        # BASE merges no slashes and decodes no escaped slash (Istio's default): these pass the DENY rule as
        # sent, and reach a backend that may take them for /admin; strict_mesh's normalization denies them.
        "//admin": "//admin",
        "/%2Fadmin": "/%2Fadmin",
        "/%5Cadmin": "/%5Cadmin",
        "/\\admin": "//admin",  # a backslash is a slash
    }
    for path, served in cases.items():
        for answer in await _both_ways(mesh, path):
            assert (answer.status, answer.echo["path"]) == (200, served), path
    for answer in await _both_ways(mesh, "/admin#top"):
        assert answer.status == 400  # Envoy refuses a fragment in a request (CVE-2021-39156)


@pytest.mark.parametrize("path", ADMIN_AFTER_BASE + ADMIN_AFTER_DECODE_AND_MERGE)
async def test_with_decode_and_merge_slashes_every_bypass_form_is_denied(strict_mesh, path):
    for answer in await _both_ways(strict_mesh, path):
        assert (answer.status, answer.body) == DENIED


async def test_with_decode_and_merge_slashes_the_backend_gets_the_path_the_policy_saw(strict_mesh):
    cases = {
        "/reviews//1": "/reviews/1",
        "/reviews%2F1": "/reviews/1",
        "/reviews/%2e/1": "/reviews/1",
        "/ADMIN": "/ADMIN",
    }
    for path, served in cases.items():
        for answer in await _both_ways(strict_mesh, path):
            assert (answer.status, answer.echo["path"]) == (200, served), path
