"""meshctl's argument parsing: one subcommand per module, wiring only (logic lives in the packages)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from meshctl import bootstrap, proxy_config, proxy_status, validate


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="meshctl", description="Command line of the mesh control plane.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    validate.add_parser(commands)
    proxy_status.add_parser(commands)
    proxy_config.add_parser(commands)
    bootstrap.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run meshctl; returns the exit code (0 ok, 1 a problem was found or a server is unreachable, 2 a usage error)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse exits on usage errors (2) and after --help (0)
        return exit_.code if isinstance(exit_.code, int) else 2
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.handler(args))
    except BrokenPipeError:  # the reader went away (`meshctl validate -o json . | head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so that exiting does not raise again
        return 1
