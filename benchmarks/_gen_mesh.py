"""The mesh of the generation benchmark: 1,000 services of 10 endpoints each, with some Istio config.

Used by ``xds_generation.py``, and by ``_xds_fleet.py`` for the node ids and metadata of its sidecars.

The services are ``svc-NNNN.ns-NN.svc.cluster.local`` (100 per namespace, 10 namespaces), each with an HTTP
port 8080 and, for one in ten, a gRPC port 9090 too. Their endpoints are explicit registry endpoints on
loopback addresses, spread over three zones, half ``version: v1`` and half ``v2``, all of them Istio mTLS.
The config has, for one service in ten, a DestinationRule with subsets ``v1`` and ``v2`` and a VirtualService
that sends 90 % of the traffic to ``v1`` with a timeout and retries; plus a mesh-wide DestinationRule that
turns on Istio mTLS and a mesh-wide PeerAuthentication (``STRICT``). No Sidecar: every proxy sees every service.
"""

from __future__ import annotations

from typing import Any, Final

from mesh_config import InMemoryConfigStore, Resource, ServiceEntryRegistry, load_text
from mesh_model import (
    AggregateRegistry,
    Endpoint,
    InMemoryRegistry,
    Locality,
    Protocol,
    Proxy,
    Service,
    ServicePort,
    TlsMode,
)
from mesh_xds.generate import SidecarAddresses

NAMESPACES: Final = 10
ENDPOINTS: Final = 10
ROUTED_EVERY: Final = 10
"""One service in this many has a DestinationRule with subsets and a VirtualService."""
DOMAIN: Final = "cluster.local"
CLIENT_NAMESPACE: Final = "ns-00"
CLIENT_APP: Final = "svc-0000"
_ZONES: Final = ("zone-a", "zone-b", "zone-c")
_HTTP: Final = ServicePort("http", 8080, Protocol.HTTP)
_GRPC: Final = ServicePort("grpc", 9090, Protocol.GRPC)


def _group(index: int) -> int:
    """Services go by tens: one ten in ``ROUTED_EVERY`` is routed, so that every namespace has some."""
    return (index // NAMESPACES) % ROUTED_EVERY


def namespace(index: int) -> str:
    """The namespace of service ``index``."""
    return f"ns-{index % NAMESPACES:02d}"


def short_name(index: int) -> str:
    """The name of service ``index``."""
    return f"svc-{index:04d}"


def host(index: int) -> str:
    """The hostname of service ``index``."""
    return f"{short_name(index)}.{namespace(index)}.svc.{DOMAIN}"


def _endpoint(service: int, replica: int) -> Endpoint:
    version = "v1" if replica % 2 == 0 else "v2"
    return Endpoint(
        f"127.{100 + service // 250}.{service % 250}.{replica + 1}",
        ports={"http": 8080, "grpc": 9090},
        labels={"app": short_name(service), "version": version},
        service_account=f"spiffe://{DOMAIN}/ns/{namespace(service)}/sa/{short_name(service)}",
        locality=Locality("region-1", _ZONES[replica % len(_ZONES)]),
        tls_mode=TlsMode.ISTIO,
        namespace=namespace(service),
        workload_name=f"{short_name(service)}-{version}-{replica}",
    )


def registry(services: int) -> InMemoryRegistry:
    """A registry of ``services`` services with their endpoints."""
    found = InMemoryRegistry(name="kubernetes")
    with found.batch():
        for index in range(services):
            ports = [_HTTP, _GRPC] if _group(index) == 5 else [_HTTP]
            service = Service(
                host(index),
                namespace(index),
                ports=ports,
                addresses=[f"127.10.{index // 250}.{index % 250 + 1}"],
                selector={"app": short_name(index)},
            )
            found.upsert_service(service)
            found.set_endpoints(service.key, [_endpoint(index, replica) for replica in range(ENDPOINTS)])
    return found


def _routing(index: int, v1_weight: int) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: {short_name(index)}, namespace: {namespace(index)}}}
spec:
  host: {short_name(index)}
  trafficPolicy:
    connectionPool: {{http: {{http2MaxRequests: 1000, maxRequestsPerConnection: 100}}}}
    outlierDetection: {{consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s}}
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
---
{virtual_service(index, v1_weight)}"""


def virtual_service(index: int, v1_weight: int) -> str:
    """The VirtualService of service ``index``: ``v1_weight`` % of its traffic to ``v1``, the rest to ``v2``."""
    return f"""apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {short_name(index)}, namespace: {namespace(index)}}}
spec:
  hosts: [{short_name(index)}]
  http:
  - match:
    - headers: {{x-canary: {{exact: "true"}}}}
    route:
    - destination: {{host: {short_name(index)}, subset: v2}}
  - route:
    - destination: {{host: {short_name(index)}, subset: v1}}
      weight: {v1_weight}
    - destination: {{host: {short_name(index)}, subset: v2}}
      weight: {100 - v1_weight}
    timeout: 5s
    retries: {{attempts: 3, perTryTimeout: 2s, retryOn: "5xx,connect-failure"}}
"""


_MESH_WIDE: Final = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: default, namespace: istio-system}
spec:
  host: "*.local"
  trafficPolicy:
    tls: {mode: ISTIO_MUTUAL}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec:
  mtls: {mode: STRICT}
"""


def config(services: int) -> tuple[Resource[Any], ...]:
    """The Istio config of the mesh."""
    text = _MESH_WIDE + "".join("---" + _routing(index, 90) for index in range(services) if is_routed(index))
    return load_text(text, default_namespace="default").raise_for_errors().resources


def is_routed(index: int) -> bool:
    """Whether service ``index`` has a DestinationRule with subsets and a VirtualService."""
    return _group(index) == ROUTED_EVERY - 1


def routed_service(services: int) -> int:
    """The first service that has a VirtualService (the one the convergence benchmark changes)."""
    return next((index for index in range(services) if is_routed(index)), services - 1)


def store(services: int) -> InMemoryConfigStore:
    """A config store holding :func:`config`."""
    return InMemoryConfigStore(config(services))


def all_services(registry_: InMemoryRegistry, resources: tuple[Resource[Any], ...]) -> AggregateRegistry:
    """The registry as a control plane serves it: the services, then the ServiceEntries of the config."""
    return AggregateRegistry([registry_, ServiceEntryRegistry(resources)], name="bench")


def node_id(index: int) -> str:
    """The Envoy node id of client sidecar ``index``: a replica of ``svc-0000`` in ``ns-00``."""
    address = f"127.200.{index // 250}.{index % 250 + 1}"
    return f"sidecar~{address}~{CLIENT_APP}-v1-{index}.{CLIENT_NAMESPACE}~{CLIENT_NAMESPACE}.svc.{DOMAIN}"


def node_metadata() -> dict[str, Any]:
    """The node metadata of every client sidecar (the same scope for all of them)."""
    return {
        "NAMESPACE": CLIENT_NAMESPACE,
        "LABELS": {"app": CLIENT_APP, "version": "v1"},
        "SERVICE_ACCOUNT": CLIENT_APP,
        "ISTIO_VERSION": "1.28.0",
        "CLUSTER_ID": "Kubernetes",
    }


def proxy(index: int) -> Proxy:
    """Client sidecar ``index``, parsed as the control plane parses it."""
    return Proxy.parse(node_id(index), node_metadata())


def addresses(index: int) -> SidecarAddresses:
    """Where client sidecar ``index`` binds (loopback, as without iptables): inbound, application, outbound."""
    return SidecarAddresses(
        f"127.200.{index // 250}.{index % 250 + 1}",
        f"127.201.{index // 250}.{index % 250 + 1}",
        f"127.202.{index // 250}.{index % 250 + 1}",
    )
