"""Helpers shared by the indexes (private)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Generic, Protocol, TypeVar, final

import attrs

from mesh_config.meta import Resource
from mesh_model import ConfigKey

__all__ = ["Sourced", "WorkloadRef", "oldest_first", "selector_labels", "selects"]

T = TypeVar("T")


@final
@attrs.frozen
class Sourced(Generic[T]):
    """An answer and the config objects it came from.

    Attributes:
        value: the answer.
        sources: the keys of the config objects that fed it, in the order they were applied.
    """

    value: T
    sources: tuple[ConfigKey, ...] = ()


class WorkloadRef(Protocol):
    """What the indexes need of a workload or proxy: its namespace and labels."""

    @property
    def namespace(self) -> str:
        """The workload's namespace."""

    @property
    def labels(self) -> Mapping[str, str]:
        """The workload's labels."""


def oldest_first(resources: Iterable[Resource[Any]]) -> list[Resource[Any]]:
    """Sort as Istio does for precedence: by creation time, then namespace, then name."""
    return sorted(resources, key=lambda r: (r.metadata.creation_timestamp, r.metadata.namespace, r.metadata.name))


def selector_labels(spec: Any, field: str = "selector") -> Mapping[str, str] | None:
    """The labels of a spec's selector field, or ``None`` when the field is unset.

    Security kinds select with ``matchLabels``; networking kinds (Sidecar, ServiceEntry) with ``labels``.
    """
    selector = getattr(spec, field, None)
    if selector is None:
        return None
    labels: Mapping[str, str] = getattr(selector, "match_labels", None) or getattr(selector, "labels", {})
    return labels


def selects(match_labels: Mapping[str, str] | None, labels: Mapping[str, str]) -> bool:
    """True when a selector (``None`` selects everything) matches the labels."""
    if match_labels is None:
        return True
    return all(labels.get(key) == value for key, value in match_labels.items())
