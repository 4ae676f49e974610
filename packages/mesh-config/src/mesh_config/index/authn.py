"""The effective PeerAuthentication of each workload and port."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, final

import attrs

from mesh_config.index._common import Sourced, WorkloadRef, oldest_first, selector_labels, selects
from mesh_config.meta import Resource
from mesh_config.security.peer_authentication import MutualTlsMode, PeerAuthentication
from mesh_model import ConfigKey

__all__ = ["EffectiveMtls", "PeerAuthenticationIndex"]

_KIND = "PeerAuthentication"


@final
@attrs.frozen
class EffectiveMtls:
    """The mTLS modes a workload accepts.

    Attributes:
        mode: the mode for ports without a port-level setting (never UNSET: PERMISSIVE when nothing says
            otherwise).
        port_modes: modes for specific workload ports.
    """

    mode: MutualTlsMode = MutualTlsMode.PERMISSIVE
    port_modes: tuple[tuple[int, MutualTlsMode], ...] = ()

    def for_port(self, port: int) -> MutualTlsMode:
        """The mode for a workload port."""
        for number, mode in self.port_modes:
            if number == port:
                return mode
        return self.mode


@final
class PeerAuthenticationIndex:
    """Answers "which mTLS mode does this workload accept on this port", as Istio composes it.

    Three levels apply, each overriding the one above unless its mode is UNSET: the mesh (the oldest
    selector-less PeerAuthentication in the root namespace), the namespace (the oldest selector-less one in
    the workload's namespace) and the workload (the oldest one in its namespace whose selector matches), whose
    ``portLevelMtls`` then sets single ports. With nothing set, the mode is PERMISSIVE.
    """

    def __init__(self, resources: Iterable[Resource[Any]], *, root_namespace: str = "istio-system") -> None:
        self.root_namespace = root_namespace
        self._namespace_level: dict[str, Resource[Any]] = {}
        self._workload_level: dict[str, list[Resource[Any]]] = {}
        for resource in oldest_first(r for r in resources if r.kind == _KIND):
            if selector_labels(resource.spec) is None or not selector_labels(resource.spec):
                self._namespace_level.setdefault(resource.namespace, resource)
            else:
                self._workload_level.setdefault(resource.namespace, []).append(resource)

    def selects_workloads(self, namespace: str) -> bool:
        """Whether a PeerAuthentication with a selector is in ``namespace``: only then do labels change modes."""
        return namespace in self._workload_level

    def effective(self, workload: WorkloadRef) -> Sourced[EffectiveMtls]:
        """The effective modes of a workload, and the PeerAuthentications that set them (mesh first)."""
        mode = MutualTlsMode.PERMISSIVE
        sources: list[ConfigKey] = []
        levels = [self._namespace_level.get(self.root_namespace)]
        if workload.namespace != self.root_namespace:
            levels.append(self._namespace_level.get(workload.namespace))
        workload_policy = next(
            (
                resource
                for resource in self._workload_level.get(workload.namespace, ())
                if selects(selector_labels(resource.spec), workload.labels)
            ),
            None,
        )
        levels.append(workload_policy)
        for resource in levels:
            if resource is None:
                continue
            spec: PeerAuthentication = resource.spec
            if spec.mtls is not None and spec.mtls.mode is not MutualTlsMode.UNSET:
                mode = spec.mtls.mode
                sources.append(resource.key)
        port_modes: list[tuple[int, MutualTlsMode]] = []
        if workload_policy is not None:
            for port, setting in sorted(workload_policy.spec.port_level_mtls.items()):
                port_mode = mode if setting.mode is MutualTlsMode.UNSET else setting.mode
                port_modes.append((port, port_mode))
            if port_modes and workload_policy.key not in sources:
                sources.append(workload_policy.key)
        return Sourced(EffectiveMtls(mode, tuple(port_modes)), tuple(sources))
