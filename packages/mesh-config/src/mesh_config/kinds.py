"""The registry of config kinds: which apiVersion/kind pairs exist, their spec types and validators."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, final

import attrs

from mesh_config.validation import ValidationContext

__all__ = ["ISTIO_GROUPS", "KindSpec", "all_kinds", "kind_for", "register_kind"]

ISTIO_GROUPS = frozenset({"networking.istio.io", "security.istio.io", "telemetry.istio.io", "extensions.istio.io"})
"""The API groups whose objects mesh_config validates."""

Validator = Callable[[Any, ValidationContext], None]


@final
@attrs.frozen(kw_only=True)
class KindSpec:
    """One config kind.

    Attributes:
        kind: e.g. ``"VirtualService"``.
        group: e.g. ``"networking.istio.io"``.
        versions: the served versions, the storage version first (``("v1", "v1beta1", "v1alpha3")``).
        spec_type: the attrs class of the spec.
        validate: the semantic rules (Istio's webhook), called with the spec and a context at ``spec``.
        plural: the lower-case plural, as in ``kubectl get virtualservices``.
        cluster_scoped: True for kinds without a namespace.
        spec_required: the CRD requires ``spec`` (ServiceEntry, WorkloadEntry, WorkloadGroup, WasmPlugin,
            TrafficExtension).
    """

    kind: str
    group: str
    versions: tuple[str, ...]
    spec_type: type
    validate: Validator | None = None
    plural: str = ""
    cluster_scoped: bool = False
    spec_required: bool = False

    @property
    def api_version(self) -> str:
        """The storage apiVersion (``networking.istio.io/v1``)."""
        return f"{self.group}/{self.versions[0]}"

    @property
    def api_versions(self) -> tuple[str, ...]:
        """Every served apiVersion."""
        return tuple(f"{self.group}/{version}" for version in self.versions)


_KINDS: dict[tuple[str, str], KindSpec] = {}


def register_kind(spec: KindSpec) -> KindSpec:
    """Add a kind to the registry (replacing one of the same group and kind) and return it."""
    _KINDS[(spec.group, spec.kind)] = spec
    return spec


def kind_for(api_version: str, kind: str) -> KindSpec | None:
    """The kind registered for this apiVersion and kind, or ``None`` (also for an unserved version)."""
    group, _, version = api_version.rpartition("/")
    spec = _KINDS.get((group, kind))
    if spec is None or version not in spec.versions:
        return None
    return spec


def all_kinds() -> tuple[KindSpec, ...]:
    """Every registered kind, sorted by group and kind."""
    return tuple(_KINDS[key] for key in sorted(_KINDS))
