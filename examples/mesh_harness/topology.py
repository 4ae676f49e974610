"""What a mesh is made of: services, their versions, ports and namespaces, and which service calls which.

A :class:`Topology` is plain data, checked when it is made, so that a mistake is named before any process
starts::

    topology = Topology(
        services=(
            ServiceSpec("productpage", calls=("details", "reviews")),
            ServiceSpec("details"),
            ServiceSpec("reviews", versions=("v1", "v2", "v3"), calls=("ratings",), version_calls={"v1": ()}),
            ServiceSpec("ratings"),
        ),
        ingress="productpage",
    )

Every version of a service is one workload: an echo app, its mesh-agent and its Envoy sidecar. Each request a
workload serves calls the services in its ``calls`` through its sidecar (as bookinfo's apps do), passing on
the ``end-user`` and tracing headers. :func:`bookinfo` is Istio's bookinfo in this shape.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any, Final, final

import attrs

from mesh_harness.errors import TopologyError

__all__ = ["RESERVED_PORTS", "ServiceSpec", "Topology", "bookinfo"]

RESERVED_PORTS: Final = frozenset({15000, 15001, 15006, 15010, 15012, 15013, 15014, 15020, 15021, 15090})
"""Ports a service cannot use: a workload's Envoy admin, agent status, readiness and Prometheus ports, and
Istio's other well-known ports."""
_LABEL: Final = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z")
_VALUE: Final = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?\Z")


def _label(what: str, value: object) -> str:
    if not isinstance(value, str) or not _LABEL.match(value):
        raise TopologyError(f"{what} {value!r} is not a DNS-1123 label (lower-case letters, digits and '-')")
    return value


def _port(what: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
        raise TopologyError(f"{what} {value!r} is not a port number from 1 to 65535")
    if value in RESERVED_PORTS:
        raise TopologyError(f"{what} {value} is reserved for the mesh's own listeners: {sorted(RESERVED_PORTS)}")
    return value


def _names(what: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, tuple | list):
        raise TopologyError(f"{what} must be a tuple of names, not {value!r}")
    return tuple(value)


def _versions(value: object) -> tuple[str, ...]:
    return _names("versions", value)


def _calls(value: object) -> tuple[str, ...]:
    return _names("calls", value)


def _services(value: object) -> tuple[ServiceSpec, ...]:
    if isinstance(value, str) or not isinstance(value, tuple | list):
        raise TopologyError(f"services must be a tuple of ServiceSpec objects, not {value!r}")
    return tuple(value)


def _frozen_calls(value: Mapping[str, Any]) -> Mapping[str, tuple[str, ...]]:
    if not isinstance(value, Mapping):
        raise TopologyError(f"version_calls must map versions to tuples of service names, not {value!r}")
    return {version: _names(f"version_calls[{version!r}]", calls) for version, calls in value.items()}


@final
@attrs.frozen
class ServiceSpec:
    """One service of a topology and the workloads behind it (one per version).

    Attributes:
        name: the service name, a DNS-1123 label (its host is ``<name>.<namespace>.svc.cluster.local``).
        versions: one workload per version, labelled ``app=<name>, version=<version>``.
        namespace: its namespace.
        port: its HTTP port (the same on every address of its workloads; bookinfo's services all use 9080).
        calls: the services each request to it calls through its sidecar: ``name`` (in its namespace, else
            the one service of that name) or ``name.namespace``.
        version_calls: what some versions call instead of ``calls`` (bookinfo's reviews v1 calls nothing).
        service_account: the workloads' service account (the name of the service when empty).
    """

    name: str
    versions: tuple[str, ...] = attrs.field(default=("v1",), converter=_versions)
    namespace: str = "default"
    port: int = 9080
    calls: tuple[str, ...] = attrs.field(default=(), converter=_calls)
    version_calls: Mapping[str, tuple[str, ...]] = attrs.field(factory=dict, converter=_frozen_calls)
    service_account: str = ""

    def __attrs_post_init__(self) -> None:
        _label("service name", self.name)
        _label(f"namespace of service {self.name!r}", self.namespace)
        _port(f"port of service {self.name!r}", self.port)
        if not self.versions:
            raise TopologyError(f"service {self.name!r} has no versions: it needs at least one workload")
        for version in self.versions:
            if not isinstance(version, str) or not _VALUE.match(version) or len(version) > 40:
                raise TopologyError(f"version {version!r} of service {self.name!r} is not a short label value")
        if len(set(self.versions)) != len(self.versions):
            raise TopologyError(f"service {self.name!r} lists a version twice: {list(self.versions)}")
        unknown = sorted(set(self.version_calls) - set(self.versions))
        if unknown:
            raise TopologyError(f"version_calls of service {self.name!r} names versions it does not have: {unknown}")
        if self.service_account:
            _label(f"service account of service {self.name!r}", self.service_account)

    @property
    def host(self) -> str:
        """The service's host name: ``<name>.<namespace>.svc.cluster.local``."""
        return f"{self.name}.{self.namespace}.svc.cluster.local"

    @property
    def account(self) -> str:
        """The workloads' service account."""
        return self.service_account or self.name

    @property
    def key(self) -> str:
        """``<name>.<namespace>``: how a topology names the service."""
        return f"{self.name}.{self.namespace}"

    def calls_of(self, version: str) -> tuple[str, ...]:
        """The services a version calls on each request (as written: ``name`` or ``name.namespace``)."""
        return self.version_calls.get(version, self.calls)


@final
@attrs.frozen
class Topology:
    """The services of a mesh, who calls whom, and the service the ingress gateway sends traffic to.

    Attributes:
        services: the services, each with its versions.
        ingress: the service every request to the ingress gateway goes to (``name`` or ``name.namespace``);
            no ingress gateway when ``None``.
        ingress_port: the port the ingress gateway listens on (plain HTTP, any Host).

    Raises:
        TopologyError: two services with the same name and namespace, a call to an unknown or ambiguous
            service, or a malformed field.
    """

    services: tuple[ServiceSpec, ...] = attrs.field(converter=_services)
    ingress: str | None = None
    ingress_port: int = 8080

    def __attrs_post_init__(self) -> None:
        if not self.services:
            raise TopologyError("a topology needs at least one service")
        for service in self.services:
            if not isinstance(service, ServiceSpec):
                raise TopologyError(f"services must be ServiceSpec objects, not {service!r}")
        keys = [service.key for service in self.services]
        duplicates = sorted({key for key in keys if keys.count(key) > 1})
        if duplicates:
            raise TopologyError(f"services listed twice: {duplicates}")
        for service in self.services:
            for version in service.versions:
                targets = [self.resolve(call, service.namespace) for call in service.calls_of(version)]
                names = [target.name for target in targets]
                if len(set(names)) != len(names):
                    raise TopologyError(f"{service.name} {version} calls two services of the same name: {names}")
                if service in targets:
                    raise TopologyError(f"{service.name} {version} calls itself")
        if self.ingress is not None:
            self.resolve(self.ingress, "default")
            _port("ingress_port", self.ingress_port)

    def resolve(self, reference: str, namespace: str = "default") -> ServiceSpec:
        """The service ``reference`` names, seen from ``namespace``.

        Args:
            reference: ``name.namespace``, or ``name``: the service of that name in ``namespace``, else the only
                one of that name.
            namespace: where ``reference`` is read from.

        Raises:
            TopologyError: no service, or more than one, matches.
        """
        if not isinstance(reference, str):
            raise TopologyError(f"a service reference must be a string, not {reference!r}")
        name, _, explicit = reference.partition(".")
        matches = [service for service in self.services if service.name == name]
        if explicit:
            matches = [service for service in matches if service.namespace == explicit]
        elif len(matches) > 1:
            matches = [service for service in matches if service.namespace == namespace] or matches
        if len(matches) == 1:
            return matches[0]
        known = sorted(service.key for service in self.services)
        if not matches:
            raise TopologyError(f"no service {reference!r} in the topology (services: {', '.join(known)})")
        raise TopologyError(f"{reference!r} is ambiguous: say which of {[service.key for service in matches]}")

    def workloads(self) -> Iterator[tuple[ServiceSpec, str]]:
        """Every ``(service, version)`` pair, in the order the services and versions are listed."""
        for service in self.services:
            for version in service.versions:
                yield service, version

    @property
    def ports(self) -> tuple[int, ...]:
        """Every service port of the mesh, sorted: the outbound listeners each sidecar binds."""
        return tuple(sorted({service.port for service in self.services}))

    @property
    def namespaces(self) -> tuple[str, ...]:
        """The namespaces of the services, sorted."""
        return tuple(sorted({service.namespace for service in self.services}))


def bookinfo() -> Topology:
    """Istio's bookinfo: productpage calls details and reviews; reviews v2 and v3 call ratings; all on 9080.

    The ingress gateway sends every request to productpage. Each service runs as ``bookinfo-<name>``, as in
    Istio's sample.
    """
    return Topology(
        services=(
            ServiceSpec("productpage", calls=("details", "reviews"), service_account="bookinfo-productpage"),
            ServiceSpec("details", service_account="bookinfo-details"),
            ServiceSpec(
                "reviews",
                versions=("v1", "v2", "v3"),
                calls=("ratings",),
                version_calls={"v1": ()},
                service_account="bookinfo-reviews",
            ),
            ServiceSpec("ratings", service_account="bookinfo-ratings"),
        ),
        ingress="productpage",
    )
