"""Istio's names for generated Envoy resources (ISTIO.md 2.3), so that ``istioctl proxy-config`` habits carry over.

Every generator names what it builds through these functions; nothing else spells a name.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "BLACK_HOLE_CLUSTER",
    "INBOUND_PASSTHROUGH_CLUSTER",
    "PASSTHROUGH_CLUSTER",
    "SDS_CLUSTER",
    "SDS_DEFAULT",
    "SDS_ROOT",
    "XDS_CLUSTER",
    "gateway_http_route",
    "gateway_https_route",
    "inbound_cluster",
    "inbound_virtual_host",
    "listener_name",
    "outbound_cluster",
    "outbound_sni",
    "parse_outbound_cluster",
    "rbac_policy_name",
    "virtual_host_name",
]

BLACK_HOLE_CLUSTER: Final = "BlackHoleCluster"
PASSTHROUGH_CLUSTER: Final = "PassthroughCluster"
INBOUND_PASSTHROUGH_CLUSTER: Final = "InboundPassthroughCluster"
XDS_CLUSTER: Final = "xds-grpc"
SDS_CLUSTER: Final = "sds-grpc"
SDS_DEFAULT: Final = "default"
SDS_ROOT: Final = "ROOTCA"


def outbound_cluster(port: int, host: str, subset: str = "") -> str:
    """``outbound|<port>|<subset>|<host>``, e.g. ``outbound|9080|v1|reviews.default.svc.cluster.local``."""
    return f"outbound|{port}|{subset}|{host}"


def parse_outbound_cluster(name: str) -> tuple[int, str, str] | None:
    """``(port, subset, host)`` of an outbound cluster name, or None when ``name`` is not one."""
    parts = name.split("|")
    if len(parts) != 4 or parts[0] != "outbound" or not parts[1].isdigit():
        return None
    return int(parts[1]), parts[2], parts[3]


def inbound_cluster(port: int) -> str:
    """``inbound|<port>||``: Istio drops the host name from inbound clusters."""
    return f"inbound|{port}||"


def outbound_sni(port: int, host: str, subset: str = "") -> str:
    """The SNI of an Istio mTLS connection: ``outbound_.<port>_.<subset>_.<host>``."""
    return f"outbound_.{port}_.{subset}_.{host}"


def listener_name(address: str, port: int) -> str:
    """``<address>_<port>``, e.g. ``0.0.0.0_9080`` or ``127.0.0.5_9080``."""
    return f"{address}_{port}"


def virtual_host_name(domain: str, port: int) -> str:
    """``<domain>:<port>``, e.g. ``reviews.default.svc.cluster.local:9080``."""
    return f"{domain}:{port}"


def inbound_virtual_host(port: int) -> str:
    """``inbound|http|<port>``, the virtual host of an inbound HTTP port."""
    return f"inbound|http|{port}"


def gateway_http_route(port: int, bind: str = "") -> str:
    """``http.<port>[.<bind>]``: the route configuration of a gateway's plaintext HTTP port."""
    return f"http.{port}" + (f".{bind}" if bind else "")


def gateway_https_route(port: int, port_name: str, gateway: str, namespace: str, bind: str = "") -> str:
    """``https.<port>.<portName>.<gateway>.<namespace>[.<bind>]``: a gateway's terminated HTTPS server."""
    return f"https.{port}.{port_name}.{gateway}.{namespace}" + (f".{bind}" if bind else "")


def rbac_policy_name(namespace: str, name: str, rule: int) -> str:
    """``ns[<namespace>]-policy[<name>]-rule[<index>]``: one AuthorizationPolicy rule in an RBAC filter."""
    return f"ns[{namespace}]-policy[{name}]-rule[{rule}]"
