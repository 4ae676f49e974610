"""``mesh-agent``'s command line: the flags and the :class:`~mesh_agent.AgentOptions` they make."""

from __future__ import annotations

import argparse
from datetime import timedelta
from pathlib import Path

from mesh_agent.options import AgentConfigError, AgentOptions, parse_address
from mesh_config import Duration
from mesh_model import InvalidValueError, Labels
from mesh_xds.bootstrap import ApiType, DiscoveryAddress, NodeIdentity
from mesh_xds.generate.addresses import APPLICATION_ADDRESS_KEY, INBOUND_ADDRESS_KEY, OUTBOUND_ADDRESS_KEY

__all__ = ["build_parser", "options_from_args"]

_LOG_LEVELS = ("debug", "info", "warning", "error")


def _host_port(text: str) -> tuple[str, int]:
    host, colon, port = text.rpartition(":")
    if not colon or not host or not (port.isascii() and port.isdigit() and 0 < int(port) <= 65535):
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return host.removeprefix("[").removesuffix("]"), int(port)


def _address(text: str) -> str:
    try:
        parse_address(text, "address")
    except AgentConfigError:
        raise argparse.ArgumentTypeError(f"{text!r} is not IP:PORT") from None
    return text


def _seconds(text: str) -> int:
    if not (text.isascii() and text.isdigit() and int(text) <= 86400):
        raise argparse.ArgumentTypeError(f"{text!r} is not whole seconds from 0 to 86400")
    return int(text)


def _ttl(text: str) -> timedelta:
    try:
        ttl = timedelta(microseconds=Duration.parse(text).nanos // 1000)
    except ValueError:
        ttl = timedelta(0)
    if ttl < timedelta(seconds=1):
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration of at least 1s such as 24h, 90m or 30s")
    return ttl


def _target(text: str) -> str:
    _host_port(text)
    return text


def _labels(text: str) -> Labels:
    items: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, equals, value = item.partition("=")
        if not equals or not key:
            raise argparse.ArgumentTypeError(f"label {item!r} is not KEY=VALUE")
        items[key] = value
    try:
        return Labels(items)
    except InvalidValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _ip(text: str) -> str:
    try:
        parse_address(f"{text}:0", "ip")
    except AgentConfigError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an IP address") from None
    return text


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``mesh-agent``."""
    parser = argparse.ArgumentParser(
        prog="mesh-agent",
        description="The node agent of one workload: its certificate, SDS, Envoy, and readiness.",
    )
    control = parser.add_argument_group("control plane")
    control.add_argument(
        "--xds-address", type=_target, default="127.0.0.1:15010", metavar="HOST:PORT", help="ADS (default: %(default)s)"
    )
    control.add_argument(
        "--ca-address", type=_target, default="127.0.0.1:15012", metavar="HOST:PORT", help="CA (default: %(default)s)"
    )
    control.add_argument(
        "--ca-renewal-address", type=_target, metavar="HOST:PORT", help="the CA's mutual TLS port, for renewals"
    )
    control.add_argument("--ca-server-name", metavar="NAME", help="the name in the CA's certificate to verify")
    control.add_argument(
        "--root-cert", type=Path, required=True, metavar="FILE", help="PEM roots the CA's certificate chains to"
    )
    control.add_argument(
        "--token-file", type=Path, required=True, metavar="FILE", help="the bearer token for the first certificate"
    )
    control.add_argument(
        "--secret-ttl",
        type=_ttl,
        default=timedelta(hours=24),
        metavar="DURATION",
        help="the lifetime of the workload certificate asked of the CA, renewed at about half (default: 24h)",
    )
    workload = parser.add_argument_group("workload")
    workload.add_argument("--pod-name", required=True, help="the workload instance's name")
    workload.add_argument("--namespace", default="default", help="default: %(default)s")
    workload.add_argument("--service-account", default="default", help="default: %(default)s")
    workload.add_argument("--labels", type=_labels, default=Labels(), metavar="K=V,...", help="the workload's labels")
    workload.add_argument("--ip", type=_ip, default="127.0.0.1", help="the workload's address (default: %(default)s)")
    workload.add_argument("--trust-domain", default="cluster.local", help="default: %(default)s")
    workload.add_argument("--gateway", action="store_true", help="run a gateway (router) rather than a sidecar")
    sidecar = parser.add_argument_group("sidecar addresses (node metadata; each defaults to --ip)")
    for flag, what in (
        ("--inbound-address", "where other sidecars reach the workload: its inbound listeners"),
        ("--application-address", "where the application listens: the inbound clusters' endpoint"),
        ("--outbound-address", "where the outbound listeners the application calls bind"),
    ):
        sidecar.add_argument(flag, type=_ip, metavar="IP", help=what)
    local = parser.add_argument_group("agent")
    local.add_argument("--admin-address", type=_address, metavar="IP:PORT", help="Envoy's admin (default: <ip>:15000)")
    local.add_argument("--status-address", type=_address, metavar="IP:PORT", help="readiness (default: <ip>:15020)")
    local.add_argument("--workdir", type=Path, metavar="DIR", help="bootstrap, SDS socket, Envoy log (default: temp)")
    local.add_argument("--sotw", action="store_true", help="state-of-the-world ADS instead of Delta")
    local.add_argument(
        "--drain-duration",
        type=_seconds,
        default=45,
        metavar="SECONDS",
        help="how long Envoy drains connections of replaced listeners and filter chains (default: %(default)s)",
    )
    local.add_argument("--envoy-path", type=Path, metavar="FILE", help="the Envoy binary")
    local.add_argument("--log-level", choices=_LOG_LEVELS, default="info", help="default: %(default)s")
    return parser


def options_from_args(args: argparse.Namespace) -> AgentOptions:
    """The agent's options from parsed flags (the roots are left empty: the caller reads ``--root-cert``).

    Raises:
        AgentConfigError: the flags do not make a usable agent.
        InvalidBootstrapError: the flags do not make a usable node identity.
    """
    addresses = {
        key: value
        for key, value in (
            (INBOUND_ADDRESS_KEY, args.inbound_address),
            (APPLICATION_ADDRESS_KEY, args.application_address),
            (OUTBOUND_ADDRESS_KEY, args.outbound_address),
        )
        if value is not None
    }
    if addresses and args.gateway:
        raise AgentConfigError("--inbound-, --application- and --outbound-address are for sidecars, not --gateway")
    node = NodeIdentity(
        ip=args.ip,
        name=args.pod_name,
        namespace=args.namespace,
        labels=args.labels,
        service_account=args.service_account,
        mesh_id=args.trust_domain,
        extra_metadata=addresses,
    )
    host, port = _host_port(args.xds_address)
    return AgentOptions(
        node=node,
        root_certificates=b"",
        token_file=args.token_file,
        discovery=DiscoveryAddress(host=host, port=port),
        ca_address=args.ca_address,
        ca_renewal_address=args.ca_renewal_address,
        ca_server_name=args.ca_server_name,
        trust_domain=args.trust_domain,
        gateway=args.gateway,
        api_type=ApiType.GRPC if args.sotw else ApiType.DELTA_GRPC,
        admin_address=args.admin_address,
        status_address=args.status_address,
        workdir=args.workdir,
        envoy_path=args.envoy_path,
        envoy_log_level=args.log_level,
        drain_duration=args.drain_duration,
        secret_ttl=args.secret_ttl,
    )
