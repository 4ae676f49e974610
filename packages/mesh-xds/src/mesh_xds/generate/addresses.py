"""Where a sidecar's listeners bind, read from its node metadata: the convention of ``meshd`` and ``mesh-agent``.

Without iptables (Istio's ``captureMode: NONE``), a workload on loopback has three addresses
(docs/architecture.md). Its agent says which in the node metadata it sends::

    MESH_INBOUND_ADDRESS:     127.0.10.1   # its endpoint: other sidecars connect here (inbound listeners)
    MESH_APPLICATION_ADDRESS: 127.0.11.1   # where the application listens (the inbound clusters' endpoint)
    MESH_OUTBOUND_ADDRESS:    127.0.12.1   # the outbound listeners the application calls

and the control plane passes :func:`addresses_from_metadata` to the
:class:`~mesh_xds.generate.XdsController` as ``addresses_for``. A key that is missing falls back to the
proxy's own IP address (the node id's, or the first of ``INSTANCE_IPS``), as Istio binds everything there.
"""

from __future__ import annotations

import ipaddress
from typing import Final

from mesh_model import Proxy
from mesh_xds._text import describe
from mesh_xds.generate.context import SidecarAddresses

__all__ = ["APPLICATION_ADDRESS_KEY", "INBOUND_ADDRESS_KEY", "OUTBOUND_ADDRESS_KEY", "addresses_from_metadata"]

INBOUND_ADDRESS_KEY: Final = "MESH_INBOUND_ADDRESS"
"""The node metadata key of the address other proxies reach the workload on."""
APPLICATION_ADDRESS_KEY: Final = "MESH_APPLICATION_ADDRESS"
"""The node metadata key of the address the application listens on."""
OUTBOUND_ADDRESS_KEY: Final = "MESH_OUTBOUND_ADDRESS"
"""The node metadata key of the address of the outbound listeners."""

_KEYS: Final = (INBOUND_ADDRESS_KEY, APPLICATION_ADDRESS_KEY, OUTBOUND_ADDRESS_KEY)


def addresses_from_metadata(proxy: Proxy) -> SidecarAddresses | None:
    """The sidecar addresses a proxy's node metadata names, or ``None`` when it names none.

    Only sidecars have them: a gateway or a proxyless client gets ``None`` (its listeners bind as usual).

    Raises:
        ValueError: a value is not an IP address (the proxy then gets no config, and the log says why).
    """
    if not proxy.ip_addresses or proxy.is_gateway:
        return None
    raw = proxy.metadata.raw
    if not any(key in raw for key in _KEYS):
        return None
    fallback = proxy.ip_addresses[0]
    found: list[str] = []
    for key in _KEYS:
        value = raw.get(key, "")
        if value in ("", None):
            found.append(fallback)
            continue
        if not isinstance(value, str):
            raise ValueError(f"node metadata {key} must be an IP address, not {describe(value)}")
        try:
            found.append(str(ipaddress.ip_address(value.strip())))
        except ValueError:
            raise ValueError(f"node metadata {key}: {describe(value)} is not an IP address") from None
    return SidecarAddresses(inbound=found[0], application=found[1], outbound=found[2])
