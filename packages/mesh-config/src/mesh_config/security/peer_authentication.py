"""PeerAuthentication (``security.istio.io``): which mutual TLS a workload accepts."""

from __future__ import annotations

import enum
from typing import final

import attrs

from mesh_config.common import WorkloadSelector
from mesh_config.kinds import KindSpec, register_kind
from mesh_config.security._policy import check_policy_selector
from mesh_config.types import FrozenDict, UInt32, enum_value, mapping, optional
from mesh_config.validation import ValidationContext

__all__ = ["PEER_AUTHENTICATION", "MutualTls", "MutualTlsMode", "PeerAuthentication", "validate_peer_authentication"]


class MutualTlsMode(enum.Enum):
    """``PeerAuthentication.MutualTLS.Mode``."""

    UNSET = "UNSET"
    """Inherit from the parent (namespace, then mesh); PERMISSIVE at the top."""
    DISABLE = "DISABLE"
    """Plain text only."""
    PERMISSIVE = "PERMISSIVE"
    """mTLS and plain text."""
    STRICT = "STRICT"
    """mTLS only."""


@final
@attrs.frozen
class MutualTls:
    """``PeerAuthentication.MutualTLS``."""

    mode: MutualTlsMode = enum_value(MutualTlsMode.UNSET)


@final
@attrs.frozen
class PeerAuthentication:
    """The spec of a PeerAuthentication.

    Attributes:
        selector: the workloads it applies to; none means the whole namespace (the whole mesh in the root
            namespace).
        mtls: the mode for every port.
        port_level_mtls: modes per workload port number, overriding ``mtls``.
    """

    selector: WorkloadSelector | None = optional()
    mtls: MutualTls | None = optional()
    port_level_mtls: FrozenDict[UInt32, MutualTls] = mapping()


def validate_peer_authentication(spec: PeerAuthentication, ctx: ValidationContext) -> None:
    """The CRD rules and Istio's webhook rules for PeerAuthentication."""
    check_policy_selector(ctx, spec.selector)
    if ctx.has("portLevelMtls"):
        if not spec.port_level_mtls:
            ctx.min_properties(1, "portLevelMtls")
        if spec.selector is None or not spec.selector.match_labels:
            ctx.rule("portLevelMtls requires selector")
    if any(not 0 < port <= 65535 for port in spec.port_level_mtls):
        ctx.rule("port must be between 1-65535", "portLevelMtls")


PEER_AUTHENTICATION = register_kind(
    KindSpec(
        kind="PeerAuthentication",
        group="security.istio.io",
        versions=("v1", "v1beta1"),
        spec_type=PeerAuthentication,
        validate=validate_peer_authentication,
        plural="peerauthentications",
    )
)
