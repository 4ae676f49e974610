"""Who is asking: the node an xDS client names on the first request of its stream.

:class:`NodeInfo` is the part of Envoy's ``config.core.v3.Node`` that a cache needs to choose a view: the
id, the service cluster, the metadata (as plain JSON-like values), the locality and the user agent. The
node's list of extensions (61 KB on Envoy 1.40) is not kept. To read Istio's conventions from it, use
``mesh_model.Proxy.parse(node.id, node.metadata)``.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from typing import Any, Protocol, final, runtime_checkable

import attrs
from envoy.config.core.v3 import base_pb2
from google.protobuf import json_format, struct_pb2
from google.protobuf.message import Message

from mesh_xds._text import describe
from mesh_xds.errors import InvalidResourceError

__all__ = ["ClusterHash", "NodeHash", "NodeIdHash", "NodeInfo"]

_MAX_ID = 4096


def _frozen_mapping(value: Mapping[str, object]) -> Mapping[str, object]:
    return types.MappingProxyType(dict(value))


@final
@attrs.frozen
class NodeInfo:
    """An xDS client's node.

    Attributes:
        id: ``node.id``, e.g. ``sidecar~10.1.1.1~reviews-v1.default~default.svc.cluster.local``.
        cluster: ``node.cluster``, the service cluster.
        metadata: ``node.metadata`` as JSON-like values (numbers are floats, as in a protobuf Struct).
        locality: ``region/zone/subzone``, empty parts left empty; empty when not sent.
        user_agent: ``user_agent_name`` and its version, e.g. ``envoy 1.40.0`` or ``grpc-python 1.85.3``.
    """

    id: str
    cluster: str = ""
    metadata: Mapping[str, object] = attrs.field(factory=dict, converter=_frozen_mapping, eq=False, repr=False)
    locality: str = ""
    user_agent: str = ""

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise InvalidResourceError(f"a node needs a non-empty id, got {describe(self.id)}")
        if len(self.id) > _MAX_ID:
            raise InvalidResourceError(f"node id {describe(self.id)} is longer than {_MAX_ID} characters")

    @classmethod
    def from_proto(cls, node: Message) -> NodeInfo:
        """Read a ``config.core.v3.Node`` message.

        Raises:
            InvalidResourceError: the node has no id (or an id over 4096 characters).
        """
        proto: Any = node  # xds-protos messages have no stubs
        locality = ""
        if proto.HasField("locality"):
            parts = (proto.locality.region, proto.locality.zone, proto.locality.sub_zone)
            locality = "/".join(parts).rstrip("/")
        version = proto.user_agent_version
        if not version and proto.HasField("user_agent_build_version"):
            semantic = proto.user_agent_build_version.version
            version = f"{semantic.major_number}.{semantic.minor_number}.{semantic.patch}"
        user_agent = " ".join(part for part in (proto.user_agent_name, version) if part)
        metadata: dict[str, object] = json_format.MessageToDict(proto.metadata) if proto.HasField("metadata") else {}
        return cls(str(proto.id), str(proto.cluster), metadata, locality, user_agent)

    def to_proto(self) -> Message:
        """This node as a ``config.core.v3.Node`` message (for CSDS)."""
        node: Any = base_pb2.Node(id=self.id, cluster=self.cluster)
        if self.metadata:
            node.metadata.CopyFrom(json_format.ParseDict(dict(self.metadata), struct_pb2.Struct()))
        if self.locality:
            region, zone, sub_zone = ([*self.locality.split("/", 2), "", ""])[:3]
            node.locality.region, node.locality.zone, node.locality.sub_zone = region, zone, sub_zone
        name, _, version = self.user_agent.partition(" ")
        node.user_agent_name = name
        node.user_agent_version = version
        result: Message = node
        return result


@runtime_checkable
class NodeHash(Protocol):
    """Maps a node to the key of its view in a :class:`~mesh_xds.SnapshotCache` (go-control-plane's NodeHash)."""

    def key(self, node: NodeInfo) -> str:
        """The key of the node's view."""


@final
class NodeIdHash:
    """One view per node id (the default)."""

    def key(self, node: NodeInfo) -> str:
        """The node's id."""
        return node.id


@final
class ClusterHash:
    """One view per service cluster (``node.cluster``): every node of a cluster shares it."""

    def key(self, node: NodeInfo) -> str:
        """The node's service cluster."""
        return node.cluster
