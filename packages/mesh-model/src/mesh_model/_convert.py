"""attrs converters shared by the value classes of mesh_model (private)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from mesh_model._text import describe
from mesh_model.errors import InvalidServiceError
from mesh_model.host import Hostname
from mesh_model.labels import Labels, LabelSelector
from mesh_model.locality import Locality


def to_labels(value: Labels | Mapping[str, str] | None) -> Labels:
    """Accept a Labels, any mapping of strings, or None (no labels)."""
    return value if isinstance(value, Labels) else Labels(value)


def to_hostname(value: Hostname | str) -> Hostname:
    """Accept a Hostname or parse a string."""
    return value if isinstance(value, Hostname) else Hostname.parse(value)


def to_port_map(value: Mapping[str, int] | Iterable[tuple[str, int]]) -> tuple[tuple[str, int], ...]:
    """Accept a mapping of port names to numbers (or its items) and return sorted items.

    Names must be non-empty strings and unique; the numbers are checked by the class that holds them.
    """
    if isinstance(value, str) or not isinstance(value, Mapping | Iterable):
        raise InvalidServiceError(f"ports must be a mapping of port names to numbers, not {describe(value)}")
    items = value.items() if isinstance(value, Mapping) else value
    ports: dict[str, int] = {}
    for item in items:
        if not isinstance(item, tuple | list) or len(item) != 2:
            raise InvalidServiceError(f"port {describe(item)} is not a (name, number) pair")
        name, number = item
        if not isinstance(name, str) or not name:
            raise InvalidServiceError(f"port name {describe(name)} is not a non-empty string")
        if name in ports:
            raise InvalidServiceError(f"port name {name!r} is given twice")
        ports[name] = number
    return tuple(sorted(ports.items()))


def to_locality(value: Locality | str) -> Locality:
    """Accept a Locality or parse a ``region/zone/subzone`` string."""
    return value if isinstance(value, Locality) else Locality.parse(value)


def to_selector(value: LabelSelector | Mapping[str, str] | None) -> LabelSelector | None:
    """Accept a LabelSelector, a mapping of labels to match (``{"app": "reviews"}``), or None."""
    if value is None or isinstance(value, LabelSelector):
        return value
    if isinstance(value, Mapping):
        return LabelSelector(value)
    raise InvalidServiceError(f"selector must be a LabelSelector or a mapping of labels, not {describe(value)}")


def to_frozenset(value: Iterable[str]) -> frozenset[str]:
    """Accept any iterable of strings (but not a lone string, which would be split into letters)."""
    if isinstance(value, str):
        return frozenset((value,))
    return frozenset(value)


def to_tuple(value: Iterable[str]) -> tuple[str, ...]:
    """Accept any iterable of strings (a lone string is one item)."""
    if isinstance(value, str):
        return (value,)
    return tuple(value)
