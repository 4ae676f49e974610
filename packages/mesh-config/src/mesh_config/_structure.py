"""Turning JSON-like data into typed API messages and back (private).

``structure`` follows the rules of the Kubernetes API server for Istio's CRDs together with protobuf's
JSON mapping: unknown fields are errors, types are checked, integers may be given as strings, ``null`` means
unset, and at most one member of a oneof may be set. It never stops at the first problem: every problem is
recorded with its path, and the bad field is left at its default so the rest can still be checked.
"""

from __future__ import annotations

import difflib
import enum
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar, final

import attrs

from mesh_config.diagnostics import FieldPath
from mesh_config.types import Duration, FrozenDict, IntRange, JsonObject, JsonValue, json_name

T = TypeVar("T")

Problems = list[tuple[FieldPath, str]]

_INT64 = IntRange("int64", -(2**63), 2**63 - 1)


@final
@attrs.frozen
class FieldInfo:
    """What the engine knows of one field of a message."""

    name: str
    json: str
    type: Any
    required: bool
    oneof: str | None
    optional: bool
    default: Any


def fields_of(cls: type) -> tuple[FieldInfo, ...]:
    """The fields of an API message class, with resolved types (computed once per class)."""
    found = _FIELDS.get(cls)
    if found is None:
        found = _FIELDS[cls] = _fields_of(cls)
    return found


_FIELDS: dict[type, tuple[FieldInfo, ...]] = {}
_BY_JSON: dict[type, dict[str, FieldInfo]] = {}


def _fields_of(cls: type) -> tuple[FieldInfo, ...]:
    hints = typing.get_type_hints(cls, include_extras=True)
    found = []
    for attribute in attrs.fields(cls):
        annotation = hints[attribute.name]
        inner, optional = _strip_optional(annotation)
        metadata = attribute.metadata
        default = attribute.default
        if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
            default = default.factory()
        found.append(
            FieldInfo(
                name=attribute.name,
                json=metadata.get("json") or json_name(attribute.name),
                type=inner,
                required=bool(metadata.get("required")),
                oneof=metadata.get("oneof"),
                optional=optional,
                default=default,
            )
        )
    return tuple(found)


def _by_json(cls: type) -> dict[str, FieldInfo]:
    found = _BY_JSON.get(cls)
    if found is None:
        found = _BY_JSON[cls] = {info.json: info for info in fields_of(cls)}
    return found


def _strip_optional(annotation: Any) -> tuple[Any, bool]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(args) == 1 and len(typing.get_args(annotation)) == 2:
            return args[0], True
        raise TypeError(f"unsupported union type {annotation!r}")
    return annotation, False


def _json_type(value: object) -> str:
    """The JSON schema type name of a value, as Kubernetes quotes it (``"string"``, ``"null"``, ...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def wrong_type(expected: str, value: object) -> str:
    """Kubernetes' message for a value of the wrong JSON type."""
    return f'in body must be of type {expected}: "{_json_type(value)}"'


def _quote(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


ALLOW_NULL = "__mesh_allow_null__"
"""Set to True on a message class whose fields may be null (Kubernetes' own ObjectMeta)."""


def structure(cls: type[T], data: object, path: FieldPath, problems: Problems) -> T:
    """Build a message of type ``cls`` from ``data``, recording problems; bad fields keep their default."""
    if not isinstance(data, dict):
        problems.append((path, wrong_type("object", data)))
        return cls()
    by_json = _by_json(cls)
    allow_null = getattr(cls, ALLOW_NULL, False)
    values: dict[str, Any] = {}
    oneofs: dict[str, str] = {}
    for key, raw in data.items():
        info = by_json.get(key)
        field_path = (*path, key)
        if info is None:
            problems.append((field_path, _unknown_field(key, by_json)))
            continue
        if raw is None:
            # Wrapper types (UInt32Value, BoolValue, ...) are nullable in Istio's CRDs; nothing else is.
            if not (allow_null or (info.optional and _is_scalar(info.type))):
                problems.append((field_path, wrong_type(_expected(info.type), None)))
            continue
        marker = len(problems)
        value = convert(info.type, raw, field_path, problems)
        if any(path == field_path for path, _ in problems[marker:]):
            # The field itself is unusable; problems deeper inside leave their parts at defaults, and the
            # rest of the field is kept so that every other problem in it is still found.
            continue
        if info.oneof is not None:
            other = oneofs.get(info.oneof)
            if other is not None:
                problems.append((field_path, f"only one of {other!r} and {key!r} may be set"))
                continue
            oneofs[info.oneof] = key
        values[info.name] = value
    for info in fields_of(cls):
        missing = info.required and info.name not in values and data.get(info.json) is None
        if missing and not any(p[: len(path) + 1] == (*path, info.json) for p, _ in problems):
            problems.append(((*path, info.json), "Required value"))
    return cls(**values)


def _unknown_field(key: str, by_json: Mapping[str, FieldInfo]) -> str:
    close = difflib.get_close_matches(key, list(by_json), n=1)
    hint = f'; did you mean "{close[0]}"?' if close else ""
    return f'unknown field "{key}"{hint}'


def convert(kind: Any, raw: object, path: FieldPath, problems: Problems) -> Any:
    """Convert one JSON value to the Python type ``kind``."""
    origin = typing.get_origin(kind)
    if origin is typing.Annotated:
        _, *extras = typing.get_args(kind)
        ranges = [extra for extra in extras if isinstance(extra, IntRange)]
        return _integer(raw, ranges[0] if ranges else _INT64, path, problems)
    if kind is int:
        return _integer(raw, _INT64, path, problems)
    if kind is str:
        if not isinstance(raw, str):
            problems.append((path, wrong_type("string", raw)))
            return ""
        return raw
    if kind is bool:
        if not isinstance(raw, bool):
            problems.append((path, wrong_type("boolean", raw)))
            return False
        return raw
    if kind is float:
        return _double(raw, path, problems)
    if kind is Duration:
        if not isinstance(raw, str):
            problems.append((path, wrong_type("string", raw)))
            return None
        try:
            return Duration.parse(raw)
        except ValueError:
            problems.append(
                (path, f'Invalid value: "string": must be a valid duration greater than 1ms, not {_quote(raw)}')
            )
            return None
    if kind is JsonValue:
        return freeze(raw)
    if kind is JsonObject:
        if not isinstance(raw, dict):
            problems.append((path, wrong_type("object", raw)))
            return None
        return freeze(raw)
    if origin is tuple:
        return _list(typing.get_args(kind)[0], raw, path, problems)
    if origin is FrozenDict:
        key_type, value_type = typing.get_args(kind)
        return _map(key_type, value_type, raw, path, problems)
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return _enum(kind, raw, path, problems)
    if attrs.has(kind):
        return structure(kind, raw, path, problems)
    raise TypeError(f"unsupported API field type {kind!r}")


def _integer(raw: object, limits: IntRange, path: FieldPath, problems: Problems) -> int:
    value: int | None = None
    if isinstance(raw, int) and not isinstance(raw, bool):
        value = raw
    elif (isinstance(raw, float) and raw.is_integer()) or (
        isinstance(raw, str) and raw.strip().lstrip("+-").isdigit() and raw.isascii() and len(raw) <= 24
    ):
        value = int(raw)
    if value is None:
        problems.append((path, wrong_type("integer", raw)))
        return 0
    if value < limits.low:
        problems.append((path, f"in body should be greater than or equal to {limits.low}"))
        return 0
    if value > limits.high:
        problems.append((path, f"in body should be less than or equal to {limits.high}"))
        return 0
    return value


def _double(raw: object, path: FieldPath, problems: Problems) -> float:
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return float(raw)
    if isinstance(raw, str) and len(raw) <= 64:
        try:
            value = float(raw)
        except ValueError:
            pass
        else:
            if not math.isnan(value) or raw == "NaN":
                return value
    problems.append((path, wrong_type("number", raw)))
    return 0.0


def _list(item: Any, raw: object, path: FieldPath, problems: Problems) -> tuple[Any, ...]:
    if not isinstance(raw, list):
        problems.append((path, wrong_type("array", raw)))
        return ()
    out = []
    for index, element in enumerate(raw):
        if element is None:
            problems.append(((*path, index), wrong_type(_expected(item), None)))
            continue
        out.append(convert(item, element, (*path, index), problems))
    return tuple(out)


def _map(key_type: Any, item: Any, raw: object, path: FieldPath, problems: Problems) -> FrozenDict[Any, Any]:
    if not isinstance(raw, dict):
        problems.append((path, wrong_type("object", raw)))
        return FrozenDict()
    out: dict[Any, Any] = {}
    for key, element in raw.items():
        if element is None:
            problems.append(((*path, key), wrong_type(_expected(item), None)))
            continue
        map_key: Any = key
        if key_type is not str:
            ranges = [extra for extra in typing.get_args(key_type)[1:] if isinstance(extra, IntRange)]
            limits = ranges[0] if ranges else _INT64
            text = key.strip()
            if not (text.lstrip("+-").isdigit() and text.isascii() and len(text) <= 24):
                problems.append(((*path, key), f"type conversion error from {_quote(key)} to {limits.name}"))
                continue
            map_key = int(text)
            if not limits.low <= map_key <= limits.high:
                problems.append(((*path, key), f"key {map_key} is out of range for {limits.name}"))
                continue
        out[map_key] = convert(item, element, (*path, key), problems)
    return FrozenDict(out)


def _enum(kind: type[enum.Enum], raw: object, path: FieldPath, problems: Problems) -> Any:
    if isinstance(raw, str):
        for member in kind:
            if member.value == raw:
                return member
    if not isinstance(raw, str):
        problems.append((path, wrong_type("string", raw)))
        return next(iter(kind))
    names = ", ".join(f'"{member.value}"' for member in kind)
    problems.append((path, f'Unsupported value: "{raw}": supported values: {names}'))
    return next(iter(kind))


def _is_scalar(kind: Any) -> bool:
    return kind in (int, float, bool, str) or typing.get_origin(kind) is typing.Annotated


def _expected(kind: Any) -> str:
    """The JSON schema type name of a field type, for messages."""
    origin = typing.get_origin(kind)
    if origin is typing.Annotated or kind is int:
        return "integer"
    if kind is float:
        return "number"
    if kind is bool:
        return "boolean"
    if origin is tuple:
        return "array"
    if origin is FrozenDict or kind is JsonObject or attrs.has(kind):
        return "object"
    return "string"


def freeze(value: object) -> Any:
    """A JSON value with maps as FrozenDict and lists as tuples."""
    if isinstance(value, dict):
        return FrozenDict({key: freeze(item) for key, item in value.items()})
    if isinstance(value, list):
        return tuple(freeze(item) for item in value)
    return value


def thaw(value: object) -> Any:
    """The reverse of :func:`freeze`: plain dicts and lists."""
    if isinstance(value, Mapping):
        return {key: thaw(item) for key, item in value.items()}
    if isinstance(value, tuple):
        return [thaw(item) for item in value]
    return value


def unstructure(value: object) -> Any:
    """A JSON-ready form of an API value: camelCase names, unset and zero fields left out."""
    if isinstance(value, Duration):
        return str(value)
    if attrs.has(type(value)):
        out: dict[str, Any] = {}
        for info in fields_of(type(value)):
            item = getattr(value, info.name)
            if item is None:
                continue
            if not info.optional and not info.required and _is_zero(item, info.default):
                continue
            out[info.json] = unstructure(item)
        return out
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(key): unstructure(item) for key, item in value.items()}
    if isinstance(value, tuple | list):
        return [unstructure(item) for item in value]
    return value


def _is_zero(item: object, default: object) -> bool:
    if isinstance(item, tuple | Mapping):
        return len(item) == 0
    return bool(item == default) and type(item) is type(default)
