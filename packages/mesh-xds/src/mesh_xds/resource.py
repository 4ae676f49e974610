"""xDS resources: type URLs, the push order, packing into ``Any`` and the references between resources.

A :class:`Resource` is one named xDS resource held as the bytes of a serialized ``google.protobuf.Any``,
with a content-hash version and the references it makes to other resources. It is packed once and then
written into the responses of every proxy that should have it, without being parsed or serialized again::

    from envoy.config.cluster.v3 import cluster_pb2
    from mesh_xds.resource import CLUSTER_TYPE, pack

    cluster = pack(cluster_pb2.Cluster(name="reviews", type=cluster_pb2.Cluster.EDS, ...))
    assert cluster.type_url == CLUSTER_TYPE and cluster.name == "reviews"

Envoy's protobufs come from ``xds-protos``; they have no type stubs, so the functions that walk them take
``google.protobuf.message.Message`` and read fields dynamically.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from typing import Any, Final, final

import attrs
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import extension_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2, scoped_route_pb2
from envoy.extensions.clusters.aggregate.v3 import cluster_pb2 as aggregate_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2, tls_pb2
from envoy.service.runtime.v3 import rtds_pb2
from google.protobuf import any_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError, Message

from mesh_xds import _wire
from mesh_xds._text import describe
from mesh_xds.errors import InvalidResourceError

__all__ = [
    "CLUSTER_TYPE",
    "ENDPOINT_TYPE",
    "EXTENSION_CONFIG_TYPE",
    "LISTENER_TYPE",
    "PUSH_ORDER",
    "ROUTE_TYPE",
    "RUNTIME_TYPE",
    "SCOPED_ROUTE_TYPE",
    "SECRET_TYPE",
    "TYPE_PREFIX",
    "VIRTUAL_HOST_TYPE",
    "Reference",
    "Resource",
    "is_wildcard_type",
    "pack",
    "push_order",
    "references",
    "resource_name",
    "short_type",
    "type_url_of",
    "unpack",
    "unpack_any",
]

TYPE_PREFIX: Final = "type.googleapis.com/"
"""The prefix of every type URL."""

CLUSTER_TYPE: Final = TYPE_PREFIX + "envoy.config.cluster.v3.Cluster"
"""CDS: ``envoy.config.cluster.v3.Cluster``."""
ENDPOINT_TYPE: Final = TYPE_PREFIX + "envoy.config.endpoint.v3.ClusterLoadAssignment"
"""EDS: ``envoy.config.endpoint.v3.ClusterLoadAssignment``."""
LISTENER_TYPE: Final = TYPE_PREFIX + "envoy.config.listener.v3.Listener"
"""LDS: ``envoy.config.listener.v3.Listener``."""
ROUTE_TYPE: Final = TYPE_PREFIX + "envoy.config.route.v3.RouteConfiguration"
"""RDS: ``envoy.config.route.v3.RouteConfiguration``."""
SECRET_TYPE: Final = TYPE_PREFIX + "envoy.extensions.transport_sockets.tls.v3.Secret"
"""SDS: ``envoy.extensions.transport_sockets.tls.v3.Secret``."""
VIRTUAL_HOST_TYPE: Final = TYPE_PREFIX + "envoy.config.route.v3.VirtualHost"
"""VHDS: ``envoy.config.route.v3.VirtualHost``."""
SCOPED_ROUTE_TYPE: Final = TYPE_PREFIX + "envoy.config.route.v3.ScopedRouteConfiguration"
"""SRDS: ``envoy.config.route.v3.ScopedRouteConfiguration``."""
RUNTIME_TYPE: Final = TYPE_PREFIX + "envoy.service.runtime.v3.Runtime"
"""RTDS: ``envoy.service.runtime.v3.Runtime``."""
EXTENSION_CONFIG_TYPE: Final = TYPE_PREFIX + "envoy.config.core.v3.TypedExtensionConfig"
"""ECDS: ``envoy.config.core.v3.TypedExtensionConfig``."""

PUSH_ORDER: Final[tuple[str, ...]] = (CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE, SECRET_TYPE)
"""The order in which a changed view is pushed: CDS, EDS, LDS, RDS, SDS (Istio's order).

Make before break: a cluster and its endpoints arrive before the listeners and routes that use them.
Other types follow, sorted by type URL.
"""

_SHORT_NAMES: Final = {
    CLUSTER_TYPE: "cds",
    ENDPOINT_TYPE: "eds",
    LISTENER_TYPE: "lds",
    ROUTE_TYPE: "rds",
    SECRET_TYPE: "sds",
    VIRTUAL_HOST_TYPE: "vhds",
    SCOPED_ROUTE_TYPE: "srds",
    RUNTIME_TYPE: "rtds",
    EXTENSION_CONFIG_TYPE: "ecds",
}
# Types a client names explicitly; the others take wildcard subscriptions (Istio's IsWildcardTypeURL).
_NAMED_ONLY: Final = frozenset({ENDPOINT_TYPE, ROUTE_TYPE, SECRET_TYPE, VIRTUAL_HOST_TYPE, EXTENSION_CONFIG_TYPE})
_ORDER: Final = {type_url: index for index, type_url in enumerate(PUSH_ORDER)}
_ANY_PREFIXES: Final = {type_url: _wire.any_prefix(type_url) for type_url in _SHORT_NAMES}
_MESSAGES_WITH_OTHER_NAMES: Final = {
    endpoint_pb2.ClusterLoadAssignment.DESCRIPTOR.full_name: "cluster_name",
}
# Keep the modules of every well-known type imported, so that unpack() finds their classes.
_KNOWN_MESSAGES: Final = (
    cluster_pb2.Cluster,
    endpoint_pb2.ClusterLoadAssignment,
    listener_pb2.Listener,
    route_pb2.RouteConfiguration,
    route_components_pb2.VirtualHost,
    scoped_route_pb2.ScopedRouteConfiguration,
    secret_pb2.Secret,
    rtds_pb2.Runtime,
    extension_pb2.TypedExtensionConfig,
)


def short_type(type_url: str) -> str:
    """The short name of a type used in logs and metric labels: ``cds``, ``eds``, ``lds``, ``rds``, ``sds``...

    Other types are named by the last part of their message name, in lower case.
    """
    return _SHORT_NAMES.get(type_url) or type_url.rsplit(".", 1)[-1].lower()


def is_wildcard_type(type_url: str) -> bool:
    """True when a client may subscribe to every resource of the type (LDS, CDS and custom types).

    EDS, RDS, SDS, VHDS and ECDS resources are always named by the client, as in Istio.
    """
    return type_url not in _NAMED_ONLY


def push_order(type_urls: Iterable[str]) -> tuple[str, ...]:
    """Type URLs in push order: :data:`PUSH_ORDER` first, then the others sorted."""
    return tuple(sorted(set(type_urls), key=lambda url: (_ORDER.get(url, len(_ORDER)), url)))


def type_url_of(message: Message) -> str:
    """The type URL of a protobuf message, e.g. :data:`CLUSTER_TYPE` for a ``Cluster``."""
    return TYPE_PREFIX + message.DESCRIPTOR.full_name


def resource_name(message: Message) -> str:
    """The name of a resource message: ``cluster_name`` of a ClusterLoadAssignment, else its ``name`` field.

    Raises:
        InvalidResourceError: the message type has no name field.
    """
    full_name = message.DESCRIPTOR.full_name
    field = _MESSAGES_WITH_OTHER_NAMES.get(full_name, "name")
    if field not in message.DESCRIPTOR.fields_by_name:
        raise InvalidResourceError(f"a {full_name} has no name field; give the resource a name explicitly")
    value = getattr(message, field)
    if not isinstance(value, str):
        raise InvalidResourceError(f"the {field} field of a {full_name} is not a string")
    return value


@final
@attrs.frozen
class Reference:
    """A reference from one resource to another, e.g. from a listener to its route configuration.

    Attributes:
        type_url: the type of the resource referred to.
        name: its name.
        via_ads: True when the resource is expected from the same ADS stream (its config source is ``ads``
            or ``self``); False when it comes from elsewhere (another xDS server, a file, a static secret).
            Clusters named by routes and TCP proxies are always ``via_ads``.
    """

    type_url: str
    name: str
    via_ads: bool = True


def _reference_set(found: Iterable[Reference]) -> frozenset[Reference]:
    return frozenset(found)


@final
@attrs.frozen
class Resource:
    """One named xDS resource, held as the bytes of a serialized ``google.protobuf.Any``.

    The same object (and so the same bytes) is shared by every snapshot and every proxy that holds the
    resource. Two resources are equal when their type, name and content are.

    Attributes:
        type_url: the resource's type URL.
        name: the resource's name.
        any_bytes: the serialized ``Any``.
        references: the resources this one refers to (see :func:`references`).
        version: a hash of ``any_bytes``: equal content, equal version, in every process.
    """

    type_url: str
    name: str
    any_bytes: bytes = attrs.field(repr=False, eq=False)
    references: frozenset[Reference] = attrs.field(default=frozenset(), converter=_reference_set, repr=False, eq=False)
    version: str = attrs.field(init=False)
    _sotw_header: bytes = attrs.field(init=False, repr=False, eq=False)
    _delta: tuple[bytes, bytes] | None = attrs.field(init=False, default=None, repr=False, eq=False)
    """What goes around the Any in a delta response, worked out the first time a delta response holds it."""

    def __attrs_post_init__(self) -> None:
        prefix = _known_prefix(self.type_url)
        if not isinstance(self.name, str) or not self.name:
            raise InvalidResourceError(
                f"a {short_type(self.type_url)} resource needs a name, got {describe(self.name)}"
            )
        if not isinstance(self.any_bytes, bytes) or not self.any_bytes.startswith(prefix):
            raise InvalidResourceError(
                f"resource {describe(self.name)}: any_bytes is not a serialized Any of {describe(self.type_url)}"
            )
        version = hashlib.blake2b(self.any_bytes, digest_size=8).hexdigest()
        object.__setattr__(self, "version", version)
        object.__setattr__(self, "_sotw_header", _wire.header(2, len(self.any_bytes)))

    @classmethod
    def from_value(cls, type_url: str, name: str, value: bytes, references: Iterable[Reference] = ()) -> Resource:
        """A resource from the serialized message (not yet packed in an ``Any``)."""
        prefix = _known_prefix(type_url)
        any_bytes = b"".join((prefix, _wire.header(2, len(value)), value)) if value else prefix
        return cls(type_url, name, any_bytes, references)

    def sotw_parts(self) -> tuple[bytes, bytes]:
        """The bytes of this resource as field ``resources`` of a ``DiscoveryResponse`` (header, Any)."""
        return self._sotw_header, self.any_bytes

    def delta_parts(self) -> tuple[bytes, bytes, bytes]:
        """The bytes of this resource as field ``resources`` of a ``DeltaDiscoveryResponse``."""
        delta = self._delta
        if delta is None:  # two threads may both work it out: they find the same bytes
            delta = _wire.delta_resource_parts(self.name, self.version, len(self.any_bytes))
            object.__setattr__(self, "_delta", delta)
        return delta[0], self.any_bytes, delta[1]


def _known_prefix(type_url: object) -> bytes:
    """What a serialized ``Any`` of the type starts with, after checking the type URL (known ones are valid)."""
    prefix = _ANY_PREFIXES.get(type_url) if type(type_url) is str else None
    if prefix is None:
        _check_type_url(type_url)
        assert isinstance(type_url, str)
        prefix = _wire.any_prefix(type_url)
    return prefix


def _any_prefix(type_url: str) -> bytes:
    """What a serialized ``Any`` of the type starts with: its type_url field (1), encoded once for known types."""
    return _ANY_PREFIXES.get(type_url) or _wire.any_prefix(type_url)


def _check_type_url(type_url: object) -> None:
    if not isinstance(type_url, str) or not type_url.startswith(TYPE_PREFIX) or len(type_url) == len(TYPE_PREFIX):
        raise InvalidResourceError(f"type URL {describe(type_url)} does not look like {TYPE_PREFIX}<message name>")


def pack(message: Message, *, name: str | None = None) -> Resource:
    """Pack a resource message (or an ``Any`` holding one) into a :class:`Resource`.

    Serialization is deterministic, so the same message always gives the same bytes and version.

    Args:
        message: a Cluster, ClusterLoadAssignment, Listener, RouteConfiguration, Secret, ... or an Any.
        name: the resource name; by default the message's own (see :func:`resource_name`).

    Raises:
        InvalidResourceError: the message has no name, or an Any holds a type this process cannot read.
    """
    if isinstance(message, any_pb2.Any):
        inner = unpack_any(message)
        type_url = message.type_url
        data = message.SerializeToString(deterministic=True)
    else:
        inner = message
        type_url = type_url_of(message)
        data = _wire.any_bytes(type_url, message.SerializeToString(deterministic=True))  # what the Any would be
    resource_label = resource_name(inner) if name is None else name
    return Resource(type_url, resource_label, data, references(inner))


def unpack_any(value: any_pb2.Any) -> Message:
    """The message held by an ``Any``.

    Raises:
        InvalidResourceError: the type is unknown to this process, or the bytes do not parse.
    """
    full_name = value.type_url.rpartition("/")[2]
    try:
        descriptor = descriptor_pool.Default().FindMessageTypeByName(full_name)
    except KeyError:
        raise InvalidResourceError(f"type URL {describe(value.type_url)} names no known message") from None
    message_class = message_factory.GetMessageClass(descriptor)
    try:
        return message_class.FromString(value.value)
    except DecodeError as error:
        raise InvalidResourceError(f"an Any of {describe(value.type_url)} does not parse: {error}") from None


def unpack(resource: Resource) -> Message:
    """The message a resource holds, parsed again from its bytes (for tests and debugging).

    Raises:
        InvalidResourceError: the type is unknown to this process, or the bytes do not parse.
    """
    return unpack_any(any_pb2.Any.FromString(resource.any_bytes))


# ------------------------------------------------------------------------------------------ references
# Envoy's messages have no type stubs: the walkers below read their fields dynamically.
_Proto = Any

_HCM: Final = http_connection_manager_pb2.HttpConnectionManager
_TCP_PROXY: Final = tcp_proxy_pb2.TcpProxy
_TLS_CONTEXTS: Final = {
    context.DESCRIPTOR.full_name: context for context in (tls_pb2.DownstreamTlsContext, tls_pb2.UpstreamTlsContext)
}
"""The TLS contexts of transport sockets, by message name."""
_AGGREGATE: Final = aggregate_pb2.ClusterConfig


def references(message: Message) -> frozenset[Reference]:
    """The resources a Listener, RouteConfiguration, VirtualHost, ScopedRouteConfiguration or Cluster refers to.

    - Listener: the RDS route configurations of its HTTP connection managers (in filter chains and in an
      ``api_listener``), the clusters of inline route configurations and of TCP proxies, and the SDS
      secrets of its TLS transport sockets.
    - RouteConfiguration, VirtualHost: the clusters of routes (single, weighted and mirror).
    - ScopedRouteConfiguration: its route configuration.
    - Cluster: its EDS load assignment (``service_name``, else the cluster name), the SDS secrets of its
      TLS transport sockets, and the clusters of an aggregate cluster.

    Other messages refer to nothing. Filters configured through ECDS, cluster headers and cluster
    specifier plugins are not followed.
    """
    walker = _WALKERS.get(message.DESCRIPTOR.full_name)
    return frozenset(walker(message)) if walker is not None else frozenset()


def _via_ads(config_source: _Proto) -> bool:
    return bool(config_source.WhichOneof("config_source_specifier") in ("ads", "self"))


def _unpacked(typed_config: _Proto, message_class: _Proto) -> _Proto | None:
    if typed_config.type_url.rpartition("/")[2] != message_class.DESCRIPTOR.full_name:
        return None
    try:
        return message_class.FromString(typed_config.value)
    except DecodeError:
        return None


def _listener(listener: _Proto) -> Iterator[Reference]:
    chains = list(listener.filter_chains)
    if listener.HasField("default_filter_chain"):
        chains.append(listener.default_filter_chain)
    for chain in chains:
        for network_filter in chain.filters:
            if network_filter.HasField("typed_config"):
                yield from _network_filter(network_filter.typed_config)
        if chain.HasField("transport_socket"):
            yield from _transport_socket(chain.transport_socket)
    if listener.HasField("api_listener") and listener.api_listener.HasField("api_listener"):
        yield from _network_filter(listener.api_listener.api_listener)


def _network_filter(typed_config: _Proto) -> Iterator[Reference]:
    manager = _unpacked(typed_config, _HCM)
    if manager is not None:
        specifier = manager.WhichOneof("route_specifier")
        if specifier == "rds":
            yield Reference(ROUTE_TYPE, manager.rds.route_config_name, _via_ads(manager.rds.config_source))
        elif specifier == "route_config":
            yield from _route_configuration(manager.route_config)
        return
    proxy = _unpacked(typed_config, _TCP_PROXY)
    if proxy is not None:
        if proxy.WhichOneof("cluster_specifier") == "cluster":
            yield Reference(CLUSTER_TYPE, proxy.cluster)
        else:
            yield from (Reference(CLUSTER_TYPE, weighted.name) for weighted in proxy.weighted_clusters.clusters)


def _transport_socket(socket: _Proto) -> Iterator[Reference]:
    if not socket.HasField("typed_config"):
        return
    typed_config = socket.typed_config
    context_class = _TLS_CONTEXTS.get(typed_config.type_url.rpartition("/")[2])
    if context_class is None:
        return
    try:
        context = context_class.FromString(typed_config.value)
    except DecodeError:
        return
    common = context.common_tls_context
    for config in common.tls_certificate_sds_secret_configs:
        yield _secret(config)
    if common.HasField("validation_context_sds_secret_config"):
        yield _secret(common.validation_context_sds_secret_config)
    if common.HasField("combined_validation_context"):
        combined = common.combined_validation_context
        if combined.HasField("validation_context_sds_secret_config"):
            yield _secret(combined.validation_context_sds_secret_config)


def _secret(config: _Proto) -> Reference:
    return Reference(SECRET_TYPE, config.name, config.HasField("sds_config") and _via_ads(config.sds_config))


def _route_configuration(configuration: _Proto) -> Iterator[Reference]:
    for host in configuration.virtual_hosts:
        yield from _virtual_host(host)


def _virtual_host(host: _Proto) -> Iterator[Reference]:
    for route in host.routes:
        if route.WhichOneof("action") != "route":
            continue
        action = route.route
        specifier = action.WhichOneof("cluster_specifier")
        if specifier == "cluster":
            yield Reference(CLUSTER_TYPE, action.cluster)
        elif specifier == "weighted_clusters":
            yield from (Reference(CLUSTER_TYPE, weighted.name) for weighted in action.weighted_clusters.clusters)
        for mirror in action.request_mirror_policies:
            if mirror.cluster:
                yield Reference(CLUSTER_TYPE, mirror.cluster)


def _scoped_route(scope: _Proto) -> Iterator[Reference]:
    if scope.route_configuration_name:
        yield Reference(ROUTE_TYPE, scope.route_configuration_name)


def _cluster(cluster: _Proto) -> Iterator[Reference]:
    discovery = cluster.WhichOneof("cluster_discovery_type")
    if discovery == "type" and cluster.type == cluster_pb2.Cluster.EDS:
        config = cluster.eds_cluster_config
        via_ads = config.HasField("eds_config") and _via_ads(config.eds_config)
        yield Reference(ENDPOINT_TYPE, config.service_name or cluster.name, via_ads)
    elif discovery == "cluster_type" and cluster.cluster_type.HasField("typed_config"):
        aggregate = _unpacked(cluster.cluster_type.typed_config, _AGGREGATE)
        if aggregate is not None:
            yield from (Reference(CLUSTER_TYPE, name) for name in aggregate.clusters)
    if cluster.HasField("transport_socket"):
        yield from _transport_socket(cluster.transport_socket)
    for match in cluster.transport_socket_matches:
        if match.HasField("transport_socket"):
            yield from _transport_socket(match.transport_socket)


_WALKERS: Final = {
    listener_pb2.Listener.DESCRIPTOR.full_name: _listener,
    route_pb2.RouteConfiguration.DESCRIPTOR.full_name: _route_configuration,
    route_components_pb2.VirtualHost.DESCRIPTOR.full_name: _virtual_host,
    scoped_route_pb2.ScopedRouteConfiguration.DESCRIPTOR.full_name: _scoped_route,
    cluster_pb2.Cluster.DESCRIPTOR.full_name: _cluster,
}
