"""Application protocols with Istio's names, and protocol selection for service ports.

Istio decides how to treat a port from its declared protocol, from ``appProtocol``, or from the prefix of
the port name (``http-web`` is HTTP, ``grpc`` is gRPC, ``tcp-db`` is TCP). A port whose protocol cannot
be told is :attr:`Protocol.UNSUPPORTED`, which Istio treats by sniffing the traffic.
"""

from __future__ import annotations

import enum

from mesh_model._text import describe
from mesh_model.errors import InvalidProtocolError

__all__ = ["Protocol", "protocol_from_port"]


class Protocol(enum.Enum):
    """A protocol, valued with Istio's spelling (``Protocol.GRPC_WEB.value == "GRPC-Web"``)."""

    GRPC = "GRPC"
    GRPC_WEB = "GRPC-Web"
    HTTP = "HTTP"
    HTTP_PROXY = "HTTP_PROXY"
    HTTP2 = "HTTP2"
    HTTPS = "HTTPS"
    TCP = "TCP"
    TLS = "TLS"
    UDP = "UDP"
    MONGO = "Mongo"
    REDIS = "Redis"
    MYSQL = "MySQL"
    HBONE = "HBONE"
    UNSUPPORTED = "UnsupportedProtocol"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, name: str) -> Protocol:
        """Parse an Istio protocol name, ignoring case (``"http2"``, ``"grpc-web"``, ``"MONGO"``).

        Raises:
            InvalidProtocolError: the name is not one of Istio's protocols.
        """
        protocol = cls.lookup(name)
        if protocol is None:
            known = ", ".join(p.value for p in cls if p is not cls.UNSUPPORTED)
            raise InvalidProtocolError(f"unknown protocol {describe(name)}; expected one of {known}")
        return protocol

    @classmethod
    def lookup(cls, name: str) -> Protocol | None:
        """Like :meth:`parse`, but return ``None`` for a name Istio does not know."""
        if not isinstance(name, str):
            return None
        return _BY_LOWER_NAME.get(name.lower())

    @property
    def is_http(self) -> bool:
        """HTTP of any version, gRPC and gRPC-Web, and HTTP_PROXY: traffic that gets HTTP routing."""
        return self in _HTTP

    @property
    def is_http2(self) -> bool:
        """Protocols carried over HTTP/2: HTTP2, GRPC and GRPC-Web."""
        return self in _HTTP2

    @property
    def is_grpc(self) -> bool:
        """GRPC and GRPC-Web."""
        return self in (Protocol.GRPC, Protocol.GRPC_WEB)

    @property
    def is_tcp(self) -> bool:
        """Protocols that Istio proxies as opaque TCP: TCP, HTTPS, TLS, Mongo, Redis and MySQL."""
        return self in _TCP

    @property
    def is_tls(self) -> bool:
        """HTTPS and TLS: traffic that arrives already encrypted."""
        return self in (Protocol.HTTPS, Protocol.TLS)

    @property
    def is_udp(self) -> bool:
        """UDP."""
        return self is Protocol.UDP

    @property
    def is_unsupported(self) -> bool:
        """A port whose protocol is unknown: Istio sniffs it."""
        return self is Protocol.UNSUPPORTED


_BY_LOWER_NAME = {p.value.lower(): p for p in Protocol if p is not Protocol.UNSUPPORTED}
_HTTP = frozenset({Protocol.HTTP, Protocol.HTTP2, Protocol.HTTP_PROXY, Protocol.GRPC, Protocol.GRPC_WEB})
_HTTP2 = frozenset({Protocol.HTTP2, Protocol.GRPC, Protocol.GRPC_WEB})
_TCP = frozenset({Protocol.TCP, Protocol.HTTPS, Protocol.TLS, Protocol.MONGO, Protocol.REDIS, Protocol.MYSQL})

# Ports that break under protocol sniffing: TCP unless something else is declared (SMTP, DNS, MySQL, MongoDB).
_WELL_KNOWN_TCP_PORTS = frozenset({25, 53, 3306, 27017})

# Kubernetes' standard appProtocol names.
_KUBERNETES_APP_PROTOCOLS = {
    "kubernetes.io/h2c": Protocol.HTTP2,
    "kubernetes.io/ws": Protocol.HTTP,
    "kubernetes.io/wss": Protocol.HTTPS,
}


def protocol_from_port(
    number: int,
    name: str = "",
    *,
    app_protocol: str | None = None,
    transport: str = "TCP",
) -> Protocol:
    """Select the protocol of a Kubernetes-style service port, as Istio does.

    The order is: a UDP transport is UDP; ``appProtocol`` when it is set (Kubernetes' ``kubernetes.io/h2c``,
    ``kubernetes.io/ws`` and ``kubernetes.io/wss`` included); else the port name's prefix before the first
    ``-`` (``grpc-web`` is recognised whole). A port that is still unknown is TCP on the well-known ports
    25, 53, 3306 and 27017, and :attr:`Protocol.UNSUPPORTED` (sniffed) otherwise. A name can never select
    UDP, only the transport can: a port named ``udp-dns`` on a TCP transport is TCP. Nor can it select
    ``HBONE``, Istio's own tunnel: a port named ``hbone`` is unknown.

    Args:
        number: the service port number.
        name: the port name, e.g. ``"http-web"``.
        app_protocol: the port's ``appProtocol``, if any.
        transport: the Kubernetes transport protocol, ``"TCP"``, ``"UDP"`` or ``"SCTP"``.
    """
    if transport.upper() == "UDP":
        return Protocol.UDP
    label = name
    if app_protocol:
        known = _KUBERNETES_APP_PROTOCOLS.get(app_protocol)
        if known is not None:
            return known
        label = app_protocol
    if label.lower().startswith("grpc-web"):
        return Protocol.GRPC_WEB
    prefix = label.split("-", 1)[0]
    protocol = Protocol.lookup(prefix) or Protocol.UNSUPPORTED
    if protocol is Protocol.UDP:
        return Protocol.TCP
    if protocol is Protocol.HBONE:
        # Istio's tunnel, never a port's declared protocol: its ConvertProtocol does not know the name.
        protocol = Protocol.UNSUPPORTED
    if protocol is Protocol.UNSUPPORTED and number in _WELL_KNOWN_TCP_PORTS:
        return Protocol.TCP
    return protocol
