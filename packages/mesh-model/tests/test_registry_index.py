"""InMemoryRegistry keeps its answers and indexes its workloads: the answers stay those of a plain scan."""

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from mesh_model import Endpoint, InMemoryRegistry, Protocol, Service
from mesh_model.service import ServiceKey, ServicePort
from mesh_model.workload import Workload, WorkloadKey

NAMESPACES = ("a", "b")
NAMES = ("one", "two", "three")
PORTS = (ServicePort("http", 80, Protocol.HTTP), ServicePort("grpc", 90, Protocol.GRPC))
APPS = ("one", "two", "other")

namespaces = st.sampled_from(NAMESPACES)
names = st.sampled_from(NAMES)
apps = st.sampled_from(APPS)


def _service(name: str, namespace: str, app: str | None, ports: int) -> Service:
    return Service(
        f"{name}.{namespace}.svc.cluster.local", namespace, ports=PORTS[:ports], selector=app and {"app": app}
    )


def _expected(model: "_Model", key: ServiceKey, number: int) -> tuple[Endpoint, ...]:
    """The documented answer, worked out from scratch: explicit endpoints, then the backing workloads by key."""
    service = model.services.get(key)
    port = service.port(number) if service is not None else None
    if service is None or port is None:
        return ()
    found = list(model.explicit.get(key, ()))
    for _, workload in sorted(model.workloads.items()):
        selected = (
            service.selector is not None
            and workload.namespace == service.namespace
            and service.selector.matches(workload.labels)
        )
        if workload.addresses and (key in workload.services or selected):
            found.append(workload.to_endpoint())
    return tuple(endpoint for endpoint in found if endpoint.serves(port))


class _Model:
    def __init__(self) -> None:
        self.services: dict[ServiceKey, Service] = {}
        self.explicit: dict[ServiceKey, tuple[Endpoint, ...]] = {}
        self.workloads: dict[WorkloadKey, Workload] = {}


@settings(max_examples=60, stateful_step_count=30, deadline=None)
class RegistryAnswers(RuleBasedStateMachine):
    """Random changes; after each, every answer equals the one worked out from scratch."""

    def __init__(self) -> None:
        super().__init__()
        self.registry = InMemoryRegistry()
        self.model = _Model()

    @rule(name=names, namespace=namespaces, app=st.none() | apps, ports=st.integers(1, 2))
    def upsert_service(self, name: str, namespace: str, app: str | None, ports: int) -> None:
        service = _service(name, namespace, app, ports)
        self.registry.upsert_service(service)
        self.model.services[service.key] = service

    @rule(name=names, namespace=namespaces)
    def remove_service(self, name: str, namespace: str) -> None:
        key = ServiceKey(namespace, f"{name}.{namespace}.svc.cluster.local")
        self.registry.remove_service(key)
        self.model.services.pop(key, None)
        self.model.explicit.pop(key, None)

    @rule(name=names, namespace=namespaces, count=st.integers(0, 2), named=st.booleans())
    def set_endpoints(self, name: str, namespace: str, count: int, named: bool) -> None:
        key = ServiceKey(namespace, f"{name}.{namespace}.svc.cluster.local")
        if key not in self.model.services:
            return
        ports = {"http": 8080} if named else {}
        endpoints = tuple(Endpoint(f"10.0.{NAMES.index(name)}.{i}", ports=ports) for i in range(count))
        self.registry.set_endpoints(key, endpoints)
        self.model.explicit[key] = endpoints

    @rule(
        index=st.integers(0, 3),
        namespace=namespaces,
        app=apps,
        addressed=st.booleans(),
        backs=st.lists(st.tuples(names, namespaces), max_size=2),
    )
    def upsert_workload(self, index: int, namespace: str, app: str, addressed: bool, backs: list) -> None:
        workload = Workload(
            f"w{index}",
            namespace,
            addresses=[f"10.1.{index}.1"] if addressed else [],
            labels={"app": app},
            ports={"http": 9080},
            services=[ServiceKey(ns, f"{name}.{ns}.svc.cluster.local") for name, ns in backs],
        )
        self.registry.upsert_workload(workload)
        self.model.workloads[workload.key] = workload

    @rule(index=st.integers(0, 3), namespace=namespaces)
    def remove_workload(self, index: int, namespace: str) -> None:
        key = WorkloadKey(namespace, f"w{index}")
        self.registry.remove_workload(key)
        self.model.workloads.pop(key, None)

    @invariant()
    def answers_are_those_of_a_scan(self) -> None:
        for namespace in NAMESPACES:
            for name in NAMES:
                key = ServiceKey(namespace, f"{name}.{namespace}.svc.cluster.local")
                for port in (80, 90, 100):
                    assert self.registry.endpoints(key, port) == _expected(self.model, key, port)


TestRegistryAnswers = RegistryAnswers.TestCase


def test_an_answer_is_kept_until_a_change_that_concerns_it():
    registry = InMemoryRegistry()
    one = _service("one", "a", "one", 1)
    two = _service("two", "a", "two", 1)
    registry.upsert_service(one)
    registry.upsert_service(two)
    registry.set_endpoints(one.key, [Endpoint("10.0.0.1")])
    first = registry.endpoints(one.key, 80)
    assert registry.endpoints(one.key, 80) is first
    registry.set_endpoints(two.key, [Endpoint("10.0.0.2")])  # another service: the answer stays
    assert registry.endpoints(one.key, 80) is first
    registry.upsert_workload(Workload("w", "a", addresses=["10.1.0.1"], labels={"app": "one"}))
    assert [endpoint.address for endpoint in registry.endpoints(one.key, 80)] == ["10.0.0.1", "10.1.0.1"]
    registry.upsert_workload(Workload("w", "a", addresses=["10.1.0.1"], labels={"app": "two"}))  # moved away
    assert [endpoint.address for endpoint in registry.endpoints(one.key, 80)] == ["10.0.0.1"]
    assert [endpoint.address for endpoint in registry.endpoints(two.key, 80)] == ["10.0.0.2", "10.1.0.1"]
