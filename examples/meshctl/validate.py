"""``meshctl validate PATH...``: check Istio config files offline, as ``istioctl validate`` does.

Exit 0 when everything is valid (warnings are printed), 1 when anything is invalid, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from mesh_config import load_paths
from mesh_config.report import format_text, summary, to_json


def add_parser(commands: Any) -> None:
    """Add the ``validate`` subcommand to meshctl's subparsers."""
    parser = commands.add_parser(
        "validate",
        help="validate Istio config files (YAML or JSON)",
        description="Validate Istio config files or directory trees; '-' reads standard input.",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="a file, a directory, or '-' for standard input")
    parser.add_argument(
        "-n", "--namespace", default="default", help="namespace of objects that set none (default: %(default)s)"
    )
    parser.add_argument("-o", "--output", choices=("text", "json"), default="text", help="output format")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Validate the paths and print one line per problem (or a JSON report); returns the exit code."""
    result = load_paths(args.paths, default_namespace=args.namespace)
    if args.output == "json":
        json.dump(to_json(result), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(format_text(result.diagnostics))
        print(summary(result), file=sys.stderr)
    return 0 if result.ok else 1
