"""Endpoints: the workload instances behind a service."""

from __future__ import annotations

import enum
from typing import final

import attrs

from mesh_model._address import check_endpoint_address, check_port, check_weight
from mesh_model._convert import to_labels, to_locality, to_port_map
from mesh_model._text import describe
from mesh_model.errors import InvalidServiceError
from mesh_model.labels import Labels
from mesh_model.locality import Locality
from mesh_model.service import ServicePort

__all__ = ["Endpoint", "HealthStatus", "TlsMode"]


class TlsMode(enum.Enum):
    """Whether an endpoint accepts Istio mutual TLS (Istio's ``security.istio.io/tlsMode`` label)."""

    ISTIO = "istio"
    """The workload has a sidecar: clients may use Istio mTLS (auto mTLS)."""
    DISABLED = "disabled"
    """Plain traffic only."""


class HealthStatus(enum.Enum):
    """The health of an endpoint, as Istio reports it to Envoy."""

    HEALTHY = "HEALTHY"
    UNHEALTHY = "UNHEALTHY"
    DRAINING = "DRAINING"
    TERMINATING = "TERMINATING"


@final
@attrs.frozen
class Endpoint:
    """One instance of a workload that serves a service.

    Attributes:
        address: an IP address, a ``unix://`` socket path, or a DNS name (for DNS-resolved services).
        ports: named ports of the workload, e.g. ``{"http": 9080}``; a service port is served on the
            number its name maps to (see :meth:`target_port`).
        labels: the workload's labels (subsets select on these).
        service_account: the workload's service account (or SPIFFE id), empty when unknown.
        locality: where the workload runs.
        weight: the endpoint's load-balancing weight, 1 or more.
        health: the endpoint's health.
        tls_mode: whether it takes Istio mTLS.
        network: the network the address is reachable on, empty for the local one.
        cluster_id: the cluster the workload runs in, empty when unknown.
        workload_name: the name of the workload (pod, WorkloadEntry), empty when unknown.
        namespace: the workload's namespace, empty when unknown.
    """

    address: str
    ports: tuple[tuple[str, int], ...] = attrs.field(default=(), converter=to_port_map)
    labels: Labels = attrs.field(factory=Labels, converter=to_labels)
    service_account: str = ""
    locality: Locality = attrs.field(factory=Locality, converter=to_locality)
    weight: int = 1
    health: HealthStatus = HealthStatus.HEALTHY
    tls_mode: TlsMode = TlsMode.DISABLED
    network: str = ""
    cluster_id: str = ""
    workload_name: str = ""
    namespace: str = ""

    def __attrs_post_init__(self) -> None:
        check_endpoint_address("endpoint address", self.address)
        where = f"endpoint {self.address}"
        for name, number in self.ports:
            check_port(f"{where}: port {describe(name)}", number)
        check_weight(f"{where}: weight", self.weight)
        if not isinstance(self.health, HealthStatus):
            raise InvalidServiceError(f"{where}: health {describe(self.health)} is not a HealthStatus")
        if not isinstance(self.tls_mode, TlsMode):
            raise InvalidServiceError(f"{where}: tls_mode {describe(self.tls_mode)} is not a TlsMode")

    @property
    def port_map(self) -> dict[str, int]:
        """The named ports as a new dict."""
        return dict(self.ports)

    @property
    def is_unix_socket(self) -> bool:
        """True when the address is a ``unix://`` path."""
        return self.address.startswith("unix://")

    def target_port(self, port: ServicePort) -> int:
        """The port this endpoint serves ``port`` on.

        The endpoint's own port of the same name first, then the service port's ``target_port``, then the
        service port's number (as Istio does for ServiceEntry endpoints).
        """
        for name, number in self.ports:
            if name == port.name and port.name:
                return number
        return port.target_port if port.target_port is not None else port.number

    def serves(self, port: ServicePort) -> bool:
        """True when the endpoint serves the service port.

        An endpoint with no named ports serves every port; one with named ports serves the ports whose
        names it lists, and unnamed service ports.
        """
        return not self.ports or not port.name or any(name == port.name for name, _ in self.ports)
