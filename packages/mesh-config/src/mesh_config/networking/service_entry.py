"""ServiceEntry (networking.istio.io): services added to the mesh's registry.

A ServiceEntry adds hosts to Istio's service registry: external APIs (``MESH_EXTERNAL``) or services of the
mesh that Kubernetes does not know (``MESH_INTERNAL``, backed by WorkloadEntries or inline ``endpoints``).
"""

from __future__ import annotations

import enum
from typing import Any, final

import attrs

from mesh_config._structure import structure, thaw
from mesh_config.kinds import KindSpec, register_kind
from mesh_config.networking._service_entry_rules import check_service_entry
from mesh_config.networking.workload_entry import WorkloadEntry
from mesh_config.types import FrozenDict, JsonValue, UInt32, enum_value, integer, mapping, optional, repeated, string
from mesh_config.validation import ValidationContext

__all__ = [
    "SERVICE_ENTRY",
    "ServiceEntry",
    "ServiceEntryAddress",
    "ServiceEntryLocation",
    "ServiceEntryResolution",
    "ServiceEntryStatus",
    "ServicePort",
    "WorkloadLabelSelector",
    "service_entry_status",
    "validate_service_entry",
]


class ServiceEntryLocation(enum.Enum):
    """``ServiceEntry.Location``: whether the service is part of the mesh."""

    MESH_EXTERNAL = "MESH_EXTERNAL"
    """Outside the mesh: no mutual TLS to it, and its traffic counts as external."""
    MESH_INTERNAL = "MESH_INTERNAL"
    """Part of the mesh: its workloads have sidecars (VMs, services of another platform)."""


class ServiceEntryResolution(enum.Enum):
    """``ServiceEntry.Resolution``: how a proxy finds the endpoints of the hosts."""

    NONE = "NONE"
    """Pass connections to the address the client asked for (original destination)."""
    STATIC = "STATIC"
    """Use the ``endpoints`` (or the selected workloads) as listed."""
    DNS = "DNS"
    """Resolve the endpoints' names (or the hosts) with DNS; use every address returned."""
    DNS_ROUND_ROBIN = "DNS_ROUND_ROBIN"
    """Resolve with DNS; connect to the first address returned."""
    DYNAMIC_DNS = "DYNAMIC_DNS"
    """Resolve each request's host (from Host or SNI) with DNS; wildcard hosts only."""


@final
@attrs.frozen
class ServicePort:
    """``ServicePort``: a port of a ServiceEntry.

    Attributes:
        number: the port clients call, 1..65535.
        protocol: ``HTTP``, ``HTTPS``, ``GRPC``, ``HTTP2``, ``MONGO``, ``TCP`` or ``TLS`` (any case); empty for
            protocol sniffing.
        name: the port's name, unique in the ServiceEntry.
        target_port: the port on the endpoints when it differs from ``number``.
    """

    number: UInt32 = integer(required=True)
    protocol: str = string()
    name: str = string(required=True)
    target_port: UInt32 = integer()


@final
@attrs.frozen
class WorkloadLabelSelector:
    """``networking.istio.io`` WorkloadSelector: selects workloads (pods, WorkloadEntries) by ``labels``."""

    labels: FrozenDict[str, str] = mapping()


@final
@attrs.frozen
class ServiceEntry:
    """The spec of a ServiceEntry.

    Attributes:
        hosts: the service's host names; wildcards (``*.example.com``) allowed, ``*`` alone is not.
        addresses: virtual IPs or CIDR blocks of the service.
        ports: the service's ports.
        location: inside or outside the mesh.
        resolution: how proxies find the endpoints.
        endpoints: inline endpoints (exclusive with ``workload_selector``).
        workload_selector: selects the namespace's pods and WorkloadEntries as endpoints.
        export_to: the namespaces that see the service (``*``, ``.``, ``~`` or names).
        subject_alt_names: the identities the service's server certificates may carry.
    """

    hosts: tuple[str, ...] = repeated(required=True)
    addresses: tuple[str, ...] = repeated()
    ports: tuple[ServicePort, ...] = repeated()
    location: ServiceEntryLocation = enum_value(ServiceEntryLocation.MESH_EXTERNAL)
    resolution: ServiceEntryResolution = enum_value(ServiceEntryResolution.NONE)
    endpoints: tuple[WorkloadEntry, ...] = repeated()
    workload_selector: WorkloadLabelSelector | None = optional()
    export_to: tuple[str, ...] = repeated()
    subject_alt_names: tuple[str, ...] = repeated()


@final
@attrs.frozen
class ServiceEntryAddress:
    """``ServiceEntryAddress``: an address Istio allocated to one host of a ServiceEntry.

    Attributes:
        value: the IP address.
        host: the host it was allocated to.
    """

    value: str = string()
    host: str = string()


@final
@attrs.frozen
class ServiceEntryStatus:
    """``ServiceEntryStatus``: what istiod writes back into a ServiceEntry's ``status``.

    Attributes:
        conditions: Istio's conditions, as written.
        validation_messages: analyzer messages, as written.
        observed_generation: the generation the status describes (an integer or a string).
        addresses: the addresses allocated to hosts of a ServiceEntry without ``addresses``.
    """

    __mesh_allow_null__ = True

    conditions: tuple[JsonValue, ...] = repeated()
    validation_messages: tuple[JsonValue, ...] = repeated()
    observed_generation: JsonValue | None = optional()
    addresses: tuple[ServiceEntryAddress, ...] = repeated()


def service_entry_status(status: Any) -> ServiceEntryStatus:
    """The typed form of a ServiceEntry resource's ``status`` (``Resource.status``).

    Status is written by istiod and is never validated: fields that do not fit are left at their default.
    """
    status = thaw(status)
    if not isinstance(status, dict):
        return ServiceEntryStatus()
    known = {key: value for key, value in status.items() if key in _STATUS_FIELDS}
    return structure(ServiceEntryStatus, known, ("status",), [])


_STATUS_FIELDS = frozenset({"conditions", "validationMessages", "observedGeneration", "addresses"})


def validate_service_entry(spec: ServiceEntry, ctx: ValidationContext) -> None:
    """The CRD rules and Istio's webhook rules for a ServiceEntry (see ISTIO.md 1.2)."""
    check_service_entry(spec, ctx)


SERVICE_ENTRY = register_kind(
    KindSpec(
        kind="ServiceEntry",
        group="networking.istio.io",
        versions=("v1", "v1alpha3", "v1beta1"),
        spec_type=ServiceEntry,
        validate=validate_service_entry,
        plural="serviceentries",
        spec_required=True,
    )
)
