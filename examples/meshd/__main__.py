"""``meshd`` (or ``python -m meshd``): run the control plane until SIGTERM or SIGINT, or print a token.

Exit codes: 0 after a clean stop, 1 when something fails to start (the message names it), 2 on a usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

from mesh_ca import CaError
from mesh_model import InvalidSpiffeIdError, SpiffeId
from meshd.daemon import Meshd
from meshd.flags import build_parser, options_from_args, with_default_command
from meshd.options import MeshdConfigError, MeshdError, MeshdOptions
from meshd.tokens import TOKEN_KEY_FILE, load_token_key, mint_token


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``meshd``; returns the exit code (0 clean stop, 1 a failure, 2 a usage error)."""
    parser = build_parser()
    try:
        args = parser.parse_args(with_default_command(sys.argv[1:] if argv is None else argv))
    except SystemExit as exit_:  # argparse exits on usage errors (2) and after --help (0)
        return exit_.code if isinstance(exit_.code, int) else 2
    if args.command == "token":
        return _token(parser, args)
    try:
        options = options_from_args(args)
    except MeshdConfigError as error:
        parser.print_usage(sys.stderr)
        print(f"meshd: error: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    return asyncio.run(_serve(options))


def _failed(message: str) -> int:
    print(f"meshd: {message}", file=sys.stderr)
    return 1


def _token(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    try:
        identity = SpiffeId("cluster.local", args.namespace, args.service_account)
    except InvalidSpiffeIdError as error:
        parser.print_usage(sys.stderr)
        print(f"meshd token: error: {error}", file=sys.stderr)
        return 2
    if not (args.workdir / TOKEN_KEY_FILE).exists():
        return _failed(f"no {TOKEN_KEY_FILE} in {str(args.workdir)!r}: start 'meshd serve --workdir' there first")
    try:
        key = load_token_key(args.workdir, create=False)
    except CaError as error:
        return _failed(str(error))
    print(mint_token(key, identity, ttl=args.ttl), flush=True)
    return 0


async def _serve(options: MeshdOptions) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    meshd = Meshd(options)
    try:
        await meshd.start()
    except MeshdError as error:
        return _failed(str(error))
    renewal = f" (renewals on {meshd.ca_renewal_address})" if meshd.ca_renewal_address else ""
    print(
        f"meshd: xDS on {meshd.xds_address}, CA on {meshd.ca_address}{renewal}, "
        f"debug on http://{meshd.debug_address}/ready; roots in {meshd.root_cert_path}",
        flush=True,
    )
    await stop.wait()
    await meshd.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
