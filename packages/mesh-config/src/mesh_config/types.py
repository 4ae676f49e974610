"""The building blocks of the typed Istio API: field declarations, maps, durations and sized integers.

Every API message is an ``attrs`` frozen class whose fields are declared with :func:`api_field`. Field
names are the proto field names (``export_to``); the YAML/JSON name is derived the way protobuf derives
``json_name`` (``exportTo``, ``consecutive5xxErrors``) unless given. Types map to the proto types:

=====================================  =====================================================
proto                                  Python annotation
=====================================  =====================================================
string / bool / double                 ``str`` / ``bool`` / ``float``
int32, uint32, int64, uint64           ``Int32``, ``UInt32``, ``Int64``, ``UInt64``
google.protobuf.UInt32Value (etc.)     ``UInt32 | None`` (``None`` when unset)
google.protobuf.Duration               ``Duration | None``
enum                                   an ``enum.Enum`` whose values are the proto names
message                                the message's class, ``| None`` (``None`` when unset)
repeated T                             ``tuple[T, ...]``
map<string, T>                         ``FrozenDict[str, T]``
google.protobuf.Struct / Value         ``JsonObject`` / ``JsonValue``
=====================================  =====================================================
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Annotated, Any, Generic, TypeVar, final

import attrs

__all__ = [
    "Double",
    "Duration",
    "FrozenDict",
    "Int32",
    "Int64",
    "IntRange",
    "JsonObject",
    "JsonValue",
    "UInt32",
    "UInt64",
    "api_field",
    "boolean",
    "enum_value",
    "integer",
    "json_name",
    "mapping",
    "number",
    "optional",
    "repeated",
    "string",
]

K = TypeVar("K")
V = TypeVar("V")


@final
@attrs.frozen
class IntRange:
    """The range of a sized integer type (used inside ``Annotated``)."""

    name: str
    low: int
    high: int


Int32 = Annotated[int, IntRange("int32", -(2**31), 2**31 - 1)]
UInt32 = Annotated[int, IntRange("uint32", 0, 2**32 - 1)]
Int64 = Annotated[int, IntRange("int64", -(2**63), 2**63 - 1)]
UInt64 = Annotated[int, IntRange("uint64", 0, 2**64 - 1)]
Double = float


@final
class JsonValue:
    """Marker type for ``google.protobuf.Value``: any JSON value.

    Values are stored frozen: maps as FrozenDict, lists as tuples.
    """


@final
class JsonObject:
    """Marker type for ``google.protobuf.Struct``: a JSON object, stored as a FrozenDict."""


@final
class FrozenDict(Mapping[K, V], Generic[K, V]):
    """An immutable, hashable mapping (proto ``map<,>`` fields and JSON objects)."""

    __slots__ = ("_data", "_hash")

    def __init__(self, data: Mapping[K, V] | None = None, /) -> None:
        self._data: dict[K, V] = dict(data) if data else {}
        self._hash: int | None = None

    def __getitem__(self, key: K) -> V:
        return self._data[key]

    def __iter__(self) -> Iterator[K]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(frozenset(self._data.items()))
        return self._hash

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return self._data == dict(other.items())
        return NotImplemented

    def __repr__(self) -> str:
        return f"FrozenDict({self._data!r})"


_DURATION_PART = re.compile(r"([0-9]*\.?[0-9]+)(ns|us|µs|μs|ms|s|m|h)")
_NANOS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "μs": 1_000,
    "ms": 1_000_000,
    "s": 10**9,
    "m": 60 * 10**9,
    "h": 3600 * 10**9,
}


@final
@attrs.frozen(order=True)
class Duration:
    """A protobuf Duration, held as whole nanoseconds.

    Parsed from Go's duration syntax, which Istio's CRDs accept: ``"1.5s"``, ``"100ms"``, ``"1h30m"``,
    ``"-2s"``. Printed back in protobuf JSON form (``"1.500s"`` is printed ``"1.5s"``).

    Attributes:
        nanos: the length in nanoseconds (may be negative; validation decides what is allowed).
    """

    nanos: int

    @classmethod
    def parse(cls, text: str) -> Duration:
        """Parse a duration string.

        Raises:
            ValueError: the text is not a duration.
        """
        if not isinstance(text, str):
            raise ValueError(f"expected a duration string such as '1.5s', not {text!r}")
        body = text.strip()
        sign = 1
        if body.startswith(("+", "-")):
            sign = -1 if body[0] == "-" else 1
            body = body[1:]
        if body == "0":
            return cls(0)
        if not body or len(body) > 64:
            raise ValueError(f"{text!r} is not a duration such as '1.5s' or '100ms'")
        total = 0
        at = 0
        while at < len(body):
            match = _DURATION_PART.match(body, at)
            if match is None:
                raise ValueError(f"{text!r} is not a duration such as '1.5s' or '100ms'")
            number, unit = match.groups()
            whole, _, fraction = number.partition(".")
            scale = _NANOS[unit]
            total += int(whole or "0") * scale
            if fraction:
                total += int(fraction) * scale // 10 ** len(fraction)
            at = match.end()
        return cls(sign * total)

    @classmethod
    def of(cls, *, seconds: float = 0, millis: int = 0) -> Duration:
        """A duration from seconds and milliseconds."""
        return cls(round(seconds * 10**9) + millis * 1_000_000)

    @property
    def seconds(self) -> float:
        """The length in seconds."""
        return self.nanos / 10**9

    @property
    def millis(self) -> float:
        """The length in milliseconds."""
        return self.nanos / 1_000_000

    def __str__(self) -> str:
        sign = "-" if self.nanos < 0 else ""
        whole, fraction = divmod(abs(self.nanos), 10**9)
        if not fraction:
            return f"{sign}{whole}s"
        return f"{sign}{whole}.{fraction:09d}".rstrip("0") + "s"


def json_name(field_name: str) -> str:
    """The protobuf JSON name of a proto field name: ``export_to`` -> ``exportTo``."""
    out: list[str] = []
    upper = False
    for ch in field_name.rstrip("_"):
        if ch == "_":
            upper = True
            continue
        out.append(ch.upper() if upper else ch)
        upper = False
    return "".join(out)


def api_field(
    *,
    default: Any = attrs.NOTHING,
    factory: Any = None,
    json: str | None = None,
    required: bool = False,
    oneof: str | None = None,
) -> Any:
    """Declare a field of an API message (the typed helpers below call this).

    Args:
        default: the default value.
        factory: a factory for the default, instead of ``default``.
        json: the YAML/JSON name when it is not the protobuf JSON name of the attribute (``from_`` is
            ``from`` automatically: a trailing underscore is dropped).
        required: the CRD schema requires the field; a document without it is refused.
        oneof: the name of the proto ``oneof`` the field belongs to; at most one member may be set.
    """
    metadata = {"json": json, "required": required, "oneof": oneof}
    if factory is not None:
        return attrs.field(factory=factory, metadata=metadata, kw_only=True)
    return attrs.field(default=default, metadata=metadata, kw_only=True)


def string(*, json: str | None = None, required: bool = False, oneof: str | None = None) -> Any:
    """A ``string`` field (default ``""``)."""
    return api_field(default="", json=json, required=required, oneof=oneof)


def boolean(*, json: str | None = None, required: bool = False, oneof: str | None = None) -> Any:
    """A ``bool`` field (default ``False``)."""
    return api_field(default=False, json=json, required=required, oneof=oneof)


def integer(*, json: str | None = None, required: bool = False, oneof: str | None = None) -> Any:
    """An integer field (default ``0``); annotate it ``Int32``, ``UInt32``, ``Int64`` or ``UInt64``."""
    return api_field(default=0, json=json, required=required, oneof=oneof)


def number(*, json: str | None = None, required: bool = False, oneof: str | None = None) -> Any:
    """A ``double`` field (default ``0.0``)."""
    return api_field(default=0.0, json=json, required=required, oneof=oneof)


def optional(*, json: str | None = None, required: bool = False, oneof: str | None = None) -> Any:
    """A message, Duration, wrapper or Struct field: ``None`` when unset."""
    return api_field(default=None, json=json, required=required, oneof=oneof)


def repeated(*, json: str | None = None, required: bool = False) -> Any:
    """A ``repeated`` field, annotated ``tuple[T, ...]`` (default ``()``)."""
    return api_field(default=(), json=json, required=required)


def mapping(*, json: str | None = None, required: bool = False) -> Any:
    """A ``map<string, T>`` field, annotated ``FrozenDict[str, T]`` (default empty)."""
    return api_field(factory=FrozenDict, json=json, required=required)


def enum_value(default: Any, *, json: str | None = None, required: bool = False, oneof: str | None = None) -> Any:
    """An enum field; ``default`` is the enum's zero value."""
    return api_field(default=default, json=json, required=required, oneof=oneof)
