"""mesh_xds: serve Envoy (and proxyless gRPC) over xDS from your own code.

Like go-control-plane, the serving half knows nothing of Istio's config: you pack Envoy resources
(``xds-protos`` messages) into :class:`Resource` objects, group them into a :class:`Snapshot` per proxy,
put the snapshot in a :class:`SnapshotCache`, and an :class:`XdsServer` serves it over ADS, state of the
world and Delta, on grpc.aio. Resources are held as serialized bytes shared between every proxy that has
them, so a push to many proxies costs little more than writing bytes. An :class:`SdsServer` serves secrets
from any :class:`SecretProvider`.

Example::

    from mesh_xds import Snapshot, SnapshotCache, XdsServer

    cache = SnapshotCache()
    server = XdsServer(cache)
    port = await server.start("127.0.0.1:0")
    cache.set_snapshot("my-envoy", Snapshot.from_messages([cluster, load_assignment, listener, route]))
    await server.wait_synced("my-envoy")

See ``docs/xds.md`` for the whole API, and :mod:`mesh_xds.testing` for an ADS client to test with.
"""

from mesh_xds._version import __version__
from mesh_xds.cache import ConfigWatcher, SnapshotCache, ViewHandler
from mesh_xds.errors import (
    ClientError,
    InconsistentSnapshotError,
    InvalidResourceError,
    ProtocolError,
    ServerError,
    XdsError,
)
from mesh_xds.metrics import XdsMetrics
from mesh_xds.node import ClusterHash, NodeHash, NodeIdHash, NodeInfo
from mesh_xds.resource import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    PUSH_ORDER,
    ROUTE_TYPE,
    SECRET_TYPE,
    Reference,
    Resource,
    pack,
    references,
    resource_name,
    unpack,
)
from mesh_xds.sds import SdsServer
from mesh_xds.secret import (
    InMemorySecretProvider,
    SecretChangeHandler,
    SecretData,
    SecretProvider,
    TlsSecret,
    secret_resource,
)
from mesh_xds.server import XdsServer
from mesh_xds.snapshot import MissingReference, ResourceSet, Snapshot
from mesh_xds.status import Ack, Nack, Sent, StreamKind, StreamStatus, SyncState, TypeStatus
from mesh_xds.status_client import (
    DEFAULT_XDS_ADDRESS,
    ProxyResource,
    ProxyStatus,
    ProxyTypeStatus,
    StatusUnavailableError,
    UnknownProxyError,
    fetch_proxy_statuses,
    find_proxy,
    proxy_statuses,
)

__all__ = [
    "CLUSTER_TYPE",
    "DEFAULT_XDS_ADDRESS",
    "ENDPOINT_TYPE",
    "LISTENER_TYPE",
    "PUSH_ORDER",
    "ROUTE_TYPE",
    "SECRET_TYPE",
    "Ack",
    "ClientError",
    "ClusterHash",
    "ConfigWatcher",
    "InMemorySecretProvider",
    "InconsistentSnapshotError",
    "InvalidResourceError",
    "MissingReference",
    "Nack",
    "NodeHash",
    "NodeIdHash",
    "NodeInfo",
    "ProtocolError",
    "ProxyResource",
    "ProxyStatus",
    "ProxyTypeStatus",
    "Reference",
    "Resource",
    "ResourceSet",
    "SdsServer",
    "SecretChangeHandler",
    "SecretData",
    "SecretProvider",
    "Sent",
    "ServerError",
    "Snapshot",
    "SnapshotCache",
    "StatusUnavailableError",
    "StreamKind",
    "StreamStatus",
    "SyncState",
    "TlsSecret",
    "TypeStatus",
    "UnknownProxyError",
    "ViewHandler",
    "XdsError",
    "XdsMetrics",
    "XdsServer",
    "__version__",
    "fetch_proxy_statuses",
    "find_proxy",
    "pack",
    "proxy_statuses",
    "references",
    "resource_name",
    "secret_resource",
    "unpack",
]
