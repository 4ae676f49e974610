"""DestinationRules merged per host, looked up with Istio's precedence."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, final

import attrs

from mesh_config.index._common import Sourced, WorkloadRef, oldest_first, selector_labels, selects
from mesh_config.meta import Resource
from mesh_model import Hostname, InvalidHostError, resolve_short_name

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


_Rule = tuple[MergedDestinationRule, tuple[Resource[Any], ...]]
_NO_RULE: Sourced[MergedDestinationRule | None] = Sourced(None)


@final
class _Rules:
    """Rules by host: those of each plain host, and the wildcard ones, in the index's order."""

    __slots__ = ("exact", "wildcards")

    def __init__(self, rules: Iterable[_Rule]) -> None:
        self.exact: dict[str, list[_Rule]] = {}  # by the host's name: a string hashes faster than a Hostname
        self.wildcards: list[_Rule] = []
        for rule in rules:
            self.exact.setdefault(rule[0].host.value, []).append(rule)
            if rule[0].host.is_wildcard:
                self.wildcards.append(rule)

    def __bool__(self) -> bool:
        return bool(self.exact)


@final
class _NamespaceRules:
    """The rules of one namespace: those with a workload selector, and those without."""

    __slots__ = ("plain", "selecting")

    def __init__(self, rules: list[_Rule]) -> None:
        self.selecting = _Rules(rule for rule in rules if rule[0].workload_selector is not None)
        self.plain = _Rules(rule for rule in rules if rule[0].workload_selector is None)


def _most_specific(host: Hostname, rules: _Rules, eligible: Callable[[_Rule], bool]) -> _Rule | None:
    """The first eligible rule whose host covers ``host`` most specifically (see ``most_specific_match``).

    A rule for ``host`` itself is the most specific; otherwise only wildcard hosts can cover it.
    """
    for rule in rules.exact.get(host.value, ()):
        if eligible(rule):
            return rule
    best: _Rule | None = None
    for rule in rules.wildcards:
        candidate = rule[0].host
        if candidate == host or not candidate.covers(host) or not eligible(rule):
            continue
        if best is None or candidate.specificity() < best[0].host.specificity():
            best = rule
    return best


@final
class DestinationRuleIndex:
    """Answers "which DestinationRule applies when this workload calls this host".

    Rules of one namespace for the same host (and the same workload selector) are merged, oldest first. A
    client in namespace P calling a service of namespace S looks in P first (a rule with a workload selector
    that matches the client wins there), then in S, then in the root namespace, each time taking the rule
    whose host covers the called host most specifically and that is exported to P.

    The index is immutable: answers are kept (by host, client namespace and service namespace) for clients
    whose namespace has no rule with a workload selector, as the client's labels cannot change them.
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
        self._rules: dict[str, list[_Rule]] = {}
        self._by_namespace: dict[str, _NamespaceRules] = {}
        for (namespace, host, selector), group in grouped.items():
            merged = MergedDestinationRule(host, namespace, _merge(group), selector)
            self._rules.setdefault(namespace, []).append((merged, tuple(group)))
        for namespace, rules in self._rules.items():
            self._by_namespace[namespace] = _NamespaceRules(rules)
        self._answers: dict[tuple[str, str, str | None], Sourced[MergedDestinationRule | None]] = {}
        # Each rule as an answer, by the merged rule's id (the index holds every rule, so ids stay theirs).
        self._sourced: dict[int, Sourced[MergedDestinationRule | None]] = {}
        for rules in self._rules.values():
            for merged, merged_from in rules:
                self._sourced[id(merged)] = Sourced(merged, tuple(resource.key for resource in merged_from))
        self._exports: dict[tuple[int, str], bool] = {}  # by the id of a rule's first resource, and a namespace

    def lookup(
        self, host: Hostname, *, client: WorkloadRef, service_namespace: str | None = None
    ) -> Sourced[MergedDestinationRule | None]:
        """The rule that applies when ``client`` calls ``host`` (a service of ``service_namespace``)."""
        client_rules = self._by_namespace.get(client.namespace)
        if client_rules is not None and client_rules.selecting:
            return self._lookup(host, client, service_namespace)
        key = (host.value, client.namespace, service_namespace)
        found = self._answers.get(key)
        if found is None:
            found = self._answers.setdefault(key, self._lookup(host, client, service_namespace))
        return found

    def _lookup(
        self, host: Hostname, client: WorkloadRef, service_namespace: str | None
    ) -> Sourced[MergedDestinationRule | None]:
        namespaces = [client.namespace]
        for namespace in (service_namespace, self.root_namespace):
            if namespace and namespace not in namespaces:
                namespaces.append(namespace)
        for namespace in namespaces:
            found = self._best(namespace, host, client, local=namespace == client.namespace)
            if found is not None:
                return self._sourced[id(found[0])]
        return _NO_RULE

    def _best(self, namespace: str, host: Hostname, client: WorkloadRef, *, local: bool) -> _Rule | None:
        rules = self._by_namespace.get(namespace)
        if rules is None:
            return None
        # A rule with a matching workload selector beats a selector-less one for the same host.
        if local and rules.selecting:
            found = _most_specific(
                host, rules.selecting, lambda rule: selects(dict(rule[0].workload_selector or ()), client.labels)
            )
            if found is not None:
                return found
        return _most_specific(host, rules.plain, lambda rule: self._is_exported(rule[1][0], client.namespace))

    def _is_exported(self, resource: Resource[Any], namespace: str) -> bool:
        """``_exported_to``, answered once per rule and namespace."""
        key = (id(resource), namespace)
        found = self._exports.get(key)
        if found is None:
            found = self._exports[key] = _exported_to(resource, namespace)
        return found

    def all_rules(self) -> tuple[MergedDestinationRule, ...]:
        """Every merged rule, by namespace then host."""
        out = [merged for rules in self._rules.values() for merged, _ in rules]
        return tuple(sorted(out, key=lambda m: (m.namespace, m.host.value)))
