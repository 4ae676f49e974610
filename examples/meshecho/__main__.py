"""``mesh-echo`` (or ``python -m meshecho``): run one echo app until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence

from meshecho.app import Dependency, EchoApp


def main(argv: Sequence[str] | None = None) -> int:
    """Run the echo app; returns the exit code (0 after a signal, 1 if it cannot listen, 2 on a usage error)."""
    parser = _parser()
    args = parser.parse_args(argv)
    host, port = args.listen
    try:
        app = EchoApp(
            args.service,
            version=args.version,
            namespace=args.namespace,
            host=host,
            port=port,
            dependencies=dict(args.call),
            always_call=args.always_call,
        )
    except ValueError as error:
        parser.error(str(error))
    try:
        asyncio.run(_serve(app))
    except OSError as error:
        print(f"mesh-echo: cannot listen on {host}:{port}: {error.strerror or error}", file=sys.stderr)
        return 1
    return 0


async def _serve(app: EchoApp) -> None:
    await app.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    host, port = app.address
    print(f"listening on {host}:{port}", flush=True)
    await stop.wait()
    await app.close()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mesh-echo", description="An echo app for the mesh's demo and tests.")
    parser.add_argument("--service", required=True, help="service name to answer with")
    parser.add_argument("--version", default="v1", help="version to answer with (default: v1)")
    parser.add_argument("--namespace", default="default", help="namespace to answer with (default: default)")
    parser.add_argument(
        "--listen", type=_listen, default=("127.0.0.1", 9080), metavar="HOST:PORT", help="default: 127.0.0.1:9080"
    )
    parser.add_argument(
        "--call",
        type=_call,
        action="append",
        default=[],
        metavar="NAME=URL[,HOST]",
        help="a dependency that ?call=NAME calls: GET URL with Host: HOST (repeatable)",
    )
    parser.add_argument(
        "--always-call", action="append", default=[], metavar="NAME", help="call NAME on every request (repeatable)"
    )
    return parser


def _listen(text: str) -> tuple[str, int]:
    host, colon, port = text.rpartition(":")
    if not colon or not host or not (port.isascii() and port.isdigit() and int(port) <= 65535):
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return host, int(port)


def _call(text: str) -> tuple[str, Dependency]:
    name, equals, dependency = text.partition("=")
    if not equals or not name.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=URL[,HOST]")
    try:
        return name.strip(), Dependency.parse(dependency)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


if __name__ == "__main__":
    sys.exit(main())
