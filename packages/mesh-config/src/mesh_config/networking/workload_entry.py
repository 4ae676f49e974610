"""WorkloadEntry (networking.istio.io): a non-Kubernetes workload.

A WorkloadEntry describes one workload that runs outside Kubernetes (a VM, a bare-metal process) so that
ServiceEntries (and Kubernetes Services) can select it like a pod. The same message is a ServiceEntry's
inline ``endpoints`` item and a WorkloadGroup's ``template``.
"""

from __future__ import annotations

from typing import final

import attrs

from mesh_config.kinds import KindSpec, register_kind
from mesh_config.networking._workload_rules import check_entry_schema, check_entry_semantics
from mesh_config.types import FrozenDict, UInt32, integer, mapping, string
from mesh_config.validation import ValidationContext

__all__ = ["WORKLOAD_ENTRY", "WorkloadEntry", "validate_workload_entry"]


@final
@attrs.frozen
class WorkloadEntry:
    """The spec of a WorkloadEntry (also a ServiceEntry endpoint and a WorkloadGroup template).

    Attributes:
        address: the workload's IP address, DNS name, or ``unix://`` socket path (without a port); may be
            empty when ``network`` is set (the workload is reached through the network's gateway).
        ports: the workload's ports by service port name (``{"http": 8080}``).
        labels: the workload's labels.
        network: the network the address is reachable on.
        locality: ``region/zone/subzone``.
        weight: the load-balancing weight (0 means the default, 1).
        service_account: the service account of the workload's sidecar, if it has one.
    """

    address: str = string()
    ports: FrozenDict[str, UInt32] = mapping()
    labels: FrozenDict[str, str] = mapping()
    network: str = string()
    locality: str = string()
    weight: UInt32 = integer()
    service_account: str = string()


def check_workload_entry_schema(entry: WorkloadEntry, ctx: ValidationContext, *, address_required: bool = True) -> None:
    """The CRD rules of a WorkloadEntry message; ``ctx`` is positioned at the message."""
    check_entry_schema(
        ctx,
        entry.address,
        entry.ports,
        entry.labels,
        entry.network,
        entry.locality,
        entry.service_account,
        address_required=address_required,
    )


def validate_workload_entry(spec: WorkloadEntry, ctx: ValidationContext) -> None:
    """The CRD rules and Istio's webhook rules for a WorkloadEntry.

    The address is required unless a network is set (then it warns); it is an IP, a DNS name, or an
    absolute or abstract ``unix://`` socket without ports; port names are DNS labels and port numbers
    1..65535; labels have Kubernetes syntax.
    """
    check_workload_entry_schema(spec, ctx)
    check_entry_semantics(ctx, spec.address, spec.ports, spec.labels, spec.network, service_ports=None, allow_fqdn=True)


WORKLOAD_ENTRY = register_kind(
    KindSpec(
        kind="WorkloadEntry",
        group="networking.istio.io",
        versions=("v1", "v1alpha3", "v1beta1"),
        spec_type=WorkloadEntry,
        validate=validate_workload_entry,
        plural="workloadentries",
        spec_required=True,
    )
)
