"""Where each part of a mesh goes: loopback addresses for meshd, every workload and the ingress gateway."""

from __future__ import annotations

from typing import Final, final

import attrs

from mesh_harness._addresses import AddressPool
from mesh_harness.topology import Topology
from mesh_harness.workload import ControlPlane, Gateway, Workload

PROXY_PORTS: Final = (15000, 15020, 15021, 15090)
"""Envoy's admin, the agent's status, Envoy's readiness and Prometheus ports, on each proxy's own address."""
GATEWAY_NAMESPACE: Final = "istio-system"


@final
@attrs.frozen
class Layout:
    """The addresses of a mesh's parts.

    Attributes:
        topology: what runs.
        control: meshd.
        workloads: every workload, by name (``<name>.<namespace>`` when a name repeats across namespaces).
        gateway: the ingress gateway, if any.
    """

    topology: Topology
    control: ControlPlane
    workloads: dict[str, Workload]
    gateway: Gateway | None

    @classmethod
    def place(cls, topology: Topology) -> Layout:
        """Give meshd, every workload (three addresses each) and the gateway addresses with their ports free.

        Raises:
            StartError: no such addresses are left.
        """
        pool = AddressPool()
        control = ControlPlane(pool.take(ControlPlane("127.0.0.1").ports))
        names = [service.name for service in topology.services]
        workloads = {}
        for service, version in topology.workloads():
            name = f"{service.name}-{version}"
            workload = Workload(
                name=name,
                service=service.name,
                version=version,
                namespace=service.namespace,
                service_account=service.account,
                port=service.port,
                inbound=pool.take((service.port, *PROXY_PORTS)),
                application=pool.take((service.port,)),
                outbound=pool.take(topology.ports),
                calls=tuple(topology.resolve(call, service.namespace).name for call in service.calls_of(version)),
            )
            workloads[name if names.count(service.name) == 1 else f"{name}.{service.namespace}"] = workload
        gateway = None
        if topology.ingress is not None:
            address = pool.take((topology.ingress_port, *PROXY_PORTS))
            gateway = Gateway("istio-ingressgateway", GATEWAY_NAMESPACE, address, topology.ingress_port)
        return cls(topology, control, workloads, gateway)

    def proxies(self) -> list[tuple[str, str, str, str]]:
        """``(key, readiness URL, node id, admin URL)`` of every proxy: the sidecars, then the gateway."""
        found = [(w.key, w.status_url, w.node_id, w.admin_url) for w in self.workloads.values()]
        if self.gateway is not None:
            gateway = self.gateway
            found.append((gateway.key, gateway.status_url, gateway.node_id, gateway.admin_url))
        return found

    def listeners(self) -> list[tuple[str, tuple[int, ...]]]:
        """``(address, ports)`` of everything that listens on TCP."""
        found = [(self.control.address, self.control.ports)]
        for workload in self.workloads.values():
            found += [
                (workload.inbound, (workload.port, *PROXY_PORTS)),
                (workload.application, (workload.port,)),
                (workload.outbound, self.topology.ports),
            ]
        if self.gateway is not None:
            found.append((self.gateway.address, (self.gateway.port, *PROXY_PORTS)))
        return found
