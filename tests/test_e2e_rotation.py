"""End to end, certificate rotation: workload certificates renewed from meshd's CA under STRICT mTLS traffic.

The agents ask for 6-second certificates (``mesh-agent --secret-ttl``), so each renews about every 3 seconds
and pushes the new certificate to its Envoy over SDS. Requests flow from ``client`` to ``backend`` the whole
time, on connections opened before and after each renewal, and past the expiry of the first certificates.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from datetime import timedelta

from mesh_harness import Mesh, ServiceSpec, Topology

TTL = timedelta(seconds=6)
STRICT = """\
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec:
  mtls: {mode: STRICT}
"""


def _serials(admin_url: str, identity: str) -> set[str]:
    """Serial numbers of the workload certificates (with this SPIFFE id) that an Envoy holds right now."""
    with urllib.request.urlopen(f"{admin_url}/certs", timeout=10) as answer:
        certs = json.load(answer)
    return {
        cert["serial_number"]
        for entry in certs.get("certificates", [])
        for cert in entry.get("cert_chain", [])
        if any(name.get("uri") == identity for name in cert.get("subject_alt_names", []))
    }


async def test_traffic_keeps_flowing_while_workload_certificates_rotate_past_their_expiry():
    mesh = Mesh(Topology(services=(ServiceSpec("client"), ServiceSpec("backend", port=8000))), certificate_ttl=TTL)
    await mesh.start()
    try:
        await mesh.apply(STRICT)
        client, backend = mesh.workload("client"), mesh.workload("backend")
        seen: dict[str, set[str]] = {client.key: set(), backend.key: set()}
        failures: list[str] = []
        answers = 0
        started = time.monotonic()
        deadline = started + 60
        # Three certificates each, and the first ones expired: renewals happened and traffic outlived them.
        while min(len(serials) for serials in seen.values()) < 3 or time.monotonic() - started < TTL.total_seconds():
            assert time.monotonic() < deadline, f"certificates seen in 60 s: {seen}; failures: {failures[:5]}"
            for workload in (client, backend):
                seen[workload.key] |= await asyncio.to_thread(_serials, workload.admin_url, workload.identity)
            for _ in range(5):
                answer = await mesh.request("client", "backend")
                answers += 1
                if (answer.status, answer.peer) != (200, client.identity):
                    failures.append(answer.summary())
        assert failures == [], f"{len(failures)} of {answers} requests failed: {failures[:5]}"
    finally:
        left = await mesh.stop()
    assert left == ()
