"""``meshctl proxy-config KIND PROXY``: the clusters, listeners, routes, endpoints or secrets of one proxy.

From the control plane's CSDS (what it sent the proxy, found by node id, name or unique prefix), or with
``--admin`` from the proxy's own admin interface (``/config_dump``, and ``/clusters`` for endpoints), in
the columns of ``istioctl proxy-config``. Secrets show their kind, validity, serial number and SANs, never
a key. Exit 0 when the config was shown, 1 when the server or proxy cannot be reached or the proxy is
unknown, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from typing import Any

from mesh_xds import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    SECRET_TYPE,
    ProxyResource,
    ProxyStatus,
    StatusUnavailableError,
    SyncState,
    UnknownProxyError,
    fetch_proxy_statuses,
    find_proxy,
)
from mesh_xds import config_summary as summary
from mesh_xds.envoy_admin import admin_url, config_dump_status, fetch_cluster_statuses, fetch_config_dump
from meshctl._certificates import describe_certificate
from meshctl._output import add_output, add_xds_address, emit, fail, table

TYPES = {
    "cluster": CLUSTER_TYPE,
    "listener": LISTENER_TYPE,
    "route": ROUTE_TYPE,
    "endpoint": ENDPOINT_TYPE,
    "secret": SECRET_TYPE,
}
HEADERS = {
    "cluster": ("SERVICE FQDN", "PORT", "SUBSET", "DIRECTION", "TYPE", "DESTINATION RULE"),
    "listener": ("ADDRESSES", "PORT", "MATCH", "DESTINATION"),
    "route": ("NAME", "VHOST NAME", "DOMAINS", "MATCH", "VIRTUAL SERVICE"),
    "endpoint": ("ENDPOINT", "STATUS", "OUTLIER CHECK", "CLUSTER"),
    "secret": ("RESOURCE NAME", "TYPE", "STATUS", "VALID CERT", "SERIAL NUMBER", "NOT AFTER", "NOT BEFORE", "SANS"),
}
SECRET_STATES = {SyncState.SYNCED: "ACTIVE", SyncState.STALE: "WARMING", SyncState.NACKED: "NACKED"}


def _admin(text: str) -> str:
    try:
        return admin_url(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_parser(commands: Any) -> None:
    """Add the ``proxy-config`` subcommand to meshctl's subparsers."""
    parser = commands.add_parser(
        "proxy-config",
        help="the clusters, listeners, routes, endpoints or secrets of a proxy",
        description="Show one kind of a proxy's config: from the control plane's CSDS, or with --admin from "
        "the proxy's admin interface. Secrets never show key material.",
    )
    parser.add_argument("kind", choices=tuple(TYPES), metavar="KIND", help="one of: " + ", ".join(TYPES))
    parser.add_argument(
        "proxy", nargs="?", metavar="PROXY", help="node id, name (<pod>.<namespace>) or a unique prefix of either"
    )
    add_xds_address(parser)
    parser.add_argument("--admin", type=_admin, metavar="URL", help="the proxy's admin interface (http://HOST:PORT)")
    add_output(parser)
    parser.set_defaults(handler=run, parser=parser)


def _from_csds(address: str, query: str) -> ProxyStatus:
    chosen = find_proxy(fetch_proxy_statuses(address, contents=False), query)
    streams = fetch_proxy_statuses(address, node_id=chosen.node.id)
    same = [stream for stream in streams if stream.client_scope == chosen.client_scope]
    return same[0] if same else find_proxy(streams, chosen.node.id)


def _from_admin(url: str, query: str | None) -> ProxyStatus:
    proxy = config_dump_status(fetch_config_dump(url))
    if query is not None:
        try:
            find_proxy([proxy], query)
        except UnknownProxyError:
            raise UnknownProxyError(f"the proxy at {url} is {proxy.node.id!r}, which {query!r} does not name") from None
    return proxy


def _cluster_rows(resources: Iterable[ProxyResource]) -> list[list[object]]:
    rows = [summary.summarize_cluster(r.config) for r in resources if r.config is not None]
    rows.sort(key=lambda c: (c.service_fqdn, c.port or 0, c.subset, c.direction))
    return [[c.service_fqdn, c.port, c.subset, c.direction, c.type, c.destination_rule] for c in rows]


def _listener_rows(resources: Iterable[ProxyResource]) -> list[list[object]]:
    chains = [chain for r in resources if r.config is not None for chain in summary.summarize_listener(r.config)]
    return [[", ".join(c.addresses), c.port, c.match, c.destination] for c in chains]


def _domains(domains: tuple[str, ...]) -> str:
    return ", ".join(domains[:2]) + (f" +{len(domains) - 2} more" if len(domains) > 2 else "")


def _route_rows(resources: Iterable[ProxyResource]) -> list[list[object]]:
    routes = [
        route for r in resources if r.config is not None for route in summary.summarize_route_configuration(r.config)
    ]
    return [[r.name, r.virtual_host, _domains(r.domains), r.match, r.virtual_service] for r in routes]


def _endpoint_rows(endpoints: Iterable[summary.EndpointSummary]) -> list[list[object]]:
    return [[e.endpoint, e.status, e.outlier_check, e.cluster] for e in endpoints]


def _secret_json(resource: ProxyResource) -> dict[str, Any]:
    found = summary.summarize_secret(resource.config) if resource.config is not None else None
    return {
        **resource.to_json(),
        "type": found.kind if found is not None else "",
        "certificates": [describe_certificate(pem) for pem in found.certificates] if found is not None else [],
    }


def _secret_rows(resources: Iterable[ProxyResource]) -> list[list[object]]:
    rows: list[list[object]] = []
    for resource in resources:
        described = _secret_json(resource)
        state = SECRET_STATES.get(resource.state, resource.state.value)
        for cert in described["certificates"] or [{}]:
            valid = "" if "valid" not in cert else str(cert["valid"]).lower()
            sans = ", ".join(cert.get("sans", ()))
            serial, after, before = cert.get("serial_number"), cert.get("not_after"), cert.get("not_before")
            rows.append([resource.name, described["type"], state, valid, serial, after, before, sans])
    return rows


_ROWS = {"cluster": _cluster_rows, "listener": _listener_rows, "route": _route_rows, "secret": _secret_rows}


def _show(kind: str, proxy: ProxyStatus, output: str, admin: str | None) -> None:
    resources = proxy.resources_of(TYPES[kind])
    if kind == "endpoint":
        if admin is not None:
            statuses = fetch_cluster_statuses(admin)
            endpoints = [e for status in statuses for e in summary.summarize_cluster_status(status)]
            data: list[dict[str, Any]] = [{"name": status.get("name", ""), "config": status} for status in statuses]
        else:
            endpoints = [
                e for r in resources if r.config is not None for e in summary.summarize_load_assignment(r.config)
            ]
            data = [resource.to_json() for resource in resources]
        rows = _endpoint_rows(endpoints)
    else:
        rows = _ROWS[kind](resources)
        data = [_secret_json(r) if kind == "secret" else r.to_json() for r in resources]
    if output == "table":
        sys.stdout.write(table(HEADERS[kind], rows))
    else:
        emit(data, output)


def run(args: argparse.Namespace) -> int:
    """Show one kind of config of one proxy; returns the exit code."""
    if args.proxy is None and args.admin is None:
        args.parser.print_usage(sys.stderr)
        return fail("proxy-config: give PROXY (or --admin URL)", 2)
    try:
        proxy = _from_admin(args.admin, args.proxy) if args.admin else _from_csds(args.xds_address, args.proxy)
        _show(args.kind, proxy, args.output, args.admin)
    except StatusUnavailableError as error:
        return fail(str(error))
    except UnknownProxyError as error:
        return fail(str(error) if args.admin else f"{error} on the xDS server at {args.xds_address}")
    return 0
