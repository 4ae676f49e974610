import contextlib

import networkx as nx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mesh_model import ConfigKey, Hostname, InvalidValueError, ServiceGraph, ServiceKey, WorkloadKey


def key(name: str, namespace: str = "default") -> ServiceKey:
    return ServiceKey(namespace, Hostname(f"{name}.{namespace}.svc.cluster.local"))


A, B, C, D, E = (key(name) for name in "abcde")
GATEWAY = WorkloadKey("istio-system", "ingressgateway-1")
POD = WorkloadKey("default", "a-1")
VS = ConfigKey("VirtualService", "default", "a-routes")
SIDECAR = ConfigKey("Sidecar", "default", "default")


def test_add_call_records_edges_and_reasons():
    graph = ServiceGraph()
    graph.add_call(A, B, reason=VS)
    graph.add_call(A, B, reason=SIDECAR)
    graph.add_call(A, C)
    graph.add_call(GATEWAY, A, reason=VS)
    assert graph.calls(A) == frozenset({B, C})
    assert graph.calls(GATEWAY) == frozenset({A})
    assert graph.callers(A) == frozenset({GATEWAY})
    assert graph.callers(B) == frozenset({A})
    assert graph.reasons(A, B) == frozenset({VS, SIDECAR})
    assert graph.reasons(A, C) == frozenset()
    assert graph.reasons(B, A) == frozenset()
    assert graph.services() == frozenset({A, B, C})


def test_queries_of_unknown_nodes_are_empty():
    graph = ServiceGraph()
    assert graph.calls(A) == frozenset()
    assert graph.callers(A) == frozenset()
    assert graph.members(POD) == frozenset()
    assert graph.dependencies(POD) == frozenset()
    assert graph.dependencies(POD, transitive=True) == frozenset()
    assert graph.services() == frozenset()


def test_add_service_and_add_workload():
    graph = ServiceGraph()
    graph.add_service(D)
    graph.add_service(D)
    graph.add_workload(POD, backs=[A])
    graph.add_workload(POD, backs=[B])
    assert graph.services() == frozenset({A, B, D})
    assert graph.members(POD) == frozenset({A, B})
    assert graph.calls(D) == frozenset()


def chain() -> ServiceGraph:
    """POD backs A; A calls B; POD itself calls C; B calls D; D calls E; nothing calls A except the gateway."""
    graph = ServiceGraph()
    graph.add_workload(POD, backs=[A])
    graph.add_call(A, B)
    graph.add_call(POD, C)
    graph.add_call(B, D)
    graph.add_call(D, E)
    graph.add_call(GATEWAY, A)
    return graph


def test_dependencies_are_own_edges_and_the_edges_of_backed_services():
    graph = chain()
    assert graph.dependencies(POD) == frozenset({B, C})
    assert graph.dependencies(POD, transitive=True) == frozenset({B, C, D, E})
    assert graph.dependencies(GATEWAY) == frozenset({A})
    assert graph.dependencies(GATEWAY, transitive=True) == frozenset({A, B, D, E})


def test_a_workload_s_own_service_is_a_dependency_only_when_called():
    graph = chain()
    assert A not in graph.dependencies(POD, transitive=True)
    graph.add_call(E, A)
    assert A in graph.dependencies(POD, transitive=True)
    assert A not in graph.dependencies(POD)


def test_cycles_are_rotated_to_their_smallest_key_and_sorted():
    graph = ServiceGraph()
    graph.add_call(C, A)
    graph.add_call(A, B)
    graph.add_call(B, C)
    graph.add_call(E, D)
    graph.add_call(D, E)
    graph.add_call(POD, A)
    assert graph.cycles() == [[A, B, C], [D, E]]


def test_a_service_that_calls_itself_is_a_cycle():
    graph = ServiceGraph()
    graph.add_call(B, B)
    graph.add_call(A, B)
    assert graph.cycles() == [[B]]
    assert graph.calls(B) == frozenset({B})


def test_cycle_limit():
    graph = ServiceGraph()
    for service in (A, B, C):
        graph.add_call(service, service)
    assert len(graph.cycles()) == 3
    assert len(graph.cycles(limit=2)) == 2
    assert graph.cycles(limit=0) == []
    for bad in (-1, 1.5, "2", True):
        with pytest.raises(InvalidValueError, match="cycle limit"):
            graph.cycles(limit=bad)


def test_no_cycles_in_a_chain():
    assert chain().cycles() == []


def test_unreachable_from_entry_points():
    graph = chain()
    graph.add_service(key("orphan"))
    graph.add_call(key("lonely"), E)
    assert graph.unreachable([GATEWAY]) == frozenset({C, key("orphan"), key("lonely")})
    assert graph.unreachable([B]) == frozenset({A, C, key("orphan"), key("lonely")})
    assert graph.unreachable([POD, key("orphan"), key("missing")]) == frozenset({A, B, D, E, key("lonely")})
    assert graph.unreachable([]) == graph.services()


def test_remove_service_drops_its_edges_and_memberships():
    graph = chain()
    graph.add_call(POD, A)
    graph.remove_service(A)
    assert A not in graph.services()
    assert graph.calls(GATEWAY) == frozenset()
    assert graph.calls(POD) == frozenset({C})
    assert graph.members(POD) == frozenset()
    assert graph.dependencies(POD) == frozenset({C})
    assert graph.reasons(A, B) == frozenset()
    graph.remove_service(A)
    graph.remove_service(key("never-there"))


def test_remove_workload_drops_its_edges_and_memberships():
    graph = chain()
    graph.remove_workload(POD)
    assert graph.members(POD) == frozenset()
    assert graph.dependencies(POD) == frozenset()
    assert graph.callers(C) == frozenset()
    assert graph.services() == frozenset({A, B, C, D, E}), "services stay when a workload goes"
    graph.remove_workload(POD)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda g: g.add_service("a.default.svc.cluster.local"), "expected a ServiceKey, not str"),
        (lambda g: g.add_service(POD), "expected a ServiceKey, not WorkloadKey"),
        (lambda g: g.add_workload(A), "expected a WorkloadKey, not ServiceKey"),
        (lambda g: g.add_workload(POD, backs=["a"]), "expected a ServiceKey, not str"),
        (lambda g: g.add_call("a", B), "call source must be a ServiceKey or WorkloadKey, not str"),
        (lambda g: g.add_call(A, POD), "expected a ServiceKey, not WorkloadKey"),
        (lambda g: g.add_call(A, B, reason="VirtualService a"), "expected a ConfigKey, not str"),
    ],
)
def test_type_errors_raise_invalid_value_error(call, message):
    graph = ServiceGraph()
    with pytest.raises(InvalidValueError, match=message):
        call(graph)
    assert graph.services() == frozenset()
    assert graph.to_networkx().number_of_nodes() == 0


def test_to_networkx_returns_a_copy():
    graph = ServiceGraph()
    graph.add_call(A, B, reason=VS)
    copy = graph.to_networkx()
    assert isinstance(copy, nx.DiGraph)
    assert set(copy.edges) == {(A, B)}
    assert copy.edges[A, B]["reasons"] == {VS}
    copy.add_edge(B, C)
    copy.remove_edge(A, B)
    assert graph.calls(A) == frozenset({B})
    assert graph.calls(B) == frozenset()
    assert C not in graph.services()
    reasons = graph.to_networkx().edges[A, B]["reasons"]
    with contextlib.suppress(AttributeError):  # an immutable frozenset cannot leak; a shared set would
        reasons.add(SIDECAR)
    graph.add_call(A, B)
    assert graph.reasons(A, B) == frozenset({VS})


_services = st.sampled_from([key(name) for name in "abcdef"])


@given(st.lists(st.tuples(_services, _services), max_size=15))
def test_cycles_are_real_cycles_of_the_graph(edges):
    graph = ServiceGraph()
    for source, target in edges:
        graph.add_call(source, target)
    cycles = graph.cycles()
    assert cycles == sorted(cycles)
    for cycle in cycles:
        assert cycle[0] == min(cycle)
        assert len(set(cycle)) == len(cycle)
        for source, target in zip(cycle, cycle[1:] + cycle[:1], strict=True):
            assert target in graph.calls(source)
    has_cycle = not nx.is_directed_acyclic_graph(nx.DiGraph(edges))
    assert bool(cycles) == has_cycle


@given(st.lists(st.tuples(_services, _services), max_size=15), st.lists(_services, max_size=3))
def test_unreachable_is_everything_not_reached(edges, entries):
    graph = ServiceGraph()
    for source, target in edges:
        graph.add_call(source, target)
    reached = {entry for entry in entries if entry in graph.services()}
    frontier = list(reached)
    while frontier:
        for target in graph.calls(frontier.pop()):
            if target not in reached:
                reached.add(target)
                frontier.append(target)
    assert graph.unreachable(entries) == graph.services() - reached
