"""``meshctl proxy-status``: every proxy connected to the control plane and how it stands with each type.

Like ``istioctl proxy-status``, from the control plane's CSDS: one row per connected proxy (per stream)
with SYNCED, NOT SENT, STALE (sent, not ACKed yet) or NACKED per type, and the last NACK's message.
Exit 0 when the server answered, 1 when it cannot be reached, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from mesh_xds import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    ProxyStatus,
    StatusUnavailableError,
    fetch_proxy_statuses,
)
from mesh_xds.resource import EXTENSION_CONFIG_TYPE
from meshctl._output import add_output, add_xds_address, emit, fail, table

HEADERS = ("NAME", "CLUSTER", "CDS", "LDS", "EDS", "RDS", "ECDS", "ISTIOD", "VERSION", "LAST NACK")
TYPES = (CLUSTER_TYPE, LISTENER_TYPE, ENDPOINT_TYPE, ROUTE_TYPE, EXTENSION_CONFIG_TYPE)
NACK_WIDTH = 100


def add_parser(commands: Any) -> None:
    """Add the ``proxy-status`` subcommand to meshctl's subparsers."""
    parser = commands.add_parser(
        "proxy-status",
        help="the sync status of every proxy connected to the control plane",
        description="List every proxy connected to the control plane (from its CSDS), with SYNCED, NOT SENT, "
        "STALE or NACKED per type and the last NACK.",
    )
    add_xds_address(parser)
    add_output(parser)
    parser.set_defaults(handler=run)


def _nack(proxy: ProxyStatus) -> str:
    nacked = proxy.last_nack
    if nacked is None:
        return ""
    line = nacked.nack.strip().splitlines()[0] if nacked.nack.strip() else "(no message)"
    if len(line) > NACK_WIDTH:
        line = line[: NACK_WIDTH - 3] + "..."
    return f"{nacked.short_type.upper()}: {line}"


def _row(proxy: ProxyStatus, istiod: str) -> list[object]:
    states = [proxy.state(type_url).value for type_url in TYPES]
    return [proxy.name, proxy.cluster_id, *states, istiod, proxy.version, _nack(proxy)]


def run(args: argparse.Namespace) -> int:
    """Print the status of every connected proxy; returns the exit code."""
    try:
        statuses = fetch_proxy_statuses(args.xds_address, contents=False)
    except StatusUnavailableError as error:
        return fail(str(error))
    if args.output == "table":
        sys.stdout.write(table(HEADERS, (_row(proxy, args.xds_address) for proxy in statuses)))
    else:
        emit([{**proxy.to_json(), "istiod": args.xds_address} for proxy in statuses], args.output)
    return 0
