"""Loopback addresses with free ports: every part of a mesh gets addresses of its own in 127.0.0.0/8."""

from __future__ import annotations

import secrets
import socket
from collections.abc import Iterable
from typing import Final, final

from mesh_harness.errors import StartError

_ATTEMPTS: Final = 500


def ports_free(address: str, ports: Iterable[int]) -> bool:
    """True when nothing listens on any of ``ports`` at ``address`` (connections in TIME_WAIT do not count)."""
    try:
        for port in ports:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind((address, port))
    except OSError:
        return False
    return True


@final
class AddressPool:
    """Hands out distinct random addresses in 127.0.0.0/8 (never in 127.0.0.0/24) with the given ports free."""

    def __init__(self) -> None:
        self._taken: set[str] = set()

    def take(self, ports: Iterable[int]) -> str:
        """A new address on which every port in ``ports`` is free now.

        Raises:
            StartError: none found after many tries.
        """
        wanted = tuple(ports)
        for _ in range(_ATTEMPTS):
            address = f"127.{1 + secrets.randbelow(254)}.{secrets.randbelow(256)}.{1 + secrets.randbelow(254)}"
            if address not in self._taken and ports_free(address, wanted):
                self._taken.add(address)
                return address
        raise StartError(f"no loopback address with ports {list(wanted)} free after {_ATTEMPTS} tries")
