"""Messages shared by several kinds (Istio's ``istio.type.v1beta1``)."""

from __future__ import annotations

from typing import final

import attrs

from mesh_config.types import FrozenDict, UInt32, integer, mapping, string

__all__ = ["PolicyTargetReference", "PortSelector", "WorkloadSelector"]


@final
@attrs.frozen
class WorkloadSelector:
    """Selects the workloads a policy applies to by their labels (``selector`` / ``workloadSelector``)."""

    match_labels: FrozenDict[str, str] = mapping()


@final
@attrs.frozen
class PolicyTargetReference:
    """A policy's ``targetRef``: the Gateway, GatewayClass, Service or ServiceEntry it attaches to."""

    group: str = string()
    kind: str = string(required=True)
    name: str = string(required=True)
    namespace: str = string()


@final
@attrs.frozen
class PortSelector:
    """``networking.istio.io`` PortSelector: a port of a service, by number."""

    number: UInt32 = integer()
