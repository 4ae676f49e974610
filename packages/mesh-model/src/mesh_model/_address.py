"""Checks of network addresses shared by services, endpoints and workloads (private)."""

from __future__ import annotations

import ipaddress

from mesh_model._text import describe
from mesh_model.errors import InvalidHostError, InvalidServiceError
from mesh_model.host import Hostname

UNIX_PREFIX = "unix://"
MAX_PORT = 65535
MAX_WEIGHT = 2**32 - 1


def check_port(what: str, number: object) -> None:
    """Raise InvalidServiceError unless ``number`` is an int in 1..65535."""
    if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= MAX_PORT:
        raise InvalidServiceError(f"{what} {describe(number)} is not a port number in 1..{MAX_PORT}")


def check_weight(what: str, weight: object) -> None:
    """Raise InvalidServiceError unless ``weight`` is an int in 1..2**32-1 (Envoy's load-balancing weight)."""
    if isinstance(weight, bool) or not isinstance(weight, int):
        raise InvalidServiceError(f"{what} {describe(weight)} is not an integer")
    if not 1 <= weight <= MAX_WEIGHT:
        raise InvalidServiceError(f"{what} {weight} is not in 1..{MAX_WEIGHT}")


def check_ip_or_cidr(what: str, text: object) -> None:
    """Raise InvalidServiceError unless ``text`` is an IP address or a CIDR block."""
    if not isinstance(text, str):
        raise InvalidServiceError(f"{what} must be a string, not {type(text).__name__}")
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise InvalidServiceError(f"{what} {describe(text)} is not an IP address or CIDR block") from None


def check_endpoint_address(what: str, text: object) -> None:
    """Raise InvalidServiceError unless ``text`` is an IP, a ``unix://`` path or a DNS name."""
    if not isinstance(text, str):
        raise InvalidServiceError(f"{what} must be a string, not {describe(text)}")
    if not text:
        raise InvalidServiceError(f"{what} is empty")
    if text.startswith(UNIX_PREFIX):
        if len(text) == len(UNIX_PREFIX) or "\x00" in text:
            raise InvalidServiceError(f"{what} {describe(text)} is not a valid unix socket path")
        return
    if "%" in text:
        raise InvalidServiceError(f"{what} {describe(text)} may not carry an IPv6 zone or '%'")
    try:
        ipaddress.ip_address(text)
        return
    except ValueError:
        pass
    try:
        host = Hostname.parse(text)
    except InvalidHostError as error:
        raise InvalidServiceError(f"{what} {describe(text)} is not an IP, unix:// path or host: {error}") from None
    if host.is_wildcard:
        raise InvalidServiceError(f"{what} {describe(text)} may not be a wildcard")
