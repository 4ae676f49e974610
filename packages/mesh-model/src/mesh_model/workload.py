"""Workloads: the pods, VMs and processes that run a service's code and its proxy."""

from __future__ import annotations

from collections.abc import Iterable
from typing import final

import attrs

from mesh_model._address import check_endpoint_address, check_port, check_weight
from mesh_model._convert import to_labels, to_locality, to_port_map, to_tuple
from mesh_model._text import describe
from mesh_model.endpoint import Endpoint, TlsMode
from mesh_model.errors import InvalidServiceError
from mesh_model.labels import Labels
from mesh_model.locality import Locality
from mesh_model.service import ServiceKey, check_namespace
from mesh_model.spiffe import SpiffeId

__all__ = ["Workload", "WorkloadKey"]


@final
@attrs.frozen(order=True)
class WorkloadKey:
    """What identifies a workload in a registry.

    Attributes:
        namespace: the workload's namespace.
        name: the workload's name.
    """

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


def _to_keys(value: Iterable[ServiceKey] | ServiceKey) -> frozenset[ServiceKey]:
    if isinstance(value, ServiceKey):
        return frozenset((value,))
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise InvalidServiceError(f"workload services must be ServiceKey values, not {describe(value)}")
    keys = frozenset(value)
    for key in keys:
        if not isinstance(key, ServiceKey):
            raise InvalidServiceError(f"workload services must be ServiceKey values, not {describe(key)}")
    return keys


@final
@attrs.frozen
class Workload:
    """A running instance of an application: a pod, a VM (WorkloadEntry) or a local process.

    Attributes:
        name: the workload's name, unique in its namespace.
        namespace: the workload's namespace.
        addresses: the addresses it is reached on (the first is its endpoint address).
        labels: its labels, which selectors and subsets match.
        service_account: its service account, empty for ``default``.
        ports: named ports, e.g. ``{"http": 9080}``.
        locality: where it runs.
        network: the network its addresses are on, empty for the local one.
        cluster_id: the cluster it runs in.
        tls_mode: whether it has a sidecar that takes Istio mTLS.
        weight: its load-balancing weight.
        services: keys of the services it backs explicitly, besides those whose selector matches it.
    """

    name: str
    namespace: str
    addresses: tuple[str, ...] = attrs.field(default=(), converter=to_tuple)
    labels: Labels = attrs.field(factory=Labels, converter=to_labels)
    service_account: str = ""
    ports: tuple[tuple[str, int], ...] = attrs.field(default=(), converter=to_port_map)
    locality: Locality = attrs.field(factory=Locality, converter=to_locality)
    network: str = ""
    cluster_id: str = ""
    tls_mode: TlsMode = TlsMode.ISTIO
    weight: int = 1
    services: frozenset[ServiceKey] = attrs.field(default=frozenset(), converter=_to_keys)

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise InvalidServiceError(f"workload name must be a string, not {describe(self.name)}")
        if not self.name:
            raise InvalidServiceError("workload name is empty")
        check_namespace(f"workload {self.name}: namespace", self.namespace)
        where = f"workload {self.namespace}/{self.name}"
        for address in self.addresses:
            check_endpoint_address(f"{where}: address", address)
        # Checked here, not first in to_endpoint(), so that a bad workload cannot break a registry's endpoints().
        for name, number in self.ports:
            check_port(f"{where}: port {describe(name)}", number)
        check_weight(f"{where}: weight", self.weight)
        if not isinstance(self.tls_mode, TlsMode):
            raise InvalidServiceError(f"{where}: tls_mode {describe(self.tls_mode)} is not a TlsMode")

    @property
    def key(self) -> WorkloadKey:
        """The workload's registry key."""
        return WorkloadKey(self.namespace, self.name)

    def identity(self, trust_domain: str) -> SpiffeId:
        """The workload's SPIFFE id in ``trust_domain`` (service account ``default`` when none is set)."""
        return SpiffeId(trust_domain, self.namespace, self.service_account or "default")

    def to_endpoint(self) -> Endpoint:
        """The workload as an endpoint on its first address.

        Raises:
            InvalidServiceError: the workload has no address.
        """
        if not self.addresses:
            raise InvalidServiceError(f"workload {self.key} has no address to serve on")
        return Endpoint(
            address=self.addresses[0],
            ports=self.ports,
            labels=self.labels,
            service_account=self.service_account,
            locality=self.locality,
            weight=self.weight,
            tls_mode=self.tls_mode,
            network=self.network,
            cluster_id=self.cluster_id,
            workload_name=self.name,
            namespace=self.namespace,
        )
