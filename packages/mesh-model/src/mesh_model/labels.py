"""Labels and label selectors, with Kubernetes' syntax and Istio's selector semantics.

:class:`Labels` is an immutable, hashable mapping of label keys to values. :class:`LabelSelector` selects
workloads by ``matchLabels``: every label of the selector must be present with the same value. An empty
selector selects every workload, which is how Istio treats a policy with no ``selector`` or
``workloadSelector``: it applies to the whole namespace.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import TypeVar, final, overload

import attrs

from mesh_model._text import describe
from mesh_model.errors import InvalidLabelError

__all__ = ["LabelSelector", "Labels", "validate_label_key", "validate_label_value"]

_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]\Z")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\Z")
_MAX_NAME = 63
_MAX_PREFIX = 253
_T = TypeVar("_T")


def validate_label_key(key: str) -> None:
    """Check a label key: an optional DNS-subdomain prefix and ``/``, then a name of at most 63 characters.

    Raises:
        InvalidLabelError: the key is malformed.
    """
    if not isinstance(key, str):
        raise InvalidLabelError(f"label key must be a string, not {type(key).__name__}")
    if not key:
        raise InvalidLabelError("label key is empty")
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > _MAX_PREFIX or not _DNS_SUBDOMAIN.match(prefix)):
        raise InvalidLabelError(
            f"label key {describe(key)}: prefix {describe(prefix)} must be a DNS subdomain "
            f"of at most {_MAX_PREFIX} characters"
        )
    if not name or len(name) > _MAX_NAME or not _NAME.match(name):
        raise InvalidLabelError(
            f"label key {describe(key)}: name {describe(name)} must be 1-{_MAX_NAME} letters, digits, '-', "
            "'_' or '.', starting and ending with a letter or digit"
        )


def validate_label_value(key: str, value: str) -> None:
    """Check a label value: empty, or at most 63 letters, digits, ``-``, ``_`` and ``.``.

    Raises:
        InvalidLabelError: the value is malformed; the message names the key.
    """
    if not isinstance(value, str):
        raise InvalidLabelError(f"label {describe(key)}: value must be a string, not {type(value).__name__}")
    if value and (len(value) > _MAX_NAME or not _NAME.match(value)):
        raise InvalidLabelError(
            f"label {describe(key)}: value {describe(value)} must be at most {_MAX_NAME} letters, digits, "
            "'-', '_' or '.', starting and ending with a letter or digit"
        )


@final
class Labels(Mapping[str, str]):
    """An immutable, hashable, validated mapping of label keys to values.

    ``Labels({"app": "reviews", "version": "v1"})``; ``Labels()`` is empty. Equal to any mapping with the
    same items.
    """

    __slots__ = ("_hash", "_items")

    _items: dict[str, str]
    _hash: int | None

    def __init__(self, items: Mapping[str, str] | None = None, /) -> None:
        if items is None:
            data: dict[str, str] = {}
        elif isinstance(items, Labels):
            data = items._items
        else:
            if not isinstance(items, Mapping):
                raise InvalidLabelError(f"labels must be a mapping, not {type(items).__name__}")
            data = {}
            for key, value in items.items():
                validate_label_key(key)
                validate_label_value(key, value)
                data[key] = value
        object.__setattr__(self, "_items", data)
        object.__setattr__(self, "_hash", None)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Labels is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("Labels is immutable")

    def __reduce__(self) -> tuple[type[Labels], tuple[dict[str, str]]]:
        # The default protocol would restore the slots with setattr, which immutability forbids.
        return (Labels, (dict(self._items),))

    def __getitem__(self, key: str) -> str:
        return self._items[key]

    # Mapping's own get and __contains__ go through __getitem__ and an exception; the dict answers at once.
    @overload
    def get(self, key: str, /) -> str | None: ...

    @overload
    def get(self, key: str, /, default: str | _T) -> str | _T: ...

    def get(self, key: str, /, default: object = None) -> object:
        """The value of label ``key``, or ``default`` when it is not set."""
        return self._items.get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        if self._hash is None:
            object.__setattr__(self, "_hash", hash(frozenset(self._items.items())))
        assert self._hash is not None
        return self._hash

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Labels):
            return self._items == other._items
        if isinstance(other, Mapping):
            return self._items == dict(other.items())
        return NotImplemented

    def __repr__(self) -> str:
        return f"Labels({self._items!r})"

    def is_superset_of(self, other: Mapping[str, str]) -> bool:
        """True when every label of ``other`` is here with the same value."""
        return all(self._items.get(key) == value for key, value in other.items())

    def merged(self, other: Mapping[str, str]) -> Labels:
        """Return these labels updated with ``other`` (``other`` wins on a shared key)."""
        return Labels({**self._items, **other})


def _to_labels(value: Mapping[str, str] | None) -> Labels:
    return value if isinstance(value, Labels) else Labels(value)


@final
@attrs.frozen
class LabelSelector:
    """Selects workloads whose labels include all of ``match_labels``.

    Attributes:
        match_labels: the labels a workload must carry. Empty selects every workload. Keys and values
            are validated like any label, so wildcards are refused.
    """

    match_labels: Labels = attrs.field(factory=Labels, converter=_to_labels)

    @property
    def is_empty(self) -> bool:
        """True when the selector selects everything."""
        return not self.match_labels

    def matches(self, labels: Mapping[str, str]) -> bool:
        """True when ``labels`` carry every label of the selector (always, for the empty selector)."""
        return all(labels.get(key) == value for key, value in self.match_labels.items())
