"""A service registry written as one YAML file: services and the workloads that back them.

For meshes without Kubernetes, the services and workloads that a Kubernetes API server would list can be
written in one file and loaded into a :class:`~mesh_model.InMemoryRegistry` (or followed as it changes, with
:class:`~mesh_config.FileRegistry`)::

    services:
    - hostname: reviews                # a short name is <name>.<namespace>.svc.cluster.local
      namespace: default               # "default" when left out
      ports:
      - {name: http, number: 9080, protocol: HTTP, targetPort: 9080}
      addresses: [240.240.0.10]        # virtual IPs, optional
      labels: {app: reviews}
      selector: {app: reviews}         # the workloads that back it; the labels when left out
      serviceAccounts: [spiffe://cluster.local/ns/default/sa/bookinfo-reviews]
    workloads:
    - name: reviews-v1
      namespace: default
      address: 127.0.10.1
      labels: {app: reviews, version: v1}
      serviceAccount: bookinfo-reviews
      locality: us-east/zone-a
      ports: {http: 9080}              # named ports, when the workload listens elsewhere than targetPort

A workload is an endpoint of every service of its namespace whose selector its labels match (a service
with neither ``selector`` nor ``labels`` has no workloads). A port's ``protocol`` defaults to what its name
says, as for Kubernetes services (``http-web`` is HTTP). Workloads are sidecar-injected (Istio mTLS).

:func:`load_registry_file` reports every problem as a :class:`~mesh_config.Diagnostic` with its line and
field, like the rest of mesh_config: unknown fields, wrong types, bad values, and two entries with the same
key. An entry with an error is left out of the result; its neighbours are kept.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Mapping
from typing import Any, Final, final

import attrs

from mesh_config._outcome import Outcome
from mesh_config._yaml import YamlProblem, parse_single_document
from mesh_config.diagnostics import Diagnostic, FieldPath, Position, Severity, format_path
from mesh_config.limits import LoadLimits
from mesh_model import (
    InMemoryRegistry,
    Labels,
    LabelSelector,
    Locality,
    MeshModelError,
    Protocol,
    Service,
    ServicePort,
    Workload,
    protocol_from_port,
    resolve_short_name,
)

__all__ = ["RegistryFileResult", "load_registry_file", "load_registry_text"]

_SERVICE_FIELDS: Final = frozenset(
    {"hostname", "namespace", "ports", "addresses", "labels", "selector", "serviceAccounts"}
)
_PORT_FIELDS: Final = frozenset({"name", "number", "protocol", "targetPort"})
_WORKLOAD_FIELDS: Final = frozenset(
    {"name", "namespace", "address", "labels", "serviceAccount", "locality", "ports", "weight"}
)
_TOP_FIELDS: Final = frozenset({"services", "workloads"})
_DEFAULT_NAMESPACE: Final = "default"


@final
@attrs.frozen
class RegistryFileResult(Outcome):
    """What a registry file holds.

    Attributes:
        services: the valid services, in the order written.
        workloads: the valid workloads, in the order written.
        diagnostics: every problem found, with its position and field path.
    """

    services: tuple[Service, ...] = ()
    workloads: tuple[Workload, ...] = ()
    diagnostics: tuple[Diagnostic, ...] = ()

    def to_registry(self, name: str = "file") -> InMemoryRegistry:
        """A new in-memory registry holding the services and workloads."""
        registry = InMemoryRegistry(name)
        with registry.batch():
            for service in self.services:
                registry.upsert_service(service)
            for workload in self.workloads:
                registry.upsert_workload(workload)
        return registry


class _Invalid(Exception):  # noqa: N818 (an internal signal: the entry is reported and skipped)
    """An entry cannot be used; the problem is already recorded."""


@final
class _Reader:
    """Reads one document's entries, recording each problem with its position and field path."""

    def __init__(self, source: str, locate: Callable[[FieldPath], Position]) -> None:
        self.source = source
        self.locate = locate
        self.diagnostics: list[Diagnostic] = []
        self.kind = ""
        self.who = ("", "")

    def problem(self, path: FieldPath, message: str) -> _Invalid:
        namespace, name = self.who
        self.diagnostics.append(
            Diagnostic(Severity.ERROR, message, self.locate(path), self.kind, namespace, name, path)
        )
        return _Invalid()

    def mapping(self, value: object, path: FieldPath, fields: frozenset[str] | None = None) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.problem(path, f"must be a map, not {_type(value)}")
        if fields is not None:
            unknown = sorted(str(key) for key in value if key not in fields)
            if unknown:
                raise self.problem(
                    (*path, unknown[0]), f"unknown field {unknown[0]!r}; expected one of {', '.join(sorted(fields))}"
                )
        return value

    def items(self, value: object, path: FieldPath) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.problem(path, f"must be a list, not {_type(value)}")
        return value

    def text(self, entry: Mapping[str, Any], key: str, path: FieldPath, default: str | None = None) -> str:
        value = entry.get(key, default)
        if value is None:
            raise self.problem((*path, key), "is required")
        if not isinstance(value, str):
            raise self.problem((*path, key), f"must be a string, not {_type(value)}")
        return value

    def number(self, entry: Mapping[str, Any], key: str, path: FieldPath, *, required: bool) -> int | None:
        value = entry.get(key)
        if value is None:
            if required:
                raise self.problem((*path, key), "is required")
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.problem((*path, key), f"must be an integer, not {_type(value)}")
        return int(value)

    def strings(self, entry: Mapping[str, Any], key: str, path: FieldPath) -> tuple[str, ...]:
        values = self.items(entry.get(key), (*path, key))
        for index, value in enumerate(values):
            if not isinstance(value, str):
                raise self.problem((*path, key, index), f"must be a string, not {_type(value)}")
        return tuple(values)

    def labels(self, entry: Mapping[str, Any], key: str, path: FieldPath) -> Labels | None:
        if entry.get(key) is None:
            return None
        value = self.mapping(entry[key], (*path, key))
        for label, text in value.items():
            if not isinstance(text, str):
                raise self.problem((*path, key, str(label)), f"must be a string, not {_type(text)}")
        made: Labels = self.model((*path, key), lambda: Labels({str(label): text for label, text in value.items()}))
        return made

    def model(self, path: FieldPath, make: Callable[[], Any]) -> Any:
        try:
            return make()
        except MeshModelError as error:
            raise self.problem(path, str(error)) from None


def _type(value: object) -> str:
    names = {dict: "a map", list: "a list", str: "a string", bool: "a boolean", int: "an integer", float: "a number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _port(reader: _Reader, value: object, path: FieldPath) -> ServicePort:
    entry = reader.mapping(value, path, _PORT_FIELDS)
    name = reader.text(entry, "name", path, default="")
    number = reader.number(entry, "number", path, required=True)
    assert number is not None
    target = reader.number(entry, "targetPort", path, required=False)
    if entry.get("protocol") is None:
        protocol = protocol_from_port(number, name)
    else:
        written = reader.text(entry, "protocol", path)
        protocol = reader.model((*path, "protocol"), lambda: Protocol.parse(written))
    made: ServicePort = reader.model(path, lambda: ServicePort(name, number, protocol, target))
    return made


def _service(reader: _Reader, value: object, path: FieldPath) -> Service:
    entry = reader.mapping(value, path, _SERVICE_FIELDS)
    namespace = reader.text(entry, "namespace", path, default=_DEFAULT_NAMESPACE)
    host = reader.text(entry, "hostname", path)
    reader.kind, reader.who = "Service", (namespace, host)
    hostname = reader.model((*path, "hostname"), lambda: resolve_short_name(host, namespace))
    reader.who = (namespace, hostname.value)
    ports = [
        _port(reader, item, (*path, "ports", index))
        for index, item in enumerate(reader.items(entry.get("ports"), (*path, "ports")))
    ]
    labels = reader.labels(entry, "labels", path)
    selector = reader.labels(entry, "selector", path)
    chosen = selector if selector is not None else labels
    addresses = reader.strings(entry, "addresses", path)
    accounts = reader.strings(entry, "serviceAccounts", path)
    made: Service = reader.model(
        path,
        lambda: Service(
            hostname,
            namespace,
            ports=ports,
            addresses=addresses,
            labels=labels or Labels(),
            service_accounts=accounts,
            selector=LabelSelector(chosen) if chosen else None,
        ),
    )
    return made


def _workload(reader: _Reader, value: object, path: FieldPath) -> Workload:
    entry = reader.mapping(value, path, _WORKLOAD_FIELDS)
    namespace = reader.text(entry, "namespace", path, default=_DEFAULT_NAMESPACE)
    name = reader.text(entry, "name", path)
    reader.kind, reader.who = "Workload", (namespace, name)
    address = reader.text(entry, "address", path)
    locality_text = reader.text(entry, "locality", path, default="")
    locality = reader.model((*path, "locality"), lambda: Locality.parse(locality_text))
    ports: dict[str, int] = {}
    if entry.get("ports") is not None:
        for port_name, number in reader.mapping(entry["ports"], (*path, "ports")).items():
            if isinstance(number, bool) or not isinstance(number, int):
                raise reader.problem((*path, "ports", str(port_name)), f"must be an integer, not {_type(number)}")
            ports[str(port_name)] = number
    weight = reader.number(entry, "weight", path, required=False)
    labels = reader.labels(entry, "labels", path) or Labels()
    account = reader.text(entry, "serviceAccount", path, default="")
    made: Workload = reader.model(
        path,
        lambda: Workload(
            name,
            namespace,
            addresses=(address,),
            labels=labels,
            service_account=account,
            ports=ports,
            locality=locality,
            weight=1 if weight is None else weight,
        ),
    )
    return made


def load_registry_text(
    text: str | bytes, *, source: str = "<registry>", limits: LoadLimits | None = None
) -> RegistryFileResult:
    """Load a registry from YAML (or JSON) text; see the module documentation for the format.

    Args:
        text: the text, or its UTF-8 bytes. Empty text is an empty registry.
        source: the name diagnostics give the text.
        limits: bounds on size, depth and alias expansion.
    """
    try:
        document = parse_single_document(text, source, limits or LoadLimits(), what="a registry file")
    except YamlProblem as problem:
        return _failed(source, problem.message, problem.position)
    if document is None or document.data is None:
        return RegistryFileResult()
    reader = _Reader(source, document.position)
    try:
        top = reader.mapping(document.data, (), _TOP_FIELDS)
        service_items = reader.items(top.get("services"), ("services",))
        workload_items = reader.items(top.get("workloads"), ("workloads",))
    except _Invalid:
        return RegistryFileResult(diagnostics=tuple(reader.diagnostics))
    services = _entries(reader, service_items, "services", _service, lambda item: item.key)
    workloads = _entries(reader, workload_items, "workloads", _workload, lambda item: item.key)
    return RegistryFileResult(tuple(services), tuple(workloads), tuple(reader.diagnostics))


def _entries(
    reader: _Reader,
    items: list[Any],
    field: str,
    make: Callable[[_Reader, object, FieldPath], Any],
    key: Callable[[Any], Any],
) -> list[Any]:
    found: dict[Any, tuple[int, Any]] = {}
    for index, item in enumerate(items):
        path: FieldPath = (field, index)
        reader.kind, reader.who = "Service" if field == "services" else "Workload", ("", "")
        try:
            made = make(reader, item, path)
        except _Invalid:
            continue
        if key(made) in found:
            first = format_path((field, found[key(made)][0]))
            reader.problem(path, f"{key(made)} is already defined at {first}; this one is ignored")
            continue
        found[key(made)] = (index, made)
    return [made for _, made in found.values()]


def load_registry_file(path: str | os.PathLike[str], *, limits: LoadLimits | None = None) -> RegistryFileResult:
    """Load a registry file (only a regular file is read, and never more than ``limits.max_bytes`` of it)."""
    bounds = limits or LoadLimits()
    source = str(path)
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return _failed(source, "not a regular file")
        with open(path, "rb") as file:
            data = file.read(bounds.max_bytes + 1)
    except OSError as error:
        return _failed(source, f"cannot read: {error.strerror or error}")
    if len(data) > bounds.max_bytes:
        return _failed(source, f"file is larger than the limit of {bounds.max_bytes} bytes")
    return load_registry_text(data, source=source, limits=bounds)


def _failed(source: str, message: str, position: Position | None = None) -> RegistryFileResult:
    return RegistryFileResult(diagnostics=(Diagnostic(Severity.ERROR, message, position or Position(source)),))
