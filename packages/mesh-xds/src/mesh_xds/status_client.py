"""Read a control plane's view of its proxies over CSDS: what ``meshctl proxy-status`` and ``proxy-config`` show.

:func:`fetch_proxy_statuses` asks an xDS server's ``ClientStatusDiscoveryService`` (any server that speaks
CSDS: :class:`~mesh_xds.XdsServer`, istiod, or a proxy's own) and returns one :class:`ProxyStatus` per
connected client: the node, each type's :class:`ProxyTypeStatus` (SYNCED, NOT SENT, STALE or NACKED, with
the last NACK's message), and the resources it was sent as :class:`ProxyResource` objects, their config in
Envoy's JSON form with key material redacted. :func:`find_proxy` picks one proxy by node id, by Istio name
(``<pod>.<namespace>``) or by a unique prefix of either::

    statuses = fetch_proxy_statuses("127.0.0.1:15010", contents=False)
    for proxy in statuses:
        print(proxy.name, {status.short_type: status.state.value for status in proxy.types.values()})
    reviews = find_proxy(statuses, "reviews-v1")
    [full] = fetch_proxy_statuses("127.0.0.1:15010", node_id=reviews.node.id)
    clusters = [resource.config for resource in full.resources_of(CLUSTER_TYPE)]

:mod:`mesh_xds.envoy_admin` reads the same records from a proxy's admin interface instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final, final

import attrs
import grpc
from envoy.admin.v3 import config_dump_shared_pb2
from envoy.service.status.v3 import csds_pb2, csds_pb2_grpc
from envoy.type.matcher.v3 import node_pb2, string_pb2

from mesh_xds._json import message_to_json, redact_key_material
from mesh_xds._text import describe, describe_names
from mesh_xds.errors import InvalidResourceError, XdsError
from mesh_xds.node import NodeInfo
from mesh_xds.resource import push_order, short_type
from mesh_xds.status import SyncState

__all__ = [
    "DEFAULT_XDS_ADDRESS",
    "ProxyResource",
    "ProxyStatus",
    "ProxyTypeStatus",
    "StatusUnavailableError",
    "UnknownProxyError",
    "fetch_proxy_statuses",
    "find_proxy",
    "proxy_statuses",
]

DEFAULT_XDS_ADDRESS: Final = "127.0.0.1:15010"
"""Where Istio's control plane serves plaintext xDS (and CSDS)."""

_CONFIG_STATES: Final = {
    csds_pb2.SYNCED: SyncState.SYNCED,
    csds_pb2.NOT_SENT: SyncState.NOT_SENT,
    csds_pb2.STALE: SyncState.STALE,
    csds_pb2.ERROR: SyncState.NACKED,
}
_CLIENT_STATES: Final = {
    config_dump_shared_pb2.ACKED: SyncState.SYNCED,
    config_dump_shared_pb2.NACKED: SyncState.NACKED,
    config_dump_shared_pb2.REQUESTED: SyncState.STALE,
    config_dump_shared_pb2.RECEIVED_ERROR: SyncState.NACKED,
}
# The worst state of a type's resources is the type's state.
_SEVERITY: Final = (SyncState.NACKED, SyncState.STALE, SyncState.SYNCED, SyncState.NOT_SENT)
_EPOCH: Final = datetime.fromtimestamp(0, UTC)
_STREAM_NUMBER = re.compile(r"([0-9]+)\Z")


class StatusUnavailableError(XdsError, ConnectionError):
    """A control plane's CSDS, or a proxy's admin interface, could not be reached or gave no usable answer."""


class UnknownProxyError(XdsError, LookupError):
    """No connected proxy matches a name, or more than one does.

    Attributes:
        candidates: the node ids that matched (several), or every node id connected (none matched).
    """

    def __init__(self, message: str, candidates: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.candidates = candidates


@final
@attrs.frozen
class ProxyResource:
    """One resource a proxy was sent (CSDS) or holds (an admin config dump).

    Attributes:
        type_url: the resource's type.
        name: its name.
        version: the version it came with; empty when unknown (static resources).
        state: SYNCED, STALE (sent, not ACKed yet; warming in a config dump) or NACKED.
        last_updated: when it was last sent or taken; ``None`` when unknown.
        error: the client's error message when NACKED.
        config: the resource in Envoy's JSON form with key material redacted; ``None`` when not given
            (CSDS never sends secrets, nor anything when asked without contents).
        static: True for a resource of the proxy's bootstrap (config dumps only).
    """

    type_url: str
    name: str
    version: str = ""
    state: SyncState = SyncState.SYNCED
    last_updated: datetime | None = None
    error: str = ""
    config: Mapping[str, Any] | None = attrs.field(default=None, eq=False, repr=False)
    static: bool = False

    @property
    def short_type(self) -> str:
        """``cds``, ``eds``, ``lds``, ``rds``, ``sds``, ..."""
        return short_type(self.type_url)

    def to_json(self) -> dict[str, Any]:
        """The resource as JSON values (times in ISO 8601, UTC)."""
        out: dict[str, Any] = {"name": self.name, "version": self.version, "status": self.state.value}
        out["last_updated"] = _iso(self.last_updated)
        if self.static:
            out["static"] = True
        if self.error:
            out["error"] = self.error
        if self.config is not None:
            out["config"] = self.config
        return out


@final
@attrs.frozen
class ProxyTypeStatus:
    """How a proxy stands with one type, from its resources' entries.

    Attributes:
        type_url: the type.
        state: the worst state of its resources: NACKED, then STALE, then SYNCED, then NOT SENT.
        version: the version of the last response, empty when unknown or when resources differ (Delta).
        resources: how many named resources the proxy was sent.
        last_updated: the latest time a resource of the type was sent or ACKed.
        nack: the client's error message when NACKED, else empty.
        nack_version: the version the client rejected.
        nack_at: when it was rejected.
    """

    type_url: str
    state: SyncState
    version: str = ""
    resources: int = 0
    last_updated: datetime | None = None
    nack: str = ""
    nack_version: str = ""
    nack_at: datetime | None = None

    @property
    def short_type(self) -> str:
        """``cds``, ``eds``, ``lds``, ``rds``, ``sds``, ``ecds``, ..."""
        return short_type(self.type_url)

    def to_json(self) -> dict[str, Any]:
        """The status as JSON values."""
        out: dict[str, Any] = {"state": self.state.value, "version": self.version, "resources": self.resources}
        out["last_updated"] = _iso(self.last_updated)
        if self.nack:
            out["nack"] = {"message": self.nack, "version": self.nack_version, "at": _iso(self.nack_at)}
        return out


@final
@attrs.frozen
class ProxyStatus:
    """One connected proxy (one stream of it) as the control plane sees it.

    Attributes:
        node: the proxy's node (id, cluster, metadata, locality, user agent).
        client_scope: the stream within the control plane (``ads/sotw/12`` on an XdsServer).
        types: one status per type the proxy asked for, in push order.
        resources: the resources it was sent, in push order and by name.
    """

    node: NodeInfo
    client_scope: str = ""
    types: Mapping[str, ProxyTypeStatus] = attrs.field(factory=dict)
    resources: tuple[ProxyResource, ...] = ()

    @property
    def name(self) -> str:
        """Istio's name of the proxy: the node id's third part (``<pod>.<namespace>``), else the whole id."""
        parts = self.node.id.split("~")
        return parts[2] if len(parts) == 4 and parts[2] else self.node.id

    @property
    def cluster_id(self) -> str:
        """The proxy's cluster (``CLUSTER_ID`` in its metadata), empty when not sent."""
        return _text(self.node.metadata.get("CLUSTER_ID"))

    @property
    def version(self) -> str:
        """The proxy's Istio version (``ISTIO_VERSION``), else the version of its user agent."""
        return _text(self.node.metadata.get("ISTIO_VERSION")) or self.node.user_agent.partition(" ")[2]

    def state(self, type_url: str) -> SyncState:
        """The proxy's state for a type; NOT SENT for a type it never asked for."""
        status = self.types.get(type_url)
        return SyncState.NOT_SENT if status is None else status.state

    @property
    def last_nack(self) -> ProxyTypeStatus | None:
        """The type whose last response the proxy rejected most recently, ``None`` when none is NACKED."""
        nacked = [status for status in self.types.values() if status.nack]
        return max(nacked, key=lambda status: status.nack_at or _EPOCH, default=None)

    def resources_of(self, type_url: str) -> tuple[ProxyResource, ...]:
        """The named resources of one type."""
        return tuple(resource for resource in self.resources if resource.type_url == type_url)

    def to_json(self) -> dict[str, Any]:
        """The proxy's status as JSON values, its types by short name (resources left out)."""
        return {
            "name": self.name,
            "node_id": self.node.id,
            "cluster_id": self.cluster_id,
            "version": self.version,
            "user_agent": self.node.user_agent,
            "client_scope": self.client_scope,
            "types": {status.short_type: status.to_json() for status in self.types.values()},
        }


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _time(message: Any, field: str) -> datetime | None:
    if not message.HasField(field):
        return None
    stamp: datetime = getattr(message, field).ToDatetime(tzinfo=UTC)
    return stamp


def _entry_state(entry: Any) -> SyncState:
    state = _CONFIG_STATES.get(entry.config_status)
    if state is not None:
        return state
    return _CLIENT_STATES.get(entry.client_status, SyncState.NOT_SENT)


def _entry_config(entry: Any) -> Mapping[str, Any] | None:
    if not entry.HasField("xds_config"):
        return None
    config = message_to_json(entry.xds_config)
    config.pop("@type", None)
    redacted: Mapping[str, Any] = redact_key_material(config)
    return redacted


def _resource(entry: Any) -> ProxyResource:
    return ProxyResource(
        type_url=str(entry.type_url),
        name=str(entry.name),
        version=str(entry.version_info),
        state=_entry_state(entry),
        last_updated=_time(entry, "last_updated"),
        error=str(entry.error_state.details) if entry.HasField("error_state") else "",
        config=_entry_config(entry),
    )


def _type_status(type_url: str, entries: Sequence[Any]) -> ProxyTypeStatus:
    states = {_entry_state(entry) for entry in entries}
    state = next((state for state in _SEVERITY if state in states), SyncState.NOT_SENT)
    versions = {str(entry.version_info) for entry in entries}
    times = [stamp for entry in entries if (stamp := _time(entry, "last_updated")) is not None]
    errors = [entry.error_state for entry in entries if entry.HasField("error_state") and entry.error_state.details]
    nack = errors[0] if errors and state is SyncState.NACKED else None
    return ProxyTypeStatus(
        type_url=type_url,
        state=state,
        version=versions.pop() if len(versions) == 1 else "",
        resources=sum(1 for entry in entries if entry.name),
        last_updated=max(times, default=None),
        nack="" if nack is None else str(nack.details),
        nack_version="" if nack is None else str(nack.version_info),
        nack_at=None if nack is None else _time(nack, "last_update_attempt"),
    )


def _proxy_status(config: Any) -> ProxyStatus:
    by_type: dict[str, list[Any]] = {}
    for entry in config.generic_xds_configs:
        by_type.setdefault(str(entry.type_url), []).append(entry)
    order = push_order(by_type)
    types = {type_url: _type_status(type_url, by_type[type_url]) for type_url in order}
    resources = tuple(
        _resource(entry)
        for type_url in order
        for entry in sorted(by_type[type_url], key=lambda entry: str(entry.name))
        if entry.name
    )
    try:
        node = NodeInfo.from_proto(config.node)
    except InvalidResourceError:  # no id, or an id too long to be one
        node = NodeInfo(str(config.node.id)[:80] or "(no node id)")
    return ProxyStatus(node=node, client_scope=str(config.client_scope), types=types, resources=resources)


def proxy_statuses(response: Any) -> tuple[ProxyStatus, ...]:
    """Read a CSDS ``ClientStatusResponse``: one :class:`ProxyStatus` per ``ClientConfig``, sorted by name."""
    statuses = [_proxy_status(config) for config in response.config]
    return tuple(sorted(statuses, key=lambda status: (status.name, status.node.id, _stream_number(status))))


def _stream_number(status: ProxyStatus) -> int:
    match = _STREAM_NUMBER.search(status.client_scope)
    return int(match.group(1)) if match else 0


def fetch_proxy_statuses(
    address: str = DEFAULT_XDS_ADDRESS,
    *,
    node_id: str | None = None,
    contents: bool = True,
    timeout: float = 10.0,
    credentials: grpc.ChannelCredentials | None = None,
) -> tuple[ProxyStatus, ...]:
    """Ask the CSDS of the xDS server at ``address`` for its clients' status.

    Blocking: call it from a worker thread in asynchronous code.

    Args:
        address: ``host:port`` or ``unix:/path`` of the server.
        node_id: ask only for the client with this exact node id.
        contents: include the resources' configs (secrets are never sent); without, the answer is small.
        timeout: seconds to wait for the answer.
        credentials: TLS credentials for the channel; plaintext without.

    Raises:
        StatusUnavailableError: the server cannot be reached, serves no CSDS, or did not answer in time.
    """
    request = csds_pb2.ClientStatusRequest(exclude_resource_contents=not contents)
    if node_id is not None:
        request.node_matchers.append(node_pb2.NodeMatcher(node_id=string_pb2.StringMatcher(exact=node_id)))
    try:
        if credentials is not None:
            channel = grpc.secure_channel(address, credentials)
        else:
            channel = grpc.insecure_channel(address)
    except (ValueError, RuntimeError) as error:
        raise StatusUnavailableError(f"{describe(address)} is not an address of an xDS server: {error}") from None
    with channel:
        stub = csds_pb2_grpc.ClientStatusDiscoveryServiceStub(channel)
        try:
            response = stub.FetchClientStatus(request, timeout=timeout)
        except grpc.RpcError as error:
            raise StatusUnavailableError(_rpc_failure(address, error, timeout)) from None
    return proxy_statuses(response)


def _rpc_failure(address: str, error: Any, timeout: float) -> str:
    code = error.code() if callable(getattr(error, "code", None)) else None
    details = error.details() if callable(getattr(error, "details", None)) else str(error)
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"no answer from the xDS server at {address} within {timeout:g} s"
    if code is grpc.StatusCode.UNIMPLEMENTED:
        return f"the server at {address} does not serve CSDS (envoy.service.status.v3.ClientStatusDiscoveryService)"
    name = code.name if code is not None else "an error"
    return f"cannot reach the xDS server at {address}: {name}: {details}"


def find_proxy(statuses: Iterable[ProxyStatus], query: str) -> ProxyStatus:
    """The proxy a user means: by node id, by Istio name (``<pod>.<namespace>``), or by a unique prefix of either.

    An exact node id or name wins over prefixes. When a proxy has several streams, the newest one (the
    highest stream number in its client scope) is returned.

    Raises:
        UnknownProxyError: no proxy matches, or several proxies do.
    """
    candidates = list(statuses)
    matched = [status for status in candidates if query in (status.node.id, status.name)]
    if not matched and query:
        matched = [status for status in candidates if status.node.id.startswith(query) or status.name.startswith(query)]
    ids = tuple(sorted({status.node.id for status in matched}))
    if len(ids) == 1:
        return max(matched, key=_stream_number)
    if ids:
        raise UnknownProxyError(f"{describe(query)} matches {len(ids)} proxies: {describe_names(ids)}", ids)
    connected = tuple(sorted({status.node.id for status in candidates}))
    if not connected:
        raise UnknownProxyError(f"no proxy matches {describe(query)}: no proxy is connected")
    raise UnknownProxyError(
        f"no proxy matches {describe(query)} ({len(connected)} connected: {describe_names(connected)})", connected
    )
