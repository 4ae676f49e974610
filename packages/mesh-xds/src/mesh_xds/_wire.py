"""Protobuf wire encoding of discovery responses from cached bytes, and of messages written by hand (private).

A response is the concatenation of its fields, so the serialized ``Any`` of a resource can be written into
any number of responses without parsing or re-serializing it: the cost of a push is the cost of joining
bytes. Field numbers are those of ``envoy.service.discovery.v3``:

- ``DiscoveryResponse``: version_info 1, resources 2 (Any), type_url 4, nonce 5, control_plane 6.
- ``DeltaDiscoveryResponse``: system_version_info 1, resources 2 (Resource), type_url 4, nonce 5,
  removed_resources 6, control_plane 7.
- ``Resource``: version 1, resource 2 (Any), name 3.
- ``Any``: type_url 1, value 2. ``ControlPlane``: identifier 1.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

_VARINT: Final = 0  # wire types
_FIXED64: Final = 1
_LEN: Final = 2  # length-delimited fields
_FIXED32: Final = 5
_ONE_BYTE: Final = tuple(bytes((value,)) for value in range(0x80))
"""The varints of 0..127, which are one byte: most lengths and tags."""


def varint(value: int) -> bytes:
    """Encode a non-negative integer as a protobuf varint."""
    if 0 <= value < 0x80:
        return _ONE_BYTE[value]
    if 0x80 <= value < 0x4000:  # two bytes: ports, and the lengths of most messages
        return bytes(((value & 0x7F) | 0x80, value >> 7))
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


SHORT_HEADERS: Final = tuple(tuple(bytes(((number << 3) | _LEN, size)) for size in range(0x80)) for number in range(16))
"""The tag and length of fields 1 to 15 (``SHORT_HEADERS[field][size]``) of fewer than 128 bytes: two bytes."""


_LEN_TAGS: Final = tuple(varint((number << 3) | _LEN) for number in range(64))
"""The tags of length-delimited fields 0 to 63."""


def header(field: int, size: int) -> bytes:
    """The tag and length that precede a length-delimited field of ``size`` bytes."""
    # Every header of every resource comes here: the common cases are taken from the tables.
    if 0 < field < 64 and 0 <= size < 0x4000:
        if size < 0x80:
            return SHORT_HEADERS[field][size] if field < 16 else _LEN_TAGS[field] + _ONE_BYTE[size]
        return _LEN_TAGS[field] + bytes(((size & 0x7F) | 0x80, size >> 7))
    return varint((field << 3) | _LEN) + varint(size)


def field(field_number: int, data: bytes) -> bytes:
    """A whole length-delimited field (empty when ``data`` is, as proto3 omits empty strings)."""
    if not data:
        return b""
    return header(field_number, len(data)) + data


def text(field_number: int, value: str) -> bytes:
    """A string field."""
    return field(field_number, value.encode("utf-8"))


def any_bytes(type_url: str, value: bytes) -> bytes:
    """A serialized ``google.protobuf.Any``."""
    return text(1, type_url) + field(2, value)


def any_prefix(type_url: str) -> bytes:
    """The bytes a serialized ``Any`` of this type URL starts with."""
    return text(1, type_url)


def control_plane(identifier: str) -> bytes:
    """A serialized ``ControlPlane`` message."""
    return text(1, identifier)


def sotw_response(
    version: str, type_url: str, nonce: str, resources: Iterable[bytes], control_plane_bytes: bytes = b""
) -> bytes:
    """A serialized ``DiscoveryResponse``.

    Args:
        version: version_info.
        type_url: the response's type URL.
        nonce: the response's nonce.
        resources: the encoded resource fields (field 2 headers and Any bytes, in order).
        control_plane_bytes: a serialized ``ControlPlane``, or empty.
    """
    parts = [text(1, version), *resources, text(4, type_url), text(5, nonce)]
    if control_plane_bytes:
        parts.append(header(6, len(control_plane_bytes)) + control_plane_bytes)
    return b"".join(parts)


def delta_response(
    system_version: str,
    type_url: str,
    nonce: str,
    resources: Iterable[bytes],
    removed: Iterable[str] | bytes,
    control_plane_bytes: bytes = b"",
) -> bytes:
    """A serialized ``DeltaDiscoveryResponse``.

    Args:
        system_version: system_version_info.
        type_url: the response's type URL.
        nonce: the response's nonce.
        resources: the encoded ``Resource`` fields (field 2), in order.
        removed: the names of removed resources, or their fields already encoded by :func:`removed_fields`.
        control_plane_bytes: a serialized ``ControlPlane``, or empty.
    """
    parts = [text(1, system_version), *resources, text(4, type_url), text(5, nonce)]
    parts.append(removed if isinstance(removed, bytes) else removed_fields(removed))
    if control_plane_bytes:
        parts.append(header(7, len(control_plane_bytes)) + control_plane_bytes)
    return b"".join(parts)


def removed_fields(names: Iterable[str]) -> bytes:
    """The ``removed_resources`` fields (6) of a ``DeltaDiscoveryResponse``, in order."""
    return b"".join(header(6, len(encoded)) + encoded for encoded in (name.encode("utf-8") for name in names))


def delta_resource_parts(name: str, version: str, any_size: int) -> tuple[bytes, bytes]:
    """The bytes around a resource's Any in a ``DeltaDiscoveryResponse``: (head, tail).

    ``head + any_bytes + tail`` is field 2 of the response, a ``Resource`` with version, resource and name.
    """
    version_field = text(1, version)
    any_header = header(2, any_size)
    name_field = text(3, name)
    body_size = len(version_field) + len(any_header) + any_size + len(name_field)
    return header(2, body_size) + version_field + any_header, name_field


def _varint(data: bytes, at: int) -> tuple[int, int]:
    """The varint at ``at``, and where it ends."""
    value = 0
    shift = 0
    while True:
        if at >= len(data):
            raise ValueError("a varint runs past the end")
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, at
        shift += 7


def split_fields(data: bytes) -> list[tuple[int, bytes, bytes]]:
    """The top-level fields of a serialized message, in order: their number, whole bytes and payload.

    The payload of a length-delimited field is its value without tag and length; of others, their whole bytes.

    Raises:
        ValueError: the bytes are not a message of the wire types proto3 writes.
    """
    out = []
    at = 0
    while at < len(data):
        start = at
        tag, at = _varint(data, at)
        kind = tag & 0x7
        if kind == _VARINT:
            _, at = _varint(data, at)
            payload_start = start
        elif kind == _LEN:
            size, payload_start = _varint(data, at)
            at = payload_start + size
        elif kind in (_FIXED64, _FIXED32):
            at += 8 if kind == _FIXED64 else 4
            payload_start = start
        else:
            raise ValueError(f"wire type {kind} at byte {start}")
        if at > len(data):
            raise ValueError(f"field {tag >> 3} at byte {start} runs past the end")
        out.append((tag >> 3, data[start:at], data[payload_start:at]))
    return out
