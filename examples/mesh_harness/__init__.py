"""mesh_harness: start a whole mesh on loopback from a topology, send it traffic, change its config, stop it.

The code that runs the bookinfo demo and the end-to-end tests, for your own tests too. Given a
:class:`Topology` (services, versions, ports, namespaces, who calls whom) and optional Istio config,
:class:`Mesh` starts ``meshd``, then per workload an echo app (``mesh-echo``), its ``mesh-agent`` and its Envoy
sidecar, and an ingress gateway, each on loopback addresses of its own; waits until every proxy is ready and
SYNCED; sends requests through any workload's sidecar or through the gateway (:class:`Response` reads the
echo apps' answers hop by hop); applies and removes config while the mesh runs; and stops everything,
reporting anything left behind::

    from mesh_harness import Mesh, bookinfo

    async with Mesh(bookinfo()) as mesh:
        response = await mesh.ingress("/productpage", headers={"end-user": "jason"})
        print(response.summary(), response.hop("reviews").summary())
"""

from mesh_harness.errors import ConfigRejectedError, HarnessError, StartError, TopologyError
from mesh_harness.mesh import Mesh
from mesh_harness.response import Response, send
from mesh_harness.topology import RESERVED_PORTS, ServiceSpec, Topology, bookinfo
from mesh_harness.workload import ADMIN_PORT, STATUS_PORT, ControlPlane, Gateway, Workload

__all__ = [
    "ADMIN_PORT",
    "RESERVED_PORTS",
    "STATUS_PORT",
    "ConfigRejectedError",
    "ControlPlane",
    "Gateway",
    "HarnessError",
    "Mesh",
    "Response",
    "ServiceSpec",
    "StartError",
    "Topology",
    "TopologyError",
    "Workload",
    "bookinfo",
    "send",
]
