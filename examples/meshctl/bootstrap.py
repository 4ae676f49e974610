"""``meshctl bootstrap --node-id ID``: print the Envoy bootstrap of a sidecar or gateway, or a gRPC client's.

The bootstrap is :func:`mesh_xds.bootstrap.envoy_bootstrap`'s, Istio-shaped: the node and its metadata from
the node id (``sidecar~10.1.1.1~reviews-v1.default~default.svc.cluster.local``), interception mode ``NONE``
(mesh's sidecars run on loopback addresses without iptables), Delta ADS to the control plane through the
cluster ``xds-grpc``, and the admin interface, readiness and Prometheus listeners on the node's address when
it is a loopback one (so that every simulated workload keeps the well-known ports), else on 127.0.0.1.

With ``--grpc``, the bootstrap is :func:`mesh_xds.bootstrap.grpc_bootstrap`'s instead: the file a proxyless gRPC
client names in ``GRPC_XDS_BOOTSTRAP`` before it dials ``xds:///HOST:PORT`` (SotW ADS, node metadata
``GENERATOR=grpc``, plaintext to the control plane).
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
    GrpcBootstrapOptions,
    InvalidBootstrapError,
    NodeIdentity,
    envoy_bootstrap,
    grpc_bootstrap,
)
from meshctl._output import add_output, emit, fail, host_port


def add_parser(commands: Any) -> None:
    """Add the ``bootstrap`` subcommand to meshctl's subparsers."""
    parser = commands.add_parser(
        "bootstrap",
        help="print a proxy's Envoy bootstrap",
        description=(
            "Print the Envoy bootstrap of a sidecar (or, with --gateway, a gateway) as Istio writes it, or with"
            " --grpc the xDS bootstrap of a proxyless gRPC client (GRPC_XDS_BOOTSTRAP)."
        ),
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
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument("--gateway", action="store_true", help="a gateway (router) rather than a sidecar")
    kind.add_argument("--grpc", action="store_true", help="a proxyless gRPC client's bootstrap rather than Envoy's")
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
        if args.grpc:
            if proxy.type is NodeType.ROUTER:
                return fail("bootstrap: --grpc: a gRPC client's node id is of type sidecar, not router", 2)
            emit(
                grpc_bootstrap(GrpcBootstrapOptions(node=identity, discovery=DiscoveryAddress(host=host, port=port))),
                args.output,
            )
            return 0
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
