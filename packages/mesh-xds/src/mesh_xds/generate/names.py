"""Istio's names for generated Envoy resources (ISTIO.md 2.3), so that ``istioctl proxy-config`` habits carry over.

Every generator names what it builds through these functions; nothing else spells a name.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "ALLOW_ANY_VIRTUAL_HOST",
    "BLACK_HOLE_CLUSTER",
    "BLOCK_ALL_VIRTUAL_HOST",
    "DEFAULT_ROUTE",
    "INBOUND_PASSTHROUGH_CLUSTER",
    "PASSTHROUGH_CLUSTER",
    "SDS_CLUSTER",
    "SDS_DEFAULT",
    "SDS_ROOT",
    "XDS_CLUSTER",
    "cluster_alt_stat_name",
    "credential_ca_secret",
    "credential_secret",
    "file_cert_secret",
    "file_root_secret",
    "gateway_http_route",
    "gateway_https_route",
    "inbound_cluster",
    "inbound_virtual_host",
    "listener_name",
    "outbound_cluster",
    "outbound_sni",
    "parse_outbound_cluster",
    "parse_outbound_sni",
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
ALLOW_ANY_VIRTUAL_HOST: Final = "allow_any"
"""The catch-all virtual host (and route) of an outbound HTTP route configuration under ALLOW_ANY."""
BLOCK_ALL_VIRTUAL_HOST: Final = "block_all"
"""The catch-all virtual host (and route) under REGISTRY_ONLY: every unknown host gets a 502."""
DEFAULT_ROUTE: Final = "default"
"""The name of the route a service gets when no VirtualService applies to it."""


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


def cluster_alt_stat_name(cluster: str) -> str:
    """``<cluster>;``: Istio's ``alt_stat_name`` of a cluster, the name with its stats-prefix delimiter."""
    return f"{cluster};"


def file_cert_secret(certificate: str, private_key: str) -> str:
    """``file-cert:<certificate>~<key>``: the SDS name of a client certificate read from files."""
    return f"file-cert:{certificate}~{private_key}"


def file_root_secret(ca_certificates: str) -> str:
    """``file-root:<ca>``: the SDS name of trusted roots read from a file (``system`` for the OS bundle)."""
    return f"file-root:{ca_certificates}"


def credential_secret(credential_name: str) -> str:
    """The SDS name of a ``credentialName``: ``kubernetes://<name>`` unless it names its own scheme."""
    if "://" in credential_name or credential_name.startswith(("file-cert:", "file-root:")):
        return credential_name
    return f"kubernetes://{credential_name}"


def credential_ca_secret(credential_name: str) -> str:
    """The SDS name of the CA bundle of a ``credentialName``: its secret name with ``-cacert``."""
    return f"{credential_secret(credential_name)}-cacert"


def parse_outbound_sni(name: str) -> tuple[int, str, str] | None:
    """``(port, subset, host)`` of an Istio mTLS SNI (an SNI-DNAT cluster's name), or None when ``name`` is not one."""
    prefix = "outbound_."
    if not name.startswith(prefix):
        return None
    parts = name[len(prefix) :].split("_.", 2)
    if len(parts) != 3 or not parts[0].isdigit() or not parts[2]:
        return None
    return int(parts[0]), parts[1], parts[2]
