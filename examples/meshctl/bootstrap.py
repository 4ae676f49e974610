"""``meshctl bootstrap --node-id ID``: print the Envoy bootstrap of a sidecar or gateway.

The bootstrap is :func:`mesh_xds.bootstrap.envoy_bootstrap`'s, Istio-shaped: the node and its metadata from
the node id (``sidecar~10.1.1.1~reviews-v1.default~default.svc.cluster.local``), interception mode ``NONE``
(mesh's sidecars run on loopback addresses without iptables), Delta ADS to the control plane through the
cluster ``xds-grpc``, and the admin interface, readiness and Prometheus listeners on the node's address when
it is a loopback one (so that every simulated workload keeps the well-known ports), else on 127.0.0.1.
Exit 0 when printed, 2 on a usage error (a malformed node id or option).
"""

from __future__ import annotations

import argparse
import ipaddress
from typing import Any

from mesh_model import InterceptionMode, InvalidProxyError, NodeType, Proxy
from mesh_xds.bootstrap import (
    ADMIN_PORT,
    DiscoveryAddress,
    EnvoyBootstrapOptions,
    InvalidBootstrapError,
    NodeIdentity,
    envoy_bootstrap,
)
from meshctl._output import add_output, emit, fail, host_port


def add_parser(commands: Any) -> None:
    """Add the ``bootstrap`` subcommand to meshctl's subparsers."""
    parser = commands.add_parser(
        "bootstrap",
        help="print a proxy's Envoy bootstrap",
        description="Print the Envoy bootstrap of a sidecar (or, with --gateway, a gateway) as Istio writes it.",
    )
    parser.add_argument(
        "--node-id", required=True, metavar="ID", help="the node id: TYPE~IP~NAME.NAMESPACE~NAMESPACE.svc.cluster.local"
    )
    parser.add_argument(
        "--xds-address",
        type=host_port,
        default=("127.0.0.1", 15010),
        metavar="HOST:PORT",
        help="the control plane's xDS address (default: 127.0.0.1:15010)",
    )
    parser.add_argument("--sds-socket", metavar="PATH", help="the Unix socket of the workload's SDS server")
    parser.add_argument(
        "--admin-port", type=int, default=ADMIN_PORT, metavar="PORT", help="Envoy's admin port (default: %(default)s)"
    )
    parser.add_argument("--gateway", action="store_true", help="a gateway (router) rather than a sidecar")
    add_output(parser, ("json", "yaml"))
    parser.set_defaults(handler=run)


def _admin_address(ip: str) -> str:
    try:
        return ip if ipaddress.ip_address(ip).is_loopback else "127.0.0.1"
    except ValueError:
        return "127.0.0.1"


def run(args: argparse.Namespace) -> int:
    """Print the bootstrap; returns the exit code."""
    try:
        proxy = Proxy.parse(args.node_id)
        gateway = args.gateway or proxy.type is NodeType.ROUTER
        identity = NodeIdentity.from_proxy(proxy, interception_mode=InterceptionMode.NONE)
        host, port = args.xds_address
        options = EnvoyBootstrapOptions(
            node=identity,
            discovery=DiscoveryAddress(host=host, port=port),
            node_type=NodeType.ROUTER if gateway else NodeType.SIDECAR,
            sds_socket=args.sds_socket,
            admin_address=_admin_address(identity.ip),
            admin_port=args.admin_port,
        )
        config = envoy_bootstrap(options)
    except (InvalidProxyError, InvalidBootstrapError) as error:
        return fail(f"bootstrap: {error}", 2)
    emit(config, args.output)
    return 0
