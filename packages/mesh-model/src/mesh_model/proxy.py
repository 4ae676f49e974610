"""Proxies: who is asking for config, parsed from Envoy's node id and node metadata.

Istio's proxies identify themselves with a node id ``<type>~<ip>~<id>~<dns-domain>``, for example
``sidecar~10.1.1.1~reviews-v1-7f9c.default~default.svc.cluster.local``, and with node metadata (a JSON
object) that carries the namespace, labels, service account, cluster, Istio version, the generator to use
(``grpc`` for proxyless gRPC) and more. :meth:`Proxy.parse` reads both and refuses malformed input with
:class:`~mesh_model.errors.InvalidProxyError`.
"""

from __future__ import annotations

import enum
import ipaddress
import re
import types
from collections.abc import Mapping
from typing import final

import attrs

from mesh_model._text import describe
from mesh_model.errors import InvalidLabelError, InvalidLocalityError, InvalidProxyError
from mesh_model.labels import Labels
from mesh_model.locality import Locality
from mesh_model.spiffe import SpiffeId

__all__ = ["InterceptionMode", "NodeMetadata", "NodeType", "Proxy"]

_SEPARATOR = "~"
_MAX_NODE_ID = 4096
# ASCII digits only, and few of them: int() of a 5000-digit string raises ValueError.
_VERSION = re.compile(r"([0-9]{1,9})(?:\.([0-9]{1,9}))?(?:\.([0-9]{1,9}))?\Z")


class NodeType(enum.Enum):
    """The role of a proxy, the first part of its node id."""

    SIDECAR = "sidecar"
    """An Envoy beside an application."""
    ROUTER = "router"
    """A gateway (ingress or egress)."""
    WAYPOINT = "waypoint"
    """An ambient-mode waypoint proxy."""
    ZTUNNEL = "ztunnel"
    """An ambient-mode node proxy."""


class InterceptionMode(enum.Enum):
    """How traffic reaches the proxy (``INTERCEPTION_MODE`` metadata)."""

    REDIRECT = "REDIRECT"
    """iptables REDIRECT (Istio's default)."""
    TPROXY = "TPROXY"
    """iptables TPROXY, which keeps the source address."""
    NONE = "NONE"
    """No capture: applications call the proxy's listeners directly."""


def _string(metadata: Mapping[str, object], key: str) -> str:
    value = metadata.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidProxyError(f"node metadata {key}: expected a string, got {describe(value)}")
    return value


def _version(text: str) -> tuple[int, int, int] | None:
    if not text:
        return None
    match = _VERSION.match(text.split("-", 1)[0])
    if match is None:
        raise InvalidProxyError(f"node metadata ISTIO_VERSION: {describe(text)} is not a version like 1.24.2")
    major, minor, patch = (int(group) if group else 0 for group in match.groups())
    return (major, minor, patch)


def _ips(text: str) -> tuple[str, ...]:
    addresses = []
    for part in text.split(","):
        item = part.strip()
        if not item:
            continue
        try:
            addresses.append(str(ipaddress.ip_address(item)))
        except ValueError:
            raise InvalidProxyError(f"node metadata INSTANCE_IPS: {describe(item)} is not an IP address") from None
    return tuple(addresses)


def _labels(value: object) -> Labels:
    if value is None:
        return Labels()
    if not isinstance(value, Mapping):
        raise InvalidProxyError(f"node metadata LABELS: expected an object of strings, got {describe(value)}")
    try:
        return Labels(value)
    except InvalidLabelError as error:
        raise InvalidProxyError(f"node metadata LABELS: {error}") from None


@final
@attrs.frozen
class NodeMetadata:
    """The node metadata fields the control plane reads, with Istio's keys.

    Attributes:
        namespace: ``NAMESPACE``.
        labels: ``LABELS``, the workload's labels.
        service_account: ``SERVICE_ACCOUNT``.
        cluster_id: ``CLUSTER_ID``.
        istio_version: ``ISTIO_VERSION`` as (major, minor, patch), ``None`` when not sent.
        generator: ``GENERATOR``, e.g. ``"grpc"`` for proxyless gRPC clients; empty for Envoy.
        interception_mode: ``INTERCEPTION_MODE``.
        instance_ips: ``INSTANCE_IPS``, a comma-separated list in the metadata.
        network: ``NETWORK``.
        workload_name: ``WORKLOAD_NAME``.
        mesh_id: ``MESH_ID``.
        raw: every metadata field as sent, for the fields this class does not name.
    """

    namespace: str = ""
    labels: Labels = attrs.field(factory=Labels)
    service_account: str = ""
    cluster_id: str = ""
    istio_version: tuple[int, int, int] | None = None
    generator: str = ""
    interception_mode: InterceptionMode = InterceptionMode.REDIRECT
    instance_ips: tuple[str, ...] = ()
    network: str = ""
    workload_name: str = ""
    mesh_id: str = ""
    raw: Mapping[str, object] = attrs.field(factory=dict, eq=False, repr=False)

    @classmethod
    def parse(cls, metadata: Mapping[str, object] | None) -> NodeMetadata:
        """Read node metadata given as a JSON-like mapping (Envoy's ``node.metadata`` Struct).

        Raises:
            InvalidProxyError: a known field has the wrong type or an unreadable value.
        """
        if metadata is None:
            return cls()
        if not isinstance(metadata, Mapping):
            raise InvalidProxyError(f"node metadata must be an object, not {type(metadata).__name__}")
        mode_text = _string(metadata, "INTERCEPTION_MODE") or InterceptionMode.REDIRECT.value
        try:
            # isascii: str.upper() maps some non-ASCII letters to ASCII (a dotless i in "redirect" would pass).
            if not mode_text.isascii():
                raise ValueError(mode_text)
            mode = InterceptionMode(mode_text.upper())
        except ValueError:
            known = ", ".join(m.value for m in InterceptionMode)
            raise InvalidProxyError(
                f"node metadata INTERCEPTION_MODE: {describe(mode_text)} is not one of {known}"
            ) from None
        return cls(
            namespace=_string(metadata, "NAMESPACE"),
            labels=_labels(metadata.get("LABELS")),
            service_account=_string(metadata, "SERVICE_ACCOUNT"),
            cluster_id=_string(metadata, "CLUSTER_ID"),
            istio_version=_version(_string(metadata, "ISTIO_VERSION")),
            generator=_string(metadata, "GENERATOR"),
            interception_mode=mode,
            instance_ips=_ips(_string(metadata, "INSTANCE_IPS")),
            network=_string(metadata, "NETWORK"),
            workload_name=_string(metadata, "WORKLOAD_NAME"),
            mesh_id=_string(metadata, "MESH_ID"),
            raw=types.MappingProxyType(dict(metadata)),
        )


@final
@attrs.frozen
class Proxy:
    """A proxy connected to the control plane.

    Attributes:
        type: sidecar, router (gateway), waypoint or ztunnel.
        ip_addresses: the proxy's addresses: ``INSTANCE_IPS`` when sent, else the node id's IP.
        id: the third part of the node id, usually ``<pod>.<namespace>``.
        dns_domain: the fourth part, usually ``<namespace>.svc.cluster.local``.
        metadata: the parsed node metadata.
        locality: the node's locality.
    """

    type: NodeType
    ip_addresses: tuple[str, ...]
    id: str
    dns_domain: str
    metadata: NodeMetadata = attrs.field(factory=NodeMetadata)
    locality: Locality = attrs.field(factory=Locality)

    @classmethod
    def parse(
        cls,
        node_id: str,
        metadata: Mapping[str, object] | None = None,
        *,
        locality: Locality | str | None = None,
    ) -> Proxy:
        """Parse a node id ``type~ip~id~domain`` and its metadata.

        Args:
            node_id: Envoy's ``node.id``.
            metadata: Envoy's ``node.metadata`` as a JSON-like mapping.
            locality: Envoy's ``node.locality``, as a Locality or a ``region/zone/subzone`` string.

        Raises:
            InvalidProxyError: the node id does not have four ``~``-separated parts, names an unknown type,
                has no valid IP (and no ``INSTANCE_IPS``), or the metadata is malformed.
        """
        if not isinstance(node_id, str):
            raise InvalidProxyError(f"node id must be a string, not {type(node_id).__name__}")
        if len(node_id) > _MAX_NODE_ID:
            raise InvalidProxyError(f"node id {describe(node_id)} is longer than {_MAX_NODE_ID} characters")
        parts = node_id.split(_SEPARATOR)
        if len(parts) != 4:
            raise InvalidProxyError(
                f"node id {describe(node_id)} has {len(parts)} '~'-separated parts; expected 4: type~ip~id~domain"
            )
        type_text, ip_text, proxy_id, dns_domain = parts
        try:
            node_type = NodeType(type_text)
        except ValueError:
            known = ", ".join(t.value for t in NodeType)
            raise InvalidProxyError(
                f"node id {describe(node_id)}: type {describe(type_text)} is not one of {known}"
            ) from None
        if not proxy_id:
            raise InvalidProxyError(f"node id {describe(node_id)}: the id part is empty")
        parsed = NodeMetadata.parse(metadata)
        if parsed.instance_ips:
            addresses = parsed.instance_ips
        else:
            try:
                addresses = (str(ipaddress.ip_address(ip_text)),)
            except ValueError:
                raise InvalidProxyError(
                    f"node id {describe(node_id)}: {describe(ip_text)} is not an IP address"
                ) from None
        if locality is None:
            locality = Locality()
        elif isinstance(locality, str):
            try:
                locality = Locality.parse(locality)
            except InvalidLocalityError as error:
                raise InvalidProxyError(f"node locality: {error}") from None
        elif not isinstance(locality, Locality):
            raise InvalidProxyError(
                f"node locality must be a Locality or a region/zone/subzone string, not {describe(locality)}"
            )
        return cls(node_type, addresses, proxy_id, dns_domain, parsed, locality)

    @property
    def node_id(self) -> str:
        """The node id, rebuilt from its parts (with the first IP address)."""
        return _SEPARATOR.join((self.type.value, self.ip_addresses[0], self.id, self.dns_domain))

    @property
    def namespace(self) -> str:
        """The proxy's namespace: ``NAMESPACE`` metadata, else from the DNS domain, else from the id."""
        if self.metadata.namespace:
            return self.metadata.namespace
        first, _, rest = self.dns_domain.partition(".")
        if first and rest.startswith("svc."):
            return first
        _, _, namespace = self.id.partition(".")
        return namespace.split(".", 1)[0]

    @property
    def labels(self) -> Labels:
        """The workload's labels."""
        return self.metadata.labels

    @property
    def is_gateway(self) -> bool:
        """True for routers (ingress and egress gateways)."""
        return self.type is NodeType.ROUTER

    def identity(self, trust_domain: str) -> SpiffeId:
        """The SPIFFE id the proxy's workload runs as (service account ``default`` when none is sent).

        Raises:
            InvalidSpiffeIdError: the proxy has no namespace or an unusable one.
        """
        return SpiffeId(trust_domain, self.namespace, self.metadata.service_account or "default")
