"""attrs converters shared by the value classes of mesh_model (private)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from mesh_model.host import Hostname
from mesh_model.labels import Labels


def to_labels(value: Labels | Mapping[str, str] | None) -> Labels:
    """Accept a Labels, any mapping of strings, or None (no labels)."""
    return value if isinstance(value, Labels) else Labels(value)


def to_hostname(value: Hostname | str) -> Hostname:
    """Accept a Hostname or parse a string."""
    return value if isinstance(value, Hostname) else Hostname.parse(value)


def to_port_map(value: Mapping[str, int] | Iterable[tuple[str, int]]) -> tuple[tuple[str, int], ...]:
    """Accept a mapping of port names to numbers (or its items) and return sorted items."""
    items = value.items() if isinstance(value, Mapping) else value
    return tuple(sorted((str(name), number) for name, number in items))


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
