"""The service graph: which services may call which, on networkx.

Nodes are services (:class:`~mesh_model.ServiceKey`) and workloads (:class:`~mesh_model.WorkloadKey`). A
"may call" edge goes from a service, or from a single workload, to a service it may call; each edge
remembers the config objects that justify it (a VirtualService route, a Sidecar egress host, ...).
Workloads are members of the services they back. Config translation feeds the graph; Sidecar scoping asks
for the dependencies of a workload, and analyzers ask for cycles and for services nothing reaches.

The graph is a mutable builder and is not thread-safe: build it, then query it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import final

import networkx as nx

from mesh_model.config_key import ConfigKey
from mesh_model.errors import InvalidValueError
from mesh_model.service import ServiceKey
from mesh_model.workload import WorkloadKey

__all__ = ["ServiceGraph"]

Node = ServiceKey | WorkloadKey


@final
class ServiceGraph:
    """A directed "may call" graph of services and workloads."""

    def __init__(self) -> None:
        self._graph: nx.DiGraph[Node] = nx.DiGraph()
        self._members: dict[WorkloadKey, set[ServiceKey]] = {}

    def add_service(self, service: ServiceKey) -> None:
        """Add a service with no edges (adding it again does nothing)."""
        _check(service, ServiceKey)
        self._graph.add_node(service)

    def remove_service(self, service: ServiceKey) -> None:
        """Remove a service and every edge to and from it (nothing happens if it is absent)."""
        if self._graph.has_node(service):
            self._graph.remove_node(service)
        for services in self._members.values():
            services.discard(service)

    def add_workload(self, workload: WorkloadKey, backs: Iterable[ServiceKey] = ()) -> None:
        """Add a workload as a member of the services it backs (adding to its memberships)."""
        _check(workload, WorkloadKey)
        services = set(backs)
        for service in services:
            _check(service, ServiceKey)
            self._graph.add_node(service)
        self._graph.add_node(workload)
        self._members.setdefault(workload, set()).update(services)

    def remove_workload(self, workload: WorkloadKey) -> None:
        """Remove a workload, its memberships and its own edges."""
        if self._graph.has_node(workload):
            self._graph.remove_node(workload)
        self._members.pop(workload, None)

    def add_call(self, source: Node, target: ServiceKey, *, reason: ConfigKey | None = None) -> None:
        """Record that ``source`` (a service, or one workload) may call ``target``, and why."""
        if not isinstance(source, ServiceKey | WorkloadKey):
            raise InvalidValueError(f"call source must be a ServiceKey or WorkloadKey, not {type(source).__name__}")
        _check(target, ServiceKey)
        if reason is not None:
            _check(reason, ConfigKey)
        if not self._graph.has_edge(source, target):
            self._graph.add_edge(source, target, reasons=frozenset())
        if reason is not None:
            # A new frozenset, never a set changed in place: to_networkx() copies share edge attributes.
            edge = self._graph.edges[source, target]
            edge["reasons"] = edge["reasons"] | {reason}

    def services(self) -> frozenset[ServiceKey]:
        """Every service in the graph."""
        return frozenset(node for node in self._graph.nodes if isinstance(node, ServiceKey))

    def calls(self, source: Node) -> frozenset[ServiceKey]:
        """The services ``source`` may call directly (its own edges only)."""
        if not self._graph.has_node(source):
            return frozenset()
        return frozenset(_services(self._graph.successors(source)))

    def callers(self, service: ServiceKey) -> frozenset[Node]:
        """The services and workloads that may call ``service`` directly."""
        if not self._graph.has_node(service):
            return frozenset()
        return frozenset(self._graph.predecessors(service))

    def reasons(self, source: Node, target: ServiceKey) -> frozenset[ConfigKey]:
        """The config objects that justify the edge from ``source`` to ``target`` (empty if no edge)."""
        if not self._graph.has_edge(source, target):
            return frozenset()
        return frozenset(self._graph.edges[source, target]["reasons"])

    def members(self, workload: WorkloadKey) -> frozenset[ServiceKey]:
        """The services ``workload`` backs."""
        return frozenset(self._members.get(workload, ()))

    def dependencies(self, workload: WorkloadKey, *, transitive: bool = False) -> frozenset[ServiceKey]:
        """The services ``workload`` may call: its own edges and those of the services it backs.

        With ``transitive=True``, also everything those services may call in turn. The workload's own
        services are not included unless they are called.
        """
        starts: list[Node] = [workload, *self._members.get(workload, ())]
        starts = [node for node in starts if self._graph.has_node(node)]
        found: set[ServiceKey] = set()
        for start in starts:
            found.update(_services(self._graph.successors(start)))
        if transitive:
            for service in list(found):
                found.update(_services(nx.descendants(self._graph, service)))
        return frozenset(found)

    def cycles(self, *, limit: int = 100) -> list[list[ServiceKey]]:
        """Up to ``limit`` call cycles between services, each rotated to start at its smallest key.

        A cycle of one service is a service that may call itself.
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise InvalidValueError(f"cycle limit must be an integer of 0 or more, not {limit!r}")
        services_only = self._graph.subgraph(self.services())
        found: list[list[ServiceKey]] = []
        for cycle in itertools.islice(nx.simple_cycles(services_only), limit):
            keys = list(_services(cycle))
            start = keys.index(min(keys))
            found.append(keys[start:] + keys[:start])
        return sorted(found)

    def unreachable(self, entry_points: Iterable[Node]) -> frozenset[ServiceKey]:
        """The services that no path of calls from ``entry_points`` (gateways, say) reaches.

        Paths follow call edges only: entry points that are services count as reached, but a workload entry
        point reaches only what it calls itself, not the services it is a member of (use
        :meth:`dependencies` for a workload's view through its services).
        """
        reached: set[Node] = set()
        for entry in entry_points:
            if self._graph.has_node(entry):
                reached.add(entry)
                reached.update(nx.descendants(self._graph, entry))
        return self.services() - frozenset(_services(reached))

    def to_networkx(self) -> nx.DiGraph[Node]:
        """A copy of the call graph, for queries this class does not offer."""
        return self._graph.copy()


def _services(nodes: Iterable[Node]) -> Iterable[ServiceKey]:
    return (node for node in nodes if isinstance(node, ServiceKey))


def _check(value: object, expected: type) -> None:
    if not isinstance(value, expected):
        raise InvalidValueError(f"expected a {expected.__name__}, not {type(value).__name__}")
