"""The indexes of a push: immutable answers that xDS generation reads, each recording its sources.

Each index is built from config resources (and the service registry where it needs services), answers one
family of questions, and says which config objects fed each answer (:class:`Sourced`). A
:class:`PushContext` holds one of each and rebuilds only those whose kinds changed.
"""

from mesh_config.index._common import Sourced, WorkloadRef
from mesh_config.index.authn import EffectiveMtls, PeerAuthenticationIndex
from mesh_config.index.authz import PolicyIndex
from mesh_config.index.destination_rules import DestinationRuleIndex, MergedDestinationRule
from mesh_config.index.push_context import PushContext
from mesh_config.index.services import ServiceIndex
from mesh_config.index.sidecar_scope import EgressHost, SidecarIndex, SidecarScope
from mesh_config.index.virtual_services import (
    MESH_GATEWAY,
    ResolvedVirtualService,
    VirtualServiceIndex,
    resolve_gateway_name,
)

__all__ = [
    "MESH_GATEWAY",
    "DestinationRuleIndex",
    "EffectiveMtls",
    "EgressHost",
    "MergedDestinationRule",
    "PeerAuthenticationIndex",
    "PolicyIndex",
    "PushContext",
    "ResolvedVirtualService",
    "ServiceIndex",
    "SidecarIndex",
    "SidecarScope",
    "Sourced",
    "VirtualServiceIndex",
    "WorkloadRef",
    "resolve_gateway_name",
]
