"""DestinationRules merged per host, looked up with Istio's precedence."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, final

import attrs

from mesh_config.index._common import Sourced, WorkloadRef, oldest_first, selector_labels, selects
from mesh_config.meta import Resource
from mesh_model import Hostname, InvalidHostError, most_specific_match, resolve_short_name

__all__ = ["DestinationRuleIndex", "MergedDestinationRule"]

_KIND = "DestinationRule"


@final
@attrs.frozen
class MergedDestinationRule:
    """The DestinationRule that applies to a host: possibly several rules of one namespace merged.

    Attributes:
        host: the rule's host (may be a wildcard that covers the host asked for).
        namespace: the namespace of the rules.
        spec: the merged spec: the first rule's traffic policy (or the first that has one), and the subsets
            of every rule in order, a subset name seen earlier winning.
        workload_selector: the labels of the rules' workload selector, or ``None``.
    """

    host: Hostname
    namespace: str
    spec: Any
    workload_selector: tuple[tuple[str, str], ...] | None = None


def _exported_to(resource: Resource[Any], namespace: str) -> bool:
    export_to = tuple(resource.spec.export_to) or ("*",)
    return any(e == "*" or e == namespace or (e == "." and namespace == resource.namespace) for e in export_to)


def _merge(resources: list[Resource[Any]]) -> Any:
    first = resources[0].spec
    policy = first.traffic_policy
    subsets = list(first.subsets)
    names = {subset.name for subset in subsets}
    for resource in resources[1:]:
        spec = resource.spec
        if policy is None and spec.traffic_policy is not None:
            policy = spec.traffic_policy
        for subset in spec.subsets:
            if subset.name not in names:
                names.add(subset.name)
                subsets.append(subset)
    return attrs.evolve(first, traffic_policy=policy, subsets=tuple(subsets))


@final
class DestinationRuleIndex:
    """Answers "which DestinationRule applies when this workload calls this host".

    Rules of one namespace for the same host (and the same workload selector) are merged, oldest first. A
    client in namespace P calling a service of namespace S looks in P first (a rule with a workload selector
    that matches the client wins there), then in S, then in the root namespace, each time taking the rule
    whose host covers the called host most specifically and that is exported to P.
    """

    def __init__(self, resources: Iterable[Resource[Any]], *, root_namespace: str = "istio-system") -> None:
        self.root_namespace = root_namespace
        grouped: dict[tuple[str, Hostname, tuple[tuple[str, str], ...] | None], list[Resource[Any]]] = {}
        for resource in oldest_first(r for r in resources if r.kind == _KIND):
            try:
                host = resolve_short_name(resource.spec.host, resource.namespace)
            except InvalidHostError:
                continue
            labels = selector_labels(resource.spec, "workload_selector")
            selector = tuple(sorted(labels.items())) if labels else None
            grouped.setdefault((resource.namespace, host, selector), []).append(resource)
        self._rules: dict[str, list[tuple[MergedDestinationRule, tuple[Resource[Any], ...]]]] = {}
        for (namespace, host, selector), group in grouped.items():
            merged = MergedDestinationRule(host, namespace, _merge(group), selector)
            self._rules.setdefault(namespace, []).append((merged, tuple(group)))

    def lookup(
        self, host: Hostname, *, client: WorkloadRef, service_namespace: str | None = None
    ) -> Sourced[MergedDestinationRule | None]:
        """The rule that applies when ``client`` calls ``host`` (a service of ``service_namespace``)."""
        namespaces = [client.namespace]
        for namespace in (service_namespace, self.root_namespace):
            if namespace and namespace not in namespaces:
                namespaces.append(namespace)
        for namespace in namespaces:
            found = self._best(namespace, host, client, local=namespace == client.namespace)
            if found is not None:
                merged, group = found
                return Sourced(merged, tuple(resource.key for resource in group))
        return Sourced(None)

    def _best(
        self, namespace: str, host: Hostname, client: WorkloadRef, *, local: bool
    ) -> tuple[MergedDestinationRule, tuple[Resource[Any], ...]] | None:
        candidates = []
        for merged, group in self._rules.get(namespace, ()):
            if merged.workload_selector is not None:
                if not local or not selects(dict(merged.workload_selector), client.labels):
                    continue
            elif not _exported_to(group[0], client.namespace):
                continue
            candidates.append((merged, group))
        # A rule with a matching workload selector beats a selector-less one for the same host.
        for with_selector in (True, False):
            pool = [c for c in candidates if (c[0].workload_selector is not None) == with_selector]
            best_host = most_specific_match(host, [merged.host for merged, _ in pool])
            if best_host is not None:
                return next(c for c in pool if c[0].host == best_host)
        return None

    def all_rules(self) -> tuple[MergedDestinationRule, ...]:
        """Every merged rule, by namespace then host."""
        out = [merged for rules in self._rules.values() for merged, _ in rules]
        return tuple(sorted(out, key=lambda m: (m.namespace, m.host.value)))
