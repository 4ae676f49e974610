"""Outbound clusters written as protobuf wire bytes around a shared shape (private).

Most outbound clusters of a proxy differ from one another only by their name, their EDS service name, their
metadata and their TLS context's SNI and SANs: what their type and traffic policy make of the rest (their
*shape*) is the same for every cluster of the same policy. A :class:`ClusterShape` is that rest, serialized once
and cut where the cluster's own fields go; a cluster is then the shape's fields with its own put in their
places, in field-number order as ``SerializeToString(deterministic=True)`` writes them.

Field numbers, from ``envoy.config.cluster.v3``: ``Cluster``: name 1, eds_cluster_config 3, transport_socket
24, metadata 25, alt_stat_name 28, transport_socket_matches 43. ``Cluster.EdsClusterConfig``: eds_config 1,
service_name 2.
"""

from __future__ import annotations

from typing import Final, final

from mesh_xds import _wire

__all__ = ["ClusterShape"]

_NAME: Final = 1
_EDS_CLUSTER_CONFIG: Final = 3
_TRANSPORT_SOCKET: Final = 24
_METADATA: Final = 25
_ALT_STAT_NAME: Final = 28
_TRANSPORT_SOCKET_MATCHES: Final = 43
_OWN: Final = frozenset({_NAME, _TRANSPORT_SOCKET, _METADATA, _ALT_STAT_NAME, _TRANSPORT_SOCKET_MATCHES})
"""The fields every cluster has of its own (the EDS config is the shape's, but for its service name)."""


@final
class ClusterShape:
    """A serialized cluster but for its own fields, cut where those go.

    Args:
        serialized: the deterministic serialization of a Cluster without name, metadata, alt_stat_name and
            transport sockets; its EDS config, if any, has no service name.

    Raises:
        ValueError: the cluster has one of its own fields, or several EDS configs.
    """

    __slots__ = ("_after_alt_stat_name", "_after_metadata", "_before_sockets", "_eds", "_head", "_tail")

    def __init__(self, serialized: bytes) -> None:
        fields = _wire.split_fields(serialized)
        own = sorted({number for number, _, _ in fields} & _OWN)
        if own:
            raise ValueError(f"a cluster shape has no fields {own}")
        eds = [payload for number, _, payload in fields if number == _EDS_CLUSTER_CONFIG]
        if len(eds) > 1:
            raise ValueError("a cluster shape has one EDS config at most")

        def between(low: int, high: int) -> bytes:
            return b"".join(whole for number, whole, _ in fields if low < number < high)

        self._head = between(_NAME, _EDS_CLUSTER_CONFIG)
        self._eds = eds[0] if eds else None
        self._before_sockets = between(_EDS_CLUSTER_CONFIG, _TRANSPORT_SOCKET)
        self._after_metadata = between(_METADATA, _ALT_STAT_NAME)
        self._after_alt_stat_name = between(_ALT_STAT_NAME, _TRANSPORT_SOCKET_MATCHES)
        self._tail = between(_TRANSPORT_SOCKET_MATCHES, 2**29)

    @property
    def eds(self) -> bool:
        """The cluster has an EDS config (whose service name is the cluster's name)."""
        return self._eds is not None

    def cluster(self, name: str, alt_stat_name: str, metadata: bytes, sockets: tuple[bytes, bytes]) -> bytes:
        """The serialized cluster of this shape.

        Args:
            name: the cluster's name (and its EDS service name).
            alt_stat_name: its alt_stat_name.
            metadata: its serialized Metadata.
            sockets: its serialized transport_socket field (24) and transport_socket_matches fields (43), each
                possibly empty.
        """
        socket, matches = sockets
        eds = b"" if self._eds is None else _wire.field(_EDS_CLUSTER_CONFIG, self._eds + _wire.text(2, name))
        return b"".join(
            (
                _wire.text(_NAME, name),
                self._head,
                eds,
                self._before_sockets,
                socket,
                _wire.header(_METADATA, len(metadata)),
                metadata,
                self._after_metadata,
                _wire.text(_ALT_STAT_NAME, alt_stat_name),
                self._after_alt_stat_name,
                matches,
                self._tail,
            )
        )
