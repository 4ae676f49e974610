"""``meshd``'s command line: ``meshd serve`` (the default command) and ``meshd token``."""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Final

from meshd.options import (
    DEFAULT_CA_ADDRESS,
    DEFAULT_DEBUG_ADDRESS,
    DEFAULT_WORKDIR,
    DEFAULT_XDS_ADDRESS,
    MeshdConfigError,
    MeshdOptions,
    parse_address,
)

__all__ = ["COMMANDS", "build_parser", "options_from_args", "parse_ttl", "with_default_command"]

COMMANDS: Final = ("serve", "token")
_LOG_LEVELS: Final = ("debug", "info", "warning", "error")
_TTL: Final = re.compile(r"(\d+)([smhd]?)")
_UNITS: Final = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _address(text: str) -> str:
    try:
        parse_address(text, "address")
    except MeshdConfigError:
        raise argparse.ArgumentTypeError(f"{text!r} is not IP:PORT") from None
    return text


def _interval(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not 0.05 <= seconds <= 3600:  # NaN fails too
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds from 0.05 to 3600")
    return seconds


def parse_ttl(text: str) -> timedelta:
    """``90``, ``90s``, ``15m``, ``1h`` or ``7d`` as a duration of at least one second.

    Raises:
        argparse.ArgumentTypeError: anything else.
    """
    match = _TTL.fullmatch(text.strip())
    if match is None or int(match.group(1)) == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 3600s, 60m, 1h or 1d")
    return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``meshd``."""
    parser = argparse.ArgumentParser(
        prog="meshd",
        description="The control plane: Istio config in; xDS, certificates and debug pages out.",
    )
    commands = parser.add_subparsers(dest="command", metavar="{serve,token}")
    serve = commands.add_parser("serve", help="run the control plane (the default command)")
    sources = serve.add_argument_group("config")
    sources.add_argument(
        "--config-dir", type=Path, required=True, metavar="DIR", help="Istio YAML: config, ServiceEntries, ..."
    )
    sources.add_argument("--registry", type=Path, metavar="FILE", help="a YAML file of services and workloads")
    sources.add_argument("--mesh-config", type=Path, metavar="FILE", help="MeshConfig YAML (Istio's defaults)")
    sources.add_argument("--credentials-dir", type=Path, metavar="DIR", help="gateway credentials: <name>/tls.crt, ...")
    sources.add_argument(
        "--poll-interval",
        type=_interval,
        default=1.0,
        metavar="SECONDS",
        help="seconds between two looks at the config, the registry file and the credentials (default: 1)",
    )
    ports = serve.add_argument_group("addresses")
    for flag, default, what in (
        ("--xds-address", DEFAULT_XDS_ADDRESS, "ADS, CSDS and gRPC health"),
        ("--ca-address", DEFAULT_CA_ADDRESS, "the CA over TLS (token authentication)"),
        ("--debug-address", DEFAULT_DEBUG_ADDRESS, "readiness, /metrics and /debug pages"),
    ):
        ports.add_argument(flag, type=_address, default=default, metavar="IP:PORT", help=f"{what} (default: {default})")
    ports.add_argument(
        "--ca-renewal-address", type=_address, metavar="IP:PORT", help="the CA over mutual TLS, for renewals"
    )
    ca = serve.add_argument_group("certificates")
    ca.add_argument("--ca-dir", type=Path, metavar="DIR", help="the self-signed CA's root (default: <workdir>/ca)")
    ca.add_argument("--cacerts", type=Path, metavar="DIR", help="a plugged-in CA in Istio's cacerts layout")
    ca.add_argument("--trust-domain", metavar="NAME", help="default: the MeshConfig's (cluster.local)")
    _common(serve)
    serve.add_argument("--log-level", choices=_LOG_LEVELS, default="info", help="default: %(default)s")
    token = commands.add_parser("token", help="print a bootstrap token for a workload identity")
    token.add_argument("--namespace", required=True, help="the workload's namespace")
    token.add_argument("--service-account", required=True, metavar="NAME", help="the workload's service account")
    token.add_argument("--ttl", type=parse_ttl, default=timedelta(hours=1), help="its lifetime (default: 1h)")
    _common(token)
    return parser


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workdir",
        type=Path,
        default=DEFAULT_WORKDIR,
        metavar="DIR",
        help="the CA, the token key and root-cert.pem (default: %(default)s)",
    )


def with_default_command(argv: Sequence[str]) -> list[str]:
    """``argv`` with ``serve`` in front when it names no command (``meshd --config-dir x`` serves)."""
    items = list(argv)
    if items and (items[0] in COMMANDS or items[0] in ("-h", "--help")):
        return items
    return ["serve", *items]


def options_from_args(args: argparse.Namespace) -> MeshdOptions:
    """The options of ``meshd serve``.

    Raises:
        MeshdConfigError: the flags do not go together.
    """
    return MeshdOptions(
        config_dir=args.config_dir,
        registry_file=args.registry,
        mesh_config=args.mesh_config,
        xds_address=args.xds_address,
        ca_address=args.ca_address,
        ca_renewal_address=args.ca_renewal_address,
        debug_address=args.debug_address,
        workdir=args.workdir,
        ca_dir=args.ca_dir,
        cacerts=args.cacerts,
        trust_domain=args.trust_domain,
        credentials_dir=args.credentials_dir,
        poll_interval=args.poll_interval,
    )
