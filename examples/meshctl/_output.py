"""What meshctl's subcommands share: aligned tables, JSON and YAML output, address arguments, error lines."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any

import yaml

from mesh_xds import DEFAULT_XDS_ADDRESS

FORMATS = ("table", "json", "yaml")
_PADDING = 3


class _Dumper(yaml.SafeDumper):
    """Plain YAML: a value that appears twice is written twice, without anchors and aliases."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """An aligned text table: columns apart by three spaces, empty cells shown as ``-``."""
    cells = [list(headers)] + [["-" if value in ("", None) else str(value) for value in row] for row in rows]
    widths = [max(len(row[index]) for row in cells) for index in range(len(headers))]
    lines = ((" " * _PADDING).join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in cells)
    return "".join(line.rstrip() + "\n" for line in lines)


def emit(data: Any, output: str) -> None:
    """Print ``data`` as JSON or YAML."""
    if output == "yaml":
        sys.stdout.write(yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True))
    else:
        json.dump(data, sys.stdout, indent=2)
        sys.stdout.write("\n")


def fail(message: str, code: int = 1) -> int:
    """Print ``meshctl: <message>`` on standard error and return the exit code."""
    print(f"meshctl: {message}", file=sys.stderr)
    return code


def host_port(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (IPv6 in brackets) as a host and a port.

    Raises:
        argparse.ArgumentTypeError: not HOST:PORT with a port from 1 to 65535.
    """
    host, _, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536 or any(c in host for c in " /"):
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return host, int(port)


def xds_address(text: str) -> str:
    """An xDS server address: ``HOST:PORT`` or ``unix:/path``."""
    if text.startswith("unix:") and len(text) > len("unix:"):
        return text
    host_port(text)
    return text


def add_xds_address(parser: argparse.ArgumentParser) -> None:
    """Add ``--xds-address`` to a subcommand."""
    parser.add_argument(
        "--xds-address",
        type=xds_address,
        default=DEFAULT_XDS_ADDRESS,
        metavar="HOST:PORT",
        help="the control plane's xDS (and CSDS) address (default: %(default)s)",
    )


def add_output(parser: argparse.ArgumentParser, formats: Sequence[str] = FORMATS) -> None:
    """Add ``-o/--output`` to a subcommand."""
    parser.add_argument(
        "-o", "--output", choices=formats, default=formats[0], help="output format (default: %(default)s)"
    )
