"""``mesh-agent`` (or ``python -m mesh_agent``): run the node agent of one workload until SIGTERM or SIGINT.

Exit codes: 0 after a clean stop, 1 when something fails (the message names it), 2 on a usage error.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

import attrs

from mesh_agent.agent import Agent
from mesh_agent.flags import build_parser, options_from_args
from mesh_agent.options import AgentConfigError, AgentError, AgentOptions
from mesh_xds.bootstrap import InvalidBootstrapError

_PEM_CERTIFICATE = b"-----BEGIN CERTIFICATE-----"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the agent; returns the exit code (0 clean stop, 1 a failure, 2 a usage error)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse exits on usage errors (2) and after --help (0)
        return exit_.code if isinstance(exit_.code, int) else 2
    try:
        options = options_from_args(args)
    except (AgentConfigError, InvalidBootstrapError) as error:
        parser.print_usage(sys.stderr)
        print(f"mesh-agent: error: {error}", file=sys.stderr)
        return 2
    try:
        roots = args.root_cert.read_bytes()
    except OSError as error:
        return _failed(f"cannot read --root-cert {str(args.root_cert)!r}: {error.strerror or error}")
    if _PEM_CERTIFICATE not in roots:
        return _failed(f"--root-cert {str(args.root_cert)!r} holds no PEM certificate")
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    return asyncio.run(_run(attrs.evolve(options, root_certificates=roots)))


def _failed(message: str) -> int:
    print(f"mesh-agent: {message}", file=sys.stderr)
    return 1


async def _run(options: AgentOptions) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    agent = Agent(options)
    try:
        await agent.start()
    except AgentError as error:
        return _failed(str(error))
    print(f"mesh-agent: {options.node_id} readiness at http://{agent.status_address}/healthz/ready", flush=True)
    failed = asyncio.ensure_future(agent.wait())
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({failed, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    failure = failed.exception() if failed.done() else None
    await agent.stop()
    failed.cancel()
    if failure is not None:
        return _failed(str(failure))
    return 0


if __name__ == "__main__":
    sys.exit(main())
