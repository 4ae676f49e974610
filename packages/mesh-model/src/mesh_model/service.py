"""Services and service ports: what clients in the mesh can call."""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from typing import final

import attrs

from mesh_model._address import check_ip_or_cidr, check_port
from mesh_model._convert import to_frozenset, to_hostname, to_labels, to_selector, to_tuple
from mesh_model._text import describe
from mesh_model.config_key import ConfigKey
from mesh_model.errors import InvalidServiceError
from mesh_model.host import Hostname
from mesh_model.labels import Labels, LabelSelector
from mesh_model.protocol import Protocol

__all__ = ["MeshLocation", "Resolution", "Service", "ServiceKey", "ServicePort"]

_PORT_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")


class Resolution(enum.Enum):
    """How a proxy finds the endpoints of a service (Istio's ServiceEntry ``resolution``)."""

    NONE = "NONE"
    """Pass traffic to the address the client asked for."""
    STATIC = "STATIC"
    """Use the endpoints the registry lists (Kubernetes services, STATIC ServiceEntries)."""
    DNS = "DNS"
    """Resolve the endpoint host names with DNS; use every address returned."""
    DNS_ROUND_ROBIN = "DNS_ROUND_ROBIN"
    """Resolve with DNS; use the first address returned."""
    DYNAMIC_DNS = "DYNAMIC_DNS"
    """Resolve each request's host with DNS (wildcard ServiceEntries)."""


class MeshLocation(enum.Enum):
    """Whether a service is part of the mesh (its workloads have sidecars) or outside it."""

    MESH_INTERNAL = "MESH_INTERNAL"
    MESH_EXTERNAL = "MESH_EXTERNAL"


def check_namespace(what: str, namespace: object) -> None:
    """Raise InvalidServiceError unless ``namespace`` is a DNS-1123 label."""
    if not isinstance(namespace, str):
        raise InvalidServiceError(f"{what} must be a string, not {describe(namespace)}")
    if not namespace:
        raise InvalidServiceError(f"{what} is empty")
    if len(namespace) > 63 or not _NAMESPACE.match(namespace):
        raise InvalidServiceError(f"{what} {describe(namespace)} must be at most 63 lower-case letters, digits or '-'")


@final
@attrs.frozen
class ServicePort:
    """A port of a service.

    Attributes:
        name: the port name (``"http-web"``), empty for an unnamed port.
        number: the port clients call, 1..65535.
        protocol: how traffic on it is treated.
        target_port: the port the workloads listen on, when it differs and no endpoint says otherwise.
    """

    name: str
    number: int
    protocol: Protocol = Protocol.UNSUPPORTED
    target_port: int | None = None

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise InvalidServiceError(f"port name must be a string, not {type(self.name).__name__}")
        if self.name and (len(self.name) > 63 or not _PORT_NAME.match(self.name)):
            raise InvalidServiceError(
                f"port name {describe(self.name)} must be at most 63 lower-case letters, digits or '-'"
            )
        check_port(f"port {self.name or '(unnamed)'} number", self.number)
        if self.target_port is not None:
            check_port(f"port {self.name or self.number} target port", self.target_port)
        if not isinstance(self.protocol, Protocol):
            raise InvalidServiceError(f"port {describe(self.name)}: protocol must be a Protocol")


@final
@attrs.frozen(order=True, cache_hash=True)
class ServiceKey:
    """What identifies a service in a registry: its namespace and host name.

    Attributes:
        namespace: the namespace that defines the service.
        hostname: the service's host name.
    """

    namespace: str
    hostname: Hostname = attrs.field(converter=to_hostname, order=lambda host: host.value)

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.namespace, str):
            raise InvalidServiceError(f"service key namespace must be a string, not {describe(self.namespace)}")

    def __str__(self) -> str:
        return f"{self.namespace}/{self.hostname}"


def _to_ports(value: Iterable[ServicePort] | ServicePort) -> tuple[ServicePort, ...]:
    if isinstance(value, ServicePort):
        return (value,)
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise InvalidServiceError(f"ports must be an iterable of ServicePort values, not {describe(value)}")
    return tuple(value)


@final
@attrs.frozen
class Service:
    """A service: a host name and ports that clients call, backed by endpoints.

    Attributes:
        hostname: the service's name, e.g. ``reviews.default.svc.cluster.local``; a wildcard for
            ServiceEntries such as ``*.example.com``.
        namespace: the namespace that defines the service.
        ports: the service's ports; numbers and non-empty names are unique.
        addresses: virtual IPs (or CIDR blocks) that clients may call instead of the host name.
        resolution: how proxies find the endpoints.
        location: inside the mesh or outside it.
        labels: the service's own labels.
        export_to: the namespaces that may see the service: ``"*"`` (all), ``"."`` (its own), ``"~"``
            (none), or namespace names.
        service_accounts: the identities (SPIFFE ids) the service's workloads may present.
        selector: when set, the workloads of the namespace that this selector matches back the service.
        origin: the config object the service was made from, if any (a ServiceEntry, say).
    """

    hostname: Hostname = attrs.field(converter=to_hostname)
    namespace: str
    ports: tuple[ServicePort, ...] = attrs.field(default=(), converter=_to_ports)
    addresses: tuple[str, ...] = attrs.field(default=(), converter=to_tuple)
    resolution: Resolution = Resolution.STATIC
    location: MeshLocation = MeshLocation.MESH_INTERNAL
    labels: Labels = attrs.field(factory=Labels, converter=to_labels)
    export_to: frozenset[str] = attrs.field(default=frozenset({"*"}), converter=to_frozenset)
    service_accounts: tuple[str, ...] = attrs.field(default=(), converter=to_tuple)
    selector: LabelSelector | None = attrs.field(default=None, converter=to_selector)
    origin: ConfigKey | None = None
    _key: ServiceKey = attrs.field(init=False, eq=False, repr=False)
    """The registry key, made once: generators ask for it for every cluster and load assignment."""

    def __attrs_post_init__(self) -> None:
        where = f"service {self.hostname}"
        check_namespace(f"{where}: namespace", self.namespace)
        names: set[str] = set()
        numbers: set[int] = set()
        for port in self.ports:
            if not isinstance(port, ServicePort):
                raise InvalidServiceError(f"{where}: ports must be ServicePort values, not {describe(port)}")
            if port.number in numbers:
                raise InvalidServiceError(f"{where}: port number {port.number} is declared twice")
            if port.name and port.name in names:
                raise InvalidServiceError(f"{where}: port name {port.name!r} is declared twice")
            numbers.add(port.number)
            names.add(port.name)
        for address in self.addresses:
            check_ip_or_cidr(f"{where}: address", address)
        if not isinstance(self.resolution, Resolution):
            raise InvalidServiceError(f"{where}: resolution {describe(self.resolution)} is not a Resolution")
        if not isinstance(self.location, MeshLocation):
            raise InvalidServiceError(f"{where}: location {describe(self.location)} is not a MeshLocation")
        for entry in self.export_to:
            if entry not in ("*", ".", "~"):
                check_namespace(f"{where}: exportTo entry", entry)
        object.__setattr__(self, "_key", ServiceKey(self.namespace, self.hostname))

    @property
    def key(self) -> ServiceKey:
        """The service's registry key."""
        return self._key

    def port(self, port: int | str) -> ServicePort | None:
        """The port with this number (an int) or name (a str), or ``None``."""
        for candidate in self.ports:
            found = candidate.number == port if isinstance(port, int) else candidate.name == port
            if found:
                return candidate
        return None

    def is_visible_from(self, namespace: str) -> bool:
        """True when ``export_to`` lets clients in ``namespace`` see the service."""
        return any(
            entry == "*"
            or (entry == "." and namespace == self.namespace)
            or (entry not in (".", "~") and entry == namespace)
            for entry in self.export_to
        )
