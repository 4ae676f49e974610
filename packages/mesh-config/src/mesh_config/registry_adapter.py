"""ServiceEntries and WorkloadEntries as a service registry (Istio's ``serviceentry`` controller).

The functions turn one resource into :mod:`mesh_model` values; :class:`ServiceEntryRegistry` holds a set of
resources, answers the :class:`~mesh_model.ServiceRegistry` protocol, and tells its subscribers what
changed when the set is replaced::

    registry = ServiceEntryRegistry()
    registry.subscribe(print)
    registry.update(load_paths(["config/"]).resources)   # prints the ChangeSet

Conversion follows istiod (``pilot/pkg/serviceregistry/serviceentry/conversion.go``):

* one :class:`~mesh_model.Service` per host, with every address of the entry (a ``/32`` or ``/128`` block
  becomes a plain address); short host names are resolved against the entry's namespace;
* a port's protocol is the declared one, or, when none is declared, the one its name implies;
* inline ``endpoints`` serve every port of the service, on the endpoint's port of the same name, else the
  port's ``targetPort``, else its number; a DNS entry without endpoints and selector gets one endpoint
  whose address is the host itself;
* a workload's TLS mode is the ``security.istio.io/tlsMode`` label, else ``istio`` when it has a service
  account; weight 0 means 1;
* a ``workloadSelector`` selects the namespace's WorkloadEntries by their labels (spec labels merged with
  the metadata labels, which win); an empty selector selects nothing; an entry whose address is a DNS name
  or a ``unix://`` path is selected only by DNS services;
* a WorkloadEntry with the annotation ``proxy.istio.io/health-checks-enabled: "true"`` is healthy only
  when its status has a true ``Healthy`` condition.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, final

import attrs

from mesh_config.meta import Resource
from mesh_config.networking.service_entry import ServiceEntry
from mesh_config.networking.workload_entry import WorkloadEntry
from mesh_model import (
    DEFAULT_DOMAIN_SUFFIX,
    ChangeHandler,
    ChangeSet,
    ConfigKey,
    Endpoint,
    HealthStatus,
    Kind,
    Labels,
    LabelSelector,
    Locality,
    MeshLocation,
    MeshModelError,
    Protocol,
    Resolution,
    Service,
    ServiceKey,
    ServicePort,
    Subscription,
    TlsMode,
    Workload,
    WorkloadKey,
    endpoints_key,
    protocol_from_port,
    resolve_short_name,
    service_key,
    workload_key,
)

__all__ = [
    "ServiceEntryRegistry",
    "service_entry_endpoints",
    "service_entry_services",
    "workload_entry_workload",
]

_log = logging.getLogger("mesh_config.registry_adapter")

TLS_MODE_LABEL = "security.istio.io/tlsMode"
LOCALITY_LABEL = "istio-locality"
HEALTH_CHECK_ANNOTATION = "proxy.istio.io/health-checks-enabled"
UNIX_PREFIX = "unix://"
_DNS_RESOLUTIONS = frozenset({Resolution.DNS, Resolution.DNS_ROUND_ROBIN})


def _address(text: str) -> str:
    """A ``/32`` (``/128``) block as its plain address; anything else as written."""
    if "/" not in text:
        return text
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return text
    if network.prefixlen == network.max_prefixlen:
        return str(network.network_address)
    return text


def _port(number: int, name: str, protocol: str, target_port: int) -> ServicePort:
    parsed = Protocol.lookup(protocol) if protocol else None
    return ServicePort(
        name=name.lower(),
        number=number,
        protocol=parsed or (protocol_from_port(number, name) if not protocol else Protocol.UNSUPPORTED),
        target_port=target_port or None,
    )


def service_entry_services(
    resource: Resource[ServiceEntry],
    *,
    default_export_to: Iterable[str] = ("*",),
    domain_suffix: str = DEFAULT_DOMAIN_SUFFIX,
) -> tuple[Service, ...]:
    """The services of a ServiceEntry, one per host.

    Args:
        resource: the ServiceEntry.
        default_export_to: the visibility when the entry sets no ``exportTo`` (MeshConfig's
            ``defaultServiceExportTo``).
        domain_suffix: the suffix short host names are resolved with.

    Raises:
        MeshModelError: a value breaks a rule of the model (an invalid host, say).
    """
    spec = resource.spec
    namespace = resource.namespace
    selector = spec.workload_selector
    ports = tuple(_port(p.number, p.name, p.protocol, p.target_port) for p in spec.ports)
    common: dict[str, Any] = {
        "namespace": namespace,
        "ports": ports,
        "addresses": tuple(dict.fromkeys(_address(address) for address in spec.addresses)),
        "resolution": Resolution(spec.resolution.value),
        "location": MeshLocation(spec.location.value),
        "labels": Labels(resource.metadata.labels),
        "export_to": frozenset(spec.export_to) or frozenset(default_export_to),
        "service_accounts": spec.subject_alt_names,
        "selector": LabelSelector(selector.labels) if selector is not None and selector.labels else None,
        "origin": resource.key,
    }
    services: dict[ServiceKey, Service] = {}
    for host in spec.hosts:
        service = Service(hostname=resolve_short_name(host, namespace, domain_suffix=domain_suffix), **common)
        services.setdefault(service.key, service)
    return tuple(services.values())


def _tls_mode(labels: Mapping[str, str], service_account: str) -> TlsMode:
    mode = labels.get(TLS_MODE_LABEL)
    if mode is not None:
        return TlsMode.ISTIO if mode == TlsMode.ISTIO.value else TlsMode.DISABLED
    return TlsMode.ISTIO if service_account else TlsMode.DISABLED


def _locality(entry: WorkloadEntry, labels: Mapping[str, str]) -> Locality:
    text = entry.locality or labels.get(LOCALITY_LABEL, "").replace(".", "/")
    return Locality.parse(text)


def _entry_endpoint(entry: WorkloadEntry, *, name: str, namespace: str, labels: Mapping[str, str]) -> Endpoint:
    return Endpoint(
        address=entry.address,
        ports={port.lower(): number for port, number in entry.ports.items()},
        labels=labels,
        service_account=entry.service_account,
        locality=_locality(entry, labels),
        weight=entry.weight or 1,
        tls_mode=_tls_mode(labels, entry.service_account),
        network=entry.network,
        workload_name=name,
        namespace=namespace,
    )


def _endpoints_of(
    resource: Resource[ServiceEntry], service: Service, problems: list[tuple[ConfigKey, str]] | None
) -> list[Endpoint]:
    """The endpoints of an entry for one of its services; bad ones raise, or are listed in ``problems``."""
    spec = resource.spec
    if spec.workload_selector is not None:
        return []
    # As in Istio, an entry's own endpoints name no workload and no namespace: their telemetry says so.
    if not spec.endpoints:
        if service.resolution in _DNS_RESOLUTIONS and not service.hostname.is_wildcard:
            return [Endpoint(address=service.hostname.value)]
        return []
    found = []
    for index, entry in enumerate(spec.endpoints):
        if not entry.address:
            continue
        try:
            found.append(_entry_endpoint(entry, name="", namespace="", labels=entry.labels))
        except MeshModelError as error:
            if problems is None:
                raise
            problems.append((resource.key, f"endpoints[{index}]: {error}"))
    return found


def service_entry_endpoints(resource: Resource[ServiceEntry], service: Service) -> tuple[Endpoint, ...]:
    """The endpoints a ServiceEntry itself gives one of its services (not those of selected workloads).

    Inline ``endpoints`` without an address (reached through a network gateway) are left out.

    Raises:
        MeshModelError: an endpoint breaks a rule of the model (an invalid locality, say).
    """
    return tuple(_endpoints_of(resource, service, None))


def _healthy(resource: Resource[Any]) -> bool:
    enabled = resource.metadata.annotations.get(HEALTH_CHECK_ANNOTATION, "").lower() in ("true", "1", "t")
    if not enabled:
        return True
    status = resource.status if isinstance(resource.status, Mapping) else {}
    for condition in status.get("conditions") or ():
        if isinstance(condition, Mapping) and condition.get("type") == "Healthy":
            return str(condition.get("status", "")).lower() == "true"
    return False


def workload_entry_workload(resource: Resource[WorkloadEntry]) -> Workload:
    """The workload a WorkloadEntry describes (its labels are the spec's merged with the metadata's).

    Raises:
        MeshModelError: a value breaks a rule of the model.
    """
    spec = resource.spec
    labels = {**spec.labels, **resource.metadata.labels}
    return Workload(
        name=resource.name,
        namespace=resource.namespace,
        addresses=(spec.address,) if spec.address else (),
        labels=labels,
        service_account=spec.service_account,
        ports={port.lower(): number for port, number in spec.ports.items()},
        locality=_locality(spec, labels),
        network=spec.network,
        tls_mode=_tls_mode(labels, spec.service_account),
        weight=spec.weight or 1,
    )


def _dns_only(address: str) -> bool:
    if address.startswith(UNIX_PREFIX):
        return True
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return True
    return False


def _selects(service: Service, workload: Workload) -> bool:
    selector = service.selector
    if selector is None or workload.namespace != service.namespace or not selector.matches(workload.labels):
        return False
    return not (workload.addresses and _dns_only(workload.addresses[0])) or service.resolution in _DNS_RESOLUTIONS


@final
@attrs.frozen
class _Snapshot:
    """What the registry holds after one update (immutable)."""

    services: Mapping[ServiceKey, Service] = attrs.field(factory=dict)
    endpoints: Mapping[ServiceKey, tuple[Endpoint, ...]] = attrs.field(factory=dict)
    workloads: Mapping[WorkloadKey, Workload] = attrs.field(factory=dict)
    problems: tuple[tuple[ConfigKey, str], ...] = ()


def _oldest_first(resources: Iterable[Resource[Any]]) -> list[Resource[Any]]:
    return sorted(resources, key=lambda r: (r.metadata.creation_timestamp, r.namespace, r.name))


def _build(resources: Iterable[Resource[Any]], default_export_to: frozenset[str], domain_suffix: str) -> _Snapshot:
    items = list(resources)
    problems: list[tuple[ConfigKey, str]] = []
    services: dict[ServiceKey, Service] = {}
    endpoints: dict[ServiceKey, list[Endpoint]] = {}
    for resource in _oldest_first(r for r in items if r.kind == Kind.SERVICE_ENTRY):
        try:
            defined = service_entry_services(resource, default_export_to=default_export_to, domain_suffix=domain_suffix)
        except MeshModelError as error:
            problems.append((resource.key, str(error)))
            continue
        for service in defined:
            services.setdefault(service.key, service)
            endpoints.setdefault(service.key, []).extend(_endpoints_of(resource, service, problems))
    workloads: dict[WorkloadKey, Workload] = {}
    healthy: dict[WorkloadKey, bool] = {}
    for resource in sorted((r for r in items if r.kind == Kind.WORKLOAD_ENTRY), key=lambda r: (r.namespace, r.name)):
        try:
            workload = workload_entry_workload(resource)
        except MeshModelError as error:
            problems.append((resource.key, str(error)))
            continue
        workloads[workload.key] = workload
        healthy[workload.key] = _healthy(resource)
    backs: dict[WorkloadKey, set[ServiceKey]] = {}
    for key, service in services.items():
        for workload_key_, workload in workloads.items():
            if not _selects(service, workload):
                continue
            backs.setdefault(workload_key_, set()).add(key)
            if workload.addresses:
                health = HealthStatus.HEALTHY if healthy[workload_key_] else HealthStatus.UNHEALTHY
                endpoints[key].append(attrs.evolve(workload.to_endpoint(), health=health))
    return _Snapshot(
        services=services,
        endpoints={key: tuple(found) for key, found in endpoints.items()},
        workloads={
            key: attrs.evolve(workload, services=frozenset(backs.get(key, ()))) for key, workload in workloads.items()
        },
        problems=tuple(problems),
    )


def _changes(old: _Snapshot, new: _Snapshot) -> ChangeSet:
    keys: set[ConfigKey] = set()
    for key in old.services.keys() | new.services.keys():
        if old.services.get(key) != new.services.get(key):
            keys.update((service_key(key), endpoints_key(key)))
        elif old.endpoints.get(key, ()) != new.endpoints.get(key, ()):
            keys.add(endpoints_key(key))
    for name in old.workloads.keys() | new.workloads.keys():
        if old.workloads.get(name) != new.workloads.get(name):
            keys.add(workload_key(name))
    return ChangeSet(keys)


@final
class _Subscription:
    """A handler's registration; :meth:`cancel` ends it (and does nothing the second time)."""

    def __init__(self, cancel: Callable[[_Subscription], None], handler: ChangeHandler) -> None:
        self._cancel = cancel
        self.handler = handler

    def cancel(self) -> None:
        """Stop calling the handler."""
        self._cancel(self)


@final
class ServiceEntryRegistry:
    """A :class:`~mesh_model.ServiceRegistry` over a set of ServiceEntry and WorkloadEntry resources.

    :meth:`update` replaces the whole set, rebuilds the registry's content and tells the subscribers the
    keys that changed: ``Service`` and ``Endpoints`` keys of services that appeared, went or changed,
    ``Endpoints`` keys of services whose endpoints alone changed, ``Workload`` keys of WorkloadEntries.
    Resources of other kinds are ignored.

    Where two ServiceEntries of a namespace define the same host, the older one defines the service (by
    creation time, then name) and the endpoints of both serve it. A resource (or an inline endpoint) that
    breaks a rule of the model, which validation lets through in rare cases, is left out and listed in
    :attr:`problems`.

    Args:
        resources: the initial resources.
        name: the registry's name.
        default_export_to: the visibility of entries without ``exportTo`` (MeshConfig's
            ``defaultServiceExportTo``).
        domain_suffix: the suffix short host names are resolved with.
    """

    def __init__(
        self,
        resources: Iterable[Resource[Any]] = (),
        *,
        name: str = "serviceentry",
        default_export_to: Iterable[str] = ("*",),
        domain_suffix: str = DEFAULT_DOMAIN_SUFFIX,
    ) -> None:
        self._name = name
        self._default_export_to = frozenset(default_export_to)
        self._domain_suffix = domain_suffix
        self._lock = threading.Lock()
        self._subscriptions: list[_Subscription] = []
        self._snapshot = _build(resources, self._default_export_to, domain_suffix)

    @property
    def name(self) -> str:
        """The registry's name."""
        return self._name

    @property
    def problems(self) -> tuple[tuple[ConfigKey, str], ...]:
        """The resources (or endpoints) left out of the last update, with the reason."""
        return self._snapshot.problems

    def services(self) -> tuple[Service, ...]:
        """Every service, sorted by key."""
        snapshot = self._snapshot
        return tuple(snapshot.services[key] for key in sorted(snapshot.services))

    def service(self, key: ServiceKey) -> Service | None:
        """The service with this key, or ``None``."""
        return self._snapshot.services.get(key)

    def endpoints(self, key: ServiceKey, port: int) -> tuple[Endpoint, ...]:
        """The endpoints serving port number ``port`` of the service.

        As in Istio, every endpoint of a ServiceEntry serves every port of it;
        :meth:`~mesh_model.Endpoint.target_port` tells on which port.
        """
        snapshot = self._snapshot
        service = snapshot.services.get(key)
        if service is None or service.port(port) is None:
            return ()
        return snapshot.endpoints.get(key, ())

    def workloads(self) -> tuple[Workload, ...]:
        """Every workload, sorted by key."""
        snapshot = self._snapshot
        return tuple(snapshot.workloads[key] for key in sorted(snapshot.workloads))

    def subscribe(self, handler: ChangeHandler) -> Subscription:
        """Call ``handler`` with the change set of every :meth:`update` that changes something."""
        subscription = _Subscription(self._unsubscribe, handler)
        with self._lock:
            self._subscriptions.append(subscription)
        return subscription

    def _unsubscribe(self, subscription: _Subscription) -> None:
        with self._lock:
            self._subscriptions = [kept for kept in self._subscriptions if kept is not subscription]

    def update(self, resources: Iterable[Resource[Any]]) -> ChangeSet:
        """Replace the resources; tell the subscribers what changed, and return it."""
        new = _build(resources, self._default_export_to, self._domain_suffix)
        with self._lock:
            old, self._snapshot = self._snapshot, new
            subscriptions = list(self._subscriptions)
        changes = _changes(old, new)
        if changes:
            for subscription in subscriptions:
                try:
                    subscription.handler(changes)
                except Exception:
                    _log.exception("change handler %r failed on %d changes", subscription.handler, len(changes))
        return changes
