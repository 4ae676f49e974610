"""Protocol names, Istio's protocol predicates, and protocol selection for service ports."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mesh_model import InvalidProtocolError, InvalidValueError, Protocol, protocol_from_port

_ISTIO_NAMES = {
    "GRPC": Protocol.GRPC,
    "GRPC-Web": Protocol.GRPC_WEB,
    "HTTP": Protocol.HTTP,
    "HTTP_PROXY": Protocol.HTTP_PROXY,
    "HTTP2": Protocol.HTTP2,
    "HTTPS": Protocol.HTTPS,
    "TCP": Protocol.TCP,
    "TLS": Protocol.TLS,
    "UDP": Protocol.UDP,
    "Mongo": Protocol.MONGO,
    "Redis": Protocol.REDIS,
    "MySQL": Protocol.MYSQL,
    "HBONE": Protocol.HBONE,
}

# ---------------------------------------------------------------- names


@pytest.mark.parametrize(("name", "protocol"), _ISTIO_NAMES.items())
def test_parse_ignores_case(name: str, protocol: Protocol) -> None:
    for spelling in (name, name.lower(), name.upper(), name.swapcase()):
        assert Protocol.parse(spelling) is protocol
        assert Protocol.lookup(spelling) is protocol
    assert protocol.value == name
    assert str(protocol) == name


def test_every_protocol_but_unsupported_has_a_name() -> None:
    assert set(_ISTIO_NAMES.values()) == set(Protocol) - {Protocol.UNSUPPORTED}


@pytest.mark.parametrize(
    "name", ["", "SMTP", "http3", "grpc_web", "HTTP ", " tcp", "UnsupportedProtocol", "x" * 10_000]
)
def test_unknown_names(name: str) -> None:
    with pytest.raises(InvalidProtocolError) as caught:
        Protocol.parse(name)
    message = str(caught.value)
    assert repr(name)[:30] in message
    assert "HTTP2" in message  # the message lists what would have been accepted
    assert len(message) < 400
    assert Protocol.lookup(name) is None


@pytest.mark.parametrize("value", [None, 7, b"http"])
def test_non_strings_are_unknown(value: object) -> None:
    assert Protocol.lookup(value) is None  # type: ignore[arg-type]
    with pytest.raises(InvalidProtocolError):
        Protocol.parse(value)  # type: ignore[arg-type]


def test_protocol_errors_are_value_errors() -> None:
    with pytest.raises(ValueError, match="'smtp'"):
        Protocol.parse("smtp")
    assert issubclass(InvalidProtocolError, InvalidValueError)


# ---------------------------------------------------------------- predicates (Istio's protocol.Instance)

_HTTP = {Protocol.HTTP, Protocol.HTTP2, Protocol.HTTP_PROXY, Protocol.GRPC, Protocol.GRPC_WEB}
_HTTP2 = {Protocol.HTTP2, Protocol.GRPC, Protocol.GRPC_WEB}
_GRPC = {Protocol.GRPC, Protocol.GRPC_WEB}
_TCP = {Protocol.TCP, Protocol.HTTPS, Protocol.TLS, Protocol.MONGO, Protocol.REDIS, Protocol.MYSQL}
_TLS = {Protocol.HTTPS, Protocol.TLS}


@pytest.mark.parametrize("protocol", list(Protocol))
def test_predicates_follow_istio(protocol: Protocol) -> None:
    assert protocol.is_http == (protocol in _HTTP)
    assert protocol.is_http2 == (protocol in _HTTP2)
    assert protocol.is_grpc == (protocol in _GRPC)
    assert protocol.is_tcp == (protocol in _TCP)
    assert protocol.is_tls == (protocol in _TLS)
    assert protocol.is_udp == (protocol is Protocol.UDP)
    assert protocol.is_unsupported == (protocol is Protocol.UNSUPPORTED)


def test_predicates_for_protocols_in_no_family() -> None:
    for protocol in (Protocol.UDP, Protocol.HBONE, Protocol.UNSUPPORTED):
        assert not protocol.is_http
        assert not protocol.is_tcp
        assert not protocol.is_tls
        assert not protocol.is_grpc


# ---------------------------------------------------------------- protocol_from_port


@pytest.mark.parametrize(
    ("number", "name", "expected"),
    [
        (8080, "http-web", Protocol.HTTP),
        (8080, "http", Protocol.HTTP),
        (8080, "HTTP-Web", Protocol.HTTP),
        (9090, "grpc", Protocol.GRPC),
        (9090, "grpc-x", Protocol.GRPC),
        (9090, "grpc-web", Protocol.GRPC_WEB),
        (9090, "grpc-web-x", Protocol.GRPC_WEB),
        (9090, "GRPC-Web-x", Protocol.GRPC_WEB),
        (5432, "tcp-db", Protocol.TCP),
        (8080, "http2", Protocol.HTTP2),
        (8443, "https", Protocol.HTTPS),
        (8443, "https-admin", Protocol.HTTPS),
        (8443, "tls-passthrough", Protocol.TLS),
        (6379, "redis-cache", Protocol.REDIS),
        (27017, "mongo", Protocol.MONGO),
        (8080, "http_proxy", Protocol.HTTP_PROXY),
        (8080, "", Protocol.UNSUPPORTED),
        (8080, "web", Protocol.UNSUPPORTED),
        (8080, "webhttp", Protocol.UNSUPPORTED),
        (8080, "-http", Protocol.UNSUPPORTED),
        (25, "smtp", Protocol.TCP),
        (53, "", Protocol.TCP),
        (3306, "database", Protocol.TCP),
        (27017, "mongodb", Protocol.TCP),
        (3306, "http", Protocol.HTTP),  # a known name wins over the well-known port
        (53, "udp", Protocol.TCP),
        (8080, "udp-dns", Protocol.TCP),  # a name never selects UDP
        (8080, "hbone", Protocol.UNSUPPORTED),  # nor Istio's tunnel
        (3306, "hbone-x", Protocol.TCP),
    ],
)
def test_protocol_from_port_name(number: int, name: str, expected: Protocol) -> None:
    assert protocol_from_port(number, name) is expected


@pytest.mark.parametrize("transport", ["UDP", "udp"])
def test_udp_transport_is_udp_whatever_the_name(transport: str) -> None:
    assert protocol_from_port(53, "dns", transport=transport) is Protocol.UDP
    assert protocol_from_port(8080, "http-web", transport=transport) is Protocol.UDP
    assert protocol_from_port(8080, "http", app_protocol="kubernetes.io/h2c", transport=transport) is Protocol.UDP


def test_sctp_transport_uses_the_name() -> None:
    assert protocol_from_port(8080, "http", transport="SCTP") is Protocol.HTTP


@pytest.mark.parametrize(
    ("name", "app_protocol", "expected"),
    [
        ("tcp-db", "http", Protocol.HTTP),
        ("http", "grpc", Protocol.GRPC),
        ("http", "grpc-web", Protocol.GRPC_WEB),
        ("http", "HTTPS", Protocol.HTTPS),
        ("grpc", "unknown", Protocol.UNSUPPORTED),
        ("http", "kubernetes.io/h2c", Protocol.HTTP2),
        ("tcp", "kubernetes.io/ws", Protocol.HTTP),
        ("http", "kubernetes.io/wss", Protocol.HTTPS),
        ("http", None, Protocol.HTTP),
        ("http", "", Protocol.HTTP),  # an empty appProtocol is not set
    ],
)
def test_app_protocol_overrides_the_name(name: str, app_protocol: str | None, expected: Protocol) -> None:
    assert protocol_from_port(8080, name, app_protocol=app_protocol) is expected


def test_unknown_app_protocol_on_a_well_known_port_is_tcp() -> None:
    assert protocol_from_port(3306, "http", app_protocol="mysql-x") is Protocol.MYSQL
    assert protocol_from_port(3306, "http", app_protocol="sql") is Protocol.TCP


_KNOWN_PREFIXES = [name for name in _ISTIO_NAMES if name not in ("UDP", "HBONE", "GRPC-Web")]


@given(st.sampled_from(_KNOWN_PREFIXES), st.text(), st.integers(1, 65535))
def test_known_prefix_selects_its_protocol(prefix: str, rest: str, number: int) -> None:
    name = f"{prefix}-{rest}"
    expected = Protocol.parse(prefix)
    if prefix == "GRPC" and rest.lower().startswith("web"):
        expected = Protocol.GRPC_WEB
    assert protocol_from_port(number, name) is expected
    assert protocol_from_port(number, "port", app_protocol=name) is expected


@given(
    number=st.integers(1, 65535),
    name=st.text(),
    app_protocol=st.none() | st.text(),
    transport=st.sampled_from(["TCP", "UDP", "SCTP", "tcp", ""]) | st.text(),
)
def test_protocol_from_port_never_raises(number: int, name: str, app_protocol: str | None, transport: str) -> None:
    protocol = protocol_from_port(number, name, app_protocol=app_protocol, transport=transport)
    assert isinstance(protocol, Protocol)
    assert (protocol is Protocol.UDP) == (transport.upper() == "UDP")
