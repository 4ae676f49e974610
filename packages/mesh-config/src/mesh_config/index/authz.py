"""The AuthorizationPolicies and RequestAuthentications that apply to each workload."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, final

from mesh_config.index._common import Sourced, WorkloadRef, oldest_first, selector_labels, selects
from mesh_config.meta import Resource

__all__ = ["PolicyIndex"]

GATEWAY_NAME_LABEL = "gateway.networking.k8s.io/gateway-name"


@final
class PolicyIndex:
    """Answers "which policies of a kind apply to this workload", as Istio selects them.

    A policy applies to a workload when it is in the root namespace or in the workload's namespace and has
    no selector (the whole mesh, or the whole namespace) or a selector that matches the workload's labels
    (a selector in the root namespace matches workloads of every namespace, as in Istio). A policy with ``targetRef(s)``
    applies to the gateway it names (a workload labelled ``gateway.networking.k8s.io/gateway-name``), not
    through selectors. Answers are ordered root namespace first, then oldest first.
    """

    def __init__(self, kind: str, resources: Iterable[Resource[Any]], *, root_namespace: str = "istio-system") -> None:
        self.kind = kind
        self.root_namespace = root_namespace
        self._by_namespace: dict[str, list[Resource[Any]]] = {}
        for resource in oldest_first(r for r in resources if r.kind == kind):
            self._by_namespace.setdefault(resource.namespace, []).append(resource)

    def for_workload(self, workload: WorkloadRef) -> Sourced[tuple[Resource[Any], ...]]:
        """The policies that apply to ``workload``."""
        found: list[Resource[Any]] = []
        namespaces = [self.root_namespace]
        if workload.namespace != self.root_namespace:
            namespaces.append(workload.namespace)
        for namespace in namespaces:
            for resource in self._by_namespace.get(namespace, ()):
                if _applies(resource, workload, mesh_wide=namespace != workload.namespace):
                    found.append(resource)
        return Sourced(tuple(found), tuple(resource.key for resource in found))


def _target_refs(spec: Any) -> list[Any]:
    refs = list(getattr(spec, "target_refs", ()) or ())
    single = getattr(spec, "target_ref", None)
    if single is not None:
        refs.append(single)
    return refs


def _applies(resource: Resource[Any], workload: WorkloadRef, *, mesh_wide: bool) -> bool:
    refs = _target_refs(resource.spec)
    if refs:
        return not mesh_wide and _targets(refs, workload.labels)
    return selects(selector_labels(resource.spec) or None, workload.labels)


def _targets(refs: list[Any], labels: Mapping[str, str]) -> bool:
    gateway = labels.get(GATEWAY_NAME_LABEL)
    return any(ref.kind == "Gateway" and gateway is not None and ref.name == gateway for ref in refs)
