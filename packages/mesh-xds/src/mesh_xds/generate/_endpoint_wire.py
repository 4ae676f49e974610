"""Load assignments written straight as protobuf wire bytes (private).

EDS is the bulk of a proxy's config: one ``LbEndpoint`` per endpoint of every cluster. Writing the bytes from
the locality groups costs a fraction of building the messages and serializing them. The bytes are those
``SerializeToString(deterministic=True)`` gives for the messages :mod:`._endpoints` builds (fields in number
order, map entries sorted by key), so that a resource has the same content and version either way.

Field numbers, from ``envoy.config.endpoint.v3``, ``envoy.config.core.v3`` and ``google.protobuf``:

- ``ClusterLoadAssignment``: cluster_name 1, endpoints 2.
- ``LocalityLbEndpoints``: locality 1, lb_endpoints 2, load_balancing_weight 3, priority 5, metadata 9.
- ``LbEndpoint``: endpoint 1, health_status 2, metadata 3, load_balancing_weight 4.
- ``Endpoint``: address 1. ``Address``: socket_address 1, pipe 2. ``SocketAddress``: address 2, port_value 3.
  ``Pipe``: path 1. ``Locality``: region 1, zone 2, sub_zone 3.
- ``Metadata``: filter_metadata 1 (``map<string, Struct>``). ``Struct``: fields 1 (``map<string, Value>``).
  ``Value``: string_value 3. A map entry: key 1, value 2. ``UInt32Value``: value 1.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, final

from envoy.config.core.v3 import base_pb2, health_check_pb2

from mesh_model import Endpoint, HealthStatus, Locality
from mesh_xds._wire import varint
from mesh_xds.generate._endpoints import DRAINING_LABEL, TLS_MODE_ISTIO, LocalityGroup, workload_label

__all__ = ["ISTIO_MTLS_METADATA", "AssignmentWriter", "Written", "lb_endpoint_field", "metadata"]

_UNIX: Final = "unix://"
_UNIX_LENGTH: Final = len(_UNIX)
_HEALTH: Final = {
    status: b"\x10" + varint(value) if value else b""
    for status, value in (
        (HealthStatus.HEALTHY, health_check_pb2.HEALTHY),
        (HealthStatus.UNHEALTHY, health_check_pb2.UNHEALTHY),
        (HealthStatus.DRAINING, health_check_pb2.DRAINING),
    )
}
"""LbEndpoint.health_status (2, an enum) of each health, as an endpoint's message has it."""
_DRAINING: Final = _HEALTH[HealthStatus.DRAINING]
_HEALTHY: Final = _HEALTH[HealthStatus.HEALTHY]
_ISTIO_WORKLOAD: Final = b"\x0a%c\x0a\x05istio\x12%c\x0a%c\x0a\x08workload\x12%c\x1a%c%b"
"""Metadata.filter_metadata's entry ``istio: {workload: <workload>}`` for a short workload string.

The field (1) holds a map entry, key 1 ``istio`` and value 2 a Struct, whose field 1 holds the map entry of key
1 ``workload`` and value 2 a Value, whose string_value (3) is the workload. Each length is one byte when the
workload is shorter than ``_SHORT`` bytes: the outermost is the workload's plus 25.
"""
_SHORT: Final = 0x80 - 25
"""Workload strings shorter than this fit :data:`_ISTIO_WORKLOAD`."""
_ONE_BYTE: Final = 0x80
"""Lengths below this are varints of one byte."""
_LB_ENDPOINT_FIELD: Final = (
    b"\x12%b\x0a%c\x0a%c\x0a%c\x12%c%b\x18%b%b\x1a%b%b"
    b"\x0a%c\x0a\x05istio\x12%c\x0a%c\x0a\x08workload\x12%c\x1a%c%b\x22%c%b"
)
"""A LocalityLbEndpoints.lb_endpoints field (2) holding an LbEndpoint: its endpoint (1) holding its address (1)
whose socket_address (1) has address (2) and port_value (3); its health_status (2) as it is; its metadata (3),
the mTLS entry as it is then :data:`_ISTIO_WORKLOAD`'s entry; and the tag, length and value of its
load_balancing_weight (4). The field's own length and the metadata's are given as varints; every other length
is one byte."""
_TWO_BYTES: Final = 0x4000
"""Numbers below this are varints of at most two bytes."""
_ONE_BYTE_VARINTS: Final = tuple(bytes((value,)) for value in range(0x80))
_WEIGHTS: Final = tuple(b"\x08" + bytes((value,)) for value in range(0x80))
"""A UInt32Value's value field (1) for the values of one byte."""


def metadata(values: Mapping[str, Any] | None) -> bytes | None:
    """The serialized ``Metadata`` with ``values`` as its filter metadata, or None without values."""
    if not values:
        return None
    message = base_pb2.Metadata()
    for key, value in values.items():
        message.filter_metadata[key].update(value)
    data: bytes = message.SerializeToString(deterministic=True)
    return data


_MTLS: Final = metadata({"envoy.transport_socket_match": {"tlsMode": TLS_MODE_ISTIO}})
assert _MTLS is not None
ISTIO_MTLS_METADATA: Final[bytes] = _MTLS
"""Metadata.filter_metadata's entry ``envoy.transport_socket_match: {tlsMode: istio}``, as a whole field.

A Metadata holding only filter_metadata is its entries one after the other (sorted by key), so this entry
starts the metadata of an endpoint that takes Istio mTLS: it sorts before ``istio``.
"""


def _field(tag: bytes, data: bytes) -> bytes:
    """A length-delimited field: its tag, the length of ``data``, then ``data``."""
    return tag + varint(len(data)) + data


def _two_bytes(value: int) -> bytes:
    """The varint of a number from 128 to 16383."""
    return bytes(((value & 0x7F) | 0x80, value >> 7))


def _address(address: str, port: int) -> bytes:
    """The serialized ``Address`` of an endpoint: a pipe for ``unix://`` paths, else a socket address."""
    if address.startswith(_UNIX):
        path = address[_UNIX_LENGTH:].encode()
        return _field(b"\x12", _field(b"\x0a", path) if path else b"")
    text = address.encode()
    socket = _field(b"\x12", text) if text else b""
    if port:
        socket += b"\x18" + varint(port)
    return _field(b"\x0a", socket)


def _istio_entry(workload: bytes) -> bytes:
    """Metadata.filter_metadata's entry ``istio: {workload: <workload>}``, as a whole field."""
    size = len(workload)
    if size < _SHORT:
        return _ISTIO_WORKLOAD % (size + 25, size + 16, size + 14, size + 2, size, workload)
    struct = _field(b"\x0a", _field(b"\x0a\x08workload\x12", _field(b"\x1a", workload)))
    return _field(b"\x0a", _field(b"\x0a\x05istio\x12", struct))


def lb_endpoint_field(endpoint: Endpoint, port: int, mtls: bool) -> bytes:
    """An endpoint as a LocalityLbEndpoints.lb_endpoints field (2): its tag, its length and its LbEndpoint.

    Args:
        endpoint: the endpoint.
        port: the port it serves the cluster's service port on.
        mtls: its metadata says ``tlsMode: istio`` (see :class:`~._endpoints.Member`).
    """
    # Written for every endpoint of every cluster: the common case (a socket address, a port and a workload
    # string short enough for :data:`_LB_ENDPOINT_FIELD`) is one formatting; anything else takes the general path.
    text = endpoint.address
    workload = workload_label(endpoint).encode()
    status = endpoint.health
    if endpoint.labels.get(DRAINING_LABEL):
        health = _DRAINING
    else:  # an enum's hash is a Python call: the common case does without
        health = _HEALTHY if status is HealthStatus.HEALTHY else _HEALTH[status]
    weight = endpoint.weight
    weight_value = (_WEIGHTS[weight] if weight < _ONE_BYTE else b"\x08" + varint(weight)) if weight else b""
    if text and 0 < port < _TWO_BYTES and len(workload) < _SHORT and not text.startswith(_UNIX):
        host = text.encode()
        port_value = _ONE_BYTE_VARINTS[port] if port < _ONE_BYTE else _two_bytes(port)
        mtls_entry = ISTIO_MTLS_METADATA if mtls else b""
        size = len(workload)
        socket = len(host) + 3 + len(port_value)
        metadata = size + 27 + len(mtls_entry)
        metadata_length = _ONE_BYTE_VARINTS[metadata] if metadata < _ONE_BYTE else _two_bytes(metadata)
        body = socket + 7 + len(health) + len(metadata_length) + metadata + 2 + len(weight_value)
        if socket < _ONE_BYTE - 4 and body < _TWO_BYTES:
            body_length = _ONE_BYTE_VARINTS[body] if body < _ONE_BYTE else _two_bytes(body)
            return _LB_ENDPOINT_FIELD % (  # one tuple: building it from parts costs as much as the formatting
                body_length,
                socket + 4,
                socket + 2,
                socket,
                len(host),
                host,
                port_value,
                health,
                metadata_length,
                mtls_entry,
                size + 25,
                size + 16,
                size + 14,
                size + 2,
                size,
                workload,
                len(weight_value),
                weight_value,
            )
    address = _address(text, port)
    metadata_value = ISTIO_MTLS_METADATA + _istio_entry(workload) if mtls else _istio_entry(workload)
    body_value = (
        _field(b"\x0a", _field(b"\x0a", address))
        + health
        + _field(b"\x1a", metadata_value)
        + b"\x22%c" % len(weight_value)
        + weight_value
    )
    return b"\x12" + varint(len(body_value)) + body_value


Written = tuple[Locality, Sequence[bytes], int]
"""A locality group written: its locality, its lb_endpoints fields (:func:`lb_endpoint_field`), its weight."""


@final
class AssignmentWriter:
    """Writes ClusterLoadAssignments, keeping what they share (the fields of localities) from one to the next."""

    def __init__(self) -> None:
        self._localities: dict[Locality, bytes] = {}

    def cluster_load_assignment(
        self, name: str, groups: Iterable[LocalityGroup] = (), metadata: bytes | None = None
    ) -> bytes:
        """The serialized ``ClusterLoadAssignment`` of a cluster and its locality groups.

        Args:
            name: the cluster name.
            groups: the locality groups.
            metadata: the serialized Metadata of every group, if any.
        """
        written = (
            (group.locality, [lb_endpoint_field(*member) for member in group.members], group.weight, group.priority)
            for group in groups
        )
        return self._assignment(name, written, metadata)

    def written(self, name: str, groups: Iterable[Written], metadata: bytes | None) -> bytes:
        """The serialized ``ClusterLoadAssignment`` of a cluster whose groups are written already (priority 0)."""
        return self._assignment(name, ((locality, fields, weight, 0) for locality, fields, weight in groups), metadata)

    def _assignment(
        self, name: str, groups: Iterable[tuple[Locality, Sequence[bytes], int, int]], metadata: bytes | None
    ) -> bytes:
        text = name.encode()
        parts = [_field(b"\x0a", text)] if text else []
        for locality, fields, weight, priority in groups:
            group = [self._locality(locality), *fields]
            if fields:
                group.append(_field(b"\x1a", b"\x08" + varint(max(weight, 1))))
            if priority:
                group.append(b"\x28" + varint(priority))
            if metadata is not None:
                group.append(_field(b"\x4a", metadata))
            parts.append(_field(b"\x12", b"".join(group)))
        return b"".join(parts)

    def _locality(self, locality: Locality) -> bytes:
        """LocalityLbEndpoints.locality (1) of a locality; nothing for the unknown one."""
        found = self._localities.get(locality)
        if found is None:
            fields = b""
            if not locality.is_empty:
                for tag, level in ((b"\x0a", locality.region), (b"\x12", locality.zone), (b"\x1a", locality.subzone)):
                    if level:
                        fields += _field(tag, level.encode())
            found = self._localities[locality] = _field(b"\x0a", fields) if not locality.is_empty else b""
        return found
