"""Envoy resources as JSON, the way Envoy's admin ``/config_dump`` shows them, with key material redacted (private).

:func:`message_to_json` turns a protobuf message into Envoy's JSON form (proto field names, ``@type`` in
``Any`` fields). An ``Any`` of a type this process has not imported yet is resolved by importing the
``xds-protos`` modules of its package (only under ``envoy``, ``xds``, ``udpa``, ``validate`` and ``google``,
and only ``*_pb2`` modules); one still unknown is shown as its type URL and size, not as a failure.

:func:`redact_key_material` replaces private keys, passwords, PKCS#12 bundles, session ticket keys and
generic secrets by ``[redacted]`` wherever they appear, as Envoy's admin interface does.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Mapping
from typing import Any, Final

from google.protobuf import any_pb2, descriptor_pool, json_format, message_factory, struct_pb2
from google.protobuf.message import DecodeError, Message

REDACTED: Final = "[redacted]"
_IMPORTABLE_ROOTS: Final = frozenset({"envoy", "xds", "udpa", "validate", "google"})
# Keys whose values are secret wherever they appear (TlsCertificate, Secret, generic secrets, credentials).
_SECRET_KEYS: Final = frozenset({"private_key", "password", "pkcs12", "private_key_provider"})
_TICKET_KEYS: Final = "session_ticket_keys"
_GENERIC_SECRET: Final = "generic_secret"
_DATA_SOURCE_KEYS: Final = frozenset({"inline_bytes", "inline_string", "environment_variable", "filename"})


@functools.cache
def _import_package(package: str) -> bool:
    """Import every ``*_pb2`` module of a proto package; True when something was imported."""
    if package.split(".", 1)[0] not in _IMPORTABLE_ROOTS:
        return False
    try:
        module = importlib.import_module(package)
    except ImportError:
        return False
    imported = False
    for found in pkgutil.iter_modules(getattr(module, "__path__", [])):
        if found.name.endswith("_pb2"):
            try:
                importlib.import_module(f"{package}.{found.name}")
            except ImportError:
                continue
            imported = True
    return imported


def _descriptor(type_url: str) -> Any:
    """The message descriptor of a type URL, importing its package when needed; None when unknown."""
    full_name = type_url.rpartition("/")[2]
    pool = descriptor_pool.Default()
    try:
        return pool.FindMessageTypeByName(full_name)
    except KeyError:
        pass
    # The package is the name up to its first part in upper case: the message (maybe a nested one).
    package: list[str] = []
    for part in full_name.split("."):
        if part[:1].isupper():
            break
        package.append(part)
    if not package or not _import_package(".".join(package)):
        return None
    try:
        return pool.FindMessageTypeByName(full_name)
    except KeyError:
        return None


def _placeholder(value: Any) -> Any:
    """What stands for an ``Any`` whose type is unknown: a Struct naming it."""
    struct = struct_pb2.Struct()
    struct.update({"unknown_type": str(value.type_url), "bytes": len(value.value)})
    packed = any_pb2.Any()
    packed.Pack(struct)
    return packed


def _resolve_any(value: Any) -> bool:
    """Make the type of an ``Any`` (and of those inside it) known; True when ``value`` was changed."""
    descriptor = _descriptor(str(value.type_url))
    if descriptor is None:
        value.CopyFrom(_placeholder(value))
        return True
    inner = message_factory.GetMessageClass(descriptor)()
    try:
        inner.ParseFromString(value.value)
    except DecodeError:
        value.CopyFrom(_placeholder(value))
        return True
    if _resolve(inner):
        value.Pack(inner, type_url_prefix=str(value.type_url).rpartition("/")[0] + "/")
        return True
    return False


def _resolve(message: Any) -> bool:
    """Resolve every ``Any`` inside ``message`` in place; True when something was changed."""
    changed = False
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        if field.message_type.full_name == "google.protobuf.Any":
            items = value if _is_repeated(field) else [value]
            for item in items:
                changed = _resolve_any(item) or changed
        elif field.message_type.GetOptions().map_entry:
            if field.message_type.fields_by_name["value"].message_type is not None:
                for key in value:
                    entry = value[key]
                    if entry.DESCRIPTOR.full_name == "google.protobuf.Any":
                        changed = _resolve_any(entry) or changed
                    else:
                        changed = _resolve(entry) or changed
        elif _is_repeated(field):
            for item in value:
                changed = _resolve(item) or changed
        else:
            changed = _resolve(value) or changed
    return changed


def _is_repeated(field: Any) -> bool:
    return bool(field.is_repeated)


def message_to_json(message: Message) -> dict[str, Any]:
    """A message as Envoy's JSON: proto field names, ``@type`` in Any fields, every Any type resolved."""
    copy: Any = type(message)()
    copy.CopyFrom(message)
    if copy.DESCRIPTOR.full_name == "google.protobuf.Any":
        _resolve_any(copy)
    else:
        _resolve(copy)
    result: dict[str, Any] = json_format.MessageToDict(copy, preserving_proto_field_name=True)
    return result


def _redact_data_source(value: Any) -> Any:
    if isinstance(value, Mapping) and set(value) <= _DATA_SOURCE_KEYS:
        return {key: (item if key == "filename" else REDACTED) for key, item in value.items()}
    return REDACTED


def _redact_generic_secret(value: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, item in value.items():
        if key == "secrets" and isinstance(item, Mapping):
            out[key] = {name: _redact_data_source(source) for name, source in item.items()}
        else:
            out[key] = _redact_data_source(item)
    return out


def redact_key_material(value: Any) -> Any:
    """A copy of a JSON value with every private key, password and secret value replaced by ``[redacted]``.

    A secret given as a file keeps its file name (it is not key material); inline values and environment
    variable names are replaced.
    """
    if isinstance(value, list):
        return [redact_key_material(item) for item in value]
    if not isinstance(value, Mapping):
        return value
    out: dict[str, Any] = {}
    for key, item in value.items():
        if key in _SECRET_KEYS:
            out[key] = _redact_data_source(item)
        elif key == _TICKET_KEYS and isinstance(item, Mapping):
            keys = item.get("keys")
            redacted = [_redact_data_source(k) for k in keys] if isinstance(keys, list) else REDACTED
            out[key] = {**redact_key_material(item), "keys": redacted}
        elif key == _GENERIC_SECRET and isinstance(item, Mapping):
            out[key] = _redact_generic_secret(item)
        else:
            out[key] = redact_key_material(item)
    return out
